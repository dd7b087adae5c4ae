//! The server's side of one node connection: handshake (version, challenge, pairing or proof),
//! registration in the registry, then the I/O loop that feeds the mux, answers heartbeats and
//! re-challenges the node periodically.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWrite;
use tracing::{Instrument, debug, info, info_span, warn};

use super::mux::{Mux, MuxConfig};
use super::protocol::{self, Challenge, ErrorCode, Frame, HeartbeatAck, Welcome};
use super::registry::{Kick, NodeHandle, Registry};
use super::ws::{self, ControlEnd, ReadEnd};
use crate::auth;
use crate::config::Limits;
use crate::geoip::SharedGeoIp;
use crate::identity::{DeviceId, NONCE_LEN, device_id};
use crate::shutdown::Shutdown;
use crate::store::{DeviceRecord, PairError, Store, UsageBucket, now_secs};
use crate::telemetry::{Metrics, NodeDisconnect};
use crate::watchdog::Event;

/// What node sessions need from the rest of the server.
pub struct TunnelService {
    pub store: Arc<Store>,
    pub registry: Arc<Registry>,
    pub limits: Limits,
    /// The web listener runs TLS: only then may a node's frames go unmasked (docs/protocol.md
    /// "Unmasked frames"); `false` with `--insecure-http`.
    pub tls: bool,
    /// The raw pin of the web certificate (bound into every device signature).
    pub pin: [u8; 32],
    /// Countries of nodes' addresses (the databases in use when a node connects).
    pub geoip: Arc<SharedGeoIp>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    /// How long live streams may run on after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// The billing currency, told to nodes with their earnings; `None` when billing is off
    /// (nothing is metered, so HEARTBEAT_ACK carries no count for today).
    pub currency: Option<String>,
    /// Device trust: the attestation policy and the level pairing requires (docs/trust.md).
    pub trust: Arc<crate::trust::gate::TrustGate>,
    /// PAIR attempts per address in the last minute (`pair_attempts_per_minute_per_ip`).
    pub pair_attempts: moka::sync::Cache<std::net::IpAddr, Arc<std::sync::atomic::AtomicU32>>,
    /// Told when a node comes online, heartbeats and goes away (the quality watchdog).
    pub watchdog: Arc<crate::watchdog::Watchdog>,
    /// Removes a device at its own request (UNPAIR); set by the app once its admin commands
    /// exist. Unset: UNPAIR is answered `ERROR 10`.
    pub unpair: std::sync::OnceLock<super::control::UnpairHook>,
    /// Control-only sessions open per device (docs/protocol.md "Control requests").
    pub control_sessions: super::control::ControlSessions,
    /// Where nodes' last-seen rows go: written in batches (`server.seen_flush_ms`).
    pub seen: Arc<super::seen::SeenLog>,
    /// Every node connection's task: shutdown waits for them (their last rows) before the
    /// last-seen writer's final batch.
    pub tasks: tokio_util::task::TaskTracker,
}

impl TunnelService {
    /// What a connection's control requests need (docs/protocol.md "Control requests").
    fn control_deps(&self) -> super::control::ControlDeps {
        super::control::ControlDeps {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            currency: self.currency.clone(),
            unpair: self.unpair.get().cloned(),
        }
    }

    /// The table of pairing attempts per address: entries live a minute; bounded.
    pub fn pair_attempts_table() -> moka::sync::Cache<std::net::IpAddr, Arc<std::sync::atomic::AtomicU32>> {
        moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build()
    }
}

/// A handshake failure: the code sent to the node and a reason for the log.
struct Refuse(ErrorCode, String);

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn nonce() -> Result<[u8; NONCE_LEN], Refuse> {
    auth::random_bytes::<NONCE_LEN>().map_err(|e| Refuse(ErrorCode::Internal, e.to_string()))
}

/// Who the handshake proved the node to be.
struct Authenticated {
    device: DeviceRecord,
    device_id: DeviceId,
    max_streams: u32,
    max_inflight: u32,
    paired_now: bool,
    /// The negotiated protocol version.
    version: u8,
    /// HELLO asked for a control-only session (version 2).
    control_only: bool,
    /// The registry's kicks since just before the device was read (or paired): a ban or a
    /// removal that lands during the rest of the handshake shows here.
    kicks: tokio::sync::broadcast::Receiver<Kick>,
}

/// Runs one node connection to its end; `welcomed` runs once the node's handshake succeeded
/// (the web listener then stops counting the connection against its address).
pub async fn serve_node<S>(
    svc: Arc<TunnelService>,
    mut ws: ws::WsConn<S>,
    peer: SocketAddr,
    welcomed: impl FnOnce() + Send,
) where
    S: ws::SplitIo + Send + 'static,
{
    let span = info_span!("node", peer = %peer, device = tracing::field::Empty, vip = tracing::field::Empty);
    async move {
        let hs = tokio::time::timeout(svc.limits.handshake_timeout(), handshake(&svc, &mut ws, peer.ip())).await;
        let who = match hs {
            Ok(Ok(who)) => who,
            Ok(Err(Refuse(code, why))) => {
                if crate::telemetry::TUNNEL_REFUSALS.admit_now("refused node handshakes") {
                    warn!(code = code.as_str(), reason = %why, "node handshake refused");
                }
                svc.metrics.tunnel_handshakes.get_or_create(&crate::telemetry::ResultLabel::failed()).inc();
                let _ = ws::send_handshake_frame(&mut ws, &Frame::Error { code, message: why }).await;
                let _ = ws.close().await;
                return;
            }
            Err(_) => {
                warn!("node handshake timed out");
                svc.metrics.tunnel_handshakes.get_or_create(&crate::telemetry::ResultLabel::failed()).inc();
                let _ = ws::send_handshake_frame(
                    &mut ws,
                    &Frame::Error { code: ErrorCode::ProtocolViolation, message: "handshake timed out".into() },
                )
                .await;
                return;
            }
        };
        svc.metrics.tunnel_handshakes.get_or_create(&crate::telemetry::ResultLabel::ok()).inc();
        welcomed();
        let span = tracing::Span::current();
        span.record("device", hex::encode(who.device_id).as_str());
        span.record("vip", who.device.vip.to_string().as_str());
        if who.control_only {
            run_control_session(svc, ws, who.device, who.device_id).await;
        } else {
            run_connected(svc, ws, peer, who).await;
        }
    }
    .instrument(span)
    .await
}

