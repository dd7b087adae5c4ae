//! The fleet benchmark (issue 19 item 4): the real `traffix serve` (TLS on, billing on) with N
//! connected node agents — the library's own agent (`traffix::node::run`, with its real
//! back-off), many per process, each on its own 127.0.x.y source address — measuring:
//!
//! 1. pairing: pairing links through the admin socket, then the first start of all N agents
//!    (each pairs over the tunnel) until the server counts N online;
//! 2. idle cost with N online: server RSS per idle node, server CPU % and the agents' process
//!    CPU % over `TRAFFIX_FLEET_IDLE_SECS` of heartbeats only;
//! 3. routing cost: TTFB of sequential SOCKS5 requests (100-byte answers) with 1 node online,
//!    then with N online (a pick must not scan them all);
//! 4. a reconnect storm: the server is killed with SIGKILL and restarted on the same data
//!    directory and ports; time until all N are back, listen overflows, what the server wrote;
//! 5. a soak: N nodes and `TRAFFIX_FLEET_CLIENTS` clients with mixed short (100 B) and long
//!    (1–16 MiB) streams for `TRAFFIX_FLEET_SOAK_SECS`, sampled every 10 s.
//!
//! Run: `cargo bench --bench fleet` (10,000 nodes, 60 s idle, 60 s soak). Knobs (environment):
//! `TRAFFIX_FLEET_NODES`, `TRAFFIX_FLEET_CLIENTS`, `TRAFFIX_FLEET_REQUESTS`,
//! `TRAFFIX_FLEET_IDLE_SECS`, `TRAFFIX_FLEET_SOAK_SECS` (0: no soak), `TRAFFIX_FLEET_THINK_MS`
//! (a client's mean pause between streams), `TRAFFIX_FLEET_LONG_PCT` (share of long streams),
//! `TRAFFIX_FLEET_TIMEOUT_SECS` (how long to wait for nodes to come online). The defaults of the
//! counts and durations are multiplied by `TRAFFIX_BENCH_SCALE` (CI smoke: `benches/smoke.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::disallowed_methods)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{BIN, Proc, cpu_secs, listen_overflows, origin, pct, rss_kib, scale, traffix};

/// The `[limits]` profile of this benchmark (printed with the results). Every key raised here
/// is one the benchmark's *clients* would hit: they all come from 127.0.0.1 under one account
/// (up to `TRAFFIX_FLEET_CLIENTS` connections at once). The nodes need nothing raised: each has
/// its own source address, so the per-address connection, handshake and pairing caps see one
/// tunnel per address, as with real phones; `max_connections` (per listener) is left to the
/// server, which fits it to its open-file limit; an established node tunnel counts against the
/// web listener's total, so the benchmark first raises its hard limit to the packaged unit's
/// (see [`raise_hard_nofile`]).
const PROFILE: &[(&str, &str)] = &[
    ("TRAFFIX_LIMITS__MAX_CONNECTIONS_PER_IP", "20000"),
    ("TRAFFIX_LIMITS__MAX_HANDSHAKES_PER_IP", "20000"),
    ("TRAFFIX_LIMITS__CLIENT_MAX_STREAMS", "4096"),
    ("TRAFFIX_LIMITS__CLIENT_MAX_DIALS", "4096"),
    ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_PER_S", "1000000"),
    ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_BURST", "1000000"),
];

/// The soak's sampling period.
const SAMPLE: Duration = Duration::from_secs(10);

/// `name` from the environment, else `default × scale`, at least `min`.
fn knob(name: &str, default: f64, min: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| ((default * scale()) as u64).max(min))
}

struct Knobs {
    nodes: usize,
    clients: usize,
    requests: usize,
    idle_secs: u64,
    soak_secs: u64,
    think_ms: u64,
    long_pct: u64,
    timeout: Duration,
}

