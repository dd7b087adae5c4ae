//! The HTTP proxy front-end: `CONNECT host:port` tunnels and absolute-URI requests
//! (`GET http://host/path`) forwarded with keep-alive, authenticated with
//! `Proxy-Authorization: Basic`. Errors follow SPEC.md's table with an RFC 9209
//! `Proxy-Status` header and a body that says why. After a refused CONNECT the connection is
//! closed. Request heads are bounded ([`MAX_HEAD`]) and read under the handshake timeout.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info_span};

use crate::listener::{Admitted, Gate, Refused};
use crate::relay::accounts::{AuthFailure, Denied, ProxyAccount};
use crate::relay::router::RouteError;
use crate::relay::username::Targeting;
use crate::relay::{ConnectError, RelayService};
use crate::shutdown::Shutdown;
use crate::target::{OpenErrReason, Target};
use crate::telemetry::Frontend;

/// Largest request or response head accepted.
pub const MAX_HEAD: usize = 32 * 1024;
/// Most headers in one head.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line.
const MAX_CHUNK_LINE: usize = 1024;

/// An HTTP error response: status, RFC 9209 error token, reason.
#[derive(Debug, Clone)]
pub struct HttpError {
    pub status: u16,
    pub proxy_error: &'static str,
    pub reason: String,
}

impl HttpError {
    fn new(status: u16, proxy_error: &'static str, reason: impl Into<String>) -> Self {
        HttpError { status, proxy_error, reason: reason.into() }
    }

    /// The full response, `Connection: close` included when `close`.
    pub fn response(&self, close: bool) -> Vec<u8> {
        let text = match self.status {
            400 => "Bad Request",
            402 => "Payment Required",
            403 => "Forbidden",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Error",
        };
        let body = format!("{}\n", self.reason);
        let details = self.reason.replace(['"', '\\'], "'").replace(|c: char| c.is_control(), " ");
        let mut r = format!(
            "HTTP/1.1 {} {text}\r\nProxy-Status: traffix; error={}; details=\"{details}\"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            self.status,
            self.proxy_error,
            body.len()
        );
        if self.status == 407 {
            r.push_str("Proxy-Authenticate: Basic realm=\"traffix\"\r\n");
        }
        if close {
            r.push_str("Connection: close\r\n");
        }
        r.push_str("\r\n");
        r.push_str(&body);
        r.into_bytes()
    }
}

/// SPEC.md's failure table, HTTP column.
pub fn error_for(e: &ConnectError) -> HttpError {
    let reason = e.to_string();
    match e {
        ConnectError::Denied(Denied::BalanceExhausted) => HttpError::new(402, "http_request_denied", reason),
        ConnectError::Denied(Denied::Disabled(_)) => HttpError::new(403, "http_request_denied", reason),
        ConnectError::Denied(Denied::TooManyStreams(_) | Denied::RateLimited(_)) => {
            HttpError::new(429, "http_request_denied", reason)
        }
        ConnectError::Route(RouteError::Policy(_)) => HttpError::new(403, "http_request_denied", reason),
        ConnectError::Route(RouteError::NoNode(_)) => HttpError::new(503, "destination_unavailable", reason),
        ConnectError::Route(RouteError::Node { reason: r, .. }) => match r {
            OpenErrReason::RefusedByPolicy => HttpError::new(403, "http_request_denied", reason),
            OpenErrReason::DnsFailed => HttpError::new(502, "destination_not_found", reason),
            OpenErrReason::ConnectionRefused => HttpError::new(502, "connection_refused", reason),
            OpenErrReason::Timeout => HttpError::new(502, "connection_timeout", reason),
            OpenErrReason::NodeBusy | OpenErrReason::Draining => HttpError::new(503, "destination_unavailable", reason),
            _ => HttpError::new(502, "destination_unavailable", reason),
        },
        ConnectError::Route(RouteError::NodeFailed(_)) => HttpError::new(502, "proxy_internal_error", reason),
        ConnectError::Billing(_) => HttpError::new(503, "proxy_internal_error", reason),
    }
}

