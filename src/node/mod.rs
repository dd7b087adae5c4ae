//! `traffix node`: the Linux node agent. Pairs from a link, keeps its identity in `--state`,
//! holds one TLS WebSocket to the server with jittered exponential back-off, answers
//! challenges, heartbeats, and relays the streams the server opens — each checked against the
//! egress policy first (resolve once, check every address, dial the literal, compare the peer).

pub mod control;
pub mod controls;
pub mod state;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ring::signature::KeyPair;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::either::Either;
use tracing::{debug, info, warn};

use self::controls::{Controls, NodeMeter};
use self::state::{NodeIdentity, PairLink};
use crate::config::Limits;
use crate::egress::{EgressPolicy, Host};
use crate::identity::challenge_message;
use crate::netinfo;
use crate::shutdown::Shutdown;
use crate::target::{OpenErrReason, Target};
use crate::tunnel::copy;
use crate::tunnel::mux::{Mux, MuxConfig, MuxStream};
use crate::tunnel::protocol::{
    self, ErrorCode, Frame, Heartbeat, Hello, NetworkType, NodeState, Pair, PauseReason, Proof,
};
use crate::tunnel::record::Switch;
use crate::tunnel::ws::{self, ReadEnd};

/// The agent's declared stream cap (SECURITY.md §2: Linux agent 1024).
pub const DEFAULT_MAX_STREAMS: u32 = 1024;
/// Back-off bounds between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A session that lasted this long resets the back-off.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long a stopping agent lets its live streams finish (the DRAIN frame says so too).
pub const DRAIN_SECS: u16 = 10;
/// How long live streams may finish after a soft pause (by hand, the schedule) before the
/// tunnel closes; a data cap closes it at once.
pub const PAUSE_DRAIN_SECS: u16 = 60;
/// How often a banned (or no longer recognised) device asks again, by default: an unban or a
/// re-enabled owner brings it back without anyone restarting it.
pub const DEFAULT_REFUSED_RETRY_SECS: u64 = 600;

#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub state: PathBuf,
    pub pair: Option<String>,
    pub bind: Option<IpAddr>,
    /// Source address of the connections the node dials for clients (default: `bind`). A
    /// node whose tunnel and egress differ is what the watchdog's `egress_mismatch` finds.
    pub egress_bind: Option<IpAddr>,
    pub allow_private_targets: bool,
    pub limits: Limits,
    /// Wait between attempts while the server refuses this device (banned, owner disabled).
    pub refused_retry: Duration,
    /// The owner's controls: caps, limits, schedule, stream cap, pause.
    pub controls: Arc<Controls>,
    /// The settings file and the flags on top of it, re-read when the file changes.
    pub settings: Option<SettingsSource>,
    /// When the agent started (HEARTBEAT uptime).
    pub started: tokio::time::Instant,
}

/// Where the settings come from, for reloading.
#[derive(Debug, Clone)]
pub struct SettingsSource {
    pub file: PathBuf,
    pub flags: controls::SettingsFlags,
    pub default_streams: u32,
}

/// How one connection ended.
enum SessionEnd {
    /// Reconnect after back-off.
    Retry(String),
    /// The server refuses this device for now (banned, its owner disabled): ask again slowly.
    Refused(String),
    /// Paused by the owner's controls: the tunnel was closed; reconnect once it clears.
    Paused(PauseReason),
    /// Stop for good (pairing refused, version mismatch...).
    Fatal(String),
    /// The agent was asked to stop.
    Shutdown,
}

/// Runs the agent until shutdown or a fatal refusal; the owner's settings are watched and the
/// data counters saved meanwhile (and once more at the end).
pub async fn run(opts: NodeOptions, shutdown: Shutdown) -> Result<(), String> {
    let watcher = tokio::spawn(watch_settings(opts.controls.clone(), opts.settings.clone(), shutdown.clone()));
    let res = run_agent(&opts, shutdown).await;
    watcher.abort();
    opts.controls.save();
    res
}

