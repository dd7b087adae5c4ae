//! Money beyond metering, through the real CLI and server: holds on live streams, withdrawals
//! (request, approve, reject, minimum payout), idempotent deposits, the self-use rule, the
//! sessions table and the hourly/daily usage roll-up — and `ledger verify` after each.

use std::process::{Command, Stdio};

use crate::common::*;

/// 1 byte costs 1 micro-unit (price 1000.00 per GB), fee 30 %, minimum payout 5.00.
fn priced() -> ServerOpts {
    ServerOpts {
        allow_private_targets: true,
        env: vec![
            ("TRAFFIX_BILLING__PRICE_PER_GB".into(), "1000.00".into()),
            ("TRAFFIX_BILLING__PLATFORM_FEE_PERCENT".into(), "30".into()),
            ("TRAFFIX_BILLING__MIN_PAYOUT".into(), "5.00".into()),
        ],
        ..ServerOpts::default()
    }
}

fn show(s: &Server, user: &str) -> serde_json::Value {
    s.cli_json(&["user", "show", user])
}

fn micros(v: &serde_json::Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn verify_ok(s: &Server) -> serde_json::Value {
    let out = s.cli(&["ledger", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success() && v["ok"] == true, "ledger verify: {v}");
    v
}

fn fails_with(s: &Server, args: &[&str], needle: &str) {
    let out = s.cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "traffix {args:?} should fail");
    assert!(err.contains(needle), "traffix {args:?}: {err}");
}

#[test]
fn withdrawals_hold_the_amount_until_an_admin_approves_or_rejects_it() {
    let s = Server::start_with(priced());
    s.add_user("earner", Some("20"));
    fails_with(&s, &["withdrawal", "request", "earner", "4.99"], "minimum payout is 5.00");
    fails_with(&s, &["withdrawal", "request", "earner", "20.01"], "only 20.00 is available");
    fails_with(&s, &["withdrawal", "request", "nobody", "6"], "not found");

    let a = s.cli_json(&["withdrawal", "request", "earner", "12.50", "--to", "IBAN DE00 1234"]);
    assert_eq!(a["status"], "pending");
    assert_eq!(a["destination"], "IBAN DE00 1234");
    let u = show(&s, "earner");
    assert_eq!(micros(&u, "balance_micros"), 7_500_000, "the amount leaves the balance at once");
    assert_eq!(micros(&u, "pending_withdrawals_micros"), 12_500_000);
    fails_with(&s, &["withdrawal", "request", "earner", "7.51"], "only 7.50 is available");
    let b = s.cli_json(&["withdrawal", "request", "earner", "5"]);

    let id_a = a["id"].as_u64().unwrap().to_string();
    let id_b = b["id"].as_u64().unwrap().to_string();
    let approved = s.cli_json(&["withdrawal", "approve", &id_a, "--reason", "paid by bank transfer"]);
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "admin (cli)", "{approved}");
    // Deciding again the same way changes nothing; the other way is refused.
    assert_eq!(s.cli_json(&["withdrawal", "approve", &id_a])["decided_at"], approved["decided_at"]);
    fails_with(&s, &["withdrawal", "reject", &id_a, "--reason", "x"], "already approved");
    fails_with(&s, &["withdrawal", "reject", &id_b, "--reason", " "], "needs a reason");
    let rejected = s.cli_json(&["withdrawal", "reject", &id_b, "--reason", "unknown account"]);
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(micros(&show(&s, "earner"), "balance_micros"), 7_500_000, "a rejection gives the money back");

    let list = s.cli_json(&["withdrawal", "list", "--user", "earner"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(s.cli_json(&["withdrawal", "list", "--status", "pending"]).as_array().unwrap().len(), 0);
    fails_with(&s, &["withdrawal", "list", "--status", "paid"], "pending, approved or rejected");

    // Each step is a transfer with a deterministic id.
    let ledger = s.cli_json(&["ledger", "list", "--user", "earner"]);
    let ids: Vec<&str> = ledger.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    for want in [format!("payout:{id_a}:request"), format!("payout:{id_b}:request"), format!("payout:{id_b}:reject")] {
        assert!(ids.contains(&want.as_str()), "{want} in {ids:?}");
    }
    let all = s.cli_json(&["ledger", "list"]);
    assert!(all.as_array().unwrap().iter().any(|t| t["id"] == format!("payout:{id_a}:approve")
        && t["credit"] == "external:payouts"
        && t["amount_micros"] == 12_500_000));
    let audit = s.cli_json(&["audit", "list"]);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for want in ["withdrawal.request", "withdrawal.approve", "withdrawal.reject"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    let v = verify_ok(&s);
    assert_eq!(v["withdrawals"], 2);
}

#[test]
fn a_replayed_deposit_credits_once_and_a_conflicting_one_is_refused() {
    let s = Server::start_with(priced());
    s.add_user("payer", None);
    for _ in 0..3 {
        let out = s.cli(&["user", "credit", "payer", "9.99", "--id", "stripe:evt_123", "--reason", "top-up"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(micros(&show(&s, "payer"), "balance_micros"), 9_990_000);
    fails_with(&s, &["user", "credit", "payer", "10", "--id", "stripe:evt_123"], "different payload");
    assert_eq!(micros(&show(&s, "payer"), "balance_micros"), 9_990_000);
    // The same replay against the stopped server's database.
    let mut s = s;
    assert!(s.terminate().success());
    let out = s.cli(&["user", "credit", "payer", "9.99", "--id", "stripe:evt_123"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(micros(&show(&s, "payer"), "balance_micros"), 9_990_000);
    verify_ok(&s);
}

/// While a client streams, part of its balance is held (visible, not withdrawable); the hold
/// goes when the stream ends, and a kill -9 leaves holds that the restart expires.
#[test]
fn live_streams_hold_money_and_a_restart_expires_the_holds() {
    let mut s = Server::start_with(priced());
    let pass = s.add_user("streamer", Some("200"));
    s.add_user("host", None);
    let node = s.start_node("host", "127.0.0.2");
    let mut curl = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--proxy", &s.socks_url("streamer", &pass)])
        .arg(format!("http://{}/forever", origin().addr))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let u = wait_for("a hold", || {
        let u = show(&s, "streamer");
        (micros(&u, "held_micros") > 0 && micros(&u, "accrued_micros") > 0).then_some(u)
    });
    // At 1 micro per byte a hold is at least 256 MiB of traffic (268.44): here all 200.00.
    assert_eq!(micros(&u, "available_micros"), micros(&u, "balance_micros") - micros(&u, "held_micros"));
    assert!(micros(&u, "available_micros") < 5_000_000, "{u}");
    fails_with(&s, &["withdrawal", "request", "streamer", "5"], "is available");
    let v = verify_ok(&s);
    assert_eq!(v["holds"], 1);
    assert!(v["live_sessions"].as_u64().unwrap() >= 1);

    s.kill9();
    let _ = curl.wait();
    s.spawn();
    let u = show(&s, "streamer");
    assert_eq!(micros(&u, "held_micros"), 0, "the restart expired the hold");
    assert_eq!(micros(&u, "accrued_micros"), 0, "and posted what was accrued");
    let v = verify_ok(&s);
    assert_eq!(v["holds"], 0);
    assert_eq!(v["live_sessions"], 0);
    assert!(s.log().contains("expired its holds"));

    // A short stream: its hold goes with it.
    s.wait_node_online(&node);
    let out = curl_ok(&["--proxy", &s.socks_url("streamer", &pass), &format!("http://{}/hello", origin().addr)]);
    assert!(!out.is_empty());
    wait_for("hold released", || (micros(&show(&s, "streamer"), "held_micros") == 0).then_some(()));
    verify_ok(&s);
}

/// `log` without terminal colour codes (ESC `[` … `m`).
fn without_ansi(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

fn curl_ok(args: &[&str]) -> Vec<u8> {
    let out = curl(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The sessions table and the usage roll-up agree with the ledger; a client using its own node
/// pays only the platform fee.
#[test]
fn sessions_and_usage_series_match_the_ledger_and_self_use_pays_only_the_fee() {
    let mut opts = priced();
    // Heartbeats every second, so the node hears the server's count for today soon.
    opts.env.push(("TRAFFIX_LIMITS__HEARTBEAT_INTERVAL_SECS".into(), "1".into()));
    opts.env.push(("TRAFFIX_LIMITS__HEARTBEAT_IDLE_INTERVAL_SECS".into(), "1".into()));
    let s = Server::start_with(opts);
    let pass = s.add_user("buyer", Some("100"));
    let own = s.add_user("host", Some("100"));
    let node = s.start_node("host", "127.0.0.2");
    let vip = s.wait_node_online(&node);
    let device = s.devices().iter().find(|d| d["vip"] == vip.as_str()).unwrap()["id"].as_str().unwrap().to_owned();
    let o = origin().addr;
    curl_ok(&["--proxy", &s.socks_url("buyer", &pass), "-o", "/dev/null", &format!("http://{o}/bytes/3000000")]);
    curl_ok(&["--proxy", &s.socks_url("host", &own), "-o", "/dev/null", &format!("http://{o}/bytes/1000000")]);
    wait_for("posted", || {
        let list = s.cli_json(&["session", "list"]);
        let rows = list.as_array().unwrap().clone();
        (rows.len() == 2 && rows.iter().all(|r| r["live"] == false)).then_some(())
    });
    wait_for("nothing accrued", || {
        (micros(&show(&s, "buyer"), "accrued_micros") == 0 && micros(&show(&s, "host"), "accrued_micros") == 0)
            .then_some(())
    });

    let sessions = s.cli_json(&["session", "list", "--user", "buyer"]);
    let r = &sessions.as_array().unwrap()[0];
    assert_eq!(r["client"], "buyer");
    assert_eq!(r["owner"], "host");
    assert_eq!(r["device"], device);
    assert_eq!(r["end_reason"], "closed");
    let bytes = r["bytes_up"].as_i64().unwrap() + r["bytes_down"].as_i64().unwrap();
    assert!(bytes > 3_000_000 && bytes < 3_030_000, "{r}");
    let charge = r["charge_micros"].as_i64().unwrap();
    assert_eq!(charge, bytes, "1 micro per byte");
    let node_credit = r["node_credit_micros"].as_i64().unwrap();
    assert_eq!(node_credit, charge * 70 / 100);
    assert_eq!(micros(&show(&s, "buyer"), "balance_micros"), 100_000_000 - charge);

    let mine = s.cli_json(&["session", "list", "--user", "host"]);
    let m = &mine.as_array().unwrap()[0];
    assert_eq!(m["self_use"], true);
    let m_charge = m["charge_micros"].as_i64().unwrap();
    let m_fee = m_charge - m["node_credit_micros"].as_i64().unwrap();
    // The owner earned the buyer's node share and paid only the fee on its own traffic.
    assert_eq!(micros(&show(&s, "host"), "balance_micros"), 100_000_000 + node_credit - m_fee);

    // Usage series: per client, per owner and per device, hourly and daily, zero-filled.
    let hourly = s.cli_json(&["usage", "--user", "buyer", "--by", "hour", "--last", "3"]);
    assert_eq!(hourly["series"].as_array().unwrap().len(), 3);
    assert_eq!(hourly["total"]["debit_micros"], charge);
    assert_eq!(hourly["total"]["sessions"], 1);
    let daily = s.cli_json(&["usage", "--owner", "host"]);
    assert_eq!(daily["series"].as_array().unwrap().len(), 30);
    assert_eq!(daily["total"]["earned_micros"], node_credit, "self-use earns nothing");
    assert_eq!(daily["total"]["fee_micros"].as_i64().unwrap(), charge - node_credit + m_fee);
    let dev = s.cli_json(&["usage", "--device", &device[..8], "--by", "day", "--last", "1"]);
    assert_eq!(dev["subject"], format!("device:{device}"));
    assert_eq!(dev["total"]["earned_micros"], node_credit);
    assert_eq!(dev["total"]["sessions"], 2);
    let listed = s.devices().into_iter().find(|d| d["id"] == device.as_str()).unwrap();
    assert_eq!(listed["earned_today_micros"], node_credit, "{listed}");
    // The node hears the same count in its HEARTBEAT_ACKs (docs/protocol.md, tags 3-5).
    let want = format!("today_bytes={} earned_today={node_credit} currency=\"USD\"", listed["bytes_today"]);
    assert!(listed["bytes_today"].as_i64().unwrap() > bytes, "{listed}");
    wait_for("the node logs today's count from the server", || without_ansi(&node.log()).contains(&want).then_some(()));
    let text = String::from_utf8_lossy(&s.cli(&["usage", "--owner", "host", "--last", "2"]).stdout).to_string();
    assert!(text.contains("EARNED") && text.contains("total"), "{text}");
    fails_with(&s, &["usage", "--user", "nobody"], "no user");
    fails_with(&s, &["usage", "--user", "buyer", "--by", "week"], "hour or day");
    assert!(!s.cli(&["usage"]).status.success(), "a subject is required");
    verify_ok(&s);
}

/// Sub-users log in to the proxy with their own name and password, are billed to their parent,
/// and are held to their own stream cap and byte cap.
#[test]
fn sub_users_are_billed_to_their_parent_and_held_to_their_caps() {
    let s = Server::start_with(priced());
    s.add_user("agency", Some("100"));
    s.add_user("host", None);
    let _node = s.start_node("host", "127.0.0.2");
    let sub = s.cli_json(&["subuser", "add", "agency", "agency_bot", "--byte-cap", "3000000", "--max-streams", "1"]);
    let pass = sub["proxy_password"].as_str().unwrap().to_owned();
    assert_eq!(sub["parent"], "agency");
    fails_with(&s, &["user", "add", "agency_bot"], "already exists");
    fails_with(&s, &["subuser", "add", "agency", "host"], "already exists");
    fails_with(&s, &["subuser", "add", "nobody", "x_bot"], "not found");
    let o = origin().addr;

    // Its own credentials work; the parent pays.
    curl_ok(&["--proxy", &s.socks_url("agency_bot", &pass), "-o", "/dev/null", &format!("http://{o}/bytes/1000000")]);
    wait_for("posted", || {
        (micros(&show(&s, "agency"), "accrued_micros") == 0
            && micros(&show(&s, "agency"), "balance_micros") < 100_000_000)
            .then_some(())
    });
    let sessions = s.cli_json(&["session", "list", "--user", "agency"]);
    let r = &sessions.as_array().unwrap()[0];
    assert_eq!((r["client"].as_str(), r["sub"].as_str()), (Some("agency"), Some("agency_bot")));
    let charge = r["charge_micros"].as_i64().unwrap();
    assert_eq!(micros(&show(&s, "agency"), "balance_micros"), 100_000_000 - charge);
    let used = s.cli_json(&["usage", "--sub", "agency_bot"])["total"]["bytes_down"].as_u64().unwrap();
    assert!(used >= 1_000_000, "{used}");

    // One stream at a time: while an idle one is open, a second is refused (429 over HTTP).
    let script = format!(
        r#"
import sys, time
from python_socks.sync import Proxy
p = Proxy.from_url("socks5://agency_bot:{pass}@{socks}", rdns=True)
s = p.connect(dest_host="{host}", dest_port={port}, timeout=30)
print("open", flush=True)
time.sleep(60)
"#,
        socks = s.socks,
        host = o.ip(),
        port = o.port()
    );
    let mut hold = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(hold.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "open");
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &s.http_proxy_url("agency_bot", &pass),
        &format!("http://{o}/hello"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "429");
    let _ = hold.kill();
    let _ = hold.wait();
    // Its slot is free once the server has seen the socket close (the session then ends).
    wait_for("idle stream closed", || {
        let list = s.cli_json(&["session", "list", "--user", "agency"]);
        let rows = list.as_array().unwrap();
        (rows.len() >= 2 && rows.iter().all(|r| r["live"] == false)).then_some(())
    });

    // The byte cap cuts a stream and then refuses new ones with a reason (403).
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        "--proxy",
        &s.socks_url("agency_bot", &pass),
        &format!("http://{o}/forever"),
    ]);
    let got: u64 = String::from_utf8_lossy(&out.stdout).parse().unwrap();
    // About 2,000,000 bytes were left under the cap (1,000,000 and request heads used).
    assert!(got > 1_500_000 && got < 3_000_000 + 2 * 256 * 1024, "cut at the cap: {got}");
    let out = curl(&["-s", "-i", "-x", &s.http_proxy_url("agency_bot", &pass), &format!("http://{o}/hello")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 403") && text.contains("3000000 bytes"), "{text}");

    // Disabled: refused; the parent itself is not affected.
    s.cli_json(&["subuser", "disable", "agency_bot"]);
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &s.http_proxy_url("agency_bot", &pass),
        &format!("http://{o}/hello"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    // The persisted count catches up within a flush.
    let list = wait_for("usage flushed", || {
        let list = s.cli_json(&["subuser", "list", "--parent", "agency"]);
        (list[0]["bytes_used"].as_u64().unwrap() >= 3_000_000).then_some(list)
    });
    assert_eq!(list[0]["disabled"], true);
    let audit = s.cli_json(&["audit", "list"]);
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "subuser.disable"));
    verify_ok(&s);
}

/// The price changed at run time bills new streams at the new price and survives a restart.
#[test]
fn settings_changed_at_run_time_apply_to_new_streams_and_persist() {
    let mut s = Server::start_with(priced());
    let pass = s.add_user("buyer", Some("100"));
    s.add_user("host", None);
    let node = s.start_node("host", "127.0.0.2");
    fails_with(&s, &["settings", "set", "--platform-fee-percent", "101"], "out of range");
    fails_with(&s, &["settings", "set", "--price-per-gb", "cheap"], "price");
    let v = s.cli_json(&["settings", "set", "--price-per-gb", "500.00", "--min-payout", "2.50"]);
    assert_eq!(v["price_per_gb"], "500.00");
    assert_eq!(v["updated_by"], "admin (cli)", "{v}");
    let o = origin().addr;
    curl_ok(&["--proxy", &s.socks_url("buyer", &pass), "-o", "/dev/null", &format!("http://{o}/bytes/2000000")]);
    let r = wait_for("posted", || {
        let list = s.cli_json(&["session", "list", "--user", "buyer"]);
        let r = list[0].clone();
        (r["live"] == false && micros(&show(&s, "buyer"), "accrued_micros") == 0).then_some(r)
    });
    let bytes = r["bytes_up"].as_i64().unwrap() + r["bytes_down"].as_i64().unwrap();
    assert_eq!(r["charge_micros"].as_i64().unwrap(), bytes / 2, "half a micro per byte");
    assert!(s.cli_json(&["audit", "list"]).as_array().unwrap().iter().any(|e| e["action"] == "settings.update"));

    assert!(s.terminate().success());
    s.spawn();
    s.wait_node_online(&node);
    let v = s.cli_json(&["settings", "show"]);
    assert_eq!((v["price_per_gb"].as_str(), v["min_payout"].as_str()), (Some("500.00"), Some("2.50")));
    fails_with(&s, &["withdrawal", "request", "host", "2.49"], "minimum payout is 2.50");
    verify_ok(&s);
}

/// Opens an idle stream through the SOCKS5 front-end (python-socks) and returns once it is
/// open; the child prints `closed` when the server ends it.
fn hold_stream(s: &Server, user: &str, pass: &str) -> std::process::Child {
    let o = origin().addr;
    let script = format!(
        r#"
from python_socks.sync import Proxy
p = Proxy.from_url("socks5://{user}:{pass}@{socks}", rdns=True)
s = p.connect(dest_host="{host}", dest_port={port}, timeout=30)
print("open", flush=True)
try:
    while s.recv(4096):
        pass
except OSError:
    pass
print("closed", flush=True)
"#,
        socks = s.socks,
        host = o.ip(),
        port = o.port()
    );
    let mut child =
        Command::new("python3").arg("-c").arg(script).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    if line.trim() != "open" {
        // The server says why it refused (`stream refused … code=`).
        let log = s.log();
        let why: Vec<&str> =
            log.lines().filter(|l| l.contains("stream refused") || l.contains("usage flush")).collect();
        panic!("{user}'s stream did not open (client said {:?}); the server's log:\n{}", line.trim(), why.join("\n"));
    }
    // Keep reading in the background so the child never blocks on its pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

/// Waits until the server relays exactly `n` streams.
fn wait_streams_active(s: &Server, n: i64) {
    wait_for(&format!("{n} active streams"), || (streams_active(s) == n).then_some(()));
}

/// Waits for a held stream's client to see its end (bounded, unlike `Child::wait`).
fn wait_closed(held: &mut std::process::Child) {
    wait_for("the client sees its stream end", || held.try_wait().ok().flatten().map(|_| ()));
}

fn streams_active(s: &Server) -> i64 {
    let m = s.metrics_text();
    m.lines()
        .find_map(|l| l.strip_prefix("traffix_streams_active "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no traffix_streams_active in\n{m}"))
}

/// The end reasons of `user`'s ended streams, once `n` have ended.
fn end_reasons(s: &Server, user: &str, n: usize) -> Vec<String> {
    wait_for("the ended streams' rows", || {
        let rows = s.cli_json(&["session", "list", "--user", user]);
        let ended: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["live"] != true)
            .filter_map(|r| r["end_reason"].as_str().map(str::to_owned))
            .collect();
        (ended.len() >= n).then_some(ended)
    })
}

/// Disable means now: each admin change that takes rights away returns only after the live
/// streams it affects have ended — nothing is still relaying when the command returns — and
/// their session rows say why. (Streams used to run on until they ended by themselves.)
#[test]
fn admin_changes_end_the_live_streams_they_affect_before_returning() {
    let s = Server::start_with(priced());
    let pass = s.add_user("payer", Some("100"));
    s.add_user("owner_a", None);
    let node_a = s.start_node("owner_a", "127.0.0.2");
    let sub = s.cli_json(&["subuser", "add", "payer", "payer_bot"]);
    let sub_pass = sub["proxy_password"].as_str().unwrap().to_owned();

    // A sub-user's disable.
    let mut held = hold_stream(&s, "payer_bot", &sub_pass);
    wait_streams_active(&s, 1);
    assert!(s.cli(&["subuser", "disable", "payer_bot"]).status.success());
    assert_eq!(streams_active(&s), 0, "cut before the command returned");
    wait_closed(&mut held);

    // A device ban.
    let mut held = hold_stream(&s, "payer", &pass);
    wait_streams_active(&s, 1);
    let id = s.devices()[0]["id"].as_str().unwrap().to_owned();
    assert!(s.cli(&["device", "ban", &id, "--reason", "abuse"]).status.success());
    assert_eq!(streams_active(&s), 0);
    wait_closed(&mut held);
    drop(node_a);

    // A node owner's disable: the streams through its node end, and the node leaves.
    s.add_user("owner_b", None);
    let node_b = s.start_node("owner_b", "127.0.0.3");
    let mut held = hold_stream(&s, &format!("payer-node-{}", node_b.vip), &pass);
    wait_streams_active(&s, 1);
    assert!(s.cli(&["user", "disable", "owner_b"]).status.success());
    assert_eq!(streams_active(&s), 0);
    wait_closed(&mut held);
    wait_for("owner_b's node is gone", || (s.online_count() == 0).then_some(()));

    // The client's own disable: its streams end, and its sub-users (whose cached accounts
    // carry its state) are refused at once too.
    s.add_user("owner_c", None);
    let _node_c = s.start_node("owner_c", "127.0.0.4");
    let two = s.cli_json(&["subuser", "add", "payer", "payer_two"]);
    let two_pass = two["proxy_password"].as_str().unwrap().to_owned();
    let hello = format!("http://{}/hello", origin().addr);
    let via_two = || curl(&["-sS", "--max-time", "20", "--proxy", &s.socks_url("payer_two", &two_pass), &hello]);
    assert!(via_two().status.success(), "the sub-user is served (and its account cached)");
    let mut held = hold_stream(&s, "payer", &pass);
    wait_streams_active(&s, 1);
    assert!(s.cli(&["user", "disable", "payer"]).status.success());
    assert_eq!(streams_active(&s), 0);
    wait_closed(&mut held);
    assert!(!via_two().status.success(), "a disabled account's sub-user is refused at once");

    let mut reasons = end_reasons(&s, "payer", 5);
    reasons.sort();
    reasons.retain(|r| r != "closed");
    assert_eq!(reasons, ["account_disabled", "device_banned", "owner_disabled", "sub_user_disabled"]);
}

/// A credit above `billing.max_credit` is refused with the limit in the message (a credit of
/// 9,000,000,000,000.00 used to be accepted, and then every later deposit failed on an
/// overflowing `external:deposits`); later credits go through.
#[test]
fn a_credit_above_the_maximum_is_refused_and_later_deposits_go_through() {
    let s = Server::start_with(priced());
    s.add_user("payer", None);
    fails_with(&s, &["user", "credit", "payer", "9000000000000"], "at most 1000000.00");
    fails_with(&s, &["user", "credit", "payer", "1000000.01"], "at most 1000000.00");
    for _ in 0..3 {
        let out = s.cli(&["user", "credit", "payer", "1000000.00", "--reason", "the largest credit"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = s.cli(&["user", "credit", "payer", "0.01"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(micros(&show(&s, "payer"), "balance_micros"), 3_000_000_010_000);
    assert!(s.cli(&["ledger", "verify"]).status.success());
}

/// The newest transfer of `user` of `kind`, from `ledger list`.
/// The newest transfer of `kind` of `user` (`ledger list` is newest first).
fn last_of_kind(s: &Server, user: &str, kind: &str) -> serde_json::Value {
    let list = s.cli_json(&["ledger", "list", "--user", user]);
    list.as_array().unwrap().iter().find(|t| t["kind"] == kind).unwrap_or_else(|| panic!("no {kind}")).clone()
}

/// Corrections by hand through the CLI: signed adjustments (never below what is held or
/// withdrawn), a reversal of a deposit or an adjustment once, refusals of everything else — and
/// `ledger verify` passing after each, with the server up and down.
#[test]
fn corrections_adjust_and_reverse_through_the_cli_and_the_ledger_verifies_after_each() {
    let mut s = Server::start_with(priced());
    s.add_user("payer", Some("20"));
    for (bad, why) in [
        ("1,5", "not a decimal number"),
        ("1e3", "not a decimal number"),
        ("-1e3", "not a decimal number"),
        ("-1.0000001", "more than 6 decimal places"),
        ("0", "zero changes nothing"),
        ("-0.00", "zero changes nothing"),
        ("+-1", "not a decimal number"),
        ("1000000.01", "billing.max_credit"),
    ] {
        fails_with(&s, &["user", "adjust", "payer", bad, "--reason", "typo"], why);
    }
    assert!(!s.cli(&["user", "adjust", "payer", "-1"]).status.success(), "a reason is required");
    fails_with(&s, &["user", "adjust", "payer", "-1", "--reason", " "], "needs a reason");
    fails_with(&s, &["user", "adjust", "nobody", "1", "--reason", "x"], "not found");
    verify_ok(&s);

    let down = s.cli_json(&["user", "adjust", "payer", "-13.50", "--reason", "double top-up"]);
    assert_eq!((down["amount"].as_str(), down["kind"].as_str()), (Some("-13.50"), Some("adjustment")), "{down}");
    assert_eq!(micros(&show(&s, "payer"), "balance_micros"), 6_500_000);
    verify_ok(&s);
    let up = s.cli_json(&["user", "adjust", "payer", "+2", "--reason", "goodwill"]);
    assert_eq!(up["balance_micros"], 8_500_000);
    let t = last_of_kind(&s, "payer", "adjustment");
    assert_eq!((t["debit"].as_str(), t["credit"].as_str()), (Some("platform:adjustments"), Some("user:payer")));
    verify_ok(&s);

    // A pending withdrawal has left the balance: it cannot be taken again.
    let w = s.cli_json(&["withdrawal", "request", "payer", "5"])["id"].as_u64().unwrap().to_string();
    fails_with(&s, &["user", "adjust", "payer", "-3.51", "--reason", "x"], "only 3.50 is available");
    let deposit = last_of_kind(&s, "payer", "deposit");
    let dep_seq = deposit["seq"].as_u64().unwrap().to_string();
    fails_with(&s, &["ledger", "reverse", &dep_seq, "--reason", "x"], "cannot take 20.00 from payer: only 3.50");
    let withdrawal = last_of_kind(&s, "payer", "withdrawal")["seq"].as_u64().unwrap().to_string();
    fails_with(&s, &["ledger", "reverse", &withdrawal, "--reason", "x"], "rejecting them");
    verify_ok(&s);

    // Reversing the negative adjustment gives the money back, once.
    let down_seq = down["transfer"].as_u64().unwrap().to_string();
    let back = s.cli_json(&["ledger", "reverse", &down_seq, "--reason", "it was right"]);
    assert_eq!((back["amount"].as_str(), back["reverses"].as_u64()), (Some("13.50"), down["transfer"].as_u64()));
    assert_eq!(micros(&show(&s, "payer"), "balance_micros"), 17_000_000);
    verify_ok(&s);
    fails_with(&s, &["ledger", "reverse", &down_seq, "--reason", "again"], "already reversed");
    fails_with(&s, &["ledger", "reverse", &down_seq, "--reason", "again", "--json"], r#""error":"conflict""#);
    let back_id = back["transfer_id"].as_str().unwrap().to_owned();
    assert_eq!(back_id, format!("reversal:{}", down["transfer_id"].as_str().unwrap()));
    fails_with(&s, &["ledger", "reverse", &back_id, "--reason", "x"], "is a reversal itself");
    fails_with(&s, &["ledger", "reverse", "99999", "--reason", "x"], "not found");
    // By id, against the stopped server's database too.
    s.cli_json(&["withdrawal", "reject", &w, "--reason", "wrong account"]);
    assert!(s.terminate().success());
    let dep_id = deposit["id"].as_str().unwrap();
    let r = s.cli_json(&["ledger", "reverse", dep_id, "--reason", "credited the wrong user"]);
    assert_eq!((r["amount"].as_str(), r["balance_micros"].as_i64()), (Some("-20.00"), Some(2_000_000)));
    verify_ok(&s);
    s.spawn();
    fails_with(&s, &["ledger", "reverse", &dep_seq, "--reason", "again"], "already reversed");

    let audit = s.cli_json(&["audit", "list"]);
    let entries = audit.as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "user.adjust"
        && e["actor"] == "admin (cli)"
        && e["target"] == "payer"
        && e["reason"] == "double top-up"));
    assert!(entries.iter().any(|e| e["action"] == "ledger.reverse" && e["reason"] == "credited the wrong user"));
    let v = verify_ok(&s);
    assert_eq!(v["accounts"].as_u64(), Some(5), "{v}");
}

/// Money held for a live stream cannot be taken by an adjustment or a reversal, and usage
/// transfers cannot be reversed.
#[test]
fn corrections_never_take_what_live_streams_hold_and_usage_is_not_reversible() {
    let s = Server::start_with(priced());
    let pass = s.add_user("streamer", Some("200"));
    s.add_user("host", None);
    let _node = s.start_node("host", "127.0.0.2");
    let o = origin().addr;
    curl_ok(&["--proxy", &s.socks_url("streamer", &pass), "-o", "/dev/null", &format!("http://{o}/bytes/100000")]);
    let usage = wait_for("usage posted", || {
        let list = s.cli_json(&["ledger", "list", "--user", "streamer"]);
        list.as_array().unwrap().iter().find(|t| t["kind"] == "usage" || t["kind"] == "usage_fee").cloned()
    });
    let usage_seq = usage["seq"].as_u64().unwrap().to_string();
    fails_with(&s, &["ledger", "reverse", &usage_seq, "--reason", "x"], "usage is billed by metering");

    let mut curl = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--proxy", &s.socks_url("streamer", &pass)])
        .arg(format!("http://{o}/forever"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let u = wait_for("a hold", || {
        let u = show(&s, "streamer");
        (micros(&u, "held_micros") > 100_000_000).then_some(u)
    });
    let available = micros(&u, "available_micros");
    assert!(available < 100_000_000, "{u}");
    let m = available + 100_000_000;
    let too_much = format!("{}.{:06}", m / 1_000_000, m % 1_000_000);
    let out = s.cli(&["user", "adjust", "streamer", &format!("-{too_much}"), "--reason", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is available") && err.contains("held for live streams"), "{err}");
    let deposit = last_of_kind(&s, "streamer", "deposit")["seq"].as_u64().unwrap().to_string();
    fails_with(&s, &["ledger", "reverse", &deposit, "--reason", "x"], "cannot take 200.00 from streamer");
    verify_ok(&s);
    let _ = curl.kill();
    let _ = curl.wait();
    wait_for("hold released", || (micros(&show(&s, "streamer"), "held_micros") == 0).then_some(()));
    verify_ok(&s);
}