impl Knobs {
    fn read() -> Knobs {
        Knobs {
            nodes: knob("TRAFFIX_FLEET_NODES", 10_000.0, 2) as usize,
            clients: knob("TRAFFIX_FLEET_CLIENTS", 1_000.0, 10) as usize,
            requests: knob("TRAFFIX_FLEET_REQUESTS", 1_000.0, 50) as usize,
            idle_secs: knob("TRAFFIX_FLEET_IDLE_SECS", 60.0, 5),
            soak_secs: knob("TRAFFIX_FLEET_SOAK_SECS", 60.0, 10),
            think_ms: std::env::var("TRAFFIX_FLEET_THINK_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
            long_pct: std::env::var("TRAFFIX_FLEET_LONG_PCT").ok().and_then(|v| v.parse().ok()).unwrap_or(2),
            timeout: Duration::from_secs(
                std::env::var("TRAFFIX_FLEET_TIMEOUT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(900),
            ),
        }
    }
}

// ---------------------------------------------------------------- clients
/// One stream through the proxy asking for `n` bytes: its time to first byte once all arrived.
async fn fetch(c: &Client, n: u64) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut s = common::socks5(c.socks, Some(("bench", &c.pass)), c.origin).await?;
    let mut hdr = vec![b'D'];
    hdr.extend_from_slice(&n.to_be_bytes());
    s.write_all(&hdr).await?;
    let mut buf = vec![0u8; if n > 4096 { 64 * 1024 } else { 4096 }];
    let k = s.read(&mut buf).await?;
    let ttfb = start.elapsed();
    let mut got = k as u64;
    if k > 0 {
        loop {
            let k = s.read(&mut buf).await?;
            if k == 0 {
                break;
            }
            got += k as u64;
        }
    }
    if got != n {
        return Err(std::io::Error::other(format!("short answer {got}/{n}")));
    }
    Ok(ttfb)
}

#[derive(Clone)]
struct Client {
    socks: SocketAddr,
    origin: SocketAddr,
    pass: String,
}

/// `n` sequential 100-byte requests: (p50, p99) TTFB in ms and the errors.
async fn ttfb_sequential(c: &Client, n: usize) -> (f64, f64, usize) {
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0;
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(30), fetch(c, 100)).await {
            Ok(Ok(t)) => lat.push(t.as_secs_f64() * 1000.0),
            _ => errors += 1,
        }
    }
    if lat.is_empty() {
        return (f64::NAN, f64::NAN, errors);
    }
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99), errors)
}

// ---------------------------------------------------------------- processes
/// Bytes the process caused to be written to storage (`write_bytes` of `/proc/PID/io`).
fn write_bytes(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:").and_then(|v| v.trim().parse().ok()))
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

struct Server {
    /// Before `dir`: fields drop in order, so the server is killed before its directory goes.
    child: Option<Proc>,
    dir: tempfile::TempDir,
    socks: SocketAddr,
    metrics: SocketAddr,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.0.id()).unwrap_or(0)
    }

    /// `traffix serve` on the data directory, its log (warnings) appended to `server.log`.
    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("server.log")).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--allow-private-targets", "--data-dir"]).arg(d).env("RUST_LOG", "warn");
        for (k, v) in PROFILE {
            cmd.env(k, v);
        }
        self.child = Some(Proc(cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap()));
    }

    /// Waits until the server answers its metrics endpoint: the time it took. Panics with the
    /// end of its log if it exits first (a port taken since `init` picked it, say) instead of
    /// waiting out `timeout`, or if `timeout` passes.
    async fn answering(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if online(self.metrics).await.is_some() {
                return start.elapsed();
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.0.try_wait()) {
                let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                panic!(
                    "the server exited ({status}) before answering; its log ends:\n{}",
                    lines[lines.len().saturating_sub(10)..].join("\n")
                );
            }
            assert!(start.elapsed() < timeout, "the server did not answer within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL, as a crash or the OOM killer would (dropping the [`Proc`] kills it).
    fn kill9(&mut self) {
        self.child = None;
    }
}

/// A data directory whose listeners are on ports below the ephemeral range (the server is
/// restarted on the same ones after the storm, and the soak's million outgoing connections
/// cannot take them meanwhile), and the server started on it.
fn start_server() -> (Server, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (socks, metrics, pass) = common::init(d);
    // The nodes belong to another user, so every stream pays an owner and the platform.
    traffix(d, &["user", "add", "fleet"]);
    let mut s = Server { child: None, dir, socks, metrics };
    s.spawn();
    (s, pass)
}

// ---------------------------------------------------------------- metrics
/// The server's Prometheus text, `None` while it does not answer.
async fn scrape(addr: SocketAddr) -> Option<String> {
    let get = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.split(' ').nth(1).is_some_and(|code| code == "200").then(|| body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), get).await.ok().flatten()
}

