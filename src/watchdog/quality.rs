//! One node's measurements over a sliding window of minutes, the score computed from them and
//! the state machine with its hysteresis. Pure: callers pass the time (Unix seconds), so tests
//! run on an injected clock.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::config::WatchdogConfig;

/// Where a node stands. Only healthy and degraded nodes are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Routed normally.
    Healthy,
    /// Deprioritised: routed only when no healthy node fits.
    Degraded,
    /// Not routed; given traffic again on probation after `probation_secs`.
    Flagged,
    /// Disconnected and refused on reconnect (the device ban).
    Banned,
}

impl State {
    pub const ALL: [State; 4] = [State::Healthy, State::Degraded, State::Flagged, State::Banned];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::Flagged => "flagged",
            State::Banned => "banned",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// How an open failed, as the owner's page and the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The target refused the connection.
    Refused,
    /// The node could not resolve the target.
    Dns,
    /// The node's dial timed out, or the node never answered the OPEN.
    Timeout,
    /// The node's own egress policy refused the target.
    Policy,
    /// Unreachable networks, internal errors, the tunnel closing mid-open.
    NodeError,
}

impl FailureClass {
    pub const ALL: [FailureClass; 5] = [
        FailureClass::Refused,
        FailureClass::Dns,
        FailureClass::Timeout,
        FailureClass::Policy,
        FailureClass::NodeError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Refused => "refused",
            FailureClass::Dns => "dns",
            FailureClass::Timeout => "timeout",
            FailureClass::Policy => "policy",
            FailureClass::NodeError => "node_error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a node has the score or state it has. Stable codes (docs/watchdog.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Opens that failed on the node (attributed to it: docs/watchdog.md "Attribution").
    OpenFailures,
    /// Streams that carried the client's bytes out and brought nothing back.
    Blackhole,
    /// Refused streams as busy well below the stream cap it declared.
    BusyBelowDeclared,
    /// Its own traffic counter, which its data caps are held against, grew much less than the
    /// traffic the server carried through it.
    UndercountedTraffic,
    /// A slow median time to first byte.
    SlowTtfb,
    /// A slow 95th-percentile tunnel round trip.
    SlowRtt,
    /// Reconnecting often.
    Churn,
    /// On a hosting or datacenter network.
    HostingNetwork,
    /// Many devices online behind one public IP.
    SharedIp,
    /// The probe endpoint saw the node's traffic leave from another IP than its tunnel: it
    /// relays through another proxy or VPN.
    EgressMismatch,
    /// The external reputation service rates the node's public IP as risky.
    BadReputation,
    /// Did not answer an OPEN: no new streams until it shows life again.
    Unresponsive,
    /// Flagged long enough: routed again, judged on fresh measurements.
    Probation,
    /// Flagged too often: banned.
    RepeatedFlags,
    /// The scores recovered.
    Recovered,
    /// An admin set the state.
    AdminOverride,
    /// An admin lifted a ban: measurements start afresh.
    AdminUnban,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::OpenFailures => "open_failures",
            ReasonCode::Blackhole => "blackhole",
            ReasonCode::BusyBelowDeclared => "busy_below_declared",
            ReasonCode::UndercountedTraffic => "undercounted_traffic",
            ReasonCode::SlowTtfb => "slow_ttfb",
            ReasonCode::SlowRtt => "slow_rtt",
            ReasonCode::Churn => "churn",
            ReasonCode::HostingNetwork => "hosting_network",
            ReasonCode::SharedIp => "shared_ip",
            ReasonCode::EgressMismatch => "egress_mismatch",
            ReasonCode::BadReputation => "bad_reputation",
            ReasonCode::Unresponsive => "unresponsive",
            ReasonCode::Probation => "probation",
            ReasonCode::RepeatedFlags => "repeated_flags",
            ReasonCode::Recovered => "recovered",
            ReasonCode::AdminOverride => "admin_override",
            ReasonCode::AdminUnban => "admin_unban",
        }
    }
}

/// One reason with what it means for this node and what would raise the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    pub code: ReasonCode,
    /// What was measured ("34 % of opens failed on the node in the last 60 min").
    pub detail: String,
    /// What the owner can do about it.
    pub hint: String,
    /// The factor this reason multiplies the score by (0–1).
    pub factor: f64,
}

