//! `FlowBuf`: a read buffer that exists only while data flows.
//!
//! rustls pulls ciphertext from the socket 4 KiB at a time, which costs one `read` syscall per
//! 4 KiB on a busy tunnel. A plain `BufReader` would fix that but pin 64 KiB to every idle node
//! connection. `FlowBuf` reads up to [`CHUNK`] bytes per syscall into a buffer it allocates on
//! demand and frees as soon as the buffer is drained and the socket has nothing more: idle
//! connections hold no buffer at all (SECURITY.md §2: memory per idle node).
//!
//! It also follows the TLS record boundaries in what it hands out, so a connection can tell
//! that rustls holds no partial record before it leaves rustls (`super::record`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read per syscall while data flows.
pub const CHUNK: usize = 64 * 1024;

/// A fill at least this large means data is flowing: keep the buffer across a `Pending`.
const FLOWING: usize = 16 * 1024;

pub struct FlowBuf<S> {
    inner: S,
    buf: Option<Box<[u8]>>,
    pos: usize,
    end: usize,
    /// Size of the last fill from the socket.
    last_fill: usize,
    records: RecordBoundary,
}

/// Where the bytes handed out so far stand in the TLS record framing (5-byte headers, each
/// giving its record's length).
#[derive(Debug, Default, Clone, Copy)]
struct RecordBoundary {
    header: [u8; 5],
    /// Header bytes seen of the record being handed out.
    header_len: usize,
    /// Body bytes still to come of the record being handed out.
    body_left: usize,
}

impl RecordBoundary {
    fn advance(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(b.len());
                self.body_left -= n;
                b = &b[n..];
                continue;
            }
            let n = (5 - self.header_len).min(b.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&b[..n]);
            self.header_len += n;
            b = &b[n..];
            if self.header_len == 5 {
                self.header_len = 0;
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }
}

/// A read buffer and the range of it that holds bytes not handed out yet.
pub type Pending = (Box<[u8]>, std::ops::Range<usize>);

impl<S> FlowBuf<S> {
    pub fn new(inner: S) -> Self {
        FlowBuf { inner, buf: None, pos: 0, end: 0, last_fill: 0, records: RecordBoundary::default() }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether everything handed out so far ends at a TLS record boundary: then a TLS library
    /// reading through this holds no partial record.
    pub fn at_record_boundary(&self) -> bool {
        self.records.at_boundary()
    }

    /// The socket, and its read buffer with the range of bytes read from the socket that were
    /// not handed out yet (`None` when there are none).
    pub fn into_parts(self) -> (S, Option<Pending>) {
        let pending = self.buf.filter(|_| self.pos < self.end).map(|b| (b, self.pos..self.end));
        (self.inner, pending)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FlowBuf<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.end {
            // Large reads need no staging.
            if out.remaining() >= CHUNK {
                this.buf = None;
                let before = out.filled().len();
                let r = Pin::new(&mut this.inner).poll_read(cx, out);
                this.records.advance(&out.filled()[before..]);
                return r;
            }
            let buf = this.buf.get_or_insert_with(|| vec![0u8; CHUNK].into_boxed_slice());
            let mut rb = ReadBuf::new(buf);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    this.pos = 0;
                    this.end = rb.filled().len();
                    this.last_fill = this.end;
                    if this.end == 0 {
                        this.buf = None;
                        return Poll::Ready(Ok(())); // EOF
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Nothing buffered and nothing arriving. After small reads (heartbeats,
                    // pings) the connection is idle: give the buffer back. During a bulk
                    // transfer keep it, so it is not re-allocated and re-zeroed per read.
                    if this.last_fill < FLOWING {
                        this.buf = None;
                    }
                    return Poll::Pending;
                }
            }
        }
        if let Some(buf) = &this.buf {
            let n = (this.end - this.pos).min(out.remaining());
            out.put_slice(&buf[this.pos..this.pos + n]);
            this.records.advance(&buf[this.pos..this.pos + n]);
            this.pos += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FlowBuf<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, b)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, b)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_reads_see_every_byte_in_order_and_idle_frees_the_buffer() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut f = FlowBuf::new(a);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        b.write_all(&data).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < data.len() {
            let n = f.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data);
        // A bulk transfer keeps its buffer across a pause...
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), f.read(&mut chunk)).await;
        assert!(pending.is_err());
        assert!(f.buf.is_some(), "no re-allocation per read while data flows");
        // ...while small traffic (heartbeats) followed by silence gives it back.
        b.write_all(b"ping").await.unwrap();
        assert_eq!(f.read(&mut chunk).await.unwrap(), 4);
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), f.read(&mut chunk)).await;
        assert!(pending.is_err());
        assert!(f.buf.is_none(), "an idle connection holds no read buffer");
        drop(b);
        assert_eq!(f.read(&mut chunk).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn it_knows_whether_what_it_handed_out_ends_at_a_tls_record_boundary() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut f = FlowBuf::new(a);
        let mut wire = Vec::new();
        let mut boundaries = vec![0];
        for len in [0usize, 1, 300, 16_401, 5, 40_000] {
            wire.extend_from_slice(&[23, 3, 3, (len >> 8) as u8, len as u8]);
            wire.extend(std::iter::repeat_n(7u8, len));
            boundaries.push(wire.len());
        }
        b.write_all(&wire).await.unwrap();
        assert!(f.at_record_boundary());
        let mut at = 0;
        for step in [1usize, 3, 4, 5, 2, 997, 4096, 70_000].iter().cycle() {
            if at == wire.len() {
                break;
            }
            let mut chunk = vec![0u8; *step];
            let n = f.read(&mut chunk).await.unwrap();
            at += n;
            assert_eq!(f.at_record_boundary(), boundaries.contains(&at), "after {at} bytes");
        }
        // What was read from the socket and not handed out is given back.
        b.write_all(b"rest").await.unwrap();
        let mut one = [0u8; 1];
        f.read_exact(&mut one).await.unwrap();
        let (_, pending) = f.into_parts();
        let (buf, range) = pending.expect("bytes not handed out");
        assert_eq!(&buf[range], b"est");
    }
}