/// The sum of a family's samples (`name` alone or with labels), `None` when absent.
fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = l.strip_prefix(name) else { continue };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Every sample whose family name contains one of `needles`, as `name{labels} value` lines.
fn samples(text: &str, needles: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            needles.iter().any(|n| name.contains(n))
        })
        .map(str::to_owned)
        .collect()
}

async fn online(addr: SocketAddr) -> Option<usize> {
    scrape(addr).await.and_then(|t| metric(&t, "traffix_nodes_online")).map(|v| v as usize)
}

/// Waits until the server counts `want` nodes online (progress every 10 s): the time it took,
/// or `None` (with the count reached) after `timeout`.
/// `gone` counts the agents that stopped for good (printed with the progress).
async fn wait_online(
    addr: SocketAddr,
    want: usize,
    timeout: Duration,
    what: &str,
    gone: &dyn Fn() -> usize,
) -> Result<Duration, usize> {
    let start = Instant::now();
    let mut last_print = Instant::now();
    let mut seen = 0;
    loop {
        if let Some(n) = online(addr).await {
            seen = n;
            if n >= want {
                return Ok(start.elapsed());
            }
        }
        if start.elapsed() > timeout {
            return Err(seen);
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            println!(
                "  {what}: {seen}/{want} online after {:.0} s; agents stopped for good: {}",
                start.elapsed().as_secs_f64(),
                gone()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------- agents
/// Node `i`'s tunnel (and egress) source address: 127.0.1.1, 127.0.1.2, … 250 per /24.
fn node_addr(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8])
}

fn spawn_agent(
    i: usize,
    states: &Path,
    link: String,
    shutdown: &traffix::shutdown::Shutdown,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let state = states.join(format!("node-{i}.json"));
    let opts = traffix::node::NodeOptions {
        controls: traffix::node::controls::Controls::unlimited(&state, 64),
        state,
        pair: Some(link),
        bind: Some(node_addr(i)),
        egress_bind: None,
        allow_private_targets: true,
        limits: traffix::config::Limits::default(),
        refused_retry: Duration::from_secs(traffix::node::DEFAULT_REFUSED_RETRY_SECS),
        settings: None,
        started: tokio::time::Instant::now(),
    };
    tokio::spawn(traffix::node::run(opts, shutdown.clone()))
}

/// `n` one-time pairing links of user `fleet`, from 16 admin-socket callers at once.
async fn pair_links(d: &Path, n: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(vec![String::new(); n]));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (next, out, d) = (next.clone(), out.clone(), d.to_path_buf());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let link = traffix::admin::socket::call(&d, &traffix::admin::Pair { name: "fleet".into() })
                        .await
                        .unwrap()
                        .expect("the server answers on its admin socket")
                        .unwrap()
                        .link;
                    out.lock().unwrap()[i] = link;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

/// Agents that stopped for good.
fn stopped(agents: &[tokio::task::JoinHandle<Result<(), String>>]) -> usize {
    agents.iter().filter(|h| h.is_finished()).count()
}

// ---------------------------------------------------------------- soak
#[derive(Default)]
struct Window {
    ttfb_ms: Vec<f64>,
    ok: u64,
    errors: u64,
    bytes: u64,
    first_errors: Vec<String>,
}

/// A small xorshift generator per client (no shared state, no dependency).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct SoakRow {
    at_s: u64,
    rss_kib: u64,
    ok: u64,
    errors_total: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    gbit_s: f64,
    online: Option<usize>,
}

async fn soak(c: &Client, server: &Server, k: &Knobs) -> Vec<SoakRow> {
    let win = Arc::new(Mutex::new(Window::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..k.clients)
        .map(|i| {
            let (c, win, stop) = (c.clone(), win.clone(), stop.clone());
            let (think, long_pct) = (k.think_ms.max(1), k.long_pct);
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                // Spread the clients' first streams over one mean pause.
                tokio::time::sleep(Duration::from_millis(rng.next() % think)).await;
                while !stop.load(Ordering::Relaxed) {
                    let n = if rng.next() % 100 < long_pct { (1 << 20) + rng.next() % (15 << 20) } else { 100 };
                    let r = tokio::time::timeout(Duration::from_secs(120), fetch(&c, n)).await;
                    {
                        let mut w = win.lock().unwrap();
                        match r {
                            Ok(Ok(t)) => {
                                w.ok += 1;
                                w.bytes += n;
                                w.ttfb_ms.push(t.as_secs_f64() * 1000.0);
                            }
                            Ok(Err(e)) => {
                                w.errors += 1;
                                if w.first_errors.len() < 3 {
                                    w.first_errors.push(e.to_string());
                                }
                            }
                            Err(_) => {
                                w.errors += 1;
                                if w.first_errors.len() < 3 {
                                    w.first_errors.push("no answer within 120 s".into());
                                }
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(rng.next() % (2 * think))).await;
                }
            })
        })
        .collect();

    let start = Instant::now();
    let mut rows = Vec::new();
    let mut errors_total = 0;
    let mut next = start + SAMPLE;
    println!();
    println!(
        "| t (s) | server RSS (MiB) | streams ok | errors (window / total) | TTFB p50 / p99 (ms) | Gbit/s | nodes online |"
    );
    println!("|---|---|---|---|---|---|---|");
    while start.elapsed() < Duration::from_secs(k.soak_secs) {
        tokio::time::sleep_until(next.into()).await;
        next += SAMPLE;
        let w = std::mem::take(&mut *win.lock().unwrap());
        let mut ttfb = w.ttfb_ms;
        errors_total += w.errors;
        let (p50, p99) =
            if ttfb.is_empty() { (f64::NAN, f64::NAN) } else { (pct(&mut ttfb, 0.5), pct(&mut ttfb, 0.99)) };
        let row = SoakRow {
            at_s: start.elapsed().as_secs_f64().round() as u64,
            rss_kib: rss_kib(server.pid()),
            ok: w.ok,
            errors_total,
            errors: w.errors,
            p50_ms: p50,
            p99_ms: p99,
            gbit_s: w.bytes as f64 * 8.0 / SAMPLE.as_secs_f64() / 1e9,
            online: online(server.metrics).await,
        };
        println!(
            "| {} | {:.1} | {} | {} / {} | {:.2} / {:.2} | {:.2} | {} |",
            row.at_s,
            row.rss_kib as f64 / 1024.0,
            row.ok,
            row.errors,
            row.errors_total,
            row.p50_ms,
            row.p99_ms,
            row.gbit_s,
            row.online.map(|n| n.to_string()).unwrap_or("?".into()),
        );
        for e in &w.first_errors {
            println!("|   | first errors of the window: {e} | | | | | |");
        }
        rows.push(row);
    }
    stop.store(true, Ordering::Relaxed);
    for h in clients {
        let _ = tokio::time::timeout(Duration::from_secs(130), h).await;
    }
    rows
}

/// The soak's verdicts: RSS flat within 5 % after warm-up (the first third of the samples),
/// errors not growing (the second half of the post-warm-up windows has no more than the first).
fn soak_verdict(rows: &[SoakRow]) {
    if rows.len() < 2 {
        println!("soak: too short for a verdict ({} samples)", rows.len());
        return;
    }
    let warm = (rows.len() / 3).max(1);
    let after = &rows[warm..];
    let (lo, hi) = after.iter().fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r.rss_kib), hi.max(r.rss_kib)));
    let spread = (hi - lo) as f64 / lo.max(1) as f64 * 100.0;
    println!(
        "soak: server RSS after warm-up (from t = {} s): {:.1}–{:.1} MiB, spread {spread:.1} % → flat within 5 %: {}",
        after[0].at_s,
        lo as f64 / 1024.0,
        hi as f64 / 1024.0,
        if spread <= 5.0 { "yes" } else { "no" }
    );
    let half = after.len() / 2;
    let (first, second): (u64, u64) =
        (after[..half].iter().map(|r| r.errors).sum(), after[half..].iter().map(|r| r.errors).sum());
    let total = rows.last().map(|r| r.errors_total).unwrap_or(0);
    let streams: u64 = rows.iter().map(|r| r.ok).sum();
    println!(
        "soak: {streams} streams ok, {total} errors in all; after warm-up {first} in the first half of the windows, \
         {second} in the second → errors not growing: {}",
        if second <= first { "yes" } else { "no" }
    );
    let mut p99: Vec<f64> = after.iter().map(|r| r.p99_ms).filter(|v| v.is_finite()).collect();
    if !p99.is_empty() {
        let worst = p99.iter().cloned().fold(f64::MIN, f64::max);
        println!("soak: window TTFB p99 after warm-up: median {:.2} ms, worst {worst:.2} ms", pct(&mut p99, 0.5));
    }
}

