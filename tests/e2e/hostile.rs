//! Hostile bytes on every listener: each bad connection gets an error or is dropped, and the
//! server goes on serving everyone else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::*;

/// Sends `bytes`, then reads whatever comes back until the server closes or goes quiet.
fn poke(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn garbage(n: usize, seed: u64) -> Vec<u8> {
    payload(n, seed)
}

/// A raw WebSocket client over TLS, written in Python's standard library, that upgrades on
/// /v1/tunnel and then sends `frames_hex` as binary WebSocket messages (hex, or `py:EXPR`).
fn hostile_tunnel(s: &Server, frames_hex: &[&str]) -> String {
    let frames = frames_hex
        .iter()
        .map(|h| match h.strip_prefix("py:") {
            Some(expr) => expr.to_owned(),
            None => format!("bytes.fromhex('{h}')"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let script = format!(
        r#"
import os, socket, ssl, struct, base64
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection(("{ip}", {port}), timeout=20)
s = ctx.wrap_socket(raw, server_hostname="localhost")
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /v1/tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
head = b""
while b"\r\n\r\n" not in head:
    c = s.recv(1)
    if not c: break
    head += c
print(head.split(b"\r\n")[0].decode())
def send(payload, opcode=2):
    mask = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x80 | opcode])
    if n < 126: hdr += bytes([0x80 | n])
    elif n < 65536: hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
    else: hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
try:
    for f in [{frames}]:
        send(f)
    data = b""
    while True:
        c = s.recv(65536)
        if not c: break
        data += c
    print("closed", len(data))
except Exception as e:
    print("closed", type(e).__name__)
"#,
        ip = s.web.ip(),
        port = s.web.port()
    );
    let out = std::process::Command::new("python3").arg("-c").arg(script).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn hostile_bytes_on_each_listener_leave_the_server_serving() {
    // Profile: a short handshake timeout, so half-sent TLS records are dropped quickly.
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: vec![("TRAFFIX_LIMITS__HANDSHAKE_TIMEOUT_SECS".into(), "2".into())],
        ..ServerOpts::default()
    });
    let pass = s.add_user("gina", Some("5"));
    let _node = s.start_node("gina", "127.0.0.2");
    let o = origin().addr;
    let works = || {
        let out = curl(&["--proxy", &s.socks_url("gina", &pass), &format!("http://{o}/hello")]);
        assert!(out.status.success(), "server stopped serving: {}", String::from_utf8_lossy(&out.stderr));
    };

    // SOCKS5: random bytes, wrong version, truncated greeting, method list lies, huge username.
    for bad in [
        garbage(4096, 1),
        b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00".to_vec(),
        b"\x05".to_vec(),
        b"\x05\xff".to_vec(),
        [b"\x05\x01\x02\x01\xff".to_vec(), vec![b'a'; 255], b"\x00".to_vec()].concat(),
        b"\x05\x01\x02\x01\x05alice\x03pwd\x05\x09\x00\x03\x00".to_vec(),
    ] {
        poke(s.socks, &bad);
    }
    works();

    // HTTP proxy: garbage, a huge head, bad request lines, bad Content-Length, bad Basic.
    let reply = poke(s.http, &garbage(2048, 2));
    assert!(reply.starts_with(b"HTTP/1.1 400") || reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    let huge = [b"GET http://x/ HTTP/1.1\r\n".to_vec(), vec![b'X'; 70_000]].concat();
    let reply = poke(s.http, &huge);
    assert!(
        reply.starts_with(b"HTTP/1.1 431") || reply.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let reply = poke(s.http, b"GET http://x/ HTTP/1.1\r\nProxy-Authorization: Basic !!!\r\n\r\n");
    assert!(reply.starts_with(b"HTTP/1.1 407"));
    let reply = poke(s.http, b"CONNECT nowhere HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with(b"HTTP/1.1 407"), "auth comes first");
    works();

    // Web listener: plain text on the TLS port, a broken TLS record, then hostile tunnel frames.
    poke(s.web, b"GET / HTTP/1.1\r\n\r\n");
    poke(s.web, &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00]);
    poke(s.web, &garbage(8192, 3));
    for frames in [
        vec!["py:bytes.fromhex('130000000001') + bytes(70000)"], // beyond the 64 KiB WebSocket frame limit
        vec!["ff00000000000000"],                                // unknown frame type
        vec!["01"],                                              // truncated header
        vec!["0100000000000100"],                                // truncated TLV
        vec!["13000000000100"],                                  // DATA before any handshake
        vec!["010000000000010001010200010103"],                  // HELLO then EOF
    ] {
        let r = hostile_tunnel(&s, &frames);
        assert!(r.contains("101"), "upgrade first: {r}");
        assert!(r.contains("closed"), "the server closes a hostile tunnel: {r}");
    }
    works();
    assert!(s.log().contains("node handshake refused"));
    assert_eq!(s.online_count(), 1);
}

/// One RFC 1929 attempt: the status byte the server answers (0 = success).
fn socks5_auth(addr: SocketAddr, user: &[u8], pass: &[u8]) -> Option<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(&[5, 1, 2]).ok()?;
    let mut method = [0u8; 2];
    s.read_exact(&mut method).ok()?;
    assert_eq!(method, [5, 2], "username/password is the only method offered");
    let mut req = vec![1, user.len() as u8];
    req.extend_from_slice(user);
    req.push(pass.len() as u8);
    req.extend_from_slice(pass);
    s.write_all(&req).ok()?;
    let mut status = [0u8; 2];
    s.read_exact(&mut status).ok()?;
    Some(status[1])
}

/// Forty failed proxy logins (one with CR/LF in the name): every one is refused and counted,
/// but the log gets a handful of lines, never one per attempt, and no forged line.
#[test]
fn failed_proxy_authentications_are_counted_but_not_logged_one_by_one() {
    let s = Server::start();
    for i in 0..40 {
        let user = if i == 0 { b"evil\r\nFORGED log line".to_vec() } else { format!("nobody{i}").into_bytes() };
        assert_ne!(socks5_auth(s.socks, &user, b"wrong"), Some(0));
    }
    let metrics = s.metrics_text();
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("traffix_proxy_auth_failures_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(failures, Some(40.0), "every failure is counted");
    let log = s.log();
    let lines = log.lines().filter(|l| l.contains("socks5 authentication failed")).count();
    assert!((1..=10).contains(&lines), "{lines} lines for 40 failures:\n{log}");
    assert!(!log.lines().any(|l| l.starts_with("FORGED")), "a user name cannot start a log line:\n{log}");
}

/// Slowloris on the web listener's body: a request that sends its head and then trickles (here:
/// stops sending) its body is answered and closed once `request_timeout_secs` have passed,
/// instead of holding the connection for as long as the client likes; the server serves
/// others meanwhile.
#[test]
fn a_trickled_request_body_is_cut_at_the_request_deadline() {
    let s = Server::start_with(ServerOpts {
        env: vec![("TRAFFIX_LIMITS__REQUEST_TIMEOUT_SECS".into(), "2".into())],
        ..ServerOpts::default()
    });
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("{ip}", {port}), timeout=30), server_hostname="localhost")
s.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: 100000\r\n\r\n" + b'{{"username": "admin", ')
got = b""
try:
    while True:
        c = s.recv(4096)
        if not c:
            break
        got += c
    print("closed", got.split(b"\r\n")[0].decode())
except socket.timeout:
    print("held", got.split(b"\r\n")[0].decode())
except (ssl.SSLError, OSError) as e:
    print("closed", got.split(b"\r\n")[0].decode(), e)
"#,
        ip = s.web.ip(),
        port = s.web.port()
    );
    let out = std::process::Command::new("python3").arg("-c").arg(script).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("closed"), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" 400 ") || !text.contains("HTTP/1.1"), "answered with a client error, if at all: {text}");
    let health = curl(&["-sk", "-o", "/dev/null", "-w", "%{http_code}", &format!("https://{}/healthz", s.web)]);
    assert_eq!(String::from_utf8_lossy(&health.stdout), "200");
}

