//! Every row of SPEC.md's failure table, seen by real clients: SOCKS5 reply codes (through
//! python-socks, which exposes them) and HTTP statuses with Proxy-Status (through curl).

use std::process::Command;

use crate::common::*;

/// Connects through SOCKS5 with python-socks and returns "ok" or the reply/auth error.
fn socks_result(s: &Server, user: &str, pass: &str, host: &str, port: u16) -> String {
    let script = format!(
        r#"
from python_socks.sync import Proxy
from python_socks import ProxyError
p = Proxy.from_url("socks5://{user}:{pass}@{addr}", rdns=True)
try:
    sock = p.connect(dest_host="{host}", dest_port={port}, timeout=60)
    print("ok")
except ProxyError as e:
    print("code", e.error_code, str(e))
"#,
        addr = s.socks
    );
    let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// (status line, Proxy-Status header, body) of one request through the HTTP proxy.
fn http_result(s: &Server, user: &str, pass: &str, url: &str, connect: bool) -> (String, String, String) {
    let proxy = s.http_proxy_url(user, pass);
    let mut args = vec!["-i", "-x", &proxy];
    if connect {
        args.push("-p");
    }
    args.push(url);
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let status = text.lines().next().unwrap_or_default().to_owned();
    let ps = text.lines().find(|l| l.to_ascii_lowercase().starts_with("proxy-status:")).unwrap_or_default().to_owned();
    (status, ps, text)
}

#[test]
fn failure_table_socks5_and_http() {
    let s = Server::start();
    let pass = s.add_user("carol", Some("5"));
    let broke = s.add_user("broke", None);
    let gone = s.add_user("gone", Some("5"));
    let o = origin().addr;
    let host = o.ip().to_string();

    // No node online yet: 0x03 / 503 destination_unavailable.
    assert!(socks_result(&s, "carol", &pass, &host, o.port()).starts_with("code 3"), "no node");
    let (st, ps, _) = http_result(&s, "carol", &pass, &format!("http://{o}/hello"), false);
    assert!(st.contains(" 503"), "{st}");
    assert!(ps.contains("destination_unavailable"), "{ps}");

    let _node = s.start_node("carol", "127.0.0.2");
    assert_eq!(socks_result(&s, "carol", &pass, &host, o.port()), "ok");

    // Wrong credentials: RFC 1929 failure / 407.
    let r = socks_result(&s, "carol", "wrong-password", &host, o.port());
    assert!(r.contains("authentication failure"), "RFC 1929 failure: {r}");
    let (st, _, body) = http_result(&s, "carol", "wrong-password", &format!("http://{o}/hello"), false);
    assert!(st.contains(" 407"), "{st}");
    assert!(body.contains("wrong username or password"), "{body}");

    // Malformed username (unknown option): auth failure with the reason in the 407 body.
    let r = socks_result(&s, "carol-colour-blue", &pass, &host, o.port());
    assert!(r.contains("authentication failure"), "unknown option must fail authentication: {r}");
    let (st, _, body) = http_result(&s, "carol-colour-blue", &pass, &format!("http://{o}/hello"), false);
    assert!(st.contains(" 407"), "{st}");
    assert!(body.contains("colour"), "the reason names the bad key: {body}");
    let (st, _, body) = http_result(&s, "carol-ttl-30", &pass, &format!("http://{o}/hello"), false);
    assert!(st.contains(" 407") && body.contains("session"), "{st} {body}");
    assert!(s.log().contains("authentication failed"), "the log says why");

    // Balance exhausted: 0x02 / 402.
    assert!(socks_result(&s, "broke", &broke, &host, o.port()).starts_with("code 2"));
    let (st, ps, body) = http_result(&s, "broke", &broke, &format!("http://{o}/hello"), false);
    assert!(st.contains(" 402"), "{st}");
    assert!(ps.contains("http_request_denied") && body.contains("balance"), "{ps} {body}");

    // Disabled account: 0x02 / 403.
    let out = s.cli(&["user", "disable", "gone", "--reason", "abuse report"]);
    assert!(out.status.success());
    assert!(socks_result(&s, "gone", &gone, &host, o.port()).starts_with("code 2"));
    let (st, _, body) = http_result(&s, "gone", &gone, &format!("http://{o}/hello"), false);
    assert!(st.contains(" 403") && body.contains("abuse report"), "{st} {body}");

    // Target refused by policy (blocked port, the server's own listener): 0x02 / 403.
    assert!(socks_result(&s, "carol", &pass, &host, 25).starts_with("code 2"), "port 25");
    assert!(socks_result(&s, "carol", &pass, "127.0.0.1", s.socks.port()).starts_with("code 2"), "proxy loop");
    let (st, ps, body) = http_result(&s, "carol", &pass, &format!("http://{host}:25/"), false);
    assert!(st.contains(" 403") && ps.contains("http_request_denied"), "{st} {ps}");
    assert!(body.contains("port"), "{body}");
    let (st, _, _) = http_result(&s, "carol", &pass, &format!("https://{host}:445/"), true);
    assert!(st.contains(" 403"), "CONNECT to a blocked port: {st}");

    // The node could not connect: 0x05 refused / 502 connection_refused.
    let closed = free_port();
    assert!(socks_result(&s, "carol", &pass, "127.0.0.1", closed).starts_with("code 5"));
    let (st, ps, _) = http_result(&s, "carol", &pass, &format!("http://127.0.0.1:{closed}/"), false);
    assert!(st.contains(" 502") && ps.contains("connection_refused"), "{st} {ps}");

    // No node matches the targeting: 0x03 / 503.
    assert!(socks_result(&s, "carol-node-100.64.9.9", &pass, &host, o.port()).starts_with("code 3"));
    let (st, _, body) = http_result(&s, "carol-country-de", &pass, &format!("http://{o}/hello"), false);
    assert!(st.contains(" 503") && body.contains("GeoIP"), "country without a GeoIP database: {st} {body}");

    // The server kept serving throughout.
    assert_eq!(socks_result(&s, "carol", &pass, &host, o.port()), "ok");
    assert!(s.metrics_text().contains("traffix_proxy_auth_failures_total"));
}

#[test]
fn private_targets_are_refused_without_the_test_switch() {
    let s = Server::start_with(ServerOpts::default());
    let pass = s.add_user("dave", Some("5"));
    let o = origin().addr;
    // The server's own copy of the policy refuses before any node is asked.
    assert!(socks_result(&s, "dave", &pass, "127.0.0.1", o.port()).starts_with("code 2"));
    assert!(socks_result(&s, "dave", &pass, "10.1.2.3", 80).starts_with("code 2"));
    assert!(socks_result(&s, "dave", &pass, "localhost", 80).starts_with("code 2"));
    assert!(socks_result(&s, "dave", &pass, "2130706433", 80).starts_with("code 2"));
    let (st, _, body) = http_result(&s, "dave", &pass, "http://192.168.1.1/", false);
    assert!(st.contains(" 403") && body.contains("192.168.0.0/16"), "{st} {body}");
}

/// The server's and the node's logs, written to files, are plain text: no ANSI colour codes,
/// and optional fields are logged as their value or left out — never `Some(…)` or `None`.
#[test]
fn logs_written_to_files_are_plain_and_print_values_not_options() {
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: vec![("TRAFFIX_LIMITS__HEARTBEAT_INTERVAL_SECS".into(), "1".into())],
        ..ServerOpts::default()
    });
    let pass = s.add_user("carol", Some("5"));
    s.add_user("olga", None);
    let node = s.start_node("olga", "127.0.0.41");
    let url = format!("http://{}/bytes/10", origin().addr);
    let out = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", &s.socks_url("carol", &pass), &url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    wait_for("a heartbeat and the stream's log line", || {
        let log = s.log();
        (log.contains("heartbeat") && log.contains("stream closed")).then_some(())
    });
    let log = s.log();
    let summary = log.lines().find(|l| l.contains("traffix serving")).expect("one start-up summary");
    for field in [
        "web=",
        "socks5=",
        "http=",
        "pin=",
        "data_dir=",
        "limits=heartbeat_interval_secs=1",
        "geoip=off",
        "billing=on (",
    ] {
        assert!(summary.contains(field), "{field} in {summary}");
    }
    for (who, log) in [("server", log), ("node", node.log())] {
        assert!(!log.contains('\u{1b}'), "{who} log has colour codes:\n{log}");
        for bad in ["Some(", "=None", ": None"] {
            assert!(!log.contains(bad), "{who} log prints an Option ({bad}):\n{log}");
        }
    }
}

