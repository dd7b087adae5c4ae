//! WebSocket plumbing shared by both ends, after the HTTP upgrade: frames are read from and
//! written to the (TLS) stream directly ([`super::wsframe`] does the framing), so a DATA frame
//! goes from the mux's queue to rustls in one vectored write (its WebSocket header and the
//! tunnel frame side by side, no copy), and arrives in one buffer that its payload is sliced
//! from. Also here: the writer task that drains a mux's outbound queue, the reader helpers that
//! turn messages into tunnel frames, and the liveness rule both ends apply.

use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::mux::{Out, OutQueue};
use super::protocol::{Frame, ProtocolError};
use super::wsframe::{self, Decoder, MAX_HEADER_LEN, Msg, WsError};
pub use super::wsframe::{Role, UNMASKED, names_unmasked};
use crate::config::Limits;

// Config validation keeps `limits.ws_max_frame` at or above its own minimum, which must fit the
// largest tunnel frame.
const _: () = assert!(crate::config::MIN_WS_MAX_FRAME >= super::protocol::MAX_FRAME_LEN);

/// How long one frame sent outside the session's writer (handshake frames, the refusal before
/// closing, the close itself) may wait for a peer that does not read.
pub const HANDSHAKE_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames gathered into one vectored write at most (then the batch is flushed).
const MAX_BATCH_FRAMES: usize = 64;

/// A read that filled at least this much means data is flowing: the read buffer is kept across
/// a pause. After smaller reads (heartbeats) an idle connection gives it back.
const FLOWING: usize = 16 * 1024;

/// The buffer bulk reads go into: two of the largest frames (a frame sliced from it pins it:
/// `wsframe::COPY_BELOW`).
const FLOWING_BLOCK: usize = 2 * (super::protocol::MAX_FRAME_LEN + MAX_HEADER_LEN);

/// The framing limits of SECURITY.md §2, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// Largest frame payload accepted.
    pub max_frame: usize,
    /// Largest message (fragments joined) accepted.
    pub max_message: usize,
    /// Smallest read: the buffer a read from an idle connection starts with.
    pub read_chunk: usize,
    /// Bytes gathered into one write at most.
    pub max_batch: usize,
}

/// What a node makes of the server's `Sec-WebSocket-Extensions` answer (`answer`: its header
/// values): whether it now sends its frames unmasked, or why the answer fails the connection (an
/// extension it did not offer, RFC 6455 §4.1). `offered`: the node offered [`UNMASKED`].
pub fn unmasked_chosen<'a>(offered: bool, answer: impl IntoIterator<Item = &'a str>) -> Result<bool, String> {
    let chosen: Vec<&str> =
        answer.into_iter().flat_map(|v| v.split(',')).map(str::trim).filter(|e| !e.is_empty()).collect();
    if let Some(other) = chosen.iter().find(|e| !(offered && names_unmasked(e))) {
        return Err(format!("the server chose a WebSocket extension the node did not offer: {other}"));
    }
    Ok(!chosen.is_empty())
}

/// The framing limits from `[limits]`.
pub fn ws_limits(l: &Limits) -> WsLimits {
    WsLimits {
        max_frame: l.ws_max_frame,
        max_message: l.ws_max_message,
        read_chunk: l.ws_read_buffer.max(MAX_HEADER_LEN),
        max_batch: l.ws_max_write_buffer.max(l.ws_max_frame + MAX_HEADER_LEN),
    }
}

/// tungstenite's configuration for the HTTP upgrade of a node (frames are not read through it).
pub fn ws_config(l: &Limits) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    let mut c = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    c.read_buffer_size = l.ws_read_buffer;
    c.write_buffer_size = l.ws_write_buffer;
    c.max_write_buffer_size = l.ws_max_write_buffer.max(l.ws_write_buffer + l.ws_max_frame + 16);
    c.max_frame_size = Some(l.ws_max_frame);
    c.max_message_size = Some(l.ws_max_message);
    c
}

/// The reading side's state: the buffer frames are sliced from, and the decoder.
#[derive(Debug)]
struct ReadState {
    /// `buf[..plain]` is the stream's bytes not decoded yet; the rest belongs to the stream
    /// underneath ([`WsRead`]: the tunnel's own TLS records keep their ciphertext there).
    buf: BytesMut,
    plain: usize,
    dec: Decoder,
    read_chunk: usize,
    last_fill: usize,
}

/// A stream a WebSocket reader reads: it appends what arrives to the reader's buffer. The
/// tunnel's own TLS records ([`super::record`]) are read into that buffer and opened in place
/// there, so a frame is sliced from the bytes that came off the socket; every other stream
/// reads into it as `AsyncRead`.
pub trait WsRead: AsyncRead + Unpin {
    /// Appends bytes to `buf`, whose first `*plain` bytes are the stream's not decoded yet (and
    /// all it holds, for a stream that keeps nothing of its own there), and moves `*plain`
    /// past them. Ready with the number added; 0 is the end of the stream.
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        plain: &mut usize,
    ) -> Poll<std::io::Result<usize>> {
        let n = ready!(tokio_util::io::poll_read_buf(Pin::new(self), cx, buf))?;
        *plain = buf.len();
        Poll::Ready(Ok(n))
    }
}

// Streams a WebSocket is read from without being split (the node's control sessions).
impl WsRead for tokio::net::TcpStream {}
impl WsRead for tokio_rustls::client::TlsStream<tokio::net::TcpStream> {}

/// The tunnel's own records, whole and read half: read into the reader's buffer and opened
/// there (their own `poll_fill`; `record` cannot name this trait without an import cycle).
macro_rules! opened_in_place {
    ($($t:ident),*) => {$(
        impl<S: AsyncRead + Unpin> WsRead for super::record::$t<S> {
            fn poll_fill(
                &mut self,
                cx: &mut Context<'_>,
                buf: &mut BytesMut,
                plain: &mut usize,
            ) -> Poll<std::io::Result<usize>> {
                super::record::$t::poll_fill(self, cx, buf, plain)
            }
        }
    )*};
}

opened_in_place!(RecordStream, RecordReader);

impl<A: WsRead, B: WsRead> WsRead for tokio_util::either::Either<A, B> {
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        plain: &mut usize,
    ) -> Poll<std::io::Result<usize>> {
        match self {
            tokio_util::either::Either::Left(a) => a.poll_fill(cx, buf, plain),
            tokio_util::either::Either::Right(b) => b.poll_fill(cx, buf, plain),
        }
    }
}

/// Runs `f` on the plaintext alone (`buf[..*plain]`: what follows it is the stream's, [`WsRead`])
/// and moves `*plain` to where `f` left its end; what followed comes back after it. O(1): the
/// split and the join stay in one allocation, and are skipped when nothing follows.
fn on_plain<T>(buf: &mut BytesMut, plain: &mut usize, f: impl FnOnce(&mut BytesMut) -> T) -> T {
    let rest = (*plain < buf.len()).then(|| buf.split_off(*plain));
    let out = f(buf);
    *plain = buf.len();
    if let Some(rest) = rest {
        buf.unsplit(rest);
    }
    out
}

