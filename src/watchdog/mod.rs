//! The quality watchdog: measures every node from events the tunnel and the relay report
//! (never by reaching into them), scores it, moves it between healthy, degraded, flagged and
//! banned with reasons, and answers the router's questions — which nodes may be routed, best
//! tier first — from per-tier lists, without scanning every node.
//!
//! Events arrive through [`Watchdog::record`], a lock-light recorder: one read of the node map
//! and the node's own mutex; no I/O. Every `evaluate_secs` [`Watchdog::run`] re-scores the
//! nodes, applies the changes (the audit log, the device ban for `banned`), writes a summary of
//! each node to the database, and publishes each change on [`Watchdog::subscribe`] — the one
//! place a notifier (the Telegram bot) listens. docs/watchdog.md explains the numbers.

pub mod config;
pub mod quality;
pub mod reputation;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use self::config::WatchdogConfig;
use self::quality::{Change, FailureClass, NodeQuality, Override, Reason, ReasonCode, State, Summary};
use crate::identity::DeviceId;
use crate::store::{AuditEntry, Store};
use crate::telemetry::Metrics;

/// What the tunnel and the relay report. `device` is always the node's device id.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A node finished its handshake; `country`: of its public IP, when a GeoIP database
    /// knows it (routing by country walks that country's tier lists only).
    Online { device: DeviceId, owner: &'a str, ip: IpAddr, country: Option<[u8; 2]> },
    /// A heartbeat, with the tunnel's last round-trip sample. `counter`: when the node declares
    /// a data cap, the traffic counter it holds against it with what the server carried
    /// through its tunnel so far (see [`Counter`]).
    Heartbeat {
        device: DeviceId,
        serving: bool,
        pause_reason: Option<&'a str>,
        rtt: Option<Duration>,
        counter: Option<Counter>,
    },
    /// The node refused an OPEN as busy (OPEN_ERR node_busy) with `active` streams open on the
    /// server's side and a declared cap of `declared` (the smaller of its own and the server's).
    Busy { device: DeviceId, active: usize, declared: usize },
    /// The tunnel ended; `node_side`: the node went away (not a ban, replacement or shutdown).
    Offline { device: DeviceId, node_side: bool },
    /// A stream opened for `client` to `target`.
    Opened { device: DeviceId, target: &'a str },
    /// An open failed. `answered`: the node said why (OPEN_ERR); false: it never answered or
    /// the tunnel closed. `client` is the account that asked.
    OpenFailed { device: DeviceId, target: &'a str, client: &'a str, class: FailureClass, answered: bool },
    /// A stream to `target` ended after carrying `up` bytes out and `down` back; `ttfb`: from
    /// the open to the first byte back.
    /// `waited`: the stream ended by the idle timeout or lasted at least [`SILENT_AFTER`]; only
    /// such a stream may count as silent (a client that closes at once proves nothing).
    StreamEnded {
        device: DeviceId,
        target: &'a str,
        client: &'a str,
        up: u64,
        down: u64,
        ttfb: Option<Duration>,
        waited: bool,
    },
    /// A probe through the node came back from the server's probe endpoint: the IP the
    /// endpoint saw (the node's egress), the time from the open to the first echoed byte, and
    /// the throughput (kbit/s) when measurable.
    Probe { device: DeviceId, egress: IpAddr, ttfb: Duration, kbps: Option<u32> },
}

/// How long a stream that brought nothing back must have waited for it before it may count
/// as silent (unless it ended by the idle timeout).
pub const SILENT_AFTER: Duration = Duration::from_secs(10);

/// A node's own traffic counter (HEARTBEAT `bytes_month`, else `bytes_today`: what it holds
/// against its declared data caps) next to the DATA payload the server carried through its
/// tunnel (both ways, since the tunnel opened). Their growth between heartbeats is compared:
/// a node that counts much less than it carries would let its owner's cap be passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub node: u64,
    pub carried: u64,
}

/// How many streams fewer than its declared cap a node must have open before a busy refusal
/// counts as refusing below its cap: a tenth of the cap, at least 2 (the node may still count
/// streams whose RESET is on its way).
pub fn busy_slack(declared: usize) -> usize {
    (declared / 10).max(2)
}

/// What [`Watchdog::record`] made of an open failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Counted against the node.
    pub counted: bool,
    /// The client is over its cap of failed opens: no more retries for it this minute.
    pub client_capped: bool,
}

/// Routing tiers, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Healthy with a score of at least `high_score`, on enough evidence.
    High = 0,
    /// Healthy.
    Normal = 1,
    /// Degraded.
    Low = 2,
}

/// Why a request found no node (unmet demand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnmetReason {
    /// No online node matches at all.
    NoNode,
    /// Matching nodes are all at their stream caps.
    AllBusy,
    /// Matching nodes are all paused, draining or at their owners' data caps.
    AllPaused,
    /// Matching nodes are all flagged or not answering.
    AllFlagged,
}

impl UnmetReason {
    pub const ALL: [UnmetReason; 4] =
        [UnmetReason::NoNode, UnmetReason::AllBusy, UnmetReason::AllPaused, UnmetReason::AllFlagged];

    pub fn as_str(self) -> &'static str {
        match self {
            UnmetReason::NoNode => "no_node",
            UnmetReason::AllBusy => "all_busy",
            UnmetReason::AllPaused => "all_paused",
            UnmetReason::AllFlagged => "all_flagged",
        }
    }
}

