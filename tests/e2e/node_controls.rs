//! The Linux node's owner controls with the real binaries (issue 20 items 1 and 7): a data cap
//! reached stops the node's streams and shows it paused (daily_cap), across a restart; a pause
//! by its settings file (`traffix node pause`) closes its tunnel, shows it paused (by_owner) and
//! not offline — no "offline" notification — and `resume` brings it back; a schedule outside
//! its hours pauses it too.

use serde_json::{Value, json};

use crate::common::*;

fn fetch(s: &Server, user: &str, pass: &str, path: &str) -> Result<Vec<u8>, String> {
    let out = curl(&["--proxy", &s.socks_url(user, pass), &format!("http://{}{path}", origin().addr)]);
    if out.status.success() { Ok(out.stdout) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// Waits until `node`'s device is offline and paused for `reason`.
fn wait_paused(s: &Server, node: &Node, reason: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let d = s.device(&node.vip).unwrap();
        if d["online"] == false && d["pause_reason"] == reason {
            return d;
        }
        assert!(start.elapsed() < PATIENCE, "{} not paused ({reason}): {d}\n{}", node.vip, node.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_linux_node_at_its_daily_cap_stops_getting_streams_and_shows_paused_across_a_restart() {
    let s = Server::start();
    let pass = s.add_user("ann", Some("10"));
    s.add_user("olaf", None);
    // The server routes nothing to a node within 1 MiB of its cap, so the cap is a few MB.
    let cap = ["--daily-cap", "3MB"];
    let mut node = s.start_node_with("olaf", "127.0.0.2", &cap);
    let d = s.device(&node.vip).unwrap();
    assert_eq!(d["pause_reason"], Value::Null, "{d}");

    // 1.6 MB through the node count 3.2 MB (both legs): over the 3 MB cap.
    assert_eq!(fetch(&s, "ann", &pass, "/bytes/1600000").unwrap().len(), 1_600_000);
    let d = wait_paused(&s, &node, "daily_cap");
    assert!(d["last_seen"].is_string(), "{d}");
    // No node left to route to: the client is refused, the node carries nothing more.
    assert!(fetch(&s, "ann", &pass, "/hello").is_err());
    assert!(node.log().contains("paused: draining, then closing the tunnel until it clears"), "{}", node.log());

    // The count survives a restart: the node connects, says it is paused at its cap, leaves.
    node.sigterm();
    node.wait_exit();
    let said = node.log().matches("reason=\"daily_cap\"").count();
    node.spawn_with(None, &cap);
    let start = std::time::Instant::now();
    while node.log().matches("reason=\"daily_cap\"").count() < said + 2 {
        assert!(start.elapsed() < PATIENCE, "the restarted node did not report its cap again:\n{}", node.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    wait_paused(&s, &node, "daily_cap");
    assert!(fetch(&s, "ann", &pass, "/hello").is_err());
    // The admin API shows the same.
    let list = s.cli_json(&["device", "list"]);
    let d = list.as_array().unwrap().iter().find(|d| d["vip"] == node.vip.as_str()).unwrap();
    assert_eq!((d["online"].as_bool(), d["pause_reason"].as_str()), (Some(false), Some("daily_cap")), "{d}");
}

fn api(s: &Server, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let url = format!("http://{}{path}", s.web);
    let mut args = vec!["-s".to_owned(), "-X".into(), method.into(), "-w".into(), "\n%{http_code}".into(), url];
    if let Some(t) = token {
        args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        args.extend(["-H".into(), "Content-Type: application/json".into(), "--data".into(), b.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn notices(s: &Server, token: &str) -> Vec<String> {
    let (code, v) = api(s, "GET", "/api/v1/me/notifications?limit=100", Some(token), None);
    assert_eq!(code, 200, "{v}");
    v.as_array().unwrap().iter().map(|n| n["text"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn a_paused_node_closes_its_tunnel_shows_paused_not_offline_and_comes_back_and_a_schedule_pauses_it() {
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        insecure_http: true,
        env: vec![("TRAFFIX_TELEGRAM__WATCH_INTERVAL_SECS".into(), "1".into())],
        ..ServerOpts::default()
    });
    let pass = s.add_user("ann", Some("10"));
    s.cli_json(&["user", "add", "bob", "--password", "bob-password-1"]);
    let login = json!({"username": "bob", "password": "bob-password-1"});
    let (code, v) = api(&s, "POST", "/api/v1/auth/login", None, Some(login));
    assert_eq!(code, 200, "{v}");
    let bob = v["access_token"].as_str().unwrap().to_owned();
    let (code, v) = api(&s, "PUT", "/api/v1/me/notify-prefs", Some(&bob), Some(json!({"offline_minutes": 0})));
    assert_eq!(code, 200, "{v}");

    let settings = s.data_dir().join("bob-node.toml");
    std::fs::write(&settings, "# bob's node\nmax_streams = 16\n").unwrap();
    let file = settings.display().to_string();
    let node = s.start_node_with("bob", "127.0.0.2", &["--settings", &file]);
    // A second node, stopped the hard way below: its "offline" notice shows the watcher ran.
    let mut other = s.start_node("bob", "127.0.0.3");
    assert_eq!(fetch(&s, "ann", &pass, "/hello").unwrap(), b"hello from origin\n");

    // Paused by its owner through the settings file: it reports why, drains and leaves.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_traffix"))
        .args(["node", "pause", "--settings", &file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&settings).unwrap().contains("max_streams = 16"), "the rest of the file is kept");
    let d = wait_paused(&s, &node, "by_owner");
    assert_eq!(d["paused"], false, "the node paused itself; the server did not pause it");

    // The other node dies: bob hears of that one, never of the paused one.
    other.kill9();
    let gone = format!("Your node {} has been offline", other.vip);
    wait_for("the offline notice of the node that died", || {
        notices(&s, &bob).iter().any(|t| t.contains(&gone)).then_some(())
    });
    let all = notices(&s, &bob);
    assert!(!all.iter().any(|t| t.contains(&node.vip)), "a node that left paused is not offline: {all:?}");
    // Nothing to route to now.
    assert!(fetch(&s, "ann", &pass, "/hello").is_err());

    // Resumed: it reconnects and serves.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_traffix"))
        .args(["node", "resume", "--settings", &file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the resumed node online and serving", || {
        let d = s.device(&node.vip)?;
        (d["online"] == true && d["state"] == "serving" && d["pause_reason"].is_null()).then_some(())
    });
    assert_eq!(fetch(&s, "ann", &pass, "/hello").unwrap(), b"hello from origin\n");
    let all = notices(&s, &bob);
    assert!(!all.iter().any(|t| t.contains(&node.vip)), "no offline, no back for a paused node: {all:?}");

    // A schedule whose hours are not now (the two hours that start an hour from now, UTC).
    let h = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 3600 + 1) % 24;
    let rule = format!("daily {:02}:00-{:02}:00", h, (h + 2) % 24);
    std::fs::write(&settings, format!("max_streams = 16\nschedule = [\"{rule}\"]\n")).unwrap();
    wait_paused(&s, &node, "outside_schedule");
    assert!(fetch(&s, "ann", &pass, "/hello").is_err());
    // A broken edit keeps the last good settings (and the node says why).
    std::fs::write(&settings, "schedule = [\"whenever\"]\n").unwrap();
    wait_for("the node refusing the broken file", || node.log().contains("settings file not applied").then_some(()));
    assert_eq!(s.device(&node.vip).unwrap()["pause_reason"], "outside_schedule");
    // All hours again: back.
    std::fs::write(&settings, "schedule = [\"daily 00:00-24:00\"]\n").unwrap();
    wait_for("the node back inside its schedule", || {
        let d = s.device(&node.vip)?;
        (d["online"] == true && d["state"] == "serving").then_some(())
    });
    assert_eq!(fetch(&s, "ann", &pass, "/hello").unwrap(), b"hello from origin\n");
}
