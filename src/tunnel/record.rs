//! A tunnel's TLS 1.3 records after rustls's handshake (RFC 8446 §5).
//!
//! rustls does the handshake, the HTTP upgrade runs over it, and then a tunnel connection takes
//! its traffic keys ([`TrafficSecrets`], rustls' key log, checked against the keys rustls
//! extracts) and protects its records itself with ring, the crypto provider rustls uses.
//! The reason is copies: rustls' buffered reader copies every byte three times between the
//! socket and its reader (into its deframer, into its plaintext queue, out to the caller);
//! [`RecordStream`] reads the socket into the WebSocket reader's own buffer and decrypts each
//! record there, its plaintext moved down onto the plaintext before it in the same pass, so the
//! frames are sliced from the bytes that came off the socket (`tunnel::ws::WsRead`; a plain
//! `AsyncRead` reader gets a copy; docs/benchmarks.md). Writes gather the caller's slices into
//! the record and seal it in place, with no allocation per record.
//!
//! What it does beyond application data: KeyUpdate both ways (a peer's update, an answer when
//! the peer asks for one, and its own update before AES-GCM's confidentiality limit),
//! close_notify both ways, session tickets ignored on the client, and every other record a
//! fatal error: unexpected or oversized records, a bad tag, a handshake message split around
//! other records or a key change, an unknown alert. A fatal error closes the connection
//! without an alert (RFC 8446 §6.2 says SHOULD send one; the peer sees the TCP close).
//!
//! A connection switches only at a record boundary with nothing left inside rustls (see
//! [`from_server`], [`from_client`]); otherwise it stays on rustls' own record layer.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use rustls::{CipherSuite, ConnectionTrafficSecrets, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use zeroize::Zeroizing;

use super::flowbuf::FlowBuf;

/// Largest plaintext in one record (RFC 8446 §5.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest ciphertext a record may carry (RFC 8446 §5.2).
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
const HEADER: usize = 5;
const TAG: usize = 16;
/// While data flows, a read has room for at least this much ciphertext.
const READ_BUF: usize = 64 * 1024;
// A flowing read has room for a whole record.
const _: () = assert!(READ_BUF >= HEADER + MAX_CIPHERTEXT);
/// A read that filled at least this much means data is flowing: keep the buffer across a pause.
const FLOWING: usize = 16 * 1024;
/// Plaintext taken per `poll_write` at most (four full records, one syscall's worth).
const WRITE_CHUNK: usize = 4 * MAX_PLAINTEXT;
/// Records sealed under one key before we update it: AES-GCM's confidentiality limit is
/// 2^24.5 full records (RFC 8446 §5.5); this stays well under it, for every suite alike.
const KEY_UPDATE_AFTER: u64 = 1 << 23;
/// Handshake bytes buffered while a post-handshake message arrives in pieces, at most.
const MAX_HANDSHAKE_BUF: usize = 64 * 1024;
/// Records without data (empty ones, tickets, key updates, user_canceled) accepted in a row, at
/// most (rustls has a like bound on empty records).
const MAX_EMPTY_IN_A_ROW: u8 = 32;

const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPLICATION_DATA: u8 = 23;
const HS_NEW_SESSION_TICKET: u8 = 4;
const HS_KEY_UPDATE: u8 = 24;
const ALERT_CLOSE_NOTIFY: u8 = 0;
const ALERT_USER_CANCELED: u8 = 90;

/// Which end of the TLS connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Why a record was refused; the connection ends with it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("TLS record of type {0} after the handshake (only application_data is allowed)")]
    UnexpectedRecordType(u8),
    #[error("TLS record of {0} bytes (at most {MAX_CIPHERTEXT})")]
    Overflow(usize),
    #[error("TLS inner plaintext of {0} bytes (at most 2^14 + 1)")]
    InnerOverflow(usize),
    #[error("TLS record failed authentication (bad_record_mac)")]
    BadRecordMac,
    #[error("TLS record without a content type")]
    NoContentType,
    #[error("TLS record of inner content type {0}")]
    UnexpectedContentType(u8),
    #[error("TLS alert of {0} bytes (2 expected)")]
    BadAlert(usize),
    #[error("peer sent TLS alert {0}")]
    PeerAlert(u8),
    #[error("TLS handshake message {0} after the handshake")]
    UnexpectedHandshake(u8),
    #[error("TLS handshake message split around other records")]
    SplitHandshake,
    #[error("TLS handshake messages over {MAX_HANDSHAKE_BUF} bytes after the handshake")]
    HandshakeTooLong,
    #[error("TLS KeyUpdate malformed or not at the end of its record")]
    BadKeyUpdate,
    #[error("TLS key update failed")]
    KeyUpdate,
    #[error("sealing a TLS record failed")]
    SealFailed,
    #[error("write after TLS close_notify")]
    WriteAfterClose,
    #[error("TLS handshake record without a message")]
    EmptyHandshake,
    #[error("{MAX_EMPTY_IN_A_ROW} TLS records in a row without data")]
    TooManyEmpty,
    #[error("TLS record sequence number exhausted")]
    SequenceExhausted,
    #[error("TLS connection closed inside a record")]
    Truncated,
}

impl From<RecordError> for io::Error {
    fn from(e: RecordError) -> io::Error {
        let kind = if e == RecordError::Truncated { io::ErrorKind::UnexpectedEof } else { io::ErrorKind::InvalidData };
        io::Error::new(kind, e)
    }
}

type Secret = Zeroizing<Vec<u8>>;

/// A connection's two application traffic secrets, caught by rustls' key log during the
/// handshake (one [`TrafficSecrets`] per connection: its config's `key_log`).
#[derive(Debug, Default)]
pub struct TrafficSecrets(Mutex<Logged>);

#[derive(Debug, Default)]
struct Logged {
    client: Option<Secret>,
    server: Option<Secret>,
}

impl rustls::KeyLog for TrafficSecrets {
    fn will_log(&self, label: &str) -> bool {
        label == "CLIENT_TRAFFIC_SECRET_0" || label == "SERVER_TRAFFIC_SECRET_0"
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let mut s = crate::sync::lock(&self.0);
        match label {
            "CLIENT_TRAFFIC_SECRET_0" => s.client = Some(Zeroizing::new(secret.to_vec())),
            "SERVER_TRAFFIC_SECRET_0" => s.server = Some(Zeroizing::new(secret.to_vec())),
            _ => {}
        }
    }
}

impl TrafficSecrets {
    /// (client's, server's) secrets, taken out.
    fn take(&self) -> Option<(Secret, Secret)> {
        let mut s = crate::sync::lock(&self.0);
        Some((s.client.take()?, s.server.take()?))
    }
}

/// `base` for one connection: its own [`TrafficSecrets`] as key log, and secret extraction on.
pub fn server_config_for_connection(base: &rustls::ServerConfig) -> (Arc<rustls::ServerConfig>, Arc<TrafficSecrets>) {
    let secrets = Arc::new(TrafficSecrets::default());
    let mut cfg = base.clone();
    cfg.key_log = secrets.clone();
    cfg.enable_secret_extraction = true;
    (Arc::new(cfg), secrets)
}

/// `cfg` made ready for [`from_client`]: its own [`TrafficSecrets`] and secret extraction on.
pub fn prepare_client_config(cfg: &mut rustls::ClientConfig) -> Arc<TrafficSecrets> {
    let secrets = Arc::new(TrafficSecrets::default());
    cfg.key_log = secrets.clone();
    cfg.enable_secret_extraction = true;
    secrets
}

/// The AEAD and hash of a TLS 1.3 suite.
#[derive(Debug, Clone, Copy)]
struct Suite {
    aead: &'static aead::Algorithm,
    hkdf: hkdf::Algorithm,
}

