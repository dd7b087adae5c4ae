//! The optional external IP-reputation lookup (`[watchdog] reputation_url`, off by default):
//! one GET per public IP of an online node, `{ip}` in the URL replaced by the address, the
//! risk (0–100, higher is worse) read from the JSON answer at `reputation_pointer`. Answers are
//! cached in moka for `reputation_cache_secs` (bounded by `limits.watchdog_max_nodes`); each
//! lookup runs under `reputation_timeout_secs`. Lookups run in their own task
//! ([`Reputation::run`]); the scoring reads only the cache, so a slow or dead reputation service
//! never delays routing or an evaluation.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::geoip::fetch::{Client, Request};

/// Largest answer read from the reputation service.
pub const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// Lookups started per round (each round is one evaluation interval).
pub const LOOKUPS_PER_ROUND: usize = 32;

/// The lookup service.
pub struct Reputation {
    url: String,
    pointer: String,
    client: Client,
    cache: moka::sync::Cache<IpAddr, f64>,
}

impl std::fmt::Debug for Reputation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reputation")
    }
}

/// Reads the risk at `pointer` (a JSON pointer, e.g. `/risk`) of `body`: a number 0–100, or a
/// boolean (true = 100).
pub fn parse_risk(body: &[u8], pointer: &str) -> Result<f64, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    match v.pointer(pointer) {
        Some(serde_json::Value::Number(n)) => {
            n.as_f64().filter(|r| r.is_finite()).map(|r| r.clamp(0.0, 100.0)).ok_or_else(|| "not a number".into())
        }
        Some(serde_json::Value::Bool(b)) => Ok(if *b { 100.0 } else { 0.0 }),
        Some(_) => Err(format!("{pointer} is not a number or a boolean")),
        None => Err(format!("no {pointer} in the answer")),
    }
}

impl Reputation {
    /// The service for `[watchdog]`'s settings, or `None` when `reputation_url` is not set.
    pub fn new(cfg: &super::config::WatchdogConfig, max_entries: u64) -> Result<Option<Reputation>, String> {
        let Some(url) = cfg.reputation_url.clone() else { return Ok(None) };
        let client = Client::new(Duration::from_secs(cfg.reputation_timeout_secs))?;
        Ok(Some(Reputation {
            url,
            pointer: cfg.reputation_pointer.clone(),
            client,
            cache: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(Duration::from_secs(cfg.reputation_cache_secs))
                .build(),
        }))
    }

    /// The cached risk of `ip`, if it was looked up.
    pub fn cached(&self, ip: IpAddr) -> Option<f64> {
        self.cache.get(&ip)
    }

    /// Looks `ip` up (under the timeout) and caches the answer.
    pub async fn lookup(&self, ip: IpAddr) -> Result<f64, String> {
        let text = self.url.replace("{ip}", &ip.to_string());
        let url = url::Url::parse(&text).map_err(|e| format!("reputation_url: {e}"))?;
        let shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?"));
        let body = self.client.get(&Request::new(url, shown), MAX_ANSWER_BYTES).await.map_err(|e| e.to_string())?;
        let risk = parse_risk(&body, &self.pointer)?;
        self.cache.insert(ip, risk);
        Ok(risk)
    }

    /// Every `every`, looks up the online nodes' IPs that are not cached (at most
    /// [`LOOKUPS_PER_ROUND`] a round, one at a time), until shutdown.
    pub async fn run(
        self: Arc<Self>,
        watchdog: Arc<super::Watchdog>,
        every: Duration,
        mut shutdown: crate::shutdown::Shutdown,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.recv() => return,
            }
            let due: Vec<IpAddr> = watchdog
                .online_ips()
                .into_iter()
                .filter(|ip| self.cached(*ip).is_none())
                .take(LOOKUPS_PER_ROUND)
                .collect();
            for ip in due {
                tokio::select! {
                    r = self.lookup(ip) => match r {
                        Ok(risk) => tracing::debug!(%ip, risk, "reputation looked up"),
                        Err(e) => tracing::warn!(%ip, error = %e, "reputation lookup failed"),
                    },
                    _ = shutdown.recv() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::quality::{ReasonCode, State};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn risks_are_read_at_the_pointer_and_hostile_answers_are_refused() {
        assert_eq!(parse_risk(br#"{"risk": 80}"#, "/risk"), Ok(80.0));
        assert_eq!(parse_risk(br#"{"data": {"proxy": true}}"#, "/data/proxy"), Ok(100.0));
        assert_eq!(parse_risk(br#"{"risk": 1e9}"#, "/risk"), Ok(100.0));
        assert_eq!(parse_risk(br#"{"risk": -5}"#, "/risk"), Ok(0.0));
        assert!(parse_risk(br#"{"risk": "high"}"#, "/risk").is_err());
        assert!(parse_risk(br#"{"other": 1}"#, "/risk").is_err());
        assert!(parse_risk(b"<html>", "/risk").is_err());
        assert!(parse_risk(b"", "/risk").is_err());
    }

    #[tokio::test]
    async fn a_lookup_asks_the_configured_url_and_caches_the_answer() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let _ = seen_tx.send(head.lines().next().unwrap_or("").to_owned());
                let body = r#"{"ip":"198.51.100.7","risk":91}"#;
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                            .as_bytes(),
                    )
                    .await;
            }
        });
        let cfg = super::super::config::WatchdogConfig {
            reputation_url: Some(format!("http://127.0.0.1:{port}/v1/{{ip}}?fields=risk")),
            ..Default::default()
        };
        let rep = Reputation::new(&cfg, 16).expect("client").expect("configured");
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(rep.cached(ip), None);
        assert_eq!(rep.lookup(ip).await, Ok(91.0));
        assert_eq!(seen_rx.recv().await.as_deref(), Some("GET /v1/198.51.100.7?fields=risk HTTP/1.1"));
        assert_eq!(rep.cached(ip), Some(91.0));
        // In the watchdog: an evaluation reads only the cache (never waits for the service);
        // once looked up, a risky IP is degraded with its reason.
        let limits = super::super::WatchdogLimits::from_limits(&crate::config::Limits::default());
        let w = super::super::Watchdog::new(cfg, limits, None, Arc::default());
        let now = 1_800_000_000;
        w.record(super::super::Event::Online { device: [1; 16], owner: "bob", ip, country: None }, now);
        assert!(w.evaluate(now).is_empty());
        assert_eq!(w.online_ips(), [ip]);
        assert_eq!(w.reputation().expect("on").lookup(ip).await, Ok(91.0));
        let changes = w.evaluate(now + 60);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!((changes[0].to, changes[0].reason), (State::Degraded, ReasonCode::BadReputation));
        assert!(changes[0].detail.contains("risk 91"), "{}", changes[0].detail);
        // Not configured: no service at all.
        assert!(Reputation::new(&super::super::config::WatchdogConfig::default(), 16).expect("ok").is_none());
    }
}
