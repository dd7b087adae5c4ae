//! Watchdog probes (docs/watchdog.md, "Probes"): the server's probe endpoint, a small TCP echo
//! on `[watchdog] probe_listen`, and the prober that opens a stream flagged `probe` through each
//! serving node to it. The endpoint sees the node's egress IP; the prober measures the time to
//! the first echoed byte and the throughput and reports all three to the watchdog as
//! [`Event::Probe`]. Probes never touch billing: they are opened on the node's mux directly.
//!
//! The wire: the prober sends a random 16-byte token, then `probe_bytes` of payload, then FIN;
//! the endpoint remembers which IP sent the token and echoes everything (at most
//! `probe_bytes` + 16 bytes, 30 s) back.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::target::Target;
use crate::tunnel::copy::{self, NoMeter};
use crate::tunnel::registry::{NodeHandle, Registry};
use crate::watchdog::{Event, Watchdog};

/// Bytes of the token that opens every probe.
pub const TOKEN_LEN: usize = 16;
/// Longest a probe connection lives, at the endpoint and at the prober.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(30);

/// Token → the IP the probe endpoint saw it from (bounded, short-lived).
pub type Seen = moka::sync::Cache<[u8; TOKEN_LEN], IpAddr>;

/// The table the endpoint fills and the prober reads (at most `max` entries, a minute each).
pub fn seen_table(max: u64) -> Arc<Seen> {
    Arc::new(moka::sync::Cache::builder().max_capacity(max).time_to_live(Duration::from_secs(60)).build())
}

/// The probe endpoint: at most `max_conns` connections at once (more are closed), each echoing
/// at most `max_bytes` after the token, within [`PROBE_DEADLINE`].
pub async fn serve_endpoint(
    listener: TcpListener,
    seen: Arc<Seen>,
    max_conns: usize,
    max_bytes: u64,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let slots = Arc::new(Semaphore::new(max_conns));
    loop {
        let (mut sock, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "probe endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "probe endpoint full: connection closed");
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let echo = async {
                let mut token = [0u8; TOKEN_LEN];
                sock.read_exact(&mut token).await?;
                seen.insert(token, peer.ip().to_canonical());
                sock.write_all(&token).await?;
                let mut left = max_bytes;
                let mut buf = vec![0u8; 16 * 1024];
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = sock.read(&mut buf[..want]).await?;
                    if n == 0 {
                        break;
                    }
                    sock.write_all(&buf[..n]).await?;
                    left -= n as u64;
                }
                sock.shutdown().await
            };
            match tokio::time::timeout(PROBE_DEADLINE, echo).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "probe connection ended early"),
                Err(_) => tracing::debug!(%peer, "probe connection timed out"),
            }
        });
    }
}

/// What one probe measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResult {
    pub egress: IpAddr,
    pub ttfb: Duration,
    pub kbps: Option<u32>,
}

/// Whether `node` may be probed at all: serving, not paused by its owner, not near a data cap,
/// and (unless `capped_too`) declaring no data cap (a probe's bytes count against it).
pub fn probe_allowed(node: &NodeHandle, capped_too: bool) -> bool {
    if !node.accepts_streams() {
        return false;
    }
    let hb = node.status();
    capped_too || (hb.daily_cap.is_none() && hb.monthly_cap.is_none())
}