/// A state set by an admin, with the note they gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Override {
    pub state: State,
    pub note: String,
    pub by: String,
    pub at: u64,
}

/// The counts of one bucket of minutes ([`WatchdogConfig::bucket_minutes`] long; records
/// written before buckets were one minute each, and are read as such).
///
/// Counts of zero are left out of the JSON the database keeps (most are zero in most buckets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Minute {
    /// The bucket's first minute, in minutes since the epoch.
    pub minute: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub opens_ok: u32,
    /// Failures by [`FailureClass`], whether or not they counted against the node.
    #[serde(skip_serializing_if = "is_zero")]
    pub failures: [u32; 5],
    /// Failures attributed to the node.
    #[serde(skip_serializing_if = "is_zero")]
    pub counted: u32,
    /// Finished streams to which the client sent bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub streams: u32,
    /// Of those, the ones that got no byte back.
    #[serde(skip_serializing_if = "is_zero")]
    pub silent: u32,
    /// Reconnects that count as churn.
    #[serde(skip_serializing_if = "is_zero")]
    pub reconnects: u32,
    /// Probes that came back and were judged (egress and tunnel in one address family).
    #[serde(skip_serializing_if = "is_zero")]
    pub probes: u32,
    /// Of those, the ones the probe endpoint saw from another IP than the tunnel's.
    #[serde(skip_serializing_if = "is_zero")]
    pub egress_mismatch: u32,
    /// Busy refusals with clearly fewer streams open than the node declared it takes.
    #[serde(skip_serializing_if = "is_zero")]
    pub busy_below: u32,
    /// The most streams open at such a refusal, and the cap the node had declared.
    #[serde(skip_serializing_if = "is_zero")]
    pub busy_max_active: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub busy_declared: u32,
    /// Growth of the node's own traffic counter between heartbeats, and of the payload the
    /// server carried through it over the same heartbeats.
    #[serde(skip_serializing_if = "is_zero")]
    pub counted_node: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub counted_carried: u64,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// The measurements of a window, summarised (what the database keeps and the pages show).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    pub window_secs: u64,
    pub rtt_p50_ms: Option<u32>,
    pub rtt_p95_ms: Option<u32>,
    pub ttfb_p50_ms: Option<u32>,
    pub opens_ok: u32,
    pub failed_refused: u32,
    pub failed_dns: u32,
    pub failed_timeout: u32,
    pub failed_policy: u32,
    pub failed_node_error: u32,
    /// Failures attributed to the node (the rest are the targets' or the clients').
    pub failed_counted: u32,
    pub streams: u32,
    pub silent_streams: u32,
    pub reconnects: u32,
    /// Probes that came back, and of those the ones whose egress IP was not the tunnel's.
    #[serde(default)]
    pub probes: u32,
    #[serde(default)]
    pub egress_mismatches: u32,
    /// Busy refusals well below the declared stream cap; the most streams open at one of
    /// them; the declared cap.
    #[serde(default)]
    pub busy_below_declared: u32,
    #[serde(default)]
    pub busy_max_active: u32,
    #[serde(default)]
    pub declared_streams: u32,
    /// Growth of the node's own traffic counter (held against its declared data caps) and of
    /// the payload the server carried through it, over the same heartbeats.
    #[serde(default)]
    pub node_counted_bytes: u64,
    #[serde(default)]
    pub server_carried_bytes: u64,
    /// Throughput of the last probe (kbit/s) and the egress IP it saw.
    #[serde(default)]
    pub probe_kbps: Option<u32>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub egress_ip: Option<IpAddr>,
    /// Seconds of the current connection (0: offline).
    pub uptime_s: u64,
}

/// Busy refusals below the declared cap in a window before they count (one is a race).
pub const MIN_BUSY_BELOW: u32 = 5;

/// Payload the server must have carried through a node in a window before its traffic counter
/// is judged (heartbeats and the data in flight make short spans noisy).
pub const MIN_CARRIED_JUDGED: u64 = 256 << 20;

/// Samples kept per kind (RTT, time to first byte), newest last.
pub const MAX_SAMPLES: usize = 256;

