//! Node selection: rotation, sticky sessions (flex and strict), `-node-`, `-country-` from a
//! GeoIP database, and what clients see when a node dies mid-stream.

use std::collections::BTreeSet;

use crate::common::*;

fn exit_ip(s: &Server, user: &str, pass: &str) -> Result<String, String> {
    let out = curl(&["--proxy", &s.socks_url(user, pass), &format!("http://{}/ip", origin().addr)]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn rotation_sticky_sessions_node_pinning_and_country_targeting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    make_geoip(&db, &[("127.0.0.2", "DE"), ("127.0.0.3", "US")]);
    let asn = dir.path().join("asn.mmdb");
    make_geoip(&asn, &[("--asn", ""), ("127.0.0.2", "3320:Deutsche Telekom AG")]);
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        geoip: Some(db),
        env: vec![
            ("TRAFFIX_GEOIP__ASN_DB".into(), asn.display().to_string()),
            // Heartbeats (which carry the node's RTT) every second, busy or idle.
            ("TRAFFIX_LIMITS__HEARTBEAT_INTERVAL_SECS".into(), "1".into()),
            ("TRAFFIX_LIMITS__HEARTBEAT_IDLE_INTERVAL_SECS".into(), "1".into()),
        ],
        ..ServerOpts::default()
    });
    let pass = s.add_user("erin", Some("10"));
    let de = s.start_node("erin", "127.0.0.2");
    let mut us = s.start_node("erin", "127.0.0.3");
    assert_ne!(de.vip, us.vip);

    // Without a session each connection may use another node: both carry traffic.
    let seen: BTreeSet<String> = (0..12).map(|_| exit_ip(&s, "erin", &pass).unwrap()).collect();
    assert_eq!(seen, BTreeSet::from(["127.0.0.2".to_owned(), "127.0.0.3".to_owned()]), "rotation");

    // A sticky session holds its node.
    let first = exit_ip(&s, "erin-session-abc123", &pass).unwrap();
    for _ in 0..10 {
        assert_eq!(exit_ip(&s, "erin-session-abc123", &pass).unwrap(), first, "sticky session moved");
    }
    // Aliases and key case do not change the session.
    assert_eq!(exit_ip(&s, "erin-SESSID-abc123-sesstime-30m", &pass).unwrap(), first);

    // Country targeting, from the GeoIP database.
    for _ in 0..5 {
        assert_eq!(exit_ip(&s, "erin-country-de", &pass).unwrap(), "127.0.0.2");
        assert_eq!(exit_ip(&s, "erin-cc-US", &pass).unwrap(), "127.0.0.3");
    }
    // The node list shows each node's country, ASN and tunnel round-trip time.
    let listed = wait_for("RTT measured", || {
        let d = s.devices().into_iter().find(|d| d["vip"] == de.vip.as_str())?;
        d["rtt_ms"].is_number().then_some(d)
    });
    assert_eq!((listed["country"].as_str(), listed["asn"].as_u64()), (Some("DE"), Some(3320)), "{listed}");
    assert_eq!(listed["as_org"], "Deutsche Telekom AG");
    let other = s.devices().into_iter().find(|d| d["vip"] == us.vip.as_str()).unwrap();
    assert!(other["asn"].is_null(), "not in the ASN database: {other}");

    let err = exit_ip(&s, "erin-country-fr", &pass).unwrap_err();
    assert!(err.contains("SOCKS") || err.contains("socks"), "no node in FR: {err}");
    let countries: BTreeSet<String> =
        s.devices().iter().filter_map(|d| d["country"].as_str().map(str::to_owned)).collect();
    assert_eq!(countries, BTreeSet::from(["DE".to_owned(), "US".to_owned()]));

    // -node- pins one node by its virtual IP.
    for _ in 0..5 {
        assert_eq!(exit_ip(&s, &format!("erin-node-{}", us.vip), &pass).unwrap(), "127.0.0.3");
    }

    // Pin sessions to the US node, then take it away: strict fails, flex moves to DE.
    let mut strict = None;
    let mut flex = None;
    for i in 0..40 {
        let (sid_s, sid_f) = (format!("strict{i}"), format!("flex{i}"));
        if strict.is_none() && exit_ip(&s, &format!("erin-session-{sid_s}-mode-strict"), &pass).unwrap() == "127.0.0.3"
        {
            strict = Some(sid_s);
        }
        if flex.is_none() && exit_ip(&s, &format!("erin-session-{sid_f}"), &pass).unwrap() == "127.0.0.3" {
            flex = Some(sid_f);
        }
    }
    let (strict, flex) = (strict.expect("a strict session on US"), flex.expect("a flex session on US"));
    us.kill9();
    wait_for("US node offline", || (s.online_count() == 1).then_some(()));
    assert!(exit_ip(&s, &format!("erin-session-{strict}-mode-strict"), &pass).is_err(), "strict session must fail");
    assert_eq!(exit_ip(&s, &format!("erin-session-{flex}"), &pass).unwrap(), "127.0.0.2", "flex session re-pins");
    drop(de);
}