async fn run_agent(opts: &NodeOptions, mut shutdown: Shutdown) -> Result<(), String> {
    let mut identity = NodeIdentity::load(&opts.state)?;
    let mut pair_code = None;
    if let Some(link) = &opts.pair {
        let link = PairLink::parse(link)?;
        let mut id = match identity.take() {
            Some(id) => id,
            None => NodeIdentity::generate(&link)?,
        };
        id.server = link.server.clone();
        id.pin = hex::encode(link.pin);
        id.insecure = link.insecure;
        id.paired = false;
        id.save(&opts.state)?;
        pair_code = Some(link.code);
        identity = Some(id);
    }
    let Some(mut identity) = identity else {
        return Err(format!("{} holds no node identity: pair first with --pair LINK", opts.state.display()));
    };
    if opts.allow_private_targets {
        warn!(
            "--allow-private-targets is ON: clients may reach private and loopback addresses through this node (tests only)"
        );
    }
    info!(device = %hex::encode(identity.device_id()?), server = %identity.server, "node agent starting");

    let mut backoff = BACKOFF_MIN;
    loop {
        let started = tokio::time::Instant::now();
        let established = AtomicBool::new(false);
        let connecting = connect_once(opts, &mut identity, &mut pair_code, shutdown.clone(), &established);
        tokio::pin!(connecting);
        let end = tokio::select! {
            e = &mut connecting => e,
            // A live tunnel drains itself (DRAIN, live streams finish up to DRAIN_SECS, a
            // clean close); a connection still being set up is dropped.
            _ = shutdown.recv() => {
                if established.load(Ordering::Acquire) { connecting.await } else { SessionEnd::Shutdown }
            }
        };
        let established = established.load(Ordering::Acquire);
        match end {
            SessionEnd::Shutdown => {
                info!("node agent stopped");
                return Ok(());
            }
            SessionEnd::Fatal(why) => return Err(why),
            SessionEnd::Paused(reason) => {
                backoff = BACKOFF_MIN;
                info!(reason = reason.as_str(), "paused: tunnel closed; reconnecting when it clears");
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = opts.controls.changed.notified() => {}
                        _ = shutdown.recv() => return Ok(()),
                    }
                    // Cleared, or paused for another reason (reported on a new connection).
                    if opts.controls.pause_reason() != Some(reason) {
                        break;
                    }
                }
            }
            SessionEnd::Refused(why) => {
                backoff = BACKOFF_MIN;
                warn!(reason = %why, retry_in_s = opts.refused_retry.as_secs(), "the server refuses this device; asking again later");
                tokio::select! {
                    _ = tokio::time::sleep(opts.refused_retry) => {}
                    _ = shutdown.recv() => return Ok(()),
                }
            }
            SessionEnd::Retry(why) => {
                // A tunnel that came up (or lived long) resets the back-off: after a server
                // restart the node is back within a second, not after a grown delay.
                if established || started.elapsed() > STABLE_AFTER {
                    backoff = BACKOFF_MIN;
                }
                let wait = jitter(backoff);
                warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "tunnel down; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.recv() => return Ok(()),
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Full jitter in [d/2, d]: spreads reconnects after a server restart.
fn jitter(d: Duration) -> Duration {
    let r = crate::auth::random_bytes::<2>().map(u16::from_be_bytes).unwrap_or(0);
    d / 2 + d.mul_f64(f64::from(r) / f64::from(u16::MAX) / 2.0)
}

async fn dial_server(opts: &NodeOptions, server: &str) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host(server).await.map_err(|e| format!("cannot resolve {server}: {e}"))?.collect();
    let mut last = format!("{server} resolved to no address");
    for addr in addrs {
        let sock = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(|e| e.to_string())?;
        if let Some(b) = opts.bind {
            if b.is_ipv4() != addr.is_ipv4() {
                continue;
            }
            sock.bind(SocketAddr::new(b, 0)).map_err(|e| format!("cannot bind {b}: {e}"))?;
        }
        match tokio::time::timeout(opts.limits.dial_timeout(), sock.connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
            Err(_) => last = format!("connecting to {addr} timed out"),
        }
    }
    Err(last)
}

async fn connect_once(
    opts: &NodeOptions,
    identity: &mut NodeIdentity,
    pair_code: &mut Option<String>,
    shutdown: Shutdown,
    established: &AtomicBool,
) -> SessionEnd {
    match session(opts, identity, pair_code, shutdown, established).await {
        Ok(end) => end,
        Err(e) => SessionEnd::Retry(e),
    }
}

async fn session(
    opts: &NodeOptions,
    identity: &mut NodeIdentity,
    pair_code: &mut Option<String>,
    shutdown: Shutdown,
    established: &AtomicBool,
) -> Result<SessionEnd, String> {
    let pin = identity.pin_bytes()?;
    let server = identity.server.clone();
    let host = server.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or(&server).to_owned();

    let tcp = dial_server(opts, &server).await?;
    let local = tcp.local_addr().ok();
    let tcp = crate::tunnel::flowbuf::FlowBuf::new(tcp);
    let hs = opts.limits.handshake_timeout();
    if identity.insecure {
        warn!("connecting over plain ws:// (the server runs --insecure-http; development only)");
        let wsock = upgrade(opts, format!("ws://{server}/v1/tunnel"), tcp).await?;
        return tunnel(opts, identity, pair_code, shutdown, wsock, local, established).await;
    }
    let mut tls_cfg = crate::tls::pinned_client_config(pin).map_err(|e| e.to_string())?;
    let secrets = crate::tunnel::record::prepare_client_config(&mut tls_cfg);
    let name =
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| format!("bad server name {host:?}"))?;
    let tls = tokio::time::timeout(hs, tokio_rustls::TlsConnector::from(Arc::new(tls_cfg)).connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake with {server} failed (wrong pin?): {e}"))?;
    let wsock = upgrade(opts, format!("wss://{server}/v1/tunnel"), tls).await?;
    // The tunnel's records are ours from here (`crate::tunnel::record`), when the connection can
    // switch; else rustls goes on.
    let wsock = wsock.map_io(|tls| match crate::tunnel::record::from_client(tls, &secrets) {
        Switch::Done(records, read) => {
            debug!("the tunnel runs on its own TLS records");
            Ok((Either::Left(records), read))
        }
        Switch::Stay(tls, read) => {
            debug!("the tunnel stays on rustls' records");
            Ok((Either::Right(tls), read))
        }
        Switch::Failed(e) => Err(format!("taking over the tunnel's TLS records failed: {e}")),
    })?;
    tunnel(opts, identity, pair_code, shutdown, wsock, local, established).await
}

/// The WebSocket upgrade on an established (TLS or plain) connection, under the handshake timeout.
/// tungstenite does the HTTP upgrade only; frames are then read and written on the stream
/// directly ([`ws::WsConn`]). Nothing is left in tungstenite's buffer: the server sends no frame
/// before the node's HELLO. Over TLS the node offers to send its frames unmasked
/// ([`ws::UNMASKED`]) and stops masking when the server accepts.
async fn upgrade<S>(opts: &NodeOptions, url: String, io: S) -> Result<ws::WsConn<S>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderValue, header::SEC_WEBSOCKET_EXTENSIONS};
    let tls = url.starts_with("wss://");
    let mut request = url.into_client_request().map_err(|e| format!("bad tunnel URL: {e}"))?;
    if tls {
        request.headers_mut().insert(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(ws::UNMASKED));
    }
    let upgrade = tokio_tungstenite::client_async_with_config(request, io, Some(ws::ws_config(&opts.limits)));
    let (wsock, response) = tokio::time::timeout(opts.limits.handshake_timeout(), upgrade)
        .await
        .map_err(|_| "WebSocket upgrade timed out".to_string())?
        .map_err(|e| format!("WebSocket upgrade failed: {e}"))?;
    let values = response.headers().get_all(SEC_WEBSOCKET_EXTENSIONS).iter().filter_map(|v| v.to_str().ok());
    let unmasked = ws::unmasked_chosen(tls, values)?;
    let conn = ws::WsConn::new(wsock.into_inner(), ws::Role::Client, ws::ws_limits(&opts.limits));
    Ok(if unmasked { conn.with_unmasked_frames() } else { conn })
}

