//! `[watchdog]` of `traffix.toml`: the score thresholds, their hysteresis, how much evidence a
//! judgement needs, the automatic ban, and the IP-quality lists. Pure: no I/O.

use serde::{Deserialize, Serialize};

/// Buckets a node's counts over the window are kept in (see [`WatchdogConfig::bucket_minutes`]).
pub const WINDOW_BUCKETS: u64 = 12;

/// The quality watchdog's settings (docs/watchdog.md explains each number).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogConfig {
    /// false: nothing is measured or judged; every online node is routed as before.
    pub enabled: bool,
    /// Seconds of measurements a score is computed from (a sliding window of buckets of minutes).
    pub window_secs: u64,
    /// Seconds between two evaluations (scores, states, the summary written to the database).
    pub evaluate_secs: u64,
    /// Below this score a node is degraded (routed only when no healthy node fits).
    pub degraded_below: u8,
    /// Below this score a node is flagged (not routed).
    pub flagged_below: u8,
    /// Points above a threshold a score must reach before the node moves back up a state.
    pub hysteresis: u8,
    /// At or above this score a healthy node is in the high tier (`-quality-high`).
    pub high_score: u8,
    /// Opens judged (counted for or against the node) before the open-failure ratio counts.
    pub min_opens: u32,
    /// Finished streams judged before the silent-stream (blackhole) ratio counts.
    pub min_streams: u32,
    /// Samples of time to first byte and of tunnel RTT before speed counts.
    pub min_samples: u32,
    /// A median time to first byte above this (ms) lowers the score.
    pub slow_ttfb_ms: u64,
    /// A 95th-percentile tunnel RTT above this (ms) lowers the score.
    pub slow_rtt_ms: u64,
    /// Reconnects in the window above this lower the score (a node that paused itself with a
    /// reason and a server-side disconnect are not counted).
    pub max_reconnects: u32,
    /// Seconds a flagged node waits before it is given traffic again on probation (as degraded,
    /// judged on fresh measurements only).
    pub probation_secs: u64,
    /// Flaggings inside `ban_window_secs` that ban the device (disconnected, cannot reconnect
    /// until an admin unbans it). 0: the watchdog never bans.
    pub ban_after_flags: u32,
    /// The window (seconds) in which flaggings are counted towards a ban.
    pub ban_window_secs: u64,
    /// ASNs of hosting and datacenter networks: a node there is degraded ("on a hosting network").
    pub hosting_asns: Vec<u32>,
    /// ASNs of mobile and other CGNAT networks, where many devices share one public IP.
    pub cgnat_asns: Vec<u32>,
    /// More online devices than this behind one public IP (outside `cgnat_asns`) are degraded.
    pub max_devices_per_ip: u32,
    /// The server's probe endpoint (a small TCP echo), e.g. `203.0.113.5:7070`; absent: no
    /// probes. Nodes dial it through their tunnels with OPENs flagged `probe`, the only target
    /// exempt from their own-server refusal, so it must be an address of the server as the
    /// nodes know it (the tunnel's address): a specific IP, not `0.0.0.0`.
    pub probe_listen: Option<std::net::SocketAddr>,
    /// Seconds between two probes of one node (at least 10).
    pub probe_interval_secs: u64,
    /// Bytes echoed per probe (time to first byte, throughput), at most 1 MiB.
    pub probe_bytes: u32,
    /// Probe nodes that declare a data cap too (their probes count against the owner's cap;
    /// off by default: a capped node is never probed).
    pub probe_capped_nodes: bool,
    /// Probes in the window before the egress-vs-tunnel IP check counts.
    pub min_probes: u32,
    /// An external IP-reputation service, e.g. `https://rep.example/v1/{ip}` (`{ip}` is
    /// replaced by the node's public IP); absent: no lookups (the default).
    pub reputation_url: Option<String>,
    /// JSON pointer of the risk (0–100, or a boolean) in the service's answer.
    pub reputation_pointer: String,
    /// A risk above this lowers the score (`bad_reputation`).
    pub reputation_max_risk: f64,
    /// Seconds one lookup may take.
    pub reputation_timeout_secs: u64,
    /// Seconds an answer is kept before the IP is looked up again.
    pub reputation_cache_secs: u64,
}

/// A short default list of large hosting and cloud networks (AWS, Google Cloud, Azure,
/// DigitalOcean, OVH, Hetzner, Linode/Akamai, Vultr/Choopa, Contabo, Scaleway, Oracle, Alibaba,
/// Tencent, Leaseweb, M247). Operators extend it in `traffix.toml`.
pub const DEFAULT_HOSTING_ASNS: &[u32] = &[
    16509, 14618, 15169, 396982, 8075, 14061, 16276, 24940, 63949, 20473, 51167, 12876, 31898, 45102, 132203, 60781,
    9009,
];

