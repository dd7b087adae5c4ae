//! Client front-ends: SOCKS5 ([`socks5`]) and the HTTP proxy ([`http`]). Each turns a client
//! connection into (socket, account, requested target) — the handshake, the credentials checked
//! by [`crate::relay::accounts`], the protocol's own replies — and hands it to the
//! [`RelayService`], which admits, routes, opens and meters the stream. Front-ends import
//! nothing from the tunnel and nothing of billing: a new front-end is a new file here and
//! touches no other part.

pub mod http;
pub mod socks5;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::listener::accept;
use crate::relay::RelayService;
use crate::shutdown::Shutdown;

/// The accept loop of a front-end: a connection cap, accept with back-off, the handshake and
/// everything after it in a tracked per-connection task (never in the loop itself).
pub async fn serve_frontend<F, Fut>(
    listener: TcpListener,
    svc: Arc<RelayService>,
    mut shutdown: Shutdown,
    span: fn(SocketAddr) -> tracing::Span,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Arc<RelayService>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument;
    let conns = Arc::new(tokio::sync::Semaphore::new(svc.limits.max_connections));
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.recv() => return,
        };
        let (sock, peer) = tokio::select! {
            c = accept(&listener) => c,
            _ = shutdown.recv() => return,
        };
        let _ = sock.set_nodelay(true);
        let conn = handle(sock, peer, svc.clone());
        svc.tracker.spawn(
            async move {
                conn.await;
                drop(permit);
            }
            .instrument(span(peer)),
        );
    }
}