async fn handshake<S>(
    svc: &TunnelService,
    ws: &mut ws::WsConn<S>,
    from: std::net::IpAddr,
) -> Result<Authenticated, Refuse>
where
    S: ws::WsRead + AsyncWrite,
{
    let violation = |e: ReadEnd| Refuse(ErrorCode::ProtocolViolation, e.to_string());
    let hello = match ws::read_handshake_frame(ws).await.map_err(violation)? {
        Frame::Hello(h) => h,
        other => return Err(Refuse(ErrorCode::ProtocolViolation, format!("expected HELLO, got {}", other.name()))),
    };
    let version = protocol::negotiate_version(hello.min_version, hello.max_version)
        .map_err(|m| Refuse(ErrorCode::VersionUnsupported, m))?;
    let control_only = hello.control_only;
    if control_only && version < protocol::CONTROL_VERSION {
        return Err(Refuse(ErrorCode::ProtocolViolation, "a control-only session needs protocol version 2".into()));
    }
    let nonce = nonce()?;
    ws::send_handshake_frame(
        ws,
        &Frame::Challenge(Challenge { version: Some(version), nonce, server_time_ms: Some(now_ms()) }),
    )
    .await
    .map_err(violation)?;
    let limits = &svc.limits;
    let max_streams = hello.max_streams.unwrap_or(limits.node_max_streams).min(limits.node_max_streams).max(1);
    let max_inflight =
        hello.max_inflight.unwrap_or(limits.node_max_inflight).min(limits.node_max_inflight).max(limits.initial_window);
    match ws::read_handshake_frame(ws).await.map_err(violation)? {
        Frame::Proof(p) => {
            let Some(device_id) = hello.device_id else {
                return Err(Refuse(ErrorCode::ProtocolViolation, "PROOF without a device id in HELLO".into()));
            };
            if p.nonce != nonce {
                return Err(Refuse(ErrorCode::AuthFailed, "proof answers a different challenge".into()));
            }
            let kicks = svc.registry.kicks();
            let device = svc
                .store
                .get_device(&device_id)
                .map_err(|e| Refuse(ErrorCode::Internal, e.to_string()))?
                .ok_or_else(|| Refuse(ErrorCode::AuthFailed, "unknown device: pair it again".into()))?;
            if device.banned {
                return Err(Refuse(
                    ErrorCode::DeviceBanned,
                    format!("device is banned: {}", device.ban_reason.clone().unwrap_or_default()),
                ));
            }
            let pk = hex::decode(&device.public_key)
                .map_err(|_| Refuse(ErrorCode::Internal, "stored key is corrupt".into()))?;
            if !auth::verify_device_signature(device.key_alg, &pk, &svc.pin, &device_id, &nonce, &p.signature) {
                return Err(Refuse(ErrorCode::AuthFailed, "challenge signature does not verify".into()));
            }
            let owner_ok = svc.store.get_user(&device.owner).ok().flatten().is_some_and(|u| !u.disabled);
            if !owner_ok {
                return Err(Refuse(ErrorCode::AuthFailed, "the device owner's account is disabled".into()));
            }
            Ok(Authenticated {
                device,
                device_id,
                max_streams,
                max_inflight,
                paired_now: false,
                version,
                control_only,
                kicks,
            })
        }
        Frame::Pair(_) if control_only => {
            Err(Refuse(ErrorCode::ProtocolViolation, "a control-only session cannot pair".into()))
        }
        Frame::Pair(p) => {
            if p.nonce != nonce {
                return Err(Refuse(ErrorCode::AuthFailed, "pairing answers a different challenge".into()));
            }
            // Every attempt counts, taken before any signature check or lookup (SECURITY.md §3:
            // pairing codes are throttled per address like logins).
            let attempts = svc.pair_attempts.get_with(crate::listener::source_key(from), Default::default);
            let limit = svc.limits.pair_attempts_per_minute_per_ip;
            if attempts.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= limit {
                return Err(Refuse(
                    ErrorCode::LimitExceeded,
                    format!("more than {limit} pairing attempts a minute from this address; wait a minute"),
                ));
            }
            let device_id = device_id(p.key_alg, &p.public_key);
            if hello.device_id.is_some_and(|id| id != device_id) {
                return Err(Refuse(ErrorCode::ProtocolViolation, "HELLO device id does not match the key".into()));
            }
            if !auth::verify_device_signature(p.key_alg, &p.public_key, &svc.pin, &device_id, &nonce, &p.signature) {
                return Err(Refuse(ErrorCode::AuthFailed, "pairing signature does not verify".into()));
            }
            // Device trust (docs/trust.md): the chain must carry this pairing's challenge. Judged
            // before the code is redeemed, so a refusal leaves the code for another device.
            let challenge = crate::identity::attestation_challenge(&svc.pin, &p.code);
            let gate = svc.trust.clone();
            let (chain, key) = (p.attestation.clone(), p.public_key.clone());
            let verdict = tokio::task::spawn_blocking(move || {
                gate.judge(&chain, &challenge, &key, i64::try_from(now_secs()).unwrap_or(i64::MAX))
            })
            .await
            .map_err(|e| Refuse(ErrorCode::Internal, e.to_string()))?;
            svc.metrics.trust_verdict(verdict.level);
            let required = svc.trust.require();
            if verdict.level < required {
                let why = if verdict.reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", verdict.reasons.join("; "))
                };
                info!(level = %verdict.level, %required, reasons = ?verdict.reasons, "pairing refused: device trust too low");
                let msg =
                    format!("this server requires device trust {required}; this device's is {}{why}", verdict.level);
                return Err(Refuse(ErrorCode::AuthFailed, msg.chars().take(500).collect()));
            }
            let bound = |s: &Option<String>| s.as_ref().map(|v| v.chars().take(128).collect::<String>());
            let record = DeviceRecord {
                model: bound(&p.model),
                os: bound(&p.os),
                app_version: bound(&p.app_version),
                attestation: p.attestation.iter().take(8).map(hex::encode).collect(),
                trust: Some(verdict),
                emulator_hints: p.hints.iter().map(|h| h.chars().take(64).collect()).collect(),
                ..DeviceRecord::new(hex::encode(device_id), p.key_alg, hex::encode(&p.public_key))
            };
            let store = svc.store.clone();
            let code_hash = auth::pairing_code_hash(&p.code);
            let kicks = svc.registry.kicks();
            let res = tokio::task::spawn_blocking(move || store.pair_device(&code_hash, now_secs(), record))
                .await
                .map_err(|e| Refuse(ErrorCode::Internal, e.to_string()))?;
            let device = res.map_err(|e| match e {
                PairError::Banned => Refuse(ErrorCode::DeviceBanned, e.to_string()),
                PairError::Store(s) => Refuse(ErrorCode::Internal, s.to_string()),
                other => Refuse(ErrorCode::PairingCodeInvalid, other.to_string()),
            })?;
            info!(device = %device.id, owner = %device.owner, vip = %device.vip, trust = %device.trust_level(), "device paired");
            Ok(Authenticated {
                device,
                device_id,
                max_streams,
                max_inflight,
                paired_now: true,
                version,
                control_only,
                kicks,
            })
        }
        other => Err(Refuse(ErrorCode::ProtocolViolation, format!("expected PROOF or PAIR, got {}", other.name()))),
    }
}

/// The largest node-reported RTT (HEARTBEAT tag 14) taken as a sample; more is a clock glitch.
const MAX_REPORTED_RTT_MS: u32 = 120_000;