impl Suite {
    fn of(s: SupportedCipherSuite) -> Option<Suite> {
        let SupportedCipherSuite::Tls13(s) = s else { return None };
        Some(match s.common.suite {
            CipherSuite::TLS13_AES_128_GCM_SHA256 => Suite { aead: &aead::AES_128_GCM, hkdf: hkdf::HKDF_SHA256 },
            CipherSuite::TLS13_AES_256_GCM_SHA384 => Suite { aead: &aead::AES_256_GCM, hkdf: hkdf::HKDF_SHA384 },
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => {
                Suite { aead: &aead::CHACHA20_POLY1305, hkdf: hkdf::HKDF_SHA256 }
            }
            _ => return None,
        })
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, "", len) (RFC 8446 §7.1).
fn expand_label(alg: hkdf::Algorithm, secret: &[u8], label: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, String> {
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    let out_len = (len as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&out_len, &label_len, b"tls13 ", label, &[0]];
    let mut out = Zeroizing::new(vec![0u8; len]);
    prk.expand(&info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| format!("HKDF-Expand-Label of {len} bytes failed"))?;
    Ok(out)
}

/// One direction's keys: the traffic secret (for KeyUpdate), the AEAD key, the IV and the
/// record sequence number.
struct Direction {
    suite: Suite,
    secret: Zeroizing<Vec<u8>>,
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

/// Key updates a peer may have made before the switch that it can still follow: the logged
/// secret is of the first generation, rustls' extracted keys of the current one.
const MAX_UPDATES_BEFORE_SWITCH: usize = 8;

impl Direction {
    /// The keys of `secret`'s generation.
    fn new(suite: Suite, secret: Secret, seq: u64) -> Result<Direction, String> {
        let (key, iv) = Direction::keys(suite, &secret)?;
        let unbound = UnboundKey::new(suite.aead, &key).map_err(|_| "bad AEAD key length".to_string())?;
        let mut ivb = [0u8; aead::NONCE_LEN];
        ivb.copy_from_slice(&iv);
        Ok(Direction { suite, secret, key: LessSafeKey::new(unbound), iv: ivb, seq })
    }

    /// The AEAD key and IV of `secret` (RFC 8446 §7.3).
    fn keys(suite: Suite, secret: &[u8]) -> Result<(Secret, Secret), String> {
        Ok((
            expand_label(suite.hkdf, secret, b"key", suite.aead.key_len())?,
            expand_label(suite.hkdf, secret, b"iv", aead::NONCE_LEN)?,
        ))
    }

    /// The next generation's secret (RFC 8446 §7.2).
    fn next_secret(suite: Suite, secret: &[u8]) -> Result<Secret, String> {
        expand_label(suite.hkdf, secret, b"traffic upd", secret.len())
    }

    /// The keys rustls extracted (`extracted`, sequence `seq`), with the secret that gives them:
    /// the logged one (`secret`) or a later generation of it, if key updates came before the
    /// switch. A secret that gives other keys is refused.
    fn caught_up(
        suite: Suite,
        mut secret: Secret,
        seq: u64,
        extracted: &ConnectionTrafficSecrets,
    ) -> Result<Direction, String> {
        let (want_key, want_iv) = match extracted {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key.as_ref(), iv.as_ref()),
            _ => return Err("rustls extracted keys of an unknown AEAD".into()),
        };
        for _ in 0..=MAX_UPDATES_BEFORE_SWITCH {
            let (key, iv) = Direction::keys(suite, &secret)?;
            if want_key == &key[..] && want_iv == &iv[..] {
                return Direction::new(suite, secret, seq);
            }
            secret = Direction::next_secret(suite, &secret)?;
        }
        Err(format!(
            "the logged traffic secret does not give rustls' keys (more than {MAX_UPDATES_BEFORE_SWITCH} key updates before the switch?)"
        ))
    }

    /// The next generation of keys (KeyUpdate, RFC 8446 §7.2).
    fn next(&self) -> Result<Direction, RecordError> {
        let next = Direction::next_secret(self.suite, &self.secret).map_err(|_| RecordError::KeyUpdate)?;
        Direction::new(self.suite, next, 0).map_err(|_| RecordError::KeyUpdate)
    }

    /// The nonce of the next record; fails when the sequence is spent.
    fn nonce(&mut self) -> Result<Nonce, RecordError> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(RecordError::SequenceExhausted)?;
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        Ok(Nonce::assume_unique_for_key(n))
    }
}

/// What one opened record was.
enum Opened {
    /// This many bytes of application data, where the plaintext was asked to go.
    Data(usize),
    /// Nothing for the reader (an empty record, a ticket, a key update).
    Nothing,
    /// close_notify.
    Close,
}

/// A TLS 1.3 connection after its handshake, protecting records itself (see the module docs).
/// [`RecordStream::into_split`] gives it two halves that work without a lock between them.
pub struct RecordStream<S> {
    io: S,
    r: Reading,
    w: Writing,
}

/// The reading half of a [`RecordStream`] over TCP.
pub struct RecordReader<R> {
    io: R,
    r: Reading,
}

/// The writing half of a [`RecordStream`] over TCP.
pub struct RecordWriter<W> {
    io: W,
    w: Writing,
}

/// What the reading side keeps. Records are read into a buffer the caller owns (the WebSocket
/// reader's, [`Reading::poll_fill`]) and opened in place there, each record's plaintext moved
/// down onto the end of the plaintext before it as it is decrypted: the frames are then sliced
/// from the very bytes that came off the socket, with no copy.
struct Reading {
    side: Side,
    rx: Direction,
    /// Ciphertext read past the handshake (FlowBuf's buffer and the range it still held): put
    /// into the first buffer filled.
    carry: Option<(Box<[u8]>, std::ops::Range<usize>)>,
    /// Bytes at the end of the caller's buffer that are ciphertext not opened yet (the start
    /// of the next record).
    pending: usize,
    /// The buffer of the plain `AsyncRead` path: `own[..own_plain]` opened, not handed out,
    /// and its own count of ciphertext pending (a stream is read one way or the other).
    own: BytesMut,
    own_plain: usize,
    own_pending: usize,
    last_fill: usize,
    /// A post-handshake message arriving in pieces.
    hs: Vec<u8>,
    /// close_notify came: reads see the end.
    read_closed: bool,
    /// A record was refused: every later read fails the same way.
    read_failed: Option<RecordError>,
    /// Records without data in a row (bounded by [`MAX_EMPTY_IN_A_ROW`]).
    empty_in_a_row: u8,
    /// The peer asked for a key update: set here, answered by the writing side.
    answer_key_update: Arc<AtomicBool>,
}

/// What the writing side keeps.
struct Writing {
    tx: Direction,
    /// Records sealed, `wpos..` not yet written to the socket.
    wbuf: Vec<u8>,
    wpos: usize,
    /// The peer asked for a key update: ours goes out before our next record.
    answer_key_update: Arc<AtomicBool>,
    /// Sealing failed: nothing more is written.
    write_failed: Option<RecordError>,
    /// Records after which our keys are updated ([`KEY_UPDATE_AFTER`]).
    key_update_after: u64,
    close_sent: bool,
}

impl<S> std::fmt::Debug for RecordStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream").field("side", &self.r.side).finish_non_exhaustive()
    }
}

/// How a switch from rustls' records went; each carries the plaintext already read from the
/// connection (it comes before anything read from the stream).
#[allow(clippy::large_enum_variant)] // once per connection, moved straight into its reader
pub enum Switch<T, S> {
    /// The connection runs on its own records.
    Done(RecordStream<S>, Bytes),
    /// It could not switch (a partial record inside rustls, records waiting to be sent): it goes
    /// on over rustls.
    Stay(T, Bytes),
    /// The switch failed after rustls let go of the keys: the connection is lost.
    Failed(String),
}