/// Buckets a busy node's history holds at most with the default window: the window's
/// [`WINDOW_BUCKETS`](super::config::WINDOW_BUCKETS), the one it started in, and a new one
/// begun before the next evaluation prunes the oldest.
pub const BUSY_BUCKETS: usize = super::config::WINDOW_BUCKETS as usize + 2;

/// Everything the watchdog knows of one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeQuality {
    pub owner: String,
    #[serde(default)]
    pub online: bool,
    #[serde(default)]
    pub public_ip: Option<IpAddr>,
    #[serde(default)]
    pub asn: Option<(u32, String)>,
    /// The country of `public_ip` (upper case), when a GeoIP database knows it: which
    /// country's tier lists the node is on.
    #[serde(skip)]
    pub country: Option<[u8; 2]>,
    #[serde(default)]
    pub connected_at: u64,
    /// The last heartbeat said serving (not paused or draining).
    #[serde(default)]
    pub serving: bool,
    #[serde(default)]
    pub pause_reason: Option<String>,
    #[serde(default)]
    pub minutes: VecDeque<Minute>,
    /// (Unix second, milliseconds): 8 bytes a sample. Not written to the database every minute
    /// (up to 256 samples each, for every node): after a restart the percentiles start again
    /// from fresh samples (judged once there are `min_samples`).
    #[serde(skip)]
    pub rtt: VecDeque<(u32, u32)>,
    #[serde(skip)]
    pub ttfb: VecDeque<(u32, u32)>,
    /// Set when the node did not answer an OPEN; cleared by its next sign of life.
    #[serde(default)]
    pub unresponsive_since: Option<u64>,
    pub state: State,
    pub since: u64,
    pub score: u8,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    #[serde(default)]
    pub admin: Option<Override>,
    /// When the node was flagged, inside the ban window.
    #[serde(default)]
    pub flags: Vec<u64>,
    /// Set by the service: more devices than allowed behind this node's public IP.
    #[serde(skip)]
    pub shared_ip: Option<u32>,
    /// The window's summary at the last evaluation.
    #[serde(default)]
    pub summary: Summary,
    /// Back from flagged: healthy again only on enough fresh evidence, or after another
    /// `probation_secs` without a reason.
    #[serde(default)]
    pub probation: bool,
    /// The last probe: the egress IP the probe endpoint saw, and the throughput (kbit/s).
    #[serde(default)]
    pub last_probe: Option<(IpAddr, Option<u32>)>,
    /// Set by the service from the reputation cache: the public IP's risk (0–100).
    #[serde(skip)]
    pub reputation_risk: Option<f64>,
    /// The last heartbeat's traffic counter, the baseline for the next one (this tunnel only).
    #[serde(skip)]
    pub counter: Option<super::Counter>,
}

/// A change of state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub from: State,
    pub to: State,
    pub reason: ReasonCode,
    pub detail: String,
    pub score: u8,
}

fn percentile(samples: &VecDeque<(u32, u32)>, p: usize) -> Option<u32> {
    if samples.is_empty() {
        return None;
    }
    let mut v: Vec<u32> = samples.iter().map(|s| s.1).collect();
    v.sort_unstable();
    let i = ((v.len() - 1) * p).div_ceil(100);
    v.get(i.min(v.len() - 1)).copied()
}

impl NodeQuality {
    pub fn new(owner: &str, now: u64) -> Self {
        NodeQuality {
            owner: owner.to_owned(),
            online: false,
            public_ip: None,
            asn: None,
            country: None,
            connected_at: 0,
            serving: true,
            pause_reason: None,
            minutes: VecDeque::new(),
            rtt: VecDeque::new(),
            ttfb: VecDeque::new(),
            unresponsive_since: None,
            state: State::Healthy,
            since: now,
            score: 100,
            reasons: Vec::new(),
            admin: None,
            flags: Vec::new(),
            shared_ip: None,
            summary: Summary::default(),
            probation: false,
            last_probe: None,
            reputation_risk: None,
            counter: None,
        }
    }