/// Heartbeats a node may send back to back before the rate applies.
const HEARTBEAT_BURST: u32 = 5;
/// Other control frames a node sends (DRAIN, an answer to a periodic challenge): a legitimate
/// node sends one now and then, so a small fixed rate — this many back to back, then one per
/// [`CONTROL_EVERY`] — is never felt, while a flood ends the session.
const CONTROL_BURST: u32 = 10;
const CONTROL_EVERY: Duration = Duration::from_secs(1);

/// A token bucket for one kind of control frame from a node, on an injected clock
/// (SECURITY.md §2). Heartbeats, each answered with a HEARTBEAT_ACK, may come no faster than
/// half the interval the server gave the node, after a burst of [`HEARTBEAT_BURST`]; other
/// control frames at [`CONTROL_EVERY`] after [`CONTROL_BURST`].
#[derive(Debug)]
struct ControlRate {
    every: Duration,
    burst: u32,
    tokens: u32,
    last: tokio::time::Instant,
}

impl ControlRate {
    fn heartbeats(interval_secs: u16, now: tokio::time::Instant) -> Self {
        let every = Duration::from_millis(u64::from(interval_secs.max(1)) * 500);
        ControlRate { every, burst: HEARTBEAT_BURST, tokens: HEARTBEAT_BURST, last: now }
    }

    fn other_control(now: tokio::time::Instant) -> Self {
        ControlRate { every: CONTROL_EVERY, burst: CONTROL_BURST, tokens: CONTROL_BURST, last: now }
    }

    /// Takes a token for one frame at `now`; false when the node is over the rate.
    fn allow(&mut self, now: tokio::time::Instant) -> bool {
        let earned = (now.saturating_duration_since(self.last).as_millis() / self.every.as_millis().max(1)) as u32;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            self.last += self.every * earned;
        }
        if self.tokens == 0 {
            return false;
        }
        if self.tokens == self.burst {
            // A full bucket does not bank the time spent full.
            self.last = now;
        }
        self.tokens -= 1;
        true
    }

    /// Why a frame over the rate ends the session.
    fn violation(&self, what: &str) -> String {
        format!("{what} faster than one per {} ms (after a burst of {})", self.every.as_millis(), self.burst)
    }
}