/// Switches a server connection whose HTTP upgrade is done. `read` is what the HTTP layer read
/// past the request.
pub fn from_server<S>(
    mut tls: tokio_rustls::server::TlsStream<FlowBuf<S>>,
    secrets: &TrafficSecrets,
    read: Bytes,
) -> Switch<tokio_rustls::server::TlsStream<FlowBuf<S>>, S> {
    let (io, conn) = tls.get_mut();
    let ready = match ready_to_switch(io, conn, read) {
        Ok(ready) => ready,
        Err(read) => {
            secrets.take();
            return Switch::Stay(tls, read);
        }
    };
    let (io, conn) = tls.into_inner();
    switch(io, Side::Server, ready, secrets, conn.dangerous_extract_secrets())
}

/// Switches the node's connection after its WebSocket upgrade (see [`from_server`]).
pub fn from_client<S>(
    mut tls: tokio_rustls::client::TlsStream<FlowBuf<S>>,
    secrets: &TrafficSecrets,
) -> Switch<tokio_rustls::client::TlsStream<FlowBuf<S>>, S> {
    let (io, conn) = tls.get_mut();
    let ready = match ready_to_switch(io, conn, Bytes::new()) {
        Ok(ready) => ready,
        Err(read) => {
            secrets.take();
            return Switch::Stay(tls, read);
        }
    };
    let (io, conn) = tls.into_inner();
    switch(io, Side::Client, ready, secrets, conn.dangerous_extract_secrets())
}

/// A connection rustls can let go of.
struct Ready {
    suite: Suite,
    /// The plaintext read so far: what the caller had read, then what rustls held.
    read: Bytes,
    /// rustls had received close_notify.
    peer_closed: bool,
}

/// Whether rustls can let go of `conn` with nothing inside it: TLS 1.3, its handshake done, no
/// records to send, no partial record read through `io`; else `read` back. (A handshake
/// message split over records that rustls holds half of cannot be seen from here: the rest of
/// it then fails the connection, which only its peer can cause.)
fn ready_to_switch<S, D>(io: &FlowBuf<S>, conn: &mut rustls::ConnectionCommon<D>, read: Bytes) -> Result<Ready, Bytes> {
    let Some(suite) = conn.negotiated_cipher_suite().and_then(Suite::of) else { return Err(read) };
    // rustls holds its answer to a peer's update_requested until its next write, where
    // `wants_write` does not see it: an empty write queues it, and the connection stays.
    let _ = io::Write::write(&mut conn.writer(), &[]);
    if !io.at_record_boundary() || conn.wants_write() || conn.is_handshaking() {
        return Err(read);
    }
    let mut more = Vec::new();
    let mut chunk = [0u8; 4096];
    let peer_closed = loop {
        match io::Read::read(&mut conn.reader(), &mut chunk) {
            Ok(0) => break true,
            Ok(n) => more.extend_from_slice(&chunk[..n]),
            // Nothing more for now (or the socket ended without close_notify: so will ours).
            Err(_) => break false,
        }
    };
    let read = if more.is_empty() {
        read
    } else {
        let mut all = read.to_vec();
        all.extend_from_slice(&more);
        all.into()
    };
    Ok(Ready { suite, read, peer_closed })
}

fn switch<T, S>(
    io: FlowBuf<S>,
    side: Side,
    ready: Ready,
    secrets: &TrafficSecrets,
    extracted: Result<rustls::ExtractedSecrets, rustls::Error>,
) -> Switch<T, S> {
    match switched(io, side, ready.suite, secrets, extracted) {
        Ok(mut stream) => {
            stream.r.read_closed = ready.peer_closed;
            Switch::Done(stream, ready.read)
        }
        Err(e) => Switch::Failed(e),
    }
}

fn switched<S>(
    io: FlowBuf<S>,
    side: Side,
    suite: Suite,
    secrets: &TrafficSecrets,
    extracted: Result<rustls::ExtractedSecrets, rustls::Error>,
) -> Result<RecordStream<S>, String> {
    let x = extracted.map_err(|e| format!("rustls kept the keys: {e}"))?;
    let (client, server) = secrets.take().ok_or("the handshake logged no traffic secrets")?;
    let (tx_secret, rx_secret) = match side {
        Side::Client => (client, server),
        Side::Server => (server, client),
    };
    let tx = Direction::caught_up(suite, tx_secret, x.tx.0, &x.tx.1)?;
    let rx = Direction::caught_up(suite, rx_secret, x.rx.0, &x.rx.1)?;
    // What FlowBuf read past rustls goes into the first buffer the records are read into.
    let (io, pending) = io.into_parts();
    let mut s = RecordStream::with_keys(io, side, rx, tx);
    s.r.carry = pending.filter(|(_, range)| !range.is_empty());
    Ok(s)
}

impl<S> RecordStream<S> {
    fn with_keys(io: S, side: Side, rx: Direction, tx: Direction) -> RecordStream<S> {
        let answer_key_update = Arc::new(AtomicBool::new(false));
        RecordStream {
            io,
            r: Reading {
                side,
                rx,
                carry: None,
                pending: 0,
                own: BytesMut::new(),
                own_plain: 0,
                own_pending: 0,
                last_fill: 0,
                hs: Vec::new(),
                read_closed: false,
                read_failed: None,
                empty_in_a_row: 0,
                answer_key_update: answer_key_update.clone(),
            },
            w: Writing {
                tx,
                wbuf: Vec::new(),
                wpos: 0,
                answer_key_update,
                write_failed: None,
                key_update_after: KEY_UPDATE_AFTER,
                close_sent: false,
            },
        }
    }
}

impl RecordStream<tokio::net::TcpStream> {
    /// The reading and writing halves, each on its own half of the socket: the tunnel's reader
    /// and writer tasks then never wait for each other.
    pub fn into_split(self) -> (RecordReader<OwnedReadHalf>, RecordWriter<OwnedWriteHalf>) {
        let (r, w) = self.io.into_split();
        (RecordReader { io: r, r: self.r }, RecordWriter { io: w, w: self.w })
    }
}

impl Reading {
    /// Opens the record at `buf[at..]`, its plaintext written from `buf[out..]` (`out` ≤ `at`;
    /// the record's header and the bytes between are overwritten). `None` while the record is
    /// not all there; else what it was and its length on the wire.
    fn open_at(&mut self, buf: &mut [u8], at: usize, out: usize) -> Result<Option<(Opened, usize)>, RecordError> {
        let avail = &buf[at..];
        if avail.len() < HEADER {
            return Ok(None);
        }
        if avail[0] != CT_APPLICATION_DATA {
            return Err(RecordError::UnexpectedRecordType(avail[0]));
        }
        let len = u16::from_be_bytes([avail[3], avail[4]]) as usize;
        if len > MAX_CIPHERTEXT {
            return Err(RecordError::Overflow(len));
        }
        if avail.len() < HEADER + len {
            return Ok(None);
        }
        if len < TAG {
            return Err(RecordError::BadRecordMac);
        }
        let header = [avail[0], avail[1], avail[2], avail[3], avail[4]];
        let nonce = self.rx.nonce()?;
        let inner = self
            .rx
            .key
            .open_within(nonce, Aad::from(header), &mut buf[out..at + HEADER + len], at + HEADER - out..)
            .map_err(|_| RecordError::BadRecordMac)?;
        // The whole inner plaintext, padding included, is at most 2^14 + 1 (RFC 8446 §5.4).
        if inner.len() > MAX_PLAINTEXT + 1 {
            return Err(RecordError::InnerOverflow(inner.len()));
        }
        let Some(ct_at) = inner.iter().rposition(|&b| b != 0) else { return Err(RecordError::NoContentType) };
        let content_type = inner[ct_at];
        if content_type != CT_HANDSHAKE && !self.hs.is_empty() {
            return Err(RecordError::SplitHandshake);
        }
        let opened = match content_type {
            CT_APPLICATION_DATA if ct_at == 0 => Opened::Nothing,
            CT_APPLICATION_DATA => Opened::Data(ct_at),
            CT_ALERT => match inner[..ct_at] {
                [_, ALERT_CLOSE_NOTIFY] => Opened::Close,
                [_, ALERT_USER_CANCELED] => Opened::Nothing,
                [_, d] => return Err(RecordError::PeerAlert(d)),
                _ => return Err(RecordError::BadAlert(ct_at)),
            },
            CT_HANDSHAKE if ct_at == 0 => return Err(RecordError::EmptyHandshake),
            CT_HANDSHAKE => {
                if self.hs.len() + ct_at > MAX_HANDSHAKE_BUF {
                    return Err(RecordError::HandshakeTooLong);
                }
                self.hs.extend_from_slice(&inner[..ct_at]);
                self.handshake_messages()?;
                Opened::Nothing
            }
            other => return Err(RecordError::UnexpectedContentType(other)),
        };
        if matches!(opened, Opened::Nothing) {
            self.empty_in_a_row += 1;
            if self.empty_in_a_row > MAX_EMPTY_IN_A_ROW {
                return Err(RecordError::TooManyEmpty);
            }
        } else {
            self.empty_in_a_row = 0;
        }
        Ok(Some((opened, HEADER + len)))
    }

