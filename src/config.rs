//! Configuration: the TOML file, `TRAFFIX_<SECTION>__<KEY>` environment overrides, validation.
//!
//! `packaging/traffix.toml` is the single source of truth for keys and defaults: it is embedded
//! here, printed by `traffix config example`, and parsed by a unit test. This module does no
//! network I/O and knows nothing of axum, redb or teloxide.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::money::Micros;

/// The shipped example configuration.
pub const EXAMPLE: &str = include_str!("../packaging/traffix.toml");
/// File name of the config inside the data directory.
pub const CONFIG_FILE: &str = "traffix.toml";
/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "TRAFFIX_";
/// The smallest `limits.ws_max_frame`: one WebSocket frame must hold the largest tunnel frame
/// (docs/protocol.md; `tunnel::ws` asserts the two agree at compile time).
pub const MIN_WS_MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub billing: BillingConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub egress: EgressConfig,
    #[serde(default)]
    pub geoip: GeoipConfig,
    #[serde(default)]
    pub telegram: TelegramConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub payments: crate::payments::config::PaymentsConfig,
    #[serde(default)]
    pub watchdog: crate::watchdog::config::WatchdogConfig,
    #[serde(default)]
    pub trust: TrustConfig,
    /// The data directory (not a file key: comes from `--data-dir`).
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// The file this config was read from (not a file key).
    #[serde(skip)]
    pub config_path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// HOST:PORT nodes dial; empty: pairing is off until it is set.
    pub public_address: String,
    #[serde(default = "d_web")]
    pub web_listen: SocketAddr,
    #[serde(default = "d_socks")]
    pub socks_listen: SocketAddr,
    #[serde(default = "d_http")]
    pub http_listen: SocketAddr,
    #[serde(default = "d_metrics")]
    pub metrics_listen: SocketAddr,
    #[serde(default)]
    pub insecure_http: bool,
    #[serde(default = "d_grace")]
    pub shutdown_grace_secs: u64,
    /// How often the server looks again at its own addresses (interfaces, and `public_address`
    /// resolved when it is a host name), which are refused as targets.
    #[serde(default = "d_address_refresh")]
    pub address_refresh_secs: u64,
    /// Nodes' last-seen rows (came, left, their pause reason) are written together this often
    /// (sooner once `limits.seen_queue` devices wait), in one transaction, and at shutdown
    /// (`tunnel::seen`).
    #[serde(default = "d_seen_flush")]
    pub seen_flush_ms: u64,
    /// Memory for the database's page cache, in MiB. redb's own default is 1 GiB, which a busy
    /// server's database (a row per stream) fills over hours; the interior pages every lookup
    /// touches fit in far less.
    #[serde(default = "d_store_cache")]
    pub store_cache_mb: u64,
}
fn d_web() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn d_socks() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1080))
}
fn d_http() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 3128))
}
fn d_metrics() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn d_grace() -> u64 {
    10
}
fn d_address_refresh() -> u64 {
    300
}
fn d_seen_flush() -> u64 {
    1000
}
fn d_store_cache() -> u64 {
    DEFAULT_STORE_CACHE_MB
}

/// The database's page cache, in MiB, unless `server.store_cache_mb` says otherwise.
pub const DEFAULT_STORE_CACHE_MB: u64 = 64;

/// `[tls]`: the appliance's key and self-signed certificate, and ACME (`crate::acme`). ACME is
/// on when `acme_domain` is set: the certificate then comes from a CA, for the same key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The DNS name the certificate is for (it must resolve to this server); empty: ACME off.
    pub acme_domain: String,
    /// The account's contact e-mail address (required with `acme_domain`).
    pub acme_contact: String,
    /// The CA's ACME directory URL.
    pub acme_directory: String,
    /// A PEM file of extra roots trusted for the directory's own HTTPS (a test CA); empty: none.
    pub acme_ca_roots: String,
    /// Renew when fewer than this many days are left (and never before a third of the
    /// certificate's lifetime is left: see `crate::acme::schedule`).
    pub acme_renew_before_days: u32,
    /// `"http-01"` or `"tls-alpn-01"`; empty: http-01 when `acme_http_listen` is set, else
    /// tls-alpn-01 (answered on the web listener, which the CA reaches on port 443).
    pub acme_challenge: String,
    /// Where the HTTP-01 responder listens (the CA connects to port 80); empty: none.
    pub acme_http_listen: String,
    /// The first wait after a failed attempt; it doubles up to `acme_retry_max_secs`.
    pub acme_retry_secs: u64,
    pub acme_retry_max_secs: u64,
}
impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: "tls/cert.pem".into(),
            key: "tls/key.pem".into(),
            acme_domain: String::new(),
            acme_contact: String::new(),
            acme_directory: LETS_ENCRYPT_DIRECTORY.into(),
            acme_ca_roots: String::new(),
            acme_renew_before_days: 30,
            acme_challenge: String::new(),
            acme_http_listen: String::new(),
            acme_retry_secs: 60,
            acme_retry_max_secs: 6 * 3600,
        }
    }
}

/// Let's Encrypt's production directory, the default `tls.acme_directory`.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The ACME challenge a server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Challenge {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl Challenge {
    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

impl TlsConfig {
    pub fn acme_enabled(&self) -> bool {
        !self.acme_domain.trim().is_empty()
    }

    /// The HTTP-01 responder's address, if one is configured.
    pub fn http_listen(&self) -> Result<Option<SocketAddr>, String> {
        match self.acme_http_listen.trim() {
            "" => Ok(None),
            a => a.parse().map(Some).map_err(|_| format!("tls.acme_http_listen {a:?} is not an IP:PORT address")),
        }
    }

