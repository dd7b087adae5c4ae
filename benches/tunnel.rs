//! The tunnel benchmark: SOCKS5 → traffix server → TLS WebSocket → traffix node → origin,
//! against direct TCP to the same origin, and the same workload through shadowsocks-rust
//! (sslocal → ssserver) and Dante when they are installed (`benches/setup-peers.sh`).
//! Every figure is printed with its ratio to direct TCP measured in the same run.
//!
//! The client authenticates with SOCKS5 username/password (RFC 1929) against traffix and against
//! sslocal alike (issue 19's TTFB: connect, SOCKS5 auth, open, 100-byte answer), so neither skips
//! the auth round trip. Dante is run without authentication: its username method checks system
//! accounts, which a benchmark should not create; its TTFB has one round trip fewer.
//!
//! Run: `cargo bench --bench tunnel` (quick: `TRAFFIX_BENCH_SCALE=0.1 cargo bench --bench tunnel`).
//!
//! `TRAFFIX_BENCH_BILLING=compare` runs instead the same workload against two traffix servers
//! in one run, one with billing on and one with `billing.enabled = false`, alternating between
//! them for `TRAFFIX_BENCH_ROUNDS` rounds (default 9), and prints both and the ratio on/off.
//!
//! `TRAFFIX_BENCH_ONLY=stream` runs only the one-stream workload (down, up, CPU per GiB) through
//! every path and skips the memory figures: the shape to run under `perf record`.
//! `TRAFFIX_BENCH_ONLY=memory` measures only the memory figures (per idle node, per idle stream).
//! `TRAFFIX_BENCH_ONLY=ttfb` runs only the sequential new-connection probes (TTFB p50 / p99).
//! `TRAFFIX_BENCH_ONLY=concurrent` runs only the 1,000 concurrent 1 MiB streams.
//! Every run also prints the CPU seconds per GiB of the processes on each path over the
//! concurrent streams (below the table).
//! `TRAFFIX_BENCH_NODE_BIN=PATH` runs the node from another build than the server (an A/B of a
//! node-side change against the same server); `TRAFFIX_BENCH_SERVER_BIN=PATH` the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{BIN, Proc, cpu_secs, listen_overflows, origin, pct, rss_kib, scale, traffix};

/// The `[limits]` profile of this benchmark (printed with the results).
const PROFILE: &[(&str, &str)] = &[
    ("TRAFFIX_LIMITS__CLIENT_MAX_STREAMS", "4096"),
    ("TRAFFIX_LIMITS__CLIENT_MAX_DIALS", "4096"),
    ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_PER_S", "1000000"),
    ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_BURST", "1000000"),
    ("TRAFFIX_LIMITS__NODE_MAX_STREAMS", "4096"),
    ("TRAFFIX_LIMITS__IDLE_STREAM_TIMEOUT_SECS", "600"),
    ("TRAFFIX_LIMITS__AUTH_FAILURES_PER_MINUTE_PER_IP", "1000000"),
    ("TRAFFIX_LIMITS__MAX_CONNECTIONS_PER_IP", "20000"),
    ("TRAFFIX_LIMITS__MAX_HANDSHAKES_PER_IP", "20000"),
];

/// `TRAFFIX_BENCH_ONLY=<what>`: one workload only (`stream`, `ttfb`, `concurrent` or `memory`).
fn only(what: &str) -> bool {
    std::env::var("TRAFFIX_BENCH_ONLY").is_ok_and(|v| v == what)
}

// ---------------------------------------------------------------- clients
#[derive(Clone)]
enum Path_ {
    Direct,
    Socks { proxy: SocketAddr, auth: Option<(String, String)> },
}

async fn connect(path: &Path_, origin: SocketAddr) -> std::io::Result<TcpStream> {
    match path {
        Path_::Direct => {
            let s = TcpStream::connect(origin).await?;
            s.set_nodelay(true)?;
            Ok(s)
        }
        Path_::Socks { proxy, auth } => {
            common::socks5(*proxy, auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str())), origin).await
        }
    }
}