    /// The counts of the bucket of `now` (`width` minutes, [`WatchdogConfig::bucket_minutes`]),
    /// created when needed (the window is pruned at each evaluation, and at most one entry per
    /// bucket is kept).
    pub fn minute(&mut self, now: u64, width: u64) -> &mut Minute {
        let width = width.max(1);
        let m = now / 60 / width * width;
        if self.minutes.back().is_none_or(|b| b.minute < m) {
            self.minutes.push_back(Minute { minute: m, ..Minute::default() });
            // Never more than 1,440 buckets (a day of one-minute ones), even without an
            // evaluation.
            while self.minutes.len() > 1440 {
                self.minutes.pop_front();
            }
        }
        // A clock that went back writes into the newest bucket.
        self.minutes.back_mut().expect("pushed above")
    }

    pub fn sample_rtt(&mut self, now: u64, ms: u32) {
        push_sample(&mut self.rtt, now, ms);
    }

    /// A probe's time to first byte.
    pub fn sample_ttfb(&mut self, now: u64, ms: u32) {
        push_sample(&mut self.ttfb, now, ms);
    }

    /// A stream's time to first byte. The node's first stream gives its history the room a
    /// busy node fills over the window (both kinds of samples and the buckets, about 5 KiB) at
    /// once: grown in doubling steps, that memory was claimed over the whole hour (a soak's RSS
    /// rose for as long) and each step copied the samples. Nodes that carry no stream (idle,
    /// or only probed) keep growing only as far as their heartbeats and probes need.
    pub fn sample_stream_ttfb(&mut self, now: u64, ms: u32) {
        if self.ttfb.capacity() < MAX_SAMPLES {
            self.ttfb.reserve_exact(MAX_SAMPLES.saturating_sub(self.ttfb.len()));
            self.rtt.reserve_exact(MAX_SAMPLES.saturating_sub(self.rtt.len()));
            self.minutes.reserve_exact(BUSY_BUCKETS.saturating_sub(self.minutes.len()));
        }
        push_sample(&mut self.ttfb, now, ms);
    }

    pub fn record_failure(&mut self, now: u64, width: u64, class: FailureClass, counted: bool) {
        let m = self.minute(now, width);
        m.failures[class.index()] += 1;
        if counted {
            m.counted += 1;
        }
    }

    /// Adds the growth of the node's traffic counter since its last heartbeat, and of what the
    /// server carried meanwhile, to the minute of `now`. An interval where the node's counter
    /// went back (its day or month rolled over, it restarted) is skipped.
    pub fn count_traffic(&mut self, now: u64, width: u64, counter: Option<super::Counter>) {
        let Some(c) = counter else {
            self.counter = None;
            return;
        };
        // An idle heartbeat (no growth) adds no minute: nothing changed.
        if let Some(last) = self.counter.replace(c)
            && c.node >= last.node
            && c.carried >= last.carried
            && (c.node, c.carried) != (last.node, last.carried)
        {
            let m = self.minute(now, width);
            m.counted_node = m.counted_node.saturating_add(c.node - last.node);
            m.counted_carried = m.counted_carried.saturating_add(c.carried - last.carried);
        }
    }

    /// Forgets every measurement (probation, an unban): the node is judged afresh.
    pub fn forget_measurements(&mut self) {
        self.minutes.clear();
        self.rtt.clear();
        self.ttfb.clear();
    }

    fn prune(&mut self, cfg: &WatchdogConfig, now: u64) {
        // A bucket stays while any of its minutes is in the window: the counts span the window
        // and at most one bucket's minutes more, never less.
        let oldest_minute = (now / 60).saturating_sub(cfg.window_minutes() as u64 - 1);
        let width = cfg.bucket_minutes();
        while self.minutes.front().is_some_and(|m| m.minute.saturating_add(width) <= oldest_minute) {
            self.minutes.pop_front();
        }
        let oldest = now.saturating_sub(cfg.window_secs);
        for s in [&mut self.rtt, &mut self.ttfb] {
            while s.front().is_some_and(|(t, _)| u64::from(*t) < oldest) {
                s.pop_front();
            }
        }
        self.flags.retain(|t| now.saturating_sub(*t) < cfg.ban_window_secs);
    }

