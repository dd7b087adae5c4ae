//! A client's socket while its front-end reads the handshake: reads go through a small buffer,
//! so a parser that asks for a few bytes at a time (fast-socks5 reads each field of a message
//! with its own `read_exact`) costs one `recvfrom` per message the client sends instead of one
//! per field — six fewer system calls on every new SOCKS5 stream. After the handshake
//! ([`HandshakeIo::finish`]) the buffer is given back; bytes the client sent ahead of the reply
//! are read first, then reads go straight to the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Room for the largest SOCKS5 message (RFC 1929's request: 513 bytes) and what may come
/// with it.
const HANDSHAKE_BUF: usize = 1024;

/// A socket whose reads are buffered until [`HandshakeIo::finish`].
pub struct HandshakeIo<S> {
    io: S,
    /// `pos..end` read from the socket and not handed out yet; `None` once finished and drained.
    buf: Option<Box<[u8]>>,
    pos: usize,
    end: usize,
    finished: bool,
}

// The buffer holds the client's credentials: never printed.
impl<S> std::fmt::Debug for HandshakeIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeIo").field("buffered", &(self.end - self.pos)).finish_non_exhaustive()
    }
}

impl<S> HandshakeIo<S> {
    pub fn new(io: S) -> HandshakeIo<S> {
        HandshakeIo { io, buf: Some(vec![0u8; HANDSHAKE_BUF].into_boxed_slice()), pos: 0, end: 0, finished: false }
    }

    /// The handshake is over: the buffer goes as soon as what it holds has been read.
    pub fn finish(&mut self) {
        self.finished = true;
        self.release_if_drained();
    }