/// Unmet demand for one country (`any` without country targeting) and reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UnmetRow {
    pub country: String,
    pub reason: UnmetReason,
    pub count: u64,
}

/// A state change of one device: the event a notifier subscribes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    /// Device id (hex).
    pub device: String,
    pub owner: String,
    pub from: State,
    pub to: State,
    pub reason: ReasonCode,
    pub detail: String,
    pub score: u8,
    /// Unix seconds.
    pub at: u64,
}

/// A device's quality as the pages show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QualityView {
    pub state: State,
    pub score: u8,
    /// Unix seconds of the last change of state.
    pub since: u64,
    /// Worst first; each says what would raise the score.
    pub reasons: Vec<Reason>,
    /// Not answering OPENs: no new streams until its next heartbeat.
    pub unresponsive: bool,
    /// In the high tier (`-quality-high`).
    pub high_tier: bool,
    /// The node paused itself, and the owner setting that did it.
    pub pause_reason: Option<String>,
    pub admin: Option<Override>,
    pub summary: Summary,
}

/// Called to ban a device (the device ban: store, streams cut, tunnel kicked).
pub type BanHook = Arc<dyn Fn(DeviceId, &str) + Send + Sync>;

#[derive(Debug, Default)]
struct TierList {
    ids: Vec<DeviceId>,
    pos: HashMap<DeviceId, usize>,
}

impl TierList {
    fn insert(&mut self, id: DeviceId) {
        if !self.pos.contains_key(&id) {
            self.pos.insert(id, self.ids.len());
            self.ids.push(id);
        }
    }

    fn remove(&mut self, id: &DeviceId) {
        if let Some(i) = self.pos.remove(id) {
            self.ids.swap_remove(i);
            if let Some(moved) = self.ids.get(i) {
                self.pos.insert(*moved, i);
            }
        }
    }
}

/// The routable nodes by tier, all of them and per country, so a request for a rare country
/// walks that country's nodes, not a whole tier. Bounded by the nodes the watchdog keeps
/// (`limits.watchdog_max_nodes`); a country's lists go when its last node leaves.
#[derive(Debug, Default)]
struct Tiers {
    lists: [TierList; 3],
    by_country: HashMap<[u8; 2], [TierList; 3]>,
    member: HashMap<DeviceId, (Tier, Option<[u8; 2]>)>,
}

impl Tiers {
    fn list(&self, tier: Tier, country: Option<[u8; 2]>) -> Option<&TierList> {
        match country {
            None => Some(&self.lists[tier as usize]),
            Some(c) => self.by_country.get(&c).map(|l| &l[tier as usize]),
        }
    }

    fn len(&self, tier: Tier, country: Option<[u8; 2]>) -> usize {
        self.list(tier, country).map_or(0, |l| l.ids.len())
    }

    fn set(&mut self, id: &DeviceId, to: Option<(Tier, Option<[u8; 2]>)>) {
        let old = self.member.get(id).copied();
        if old == to {
            return;
        }
        if let Some((t, c)) = old {
            self.lists[t as usize].remove(id);
            if let Some(c) = c
                && let Some(l) = self.by_country.get_mut(&c)
            {
                l[t as usize].remove(id);
                if l.iter().all(|x| x.ids.is_empty()) {
                    self.by_country.remove(&c);
                }
            }
            self.member.remove(id);
        }
        if let Some((t, c)) = to {
            self.lists[t as usize].insert(*id);
            if let Some(c) = c {
                self.by_country.entry(c).or_default()[t as usize].insert(*id);
            }
            self.member.insert(*id, (t, c));
        }
    }
}

/// The watchdog service.
pub struct Watchdog {
    cfg: WatchdogConfig,
    nodes: RwLock<HashMap<DeviceId, Arc<Mutex<NodeQuality>>>>,
    tiers: Mutex<Tiers>,
    /// Online devices per public IP.
    ips: Mutex<HashMap<IpAddr, u32>>,
    /// Target → the node it last worked through (attribution of failures).
    targets: moka::sync::Cache<String, DeviceId>,
    /// Target → the node it last sent bytes back through (attribution of silent streams).
    answered: moka::sync::Cache<String, DeviceId>,
    /// Failed opens per client this minute.
    /// Failures held against nodes per (client, minute of the watchdog's clock).
    client_failures: moka::sync::Cache<(String, u64), Arc<AtomicU32>>,
    client_failure_cap: u32,
    max_nodes: usize,
    unmet: Mutex<HashMap<(String, UnmetReason), u64>>,
    changes: tokio::sync::broadcast::Sender<Transition>,
    geoip: Option<Arc<crate::geoip::SharedGeoIp>>,
    metrics: Arc<Metrics>,
    rotation: AtomicUsize,
    probes: Mutex<ProbeClock>,
    probes_per_minute: u32,
    reputation: Option<Arc<reputation::Reputation>>,
    /// A fingerprint of each record as last written to the database: only records whose
    /// fingerprint changed are written again ([`Watchdog::persist`]). One per node kept.
    written: Mutex<HashMap<DeviceId, u64>>,
}

/// When each node was last probed, and the probes started this minute (the rate limit).
#[derive(Debug, Default)]
struct ProbeClock {
    last: HashMap<DeviceId, u64>,
    minute: u64,
    started: u32,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watchdog")
    }
}

/// The bounds the watchdog keeps (`[limits]` keys).
#[derive(Debug, Clone, Copy)]
pub struct WatchdogLimits {
    pub max_nodes: usize,
    pub max_targets: u64,
    pub max_clients: u64,
    pub client_failed_opens_per_minute: u32,
    pub probes_per_minute: u32,
}