    /// Opens every whole record pending at the end of `buf`, each one's plaintext moved down to
    /// `buf[*plain..]` (and `*plain` moved past it). Stops at close_notify.
    fn open_pending(&mut self, buf: &mut BytesMut, plain: &mut usize) -> Result<(), RecordError> {
        while !self.read_closed {
            let at = buf.len() - self.pending;
            let Some((opened, wire)) = self.open_at(&mut buf[..], at, *plain)? else { break };
            self.pending -= wire;
            match opened {
                Opened::Data(n) => *plain += n,
                Opened::Nothing => {}
                Opened::Close => self.read_closed = true,
            }
        }
        Ok(())
    }

    /// Handles the complete post-handshake messages buffered (the rest waits for its record).
    fn handshake_messages(&mut self) -> Result<(), RecordError> {
        let mut at = 0;
        while let [typ, header @ ..] = &self.hs[at..] {
            // Refused as soon as its type is known, not after buffering it.
            if !(*typ == HS_KEY_UPDATE || (*typ == HS_NEW_SESSION_TICKET && self.side == Side::Client)) {
                return Err(RecordError::UnexpectedHandshake(*typ));
            }
            let [a, b, c, rest @ ..] = header else { break };
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            if rest.len() < len {
                break;
            }
            let body = &rest[..len];
            at += 4 + len;
            match *typ {
                HS_NEW_SESSION_TICKET if self.side == Side::Client => {} // no resumption for nodes
                HS_KEY_UPDATE => {
                    // A key change ends its record (RFC 8446 §5.1).
                    if len != 1 || at != self.hs.len() || body[0] > 1 {
                        return Err(RecordError::BadKeyUpdate);
                    }
                    if body[0] == 1 {
                        self.answer_key_update.store(true, Ordering::Relaxed);
                    }
                    self.rx = self.rx.next()?;
                }
                other => return Err(RecordError::UnexpectedHandshake(other)),
            }
        }
        self.hs.drain(..at);
        if self.hs.is_empty() {
            self.hs = Vec::new();
        }
        Ok(())
    }
}

impl Writing {
    /// Seals one record of `content_type` whose plaintext the caller put at `wbuf[start + 5..]`.
    /// On failure the plaintext is taken back out and nothing more is written.
    fn seal_record(&mut self, start: usize, content_type: u8) -> Result<(), RecordError> {
        let sealed = self.seal_in_place(start, content_type);
        if let Err(e) = &sealed {
            self.wbuf.truncate(start);
            self.write_failed = Some(e.clone());
        }
        sealed
    }