/// The server log's lines grouped by level, target and message (fields and timestamps left
/// out), most frequent first.
fn log_summary(log: &str) -> Vec<(usize, String)> {
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in log.lines() {
        // `2026-12-03T16:28:26.311509Z  WARN traffix::app: message key=value …`, maybe coloured.
        let mut parts = line.split('\x1b');
        let mut plain = parts.next().unwrap_or_default().to_owned();
        for part in parts {
            plain.push_str(part.split_once('m').map_or(part, |(_, r)| r));
        }
        let line = plain.as_str();
        let rest = line.split_once('Z').map_or(line, |(_, r)| r).trim();
        let words: Vec<&str> = rest.split(' ').take_while(|w| !w.contains('=')).collect();
        *counts.entry(words.join(" ")).or_default() += 1;
    }
    let mut v: Vec<(usize, String)> = counts.into_iter().map(|(m, c)| (c, m)).collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    v
}

// ---------------------------------------------------------------- main
/// The open-file limit the packaged unit gives the server (`LimitNOFILE=` in
/// packaging/deb/traffix.service).
const PACKAGED_NOFILE: u64 = 131_072;

/// Raises the hard open-file limit to `want` when allowed (root), so the server started from
/// here gets what the packaged unit gives it. Node tunnels count against the web listener's
/// `max_connections`, which the server fits to its limit (three fifths of it for the web
/// listener: 11,691 under a hard limit of 20,000).
fn raise_hard_nofile(want: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.maximum.is_some_and(|m| m < want) {
        let raised = Rlimit { current: lim.current, maximum: Some(want) };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            let now = lim.maximum.map_or("unlimited".to_owned(), |m| m.to_string());
            println!("could not raise the hard open-file limit to {want} ({e}): the server fits its caps to {now}");
        }
    }
}