impl WatchdogLimits {
    pub fn from_limits(l: &crate::config::Limits) -> Self {
        WatchdogLimits {
            max_nodes: l.watchdog_max_nodes,
            max_targets: l.watchdog_max_targets,
            max_clients: l.watchdog_max_clients,
            client_failed_opens_per_minute: l.client_failed_opens_per_minute,
            probes_per_minute: l.watchdog_probes_per_minute,
        }
    }
}

/// A record as the database keeps it (JSON) and its fingerprint. Left out (empty): the uptime,
/// which grows every evaluation while online (a restored record is offline), and the RTT and
/// time-to-first-byte percentiles, which follow every heartbeat and come from samples that are
/// not kept (after a restart they start again from fresh ones).
fn durable(id: &DeviceId, q: &mut NodeQuality) -> Option<(Vec<u8>, u64)> {
    use std::hash::{Hash, Hasher};
    let s = &mut q.summary;
    let derived = (std::mem::take(&mut s.uptime_s), s.rtt_p50_ms.take(), s.rtt_p95_ms.take(), s.ttfb_p50_ms.take());
    let json = serde_json::to_vec(&*q);
    let s = &mut q.summary;
    (s.uptime_s, s.rtt_p50_ms, s.rtt_p95_ms, s.ttfb_p50_ms) = derived;
    match json {
        Ok(json) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            json.hash(&mut h);
            let print = h.finish();
            Some((json, print))
        }
        Err(e) => {
            tracing::warn!(device = %hex::encode(id), error = %e, "could not encode a quality record");
            None
        }
    }
}

/// Records written per transaction. A busy fleet changes every record each evaluation: in one
/// transaction, the JSON of all of them and redb's dirty pages were held at once (a spike of
/// ~100 MiB a minute at 10,000 nodes), and every other writer waited for it whole.
const PERSIST_CHUNK: usize = 500;

/// A share of the fleet: the nodes whose device id falls at `index` among `of`
/// ([`crate::identity::spread`]). [`Watchdog::run`] walks the fleet one share at a time, [`EVALUATION_SHARES`] of
/// them spread over each `evaluate_secs`: each node is still judged every `evaluate_secs`, but
/// the summaries, reasons and records of 10,000 nodes are not all built and written in the same
/// second (a spike of 20–30 MiB every minute in the soak, docs/reliability.md "Soak").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    index: u64,
    of: u64,
}

impl Share {
    /// The whole fleet at once.
    pub const ALL: Share = Share { index: 0, of: 1 };

    fn holds(self, id: &DeviceId) -> bool {
        crate::identity::spread(id, u128::from(self.of)) == u128::from(self.index)
    }
}

/// How many shares [`Watchdog::run`] walks the fleet in (fewer when `evaluate_secs` is shorter:
/// a share a second at most).
pub const EVALUATION_SHARES: u64 = 12;

/// [`Watchdog::run`]'s schedule for `evaluate_secs`: how long between two shares, and the
/// shares in turn, round and round (each node in one of them, so each judged once every
/// `evaluate_secs`).
fn share_schedule(evaluate_secs: u64) -> (Duration, impl Iterator<Item = Share>) {
    let of = EVALUATION_SHARES.min(evaluate_secs).max(1);
    let every = Duration::from_secs(evaluate_secs.max(1)) / of as u32;
    (every, (0..of).cycle().map(move |index| Share { index, of }))
}

fn tier_of(cfg: &WatchdogConfig, q: &NodeQuality) -> Option<Tier> {
    if !q.routable() {
        return None;
    }
    Some(match q.state {
        State::Healthy if q.score >= cfg.high_score && q.judged_opens() >= cfg.min_opens => Tier::High,
        State::Healthy => Tier::Normal,
        _ => Tier::Low,
    })
}

