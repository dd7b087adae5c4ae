//! The relay: where a client's stream meets accounts, money, routing and the tunnel. A front-end
//! ([`crate::proxy`]) authenticates a client with [`accounts`] and hands over (socket, account,
//! requested target); [`RelayService::connect`] admits the stream (account state, stream and
//! rate caps), reserves money for it (the billing meter's hold), routes it ([`router`]: egress
//! policy, targeting, sticky sessions; [`own_addresses`] keeps the server itself out of reach)
//! and opens it on a node's multiplexer; [`RelayService::relay`] then copies the bytes
//! ([`crate::tunnel::copy`]) through a meter that bills them, counts a sub-user's bytes and
//! feeds the metrics, and cuts the stream when the money or the sub-user's cap runs out.
//!
//! This is the only part that sees the front-ends' accounts, the billing meter and the tunnel
//! together. It speaks no client protocol (no SOCKS5 or HTTP types), and the tunnel below it
//! knows nothing of proxies or money.

pub mod accounts;
pub mod live;
pub mod own_addresses;
pub mod probe;
pub mod router;
pub mod username;

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use self::accounts::{Accounts, Denied, ProxyAccount, StreamSlot, SubUsage};
use self::live::{Cutter, LiveStreams, StreamOwner};
use self::router::{RouteError, Routed, Router};
use self::username::Targeting;
use crate::billing::meter::{Billed, Billing, BillingError, LiveSession, METER_BATCH_BYTES, SessionInfo};
use crate::config::Limits;
use crate::target::{OpenErrReason, ResetReason, Target};
use crate::telemetry::{DirLabel, Direction, Frontend, Metrics};
use crate::tunnel::copy::{self, CopyEnd, CopyStats, METER_BATCH, Meter};

// The overdraft bound billing proves (`billing::meter::overdraft_bound`) counts one meter batch
// per stream and direction: the copy must report at least that often.
const _: () = assert!(METER_BATCH <= METER_BATCH_BYTES);

/// Why a client's stream was not opened, across both front-ends.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("{0}")]
    Billing(String),
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
            ConnectError::Billing(_) => "billing_unavailable",
        }
    }
}

/// The connect service the front-ends hand their clients to, with what they share.
pub struct RelayService {
    pub accounts: Accounts,
    pub router: Router,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Meters every stream and cuts clients whose money runs out (`None`: billing is off).
    pub billing: Option<Arc<Billing>>,
    /// Tracks live client connections so shutdown can drain them.
    pub tracker: tokio_util::task::TaskTracker,
    /// The streams being relayed, so admin changes can cut the ones they affect.
    pub live: Arc<LiveStreams>,
}

/// A stream admitted for a client and opened on a node.
pub struct Opened {
    /// Private: the front-ends must not reach the tunnel's stream or node through it.
    routed: Routed,
    slot: StreamSlot,
    started: Instant,
    /// Ended by the relay, or as `abandoned` if this is dropped before the relay ends it.
    session: Option<Billed>,
    /// A sub-user's byte counter and cap.
    sub: Option<(Arc<SubUsage>, Option<u64>)>,
    /// Its place in the live table, for admin cuts.
    cutter: Cutter,
    /// When the sub-user that opened it expires (Unix seconds).
    expires_at: Option<u64>,
}

struct RelayMeter {
    metrics: Arc<Metrics>,
    session: Option<Arc<LiveSession>>,
    sub: Option<(Arc<SubUsage>, Option<u64>)>,
    /// When the first byte came back from the node (time to first byte, for the watchdog).
    first_down: std::sync::OnceLock<Instant>,
}

impl Meter for RelayMeter {
    fn record(&self, up: u64, down: u64) {
        if let Some(s) = &self.session {
            s.record(up, down);
        }
        if let Some((usage, cap)) = &self.sub {
            usage.record(up + down, *cap);
        }
        if up > 0 {
            self.metrics.relayed_bytes.get_or_create(&DirLabel { direction: Direction::Up }).inc_by(up);
        }
        if down > 0 {
            let _ = self.first_down.set(Instant::now());
            self.metrics.relayed_bytes.get_or_create(&DirLabel { direction: Direction::Down }).inc_by(down);
        }
    }
}

impl Opened {
    /// A flex sticky session moved to another node because its node went away.
    pub fn repinned(&self) -> bool {
        self.routed.repinned
    }
}

