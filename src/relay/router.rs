//! Routing: turns (client, targeting options, target) into an open stream on a node.
//! Applies the server's copy of the egress policy, honours `-country-`, `-node-` and sticky
//! sessions (`flex` re-pins, `strict` fails), rotates to the least-loaded node otherwise, and
//! retries another node when the chosen one is busy or went away.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use moka::Expiry;

use super::own_addresses::ServerPolicy;
use super::username::{SessionMode, Targeting};
use crate::egress::Refusal;
use crate::identity::DeviceId;
use crate::target::{OpenErrReason, Target};
use crate::tunnel::mux::{MuxStream, OpenFailure};
use crate::tunnel::registry::{NodeHandle, Registry};
use crate::watchdog::quality::FailureClass;
use crate::watchdog::{Event, UnmetReason, Watchdog};

/// How many nodes a rotating connection tries when nodes are busy or vanish mid-open.
const OPEN_ATTEMPTS: usize = 3;
/// How many routable nodes a pick compares by load (offered best tier first).
const PICK_SAMPLE: usize = 8;

/// Why no stream could be opened. Each maps to one row of SPEC.md's failure table.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("target refused by policy: {0}")]
    Policy(#[from] Refusal),
    #[error("no node available: {0}")]
    NoNode(String),
    #[error("node could not reach the target: {reason} ({message})", reason = .reason.as_str())]
    Node { reason: OpenErrReason, message: String },
    #[error("node did not answer: {0}")]
    NodeFailed(String),
}

/// A stream opened for a client, and where it goes out.
pub struct Routed {
    pub stream: MuxStream,
    pub node: Arc<NodeHandle>,
    /// Set when a flex session moved to another node because its node went away.
    pub repinned: bool,
}

#[derive(Clone)]
struct Pin {
    device: DeviceId,
    ttl: Duration,
}