    /// The challenge in force (see `acme_challenge`).
    pub fn challenge(&self) -> Result<Challenge, String> {
        match self.acme_challenge.trim() {
            "" if self.http_listen()?.is_some() => Ok(Challenge::Http01),
            "" | "tls-alpn-01" => Ok(Challenge::TlsAlpn01),
            "http-01" => Ok(Challenge::Http01),
            c => Err(format!("tls.acme_challenge {c:?} must be \"http-01\" or \"tls-alpn-01\"")),
        }
    }

    fn validate_acme(&mut self) -> Result<(), String> {
        self.acme_domain = self.acme_domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if !self.acme_enabled() {
            return Ok(());
        }
        let d = &self.acme_domain;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if d.len() > 253 || !d.contains('.') || !d.split('.').all(label_ok) || d.parse::<std::net::IpAddr>().is_ok() {
            return Err(format!(
                "tls.acme_domain {d:?} must be a DNS name like proxy.example.com (no IP, no wildcard)"
            ));
        }
        let contact = self.acme_contact.trim();
        if contact.is_empty() || !contact.contains('@') || contact.contains(char::is_whitespace) {
            return Err("tls.acme_contact must be an e-mail address when tls.acme_domain is set".into());
        }
        let dir = url::Url::parse(self.acme_directory.trim())
            .map_err(|e| format!("tls.acme_directory {:?}: {e}", self.acme_directory))?;
        if dir.scheme() != "https" {
            return Err("tls.acme_directory must be an https:// URL".into());
        }
        if self.acme_renew_before_days == 0 {
            return Err("tls.acme_renew_before_days must be at least 1".into());
        }
        if self.acme_retry_secs == 0 || self.acme_retry_max_secs < self.acme_retry_secs {
            return Err("tls.acme_retry_secs must be at least 1 and at most tls.acme_retry_max_secs".into());
        }
        let challenge = self.challenge()?;
        if challenge == Challenge::Http01 && self.http_listen()?.is_none() {
            return Err("tls.acme_challenge \"http-01\" needs tls.acme_http_listen (e.g. \"0.0.0.0:80\")".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// `false`: no metering, no balance checks, no sessions recorded (a private network).
    pub enabled: bool,
    pub currency: String,
    pub price_per_gb: Micros,
    pub platform_fee_percent: u8,
    /// The smallest withdrawal a node owner may request.
    pub min_payout: Micros,
    /// The most one hold reserves of a client's balance for its live streams at a time.
    pub hold_chunk: Micros,
    /// The largest single credit (an admin credit or a payment). Balances are i64 micro-units:
    /// with credits of at most [`MAX_CREDIT_CEILING`], reaching the end of that range takes
    /// more than 900,000 of the largest credits, so no sequence of accepted deposits can make
    /// a later one fail.
    pub max_credit: Micros,
}

/// The highest `billing.max_credit` accepted: 10,000,000.00.
pub const MAX_CREDIT_CEILING: Micros = Micros(10_000_000_000_000);
impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            enabled: true,
            currency: "USD".into(),
            price_per_gb: Micros(3_000_000),
            platform_fee_percent: 30,
            min_payout: Micros(5_000_000),
            hold_chunk: Micros(1_000_000),
            max_credit: Micros(1_000_000_000_000),
        }
    }
}

/// The longest heartbeat interval (busy or idle) a server grants: a dead node is then found
/// within 2.5 × 600 + 10 s, about 25 minutes.
pub const MAX_HEARTBEAT_INTERVAL_SECS: u16 = 600;