/// Runs the handshake and the serving loop on an upgraded WebSocket (TLS or, in development,
/// plain).
async fn tunnel<S>(
    opts: &NodeOptions,
    identity: &mut NodeIdentity,
    pair_code: &mut Option<String>,
    mut shutdown: Shutdown,
    mut wsock: ws::WsConn<S>,
    local: Option<SocketAddr>,
    established: &AtomicBool,
) -> Result<SessionEnd, String>
where
    S: ws::SplitIo + Send + 'static,
{
    let pin = identity.pin_bytes()?;
    let keypair = identity.keypair()?;
    let device_id = identity.device_id()?;
    let server = identity.server.clone();
    let hs = opts.limits.handshake_timeout();
    let hello = Hello {
        min_version: protocol::MIN_PROTOCOL_VERSION,
        max_version: protocol::PROTOCOL_VERSION,
        device_id: Some(device_id),
        agent: Some(format!("traffix-node/{}", env!("CARGO_PKG_VERSION"))),
        max_streams: Some(opts.controls.settings().max_streams),
        max_inflight: Some(opts.limits.node_max_inflight),
        control_only: false,
    };
    let step = |e: ReadEnd| format!("handshake: {e}");
    ws::send_handshake_frame(&mut wsock, &Frame::Hello(hello)).await.map_err(step)?;
    let challenge = match tokio::time::timeout(hs, ws::read_handshake_frame(&mut wsock))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(step)?
    {
        Frame::Challenge(c) => c,
        Frame::Error { code, message } => return Ok(refused(code, message)),
        other => return Err(format!("expected CHALLENGE, got {}", other.name())),
    };
    let sign = |nonce: &[u8; 32]| keypair.sign(&challenge_message(&pin, &device_id, nonce)).as_ref().to_vec();
    let answer = match (identity.paired, pair_code.as_ref()) {
        (_, Some(code)) => Frame::Pair(Box::new(Pair {
            code: code.clone(),
            key_alg: identity.key_alg,
            public_key: keypair.public_key().as_ref().to_vec(),
            nonce: challenge.nonce,
            signature: sign(&challenge.nonce),
            model: std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()),
            os: Some(format!("{} {}", std::env::consts::OS, std::env::consts::ARCH)),
            app_version: Some(env!("CARGO_PKG_VERSION").into()),
            attestation: Vec::new(),
            hints: Vec::new(),
        })),
        (true, None) => Frame::Proof(Proof { nonce: challenge.nonce, signature: sign(&challenge.nonce) }),
        (false, None) => return Ok(SessionEnd::Fatal("this node was never paired: run with --pair LINK".into())),
    };
    ws::send_handshake_frame(&mut wsock, &answer).await.map_err(step)?;
    let welcome = match tokio::time::timeout(hs, ws::read_handshake_frame(&mut wsock))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(step)?
    {
        Frame::Welcome(w) => w,
        Frame::Error { code, message } => return Ok(refused(code, message)),
        other => return Err(format!("expected WELCOME, got {}", other.name())),
    };
    if pair_code.take().is_some() || !identity.paired || identity.vip.as_deref() != Some(&welcome.vip.to_string()) {
        identity.paired = true;
        identity.vip = Some(welcome.vip.to_string());
        identity.save(&opts.state)?;
        info!(vip = %welcome.vip, "paired with the server");
    }
    info!(vip = %welcome.vip, local = local.map(tracing::field::display), "tunnel up");
    established.store(true, Ordering::Release);

    let (mux, out_rx) = Mux::new(MuxConfig {
        initial_window: opts.limits.initial_window,
        max_window: opts.limits.max_window,
        own_inflight: opts.limits.node_max_inflight,
        peer_inflight: welcome.max_inflight,
        max_data: protocol::MAX_DATA_LEN,
        idle_timeout: opts.limits.idle_timeout(),
        max_queued: (welcome.max_inflight as usize).saturating_add(opts.limits.node_queue_bytes),
        opens_streams: false,
    });
    let epoch = opts.started;
    let (mut stream, sink) = wsock.split();
    // No WebSocket pings: heartbeats are the keepalive (docs/protocol.md "Heartbeats").
    let mut writer = tokio::spawn(ws::run_writer(sink, out_rx));

    let mut policy = EgressPolicy { allow_private_targets: opts.allow_private_targets, ..EgressPolicy::default() };
    policy.own_networks = netinfo::own_networks();
    if let Ok(addrs) = tokio::net::lookup_host(&server).await {
        add_server(&mut policy, addrs);
    }
    let policy = Arc::new(policy);
    let dial_timeout = opts.limits.dial_timeout();
    let busy_every = Duration::from_secs(u64::from(welcome.heartbeat_interval_s.max(1)));
    let idle_every = welcome
        .idle_heartbeat_interval_s
        .map(|s| Duration::from_secs(u64::from(s.max(1))))
        .unwrap_or(busy_every)
        .max(busy_every);
    let heard = ws::Heard::new();
    let mut liveness = ws::Liveness::new(welcome.heartbeat_interval_s, welcome.idle_heartbeat_interval_s);
    let mut seq = 0u32;
    let mut sent_at: Option<(u32, tokio::time::Instant)> = None;
    let mut rtt_ms: Option<u32> = None;
    // The first heartbeat goes at once: the server learns the node's state and counters.
    let mut last_hb: Option<tokio::time::Instant> = None;
    let mut state = NodeState::Serving;
    let mut pause: Option<PauseReason> = None;
    // What the server last heard that decides its routing: near a cap, the caps, the stream cap.
    let mut reported: Option<RoutingReport> = None;
    let mut stopping = false;
    let mut drain_until = tokio::time::Instant::now();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let controls = opts.controls.clone();
    let meter: Arc<dyn copy::Meter> = Arc::new(NodeMeter(controls.clone()));
    // Paused already (it connected to say so): the first heartbeat says paused, with why, and
    // DRAIN follows; the tunnel closes at the next look at the controls.
    if let Some(r) = controls.pause_reason() {
        pause = Some(r);
        state = NodeState::Paused;
        seq = seq.wrapping_add(1);
        last_hb = Some(tokio::time::Instant::now());
        sent_at = Some((seq, tokio::time::Instant::now()));
        mux.send_frame(&Frame::Heartbeat(heartbeat(seq, state, pause, &controls, 0, epoch.elapsed(), rtt_ms)));
        mux.send_frame(&Frame::Drain { reason: Some(format!("paused: {}", r.as_str())), deadline_s: Some(0) });
        info!(reason = r.as_str(), "paused: telling the server, then closing the tunnel until it clears");
    }

    let end = loop {
        let active = mux.active_streams();
        let now = tokio::time::Instant::now();
        let next_hb = match last_hb {
            None => now,
            Some(t) => t + if active > 0 { busy_every } else { idle_every },
        };
        let dead_at = liveness.deadline(heard.last(), active > 0, now);
        tokio::select! {
            control = ws::next_control(&mut stream, &mux, &heard) => {
                let control = match control {
                    Ok(c) => c,
                    Err(reason) => break SessionEnd::Retry(reason.to_string()),
                };
                match control {
                    Frame::Open { stream: id, window, target, probe } => {
                        let max_streams = controls.settings().max_streams.min(welcome.max_streams) as usize;
                        let Some(s) = mux.accept(id, window, max_streams) else {
                            mux.send_frame(&Frame::OpenErr { stream: id, reason: OpenErrReason::NodeBusy, message: format!("node is at its {max_streams}-stream limit") });
                            continue;
                        };
                        if state != NodeState::Serving {
                            s.reject(OpenErrReason::Draining, if pause.is_some() { "node is paused" } else { "node is draining" });
                            continue;
                        }
                        tokio::spawn(serve_stream(s, target, probe, policy.clone(), dial_timeout, opts.egress_bind.or(opts.bind), meter.clone()));
                    }
                    Frame::Challenge(c) => {
                        mux.send_frame(&Frame::Proof(Proof { nonce: c.nonce, signature: sign(&c.nonce) }));
                    }
                    Frame::HeartbeatAck(ack) => {
                        if let Some((want, at)) = sent_at.take()
                            && want == ack.seq {
                                let rtt = at.elapsed();
                                mux.observe_rtt(rtt);
                                rtt_ms = Some(rtt.as_millis().min(u128::from(u32::MAX)) as u32);
                            }
                        // The server's count for this device today (absent fields are not logged).
                        debug!(seq = ack.seq, today_bytes = ack.bytes_today, earned_today = ack.earned_today,
                            currency = ack.currency.as_deref(), "heartbeat acknowledged");
                    }
                    Frame::Drain { reason, .. } => {
                        info!(reason = reason.as_deref(), "server asked us to drain");
                        state = NodeState::Draining;
                    }
                    Frame::Error { code, message } => break refused(code, message),
                    other => {
                        mux.send_error(ErrorCode::ProtocolViolation, &format!("unexpected {} from the server", other.name()));
                        break SessionEnd::Retry(format!("server sent unexpected {}", other.name()));
                    }
                }
            }
            _ = tokio::time::sleep_until(next_hb) => {
                if state == NodeState::Draining && pause.is_none() && active == 0 {
                    if stopping {
                        info!("drained: every live stream finished");
                    }
                    break if stopping { SessionEnd::Shutdown } else { SessionEnd::Retry("drained".into()) };
                }
                seq = seq.wrapping_add(1);
                last_hb = Some(tokio::time::Instant::now());
                sent_at = Some((seq, tokio::time::Instant::now()));
                mux.send_frame(&Frame::Heartbeat(heartbeat(seq, state, pause, &controls, active, epoch.elapsed(), rtt_ms)));
            }
            _ = tokio::time::sleep_until(dead_at) => {
                let now = tokio::time::Instant::now();
                if now >= liveness.deadline(heard.last(), mux.active_streams() > 0, now) {
                    break SessionEnd::Retry(format!("nothing from the server for {:?}", liveness.timeout(active > 0)));
                }
            }
            // The owner's controls: a pause (by hand, a cap, the schedule) reports itself,
            // drains and closes the tunnel; the agent then waits for it to clear.
            _ = async { tokio::select! { _ = check.tick() => {}, _ = controls.changed.notified() => {} } }, if !stopping => {
                let now_paused = controls.pause_reason();
                match (pause, now_paused) {
                    (None, Some(r)) => {
                        pause = Some(r);
                        state = NodeState::Paused;
                        let hard = matches!(r, PauseReason::DailyCap | PauseReason::MonthlyCap);
                        let grace = if hard { 0 } else { PAUSE_DRAIN_SECS };
                        drain_until = tokio::time::Instant::now() + Duration::from_secs(u64::from(grace));
                        seq = seq.wrapping_add(1);
                        last_hb = Some(tokio::time::Instant::now());
                        sent_at = Some((seq, tokio::time::Instant::now()));
                        mux.send_frame(&Frame::Heartbeat(heartbeat(seq, state, pause, &controls, active, epoch.elapsed(), rtt_ms)));
                        mux.send_frame(&Frame::Drain { reason: Some(format!("paused: {}", r.as_str())), deadline_s: Some(grace) });
                        info!(reason = r.as_str(), streams = active, deadline_s = grace, "paused: draining, then closing the tunnel until it clears");
                        // A cap reached is kept at once, not up to SAVE_EVERY later (a crash).
                        controls.save();
                    }
                    (Some(r), _) => {
                        if mux.active_streams() == 0 {
                            break SessionEnd::Paused(r);
                        }
                        if tokio::time::Instant::now() >= drain_until {
                            if !matches!(r, PauseReason::DailyCap | PauseReason::MonthlyCap) {
                                warn!(streams = mux.active_streams(), "pause drain deadline passed: closing the streams still open");
                            }
                            break SessionEnd::Paused(r);
                        }
                    }
                    (None, None) => {
                        // Within the server's margin of a cap now (or a cap, the stream cap
                        // changed): tell it at once, so it stops routing here before the node
                        // has to cut live streams at the cap itself.
                        let hb = heartbeat(seq.wrapping_add(1), state, None, &controls, active, epoch.elapsed(), rtt_ms);
                        let report = (crate::tunnel::registry::near_data_cap(&hb), hb.daily_cap, hb.monthly_cap, hb.max_streams);
                        if reported.as_ref().is_some_and(|r| *r != report) {
                            seq = seq.wrapping_add(1);
                            last_hb = Some(tokio::time::Instant::now());
                            sent_at = Some((seq, tokio::time::Instant::now()));
                            mux.send_frame(&Frame::Heartbeat(hb));
                        }
                        reported = Some(report);
                    }
                }
            }
            // Stopping: look at the live streams often, not once a heartbeat interval, and end
            // at the deadline the DRAIN frame announced.
            _ = tokio::time::sleep(Duration::from_millis(100)), if stopping => {
                if mux.active_streams() == 0 {
                    info!("drained: every live stream finished");
                    break SessionEnd::Shutdown;
                }
                if tokio::time::Instant::now() >= drain_until {
                    warn!(streams = mux.active_streams(), "drain deadline passed: closing the streams still open");
                    break SessionEnd::Shutdown;
                }
            }
            _ = mux.overflowed() => {
                break SessionEnd::Retry("the server does not read what it asks for: outgoing queue full".into());
            }
            _ = shutdown.recv(), if !stopping => {
                stopping = true;
                state = NodeState::Draining;
                drain_until = tokio::time::Instant::now() + Duration::from_secs(u64::from(DRAIN_SECS));
                mux.send_frame(&Frame::Drain { reason: Some("node agent stopping".into()), deadline_s: Some(DRAIN_SECS) });
                info!(streams = mux.active_streams(), deadline_s = DRAIN_SECS, "stopping: draining live streams");
                if mux.active_streams() == 0 {
                    break SessionEnd::Shutdown;
                }
            }
        }
    };
    mux.close("session ended");
    // The writer sends what is queued and a WebSocket Close, then shuts the connection down
    // (TLS close_notify), so the server sees a clean end, not a dropped socket.
    if tokio::time::timeout(Duration::from_secs(5), &mut writer).await.is_err() {
        writer.abort();
    }
    drop(stream);
    Ok(end)
}