async fn download(path: &Path_, origin: SocketAddr, n: u64) -> std::io::Result<u64> {
    let mut s = connect(path, origin).await?;
    let mut hdr = vec![b'D'];
    hdr.extend_from_slice(&n.to_be_bytes());
    s.write_all(&hdr).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let k = s.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        got += k as u64;
    }
    if got != n {
        return Err(std::io::Error::other(format!("short download {got}/{n}")));
    }
    Ok(got)
}

async fn upload(path: &Path_, origin: SocketAddr, n: u64) -> std::io::Result<()> {
    let mut s = connect(path, origin).await?;
    let mut hdr = vec![b'U'];
    hdr.extend_from_slice(&n.to_be_bytes());
    s.write_all(&hdr).await?;
    let buf = vec![0xa5u8; 256 * 1024];
    let mut left = n;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..k]).await?;
        left -= k as u64;
    }
    let mut ok = [0u8; 1];
    s.read_exact(&mut ok).await?;
    Ok(())
}

async fn ttfb(path: &Path_, origin: SocketAddr) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut s = connect(path, origin).await?;
    let mut hdr = vec![b'P'];
    hdr.extend_from_slice(&100u64.to_be_bytes());
    s.write_all(&hdr).await?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    Ok(start.elapsed())
}

// ---------------------------------------------------------------- processes
struct Traffix {
    dir: tempfile::TempDir,
    server: Proc,
    node: Proc,
    socks: SocketAddr,
    pass: String,
}

fn start_traffix() -> Traffix {
    start_traffix_with(&[], "bench")
}