/// Every limit of SECURITY.md §2, one key each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub client_max_streams: u32,
    pub client_max_dials: u32,
    pub client_new_streams_per_s: u32,
    pub client_new_streams_burst: u32,
    pub node_max_streams: u32,
    pub login_failures_per_hour: u32,
    pub auth_failures_per_minute_per_ip: u32,
    /// Proxy-auth failures a minute for one account from one address.
    pub auth_failures_per_minute_per_account_ip: u32,
    /// Pairing attempts (PAIR with a code) a minute from one address.
    pub pair_attempts_per_minute_per_ip: u32,
    /// Live API logins (refresh-token families) per user; one more signs out the least
    /// recently used.
    pub max_logins_per_user: u32,
    pub handshake_timeout_secs: u64,
    pub dial_timeout_secs: u64,
    pub idle_stream_timeout_secs: u64,
    /// Deprecated and ignored: the server sends nodes no WebSocket pings (the heartbeat is the
    /// only keepalive, docs/protocol.md). Accepted so configs written by older versions load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_interval_secs: Option<u64>,
    /// Deprecated and ignored: the liveness timeout is derived from the heartbeat interval in
    /// force ([`crate::tunnel::protocol::liveness_timeout`]). Accepted so older configs load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_dead_after_secs: Option<u64>,
    /// The heartbeat interval granted to nodes (WELCOME tag 3), used while streams are live.
    pub heartbeat_interval_secs: u16,
    /// The longer interval a node may heartbeat at while it has no live streams (WELCOME tag
    /// 9); 0 grants none (nodes then always use `heartbeat_interval_secs`), and a value below
    /// `heartbeat_interval_secs` acts as that.
    pub heartbeat_idle_interval_secs: u16,
    pub challenge_interval_secs: u16,
    pub initial_window: u32,
    pub max_window: u32,
    pub node_max_inflight: u32,
    /// Largest WebSocket frame payload accepted from a tunnel peer (at least 64 KiB: one tunnel
    /// frame); judged from the frame header, before any of the payload is buffered.
    pub ws_max_frame: usize,
    /// Largest WebSocket message accepted, fragments joined.
    pub ws_max_message: usize,
    /// Most bytes a tunnel's writer gathers from its queue into one vectored write (at least one
    /// whole frame).
    pub ws_max_write_buffer: usize,
    /// The read buffer a quiet tunnel starts with: it grows to a whole frame while data flows and
    /// is freed when the tunnel goes idle.
    pub ws_read_buffer: usize,
    /// tungstenite's write buffer, used only for the HTTP upgrade of a node's tunnel (frames
    /// are written to the stream directly afterwards).
    pub ws_write_buffer: usize,
    /// Bytes a tunnel's outgoing queue may hold beyond the peer's data windows (SECURITY.md §2:
    /// the answers a node provokes; each frame counts with a small fixed overhead); a node that
    /// lets it fill is disconnected (`limit_exceeded` in the log).
    pub node_queue_bytes: usize,
    /// Connections at once on each listener (web, SOCKS5, HTTP proxy); over it a new one is
    /// refused at once. At start the server lowers it to fit its open-file limit (the web
    /// listener, which holds every node's tunnel, takes three fifths of the descriptors, each
    /// proxy listener one fifth).
    pub max_connections: usize,
    /// The proxy listeners' cap after fitting the open-file limit (`None`: `max_connections`).
    /// Set at start, not configured.
    #[serde(skip)]
    pub proxy_max_connections: Option<usize>,
    /// Connections at once from one source address, on each listener.
    pub max_connections_per_ip: usize,
    /// A whole request on the web listener (head and body) must be complete this long after its
    /// first byte.
    pub request_timeout_secs: u64,
    /// An idle keep-alive connection on the web listener is closed after this long without a
    /// new request.
    pub keepalive_idle_secs: u64,
    /// Connections from one source address still in their handshake, on each listener.
    pub max_handshakes_per_ip: usize,
    pub listen_backlog: u32,
    /// Other nodes tried after a node-side open failure (no answer, dial timeout, unreachable,
    /// the node's own refusal) before the client hears of it; 0: no retry.
    pub open_retries: u32,
    /// Seconds one client open may take in all, retries included.
    pub open_retry_budget_secs: u64,
    /// Failed opens a minute one client may have judged against nodes (and retried); past it,
    /// its failures count against no node and are not retried.
    pub client_failed_opens_per_minute: u32,
    /// Devices the quality watchdog keeps measurements of (the offline one idle longest goes).
    pub watchdog_max_nodes: usize,
    /// Targets the watchdog remembers as recently working, and through which node.
    pub watchdog_max_targets: u64,
    /// Clients whose failed opens the watchdog counts in the current minute.
    pub watchdog_max_clients: u64,
    /// Watchdog probes started a minute, over all nodes (`[watchdog] probe_listen`).
    pub watchdog_probes_per_minute: u32,
    /// Connections the probe endpoint serves at once; more are closed at once.
    pub watchdog_probe_connections: usize,
    /// Notification events waiting for delivery; when full, a new event is dropped (counted).
    pub notify_queue: usize,
    /// Devices whose last-seen rows, waiting for the writer, make it write a batch before
    /// `server.seen_flush_ms`. Rows wait one per device (the newest), never dropped and never
    /// waited for. (The name is from when they waited in a queue of this length; kept so that
    /// existing configuration files still load.)
    pub seen_queue: usize,
    /// Notifications kept in each user's inbox (the oldest go first).
    pub notify_inbox_per_user: usize,
    /// Telegram webhook updates handled at once; beyond it Telegram is told to retry (503).
    pub telegram_webhook_concurrency: usize,
}
impl Limits {
    /// The keys whose value differs from the default (`key=value`, in declaration order): the
    /// limits profile a server runs with, for its start-up log line. Empty: the defaults.
    pub fn changed_from_default(&self) -> Vec<String> {
        let (Ok(serde_json::Value::Object(now)), Ok(serde_json::Value::Object(default))) =
            (serde_json::to_value(self), serde_json::to_value(Limits::default()))
        else {
            return Vec::new();
        };
        now.iter().filter(|(k, v)| default.get(*k) != Some(*v)).map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl Limits {
    /// Keys of older versions that are still accepted but no longer do anything.
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.ping_interval_secs.is_some() {
            out.push("ping_interval_secs");
        }
        if self.node_dead_after_secs.is_some() {
            out.push("node_dead_after_secs");
        }
        out
    }

    /// The idle heartbeat interval granted in WELCOME tag 9 (`None`: none); never shorter
    /// than `heartbeat_interval_secs`.
    pub fn idle_heartbeat_interval(&self) -> Option<u16> {
        (self.heartbeat_idle_interval_secs != 0)
            .then_some(self.heartbeat_idle_interval_secs.max(self.heartbeat_interval_secs))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            client_max_streams: 256,
            client_max_dials: 32,
            client_new_streams_per_s: 20,
            client_new_streams_burst: 100,
            node_max_streams: 1024,
            login_failures_per_hour: 100,
            auth_failures_per_minute_per_ip: 20,
            auth_failures_per_minute_per_account_ip: 10,
            pair_attempts_per_minute_per_ip: 20,
            max_logins_per_user: 20,
            handshake_timeout_secs: 10,
            dial_timeout_secs: 10,
            idle_stream_timeout_secs: 60,
            ping_interval_secs: None,
            node_dead_after_secs: None,
            heartbeat_interval_secs: 15,
            heartbeat_idle_interval_secs: 60,
            challenge_interval_secs: 300,
            initial_window: 256 * 1024,
            max_window: 4 * 1024 * 1024,
            node_max_inflight: 16 * 1024 * 1024,
            ws_max_frame: MIN_WS_MAX_FRAME,
            ws_max_message: 256 * 1024,
            ws_max_write_buffer: 1024 * 1024,
            ws_read_buffer: 8 * 1024,
            ws_write_buffer: 16 * 1024,
            node_queue_bytes: 4 * 1024 * 1024,
            max_connections: 20_000,
            proxy_max_connections: None,
            max_connections_per_ip: 256,
            request_timeout_secs: 30,
            keepalive_idle_secs: 60,
            max_handshakes_per_ip: 64,
            listen_backlog: 4096,
            open_retries: 2,
            open_retry_budget_secs: 30,
            client_failed_opens_per_minute: 60,
            watchdog_max_nodes: 100_000,
            watchdog_max_targets: 100_000,
            watchdog_max_clients: 100_000,
            watchdog_probes_per_minute: 120,
            watchdog_probe_connections: 64,
            notify_queue: 1024,
            seen_queue: 4096,
            notify_inbox_per_user: 100,
            telegram_webhook_concurrency: 16,
        }
    }
}