    /// The window summarised.
    pub fn summarise(&self, cfg: &WatchdogConfig, now: u64) -> Summary {
        let mut s = Summary {
            window_secs: cfg.window_secs,
            rtt_p50_ms: percentile(&self.rtt, 50),
            rtt_p95_ms: percentile(&self.rtt, 95),
            ttfb_p50_ms: percentile(&self.ttfb, 50),
            uptime_s: if self.online { now.saturating_sub(self.connected_at) } else { 0 },
            egress_ip: self.last_probe.map(|p| p.0),
            probe_kbps: self.last_probe.and_then(|p| p.1),
            ..Summary::default()
        };
        for m in &self.minutes {
            s.opens_ok += m.opens_ok;
            s.failed_refused += m.failures[0];
            s.failed_dns += m.failures[1];
            s.failed_timeout += m.failures[2];
            s.failed_policy += m.failures[3];
            s.failed_node_error += m.failures[4];
            s.failed_counted += m.counted;
            s.streams += m.streams;
            s.silent_streams += m.silent;
            s.reconnects += m.reconnects;
            s.probes += m.probes;
            s.egress_mismatches += m.egress_mismatch;
            s.busy_below_declared += m.busy_below;
            s.busy_max_active = s.busy_max_active.max(m.busy_max_active);
            if m.busy_declared > 0 {
                s.declared_streams = m.busy_declared;
            }
            s.node_counted_bytes = s.node_counted_bytes.saturating_add(m.counted_node);
            s.server_carried_bytes = s.server_carried_bytes.saturating_add(m.counted_carried);
        }
        s
    }

    /// Opens judged in the window (successes and failures attributed to the node).
    pub fn judged_opens(&self) -> u32 {
        self.minutes.iter().map(|m| m.opens_ok + m.counted).sum()
    }

    /// Minutes the counts span at `now`, as the reasons say it: the window, or up to one
    /// bucket's minutes more while the oldest bucket still holds minutes from before it.
    fn counted_minutes(&self, cfg: &WatchdogConfig, now: u64) -> u64 {
        let window = cfg.window_minutes() as u64;
        self.minutes.front().map_or(window, |m| window.max((now / 60).saturating_sub(m.minute) + 1))
    }

