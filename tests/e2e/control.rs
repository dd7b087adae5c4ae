//! Control requests over the tunnel (docs/protocol.md "Control requests"): `traffix node stats`
//! and `traffix node unpair` against the real server, next to the node agent serving with the
//! same identity; and what a hostile or old node gets for them.

use std::path::Path;

use serde_json::Value;
use traffix::tunnel::protocol::{self as p, ErrorCode, Frame};

use crate::common::*;

/// 1 byte costs 1 micro-unit (price 1000.00 per GB), fee 30 %.
fn priced() -> ServerOpts {
    ServerOpts {
        allow_private_targets: true,
        env: vec![
            ("TRAFFIX_BILLING__PRICE_PER_GB".into(), "1000.00".into()),
            ("TRAFFIX_BILLING__PLATFORM_FEE_PERCENT".into(), "30".into()),
        ],
        ..ServerOpts::default()
    }
}

fn node_cli(s: &Server, state: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["node", "--state", state.to_str().unwrap()];
    a.extend_from_slice(args);
    s.cli(&a)
}

fn node_stats(s: &Server, state: &Path) -> Value {
    let out = node_cli(s, state, &["stats", "--days", "3", "--months", "2", "--json"]);
    assert!(out.status.success(), "node stats: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn node_stats_show_the_days_traffic_and_unpair_removes_the_device() {
    let s = Server::start_with(priced());
    let pass = s.add_user("buyer", Some("100"));
    s.add_user("host", None);
    let mut node = s.start_node("host", "127.0.0.2");
    let device = s.devices()[0]["id"].as_str().unwrap().to_owned();
    let o = origin().addr;
    let out = curl(&["--proxy", &s.socks_url("buyer", &pass), "-o", "/dev/null", &format!("http://{o}/bytes/1000000")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The server's roll-up for the device today, as the admin sees it.
    let today = wait_for("the stream is metered", || {
        let d = s.cli_json(&["usage", "--device", &device[..8], "--by", "day", "--last", "1"]);
        let t = d["total"].clone();
        (t["bytes_up"].as_u64()? + t["bytes_down"].as_u64()? > 1_000_000 && t["earned_micros"].as_u64()? > 0)
            .then_some(t)
    });

    // Asked while the agent serves with the same key: the numbers match, and the serving tunnel
    // is not replaced by the control session.
    let stats = node_stats(&s, &node.state);
    assert_eq!(stats["device"], device.as_str());
    assert_eq!(stats["currency"], "USD");
    let days = stats["days"].as_array().unwrap();
    let months = stats["months"].as_array().unwrap();
    assert_eq!((days.len(), months.len()), (3, 2), "{stats}");
    let last = &days[2];
    assert_eq!(
        last["bytes"].as_u64(),
        Some(today["bytes_up"].as_u64().unwrap() + today["bytes_down"].as_u64().unwrap())
    );
    assert_eq!(last["earned_micros"], today["earned_micros"]);
    assert_eq!(months[1]["bytes"], last["bytes"], "this month so far includes today");
    assert!(last["period"].as_str().unwrap().starts_with(months[1]["period"].as_str().unwrap()));
    assert_eq!(s.online_count(), 1);
    assert!(!node.log().contains("replaced"), "{}", node.log());
    let text = String::from_utf8_lossy(&node_cli(&s, &node.state, &["stats"]).stdout).to_string();
    assert!(text.contains(&device) && text.contains("earned") && text.contains("USD"), "{text}");
    assert!(s.metrics_text().contains("traffix_tunnel_control_requests_total{request=\"stats\",result=\"ok\"} 2"));

    // Unpair needs --yes; then the server forgets the device and the identity file goes.
    let kept = s.data_dir().join("kept-identity.json");
    std::fs::copy(&node.state, &kept).unwrap();
    let out = node_cli(&s, &node.state, &["unpair"]);
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(node.state.exists() && s.devices().len() == 1);
    let out = node_cli(&s, &node.state, &["unpair", "--yes", "--reason", "selling the box"]);
    assert!(out.status.success(), "unpair: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unpaired"));
    assert!(!node.state.exists(), "the identity file is deleted");
    assert!(s.devices().is_empty(), "the admin no longer lists it");
    // The serving agent was told (device_removed) and stopped for good.
    let st = node.wait_exit();
    assert!(!st.success());
    assert!(node.log().contains("removed"), "{}", node.log());
    let audit = s.cli_json(&["audit", "list", "--limit", "5"]);
    let entry = audit.as_array().unwrap().iter().find(|a| a["action"] == "device.remove").expect("audited").clone();
    assert_eq!(entry["actor"], format!("device:{device}"));
    assert_eq!(entry["reason"], "selling the box");
    // The old key no longer gets in.
    let out = node_cli(&s, &kept, &["stats"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown device"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.metrics_text().contains("traffix_tunnel_control_requests_total{request=\"unpair\",result=\"ok\"} 1"));
}

/// HELLO → CHALLENGE → PROOF → WELCOME with `state`'s key, for versions `min..=max`.
fn handshake(s: &Server, state: &Path, min: u8, max: u8, control_only: bool) -> (Ws, u8) {
    let id = traffix::node::state::NodeIdentity::load(state).unwrap().unwrap();
    let key = id.keypair().unwrap();
    let device = id.device_id().unwrap();
    let mut ws = Ws::tunnel(s, "127.0.0.3");
    let hello =
        p::Hello { min_version: min, max_version: max, device_id: Some(device), control_only, ..p::Hello::default() };
    ws.send_frame(&Frame::Hello(hello)).unwrap();
    let Some(Frame::Challenge(c)) = ws.next_frame() else { panic!("no CHALLENGE") };
    let sig = key.sign(&traffix::identity::challenge_message(&id.pin_bytes().unwrap(), &device, &c.nonce));
    ws.send_frame(&Frame::Proof(p::Proof { nonce: c.nonce, signature: sig.as_ref().to_vec() })).unwrap();
    match ws.next_frame() {
        Some(Frame::Welcome(_)) => (ws, c.version.unwrap()),
        other => panic!("expected WELCOME, got {other:?}"),
    }
}

fn error_of(frames: &[Frame]) -> Option<(ErrorCode, String)> {
    frames.iter().find_map(|f| match f {
        Frame::Error { code, message } => Some((*code, message.clone())),
        _ => None,
    })
}

#[test]
fn control_requests_are_rate_limited_and_refused_on_version_1() {
    let s = Server::start_with(priced());
    s.add_user("host", None);
    let state = paired_identity(&s, "host", "127.0.0.2");

    // Version 1 (an old node): the new frames are unknown to it, so sending one is a violation.
    let (mut ws, v) = handshake(&s, &state, 1, 1, false);
    assert_eq!(v, 1);
    ws.send_frame(&Frame::StatsRequest(p::StatsRequest { request_id: 1, days: 1, months: 0 })).unwrap();
    let (code, msg) = error_of(&ws.until_closed()).expect("an ERROR");
    assert_eq!(code, ErrorCode::ProtocolViolation, "{msg}");

    // Version 2, control-only: three back to back, then rate_limited with a wait, not a close.
    let (mut ws, v) = handshake(&s, &state, 2, 2, true);
    assert_eq!(v, 2);
    let mut answers = Vec::new();
    for id in 1..=4 {
        ws.send_frame(&Frame::StatsRequest(p::StatsRequest { request_id: id, days: 62, months: 24 })).unwrap();
    }
    while answers.len() < 4 {
        match ws.next_frame() {
            Some(Frame::Stats(st)) => answers.push(*st),
            Some(Frame::HeartbeatAck(_)) => {}
            other => panic!("expected STATS, got {other:?}"),
        }
    }
    answers.sort_by_key(|a| a.request_id);
    for a in &answers[..3] {
        assert_eq!(a.status, p::StatsStatus::Ok);
        assert_eq!((a.days.len(), a.months.len()), (62, 24));
    }
    assert_eq!(answers[3].status, p::StatsStatus::RateLimited);
    assert!(answers[3].retry_after_s.is_some_and(|r| (1..=10).contains(&r)));
    // A flood past the control-frame rate ends the session.
    for id in 10..40 {
        if ws.send_frame(&Frame::StatsRequest(p::StatsRequest { request_id: id, days: 1, months: 0 })).is_err() {
            break;
        }
    }
    let (code, msg) = error_of(&ws.until_closed()).expect("an ERROR");
    assert_eq!(code, ErrorCode::ProtocolViolation, "{msg}");

    // At most two control-only sessions per device at a time; they never go online.
    let (_a, _) = handshake(&s, &state, 2, 2, true);
    let (_b, _) = handshake(&s, &state, 2, 2, true);
    assert_eq!(s.online_count(), 0);
    let id = traffix::node::state::NodeIdentity::load(&state).unwrap().unwrap();
    let mut third = Ws::tunnel(&s, "127.0.0.3");
    let hello = p::Hello {
        min_version: 2,
        max_version: 2,
        device_id: Some(id.device_id().unwrap()),
        control_only: true,
        ..p::Hello::default()
    };
    third.send_frame(&Frame::Hello(hello)).unwrap();
    let Some(Frame::Challenge(c)) = third.next_frame() else { panic!("no CHALLENGE") };
    let sig = id.keypair().unwrap().sign(&traffix::identity::challenge_message(
        &id.pin_bytes().unwrap(),
        &id.device_id().unwrap(),
        &c.nonce,
    ));
    third.send_frame(&Frame::Proof(p::Proof { nonce: c.nonce, signature: sig.as_ref().to_vec() })).unwrap();
    let (code, _) = error_of(&third.until_closed()).expect("an ERROR");
    assert_eq!(code, ErrorCode::LimitExceeded);
}

/// The admin's removal (CLI and API) is the same path: the device goes, its serving agent is
/// told `device_removed` and stops for good, and its vIP is not handed to the next device.
#[test]
fn the_admin_removes_devices_from_the_cli_and_the_api() {
    use crate::api::{Api, token};
    let s = Server::start_with(priced());
    s.add_user("host", None);
    let mut first = s.start_node("host", "127.0.0.2");
    let removed = s.cli_json(&["device", "remove", &first.vip, "--reason", "returned hardware"]);
    assert_eq!(removed["vip"], first.vip.as_str());
    assert!(s.devices().is_empty());
    assert!(!first.wait_exit().success(), "the agent stops: only a new pairing brings it back");
    assert!(first.log().contains("removed"), "{}", first.log());

    let second = s.start_node("host", "127.0.0.3");
    assert_ne!(second.vip, first.vip, "a removed device's vIP stays reserved");
    let api = Api::new(&s);
    let t = token(&api.login("admin", &s.admin_password));
    let r = api.post(&format!("/api/v1/admin/nodes/{}/remove", second.vip), &t, serde_json::json!({"reason": "fraud"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(s.devices().is_empty());
    let r = api.post(&format!("/api/v1/admin/nodes/{}/remove", second.vip), &t, serde_json::json!({}));
    assert_eq!(r.status, 404, "{}", r.body);
    let audit = s.cli_json(&["audit", "list", "--limit", "10"]);
    let removals: Vec<&Value> = audit.as_array().unwrap().iter().filter(|a| a["action"] == "device.remove").collect();
    assert_eq!(removals.len(), 2, "{audit}");
}