impl ReadState {
    fn new(role: Role, l: WsLimits) -> ReadState {
        ReadState {
            buf: BytesMut::new(),
            plain: 0,
            dec: Decoder::new(role, l.max_frame, l.max_message),
            read_chunk: l.read_chunk,
            last_fill: 0,
        }
    }

    /// The next message. Cancel-safe: bytes read are kept in the buffer.
    async fn next<R: WsRead>(&mut self, io: &mut R) -> Result<Msg, ReadEnd> {
        loop {
            if let Some(m) = self.decode()? {
                return Ok(m);
            }
            let want = self.dec.needed().saturating_sub(self.plain).max(self.read_chunk);
            // Counted from the plaintext: what follows it is the stream's, already on its way to
            // becoming the rest of the frame (the records' own room is theirs to keep).
            if self.buf.capacity() - self.plain < want {
                // A frame in flight gets room for the rest of it; bulk reads go into a block of
                // two frames (a new block takes along the frame in progress, copied: fewer
                // blocks copy less).
                let more = if self.last_fill >= FLOWING { want.max(FLOWING_BLOCK) } else { want };
                self.buf.reserve(more);
            }
            let n = poll_fn(|cx| self.poll_fill(cx, io)).await?;
            if n == 0 {
                return Err(ReadEnd::Closed);
            }
        }
    }

    /// Decodes from the plaintext only (what follows it is the stream's).
    fn decode(&mut self) -> Result<Option<Msg>, WsError> {
        on_plain(&mut self.buf, &mut self.plain, |b| self.dec.decode(b))
    }

    fn poll_fill<R: WsRead>(&mut self, cx: &mut Context<'_>, io: &mut R) -> Poll<std::io::Result<usize>> {
        match io.poll_fill(cx, &mut self.buf, &mut self.plain) {
            Poll::Ready(Ok(n)) => {
                self.last_fill = n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Nothing buffered and nothing arriving after small reads: the connection is
                // idle (SECURITY.md §2, memory per idle node), so the buffer goes back.
                if self.buf.is_empty() && self.last_fill < FLOWING {
                    self.buf = BytesMut::new();
                    self.plain = 0;
                }
                Poll::Pending
            }
        }
    }
}

/// The writing side's state: header scratch space and, for a client, the mask keys.
#[derive(Debug)]
struct WriteState {
    /// Mask keys for a client's frames (RFC 6455 §5.3); `None` on the server.
    mask: Option<MaskKeys>,
    max_batch: usize,
}

impl WriteState {
    fn new(role: Role, l: WsLimits) -> WriteState {
        WriteState { mask: (role == Role::Client).then(MaskKeys::new), max_batch: l.max_batch }
    }

    /// Writes `msgs` (opcode, payload) as final frames in one vectored write and flushes.
    async fn send<W: AsyncWrite + Unpin>(&mut self, io: &mut W, msgs: &mut Vec<(u8, Bytes)>) -> std::io::Result<()> {
        let mut headers = Vec::with_capacity(msgs.len());
        for (op, payload) in msgs.iter_mut() {
            let key = self.mask.as_mut().map(MaskKeys::next);
            let mut h = [0u8; MAX_HEADER_LEN];
            let n = wsframe::encode_header(&mut h, *op, payload.len(), key);
            if let Some(k) = key {
                *payload = masked(std::mem::take(payload), k);
            }
            headers.push((h, n));
        }
        let mut slices = Vec::with_capacity(2 * msgs.len());
        for ((h, n), (_, payload)) in headers.iter().zip(msgs.iter()) {
            slices.push(IoSlice::new(&h[..*n]));
            if !payload.is_empty() {
                slices.push(IoSlice::new(payload));
            }
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = io.write_vectored(rest).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        msgs.clear();
        io.flush().await
    }
}

impl WriteState {
    /// Sends a close frame (1000, normal) and shuts the stream down (TLS close_notify),
    /// ignoring failures: the connection is ending either way.
    async fn close<W: AsyncWrite + Unpin>(&mut self, io: &mut W) {
        let _ = self.send(io, &mut vec![(wsframe::OP_CLOSE, Bytes::from_static(&[0x03, 0xe8]))]).await;
        let _ = io.shutdown().await;
    }
}

/// `payload` masked with `key`: in place when the bytes are not shared (a DATA frame from the
/// queue), else in a copy.
fn masked(payload: Bytes, key: [u8; 4]) -> Bytes {
    let mut m = payload.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    wsframe::apply_mask(&mut m, key);
    m.freeze()
}

/// Mask keys for a client's frames: a xorshift generator seeded from the OS. (Inside TLS the key
/// protects nothing; RFC 6455 still asks for one that an observer cannot predict.)
#[derive(Debug)]
struct MaskKeys(u64);

impl MaskKeys {
    fn new() -> MaskKeys {
        let mut seed = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        MaskKeys(u64::from_ne_bytes(seed) | 1)
    }

    fn next(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x as u32).to_ne_bytes()
    }
}

/// An upgraded connection, before it is split: the node handshake's frames go through it.
pub struct WsConn<S> {
    io: S,
    read: ReadState,
    write: WriteState,
}

impl<S> WsConn<S> {
    /// The same connection over another stream: `f` turns the stream into another one and
    /// the bytes the old one had read but not handed out ([`WsConn::with_read`]).
    pub fn map_io<T, E>(self, f: impl FnOnce(S) -> Result<(T, Bytes), E>) -> Result<WsConn<T>, E> {
        let WsConn { io, read, write } = self;
        let (io, pending) = f(io)?;
        Ok(WsConn { io, read, write }.with_read(pending))
    }

    /// `read`, bytes read from the stream by someone else (the HTTP layer, rustls), comes after
    /// what this connection buffered and before what it reads next.
    pub fn with_read(mut self, read: Bytes) -> WsConn<S> {
        on_plain(&mut self.read.buf, &mut self.read.plain, |b| b.extend_from_slice(&read));
        self
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsConn<S> {
    /// Frames on `io` as `role` (the server reads masked frames and writes unmasked ones).
    pub fn new(io: S, role: Role, limits: WsLimits) -> WsConn<S> {
        WsConn { io, read: ReadState::new(role, limits), write: WriteState::new(role, limits) }
    }

    /// Sends a close frame and shuts the stream down (TLS close_notify), ignoring failures;
    /// a peer that does not read is given up on after [`HANDSHAKE_SEND_TIMEOUT`].
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(HANDSHAKE_SEND_TIMEOUT, self.write.close(&mut self.io)).await;
    }

    /// Frames from the node go unmasked ([`UNMASKED`] was negotiated): a node stops masking
    /// what it writes, a server accepts unmasked frames.
    pub fn with_unmasked_frames(mut self) -> WsConn<S> {
        self.read.dec.accept_unmasked();
        self.write.mask = None;
        self
    }

    /// Whether frames from the node go unmasked on this connection ([`UNMASKED`] negotiated).
    pub fn unmasked_frames(&self) -> bool {
        self.read.dec.unmasked_ok()
    }
}

impl<S: WsRead> WsConn<S> {
    /// The next message. Pings are not answered during the handshake (it lasts seconds; a
    /// peer that floods pings and never reads must not stall it on its own answers).
    async fn next(&mut self) -> Result<Msg, ReadEnd> {
        self.read.next(&mut self.io).await
    }
}

impl<S: SplitIo> WsConn<S> {
    /// The reading and writing halves, for the session's reader and writer tasks.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        let (r, w) = self.io.split_io();
        (WsReader { io: r, state: self.read }, WsWriter { io: w, state: self.write })
    }
}