impl Limits {
    /// The connection caps of the web listener.
    pub fn conn_limits(&self) -> crate::listener::ConnLimits {
        crate::listener::ConnLimits {
            total: self.max_connections,
            per_ip: self.max_connections_per_ip,
            handshakes_per_ip: self.max_handshakes_per_ip,
        }
    }

    /// The connection caps of a proxy listener (SOCKS5, HTTP).
    pub fn proxy_conn_limits(&self) -> crate::listener::ConnLimits {
        crate::listener::ConnLimits {
            total: self.proxy_max_connections.unwrap_or(self.max_connections).min(self.max_connections),
            ..self.conn_limits()
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    pub fn dial_timeout(&self) -> Duration {
        Duration::from_secs(self.dial_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_stream_timeout_secs)
    }
}

/// A blocked port or an inclusive range, written `25` or `"135-139"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortSpec {
    One(u16),
    Range(String),
}

impl PortSpec {
    pub fn range(&self) -> Result<(u16, u16), String> {
        match self {
            PortSpec::One(p) => Ok((*p, *p)),
            PortSpec::Range(s) => {
                let parse = |t: &str| t.trim().parse::<u16>().map_err(|_| format!("bad port range {s:?}"));
                match s.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (parse(a)?, parse(b)?);
                        if a > b {
                            return Err(format!("port range {s:?} is reversed"));
                        }
                        Ok((a, b))
                    }
                    None => parse(s).map(|p| (p, p)),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    pub allow_private_targets: bool,
    pub blocked_ports: Vec<PortSpec>,
}
impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            allow_private_targets: false,
            blocked_ports: crate::egress::DEFAULT_BLOCKED_PORTS
                .iter()
                .map(|&(a, b)| if a == b { PortSpec::One(a) } else { PortSpec::Range(format!("{a}-{b}")) })
                .collect(),
        }
    }
}
impl EgressConfig {
    pub fn port_ranges(&self) -> Result<Vec<(u16, u16)>, String> {
        self.blocked_ports.iter().map(PortSpec::range).collect()
    }
}

/// GeoIP: the databases the server reads, and where `traffix geoip update` fetches them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoipConfig {
    /// A country database of the operator's own; empty: the one `traffix geoip update` keeps
    /// in the data directory (`geoip/country.mmdb`), when there is one.
    pub country_db: String,
    /// An ASN database of the operator's own; empty: `geoip/asn.mmdb`, when there is one.
    pub asn_db: String,
    /// Where `traffix geoip update` downloads from.
    pub source: GeoipSource,
    /// MaxMind GeoLite2 licence key (`source = "maxmind"`).
    pub maxmind_license_key: crate::secret::Secret,
    /// MaxMind account id: when set, downloads authenticate with it and the key (HTTP Basic)
    /// instead of putting the key in the URL. 0: not set.
    pub maxmind_account_id: u64,
    /// Base URL of MaxMind's downloads.
    pub maxmind_url: String,
    /// Base URL of DB-IP's free downloads (the monthly `dbip-*-lite-YYYY-MM.mmdb.gz` files).
    pub dbip_url: String,
    /// The largest download, and the largest database unpacked from one, in bytes.
    pub max_download_bytes: u64,
    /// One download (redirects included) must be complete within this many seconds.
    pub download_timeout_secs: u64,
    /// How often the databases are meant to be updated (the packaged timer runs weekly): the
    /// next update shown is the last one plus this.
    pub update_interval_days: u32,
    /// A database built longer ago than this is stale (`traffix doctor` warns).
    pub stale_after_days: u32,
}

/// Device trust (docs/trust.md): how Android Key Attestation chains are judged at pairing, and
/// the level routing requires.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// The weakest trust level a device may pair with and carry traffic at: `none` (any device),
    /// `software` (any attestation chain) or `hardware` (a fully verified chain).
    pub require: crate::identity::TrustLevel,
    /// A PEM file of trusted attestation roots; empty: Google's roots, bundled. Read at every
    /// pairing, so a replaced file applies at once.
    pub roots: String,
    /// Google's attestation status list as JSON (a saved copy of
    /// https://android.googleapis.com/attestation/status); empty: no revocation check. Read at
    /// every pairing.
    pub revocation_list: String,
    /// The app's package names; empty: not checked.
    pub packages: Vec<String>,
    /// SHA-256 digests (hex, colons allowed) of the app's signing certificates; empty: not
    /// checked.
    pub signing_digests: Vec<String>,
    /// Devices whose attestation key is shared by more than this many accounts are flagged.
    pub shared_key_accounts: u32,
    /// The most entries a revocation list may have.
    pub max_revocation_entries: usize,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            require: crate::identity::TrustLevel::None,
            roots: String::new(),
            revocation_list: String::new(),
            packages: vec!["net.traffix.node".into()],
            signing_digests: Vec::new(),
            shared_key_accounts: 3,
            max_revocation_entries: 1_000_000,
        }
    }
}

impl TrustConfig {
    /// The signing digests as bytes.
    pub fn digests(&self) -> Result<Vec<Vec<u8>>, String> {
        self.signing_digests
            .iter()
            .map(|d| {
                let clean: String = d.chars().filter(|c| *c != ':').collect();
                match hex::decode(&clean) {
                    Ok(b) if b.len() == 32 => Ok(b),
                    _ => Err(format!("trust.signing_digests entry {d:?} is not a SHA-256 digest (64 hex digits)")),
                }
            })
            .collect()
    }