    /// Bytes read from the socket and not handed out yet.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.end - self.pos
    }

    fn release_if_drained(&mut self) {
        if self.finished && self.pos == self.end {
            self.buf = None;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HandshakeIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(buf) = this.buf.as_deref_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, out);
        };
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.pos == this.end {
            let mut rb = ReadBuf::new(buf);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            this.pos = 0;
            this.end = rb.filled().len();
        }
        // Nothing read: the end of the stream, which the caller sees as an empty read.
        let n = (this.end - this.pos).min(out.remaining());
        out.put_slice(&buf[this.pos..this.pos + n]);
        this.pos += n;
        this.release_if_drained();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HandshakeIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, b)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use fast_socks5::server::{PasswordAuthentication, Socks5ServerProtocol};
    use fast_socks5::util::target_addr::TargetAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Counts the reads that reach the stream underneath.
    struct Counted<S> {
        io: S,
        reads: usize,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let r = Pin::new(&mut self.io).poll_read(cx, out);
            if r.is_ready() {
                self.reads += 1;
            }
            r
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.io).poll_write(cx, b)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    fn auth(user: &str, pass: &str) -> Vec<u8> {
        let mut m = vec![1, user.len() as u8];
        m.extend_from_slice(user.as_bytes());
        m.push(pass.len() as u8);
        m.extend_from_slice(pass.as_bytes());
        m
    }

    const GREETING: [u8; 3] = [5, 1, 2];
    const CONNECT: [u8; 10] = [5, 1, 0, 1, 10, 0, 0, 7, 0x1f, 0x90];

    /// The server side of a SOCKS5 sign-in and CONNECT over `io`, as the front-end runs it.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> (HandshakeIo<S>, String, String, TargetAddr) {
        let started = Socks5ServerProtocol::start(HandshakeIo::new(io))
            .negotiate_auth(&[PasswordAuthentication])
            .await
            .expect("greeting");
        let (user, pass, auth) = started.read_username_password().await.expect("credentials");
        let proto = fast_socks5::server::AuthMethodSuccessState::finish_auth(auth.accept().await.expect("accept"));
        let (proto, _, target) = proto.read_command().await.expect("command");
        let mut io = proto.reply_success(SocketAddr::from(([0, 0, 0, 0], 0))).await.expect("reply");
        io.finish();
        (io, user, pass, target)
    }

    #[tokio::test]
    async fn each_message_of_the_sign_in_costs_one_read_of_the_socket() {
        let (mut client, server) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move {
            let (io, user, pass, target) = serve(Counted { io: server, reads: 0 }).await;
            (io.io.reads, io.buf.is_none(), user, pass, target.to_string())
        });
        let mut answer = [0u8; 2];
        client.write_all(&GREETING).await.unwrap();
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer, [5, 2]);
        client.write_all(&auth("alice-country-de", "pw")).await.unwrap();
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer, [1, 0]);
        client.write_all(&CONNECT).await.unwrap();
        let mut reply = [0u8; 10];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply[..2], [5, 0]);
        let (reads, released, user, pass, target) = task.await.unwrap();
        // Field by field it was 2 + 4 + 3 reads (version and count, then the methods; version,
        // name length, name, password length and password; the request's parts).
        assert_eq!(reads, 3, "one read per message");
        assert!(released, "the buffer goes once the handshake is over");
        assert_eq!((user.as_str(), pass.as_str(), target.as_str()), ("alice-country-de", "pw", "10.0.0.7:8080"));
    }

    #[tokio::test]
    async fn bytes_a_client_sends_ahead_of_the_reply_are_read_first_then_the_socket() {
        let (mut client, server) = tokio::io::duplex(4096);
        // Everything in one write: greeting, credentials, request and the first bytes of the
        // stream, which a pipelining client sends before it has seen a reply.
        let mut ahead = GREETING.to_vec();
        ahead.extend(auth("bob", "secret"));
        ahead.extend(CONNECT);
        ahead.extend(b"GET / HTTP/1.1\r\n");
        client.write_all(&ahead).await.unwrap();
        let (mut io, user, _, _) = serve(server).await;
        assert_eq!(user, "bob");
        assert_eq!(io.buffered(), 16, "the stream's first bytes are kept");
        let mut answers = vec![0u8; 2 + 2 + 10];
        client.read_exact(&mut answers).await.unwrap();
        assert_eq!(answers[..4], [5, 2, 1, 0]);
        client.write_all(b"Host: x\r\n\r\n").await.unwrap();
        let mut first = vec![0u8; 16];
        io.read_exact(&mut first).await.unwrap();
        assert_eq!(first, b"GET / HTTP/1.1\r\n");
        assert!(io.buf.is_none(), "drained after the handshake: given back");
        let mut rest = vec![0u8; 11];
        io.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, b"Host: x\r\n\r\n");
        io.write_all(b"ok").await.unwrap();
        let mut ok = [0u8; 2];
        client.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"ok");
    }

    #[tokio::test]
    async fn truncated_and_oversized_handshakes_fail_cleanly() {
        // Credentials cut short, then the end of the stream.
        let (mut client, server) = tokio::io::duplex(4096);
        let mut cut = GREETING.to_vec();
        cut.extend(&auth("carol", "pw")[..4]);
        client.write_all(&cut).await.unwrap();
        client.shutdown().await.unwrap();
        let started = Socks5ServerProtocol::start(HandshakeIo::new(server))
            .negotiate_auth(&[PasswordAuthentication])
            .await
            .expect("greeting");
        assert!(started.read_username_password().await.is_err(), "truncated credentials are an error");

        // A greeting that claims 255 methods and sends 2000 bytes of garbage after them: read
        // through the 1 KiB buffer in pieces, refused for the garbage, never panicking.
        let (mut client, server) = tokio::io::duplex(8192);
        let mut big = vec![5, 255];
        big.extend(std::iter::repeat_n(0x42, 2000));
        client.write_all(&big).await.unwrap();
        client.shutdown().await.unwrap();
        let r = Socks5ServerProtocol::start(HandshakeIo::new(server)).negotiate_auth(&[PasswordAuthentication]).await;
        assert!(r.is_err(), "no acceptable method among 255 unknown ones");
    }
}
