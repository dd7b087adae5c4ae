//! The scripting contract of SPEC.md: init, serve, user, pair, device, ledger, backup —
//! through the admin socket while the server runs, and on the database while it is stopped.

use std::process::Command;

use crate::common::*;

#[test]
fn init_refuses_a_second_run_and_json_has_the_contract_fields() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let run = || {
        Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(&d)
            .args(["--public-address", "proxy.example.com:8443", "--web-listen", "127.0.0.1:0", "--json"])
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["admin_user", "admin_password", "pin", "public_address", "config_path", "data_dir"] {
        assert!(v.get(k).is_some(), "init --json lacks {k}");
    }
    assert_eq!(v["admin_user"], "admin");
    assert_eq!(v["public_address"], "proxy.example.com:8443");
    assert_eq!(v["pin"].as_str().unwrap().len(), 64);
    let cfg = std::fs::read_to_string(d.join("traffix.toml")).unwrap();
    assert!(!cfg.contains(":0\""), "a saved config never holds port 0:\n{cfg}");
    // The key never leaves the owner.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(d.join("tls/key.pem")).unwrap().permissions().mode() & 0o777, 0o600);

    let again = run();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialised"));
}

#[test]
fn admin_commands_work_while_serving_and_while_stopped() {
    let mut s = Server::start();
    // While serving: through the admin socket (mode 0600).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.data_dir().join("admin.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pass = s.add_user("hank", Some("12.50"));
    let show = s.cli_json(&["user", "show", "hank"]);
    for k in ["name", "admin", "disabled", "telegram_id", "balance_micros", "proxy_password"] {
        assert!(show.get(k).is_some(), "user show --json lacks {k}");
    }
    assert_eq!(show["balance_micros"], 12_500_000);
    assert_eq!(show["proxy_password"], pass.as_str());
    let rotated = s.cli_json(&["user", "proxy-password", "hank"]);
    assert_ne!(rotated["proxy_password"], pass.as_str());
    assert!(s.cli_json(&["user", "list"]).as_array().unwrap().iter().any(|u| u["name"] == "hank"));
    let bad = s.cli(&["user", "add", "Bad-Name"]);
    assert!(!bad.status.success());
    let bad = s.cli(&["user", "credit", "hank", "1.2.3"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("decimal"));

    // Pairing links are single use.
    let link = s.pair_link("hank");
    assert!(link.starts_with(&format!("traffix://pair?server={}&pin={}&code=", s.web, s.pin)));
    let state = s.data_dir().join("n1.json");
    let mut node = Node {
        child: None,
        state: state.clone(),
        bind: "127.0.0.2".into(),
        vip: String::new(),
        log: s.data_dir().join("n1.log"),
    };
    node.spawn_with(Some(&link), &["--refused-retry-secs", "1"]);
    let vip = s.wait_node_online(&node);
    assert!(vip.starts_with("100.6") || vip.starts_with("100.7") || vip.starts_with("100.1"));
    let mut thief = Node {
        child: None,
        state: s.data_dir().join("n2.json"),
        bind: "127.0.0.3".into(),
        vip: String::new(),
        log: s.data_dir().join("n2.log"),
    };
    thief.spawn(Some(&link));
    assert!(!thief.wait_exit().success(), "a used pairing code must be refused");
    assert!(thief.log().contains("already used"), "{}", thief.log());
    assert!(s.metric(r#"traffix_tunnel_handshakes_total{result="failed"}"#) >= 1.0, "{}", s.metrics_text());

    // Ban disconnects the node and keeps it out — the agent keeps running and asks again now and
    // then — and an unban lets it back by itself, with the same vIP.
    let devices = s.devices();
    let d = devices.iter().find(|d| d["vip"] == vip.as_str()).unwrap();
    for k in ["id", "owner", "vip", "online", "country"] {
        assert!(d.get(k).is_some(), "device list --json lacks {k}");
    }
    let id = d["id"].as_str().unwrap().to_owned();
    let out = s.cli(&["device", "ban", &id[..8], "--reason", "fraud"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the node hears why", || node.log().contains("device banned: device banned: fraud").then_some(()));
    wait_for("a second refusal", || (node.log().matches("asking again later").count() >= 2).then_some(()));
    assert!(node.child.as_mut().unwrap().try_wait().unwrap().is_none(), "a banned node keeps running");
    assert_eq!(s.online_count(), 0);
    // The ban ended the tunnel from the server's side, whatever the node did next.
    wait_for("the banned node's tunnel counted", || {
        (s.metric(r#"traffix_tunnel_disconnects_total{reason="server"}"#) == 1.0).then_some(())
    });
    assert!(s.cli(&["device", "unban", &vip, "--reason", "appeal upheld"]).status.success());
    assert_eq!(s.wait_node_online(&node), vip, "back without a restart");

    // A node that dies is counted as a closed tunnel.
    node.kill9();
    wait_for("the killed node's tunnel counted", || {
        (s.metric(r#"traffix_tunnel_disconnects_total{reason="closed"}"#) == 1.0).then_some(())
    });
    assert_eq!(s.metric(r#"traffix_tunnel_disconnects_total{reason="server"}"#), 1.0);
    assert_eq!(s.metric("traffix_nodes_online"), 0.0);

    // Graceful stop: SIGTERM, exit 0, socket removed; then the CLI works on the database directly.
    assert!(s.terminate().success(), "{}", s.log());
    assert!(!s.data_dir().join("admin.sock").exists());
    assert!(s.log().contains("database closed"));
    let show = s.cli_json(&["user", "show", "hank"]);
    assert_eq!(show["balance_micros"], 12_500_000);
    assert!(s.cli(&["user", "credit", "hank", "0.50"]).status.success());
    let ledger = s.cli_json(&["ledger", "list", "--user", "hank"]);
    assert_eq!(ledger.as_array().unwrap().len(), 2);
    let verify = s.cli(&["ledger", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    // Every admin action is in the audit log, with actor and reason, and no secret.
    let audit = s.cli_json(&["audit", "list"]);
    let entries = audit.as_array().unwrap();
    let find = |action: &str| entries.iter().filter(|e| e["action"] == action).cloned().collect::<Vec<_>>();
    let credits = find("user.credit");
    assert_eq!(credits.len(), 2, "{audit}");
    assert!(credits.iter().any(|e| e["actor"] == "admin (cli, offline)"), "offline actor recorded: {audit}");
    assert!(credits.iter().any(|e| e["actor"] == "admin (cli)" && e["reason"] == "test"), "{audit}");
    assert!(!audit.to_string().contains("uid:"), "the actor is named, never a uid: {audit}");
    let ban = &find("device.ban")[0];
    assert_eq!(ban["reason"], "fraud");
    assert_eq!(find("device.unban")[0]["reason"], "appeal upheld");
    assert_eq!(ban["before"]["banned"], false);
    assert_eq!(ban["after"]["banned"], true);
    assert!(
        !find("user.proxy_password").is_empty() && !find("device.unban").is_empty() && !find("pair.create").is_empty()
    );
    assert!(!audit.to_string().contains(&pass), "no proxy password in the audit log");
    let backup = s.data_dir().join("backup.tar");
    assert!(s.cli(&["backup", backup.to_str().unwrap()]).status.success());
    assert!(backup.exists());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds password hashes: owner only, not {mode:o}");
    }
    // And it starts again on the same database.
    s.spawn();
    assert_eq!(s.cli_json(&["user", "show", "hank"])["balance_micros"], 13_000_000);
}

#[test]
fn web_listener_is_tls13_only_with_the_printed_pin_and_metrics_stay_on_loopback() {
    let s = Server::start();
    let url = format!("https://{}/healthz", s.web);
    let out = curl(&["-k", &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"status":"ok"}"#);
    let out = curl(&["-k", "--tls-max", "1.2", &url]);
    assert!(!out.status.success(), "TLS 1.2 must be refused");
    // curl's --pinnedpubkey takes the base64 SHA-256 of the SPKI: the same value as our hex pin.
    use base64::Engine;
    let pin_b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(&s.pin).unwrap());
    let out = curl(&["-k", "--pinnedpubkey", &format!("sha256//{pin_b64}"), &url]);
    assert!(out.status.success(), "the printed pin matches the served key: {}", String::from_utf8_lossy(&out.stderr));
    assert!(s.metrics.ip().is_loopback());
    let m = s.metrics_text();
    assert!(m.contains("traffix_nodes_online"), "{m}");
    let out = curl(&["-k", &format!("https://{}/metrics", s.web)]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("traffix_nodes_online"),
        "metrics never on the public listener"
    );
    // What the server says about itself, and the web listener's answers by class: the
    // /healthz calls above were 200s, the /metrics on the web listener a 404.
    let m = s.metrics_text();
    assert!(m.contains(&format!("traffix_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"))), "{m}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as f64;
    let started = s.metric("traffix_start_time_seconds");
    assert!(started > now - 600.0 && started <= now + 1.0, "started at {started}, now {now}");
    // `traffix init`'s self-signed certificate runs for decades.
    assert!(s.metric("traffix_tls_cert_expiry_timestamp_seconds") > now + 10.0 * 365.0 * 86400.0, "{m}");
    assert!(s.metric(r#"traffix_http_requests_total{class="2xx"}"#) >= 2.0, "{m}");
    assert!(s.metric(r#"traffix_http_requests_total{class="4xx"}"#) >= 1.0, "{m}");
    assert_eq!(s.metric(r#"traffix_http_requests_total{class="5xx"}"#), 0.0, "{m}");
}

#[test]
fn sigterm_lets_live_streams_finish_and_nodes_come_back_after_a_restart() {
    let mut s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: vec![
            ("TRAFFIX_SERVER__SHUTDOWN_GRACE_SECS".into(), "120".into()),
            // Last-seen rows wait a minute for their batch: only the shutdown writes them here.
            ("TRAFFIX_SERVER__SEEN_FLUSH_MS".into(), "60000".into()),
        ],
        ..ServerOpts::default()
    });
    let pass = s.add_user("lena", Some("5"));
    let node = s.start_node("lena", "127.0.0.2");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dl");
    let size = 8 * 1024 * 1024;
    // A download slow enough to be in flight when SIGTERM arrives.
    let mut client = Command::new("curl")
        .args(["-sS", "--limit-rate", "2M", "--proxy", &s.socks_url("lena", &pass), "-o"])
        .arg(&file)
        .arg(format!("http://{}/bytes/{size}?seed=5", origin().addr))
        .spawn()
        .unwrap();
    wait_for("download in flight", || (std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) > 0).then_some(()));
    assert!(s.terminate().success(), "{}", s.log());
    assert!(client.wait().unwrap().success(), "the live stream finished during the drain");
    assert_eq!(sha256_hex(&std::fs::read(&file).unwrap()), sha256_hex(&payload(size, 5)));
    // The stopped server wrote the node's last-seen row on its way out.
    let list = s.cli_json(&["device", "list"]);
    let d = list.as_array().unwrap().iter().find(|d| d["vip"] == node.vip.as_str()).unwrap().clone();
    assert_eq!((d["online"].as_bool(), d["last_seen"].is_string()), (Some(false), true), "{d}");
    s.spawn();
    assert_eq!(s.wait_node_online(&node), node.vip, "the node reconnects by itself");
    let out = curl(&["--proxy", &s.socks_url("lena", &pass), &format!("http://{}/hello", origin().addr)]);
    assert!(out.status.success());
}

#[test]
fn insecure_http_serves_plain_http_and_its_links_tell_nodes_so() {
    let s =
        Server::start_with(ServerOpts { allow_private_targets: true, insecure_http: true, ..ServerOpts::default() });
    let out = curl(&[&format!("http://{}/healthz", s.web)]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"status":"ok"}"#);
    assert!(s.pair_link("admin").ends_with("&insecure=1"));
    let pass = s.add_user("mona", Some("1"));
    let _node = s.start_node("mona", "127.0.0.2");
    let out = curl(&["--proxy", &s.socks_url("mona", &pass), &format!("http://{}/hello", origin().addr)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Unmasked frames are for TLS only (docs/protocol.md): offered over plain HTTP, not echoed.
    let mut raw = std::net::TcpStream::connect(s.web).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    std::io::Write::write_all(&mut raw, tunnel_upgrade_request(Some("x-traffix-unmasked")).as_bytes()).unwrap();
    let head = read_head(&mut raw).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101") && !head.contains("x-traffix-unmasked"), "{head}");
}