    fn validate(&self) -> Result<(), String> {
        self.digests()?;
        if self.shared_key_accounts == 0 {
            return Err("trust.shared_key_accounts must be at least 1".into());
        }
        if self.max_revocation_entries == 0 {
            return Err("trust.max_revocation_entries must be at least 1".into());
        }
        if self.packages.iter().any(|p| p.is_empty() || p.len() > 256) {
            return Err("trust.packages entries must be 1 to 256 characters".into());
        }
        Ok(())
    }
}

/// Where GeoIP databases come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeoipSource {
    /// DB-IP Lite: free, no account; CC BY 4.0 (the dashboard shows the attribution).
    Dbip,
    /// MaxMind GeoLite2: needs a free account's licence key.
    Maxmind,
    /// No downloads: only databases the operator installs.
    Off,
}

impl GeoipSource {
    pub fn name(self) -> &'static str {
        match self {
            GeoipSource::Dbip => "dbip",
            GeoipSource::Maxmind => "maxmind",
            GeoipSource::Off => "off",
        }
    }
}

impl Default for GeoipConfig {
    fn default() -> Self {
        GeoipConfig {
            country_db: String::new(),
            asn_db: String::new(),
            source: GeoipSource::Dbip,
            maxmind_license_key: crate::secret::Secret::default(),
            maxmind_account_id: 0,
            maxmind_url: "https://download.maxmind.com".into(),
            dbip_url: "https://download.db-ip.com/free".into(),
            max_download_bytes: 256 * 1024 * 1024,
            download_timeout_secs: 600,
            update_interval_days: 7,
            stale_after_days: 45,
        }
    }
}

impl GeoipConfig {
    fn validate(&self) -> Result<(), String> {
        for (key, u) in [("maxmind_url", &self.maxmind_url), ("dbip_url", &self.dbip_url)] {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => {}
                _ => return Err(format!("geoip.{key} {u:?} must be an http:// or https:// URL")),
            }
        }
        if self.max_download_bytes < 1024 {
            return Err("geoip.max_download_bytes must be at least 1024".into());
        }
        if self.download_timeout_secs == 0 || self.update_interval_days == 0 || self.stale_after_days == 0 {
            return Err(
                "geoip.download_timeout_secs, update_interval_days and stale_after_days must be at least 1".into()
            );
        }
        Ok(())
    }
}

/// `[telegram]`: the bot (docs/telegram.md). It runs inside `serve` when `bot_token` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// The token @BotFather gave; empty: no bot.
    pub bot_token: crate::secret::Secret,
    /// The Bot API server (a self-hosted one, or a fake in tests); plain http:// only to a
    /// loopback address.
    pub api_url: String,
    /// Receive updates by webhook at this public https:// URL (ending in `/telegram/webhook`, on
    /// port 443, 80, 88 or 8443); empty: long polling.
    pub webhook_url: String,
    /// The secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (1-256 of A-Z a-z 0-9 _ -);
    /// required with `webhook_url`.
    pub webhook_secret: crate::secret::Secret,
    /// Upload the server's certificate (`tls.cert`) in `setWebhook`: needed while it is
    /// self-signed.
    pub webhook_upload_cert: bool,
    /// Who may create an account by writing to the bot: `open`, `invite` (with a code from
    /// `/invite` or the dashboard) or `off` (web accounts link with a code only).
    pub signup: String,
    /// Long-polling wait of one `getUpdates`.
    pub poll_timeout_secs: u32,
    /// After a failed call to the Bot API the bot waits this long, doubling up to the maximum.
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
    /// How long a dashboard login link from `/login` is valid (30-3600).
    pub login_link_ttl_secs: u64,
    /// Notifications sent to one user a minute at most (the rest go only to the inbox).
    pub notify_per_minute: u32,
    /// How often nodes and balances are looked at for notifications.
    pub watch_interval_secs: u64,
}
impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            bot_token: crate::secret::Secret::default(),
            api_url: "https://api.telegram.org".into(),
            webhook_url: String::new(),
            webhook_secret: crate::secret::Secret::default(),
            webhook_upload_cert: false,
            signup: "open".into(),
            poll_timeout_secs: 25,
            retry_min_secs: 1,
            retry_max_secs: 300,
            login_link_ttl_secs: 300,
            notify_per_minute: 6,
            watch_interval_secs: 30,
        }
    }
}

impl TelegramConfig {
    fn validate(&self) -> Result<(), String> {
        if !matches!(self.signup.as_str(), "open" | "invite" | "off") {
            return Err(format!("telegram.signup {:?} must be \"open\", \"invite\" or \"off\"", self.signup));
        }
        match url::Url::parse(&self.api_url) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
            Ok(u) if u.scheme() == "http" && is_loopback_host(u.host_str()) => {}
            _ => {
                return Err(format!(
                    "telegram.api_url {:?} must be an https:// URL (http:// only to a loopback address)",
                    self.api_url
                ));
            }
        }
        if !self.webhook_url.is_empty() {
            match url::Url::parse(&self.webhook_url) {
                Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
                Ok(u) if u.scheme() == "http" && is_loopback_host(u.host_str()) => {}
                _ => return Err("telegram.webhook_url must be an https:// URL".into()),
            }
            let s = self.webhook_secret.expose();
            if !(32..=64).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err("telegram.webhook_secret (32-64 random characters of A-Z a-z 0-9 _ -, e.g. from \
                            `openssl rand -hex 24`) is required with telegram.webhook_url"
                    .into());
            }
        }
        if self.poll_timeout_secs > 50 {
            return Err("telegram.poll_timeout_secs is at most 50".into());
        }
        if self.retry_min_secs == 0 || self.retry_max_secs < self.retry_min_secs {
            return Err("telegram.retry_min_secs must be at least 1 and at most retry_max_secs".into());
        }
        if !(30..=3600).contains(&self.login_link_ttl_secs) {
            return Err("telegram.login_link_ttl_secs must be 30-3600".into());
        }
        if self.watch_interval_secs == 0 {
            return Err("telegram.watch_interval_secs must be at least 1".into());
        }
        Ok(())
    }

    /// Whether the bot runs.
    pub fn enabled(&self) -> bool {
        !self.bot_token.is_empty()
    }
}

