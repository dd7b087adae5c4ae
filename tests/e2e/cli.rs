//! The command line as scripts and people meet it: `init` checks the address it will hand
//! nodes, output into a closed pipe ends quietly, `--json` errors are JSON, lists are newest
//! first with `--limit`/`--since`, an abuse report's node IP and time find the client, and a
//! second `serve` names the one already running.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::*;

fn traffix(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).arg("--data-dir").arg(dir).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// An initialised data directory, no server running: admin commands work on the database.
fn offline() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["init", "--data-dir"])
        .arg(dir.path().join("d"))
        .args(["--public-address", "proxy.example.com:8443", "--web-listen", "127.0.0.1:0"])
        .args(["--socks-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

#[test]
fn init_accepts_host_port_only_and_says_which_address_nodes_dial() {
    let dir = tempfile::tempdir().unwrap();
    let init = |d: &str, extra: &[&str]| {
        Command::new(BIN)
            .args(["init", "--data-dir"])
            .arg(dir.path().join(d))
            .args(["--web-listen", "127.0.0.1:0", "--socks-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap()
    };
    for (bad, says) in [
        ("http://proxy.example.com:8443", "not a URL"),
        ("proxy.example.com", "port is missing"),
        ("proxy.example.com:0", "must not be 0"),
        ("2001:db8::1:8443", "brackets"),
        ("proxy.example.com:8443/x", "not a port"),
    ] {
        let out = init("bad", &["--public-address", bad]);
        assert_eq!(out.status.code(), Some(64), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("--public-address must be HOST:PORT"), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{bad}: {}", stderr(&out));
        assert!(!dir.path().join("bad").exists(), "nothing is written for a refused address");
        let out = init("bad", &["--public-address", bad, "--json"]);
        assert_eq!(out.status.code(), Some(64));
        let e: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
        assert_eq!(e["error"], "invalid");
    }
    let out = init("v6", &["--public-address", "[2001:db8::1]:8443"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("public address:  [2001:db8::1]:8443\n"), "{text}");
    assert!(text.contains("Nodes must be able to reach [2001:db8::1]:8443"), "{text}");

    let out = init("default", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(defaulted: no --public-address given)"), "{text}");
    assert!(text.contains("Nodes must be able to reach 127.0.0.1:"), "{text}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = offline();
    let d = dir.path().join("d");
    for _ in 0..3 {
        assert!(traffix(&d, &["user", "credit", "admin", "1.00"]).status.success());
    }
    for args in [&["ledger", "list"][..], &["ledger", "list", "--json"], &["config", "example"], &["openapi"]] {
        // The reading end is closed before the command writes a byte: every write is EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(&d)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).is_empty(), "{args:?} must end quietly: {}", stderr(&out));
    }
}

#[test]
fn json_errors_have_the_api_shape_and_the_same_exit_codes() {
    let dir = offline();
    let d = dir.path().join("d");
    for args in [
        &["user", "show", "nobody"][..],
        &["ledger", "list", "--user", "nobody"],
        &["session", "list", "--user", "nobody"],
        &["withdrawal", "list", "--user", "nobody"],
        &["subuser", "list", "--user", "nobody"],
        &["user", "credit", "admin", "1.2.3"],
        &["ledger", "list", "--since", "yesterday"],
        &["subuser", "add", "admin", "sub_one", "--byte-cap", "-5GB"],
        &["user", "list", "--no-such-flag"],
    ] {
        let text = traffix(&d, args);
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let json = traffix(&d, &with_json);
        assert!(!text.status.success(), "{args:?} must fail");
        assert_eq!(text.status.code(), json.status.code(), "{args:?}: the same exit code with --json");
        assert!(json.stdout.is_empty(), "{args:?}: errors go to stderr");
        let err = stderr(&json);
        let body: Value =
            serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {err}"));
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error", "reason"], "{args:?}: {body}");
        assert!(!body["reason"].as_str().unwrap().is_empty());
        // People get words, not codes.
        let human = stderr(&text);
        assert!(!human.contains("(not_found)") && !human.contains("(invalid)"), "{args:?}: {human}");
        if args.contains(&"nobody") {
            assert_eq!(body["error"], "not_found", "{args:?}: an unknown user in a filter is not_found");
            assert_eq!(json.status.code(), Some(1));
        }
    }
}

#[test]
fn lists_are_newest_first_with_limit_and_since() {
    let dir = offline();
    let d = dir.path().join("d");
    for amount in ["1.00", "2.00", "3.00"] {
        assert!(traffix(&d, &["user", "credit", "admin", amount]).status.success());
    }
    let seqs = |args: &[&str]| -> Vec<u64> {
        let mut a = vec!["ledger", "list", "--json"];
        a.extend_from_slice(args);
        json_of(&traffix(&d, &a)).as_array().unwrap().iter().map(|t| t["seq"].as_u64().unwrap()).collect()
    };
    let all = seqs(&[]);
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");
    assert_eq!(seqs(&["--limit", "2"]), all[..2]);
    assert_eq!(seqs(&["--since", "1h"]), all);
    assert_eq!(seqs(&["--since", "2999-01-01"]), Vec::<u64>::new());
    assert_eq!(seqs(&["--until", "2000-01-01T00:00:00Z"]), Vec::<u64>::new());
    assert_eq!(seqs(&["--user", "admin", "--limit", "1"]), all[..1]);
    // The human table is newest first too.
    let out = traffix(&d, &["ledger", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let first_row = text.lines().nth(1).unwrap();
    assert!(first_row.trim_start().starts_with(&all[0].to_string()), "{text}");
    assert!(first_row.contains("3.00"), "amounts are decimals: {text}");

    // Sub-users: --user, with --parent kept as an alias; newest first.
    for name in ["sub_old", "sub_new"] {
        let out = traffix(&d, &["subuser", "add", "admin", name, "--byte-cap", "1.5GiB"]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let subs = json_of(&traffix(&d, &["subuser", "list", "--user", "admin", "--json"]));
    let names: Vec<&str> = subs.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sub_new", "sub_old"]);
    assert_eq!(subs[0]["byte_cap"], 1_610_612_736u64, "1.5GiB");
    let by_parent = json_of(&traffix(&d, &["subuser", "list", "--parent", "admin", "--limit", "1", "--json"]));
    assert_eq!(by_parent.as_array().unwrap().len(), 1);
    assert_eq!(by_parent[0]["name"], "sub_new");
    // Every list takes the same window.
    for list in [&["user", "list"][..], &["device", "list"], &["withdrawal", "list"], &["audit", "list"]] {
        let mut a = list.to_vec();
        a.extend(["--since", "2999-01-01", "--json"]);
        assert_eq!(json_of(&traffix(&d, &a)), serde_json::json!([]), "{list:?}");
    }
    let audit = json_of(&traffix(&d, &["audit", "list", "--limit", "2", "--json"]));
    let seq: Vec<u64> = audit.as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seq.len(), 2);
    assert!(seq[0] > seq[1], "{seq:?}");
}

#[test]
fn an_abuse_report_s_node_ip_and_time_find_the_client() {
    let s = Server::start();
    let pass = s.add_user("abuser", Some("5"));
    let _other = s.add_user("bystander", Some("5"));
    let node = s.start_node("bystander", "127.0.0.2");
    let out = curl(&["--proxy", &s.socks_url("abuser", &pass), &format!("http://{}/hello", origin().addr)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = node;
    let find = |args: &[&str]| -> Vec<Value> {
        let mut a = vec!["session", "list"];
        a.extend_from_slice(args);
        s.cli_json(&a).as_array().unwrap().clone()
    };
    let now = wait_for("the session row", || {
        Some(find(&["--node-ip", "127.0.0.2", "--since", "1h"])).filter(|rows| !rows.is_empty())
    });
    assert!(now.iter().all(|r| r["client"] == "abuser" && r["node_ip"] == "127.0.0.2"), "{now:?}");
    assert!(find(&["--node-ip", "127.0.0.3"]).is_empty(), "another node's IP");
    assert!(find(&["--node-ip", "127.0.0.2", "--until", "2000-01-01"]).is_empty(), "before it happened");
    assert!(find(&["--node-ip", "127.0.0.2", "--since", "2999-01-01"]).is_empty(), "after it ended");
    let out = s.cli(&["session", "list", "--node-ip", "127.0.0.2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("abuser"));

    // The API's sessions endpoint takes the same filters.
    let login = curl(&[
        "-k",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &serde_json::json!({"username": "admin", "password": s.admin_password}).to_string(),
        &format!("https://{}/api/v1/auth/login", s.web),
    ]);
    let token: Value = serde_json::from_slice(&login.stdout).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let api = |query: &str| -> (u16, Value) {
        let out = curl(&[
            "-k",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("https://{}/api/v1/admin/sessions?{query}", s.web),
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), serde_json::from_str(body).unwrap_or(Value::Null))
    };
    let (code, rows) = api("node_ip=127.0.0.2&since=1h");
    assert_eq!(code, 200, "{rows}");
    assert!(!rows.as_array().unwrap().is_empty() && rows.as_array().unwrap().iter().all(|r| r["client"] == "abuser"));
    let (code, rows) = api("node_ip=127.0.0.2&until=2000-01-01T00:00:00Z");
    assert_eq!((code, rows), (200, serde_json::json!([])));
    let (code, rows) = api("node_ip=127.0.0.9");
    assert_eq!((code, rows), (200, serde_json::json!([])));
    let (code, body) = api("since=whenever");
    assert_eq!(code, 400);
    assert_eq!(body["error"], "invalid");
    let (code, body) = api("node_ip=not-an-ip");
    assert_eq!(code, 400, "{body}");
}

#[test]
fn a_second_serve_names_the_one_already_running() {
    let s = Server::start();
    let pid = s.child.as_ref().unwrap().id();
    let out = s.cli(&["serve"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("already running") && err.contains(&format!("pid {pid}")), "{err}");
    assert!(!err.contains("redb") && !err.contains("Database"), "{err}");
    // The first one is untouched: its admin socket still answers.
    assert!(s.cli_json(&["user", "show", "admin"])["admin"] == true);
}