struct PinExpiry;
impl Expiry<(String, String), Pin> for PinExpiry {
    fn expire_after_create(&self, _k: &(String, String), v: &Pin, _now: std::time::Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_read(
        &self,
        _k: &(String, String),
        v: &Pin,
        _now: std::time::Instant,
        _cur: Option<Duration>,
        _last: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _k: &(String, String),
        v: &Pin,
        _now: std::time::Instant,
        _cur: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// What a pick filters nodes by; the key of [`Router::no_node`]'s short memory.
type Shape = (Option<[u8; 2]>, Option<std::net::Ipv4Addr>, crate::identity::TrustLevel, bool);

/// How long a pick that found no matching node at all answers the same filters at once, so a
/// client asking again and again for what no node has (a country, a trust level, a vIP) costs
/// one walk of the nodes a second, not one a request. A node coming online ends it at once
/// (the registry's generation moves); a node whose country or trust changed may wait this long.
const NO_NODE_MEMORY: Duration = Duration::from_secs(1);

/// Filters remembered as finding no node (a fixed bound: each entry is a few bytes).
const NO_NODE_ENTRIES: u64 = 4096;

pub struct Router {
    registry: Arc<Registry>,
    /// Recent picks that found no matching node, by filters: the registry generation they saw
    /// and why, for [`NO_NODE_MEMORY`].
    no_node: moka::sync::Cache<Shape, (u64, String)>,
    /// Swapped whole when the server's own addresses change (`own_addresses::refresh`).
    policy: RwLock<Arc<ServerPolicy>>,
    sessions: moka::sync::Cache<(String, String), Pin>,
    /// Country targeting works while a country database is loaded (swapped at run time).
    geoip: Arc<crate::geoip::SharedGeoIp>,
    max_node_streams: usize,
    open_wait: Duration,
    /// Node quality: which nodes may be routed, in which order; told every open's outcome.
    watchdog: Arc<Watchdog>,
    /// Other nodes tried after node-side failures, and the time one open may take in all.
    retries: u32,
    retry_budget: Duration,
    metrics: Arc<crate::telemetry::Metrics>,
    /// The weakest device trust that may carry traffic (`trust.require`).
    min_trust: crate::identity::TrustLevel,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Router")
    }
}

impl Router {
    pub fn new(
        registry: Arc<Registry>,
        policy: ServerPolicy,
        geoip: Arc<crate::geoip::SharedGeoIp>,
        watchdog: Arc<Watchdog>,
        limits: &crate::config::Limits,
        metrics: Arc<crate::telemetry::Metrics>,
        min_trust: crate::identity::TrustLevel,
    ) -> Self {
        Router {
            registry,
            policy: RwLock::new(Arc::new(policy)),
            sessions: moka::sync::Cache::builder().max_capacity(1_000_000).expire_after(PinExpiry).build(),
            no_node: moka::sync::Cache::builder().max_capacity(NO_NODE_ENTRIES).time_to_live(NO_NODE_MEMORY).build(),
            geoip,
            max_node_streams: limits.node_max_streams as usize,
            // The node's own dial timeout plus a margin for the round trip.
            open_wait: limits.dial_timeout() + Duration::from_secs(5),
            watchdog,
            retries: limits.open_retries,
            retry_budget: Duration::from_secs(limits.open_retry_budget_secs),
            metrics,
            min_trust,
        }
    }

    /// The watchdog the router consults.
    pub fn watchdog(&self) -> &Arc<Watchdog> {
        &self.watchdog
    }

    /// The server's copy of the egress policy, checked before any node is asked.
    pub fn check_target(&self, target: &Target) -> Result<(), Refusal> {
        self.policy().check_target(target)
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<ServerPolicy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the policy; streams already open keep going, new ones are checked against it.
    pub fn set_policy(&self, policy: ServerPolicy) {
        crate::sync::write(&self.policy, Arc::new(policy));
    }

    fn matches(&self, t: &Targeting, n: &NodeHandle) -> bool {
        t.country.is_none_or(|c| n.country() == Some(c))
            && t.node.is_none_or(|v| n.vip == v)
            && n.trust >= self.min_trust.max(t.trust.unwrap_or_default())
    }

    fn pick(&self, t: &Targeting, exclude: &[DeviceId]) -> Result<Arc<NodeHandle>, RouteError> {
        if t.country.is_some() && !self.geoip.has_country() {
            // Demand for the country all the same: the map shows where clients asked.
            if exclude.is_empty() {
                self.watchdog.unmet(t.country_code(), UnmetReason::NoNode);
            }
            return Err(RouteError::NoNode(
                "country targeting needs a GeoIP database and none is loaded (run `traffix geoip update`, \
                 or set geoip.country_db)"
                    .into(),
            ));
        }
        let trust = self.min_trust.max(t.trust.unwrap_or_default());
        let shape: Shape = (t.country, t.node, trust, t.quality_high);
        if exclude.is_empty()
            && let Some((generation, why)) = self.no_node.get(&shape)
            && generation == self.registry.generation()
        {
            self.watchdog.unmet(t.country_code(), UnmetReason::NoNode);
            return Err(RouteError::NoNode(why));
        }
        // A pinned node is looked up, not searched for.
        if let Some(vip) = t.node {
            let n = self.registry.by_vip(vip).filter(|n| {
                !exclude.contains(&n.device_id)
                    && n.accepts_streams()
                    && self.watchdog.routable(&n.device_id)
                    && (!t.quality_high || self.watchdog.high_tier(&n.device_id))
                    && self.matches(t, n)
            });
            return n.ok_or_else(|| self.no_node(t, exclude, shape));
        }
        // The least loaded of a few routable nodes, offered best tier first by the watchdog.
        let mut best: Option<(usize, Arc<NodeHandle>)> = None;
        self.watchdog.offer(t.quality_high, t.country, PICK_SAMPLE, |id| {
            if exclude.contains(id) {
                return false;
            }
            let Some(n) = self.registry.get(id) else { return false };
            if !n.accepts_streams() || !self.matches(t, &n) {
                return false;
            }
            // Load as a fraction of the node's cap, in 1/1024ths.
            let load = (n.mux.active_streams() * 1024) / n.max_streams().max(1);
            if best.as_ref().is_none_or(|(l, _)| load < *l) {
                best = Some((load, n));
            }
            true
        });
        best.map(|(_, n)| n).ok_or_else(|| self.no_node(t, exclude, shape))
    }

    /// Why nothing matched, counted as unmet demand on a request's first pick (when no node
    /// matches at all, remembered for [`NO_NODE_MEMORY`] for the same filters).
    fn no_node(&self, t: &Targeting, exclude: &[DeviceId], shape: Shape) -> RouteError {
        let generation = self.registry.generation();
        let matching: Vec<Arc<NodeHandle>> = match t.node {
            Some(vip) => self.registry.by_vip(vip).into_iter().collect(),
            None => self.registry.all(),
        }
        .into_iter()
        .filter(|n| self.matches(t, n) && !exclude.contains(&n.device_id))
        .collect();
        let reason = if matching.is_empty() {
            UnmetReason::NoNode
        } else if matching.iter().any(|n| n.accepts_streams()) {
            UnmetReason::AllFlagged
        } else if matching.iter().any(|n| n.at_stream_cap()) {
            UnmetReason::AllBusy
        } else {
            UnmetReason::AllPaused
        };
        if exclude.is_empty() {
            self.watchdog.unmet(t.country_code(), reason);
        }
        let mut what = Vec::new();
        if let Some(c) = t.country_code() {
            what.push(format!("country {c}"));
        }
        if let Some(v) = t.node {
            what.push(format!("node {v}"));
        }
        if t.quality_high {
            what.push("the high quality tier".to_owned());
        }
        let trust = shape.2;
        if trust > crate::identity::TrustLevel::None {
            what.push(format!("device trust {trust} or better"));
        }
        let why = match reason {
            UnmetReason::NoNode | UnmetReason::AllPaused if what.is_empty() => {
                "no node is online and accepting streams".to_owned()
            }
            UnmetReason::NoNode | UnmetReason::AllPaused => format!("no online node matches {}", what.join(", ")),
            UnmetReason::AllBusy => "every matching node is at its stream cap".to_owned(),
            UnmetReason::AllFlagged if what.is_empty() => {
                "no node is online and accepting streams (the online ones are flagged or not answering)".to_owned()
            }
            UnmetReason::AllFlagged => {
                format!("no online node matches {} (the matching ones are flagged or not answering)", what.join(", "))
            }
        };
        // Only "no such node at all": busy, paused and flagged nodes come back on their own.
        if exclude.is_empty() && reason == UnmetReason::NoNode {
            self.no_node.insert(shape, (generation, why.clone()));
        }
        RouteError::NoNode(why)
    }

    /// Records a failed open with the watchdog; whether another node may be tried.
    fn failed(
        &self,
        node: &NodeHandle,
        targeting: &Targeting,
        target: &str,
        class: FailureClass,
        answered: bool,
    ) -> bool {
        let verdict = self.watchdog.record(
            Event::OpenFailed { device: node.device_id, target, client: &targeting.name, class, answered },
            crate::store::now_secs(),
        );
        !verdict.client_capped
    }

    /// Opens a stream for `client` to `target` as `targeting` asks. A node-side failure (no
    /// answer, a dial timeout, an unreachable network, the node's own refusal) is retried on
    /// another node, up to `limits.open_retries` times within `open_retry_budget_secs`, unless
    /// the client pinned a node or a strict session; the failed tries cost the client nothing.
    pub async fn open(&self, targeting: &Targeting, target: Target) -> Result<Routed, RouteError> {
        self.check_target(&target)?;
        let deadline = tokio::time::Instant::now() + self.retry_budget;
        let target_key = target.to_string();
        let session_key = targeting.session.as_ref().map(|s| (targeting.name.clone(), s.clone()));
        let pinned = targeting.node.is_some() || (session_key.is_some() && targeting.mode == SessionMode::Strict);
        let mut repinned = false;
        let mut tried: Vec<DeviceId> = Vec::new();
        let mut last_err = None;
        let (mut moved_on, mut retries) = (0usize, 0u32);
        loop {
            let node = match &session_key {
                Some(key) => match self.sessions.get(key) {
                    // The pin is kept only while its node still matches what this connection
                    // asks for (country, node, trust: the session key is just name and id).
                    Some(pin) => match self.registry.get(&pin.device).filter(|n| {
                        n.accepts_streams()
                            && self.watchdog.routable(&n.device_id)
                            && self.matches(targeting, n)
                            && !tried.contains(&n.device_id)
                    }) {
                        Some(n) => n,
                        None if targeting.mode == SessionMode::Strict => {
                            return Err(last_err.unwrap_or_else(|| {
                                RouteError::NoNode(format!("the node of strict session {:?} is gone", key.1))
                            }));
                        }
                        None => {
                            repinned = true;
                            let n = self.pick(targeting, &tried).map_err(|e| last_err.take().unwrap_or(e))?;
                            self.sessions
                                .insert(key.clone(), Pin { device: n.device_id, ttl: targeting.session_ttl() });
                            n
                        }
                    },
                    None => {
                        let n = self.pick(targeting, &tried).map_err(|e| last_err.take().unwrap_or(e))?;
                        self.sessions.insert(key.clone(), Pin { device: n.device_id, ttl: targeting.session_ttl() });
                        n
                    }
                },
                None => self.pick(targeting, &tried).map_err(|e| last_err.take().unwrap_or(e))?,
            };
            let wait = self.open_wait.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            if wait.is_zero() {
                break;
            }
            let mut retry = false;
            match node.mux.open(target.clone(), node.max_streams().min(self.max_node_streams), wait).await {
                Ok(stream) => {
                    self.watchdog.record(
                        Event::Opened { device: node.device_id, target: &target_key },
                        crate::store::now_secs(),
                    );
                    return Ok(Routed { stream, node, repinned });
                }
                Err(OpenFailure::Refused {
                    reason: r @ (OpenErrReason::NodeBusy | OpenErrReason::Draining),
                    message,
                }) => {
                    if r == OpenErrReason::NodeBusy {
                        // Busy below its declared cap: measured, and no more streams for it
                        // until it finishes one or declares its cap again.
                        let (active, declared) = (node.mux.active_streams(), node.max_streams());
                        self.watchdog
                            .record(Event::Busy { device: node.device_id, active, declared }, crate::store::now_secs());
                        node.busy_at(active);
                    }
                    last_err = Some(RouteError::Node { reason: r, message });
                    moved_on += 1;
                }
                Err(OpenFailure::Refused { reason, message }) => {
                    let may = self.failed(&node, targeting, &target_key, failure_class(reason), true);
                    if !(may && node_side(reason)) {
                        return Err(RouteError::Node { reason, message });
                    }
                    last_err = Some(RouteError::Node { reason, message });
                    retry = true;
                }
                Err(e @ OpenFailure::Closed) => {
                    let may = self.failed(&node, targeting, &target_key, FailureClass::NodeError, false);
                    last_err = Some(RouteError::NodeFailed(e.to_string()));
                    retry = may;
                    moved_on += 1;
                }
                Err(e @ OpenFailure::Busy) => {
                    last_err = Some(RouteError::NodeFailed(e.to_string()));
                    moved_on += 1;
                }
                // The budget cut this wait short of `open_wait`: the node may just be slower than
                // what was left, so nothing is held against it.
                Err(e @ OpenFailure::Timeout(_)) if wait < self.open_wait => {
                    last_err = Some(RouteError::NodeFailed(e.to_string()));
                    break;
                }
                Err(e @ OpenFailure::Timeout(_)) => {
                    let may = self.failed(&node, targeting, &target_key, FailureClass::Timeout, false);
                    if !may {
                        return Err(RouteError::NodeFailed(e.to_string()));
                    }
                    last_err = Some(RouteError::NodeFailed(e.to_string()));
                    retry = true;
                }
            }
            if pinned {
                break;
            }
            if retry {
                if retries >= self.retries {
                    break;
                }
                retries += 1;
                self.metrics.open_retries.inc();
                tracing::debug!(node = %node.vip, target = %target_key.escape_debug(), retry = retries, "open failed on the node; trying another");
            } else if moved_on >= OPEN_ATTEMPTS {
                break;
            }
            tried.push(node.device_id);
        }
        Err(last_err.unwrap_or_else(|| RouteError::NoNode("no node accepted the stream".into())))
    }
}

/// How a node's OPEN_ERR is counted.
fn failure_class(reason: OpenErrReason) -> FailureClass {
    match reason {
        OpenErrReason::ConnectionRefused => FailureClass::Refused,
        OpenErrReason::DnsFailed => FailureClass::Dns,
        OpenErrReason::Timeout => FailureClass::Timeout,
        OpenErrReason::RefusedByPolicy => FailureClass::Policy,
        _ => FailureClass::NodeError,
    }
}

/// Whether an OPEN_ERR may be the node's own trouble, so another node might succeed: a dial
/// timeout, an unreachable network, the node's own egress refusal, an internal error. A
/// refused connection and a failed name lookup are the target's answer: not retried.
fn node_side(reason: OpenErrReason) -> bool {
    matches!(
        reason,
        OpenErrReason::Timeout
            | OpenErrReason::HostUnreachable
            | OpenErrReason::NetworkUnreachable
            | OpenErrReason::RefusedByPolicy
            | OpenErrReason::Internal
    )
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::config::Limits;
    use crate::tunnel::mux::{Mux, MuxConfig, OutQueue};
    use crate::tunnel::protocol::Frame;
    use crate::watchdog::config::WatchdogConfig;
    use crate::watchdog::{Watchdog, WatchdogLimits};

    /// How a fake node answers OPENs.
    #[derive(Clone, Copy, PartialEq)]
    enum Behaviour {
        /// OPEN_OK for every target but port 1, which the target refuses.
        Answers,
        /// Never answers (a frozen node whose tunnel is still up).
        Frozen,
        /// Its own network cannot reach anything: OPEN_ERR network unreachable.
        Unreachable,
        /// Declares 64 streams but refuses every one as busy.
        Busy,
    }

    /// A node's mux on the server side, its frames handled in memory as `b` says.
    fn fake_node(b: Behaviour) -> Mux {
        let cfg = MuxConfig { opens_streams: true, ..MuxConfig::default() };
        let (server, s_rx) = Mux::new(cfg);
        let (node, n_rx) = Mux::new(MuxConfig::default());
        fn wire(mut rx: OutQueue, to: Mux, b: Option<Behaviour>, node: Mux) {
            tokio::spawn(async move {
                while let Some(out) = rx.recv().await {
                    let crate::tunnel::mux::Out::Frame(bytes) = out else { break };
                    let f = Frame::decode(bytes).expect("valid frame");
                    match (b, f) {
                        (Some(Behaviour::Frozen), _) => {}
                        (Some(b), Frame::Open { stream, window, target, .. }) => {
                            let Some(s) = node.accept(stream, window, 64) else { continue };
                            if b == Behaviour::Unreachable {
                                s.reject(OpenErrReason::NetworkUnreachable, "no route");
                            } else if b == Behaviour::Busy {
                                s.reject(OpenErrReason::NodeBusy, "busy");
                            } else if target.port() == 1 {
                                s.reject(OpenErrReason::ConnectionRefused, "nothing listens on port 1");
                            } else {
                                s.send_open_ok(None);
                                std::mem::forget(s);
                            }
                        }
                        (_, f) => {
                            let _ = to.dispatch(f);
                        }
                    }
                }
            });
        }
        wire(s_rx, node.clone(), Some(b), node.clone());
        wire(n_rx, server.clone(), None, node);
        server
    }

    fn add(reg: &Registry, w: &Watchdog, n: u8, b: Behaviour) {
        let id = [n; 16];
        let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, n));
        reg.insert(Arc::new(NodeHandle::new(
            id,
            Ipv4Addr::new(100, 64, 0, n),
            "bob".into(),
            u64::from(n),
            fake_node(b),
            ip,
            None,
            64,
            0,
        )));
        w.record(
            crate::watchdog::Event::Online { device: id, owner: "bob", ip, country: None },
            crate::store::now_secs(),
        );
    }

    fn router(nodes: &[(u8, Behaviour)]) -> (Router, Arc<Watchdog>, Arc<crate::telemetry::Metrics>) {
        let limits = Limits::default();
        let metrics = Arc::new(crate::telemetry::Metrics::default());
        let w = Arc::new(Watchdog::new(
            WatchdogConfig::default(),
            WatchdogLimits::from_limits(&limits),
            None,
            metrics.clone(),
        ));
        let reg = Arc::new(Registry::new());
        for (n, b) in nodes {
            add(&reg, &w, *n, *b);
        }
        let base = crate::egress::EgressPolicy { allow_private_targets: true, ..Default::default() };
        let inputs =
            super::super::own_addresses::PolicyInputs { base, listeners: vec![], public_address: String::new() };
        let policy = inputs.policy(&Default::default());
        let geoip = Arc::new(crate::geoip::SharedGeoIp::empty());
        (
            Router::new(reg, policy, geoip, w.clone(), &limits, metrics.clone(), crate::identity::TrustLevel::None),
            w,
            metrics,
        )
    }

    fn targeting(username: &str) -> Targeting {
        crate::relay::username::parse(username).unwrap()
    }

    fn target(port: u16) -> Target {
        Target::Domain("example.com".into(), port)
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_node_costs_one_retry_and_is_then_skipped() {
        let (r, w, metrics) = router(&[(1, Behaviour::Frozen), (2, Behaviour::Answers)]);
        for i in 0..10 {
            let routed = r.open(&targeting("alice"), target(443)).await.unwrap_or_else(|e| panic!("open {i}: {e}"));
            assert_eq!(routed.node.device_id, [2; 16]);
        }
        assert_eq!(metrics.open_retries.get(), 1, "one client waited on the frozen node, once");
        assert!(!w.routable(&[1; 16]) && w.routable(&[2; 16]));
        // Pinned to the frozen node: no node to wait on, refused at once.
        let pinned = r.open(&targeting("alice-node-100.64.0.1"), target(443)).await;
        assert!(matches!(pinned, Err(RouteError::NoNode(_))), "{:?}", pinned.err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_busy_below_its_declared_cap_gets_no_more_streams_until_it_declares_again() {
        let (r, w, _) = router(&[(1, Behaviour::Busy), (2, Behaviour::Answers)]);
        let mut via = Vec::new();
        for _ in 0..6 {
            via.push(r.open(&targeting("alice"), target(443)).await.unwrap().node.device_id[0]);
        }
        assert!(via.iter().all(|n| *n == 2), "{via:?}");
        let busy = r.registry.get(&[1; 16]).unwrap();
        assert_eq!(busy.max_streams(), 0, "taken at its word: no stream fits");
        let (_, q) = w.snapshot().into_iter().find(|(d, _)| *d == [1; 16]).unwrap();
        assert_eq!(q.minutes.iter().map(|m| m.busy_below).sum::<u32>(), 1, "asked once, then skipped");
        // Its next heartbeat declares 64 again.
        busy.heartbeat(crate::tunnel::protocol::Heartbeat { max_streams: Some(64), ..Default::default() }, 1024, 0);
        assert_eq!(busy.max_streams(), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn node_side_failures_are_retried_elsewhere_but_a_targets_refusal_is_not() {
        let (r, w, metrics) = router(&[(1, Behaviour::Unreachable), (2, Behaviour::Answers)]);
        for _ in 0..6 {
            let routed = r.open(&targeting("alice"), target(443)).await.unwrap();
            assert_eq!(routed.node.device_id, [2; 16]);
        }
        let retries = metrics.open_retries.get();
        assert!(retries >= 1, "the unreachable node was tried and retried around");
        // A refused connection is the target's answer: returned at once, not tried elsewhere.
        let (only, _, m) = router(&[(2, Behaviour::Answers), (3, Behaviour::Answers)]);
        let refused = only.open(&targeting("alice"), target(1)).await;
        assert!(
            matches!(refused, Err(RouteError::Node { reason: OpenErrReason::ConnectionRefused, .. })),
            "{:?}",
            refused.err()
        );
        assert_eq!(m.open_retries.get(), 0);
        // The unreachable node answered each time: it stays routable until judged.
        assert!(w.routable(&[1; 16]));
        // A strict session or a pinned node is never retried elsewhere.
        let pinned = r.open(&targeting("alice-node-100.64.0.1"), target(443)).await;
        assert!(
            matches!(pinned, Err(RouteError::Node { reason: OpenErrReason::NetworkUnreachable, .. })),
            "{:?}",
            pinned.err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_node_is_counted_as_unmet_demand_by_reason() {
        let (r, w, _) = router(&[]);
        assert!(matches!(r.open(&targeting("alice"), target(443)).await, Err(RouteError::NoNode(_))));
        let (r2, w2, _) = router(&[(1, Behaviour::Answers)]);
        w2.set_override(&[1; 16], "bob", Some(crate::watchdog::quality::State::Flagged), "test", "admin", 0);
        let e = r2.open(&targeting("alice"), target(443)).await.err().unwrap();
        assert!(e.to_string().contains("flagged"), "{e}");
        let reasons = |w: &Watchdog| w.unmet_demand().into_iter().map(|u| (u.reason, u.count)).collect::<Vec<_>>();
        assert_eq!(reasons(&w), [(UnmetReason::NoNode, 1)]);
        assert_eq!(reasons(&w2), [(UnmetReason::AllFlagged, 1)]);
        // Asking again for a node nobody has is answered from a second's memory, counted all the
        // same; a node coming online ends the memory at once.
        let pinned = targeting("alice-node-100.64.0.9");
        for _ in 0..3 {
            let e = r.open(&pinned, target(443)).await.err().unwrap();
            assert!(e.to_string().contains("node 100.64.0.9"), "{e}");
        }
        let shape = (None, pinned.node, crate::identity::TrustLevel::None, false);
        assert!(r.no_node.get(&shape).is_some());
        assert_eq!(reasons(&w), [(UnmetReason::NoNode, 4)]);
        add(&r.registry, &w, 9, Behaviour::Answers);
        let routed = r.open(&pinned, target(443)).await.unwrap();
        assert_eq!(routed.node.device_id, [9; 16], "a pinned node is looked up");
        // A country asked for without a GeoIP database: demand for it all the same.
        let e = r.open(&targeting("alice-country-de"), target(443)).await.err().unwrap();
        assert!(e.to_string().contains("GeoIP"), "{e}");
        let rows = w.unmet_demand();
        assert!(rows.iter().any(|u| u.country == "DE" && u.reason == UnmetReason::NoNode && u.count == 1), "{rows:?}");
        assert!(rows.iter().any(|u| u.country == "any" && u.reason == UnmetReason::NoNode && u.count == 4), "{rows:?}");
    }
}
