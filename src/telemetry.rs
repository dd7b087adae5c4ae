//! Logging (tracing, text or JSON, EnvFilter) and the Prometheus metrics of the server.
//!
//! fast-socks5 logs RFC 1929 passwords at `debug`: its target is capped at `info` whatever
//! level is configured (SECURITY.md §3).
//!
//! Lines an outsider can cause at will (failed authentications, refused node handshakes) go
//! through a [`LogLimiter`]: a few lines a minute, then one summary of how many were not logged.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// Initialises the global subscriber. `level` uses EnvFilter syntax; `RUST_LOG` overrides it.
pub fn init(level: &str, json: bool) {
    let base = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| level.to_owned());
    let mut filter = EnvFilter::try_new(&base).unwrap_or_else(|_| EnvFilter::new("info"));
    for d in ["fast_socks5=info", "rustls=warn", "tungstenite=info", "tokio_tungstenite=info", "hyper=info"] {
        if let Ok(d) = d.parse() {
            filter = filter.add_directive(d);
        }
    }
    let ansi = colours_wanted(std::io::IsTerminal::is_terminal(&std::io::stderr()), std::env::var_os("NO_COLOR"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Colours only on a terminal, and never when `NO_COLOR` is set to anything but the empty
/// string (no-color.org).
fn colours_wanted(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Label values are lowercase snake_case (`result="failed"`, `frontend="socks5"`), as
/// Prometheus convention has them; the derive would print the variant's name. `ALL` lists the
/// values, so registration can create every series at zero.
macro_rules! snake_case_label {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$(Self::$v),+];
        }
        impl EncodeLabelValue for $t {
            fn encode(
                &self,
                encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
            ) -> Result<(), std::fmt::Error> {
                let s = match self { $(Self::$v => $s),+ };
                EncodeLabelValue::encode(&s, encoder)
            }
        }
    };
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}
snake_case_label!(Outcome { Ok => "ok", Failed => "failed" });

/// The TLS record layer a node tunnel runs on after its upgrade (`crate::tunnel::record`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RecordLayer {
    /// The tunnel's own.
    Own,
    /// rustls': the connection could not switch.
    Rustls,
    /// The switch failed after rustls let go of the keys: the connection was lost.
    Failed,
}
snake_case_label!(RecordLayer { Own => "own", Rustls => "rustls", Failed => "failed" });

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLayerLabel {
    pub layer: RecordLayer,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: Outcome,
}
impl ResultLabel {
    pub fn ok() -> Self {
        ResultLabel { result: Outcome::Ok }
    }
    pub fn failed() -> Self {
        ResultLabel { result: Outcome::Failed }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub enum Frontend {
    Socks5,
    Http,
}
snake_case_label!(Frontend { Socks5 => "socks5", Http => "http" });

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}
snake_case_label!(Direction { Up => "up", Down => "down" });

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub frontend: Frontend,
    /// `ok` or the refusal code (auth, policy, no_node, node_error, rate_limited…).
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirLabel {
    pub direction: Direction,
}

/// Why a node's tunnel ended after a successful handshake.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum NodeDisconnect {
    /// The node closed the connection, or it dropped (EOF, reset, a failed write).
    Closed,
    /// Nothing from the node for 2.5 × its heartbeat interval in force + 10 s.
    Timeout,
    /// Malformed, unexpected or too frequent frames.
    ProtocolViolation,
    /// A periodic challenge answered wrongly or not within 60 s.
    Auth,
    /// The node did not read what it was sent (`limit_exceeded`).
    QueueFull,
    /// The node sent ERROR.
    NodeError,
    /// The server ended it: shutdown, a ban or a disabled owner, or the same device connecting
    /// again.
    Server,
}
snake_case_label!(NodeDisconnect {
    Closed => "closed",
    Timeout => "timeout",
    ProtocolViolation => "protocol_violation",
    Auth => "auth",
    QueueFull => "queue_full",
    NodeError => "node_error",
    Server => "server",
});

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DisconnectLabel {
    pub reason: NodeDisconnect,
}

/// The class of an HTTP status code.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
}
snake_case_label!(StatusClass {
    Informational => "1xx",
    Success => "2xx",
    Redirection => "3xx",
    ClientError => "4xx",
    ServerError => "5xx",
});

