//! Streamed replies on the admin socket, for answers too large for one JSON line (a backup
//! archive). After the usual reply line — `{"ok": HEADER}` or `{"error", "reason"}` — the server
//! sends frames, each a kind byte, a big-endian u32 length and that many bytes:
//!
//! | kind | payload | |
//! |---|---|---|
//! | `D` | 1..=[`MAX_CHUNK`] bytes of the stream | any number |
//! | `E` | JSON [`StreamEnd`] `{"bytes", "sha256"}` of the whole stream, ≤ [`MAX_TRAILER`] | last |
//! | `X` | JSON `{"error", "reason"}`, ≤ [`MAX_TRAILER`]: the stream failed | last |
//!
//! A reader refuses an unknown kind, an empty or oversized frame, a connection that ends
//! before `E` or `X` (truncated), and a stream whose length or SHA-256 differ from `E`'s. This
//! file is the codec alone: no sockets, no files.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::AdminError;

/// The largest data frame: a reader never buffers more than this at once.
pub const MAX_CHUNK: usize = 256 * 1024;
/// The largest end or error frame.
pub const MAX_TRAILER: usize = 16 * 1024;

const DATA: u8 = b'D';
const END: u8 = b'E';
const ERROR: u8 = b'X';

/// What the end frame says of the whole stream, for the reader to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    pub bytes: u64,
    pub sha256: String,
}

/// One frame read.
#[derive(Debug)]
pub enum Frame {
    Data(Vec<u8>),
    End(StreamEnd),
    Error(AdminError),
}

/// Why a stream was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("the stream was cut before its end (truncated)")]
    Truncated,
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("a {kind} frame of {len} bytes is larger than the {max} allowed")]
    TooLarge { kind: char, len: usize, max: usize },
    #[error("an empty data frame")]
    Empty,
    #[error("a bad end or error frame: {0}")]
    BadTrailer(String),
    #[error("the stream has {got} bytes with SHA-256 {got_sha}, its end frame says {want} bytes with {want_sha}")]
    Mismatch { got: u64, got_sha: String, want: u64, want_sha: String },
    #[error("{0}")]
    Io(String),
}

/// Writes one frame.
async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(payload).await
}

/// Writes `data` as data frames of at most [`MAX_CHUNK`] bytes.
pub async fn write_data<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    for chunk in data.chunks(MAX_CHUNK) {
        write_frame(w, DATA, chunk).await?;
    }
    Ok(())
}

/// Writes the end frame.
pub async fn write_end<W: AsyncWrite + Unpin>(w: &mut W, end: &StreamEnd) -> std::io::Result<()> {
    write_frame(w, END, &serde_json::to_vec(end).map_err(std::io::Error::other)?).await?;
    w.flush().await
}

/// Writes the error frame: the stream failed, and why.
pub async fn write_error<W: AsyncWrite + Unpin>(w: &mut W, e: &AdminError) -> std::io::Result<()> {
    let mut reason = e.reason.clone();
    reason.truncate(MAX_TRAILER / 2);
    let body = serde_json::json!({ "error": e.error, "reason": reason });
    write_frame(w, ERROR, &serde_json::to_vec(&body).map_err(std::io::Error::other)?).await?;
    w.flush().await
}

/// Reads one frame, refusing anything outside the bounds above.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, FrameError> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await.map_err(eof_is_truncated)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let max = match head[0] {
        DATA => MAX_CHUNK,
        END | ERROR => MAX_TRAILER,
        other => return Err(FrameError::UnknownKind(other)),
    };
    if len > max {
        return Err(FrameError::TooLarge { kind: char::from(head[0]), len, max });
    }
    if len == 0 && head[0] == DATA {
        return Err(FrameError::Empty);
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(eof_is_truncated)?;
    match head[0] {
        DATA => Ok(Frame::Data(payload)),
        END => serde_json::from_slice(&payload).map(Frame::End).map_err(|e| FrameError::BadTrailer(e.to_string())),
        _ => serde_json::from_slice(&payload).map(Frame::Error).map_err(|e| FrameError::BadTrailer(e.to_string())),
    }
}

fn eof_is_truncated(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof { FrameError::Truncated } else { FrameError::Io(e.to_string()) }
}