/// Proxy-auth throttles per address and per (account, address): a client behind the same
/// address as someone failing (a shared NAT) is still served with its correct password, while
/// the account that was failing from there is refused unchecked once its own limit is reached.
/// (The per-address limit alone used to refuse everyone behind that address.)
#[test]
fn a_clean_account_is_served_from_an_address_over_its_failure_limit() {
    let s = Server::start();
    let alice = s.add_user("alice", None);
    let victim = s.add_user("victim", None);
    // 25 failures from 127.0.0.1: the address is over its limit of 20, and `victim` over its
    // own 10.
    for i in 0..25 {
        let user = if i % 2 == 0 { "victim".to_owned() } else { format!("nobody{i}") };
        assert_ne!(socks5_auth(s.socks, user.as_bytes(), b"wrong"), Some(0));
    }
    assert_eq!(socks5_auth(s.socks, b"alice", alice.as_bytes()), Some(0), "a clean account is served");
    assert_ne!(socks5_auth(s.socks, b"victim", victim.as_bytes()), Some(0), "a failing account is refused unchecked");
}

/// Pairing attempts are throttled per address before any lookup: after 20 in a minute the
/// server answers `limit_exceeded` instead of checking the code, and another address pairs.
#[test]
fn pairing_attempts_are_limited_per_address() {
    let s = Server::start();
    s.add_user("owner", None);
    let good = s.pair_link("owner");
    let bad = good.replace("code=", "code=X");
    let dir = tempfile::tempdir().unwrap();
    // A node agent pairing from `bind`; its log lines arrive on the returned channel.
    let spawn = |link: &str, bind: &str, n: usize| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_traffix"))
            .args(["node", "--pair", link, "--state"])
            .arg(dir.path().join(format!("node-{bind}-{n}.json")))
            .args(["--bind", bind, "--allow-private-targets"])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(err)).map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (child, rx)
    };
    // Waits (bounded) for a log line containing `needle`.
    let saw = |rx: &std::sync::mpsc::Receiver<String>, needle: &str| {
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
            if line.contains(needle) {
                return true;
            }
            seen.push(line);
        }
        panic!("no line with {needle:?} in {seen:#?}");
    };
    for n in 0..20 {
        let (mut child, rx) = spawn(&bad, "127.0.0.5", n);
        assert!(saw(&rx, "pairing code"), "attempt {n}");
        let _ = child.kill();
        let _ = child.wait();
    }
    let (mut child, rx) = spawn(&good, "127.0.0.5", 20);
    assert!(saw(&rx, "pairing attempts a minute"), "the 21st is refused before the code is looked up");
    let _ = child.kill();
    let _ = child.wait();
    let (mut child, _rx) = spawn(&good, "127.0.0.6", 21);
    wait_for("the node from another address comes online", || (s.online_count() == 1).then_some(()));
    let _ = child.kill();
    let _ = child.wait();
}
