//! The HTTPS listener (TLS 1.3) and the loopback metrics listener.
//!
//! Routes on the web listener: `GET /healthz` → `200 {"status":"ok"}`; `GET /v1/tunnel` → the
//! node WebSocket; the REST API (`crate::api`) and the dashboard are merged in by the app.
//! Routes on the metrics listener: `GET /metrics` (Prometheus text), `GET /healthz`; the web
//! listener's responses are counted by status class ([`count_responses`]). TLS
//! handshakes run in the per-connection task under the handshake timeout; the accept loop only
//! accepts.
//!
//! Deadlines on the web listener ([`Deadlines`]): a request head within
//! `handshake_timeout_secs` of its first byte (or of the connection's start), the whole request
//! — head and body — within `request_timeout_secs` of that first byte (a body trickled byte by
//! byte is cut), and an idle keep-alive connection closed after `keepalive_idle_secs` without
//! a new request (hyper's header read timeout, which hyper starts when a connection goes idle).
//!
//! A node's tunnel stays counted by the listener's [`crate::listener::Gate`] after its
//! WebSocket upgrade: as a handshake again until the server's WELCOME, then against the
//! listener's total only (many phones share one carrier address).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::either::Either;
use tracing::{debug, warn};

use crate::shutdown::Shutdown;
use crate::telemetry::{StatusClass, StatusLabel};
use crate::tunnel::flowbuf::FlowBuf;
use crate::tunnel::record::{RecordStream, Switch, TrafficSecrets};
use crate::tunnel::session::{TunnelService, serve_node};

/// The remote address of the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// The web listener's routes.
pub fn router(svc: Arc<TunnelService>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/v1/tunnel", get(tunnel)).with_state(svc)
}

fn bad_upgrade(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "bad_upgrade", "reason": why}))).into_response()
}