#[test]
fn a_node_killed_mid_stream_gives_a_clean_error_and_comes_back() {
    let s = Server::start();
    let pass = s.add_user("frank", Some("10"));
    let mut node = s.start_node("frank", "127.0.0.2");
    let vip = node.vip.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("partial");
    let proxy = s.socks_url("frank", &pass);
    let url = format!("http://{}/forever", origin().addr);
    let mut client = std::process::Command::new("curl")
        .args(["-sS", "--proxy", &proxy, "-o"])
        .arg(&file)
        .arg(&url)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until bytes flow, then kill the node under the live stream.
    wait_for("bytes through the node", || {
        (std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) > 256 * 1024).then_some(())
    });
    node.kill9();
    let st = wait_for("client error", || client.try_wait().unwrap());
    assert!(!st.success(), "the client sees the stream fail, it does not hang");

    // The server is unharmed and the node reconnects with its saved identity (no pairing).
    assert_eq!(http_get(s.metrics, "/healthz").map(|r| r.0), Some(200));
    node.spawn(None);
    assert_eq!(s.wait_node_online(&node), vip, "the vIP is kept across reconnects");
    assert_eq!(exit_ip(&s, "frank", &pass).unwrap(), "127.0.0.2");
}

/// The same identity as `node` (a copy of its state file) started again from `bind`.
fn started_clone(s: &Server, node: &Node, bind: &str) -> Node {
    let state = s.data_dir().join("clone.json");
    std::fs::copy(&node.state, &state).unwrap();
    let mut clone =
        Node { child: None, state, bind: bind.into(), vip: String::new(), log: s.data_dir().join("clone.log") };
    clone.spawn(None);
    clone
}

#[test]
fn a_second_connection_of_the_same_device_replaces_the_first() {
    let s = Server::start();
    let pass = s.add_user("nina", Some("5"));
    let mut first = s.start_node("nina", "127.0.0.2");
    // The same identity started again (a cloned state file): the newer connection wins.
    let mut second = started_clone(&s, &first, "127.0.0.3");
    wait_for("the older session is replaced", || first.log().contains("replaced by a newer connection").then_some(()));
    assert_eq!(s.devices().len(), 1, "one device, however many connections");
    assert_eq!(s.online_count(), 1);
    second.kill9();
    first.kill9();
    first.spawn(None);
    assert_eq!(s.wait_node_online(&first), first.vip);
    assert!(exit_ip(&s, "nina", &pass).is_ok());
}

/// A phone that changed networks leaves its old connection half-open: nothing more comes on it
/// and nothing closes it. When the device connects again, the server ends the old session at
/// once (its writer told it "replaced"; its reading stops too) instead of holding the socket
/// until the liveness timeout.
#[test]
fn a_replaced_connection_that_went_quiet_is_ended_at_once() {
    let s = Server::start();
    s.add_user("nora", Some("5"));
    let mut first = s.start_node("nora", "127.0.0.2");
    // Frozen: it neither reads nor closes; the kernel keeps its socket open.
    let pid = first.child.as_ref().unwrap().id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let mut second = started_clone(&s, &first, "127.0.0.3");
    wait_for("the quiet session ended by the server", || {
        s.log().lines().any(|l| l.contains("node offline") && l.contains("closed by the server")).then_some(())
    });
    assert_eq!(s.online_count(), 1, "the new connection serves");
    let _ = std::process::Command::new("kill").args(["-CONT", &pid]).status();
    second.kill9();
    first.kill9();
}

/// SIGTERM on a node agent drains it: the server is told (DRAIN, so no new stream is routed
/// there), a stream in flight finishes, and the agent closes its tunnel cleanly and exits 0.
#[test]
fn a_node_stopped_with_sigterm_lets_live_streams_finish_then_exits_cleanly() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let s = Server::start_with(ServerOpts { allow_private_targets: true, ..ServerOpts::default() });
    let pass = s.add_user("pia", Some("5"));
    s.add_user("olga", None);
    let mut node = s.start_node("olga", "127.0.0.51");
    let body = payload(200_000, 7);
    let script = format!(
        r#"
import sys
from python_socks.sync import Proxy
sock = Proxy.from_url("socks5://pia:{pass}@{socks}").connect(dest_host="{host}", dest_port={port}, timeout=60)
sock.settimeout(60)
body = sys.stdin.buffer.read({n})
sock.sendall(b"POST /sha256 HTTP/1.1\r\nHost: o\r\nConnection: close\r\nContent-Length: {n}\r\n\r\n" + body[:1000])
print("half", flush=True)
sys.stdin.readline()
sock.sendall(body[1000:])
got = b""
while True:
    c = sock.recv(65536)
    if not c:
        break
    got += c
print(got.split(b"\r\n\r\n", 1)[-1].decode().strip(), flush=True)
"#,
        socks = s.socks,
        host = origin().addr.ip(),
        port = origin().addr.port(),
        n = body.len(),
    );
    let mut client =
        Command::new("python3").arg("-c").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(&body).unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "half");

    node.sigterm();
    wait_for("the node drains", || node.log().contains("stopping: draining live streams").then_some(()));
    wait_for("the server hears it", || s.log().contains("node is draining").then_some(()));
    stdin.write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("{} {}", body.len(), sha256_hex(&body)), "the stream in flight finished");
    assert!(client.wait().unwrap().success());
    assert!(node.wait_exit().success(), "exit 0 after the drain:\n{}", node.log());
    let log = node.log();
    assert!(log.contains("drained: every live stream finished") && log.contains("node agent stopped"), "{log}");
}