impl StatusClass {
    pub fn of(status: u16) -> StatusClass {
        match status {
            ..200 => StatusClass::Informational,
            200..300 => StatusClass::Success,
            300..400 => StatusClass::Redirection,
            400..500 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub class: StatusClass,
}

/// A quality state of the watchdog (`healthy`, `degraded`, `flagged`, `banned`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QualityStateLabel {
    pub state: String,
}

/// A watchdog state change: the new state and its reason code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabel {
    pub to: String,
    pub reason: String,
}

/// A watchdog probe's result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabel {
    pub result: String,
}

/// A failed open on a node: its class and whether it counted against the node.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenFailureLabel {
    pub class: String,
    pub counted: String,
}

/// A request that found no node: the country asked for (`any`: none) and why.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnmetLabel {
    pub country: String,
    pub reason: String,
}

/// A node's control request over the tunnel (docs/protocol.md "Control requests") and its result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControlLabel {
    pub request: String,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

/// What the usage flusher posted to the ledger, in micro-units, and its failed flushes.
/// Cheap clones: each counter is shared.
#[derive(Debug, Default, Clone)]
pub struct BillingCounters {
    pub client_debits: Counter,
    pub node_credits: Counter,
    pub platform_fees: Counter,
    pub flush_failures: Counter,
}

/// Every metric the server exports. The names, types and labels an operator sees are listed
/// in docs/operations.md ("Monitoring"); a test keeps the two in step.
#[derive(Debug, Default)]
pub struct Metrics {
    pub build_info: Family<VersionLabel, Gauge>,
    /// Unix seconds.
    pub start_time: Gauge,
    pub nodes_online: Gauge,
    pub streams_active: Gauge,
    pub streams: Family<StreamLabels, Counter>,
    pub relayed_bytes: Family<DirLabel, Counter>,
    pub tunnel_handshakes: Family<ResultLabel, Counter>,
    pub tunnel_disconnects: Family<DisconnectLabel, Counter>,
    /// Node tunnels over TLS by the record layer they run on after the upgrade.
    pub tunnel_record_layer: Family<RecordLayerLabel, Counter>,
    pub proxy_auth_failures: Counter,
    /// New connections refused by a listener's caps (all, per address, handshakes per address).
    pub connections_refused: Counter,
    /// Responses of the web listener's router (API, dashboard, tunnel upgrades).
    pub http_requests: Family<StatusLabel, Counter>,
    /// Attestation verdicts at pairing, by trust level (docs/trust.md).
    pub trust_verdicts: Family<TrustLabel, Counter>,
    pub billing: BillingCounters,
    /// Online nodes by quality state (the watchdog's last evaluation).
    pub watchdog_nodes: Family<QualityStateLabel, Gauge>,
    /// Quality state changes by new state and reason.
    pub watchdog_transitions: Family<TransitionLabel, Counter>,
    /// Failed opens on nodes by class, and whether they counted against the node.
    pub node_open_failures: Family<OpenFailureLabel, Counter>,
    /// Opens retried on another node after a node-side failure.
    pub open_retries: Counter,
    /// Watchdog probes by result (`ok`, `egress_mismatch`, `failed`).
    pub watchdog_probes: Family<ProbeLabel, Counter>,
    /// Requests that found no node, by country and reason.
    pub unmet_demand: Family<UnmetLabel, Counter>,
    /// Nodes' control requests (`stats`, `unpair`) by result.
    pub tunnel_control: Family<ControlLabel, Counter>,
    /// Last-seen batches (one transaction each) by result (`tunnel::seen`).
    pub seen_batches: Family<ResultLabel, Counter>,
    /// Last-seen rows written.
    pub seen_rows: Counter,
    /// Last-seen rows replaced by a later row of the same device before they were written.
    pub seen_coalesced: Counter,
    /// How long one last-seen batch took to write.
    pub seen_batch_seconds: LatencyHistogram,
}

/// A histogram of durations in seconds, from 0.5 ms to about 8 s.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(pub prometheus_client::metrics::histogram::Histogram);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram(prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 15),
        ))
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrustLabel {
    /// `none`, `software` or `hardware`.
    pub level: String,
}