/// Reads a whole stream into `sink`, checking its length and SHA-256 against the end frame.
/// `Ok(Err(_))`: the server reported a failure mid-stream.
pub async fn read_stream<R: AsyncRead + Unpin>(
    r: &mut R,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Result<StreamEnd, AdminError>, FrameError> {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut bytes = 0u64;
    loop {
        match read_frame(r).await? {
            Frame::Data(d) => {
                hash.update(&d);
                bytes += d.len() as u64;
                sink(&d).map_err(|e| FrameError::Io(e.to_string()))?;
            }
            Frame::Error(e) => return Ok(Err(e)),
            Frame::End(end) => {
                let got_sha = hex::encode(hash.finish());
                if end.bytes != bytes || end.sha256 != got_sha {
                    return Err(FrameError::Mismatch { got: bytes, got_sha, want: end.bytes, want_sha: end.sha256 });
                }
                return Ok(Ok(end));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end_of(data: &[u8]) -> StreamEnd {
        StreamEnd { bytes: data.len() as u64, sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, data)) }
    }

    async fn encode(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_data(&mut out, data).await.unwrap();
        write_end(&mut out, &end_of(data)).await.unwrap();
        out
    }

    async fn read_all(wire: &[u8]) -> Result<Result<(StreamEnd, Vec<u8>), AdminError>, FrameError> {
        let mut got = Vec::new();
        let r = read_stream(&mut &wire[..], |d| {
            got.extend_from_slice(d);
            Ok(())
        })
        .await?;
        Ok(r.map(|end| (end, got)))
    }

    #[tokio::test]
    async fn a_stream_round_trips_in_bounded_chunks() {
        let data: Vec<u8> = (0..MAX_CHUNK * 2 + 17).map(|i| (i % 251) as u8).collect();
        let wire = encode(&data).await;
        let (end, got) = read_all(&wire).await.unwrap().unwrap();
        assert_eq!(got, data);
        assert_eq!(end, end_of(&data));
        // An empty stream is just its end frame.
        let (_, got) = read_all(&encode(&[]).await).await.unwrap().unwrap();
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn every_truncation_is_refused() {
        let wire = encode(b"some archive bytes").await;
        for n in 0..wire.len() {
            assert_eq!(read_all(&wire[..n]).await.unwrap_err(), FrameError::Truncated, "cut at {n}");
        }
    }

    #[tokio::test]
    async fn hostile_frames_are_refused_before_anything_is_buffered() {
        // A length far beyond the bounds: refused from the header alone.
        let huge = [b'D', 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(read_all(&huge).await, Err(FrameError::TooLarge { kind: 'D', .. })));
        let big_end = [b'E', 0, 1, 0, 0];
        assert!(matches!(read_all(&big_end).await, Err(FrameError::TooLarge { kind: 'E', .. })));
        assert_eq!(read_all(&[b'Z', 0, 0, 0, 1, 0]).await.unwrap_err(), FrameError::UnknownKind(b'Z'));
        assert_eq!(read_all(&[b'D', 0, 0, 0, 0]).await.unwrap_err(), FrameError::Empty);
        assert!(matches!(read_all(&[b'E', 0, 0, 0, 2, b'{', b'x']).await, Err(FrameError::BadTrailer(_))));
    }

    #[tokio::test]
    async fn a_stream_that_differs_from_its_end_frame_is_refused() {
        let mut wire = Vec::new();
        write_data(&mut wire, b"abc").await.unwrap();
        write_end(&mut wire, &end_of(b"abd")).await.unwrap();
        assert!(matches!(read_all(&wire).await, Err(FrameError::Mismatch { .. })));
        let mut wire = Vec::new();
        write_data(&mut wire, b"abc").await.unwrap();
        write_end(&mut wire, &StreamEnd { bytes: 4, ..end_of(b"abc") }).await.unwrap();
        assert!(matches!(read_all(&wire).await, Err(FrameError::Mismatch { got: 3, want: 4, .. })));
    }

    #[tokio::test]
    async fn a_failure_mid_stream_is_reported_as_the_servers_error() {
        let mut wire = Vec::new();
        write_data(&mut wire, b"partial").await.unwrap();
        write_error(&mut wire, &AdminError::new("store_error", "disk full")).await.unwrap();
        let e = read_all(&wire).await.unwrap().unwrap_err();
        assert_eq!((e.error.as_str(), e.reason.as_str()), ("store_error", "disk full"));
    }
}