/// A stream a tunnel's reader and writer tasks share: split into its two halves.
pub trait SplitIo: WsRead + AsyncWrite + Unpin {
    type Reader: WsRead + Send + 'static;
    type Writer: AsyncWrite + Unpin + Send + 'static;
    fn split_io(self) -> (Self::Reader, Self::Writer);
}

/// [`SplitIo`] with tokio's lock between the halves (one stream underneath, as rustls' is).
macro_rules! split_with_lock {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::tunnel::ws::WsRead for $t {}
        impl $crate::tunnel::ws::WsRead for tokio::io::ReadHalf<$t> {}
        impl $crate::tunnel::ws::SplitIo for $t {
            type Reader = tokio::io::ReadHalf<$t>;
            type Writer = tokio::io::WriteHalf<$t>;
            fn split_io(self) -> (Self::Reader, Self::Writer) {
                tokio::io::split(self)
            }
        }
    )*};
}
pub(crate) use split_with_lock;

split_with_lock!(
    tokio::io::DuplexStream,
    super::flowbuf::FlowBuf<tokio::net::TcpStream>,
    tokio_rustls::server::TlsStream<super::flowbuf::FlowBuf<tokio::net::TcpStream>>,
    tokio_rustls::client::TlsStream<super::flowbuf::FlowBuf<tokio::net::TcpStream>>,
);

/// The tunnel's own records split without a lock: each half on its half of the socket.
impl SplitIo for super::record::RecordStream<tokio::net::TcpStream> {
    type Reader = super::record::RecordReader<tokio::net::tcp::OwnedReadHalf>;
    type Writer = super::record::RecordWriter<tokio::net::tcp::OwnedWriteHalf>;
    fn split_io(self) -> (Self::Reader, Self::Writer) {
        self.into_split()
    }
}

impl<A: SplitIo, B: SplitIo> SplitIo for tokio_util::either::Either<A, B> {
    type Reader = tokio_util::either::Either<A::Reader, B::Reader>;
    type Writer = tokio_util::either::Either<A::Writer, B::Writer>;
    fn split_io(self) -> (Self::Reader, Self::Writer) {
        use tokio_util::either::Either;
        match self {
            Either::Left(a) => {
                let (r, w) = a.split_io();
                (Either::Left(r), Either::Left(w))
            }
            Either::Right(b) => {
                let (r, w) = b.split_io();
                (Either::Right(r), Either::Right(w))
            }
        }
    }
}

/// The reading half of a tunnel's WebSocket.
pub struct WsReader<S: SplitIo> {
    io: S::Reader,
    state: ReadState,
}

/// The writing half of a tunnel's WebSocket.
pub struct WsWriter<S: SplitIo> {
    io: S::Writer,
    state: WriteState,
}

/// Drains `rx` into the WebSocket, gathering whatever is queued (up to [`MAX_BATCH_FRAMES`]
/// frames or the batch limit in bytes) into one vectored write and one flush. Sends no
/// WebSocket pings: the heartbeat is the tunnel's only keepalive (docs/protocol.md), so an idle
/// tunnel wakes a phone's radio once per heartbeat, not also for pings. Returns when the queue
/// closes, a close request arrives (after a close frame), or the socket fails.
pub async fn run_writer<S>(mut w: WsWriter<S>, mut rx: OutQueue)
where
    S: SplitIo,
{
    let mut closing = false;
    while let Some(first) = rx.recv().await {
        // Allocated per batch and grown as frames come: an idle tunnel's writer holds nothing
        // while it waits, and a lone heartbeat takes a small allocation.
        let mut batch: Vec<(u8, Bytes)> = Vec::new();
        let mut bytes = 0usize;
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Out::Frame(b) => {
                    bytes += b.len();
                    batch.push((wsframe::OP_BINARY, b));
                }
                Out::Pong(p) => batch.push((wsframe::OP_PONG, p)),
                Out::Close => {
                    closing = true;
                    break;
                }
            }
            if batch.len() < MAX_BATCH_FRAMES && bytes < w.state.max_batch {
                next = rx.try_recv();
            }
        }
        if w.state.send(&mut w.io, &mut batch).await.is_err() {
            return;
        }
        if closing {
            break;
        }
    }
    w.state.close(&mut w.io).await;
}

/// When a message last arrived from the peer: written by the reader, read by the liveness
/// check of the same session loop (an atomic, so both can hold it in one `select!`).
#[derive(Debug)]
pub struct Heard {
    epoch: tokio::time::Instant,
    ms: AtomicU64,
}

impl Heard {
    /// Heard "now" (the handshake just completed).
    pub fn new() -> Heard {
        Heard { epoch: tokio::time::Instant::now(), ms: AtomicU64::new(0) }
    }

    /// Something arrived.
    pub fn mark(&self) {
        self.ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When something last arrived.
    pub fn last(&self) -> tokio::time::Instant {
        self.epoch + Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }
}

impl Default for Heard {
    fn default() -> Self {
        Heard::new()
    }
}

/// The liveness rule of [`super::protocol::liveness_timeout`] for one tunnel: the busy timeout
/// while streams are live, the idle one (from the idle heartbeat interval, when granted)
/// otherwise. When streams become live the busy timeout counts from then at the earliest, so a
/// node that was idle (heartbeating slowly) is not declared dead the moment a stream opens.
#[derive(Debug, Clone)]
pub struct Liveness {
    busy: Duration,
    idle: Duration,
    busy_since: Option<tokio::time::Instant>,
}

impl Liveness {
    /// From the intervals the server granted (WELCOME tags 3 and 9).
    pub fn new(interval_s: u16, idle_interval_s: Option<u16>) -> Liveness {
        let busy = super::protocol::liveness_timeout(interval_s);
        let idle = idle_interval_s.map(super::protocol::liveness_timeout).unwrap_or(busy).max(busy);
        Liveness { busy, idle, busy_since: None }
    }

    /// The instant after which the peer counts as dead, given when it was last heard and
    /// whether streams are live at `now`.
    pub fn deadline(
        &mut self,
        heard: tokio::time::Instant,
        busy: bool,
        now: tokio::time::Instant,
    ) -> tokio::time::Instant {
        if busy {
            let since = *self.busy_since.get_or_insert(now);
            heard.max(since) + self.busy
        } else {
            self.busy_since = None;
            heard + self.idle
        }
    }

    /// The timeout in force (for the log line of a dead tunnel).
    pub fn timeout(&self, busy: bool) -> Duration {
        if busy { self.busy } else { self.idle }
    }
}

/// Why reading frames stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadEnd {
    #[error("peer closed the connection")]
    Closed,
    #[error("no message from the peer for {0:?}")]
    Dead(Duration),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket protocol violation: {0}")]
    Ws(#[from] WsError),
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("protocol violation: text message")]
    Text,
}

