//! Test harness: the real `traffix` binary as server and nodes, real clients (curl, python),
//! and a small origin web server. Everything binds 127.0.0.x on free ports; waits poll for a
//! condition with a generous upper bound, so no test depends on timing.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Android Key Attestation test chains (the same kit the unit tests of `trust` use).
#[path = "../../src/trust/testkit.rs"]
pub mod attest;

pub const BIN: &str = env!("CARGO_BIN_EXE_traffix");
/// Upper bound for any wait; a healthy run takes a fraction of it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `f` until it returns `Some`, panicking with `what` after [`PATIENCE`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port free right now, chosen below Linux's ephemeral range (32768-60999): the outgoing
/// connections and port-0 binds of tests running in parallel cannot take it before the server
/// binds it, as they could with a port the kernel handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    for i in 0..1000u64 {
        let mut x = seed ^ (u64::from(std::process::id()) << 20) ^ NEXT.fetch_add(0x9E37_79B9, Ordering::Relaxed) ^ i;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let port = 20_000 + (x % 12_000) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP GET over TCP (for /healthz and /metrics on the loopback listener).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// Deterministic pseudo-random payload of `n` bytes (the origin serves the same).
pub fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The origin web server, shared by all tests of the binary (it runs on its own thread).
pub struct Origin {
    pub addr: SocketAddr,
}

pub fn origin() -> &'static Origin {
    static ORIGIN: OnceLock<Origin> = OnceLock::new();
    ORIGIN.get_or_init(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(origin_main(l));
        });
        Origin { addr }
    })
}

async fn origin_main(l: std::net::TcpListener) {
    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::{ConnectInfo, Path as P, Query};
    use axum::routing::{get, post};
    l.set_nonblocking(true).unwrap();
    let l = tokio::net::TcpListener::from_std(l).unwrap();
    #[derive(serde::Deserialize)]
    struct Seed {
        seed: Option<u64>,
    }
    let app = Router::new()
        .route("/", get(|| async { "hello from origin\n" }))
        .route("/hello", get(|| async { "hello from origin\n" }))
        .route("/ip", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }))
        .route(
            "/bytes/{n}",
            get(|P(n): P<usize>, Query(q): Query<Seed>| async move { payload(n, q.seed.unwrap_or(1)) }),
        )
        .route("/sha256", post(|body: Bytes| async move { format!("{} {}", body.len(), sha256_hex(&body)) }))
        .route(
            "/forever",
            get(|| async {
                let s = futures_util::stream::unfold(0u64, |i| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Some((Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 16 * 1024])), i + 1))
                });
                Body::from_stream(s)
            }),
        );
    let app = app.layer(axum::extract::DefaultBodyLimit::disable());
    axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
}

#[derive(Debug, Clone, Default)]
pub struct ServerOpts {
    pub allow_private_targets: bool,
    pub insecure_http: bool,
    pub geoip: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// Arguments for the shell's `ulimit` before the server starts (e.g. `-Sn 512`).
    pub ulimit: Option<String>,
}

/// A running `traffix serve` on its own data directory.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub web: SocketAddr,
    pub socks: SocketAddr,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
    pub pin: String,
    pub admin_password: String,
    pub opts: ServerOpts,
}