/// What in a heartbeat decides the server's routing: near a cap, the daily and monthly caps,
/// the stream cap.
type RoutingReport = (bool, Option<u64>, Option<u64>, Option<u32>);

/// The HEARTBEAT the node sends: its state and pause reason, the owner's counters and caps as
/// the Android app reports them (tags 6–13), and its last measured round trip (tag 14).
fn heartbeat(
    seq: u32,
    state: NodeState,
    pause: Option<PauseReason>,
    controls: &Controls,
    active: usize,
    uptime: Duration,
    rtt_ms: Option<u32>,
) -> Heartbeat {
    let s = controls.settings();
    let u = controls.usage();
    Heartbeat {
        seq,
        state,
        network: NetworkType::Ethernet,
        bytes_today: Some(u.bytes_today),
        bytes_month: Some(u.bytes_month),
        max_streams: Some(s.max_streams),
        daily_cap: s.daily_cap,
        monthly_cap: s.monthly_cap,
        active_streams: Some(active as u32),
        uptime_s: Some(uptime.as_secs()),
        pause_reason: if state == NodeState::Paused { pause } else { None },
        rtt_ms,
        ..Heartbeat::default()
    }
}

/// Keeps the settings in force up to date: re-reads the file when it changes (every
/// [`controls::RELOAD_EVERY`]) and on SIGHUP; a file that no longer parses keeps the last good
/// settings (and says why). Also saves the counters every [`controls::SAVE_EVERY`].
pub async fn watch_settings(controls: Arc<Controls>, source: Option<SettingsSource>, mut shutdown: Shutdown) {
    let stamp = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
    let mut seen = source.as_ref().and_then(|s| stamp(&s.file));
    let mut poll = tokio::time::interval(controls::RELOAD_EVERY);
    let mut save = tokio::time::interval(controls::SAVE_EVERY);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = poll.tick() => false,
            _ = hangup => true,
            _ = save.tick() => { controls.save(); continue; }
            _ = shutdown.recv() => { controls.save(); return; }
        };
        let Some(src) = &source else { continue };
        let now = stamp(&src.file);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        match controls::read_file(&src.file)
            .and_then(|f| controls::Settings::resolve(&f, &src.flags, src.default_streams))
        {
            Ok(s) => {
                if controls.replace(s.clone()) {
                    info!(
                        paused = s.paused,
                        daily_cap = s.daily_cap,
                        monthly_cap = s.monthly_cap,
                        max_streams = s.max_streams,
                        schedule = s.schedule.is_some(),
                        "settings changed"
                    );
                }
            }
            Err(e) => warn!(error = %e, "settings file not applied; keeping the last good settings"),
        }
    }
}