fn auth_error(e: &AuthFailure) -> HttpError {
    HttpError::new(407, "http_request_denied", e.to_string())
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| String::from_utf8_lossy(v).split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Whether the client wants the connection kept after this exchange.
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") || self.has_token("proxy-connection", "close") {
            return false;
        }
        self.version >= 1
            || self.has_token("connection", "keep-alive")
            || self.has_token("proxy-connection", "keep-alive")
    }
}

/// Parses a request head (everything up to and including the blank line).
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let head = RequestHead {
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                version: req.version.unwrap_or(1),
                headers: req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
            };
            Ok(Some((head, n)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            Err(HttpError::new(431, "http_request_error", "request head too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            Err(HttpError::new(431, "http_request_error", "too many request headers"))
        }
        Err(e) => Err(HttpError::new(400, "http_request_error", format!("malformed request: {e}"))),
    }
}

/// Decodes `Proxy-Authorization: Basic …` into (username, password).
pub fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let v = std::str::from_utf8(value).ok()?.trim();
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Splits `host:port` / `[v6]:port` into a target; `default_port` when the port is absent.
pub fn parse_authority(auth: &str, default_port: Option<u16>) -> Result<Target, HttpError> {
    let bad = || HttpError::new(400, "http_request_error", format!("bad target authority {auth:?}"));
    let (host, port) = if let Some(rest) = auth.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if tail.is_empty() => default_port.ok_or_else(bad)?,
            None => return Err(bad()),
        };
        (h.to_owned(), port)
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), p.parse::<u16>().map_err(|_| bad())?),
            Some(_) => return Err(bad()),
            None => (auth.to_owned(), default_port.ok_or_else(bad)?),
        }
    };
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Target::Ip(SocketAddr::new(ip, port)),
        Err(_) => Target::Domain(host, port),
    })
}

/// Splits an absolute `http://authority/path?query` URI into (target, origin-form path).
pub fn parse_absolute_uri(uri: &str) -> Result<(Target, String), HttpError> {
    let lower = uri.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let rest = if lower.starts_with("http://") {
        &uri[7..]
    } else if lower.starts_with("https://") {
        return Err(HttpError::new(400, "http_request_error", "https:// URIs must use CONNECT"));
    } else {
        return Err(HttpError::new(
            400,
            "http_request_error",
            "a proxy request needs an absolute http:// URI or CONNECT",
        ));
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit_once('@').map(|(_, a)| a).unwrap_or(authority);
    let path = path.split('#').next().unwrap_or("/");
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    Ok((parse_authority(authority, Some(80))?, if path.is_empty() { "/".into() } else { path }))
}

/// The size of a chunk from its chunk-size line (RFC 9112 §7.1: `1*HEXDIG [ chunk-ext ] CRLF`).
/// `None` for anything else: no digits, a sign (`+5`, which `from_str_radix` would take), white
/// space inside the number, or more than 15 hex digits (a size no body reaches, and one that
/// leaves room for the chunk's own CRLF, so the arithmetic after it cannot overflow).
pub fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = match line.iter().position(|&b| b == b';') {
        // Chunk extensions may follow the size after optional white space (BWS).
        Some(i) => line[..i].trim_ascii_end(),
        None => line,
    };
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| Some(n * 16 + u64::from(char::from(d).to_digit(16)?)))
}

