//! Logging (tracing, text or JSON, EnvFilter) and the Prometheus metrics of the server.
//!
//! fast-socks5 logs RFC 1929 passwords at `debug`: its target is capped at `info` whatever
//! level is configured (SECURITY.md §3).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Ok,
    Failed,
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Frontend {
    Socks5,
    Http,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Direction {
    Up,
    Down,
}

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

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub nodes_online: Gauge,
    pub streams_active: Gauge,
    pub streams: Family<StreamLabels, Counter>,
    pub relayed_bytes: Family<DirLabel, Counter>,
    pub tunnel_handshakes: Family<ResultLabel, Counter>,
    pub proxy_auth_failures: Counter,
}

impl Metrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register("traffix_nodes_online", "Nodes with a live tunnel", self.nodes_online.clone());
        reg.register("traffix_streams_active", "Client streams being relayed", self.streams_active.clone());
        reg.register("traffix_streams", "Client stream attempts by front-end and result", self.streams.clone());
        reg.register(
            "traffix_relayed_bytes",
            "Bytes relayed for clients (up = client to target)",
            self.relayed_bytes.clone(),
        );
        reg.register("traffix_tunnel_handshakes", "Node tunnel handshakes by result", self.tunnel_handshakes.clone());
        reg.register("traffix_proxy_auth_failures", "Failed proxy authentications", self.proxy_auth_failures.clone());
    }

    pub fn stream_result(&self, frontend: Frontend, result: &str) {
        self.streams.get_or_create(&StreamLabels { frontend, result: result.to_owned() }).inc();
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