impl ReadEnd {
    /// The peer broke the rules (as opposed to going away).
    pub fn is_violation(&self) -> bool {
        matches!(self, ReadEnd::Ws(_) | ReadEnd::Protocol(_) | ReadEnd::Text)
    }
}

/// Why [`next_control`] returned without a control frame.
#[derive(Debug, thiserror::Error)]
pub enum ControlEnd {
    #[error(transparent)]
    Read(#[from] ReadEnd),
    /// A frame the multiplexer refused (answered with ERROR 5).
    #[error("{0}")]
    Violation(String),
}

/// What a message means for the tunnel: a frame, nothing (pong), or the end.
fn tunnel_frame(msg: Msg) -> Result<Option<Frame>, ReadEnd> {
    match msg {
        Msg::Binary(b) => Ok(Some(Frame::decode(b)?)),
        Msg::Pong | Msg::Ping(_) => Ok(None),
        Msg::Close(_) => Err(ReadEnd::Closed),
        Msg::Text => Err(ReadEnd::Text),
    }
}

/// Reads the next frame, marking `heard` for every message (a peer's WebSocket ping counts:
/// older agents still send them, and they are answered through `mux`). No timeout here: the
/// session loop checks [`Liveness`]. Cancel-safe.
pub async fn next_frame<S>(r: &mut WsReader<S>, mux: &super::mux::Mux, heard: &Heard) -> Result<Frame, ReadEnd>
where
    S: SplitIo,
{
    loop {
        let msg = r.state.next(&mut r.io).await?;
        heard.mark();
        if let Msg::Ping(p) = &msg {
            mux.send_pong(p.clone());
        }
        if let Some(f) = tunnel_frame(msg)? {
            return Ok(f);
        }
    }
}

/// Reads frames until a control frame arrives, feeding stream frames to `mux` on the way.
/// Protocol violations are answered with `ERROR 5` before returning the reason. Cancel-safe
/// between frames, so it can sit in a `select!` loop.
pub async fn next_control<S>(r: &mut WsReader<S>, mux: &super::mux::Mux, heard: &Heard) -> Result<Frame, ControlEnd>
where
    S: SplitIo,
{
    loop {
        let frame = match next_frame(r, mux, heard).await {
            Ok(f) => f,
            Err(e) => {
                if e.is_violation() {
                    mux.send_error(super::protocol::ErrorCode::ProtocolViolation, &e.to_string());
                }
                return Err(e.into());
            }
        };
        match mux.dispatch(frame) {
            Ok(None) => continue,
            Ok(Some(control)) => return Ok(control),
            Err(v) => {
                mux.send_error(super::protocol::ErrorCode::ProtocolViolation, &v.0);
                return Err(ControlEnd::Violation(v.0));
            }
        }
    }
}

/// Reads one frame from an unsplit connection (used during the handshake).
pub async fn read_handshake_frame<S>(ws: &mut WsConn<S>) -> Result<Frame, ReadEnd>
where
    S: WsRead + AsyncWrite,
{
    loop {
        if let Some(f) = tunnel_frame(ws.next().await?)? {
            return Ok(f);
        }
    }
}

/// Sends one frame on an unsplit connection (used during the handshake).
pub async fn send_handshake_frame<S>(ws: &mut WsConn<S>, frame: &Frame) -> Result<(), ReadEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut msg = vec![(wsframe::OP_BINARY, frame.encode())];
    let send = ws.write.send(&mut ws.io, &mut msg);
    match tokio::time::timeout(HANDSHAKE_SEND_TIMEOUT, send).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ReadEnd::Io(std::io::ErrorKind::TimedOut.into())),
    }
}

/// What [`read_ws_from_test_peer`] read: the messages in order (a close frame is the last), the
/// plaintext the records handed the WebSocket reader, and why the reading ended (none after a
/// close frame).
#[doc(hidden)]
#[derive(Debug)]
pub struct TestWsRead {
    pub msgs: Vec<Msg>,
    /// Plaintext bytes the records added to the reader's buffer, in all.
    pub plain: usize,
    pub end: Option<ReadEnd>,
}

/// Reads `wire`, records from a [`super::record::TestPeer`] whose plaintext is WebSocket frames,
/// as `side`'s WebSocket reader (a server reads masked frames) with the default `[limits]`,
/// arriving in reads of `step` bytes: the tunnel's own read path, each record opened in the
/// reader's buffer (`WsRead::poll_fill`). For tests and `fuzz/fuzz_targets/ws_records.rs`;
/// `record::read_from_test_peer` is the plain `AsyncRead` path.
#[doc(hidden)]
pub fn read_ws_from_test_peer(side: super::record::Side, wire: &[u8], step: usize) -> TestWsRead {
    let role = match side {
        super::record::Side::Server => Role::Server,
        super::record::Side::Client => Role::Client,
    };
    let stream = super::record::reading_test_peer(super::record::Steps::new(wire, step), side);
    let mut io = Counted { io: stream, plain: 0 };
    let mut read = ReadState::new(role, ws_limits(&Limits::default()));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut msgs = Vec::new();
    let end = loop {
        match std::pin::pin!(read.next(&mut io)).poll(&mut cx) {
            Poll::Ready(Ok(Msg::Close(code))) => {
                msgs.push(Msg::Close(code));
                break None;
            }
            Poll::Ready(Ok(m)) => msgs.push(m),
            Poll::Ready(Err(e)) => break Some(e),
            // The steps never wait; were they to, this is where the reading would stall.
            Poll::Pending => break Some(ReadEnd::Io(std::io::ErrorKind::WouldBlock.into())),
        }
    };
    TestWsRead { msgs, plain: io.plain, end }
}