    fn seal_in_place(&mut self, start: usize, content_type: u8) -> Result<(), RecordError> {
        self.wbuf.push(content_type);
        let len = self.wbuf.len() - start - HEADER + TAG;
        let header = [CT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        self.wbuf[start..start + HEADER].copy_from_slice(&header);
        let nonce = self.tx.nonce()?;
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut self.wbuf[start + HEADER..])
            .map_err(|_| RecordError::SealFailed)?;
        self.wbuf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Seals a one-record message (an alert, a key update).
    fn seal_message(&mut self, content_type: u8, body: &[u8]) -> Result<(), RecordError> {
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(&[0; HEADER]);
        self.wbuf.extend_from_slice(body);
        self.seal_record(start, content_type)
    }

    /// Our key update, when the peer asked for one or ours is due: sent, then the new keys.
    fn maybe_update_tx(&mut self) -> Result<(), RecordError> {
        let asked = self.answer_key_update.swap(false, Ordering::Relaxed);
        if asked || self.tx.seq >= self.key_update_after {
            let next = self.tx.next()?;
            self.seal_message(CT_HANDSHAKE, &[HS_KEY_UPDATE, 0, 0, 1, 0])?;
            self.tx = next;
        }
        Ok(())
    }

    /// Seals up to [`WRITE_CHUNK`] bytes of `bufs` into records; returns how many it took.
    fn seal_from(&mut self, bufs: &[io::IoSlice<'_>]) -> Result<usize, RecordError> {
        self.maybe_update_tx()?;
        let total = bufs.iter().map(|b| b.len()).sum::<usize>().min(WRITE_CHUNK);
        self.wbuf.reserve(total + total.div_ceil(MAX_PLAINTEXT) * (HEADER + 1 + TAG));
        let mut taken = 0;
        let mut slices = bufs.iter().map(|b| &b[..]).filter(|b| !b.is_empty());
        let mut cur: &[u8] = &[];
        while taken < total {
            let start = self.wbuf.len();
            self.wbuf.extend_from_slice(&[0; HEADER]);
            let mut room = MAX_PLAINTEXT.min(total - taken);
            while room > 0 {
                if cur.is_empty() {
                    match slices.next() {
                        Some(s) => cur = s,
                        None => break,
                    }
                }
                let n = room.min(cur.len());
                self.wbuf.extend_from_slice(&cur[..n]);
                cur = &cur[n..];
                room -= n;
                taken += n;
            }
            self.seal_record(start, CT_APPLICATION_DATA)?;
        }
        Ok(taken)
    }
}

impl Writing {
    /// Writes the sealed records out.
    fn poll_drain<W: AsyncWrite + Unpin>(&mut self, io: &mut W, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.wbuf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        while self.wpos < self.wbuf.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        // A bulk write's buffer is kept for the next one; after a small write (a heartbeat) it
        // goes back, so an idle connection holds none.
        if self.wbuf.len() < FLOWING {
            self.wbuf = Vec::new();
        } else {
            self.wbuf.clear();
        }
        self.wpos = 0;
        Poll::Ready(Ok(()))
    }
}

/// The block a flowing connection's reads go into (see [`Reading::make_room`]).
const READ_BLOCK: usize = 2 * READ_BUF;

/// A gap this large between the plaintext and the ciphertext after it (headers, tags and
/// padding of the records opened since the ciphertext last ran out) is closed before reading on.
const MAX_GAP: usize = 4 * 1024;

impl Reading {
    /// Reads records into `buf` and opens them there. `buf[..*plain]` is plaintext not taken
    /// yet; what follows it is this reader's (a gap, then ciphertext). Ready with the number of
    /// plaintext bytes added, 0 once close_notify came.
    fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        plain: &mut usize,
    ) -> Poll<io::Result<usize>> {
        if let Some((carried, range)) = self.carry.take() {
            self.make_room(buf, *plain);
            buf.extend_from_slice(&carried[range.clone()]);
            self.pending += range.len();
        }
        loop {
            if let Some(e) = &self.read_failed {
                return Poll::Ready(Err(e.clone().into()));
            }
            // Whatever follows close_notify is ignored (RFC 8446 §6.1).
            if self.read_closed {
                return Poll::Ready(Ok(0));
            }
            let before = *plain;
            if let Err(e) = self.open_pending(buf, plain) {
                self.read_failed = Some(e.clone());
                // The data of the records before the bad one comes first; the next call fails.
                if *plain == before {
                    return Poll::Ready(Err(e.into()));
                }
            }
            if *plain > before {
                return Poll::Ready(Ok(*plain - before));
            }
            if self.read_closed {
                continue;
            }
            self.make_room(buf, *plain);
            match ready!(tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf)) {
                Ok(0) => {
                    return Poll::Ready(Err(if self.pending > 0 {
                        RecordError::Truncated.into()
                    } else {
                        io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the connection without close_notify")
                    }));
                }
                Ok(n) => {
                    self.pending += n;
                    self.last_fill = n;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Room for at least one whole record after what `buf` holds (a frame's worth while data
    /// flows), the gap after the plaintext closed first when it grew.
    fn make_room(&mut self, buf: &mut BytesMut, plain: usize) {
        let gap = buf.len() - plain - self.pending;
        if self.pending == 0 {
            buf.truncate(plain);
        } else if gap >= MAX_GAP {
            buf.copy_within(plain + gap.., plain);
            buf.truncate(plain + self.pending);
        }
        // While data flows, reads go on into one block of several reads' size: a new block
        // takes along the frame in progress (copied), so fewer blocks copy less.
        let flowing = self.last_fill >= FLOWING;
        let room = if flowing { READ_BUF } else { HEADER + MAX_CIPHERTEXT };
        if buf.capacity() - buf.len() < room {
            buf.reserve(if flowing { READ_BLOCK } else { room });
        }
    }

    /// The plain `AsyncRead` path: opened into a buffer of its own, copied out.
    fn poll_read<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if self.own_plain == 0 {
            let (mut own, mut plain) = (std::mem::take(&mut self.own), 0);
            std::mem::swap(&mut self.pending, &mut self.own_pending);
            let filled = self.poll_fill(io, cx, &mut own, &mut plain);
            std::mem::swap(&mut self.pending, &mut self.own_pending);
            // Nothing kept and nothing arriving after small reads: the connection is idle
            // (SECURITY.md §2, memory per idle node), so the buffer goes back.
            if filled.is_pending() && own.is_empty() && self.last_fill < FLOWING {
                own = BytesMut::new();
            }
            (self.own, self.own_plain) = (own, plain);
            if ready!(filled)? == 0 {
                return Poll::Ready(Ok(()));
            }
        }
        let n = self.own_plain.min(out.remaining());
        out.put_slice(&self.own[..n]);
        self.own.advance(n);
        self.own_plain -= n;
        Poll::Ready(Ok(()))
    }
}

impl Writing {
    fn poll_write_vectored<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(io, cx))?;
        if let Some(e) = &self.write_failed {
            return Poll::Ready(Err(e.clone().into()));
        }
        if self.close_sent {
            return Poll::Ready(Err(RecordError::WriteAfterClose.into()));
        }
        let n = self.seal_from(bufs)?;
        // Start writing now; what does not go out yet goes with the next write or the flush.
        if let Poll::Ready(Err(e)) = self.poll_drain(io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush<W: AsyncWrite + Unpin>(&mut self, io: &mut W, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(io, cx))?;
        Pin::new(io).poll_flush(cx)
    }

    fn poll_shutdown<W: AsyncWrite + Unpin>(&mut self, io: &mut W, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(io, cx))?;
        // After a failed seal nothing more can be sealed: the socket just closes.
        if !self.close_sent && self.write_failed.is_none() {
            self.close_sent = true;
            self.seal_message(CT_ALERT, &[1, ALERT_CLOSE_NOTIFY])?;
            ready!(self.poll_drain(io, cx))?;
        }
        Pin::new(io).poll_shutdown(cx)
    }
}

/// `AsyncRead` for a type holding its socket in `io` and its [`Reading`] in `r`.
macro_rules! read_half {
    ($t:ident) => {
        impl<S: AsyncRead + Unpin> AsyncRead for $t<S> {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                this.r.poll_read(&mut this.io, cx, out)
            }
        }
    };
}

/// `AsyncWrite` for a type holding its socket in `io` and its [`Writing`] in `w`.
macro_rules! write_half {
    ($t:ident) => {
        impl<S: AsyncWrite + Unpin> AsyncWrite for $t<S> {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
                let this = self.get_mut();
                this.w.poll_write_vectored(&mut this.io, cx, &[io::IoSlice::new(b)])
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let this = self.get_mut();
                this.w.poll_write_vectored(&mut this.io, cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                this.w.poll_flush(&mut this.io, cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                this.w.poll_shutdown(&mut this.io, cx)
            }
        }
    };
}

read_half!(RecordStream);
read_half!(RecordReader);

/// `poll_fill` for a type holding its socket in `io` and its [`Reading`] in `r`: records read
/// into `buf` (a WebSocket reader's, `tunnel::ws::WsRead`) and opened there, see
/// [`Reading::poll_fill`].
macro_rules! fill_half {
    ($t:ident) => {
        impl<S: AsyncRead + Unpin> $t<S> {
            pub(crate) fn poll_fill(
                &mut self,
                cx: &mut Context<'_>,
                buf: &mut BytesMut,
                plain: &mut usize,
            ) -> Poll<io::Result<usize>> {
                self.r.poll_fill(&mut self.io, cx, buf, plain)
            }
        }
    };
}

fill_half!(RecordStream);
fill_half!(RecordReader);
write_half!(RecordStream);
write_half!(RecordWriter);

/// Records from a made-up peer, for tests and fuzzing (`fuzz/fuzz_targets/tls_records.rs`):
/// sealed with fixed keys (AES-128-GCM from a fixed secret), read by [`read_from_test_peer`].
#[doc(hidden)]
pub struct TestPeer {
    tx: Direction,
}

const TEST_SECRET: [u8; 32] = [7; 32];

fn test_suite() -> Suite {
    Suite { aead: &aead::AES_128_GCM, hkdf: hkdf::HKDF_SHA256 }
}

impl TestPeer {
    pub fn new() -> TestPeer {
        TestPeer { tx: Direction::new(test_suite(), Zeroizing::new(TEST_SECRET.to_vec()), 0).expect("fixed keys") }
    }

    /// One record: `body`, its `content_type` and `pad` zero bytes sealed, under the outer type
    /// `outer` (23 for every valid record).
    pub fn record(&mut self, outer: u8, body: &[u8], content_type: u8, pad: usize) -> Vec<u8> {
        let len = body.len() + 1 + pad + TAG;
        let header = [outer, 3, 3, (len >> 8) as u8, len as u8];
        let mut out = header.to_vec();
        out.extend_from_slice(body);
        out.push(content_type);
        out.resize(HEADER + len - TAG, 0);
        match self.tx.nonce() {
            Ok(nonce) => {
                if let Ok(tag) = self.tx.key.seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[HEADER..]) {
                    out.extend_from_slice(tag.as_ref());
                }
            }
            Err(_) => out.resize(HEADER + len, 0),
        }
        out
    }

    /// The peer's next keys (after it sent a KeyUpdate).
    pub fn update(&mut self) {
        if let Ok(next) = self.tx.next() {
            self.tx = next;
        }
    }
}

impl Default for TestPeer {
    fn default() -> Self {
        TestPeer::new()
    }
}

/// What [`read_from_test_peer`] read: the application data in order, whether close_notify
/// came, and the error that ended the reading (none only after close_notify).
#[doc(hidden)]
#[derive(Debug)]
pub struct TestRead {
    pub data: Vec<u8>,
    pub closed: bool,
    pub error: Option<io::Error>,
    /// The end asks for a key update of its own (the peer sent update_requested).
    pub answers_key_update: bool,
}

/// Reads `wire` as `side` reading a [`TestPeer`]'s records, arriving in reads of `step` bytes,
/// through the stream's own read path (buffering, compaction, records split anywhere).
#[doc(hidden)]
pub fn read_from_test_peer(side: Side, wire: &[u8], step: usize) -> TestRead {
    let mut s = reading_test_peer(Steps::new(wire, step), side);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut data = Vec::new();
    let mut chunk = [0u8; 3000];
    let error = loop {
        let mut rb = ReadBuf::new(&mut chunk);
        match Pin::new(&mut s).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => break None,
            Poll::Ready(Ok(())) => data.extend_from_slice(rb.filled()),
            Poll::Ready(Err(e)) => break Some(e),
            Poll::Pending => break None,
        }
    };
    TestRead { data, closed: s.r.read_closed, error, answers_key_update: s.r.answer_key_update.load(Ordering::Relaxed) }
}