impl Metrics {
    /// Registers every metric but billing's (see [`Metrics::register_billing`]). Every series
    /// of a closed label set is created at zero, so that a family is listed (and a ratio can be
    /// computed) before its first event.
    pub fn register(&self, reg: &mut Registry) {
        for frontend in Frontend::ALL {
            self.streams.get_or_create(&StreamLabels { frontend: frontend.clone(), result: "ok".into() }).inc_by(0);
        }
        for direction in Direction::ALL {
            self.relayed_bytes.get_or_create(&DirLabel { direction: direction.clone() }).inc_by(0);
        }
        for result in Outcome::ALL {
            self.tunnel_handshakes.get_or_create(&ResultLabel { result: result.clone() }).inc_by(0);
        }
        for reason in NodeDisconnect::ALL {
            self.tunnel_disconnects.get_or_create(&DisconnectLabel { reason: *reason }).inc_by(0);
        }
        for layer in RecordLayer::ALL {
            self.tunnel_record_layer.get_or_create(&RecordLayerLabel { layer: *layer }).inc_by(0);
        }
        for class in StatusClass::ALL {
            self.http_requests.get_or_create(&StatusLabel { class: *class }).inc_by(0);
        }
        for state in ["healthy", "degraded", "flagged", "banned"] {
            self.watchdog_nodes.get_or_create(&QualityStateLabel { state: state.into() }).set(0);
        }
        self.watchdog_transitions
            .get_or_create(&TransitionLabel { to: "flagged".into(), reason: "open_failures".into() })
            .inc_by(0);
        for class in ["refused", "dns", "timeout", "policy", "node_error"] {
            for counted in ["yes", "no"] {
                self.node_open_failures
                    .get_or_create(&OpenFailureLabel { class: class.into(), counted: counted.into() })
                    .inc_by(0);
            }
        }
        self.unmet_demand.get_or_create(&UnmetLabel { country: "any".into(), reason: "no_node".into() }).inc_by(0);
        for result in ["ok", "egress_mismatch", "failed"] {
            self.watchdog_probes.get_or_create(&ProbeLabel { result: result.into() }).inc_by(0);
        }
        reg.register("traffix_watchdog_nodes", "Online nodes by quality state", self.watchdog_nodes.clone());
        reg.register(
            "traffix_watchdog_transitions",
            "Node quality state changes by new state and reason code",
            self.watchdog_transitions.clone(),
        );
        reg.register(
            "traffix_node_open_failures",
            "Failed opens on nodes by class, and whether they counted against the node",
            self.node_open_failures.clone(),
        );
        reg.register(
            "traffix_watchdog_probes",
            "Watchdog probes through nodes to the server's probe endpoint, by result",
            self.watchdog_probes.clone(),
        );
        reg.register(
            "traffix_open_retries",
            "Client opens retried on another node after a node-side failure",
            self.open_retries.clone(),
        );
        reg.register(
            "traffix_unmet_demand",
            "Client requests that found no node, by country asked for (any: none) and reason",
            self.unmet_demand.clone(),
        );
        for level in [
            crate::identity::TrustLevel::None,
            crate::identity::TrustLevel::Software,
            crate::identity::TrustLevel::Hardware,
        ] {
            self.trust_verdicts.get_or_create(&TrustLabel { level: level.name().into() }).inc_by(0);
        }
        self.build_info.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION").to_owned() }).set(1);
        reg.register("traffix_build_info", "The running version (always 1)", self.build_info.clone());
        reg.register_with_unit(
            "traffix_start_time",
            "When the server started, Unix time",
            Unit::Seconds,
            self.start_time.clone(),
        );
        reg.register("traffix_nodes_online", "Nodes with a live tunnel", self.nodes_online.clone());
        reg.register("traffix_streams_active", "Client streams being relayed", self.streams_active.clone());
        reg.register("traffix_streams", "Client stream attempts by front-end and result", self.streams.clone());
        reg.register(
            "traffix_relayed_bytes",
            "Bytes relayed for clients (up = client to target)",
            self.relayed_bytes.clone(),
        );
        reg.register("traffix_tunnel_handshakes", "Node tunnel handshakes by result", self.tunnel_handshakes.clone());
        for (request, result) in [("stats", "ok"), ("unpair", "ok")] {
            self.tunnel_control
                .get_or_create(&ControlLabel { request: request.into(), result: result.into() })
                .inc_by(0);
        }
        reg.register(
            "traffix_tunnel_control_requests",
            "Nodes' control requests over the tunnel by request and result",
            self.tunnel_control.clone(),
        );
        reg.register(
            "traffix_tunnel_disconnects",
            "Node tunnels ended after a successful handshake, by reason",
            self.tunnel_disconnects.clone(),
        );
        reg.register(
            "traffix_tunnel_record_layer",
            "Node tunnels over TLS by the record layer they run on after the upgrade",
            self.tunnel_record_layer.clone(),
        );
        reg.register("traffix_proxy_auth_failures", "Failed proxy authentications", self.proxy_auth_failures.clone());
        reg.register(
            "traffix_connections_refused",
            "New connections refused by a listener's connection caps",
            self.connections_refused.clone(),
        );
        reg.register(
            "traffix_http_requests",
            "Requests answered by the web listener (API, dashboard, tunnel upgrades), by status class",
            self.http_requests.clone(),
        );
        reg.register(
            "traffix_trust_verdicts",
            "Attestation chains judged at pairing, by the trust level they earned",
            self.trust_verdicts.clone(),
        );
        for result in Outcome::ALL {
            self.seen_batches.get_or_create(&ResultLabel { result: result.clone() }).inc_by(0);
        }
        reg.register(
            "traffix_seen_batches",
            "Batches of nodes' last-seen rows written, one transaction each, by result",
            self.seen_batches.clone(),
        );
        reg.register("traffix_seen_rows", "Nodes' last-seen rows written", self.seen_rows.clone());
        reg.register(
            "traffix_seen_rows_coalesced",
            "Nodes' last-seen rows replaced by a later row of the same device before being written",
            self.seen_coalesced.clone(),
        );
        reg.register_with_unit(
            "traffix_seen_batch",
            "Time to write one batch of nodes' last-seen rows",
            Unit::Seconds,
            self.seen_batch_seconds.0.clone(),
        );
    }