fn header_has(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn listener_full(why: &str) -> Response {
    let mut r =
        (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error": "busy", "reason": why}))).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A web connection over TLS, as hyper holds it.
type WebTls = TokioIo<Deadlines<tokio_rustls::server::TlsStream<FlowBuf<TcpStream>>>>;

crate::tunnel::ws::split_with_lock!(TokioIo<Upgraded>);

/// What a tunnel runs on: its own records when its connection could switch to them
/// (`crate::tunnel::record`), else rustls' records, else (plain HTTP) what hyper gave back.
type TunnelIo =
    Either<RecordStream<TcpStream>, Either<tokio_rustls::server::TlsStream<FlowBuf<TcpStream>>, TokioIo<Upgraded>>>;

/// The upgraded connection a tunnel runs on, and the plaintext already read from it; `None`
/// when the switch to our own records failed halfway (the connection is lost).
fn tunnel_io(
    upgraded: Upgraded,
    secrets: Option<&TrafficSecrets>,
    metrics: &crate::telemetry::Metrics,
) -> Option<(TunnelIo, Bytes)> {
    use crate::telemetry::{RecordLayer, RecordLayerLabel};
    let upgraded = match secrets {
        Some(secrets) => match upgraded.downcast::<WebTls>() {
            Ok(parts) => {
                let tls = parts.io.into_inner().io;
                let (io, layer) = match crate::tunnel::record::from_server(tls, secrets, parts.read_buf) {
                    Switch::Done(records, read) => (Some((Either::Left(records), read)), RecordLayer::Own),
                    Switch::Stay(tls, read) => {
                        debug!("the tunnel stays on rustls' records");
                        (Some((Either::Right(Either::Left(tls)), read)), RecordLayer::Rustls)
                    }
                    Switch::Failed(e) => {
                        // A peer can cause it (key updates before the switch): counted, not warned.
                        debug!(error = %e, "a tunnel could not take over its TLS records");
                        (None, RecordLayer::Failed)
                    }
                };
                metrics.tunnel_record_layer.get_or_create(&RecordLayerLabel { layer }).inc();
                return io;
            }
            Err(upgraded) => {
                // Not the web listener's TLS stream (a bug): the tunnel goes on over what hyper has.
                warn!("a tunnel's connection is not the web listener's TLS stream: it stays on rustls' records");
                metrics.tunnel_record_layer.get_or_create(&RecordLayerLabel { layer: RecordLayer::Rustls }).inc();
                upgraded
            }
        },
        None => upgraded,
    };
    Some((Either::Right(Either::Right(TokioIo::new(upgraded))), Bytes::new()))
}

async fn tunnel(
    State(svc): State<Arc<TunnelService>>,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
    conn: Option<Extension<Conn>>,
    mut req: Request,
) -> Response {
    let h = req.headers();
    if !header_has(h, header::CONNECTION, "upgrade") || !header_has(h, header::UPGRADE, "websocket") {
        return bad_upgrade("this endpoint only speaks WebSocket (Connection: Upgrade, Upgrade: websocket)");
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return bad_upgrade("Sec-WebSocket-Version must be 13");
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else { return bad_upgrade("missing Sec-WebSocket-Key") };
    let accept = derive_accept_key(key.as_bytes());
    // A node that offers it sends its frames unmasked; only inside TLS (docs/protocol.md).
    let unmasked = svc.tls
        && h.get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(crate::tunnel::ws::names_unmasked);
    // The tunnel's node handshake (HELLO → WELCOME) counts as a handshake of its address again;
    // refused, the connection keeps its place and closes after the 503.
    let admitted = match &conn {
        Some(Extension(c)) => match c.admit_tunnel() {
            Ok(a) => a,
            Err(r) => return listener_full(r.as_str()),
        },
        None => None,
    };
    if let Some(Extension(c)) = &conn {
        c.phase.upgraded();
    }
    let secrets = conn.as_ref().and_then(|Extension(c)| c.secrets.clone());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let limits = crate::tunnel::ws::ws_limits(&svc.limits);
    let tasks = svc.tasks.clone();
    tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = tunnel_io(upgraded, secrets.as_deref(), &svc.metrics);
                drop(secrets);
                let Some((io, read)) = io else { return };
                let ws = crate::tunnel::ws::WsConn::new(io, crate::tunnel::ws::Role::Server, limits).with_read(read);
                let ws = if unmasked { ws.with_unmasked_frames() } else { ws };
                let admitted = Arc::new(Mutex::new(admitted));
                let welcomed = admitted.clone();
                serve_node(svc, ws, peer, move || {
                    if let Some(a) = crate::sync::lock(&welcomed).as_mut() {
                        a.release_address();
                    }
                })
                .await;
                drop(admitted);
            }
            Err(e) => debug!(error = %e, "tunnel upgrade failed"),
        }
    });
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hd = resp.headers_mut();
    hd.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    hd.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        hd.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if unmasked {
        hd.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(crate::tunnel::ws::UNMASKED));
    }
    resp
}

/// Where a web connection is between requests, shared by its [`Deadlines`] reader, the
/// request middleware and the tunnel handler.
#[derive(Debug)]
struct ConnPhase(Mutex<Phase>);

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request head is being read; it started at the given instant.
    Head(Instant),
    /// A request is being served: the middleware gave its body a deadline.
    Request,
    /// Between requests: the next byte read starts a head.
    Idle,
    /// Upgraded to a WebSocket: no HTTP deadlines apply any more.
    Upgraded,
}

impl ConnPhase {
    /// The head was read: returns when it started.
    fn request_started(&self) -> Instant {
        let mut p = crate::sync::lock(&self.0);
        let since = match *p {
            Phase::Head(since) => since,
            _ => Instant::now(),
        };
        if !matches!(*p, Phase::Upgraded) {
            *p = Phase::Request;
        }
        since
    }

    /// The response went out: the connection is idle until its next head begins.
    fn response_done(&self) {
        let mut p = crate::sync::lock(&self.0);
        if matches!(*p, Phase::Request) {
            *p = Phase::Idle;
        }
    }

    fn upgraded(&self) {
        *crate::sync::lock(&self.0) = Phase::Upgraded;
    }
}