/// A buffered reader with explicit limits.
struct Reader<R> {
    inner: R,
    buf: BytesMut,
    /// Longest wait for the next bytes (`TimedOut` past it); `None`: no limit.
    idle: Option<std::time::Duration>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(inner: R) -> Self {
        Reader { inner, buf: BytesMut::with_capacity(8 * 1024), idle: None }
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8 * 1024);
        }
        match self.idle {
            Some(d) => tokio::time::timeout(d, self.inner.read_buf(&mut self.buf))
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            None => self.inner.read_buf(&mut self.buf).await,
        }
    }

    /// Reads one line (with its CRLF) of at most `max` bytes.
    async fn line(&mut self, max: usize) -> std::io::Result<Bytes> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.split_to(i + 1).freeze());
            }
            if self.buf.len() > max {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"));
            }
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Copies exactly `n` bytes to `w`.
    async fn copy_n<W: AsyncWrite + Unpin>(&mut self, w: &mut W, mut n: u64) -> std::io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() && self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let k = (self.buf.len() as u64).min(n) as usize;
            w.write_all(&self.buf[..k]).await?;
            self.buf.advance(k);
            n -= k as u64;
        }
        Ok(())
    }

    /// Copies a chunked body (chunks, last chunk, trailers) verbatim to `w`.
    async fn copy_chunked<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        loop {
            let line = self.line(MAX_CHUNK_LINE).await?;
            w.write_all(&line).await?;
            let size = chunk_size(&line)
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                loop {
                    let t = self.line(MAX_HEAD).await?;
                    w.write_all(&t).await?;
                    if t.as_ref() == b"\r\n" || t.as_ref() == b"\n" {
                        return Ok(());
                    }
                }
            }
            // The size is at most 15 hex digits, so adding the chunk's CRLF cannot overflow.
            self.copy_n(w, size.saturating_add(2)).await?;
        }
    }

    /// Copies everything until EOF.
    async fn copy_to_end<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        loop {
            if !self.buf.is_empty() {
                w.write_all(&self.buf).await?;
                self.buf.clear();
            }
            if self.fill().await? == 0 {
                return Ok(());
            }
        }
    }
}

/// A socket with bytes already read in front of it (for CONNECT after a buffered head).
struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts HTTP proxy clients until shutdown.
pub async fn serve(listener: TcpListener, svc: Arc<RelayService>, shutdown: Shutdown) {
    let gate = Gate::new("http_proxy", svc.limits.proxy_conn_limits(), svc.metrics.connections_refused.clone());
    super::serve_frontend(
        listener,
        svc,
        shutdown,
        gate,
        |peer| info_span!("http_proxy", client_addr = %peer),
        refuse,
        |sock, peer, svc, admitted| async move { handle(sock, peer, &svc, admitted).await },
    )
    .await
}

/// Over a connection cap: a 503 with `Retry-After`, written without waiting (a fresh socket's
/// send buffer has room for it), then the connection is closed.
fn refuse(sock: &TcpStream, why: Refused) {
    let e = HttpError::new(503, "connection_limit_reached", why.as_str());
    let mut resp = e.response(true).to_vec();
    // Before the blank line that ends the head.
    if let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
        resp.splice(i + 2..i + 2, b"Retry-After: 5\r\n".iter().copied());
    }
    let _ = sock.try_write(&resp);
}

async fn reply(sock: &mut Reader<TcpStream>, e: &HttpError, close: bool) {
    let _ = sock.inner.write_all(&e.response(close)).await;
    if close {
        let _ = sock.inner.shutdown().await;
    }
}

/// The upstream of a keep-alive client connection: one opened stream at a time.
struct Upstream {
    target: Target,
    io: Reader<tokio::io::DuplexStream>,
    relay: tokio::task::JoinHandle<()>,
}

