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

pub fn free_port() -> u16 {
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
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(dir.path())
            .args(["--web-listen", "127.0.0.1:0", "--socks-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        let init: Value = serde_json::from_slice(&out.stdout).unwrap();
        let cfg = std::fs::read_to_string(dir.path().join("traffix.toml")).unwrap();
        let cfg: toml::Table = toml::from_str(&cfg).unwrap();
        let server = cfg["server"].as_table().unwrap();
        let get = |k: &str| server[k].as_str().unwrap().parse::<SocketAddr>().unwrap();
        let mut s = Server {
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
        s.spawn();
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
        wait_for("server health", || {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("server exited early ({st}):\n{}", self.log());
            }
            http_get(metrics, "/healthz").filter(|(s, _)| *s == 200)
        });
        wait_for("admin socket", || self.dir.path().join("admin.sock").exists().then_some(()));
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
        let link = self.pair_link(owner);
        let state = self.dir.path().join(format!("node-{bind}.json"));
        let mut node = Node {
            child: None,
            state,
            bind: bind.to_owned(),
            vip: String::new(),
            log: self.dir.path().join(format!("node-{bind}.log")),
        };
        node.spawn(Some(&link));
        node.vip = self.wait_node_online(&node);
        node
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