fn is_loopback_host(h: Option<&str>) -> bool {
    match h {
        Some("localhost") => true,
        Some(h) => h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    pub format: String,
}
impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: "text".into() }
    }
}

impl Config {
    /// Loads `path`, applies `TRAFFIX_<SECTION>__<KEY>` overrides from `env`, validates.
    pub fn load(
        path: &Path,
        data_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_str_with_env(&text, path, data_dir, env)
    }

    pub fn from_str_with_env(
        text: &str,
        path: &Path,
        data_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        apply_env(&mut table, env)?;
        let mut cfg: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        cfg.data_dir = data_dir.to_path_buf();
        cfg.config_path = path.to_path_buf();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks cross-field rules and normalises.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.billing.platform_fee_percent > 100 {
            return bad(format!(
                "billing.platform_fee_percent is {}, must be 0..=100",
                self.billing.platform_fee_percent
            ));
        }
        let public = &self.server.public_address;
        if !public.is_empty() && public.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none_or(|p| p == 0)
        {
            return bad(format!(
                "server.public_address {:?} must be HOST:PORT with a non-zero port, or empty (pairing off)",
                self.server.public_address
            ));
        }
        if self.server.address_refresh_secs == 0 {
            return bad("server.address_refresh_secs must be at least 1".into());
        }
        if !(1..=60_000).contains(&self.server.seen_flush_ms) {
            return bad("server.seen_flush_ms must be 1..=60000".into());
        }
        if !(4..=65_536).contains(&self.server.store_cache_mb) {
            return bad("server.store_cache_mb must be 4..=65536".into());
        }
        if self.billing.hold_chunk.0 == 0 {
            return bad("billing.hold_chunk must be greater than zero".into());
        }
        if self.billing.max_credit.0 == 0 || self.billing.max_credit > MAX_CREDIT_CEILING {
            return bad(format!("billing.max_credit must be greater than zero and at most {MAX_CREDIT_CEILING}"));
        }
        let l = &self.limits;
        if l.request_timeout_secs == 0 || l.keepalive_idle_secs == 0 {
            return bad("limits.request_timeout_secs and keepalive_idle_secs must be at least 1".into());
        }
        if l.max_connections == 0 || l.max_connections_per_ip == 0 || l.max_handshakes_per_ip == 0 {
            return bad(
                "limits.max_connections, max_connections_per_ip and max_handshakes_per_ip must be at least 1".into()
            );
        }
        if l.node_queue_bytes < 64 * 1024 {
            return bad("limits.node_queue_bytes must be at least 65536".into());
        }
        if l.ws_max_frame < MIN_WS_MAX_FRAME {
            return bad(format!("limits.ws_max_frame must be at least {MIN_WS_MAX_FRAME}"));
        }
        if l.initial_window < 65_536 || l.max_window < l.initial_window {
            return bad("limits.initial_window must be ≥ 65536 and ≤ limits.max_window".into());
        }
        if l.node_max_inflight < l.initial_window {
            return bad("limits.node_max_inflight must be ≥ limits.initial_window".into());
        }
        for (name, v) in [
            ("client_max_streams", l.client_max_streams),
            ("client_max_dials", l.client_max_dials),
            ("client_new_streams_burst", l.client_new_streams_burst),
            ("node_max_streams", l.node_max_streams),
            ("auth_failures_per_minute_per_account_ip", l.auth_failures_per_minute_per_account_ip),
            ("pair_attempts_per_minute_per_ip", l.pair_attempts_per_minute_per_ip),
            ("max_logins_per_user", l.max_logins_per_user),
            ("notify_queue", u32::try_from(l.notify_queue).unwrap_or(u32::MAX)),
            ("seen_queue", u32::try_from(l.seen_queue).unwrap_or(u32::MAX)),
            ("notify_inbox_per_user", u32::try_from(l.notify_inbox_per_user).unwrap_or(u32::MAX)),
            ("telegram_webhook_concurrency", u32::try_from(l.telegram_webhook_concurrency).unwrap_or(u32::MAX)),
        ] {
            if v == 0 {
                return bad(format!("limits.{name} must be at least 1"));
            }
        }
        if l.handshake_timeout_secs == 0
            || l.dial_timeout_secs == 0
            || l.idle_stream_timeout_secs == 0
            || l.heartbeat_interval_secs == 0
        {
            return bad("limits timeouts must be at least 1 second".into());
        }
        if l.heartbeat_interval_secs > MAX_HEARTBEAT_INTERVAL_SECS
            || l.heartbeat_idle_interval_secs > MAX_HEARTBEAT_INTERVAL_SECS
        {
            return bad(format!("limits heartbeat intervals must be at most {MAX_HEARTBEAT_INTERVAL_SECS} seconds"));
        }
        self.egress.port_ranges().map_err(ConfigError::Invalid)?;
        self.tls.validate_acme().map_err(ConfigError::Invalid)?;
        self.geoip.validate().map_err(ConfigError::Invalid)?;
        self.payments.validate().map_err(ConfigError::Invalid)?;
        self.watchdog.validate().map_err(ConfigError::Invalid)?;
        if l.open_retry_budget_secs == 0
            || l.watchdog_max_nodes == 0
            || l.watchdog_max_targets == 0
            || l.watchdog_max_clients == 0
            || l.watchdog_probes_per_minute == 0
            || l.watchdog_probe_connections == 0
        {
            return bad("limits.open_retry_budget_secs and the watchdog_max_* keys must be at least 1".into());
        }
        self.trust.validate().map_err(ConfigError::Invalid)?;
        self.telegram.validate().map_err(ConfigError::Invalid)?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad(format!("log.format {:?} must be \"text\" or \"json\"", self.log.format));
        }
        Ok(())
    }

    /// Resolves a path from the config relative to the data directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.data_dir.join(p) }
    }
}