    /// The metering metrics; registered only when billing is on, so that alerts over them
    /// see no series (rather than a flat zero) on a server that bills nothing.
    pub fn register_billing(&self, reg: &mut Registry) {
        let b = &self.billing;
        let micros = || Unit::Other("micros".into());
        reg.register_with_unit(
            "traffix_billing_client_debit",
            "Usage charged to clients and posted to the ledger, micro-units",
            micros(),
            b.client_debits.clone(),
        );
        reg.register_with_unit(
            "traffix_billing_node_credit",
            "Usage credited to node owners and posted to the ledger, micro-units",
            micros(),
            b.node_credits.clone(),
        );
        reg.register_with_unit(
            "traffix_billing_platform_fee",
            "Platform fees on usage posted to the ledger, micro-units",
            micros(),
            b.platform_fees.clone(),
        );
        reg.register(
            "traffix_billing_flush_failures",
            "Usage flushes (the once-a-second write of metering and postings) that failed; the next retries",
            b.flush_failures.clone(),
        );
    }

    pub fn stream_result(&self, frontend: Frontend, result: &str) {
        self.streams.get_or_create(&StreamLabels { frontend, result: result.to_owned() }).inc();
    }

    /// Counts one pairing's trust verdict.
    pub fn trust_verdict(&self, level: crate::identity::TrustLevel) {
        self.trust_verdicts.get_or_create(&TrustLabel { level: level.name().into() }).inc();
    }

    /// Counts one control request of a node (`stats`, `unpair`) with its result.
    pub fn tunnel_control(&self, request: &str, result: &str) {
        self.tunnel_control.get_or_create(&ControlLabel { request: request.into(), result: result.into() }).inc();
    }

    pub fn tunnel_disconnect(&self, reason: NodeDisconnect) {
        self.tunnel_disconnects.get_or_create(&DisconnectLabel { reason }).inc();
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render(reg: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, reg).is_err() {
        out.clear();
    }
    out
}

/// At most `max_lines` log lines of one kind per `window`; the rest are counted, and the first
/// line of the next window carries the count. Metrics still count every event.
#[derive(Debug)]
pub struct LogLimiter {
    max_lines: u32,
    window: Duration,
    state: Mutex<LimiterWindow>,
}

#[derive(Debug)]
struct LimiterWindow {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(max_lines: u32, window: Duration) -> LogLimiter {
        LogLimiter { max_lines, window, state: Mutex::new(LimiterWindow { start: None, logged: 0, suppressed: 0 }) }
    }

    /// Whether the event at `now` may be logged: `Some(n)` where `n` events of the window that
    /// just ended went unlogged (log a summary of them first), `None` to stay quiet.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut w = crate::sync::lock(&self.state);
        if w.start.is_none_or(|s| now.saturating_duration_since(s) >= self.window) {
            let skipped = w.suppressed;
            *w = LimiterWindow { start: Some(now), logged: 1, suppressed: 0 };
            return Some(skipped);
        }
        if w.logged < self.max_lines {
            w.logged += 1;
            return Some(0);
        }
        w.suppressed += 1;
        None
    }