/// One web connection, as the request handlers see it (an extension on every request).
#[derive(Clone, Debug)]
struct Conn {
    phase: Arc<ConnPhase>,
    /// Its place in the listener's [`crate::listener::Gate`]; a tunnel takes it along.
    admitted: Arc<Mutex<Option<crate::listener::Admitted>>>,
    /// Over TLS: its traffic secrets, for a tunnel's own records (`crate::tunnel::record`).
    secrets: Option<Arc<TrafficSecrets>>,
}

impl Conn {
    fn take_admitted(&self) -> Option<crate::listener::Admitted> {
        crate::sync::lock(&self.admitted).take()
    }

    /// Takes the connection's place along to a tunnel, counted as a handshake again; when its
    /// address is at `max_handshakes_per_ip` the place stays with the connection.
    fn admit_tunnel(&self) -> Result<Option<crate::listener::Admitted>, crate::listener::Refused> {
        let mut slot = crate::sync::lock(&self.admitted);
        if let Some(a) = slot.as_mut() {
            a.handshake_again()?;
        }
        Ok(slot.take())
    }
}

/// The web listener's read side: fails a read once a request head has taken longer than `head`
/// since its first byte (hyper's own header timer also counts the idle time before it, so it
/// serves as the keep-alive idle timeout instead).
struct Deadlines<I> {
    io: I,
    phase: Arc<ConnPhase>,
    head: Duration,
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Deadlines<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        let got_bytes = buf.filled().len() > before;
        let since = {
            let mut p = crate::sync::lock(&self.phase.0);
            match *p {
                Phase::Idle if got_bytes => {
                    let now = Instant::now();
                    *p = Phase::Head(now);
                    Some(now)
                }
                Phase::Head(since) => Some(since),
                _ => None,
            }
        };
        let Some(since) = since else {
            self.timer = None;
            return read;
        };
        let head = self.head;
        let timer = match &mut self.timer {
            Some((armed, t)) if *armed == since => t,
            slot => &mut slot.insert((since, Box::pin(tokio::time::sleep_until(since + head)))).1,
        };
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request head did not arrive in time",
            )));
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Deadlines<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A request body that must be complete by a deadline: past it, reading the body fails, the
/// handler answers (or fails) and the connection, whose body was not read to its end, closes.
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: Pin<Box<Sleep>>,
}

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new("the request body did not arrive in time"))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks its connection idle once it is sent (or dropped).
struct ResponseEnd {
    inner: axum::body::Body,
    phase: Arc<ConnPhase>,
}

impl http_body::Body for ResponseEnd {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseEnd {
    fn drop(&mut self) {
        self.phase.response_done();
    }
}

/// Counts every response of the router by status class (`traffix_http_requests`). Requests
/// hyper refuses before the router (a malformed head, a head timeout) are not seen here.
pub async fn count_responses(
    State(requests): State<Family<StatusLabel, Counter>>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    requests.get_or_create(&StatusLabel { class: StatusClass::of(resp.status().as_u16()) }).inc();
    resp
}

/// The whole request — head and body — must be complete within this long of its first byte.
#[derive(Clone, Copy, Debug)]
pub struct RequestDeadline(pub Duration);

async fn request_deadline(
    State(RequestDeadline(limit)): State<RequestDeadline>,
    conn: Option<Extension<Conn>>,
    req: Request,
    next: Next,
) -> Response {
    use http_body::Body as _;
    let phase = conn.map(|Extension(c)| c.phase);
    let since = phase.as_ref().map_or_else(Instant::now, |p| p.request_started());
    let req = if req.body().is_end_stream() {
        req
    } else {
        let (parts, body) = req.into_parts();
        let body = DeadlineBody { inner: body, deadline: Box::pin(tokio::time::sleep_until(since + limit)) };
        Request::from_parts(parts, axum::body::Body::new(body))
    };
    let resp = next.run(req).await;
    match phase {
        Some(phase) => resp.map(|inner| axum::body::Body::new(ResponseEnd { inner, phase })),
        None => resp,
    }
}

/// Serves HTTP/1.1 (with upgrades) on one established connection; `idle` bounds the wait for
/// a request head (with [`Deadlines`] in front, the keep-alive idle time).
async fn serve_conn<I>(io: I, app: Router, idle: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        debug!(error = %e, "http connection ended with an error");
    }
}