/// A stream on `io` reading a [`TestPeer`]'s records as `side` (tests and fuzzing: the
/// WebSocket reader over records, `tunnel::ws::read_ws_from_test_peer`; [`read_from_test_peer`]).
pub(crate) fn reading_test_peer<S>(io: S, side: Side) -> RecordStream<S> {
    let keys = |secret: &[u8]| Direction::new(test_suite(), Zeroizing::new(secret.to_vec()), 0).expect("fixed keys");
    RecordStream::with_keys(io, side, keys(&TEST_SECRET), keys(&[8; 32]))
}

#[cfg(test)]
impl<S> RecordStream<S> {
    /// The stream with `buf[range]` as the ciphertext read past the handshake, as [`switched`]
    /// takes it from FlowBuf (tests of the WebSocket reader over a switched connection).
    pub(crate) fn carrying(mut self, buf: Box<[u8]>, range: std::ops::Range<usize>) -> RecordStream<S> {
        self.r.carry = Some((buf, range));
        self
    }
}

/// A reader handing out `step` bytes per read (at least 1), then the end.
pub(crate) struct Steps<'a> {
    data: &'a [u8],
    step: usize,
}

impl Steps<'_> {
    pub(crate) fn new(data: &[u8], step: usize) -> Steps<'_> {
        Steps { data, step: step.max(1) }
    }
}

