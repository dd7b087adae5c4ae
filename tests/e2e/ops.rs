//! Operations with the real binary: a backup taken while serving under load brings the whole
//! server back (ledger, balances, the key nodes pin); restore refuses a live data directory;
//! a schema upgrade copies the database first; `traffix doctor` passes a healthy directory and
//! names each problem of a broken one with its fix.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::*;

fn traffix(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).arg("--data-dir").arg(dir).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn balance(dir: &Path, user: &str) -> Value {
    let out = traffix(dir, &["user", "show", user, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["balance_micros"].clone()
}

#[test]
fn a_backup_taken_while_serving_brings_the_whole_server_back_and_its_node_reconnects() {
    let mut s = Server::start();
    let pass = s.add_user("rita", Some("20"));
    s.add_user("otto", None);
    let node = s.start_node("otto", "127.0.0.2");
    let work = tempfile::tempdir().unwrap();

    // Light load: downloads through the node while the first backup is taken.
    let url = s.socks_url("rita", &pass);
    let target = format!("http://{}/bytes/2000000?seed=3", origin().addr);
    let load = std::thread::spawn(move || {
        for _ in 0..6 {
            let out = curl(&["--limit-rate", "4M", "--proxy", &url, "-o", "/dev/null", &target]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    });
    let under_load = work.path().join("under-load.tar");
    let out = s.cli(&["backup", under_load.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["streamed"], true, "a running server streams the archive: {b}");
    assert_eq!(mode(&under_load), 0o600, "the archive holds the TLS key: owner only");
    assert_eq!(std::fs::metadata(&under_load).unwrap().len(), b["bytes"].as_u64().unwrap());
    let files: Vec<&str> =
        b["manifest"]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(files, ["traffix.redb", "traffix.toml", "tls/cert.pem", "tls/key.pem", "jwt.secret"]);
    load.join().unwrap();

    // Never over an existing file; never into a running server's directory.
    let again = s.cli(&["backup", under_load.to_str().unwrap()]);
    assert!(!again.status.success() && text(&again).contains("already exists"), "{}", text(&again));
    let live = traffix(s.data_dir(), &["restore", under_load.to_str().unwrap(), "--force"]);
    assert_eq!(live.status.code(), Some(1));
    assert!(text(&live).contains("stop the server first"), "{}", text(&live));

    // The archive taken under load restores, and its ledger verifies.
    let r1 = work.path().join("r1");
    let out = traffix(&r1, &["restore", under_load.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ledger OK"), "{}", text(&out));

    // Quiet now: once the last usage is flushed (balances are at most a second behind) and
    // they hold still, a second backup, and the balances the restored server must show.
    let (rita, otto) = wait_for("balances billed and still", || {
        let before = (balance(s.data_dir(), "rita"), balance(s.data_dir(), "otto"));
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let after = (balance(s.data_dir(), "rita"), balance(s.data_dir(), "otto"));
        (before == after && after.0 != serde_json::json!(20_000_000)).then_some(after)
    });
    let idle = work.path().join("idle.tar");
    assert!(s.cli(&["backup", idle.to_str().unwrap()]).status.success());
    assert!(s.terminate().success());

    // Restore into a new data directory and serve it on the same addresses.
    let restored = tempfile::tempdir().unwrap();
    let out = traffix(restored.path(), &["restore", idle.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ledger_verify"]["ok"], true, "{r}");
    assert_eq!(mode(restored.path()), 0o700);
    for f in ["tls/key.pem", "jwt.secret", "traffix.redb"] {
        assert_eq!(mode(&restored.path().join(f)), 0o600, "{f}");
    }
    assert_eq!(balance(restored.path(), "rita"), rita);
    assert_eq!(balance(restored.path(), "otto"), otto);
    let mut s2 = Server {
        dir: restored,
        child: None,
        web: s.web,
        socks: s.socks,
        http: s.http,
        metrics: s.metrics,
        pin: s.pin.clone(),
        admin_password: s.admin_password.clone(),
        opts: s.opts.clone(),
    };
    s2.spawn();
    // The node was never re-paired: the same key and pin, the same vIP.
    assert_eq!(s2.wait_node_online(&node), node.vip);
    let out = curl(&["--proxy", &s2.socks_url("rita", &pass), &format!("http://{}/hello", origin().addr)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verify = s2.cli(&["ledger", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn a_schema_upgrade_at_start_copies_the_database_first() {
    let mut s = Server::start();
    s.add_user("uma", Some("3"));
    assert!(s.terminate().success());
    let db = s.data_dir().join("traffix.redb");
    let last = traffix::store::migrations::LAST_SCHEMA_VERSION;
    {
        let d = redb::Database::open(&db).unwrap();
        let txn = d.begin_write().unwrap();
        txn.open_table(traffix::store::tables::META).unwrap().insert("schema_version", last - 1).unwrap();
        txn.commit().unwrap();
    }
    let doctor = traffix(s.data_dir(), &["doctor"]);
    assert_eq!(doctor.status.code(), Some(2), "an upgrade to come is a warning: {}", text(&doctor));
    assert!(text(&doctor).contains("upgrades it to"), "{}", text(&doctor));
    s.spawn();
    let copies: Vec<_> = std::fs::read_dir(s.data_dir().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pre-migration-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let name = copies[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("pre-migration-{}-{last}-", last - 1)), "{name}");
    assert_eq!(mode(&copies[0]), 0o600);
    assert!(s.log().contains("a copy of the database was taken first"), "{}", s.log());
    assert_eq!(s.cli_json(&["user", "show", "uma"])["balance_micros"], 3_000_000);
}

/// Runs `traffix doctor --json` and returns its exit code and the checks that are not ok.
fn doctor(dir: &Path) -> (Option<i32>, Vec<Value>) {
    let out = traffix(dir, &["doctor", "--json"]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let bad = r["checks"].as_array().unwrap().iter().filter(|c| c["status"] != "ok").cloned().collect();
    (out.status.code(), bad)
}

#[test]
fn doctor_passes_a_healthy_server_and_names_each_problem_with_its_fix() {
    let mut s = Server::start();
    let out = s.cli(&["doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("held by this data directory's server") && t.contains("its admin socket answers"), "{t}");
    assert!(s.terminate().success());
    let (code, bad) = doctor(s.data_dir());
    assert_eq!((code, bad.len()), (Some(0), 0), "{bad:?}");

    // Break it: loose permissions, an unresolvable public address, a missing certificate.
    let d = s.data_dir();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d.join("tls/key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(d.join("jwt.secret"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let cfg = std::fs::read_to_string(d.join("traffix.toml")).unwrap();
    let cfg = cfg
        .lines()
        .map(|l| if l.starts_with("public_address") { "public_address = \"no-such-host.invalid:8443\"" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(d.join("traffix.toml"), cfg).unwrap();
    let cert = std::fs::read(d.join("tls/cert.pem")).unwrap();
    std::fs::remove_file(d.join("tls/cert.pem")).unwrap();
    let (code, bad) = doctor(d);
    assert_eq!(code, Some(1), "{bad:#?}");
    let find = |check: &str, says: &str| {
        bad.iter()
            .find(|c| c["check"] == check && c["message"].as_str().unwrap().contains(says))
            .unwrap_or_else(|| panic!("no {check} problem saying {says:?}: {bad:#?}"))
    };
    assert_eq!(find("permissions", "data directory")["fix"], format!("chmod 700 {}", d.display()));
    assert_eq!(find("permissions", "TLS key")["fix"], format!("chmod 600 {}", d.join("tls/key.pem").display()));
    assert_eq!(find("permissions", "JWT secret")["fix"], format!("chmod 600 {}", d.join("jwt.secret").display()));
    assert!(find("public_address", "no-such-host.invalid")["fix"].as_str().unwrap().contains("DNS"));
    assert!(find("certificate", "cert.pem")["fix"].as_str().unwrap().contains("re-pairing"));
    assert!(bad.iter().all(|c| c["status"] == "problem" && c["fix"].is_string()), "{bad:#?}");
    let human = traffix(d, &["doctor"]);
    assert_eq!(human.status.code(), Some(1));
    assert!(text(&human).contains("fix: chmod 700"), "{}", text(&human));

    // A certificate close to its end is a warning only: exit 2.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(d.join("tls/key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(d.join("jwt.secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = std::fs::read_to_string(d.join("traffix.toml")).unwrap();
    std::fs::write(d.join("traffix.toml"), cfg.replace("no-such-host.invalid:8443", &s.web.to_string())).unwrap();
    std::fs::write(d.join("tls/cert.pem"), &cert).unwrap();
    let (code, bad) = doctor(d);
    assert_eq!((code, bad.len()), (Some(0), 0), "{bad:#?}");
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(d.join("tls/key.pem")).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let soon = traffix::units::rfc3339(traffix::store::now_secs() + 10 * 86_400);
    let ymd: Vec<i32> = soon[..10].split('-').map(|p| p.parse().unwrap()).collect();
    params.not_after = rcgen::date_time_ymd(ymd[0], ymd[1] as u8, ymd[2] as u8);
    std::fs::write(d.join("tls/cert.pem"), params.self_signed(&key).unwrap().pem()).unwrap();
    let (code, bad) = doctor(d);
    assert_eq!(code, Some(2), "{bad:#?}");
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert_eq!(bad[0]["check"], "certificate");
    assert!(bad[0]["message"].as_str().unwrap().contains("days"), "{bad:#?}");
}

/// A server installed without a public address (the package asked and got no answer) runs with
/// pairing off, says so, and pairs once the address is set.
#[test]
fn without_a_public_address_the_server_runs_with_pairing_off_and_says_how_to_turn_it_on() {
    let fresh = tempfile::tempdir().unwrap();
    let d = fresh.path().join("data");
    let out = Command::new(BIN)
        .args(["init", "--no-public-address", "--web-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pairing is off until server.public_address is set"), "{}", text(&out));
    let cfg = std::fs::read_to_string(d.join("traffix.toml")).unwrap();
    assert!(cfg.lines().any(|l| l == "public_address = \"\""), "{cfg}");
    let both = Command::new(BIN)
        .args(["init", "--no-public-address", "--public-address", "a.example:8443", "--data-dir"])
        .arg(fresh.path().join("other"))
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));

    let mut s = Server::start();
    s.add_user("bob", None);
    assert!(s.terminate().success());
    let path = s.data_dir().join("traffix.toml");
    let cfg = std::fs::read_to_string(&path).unwrap();
    let with = |addr: &str| {
        cfg.lines()
            .map(
                |l| if l.starts_with("public_address") { format!("public_address = \"{addr}\"") } else { l.to_owned() },
            )
            .collect::<Vec<_>>()
            .join("\n")
    };
    std::fs::write(&path, with("")).unwrap();
    s.spawn();
    wait_for("the pairing-off warning", || {
        s.log().contains("pairing is off: server.public_address is not set").then_some(())
    });
    let pair = s.cli(&["pair", "bob"]);
    assert!(!pair.status.success());
    assert!(text(&pair).contains("pairing is off") && text(&pair).contains("server.public_address"), "{}", text(&pair));
    let (code, bad) = doctor(s.data_dir());
    assert_eq!(code, Some(2), "{bad:#?}");
    let warn = bad.iter().find(|c| c["check"] == "public_address").unwrap_or_else(|| panic!("{bad:#?}"));
    assert_eq!(warn["status"], "warning");
    assert!(warn["fix"].as_str().unwrap().contains("server.public_address"), "{warn}");
    assert!(s.terminate().success());

    std::fs::write(&path, with(&s.web.to_string())).unwrap();
    s.spawn();
    assert!(s.pair_link("bob").starts_with("traffix://pair?"));
}