    /// The score (0–100) and its reasons, from the window as it stands at `now`.
    pub fn score(&self, cfg: &WatchdogConfig, s: &Summary, now: u64) -> (u8, Vec<Reason>) {
        let mins = self.counted_minutes(cfg, now);
        let mut reasons = Vec::new();
        let judged = s.opens_ok + s.failed_counted;
        if judged >= cfg.min_opens && s.failed_counted > 0 {
            let factor = f64::from(s.opens_ok) / f64::from(judged);
            let pct = (f64::from(s.failed_counted) * 100.0 / f64::from(judged)).round();
            reasons.push(Reason {
                code: ReasonCode::OpenFailures,
                detail: format!(
                    "{pct} % of opens failed on the node in the last {mins} min ({} of {judged}; by class: refused {}, DNS {}, timeout {}, node error {})",
                    s.failed_counted, s.failed_refused, s.failed_dns, s.failed_timeout, s.failed_node_error
                ),
                hint: "keep the node on a working connection: a firewall, VPN or captive portal on its network may be \
                       blocking outgoing connections"
                    .into(),
                factor,
            });
        }
        if s.streams >= cfg.min_streams && s.silent_streams > 0 {
            let factor = 1.0 - f64::from(s.silent_streams) / f64::from(s.streams);
            reasons.push(Reason {
                code: ReasonCode::Blackhole,
                detail: format!(
                    "{} of {} streams in the last {mins} min got no byte back from the target",
                    s.silent_streams, s.streams
                ),
                hint: "the node connects but returns nothing: check for a filtering firewall, a captive portal or a \
                       broken VPN on its network"
                    .into(),
                factor,
            });
        }
        // Declared limits against observed behaviour: the stream cap it declared…
        if s.busy_below_declared >= MIN_BUSY_BELOW {
            let judged = s.opens_ok + s.busy_below_declared;
            reasons.push(Reason {
                code: ReasonCode::BusyBelowDeclared,
                detail: format!(
                    "refused {} streams as busy in the last {mins} min with at most {} of the {} streams it declares open",
                    s.busy_below_declared, s.busy_max_active, s.declared_streams
                ),
                hint: "lower “max streams” in the node's settings to what its device and connection can carry".into(),
                factor: (f64::from(s.opens_ok) / f64::from(judged)).max(0.5),
            });
        }
        // …and the traffic counter it holds against its declared data caps.
        if s.server_carried_bytes >= MIN_CARRIED_JUDGED && s.node_counted_bytes < s.server_carried_bytes / 2 {
            reasons.push(Reason {
                code: ReasonCode::UndercountedTraffic,
                detail: format!(
                    "counted {} against its data cap while the server carried {} through it in the last {mins} min",
                    crate::units::format_bytes(s.node_counted_bytes),
                    crate::units::format_bytes(s.server_carried_bytes)
                ),
                hint: "the node's data counter is behind, so its data cap will be passed: update the node app".into(),
                factor: 0.8,
            });
        }
        if self.ttfb.len() >= cfg.min_samples as usize
            && let Some(p50) = s.ttfb_p50_ms
            && u64::from(p50) > cfg.slow_ttfb_ms
        {
            reasons.push(Reason {
                code: ReasonCode::SlowTtfb,
                detail: format!("median time to first byte {p50} ms (slow above {} ms)", cfg.slow_ttfb_ms),
                hint: "a faster or less busy connection (Wi-Fi or Ethernet rather than a weak mobile signal) raises it"
                    .into(),
                factor: cfg.slow_ttfb_ms as f64 / f64::from(p50),
            });
        }
        if self.rtt.len() >= cfg.min_samples as usize
            && let Some(p95) = s.rtt_p95_ms
            && u64::from(p95) > cfg.slow_rtt_ms
        {
            reasons.push(Reason {
                code: ReasonCode::SlowRtt,
                detail: format!(
                    "tunnel round trip {p95} ms at the 95th percentile (slow above {} ms)",
                    cfg.slow_rtt_ms
                ),
                hint: "a steadier connection to the server raises it".into(),
                factor: cfg.slow_rtt_ms as f64 / f64::from(p95),
            });
        }
        if s.reconnects > cfg.max_reconnects {
            reasons.push(Reason {
                code: ReasonCode::Churn,
                detail: format!(
                    "reconnected {} times in the last {mins} min (more than {})",
                    s.reconnects, cfg.max_reconnects
                ),
                hint: "keep the node connected; to stop sharing for a while, pause it in its settings (a pause with a \
                       reason is not counted)"
                    .into(),
                factor: f64::from(cfg.max_reconnects.max(1)) / f64::from(s.reconnects),
            });
        }
        if let Some((asn, org)) = &self.asn
            && cfg.hosting_asns.contains(asn)
        {
            reasons.push(Reason {
                code: ReasonCode::HostingNetwork,
                detail: format!("on a hosting network (AS{asn} {org})"),
                hint: "run the node on a home or mobile connection: clients pay for residential addresses".into(),
                factor: 0.6,
            });
        }
        if let (Some(n), Some(ip)) = (self.shared_ip, self.public_ip) {
            reasons.push(Reason {
                code: ReasonCode::SharedIp,
                detail: format!("{n} devices online behind one public IP ({ip}; at most {})", cfg.max_devices_per_ip),
                hint: "share each connection from one device".into(),
                factor: 0.6,
            });
        }
        // Most probes in the window left from another IP than the tunnel's.
        if s.probes >= cfg.min_probes && s.egress_mismatches * 2 > s.probes {
            let tunnel = self.public_ip.map_or_else(|| "?".to_owned(), |ip| ip.to_string());
            let egress = s.egress_ip.map_or_else(|| "?".to_owned(), |ip| ip.to_string());
            reasons.push(Reason {
                code: ReasonCode::EgressMismatch,
                detail: format!(
                    "relays through another proxy or VPN: {} of {} probes in the last {mins} min left from {egress}, \
                     the tunnel comes from {tunnel}",
                    s.egress_mismatches, s.probes
                ),
                hint: "turn off the VPN or proxy on the node's device or network: clients must leave from the \
                       node's own address"
                    .into(),
                factor: 0.3,
            });
        }
        if let (Some(risk), Some(ip)) = (self.reputation_risk, self.public_ip)
            && risk > cfg.reputation_max_risk
        {
            reasons.push(Reason {
                code: ReasonCode::BadReputation,
                detail: format!(
                    "the reputation service rates {ip} at risk {risk:.0} (more than {:.0})",
                    cfg.reputation_max_risk
                ),
                hint: "the address is listed as a proxy, VPN, hosting or abuse source: run the node on a \
                       residential connection without a VPN"
                    .into(),
                factor: 0.5,
            });
        }
        let product: f64 = reasons.iter().map(|r| r.factor.clamp(0.0, 1.0)).product();
        // Worst first: the first reason is the one a page leads with.
        reasons.sort_by(|a, b| a.factor.total_cmp(&b.factor));
        ((product * 100.0).round().clamp(0.0, 100.0) as u8, reasons)
    }