fn addr_of(v: &Value) -> SocketAddr {
    v.as_str().unwrap().parse().unwrap()
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(ServerOpts { allow_private_targets: true, ..ServerOpts::default() })
    }

    pub fn start_with(opts: ServerOpts) -> Server {
        // init picks free ports and writes them to the config; another process can take one
        // before serve binds it. Such a start is retried in a fresh directory.
        for _ in 0..2 {
            match Server::try_start_with(opts.clone()) {
                Ok(s) => return s,
                Err(log) if log.contains("in use") => continue,
                Err(log) => panic!("server exited early:\n{log}"),
            }
        }
        let mut s = Server::init_with(opts);
        s.spawn();
        s
    }

    /// One attempt at [`Server::start_with`]: `Err(the server's log)` when it exits early
    /// (a test that chooses its own ports retries with new ones on "in use").
    pub fn try_start_with(opts: ServerOpts) -> Result<Server, String> {
        let mut s = Server::init_with(opts);
        s.try_spawn()?;
        Ok(s)
    }

    fn init_with(opts: ServerOpts) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(dir.path())
            .args(["--web-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--socks-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port()), "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        let init: Value = serde_json::from_slice(&out.stdout).unwrap();
        // Test servers download no GeoIP databases (and doctor expects none): tests that do
        // set geoip.source themselves.
        let path = dir.path().join("traffix.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace("source = \"dbip\"", "source = \"off\"");
        std::fs::write(&path, text).unwrap();
        let cfg = std::fs::read_to_string(dir.path().join("traffix.toml")).unwrap();
        let cfg: toml::Table = toml::from_str(&cfg).unwrap();
        let server = cfg["server"].as_table().unwrap();
        let get = |k: &str| server[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
        let s = Server {
            web: get("web_listen"),
            socks: get("socks_listen"),
            http: get("http_listen"),
            metrics: get("metrics_listen"),
            pin: init["pin"].as_str().unwrap().to_owned(),
            admin_password: init["admin_password"].as_str().unwrap().to_owned(),
            dir,
            child: None,
            opts,
        };
        let _ = addr_of;
        s
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts `traffix serve` and waits until it answers on its metrics listener.
    pub fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("server exited early:\n{log}");
        }
    }

    /// Starts `traffix serve`; `Err(its log)` when it exits before answering.
    fn try_spawn(&mut self) -> Result<(), String> {
        // A kill -9 leaves the socket file behind; the new server replaces it.
        let _ = std::fs::remove_file(self.dir.path().join("admin.sock"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut cmd = match &self.opts.ulimit {
            Some(u) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit {u} && exec \"$0\" \"$@\""), BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["serve", "--data-dir"]).arg(self.dir.path());
        if self.opts.allow_private_targets {
            cmd.arg("--allow-private-targets");
        }
        if self.opts.insecure_http {
            cmd.arg("--insecure-http");
        }
        if let Some(db) = &self.opts.geoip {
            cmd.env("TRAFFIX_GEOIP__COUNTRY_DB", db);
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        cmd.env("RUST_LOG", "info,traffix=debug");
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let metrics = self.metrics;
        let mut exited = None;
        wait_for("server health", || {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                exited = Some(format!("({st}) {}", self.log()));
                return Some(());
            }
            http_get(metrics, "/healthz").filter(|(s, _)| *s == 200).map(|_| ())
        });
        if let Some(log) = exited {
            self.child = None;
            return Err(log);
        }
        wait_for("admin socket", || self.dir.path().join("admin.sock").exists().then_some(()));
        Ok(())
    }

    /// Runs `traffix ARGS --data-dir D`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).arg("--data-dir").arg(self.dir.path()).output().unwrap()
    }

    /// Runs a CLI command that must succeed and prints JSON.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli(&a);
        assert!(out.status.success(), "traffix {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}"))
    }

    /// Adds a user, optionally credits it, and returns the proxy password.
    pub fn add_user(&self, name: &str, credit: Option<&str>) -> String {
        let v = self.cli_json(&["user", "add", name]);
        if let Some(c) = credit {
            let out = self.cli(&["user", "credit", name, c, "--reason", "test"]);
            assert!(out.status.success(), "credit failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        v["proxy_password"].as_str().unwrap().to_owned()
    }

    pub fn pair_link(&self, user: &str) -> String {
        self.cli_json(&["pair", user])["link"].as_str().unwrap().to_owned()
    }

    pub fn devices(&self) -> Vec<Value> {
        self.cli_json(&["device", "list"]).as_array().unwrap().clone()
    }

    pub fn online_count(&self) -> usize {
        self.devices().iter().filter(|d| d["online"] == true).count()
    }

    /// Pairs and starts a node bound to `bind` and waits until the server lists it online.
    pub fn start_node(&self, owner: &str, bind: &str) -> Node {
        self.start_node_with(owner, bind, &[])
    }

    /// [`Server::start_node`] with `extra` arguments for `traffix node` (the owner's controls:
    /// `--settings FILE`, `--daily-cap 1MB`, `--schedule RULE` …).
    pub fn start_node_with(&self, owner: &str, bind: &str, extra: &[&str]) -> Node {
        let link = self.pair_link(owner);
        let state = self.dir.path().join(format!("node-{bind}.json"));
        let mut node = Node {
            child: None,
            state,
            bind: bind.to_owned(),
            vip: String::new(),
            log: self.dir.path().join(format!("node-{bind}.log")),
        };
        node.spawn_with(Some(&link), extra);
        node.vip = self.wait_node_online(&node);
        node
    }

    /// The device with virtual IP `vip` as `device list` shows it.
    pub fn device(&self, vip: &str) -> Option<Value> {
        self.devices().into_iter().find(|d| d["vip"] == vip)
    }

    /// Waits until the node's device is online and returns its vIP.
    pub fn wait_node_online(&self, node: &Node) -> String {
        wait_for("node online", || {
            let state: Value = serde_json::from_slice(&std::fs::read(&node.state).ok()?).ok()?;
            let vip = state["vip"].as_str()?.to_owned();
            self.devices().iter().any(|d| d["vip"] == vip.as_str() && d["online"] == true).then_some(vip)
        })
    }

    pub fn socks_url(&self, user: &str, pass: &str) -> String {
        format!("socks5h://{user}:{pass}@{}", self.socks)
    }

    pub fn http_proxy_url(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@{}", self.http)
    }

    pub fn metrics_text(&self) -> String {
        http_get(self.metrics, "/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// SIGKILL: the crash case.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(start.elapsed() < PATIENCE, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `traffix node`.
pub struct Node {
    pub child: Option<Child>,
    pub state: PathBuf,
    pub bind: String,
    pub vip: String,
    pub log: PathBuf,
}

impl Node {
    pub fn spawn(&mut self, link: Option<&str>) {
        self.spawn_with(link, &[]);
    }

    /// Starts the node agent with `extra` arguments.
    pub fn spawn_with(&mut self, link: Option<&str>, extra: &[&str]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("node").arg("--state").arg(&self.state).args(["--bind", &self.bind, "--allow-private-targets"]);
        cmd.args(extra);
        if let Some(l) = link {
            cmd.args(["--pair", l]);
        }
        cmd.env("RUST_LOG", "info,traffix=debug");
        self.child = Some(cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn sigterm(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the node process to exit on its own and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let c = self.child.as_mut().unwrap();
        let st = wait_for("node exit", || c.try_wait().unwrap());
        self.child = None;
        st
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs curl with `args` (plus `-sS`), returning the output.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .arg("-sS")
        .arg("--max-time")
        .arg("120")
        .args(args)
        .output()
        .expect("curl is installed (.ci/run installs it)")
}

/// Writes a MaxMind country database mapping each IP to a country (tests/tools/make_mmdb.py).
pub fn make_geoip(path: &Path, pairs: &[(&str, &str)]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/make_mmdb.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(path);
    for (ip, cc) in pairs {
        // ("--asn", "") switches the script to an ASN database.
        cmd.arg(if cc.is_empty() { ip.to_string() } else { format!("{ip}={cc}") });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "make_mmdb.py failed (pip install mmdb-writer): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers of the hostile suite (tests/e2e/attacks.rs): a small-limits profile, the server's
// memory, raw TLS and WebSocket clients and a raw node that speaks tunnel frames itself.

/// The small-limits test profile (as `TRAFFIX_LIMITS__*` env overrides): deadlines of 2–3 s and
/// small caps, so attacks hit them quickly. `extra` overrides or adds keys (without the prefix).
pub fn small_limits(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = [
        ("MAX_CONNECTIONS", "64"),
        ("MAX_CONNECTIONS_PER_IP", "8"),
        ("MAX_HANDSHAKES_PER_IP", "4"),
        ("HANDSHAKE_TIMEOUT_SECS", "2"),
        ("REQUEST_TIMEOUT_SECS", "2"),
        ("IDLE_STREAM_TIMEOUT_SECS", "3"),
        ("NODE_QUEUE_BYTES", "65536"),
        ("WS_MAX_MESSAGE", "131072"),
        ("AUTH_FAILURES_PER_MINUTE_PER_IP", "5"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        match keys.iter_mut().find(|(key, _)| key == k) {
            Some(e) => e.1 = (*v).to_owned(),
            None => keys.push(((*k).to_owned(), (*v).to_owned())),
        }
    }
    keys.into_iter().map(|(k, v)| (format!("TRAFFIX_LIMITS__{k}"), v)).collect()
}

/// Resident memory of a process (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Samples a process's RSS on a thread until stopped; [`RssProbe::stop`] gives the peak.
pub struct RssProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssProbe {
    pub fn start(pid: u32) -> RssProbe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = rss_kib(pid);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(rss_kib(pid))
        });
        RssProbe { stop, thread: Some(thread) }
    }

    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map(|t| t.join().unwrap()).unwrap_or(0)
    }
}

/// Prints one memory figure as a `FIGURE` line (collected into docs/reliability.md).
pub fn figure(attack: &str, profile: &str, held: usize, before: u64, peak: u64, after: u64) {
    let per = if held == 0 { 0.0 } else { peak.saturating_sub(before) as f64 / held as f64 };
    eprintln!(
        "FIGURE attack={attack:?} profile={profile:?} held={held} rss_before_kib={before} rss_peak_kib={peak} rss_after_kib={after} kib_per_conn={per:.1}"
    );
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// The value of an unlabelled metric (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Whether the server process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

/// A TCP connection to `addr` from the loopback address `src` (127.0.0.x).
pub fn connect_from(src: &str, addr: SocketAddr) -> TcpStream {
    let src: std::net::IpAddr = src.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(src, 0))?;
            sock.connect(addr).await
        })
        .unwrap_or_else(|e| panic!("connect {src} -> {addr}: {e}"));
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// Whether the peer has closed the connection or sent something (a peek that does not block).
pub fn closed_or_spoke(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let r = s.peek(&mut [0u8; 1]);
    s.set_nonblocking(false).unwrap();
    match r {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Reads until the peer closes; `Some(bytes)` when it did (EOF or reset) within 30 s, `None`
/// when the connection was still open.
pub fn read_until_closed(r: &mut impl Read, sock: &TcpStream) -> Option<Vec<u8>> {
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Some(out),
        }
    }
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client of the web listener (pinned to the server's key) whose handshake is not run
/// yet; [`tls_to`] runs it.
pub fn tls_client(s: &Server, src: &str) -> Tls {
    traffix::tls::install_provider();
    let pin = traffix::tls::parse_pin(&s.pin).unwrap();
    let cfg = std::sync::Arc::new(traffix::tls::pinned_client_config(pin).unwrap());
    let conn = rustls::ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
    let sock = connect_from(src, s.web);
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// A TLS connection to the web listener from `src`, handshake done.
pub fn tls_to(s: &Server, src: &str) -> Tls {
    let mut t = tls_client(s, src);
    while t.conn.is_handshaking() {
        t.conn.complete_io(&mut t.sock).unwrap();
    }
    t
}

/// The TLS ClientHello a real client sends first (raw record bytes).
pub fn client_hello(s: &Server) -> Vec<u8> {
    traffix::tls::install_provider();
    let pin = traffix::tls::parse_pin(&s.pin).unwrap();
    let cfg = std::sync::Arc::new(traffix::tls::pinned_client_config(pin).unwrap());
    let mut conn = rustls::ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// The upgrade request of /v1/tunnel (with RFC 6455's sample key), offering `extensions` (a
/// `Sec-WebSocket-Extensions` value) when given.
pub fn tunnel_upgrade_request(extensions: Option<&str>) -> String {
    let offer = extensions.map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n")).unwrap_or_default();
    format!(
        "GET /v1/tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
}

/// An HTTP response head read a byte at a time up to its empty line (or the end of the stream),
/// so nothing after it is consumed.
pub fn read_head(io: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && io.read(&mut b).is_ok_and(|n| n == 1) {
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// What a raw WebSocket read got.
#[derive(Debug)]
pub enum WsRead {
    /// A frame: opcode, FIN, payload.
    Msg(u8, bool, Vec<u8>),
    /// Nothing within the wait.
    Quiet,
    /// The connection ended (EOF or an error).
    Closed,
}

/// A raw WebSocket client over TLS: frames are built by hand (any opcode, FIN or size), and
/// reads are buffered so a read that times out loses nothing.
pub struct Ws {
    pub io: Tls,
    rbuf: Vec<u8>,
    /// Send frames without the mask bit (docs/protocol.md "Unmasked frames").
    pub unmasked: bool,
}

impl Ws {
    /// Upgrades on /v1/tunnel from `src` and checks the 101.
    pub fn tunnel(s: &Server, src: &str) -> Ws {
        Ws::tunnel_offering(s, src, None).0
    }

    /// Upgrades on /v1/tunnel from `src`, offering `extensions` (a `Sec-WebSocket-Extensions`
    /// value) when given; checks the 101 and returns its head too.
    pub fn tunnel_offering(s: &Server, src: &str, extensions: Option<&str>) -> (Ws, String) {
        let mut io = tls_to(s, src);
        io.write_all(tunnel_upgrade_request(extensions).as_bytes()).unwrap();
        let head = read_head(&mut io);
        assert!(head.starts_with("HTTP/1.1 101") && head.ends_with("\r\n\r\n"), "{head}");
        (Ws { io, rbuf: Vec::new(), unmasked: false }, head)
    }

    /// Sends one WebSocket frame (masked with a zero key, which leaves the payload as is, unless
    /// [`Ws::unmasked`]).
    pub fn send(&mut self, opcode: u8, fin: bool, payload: &[u8]) -> std::io::Result<()> {
        let mut hdr = vec![if fin { 0x80 } else { 0 } | opcode];
        let n = payload.len();
        let m = if self.unmasked { 0 } else { 0x80 };
        if n < 126 {
            hdr.push(m | n as u8);
        } else if n < 65536 {
            hdr.push(m | 126);
            hdr.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            hdr.push(m | 127);
            hdr.extend_from_slice(&(n as u64).to_be_bytes());
        }
        if !self.unmasked {
            hdr.extend_from_slice(&[0, 0, 0, 0]);
        }
        self.io.write_all(&hdr)?;
        self.io.write_all(payload)?;
        self.io.flush()
    }

    /// Sends a tunnel frame as one binary message.
    pub fn send_frame(&mut self, f: &traffix::tunnel::protocol::Frame) -> std::io::Result<()> {
        self.send(2, true, &f.encode())
    }

    fn parse(&mut self) -> Option<(u8, bool, Vec<u8>)> {
        let b = &self.rbuf;
        if b.len() < 2 {
            return None;
        }
        let (mut len, mut at) = (u64::from(b[1] & 0x7f), 2usize);
        if len == 126 {
            if b.len() < 4 {
                return None;
            }
            len = u64::from(u16::from_be_bytes([b[2], b[3]]));
            at = 4;
        } else if len == 127 {
            if b.len() < 10 {
                return None;
            }
            len = u64::from_be_bytes(b[2..10].try_into().unwrap());
            at = 10;
        }
        let masked = b[1] & 0x80 != 0;
        let key_at = at;
        if masked {
            at += 4;
        }
        let end = at + len as usize;
        if b.len() < end {
            return None;
        }
        let mut payload = b[at..end].to_vec();
        if masked {
            let key: [u8; 4] = b[key_at..key_at + 4].try_into().unwrap();
            payload.iter_mut().enumerate().for_each(|(i, x)| *x ^= key[i % 4]);
        }
        let (op, fin) = (b[0] & 0x0f, b[0] & 0x80 != 0);
        self.rbuf.drain(..end);
        Some((op, fin, payload))
    }

    /// The next WebSocket frame, waiting at most `wait`.
    pub fn read(&mut self, wait: Duration) -> WsRead {
        let _ = self.io.sock.set_read_timeout(Some(wait));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some((op, fin, p)) = self.parse() {
                return WsRead::Msg(op, fin, p);
            }
            match self.io.read(&mut buf) {
                Ok(0) => return WsRead::Closed,
                Ok(n) => self.rbuf.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return WsRead::Quiet;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return WsRead::Closed,
            }
        }
    }

    /// The next tunnel frame (binary message), skipping pings; `None` once the connection ends
    /// or a close frame arrives (its payload is kept in `closed_with`).
    pub fn next_frame(&mut self) -> Option<traffix::tunnel::protocol::Frame> {
        loop {
            match self.read(PATIENCE) {
                WsRead::Msg(2, _, p) => {
                    return Some(traffix::tunnel::protocol::Frame::decode(p.into()).expect("a valid frame"));
                }
                WsRead::Msg(8, _, _) | WsRead::Closed => return None,
                WsRead::Msg(..) => {}
                WsRead::Quiet => panic!("the server said nothing for {PATIENCE:?}"),
            }
        }
    }

    /// Reads frames until the connection ends; returns the tunnel frames seen on the way.
    pub fn until_closed(&mut self) -> Vec<traffix::tunnel::protocol::Frame> {
        let mut seen = Vec::new();
        while let Some(f) = self.next_frame() {
            seen.push(f);
        }
        seen
    }
}

/// A paired node's identity and a raw tunnel client that uses it: pairs a real `traffix node`
/// for `owner` from `bind`, stops it, and keeps its state file (the key) for [`raw_node`].
pub fn paired_identity(s: &Server, owner: &str, bind: &str) -> PathBuf {
    let mut node = s.start_node(owner, bind);
    node.kill9();
    wait_for("the paired node's agent offline", || (s.online_count() == 0).then_some(()));
    node.state.clone()
}

/// Runs HELLO → CHALLENGE → PROOF → WELCOME from `src` with the key in `state`, declaring
/// `max_inflight`; returns the tunnel and the WELCOME.
pub fn raw_node(
    s: &Server,
    state: &Path,
    src: &str,
    max_inflight: Option<u32>,
) -> (Ws, traffix::tunnel::protocol::Welcome) {
    use traffix::tunnel::protocol::{self as p, Frame};
    let id = traffix::node::state::NodeIdentity::load(state).unwrap().unwrap();
    let key = id.keypair().unwrap();
    let device = id.device_id().unwrap();
    let pin = id.pin_bytes().unwrap();
    let mut ws = Ws::tunnel(s, src);
    ws.send_frame(&Frame::Hello(p::Hello {
        min_version: p::MIN_PROTOCOL_VERSION,
        max_version: p::PROTOCOL_VERSION,
        device_id: Some(device),
        agent: Some("raw-test-node".into()),
        max_streams: Some(64),
        max_inflight,
        control_only: false,
    }))
    .unwrap();
    let challenge = match ws.next_frame() {
        Some(Frame::Challenge(c)) => c,
        other => panic!("expected CHALLENGE, got {other:?}"),
    };
    let sig = key.sign(&traffix::identity::challenge_message(&pin, &device, &challenge.nonce));
    ws.send_frame(&Frame::Proof(p::Proof { nonce: challenge.nonce, signature: sig.as_ref().to_vec() })).unwrap();
    match ws.next_frame() {
        Some(Frame::Welcome(w)) => (ws, w),
        other => panic!("expected WELCOME, got {other:?}"),
    }
}

/// A SOCKS5 client's greeting offering username/password, then its RFC 1929 request.
pub fn socks5_sign_in(user: &str, pass: &str) -> Vec<u8> {
    let mut req = vec![5, 1, 2, 1, user.len() as u8];
    req.extend_from_slice(user.as_bytes());
    req.push(pass.len() as u8);
    req.extend_from_slice(pass.as_bytes());
    req
}

/// A SOCKS5 CONNECT (RFC 1929 authentication) from `src` to a domain target: the socket and the
/// reply code (0 = succeeded), or `None` when the server closed before replying.
pub fn socks5_connect(
    src: &str,
    addr: SocketAddr,
    user: &str,
    pass: &str,
    host: &[u8],
    port: u16,
) -> (TcpStream, Option<u8>) {
    let mut s = connect_from(src, addr);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(&socks5_sign_in(user, pass));
    let mut b = [0u8; 4];
    if s.read_exact(&mut b).is_err() || b != [5, 2, 1, 0] {
        return (s, None);
    }
    let mut c = vec![5, 1, 0, 3, host.len() as u8];
    c.extend_from_slice(host);
    c.extend_from_slice(&port.to_be_bytes());
    let _ = s.write_all(&c);
    let mut r = [0u8; 10];
    match s.read_exact(&mut r) {
        Ok(()) => (s, Some(r[1])),
        Err(_) => (s, None),
    }
}
