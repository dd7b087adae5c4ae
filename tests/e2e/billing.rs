//! Real-time billing seen from outside: bytes through the proxy debit the client price × bytes,
//! credit the node's owner exactly its split, and a client whose money runs out is cut.

use std::collections::BTreeMap;
use std::process::Command;

use crate::common::*;

/// A profile where 1 byte costs 1 micro-unit (price 1000.00 per GB), fee 30 %.
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

fn balance(s: &Server, user: &str) -> i64 {
    s.cli_json(&["user", "show", user])["balance_micros"].as_i64().unwrap()
}

/// How many sessions have usage postings in the ledger.
fn posted_sessions(s: &Server) -> usize {
    let ledger = s.cli_json(&["ledger", "list"]);
    let refs: std::collections::BTreeSet<String> = ledger
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "usage_fee")
        .map(|t| t["reference"].as_str().unwrap().to_owned())
        .collect();
    refs.len()
}

fn accrued(s: &Server, user: &str) -> i64 {
    s.cli_json(&["user", "show", user])["accrued_micros"].as_i64().unwrap()
}

#[test]
fn usage_debits_price_times_bytes_and_credits_the_owner_exactly_its_split() {
    let s = Server::start_with(priced());
    let pass = s.add_user("payer", Some("100"));
    s.add_user("owner", None);
    let _node = s.start_node("owner", "127.0.0.2");
    let o = origin().addr;
    let down = 8 * 1024 * 1024;
    let out = curl(&["--proxy", &s.socks_url("payer", &pass), "-o", "/dev/null", &format!("http://{o}/bytes/{down}")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    std::fs::write(&up, payload(2 * 1024 * 1024, 1)).unwrap();
    let out = curl(&[
        "-x",
        &s.http_proxy_url("payer", &pass),
        "--data-binary",
        &format!("@{}", up.display()),
        &format!("http://{o}/sha256"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Sessions end, the next flush posts them: nothing stays accrued.
    wait_for("usage posted", || (posted_sessions(&s) == 2 && accrued(&s, "payer") == 0).then_some(()));
    let debit = 100_000_000 - balance(&s, "payer");
    let payload_bytes = (down + 2 * 1024 * 1024) as i64;
    // Server-counted bytes include request and response heads: within 1 % of the payload.
    assert!(
        debit >= payload_bytes && debit <= payload_bytes + payload_bytes / 100,
        "debit {debit} for {payload_bytes} bytes"
    );

    // Per session: the owner gets floor(70 % of the session's debit), the platform the rest.
    let ledger = s.cli_json(&["ledger", "list"]);
    let mut per_session: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for t in ledger.as_array().unwrap() {
        let amount = t["amount_micros"].as_i64().unwrap();
        let entry = per_session.entry(t["reference"].as_str().unwrap().to_owned()).or_default();
        match t["kind"].as_str().unwrap() {
            "usage" => {
                assert_eq!(t["credit"], "user:owner");
                entry.0 += amount;
            }
            "usage_fee" => {
                assert_eq!(t["credit"], "platform:fees");
                entry.1 += amount;
            }
            _ => {}
        }
    }
    per_session.remove("test");
    assert!(per_session.len() >= 2, "one session per stream: {per_session:?}");
    let mut node_total = 0;
    for (session, (node, fee)) in &per_session {
        assert_eq!(*node, (node + fee) * 70 / 100, "{session}: node {node} fee {fee}");
        node_total += node;
    }
    assert_eq!(balance(&s, "owner"), node_total);
    let verify = s.cli(&["ledger", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    // The billing metrics count exactly what was posted (just after the commit that posted it).
    wait_for("the postings counted", || {
        (s.metric("traffix_billing_client_debit_micros_total") == debit as f64).then_some(())
    });
    let m = s.metrics_text();
    assert_eq!(s.metric("traffix_billing_node_credit_micros_total"), node_total as f64, "{m}");
    assert_eq!(s.metric("traffix_billing_platform_fee_micros_total"), (debit - node_total) as f64, "{m}");
    assert!(m.contains("traffix_billing_flush_failures_total 0\n"), "{m}");
}

#[test]
fn a_client_whose_money_runs_out_is_cut_within_the_bound_and_then_refused() {
    let s = Server::start_with(priced());
    // 2.00 at 1 micro per byte buys 2,000,000 bytes.
    let pass = s.add_user("thin", Some("2"));
    s.add_user("lender", None);
    let _node = s.start_node("lender", "127.0.0.2");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("partial");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "120", "--proxy", &s.socks_url("thin", &pass), "-o"])
        .arg(&file)
        .arg(format!("http://{}/forever", origin().addr))
        .output()
        .unwrap();
    assert!(!out.status.success(), "an endless download must be cut");
    let got = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    // Bound (README): (streams + 1) × one relay meter batch per direction (2 × 256 KiB).
    const BOUND: u64 = 2 * 2 * 256 * 1024;
    assert!((1_000_000..=2_000_000 + BOUND).contains(&got), "delivered {got} bytes for 2,000,000 paid");

    wait_for("usage posted", || (posted_sessions(&s) == 1 && accrued(&s, "thin") == 0).then_some(()));
    let bal = balance(&s, "thin");
    assert!((-(BOUND as i64)..=0).contains(&bal), "balance {bal} within the documented overdraft bound");
    // New connections are refused: 402 over HTTP.
    let out = curl(&["-i", "-x", &s.http_proxy_url("thin", &pass), &format!("http://{}/hello", origin().addr)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 402"), "{text}");
    assert_eq!(s.metric(r#"traffix_streams_total{frontend="http",result="balance"}"#), 1.0, "{}", s.metrics_text());
    // A top-up lets the client back in.
    assert!(s.cli(&["user", "credit", "thin", "1"]).status.success());
    let out = curl(&["--proxy", &s.socks_url("thin", &pass), &format!("http://{}/hello", origin().addr)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// kill -9 the server again and again during live downloads: after every restart the ledger
/// verifies, and the client was never billed for more than the bytes it received.
///
/// `TRAFFIX_KILL_CYCLES=N` runs N cycles instead of 20 and counts violations (a failed `ledger
/// verify`, or more billed than delivered) instead of stopping at the first, printing progress
/// and a summary line `kill-9 loop: …`; it still fails if any was found (`benches/kill-loop.sh`
/// runs 1,000 cycles).
#[test]
fn kill_9_during_downloads_keeps_the_ledger_consistent_and_never_overbills() {
    let asked =
        std::env::var("TRAFFIX_KILL_CYCLES").ok().map(|v| v.parse::<usize>().expect("TRAFFIX_KILL_CYCLES: a number"));
    let counting = asked.is_some();
    let cycles = asked.unwrap_or(20);
    let violation = |what: String, count: &mut usize| {
        assert!(counting, "{what}");
        eprintln!("VIOLATION {what}");
        *count += 1;
    };
    let (mut verify_failures, mut overbilled) = (0usize, 0usize);
    let started = std::time::Instant::now();
    let mut s = Server::start_with(priced());
    // A cycle moves ~3.5 MB at 1 micro-unit per byte: 10.00 a cycle keeps the client funded.
    let deposit = 1000.max(10 * cycles as i64);
    let pass = s.add_user("crash", Some(&deposit.to_string()));
    s.add_user("owner", None);
    let node = s.start_node("owner", "127.0.0.2");
    let dir = tempfile::tempdir().unwrap();
    let mut delivered = 0u64;
    let url = format!("http://{}/forever", origin().addr);
    for cycle in 0..cycles {
        let proxy = s.socks_url("crash", &pass);
        let files: Vec<_> = (0..2).map(|i| dir.path().join(format!("c{cycle}-{i}"))).collect();
        let mut clients: Vec<_> = files
            .iter()
            .map(|f| {
                Command::new("curl")
                    .args(["-sS", "--proxy", &proxy, "-o"])
                    .arg(f)
                    .arg(&url)
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        wait_for("bytes flowing", || {
            files.iter().all(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0) > 300_000).then_some(())
        });
        // Kill after a flush has saved some of this usage (what a crash may lose is only the
        // traffic since the last flush).
        wait_for("usage accrued", || (accrued(&s, "crash") > 0).then_some(()));
        s.kill9();
        for c in &mut clients {
            let _ = c.wait();
        }
        delivered += files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum::<u64>();
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
        s.spawn();
        let verify = s.cli(&["ledger", "verify"]);
        if !verify.status.success() {
            let out = String::from_utf8_lossy(&verify.stdout);
            violation(format!("cycle {cycle}: ledger verify failed: {out}"), &mut verify_failures);
        }
        let debit = (deposit * 1_000_000 - balance(&s, "crash")) as u64;
        // 1 micro per byte; request heads (≈100 bytes per stream) are billed too.
        let requests = 2 * 200 * (cycle as u64 + 1);
        if debit > delivered + requests {
            violation(format!("cycle {cycle}: billed {debit} for {delivered} bytes delivered"), &mut overbilled);
        }
        if counting && (cycle + 1) % 50 == 0 {
            eprintln!(
                "kill-9 loop progress: {} cycles, {} violations, {:.2} s per cycle",
                cycle + 1,
                verify_failures + overbilled,
                started.elapsed().as_secs_f64() / (cycle + 1) as f64
            );
        }
        s.wait_node_online(&node);
    }
    // Something was billed: crashes lose at most the last second of each session.
    let debit = (deposit * 1_000_000 - balance(&s, "crash")) as u64;
    if counting {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "kill-9 loop: {cycles} kill points, {} violations ({verify_failures} ledger verify failures, {overbilled} \
             billed > delivered); billed {debit} micro-units for {delivered} bytes delivered ({:.1} %); {secs:.0} s, \
             {:.2} s per cycle",
            verify_failures + overbilled,
            100.0 * debit as f64 / delivered.max(1) as f64,
            secs / cycles.max(1) as f64
        );
    }
    assert_eq!(verify_failures + overbilled, 0, "violations in {cycles} kill -9 cycles");
    assert!(debit > 0 && debit <= delivered + 2 * 200 * cycles as u64, "billed {debit} of {delivered}");
    assert!(s.log().contains("posted usage accrued before the last stop"));
}