/// Per-connection deadlines of the web listener (SECURITY.md §2; `[limits]`).
#[derive(Clone, Copy, Debug)]
pub struct WebTimeouts {
    /// TLS handshake, and a request head from its first byte (`handshake_timeout_secs`).
    pub handshake: Duration,
    /// A whole request from its first byte (`request_timeout_secs`).
    pub request: RequestDeadline,
    /// An idle keep-alive connection (`keepalive_idle_secs`).
    pub keepalive_idle: Duration,
}

async fn serve_web_conn<I>(
    io: I,
    app: Router,
    t: WebTimeouts,
    admitted: crate::listener::Admitted,
    secrets: Option<Arc<TrafficSecrets>>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let phase = Arc::new(ConnPhase(Mutex::new(Phase::Head(Instant::now()))));
    let conn = Conn { phase: phase.clone(), admitted: Arc::new(Mutex::new(Some(admitted))), secrets };
    let io = Deadlines { io, phase, head: t.handshake, timer: None };
    // An idle connection gets at least the time a request head gets.
    serve_conn(io, app.layer(Extension(conn.clone())), t.keepalive_idle.max(t.handshake)).await;
    // A tunnel took its place along; any other connection's place is freed here.
    drop(conn.take_admitted());
}

/// Accepts web clients until shutdown; `tls` is `None` only with `--insecure-http`.
/// A connection over one of `gate`'s caps is closed at once (no TLS handshake, so no response
/// fits) and accepting goes on. Each connection gets the [`WebTimeouts`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    t: WebTimeouts,
    gate: Arc<crate::listener::Gate>,
    mut shutdown: Shutdown,
    tracker: tokio_util::task::TaskTracker,
) {
    let hs = t.handshake;
    let app = app.layer(axum::middleware::from_fn_with_state(t.request, request_deadline));
    loop {
        let (tcp, peer) = tokio::select! {
            c = crate::listener::accept(&listener) => c,
            _ = shutdown.recv() => return,
        };
        let Ok(mut admitted) = gate.admit(peer.ip()) else { continue };
        let _ = tcp.set_nodelay(true);
        let app = app.clone().layer(Extension(PeerAddr(peer)));
        let tls = tls.clone();
        tracker.spawn(async move {
            // Each connection logs its own traffic secrets, for a tunnel's records (`record`).
            match tls.as_deref().map(crate::tunnel::record::server_config_for_connection) {
                Some((cfg, secrets)) => {
                    match tokio::time::timeout(hs, TlsAcceptor::from(cfg).accept(FlowBuf::new(tcp))).await {
                        // A TLS-ALPN-01 validator only looks at the certificate (RFC 8737).
                        Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) => {
                            debug!(%peer, "TLS-ALPN-01 validation handshake done");
                        }
                        Ok(Ok(stream)) => {
                            admitted.handshake_done();
                            serve_web_conn(stream, app, t, admitted, Some(secrets)).await
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => {
                    admitted.handshake_done();
                    serve_web_conn(tcp, app, t, admitted, None).await
                }
            }
        });
    }
}

/// The loopback metrics listener: `/metrics` and `/healthz`.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Arc<prometheus_client::registry::Registry>,
    mut shutdown: Shutdown,
) {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                        crate::telemetry::render(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(healthz));
    loop {
        let (tcp, peer) = tokio::select! {
            c = crate::listener::accept(&listener) => c,
            _ = shutdown.recv() => return,
        };
        if !peer.ip().is_loopback() && listener.local_addr().is_ok_and(|a| a.ip().is_loopback()) {
            warn!(%peer, "non-loopback peer on the metrics listener");
            continue;
        }
        let app = app.clone();
        tokio::spawn(serve_conn(tcp, app, Duration::from_secs(10)));
    }
}