async fn run_connected<S>(svc: Arc<TunnelService>, mut ws: ws::WsConn<S>, peer: SocketAddr, mut who: Authenticated)
where
    S: ws::SplitIo + Send + 'static,
{
    let limits = &svc.limits;
    let welcome = Welcome {
        device_id: who.device_id,
        vip: who.device.vip,
        heartbeat_interval_s: limits.heartbeat_interval_secs,
        max_streams: who.max_streams,
        initial_window: limits.initial_window,
        max_frame: protocol::MAX_FRAME_LEN as u32,
        challenge_interval_s: limits.challenge_interval_secs,
        max_inflight: limits.node_max_inflight,
        idle_heartbeat_interval_s: limits.idle_heartbeat_interval(),
    };
    if ws::send_handshake_frame(&mut ws, &Frame::Welcome(welcome)).await.is_err() {
        return;
    }
    let (mux, out_rx) = Mux::new(MuxConfig {
        initial_window: limits.initial_window,
        max_window: limits.max_window,
        own_inflight: limits.node_max_inflight,
        peer_inflight: who.max_inflight,
        max_data: protocol::MAX_DATA_LEN,
        idle_timeout: limits.idle_timeout(),
        max_queued: (who.max_inflight as usize).saturating_add(limits.node_queue_bytes),
        opens_streams: true,
    });
    let unmasked = ws.unmasked_frames();
    let (mut stream, sink) = ws.split();
    // No WebSocket pings: the node's heartbeats are the keepalive (docs/protocol.md).
    let mut writer = tokio::spawn(ws::run_writer(sink, out_rx));

    let country = svc.geoip.country(peer.ip());
    let node = Arc::new(
        NodeHandle::new(
            who.device_id,
            who.device.vip,
            who.device.owner.clone(),
            svc.registry.next_session_id(),
            mux.clone(),
            peer.ip(),
            country,
            who.max_streams,
            now_secs(),
        )
        .with_trust(who.device.trust_level())
        .with_version(who.version),
    );
    node.set_owner_paused(who.device.paused);
    svc.registry.insert(node.clone());
    // A ban or removal that landed while the handshake ran found nothing to kick: the kicks
    // since the device was read tell (no second read of the row, unless some were missed).
    let kicked = kicked_meanwhile(&mut who.kicks, &who.device_id, || svc.store.get_device(&who.device_id));
    if let Some((code, why)) = &kicked
        && svc.registry.get(&who.device_id).is_some_and(|n| n.session_id == node.session_id)
    {
        svc.registry.kick(&who.device_id, *code, why);
    }
    // A device kicked on arrival (banned, removed) is not announced to the watchdog: a removal
    // has just forgotten its record, which must not come back.
    if kicked.is_none() {
        svc.watchdog
            .record(Event::Online { device: who.device_id, owner: &node.owner, ip: peer.ip(), country }, now_secs());
    }
    // A GeoIP database swapped in meanwhile updated the registry before the watchdog knew the
    // node: look again.
    let now_country = svc.geoip.country(peer.ip());
    if now_country != country {
        node.set_country(now_country);
        svc.watchdog.set_country(&who.device_id, now_country);
    }
    svc.metrics.nodes_online.set(svc.registry.len() as i64);
    info!(owner = %node.owner, country = node.country_str(), paired_now = who.paired_now, unmasked, "node online");
    persist_seen_while_current(&svc, &node);
    let mut persist = persist_timer(&who.device_id);
    let today = Today::new(&svc, &who.device.id);
    if let Some(t) = &today {
        // Read once before the first heartbeat is answered, so the first ACK has the count.
        t.refresh().await;
    }

    let mut shutdown = svc.shutdown.clone();
    let heard = ws::Heard::new();
    let mut liveness = ws::Liveness::new(limits.heartbeat_interval_secs, limits.idle_heartbeat_interval());
    let mut rechallenge = rechallenge_timer(&who.device_id, limits.challenge_interval_secs);
    let mut pending: Option<([u8; NONCE_LEN], tokio::time::Instant)> = None;
    let pk = hex::decode(&who.device.public_key).unwrap_or_default();
    let mut draining = false;
    let mut heartbeats = ControlRate::heartbeats(limits.heartbeat_interval_secs, tokio::time::Instant::now());
    let mut other_control = ControlRate::other_control(tokio::time::Instant::now());
    let mut ctl = super::control::Control::new(svc.control_deps(), who.device_id, None);
    let requests = who.version >= protocol::CONTROL_VERSION;

    let (cause, end): (NodeDisconnect, String) = loop {
        let busy = mux.active_streams() > 0;
        let dead_at = liveness.deadline(heard.last(), busy, tokio::time::Instant::now());
        tokio::select! {
            control = ws::next_control(&mut stream, &mux, &heard) => {
                let control = match control {
                    Ok(c) => c,
                    Err(e) => break (read_end_cause(&e), e.to_string()),
                };
                match control {
                    Frame::Heartbeat(_) if !heartbeats.allow(tokio::time::Instant::now()) => {
                        let why = heartbeats.violation("heartbeats");
                        mux.send_error(ErrorCode::ProtocolViolation, &why);
                        break (NodeDisconnect::ProtocolViolation, why);
                    }
                    Frame::Proof(_) | Frame::Drain { .. } | Frame::StatsRequest(_) | Frame::Unpair { .. }
                        if !other_control.allow(tokio::time::Instant::now()) => {
                        let why = other_control.violation("control frames");
                        mux.send_error(ErrorCode::ProtocolViolation, &why);
                        break (NodeDisconnect::ProtocolViolation, why);
                    }
                    Frame::Heartbeat(hb) => {
                        let seq = hb.seq;
                        // The node's own HEARTBEAT → ACK round trip is the tunnel RTT (the
                        // server sends no pings to measure one itself).
                        if let Some(ms) = hb.rtt_ms.filter(|ms| *ms <= MAX_REPORTED_RTT_MS) {
                            mux.observe_rtt(Duration::from_millis(u64::from(ms)));
                        }
                        debug!(state = hb.state.as_str(), battery = hb.battery_pct, network = hb.network.as_str(), "heartbeat");
                        let (serving, pause) = (hb.state == protocol::NodeState::Serving, hb.pause_reason);
                        let counter = traffic_counter(&hb, mux.carried_bytes());
                        // Never above the cap this session was welcomed with: a node that raised its
                        // setting since still refuses above it until it reconnects.
                        node.heartbeat(hb, who.max_streams, now_secs());
                        svc.watchdog.record(
                            Event::Heartbeat { device: who.device_id, serving, pause_reason: pause.map(|p| p.as_str()), rtt: mux.rtt(), counter },
                            now_secs(),
                        );
                        mux.send_frame(&heartbeat_ack(seq, today.as_ref()));
                    }
                    Frame::Proof(p) => match pending.take() {
                        Some((n, _)) if n == p.nonce
                            && auth::verify_device_signature(who.device.key_alg, &pk, &svc.pin, &who.device_id, &n, &p.signature) => {
                            debug!("periodic challenge answered");
                        }
                        _ => {
                            mux.send_error(ErrorCode::AuthFailed, "challenge answer does not verify");
                            break (NodeDisconnect::Auth, "bad periodic proof".into());
                        }
                    },
                    Frame::Drain { reason, .. } => {
                        info!(reason = reason.as_deref(), "node is draining");
                        node.set_state(protocol::NodeState::Draining);
                        // A node that drains before leaving is not churning. One that paused
                        // itself (and drains to close its tunnel) keeps its reason.
                        if node.status().state != protocol::NodeState::Paused {
                            svc.watchdog.record(
                                Event::Heartbeat { device: who.device_id, serving: false, pause_reason: Some("draining"), rtt: None, counter: None },
                                now_secs(),
                            );
                        }
                    }
                    // Control requests (version 2 sessions; on version 1 they are unexpected).
                    Frame::StatsRequest(r) if requests => ctl.stats(r, &mux),
                    Frame::Unpair { request_id, reason } if requests => {
                        // Out of the registry first: nothing new is routed here, and the
                        // removal's kick of the device's session does not reach this one.
                        svc.registry.remove(&who.device_id, node.session_id);
                        let done = ctl.unpair(request_id, reason, &mux).await;
                        break (NodeDisconnect::Server, if done.is_ok() { "unpaired".into() } else { "unpair failed".into() });
                    }
                    Frame::Error { code, message } => {
                        break (NodeDisconnect::NodeError, format!("node sent ERROR {code}: {}", message.escape_debug()));
                    }
                    other => {
                        mux.send_error(ErrorCode::ProtocolViolation, &format!("unexpected {} from a node", other.name()));
                        break (NodeDisconnect::ProtocolViolation, format!("unexpected {}", other.name()));
                    }
                }
            }
            _ = mux.closed(), if !draining => {
                // Replaced by a newer connection of the device, or kicked: the writer stops
                // after the ERROR it was given. The reading ends too, instead of holding the
                // socket until the liveness timeout (a phone that changed networks leaves its
                // old connection half-open, with nothing more to read).
                break (NodeDisconnect::Server, "closed by the server".into());
            }
            _ = rechallenge.tick() => {
                if let Some((_, since)) = pending {
                    if since.elapsed() > Duration::from_secs(60) {
                        mux.send_error(ErrorCode::ChallengeTimeout, "no answer to the challenge within 60 s");
                        break (NodeDisconnect::Auth, "challenge timeout".into());
                    }
                } else if let Ok(n) = auth::random_bytes::<NONCE_LEN>() {
                    pending = Some((n, tokio::time::Instant::now()));
                    mux.send_frame(&Frame::Challenge(Challenge { version: None, nonce: n, server_time_ms: Some(now_ms()) }));
                }
            }
            _ = mux.overflowed() => {
                // The queue is full, so an ERROR frame could not be queued: the connection is
                // simply dropped (the writer is aborted below).
                warn!(limit = mux.config().max_queued, "node does not read what it provokes: disconnecting (limit_exceeded)");
                break (NodeDisconnect::QueueFull, "outgoing queue full (limit_exceeded)".into());
            }
            _ = tokio::time::sleep_until(dead_at) => {
                // Re-checked: frames the reader consumed meanwhile moved the deadline.
                let now = tokio::time::Instant::now();
                if now >= liveness.deadline(heard.last(), mux.active_streams() > 0, now) {
                    let e = ControlEnd::Read(ReadEnd::Dead(liveness.timeout(busy)));
                    break (read_end_cause(&e), e.to_string());
                }
            }
            _ = persist.tick() => persist_seen_while_current(&svc, &node),
            _ = shutdown.recv(), if !draining => {
                // Graceful stop: no new streams are routed here (the front-ends stopped
                // accepting); live ones finish, then the node is told to come back later.
                draining = true;
                node.set_state(protocol::NodeState::Draining);
                mux.send_frame(&Frame::Drain { reason: Some("server shutting down".into()), deadline_s: Some(limits_grace(&svc)) });
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if draining => {
                if mux.active_streams() == 0 || mux.is_closed() {
                    mux.send_error(ErrorCode::ServerShutdown, "server is shutting down; reconnect later");
                    break (NodeDisconnect::Server, "server shutdown".into());
                }
            }
        }
    };
    // Its last row first, under the registry's lock: whoever finds it gone from the registry
    // also finds how it left (a pause of its own is not "offline"). Not when a newer session of
    // the device took its place: that one's rows are the device's now.
    let still_registered = svc.registry.remove_with(&who.device_id, node.session_id, || persist_seen(&svc, &node));
    svc.metrics.nodes_online.set(svc.registry.len() as i64);
    // A ban or a newer connection of the device takes the node out of the registry before it
    // tells the node, and shutdown closes the mux: then the server ended the tunnel, whatever
    // the read loop saw next (the node may well have closed first, having read the ERROR).
    let cause = if !still_registered || mux.is_closed() { NodeDisconnect::Server } else { cause };
    // Kicked (banned, owner disabled) takes it out of the registry too: the watchdog hears of
    // it unless a newer connection of the device took its place.
    if still_registered || svc.registry.get(&who.device_id).is_none() {
        let node_side = matches!(cause, NodeDisconnect::Closed | NodeDisconnect::Timeout | NodeDisconnect::NodeError);
        svc.watchdog.record(Event::Offline { device: who.device_id, node_side }, now_secs());
    }
    svc.metrics.tunnel_disconnect(cause);
    mux.close(&end);
    // The writer sends what was queued (an ERROR frame) and closes; a node that does not read
    // would hold it (and the socket) forever, so it is aborted after a grace period.
    if tokio::time::timeout(Duration::from_secs(5), &mut writer).await.is_err() {
        writer.abort();
    }
    info!(reason = %end, "node offline");
}

/// Runs a control-only session (HELLO tag 16) after its handshake: WELCOME with no streams, then
/// only control requests (and heartbeats, if the node sends them) for at most
/// [`CONTROL_SESSION_SECS`]. Not registered: nothing is routed to it, it is not online, and it
/// does not replace the device's serving tunnel.
async fn run_control_session<S>(
    svc: Arc<TunnelService>,
    mut ws: ws::WsConn<S>,
    device: DeviceRecord,
    device_id: DeviceId,
) where
    S: ws::SplitIo + Send + 'static,
{
    let Some(slot) = svc.control_sessions.take(device_id) else {
        let msg =
            format!("at most {} control sessions per device at a time", super::control::CONTROL_SESSIONS_PER_DEVICE);
        let _ = ws::send_handshake_frame(&mut ws, &Frame::Error { code: ErrorCode::LimitExceeded, message: msg }).await;
        let _ = ws.close().await;
        return;
    };
    // Kicks (a ban, a removal, the owner disabled) reach this session too: listen first, then
    // look at the device again, so a kick that came during the handshake is not missed.
    let mut kicks = svc.registry.kicks();
    let still = svc.store.get_device(&device_id).ok().flatten();
    if let Some(why) = match &still {
        None => Some((ErrorCode::AuthFailed, "unknown device".to_owned())),
        Some(d) if d.banned => Some((ErrorCode::DeviceBanned, "device banned".to_owned())),
        Some(_) => None,
    } {
        let _ = ws::send_handshake_frame(&mut ws, &Frame::Error { code: why.0, message: why.1 }).await;
        let _ = ws.close().await;
        return;
    }
    let limits = &svc.limits;
    let welcome = Welcome {
        device_id,
        vip: device.vip,
        heartbeat_interval_s: limits.heartbeat_interval_secs,
        max_streams: 0,
        initial_window: limits.initial_window,
        max_frame: protocol::MAX_FRAME_LEN as u32,
        challenge_interval_s: limits.challenge_interval_secs,
        max_inflight: limits.initial_window,
        idle_heartbeat_interval_s: limits.idle_heartbeat_interval(),
    };
    if ws::send_handshake_frame(&mut ws, &Frame::Welcome(welcome)).await.is_err() {
        return;
    }
    info!("control session open");
    let (mux, out_rx) = Mux::new(MuxConfig {
        initial_window: limits.initial_window,
        max_window: limits.initial_window,
        own_inflight: limits.initial_window,
        peer_inflight: limits.initial_window,
        max_data: protocol::MAX_DATA_LEN,
        idle_timeout: limits.idle_timeout(),
        max_queued: limits.node_queue_bytes,
        opens_streams: true,
    });
    let (mut stream, sink) = ws.split();
    let mut writer = tokio::spawn(ws::run_writer(sink, out_rx));
    let heard = ws::Heard::new();
    let mut control = super::control::Control::new(svc.control_deps(), device_id, Some(slot.rate.clone()));
    let mut other_control = ControlRate::other_control(tokio::time::Instant::now());
    let deadline = tokio::time::sleep(Duration::from_secs(super::control::CONTROL_SESSION_SECS));
    tokio::pin!(deadline);
    let mut shutdown = svc.shutdown.clone();
    // No liveness timer of its own: the session's time limit bounds a silent peer.
    let end: String = loop {
        tokio::select! {
            frame = ws::next_control(&mut stream, &mux, &heard) => {
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => break e.to_string(),
                };
                if !other_control.allow(tokio::time::Instant::now()) {
                    let why = other_control.violation("control frames");
                    mux.send_error(ErrorCode::ProtocolViolation, &why);
                    break why;
                }
                match frame {
                    Frame::StatsRequest(r) => control.stats(r, &mux),
                    Frame::Unpair { request_id, reason } => {
                        let _ = control.unpair(request_id, reason, &mux).await;
                        break "unpair".into();
                    }
                    Frame::Heartbeat(hb) => mux.send_frame(&Frame::HeartbeatAck(HeartbeatAck {
                        seq: hb.seq,
                        ..HeartbeatAck::default()
                    })),
                    Frame::Error { code, message } => break format!("node sent ERROR {code}: {}", message.escape_debug()),
                    other => {
                        let why = format!("unexpected {} on a control session", other.name());
                        mux.send_error(ErrorCode::ProtocolViolation, &why);
                        break why;
                    }
                }
            }
            kick = kicks.recv() => {
                use tokio::sync::broadcast::error::RecvError;
                match kick {
                    Ok(k) if k.device == device_id => {
                        mux.send_error(k.code, &k.why);
                        break format!("kicked: {}", k.why);
                    }
                    Ok(_) => {}
                    // Kicks it did not see may have been for this device: ending is the safe side
                    // (the node opens another control session if it still may).
                    Err(RecvError::Lagged(_) | RecvError::Closed) => {
                        mux.send_error(ErrorCode::ServerShutdown, "control session ended; try again");
                        break "missed kicks".into();
                    }
                }
            }
            _ = &mut deadline => {
                mux.send_error(ErrorCode::LimitExceeded, &format!("control sessions last at most {} s", super::control::CONTROL_SESSION_SECS));
                break "control session time limit".into();
            }
            _ = shutdown.recv() => {
                mux.send_error(ErrorCode::ServerShutdown, "server is shutting down; reconnect later");
                break "server shutdown".into();
            }
        }
    };
    mux.close(&end);
    if tokio::time::timeout(Duration::from_secs(5), &mut writer).await.is_err() {
        writer.abort();
    }
    info!(reason = %end, "control session closed");
}