async fn handle(sock: TcpStream, peer: SocketAddr, svc: &Arc<RelayService>, mut admitted: Admitted) {
    let mut conn = Reader::new(sock);
    // A request body that stops arriving is cut like an idle stream (it used to hold the
    // connection for as long as the client kept it open).
    conn.idle = Some(svc.limits.idle_timeout());
    let mut upstream: Option<Upstream> = None;
    let mut first = true;
    loop {
        // The first head must come within the handshake timeout; later ones within the idle one.
        let wait = if first { svc.limits.handshake_timeout() } else { svc.limits.idle_timeout() };
        first = false;
        let head = match tokio::time::timeout(wait, read_head(&mut conn)).await {
            Err(_) | Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                reply(&mut conn, &e, true).await;
                break;
            }
            Ok(Ok(Some(h))) => h,
        };
        let creds = head.header("proxy-authorization").and_then(basic_credentials);
        let Some((user, pass)) = creds else {
            svc.metrics.stream_result(Frontend::Http, "auth");
            reply(&mut conn, &HttpError::new(407, "http_request_denied", "proxy authentication required"), true).await;
            break;
        };
        let (acct, targeting) = match svc.accounts.authenticate(&user, &pass, peer.ip()) {
            Ok(x) => x,
            Err(e) => {
                svc.metrics.proxy_auth_failures.inc();
                svc.metrics.stream_result(Frontend::Http, "auth");
                if crate::telemetry::PROXY_AUTH_FAILURES.admit_now("proxy authentication failures") {
                    tracing::info!(user = %user.escape_debug(), reason = %e, "http proxy authentication failed");
                }
                reply(&mut conn, &auth_error(&e), true).await;
                break;
            }
        };
        admitted.handshake_done();
        if head.method.eq_ignore_ascii_case("CONNECT") {
            let target = match parse_authority(&head.target, None) {
                Ok(t) => t,
                Err(e) => {
                    reply(&mut conn, &e, true).await;
                    break;
                }
            };
            drop(upstream.take());
            connect_tunnel(conn, svc, &acct, &targeting, target).await;
            return;
        }
        match forward(&mut conn, &mut upstream, svc, &acct, &targeting, &head).await {
            Ok(true) if head.keep_alive() => continue,
            Ok(_) => break,
            Err(e) => {
                reply(&mut conn, &e, true).await;
                break;
            }
        }
    }
    if let Some(u) = upstream {
        drop(u.io);
        let _ = u.relay.await;
    }
}

async fn read_head(conn: &mut Reader<TcpStream>) -> Result<Option<RequestHead>, HttpError> {
    loop {
        if !conn.buf.is_empty()
            && let Some((head, n)) = parse_request_head(&conn.buf)?
        {
            conn.buf.advance(n);
            return Ok(Some(head));
        }
        match conn.fill().await {
            Ok(0) if conn.buf.is_empty() => return Ok(None),
            Ok(0) => return Err(HttpError::new(400, "http_request_error", "connection closed inside a request head")),
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
    }
}

async fn connect_tunnel(
    mut conn: Reader<TcpStream>,
    svc: &Arc<RelayService>,
    acct: &ProxyAccount,
    targeting: &Targeting,
    target: Target,
) {
    let opened = match svc.connect(Frontend::Http, acct, targeting, target.clone()).await {
        Ok(o) => o,
        Err(e) => {
            reply(&mut conn, &error_for(&e), true).await;
            return;
        }
    };
    let mut ok = b"HTTP/1.1 200 Connection established\r\n".to_vec();
    if opened.repinned() {
        ok.extend_from_slice(b"Proxy-Status: traffix; details=\"session re-pinned to another node\"\r\n");
    }
    ok.extend_from_slice(b"\r\n");
    if conn.inner.write_all(&ok).await.is_err() {
        return;
    }
    let io = Prefixed { prefix: conn.buf.split().freeze(), inner: conn.inner };
    svc.relay(io, opened, &acct.name, &target).await;
}

/// Response framing of an upstream response.
enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn header_value<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

fn is_chunked(v: Option<&[u8]>) -> bool {
    v.is_some_and(|v| {
        String::from_utf8_lossy(v).split(',').next_back().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
    })
}

fn content_length(v: Option<&[u8]>) -> Result<Option<u64>, ()> {
    match v {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v).ok().and_then(|s| s.trim().parse().ok()).map(Some).ok_or(()),
    }
}

