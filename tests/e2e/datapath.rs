//! Bytes go through intact, both ways, through every front-end.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::*;

#[test]
fn large_payloads_are_intact_both_ways_through_socks5_http_and_connect() {
    let s = Server::start();
    let pass = s.add_user("alice", Some("100"));
    let node = s.start_node("alice", "127.0.0.2");
    let o = origin().addr;
    let size = 24 * 1024 * 1024;
    let expect = sha256_hex(&payload(size, 7));
    let url = format!("http://{o}/bytes/{size}?seed=7");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("down");
    let f = file.to_str().unwrap();

    // Download: SOCKS5 with remote DNS, HTTP absolute-URI, HTTP CONNECT (-p).
    for (label, args) in [
        ("socks5h", vec!["--proxy", &s.socks_url("alice", &pass) as &str]),
        ("http", vec!["-x", &s.http_proxy_url("alice", &pass)]),
        ("connect", vec!["-p", "-x", &s.http_proxy_url("alice", &pass)]),
    ] {
        let mut a = args.clone();
        a.extend(["-o", f, &url]);
        let out = curl(&a);
        assert!(out.status.success(), "{label}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(sha256_hex(&std::fs::read(&file).unwrap()), expect, "{label} download corrupted");
    }

    // Upload: POST a large body, the origin answers with its length and hash.
    let up = payload(16 * 1024 * 1024, 9);
    let upfile = dir.path().join("up");
    std::fs::write(&upfile, &up).unwrap();
    let data = format!("@{}", upfile.display());
    let want = format!("{} {}", up.len(), sha256_hex(&up));
    for (label, proxy) in [("socks5h", s.socks_url("alice", &pass)), ("http", s.http_proxy_url("alice", &pass))] {
        let out = curl(&[
            "--proxy",
            &proxy,
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data,
            &format!("http://{o}/sha256"),
        ]);
        assert!(out.status.success(), "{label}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{label} upload corrupted");
    }
    // It all went over the tunnel's own TLS records (the node's and the server's).
    assert!(node.log().contains("the tunnel runs on its own TLS records"), "{}", node.log());
    assert_eq!(s.metric(r#"traffix_tunnel_record_layer_total{layer="own"}"#), 1.0, "{}", s.metrics_text());
    assert_eq!(s.metric(r#"traffix_tunnel_record_layer_total{layer="rustls"}"#), 0.0);
    assert_eq!(s.metric(r#"traffix_tunnel_record_layer_total{layer="failed"}"#), 0.0);
}

#[test]
fn two_hundred_concurrent_streams_on_one_node() {
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        // This test's profile: 200 streams at once from one client.
        env: vec![
            ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_BURST".into(), "400".into()),
            ("TRAFFIX_LIMITS__CLIENT_NEW_STREAMS_PER_S".into(), "400".into()),
            ("TRAFFIX_LIMITS__CLIENT_MAX_STREAMS".into(), "400".into()),
            ("TRAFFIX_LIMITS__CLIENT_MAX_DIALS".into(), "400".into()),
            // 200 SOCKS5 handshakes at once from one address (the default allows 64).
            ("TRAFFIX_LIMITS__MAX_HANDSHAKES_PER_IP".into(), "400".into()),
        ],
        ..ServerOpts::default()
    });
    let pass = s.add_user("bulk", Some("100"));
    let _node = s.start_node("bulk", "127.0.0.2");
    let o = origin().addr;
    let mut args =
        vec!["-Z".to_owned(), "--parallel-max".into(), "200".into(), "--proxy".into(), s.socks_url("bulk", &pass)];
    args.extend(["-w".into(), "%{http_code} %{size_download}\\n".into()]);
    for i in 0..200 {
        args.extend(["-o".into(), "/dev/null".into(), format!("http://{o}/bytes/{}?seed={i}", 65_536 + i)]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = curl(&a);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 200);
    let mut sizes: Vec<usize> = lines
        .iter()
        .map(|l| {
            let (code, size) = l.split_once(' ').unwrap();
            assert_eq!(code, "200", "{l}");
            size.parse().unwrap()
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, (0..200).map(|i| 65_536 + i).collect::<Vec<_>>());
}

#[test]
fn python_requests_works_through_both_front_ends() {
    let s = Server::start();
    let pass = s.add_user("pyuser", Some("5"));
    let _node = s.start_node("pyuser", "127.0.0.2");
    let o = origin().addr;
    let script = format!(
        r#"
import hashlib, requests
for proxy in ["{socks}", "{http}"]:
    r = requests.get("http://{o}/bytes/300000?seed=3", proxies={{"http": proxy, "https": proxy}}, timeout=60)
    r.raise_for_status()
    print(len(r.content), hashlib.sha256(r.content).hexdigest())
"#,
        socks = s.socks_url("pyuser", &pass),
        http = s.http_proxy_url("pyuser", &pass),
    );
    let out = std::process::Command::new("python3").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = format!("300000 {}", sha256_hex(&payload(300_000, 3)));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, vec![want.as_str(), want.as_str()]);
}

#[test]
fn http_proxy_keeps_the_client_connection_alive_across_requests() {
    let s = Server::start();
    let pass = s.add_user("keeper", Some("5"));
    let _node = s.start_node("keeper", "127.0.0.2");
    let o = origin().addr;
    // Two URLs in one curl run reuse the proxy connection when keep-alive works.
    let out = curl(&[
        "-v",
        "-x",
        &s.http_proxy_url("keeper", &pass),
        &format!("http://{o}/hello"),
        &format!("http://{o}/bytes/10?seed=1"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Re-using existing connection") || err.contains("Reusing existing"),
        "no connection reuse:\n{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hello from origin\n"));
}

/// Greeting, RFC 1929 sign-in, CONNECT to `to` and the stream's first bytes as one write, as a
/// client that pipelines its handshake sends them before it has seen a reply. Returns the
/// socket after that write.
fn socks5_pipelined(s: &Server, user: &str, pass: &str, to: std::net::SocketAddr, first: &[u8]) -> TcpStream {
    let std::net::SocketAddr::V4(to) = to else { panic!("the origin listens on IPv4") };
    let mut all = socks5_sign_in(user, pass);
    all.extend_from_slice(&[5, 1, 0, 1]);
    all.extend_from_slice(&to.ip().octets());
    all.extend_from_slice(&to.port().to_be_bytes());
    all.extend_from_slice(first);
    let mut sock = connect_from("127.0.0.1", s.socks);
    let n = sock.write(&all).unwrap();
    assert_eq!(n, all.len(), "one write");
    sock
}

/// The HTTP/1.1 responses in `raw`, as (status line, body), read by their Content-Length;
/// panics on bytes that are not a whole response.
fn http_responses(mut raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let text = String::from_utf8_lossy(raw);
        let Some(head_len) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { panic!("not a response: {text:?}") };
        let head = String::from_utf8_lossy(&raw[..head_len]);
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("no content-length: {head}"));
        let body = raw[head_len + 4..].get(..len).unwrap_or_else(|| panic!("body cut short: {text:?}"));
        out.push((head.lines().next().unwrap_or_default().to_owned(), body.to_vec()));
        raw = &raw[head_len + 4 + len..];
    }
    out
}

/// A client sends its whole SOCKS5 handshake and `body_len` bytes of an upload (a POST to the
/// origin's /sha256, then a GET /hello pipelined behind it) in one write: it gets the three
/// replies, then the origin's answers to exactly those bytes — a byte lost would leave the
/// origin waiting, a byte repeated or a handshake byte leaked would change the hash or break
/// the second request — and the session is billed for every byte of both requests.
fn pipelined_handshake_and_upload(body_len: usize) {
    let s = Server::start();
    let user = format!("eager{body_len}");
    let pass = s.add_user(&user, Some("100"));
    let _node = s.start_node(&user, "127.0.0.2");
    let o = origin().addr;
    let body = payload(body_len, 11);
    let mut first = format!(
        "POST /sha256 HTTP/1.1\r\nHost: {o}\r\nContent-Type: application/octet-stream\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    first.extend_from_slice(&body);
    first.extend_from_slice(format!("GET /hello HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n").as_bytes());

    let mut sock = socks5_pipelined(&s, &user, &pass, o, &first);
    let mut replies = [0u8; 2 + 2 + 10];
    sock.read_exact(&mut replies).unwrap();
    assert_eq!(replies[..4], [5, 2, 1, 0], "password method chosen, then accepted");
    assert_eq!(replies[4..6], [5, 0], "CONNECT succeeded: {replies:?}");
    assert_eq!(replies[7], 1, "an IPv4 bound address (the 14 bytes read): {replies:?}");
    let reader = sock.try_clone().unwrap();
    let raw = read_until_closed(&mut &reader, &sock).expect("the origin's answers, then the end of the stream");
    let responses = http_responses(&raw);
    let want = format!("{body_len} {}", sha256_hex(&body));
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert_eq!(responses[0].0, "HTTP/1.1 200 OK");
    assert_eq!(String::from_utf8_lossy(&responses[0].1), want, "the upload reached the origin intact");
    assert_eq!(responses[1].0, "HTTP/1.1 200 OK");
    assert_eq!(responses[1].1, b"hello from origin\n", "the request behind it too");
    // Both handles of the socket: the client's end closes the stream.
    drop((reader, sock));

    let session = wait_for("the session ended", || {
        let list = s.cli_json(&["session", "list", "--user", &user]);
        let rows = list.as_array().unwrap().clone();
        (rows.len() == 1 && rows[0]["live"] == false).then(|| rows[0].clone())
    });
    assert_eq!(
        session["bytes_up"].as_u64().unwrap(),
        first.len() as u64,
        "every byte after the handshake billed once: {session}"
    );
}

#[test]
fn a_socks5_client_may_send_its_sign_in_connect_and_first_request_in_one_write() {
    // Everything fits the server's 1 KiB handshake buffer: the request is read from it alone.
    pipelined_handshake_and_upload(100);
}

#[test]
fn a_first_write_far_larger_than_the_handshake_buffer_arrives_intact_and_is_billed() {
    // 64 KiB behind the handshake: the first part is read from the buffer, the rest from the socket.
    pipelined_handshake_and_upload(64 * 1024);
}