/// One probe through `node` to `target`: the token and `bytes` of payload out, all of it back.
pub async fn probe_once(
    node: &NodeHandle,
    target: SocketAddr,
    bytes: u32,
    open_wait: Duration,
    seen: &Seen,
) -> Result<ProbeResult, String> {
    let start = tokio::time::Instant::now();
    let stream = node
        .mux
        .open_with(Target::Ip(target), node.max_streams().max(1), open_wait, true)
        .await
        .map_err(|e| format!("open: {e}"))?;
    let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
    let relay = tokio::spawn(copy::bidirectional(theirs, stream, Arc::new(NoMeter), false));
    let mut token = [0u8; TOKEN_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut token).map_err(|_| "no randomness")?;
    let total = TOKEN_LEN + bytes as usize;
    let run = async {
        let (mut rd, mut wr) = tokio::io::split(&mut ours);
        let send = async {
            wr.write_all(&token).await?;
            let chunk = vec![0x5au8; 16 * 1024];
            let mut left = bytes as usize;
            while left > 0 {
                let n = left.min(chunk.len());
                wr.write_all(&chunk[..n]).await?;
                left -= n;
            }
            wr.shutdown().await
        };
        let recv = async {
            let mut buf = vec![0u8; 16 * 1024];
            let mut got = 0usize;
            let mut first = None;
            let mut echoed_token = Vec::with_capacity(TOKEN_LEN);
            while got < total {
                let n = rd.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                first.get_or_insert_with(|| start.elapsed());
                if echoed_token.len() < TOKEN_LEN {
                    let take = (TOKEN_LEN - echoed_token.len()).min(n);
                    echoed_token.extend_from_slice(&buf[..take]);
                }
                got += n;
            }
            Ok::<_, std::io::Error>((got, first, echoed_token))
        };
        let (sent, received) = tokio::join!(send, recv);
        sent?;
        received
    };
    let outcome = tokio::time::timeout(PROBE_DEADLINE, run).await;
    relay.abort();
    let (got, first, echoed) = match outcome {
        Err(_) => return Err("timed out".into()),
        Ok(Err(e)) => return Err(format!("i/o: {e}")),
        Ok(Ok(r)) => r,
    };
    if echoed != token || got < total {
        return Err(format!("echo incomplete: {got} of {total} bytes"));
    }
    let egress = seen.get(&token).ok_or("the probe endpoint did not see the token")?;
    let ttfb = first.unwrap_or_default();
    let elapsed = start.elapsed().saturating_sub(ttfb);
    // Both directions of the payload after the first byte, in kbit/s.
    let kbps = (elapsed.as_micros() > 0 && bytes >= 4096)
        .then(|| (2 * u128::from(bytes) * 8 * 1000 / elapsed.as_micros().max(1)).min(u128::from(u32::MAX)) as u32);
    Ok(ProbeResult { egress, ttfb, kbps })
}

/// Settings of the prober.
#[derive(Debug, Clone, Copy)]
pub struct ProberSettings {
    pub target: SocketAddr,
    pub bytes: u32,
    pub capped_too: bool,
    pub open_wait: Duration,
    /// How often the due nodes are looked for.
    pub tick: Duration,
}

/// Probes each serving node when the watchdog says it is due, until shutdown.
pub async fn run_prober(
    registry: Arc<Registry>,
    watchdog: Arc<Watchdog>,
    seen: Arc<Seen>,
    settings: ProberSettings,
    metrics: Arc<crate::telemetry::Metrics>,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let mut tick = tokio::time::interval(settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        let now = crate::store::now_secs();
        for node in registry.all() {
            if !probe_allowed(&node, settings.capped_too) || !watchdog.probe_due(&node.device_id, now) {
                continue;
            }
            let (watchdog, seen, metrics) = (watchdog.clone(), seen.clone(), metrics.clone());
            tokio::spawn(async move {
                let device = hex::encode(node.device_id);
                let result = match probe_once(&node, settings.target, settings.bytes, settings.open_wait, &seen).await {
                    Ok(r) => {
                        let mismatch = crate::listener::source_key(r.egress)
                            != crate::listener::source_key(node.public_ip.to_canonical());
                        tracing::debug!(%device, egress = %r.egress, tunnel = %node.public_ip, ttfb_ms = r.ttfb.as_millis() as u64,
                            kbps = r.kbps, mismatch, "probe came back");
                        watchdog.record(
                            Event::Probe { device: node.device_id, egress: r.egress, ttfb: r.ttfb, kbps: r.kbps },
                            crate::store::now_secs(),
                        );
                        if mismatch { "egress_mismatch" } else { "ok" }
                    }
                    Err(e) => {
                        tracing::debug!(%device, error = %e, "probe failed");
                        "failed"
                    }
                };
                metrics.watchdog_probes.get_or_create(&crate::telemetry::ProbeLabel { result: result.into() }).inc();
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_endpoint_echoes_a_bounded_probe_and_remembers_who_sent_the_token() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let seen = seen_table(16);
        let (_trigger, shutdown) = crate::shutdown::channel();
        tokio::spawn(serve_endpoint(l, seen.clone(), 4, 100, shutdown));
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let token = [7u8; TOKEN_LEN];
        s.write_all(&token).await.expect("write");
        // 300 bytes sent, at most 100 echoed after the token.
        s.write_all(&[1u8; 300]).await.expect("write");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(&back[..TOKEN_LEN], &token);
        assert_eq!(back.len(), TOKEN_LEN + 100);
        assert_eq!(seen.get(&token), Some("127.0.0.1".parse::<IpAddr>().expect("ip")));
        // A connection that never sends a token is remembered nowhere.
        let mut t = tokio::net::TcpStream::connect(addr).await.expect("connect");
        t.write_all(&[9u8; 3]).await.expect("write");
        t.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        let _ = t.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
        seen.run_pending_tasks();
        assert_eq!(seen.entry_count(), 1);
    }
}
