//! The quality watchdog end to end: two real `traffix node` processes, one frozen (SIGSTOP)
//! while it still holds its tunnel; unmet demand; an admin's override. No timing assertions:
//! what the server did is read from its metrics, its device list and its audit log.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};

use crate::api::{Api, token};
use crate::common::*;

fn exit_ip(s: &Server, user: &str, pass: &str) -> Result<String, String> {
    let out = curl(&["--proxy", &s.socks_url(user, pass), &format!("http://{}/ip", origin().addr)]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn signal(node: &Node, sig: &str) {
    let pid = node.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
}

fn device(s: &Server, vip: &str) -> Value {
    s.devices().into_iter().find(|d| d["vip"] == vip).unwrap()
}

/// The value of one series, e.g. `traffix_node_open_failures_total{class="timeout",counted="yes"}`.
fn series(s: &Server, name: &str) -> f64 {
    s.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

const NO_ANSWER: &str = r#"traffix_node_open_failures_total{class="timeout",counted="yes"}"#;
const RETRIES: &str = "traffix_open_retries_total";

#[test]
fn a_frozen_node_costs_one_retry_then_is_skipped_until_it_answers_again() {
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: vec![
            // A node has 1 s to dial, so an OPEN unanswered for 6 s means the node is gone.
            ("TRAFFIX_LIMITS__DIAL_TIMEOUT_SECS".into(), "1".into()),
            ("TRAFFIX_LIMITS__OPEN_RETRY_BUDGET_SECS".into(), "60".into()),
            // The frozen node keeps its tunnel while frozen (liveness: 2.5 × 12 s + 10 s = 40 s)
            // and heartbeats within 12 s of being thawed.
            ("TRAFFIX_LIMITS__HEARTBEAT_INTERVAL_SECS".into(), "12".into()),
            ("TRAFFIX_LIMITS__HEARTBEAT_IDLE_INTERVAL_SECS".into(), "12".into()),
        ],
        ..ServerOpts::default()
    });
    let pass = s.add_user("fay", Some("10"));
    let frozen = s.start_node("fay", "127.0.0.2");
    let _alive = s.start_node("fay", "127.0.0.3");
    // Both carry traffic while both answer.
    let seen: BTreeSet<String> = (0..8).map(|_| exit_ip(&s, "fay", &pass).unwrap()).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");

    signal(&frozen, "-STOP");
    // Every request succeeds, through the node that answers; the first one routed to the
    // frozen node waits for its OPEN to time out and is retried on the other.
    let mut requests = 0;
    while series(&s, NO_ANSWER) < 1.0 {
        assert_eq!(exit_ip(&s, "fay", &pass).unwrap(), "127.0.0.3");
        requests += 1;
        assert!(requests <= 10, "rotation never reached the frozen node");
    }
    assert_eq!((series(&s, NO_ANSWER), series(&s, RETRIES)), (1.0, 1.0));
    let d = device(&s, &frozen.vip);
    assert_eq!(d["quality"]["unresponsive"], true, "{d}");
    assert_eq!(d["quality"]["reasons"][0]["code"], "unresponsive", "{d}");
    // From now on nobody waits on it: no second unanswered OPEN, no second retry.
    for _ in 0..10 {
        assert_eq!(exit_ip(&s, "fay", &pass).unwrap(), "127.0.0.3");
    }
    assert_eq!((series(&s, NO_ANSWER), series(&s, RETRIES)), (1.0, 1.0), "a request waited on the frozen node");
    // Pinned to the frozen node, a client is told at once (no node to wait on).
    let pinned = exit_ip(&s, &format!("fay-node-{}", frozen.vip), &pass);
    assert!(pinned.is_err(), "{pinned:?}");

    // Thawed, its next heartbeat puts it back in rotation.
    signal(&frozen, "-CONT");
    wait_for("the thawed node is routable again", || {
        (device(&s, &frozen.vip)["quality"]["unresponsive"] == false).then_some(())
    });
    let seen: BTreeSet<String> = (0..8).map(|_| exit_ip(&s, "fay", &pass).unwrap()).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn unmet_demand_is_counted_and_an_admin_override_routes_around_a_node() {
    let s = Server::start();
    let pass = s.add_user("gus", Some("10"));
    // No node at all: the request fails and is counted as unmet demand.
    assert!(exit_ip(&s, "gus", &pass).is_err());
    assert!(exit_ip(&s, "gus-quality-high", &pass).is_err());
    assert_eq!(series(&s, r#"traffix_unmet_demand_total{country="any",reason="no_node"}"#), 2.0);

    let a = s.start_node("gus", "127.0.0.2");
    let _b = s.start_node("gus", "127.0.0.3");
    // The admin flags node a with a note: nothing goes there; the CLI and the audit log say so.
    let out = s.cli_json(&["device", "quality", &a.vip, "--set", "flagged", "--note", "abuse report 17"]);
    assert_eq!(
        (out["quality_state"].as_str(), out["quality"]["admin"]["note"].as_str()),
        (Some("flagged"), Some("abuse report 17"))
    );
    for _ in 0..8 {
        assert_eq!(exit_ip(&s, "gus", &pass).unwrap(), "127.0.0.3");
    }
    let pinned = exit_ip(&s, &format!("gus-node-{}", a.vip), &pass);
    assert!(pinned.is_err(), "a flagged node is not routed, pinned or not: {pinned:?}");
    assert_eq!(
        series(&s, r#"traffix_unmet_demand_total{country="any",reason="all_flagged"}"#),
        1.0,
        "the pinned request found only a flagged node"
    );
    let bad = s.cli(&["device", "quality", &a.vip, "--set", "banned", "--note", "x"]);
    assert!(!bad.status.success(), "banning is `device ban`");
    let audit = s.cli_json(&["audit", "list", "--limit", "5"]);
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "device.quality_override"), "{audit}");

    // The overview shows unmet demand and the states; the API sets the device back to auto.
    let api = Api::new(&s);
    let t = token(&api.login("admin", &s.admin_password));
    let o = api.get("/api/v1/admin/overview", &t).json();
    assert_eq!((o["nodes_healthy"].as_u64(), o["nodes_flagged"].as_u64()), (Some(1), Some(1)), "{o}");
    let rows = o["unmet_demand"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["country"] == "any" && r["reason"] == "no_node" && r["count"] == 2), "{o}");
    let r =
        api.post(&format!("/api/v1/admin/nodes/{}/quality", a.vip), &t, json!({"state": "auto", "note": "cleared"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["quality_state"], "healthy");
    let seen: BTreeSet<String> = (0..8).map(|_| exit_ip(&s, "gus", &pass).unwrap()).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// Pairs and starts a node with extra arguments (e.g. `--egress-bind`).
fn start_node_with(s: &Server, owner: &str, bind: &str, extra: &[&str]) -> Node {
    let link = s.pair_link(owner);
    let mut node = Node {
        child: None,
        state: s.dir.path().join(format!("node-{bind}.json")),
        bind: bind.to_owned(),
        vip: String::new(),
        log: s.dir.path().join(format!("node-{bind}.log")),
    };
    node.spawn_with(Some(&link), extra);
    node.vip = s.wait_node_online(&node);
    node
}

#[test]
fn a_node_whose_egress_is_not_its_tunnel_is_flagged_and_banned_by_probes_and_a_direct_one_is_not() {
    let probe_port = free_port();
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: vec![
            ("TRAFFIX_WATCHDOG__PROBE_LISTEN".into(), format!("127.0.0.1:{probe_port}")),
            ("TRAFFIX_WATCHDOG__PROBE_INTERVAL_SECS".into(), "10".into()),
            ("TRAFFIX_WATCHDOG__EVALUATE_SECS".into(), "1".into()),
            ("TRAFFIX_WATCHDOG__MIN_PROBES".into(), "2".into()),
            // The first flagging bans.
            ("TRAFFIX_WATCHDOG__BAN_AFTER_FLAGS".into(), "1".into()),
        ],
        ..ServerOpts::default()
    });
    s.add_user("ida", Some("10"));
    // Node a dials from its tunnel's address; node b's tunnel comes from 127.0.0.4 but it dials
    // from 127.0.0.5 (as a node behind another proxy or VPN would).
    let a = start_node_with(&s, "ida", "127.0.0.2", &[]);
    let b = start_node_with(&s, "ida", "127.0.0.4", &["--egress-bind", "127.0.0.5"]);
    let banned = wait_for("the relaying node banned by the watchdog", || {
        let audit = s.cli_json(&["audit", "list", "--limit", "50"]);
        audit.as_array()?.iter().find(|e| e["action"] == "device.quality" && e["after"]["state"] == "banned").cloned()
    });
    let audit = s.cli_json(&["audit", "list", "--limit", "50"]);
    let changes: Vec<&Value> = audit.as_array().unwrap().iter().filter(|e| e["action"] == "device.quality").collect();
    let b_dev = device(&s, &b.vip);
    let b_id = b_dev["id"].clone();
    assert_eq!(banned["target"], b_id, "{audit}");
    // With ban_after_flags = 1 the first flagging is the ban; it names the mismatch.
    let why = banned["reason"].as_str().unwrap();
    assert!(why.starts_with("repeated_flags: flagged 1 times"), "{why}");
    assert!(why.contains("relays through another proxy or VPN"), "{why}");
    assert!(why.contains("127.0.0.5") && why.contains("127.0.0.4"), "{why}");
    assert_eq!(b_dev["quality"]["state"], "banned", "{b_dev}");
    assert!(b_dev["quality"]["reasons"].as_array().unwrap().iter().any(|r| r["code"] == "egress_mismatch"), "{b_dev}");
    assert!(changes.iter().all(|e| e["target"] == b_id), "only the relaying node changed state: {audit}");
    // The direct node was probed too, leaves from its tunnel's address, and stays healthy.
    let d = wait_for("the direct node probed twice", || {
        let d = device(&s, &a.vip);
        (d["quality"]["summary"]["probes"].as_u64()? >= 2).then_some(d)
    });
    assert_eq!(d["quality"]["state"], "healthy", "{d}");
    assert_eq!(d["quality"]["summary"]["egress_ip"], "127.0.0.2", "{d}");
    assert_eq!(d["quality"]["summary"]["egress_mismatches"], 0, "{d}");
    assert!(series(&s, r#"traffix_watchdog_probes_total{result="egress_mismatch"}"#) >= 2.0);
    assert!(series(&s, r#"traffix_watchdog_probes_total{result="ok"}"#) >= 2.0);
}

#[test]
fn a_node_the_reputation_service_rates_risky_is_degraded_and_still_serves_when_alone() {
    // A reputation service on loopback: every address has risk 91; it records what it is asked.
    let rep = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rep_port = rep.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut c in rep.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned();
            log.lock().unwrap().push(head);
            let body = r#"{"risk":91}"#;
            let _ = write!(c, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        env: vec![
            ("TRAFFIX_WATCHDOG__REPUTATION_URL".into(), format!("http://127.0.0.1:{rep_port}/v1/{{ip}}")),
            ("TRAFFIX_WATCHDOG__EVALUATE_SECS".into(), "1".into()),
        ],
        ..ServerOpts::default()
    });
    let pass = s.add_user("joe", Some("10"));
    let n = s.start_node("joe", "127.0.0.6");
    let d = wait_for("the node degraded for its reputation", || {
        let d = device(&s, &n.vip);
        (d["quality"]["state"] == "degraded").then_some(d)
    });
    assert_eq!(d["quality"]["reasons"][0]["code"], "bad_reputation", "{d}");
    let detail = d["quality"]["reasons"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("127.0.0.6") && detail.contains("risk 91"), "{detail}");
    assert!(asked.lock().unwrap().iter().any(|l| l == "GET /v1/127.0.0.6 HTTP/1.1"), "{:?}", asked.lock().unwrap());
    // Degraded is routed when no healthy node fits.
    assert_eq!(exit_ip(&s, "joe", &pass).unwrap(), "127.0.0.6");
}
