//! Client front-ends. SOCKS5 and the HTTP proxy are servers that authenticate a client and
//! yield `(socket, Target)`; [`ProxyService::connect`] admits and routes it and
//! [`ProxyService::relay`] moves the bytes through [`crate::tunnel::relay`]. A new front-end
//! never touches tunnel code.

pub mod auth;
pub mod http;
pub mod router;
pub mod socks5;
pub mod username;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tracing::info;

use self::auth::{Accounts, Denied, ProxyAccount, StreamSlot};
use self::router::{RouteError, Routed, Router};
use self::username::Targeting;
use crate::config::Limits;
use crate::telemetry::{DirLabel, Direction, Frontend, Metrics};
use crate::tunnel::protocol::{OpenErrReason, Target};
use crate::tunnel::relay::{self, Meter};

/// Why a client's stream was not opened, across both front-ends.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Route(#[from] RouteError),
}

impl ConnectError {
    /// A short stable code for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::Denied(Denied::BalanceExhausted) => "balance",
            ConnectError::Denied(Denied::Disabled(_)) => "disabled",
            ConnectError::Denied(Denied::TooManyStreams(_)) => "too_many_streams",
            ConnectError::Denied(Denied::RateLimited(_)) => "rate_limited",
            ConnectError::Route(RouteError::Policy(_)) => "policy",
            ConnectError::Route(RouteError::NoNode(_)) => "no_node",
            ConnectError::Route(RouteError::Node { reason: OpenErrReason::RefusedByPolicy, .. }) => "node_policy",
            ConnectError::Route(RouteError::Node { reason: OpenErrReason::DnsFailed, .. }) => "dns",
            ConnectError::Route(RouteError::Node { .. }) | ConnectError::Route(RouteError::NodeFailed(_)) => {
                "node_error"
            }
        }
    }
}

/// Everything the front-ends share.
pub struct ProxyService {
    pub accounts: Accounts,
    pub router: Router,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Tracks live client connections so shutdown can drain them.
    pub tracker: tokio_util::task::TaskTracker,
}

/// A stream admitted for a client and opened on a node.
pub struct Opened {
    pub routed: Routed,
    slot: StreamSlot,
    started: Instant,
}

struct RelayMeter {
    metrics: Arc<Metrics>,
}

impl Meter for RelayMeter {
    fn record(&self, up: u64, down: u64) {
        if up > 0 {
            self.metrics.relayed_bytes.get_or_create(&DirLabel { direction: Direction::Up }).inc_by(up);
        }
        if down > 0 {
            self.metrics.relayed_bytes.get_or_create(&DirLabel { direction: Direction::Down }).inc_by(down);
        }
    }
}

impl ProxyService {
    /// Admits the stream for `acct` and opens it on a node.
    pub async fn connect(
        &self,
        frontend: Frontend,
        acct: &ProxyAccount,
        targeting: &Targeting,
        target: Target,
    ) -> Result<Opened, ConnectError> {
        let started = Instant::now();
        let result = async {
            let mut slot = self.accounts.admit(acct).await?;
            let routed = self.router.open(targeting, target.clone()).await;
            slot.dialed();
            Ok::<_, ConnectError>(Opened { routed: routed?, slot, started })
        }
        .await;
        match &result {
            Ok(_) => self.metrics.stream_result(frontend, "ok"),
            Err(e) => {
                self.metrics.stream_result(frontend, e.code());
                info!(client = %acct.name, target = %target, code = e.code(), reason = %e, "stream refused");
            }
        }
        result
    }

    /// Relays an opened stream to its end and logs it (SECURITY.md §2: who, which node, where,
    /// how much — never payloads).
    pub async fn relay<S>(&self, socket: S, opened: Opened, client: &str, target: &Target)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin,
    {
        let Opened { routed, slot, started } = opened;
        let node = routed.node.clone();
        let peer = routed.stream.peer();
        self.metrics.streams_active.inc();
        let meter: Arc<dyn Meter> = Arc::new(RelayMeter { metrics: self.metrics.clone() });
        let stats = relay::relay(socket, routed.stream, meter, true).await;
        self.metrics.streams_active.dec();
        drop(slot);
        info!(
            client = %client,
            node = %node.vip,
            node_ip = %node.public_ip,
            target = %target,
            dest = ?peer,
            up = stats.sent,
            down = stats.received,
            ms = started.elapsed().as_millis() as u64,
            end = stats.end.as_str(),
            "stream closed"
        );
    }
}

/// Binds a listener with the configured backlog (SECURITY.md §2: ≥ 1024).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(backlog)
}

/// Accepts with back-off on transient errors (EMFILE and friends) instead of spinning.
pub async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    let mut backoff = std::time::Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
            }
        }
    }
}