/// A stream that counts the bytes its `poll_fill` adds ([`read_ws_from_test_peer`]).
struct Counted<R> {
    io: R,
    plain: usize,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl<R: WsRead> WsRead for Counted<R> {
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        plain: &mut usize,
    ) -> Poll<std::io::Result<usize>> {
        let n = ready!(self.io.poll_fill(cx, buf, plain))?;
        self.plain += n;
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::protocol::liveness_timeout;

    #[test]
    fn a_node_takes_only_the_extension_it_offered() {
        assert_eq!(unmasked_chosen(true, ["x-traffix-unmasked"]), Ok(true));
        assert_eq!(unmasked_chosen(true, ["X-Traffix-Unmasked, "]), Ok(true), "case and a stray comma");
        assert_eq!(unmasked_chosen(true, []), Ok(false), "not echoed: the node keeps masking");
        assert_eq!(unmasked_chosen(false, []), Ok(false));
        for (offered, answer) in [
            (false, vec!["x-traffix-unmasked"]),
            (true, vec!["permessage-deflate"]),
            (true, vec!["x-traffix-unmasked", "permessage-deflate"]),
            (true, vec!["x-traffix-unmasked; v=2"]),
        ] {
            let e = unmasked_chosen(offered, answer.iter().copied()).unwrap_err();
            assert!(e.contains("did not offer"), "{e}");
        }
    }

    #[test]
    fn the_liveness_rule_is_two_and_a_half_intervals_and_ten_seconds() {
        assert_eq!(liveness_timeout(15), Duration::from_millis(47_500));
        assert_eq!(liveness_timeout(60), Duration::from_secs(160));
        assert_eq!(liveness_timeout(0), Duration::from_millis(12_500), "0 reads as 1 s");
        assert_eq!(liveness_timeout(u16::MAX), Duration::from_millis(65_535 * 2_500 + 10_000));
    }

    #[test]
    fn the_server_grants_the_configured_intervals_and_both_ends_derive_the_same_timeouts() {
        let l = crate::config::Limits::default();
        assert_eq!((l.heartbeat_interval_secs, l.idle_heartbeat_interval()), (15, Some(60)));
        let off = crate::config::Limits { heartbeat_idle_interval_secs: 0, ..l.clone() };
        assert_eq!(off.idle_heartbeat_interval(), None, "0 grants no idle interval (no tag 9)");
        let live = Liveness::new(l.heartbeat_interval_secs, l.idle_heartbeat_interval());
        assert_eq!((live.timeout(true), live.timeout(false)), (liveness_timeout(15), liveness_timeout(60)));
        // An old server (no tag 9): one interval for both.
        let old = Liveness::new(15, None);
        assert_eq!(old.timeout(false), liveness_timeout(15));
        // A shorter idle interval than the busy one is never used to cut a tunnel sooner.
        assert_eq!(Liveness::new(60, Some(15)).timeout(false), liveness_timeout(60));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_gets_the_idle_timeout_and_a_stream_opening_never_cuts_it_at_once() {
        let heard = Heard::new();
        let mut l = Liveness::new(15, Some(60));
        let t0 = tokio::time::Instant::now();
        assert_eq!(l.deadline(heard.last(), false, t0), t0 + Duration::from_secs(160));
        // 100 s of silence (an idle node heartbeats every 60 s; one was late): still alive.
        tokio::time::advance(Duration::from_secs(100)).await;
        let now = tokio::time::Instant::now();
        assert!(now < l.deadline(heard.last(), false, now));
        // A stream opens now: the busy timeout counts from now, not from the last message.
        assert_eq!(l.deadline(heard.last(), true, now), now + Duration::from_millis(47_500));
        tokio::time::advance(Duration::from_secs(10)).await;
        heard.mark();
        let now = tokio::time::Instant::now();
        assert_eq!(l.deadline(heard.last(), true, now), now + Duration::from_millis(47_500), "heard again");
        tokio::time::advance(Duration::from_secs(48)).await;
        let now = tokio::time::Instant::now();
        assert!(now >= l.deadline(heard.last(), true, now), "a busy tunnel silent for 48 s is dead");
        // Streams done: back to the idle timeout from the last message.
        assert!(now < l.deadline(heard.last(), false, now));
    }

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role as TRole;

    fn limits() -> WsLimits {
        ws_limits(&crate::config::Limits::default())
    }

    /// A peer's bytes arriving `step` at a time; what is written goes nowhere.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self.step.min(self.data.len() - self.at).min(out.remaining());
            let at = self.at;
            out.put_slice(&self.data[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_are_sliced_from_records_opened_in_the_readers_own_buffer_however_they_arrive() {
        use crate::tunnel::record::{Side, TestPeer, reading_test_peer};
        // The server's frames as a node reads them: sizes around the record size, the read
        // chunk and the frame size, cut into records of every size, some padded, with empty
        // records between, then close_notify.
        let sizes = [1usize, 0, 125, 126, 4000, 16_383, 16_384, 16_385, 65_535, 65_536, 70_000, 3, 200_000];
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..n).map(|j| (j * 31 + i * 7) as u8).collect();
            let mut h = [0u8; MAX_HEADER_LEN];
            let hl = wsframe::encode_header(&mut h, wsframe::OP_BINARY, n, None);
            stream.extend_from_slice(&h[..hl]);
            stream.extend_from_slice(&payload);
            want.push(payload);
        }
        let mut peer = TestPeer::new();
        let mut wire = Vec::new();
        let mut at = 0;
        for k in 0usize.. {
            if at == stream.len() {
                break;
            }
            let len = [1, 16_384, 7, 9000, 16_384, 300, 16_384, 16_384, 5][k % 9].min(stream.len() - at);
            let pad = if k % 4 == 3 { 1000.min(16_384 - len) } else { 0 };
            wire.extend(peer.record(23, &stream[at..at + len], 23, pad));
            if k % 5 == 0 {
                wire.extend(peer.record(23, &[], 23, 0));
            }
            at += len;
        }
        wire.extend(peer.record(23, &[1, 0], 21, 0));
        let limits =
            WsLimits { max_frame: 256 * 1024, max_message: 256 * 1024, read_chunk: 8 * 1024, max_batch: 1 << 20 };
        for step in [1, 5, 4096, 16_389, 65_536, 1 << 20] {
            let io = reading_test_peer(Trickle { data: wire.clone(), at: 0, step }, Side::Client);
            let mut ws = WsConn::new(io, Role::Client, limits);
            let mut got = Vec::new();
            let end = loop {
                match ws.next().await {
                    Ok(Msg::Binary(b)) => got.push(b.to_vec()),
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(e) => break e,
                }
            };
            assert!(matches!(end, ReadEnd::Closed), "step {step}: ends at close_notify, not {end}");
            assert_eq!(got.len(), want.len(), "step {step}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(g == w, "step {step}: message {i} ({} bytes) differs", w.len());
            }
        }
    }

    impl WsRead for Trickle {}

    /// A frame with `payload`, masked with `key` when given (a node's frame to a server).
    fn frame(op: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = wsframe::encode_header(&mut h, op, payload.len(), key);
        let mut f = h[..n].to_vec();
        let at = f.len();
        f.extend_from_slice(payload);
        if let Some(k) = key {
            wsframe::apply_mask(&mut f[at..], k);
        }
        f
    }

    fn pattern(n: usize, seed: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + seed * 7) as u8).collect()
    }

    /// `stream` sealed by `peer` as application data, in records of `sizes` bytes in turn.
    fn sealed(peer: &mut crate::tunnel::record::TestPeer, stream: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut at = 0;
        for k in 0usize.. {
            if at == stream.len() {
                break;
            }
            let n = sizes[k % sizes.len()].clamp(1, stream.len() - at);
            wire.extend(peer.record(23, &stream[at..at + n], 23, 0));
            at += n;
        }
        wire
    }

    /// What `wire` reads as through the WebSocket reader over records: the same messages and
    /// the same end however it arrives; the read in one piece.
    fn read_every_way(side: crate::tunnel::record::Side, wire: &[u8]) -> TestWsRead {
        let whole = read_ws_from_test_peer(side, wire, wire.len());
        let end = |r: &TestWsRead| r.end.as_ref().map(ToString::to_string);
        for step in [1, 2, 7, 100, 4096, 16_389] {
            let r = read_ws_from_test_peer(side, wire, step);
            assert_eq!(r.msgs, whole.msgs, "in steps of {step}");
            assert_eq!(end(&r), end(&whole), "in steps of {step}");
        }
        whole
    }