/// The server's addresses: its tunnel endpoint is refused always, and its addresses on every
/// port unless `allow_private_targets` (its other listeners are not known to the node).
fn add_server(policy: &mut EgressPolicy, addrs: impl IntoIterator<Item = SocketAddr>) {
    for a in addrs {
        policy.server_endpoints.push(a);
        policy.own_networks.push((a.ip(), if a.is_ipv4() { 32 } else { 128 }));
    }
}

fn refused(code: ErrorCode, message: String) -> SessionEnd {
    let why = format!("server refused: {}: {message}", code.describe());
    match code {
        ErrorCode::DeviceBanned | ErrorCode::AuthFailed => SessionEnd::Refused(why),
        c if c.is_fatal() => SessionEnd::Fatal(why),
        _ => SessionEnd::Retry(why),
    }
}

/// Dials `target` under the egress policy and relays the stream.
async fn serve_stream(
    stream: MuxStream,
    target: Target,
    probe: bool,
    policy: Arc<EgressPolicy>,
    timeout: Duration,
    bind: Option<IpAddr>,
    meter: Arc<dyn copy::Meter>,
) {
    let dialled = if probe {
        dial_probe(&policy, &target, timeout, bind).await
    } else {
        dial(&policy, &target, timeout, bind).await
    };
    match dialled {
        Ok((sock, peer)) => {
            stream.send_open_ok(Some(peer));
            let stats = copy::bidirectional(sock, stream, meter, false).await;
            debug!(target = %target, sent = stats.sent, received = stats.received, end = stats.end.as_str(), "stream done");
        }
        Err((reason, message)) => {
            debug!(target = %target, reason = reason.as_str(), %message, "open refused");
            stream.reject(reason, &message);
        }
    }
}