impl Watchdog {
    pub fn new(
        cfg: WatchdogConfig,
        limits: WatchdogLimits,
        geoip: Option<Arc<crate::geoip::SharedGeoIp>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let window = Duration::from_secs(cfg.window_secs);
        Watchdog {
            nodes: RwLock::default(),
            tiers: Mutex::default(),
            ips: Mutex::default(),
            targets: moka::sync::Cache::builder().max_capacity(limits.max_targets).time_to_live(window).build(),
            answered: moka::sync::Cache::builder().max_capacity(limits.max_targets).time_to_live(window).build(),
            client_failures: moka::sync::Cache::builder()
                .max_capacity(limits.max_clients)
                .time_to_live(Duration::from_secs(120))
                .build(),
            client_failure_cap: limits.client_failed_opens_per_minute,
            max_nodes: limits.max_nodes,
            unmet: Mutex::default(),
            changes: tokio::sync::broadcast::channel(256).0,
            geoip,
            metrics,
            rotation: AtomicUsize::new(0),
            probes: Mutex::default(),
            probes_per_minute: limits.probes_per_minute,
            written: Mutex::default(),
            reputation: reputation::Reputation::new(&cfg, limits.max_nodes as u64)
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "no IP-reputation lookups");
                    None
                })
                .map(Arc::new),
            cfg,
        }
    }

    pub fn config(&self) -> &WatchdogConfig {
        &self.cfg
    }

    /// Every state change, as it happens (slow receivers miss the oldest: a bounded channel).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Transition> {
        self.changes.subscribe()
    }

    fn node(&self, id: &DeviceId) -> Option<Arc<Mutex<NodeQuality>>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// The node's entry, created for a device coming online (bounded: when full, the offline
    /// entry idle longest is forgotten).
    fn entry(&self, id: &DeviceId, owner: &str, now: u64) -> Arc<Mutex<NodeQuality>> {
        if let Some(n) = self.node(id) {
            return n;
        }
        let mut map = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_nodes && !map.contains_key(id) {
            let victim = map
                .iter()
                .filter_map(|(k, v)| {
                    let q = crate::sync::lock(v);
                    (!q.online && q.admin.is_none()).then_some((q.since, *k))
                })
                .min();
            if let Some((_, k)) = victim {
                map.remove(&k);
                crate::sync::lock(&self.written).remove(&k);
            }
        }
        map.entry(*id).or_insert_with(|| Arc::new(Mutex::new(NodeQuality::new(owner, now)))).clone()
    }

    fn retier(&self, id: &DeviceId, q: &NodeQuality) {
        let tier = if self.cfg.enabled { tier_of(&self.cfg, q) } else { q.online.then_some(Tier::Normal) };
        crate::sync::lock(&self.tiers).set(id, tier.map(|t| (t, q.country)));
    }

    /// A new GeoIP database gave the node's public IP another country (or none).
    pub fn set_country(&self, device: &DeviceId, country: Option<[u8; 2]>) {
        if let Some(n) = self.node(device) {
            let mut q = crate::sync::lock(&n);
            if q.country != country {
                q.country = country;
                self.retier(device, &q);
            }
        }
    }

    /// Records one event at `now` (Unix seconds). Never blocks on I/O.
    pub fn record(&self, ev: Event<'_>, now: u64) -> Verdict {
        let mut verdict = Verdict { counted: false, client_capped: false };
        let width = self.cfg.bucket_minutes();
        match ev {
            Event::Online { device, owner, ip, country } => {
                let n = self.entry(&device, owner, now);
                let asn = self.geoip.as_ref().and_then(|g| g.asn(ip));
                let mut q = crate::sync::lock(&n);
                if q.online {
                    // A new connection replacing a live one: the node lost its tunnel.
                    if q.serving {
                        q.minute(now, width).reconnects += 1;
                    }
                    if let Some(old) = q.public_ip {
                        self.ip_count(old, -1);
                    }
                }
                // The handshake refuses banned devices: one that connects was unbanned (perhaps
                // while the server was stopped), so it starts afresh.
                if q.state == State::Banned {
                    tracing::info!(device = %hex::encode(device), "a device the watchdog had banned is back: judged afresh");
                    q.forget_measurements();
                    q.flags.clear();
                    q.state = State::Healthy;
                    q.since = now;
                    q.score = 100;
                    q.reasons.clear();
                }
                q.owner = owner.to_owned();
                q.online = true;
                q.public_ip = Some(ip);
                q.country = country;
                q.asn = asn;
                q.connected_at = now;
                q.counter = None;
                q.serving = true;
                q.unresponsive_since = None;
                self.ip_count(ip, 1);
                self.retier(&device, &q);
            }
            Event::Heartbeat { device, serving, pause_reason, rtt, counter } => {
                if let Some(n) = self.node(&device) {
                    let mut q = crate::sync::lock(&n);
                    q.count_traffic(now, width, counter);
                    q.serving = serving;
                    q.pause_reason = if serving { None } else { pause_reason.map(|r| r.chars().take(32).collect()) };
                    if let Some(r) = rtt {
                        q.sample_rtt(now, r.as_millis().min(u128::from(u32::MAX)) as u32);
                    }
                    q.unresponsive_since = None;
                    self.retier(&device, &q);
                }
            }
            Event::Offline { device, node_side } => {
                if let Some(n) = self.node(&device) {
                    let mut q = crate::sync::lock(&n);
                    if q.online {
                        if let Some(ip) = q.public_ip {
                            self.ip_count(ip, -1);
                        }
                        // A node that paused itself, with its owner's reason, is not churning.
                        if node_side && q.serving {
                            q.minute(now, width).reconnects += 1;
                        }
                    }
                    q.online = false;
                    self.retier(&device, &q);
                }
            }
            Event::Busy { device, active, declared } => {
                if active.saturating_add(busy_slack(declared)) <= declared
                    && let Some(n) = self.node(&device)
                {
                    let mut q = crate::sync::lock(&n);
                    let m = q.minute(now, width);
                    m.busy_below += 1;
                    m.busy_max_active = m.busy_max_active.max(active.min(u32::MAX as usize) as u32);
                    m.busy_declared = declared.min(u32::MAX as usize) as u32;
                }
            }
            Event::Opened { device, target } => {
                self.targets.insert(target.to_owned(), device);
                if let Some(n) = self.node(&device) {
                    let mut q = crate::sync::lock(&n);
                    q.minute(now, width).opens_ok += 1;
                    if q.unresponsive_since.take().is_some() {
                        self.retier(&device, &q);
                    }
                }
            }
            Event::OpenFailed { device, target, client, class, answered } => {
                let fails = self.client_failures.get_with((client.to_owned(), now / 60), Default::default);
                let capped = fails.fetch_add(1, Ordering::Relaxed) >= self.client_failure_cap;
                verdict.client_capped = capped;
                // Against the node only when it never answered, or when the target recently
                // worked through another node: a client asking for dead targets flags nobody.
                let worked_elsewhere = self.targets.get(target).is_some_and(|d| d != device);
                let counted = !capped && class != FailureClass::Policy && (!answered || worked_elsewhere);
                verdict.counted = counted;
                self.metrics
                    .node_open_failures
                    .get_or_create(&crate::telemetry::OpenFailureLabel {
                        class: class.as_str().into(),
                        counted: if counted { "yes" } else { "no" }.into(),
                    })
                    .inc();
                if let Some(n) = self.node(&device) {
                    let mut q = crate::sync::lock(&n);
                    q.record_failure(now, width, class, counted);
                    if !answered && class == FailureClass::Timeout {
                        q.unresponsive_since = Some(now);
                        self.retier(&device, &q);
                    }
                }
            }
            Event::Probe { device, egress, ttfb, kbps } => {
                if let Some(n) = self.node(&device) {
                    let mut q = crate::sync::lock(&n);
                    let tunnel = q.public_ip.map(crate::listener::source_key);
                    let egress_key = crate::listener::source_key(egress);
                    // Judged only within one address family: a dual-stack node's IPv6 tunnel
                    // and IPv4 egress are one connection, not a relay.
                    if let Some(t) = tunnel.filter(|t| t.is_ipv4() == egress_key.is_ipv4()) {
                        let m = q.minute(now, width);
                        m.probes += 1;
                        if t != egress_key {
                            m.egress_mismatch += 1;
                        }
                    }
                    q.last_probe = Some((egress, kbps));
                    q.sample_ttfb(now, ttfb.as_millis().min(u128::from(u32::MAX)) as u32);
                }
            }
            Event::StreamEnded { device, target, client, up, down, ttfb, waited } => {
                // Silent only counts when the target answered through another node (a target
                // that never answers anyone, a tarpit, flags nobody), when the stream waited
                // long enough (a client closing at once proves nothing), and within the client's
                // cap of failures held against nodes (like failed opens).
                let judged = if down > 0 {
                    self.answered.insert(target.to_owned(), device);
                    true
                } else if waited && up > 0 && self.answered.get(target).is_some_and(|d| d != device) {
                    let fails = self.client_failures.get_with((client.to_owned(), now / 60), Default::default);
                    fails.fetch_add(1, Ordering::Relaxed) < self.client_failure_cap
                } else {
                    false
                };
                if let Some(n) = self.node(&device) {
                    let mut q = crate::sync::lock(&n);
                    if up > 0 && judged {
                        let m = q.minute(now, width);
                        m.streams += 1;
                        if down == 0 {
                            m.silent += 1;
                        }
                    }
                    if let Some(t) = ttfb {
                        q.sample_stream_ttfb(now, t.as_millis().min(u128::from(u32::MAX)) as u32);
                    }
                }
            }
        }
        verdict
    }

    fn ip_count(&self, ip: IpAddr, delta: i32) {
        let mut ips = crate::sync::lock(&self.ips);
        let key = crate::listener::source_key(ip);
        let c = ips.entry(key).or_insert(0);
        *c = c.saturating_add_signed(delta);
        if *c == 0 {
            ips.remove(&key);
        }
    }

    /// Whether new streams may go to `device` now.
    pub fn routable(&self, device: &DeviceId) -> bool {
        if !self.cfg.enabled {
            return true;
        }
        crate::sync::lock(&self.tiers).member.contains_key(device)
    }

    /// Whether `device` is in the high tier (`-quality-high`).
    pub fn high_tier(&self, device: &DeviceId) -> bool {
        crate::sync::lock(&self.tiers).member.get(device).is_some_and(|m| m.0 == Tier::High)
    }

    /// Routable nodes in `tier`.
    pub fn tier_len(&self, tier: Tier) -> usize {
        crate::sync::lock(&self.tiers).len(tier, None)
    }

    /// Routable nodes in `tier` in `country` (upper case).
    pub fn country_tier_len(&self, tier: Tier, country: [u8; 2]) -> usize {
        crate::sync::lock(&self.tiers).len(tier, Some(country))
    }

    /// Offers routable nodes to `accept`, best tier first, until it has accepted `want` of
    /// them: the high and normal tiers in an order weighted by their sizes (a high-tier node
    /// is twice as likely to be offered first as a normal one), then the degraded tier only
    /// when no healthy node was accepted. Each tier is walked from a rotating start, so the
    /// work is about `want` nodes when most fit, not every node. With `country` (upper case)
    /// only that country's nodes are offered, from its own lists.
    pub fn offer(
        &self,
        high_only: bool,
        country: Option<[u8; 2]>,
        want: usize,
        mut accept: impl FnMut(&DeviceId) -> bool,
    ) {
        let r = self.rotation.fetch_add(1, Ordering::Relaxed);
        // Copy the ids to visit in bounded chunks, so `accept` never runs under the lock.
        let snapshot = |tier: Tier, start: usize, take: usize| -> (Vec<DeviceId>, usize) {
            let t = crate::sync::lock(&self.tiers);
            let Some(list) = t.list(tier, country) else { return (Vec::new(), 0) };
            let ids = &list.ids;
            let len = ids.len();
            let v = (0..take.min(len)).map(|i| ids[(start + i) % len.max(1)]).collect();
            (v, len)
        };
        let order: Vec<Tier> = if high_only {
            vec![Tier::High]
        } else {
            let (h, n) = {
                let t = crate::sync::lock(&self.tiers);
                (t.len(Tier::High, country), t.len(Tier::Normal, country))
            };
            let total = 2 * h + n;
            // A deterministic spread of the rotation counter over the weights.
            let high_first = total > 0 && (r.wrapping_mul(2_654_435_761) % total.max(1)) < 2 * h;
            if high_first {
                vec![Tier::High, Tier::Normal, Tier::Low]
            } else {
                vec![Tier::Normal, Tier::High, Tier::Low]
            }
        };
        let mut accepted = 0usize;
        for tier in order {
            if tier == Tier::Low && accepted > 0 {
                break;
            }
            let mut seen = 0usize;
            let start = r;
            loop {
                let (chunk, len) = snapshot(tier, start + seen, 64);
                if chunk.is_empty() {
                    break;
                }
                for id in &chunk {
                    if accept(id) {
                        accepted += 1;
                        if accepted >= want {
                            return;
                        }
                    }
                }
                seen += chunk.len();
                if seen >= len {
                    break;
                }
            }
        }
    }

    /// Whether to probe `device` now (and if so, the probe is counted as started): probes are
    /// on (`probe_listen`), the node was not probed in the last `probe_interval_secs`, and
    /// fewer than `limits.watchdog_probes_per_minute` probes started this minute. Whether the
    /// node may be probed at all (serving, no data cap) is the caller's to say.
    pub fn probe_due(&self, device: &DeviceId, now: u64) -> bool {
        if !self.cfg.enabled || self.cfg.probe_listen.is_none() {
            return false;
        }
        let mut c = crate::sync::lock(&self.probes);
        if c.minute != now / 60 {
            c.minute = now / 60;
            c.started = 0;
        }
        if c.started >= self.probes_per_minute {
            return false;
        }
        if c.last.get(device).is_some_and(|t| now.saturating_sub(*t) < self.cfg.probe_interval_secs) {
            return false;
        }
        // Bounded: past `watchdog_max_nodes` entries, the ones due anyway are forgotten.
        if c.last.len() >= self.max_nodes && !c.last.contains_key(device) {
            let interval = self.cfg.probe_interval_secs;
            c.last.retain(|_, t| now.saturating_sub(*t) < interval);
            if c.last.len() >= self.max_nodes {
                return false;
            }
        }
        c.last.insert(*device, now);
        c.started += 1;
        true
    }

    /// The public IPs of the online nodes (each once).
    pub fn online_ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|n| {
                let q = crate::sync::lock(n);
                q.public_ip.filter(|_| q.online)
            })
            .collect();
        ips.sort_unstable();
        ips.dedup();
        ips
    }

    /// The reputation service, when `reputation_url` is set.
    pub fn reputation(&self) -> Option<&Arc<reputation::Reputation>> {
        self.reputation.as_ref()
    }

    /// Counts a request that found no node.
    pub fn unmet(&self, country: Option<&str>, reason: UnmetReason) {
        let country = country.unwrap_or("any").to_ascii_uppercase();
        let country = if country == "ANY" { "any".to_owned() } else { country };
        self.metrics
            .unmet_demand
            .get_or_create(&crate::telemetry::UnmetLabel {
                // Label values are lower case (`de`, `any`).
                country: country.to_ascii_lowercase(),
                reason: reason.as_str().into(),
            })
            .inc();
        // Bounded: countries are two letters (or `any`), reasons four.
        *crate::sync::lock(&self.unmet).entry((country, reason)).or_insert(0) += 1;
    }

    /// Unmet demand since the server started, most first.
    pub fn unmet_demand(&self) -> Vec<UnmetRow> {
        let mut rows: Vec<UnmetRow> = crate::sync::lock(&self.unmet)
            .iter()
            .map(|((c, r), n)| UnmetRow { country: c.clone(), reason: *r, count: *n })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.country.cmp(&b.country)).then(a.reason.cmp(&b.reason)));
        rows
    }

    /// A device's quality, when the watchdog knows it.
    /// The pause reason the node last reported in a heartbeat (`daily_cap`, `not_on_wifi`…).
    pub fn pause_reason(&self, device: &DeviceId) -> Option<String> {
        self.node(device).and_then(|n| crate::sync::lock(&n).pause_reason.clone())
    }

    pub fn view(&self, device: &DeviceId) -> Option<QualityView> {
        let n = self.node(device)?;
        let q = crate::sync::lock(&n);
        let mut reasons = q.reasons.clone();
        if q.unresponsive_since.is_some() {
            reasons.insert(
                0,
                Reason {
                    code: ReasonCode::Unresponsive,
                    detail: "did not answer a stream request: no new streams until its next heartbeat".into(),
                    hint: "the node app or its connection froze: restart the app or check the network".into(),
                    factor: 1.0,
                },
            );
        }
        Some(QualityView {
            state: q.state,
            score: q.score,
            since: q.since,
            reasons,
            unresponsive: q.unresponsive_since.is_some(),
            high_tier: self.high_tier(device),
            pause_reason: q.pause_reason.clone(),
            admin: q.admin.clone(),
            summary: q.summary.clone(),
        })
    }

    /// Re-scores every node at `now`; the changes, published and counted (side effects on
    /// the database and the device ban are [`Watchdog::apply`]'s).
    pub fn evaluate(&self, now: u64) -> Vec<Transition> {
        self.evaluate_share(now, Share::ALL)
    }

    /// [`Watchdog::evaluate`] for the nodes in `share`; the online nodes by state are counted
    /// over the whole fleet.
    pub fn evaluate_share(&self, now: u64, share: Share) -> Vec<Transition> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        let nodes = self.nodes_in(share);
        let mut out = Vec::new();
        for (id, n) in nodes {
            let mut q = crate::sync::lock(&n);
            q.shared_ip = q.public_ip.filter(|_| q.online).and_then(|ip| {
                // Looked up, not the whole map copied for each share; a node's lock before the
                // addresses', as `record` takes them.
                let count = crate::sync::lock(&self.ips).get(&crate::listener::source_key(ip)).copied().unwrap_or(0);
                let cgnat = q.asn.as_ref().is_some_and(|(a, _)| self.cfg.cgnat_asns.contains(a));
                (count > self.cfg.max_devices_per_ip && !cgnat).then_some(count)
            });
            q.reputation_risk = match (&self.reputation, q.public_ip) {
                (Some(r), Some(ip)) if q.online => r.cached(ip),
                _ => None,
            };
            if let Some(c) = q.evaluate(&self.cfg, now) {
                out.push(self.transition(&id, &q.owner, c, now));
            }
            self.retier(&id, &q);
        }
        // Counted outside the map's lock: a new device waiting to be added would hold up
        // every reader behind it (heartbeats, opens) for the whole count.
        let mut by_state = [0i64; 4];
        for (_, n) in self.nodes_in(Share::ALL) {
            let q = crate::sync::lock(&n);
            if q.online {
                by_state[q.state as usize] += 1;
            }
        }
        for (s, n) in State::ALL.iter().zip(by_state) {
            self.metrics
                .watchdog_nodes
                .get_or_create(&crate::telemetry::QualityStateLabel { state: s.as_str().into() })
                .set(n);
        }
        out
    }

    fn transition(&self, id: &DeviceId, owner: &str, c: Change, now: u64) -> Transition {
        let t = Transition {
            device: hex::encode(id),
            owner: owner.to_owned(),
            from: c.from,
            to: c.to,
            reason: c.reason,
            detail: c.detail,
            score: c.score,
            at: now,
        };
        self.metrics
            .watchdog_transitions
            .get_or_create(&crate::telemetry::TransitionLabel {
                to: t.to.as_str().into(),
                reason: t.reason.as_str().into(),
            })
            .inc();
        tracing::info!(device = %t.device, owner = %t.owner, from = t.from.as_str(), to = t.to.as_str(),
            reason = t.reason.as_str(), detail = %t.detail, score = t.score, "node quality changed");
        let _ = self.changes.send(t.clone());
        t
    }

    /// Sets (or with `None` clears) an admin's state for a device; the change, if any.
    pub fn set_override(
        &self,
        device: &DeviceId,
        owner: &str,
        state: Option<State>,
        note: &str,
        by: &str,
        now: u64,
    ) -> Option<Transition> {
        let n = self.entry(device, owner, now);
        let mut q = crate::sync::lock(&n);
        let had = q.admin.take();
        q.admin = state.map(|s| Override { state: s, note: note.to_owned(), by: by.to_owned(), at: now });
        let change = match state {
            // Back to automatic: from healthy, judged at the next evaluation on the window.
            None if had.is_some() && q.state != State::Healthy => {
                let c = Change {
                    from: q.state,
                    to: State::Healthy,
                    reason: ReasonCode::AdminOverride,
                    detail: if note.is_empty() { "override cleared".to_owned() } else { note.to_owned() },
                    score: q.score,
                };
                q.state = State::Healthy;
                q.since = now;
                Some(c)
            }
            Some(s) if s != q.state => {
                let c = Change {
                    from: q.state,
                    to: s,
                    reason: ReasonCode::AdminOverride,
                    detail: note.to_owned(),
                    score: q.score,
                };
                q.state = s;
                q.since = now;
                Some(c)
            }
            _ => None,
        };
        let t = change.map(|c| self.transition(device, &q.owner.clone(), c, now));
        self.retier(device, &q);
        t
    }

    /// An admin lifted the device's ban: it starts afresh, healthy, with no flags.
    pub fn unbanned(&self, device: &DeviceId, now: u64) -> Option<Transition> {
        let n = self.node(device)?;
        let mut q = crate::sync::lock(&n);
        q.forget_measurements();
        q.flags.clear();
        let from = q.state;
        q.state = State::Healthy;
        q.since = now;
        q.score = 100;
        q.reasons.clear();
        if q.admin.as_ref().is_some_and(|o| o.state == State::Banned) {
            q.admin = None;
        }
        self.retier(device, &q);
        (from != State::Healthy).then(|| {
            let c = Change {
                from,
                to: State::Healthy,
                reason: ReasonCode::AdminUnban,
                detail: "ban lifted".into(),
                score: 100,
            };
            self.transition(device, &q.owner.clone(), c, now)
        })
    }

    /// Restores what the database kept (states, flags, overrides), all offline. What was read
    /// counts as written: an unchanged record is not written again.
    pub fn restore(&self, rows: Vec<(DeviceId, NodeQuality)>) {
        let mut map = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let mut written = crate::sync::lock(&self.written);
        for (id, mut q) in rows.into_iter().take(self.max_nodes) {
            q.online = false;
            q.unresponsive_since = None;
            q.summary.uptime_s = 0;
            (q.summary.rtt_p50_ms, q.summary.rtt_p95_ms, q.summary.ttfb_p50_ms) = (None, None, None);
            if let Some((_, print)) = durable(&id, &mut q) {
                written.insert(id, print);
            }
            map.insert(id, Arc::new(Mutex::new(q)));
        }
    }

    /// Forgets a device that was removed: its measurements and its place in routing. (Its
    /// record in the database goes with the device, `Store::remove_device`.)
    pub fn forget(&self, device: &DeviceId) {
        let gone = self.nodes.write().unwrap_or_else(|p| p.into_inner()).remove(device);
        if let Some(n) = gone {
            let q = crate::sync::lock(&n);
            if q.online
                && let Some(ip) = q.public_ip
            {
                self.ip_count(ip, -1);
            }
            crate::sync::lock(&self.tiers).set(device, None);
        }
        crate::sync::lock(&self.written).remove(device);
        crate::sync::lock(&self.probes).last.remove(device);
    }

    /// Writes the records that changed since they were last written, [`PERSIST_CHUNK`] to a
    /// transaction (none when nothing changed); how many. What [`durable`] leaves out is no
    /// change. A chunk that fails to write does not stop the others: the first error is
    /// returned once all were tried (its records are tried again at the next call).
    pub fn persist(&self, store: &Store) -> Result<usize, crate::store::StoreError> {
        self.persist_share(store, Share::ALL)
    }

    /// [`Watchdog::persist`] for the nodes in `share`.
    pub fn persist_share(&self, store: &Store, share: Share) -> Result<usize, crate::store::StoreError> {
        let nodes = self.nodes_in(share);
        let (mut written, mut failed) = (0, None);
        for chunk in nodes.chunks(PERSIST_CHUNK) {
            match self.persist_chunk(store, chunk) {
                Ok(n) => written += n,
                Err(e) => _ = failed.get_or_insert(e),
            }
        }
        match failed {
            None => Ok(written),
            Some(e) => {
                tracing::warn!(written, "not every changed node quality record could be written");
                Err(e)
            }
        }
    }

    /// The nodes in `share`, taken out of the map (its read lock is held only for that).
    fn nodes_in(&self, share: Share) -> Vec<(DeviceId, Arc<Mutex<NodeQuality>>)> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(k, _)| share.holds(k))
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    fn persist_chunk(
        &self,
        store: &Store,
        nodes: &[(DeviceId, Arc<Mutex<NodeQuality>>)],
    ) -> Result<usize, crate::store::StoreError> {
        let mut rows = Vec::new();
        let mut prints = Vec::new();
        {
            let written = crate::sync::lock(&self.written);
            for (id, n) in nodes {
                let Some((json, print)) = durable(id, &mut crate::sync::lock(n)) else { continue };
                if written.get(id) != Some(&print) {
                    rows.push((*id, json));
                    prints.push((*id, print));
                }
            }
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let stored = store.put_quality_json(&rows)?;
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut written = crate::sync::lock(&self.written);
        for (id, print) in prints {
            // Forgotten meanwhile (removed): nothing to remember. A row the store skipped (its
            // device gone) is remembered like the others: the watchdog forgets the device too.
            if nodes.contains_key(&id) {
                written.insert(id, print);
            }
        }
        Ok(stored)
    }

    /// Every node's record, to write to the database.
    pub fn snapshot(&self) -> Vec<(DeviceId, NodeQuality)> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, crate::sync::lock(v).clone()))
            .collect()
    }

    /// Writes the changes to the audit log and bans the devices that reached `banned`.
    pub fn apply(&self, store: &Store, changes: &[Transition], ban: &BanHook) {
        for t in changes {
            let entry = AuditEntry {
                seq: 0,
                time: t.at,
                actor: "watchdog".into(),
                action: "device.quality".into(),
                target: t.device.clone(),
                reason: Some(format!("{}: {}", t.reason.as_str(), t.detail)),
                before: Some(serde_json::json!({ "state": t.from })),
                after: Some(serde_json::json!({ "state": t.to, "score": t.score })),
            };
            if let Err(e) = store.append_audit(entry) {
                tracing::warn!(error = %e, "could not write a quality change to the audit log");
            }
            if t.to == State::Banned
                && let Some(id) = hex::decode(&t.device).ok().and_then(|v| <[u8; 16]>::try_from(v).ok())
            {
                let why = format!("watchdog: {}: {}", t.reason.as_str(), t.detail);
                match store.update_device(&id, |d| {
                    d.banned = true;
                    d.ban_reason = Some(why.clone());
                }) {
                    Ok(_) => ban(id, &why),
                    Err(e) => tracing::warn!(device = %t.device, error = %e, "could not ban a device"),
                }
            }
        }
    }

    /// Evaluates each node every `evaluate_secs`, applies the changes and writes the summaries,
    /// until shutdown: one [`Share`] of the fleet at a time, [`EVALUATION_SHARES`] of them spread
    /// over the interval.
    pub async fn run(self: Arc<Self>, store: Arc<Store>, ban: BanHook, mut shutdown: crate::shutdown::Shutdown) {
        if !self.cfg.enabled {
            return;
        }
        if let Some(r) = self.reputation.clone() {
            // Lookups in their own task: evaluations read only the cache.
            tokio::spawn(r.run(self.clone(), Duration::from_secs(self.cfg.evaluate_secs), shutdown.clone()));
        }
        let (every, mut shares) = share_schedule(self.cfg.evaluate_secs);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.recv() => break,
            }
            let Some(share) = shares.next() else { break };
            let me = self.clone();
            let (store, ban) = (store.clone(), ban.clone());
            let done = tokio::task::spawn_blocking(move || {
                let now = crate::store::now_secs();
                let changes = me.evaluate_share(now, share);
                me.apply(&store, &changes, &ban);
                match me.persist_share(&store, share) {
                    Ok(n) => tracing::debug!(records = n, "node quality records written"),
                    Err(e) => tracing::warn!(error = %e, "could not write node quality summaries"),
                }
            })
            .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "watchdog evaluation failed");
            }
        }
    }
}