/// The metric label of a tunnel whose reading ended.
fn read_end_cause(e: &ControlEnd) -> NodeDisconnect {
    match e {
        ControlEnd::Read(ReadEnd::Dead(_)) => NodeDisconnect::Timeout,
        ControlEnd::Read(r) if r.is_violation() => NodeDisconnect::ProtocolViolation,
        ControlEnd::Violation(_) => NodeDisconnect::ProtocolViolation,
        // A peer that closed or vanished (killed, network gone, a reset).
        ControlEnd::Read(_) => NodeDisconnect::Closed,
    }
}

/// How often a session hands its device's last-seen row to the writer while the node is online,
/// besides when it comes and goes.
const PERSIST_EVERY: Duration = Duration::from_secs(60);

/// Where in each `period` a session of `device` does its periodic work: the device id (a
/// SHA-256 prefix, so uniform) modulo `period`. Sessions that began together (10,000 nodes back
/// within seconds of a restart) then spread that work over the period instead of doing it in
/// the same seconds of every period: the minute last-seen rows (the writer commits a small
/// batch every `server.seen_flush_ms` instead of holding the database's one write lock for a
/// few batches of thousands of rows while billing flushes and pairings wait; docs/reliability.md,
/// "Soak"), and the periodic CHALLENGE (its signature checks).
fn phase(device: &DeviceId, period: Duration) -> Duration {
    Duration::from_millis(crate::identity::spread(device, period.as_millis()) as u64)
}