impl AsyncRead for Steps<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = self.step.min(self.data.len()).min(out.remaining());
        out.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::tls;

    type ServerTls = tokio_rustls::server::TlsStream<FlowBuf<DuplexStream>>;
    type ClientTls = tokio_rustls::client::TlsStream<FlowBuf<DuplexStream>>;

    /// A handshake over an in-memory pipe with the tunnel's configs (`suite`: the only one the
    /// client offers), then a request and its answer through rustls, as the HTTP upgrade does.
    async fn connected(
        suite: rustls::SupportedCipherSuite,
    ) -> (ServerTls, Arc<TrafficSecrets>, ClientTls, Arc<TrafficSecrets>) {
        tls::install_provider();
        let g = tls::generate_self_signed(&["localhost".into()]).unwrap();
        let certs: Vec<_> = rustls_pemfile::certs(&mut g.cert_pem.as_bytes()).map(Result::unwrap).collect();
        let key = rustls_pemfile::private_key(&mut g.key_pem.as_bytes()).unwrap().unwrap();
        let base = tls::server_config(certs, key).unwrap();
        let (server_cfg, server_secrets) = server_config_for_connection(&base);
        let pin: [u8; 32] = hex::decode(&g.pin).unwrap().try_into().unwrap();
        let provider =
            rustls::crypto::CryptoProvider { cipher_suites: vec![suite], ..Arc::unwrap_or_clone(tls::provider()) };
        let mut client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::PinVerifier::new(pin)))
            .with_no_client_auth();
        let client_secrets = prepare_client_config(&mut client_cfg);
        let (a, b) = tokio::io::duplex(256 * 1024);
        let accept = tokio_rustls::TlsAcceptor::from(server_cfg).accept(FlowBuf::new(a));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let connect = tokio_rustls::TlsConnector::from(Arc::new(client_cfg)).connect(name, FlowBuf::new(b));
        let (s, c) = tokio::join!(accept, connect);
        let (mut s, mut c) = (s.unwrap(), c.unwrap());
        c.write_all(b"GET /v1/tunnel").await.unwrap();
        c.flush().await.unwrap();
        let mut req = [0u8; 14];
        s.read_exact(&mut req).await.unwrap();
        s.write_all(b"101").await.unwrap();
        s.flush().await.unwrap();
        let mut resp = [0u8; 3];
        c.read_exact(&mut resp).await.unwrap();
        (s, server_secrets, c, client_secrets)
    }

    fn done<T, S>(s: Switch<T, S>) -> (RecordStream<S>, Bytes) {
        match s {
            Switch::Done(stream, read) => (stream, read),
            Switch::Stay(..) => panic!("stayed on rustls"),
            Switch::Failed(e) => panic!("{e}"),
        }
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// Sends `a_data` from `a` to `b` and `b_data` back at the same time, each closing after
    /// (close_notify); returns what each read, to its end.
    async fn exchange<A, B>(a: A, b: B, a_data: Vec<u8>, b_data: Vec<u8>) -> (Vec<u8>, Vec<u8>)
    where
        A: AsyncRead + AsyncWrite + Send + 'static,
        B: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut ar, mut aw) = tokio::io::split(a);
        let (mut br, mut bw) = tokio::io::split(b);
        let w1 = tokio::spawn(async move {
            aw.write_all(&a_data).await.unwrap();
            aw.shutdown().await.unwrap();
        });
        let w2 = tokio::spawn(async move {
            bw.write_all(&b_data).await.unwrap();
            bw.shutdown().await.unwrap();
        });
        let r1 = tokio::spawn(async move {
            let mut v = Vec::new();
            ar.read_to_end(&mut v).await.map(|_| v)
        });
        let mut at_b = Vec::new();
        br.read_to_end(&mut at_b).await.unwrap();
        let at_a = r1.await.unwrap().unwrap();
        w1.await.unwrap();
        w2.await.unwrap();
        (at_a, at_b)
    }

    #[tokio::test]
    async fn either_end_or_both_switch_and_carry_every_byte_both_ways_in_every_suite() {
        use rustls::crypto::ring::cipher_suite as cs;
        let (up, down) = (pattern(700_001, 1), pattern(1_300_007, 2));
        for suite in [cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_CHACHA20_POLY1305_SHA256] {
            let (s, ss, c, cs_) = connected(suite).await;
            let (server, prefix) = done(from_server(s, &ss, Bytes::from_static(b"x")));
            assert_eq!(&prefix[..], b"x", "what the HTTP layer read comes first");
            let (client, prefix) = done(from_client(c, &cs_));
            assert!(prefix.is_empty());
            let (at_server, at_client) = exchange(server, client, down.clone(), up.clone()).await;
            assert!(at_server == up && at_client == down, "both switched, {suite:?}");

            let (s, ss, c, _) = connected(suite).await;
            let (server, _) = done(from_server(s, &ss, Bytes::new()));
            let (at_server, at_client) = exchange(server, c, down.clone(), up.clone()).await;
            assert!(at_server == up && at_client == down, "the server switched, {suite:?}");

            let (s, _, c, cs_) = connected(suite).await;
            let (client, _) = done(from_client(c, &cs_));
            let (at_server, at_client) = exchange(s, client, down.clone(), up.clone()).await;
            assert!(at_server == up && at_client == down, "the client switched, {suite:?}");
        }
    }

    #[tokio::test]
    async fn a_switch_catches_up_with_key_updates_before_it_and_keeps_a_close_notify_rustls_read() {
        let (mut s, ss, mut c, _) = connected(crate::tls::provider().cipher_suites[0]).await;
        // The client updates its keys and asks for ours before the switch.
        c.get_mut().1.refresh_traffic_keys().unwrap();
        c.write_all(b"k").await.unwrap();
        c.flush().await.unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.unwrap();
        s.write_all(b"a").await.unwrap(); // our answer goes out with it
        s.flush().await.unwrap();
        c.read_exact(&mut one).await.unwrap();
        let (server, _) = done(from_server(s, &ss, Bytes::new()));
        let (up, down) = (pattern(100_000, 7), pattern(100_000, 8));
        let (at_server, at_client) = exchange(server, c, down.clone(), up.clone()).await;
        assert!(at_server == up && at_client == down);

        // rustls answered an update request but has not sent the answer: it stays on rustls.
        let (mut s, ss, mut c, _) = connected(crate::tls::provider().cipher_suites[0]).await;
        c.get_mut().1.refresh_traffic_keys().unwrap();
        c.write_all(b"k").await.unwrap();
        c.flush().await.unwrap();
        s.read_exact(&mut one).await.unwrap();
        let Switch::Stay(s, _) = from_server(s, &ss, Bytes::new()) else { panic!("switched with an answer queued") };
        let (at_server, at_client) = exchange(s, c, down.clone(), up.clone()).await;
        assert!(at_server == up && at_client == down, "and goes on over rustls");

        // close_notify that rustls already read is not lost.
        let (mut s, ss, mut c, _) = connected(crate::tls::provider().cipher_suites[0]).await;
        c.write_all(b"last").await.unwrap();
        c.shutdown().await.unwrap();
        let mut four = [0u8; 4];
        s.read_exact(&mut four).await.unwrap();
        assert_eq!(s.read(&mut four).await.unwrap(), 0);
        let (mut server, _) = done(from_server(s, &ss, Bytes::new()));
        assert_eq!(server.read(&mut four).await.unwrap(), 0, "a clean end, not an unexpected EOF");
    }

    #[tokio::test]
    async fn ciphertext_read_past_rustls_is_carried_into_the_first_buffer_filled() {
        let (mut s, ss, mut c, _) = connected(crate::tls::provider().cipher_suites[0]).await;
        // A request whose record is exactly rustls' 4 KiB read (5 + 4074 + 1 + 16 bytes), and
        // data behind it that FlowBuf read from the socket too but rustls did not.
        let request = pattern(4074, 10);
        let after = pattern(30_000, 11);
        c.write_all(&request).await.unwrap();
        c.write_all(&after).await.unwrap();
        c.flush().await.unwrap();
        let mut got = vec![0u8; request.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, request);
        assert!(s.get_ref().0.at_record_boundary());
        let (mut server, read) = done(from_server(s, &ss, Bytes::new()));
        assert!(read.is_empty(), "nothing decrypted inside rustls");
        assert!(server.r.carry.is_some(), "FlowBuf's bytes came along");
        let mut rest = vec![0u8; after.len()];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, after);
    }

    #[tokio::test]
    async fn the_write_buffer_is_kept_while_bulk_flows_and_given_back_after_a_small_write() {
        let (s, ss, c, _) = connected(crate::tls::provider().cipher_suites[0]).await;
        let (mut server, _) = done(from_server(s, &ss, Bytes::new()));
        let reader = tokio::spawn(async move {
            let (mut r, _w) = tokio::io::split(c);
            let mut sink = vec![0u8; 1 << 16];
            while r.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        });
        server.write_all(&pattern(300_000, 9)).await.unwrap();
        server.flush().await.unwrap();
        assert!(server.w.wbuf.capacity() >= WRITE_CHUNK, "kept for the next bulk write");
        server.write_all(b"heartbeat").await.unwrap();
        server.flush().await.unwrap();
        assert_eq!(server.w.wbuf.capacity(), 0, "an idle connection holds no write buffer");
        server.shutdown().await.unwrap();
        drop(server);
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_switched_server_follows_rustls_key_updates_answers_them_and_rustls_follows_its_own() {
        let (s, ss, mut c, _) = connected(crate::tls::provider().cipher_suites[0]).await;
        let (mut server, _) = done(from_server(s, &ss, Bytes::new()));
        // rustls asks for an update (update_requested) between two writes.
        c.write_all(&pattern(100_000, 3)).await.unwrap();
        c.get_mut().1.refresh_traffic_keys().unwrap();
        c.write_all(&pattern(100_000, 4)).await.unwrap();
        c.flush().await.unwrap();
        let mut got = vec![0u8; 200_000];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..100_000], &pattern(100_000, 3)[..]);
        assert_eq!(&got[100_000..], &pattern(100_000, 4)[..]);
        assert!(server.r.answer_key_update.load(Ordering::Relaxed), "the update request is noted");
        assert_eq!(server.r.rx.seq, 7, "the reader's keys changed: 7 records since");
        // Our answer goes out before our next record; then one of our own when it is due.
        server.write_all(&pattern(50_000, 5)).await.unwrap();
        assert!(!server.w.answer_key_update.load(Ordering::Relaxed));
        assert_eq!(server.w.tx.seq, 4);
        server.w.key_update_after = 6;
        server.write_all(&pattern(200_000, 6)).await.unwrap();
        server.flush().await.unwrap();
        assert!(server.w.tx.seq < 10, "our own update reset the sequence");
        let mut back = vec![0u8; 250_000];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back[..50_000], &pattern(50_000, 5)[..]);
        assert_eq!(&back[50_000..], &pattern(200_000, 6)[..]);
        // close_notify both ways.
        c.shutdown().await.unwrap();
        assert_eq!(server.read(&mut got).await.unwrap(), 0);
        server.shutdown().await.unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    const DATA: u8 = CT_APPLICATION_DATA;
    const HS: u8 = CT_HANDSHAKE;

    fn close(p: &mut TestPeer) -> Vec<u8> {
        p.record(DATA, &[1, ALERT_CLOSE_NOTIFY], CT_ALERT, 0)
    }

    /// The error reading `wire` ends with, the same however it arrives.
    fn refused(side: Side, wire: &[u8]) -> RecordError {
        let mut seen: Option<RecordError> = None;
        let whole = read_from_test_peer(side, wire, wire.len()).data;
        for step in [wire.len(), 1, 7, 4096] {
            let r = read_from_test_peer(side, wire, step);
            assert_eq!(r.data, whole, "the data before the bad record, in steps of {step}");
            let e = r.error.unwrap_or_else(|| panic!("accepted in steps of {step}"));
            let e = e
                .get_ref()
                .and_then(|e| e.downcast_ref::<RecordError>())
                .cloned()
                .unwrap_or_else(|| panic!("not a record error: {e}"));
            if let Some(prev) = &seen {
                assert_eq!(prev, &e, "in steps of {step}");
            }
            seen = Some(e);
        }
        seen.expect("four reads")
    }

    #[test]
    fn what_a_peer_may_send_is_read_however_it_arrives() {
        let mut p = TestPeer::new();
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (i, n) in [1usize, 0, 100, MAX_PLAINTEXT, 5000].into_iter().enumerate() {
            let body: Vec<u8> = (0..n).map(|j| (i * 7 + j) as u8).collect();
            // Padded records too, up to the 2^14 + 1 bytes of a whole inner plaintext.
            wire.extend(p.record(DATA, &body, DATA, (i * 50).min(MAX_PLAINTEXT - n)));
            want.extend(body);
        }
        wire.extend(p.record(DATA, &[], DATA, MAX_PLAINTEXT)); // all padding
        wire.extend(p.record(DATA, &[1, ALERT_USER_CANCELED], CT_ALERT, 0));
        // A KeyUpdate split over two records, then data under the new keys.
        wire.extend(p.record(DATA, &[HS_KEY_UPDATE, 0], HS, 0));
        wire.extend(p.record(DATA, &[0, 1, 1], HS, 0));
        p.update();
        wire.extend(p.record(DATA, b"after the update", DATA, 0));
        want.extend(b"after the update");
        wire.extend(close(&mut p));
        wire.extend(b"anything after close_notify is ignored");
        for step in [1, 2, 5, 4096, 20_000, wire.len()] {
            for side in [Side::Client, Side::Server] {
                let r = read_from_test_peer(side, &wire, step);
                assert!(r.error.is_none(), "step {step}: {:?}", r.error);
                assert!(r.closed && r.data == want, "step {step}");
                assert!(r.answers_key_update, "update_requested is answered");
            }
        }
        // The node ignores a session ticket; the server has none to receive.
        let mut p = TestPeer::new();
        let mut wire = p.record(DATA, &[HS_NEW_SESSION_TICKET, 0, 0, 3, 1, 2, 3], HS, 0);
        wire.extend(p.record(DATA, b"x", DATA, 0));
        wire.extend(close(&mut p));
        let r = read_from_test_peer(Side::Client, &wire, 3);
        assert!(r.error.is_none() && r.data == b"x");
        assert_eq!(refused(Side::Server, &wire), RecordError::UnexpectedHandshake(HS_NEW_SESSION_TICKET));
        // Without close_notify the end is an unexpected EOF, not a clean one.
        let mut p = TestPeer::new();
        let r = read_from_test_peer(Side::Server, &p.record(DATA, b"x", DATA, 0), 1);
        let e = r.error.expect("EOF without close_notify");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(!e.get_ref().is_some_and(|e| e.is::<RecordError>()));
        assert_eq!(r.data, b"x");
    }

    #[test]
    fn hostile_records_are_refused_with_their_reason_however_they_arrive() {
        let p = || TestPeer::new();
        let one = |outer: u8, body: &[u8], ct: u8, pad: usize| p().record(outer, body, ct, pad);
        let cases: Vec<(&str, Vec<u8>, RecordError)> = vec![
            ("a handshake record", one(HS, b"x", DATA, 0), RecordError::UnexpectedRecordType(HS)),
            ("change_cipher_spec", one(20, &[], 1, 0), RecordError::UnexpectedRecordType(20)),
            ("an oversized record", vec![DATA, 3, 3, 0x41, 0x01], RecordError::Overflow(MAX_CIPHERTEXT + 1)),
            (
                "a plaintext over 2^14",
                one(DATA, &[1; MAX_PLAINTEXT + 1], DATA, 0),
                RecordError::InnerOverflow(MAX_PLAINTEXT + 2),
            ),
            (
                "padding over 2^14 + 1",
                one(DATA, &[1; MAX_PLAINTEXT], DATA, 1),
                RecordError::InnerOverflow(MAX_PLAINTEXT + 2),
            ),
            ("an unknown handshake type, alone", one(DATA, &[13], HS, 0), RecordError::UnexpectedHandshake(13)),
            ("an empty handshake record", one(DATA, &[], HS, 0), RecordError::EmptyHandshake),
            ("no content type", one(DATA, &[], 0, 9), RecordError::NoContentType),
            ("an unknown content type", one(DATA, b"x", 99, 0), RecordError::UnexpectedContentType(99)),
            ("a fatal alert", one(DATA, &[2, 40], CT_ALERT, 0), RecordError::PeerAlert(40)),
            ("a short alert", one(DATA, &[1], CT_ALERT, 0), RecordError::BadAlert(1)),
            ("a long alert", one(DATA, &[1, 0, 0], CT_ALERT, 0), RecordError::BadAlert(3)),
            ("a certificate request", one(DATA, &[13, 0, 0, 1, 0], HS, 0), RecordError::UnexpectedHandshake(13)),
            ("a KeyUpdate of 2", one(DATA, &[HS_KEY_UPDATE, 0, 0, 1, 2], HS, 0), RecordError::BadKeyUpdate),
            ("a long KeyUpdate", one(DATA, &[HS_KEY_UPDATE, 0, 0, 2, 0, 0], HS, 0), RecordError::BadKeyUpdate),
            (
                "a KeyUpdate before more in its record",
                one(DATA, &[HS_KEY_UPDATE, 0, 0, 1, 0, HS_KEY_UPDATE, 0, 0, 1, 0], HS, 0),
                RecordError::BadKeyUpdate,
            ),
            (
                "a KeyUpdate before part of a message",
                one(DATA, &[HS_KEY_UPDATE, 0, 0, 1, 0, 4], HS, 0),
                RecordError::BadKeyUpdate,
            ),
        ];
        for (what, wire, want) in cases {
            assert_eq!(refused(Side::Server, &wire), want, "{what}");
        }
        // A flipped bit anywhere in a record fails its tag (or its header).
        let good = p().record(DATA, b"hello", DATA, 0);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            let e = refused(Side::Client, &bad);
            assert!(
                matches!(e, RecordError::BadRecordMac | RecordError::UnexpectedRecordType(_) | RecordError::Truncated)
                    || (i == 4 && matches!(e, RecordError::Overflow(_))),
                "byte {i}: {e:?}"
            );
        }
        // Records without data: 32 in a row pass, the 33rd ends the connection.
        let mut peer = p();
        let mut wire: Vec<u8> = (0..MAX_EMPTY_IN_A_ROW).flat_map(|_| peer.record(DATA, &[], DATA, 3)).collect();
        wire.extend(peer.record(DATA, b"d", DATA, 0));
        wire.extend((0..MAX_EMPTY_IN_A_ROW).flat_map(|_| peer.record(DATA, &[1, ALERT_USER_CANCELED], CT_ALERT, 0)));
        let ok_part = wire.len();
        wire.extend(peer.record(DATA, &[], DATA, 0));
        let r = read_from_test_peer(Side::Server, &wire[..ok_part], 5);
        assert_eq!(r.data, b"d");
        assert!(r.error.is_some_and(|e| e.get_ref().is_none_or(|e| !e.is::<RecordError>())), "only the end");
        assert_eq!(refused(Side::Server, &wire), RecordError::TooManyEmpty);
        // A replayed record: the sequence moved on.
        let mut peer = p();
        let mut wire = peer.record(DATA, b"once", DATA, 0);
        wire.extend(wire.clone());
        assert_eq!(refused(Side::Server, &wire), RecordError::BadRecordMac);
        // Records from before a key update, after it.
        let mut peer = p();
        let mut wire = peer.record(DATA, &[HS_KEY_UPDATE, 0, 0, 1, 0], HS, 0);
        wire.extend(peer.record(DATA, b"old keys", DATA, 0));
        assert_eq!(refused(Side::Server, &wire), RecordError::BadRecordMac);
        // A handshake message split around application data.
        let mut peer = p();
        let mut wire = peer.record(DATA, &[HS_KEY_UPDATE, 0], HS, 0);
        wire.extend(peer.record(DATA, b"data", DATA, 0));
        assert_eq!(refused(Side::Server, &wire), RecordError::SplitHandshake);
        // A handshake message that never ends stops at the bound.
        let mut peer = p();
        let mut wire = peer.record(DATA, &[HS_NEW_SESSION_TICKET, 0xff, 0xff, 0xff], HS, 0);
        for _ in 0..5 {
            wire.extend(peer.record(DATA, &[0; MAX_PLAINTEXT], HS, 0));
        }
        assert_eq!(refused(Side::Client, &wire), RecordError::HandshakeTooLong);
        // A record cut short by the end of the connection.
        let good = p().record(DATA, &[5; 300], DATA, 0);
        for cut in 1..good.len() {
            let r = read_from_test_peer(Side::Server, &good[..cut], 1);
            let e = r.error.expect("a cut record");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
            assert_eq!(e.get_ref().and_then(|e| e.downcast_ref::<RecordError>()), Some(&RecordError::Truncated));
            assert!(r.data.is_empty());
        }
    }
}