/// SECURITY.md §1 on the node: check the spelling and port, resolve once, check every
/// address, dial the checked literal, and make sure the connected peer is the checked one
/// (returned with the socket). With `bind`, outgoing connections use that source address (as
/// the tunnel does).
pub async fn dial(
    policy: &EgressPolicy,
    target: &Target,
    timeout: Duration,
    bind: Option<IpAddr>,
) -> Result<(TcpStream, SocketAddr), (OpenErrReason, String)> {
    let refused = |r: crate::egress::Refusal| (OpenErrReason::RefusedByPolicy, r.to_string());
    let port = target.port();
    let host = policy.check_target(&target.host(), port).map_err(refused)?;
    let addrs: Vec<SocketAddr> = match host {
        Host::Ip(ip) => vec![SocketAddr::new(ip, port)],
        Host::Name(name) => match tokio::time::timeout(timeout, tokio::net::lookup_host((name.as_str(), port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => return Err((OpenErrReason::DnsFailed, format!("cannot resolve {name}: {e}"))),
            Err(_) => return Err((OpenErrReason::DnsFailed, format!("resolving {name} timed out"))),
        },
    };
    if addrs.is_empty() {
        return Err((OpenErrReason::DnsFailed, "name resolved to no address".into()));
    }
    for a in &addrs {
        policy.check_addr(*a).map_err(refused)?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = (OpenErrReason::HostUnreachable, "no address could be reached".to_string());
    for a in addrs {
        match tokio::time::timeout_at(deadline, connect_from(a, bind)).await {
            Err(_) => return Err((OpenErrReason::Timeout, format!("connecting to {a} timed out"))),
            Ok(Ok(s)) => {
                if s.peer_addr().ok() != Some(a) {
                    return Err((
                        OpenErrReason::RefusedByPolicy,
                        format!("connected peer is not the checked address {a}"),
                    ));
                }
                let _ = s.set_nodelay(true);
                return Ok((s, a));
            }
            Ok(Err(e)) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => OpenErrReason::ConnectionRefused,
                    std::io::ErrorKind::NetworkUnreachable => OpenErrReason::NetworkUnreachable,
                    std::io::ErrorKind::TimedOut => OpenErrReason::Timeout,
                    _ => OpenErrReason::HostUnreachable,
                };
                last = (reason, format!("{a}: {e}"));
            }
        }
    }
    Err(last)
}

/// The one target exempt from the own-server refusal (SECURITY.md §1): an OPEN flagged
/// `probe` to one of the server's own addresses (the watchdog's probe endpoint), never its
/// tunnel endpoint. A probe-flagged OPEN to anything else is refused.
pub fn probe_target(policy: &EgressPolicy, target: &Target) -> Result<SocketAddr, (OpenErrReason, String)> {
    let refused = |m: &str| Err((OpenErrReason::RefusedByPolicy, m.to_owned()));
    let Target::Ip(addr) = target else {
        return refused("a probe must name the server's address literally");
    };
    let ip = addr.ip().to_canonical();
    if policy.server_endpoints.iter().any(|ep| ep.ip().to_canonical() == ip && ep.port() == addr.port()) {
        return refused("a probe to the server's tunnel endpoint");
    }
    if !policy.server_endpoints.iter().any(|ep| ep.ip().to_canonical() == ip) {
        return refused("probe opens go only to the server's own address");
    }
    Ok(SocketAddr::new(ip, addr.port()))
}

/// Dials the server's probe endpoint for a probe-flagged OPEN ([`probe_target`]), from the
/// egress address like any client stream, so the server sees the node's egress IP.
async fn dial_probe(
    policy: &EgressPolicy,
    target: &Target,
    timeout: Duration,
    bind: Option<IpAddr>,
) -> Result<(TcpStream, SocketAddr), (OpenErrReason, String)> {
    let a = probe_target(policy, target)?;
    match tokio::time::timeout(timeout, connect_from(a, bind)).await {
        Err(_) => Err((OpenErrReason::Timeout, format!("connecting to {a} timed out"))),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok((s, a))
        }
        Ok(Err(e)) => Err((OpenErrReason::ConnectionRefused, format!("{a}: {e}"))),
    }
}