/// A server (with `env` set on `traffix serve` on top of the profile) and one node of `owner`
/// (a user other than the client `bench` is created for it).
fn start_traffix_with(env: &[(&str, &str)], owner: &str) -> Traffix {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (socks, _metrics, pass) = common::init(d);
    let mut cmd = Command::new(std::env::var("TRAFFIX_BENCH_SERVER_BIN").unwrap_or_else(|_| BIN.to_owned()));
    cmd.args(["serve", "--allow-private-targets", "--data-dir"]).arg(d).env("RUST_LOG", "warn");
    for (k, v) in PROFILE.iter().chain(env) {
        cmd.env(k, v);
    }
    let server = Proc(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    wait(|| d.join("admin.sock").exists());
    if owner != "bench" {
        traffix(d, &["user", "add", owner]);
    }
    let link = traffix(d, &["pair", owner])["link"].as_str().unwrap().to_owned();
    let node_bin = std::env::var("TRAFFIX_BENCH_NODE_BIN").unwrap_or_else(|_| BIN.to_owned());
    let node = Proc(
        Command::new(node_bin)
            .args(["node", "--allow-private-targets", "--pair", &link, "--state"])
            .arg(d.join("node.json"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait(|| traffix(d, &["device", "list"]).as_array().is_some_and(|a| a.iter().any(|x| x["online"] == true)));
    Traffix { dir, server, node, socks, pass }
}

fn wait(mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(120), "benchmark setup timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- peers
fn which(cmd: &str) -> Option<PathBuf> {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {cmd}")).output().ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn wait_port(port: u16) {
    wait(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

/// `TRAFFIX_BENCH_PEERS=0`: leave the peers out even where they are installed (the CI smoke).
fn peers_wanted() -> bool {
    std::env::var("TRAFFIX_BENCH_PEERS").map_or(true, |v| v != "0")
}

/// The SOCKS5 user sslocal accepts (and the only one).
const SS_USER: (&str, &str) = ("bench", "bench-pass");

/// shadowsocks-rust: sslocal (SOCKS5 with username/password auth for [`SS_USER`]) → ssserver,
/// aes-256-gcm. sslocal takes its SOCKS5 users only from a config file (`locals[].
/// socks5_auth_config_path`), so both its configs are written to `dir`.
fn start_shadowsocks(dir: &Path) -> Option<(Vec<Proc>, SocketAddr, Vec<u32>)> {
    if !peers_wanted() {
        return None;
    }
    let (local, server) = (which("sslocal")?, which("ssserver")?);
    let (sp, lp) = (common::free_port(), common::free_port());
    let key = "traffix-bench-password";
    let srv = Proc(
        Command::new(server)
            .args(["-s", &format!("127.0.0.1:{sp}"), "-m", "aes-256-gcm", "-k", key])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?,
    );
    wait_port(sp);
    let auth = dir.join("sslocal-auth.json");
    let users = serde_json::json!({ "password": { "users": [{ "user_name": SS_USER.0, "password": SS_USER.1 }] } });
    std::fs::write(&auth, users.to_string()).ok()?;
    let conf = dir.join("sslocal.json");
    let config = serde_json::json!({
        "server": "127.0.0.1",
        "server_port": sp,
        "password": key,
        "method": "aes-256-gcm",
        "locals": [{ "local_address": "127.0.0.1", "local_port": lp, "socks5_auth_config_path": auth }],
    });
    std::fs::write(&conf, config.to_string()).ok()?;
    let log = dir.join("sslocal.log");
    let mut loc = Proc(
        Command::new(local)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).ok()?)
            .spawn()
            .ok()?,
    );
    // A config sslocal refuses ends it at once: say why instead of waiting out the setup timeout.
    wait(|| {
        let exited = loc.0.try_wait().ok().flatten();
        assert!(exited.is_none(), "sslocal exited ({exited:?}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::net::TcpStream::connect(("127.0.0.1", lp)).is_ok()
    });
    let pids = vec![srv.0.id(), loc.0.id()];
    Some((vec![srv, loc], SocketAddr::from(([127, 0, 0, 1], lp)), pids))
}

/// Dante's sockd as a plain SOCKS5 server, without authentication: its username method checks
/// the machine's accounts, and a benchmark should not create one.
fn start_dante(dir: &Path) -> Option<(Group, SocketAddr, Vec<u32>)> {
    if !peers_wanted() {
        return None;
    }
    let sockd = which("sockd").or_else(|| which("danted"))?;
    let port = common::free_port();
    let conf = dir.join("sockd.conf");
    std::fs::write(
        &conf,
        format!(
            "logoutput: /dev/null\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\nclientmethod: none\nsocksmethod: none\nuser.privileged: root\nuser.unprivileged: nobody\n\
             client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\nsocks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n"
        ),
    )
    .ok()?;
    let p = Group(Proc(
        Command::new(sockd)
            .arg("-f")
            .arg(&conf)
            .arg("-N")
            .arg("2")
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?,
    ));
    wait_port(port);
    let pid = p.0.0.id();
    // sockd forks workers: count the whole process group's CPU through its children.
    Some((p, SocketAddr::from(([127, 0, 0, 1], port)), vec![pid]))
}

/// A child that leads its own process group, the whole group killed when dropped: with `-N 2`
/// sockd forks a second server process (with its own workers) that outlives the first, and
/// went on listening after the benchmark ended when only the first was killed.
struct Group(Proc);

impl Drop for Group {
    fn drop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process_group};
        let _ = kill_process_group(Pid::from_child(&self.0.0), Signal::KILL);
    }
}

/// The roots and all their descendants (Dante's sockd forks a second server whose workers are
/// its grandchildren).
fn all_pids(roots: &[u32]) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if let Some(ppid) =
                stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut pids = roots.to_vec();
    let mut i = 0;
    while let Some(&parent) = pids.get(i) {
        for &(pid, ppid) in &parents {
            if ppid == parent && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        i += 1;
    }
    pids
}

// ---------------------------------------------------------------- workload
#[derive(Default, Clone)]
struct Figures {
    down_gbps: f64,
    up_gbps: f64,
    ttfb_p50_ms: f64,
    ttfb_p99_ms: f64,
    conc_gbps: f64,
    conc_p99_s: f64,
    conc_errors: usize,
    cpu_s_per_gib: Option<f64>,
    /// CPU seconds per GiB over the concurrent streams.
    conc_cpu_s_per_gib: Option<f64>,
    overflows: u64,
}

async fn workload(path: &Path_, origin: SocketAddr, pids: &[u32]) -> Figures {
    let s = scale();
    let n_ttfb = ((1000.0 * s) as usize).max(50);
    let n_conc = ((1000.0 * s) as usize).max(50);
    let mut f = Figures::default();

    if only("ttfb") {
        (f.ttfb_p50_ms, f.ttfb_p99_ms) = ttfb_probes(path, origin, n_ttfb).await;
        return f;
    }
    if !only("concurrent") {
        one_stream(path, origin, pids, &mut f).await;
        if only("stream") {
            return f;
        }
        (f.ttfb_p50_ms, f.ttfb_p99_ms) = ttfb_probes(path, origin, n_ttfb).await;
    }

    let ov0 = listen_overflows();
    let cpu0 = cpu_of(pids);
    let start = Instant::now();
    let tasks: Vec<_> = (0..n_conc)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move {
                let r = download(&path, origin, 1 << 20).await;
                (r.is_ok(), start.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        let (ok, at) = t.await.unwrap();
        if ok {
            done.push(at);
        } else {
            f.conc_errors += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    f.conc_gbps = (done.len() as f64 * (1u64 << 20) as f64 * 8.0) / wall / 1e9;
    f.conc_p99_s = if done.is_empty() { f64::NAN } else { pct(&mut done, 0.99) };
    f.overflows = listen_overflows() - ov0;
    if !pids.is_empty() && !done.is_empty() {
        f.conc_cpu_s_per_gib = Some((cpu_of(pids) - cpu0) / (done.len() as f64 / 1024.0));
    }
    f
}

/// CPU seconds so far of `pids` and their descendants.
fn cpu_of(pids: &[u32]) -> f64 {
    all_pids(pids).iter().map(|p| cpu_secs(*p)).sum()
}

/// The one stream, 1 GiB down and 256 MiB up (× scale), and the CPU per GiB over both.
async fn one_stream(path: &Path_, origin: SocketAddr, pids: &[u32], f: &mut Figures) {
    let s = scale();
    let down = ((1u64 << 30) as f64 * s) as u64;
    let up = ((256u64 << 20) as f64 * s) as u64;
    let cpu0 = cpu_of(pids);
    let t = Instant::now();
    download(path, origin, down).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    f.down_gbps = down as f64 * 8.0 / secs / 1e9;
    let t = Instant::now();
    upload(path, origin, up).await.unwrap();
    f.up_gbps = up as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9;
    if !pids.is_empty() {
        f.cpu_s_per_gib = Some((cpu_of(pids) - cpu0) / ((down + up) as f64 / (1u64 << 30) as f64));
    }
}

/// `n` sequential new connections, each asking for a 100-byte answer: TTFB p50 and p99 in ms.
async fn ttfb_probes(path: &Path_, origin: SocketAddr, n: usize) -> (f64, f64) {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        lat.push(ttfb(path, origin).await.unwrap().as_secs_f64() * 1000.0);
    }
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

/// Server RSS per idle connected node: 1,000 (× scale) in-process node agents.
async fn idle_nodes(t: &Traffix) -> (usize, f64) {
    let n = ((1000.0 * scale()) as usize).max(20);
    let d = t.dir.path();
    let before = rss_kib(t.server.0.id());
    let (_trigger, shutdown) = traffix::shutdown::channel();
    let mut handles = Vec::new();
    for i in 0..n {
        let link = traffix::admin::socket::call(d, &traffix::admin::Pair { name: "bench".into() })
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .link;
        let opts = traffix::node::NodeOptions {
            state: d.join(format!("idle-{i}.json")),
            pair: Some(link),
            bind: Some(std::net::IpAddr::from([127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8])),
            egress_bind: None,
            allow_private_targets: false,
            limits: traffix::config::Limits::default(),
            refused_retry: std::time::Duration::from_secs(traffix::node::DEFAULT_REFUSED_RETRY_SECS),
            controls: traffix::node::controls::Controls::unlimited(&d.join(format!("idle-{i}.json")), 64),
            settings: None,
            started: tokio::time::Instant::now(),
        };
        handles.push(tokio::spawn(traffix::node::run(opts, shutdown.clone())));
    }
    let dd = d.to_path_buf();
    let want = n + 1;
    tokio::task::spawn_blocking(move || {
        wait(|| {
            traffix(&dd, &["device", "list"])
                .as_array()
                .is_some_and(|a| a.iter().filter(|x| x["online"] == true).count() >= want)
        })
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(t.server.0.id());
    for h in handles {
        h.abort();
    }
    // Let the server retire those sessions before anything is timed.
    let dd = d.to_path_buf();
    tokio::task::spawn_blocking(move || {
        wait(|| {
            traffix(&dd, &["device", "list"])
                .as_array()
                .is_some_and(|a| a.iter().filter(|x| x["online"] == true).count() == 1)
        })
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    (n, (after.saturating_sub(before)) as f64 / n as f64)
}

/// Server + node RSS per open idle stream.
async fn idle_streams(t: &Traffix, origin: SocketAddr) -> (usize, f64) {
    let n = ((1000.0 * scale()) as usize).max(50);
    let path = Path_::Socks { proxy: t.socks, auth: Some(("bench".into(), t.pass.clone())) };
    let before = rss_kib(t.server.0.id()) + rss_kib(t.node.0.id());
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = connect(&path, origin).await.unwrap();
        let mut hdr = vec![b'H'];
        hdr.extend_from_slice(&0u64.to_be_bytes());
        s.write_all(&hdr).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(t.server.0.id()) + rss_kib(t.node.0.id());
    drop(held);
    (n, (after.saturating_sub(before)) as f64 / n as f64)
}

fn row(name: &str, f: &Figures, d: &Figures) {
    let r = |a: f64, b: f64| if b > 0.0 { format!("{:.2}×", a / b) } else { "-".into() };
    println!(
        "| {name} | {:.2} Gbit/s ({}) | {:.2} Gbit/s ({}) | {:.3} / {:.3} ms ({} / {}) | {:.2} Gbit/s ({}), p99 {:.2} s, {} errors | {} | {} |",
        f.down_gbps,
        r(f.down_gbps, d.down_gbps),
        f.up_gbps,
        r(f.up_gbps, d.up_gbps),
        f.ttfb_p50_ms,
        f.ttfb_p99_ms,
        r(f.ttfb_p50_ms, d.ttfb_p50_ms),
        r(f.ttfb_p99_ms, d.ttfb_p99_ms),
        f.conc_gbps,
        r(f.conc_gbps, d.conc_gbps),
        f.conc_p99_s,
        f.conc_errors,
        f.cpu_s_per_gib.map(|c| format!("{c:.2}")).unwrap_or("-".into()),
        f.overflows,
    );
}

fn main() {
    traffix::tls::install_provider();
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing; there is nothing to list.
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if std::env::var("TRAFFIX_BENCH_BILLING").is_ok_and(|v| v == "compare") {
        rt.block_on(billing_compare());
        return;
    }
    rt.block_on(async {
        let origin = origin().await;
        println!("traffix tunnel benchmark — scale {} — {}", scale(), std::env::consts::ARCH);
        println!("limits profile: {}", PROFILE.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
        if only("memory") {
            let t = tokio::task::spawn_blocking(start_traffix).await.unwrap();
            let (streams, per_stream) = idle_streams(&t, origin).await;
            let (nodes, per_node) = idle_nodes(&t).await;
            println!("server RSS per idle connected TLS node: {per_node:.1} KiB ({nodes} nodes)");
            println!("server + node RSS per open idle stream: {per_stream:.1} KiB ({streams} streams)");
            return;
        }
        let direct = workload(&Path_::Direct, origin, &[]).await;
        let t = tokio::task::spawn_blocking(start_traffix).await.unwrap();
        // Memory first, on a fresh server: after bulk transfers the allocator keeps its pages.
        let ((streams, per_stream), (nodes, per_node)) =
            if only("stream") || only("ttfb") || only("concurrent") { ((0, f64::NAN), (0, f64::NAN)) } else { (idle_streams(&t, origin).await, idle_nodes(&t).await) };
        // Pin the workload to the bench node (the idle nodes above may still be leaving).
        let vip = serde_json::from_slice::<serde_json::Value>(&std::fs::read(t.dir.path().join("node.json")).unwrap()).unwrap()["vip"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = Path_::Socks { proxy: t.socks, auth: Some((format!("bench-node-{vip}"), t.pass.clone())) };
        let tf = workload(&path, origin, &[t.server.0.id(), t.node.0.id()]).await;
        let tmp = tempfile::tempdir().unwrap();
        let ss = match start_shadowsocks(tmp.path()) {
            Some((procs, addr, pids)) => {
                let auth = Some((SS_USER.0.to_owned(), SS_USER.1.to_owned()));
                Some((workload(&Path_::Socks { proxy: addr, auth }, origin, &pids).await, procs))
            }
            None => None,
        };
        let dante = match start_dante(tmp.path()) {
            Some((procs, addr, pids)) => Some((workload(&Path_::Socks { proxy: addr, auth: None }, origin, &pids).await, procs)),
            None => None,
        };

        println!();
        println!("| path | 1 GiB down | 256 MiB up | TTFB p50 / p99 | 1,000 × 1 MiB concurrent | CPU s/GiB | listen overflows |");
        println!("|---|---|---|---|---|---|---|");
        row("direct TCP", &direct, &direct);
        row("traffix (SOCKS5 → TLS WS → node)", &tf, &direct);
        match &ss {
            Some((f, _)) => row("shadowsocks-rust (sslocal, SOCKS5 username/password auth → ssserver)", f, &direct),
            None => println!("| shadowsocks-rust | not installed (benches/setup-peers.sh) | | | | | |"),
        }
        match &dante {
            Some((f, _)) => row("dante sockd (SOCKS5 without auth: one round trip fewer)", f, &direct),
            None => println!("| dante | not installed (benches/setup-peers.sh) | | | | | |"),
        }
        println!();
        let conc_cpu = |f: &Figures| f.conc_cpu_s_per_gib.map(|c| format!("{c:.2}")).unwrap_or("-".into());
        let mut line = format!("CPU s/GiB over the 1,000 concurrent streams: traffix {}", conc_cpu(&tf));
        for (name, f) in [("shadowsocks-rust", ss.as_ref().map(|x| &x.0)), ("dante", dante.as_ref().map(|x| &x.0))] {
            if let Some(f) = f {
                line += &format!(", {name} {}", conc_cpu(f));
            }
        }
        println!("{line}");
        println!("server RSS per idle connected TLS node: {per_node:.1} KiB ({nodes} nodes)");
        println!("server + node RSS per open idle stream: {per_stream:.1} KiB ({streams} streams)");
        drop(t);
    });
}

// ---------------------------------------------------------------- billing on vs off
fn median_of(v: &[Figures], f: impl Fn(&Figures) -> f64) -> f64 {
    median_some(v, |x| Some(f(x))).unwrap_or(f64::NAN)
}

/// The median over the rounds that have the figure (`TRAFFIX_BENCH_ONLY` leaves some out).
fn median_some(v: &[Figures], f: impl Fn(&Figures) -> Option<f64>) -> Option<f64> {
    let mut x: Vec<f64> = v.iter().filter_map(f).collect();
    (!x.is_empty()).then(|| pct(&mut x, 0.5))
}

/// Each figure's median over rounds (errors and overflows: the worst round).
fn median_figures(v: &[Figures]) -> Figures {
    Figures {
        down_gbps: median_of(v, |f| f.down_gbps),
        up_gbps: median_of(v, |f| f.up_gbps),
        ttfb_p50_ms: median_of(v, |f| f.ttfb_p50_ms),
        ttfb_p99_ms: median_of(v, |f| f.ttfb_p99_ms),
        conc_gbps: median_of(v, |f| f.conc_gbps),
        conc_p99_s: median_of(v, |f| f.conc_p99_s),
        conc_errors: v.iter().map(|f| f.conc_errors).max().unwrap_or(0),
        cpu_s_per_gib: median_some(v, |f| f.cpu_s_per_gib),
        conc_cpu_s_per_gib: median_some(v, |f| f.conc_cpu_s_per_gib),
        overflows: v.iter().map(|f| f.overflows).max().unwrap_or(0),
    }
}

/// Payload bytes one [`workload`] moves through the proxy.
fn workload_bytes() -> u64 {
    let s = scale();
    let n = ((1000.0 * s) as usize).max(50) as u64;
    ((1u64 << 30) as f64 * s) as u64 + ((256u64 << 20) as f64 * s) as u64 + n * 100 + n * (1 << 20)
}

/// What `user` paid so far, in micro-units (from its deposit of 1,000,000.00).
fn spent(t: &Traffix) -> i64 {
    1_000_000_000_000 - traffix(t.dir.path(), &["user", "show", "bench"])["balance_micros"].as_i64().unwrap()
}

/// `TRAFFIX_BENCH_BILLING=compare`: the workload through a server with billing on and one with
/// billing off, alternating (on, off, off, on, …) so drift of the machine hits both alike.
async fn billing_compare() {
    let rounds: usize = std::env::var("TRAFFIX_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(9);
    let origin = origin().await;
    println!("traffix billing on vs off — scale {} — {rounds} rounds — {}", scale(), std::env::consts::ARCH);
    println!("limits profile: {}", PROFILE.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
    // The node belongs to another user, so usage pays the owner and the platform (a client
    // on its own node would pay only the fee).
    let on = tokio::task::spawn_blocking(|| start_traffix_with(&[], "owner")).await.unwrap();
    let off = tokio::task::spawn_blocking(|| start_traffix_with(&[("TRAFFIX_BILLING__ENABLED", "false")], "owner"))
        .await
        .unwrap();
    let path = |t: &Traffix| Path_::Socks { proxy: t.socks, auth: Some(("bench".into(), t.pass.clone())) };
    let (mut f_on, mut f_off) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let order = if r % 2 == 0 { [true, false] } else { [false, true] };
        for billed in order {
            let t = if billed { &on } else { &off };
            let f = workload(&path(t), origin, &[t.server.0.id(), t.node.0.id()]).await;
            if billed { f_on.push(f) } else { f_off.push(f) }
        }
    }

    println!();
    println!(
        "| server | 1 GiB down | 256 MiB up | TTFB p50 / p99 | 1,000 × 1 MiB concurrent | CPU s/GiB | listen overflows |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (r, (a, b)) in f_on.iter().zip(&f_off).enumerate() {
        row(&format!("round {}: billing on (ratio to off)", r + 1), a, b);
        row(&format!("round {}: billing off", r + 1), b, b);
    }
    let (m_on, m_off) = (median_figures(&f_on), median_figures(&f_off));
    row(&format!("**median of {rounds}: billing on** (ratio to off)"), &m_on, &m_off);
    row(&format!("**median of {rounds}: billing off**"), &m_off, &m_off);
    println!();
    let cpu = |f: &Figures| f.cpu_s_per_gib.unwrap_or(f64::NAN);
    println!(
        "billing on / off (medians): down {:.3}, up {:.3}, 1,000 streams {:.3}; CPU per GiB {:.3}; TTFB p50 {:.3}",
        m_on.down_gbps / m_off.down_gbps,
        m_on.up_gbps / m_off.up_gbps,
        m_on.conc_gbps / m_off.conc_gbps,
        cpu(&m_on) / cpu(&m_off),
        m_on.ttfb_p50_ms / m_off.ttfb_p50_ms,
    );
    // Billed while on; nothing while off (after the last flush has posted).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (s_on, s_off) = tokio::task::spawn_blocking(move || (spent(&on), spent(&off))).await.unwrap();
    let moved = (rounds as u64 * workload_bytes()) as f64 / 1e9;
    let billed = s_on as f64 / 3e6;
    println!(
        "billed with billing on: {s_on} micro-units = {billed:.3} GB at 3.00 per GB, for {moved:.3} GB of payload \
         ({:.4}×: each session's charge rounds down, request heads add a little); with billing off: {s_off}",
        billed / moved
    );
}