/// A session's timer of `period`: first at the device's [`phase`], then every `period`. A
/// stalled server catches up with one tick, not a burst, and keeps the phase (`Delay` would
/// line the sessions up again at the end of the stall).
fn phased_interval(device: &DeviceId, period: Duration) -> tokio::time::Interval {
    let period = period.max(Duration::from_millis(1));
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + phase(device, period), period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    t
}

/// The session's minute timer for its last-seen rows.
fn persist_timer(device: &DeviceId) -> tokio::time::Interval {
    phased_interval(device, PERSIST_EVERY)
}

/// The session's timer for the periodic CHALLENGE: the first within `challenge_interval_secs`
/// of the WELCOME (never later than a timer started with the session), then every interval.
fn rechallenge_timer(device: &DeviceId, interval_secs: u16) -> tokio::time::Interval {
    phased_interval(device, Duration::from_secs(u64::from(interval_secs).max(1)))
}

/// [`persist_seen`] unless a newer session of the device took this one's place (then that one's
/// rows are the device's).
fn persist_seen_while_current(svc: &TunnelService, node: &NodeHandle) {
    svc.registry.while_current(&node.device_id, node.session_id, || persist_seen(svc, node));
}

/// Hands the node's last-seen row to the batched writer (never waits).
fn persist_seen(svc: &TunnelService, node: &NodeHandle) {
    let seen = super::seen::Seen {
        at: now_secs(),
        ip: Some(node.public_ip.to_string()),
        country: node.country_str(),
        pause: node_pause(node),
    };
    svc.seen.record(node.device_id, seen);
}

/// Whether `device` was kicked (banned, removed, its owner disabled) since `kicks` was taken,
/// and with what: the code and reason to kick its new session with. Only when kicks were missed
/// (the receiver lagged) is the device's row read again (`reread`), for a ban or a removal.
fn kicked_meanwhile(
    kicks: &mut tokio::sync::broadcast::Receiver<Kick>,
    device: &DeviceId,
    reread: impl FnOnce() -> Result<Option<DeviceRecord>, crate::store::StoreError>,
) -> Option<(ErrorCode, String)> {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match kicks.try_recv() {
            Ok(k) if k.device == *device => return Some((k.code, k.why)),
            Ok(_) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
            Err(TryRecvError::Lagged(missed)) => {
                debug!(missed, "kicks missed during the handshake: reading the device again");
                return match reread() {
                    Ok(Some(d)) if !d.banned => None,
                    Ok(Some(_)) => Some((ErrorCode::DeviceBanned, "device banned".into())),
                    Ok(None) => Some((ErrorCode::AuthFailed, "unknown device".into())),
                    Err(e) => {
                        warn!(error = %e, "could not read the device again after its handshake");
                        None
                    }
                };
            }
        }
    }
}

/// The pause reason the node last reported, kept with its last-seen: a node that paused
/// itself (a cap, its schedule, its owner's hand) closes its tunnel, and is then shown as
/// paused, not offline (docs/protocol.md "Heartbeats and drain").
fn node_pause(node: &NodeHandle) -> Option<String> {
    let hb = node.status();
    (hb.state == protocol::NodeState::Paused).then(|| hb.pause_reason.unwrap_or_default().as_str().to_owned())
}

/// The HEARTBEAT_ACK for `seq`, sent at once: with the device's count for today when there is
/// one (billing on and a read done), without it otherwise.
/// The traffic counter a node holds against the data caps it declares (its month's count, else
/// its day's), with the payload carried through its tunnel so far; `None` without a cap.
fn traffic_counter(hb: &protocol::Heartbeat, carried: u64) -> Option<crate::watchdog::Counter> {
    let node = match (hb.daily_cap, hb.monthly_cap) {
        (None, None) => None,
        (_, Some(_)) => hb.bytes_month.or(hb.bytes_today),
        (Some(_), None) => hb.bytes_today.or(hb.bytes_month),
    }?;
    Some(crate::watchdog::Counter { node, carried })
}

fn heartbeat_ack(seq: u32, today: Option<&Today>) -> Frame {
    let count = today.and_then(Today::current);
    Frame::HeartbeatAck(HeartbeatAck {
        seq,
        server_time_ms: Some(now_ms()),
        bytes_today: count.map(|(b, _)| b.bytes()),
        earned_today: count.map(|(b, _)| b.earned),
        currency: count.map(|(_, c)| c.to_owned()),
    })
}

/// How long one read of a device's count for today answers its heartbeats.
const TODAY_TTL: Duration = Duration::from_secs(10);

/// A device's traffic and earnings today (the usage roll-up, as its admin page shows them), for
/// the HEARTBEAT_ACKs of its session. Read on the blocking pool, never on the session task, at
/// most once per [`TODAY_TTL`]: an ACK goes at once with the last read, and a stale read starts
/// the next one in the background. So the count a node hears is about one heartbeat interval
/// (or `TODAY_TTL`, if longer) old, plus the meter's one-second flush; 1,000 nodes at one
/// heartbeat per 15 s cost ~67 small reads a second.
struct Today {
    store: Arc<Store>,
    device: String,
    currency: String,
    state: Arc<std::sync::Mutex<TodayState>>,
}

#[derive(Default)]
struct TodayState {
    /// The last read; `None` before the first and after a failed one (ACKs then omit the count).
    last: Option<UsageBucket>,
    read_at: Option<tokio::time::Instant>,
    reading: bool,
}

impl Today {
    /// `None` when billing is off: nothing is metered, so there is no count to tell.
    fn new(svc: &TunnelService, device: &str) -> Option<Today> {
        Some(Today {
            store: svc.store.clone(),
            device: device.to_owned(),
            currency: svc.currency.clone()?,
            state: Arc::default(),
        })
    }