    /// Re-scores the node and moves it between states; the change, if any. Bans go through
    /// the caller (the device ban), which this only decides.
    pub fn evaluate(&mut self, cfg: &WatchdogConfig, now: u64) -> Option<Change> {
        self.prune(cfg, now);
        let summary = self.summarise(cfg, now);
        let (score, reasons) = self.score(cfg, &summary, now);
        self.summary = summary;
        self.score = score;
        self.reasons = reasons;
        let worst = self.reasons.first().map_or((ReasonCode::Recovered, String::new()), |r| (r.code, r.detail.clone()));
        let (to, reason, detail) = match (&self.admin, self.state) {
            (_, State::Banned) => return None,
            (Some(o), _) => (o.state, ReasonCode::AdminOverride, o.note.clone()),
            (None, State::Flagged) if now.saturating_sub(self.since) >= cfg.probation_secs => {
                self.forget_measurements();
                self.probation = true;
                self.summary = self.summarise(cfg, now);
                (
                    State::Degraded,
                    ReasonCode::Probation,
                    format!(
                        "flagged for {} min: routed again and judged on fresh measurements",
                        cfg.probation_secs / 60
                    ),
                )
            }
            (None, State::Flagged) => return None,
            (None, current) => {
                let wanted = if score < cfg.flagged_below {
                    State::Flagged
                } else if score < cfg.degraded_below {
                    State::Degraded
                } else {
                    State::Healthy
                };
                // Hysteresis: moving up a state needs the threshold plus the margin.
                let evidence = self.judged_opens() >= cfg.min_opens
                    || self.summary.streams >= cfg.min_streams
                    || now.saturating_sub(self.since) >= cfg.probation_secs;
                let to = match (current, wanted) {
                    (State::Degraded, State::Healthy)
                        if u16::from(score) < u16::from(cfg.degraded_below) + u16::from(cfg.hysteresis)
                            || (self.probation && !evidence) =>
                    {
                        State::Degraded
                    }
                    _ => wanted,
                };
                if to == State::Healthy {
                    (to, ReasonCode::Recovered, format!("score {score}"))
                } else {
                    (to, worst.0, worst.1)
                }
            }
        };
        if to == self.state {
            return None;
        }
        let mut to = to;
        let mut reason = reason;
        let mut detail = detail;
        if to == State::Flagged && self.admin.is_none() {
            self.flags.push(now);
            if cfg.ban_after_flags > 0 && self.flags.len() >= cfg.ban_after_flags as usize {
                detail =
                    format!("flagged {} times in {} h; last: {detail}", self.flags.len(), cfg.ban_window_secs / 3600);
                to = State::Banned;
                reason = ReasonCode::RepeatedFlags;
            }
        }
        if to != State::Degraded {
            self.probation = false;
        }
        let change = Change { from: self.state, to, reason, detail, score };
        self.state = to;
        self.since = now;
        Some(change)
    }

    /// Whether new streams may go here (online, answering, healthy or degraded).
    pub fn routable(&self) -> bool {
        self.online && self.unresponsive_since.is_none() && matches!(self.state, State::Healthy | State::Degraded)
    }
}

fn push_sample(v: &mut VecDeque<(u32, u32)>, now: u64, ms: u32) {
    if v.len() >= MAX_SAMPLES {
        v.pop_front();
    }
    // A Unix second fits 32 bits until 2106; one past that is kept as the last one that fits.
    v.push_back((u32::try_from(now).unwrap_or(u32::MAX), ms));
}