fn main() {
    traffix::tls::install_provider();
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing; there is nothing to list.
    }
    raise_hard_nofile(PACKAGED_NOFILE);
    let nofile = traffix::listener::raise_nofile();
    let k = Knobs::read();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(k, nofile));
}

async fn run(k: Knobs, nofile: u64) {
    let n = k.nodes;
    let me = std::process::id();
    println!(
        "traffix fleet benchmark — {n} nodes, {} soak clients, {} requests, idle {} s, soak {} s — {} — open files {nofile}",
        k.clients,
        k.requests,
        k.idle_secs,
        k.soak_secs,
        std::env::consts::ARCH
    );
    println!("limits profile: {}", PROFILE.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
    assert!(n <= 250 * 254, "at most {} nodes (127.0.1.1 … 127.0.254.250)", 250 * 254);
    let origin = origin().await;
    let (mut server, pass) = tokio::task::spawn_blocking(start_server).await.unwrap();
    let d = server.dir.path().to_path_buf();
    let states = tempfile::tempdir().unwrap();
    let c = Client { socks: server.socks, origin, pass };
    server.answering(k.timeout).await;
    let (_trigger, shutdown) = traffix::shutdown::channel();
    let mut agents = Vec::with_capacity(n);

    // 1. The first node, and routing with one node online.
    let link = pair_links(&d, 1).await.remove(0);
    agents.push(spawn_agent(0, states.path(), link, &shutdown));
    wait_online(server.metrics, 1, k.timeout, "first node", &|| stopped(&agents))
        .await
        .expect("the first node comes online");
    let one = ttfb_sequential(&c, k.requests).await;
    println!("routing, 1 node online: TTFB p50 {:.3} ms, p99 {:.3} ms ({} errors)", one.0, one.1, one.2);

    // 2. Pairing links for the rest, then all agents at once.
    let t = Instant::now();
    let links = pair_links(&d, n - 1).await;
    let link_s = t.elapsed().as_secs_f64();
    println!(
        "pairing links (admin socket, 16 callers): {} in {link_s:.2} s ({:.0}/s)",
        n - 1,
        (n - 1) as f64 / link_s.max(1e-9)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss0 = rss_kib(server.pid());
    let (ov0, redb0) = (listen_overflows(), file_size(&d.join("traffix.redb")));
    let t = Instant::now();
    for (i, link) in links.into_iter().enumerate() {
        agents.push(spawn_agent(i + 1, states.path(), link, &shutdown));
    }
    let first = wait_online(server.metrics, n, k.timeout, "first start (pairing)", &|| stopped(&agents)).await;
    let ov_first = listen_overflows() - ov0;
    match first {
        Ok(took) => println!(
            "first start: {n} agents paired and online in {:.2} s ({:.0}/s); listen overflows {ov_first}; database grew {} KiB",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64().max(1e-9),
            (file_size(&d.join("traffix.redb")).saturating_sub(redb0)) / 1024
        ),
        Err(seen) => println!(
            "first start: only {seen}/{n} online after {:.0} s ({} agents stopped); listen overflows {ov_first}",
            t.elapsed().as_secs_f64(),
            stopped(&agents)
        ),
    }

    // 3. Idle: memory and CPU with heartbeats only.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss1 = rss_kib(server.pid());
    let per_node = rss1.saturating_sub(rss0) as f64 / (n - 1).max(1) as f64;
    let spid = server.pid();
    let (s0, a0, t0) = (cpu_secs(spid), cpu_secs(me), Instant::now());
    tokio::time::sleep(Duration::from_secs(k.idle_secs)).await;
    let wall = t0.elapsed().as_secs_f64();
    let (s_cpu, a_cpu) = ((cpu_secs(spid) - s0) / wall * 100.0, (cpu_secs(me) - a0) / wall * 100.0);
    // Settled: what the first start's pairing left behind has had the idle window to go back.
    let rss2 = rss_kib(server.pid());
    let settled = rss2.saturating_sub(rss0) as f64 / (n - 1).max(1) as f64;
    let limits = traffix::config::Limits::default();
    println!(
        "idle, {n} nodes: server RSS 5 s after the first start {:.1} MiB ({:.1} MiB with 1 node) = {per_node:.1} KiB \
         per node; after the idle window {:.1} MiB = {settled:.1} KiB per idle node (target ≤ 48)",
        rss1 as f64 / 1024.0,
        rss0 as f64 / 1024.0,
        rss2 as f64 / 1024.0,
    );
    println!(
        "idle CPU over {wall:.0} s (heartbeats every {} s per idle node): server {s_cpu:.2} % of one core, \
         agents' process {a_cpu:.2} %",
        limits.heartbeat_idle_interval_secs.max(limits.heartbeat_interval_secs)
    );

    // 4. Routing with N online.
    let many = ttfb_sequential(&c, k.requests).await;
    println!(
        "routing, {n} nodes online: TTFB p50 {:.3} ms, p99 {:.3} ms ({} errors); × {:.2} / {:.2} of 1 node",
        many.0,
        many.1,
        many.2,
        many.0 / one.0,
        many.1 / one.1
    );

    // 5. The reconnect storm: SIGKILL, restart on the same data directory and ports.
    let redb0 = file_size(&d.join("traffix.redb"));
    let ov0 = listen_overflows();
    server.kill9();
    let t = Instant::now();
    server.spawn();
    let up = server.answering(k.timeout).await.as_secs_f64();
    let back = wait_online(server.metrics, n, k.timeout, "reconnect storm", &|| stopped(&agents)).await;
    let ov_storm = listen_overflows() - ov0;
    let after_back = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = scrape(server.metrics).await.unwrap_or_default();
    let written = write_bytes(server.pid());
    // The restarted server never paired anyone: its RSS is the fleet's own cost, without what
    // the first start's pairing left in the allocator. Taken once the storm's garbage is given
    // back (jemalloc returns freed pages after about 10 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_back = rss_kib(server.pid());
    match back {
        Ok(_) => println!(
            "reconnect storm (SIGKILL, immediate restart): server answering after {:.2} s, all {n} back online {:.2} s \
             after the restart; listen overflows {ov_storm}; server RSS 15 s later {:.1} MiB = {:.1} KiB per node over \
             the 1-node figure",
            up,
            (after_back - t).as_secs_f64(),
            rss_back as f64 / 1024.0,
            rss_back.saturating_sub(rss0) as f64 / n.saturating_sub(1).max(1) as f64,
        ),
        Err(seen) => println!(
            "reconnect storm: only {seen}/{n} back after {:.0} s ({} agents stopped); listen overflows {ov_storm}",
            t.elapsed().as_secs_f64(),
            stopped(&agents)
        ),
    }
    if ov_storm > 0 {
        println!(
            "  listen backlog: limits.listen_backlog {} (capped by net.core.somaxconn = {}), tcp_max_syn_backlog {}",
            limits.listen_backlog,
            std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default().trim(),
            std::fs::read_to_string("/proc/sys/net/ipv4/tcp_max_syn_backlog").unwrap_or_default().trim()
        );
    }
    println!(
        "  writes by the restarted server until 5 s after the last node was back: {} KiB (/proc/PID/io write_bytes); \
         database file {} → {} KiB",
        written.map(|b| (b / 1024).to_string()).unwrap_or("n/a".into()),
        redb0 / 1024,
        file_size(&d.join("traffix.redb")) / 1024
    );
    // The batched last-seen writer's (`traffix_seen_*`): how many transactions the storm cost.
    let store: Vec<String> =
        samples(&text, &["store", "traffix_seen_"]).into_iter().filter(|l| !l.contains("_bucket")).collect();
    if store.is_empty() {
        println!("  store write metrics: n/a (the server exports none)");
    }
    for l in store {
        println!("  {l}");
    }
    for l in samples(&text, &["traffix_tunnel_handshakes", "traffix_connections_refused"]) {
        println!("  {l}");
    }

    // 6. The soak.
    if k.soak_secs > 0 {
        println!();
        println!(
            "soak: {n} nodes, {} clients, {} s; each client: a stream, then a pause of 0–{} ms; {} % of streams \
             1–16 MiB, the rest 100 B",
            k.clients,
            k.soak_secs,
            2 * k.think_ms,
            k.long_pct
        );
        let rows = soak(&c, &server, &k).await;
        soak_verdict(&rows);
    }
    let log = std::fs::read_to_string(d.join("server.log")).unwrap_or_default();
    println!(
        "server log: {} warning/error lines{}",
        log.lines().count(),
        log.lines().find(|l| l.contains("max_connections")).map(|l| format!("; {l}")).unwrap_or_default()
    );
    for (count, message) in log_summary(&log).into_iter().take(8) {
        println!("  {count:>7} × {message}");
    }
    let gone = stopped(&agents);
    if gone > 0 {
        println!("{gone} agents stopped for good (pairing refused?)");
    }
    drop(server);
}