/// Applies `TRAFFIX_<SECTION>__<KEY>=value` overrides. A value is read as a TOML value when it
/// parses as one (numbers, booleans, arrays), otherwise as a string.
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else { continue };
        let Some((section, key)) = rest.split_once("__") else { continue };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        // Floats stay strings: no key is a float, and money ("2.50") must stay decimal text.
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_float())
            .unwrap_or(toml::Value::String(value.clone()));
        let sect = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| ConfigError::Env { var: var.clone(), message: format!("[{section}] is not a table") })?;
        sect.insert(key, parsed);
    }
    Ok(())
}

/// The `public_address` to use when `init` was not given one: the web listen address, or the
/// machine's host name when that is unspecified.
pub fn default_public_address(web: SocketAddr) -> String {
    if web.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", web.port())
    } else {
        web.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: Vec<(&str, &str)>) -> Result<Config, ConfigError> {
        Config::from_str_with_env(
            text,
            Path::new("t.toml"),
            Path::new("/tmp"),
            env.into_iter().map(|(a, b)| (a.to_owned(), b.to_owned())),
        )
    }

    /// No sequence of accepted credits can overflow a balance in practice: with the largest
    /// allowed `max_credit`, `external:deposits` (the most negative balance there is, since
    /// every unit in the ledger came through it) reaches the end of i64 only after more than
    /// 900,000 of the largest credits; and the validation refuses anything larger.
    #[test]
    fn max_credit_keeps_balances_inside_their_range() {
        assert!(i64::MAX as u64 / MAX_CREDIT_CEILING.0 > 900_000);
        assert!(BillingConfig::default().max_credit <= MAX_CREDIT_CEILING);
        let e = load("[server]\npublic_address='a:1'\n[billing]\nmax_credit='10000000.01'\n", vec![]).unwrap_err();
        assert!(e.to_string().contains("billing.max_credit"), "{e}");
    }

    /// An empty public address is pairing off, not an error; anything else must be HOST:PORT.
    #[test]
    fn the_public_address_is_host_port_or_empty() {
        assert_eq!(load("[server]\npublic_address=''\n", vec![]).unwrap().server.public_address, "");
        for bad in ["a", "a:0", "a:x", ":"] {
            let e = load(&format!("[server]\npublic_address='{bad}'\n"), vec![]).unwrap_err();
            assert!(e.to_string().contains("or empty (pairing off)"), "{bad}: {e}");
        }
    }

    #[test]
    fn geoip_keys_read_from_the_file_and_the_environment() {
        let cfg = load(EXAMPLE, vec![]).unwrap();
        assert_eq!(cfg.geoip.source, GeoipSource::Dbip);
        assert_eq!(cfg.geoip.max_download_bytes, GeoipConfig::default().max_download_bytes);
        let cfg = load(
            EXAMPLE,
            vec![
                ("TRAFFIX_GEOIP__SOURCE", "maxmind"),
                ("TRAFFIX_GEOIP__MAXMIND_LICENSE_KEY", "k3y"),
                ("TRAFFIX_GEOIP__MAXMIND_ACCOUNT_ID", "123456"),
            ],
        )
        .unwrap();
        assert_eq!((cfg.geoip.source, cfg.geoip.maxmind_account_id), (GeoipSource::Maxmind, 123_456));
        assert!(!format!("{cfg:?}").contains("k3y"), "the licence key never prints");
        for (bad, key) in [
            ("source='geoip.example'", "unknown variant"),
            ("dbip_url='ftp://x/'", "geoip.dbip_url"),
            ("maxmind_url='not a url'", "geoip.maxmind_url"),
            ("max_download_bytes=10", "geoip.max_download_bytes"),
            ("stale_after_days=0", "stale_after_days"),
        ] {
            let e = load(&format!("[server]\npublic_address='a:1'\n[geoip]\n{bad}\n"), vec![]).unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn proxy_listeners_take_their_fitted_cap_and_never_more_than_max_connections() {
        let l = Limits { max_connections: 500, max_connections_per_ip: 9, ..Limits::default() };
        assert_eq!(l.proxy_conn_limits().total, 500, "not fitted: max_connections");
        let fitted = Limits { proxy_max_connections: Some(120), ..l.clone() };
        assert_eq!(fitted.proxy_conn_limits().total, 120);
        assert_eq!(fitted.proxy_conn_limits().per_ip, 9, "the per-address caps are the web listener's");
        assert_eq!(fitted.conn_limits().total, 500, "the web listener keeps max_connections");
        let above = Limits { proxy_max_connections: Some(900), ..l };
        assert_eq!(above.proxy_conn_limits().total, 500);
        // Set at start, never configured or shown.
        assert!(toml::from_str::<Limits>("proxy_max_connections = 5").is_err());
        assert!(!serde_json::to_string(&above).unwrap().contains("proxy_max_connections"));
    }

    #[test]
    fn the_limits_profile_names_the_keys_that_differ_from_the_defaults() {
        assert!(Limits::default().changed_from_default().is_empty());
        let l = Limits { max_connections: 7, request_timeout_secs: 2, ..Limits::default() };
        let changed = l.changed_from_default();
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(
            changed.contains(&"max_connections=7".to_owned()) && changed.contains(&"request_timeout_secs=2".to_owned())
        );
    }

    #[test]
    fn heartbeat_intervals_are_bounded_and_the_old_ping_keys_still_load_but_are_ignored() {
        let base = "[server]\npublic_address='a:1'\n[limits]\n";
        // A config written by an older version (packaging/traffix.toml had both keys).
        let old = load(&format!("{base}ping_interval_secs = 20\nnode_dead_after_secs = 60\n"), vec![]).unwrap();
        assert_eq!(old.limits.ignored_keys(), vec!["ping_interval_secs", "node_dead_after_secs"]);
        assert!(load(EXAMPLE, vec![]).unwrap().limits.ignored_keys().is_empty());
        let l = load(&format!("{base}heartbeat_interval_secs = 20\nheartbeat_idle_interval_secs = 5\n"), vec![])
            .unwrap()
            .limits;
        assert_eq!(l.idle_heartbeat_interval(), Some(20), "an idle interval below the busy one acts as it");
        let l = load(&format!("{base}heartbeat_idle_interval_secs = 0\n"), vec![]).unwrap().limits;
        assert_eq!(l.idle_heartbeat_interval(), None, "0 grants none");
        for bad in
            ["heartbeat_interval_secs = 0", "heartbeat_interval_secs = 601", "heartbeat_idle_interval_secs = 601"]
        {
            assert!(load(&format!("{base}{bad}\n"), vec![]).is_err(), "{bad}");
        }
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let cfg = load(EXAMPLE, vec![]).unwrap();
        assert_eq!(cfg.billing.price_per_gb, Micros(3_000_000));
        assert_eq!(cfg.limits.client_max_streams, Limits::default().client_max_streams);
        assert_eq!(cfg.egress.port_ranges().unwrap(), crate::egress::DEFAULT_BLOCKED_PORTS.to_vec());
        assert_eq!(cfg.watchdog, crate::watchdog::config::WatchdogConfig::default());
        assert_eq!(serde_json::to_value(&cfg.limits).unwrap(), serde_json::to_value(Limits::default()).unwrap());
    }

    #[test]
    fn env_overrides_apply_and_unknown_keys_fail() {
        let cfg =
            load(EXAMPLE, vec![("TRAFFIX_BILLING__PRICE_PER_GB", "2.50"), ("TRAFFIX_LIMITS__CLIENT_MAX_STREAMS", "7")])
                .unwrap();
        assert_eq!(cfg.billing.price_per_gb, Micros(2_500_000));
        assert_eq!(cfg.limits.client_max_streams, 7);
        assert!(load(EXAMPLE, vec![("TRAFFIX_LIMITS__NOPE", "1")]).is_err());
        assert!(load("[server]\npublic_address='a:1'\nbogus=1\n", vec![]).is_err());
    }

    #[test]
    fn acme_keys_are_checked_and_choose_the_challenge() {
        let base = "[server]\npublic_address='a:1'\n[tls]\n";
        let cfg = load(base, vec![]).unwrap();
        assert!(!cfg.tls.acme_enabled(), "off by default");
        assert_eq!(cfg.tls.acme_directory, LETS_ENCRYPT_DIRECTORY);
        let on = |extra: &str| {
            load(&format!("{base}acme_domain='Proxy.Example.com.'\nacme_contact='ops@example.com'\n{extra}"), vec![])
        };
        let cfg = on("").unwrap();
        assert_eq!(cfg.tls.acme_domain, "proxy.example.com", "normalised");
        assert_eq!(cfg.tls.challenge(), Ok(Challenge::TlsAlpn01));
        let cfg = on("acme_http_listen='0.0.0.0:80'").unwrap();
        assert_eq!(cfg.tls.challenge(), Ok(Challenge::Http01));
        for (extra, key) in [
            ("acme_challenge='http-01'", "acme_http_listen"),
            ("acme_challenge='dns-01'", "acme_challenge"),
            ("acme_http_listen='port 80'", "acme_http_listen"),
            ("acme_directory='http://ca.example/dir'", "acme_directory"),
            ("acme_renew_before_days=0", "acme_renew_before_days"),
            ("acme_retry_secs=100\nacme_retry_max_secs=10", "acme_retry_secs"),
        ] {
            let e = on(extra).unwrap_err().to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
        for domain in ["127.0.0.1", "*.example.com", "localhost", "-a.example.com"] {
            let text = format!("{base}acme_domain='{domain}'\nacme_contact='ops@example.com'\n");
            assert!(load(&text, vec![]).unwrap_err().to_string().contains("acme_domain"), "{domain}");
        }
        let e = load(&format!("{base}acme_domain='proxy.example.com'\n"), vec![]).unwrap_err().to_string();
        assert!(e.contains("acme_contact"), "{e}");
        let env = vec![("TRAFFIX_TLS__ACME_DOMAIN", "p.example.com"), ("TRAFFIX_TLS__ACME_CONTACT", "a@b.c")];
        assert!(load(EXAMPLE, env).unwrap().tls.acme_enabled(), "environment overrides reach the keys");
    }

    #[test]
    fn invalid_values_are_refused_with_the_key_named() {
        let e = load("[server]\npublic_address='a:0'\n", vec![]).unwrap_err().to_string();
        assert!(e.contains("public_address"), "{e}");
        let e = load("[server]\npublic_address='a:1'\n[billing]\ncurrency='USD'\nprice_per_gb=3.0\nplatform_fee_percent=30\nmin_payout='1'\n", vec![]).unwrap_err();
        assert!(e.to_string().contains("price"), "{e}");
        let e = load("[server]\npublic_address='a:1'\n[egress]\nblocked_ports=['9-3']\n", vec![]).unwrap_err();
        assert!(e.to_string().contains("reversed"), "{e}");
        for cache in [3, 65_537] {
            let e = load(&format!("[server]\npublic_address='a:1'\nstore_cache_mb={cache}\n"), vec![]).unwrap_err();
            assert!(e.to_string().contains("server.store_cache_mb must be 4..=65536"), "{e}");
        }
        let ok = load("[server]\npublic_address='a:1'\nstore_cache_mb=4\n", vec![]).unwrap();
        assert_eq!(ok.server.store_cache_mb, 4);
    }
}
