//! The WebSocket framing of RFC 6455 §5, as the tunnel uses it after the HTTP upgrade: a pure
//! decoder (bytes in, whole messages out, every limit checked before a payload is buffered) and
//! the header encoder. No I/O here, so the fuzz target drives exactly what the network does.
//!
//! The tunnel needs only part of RFC 6455: binary messages, ping/pong and close. A text message
//! is reported (the tunnel refuses it); no extension uses the RSV bits, so a set one is an
//! error, as is an unknown opcode, a fragmented or oversized control frame, a frame from a
//! client that is not masked (unless it negotiated [`UNMASKED`]), or one from a server that is.

use bytes::{Buf, Bytes, BytesMut};

/// The WebSocket extension by which a node sends its frames unmasked inside TLS
/// (docs/protocol.md "Unmasked frames"): offered in the node's `Sec-WebSocket-Extensions`,
/// accepted by the server's echoing it. It has no parameters and uses no RSV bit.
pub const UNMASKED: &str = "x-traffix-unmasked";

/// Whether a `Sec-WebSocket-Extensions` value (a comma-separated list of extensions, each with
/// optional `;`-separated parameters) names [`UNMASKED`] without parameters.
pub fn names_unmasked(value: &str) -> bool {
    value.split(',').any(|ext| ext.trim().eq_ignore_ascii_case(UNMASKED))
}

/// Which end of the WebSocket this is: the side that reads masked frames (server) or unmasked
/// ones (client), and the opposite when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// The longest frame header: 2 bytes, a 64-bit length, a 4-byte mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// One whole message, as the tunnel sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    Binary(Bytes),
    /// A text message (only its first frame is read: the tunnel refuses text).
    Text,
    Ping(Bytes),
    Pong,
    /// The peer's close frame, with its status code if it gave one.
    Close(Option<u16>),
}

/// Why the byte stream is not a WebSocket the tunnel accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("reserved bits set (no extension was negotiated)")]
    Reserved,
    #[error("unknown opcode {0}")]
    Opcode(u8),
    #[error("a client frame must be masked")]
    Unmasked,
    #[error("a server frame must not be masked")]
    Masked,
    #[error("a control frame must be final and at most 125 bytes")]
    BadControl,
    #[error("frame length has its top bit set")]
    BadLength,
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { len: u64, max: usize },
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    MessageTooLarge { len: usize, max: usize },
    #[error("continuation frame without a message to continue")]
    StrayContinuation,
    #[error("new message before the previous one ended")]
    Interleaved,
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Header length in bytes.
    len: usize,
    payload: u64,
}