    /// The last count read and the currency (`None` before the first read and after a failed
    /// one); starts a new read in the background when it is stale.
    fn current(&self) -> Option<(UsageBucket, &str)> {
        let mut st = crate::sync::lock(&self.state);
        if !st.reading && st.read_at.is_none_or(|t| t.elapsed() >= TODAY_TTL) {
            st.reading = true;
            tokio::spawn(self.refresh().in_current_span());
        }
        st.last.map(|b| (b, self.currency.as_str()))
    }

    /// Reads the count on the blocking pool and keeps it for the next ACKs.
    fn refresh(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (store, device, state) = (self.store.clone(), self.device.clone(), self.state.clone());
        async move {
            let read = tokio::task::spawn_blocking(move || store.device_today(&device, now_secs()))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let last = read
                .inspect_err(|e| debug!(error = %e, "could not read today's usage: heartbeat ACKs go without it"))
                .ok();
            let mut st = crate::sync::lock(&state);
            *st = TodayState { last, read_at: Some(tokio::time::Instant::now()), reading: false };
        }
    }
}

/// The drain deadline announced to nodes: the server's own grace period.
fn limits_grace(svc: &TunnelService) -> u16 {
    svc.shutdown_grace_secs.min(u64::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FlushBatch;

    #[test]
    fn sessions_that_begin_together_spread_their_minute_rows_over_the_minute() {
        // 10,000 devices as pairing names them, their sessions all begun at the same instant:
        // each tenth of the minute takes about 1,000 first rows, not the same few seconds all.
        let mut tenths = [0usize; 10];
        for i in 0..10_000u32 {
            let at = phase(&device_id(crate::identity::KeyAlg::Ed25519, &i.to_le_bytes()), PERSIST_EVERY);
            tenths[(at.as_millis() * 10 / PERSIST_EVERY.as_millis()) as usize] += 1;
        }
        assert!(tenths.iter().all(|n| (850..=1150).contains(n)), "{tenths:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sessions_minute_timer_fires_at_its_phase_then_every_minute_and_skips_a_stall() {
        let id = device_id(crate::identity::KeyAlg::EcdsaP256, b"a phone");
        let at = phase(&id, PERSIST_EVERY);
        assert!(at > Duration::ZERO && at < PERSIST_EVERY, "{at:?}");
        let start = tokio::time::Instant::now();
        let mut t = persist_timer(&id);
        t.tick().await;
        assert_eq!(start.elapsed(), at, "the first row waits for the device's share of the minute");
        t.tick().await;
        assert_eq!(start.elapsed(), at + PERSIST_EVERY);
        // The server stalls for three minutes: one tick, then the same second of the minute again.
        tokio::time::advance(3 * PERSIST_EVERY + Duration::from_secs(1)).await;
        t.tick().await;
        let stalled = start.elapsed();
        t.tick().await;
        assert_eq!(start.elapsed(), at + 5 * PERSIST_EVERY, "after {stalled:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_that_begin_together_spread_their_challenges_over_the_interval() {
        // 1,000 sessions begun at the same instant with the default five minutes: each fifth
        // of the interval takes about 200 first challenges, and each device's first comes
        // within the interval (never later than a timer begun with the session), then every
        // interval after it.
        let every = Duration::from_secs(300);
        let start = tokio::time::Instant::now();
        let mut fifths = [0usize; 5];
        for i in 0..1_000u32 {
            let id = device_id(crate::identity::KeyAlg::Ed25519, &i.to_le_bytes());
            fifths[(phase(&id, every).as_millis() * 5 / every.as_millis()) as usize] += 1;
        }
        assert!(fifths.iter().all(|n| (150..=250).contains(n)), "{fifths:?}");
        let id = device_id(crate::identity::KeyAlg::EcdsaP256, b"a phone");
        let mut t = rechallenge_timer(&id, 300);
        t.tick().await;
        assert_eq!(start.elapsed(), phase(&id, every));
        t.tick().await;
        assert_eq!(start.elapsed(), phase(&id, every) + every);
    }

    #[test]
    fn a_tunnel_that_stopped_reading_is_counted_under_its_cause() {
        use crate::tunnel::wsframe::WsError;
        let io = |k| ControlEnd::Read(ReadEnd::Io(std::io::Error::from(k)));
        let cases = [
            (ControlEnd::Read(ReadEnd::Closed), NodeDisconnect::Closed),
            (io(std::io::ErrorKind::ConnectionReset), NodeDisconnect::Closed),
            (io(std::io::ErrorKind::UnexpectedEof), NodeDisconnect::Closed),
            (ControlEnd::Read(ReadEnd::Dead(Duration::from_secs(60))), NodeDisconnect::Timeout),
            (ControlEnd::Read(ReadEnd::Text), NodeDisconnect::ProtocolViolation),
            (
                ControlEnd::Read(ReadEnd::Protocol(protocol::Frame::decode(bytes::Bytes::new()).unwrap_err())),
                NodeDisconnect::ProtocolViolation,
            ),
            (
                ControlEnd::Read(ReadEnd::Ws(WsError::MessageTooLarge { len: 2, max: 1 })),
                NodeDisconnect::ProtocolViolation,
            ),
            (ControlEnd::Read(ReadEnd::Ws(WsError::Opcode(15))), NodeDisconnect::ProtocolViolation),
            (ControlEnd::Read(ReadEnd::Ws(WsError::Unmasked)), NodeDisconnect::ProtocolViolation),
            (ControlEnd::Violation("DATA for an unknown stream".into()), NodeDisconnect::ProtocolViolation),
        ];
        for (end, cause) in cases {
            assert_eq!(read_end_cause(&end), cause, "{end}");
        }
    }

    #[test]
    fn a_kick_during_the_handshake_is_found_without_reading_the_device_again() {
        let registry = Registry::new();
        let me = [1u8; 16];
        let reads = std::cell::Cell::new(0);
        let row = |banned: bool, exists: bool| {
            let reads = &reads;
            move || {
                reads.set(reads.get() + 1);
                let d = DeviceRecord {
                    banned,
                    ..DeviceRecord::new(hex::encode(me), crate::identity::KeyAlg::Ed25519, "00".into())
                };
                Ok(exists.then_some(d))
            }
        };
        // Nothing happened, or only to other devices: no kick, and the device is not read again.
        let mut kicks = registry.kicks();
        assert_eq!(kicked_meanwhile(&mut kicks, &me, row(true, true)), None);
        registry.kick(&[2; 16], ErrorCode::DeviceBanned, "device banned: spam");
        assert_eq!(kicked_meanwhile(&mut kicks, &me, row(true, true)), None);
        // A ban of this device that found no session to kick (the handshake still ran): the new
        // session is kicked with the same code and reason.
        registry.kick(&[3; 16], ErrorCode::DeviceBanned, "device banned: spam");
        registry.kick(&me, ErrorCode::DeviceBanned, "device banned: fraud");
        assert_eq!(
            kicked_meanwhile(&mut kicks, &me, row(false, true)),
            Some((ErrorCode::DeviceBanned, "device banned: fraud".into()))
        );
        let mut kicks = registry.kicks();
        registry.kick(&me, ErrorCode::DeviceRemoved, "removed");
        assert_eq!(
            kicked_meanwhile(&mut kicks, &me, row(false, false)),
            Some((ErrorCode::DeviceRemoved, "removed".into()))
        );
        assert_eq!(reads.get(), 0, "the kicks told; the device was never read again");
        // More kicks than the broadcast holds (a mass ban during the handshake): the row decides.
        let lagged = || {
            let kicks = registry.kicks();
            for i in 0..300u16 {
                let mut other = [9u8; 16];
                other[..2].copy_from_slice(&i.to_be_bytes());
                registry.kick(&other, ErrorCode::DeviceBanned, "device banned: spam");
            }
            kicks
        };
        assert_eq!(kicked_meanwhile(&mut lagged(), &me, row(false, true)), None);
        assert_eq!(
            kicked_meanwhile(&mut lagged(), &me, row(true, true)),
            Some((ErrorCode::DeviceBanned, "device banned".into()))
        );
        assert_eq!(
            kicked_meanwhile(&mut lagged(), &me, row(false, false)),
            Some((ErrorCode::AuthFailed, "unknown device".into()))
        );
        assert_eq!(reads.get(), 3);
    }

    #[test]
    fn heartbeats_past_the_burst_must_keep_half_the_interval() {
        let t0 = tokio::time::Instant::now();
        let mut r = ControlRate::heartbeats(10, t0);
        for i in 0..HEARTBEAT_BURST {
            assert!(r.allow(t0), "burst heartbeat {i}");
        }
        assert!(!r.allow(t0), "the sixth at once is a flood");
        let s = Duration::from_secs;
        assert!(!r.allow(t0 + s(4)), "4 s is less than half of 10 s");
        assert!(r.allow(t0 + s(5)));
        assert!(!r.allow(t0 + s(6)));
        // A well-behaved node (one every 10 s) is never refused, however long it runs.
        let mut r = ControlRate::heartbeats(10, t0);
        for i in 0..1000 {
            assert!(r.allow(t0 + s(10 * i)), "heartbeat {i}");
        }
        // Nor one that reconnects its timer and sends two close together now and then.
        let mut r = ControlRate::heartbeats(10, t0);
        for i in 0..100 {
            assert!(r.allow(t0 + s(20 * i)) && r.allow(t0 + s(20 * i + 1)), "pair {i}");
        }
        // A long pause refills the burst, not more.
        let mut r = ControlRate::heartbeats(10, t0);
        let later = t0 + s(3600);
        for _ in 0..HEARTBEAT_BURST {
            assert!(r.allow(later));
        }
        assert!(!r.allow(later));
    }

    #[test]
    fn other_control_frames_have_a_small_fixed_rate() {
        let t0 = tokio::time::Instant::now();
        let mut r = ControlRate::other_control(t0);
        for i in 0..CONTROL_BURST {
            assert!(r.allow(t0), "burst frame {i}");
        }
        assert!(!r.allow(t0), "a flood");
        assert!(r.allow(t0 + CONTROL_EVERY));
        assert!(!r.allow(t0 + CONTROL_EVERY));
        assert!(r.violation("control frames").contains("1000 ms"), "{}", r.violation("control frames"));
        // A node answering a challenge every five minutes and draining once is never refused.
        let mut r = ControlRate::other_control(t0);
        for i in 0..1000 {
            assert!(r.allow(t0 + Duration::from_secs(300 * i)), "answer {i}");
        }
    }

    /// Adds usage to device `id`'s roll-up in the current hour.
    fn carry(store: &Store, id: &str, bytes: u64, earned: u64) {
        let now = now_secs();
        let b = UsageBucket { up: bytes / 4, down: bytes - bytes / 4, earned, ..UsageBucket::default() };
        let mut batch = FlushBatch { usage: vec![(format!("device:{id}"), now / 3600, b)], ..FlushBatch::default() };
        store.flush_usage(&mut batch, now).unwrap();
    }

    fn count(ack: &Frame) -> (Option<u64>, Option<u64>, Option<&str>) {
        match ack {
            Frame::HeartbeatAck(a) => (a.bytes_today, a.earned_today, a.currency.as_deref()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_traffic_counter_is_the_one_held_against_a_declared_cap() {
        let hb = |daily: Option<u64>, monthly: Option<u64>| protocol::Heartbeat {
            bytes_today: Some(10),
            bytes_month: Some(300),
            daily_cap: daily,
            monthly_cap: monthly,
            ..Default::default()
        };
        let node = |h: &protocol::Heartbeat| traffic_counter(h, 7).map(|c| (c.node, c.carried));
        assert_eq!(node(&hb(None, None)), None, "no cap declared: nothing to hold it against");
        assert_eq!(node(&hb(Some(100), None)), Some((10, 7)));
        assert_eq!(node(&hb(None, Some(1000))), Some((300, 7)));
        assert_eq!(node(&hb(Some(100), Some(1000))), Some((300, 7)), "the month's counter rolls over less often");
        let only_today = protocol::Heartbeat { bytes_month: None, ..hb(None, Some(1000)) };
        assert_eq!(node(&only_today), Some((10, 7)));
    }

    #[tokio::test]
    async fn heartbeat_acks_carry_the_devices_count_for_today_read_off_the_session_task() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("t.redb")).unwrap());
        carry(&store, "ab12", 3_000, 2_100);
        carry(&store, "ab12", 1_000, 700);
        carry(&store, "other", 9_999, 9_999);
        let today =
            Today { store: store.clone(), device: "ab12".into(), currency: "EUR".into(), state: Arc::default() };

        let ack = |seq| heartbeat_ack(seq, Some(&today));
        assert_eq!(count(&heartbeat_ack(1, None)), (None, None, None), "billing off: no count");

        // Nothing read yet: the ACK goes at once, without the count, and starts the read.
        let first = ack(1);
        assert!(matches!(first, Frame::HeartbeatAck(HeartbeatAck { seq: 1, server_time_ms: Some(_), .. })));
        assert_eq!(count(&first), (None, None, None));
        let mut seq = 1;
        let got = loop {
            seq += 1;
            let a = ack(seq);
            if count(&a).0.is_some() {
                break a;
            }
            assert!(seq < 500, "the background read never landed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(count(&got), (Some(4_000), Some(2_800), Some("EUR")), "this device's roll-up, both directions");
        assert!(matches!(got, Frame::HeartbeatAck(HeartbeatAck { seq: s, .. }) if s == seq), "the seq is echoed");

        // Within the TTL the next ACKs reuse that read; an explicit refresh sees new usage.
        carry(&store, "ab12", 500, 350);
        assert_eq!(count(&ack(seq + 1)).0, Some(4_000));
        today.refresh().await;
        assert_eq!(count(&ack(seq + 2)), (Some(4_500), Some(3_150), Some("EUR")));
    }
}