    /// The record error a read ended with, if it was one.
    fn record_error(end: &Option<ReadEnd>) -> Option<crate::tunnel::record::RecordError> {
        match end {
            Some(ReadEnd::Io(e)) => e.get_ref().and_then(|e| e.downcast_ref()).cloned(),
            _ => None,
        }
    }

    #[test]
    fn hostile_frames_and_records_end_the_websocket_reader_the_same_however_they_arrive() {
        use crate::tunnel::record::{RecordError, Side, TestPeer};
        let bin = |p: &[u8]| frame(wsframe::OP_BINARY, p, None);
        let msg = |p: &[u8]| Msg::Binary(Bytes::copy_from_slice(p));
        let close_notify = |peer: &mut TestPeer| peer.record(23, &[1, 0], 21, 0);
        let (a, b, c) = (pattern(300, 1), pattern(5000, 2), pattern(10, 3));

        // A bad tag in the middle: the frame whole before it comes out, then the record's error.
        let stream = [bin(&a), bin(&b), bin(&c)].concat();
        let mut wire = sealed(&mut TestPeer::new(), &stream, &[1000]);
        wire[3 * (5 + 1000 + 1 + 16) + 10] ^= 1;
        let r = read_every_way(Side::Client, &wire);
        assert_eq!(r.msgs, [msg(&a)]);
        assert_eq!(record_error(&r.end), Some(RecordError::BadRecordMac), "{:?}", r.end);
        assert_eq!(r.plain, 3000, "the three records before it");

        // Frames across a key update; a record of another type after them.
        let mut peer = TestPeer::new();
        let stream = [bin(&a), bin(&b)].concat();
        let mut wire = sealed(&mut peer, &stream[..2000], &[700]);
        wire.extend(peer.record(23, &[24, 0, 0, 1, 0], 22, 0));
        peer.update();
        wire.extend(sealed(&mut peer, &stream[2000..], &[900]));
        wire.extend(peer.record(22, b"x", 23, 0));
        let r = read_every_way(Side::Client, &wire);
        assert_eq!(r.msgs, [msg(&a), msg(&b)]);
        assert_eq!(record_error(&r.end), Some(RecordError::UnexpectedRecordType(22)));

        // An oversized frame header is refused before the bad record after it is reached, and
        // however the records come, the frames before it come out first.
        for len in [1u64 << 20, 1 << 62] {
            let mut stream = [bin(&a), bin(&c)].concat();
            stream.extend([0x82, 127]);
            stream.extend(len.to_be_bytes());
            stream.extend(pattern(3000, 4));
            let mut wire = sealed(&mut TestPeer::new(), &stream, &[100, 7, 4000]);
            wire.extend(TestPeer::new().record(23, b"replayed", 23, 0));
            let r = read_every_way(Side::Client, &wire);
            assert_eq!(r.msgs, [msg(&a), msg(&c)]);
            let max = crate::config::Limits::default().ws_max_frame;
            assert!(
                matches!(r.end, Some(ReadEnd::Ws(WsError::FrameTooLarge { len: l, max: m })) if l == len && m == max)
            );
        }

        // A close frame ends the messages: nothing after it is read.
        let mut peer = TestPeer::new();
        let stream = [
            bin(&a),
            frame(wsframe::OP_PING, b"p", None),
            frame(wsframe::OP_CLOSE, &[0x03, 0xe8], None),
            bin(&b),
            vec![0xff; 20],
        ]
        .concat();
        let mut wire = sealed(&mut peer, &stream, &[1, 311]);
        wire.extend(close_notify(&mut peer));
        wire.extend(b"junk after close_notify");
        let r = read_every_way(Side::Client, &wire);
        assert_eq!(r.msgs, [msg(&a), Msg::Ping(Bytes::from_static(b"p")), Msg::Close(Some(1000))]);
        assert!(r.end.is_none());

        // The server reads a node's masked frames and refuses an unmasked one.
        let key = Some([1, 2, 3, 4]);
        let stream = [frame(2, &b, key), frame(2, &c, key), bin(&a)].concat();
        let r = read_every_way(Side::Server, &sealed(&mut TestPeer::new(), &stream, &[333]));
        assert_eq!(r.msgs, [msg(&b), msg(&c)]);
        assert!(matches!(r.end, Some(ReadEnd::Ws(WsError::Unmasked))), "{:?}", r.end);

        // Truncated input: inside a record, at a record's end inside a frame, close_notify
        // inside a frame.
        let stream = [bin(&a), bin(&b)].concat();
        let wire = sealed(&mut TestPeer::new(), &stream, &[500]);
        let record = 5 + 500 + 1 + 16;
        for cut in [3, record + 2, 3 * record - 1] {
            let r = read_every_way(Side::Client, &wire[..cut]);
            assert_eq!(r.msgs.len(), usize::from(cut > record), "cut at {cut}");
            assert_eq!(record_error(&r.end), Some(RecordError::Truncated), "cut at {cut}");
        }
        let r = read_every_way(Side::Client, &wire[..4 * record]);
        assert_eq!(r.msgs, [msg(&a)]);
        assert!(matches!(&r.end, Some(ReadEnd::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof));
        assert_eq!(record_error(&r.end), None, "the records were whole: an end without close_notify");
        let mut peer = TestPeer::new();
        let mut wire = sealed(&mut peer, &stream[..4000], &[500]);
        wire.extend(close_notify(&mut peer));
        let r = read_every_way(Side::Client, &wire);
        assert_eq!(r.msgs, [msg(&a)]);
        assert!(matches!(r.end, Some(ReadEnd::Closed)), "{:?}", r.end);
    }

    #[tokio::test]
    async fn bytes_read_past_the_handshake_then_records_come_out_as_the_same_frames_however_they_arrive() {
        use crate::tunnel::record::{Side, TestPeer, reading_test_peer};
        // The server's frames as a node reads them across the switch from rustls: the WsConn
        // read the first part through rustls (and buffered what it read past the first
        // frame); rustls held the next part, handed over with the switch (`with_read`);
        // FlowBuf had read the start of the records past rustls (the carry); the rest arrives
        // from the socket.
        let sizes = [10usize, 3000, 20_000, 1, 70_000, 126, 0, 40_000];
        let payloads: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| pattern(n, i)).collect();
        let stream: Vec<u8> = payloads.iter().flat_map(|p| frame(wsframe::OP_BINARY, p, None)).collect();
        let first = 2 + sizes[0];
        let limits =
            WsLimits { max_frame: 256 * 1024, max_message: 256 * 1024, read_chunk: 8 * 1024, max_batch: 1 << 20 };
        // (bytes read through rustls, bytes rustls held): cuts inside frames and on their edges.
        for (through_rustls, held) in [(first + 1500, 10_000), (first, 0), (first + 3004, 1), (30_000, 60_000)] {
            let records_from = through_rustls + held;
            let mut peer = TestPeer::new();
            let mut wire = Vec::new();
            for (k, chunk) in stream[records_from..].chunks(9000).enumerate() {
                wire.extend(peer.record(23, chunk, 23, if k % 3 == 1 { 100 } else { 0 }));
                if k == 2 {
                    wire.extend(peer.record(23, &[], 23, 0));
                    wire.extend(peer.record(23, &[24, 0, 0, 1, 0], 22, 0));
                    peer.update();
                }
            }
            wire.extend(peer.record(23, &[1, 0], 21, 0));
            // The carry ends inside a header, inside a record, at a record's end, or is all.
            for carried in [0, 3, 4000, 9000 + 5 + 1 + 16, wire.len()] {
                for (old_step, step) in [(1 << 20, 1), (1000, 7), (1 << 20, 4096), (5, 1 << 20)] {
                    let old = Trickle { data: stream[..through_rustls].to_vec(), at: 0, step: old_step };
                    let mut ws = WsConn::new(old, Role::Client, limits);
                    assert_eq!(ws.next().await.unwrap(), Msg::Binary(payloads[0].clone().into()));
                    // FlowBuf's buffer held the carry among other bytes.
                    let flowbuf: Box<[u8]> = [&[9u8; 7][..], &wire[..carried], &[9; 11]].concat().into();
                    let later = Trickle { data: wire[carried..].to_vec(), at: 0, step };
                    let mut ws = ws
                        .map_io(|old| {
                            // What the old stream had not handed out yet, then what rustls held.
                            let rustls = [&old.data[old.at..], &stream[through_rustls..records_from]].concat();
                            let io = reading_test_peer(later, Side::Client);
                            let io = if carried > 0 { io.carrying(flowbuf, 7..7 + carried) } else { io };
                            Ok::<_, std::convert::Infallible>((io, Bytes::from(rustls)))
                        })
                        .unwrap();
                    let case = format!("through rustls {through_rustls}, held {held}, carried {carried}, step {step}");
                    for (i, p) in payloads.iter().enumerate().skip(1) {
                        match ws.next().await {
                            Ok(Msg::Binary(b)) => assert!(b == p[..], "{case}: message {i} differs"),
                            other => panic!("{case}: message {i}: {other:?}"),
                        }
                    }
                    let end = ws.next().await.unwrap_err();
                    assert!(matches!(end, ReadEnd::Closed), "{case}: {end}");
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_on_records_gives_its_read_buffer_back_when_idle_and_loses_nothing() {
        use crate::tunnel::record::{Side, TestPeer, reading_test_peer};
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut ws = WsConn::new(reading_test_peer(near, Side::Client), Role::Client, limits());
        let mut peer = TestPeer::new();
        let bin = |p: &[u8]| frame(wsframe::OP_BINARY, p, None);
        /// Nothing arrives for a while (the read is cancelled: it is cancel-safe).
        async fn idle<S: WsRead>(ws: &mut WsConn<S>) {
            assert!(tokio::time::timeout(Duration::from_secs(1), ws.next()).await.is_err(), "nothing to read");
        }
        let heartbeat = pattern(20, 0);

        // A heartbeat, then silence: no buffer.
        far.write_all(&peer.record(23, &bin(&heartbeat), 23, 0)).await.unwrap();
        assert_eq!(ws.next().await.unwrap(), Msg::Binary(heartbeat.clone().into()));
        idle(&mut ws).await;
        assert_eq!(ws.read.buf.capacity(), 0, "a heartbeat, then silence: buffer freed");

        // A burst in full records, then a heartbeat, then silence: the buffer grew, and goes.
        let burst: Vec<Vec<u8>> = (1..=8).map(|i| pattern(60_000, i)).collect();
        let stream: Vec<u8> = burst.iter().flat_map(|p| bin(p)).collect();
        far.write_all(&sealed(&mut peer, &stream, &[16_384])).await.unwrap();
        let mut grown = 0;
        for p in &burst {
            assert_eq!(ws.next().await.unwrap(), Msg::Binary(p.clone().into()));
            grown = grown.max(ws.read.buf.capacity());
        }
        assert!(grown >= FLOWING_BLOCK, "bulk reads go into blocks of two frames ({grown})");
        far.write_all(&peer.record(23, &bin(&heartbeat), 23, 0)).await.unwrap();
        assert_eq!(ws.next().await.unwrap(), Msg::Binary(heartbeat.clone().into()));
        idle(&mut ws).await;
        assert_eq!(ws.read.buf.capacity(), 0, "after the burst and a heartbeat, silence: buffer freed");

        // Silence with half a record read, or a record holding half a frame: nothing is lost.
        let small = pattern(3000, 9);
        let record = peer.record(23, &bin(&small), 23, 0);
        far.write_all(&record[..1000]).await.unwrap();
        idle(&mut ws).await;
        assert!(ws.read.buf.len() >= 1000, "the ciphertext read is kept");
        far.write_all(&record[1000..]).await.unwrap();
        assert_eq!(ws.next().await.unwrap(), Msg::Binary(small.clone().into()));
        let f = bin(&small);
        far.write_all(&peer.record(23, &f[..1500], 23, 0)).await.unwrap();
        idle(&mut ws).await;
        assert!(ws.read.plain >= 1500, "the half frame is kept");
        far.write_all(&peer.record(23, &f[1500..], 23, 0)).await.unwrap();
        assert_eq!(ws.next().await.unwrap(), Msg::Binary(small.clone().into()));

        // A burst cut inside a record and inside a frame: read, a pause, the rest.
        let wire = sealed(&mut peer, &stream, &[16_384, 1000]);
        let cut = wire.len() / 2 + 3;
        far.write_all(&wire[..cut]).await.unwrap();
        let mut got = Vec::new();
        let pause = loop {
            match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
                Ok(m) => got.push(m.unwrap()),
                Err(_) => break ws.read.buf.len(),
            }
        };
        assert!(pause > 0 && got.len() < burst.len());
        far.write_all(&wire[cut..]).await.unwrap();
        while got.len() < burst.len() {
            got.push(ws.next().await.unwrap());
        }
        for (g, p) in got.iter().zip(&burst) {
            assert_eq!(g, &Msg::Binary(p.clone().into()));
        }
        far.write_all(&peer.record(23, &bin(&heartbeat), 23, 0)).await.unwrap();
        assert_eq!(ws.next().await.unwrap(), Msg::Binary(heartbeat.into()));
        idle(&mut ws).await;
        assert_eq!(ws.read.buf.capacity(), 0, "and freed again");
    }

    /// Our server end and a tungstenite client (a node nobody here wrote) on one pipe.
    async fn server_and_tungstenite_node() -> (WsConn<tokio::io::DuplexStream>, WebSocketStream<tokio::io::DuplexStream>)
    {
        let (a, b) = tokio::io::duplex(256 * 1024);
        let node = WebSocketStream::from_raw_socket(b, TRole::Client, None).await;
        (WsConn::new(a, Role::Server, limits()), node)
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_sends_no_pings_and_a_peers_ping_counts_as_heard_and_is_answered() {
        let (server, mut node) = server_and_tungstenite_node().await;
        let (mut reader, writer) = server.split();
        let (q, rx) = crate::tunnel::mux::Mux::new(crate::tunnel::mux::MuxConfig::default());
        let writer = tokio::spawn(run_writer(writer, rx));
        // Ten idle minutes: nothing at all reaches the node (no pings, no wake-ups).
        let quiet = tokio::time::timeout(Duration::from_secs(600), node.next()).await;
        assert!(quiet.is_err(), "the server wrote {quiet:?} to an idle node");
        // A ping from an older node is heard and answered with its payload.
        let heard = Heard::new();
        tokio::time::advance(Duration::from_secs(30)).await;
        node.send(Message::Ping(vec![1, 2].into())).await.unwrap();
        node.send(Message::Binary(Frame::Drain { reason: None, deadline_s: None }.encode())).await.unwrap();
        let before = heard.last();
        let f = next_frame(&mut reader, &q, &heard).await.unwrap();
        assert!(matches!(f, Frame::Drain { .. }));
        assert!(heard.last() > before);
        match node.next().await {
            Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], &[1, 2]),
            other => panic!("expected the pong, got {other:?}"),
        }
        // Closing: the queued frame, then a close frame, then the end of the stream.
        q.send_frame(&Frame::Drain { reason: None, deadline_s: Some(5) });
        q.close("test");
        writer.await.unwrap();
        assert!(matches!(node.next().await, Some(Ok(Message::Binary(_)))));
        assert!(matches!(node.next().await, Some(Ok(Message::Close(_)))));
    }

    /// Frames both ways between our framing and tungstenite's, at every size a tunnel frame
    /// takes, in batches: each arrives whole and in order.
    #[tokio::test]
    async fn our_frames_and_tungstenites_understand_each_other_both_ways() {
        let sizes = [0usize, 1, 125, 126, 127, 65_535, 65_536];
        // Our server → tungstenite node, through the batching writer.
        let (server, mut node) = server_and_tungstenite_node().await;
        let (_reader, writer) = server.split();
        let (q, rx) = crate::tunnel::mux::Mux::new(crate::tunnel::mux::MuxConfig::default());
        let w = tokio::spawn(run_writer(writer, rx));
        let payloads: Vec<Bytes> =
            sizes.iter().map(|&n| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()).collect();
        for p in &payloads {
            assert!(q.enqueue(p.clone()));
        }
        for p in &payloads {
            match node.next().await {
                Some(Ok(Message::Binary(b))) => assert_eq!(&b, p),
                other => panic!("{other:?}"),
            }
        }
        q.close("done");
        w.await.unwrap();

        // tungstenite server → our node (client role), and our node's masked frames back.
        let (a, b) = tokio::io::duplex(256 * 1024);
        let mut server = WebSocketStream::from_raw_socket(a, TRole::Server, None).await;
        let mut ours = WsConn::new(b, Role::Client, limits());
        for p in &payloads {
            server.send(Message::Binary(p.clone())).await.unwrap();
        }
        for p in &payloads {
            assert_eq!(ours.read.next(&mut ours.io).await.unwrap(), Msg::Binary(p.clone()));
        }
        let mut batch: Vec<(u8, Bytes)> = payloads.iter().map(|p| (wsframe::OP_BINARY, p.clone())).collect();
        ours.write.send(&mut ours.io, &mut batch).await.unwrap();
        for p in &payloads {
            match server.next().await {
                Some(Ok(Message::Binary(b))) => assert_eq!(&b, p, "a masked frame from our node"),
                other => panic!("{other:?}"),
            }
        }
        // The payload we sent is unchanged for its other holders (masking copied shared bytes).
        assert_eq!(payloads[6][7], 7);
    }

    /// A node that sends a frame the tunnel does not accept ends the connection with a clear
    /// error, and a server refuses an unmasked frame (tungstenite's server role writes them).
    #[tokio::test]
    async fn unacceptable_frames_end_the_read_with_their_reason() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut server = WsConn::new(a, Role::Server, limits());
        let mut wrong_side = WebSocketStream::from_raw_socket(b, TRole::Server, None).await;
        wrong_side.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
        let e = read_handshake_frame(&mut server).await.unwrap_err();
        assert!(matches!(e, ReadEnd::Ws(WsError::Unmasked)), "{e}");
        assert!(e.is_violation());

        let (mut server, mut node) = server_and_tungstenite_node().await;
        node.send(Message::Text("hello".into())).await.unwrap();
        assert!(matches!(read_handshake_frame(&mut server).await, Err(ReadEnd::Text)));

        let (mut server, mut node) = server_and_tungstenite_node().await;
        node.send(Message::Binary(vec![0xFF; 3].into())).await.unwrap();
        assert!(matches!(read_handshake_frame(&mut server).await, Err(ReadEnd::Protocol(_))));

        let (mut server, node) = server_and_tungstenite_node().await;
        drop(node);
        assert!(matches!(read_handshake_frame(&mut server).await, Err(ReadEnd::Closed)));
    }

    /// A peer that floods pings during the handshake and never reads does not stall it (pings
    /// are not answered before WELCOME), and a frame sent to a peer that never reads is given
    /// up on after the send timeout instead of holding the task and its socket.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_cannot_hold_the_handshake() {
        let (a, b) = tokio::io::duplex(4 * 1024);
        let mut server = WsConn::new(a, Role::Server, limits());
        let mut node = WsConn::new(b, Role::Client, limits());
        let hello = Frame::Drain { reason: None, deadline_s: None };
        let mut pings: Vec<(u8, Bytes)> =
            (0..500).map(|_| (wsframe::OP_PING, Bytes::from_static(&[7u8; 125]))).collect();
        pings.push((wsframe::OP_BINARY, hello.encode()));
        let flood = tokio::spawn(async move {
            node.write.send(&mut node.io, &mut pings).await.unwrap();
            node // kept, never read
        });
        let got = read_handshake_frame(&mut server).await.unwrap();
        assert!(matches!(got, Frame::Drain { .. }), "{got:?}");
        let node = flood.await.unwrap();
        // 500 pings later, nothing was written back; now a large answer cannot be delivered.
        let big =
            Frame::Error { code: super::super::protocol::ErrorCode::ProtocolViolation, message: "x".repeat(1000) };
        let mut sent = 0;
        let end = loop {
            match send_handshake_frame(&mut server, &big).await {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(end, ReadEnd::Io(ref e) if e.kind() == std::io::ErrorKind::TimedOut), "{end}");
        assert!(sent < 10, "a 4 KiB pipe holds a few frames");
        server.close().await; // bounded too
        drop(node);
    }

    /// An idle connection gives its read buffer back; one that is moving data keeps it.
    #[tokio::test]
    async fn an_idle_connection_holds_no_read_buffer() {
        let (server, mut node) = server_and_tungstenite_node().await;
        let (mut reader, _writer) = server.split();
        let (q, _rx) = crate::tunnel::mux::Mux::new(crate::tunnel::mux::MuxConfig::default());
        let heard = Heard::new();
        node.send(Message::Binary(Frame::Drain { reason: None, deadline_s: None }.encode())).await.unwrap();
        next_frame(&mut reader, &q, &heard).await.unwrap();
        let idle = tokio::time::timeout(Duration::from_millis(20), next_frame(&mut reader, &q, &heard)).await;
        assert!(idle.is_err());
        assert_eq!(reader.state.buf.capacity(), 0, "a heartbeat-sized read, then silence: buffer freed");
    }
}
