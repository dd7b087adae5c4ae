//! What the tunnel and fleet benchmarks share: the origin, the SOCKS5 client, starting a server
//! data directory on safe ports, child processes killed on drop, and the `/proc` readings.
//! Every item here is used by both (each bench is its own crate, so an item one of them leaves
//! unused would be a dead-code warning there); what only one needs stays in its file.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_traffix");

/// `TRAFFIX_BENCH_SCALE`: the factor on every workload's size (1 by default).
pub fn scale() -> f64 {
    std::env::var("TRAFFIX_BENCH_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0)
}

/// The `p` quantile of `v` (sorted in place).
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

// ---------------------------------------------------------------- ports
/// The ports this process handed out, so no two of its listeners are given the same one.
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port free right now and never handed out before in this process, chosen in 20000-31999,
/// below Linux's default ephemeral range (32768-60999), like `tests/common/mod.rs` `free_port`;
/// unlike it, this one also leaves out the machine's own ephemeral range where that reaches
/// lower, and panics rather than fall back to port 0. A port the kernel hands out for port 0
/// can be taken again by any outgoing connection before the server binds it, and the
/// benchmarks make many (the fleet's soak over a million).
pub fn free_port() -> u16 {
    let (lo, hi) = ephemeral_range();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 20);
    let mut handed = HANDED_OUT.lock().unwrap();
    for i in 0..4000u64 {
        let mut x = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let port = 20_000 + (x % 12_000) as u16;
        if (lo..=hi).contains(&port) || handed.contains(&port) {
            continue;
        }
        if TcpListener::bind(("0.0.0.0", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.push(port);
            return port;
        }
    }
    panic!("no free port in 20000-31999 outside the ephemeral range {lo}-{hi}");
}

/// `net.ipv4.ip_local_port_range` (Linux's default where it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|v| v.parse().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (32768, 60999),
    }
}

// ---------------------------------------------------------------- traffix
/// `traffix ARGS --data-dir DIR --json`: its JSON answer (panics if it fails).
pub fn traffix(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN).args(args).arg("--data-dir").arg(dir).arg("--json").output().unwrap();
    assert!(out.status.success(), "traffix {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `traffix init` in `dir` with its four listeners on [`free_port`]s, then the paying client
/// `bench` with a deposit of 1,000,000.00: (SOCKS5 address, metrics address, `bench`'s proxy
/// password). The addresses are read back from the saved config, as the server will use them.
pub fn init(dir: &Path) -> (SocketAddr, SocketAddr, String) {
    let ports: Vec<String> = (0..4).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let [web, socks, http, metrics] = [0, 1, 2, 3].map(|i| ports[i].as_str());
    traffix(
        dir,
        &["init", "--web-listen", web, "--socks-listen", socks, "--http-listen", http, "--metrics-listen", metrics],
    );
    let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("traffix.toml")).unwrap()).unwrap();
    let addr = |k: &str| -> SocketAddr { cfg["server"][k].as_str().unwrap().parse().unwrap() };
    let pass = traffix(dir, &["user", "add", "bench"])["proxy_password"].as_str().unwrap().to_owned();
    traffix(dir, &["user", "credit", "bench", "1000000"]);
    (addr("socks_listen"), addr("metrics_listen"), pass)
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- origin
/// A loopback origin. Request: op (1 byte) + n (u64, big-endian). 'D' / 'P': send n bytes and
/// close. 'U': read n bytes, answer 1 byte. Anything else ('H'): hold until EOF.
pub async fn origin() -> SocketAddr {
    // A deep accept queue, so listen overflows counted by the benchmarks belong to the proxies
    // under test. Bound here and now, so port 0 is safe.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(8192).unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let out: Arc<[u8]> = vec![0x5au8; 256 * 1024].into();
        loop {
            let Ok((mut s, _)) = l.accept().await else { continue };
            let out = out.clone();
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut hdr = [0u8; 9];
                if s.read_exact(&mut hdr).await.is_err() {
                    return;
                }
                let n = u64::from_be_bytes(hdr[1..].try_into().unwrap());
                match hdr[0] {
                    b'D' | b'P' => {
                        let mut left = n;
                        while left > 0 {
                            let k = left.min(out.len() as u64) as usize;
                            if s.write_all(&out[..k]).await.is_err() {
                                return;
                            }
                            left -= k as u64;
                        }
                        let _ = s.shutdown().await;
                    }
                    b'U' => {
                        let mut buf = vec![0u8; 256 * 1024];
                        let mut left = n;
                        while left > 0 {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => left = left.saturating_sub(k as u64),
                            }
                        }
                        let _ = s.write_all(b"k").await;
                    }
                    _ => {
                        let mut b = [0u8; 1];
                        let _ = s.read(&mut b).await;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- client
/// A SOCKS5 CONNECT to the IPv4 `target` through `proxy`, with RFC 1929 username/password
/// authentication when `auth` is given (no authentication otherwise).
pub async fn socks5(proxy: SocketAddr, auth: Option<(&str, &str)>, target: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    let method = if auth.is_some() { 2u8 } else { 0u8 };
    s.write_all(&[5, 1, method]).await?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await?;
    if r[1] != method {
        return Err(std::io::Error::other("socks method refused"));
    }
    if let Some((user, pass)) = auth {
        let mut m = vec![1, user.len() as u8];
        m.extend_from_slice(user.as_bytes());
        m.push(pass.len() as u8);
        m.extend_from_slice(pass.as_bytes());
        s.write_all(&m).await?;
        s.read_exact(&mut r).await?;
        if r[1] != 0 {
            return Err(std::io::Error::other("socks auth failed"));
        }
    }
    let IpAddr::V4(ip) = target.ip() else { unreachable!("the origin is on 127.0.0.1") };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&ip.octets());
    req.extend_from_slice(&target.port().to_be_bytes());
    s.write_all(&req).await?;
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).await?;
    if rep[1] != 0 {
        return Err(std::io::Error::other(format!("socks reply {}", rep[1])));
    }
    Ok(s)
}

// ---------------------------------------------------------------- /proc
/// User + system CPU seconds of process `pid` so far (0 once it is gone).
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime, then cutime and cstime: the children it has reaped (a peer's workers
    // that came and went during the workload).
    let ticks: f64 = (11..=14).filter_map(|i| f.get(i)?.parse::<f64>().ok()).sum();
    ticks / 100.0
}

/// Resident memory of process `pid` in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))
        .unwrap_or(0)
}

/// The machine's count of connections dropped because a listen queue was full.
pub fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    if lines.len() < 2 {
        return 0;
    }
    let names: Vec<&str> = lines[0].split_whitespace().collect();
    let vals: Vec<&str> = lines[1].split_whitespace().collect();
    names.iter().position(|n| *n == "ListenOverflows").and_then(|i| vals.get(i)?.parse().ok()).unwrap_or(0)
}