async fn connect_from(addr: SocketAddr, bind: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(b) = bind.filter(|b| b.is_ipv4() == addr.is_ipv4()) {
        sock.bind(SocketAddr::new(b, 0))?;
    }
    sock.connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_addresses_are_refused_on_every_port_and_its_endpoint_always() {
        let server: SocketAddr = "81.2.69.7:8443".parse().expect("sockaddr");
        let code = |p: &EgressPolicy, t: &str| {
            let a: SocketAddr = t.parse().expect("sockaddr");
            p.check_addr(a).map_err(|r| r.code())
        };
        let mut strict = EgressPolicy::default();
        add_server(&mut strict, [server]);
        assert_eq!(code(&strict, "81.2.69.7:8443"), Err("server_listener"));
        assert_eq!(code(&strict, "81.2.69.7:1080"), Err("own_address"));
        assert_eq!(code(&strict, "[64:ff9b::5102:4507]:1080"), Err("own_address"));
        assert_eq!(code(&strict, "81.2.69.8:1080"), Ok(()));
        let mut open = EgressPolicy { allow_private_targets: true, ..EgressPolicy::default() };
        add_server(&mut open, [server]);
        assert_eq!(code(&open, "[::ffff:81.2.69.7]:8443"), Err("server_listener"));
        assert_eq!(code(&open, "81.2.69.7:1080"), Ok(()));
    }

    #[test]
    fn only_probe_opens_to_the_servers_own_address_are_exempt() {
        let server: SocketAddr = "81.2.69.7:8443".parse().expect("sockaddr");
        let mut strict = EgressPolicy::default();
        add_server(&mut strict, [server]);
        let t = |s: &str| Target::Ip(s.parse().expect("sockaddr"));
        // The probe endpoint on the server's address: exempt (a plain OPEN there is refused).
        assert_eq!(probe_target(&strict, &t("81.2.69.7:7070")), Ok("81.2.69.7:7070".parse().expect("sockaddr")));
        assert_eq!(probe_target(&strict, &t("[::ffff:81.2.69.7]:7070")).map(|a| a.port()), Ok(7070));
        assert!(strict.check_addr("81.2.69.7:7070".parse().expect("sockaddr")).is_err());
        // Never the tunnel endpoint, never another host, never a name.
        assert!(probe_target(&strict, &t("81.2.69.7:8443")).is_err());
        assert!(probe_target(&strict, &t("81.2.69.8:7070")).is_err());
        assert!(probe_target(&strict, &t("10.0.0.1:7070")).is_err());
        assert!(probe_target(&strict, &Target::Domain("server.example".into(), 7070)).is_err());
    }
}