/// How a request's body is framed (RFC 9112 §6.1–6.3). Every header is forwarded as it came, so
/// any framing the origin could read differently from us is refused (400, and the connection is
/// closed): Content-Length together with Transfer-Encoding, a Transfer-Encoding whose last coding
/// is not a single `chunked`, Content-Length headers that differ, and a Content-Length that is
/// not plain digits (`+5`, `5, 6`). Those are the shapes of request smuggling: a request hidden
/// in a body we forward as data would be read by the origin as a request of its own.
fn request_body(head: &RequestHead) -> Result<Body, HttpError> {
    let bad = |why: &str| Err(HttpError::new(400, "http_request_error", why.to_owned()));
    let values = |name: &str| -> Vec<&[u8]> {
        head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice()).collect()
    };
    let lengths = values("content-length");
    let codings: Vec<String> = values("transfer-encoding")
        .iter()
        .flat_map(|v| String::from_utf8_lossy(v).split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect();
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return bad("Content-Length together with Transfer-Encoding");
        }
        let chunked = codings.iter().filter(|c| *c == "chunked").count();
        if codings.last().map(String::as_str) != Some("chunked") || chunked != 1 || codings.iter().any(String::is_empty)
        {
            return bad("Transfer-Encoding must end with one chunked coding");
        }
        return Ok(Body::Chunked);
    }
    let Some((first, rest)) = lengths.split_first() else { return Ok(Body::None) };
    if rest.iter().any(|v| v != first) {
        return bad("differing Content-Length headers");
    }
    let digits = first.trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return bad("bad Content-Length");
    }
    match std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()) {
        Some(n) => Ok(Body::Length(n)),
        None => bad("bad Content-Length"),
    }
}