impl RelayService {
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
            // Registered before anything is checked: an admin change from here on reaches this
            // stream, and one made just before is seen by `admit`, which reads the account's
            // current state.
            let cutter = self.live.register(StreamOwner {
                client: acct.billed_to.clone(),
                sub: acct.sub.as_ref().map(|_| acct.name.clone()),
                device: None,
                owner: None,
            });
            let mut slot = self.accounts.admit(acct).await?;
            // Refuse before any node is asked when the money is visibly gone.
            if let Some(billing) = &self.billing
                && !billing.may_open(&acct.billed_to).await.map_err(ConnectError::Billing)?
            {
                return Err(ConnectError::Denied(Denied::BalanceExhausted));
            }
            let routed = self.router.open(targeting, target.clone()).await;
            slot.dialed();
            let routed = routed?;
            let node = &routed.node;
            let info = SessionInfo {
                client: acct.billed_to.clone(),
                sub: acct.sub.as_ref().map(|_| acct.name.clone()),
                device: hex::encode(node.device_id),
                owner: node.owner.clone(),
                vip: node.vip.to_string(),
                node_ip: node.public_ip.to_string(),
                target: target.to_string(),
            };
            let session = match &self.billing {
                Some(billing) => Some(billing.open(info).await.map_err(|e| match e {
                    BillingError::Exhausted => ConnectError::Denied(Denied::BalanceExhausted),
                    BillingError::Store(m) => ConnectError::Billing(m),
                })?),
                None => None,
            };
            let sub = acct.sub.as_ref().map(|s| (s.usage.clone(), s.byte_cap));
            if let Some(reason) = cutter.routed(node.device_id, &node.owner) {
                if let Some(session) = session {
                    session.end(reason);
                }
                return Err(ConnectError::Denied(Denied::Disabled(reason.replace('_', " "))));
            }
            let expires_at = acct.sub.as_ref().and_then(|s| s.expires_at);
            Ok::<_, ConnectError>(Opened { routed, slot, started, session, sub, cutter, expires_at })
        }
        .await;
        match &result {
            Ok(_) => self.metrics.stream_result(frontend, "ok"),
            Err(e) => {
                self.metrics.stream_result(frontend, e.code());
                // The reason may quote a node's words: escaped, like the target.
                info!(client = %acct.name, target = %target, code = e.code(), reason = %e.to_string().escape_debug(), "stream refused");
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
        let Opened { routed, slot, started, session, sub, mut cutter, expires_at } = opened;
        // Declared after the cutter, so dropped before it if this future is dropped unfinished
        // (shutdown): the session's end (`abandoned`) is recorded before the stream leaves the
        // live table, as on the normal path below.
        let session = session;
        // Only a sub-user with an expiry pays for a timer (boxed, so idle streams stay small).
        let mut expires = expires_at.map(|at| Box::pin(until_unix(at)));
        let node = routed.node.clone();
        let peer = routed.stream.peer();
        self.metrics.streams_active.inc();
        let mut over = sub.as_ref().map(|(u, _)| u.over());
        let relay_meter = Arc::new(RelayMeter {
            metrics: self.metrics.clone(),
            session: session.as_ref().map(|b| b.session().clone()),
            sub,
            first_down: std::sync::OnceLock::new(),
        });
        let opened_at = Instant::now();
        let meter: Arc<dyn Meter> = relay_meter.clone();
        let mut exhausted = session.as_ref().map(|s| s.budget.exhausted());
        // The relay runs until it ends, the client's money runs out, a sub-user reaches its
        // byte cap or expires, or an admin change cuts it (then the stream is cut: dropping it
        // resets the node side and closes the client socket). The watch guards are dropped inside the blocks: the relay's drop
        // reports its last bytes, which may update these same watches.
        async fn tripped(rx: Option<&mut tokio::sync::watch::Receiver<bool>>) {
            match rx {
                Some(rx) => {
                    let _ = rx.wait_for(|v| *v).await;
                }
                None => std::future::pending().await,
            }
        }
        let (stats, cut) = tokio::select! {
            stats = copy::bidirectional(socket, routed.stream, meter, true) => (Some(stats), ""),
            _ = tripped(exhausted.as_mut()) => (None, "billing"),
            _ = tripped(over.as_mut()) => (None, "sub_user_cap"),
            _ = expiry(&mut expires), if expires.is_some() => (None, "sub_user_expired"),
            reason = cutter.cut() => (None, reason),
        };
        self.metrics.streams_active.dec();
        drop(slot);
        let (up, down) = match (&session, &stats) {
            (Some(s), _) => s.bytes(),
            (None, Some(st)) => (st.sent, st.received),
            (None, None) => (0, 0),
        };
        let end = stats.as_ref().map(|s| s.end.as_str()).unwrap_or(cut);
        if let Some(session) = session {
            session.end(end);
        }
        let stats = CopyStats {
            sent: up,
            received: down,
            end: stats.map(|s| s.end).unwrap_or(CopyEnd::PeerReset(ResetReason::Billing)),
        };
        // The watchdog judges streams that ended on their own (a cut says nothing of the node).
        if cut.is_empty() {
            let ttfb = relay_meter.first_down.get().map(|t| t.saturating_duration_since(opened_at));
            self.router.watchdog().record(
                crate::watchdog::Event::StreamEnded {
                    device: node.device_id,
                    target: &target.to_string(),
                    client,
                    up: stats.sent,
                    down: stats.received,
                    ttfb,
                    waited: matches!(stats.end, CopyEnd::Idle | CopyEnd::PeerReset(ResetReason::IdleTimeout))
                        || opened_at.elapsed() >= crate::watchdog::SILENT_AFTER,
                },
                crate::store::now_secs(),
            );
        }
        // Leaving the live table tells a waiting admin command that this stream is gone (after
        // its end reason went to billing).
        drop(cutter);
        info!(
            client = %client,
            node = %node.vip,
            node_ip = %node.public_ip,
            target = %target,
            dest = peer.map(tracing::field::display),
            up = stats.sent,
            down = stats.received,
            ms = started.elapsed().as_millis() as u64,
            end,
            "stream closed"
        );
    }
}

/// Waits for a boxed expiry timer, if there is one.
async fn expiry<F: std::future::Future<Output = ()> + Unpin>(timer: &mut Option<F>) {
    match timer {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// Resolves at Unix time `at`. Sleeps in steps of at most a minute, so a changed system clock
/// is noticed.
async fn until_unix(at: u64) {
    loop {
        let now = crate::store::now_secs();
        if now >= at {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs((at - now).min(60))).await;
    }
}