/// A client must not loop through a node back into the server: its listeners are refused under
/// every address the server has, here its interface addresses (the SOCKS5 and HTTP proxy
/// listeners are on the wildcard address) and its host-name public_address.
#[test]
fn the_server_itself_is_refused_under_its_own_addresses_and_name() {
    // Ports chosen here (another process may take one before the server binds it: then again).
    let (mut s, web, socks, http) = (0..5)
        .find_map(|_| {
            let (web, socks, http) = (free_port(), free_port(), free_port());
            let started = Server::try_start_with(ServerOpts {
                allow_private_targets: true,
                env: vec![
                    ("TRAFFIX_SERVER__PUBLIC_ADDRESS".into(), format!("localhost:{web}")),
                    ("TRAFFIX_SERVER__WEB_LISTEN".into(), format!("127.0.0.1:{web}")),
                    ("TRAFFIX_SERVER__SOCKS_LISTEN".into(), format!("0.0.0.0:{socks}")),
                    ("TRAFFIX_SERVER__HTTP_LISTEN".into(), format!("0.0.0.0:{http}")),
                ],
                ..ServerOpts::default()
            });
            match started {
                Ok(s) => Some((s, web, socks, http)),
                Err(log) if log.contains("in use") => None,
                Err(log) => panic!("server exited early:\n{log}"),
            }
        })
        .expect("five tries at free ports");
    s.web = format!("127.0.0.1:{web}").parse().unwrap();
    s.socks = format!("127.0.0.1:{socks}").parse().unwrap();
    s.http = format!("127.0.0.1:{http}").parse().unwrap();
    let pass = s.add_user("oscar", Some("5"));
    let _node = s.start_node("oscar", "127.0.0.2");
    let o = origin().addr;
    assert_eq!(socks_result(&s, "oscar", &pass, &o.ip().to_string(), o.port()), "ok", "the node serves");
    assert!(s.log().contains("own addresses are refused as targets"), "{}", s.log());

    // The name the server is known by stands for what it resolved to (127.0.0.1 here): through
    // a node it would reach the server's own proxy listeners.
    for port in [socks, http, web] {
        assert!(socks_result(&s, "oscar", &pass, "localhost", port).starts_with("code 2"), "localhost:{port}");
    }
    let (st, _, body) = http_result(&s, "oscar", &pass, &format!("http://localhost:{socks}/"), false);
    assert!(st.contains(" 403") && body.contains("own listener"), "{st} {body}");
    let (st, _, body) = http_result(&s, "oscar", &pass, &format!("https://LOCALHOST.:{http}/"), true);
    assert!(st.contains(" 403") && body.contains("own listener"), "CONNECT: {st} {body}");
    // Other ports of the server's host stay reachable under allow_private_targets (tests only).
    assert_eq!(socks_result(&s, "oscar", &pass, "localhost", o.port()), "ok");

    // Every interface address reaches a wildcard listener: each is refused on those ports.
    let interfaces: Vec<_> =
        traffix::netinfo::interface_addresses().into_iter().filter(|a| a.is_ipv4() && !a.is_loopback()).collect();
    if interfaces.is_empty() {
        eprintln!("no IPv4 interface address besides loopback: the interface part is not exercised");
    }
    for a in interfaces {
        let host = a.to_string();
        assert!(socks_result(&s, "oscar", &pass, &host, socks).starts_with("code 2"), "{host}:{socks}");
        let (st, _, body) = http_result(&s, "oscar", &pass, &format!("http://{host}:{http}/"), false);
        assert!(st.contains(" 403") && body.contains("own listener"), "{host}: {st} {body}");
    }
}
