//! The SOCKS5 front-end (RFC 1928 CONNECT with RFC 1929 username/password) on fast-socks5's
//! protocol state machine, with its server-side DNS and direct connect off: names go to the
//! node unresolved (`socks5h`). The handshake runs inside the per-connection task under the
//! handshake timeout; the accept loop only accepts.

use std::net::SocketAddr;
use std::sync::Arc;

use fast_socks5::server::{PasswordAuthentication, Socks5ServerProtocol};
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info_span};

use super::handshake_io::HandshakeIo;
use crate::listener::{Admitted, Gate};
use crate::relay::accounts::ProxyAccount;
use crate::relay::router::RouteError;
use crate::relay::username::Targeting;
use crate::relay::{ConnectError, RelayService};
use crate::shutdown::Shutdown;
use crate::target::{OpenErrReason, Target};
use crate::telemetry::Frontend;

/// SPEC.md's failure table, SOCKS5 column.
pub fn reply_for(e: &ConnectError) -> ReplyError {
    match e {
        ConnectError::Denied(_) => ReplyError::ConnectionNotAllowed,
        ConnectError::Route(RouteError::Policy(_)) => ReplyError::ConnectionNotAllowed,
        ConnectError::Route(RouteError::NoNode(_)) => ReplyError::NetworkUnreachable,
        ConnectError::Route(RouteError::Node { reason, .. }) => match reason {
            OpenErrReason::RefusedByPolicy => ReplyError::ConnectionNotAllowed,
            OpenErrReason::ConnectionRefused => ReplyError::ConnectionRefused,
            OpenErrReason::NetworkUnreachable => ReplyError::NetworkUnreachable,
            OpenErrReason::NodeBusy | OpenErrReason::Draining => ReplyError::NetworkUnreachable,
            OpenErrReason::DnsFailed | OpenErrReason::HostUnreachable | OpenErrReason::Timeout => {
                ReplyError::HostUnreachable
            }
            OpenErrReason::Internal => ReplyError::GeneralFailure,
        },
        ConnectError::Route(RouteError::NodeFailed(_)) => ReplyError::HostUnreachable,
        ConnectError::Billing(_) => ReplyError::GeneralFailure,
    }
}

/// Accepts SOCKS5 clients until shutdown.
pub async fn serve(listener: TcpListener, svc: Arc<RelayService>, shutdown: Shutdown) {
    let gate = Gate::new("socks5", svc.limits.proxy_conn_limits(), svc.metrics.connections_refused.clone());
    super::serve_frontend(
        listener,
        svc,
        shutdown,
        gate,
        |peer| info_span!("socks5", client_addr = %peer),
        // SOCKS5 has nothing to say before the greeting: the connection is just closed.
        |_, _| {},
        |sock, peer, svc, admitted| async move { handle(sock, peer, &svc, admitted).await },
    )
    .await
}

enum Handshake {
    Ready(
        Socks5ServerProtocol<HandshakeIo<TcpStream>, fast_socks5::server::states::CommandRead>,
        Arc<ProxyAccount>,
        Targeting,
        Target,
    ),
    Done,
}

async fn handle(sock: TcpStream, peer: SocketAddr, svc: &RelayService, mut admitted: Admitted) {
    let hs = tokio::time::timeout(svc.limits.handshake_timeout(), handshake(sock, peer, svc)).await;
    let (proto, acct, targeting, target) = match hs {
        Ok(Ok(Handshake::Ready(p, a, t, tg))) => {
            admitted.handshake_done();
            (p, a, t, tg)
        }
        Ok(Ok(Handshake::Done)) => return,
        Ok(Err(e)) => {
            debug!(error = %e, "socks5 handshake failed");
            return;
        }
        Err(_) => {
            debug!("socks5 handshake timed out");
            return;
        }
    };
    let opened = match svc.connect(Frontend::Socks5, &acct, &targeting, target.clone()).await {
        Ok(o) => o,
        Err(e) => {
            let _ = proto.reply_error(&reply_for(&e)).await;
            return;
        }
    };
    let bound = SocketAddr::from(([0, 0, 0, 0], 0));
    let Ok(mut sock) = proto.reply_success(bound).await else { return };
    sock.finish();
    svc.relay(sock, opened, &acct.name, &target).await;
}

async fn handshake(
    sock: TcpStream,
    peer: SocketAddr,
    svc: &RelayService,
) -> Result<Handshake, fast_socks5::server::SocksServerError> {
    let started = Socks5ServerProtocol::start(HandshakeIo::new(sock)).negotiate_auth(&[PasswordAuthentication]).await?;
    let (user, pass, auth) = started.read_username_password().await?;
    let (acct, targeting) = match svc.accounts.authenticate(&user, &pass, peer.ip()) {
        Ok(x) => x,
        Err(e) => {
            svc.metrics.proxy_auth_failures.inc();
            svc.metrics.stream_result(Frontend::Socks5, "auth");
            if crate::telemetry::PROXY_AUTH_FAILURES.admit_now("proxy authentication failures") {
                tracing::info!(user = %user.escape_debug(), reason = %e, "socks5 authentication failed");
            }
            auth.reject().await?;
            return Ok(Handshake::Done);
        }
    };
    let proto = fast_socks5::server::AuthMethodSuccessState::finish_auth(auth.accept().await?);
    let (proto, cmd, target) = proto.read_command().await?;
    if cmd != Socks5Command::TCPConnect {
        proto.reply_error(&ReplyError::CommandNotSupported).await?;
        return Ok(Handshake::Done);
    }
    let target = match target {
        TargetAddr::Ip(a) => Target::Ip(a),
        TargetAddr::Domain(d, p) => Target::Domain(d, p),
    };
    Ok(Handshake::Ready(proto, acct, targeting, target))
}
