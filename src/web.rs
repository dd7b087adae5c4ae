//! The HTTPS listener (TLS 1.3) and the loopback metrics listener.
//!
//! Routes on the web listener: `GET /healthz` → `200 {"status":"ok"}`; `GET /v1/tunnel` → the
//! node WebSocket; the REST API (`crate::api`) and the dashboard are merged in by the app.
//! Routes on the metrics listener: `GET /metrics` (Prometheus text), `GET /healthz`. TLS
//! handshakes run in the per-connection task under the handshake timeout; the accept loop only
//! accepts.
//!
//! Deadlines on the web listener: a request head (and an idle keep-alive connection waiting for
//! its next head) within `handshake_timeout_secs` (hyper's header read timeout, which hyper
//! also starts when a connection goes idle), and a request body complete within
//! `request_timeout_secs` of its head ([`RequestDeadline`]): a body trickled byte by byte is cut.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::{debug, warn};

use crate::shutdown::Shutdown;
use crate::tunnel::flowbuf::FlowBuf;
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

async fn tunnel(
    State(svc): State<Arc<TunnelService>>,
    Extension(PeerAddr(peer)): Extension<PeerAddr>,
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
    let on_upgrade = hyper::upgrade::on(&mut req);
    let cfg = crate::tunnel::ws::ws_config(&svc.limits);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(cfg)).await;
                serve_node(svc, ws, peer).await;
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
    resp
}

/// A request body that must be complete by a deadline: past it, reading the body fails, the
/// handler answers (or fails) and the connection, whose body was not read to its end, closes.
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(axum::Error::new("the request body did not arrive in time"))));
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Gives every request with a body the deadline `limit` from now (the head has just arrived).
#[derive(Clone, Copy, Debug)]
pub struct RequestDeadline(pub std::time::Duration);

async fn request_deadline(State(RequestDeadline(limit)): State<RequestDeadline>, req: Request, next: Next) -> Response {
    use http_body::Body as _;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let body = DeadlineBody { inner: body, deadline: Box::pin(tokio::time::sleep(limit)) };
    next.run(Request::from_parts(parts, axum::body::Body::new(body))).await
}

/// Serves HTTP/1.1 (with upgrades) on one established connection.
async fn serve_conn<I>(io: I, app: Router, hs: std::time::Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(hs)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        debug!(error = %e, "http connection ended with an error");
    }
}

/// Accepts web clients until shutdown; `tls` is `None` only with `--insecure-http`.
/// A connection over one of `gate`'s caps is closed at once (no TLS handshake, so no response
/// fits) and accepting goes on. Every request body must be complete within `deadline`.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    hs: std::time::Duration,
    deadline: RequestDeadline,
    gate: Arc<crate::listener::Gate>,
    mut shutdown: Shutdown,
    tracker: tokio_util::task::TaskTracker,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(deadline, request_deadline));
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
            match tls {
                Some(acceptor) => match tokio::time::timeout(hs, acceptor.accept(FlowBuf::new(tcp))).await {
                    Ok(Ok(stream)) => {
                        admitted.handshake_done();
                        serve_conn(stream, app, hs).await
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                },
                None => {
                    admitted.handshake_done();
                    serve_conn(tcp, app, hs).await
                }
            }
            drop(admitted);
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
        tokio::spawn(serve_conn(tcp, app, std::time::Duration::from_secs(10)));
    }
}
