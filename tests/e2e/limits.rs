//! SECURITY.md §2 limits, each set through its `[limits]` key for the test and enforced by the
//! real server: per-client stream cap and rate, handshake timeout, idle stream timeout.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn client_stream_cap_and_rate_limit_refuse_with_a_reason() {
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: env(&[
            ("TRAFFIX_LIMITS__CLIENT_MAX_STREAMS", "2"),
            ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_PER_S", "1"),
            ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_BURST", "100"),
        ]),
        ..ServerOpts::default()
    });
    let pass = s.add_user("ivan", Some("5"));
    let _node = s.start_node("ivan", "127.0.0.2");
    let o = origin().addr;
    // Two endless downloads hold both stream slots.
    let proxy = s.socks_url("ivan", &pass);
    let mut long: Vec<_> = (0..2)
        .map(|_| {
            Command::new("curl")
                .args(["-sS", "--proxy", &proxy, "-o", "/dev/null", &format!("http://{o}/forever")])
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_for("two live streams", || s.metrics_text().contains("traffix_streams_active 2").then_some(()));
    let (st, body) = {
        let out = curl(&["-i", "-x", &s.http_proxy_url("ivan", &pass), &format!("http://{o}/hello")]);
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        (t.lines().next().unwrap_or_default().to_owned(), t)
    };
    assert!(st.contains(" 429"), "third stream over the cap: {st}");
    assert!(body.contains("too many open streams (limit 2)"), "{body}");
    for c in &mut long {
        let _ = c.kill();
        let _ = c.wait();
    }
    wait_for("streams released", || s.metrics_text().contains("traffix_streams_active 0").then_some(()));
    assert!(curl(&["--proxy", &proxy, &format!("http://{o}/hello")]).status.success());
}

#[test]
fn the_new_stream_rate_waits_up_to_a_second_then_refuses() {
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: env(&[
            ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_PER_S", "1"),
            ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_BURST", "2"),
        ]),
        ..ServerOpts::default()
    });
    let pass = s.add_user("judy", Some("5"));
    let _node = s.start_node("judy", "127.0.0.2");
    let o = origin().addr;
    // Six at once: two from the burst, one after waiting for a token, the rest refused.
    let mut args =
        vec!["-Z".to_owned(), "-x".into(), s.http_proxy_url("judy", &pass), "-w".into(), "%{http_code}\\n".into()];
    for _ in 0..6 {
        args.extend(["-o".into(), "/dev/null".into(), format!("http://{o}/hello")]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = curl(&a);
    let codes: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    let ok = codes.iter().filter(|c| *c == "200").count();
    let limited = codes.iter().filter(|c| *c == "429").count();
    assert_eq!(ok + limited, 6, "{codes:?}");
    assert!(ok >= 2 && limited >= 1, "burst admitted, excess refused: {codes:?}");
}

#[test]
fn silent_clients_are_dropped_after_the_handshake_timeout_and_idle_streams_are_cut() {
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: env(&[("TRAFFIX_LIMITS__HANDSHAKE_TIMEOUT_SECS", "1"), ("TRAFFIX_LIMITS__IDLE_STREAM_TIMEOUT_SECS", "1")]),
        ..ServerOpts::default()
    });
    let pass = s.add_user("kim", Some("5"));
    let _node = s.start_node("kim", "127.0.0.2");
    // A connection that never speaks is closed by the server (EOF before our own 30 s bound).
    for addr in [s.socks, s.http, s.web] {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).expect("the server closes a silent connection instead of holding it");
        assert!(
            n == 0 || buf.starts_with(b"HTTP/1.1 408") || buf.starts_with(b"HTTP/1.1 400"),
            "{addr}: {:?}",
            &buf[..n]
        );
    }
    // A stream that moves no bytes is cut after the idle timeout: the client sees EOF.
    let script = format!(
        r#"
from python_socks.sync import Proxy
p = Proxy.from_url("socks5://kim:{pass}@{socks}", rdns=True)
s = p.connect(dest_host="{host}", dest_port={port}, timeout=30)
s.settimeout(30)
print("eof" if s.recv(1) == b"" else "data")
"#,
        socks = s.socks,
        host = origin().addr.ip(),
        port = origin().addr.port()
    );
    let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "eof", "{}", String::from_utf8_lossy(&out.stderr));
    // The stream's log line is written right after the socket closes: wait for it.
    // (Whichever idle timer fires first, the server's or the node's, the end is `idle_timeout`.)
    let start = std::time::Instant::now();
    while !s.log().contains("end=\"idle_timeout\"") {
        assert!(start.elapsed() < PATIENCE, "no idle_timeout in the log:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a client from `src` (a loopback address of its own) gets on `addr` after sending
/// `send`: the first bytes of the answer, or what went wrong.
fn answer_from(src: &str, addr: std::net::SocketAddr, send: &[u8]) -> String {
    let script = format!(
        r#"
import socket, sys
s = socket.socket(); s.settimeout(20); s.bind(("{src}", 0)); s.connect(("{ip}", {port}))
s.sendall(bytes.fromhex("{hex}"))
try:
    print(s.recv(64).hex())
except Exception as e:
    print("error", e)
"#,
        ip = addr.ip(),
        port = addr.port(),
        hex = hex::encode(send)
    );
    let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A flood of unfinished handshakes from one address: on every listener the connection over the
/// cap is closed at once (the HTTP proxy first answers 503 with Retry-After) — not after the
/// handshake timeout — while accepting goes on for everyone else, and a freed place is usable
/// again. (Before the caps, a listener took every connection and held each until its
/// handshake timed out.)
#[test]
fn connection_caps_refuse_the_excess_at_once_and_accepting_goes_on() {
    let s = Server::start_with(ServerOpts {
        env: env(&[
            ("TRAFFIX_LIMITS__MAX_CONNECTIONS_PER_IP", "3"),
            ("TRAFFIX_LIMITS__MAX_HANDSHAKES_PER_IP", "2"),
            ("TRAFFIX_LIMITS__HANDSHAKE_TIMEOUT_SECS", "600"),
        ]),
        ..ServerOpts::default()
    });
    let greeting: &[u8] = b"\x05\x01\x02";
    for (name, addr, hello, served) in [
        ("socks5", s.socks, greeting, "0502"),
        (
            "http proxy",
            s.http,
            &b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
            "485454502f312e3120343037",
        ),
        // Plain HTTP to the TLS listener: a served connection gets a TLS alert record (0x15).
        ("web", s.web, &b"GET /healthz HTTP/1.1\r\n\r\n"[..], "15"),
    ] {
        let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut third = TcpStream::connect(addr).unwrap();
        third.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        let end = third.read_to_end(&mut got);
        assert!(end.is_ok(), "{name}: the connection over the cap is closed at once, not held: {end:?}");
        if name == "http proxy" {
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("HTTP/1.1 503 "), "{name}: {text}");
            assert!(text.contains("Retry-After: 5\r\n") && text.contains("connection_limit_reached"), "{text}");
        }
        // Another address is served meanwhile.
        let other = answer_from("127.0.0.2", addr, hello);
        assert!(other.starts_with(served), "{name} from 127.0.0.2: {other:?}");
        // Places are freed when connections end.
        drop(held);
        wait_for("the places are freed", || answer_from("127.0.0.1", addr, hello).starts_with(served).then_some(()));
    }
    // At least the one refusal per listener above (a retry while places were still being freed
    // may add more).
    let refused = s
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("traffix_connections_refused_total ").and_then(|v| v.trim().parse::<f64>().ok()));
    assert!(refused.is_some_and(|n| n >= 3.0), "refusals are counted: {refused:?}");
}

/// `(soft, hard)` "Max open files" of a process, from /proc.
fn nofile(pid: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_owned();
    let mut f = line["Max open files".len()..].split_whitespace();
    (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
}

/// One listener's flood must not take the descriptors the others need: the server raises its
/// soft open-file limit to the hard one at start, and under a low hard limit it lowers
/// `max_connections` so three full listeners still leave room (and says so): three fifths of it
/// for the web listener, which holds the node tunnels, a fifth for each proxy listener.
#[test]
fn the_server_raises_its_open_file_limit_and_fits_its_caps_under_it() {
    let s = Server::start_with(ServerOpts { ulimit: Some("-Sn 512".into()), ..ServerOpts::default() });
    let pid = s.child.as_ref().unwrap().id().to_string();
    let (soft, hard) = nofile(&pid);
    assert_eq!(soft, hard, "soft limit raised from 512 to the hard limit");

    let s = Server::start_with(ServerOpts { ulimit: Some("-n 1024".into()), ..ServerOpts::default() });
    let pid = s.child.as_ref().unwrap().id().to_string();
    assert_eq!(nofile(&pid), ("1024".to_owned(), "1024".to_owned()));
    // The log's fields, without terminal colours.
    let log: String = s.log().split('\x1b').map(|part| part.split_once('m').map_or(part, |(_, rest)| rest)).collect();
    assert!(log.contains("lowered to fit the open-file limit") && log.contains("web=306 proxy=102"), "{log}");
}

/// The fitted caps are the ones applied: under `ulimit -n 1024` SOCKS5 holds (1024 − 512) / 5 =
/// 102 connections at once and closes the next ones at once (the per-address caps are raised
/// out of the way; the admitted ones wait in their SOCKS5 handshake).
#[test]
fn a_proxy_listener_refuses_past_its_fitted_share_of_the_descriptors() {
    let s = Server::start_with(ServerOpts {
        ulimit: Some("-n 1024".into()),
        env: env(&[
            ("TRAFFIX_LIMITS__MAX_CONNECTIONS_PER_IP", "1000"),
            ("TRAFFIX_LIMITS__MAX_HANDSHAKES_PER_IP", "1000"),
        ]),
        ..ServerOpts::default()
    });
    let out = python(&format!(
        r#"
import socket, select, time
conns = [socket.create_connection(("{ip}", {port}), timeout=10) for _ in range(130)]
closed, pending, deadline = 0, list(conns), time.time() + 5
while pending and time.time() < deadline:
    ready, _, _ = select.select(pending, [], [], 0.5)
    for c in ready:
        try:
            gone = c.recv(1) == b""
        except ConnectionResetError:
            gone = True
        closed += gone
        pending.remove(c)
print("closed", closed)
"#,
        ip = s.socks.ip(),
        port = s.socks.port()
    ));
    assert!(out.contains("closed 28"), "130 connections, 102 admitted: {out}");
}

/// Runs a Python script (standard library only) and returns its output.
fn python(script: &str) -> String {
    let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Python: `tls()` opens a TLS connection to the web listener; `status(s, req)` sends a request
/// and returns its status line (and reads its small body).
fn web_client(s: &Server) -> String {
    format!(
        r#"
import socket, ssl, time, os, base64
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def tls():
    return ctx.wrap_socket(socket.create_connection(("{ip}", {port}), timeout=30), server_hostname="localhost")
def status(s, req):
    s.sendall(req)
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            return "closed"
        head += c
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    if length:
        body = b""
        while len(body) < length[0]:
            body += s.recv(length[0] - len(body))
    return head.split(b"\r\n")[0].decode()
def upgrade():
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET /v1/tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode()
GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
"#,
        ip = s.web.ip(),
        port = s.web.port()
    )
}

/// The web listener's keep-alive idle time is its own key: a connection idle for longer than the
/// head timeout still serves its next request (it used to be closed after the head timeout), and
/// is closed after `keepalive_idle_secs` with nothing sent; a head that starts but does not end
/// is still cut at the head timeout.
#[test]
fn keep_alive_connections_idle_for_keepalive_idle_secs_and_heads_are_cut_at_the_head_timeout() {
    let s = Server::start_with(ServerOpts {
        env: env(&[("TRAFFIX_LIMITS__HANDSHAKE_TIMEOUT_SECS", "2"), ("TRAFFIX_LIMITS__KEEPALIVE_IDLE_SECS", "3600")]),
        ..ServerOpts::default()
    });
    let out = python(&format!(
        "{}\nc = tls()\nprint(status(c, GET))\ntime.sleep(4)\nprint(status(c, GET))\n\
         h = tls()\nh.sendall(b'GET /healthz HTTP/1.1\\r\\n')\nprint('head', h.recv(100) or b'closed')\n",
        web_client(&s)
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"HTTP/1.1 200 OK"), "{out}");
    assert_eq!(lines.get(1), Some(&"HTTP/1.1 200 OK"), "served after 4 s idle, past the 2 s head timeout: {out}");
    assert!(lines.get(2).is_some_and(|l| l.starts_with("head") && !l.contains("timed out")), "{out}");

    let s = Server::start_with(ServerOpts {
        env: env(&[("TRAFFIX_LIMITS__HANDSHAKE_TIMEOUT_SECS", "2"), ("TRAFFIX_LIMITS__KEEPALIVE_IDLE_SECS", "3")]),
        ..ServerOpts::default()
    });
    let out = python(&format!(
        "{}\nc = tls()\nprint(status(c, GET))\nc.settimeout(50)\nprint('idle', c.recv(100) or b'closed')\n",
        web_client(&s)
    ));
    assert!(out.contains("HTTP/1.1 200 OK") && out.contains("idle b'closed'"), "closed when idle: {out}");
}

/// A node's tunnel is counted as a handshake of its address again from its WebSocket upgrade
/// until the server's WELCOME (an upgrade over the cap gets 503 with Retry-After), and once
/// established counts only against the listener's total: more nodes than
/// `max_connections_per_ip` come online from one address, which is still served.
#[test]
fn tunnels_count_as_handshakes_until_welcomed_and_then_not_per_address() {
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: env(&[
            // One handshake at a time: each connection below finishes its TLS handshake (a
            // request is answered) before the next one starts.
            ("TRAFFIX_LIMITS__MAX_HANDSHAKES_PER_IP", "1"),
            ("TRAFFIX_LIMITS__MAX_CONNECTIONS_PER_IP", "3"),
            ("TRAFFIX_LIMITS__HANDSHAKE_TIMEOUT_SECS", "600"),
        ]),
        ..ServerOpts::default()
    });
    let script = r#"
a = tls()
status(a, GET)
b = tls()
status(b, GET)
print('a', status(a, upgrade()))
b.sendall(upgrade())
print('b', b.recv(300).decode().replace('\r\n', '|'))
try:
    while b.recv(300):
        pass
    print('b closed')
except socket.timeout:
    print('b held')
except OSError:
    print('b closed')
a.close()
b.close()
r = 'none'
for i in range(300):
    try:
        c = tls()
        status(c, GET)
        r = status(c, upgrade())
        if r.startswith('HTTP/1.1 101'):
            break
    except OSError:
        pass
    time.sleep(0.1)
print('c', r)
"#;
    let out = python(&(web_client(&s) + script));
    assert!(out.contains("a HTTP/1.1 101"), "{out}");
    assert!(
        out.contains("b HTTP/1.1 503") && out.contains("retry-after: 5"),
        "the second HELLO phase is refused: {out}"
    );
    assert!(out.contains("b closed"), "the refused connection is closed, keeping its place until then: {out}");
    assert!(out.contains("c HTTP/1.1 101"), "places are freed once the tunnels close: {out}");

    s.add_user("olga", None);
    let nodes: Vec<Node> = (0..4)
        .map(|i| {
            let mut node = Node {
                child: None,
                state: s.dir.path().join(format!("node-{i}.json")),
                bind: "127.0.0.1".into(),
                vip: String::new(),
                log: s.dir.path().join(format!("node-{i}.log")),
            };
            node.spawn(Some(&s.pair_link("olga")));
            node.vip = s.wait_node_online(&node);
            node
        })
        .collect();
    assert_eq!(s.online_count(), 4, "four tunnels from one address, over its cap of 3");
    let health = curl(&["-sk", "-o", "/dev/null", "-w", "%{http_code}", &format!("https://{}/healthz", s.web)]);
    assert_eq!(String::from_utf8_lossy(&health.stdout), "200");
    drop(nodes);
}