/// A short default list of mobile carriers whose subscribers sit behind CGNAT (T-Mobile US,
/// Verizon Wireless, AT&T Mobility, Vodafone DE, Telefónica DE, Reliance Jio, Bharti Airtel,
/// Turkcell, MTS, Beeline, MegaFon).
pub const DEFAULT_CGNAT_ASNS: &[u32] = &[21928, 22394, 20057, 3209, 6805, 55836, 45609, 16135, 8359, 3216, 31133];

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            enabled: true,
            window_secs: 3600,
            evaluate_secs: 60,
            degraded_below: 70,
            flagged_below: 40,
            hysteresis: 10,
            high_score: 90,
            min_opens: 10,
            min_streams: 10,
            min_samples: 5,
            slow_ttfb_ms: 3000,
            slow_rtt_ms: 2000,
            max_reconnects: 6,
            probation_secs: 900,
            ban_after_flags: 3,
            ban_window_secs: 86_400,
            hosting_asns: DEFAULT_HOSTING_ASNS.to_vec(),
            cgnat_asns: DEFAULT_CGNAT_ASNS.to_vec(),
            max_devices_per_ip: 3,
            probe_listen: None,
            probe_interval_secs: 300,
            probe_bytes: 16 * 1024,
            probe_capped_nodes: false,
            min_probes: 2,
            reputation_url: None,
            reputation_pointer: "/risk".into(),
            reputation_max_risk: 75.0,
            reputation_timeout_secs: 5,
            reputation_cache_secs: 86_400,
        }
    }
}

impl WatchdogConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.window_secs < 60 || self.evaluate_secs == 0 {
            return Err("watchdog.window_secs must be at least 60 and watchdog.evaluate_secs at least 1".into());
        }
        if self.flagged_below > self.degraded_below || self.degraded_below > 100 {
            return Err("watchdog: flagged_below ≤ degraded_below ≤ 100".into());
        }
        if self.high_score > 100 || u16::from(self.degraded_below) + u16::from(self.hysteresis) > 100 {
            return Err("watchdog.high_score and degraded_below + hysteresis must be at most 100".into());
        }
        if self.min_opens == 0 || self.min_streams == 0 || self.min_samples == 0 {
            return Err("watchdog.min_opens, min_streams and min_samples must be at least 1".into());
        }
        if self.slow_ttfb_ms == 0 || self.slow_rtt_ms == 0 || self.max_devices_per_ip == 0 {
            return Err("watchdog.slow_ttfb_ms, slow_rtt_ms and max_devices_per_ip must be at least 1".into());
        }
        if self.hosting_asns.len() > 100_000 || self.cgnat_asns.len() > 100_000 {
            return Err("watchdog.hosting_asns and cgnat_asns hold at most 100000 entries".into());
        }
        if let Some(a) = self.probe_listen
            && a.ip().is_unspecified()
        {
            return Err("watchdog.probe_listen must be a specific address of the server, as nodes reach it".into());
        }
        if self.probe_interval_secs < 10 || self.probe_bytes == 0 || self.probe_bytes > 1 << 20 || self.min_probes == 0
        {
            return Err("watchdog: probe_interval_secs ≥ 10, 1 ≤ probe_bytes ≤ 1048576, min_probes ≥ 1".into());
        }
        if let Some(u) = &self.reputation_url {
            let parsed = url::Url::parse(&u.replace("{ip}", "192.0.2.1"))
                .map_err(|e| format!("watchdog.reputation_url is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || !u.contains("{ip}") {
                return Err("watchdog.reputation_url must be an http(s) URL with {ip} in it".into());
            }
        }
        if !(0.0..=100.0).contains(&self.reputation_max_risk)
            || self.reputation_timeout_secs == 0
            || self.reputation_cache_secs == 0
            || !(self.reputation_pointer.is_empty() || self.reputation_pointer.starts_with('/'))
        {
            return Err("watchdog: reputation_max_risk 0–100, reputation_timeout_secs and reputation_cache_secs ≥ 1, \
                        reputation_pointer a JSON pointer"
                .into());
        }
        Ok(())
    }

    /// Minutes in the window.
    pub fn window_minutes(&self) -> usize {
        (self.window_secs / 60).max(1) as usize
    }

    /// Minutes each bucket of a node's counts spans: the window is kept as about
    /// [`WINDOW_BUCKETS`] buckets (5 minutes each for the default hour), so a busy node's counts
    /// stay about a kilobyte whatever the window.
    pub fn bucket_minutes(&self) -> u64 {
        (self.window_minutes() as u64 / WINDOW_BUCKETS).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_thresholds_are_refused() {
        assert!(WatchdogConfig::default().validate().is_ok());
        let c = WatchdogConfig { flagged_below: 80, ..WatchdogConfig::default() };
        assert!(c.validate().unwrap_err().contains("flagged_below"));
        let c = WatchdogConfig { degraded_below: 95, hysteresis: 10, ..WatchdogConfig::default() };
        assert!(c.validate().is_err());
        let c = WatchdogConfig { window_secs: 10, ..WatchdogConfig::default() };
        assert!(c.validate().is_err());
        let c = WatchdogConfig { min_opens: 0, ..WatchdogConfig::default() };
        assert!(c.validate().is_err());
        let c =
            WatchdogConfig { probe_listen: Some("0.0.0.0:7070".parse().expect("addr")), ..WatchdogConfig::default() };
        assert!(c.validate().unwrap_err().contains("probe_listen"));
        let c = WatchdogConfig { probe_interval_secs: 1, ..WatchdogConfig::default() };
        assert!(c.validate().is_err());
        let c = WatchdogConfig {
            reputation_url: Some("https://rep.example/v1/lookup".into()),
            ..WatchdogConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("{ip}"));
        let c = WatchdogConfig { reputation_url: Some("ftp://rep.example/{ip}".into()), ..WatchdogConfig::default() };
        assert!(c.validate().is_err());
        let c = WatchdogConfig { reputation_url: Some("https://rep.example/{ip}".into()), ..WatchdogConfig::default() };
        assert!(c.validate().is_ok());
    }
}