/// Parses the header at the front of `b`: `Ok(None)` while it is incomplete.
fn parse_header(b: &[u8]) -> Result<Option<Header>, WsError> {
    let (Some(&b0), Some(&b1)) = (b.first(), b.get(1)) else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(WsError::Reserved);
    }
    let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0F, b1 & 0x80 != 0);
    if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
        return Err(WsError::Opcode(opcode));
    }
    let (payload, mut len) = match b1 & 0x7F {
        126 => match b.get(2..4) {
            Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(l) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(l);
                let n = u64::from_be_bytes(a);
                if n >> 63 != 0 {
                    return Err(WsError::BadLength);
                }
                (n, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode >= 8 && (!fin || payload > MAX_CONTROL_PAYLOAD as u64) {
        return Err(WsError::BadControl);
    }
    let mask = if masked {
        let Some(k) = b.get(len..len + 4) else { return Ok(None) };
        len += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Ok(Some(Header { fin, opcode, mask, len, payload }))
}

/// XORs `buf` with the mask `key` (RFC 6455 §5.3), eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(a) ^ wide).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so its mask phase is 0 again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// Writes the header of a final frame with `opcode` and a payload of `len` bytes into `out`,
/// with `mask` when it is set (a client's frame). Returns the header's length.
pub fn encode_header(out: &mut [u8; MAX_HEADER_LEN], opcode: u8, len: usize, mask: Option<[u8; 4]>) -> usize {
    out[0] = 0x80 | opcode;
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if len < 126 {
        out[1] = m | len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        out[1] = m | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = m | 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    if let Some(k) = mask {
        out[n..n + 4].copy_from_slice(&k);
        n += 4;
    }
    n
}

pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// Payloads shorter than this are copied out of the read buffer instead of sliced from it: a
/// slice keeps the whole buffer alive (a block of two frames, 128 KiB, or up to twice that when
/// it grew), and windows count only payload bytes, so a peer sending small frames that are
/// never read could pin many times what it is allowed. At or above it a slice pins at most
/// about eight times its length.
pub const COPY_BELOW: usize = 32 * 1024;

/// `body` as its own allocation when it is small, else as a slice of the read buffer.
fn own_if_small(body: BytesMut) -> Bytes {
    if body.len() < COPY_BELOW { Bytes::copy_from_slice(&body) } else { body.freeze() }
}

/// Turns a byte stream into messages. Holds only the state of a fragmented message between
/// calls; the caller owns the buffer, so a read cancelled half-way loses nothing.
#[derive(Debug)]
pub struct Decoder {
    /// We are this end: a server reads masked frames, a client unmasked ones.
    role: Role,
    max_frame: usize,
    max_message: usize,
    /// [`UNMASKED`] was negotiated: on a server, a node's frames may come unmasked.
    unmasked_ok: bool,
    /// A binary message whose later fragments are still to come.
    partial: Option<BytesMut>,
    /// Bytes the frame at the front of the buffer needs in all (header and payload), once known.
    need: usize,
}

impl Decoder {
    pub fn new(role: Role, max_frame: usize, max_message: usize) -> Decoder {
        Decoder { role, max_frame, max_message: max_message.max(max_frame), unmasked_ok: false, partial: None, need: 0 }
    }

    /// On a server that accepted [`UNMASKED`]: the node's frames may come unmasked (masked ones
    /// are still read).
    pub fn accept_unmasked(&mut self) {
        self.unmasked_ok = true;
    }

    /// Whether [`Decoder::accept_unmasked`] was called.
    pub fn unmasked_ok(&self) -> bool {
        self.unmasked_ok
    }

    /// How many bytes the buffer must hold for the next frame to be decoded (at least the
    /// longest header when nothing is known yet).
    pub fn needed(&self) -> usize {
        self.need.max(MAX_HEADER_LEN)
    }

    /// Takes whole frames off the front of `buf` until one completes a message. `Ok(None)`:
    /// more bytes are needed (see [`Decoder::needed`]). After an error the stream is not
    /// a WebSocket any more and must be dropped.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Msg>, WsError> {
        loop {
            let Some(h) = parse_header(buf)? else {
                self.need = 0;
                return Ok(None);
            };
            match (self.role, h.mask.is_some()) {
                (Role::Server, false) if !self.unmasked_ok => return Err(WsError::Unmasked),
                (Role::Client, true) => return Err(WsError::Masked),
                _ => {}
            }
            if h.payload > self.max_frame as u64 {
                return Err(WsError::FrameTooLarge { len: h.payload, max: self.max_frame });
            }
            let payload = h.payload as usize;
            if buf.len() < h.len + payload {
                self.need = h.len + payload;
                return Ok(None);
            }
            self.need = 0;
            buf.advance(h.len);
            let mut body = buf.split_to(payload);
            if let Some(k) = h.mask {
                apply_mask(&mut body, k);
            }
            match h.opcode {
                OP_BINARY | OP_TEXT if self.partial.is_some() => return Err(WsError::Interleaved),
                OP_TEXT => return Ok(Some(Msg::Text)),
                OP_BINARY if h.fin => return Ok(Some(Msg::Binary(own_if_small(body)))),
                OP_BINARY => self.partial = Some(body),
                0 => {
                    let Some(p) = self.partial.as_mut() else { return Err(WsError::StrayContinuation) };
                    let len = p.len().saturating_add(body.len());
                    if len > self.max_message {
                        return Err(WsError::MessageTooLarge { len, max: self.max_message });
                    }
                    p.extend_from_slice(&body);
                    if h.fin {
                        return Ok(self.partial.take().map(|p| Msg::Binary(p.freeze())));
                    }
                }
                // Copied: a queued pong must not keep the whole read buffer alive.
                OP_PING => return Ok(Some(Msg::Ping(Bytes::copy_from_slice(&body)))),
                OP_PONG => return Ok(Some(Msg::Pong)),
                // OP_CLOSE (the only opcode left after parse_header).
                _ => {
                    let code = (body.len() >= 2).then(|| u16::from_be_bytes([body[0], body[1]]));
                    return Ok(Some(Msg::Close(code)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer in `from` would write it (masked when it is a client).
    fn frame(from: Role, b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = [0u8; MAX_HEADER_LEN];
        let key = (from == Role::Client).then_some([0x37, 0xfa, 0x21, 0x3d]);
        let n = encode_header(&mut h, b0 & 0x0F, payload.len(), key);
        h[0] = b0;
        let mut out = h[..n].to_vec();
        let mut p = payload.to_vec();
        if let Some(k) = key {
            apply_mask(&mut p, k);
        }
        out.extend_from_slice(&p);
        out
    }

    fn decode_all(role: Role, wire: &[u8]) -> Result<Vec<Msg>, WsError> {
        let mut d = Decoder::new(role, 64 * 1024, 256 * 1024);
        let mut buf = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn rfc_6455_examples_decode() {
        // §5.7: a single-frame unmasked text message, and a masked one.
        assert_eq!(decode_all(Role::Client, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]), Ok(vec![Msg::Text]));
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(decode_all(Role::Server, &masked), Ok(vec![Msg::Text]));
        // The masked "Hello" as binary unmasks to the text.
        let mut bin = masked;
        bin[0] = 0x82;
        assert_eq!(decode_all(Role::Server, &bin), Ok(vec![Msg::Binary(Bytes::from_static(b"Hello"))]));
        // An unmasked ping and its masked pong.
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(decode_all(Role::Client, &ping), Ok(vec![Msg::Ping(Bytes::from_static(b"Hello"))]));
        let pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(decode_all(Role::Server, &pong), Ok(vec![Msg::Pong]));
        // 256 bytes in one unmasked binary frame: the 16-bit length form.
        let mut big = vec![0x82, 0x7E, 0x01, 0x00];
        big.extend_from_slice(&[7u8; 256]);
        assert_eq!(decode_all(Role::Client, &big), Ok(vec![Msg::Binary(Bytes::from(vec![7u8; 256]))]));
    }

    #[test]
    fn encoded_headers_round_trip_at_every_length_form() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 70_000] {
            for from in [Role::Client, Role::Server] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let wire = frame(from, 0x82, &payload);
                let to = if from == Role::Client { Role::Server } else { Role::Client };
                let mut d = Decoder::new(to, 128 * 1024, 128 * 1024);
                let mut buf = BytesMut::from(&wire[..]);
                assert_eq!(d.decode(&mut buf), Ok(Some(Msg::Binary(Bytes::from(payload)))), "{len} from {from:?}");
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn masking_matches_the_bytewise_definition_at_every_alignment() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }

    #[test]
    fn a_frame_split_anywhere_decodes_once_it_is_whole() {
        let wire = [frame(Role::Client, 0x82, b"first"), frame(Role::Client, 0x82, &[9u8; 300])].concat();
        for cut in 0..wire.len() {
            let mut d = Decoder::new(Role::Server, 64 * 1024, 64 * 1024);
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(m) = d.decode(&mut buf).unwrap() {
                got.push(m);
            }
            assert!(d.needed() > buf.len(), "cut {cut}: asks for more than it has");
            buf.extend_from_slice(&wire[cut..]);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                got.push(m);
            }
            assert_eq!(got.len(), 2, "cut {cut}");
            assert_eq!(got[1], Msg::Binary(Bytes::from(vec![9u8; 300])));
        }
    }

    #[test]
    fn fragments_are_joined_and_control_frames_may_come_between_them() {
        let wire = [
            frame(Role::Client, 0x02, b"ab"),
            frame(Role::Client, 0x89, b"p"),
            frame(Role::Client, 0x00, b"cd"),
            frame(Role::Client, 0x80, b"e"),
        ]
        .concat();
        assert_eq!(
            decode_all(Role::Server, &wire),
            Ok(vec![Msg::Ping(Bytes::from_static(b"p")), Msg::Binary(Bytes::from_static(b"abcde"))])
        );
    }

    #[test]
    fn close_frames_carry_their_code() {
        assert_eq!(
            decode_all(Role::Client, &frame(Role::Server, 0x88, &[0x03, 0xe8, b'x'])),
            Ok(vec![Msg::Close(Some(1000))])
        );
        assert_eq!(decode_all(Role::Client, &frame(Role::Server, 0x88, &[])), Ok(vec![Msg::Close(None)]));
    }

    #[test]
    fn hostile_frames_are_refused_before_anything_is_buffered() {
        let bad = |role, wire: &[u8]| decode_all(role, wire).unwrap_err();
        assert_eq!(bad(Role::Server, &frame(Role::Server, 0x82, b"x")), WsError::Unmasked);
        assert_eq!(bad(Role::Client, &frame(Role::Client, 0x82, b"x")), WsError::Masked);
        assert_eq!(bad(Role::Client, &frame(Role::Server, 0xC2, b"x")), WsError::Reserved);
        assert_eq!(bad(Role::Client, &frame(Role::Server, 0x83, b"x")), WsError::Opcode(3));
        assert_eq!(bad(Role::Client, &frame(Role::Server, 0x8B, b"x")), WsError::Opcode(11));
        assert_eq!(bad(Role::Client, &frame(Role::Server, 0x09, b"x")), WsError::BadControl, "fragmented ping");
        assert_eq!(bad(Role::Client, &frame(Role::Server, 0x89, &[0u8; 126])), WsError::BadControl);
        assert_eq!(bad(Role::Client, &frame(Role::Server, 0x80, b"x")), WsError::StrayContinuation);
        let interleaved = [frame(Role::Server, 0x02, b"a"), frame(Role::Server, 0x82, b"b")].concat();
        assert_eq!(bad(Role::Client, &interleaved), WsError::Interleaved);
        // Lengths are judged from the header alone: a 2^62-byte frame and one just past the
        // limit are refused with nothing but their header received.
        assert_eq!(
            bad(Role::Client, &[0x82, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 0]),
            WsError::FrameTooLarge { len: 1 << 62, max: 64 * 1024 }
        );
        assert_eq!(bad(Role::Client, &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]), WsError::BadLength);
        assert_eq!(
            bad(Role::Client, &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 1]),
            WsError::FrameTooLarge { len: 65_537, max: 64 * 1024 }
        );
        // Fragments may not add up past the message limit.
        let mut d = Decoder::new(Role::Client, 64 * 1024, 100 * 1024);
        let mut buf = BytesMut::from(&frame(Role::Server, 0x02, &[1u8; 60 * 1024])[..]);
        buf.extend_from_slice(&frame(Role::Server, 0x80, &[1u8; 60 * 1024]));
        assert_eq!(d.decode(&mut buf), Err(WsError::MessageTooLarge { len: 120 * 1024, max: 100 * 1024 }));
    }

    /// Small payloads (and every ping) are copied out of the read buffer, so what a peer holds
    /// queued or unread never pins a whole buffer; large ones are slices of it (no copy).
    #[test]
    fn small_payloads_own_their_bytes_and_large_ones_are_slices() {
        let wire = [
            frame(Role::Client, 0x82, b"tiny"),
            frame(Role::Client, 0x89, b"ping"),
            frame(Role::Client, 0x82, &[3u8; COPY_BELOW]),
        ]
        .concat();
        let mut buf = BytesMut::with_capacity(128 * 1024);
        buf.extend_from_slice(&wire);
        let start = buf.as_ptr() as usize;
        let inside = |p: *const u8| (start..start + 128 * 1024).contains(&(p as usize));
        let mut d = Decoder::new(Role::Server, 64 * 1024, 64 * 1024);
        let Ok(Some(Msg::Binary(tiny))) = d.decode(&mut buf) else { panic!("binary") };
        let Ok(Some(Msg::Ping(ping))) = d.decode(&mut buf) else { panic!("ping") };
        let Ok(Some(Msg::Binary(big))) = d.decode(&mut buf) else { panic!("binary") };
        assert_eq!((&tiny[..], &ping[..], big.len()), (&b"tiny"[..], &b"ping"[..], COPY_BELOW));
        assert!(!inside(tiny.as_ptr()) && !inside(ping.as_ptr()), "copied");
        assert!(inside(big.as_ptr()), "a full frame is not copied");
    }

    #[test]
    fn truncated_input_only_asks_for_more() {
        let wire = frame(Role::Client, 0x82, &[5u8; 1000]);
        for cut in 0..wire.len() {
            let mut d = Decoder::new(Role::Server, 64 * 1024, 64 * 1024);
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(d.decode(&mut buf), Ok(None), "cut {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed before the frame is whole");
        }
    }

    /// tests/vectors/websocket.json (shared with the Kotlin node): which extension offers name
    /// `x-traffix-unmasked`, and the node's frames with and without masking. Our encoder writes
    /// each; a server decoder reads a masked one always and an unmasked one only after the
    /// extension was accepted.
    #[test]
    fn the_shared_websocket_vectors_hold() {
        let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/websocket.json"));
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["extension"], UNMASKED);
        for o in v["offers"].as_array().unwrap() {
            let value = o["value"].as_str().unwrap();
            assert_eq!(names_unmasked(value), o["names_unmasked"].as_bool().unwrap(), "{value:?}");
        }
        let frames = v["node_frames"].as_array().unwrap();
        assert!(frames.len() >= 6);
        for f in frames {
            let name = f["name"].as_str().unwrap();
            let op = f["op"].as_u64().unwrap() as u8;
            let payload = hex::decode(f["payload"].as_str().unwrap()).unwrap();
            let wire = hex::decode(f["hex"].as_str().unwrap()).unwrap();
            let key = f["key"].as_str().map(|k| <[u8; 4]>::try_from(hex::decode(k).unwrap()).unwrap());
            let mut h = [0u8; MAX_HEADER_LEN];
            let n = encode_header(&mut h, op, payload.len(), key);
            let mut body = BytesMut::from(&payload[..]);
            if let Some(k) = key {
                apply_mask(&mut body, k);
            }
            assert_eq!([&h[..n], &body[..]].concat(), wire, "{name}: encoded");
            let expect = if op == OP_TEXT { Msg::Text } else { Msg::Binary(Bytes::from(payload.clone())) };
            let mut negotiated = Decoder::new(Role::Server, 64 * 1024, 64 * 1024);
            negotiated.accept_unmasked();
            assert_eq!(negotiated.decode(&mut BytesMut::from(&wire[..])), Ok(Some(expect)), "{name}: negotiated");
            let plain = Decoder::new(Role::Server, 64 * 1024, 64 * 1024).decode(&mut BytesMut::from(&wire[..]));
            if key.is_some() {
                assert!(matches!(plain, Ok(Some(_))), "{name}: a masked frame is always read");
            } else {
                assert_eq!(plain, Err(WsError::Unmasked), "{name}: refused without the extension");
            }
        }
    }
}
