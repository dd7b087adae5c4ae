//! Client front-ends: SOCKS5 ([`socks5`]) and the HTTP proxy ([`http`]). Each turns a client
//! connection into (socket, account, requested target) — the handshake, the credentials checked
//! by [`crate::relay::accounts`], the protocol's own replies — and hands it to the
//! [`RelayService`], which admits, routes, opens and meters the stream. Front-ends import
//! nothing from the tunnel and nothing of billing: a new front-end is a new file here and
//! touches no other part.

mod handshake_io;
pub mod http;
pub mod socks5;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::listener::{Admitted, Gate, Refused, accept};
use crate::relay::RelayService;
use crate::shutdown::Shutdown;

/// The accept loop of a front-end: accept with back-off, the connection caps of the listener
/// (a connection over one is refused at once with `refuse`, and accepting goes on), then the
/// handshake and everything after it in a tracked per-connection task (never in the loop
/// itself). `handle` gets the connection's place in the [`Gate`]; it calls
/// [`Admitted::handshake_done`] once the client is authenticated.
pub async fn serve_frontend<F, Fut>(
    listener: TcpListener,
    svc: Arc<RelayService>,
    mut shutdown: Shutdown,
    gate: Arc<Gate>,
    span: fn(SocketAddr) -> tracing::Span,
    refuse: fn(&TcpStream, Refused),
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Arc<RelayService>, Admitted) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tracing::Instrument;
    loop {
        let (sock, peer) = tokio::select! {
            c = accept(&listener) => c,
            _ = shutdown.recv() => return,
        };
        let admitted = match gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                refuse(&sock, why);
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        svc.tracker.spawn(handle(sock, peer, svc.clone(), admitted).instrument(span(peer)));
    }
}