/// Forwards one absolute-URI request and its response. Returns whether the connection may be
/// reused for another request.
async fn forward(
    conn: &mut Reader<TcpStream>,
    upstream: &mut Option<Upstream>,
    svc: &Arc<RelayService>,
    acct: &Arc<ProxyAccount>,
    targeting: &Targeting,
    head: &RequestHead,
) -> Result<bool, HttpError> {
    let (target, path) = parse_absolute_uri(&head.target)?;
    let req_body = request_body(head)?;
    // Reuse the open upstream only for the same target.
    if upstream.as_ref().is_some_and(|u| u.target != target)
        && let Some(u) = upstream.take()
    {
        drop(u.io);
        let _ = u.relay.await;
    }
    if upstream.is_none() {
        let opened = svc.connect(Frontend::Http, acct, targeting, target.clone()).await.map_err(|e| error_for(&e))?;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let svc2 = svc.clone();
        let (name, t2) = (acct.name.clone(), target.clone());
        let relay = tokio::spawn(async move { svc2.relay(theirs, opened, &name, &t2).await });
        *upstream = Some(Upstream { target: target.clone(), io: Reader::new(ours), relay });
    }
    let Some(up) = upstream.as_mut() else { return Err(HttpError::new(502, "proxy_internal_error", "no upstream")) };

    // Request head in origin form, without hop-by-hop proxy headers.
    let mut out = format!("{} {} HTTP/1.{}\r\n", head.method, path, head.version).into_bytes();
    let mut has_host = false;
    for (n, v) in &head.headers {
        if n.eq_ignore_ascii_case("proxy-authorization") || n.eq_ignore_ascii_case("proxy-connection") {
            continue;
        }
        has_host |= n.eq_ignore_ascii_case("host");
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if !has_host {
        out.extend_from_slice(format!("Host: {}\r\n", host_header(&target)).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    let io_err = |e: std::io::Error| HttpError::new(502, "proxy_internal_error", format!("upstream failed: {e}"));
    up.io.inner.write_all(&out).await.map_err(io_err)?;
    // `Expect: 100-continue`: the client waits for the origin's go-ahead before its body.
    if head.has_token("expect", "100-continue") && !matches!(req_body, Body::None) {
        let (resp_head, status, body, close) = read_response_head(&mut up.io, &head.method).await?;
        conn.inner
            .write_all(&resp_head)
            .await
            .map_err(|_| HttpError::new(400, "http_request_error", "client went away"))?;
        if status != 100 {
            // A final answer instead: relay it; the unread body makes the connection unusable.
            relay_body(&mut up.io, &mut conn.inner, body).await;
            let _ = close;
            return Ok(false);
        }
    }
    let body_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::TimedOut => HttpError::new(408, "http_request_error", "the request body stopped arriving"),
        _ => io_err(e),
    };
    match req_body {
        Body::Length(n) => conn.copy_n(&mut up.io.inner, n).await.map_err(body_err)?,
        Body::Chunked => conn.copy_chunked(&mut up.io.inner).await.map_err(body_err)?,
        _ => {}
    }

    // Response: head (skipping 1xx interim responses after relaying them), then the body.
    loop {
        let (resp_head, status, body, close) = read_response_head(&mut up.io, &head.method).await?;
        conn.inner
            .write_all(&resp_head)
            .await
            .map_err(|_| HttpError::new(400, "http_request_error", "client went away"))?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let until_close = matches!(body, Body::UntilClose);
        if !relay_body(&mut up.io, &mut conn.inner, body).await || until_close {
            return Ok(false);
        }
        return Ok(!close);
    }
}

/// Copies a response body to the client; false when it could not be relayed whole.
async fn relay_body(up: &mut Reader<tokio::io::DuplexStream>, client: &mut TcpStream, body: Body) -> bool {
    let res = match body {
        Body::None => Ok(()),
        Body::Length(n) => up.copy_n(client, n).await,
        Body::Chunked => up.copy_chunked(client).await,
        Body::UntilClose => up.copy_to_end(client).await,
    };
    if let Err(e) = &res {
        debug!(error = %e, "response body relay failed");
    }
    res.is_ok()
}

fn host_header(t: &Target) -> String {
    match t {
        Target::Ip(a) if a.port() == 80 => match a.ip() {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        },
        Target::Ip(a) => a.to_string(),
        Target::Domain(d, 80) => d.clone(),
        Target::Domain(d, p) => format!("{d}:{p}"),
    }
}

async fn read_response_head(
    up: &mut Reader<tokio::io::DuplexStream>,
    method: &str,
) -> Result<(Vec<u8>, u16, Body, bool), HttpError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&up.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(502);
                let close = resp.version == Some(0)
                    || header_value(resp.headers, "connection")
                        .is_some_and(|v| String::from_utf8_lossy(v).to_ascii_lowercase().contains("close"));
                let body = if method.eq_ignore_ascii_case("HEAD")
                    || (100..200).contains(&status)
                    || status == 204
                    || status == 304
                {
                    Body::None
                } else if is_chunked(header_value(resp.headers, "transfer-encoding")) {
                    Body::Chunked
                } else {
                    match content_length(header_value(resp.headers, "content-length")) {
                        Ok(Some(n)) => Body::Length(n),
                        Ok(None) => Body::UntilClose,
                        Err(()) => {
                            return Err(HttpError::new(
                                502,
                                "http_response_content_length",
                                "upstream sent a bad Content-Length",
                            ));
                        }
                    }
                };
                let head = up.buf.split_to(n).to_vec();
                return Ok((head, status, body, close));
            }
            Ok(httparse::Status::Partial) if up.buf.len() >= MAX_HEAD => {
                return Err(HttpError::new(
                    502,
                    "http_response_header_section_size",
                    "upstream response head too large",
                ));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => {
                return Err(HttpError::new(
                    502,
                    "http_protocol_error",
                    format!("upstream sent a malformed response: {e}"),
                ));
            }
        }
        match up.fill().await {
            Ok(0) | Err(_) => {
                return Err(HttpError::new(502, "destination_unavailable", "upstream closed before responding"));
            }
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_hex_digits_only() {
        for (line, want) in [
            (&b"0\r\n"[..], Some(0)),
            (b"1a\r\n", Some(26)),
            (b"FF;name=value\r\n", Some(255)),
            (b"10 ;ext\r\n", Some(16)),
            (b"5\n", Some(5)),
            (b"fffffffffffffff\r\n", Some(0x0fff_ffff_ffff_ffff)),
        ] {
            assert_eq!(chunk_size(line), want, "{}", line.escape_ascii());
        }
        for bad in [
            &b"\r\n"[..],
            b"+5\r\n",
            b"-5\r\n",
            b" 5\r\n",
            b"5 \r\n",
            b"0x5\r\n",
            b"5",
            b"ffffffffffffffff\r\n",
            b"10000000000000000\r\n",
            b"g\r\n",
            b"\xff\r\n",
        ] {
            assert_eq!(chunk_size(bad), None, "{}", bad.escape_ascii());
        }
    }

    /// A chunk size of 2^64 − 1 used to overflow `size + 2` (a panic in debug builds, a wrapped
    /// length in release builds that desynchronised the body): it is refused as bad data.
    #[tokio::test]
    async fn a_huge_chunk_size_is_refused_not_overflowed() {
        for body in [&b"ffffffffffffffff\r\nabc\r\n0\r\n\r\n"[..], b"+3\r\nabc\r\n0\r\n\r\n"] {
            let mut r = Reader::new(body);
            let mut out = Vec::new();
            let e = r.copy_chunked(&mut out).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{}", body.escape_ascii());
        }
        let mut r = Reader::new(&b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nnext"[..]);
        let mut out = Vec::new();
        r.copy_chunked(&mut out).await.unwrap();
        assert_eq!(out, b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n");
    }

    #[test]
    fn parses_uris_and_authorities() {
        let (t, p) = parse_absolute_uri("http://example.com/a?b=1").unwrap();
        assert_eq!(t, Target::Domain("example.com".into(), 80));
        assert_eq!(p, "/a?b=1");
        let (t, p) = parse_absolute_uri("HTTP://[::1]:8080").unwrap();
        assert_eq!(t, Target::Ip("[::1]:8080".parse().unwrap()));
        assert_eq!(p, "/");
        assert!(parse_absolute_uri("https://x/").is_err());
        assert!(parse_absolute_uri("/relative").is_err());
        assert_eq!(parse_authority("1.2.3.4:443", None).unwrap(), Target::Ip("1.2.3.4:443".parse().unwrap()));
        for bad in ["host", "host:", "host:0", ":80", "[::1", "[::1]x", "a:b:c", "h:99999"] {
            assert!(parse_authority(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_credentials_decode() {
        let v = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice-country-de:pw:x"));
        assert_eq!(basic_credentials(v.as_bytes()), Some(("alice-country-de".into(), "pw:x".into())));
        assert_eq!(basic_credentials(b"Bearer abc"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
        assert_eq!(basic_credentials(b"Basic"), None);
    }

    #[test]
    fn request_heads_are_bounded() {
        assert!(parse_request_head(b"GET http://x/ HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let (h, n) = parse_request_head(b"CONNECT a:443 HTTP/1.1\r\n\r\nrest").unwrap().unwrap();
        assert_eq!((h.method.as_str(), h.target.as_str(), n), ("CONNECT", "a:443", 26));
        assert!(parse_request_head(b"\x00\x01garbage\r\n\r\n").is_err());
        let big = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(parse_request_head(&big).unwrap_err().status, 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..200 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request_head(&many).unwrap_err().status, 431);
    }

    /// Ambiguous body framing is refused before anything is forwarded (the proxy forwards every
    /// header as it came, so the origin could read another body than we did). Content-Length
    /// with Transfer-Encoding and a doubled `chunked` used to be forwarded.
    #[test]
    fn ambiguous_request_framing_is_refused() {
        let head = |extra: &str| {
            let raw = format!("POST http://x/ HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
            parse_request_head(raw.as_bytes()).unwrap().unwrap().0
        };
        for ok in ["", "Content-Length: 5\r\n", "Content-Length: 5\r\nContent-Length: 5\r\n"] {
            assert!(request_body(&head(ok)).is_ok(), "{ok}");
        }
        for chunked in ["Transfer-Encoding: chunked\r\n", "Transfer-Encoding: gzip, CHUNKED\r\n"] {
            assert!(matches!(request_body(&head(chunked)), Ok(Body::Chunked)), "{chunked}");
        }
        for bad in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Content-Length: 0\r\nContent-Length: 5\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: \r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: identity\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding: chunked,\r\n",
            "Transfer-Encoding: xchunked\r\n",
        ] {
            assert_eq!(request_body(&head(bad)).err().map(|e| e.status), Some(400), "{bad}");
        }
    }

    #[test]
    fn error_responses_carry_proxy_status() {
        let r = String::from_utf8(HttpError::new(402, "http_request_denied", "balance \"exhausted\"").response(true))
            .unwrap();
        assert!(r.starts_with("HTTP/1.1 402 Payment Required\r\n"));
        assert!(r.contains("Proxy-Status: traffix; error=http_request_denied; details=\"balance 'exhausted'\""));
        assert!(r.contains("Connection: close"));
    }
}