    /// `admit` at the current time, writing the summary line when one is due; true when the
    /// caller should log its event.
    pub fn admit_now(&self, what: &'static str) -> bool {
        match self.admit(Instant::now()) {
            Some(0) => true,
            Some(skipped) => {
                tracing::warn!(skipped, window_secs = self.window.as_secs(), "{what}: more happened than were logged");
                true
            }
            None => false,
        }
    }
}

/// Proxy authentication failures (SOCKS5 and HTTP).
pub static PROXY_AUTH_FAILURES: LogLimiter = LogLimiter::new(10, Duration::from_secs(60));
/// Failed logins on the API.
pub static LOGIN_FAILURES: LogLimiter = LogLimiter::new(10, Duration::from_secs(60));
/// Refused node handshakes (bad pairing codes, bad signatures, banned devices).
pub static TUNNEL_REFUSALS: LogLimiter = LogLimiter::new(10, Duration::from_secs(60));

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_limiter_logs_a_few_lines_a_window_then_counts() {
        let l = LogLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let admitted: Vec<Option<u64>> = (0..10).map(|i| l.admit(t0 + Duration::from_millis(i))).collect();
        assert_eq!(admitted, [Some(0), Some(0), Some(0), None, None, None, None, None, None, None]);
        // The next window's first line says how many went unlogged.
        assert_eq!(l.admit(t0 + Duration::from_secs(60)), Some(7));
        assert_eq!(l.admit(t0 + Duration::from_secs(61)), Some(0));
        assert_eq!(l.admit(t0 + Duration::from_secs(200)), Some(0), "nothing was suppressed");
    }

    #[test]
    fn label_values_are_lowercase_snake_case() {
        let m = Metrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        m.stream_result(Frontend::Http, "too_many_streams");
        let text = render(&reg);
        let mut values = BTreeSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((_, labels)) = line.split_once('{') else { continue };
            let labels = labels.split('}').next().unwrap_or_default();
            for pair in labels.split(',') {
                let (k, v) = pair.split_once('=').expect("name=value");
                let v = v.trim_matches('"');
                if k == "version" {
                    assert_eq!(v, env!("CARGO_PKG_VERSION"));
                    continue;
                }
                // A histogram's bucket bounds are numbers.
                if k == "le" {
                    assert!(v == "+Inf" || v.parse::<f64>().is_ok(), "{line}");
                    continue;
                }
                assert!(
                    !v.is_empty() && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{line}"
                );
                values.insert(format!("{k}={v}"));
            }
        }
        // Every value of a closed set is there from the start, at zero.
        let expected = [
            "frontend=socks5",
            "frontend=http",
            "result=ok",
            "result=failed",
            "result=too_many_streams",
            "direction=up",
            "direction=down",
            "reason=closed",
            "reason=timeout",
            "reason=protocol_violation",
            "reason=auth",
            "reason=queue_full",
            "reason=node_error",
            "reason=server",
            "layer=own",
            "layer=rustls",
            "layer=failed",
            "class=1xx",
            "class=2xx",
            "class=3xx",
            "class=4xx",
            "class=5xx",
            "state=healthy",
            "state=degraded",
            "state=flagged",
            "state=banned",
            "to=flagged",
            "reason=open_failures",
            "class=refused",
            "class=dns",
            "class=timeout",
            "class=policy",
            "class=node_error",
            "counted=yes",
            "counted=no",
            "country=any",
            "reason=no_node",
            "result=ok",
            "result=egress_mismatch",
            "result=failed",
            "level=none",
            "level=software",
            "level=hardware",
            "request=stats",
            "request=unpair",
        ];
        assert_eq!(values, expected.iter().map(|v| v.to_string()).collect(), "{text}");
        assert!(text.contains(&format!("traffix_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"))));
        assert!(text.contains("traffix_tunnel_disconnects_total{reason=\"server\"} 0\n"), "{text}");
    }

    #[test]
    fn status_codes_fall_into_their_class() {
        let cases = [
            (100, StatusClass::Informational),
            (101, StatusClass::Informational),
            (199, StatusClass::Informational),
            (200, StatusClass::Success),
            (299, StatusClass::Success),
            (300, StatusClass::Redirection),
            (304, StatusClass::Redirection),
            (400, StatusClass::ClientError),
            (499, StatusClass::ClientError),
            (500, StatusClass::ServerError),
            (599, StatusClass::ServerError),
            // http's StatusCode allows up to 999: counted with the server errors, not lost.
            (999, StatusClass::ServerError),
        ];
        for (code, class) in cases {
            assert_eq!(StatusClass::of(code), class, "{code}");
        }
    }

    /// The names an operator queries, from a rendered registry: a counter's samples end in
    /// `_total`; everything else is named as its `# TYPE` line says.
    fn exported_names(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, ty)| if ty == "counter" { format!("{name}_total") } else { name.to_owned() })
            .collect()
    }

    /// Every `traffix_…` word of `text`.
    fn metric_words(text: &str) -> BTreeSet<String> {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let bytes = text.as_bytes();
        text.match_indices("traffix_")
            .filter(|(i, _)| *i == 0 || !(word(bytes[i - 1]) || bytes[i - 1] == b'-'))
            .map(|(i, _)| {
                let end = bytes[i..].iter().position(|b| !word(*b)).map_or(bytes.len(), |n| i + n);
                text[i..end].to_owned()
            })
            .collect()
    }

    /// The body of the `## title` section of a Markdown document.
    fn section<'a>(doc: &'a str, title: &str) -> &'a str {
        let head = format!("\n## {title}\n");
        let start = doc.find(&head).unwrap_or_else(|| panic!("no section {head:?}")) + head.len();
        let len = doc[start..].find("\n## ").unwrap_or(doc.len() - start);
        &doc[start..start + len]
    }

    fn read_repo_file(path: &str) -> String {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    /// docs/operations.md lists every metric (one table row each, named as queried) and
    /// nothing that is not one; the alert rules and the other operator sections name only
    /// metrics that exist.
    #[test]
    fn the_operations_guide_and_the_alert_rules_name_exactly_the_exported_metrics() {
        // What the server registers (app.rs: these three calls and no other).
        let m = Metrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        m.register_billing(&mut reg);
        crate::acme::AcmeMetrics::default().register(&mut reg);
        crate::telegram::BotMetrics::default().register(&mut reg);
        let app = read_repo_file("src/app.rs");
        assert_eq!(
            app.matches("register(&mut prom)").count() + app.matches("register_billing(&mut prom)").count(),
            4,
            "app.rs registers metrics this test does not know: add them here"
        );
        let text = render(&reg);
        let exported = exported_names(&text);
        // A family without series is not rendered: each must have its series created at
        // registration, or this test would not see it.
        let registered: usize = ["src/telemetry.rs", "src/acme/mod.rs", "src/telegram/mod.rs"]
            .iter()
            .map(|file| {
                let source = read_repo_file(file);
                let source = &source[..source.find("#[cfg(test)]").expect("a test module")];
                source.matches("reg.register(").count() + source.matches("reg.register_with_unit(").count()
            })
            .sum();
        assert_eq!(exported.len(), registered, "a registered family renders nothing until it has a series:\n{text}");

        let doc = read_repo_file("docs/operations.md");
        let monitoring = section(&doc, "Monitoring");
        let table: BTreeSet<String> = monitoring
            .lines()
            .filter_map(|l| l.strip_prefix("| `traffix_"))
            .filter_map(|l| l.split_once('`'))
            .map(|(rest, _)| format!("traffix_{rest}"))
            .collect();
        let missing: Vec<_> = exported.difference(&table).collect();
        assert!(missing.is_empty(), "metrics without a row in the Monitoring table of docs/operations.md: {missing:?}");
        let stale: Vec<_> = table.difference(&exported).collect();
        assert!(stale.is_empty(), "rows of the Monitoring table that are no metric: {stale:?}");

        for title in ["Monitoring", "Alerts", "Logs", "When someone complains"] {
            let unknown: Vec<_> =
                metric_words(section(&doc, title)).into_iter().filter(|w| !exported.contains(w)).collect();
            assert!(unknown.is_empty(), "docs/operations.md \"{title}\" names no such metric: {unknown:?}");
        }
        let rules = read_repo_file("packaging/prometheus/traffix-alerts.yml");
        let used = metric_words(&rules);
        assert!(used.len() >= 8, "{used:?}");
        let unknown: Vec<_> = used.iter().filter(|w| !exported.contains(*w)).collect();
        assert!(unknown.is_empty(), "packaging/prometheus/traffix-alerts.yml uses no such metric: {unknown:?}");
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours_wanted(true, None));
        assert!(!colours_wanted(false, None), "a file or a pipe gets no escape codes");
        assert!(!colours_wanted(true, Some("1".into())));
        assert!(colours_wanted(true, Some("".into())), "an empty NO_COLOR is unset (no-color.org)");
    }
}
