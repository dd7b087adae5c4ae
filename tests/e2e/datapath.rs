//! Bytes go through intact, both ways, through every front-end.

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
