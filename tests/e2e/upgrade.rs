//! Upgrading the previous release's database: tests/fixtures/store/v3.redb was written by the
//! real v3 server (tests/fixtures/store/README.md says how). This build copies it, migrates it
//! once, and keeps every user, balance, withdrawal and session; its users still log in and use
//! the proxy.

use base64::Engine;
use serde_json::{Value, json};
use traffix::store::migrations::LAST_SCHEMA_VERSION;

use crate::common::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store/v3.redb");
const FIXTURE_SCHEMA: u64 = 3;

/// A user as the old release's `traffix user show` reported it after its server stopped.
struct Was {
    name: &'static str,
    login_password: &'static str,
    proxy_password: &'static str,
    admin: bool,
    balance_micros: i64,
    pending_withdrawals_micros: i64,
    devices: u64,
}

const USERS: [Was; 3] = [
    Was {
        name: "admin",
        // What the old `traffix init` printed, not this test's init.
        login_password: "tsEIzL7n1RKG6Iho5JQq",
        proxy_password: "mtOe9R5vGxmjGUEmxj8utA",
        admin: true,
        balance_micros: 0,
        pending_withdrawals_micros: 0,
        devices: 0,
    },
    Was {
        name: "alice",
        login_password: "alice-fixture-pw",
        proxy_password: "ExY6wFc5ixsMmmtYeh3AYg",
        admin: false,
        balance_micros: 33_999_169,
        pending_withdrawals_micros: 0,
        devices: 0,
    },
    Was {
        name: "bob",
        login_password: "bob-fixture-pw",
        proxy_password: "st9q4VsOQKgOf5ezN1L52Q",
        admin: false,
        balance_micros: 2_700_581,
        pending_withdrawals_micros: 6_000_000,
        devices: 1,
    },
];

/// 1 byte costs 1 micro-unit, so a small download moves money visibly.
fn priced() -> ServerOpts {
    ServerOpts {
        allow_private_targets: true,
        env: vec![("TRAFFIX_BILLING__PRICE_PER_GB".into(), "1000.00".into())],
        ..ServerOpts::default()
    }
}

fn show(s: &Server, user: &str) -> Value {
    s.cli_json(&["user", "show", user])
}

fn verify_ok(s: &Server) -> Value {
    let out = s.cli(&["ledger", "verify", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success() && v["ok"] == true, "ledger verify: {v}");
    v
}

fn backups(s: &Server) -> Vec<std::path::PathBuf> {
    let dir = s.data_dir().join("backups");
    let mut out: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    out.sort();
    out
}

/// One REST API request over the pinned TLS listener: the status and the JSON body (null if none).
fn api(s: &Server, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let pin = base64::engine::general_purpose::STANDARD.encode(hex::decode(&s.pin).unwrap());
    let mut args = vec!["-k".to_owned(), "--pinnedpubkey".into(), format!("sha256//{pin}"), "-X".into(), method.into()];
    args.extend(["-w".into(), "\n%{http_code}".into()]);
    if let Some(t) = token {
        args.extend(["-H".into(), format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        args.extend(["-H".into(), "Content-Type: application/json".into(), "--data-binary".into(), b.to_string()]);
    }
    args.push(format!("https://{}{path}", s.web));
    let out = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn login(s: &Server, user: &str, password: &str) -> String {
    let (status, v) = api(s, "POST", "/api/v1/auth/login", None, Some(json!({"username": user, "password": password})));
    assert_eq!(status, 200, "login {user}: {v}");
    v["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn the_previous_releases_database_is_copied_then_upgraded_once_and_keeps_its_money() {
    // A data directory of this build whose database is the old release's file.
    let mut s = Server::start_with(priced());
    assert!(s.terminate().success(), "{}", s.log());
    std::fs::copy(FIXTURE, s.data_dir().join("traffix.redb")).unwrap();
    s.admin_password = USERS[0].login_password.into();
    let mark = s.log().len();
    s.spawn();

    // First a copy, byte for byte the file the old release left; then one step per version.
    let copies = backups(&s);
    assert_eq!(copies.len(), 1, "{copies:?}");
    let name = copies[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("pre-migration-{FIXTURE_SCHEMA}-{LAST_SCHEMA_VERSION}-")), "{name}");
    assert!(name.ends_with(".redb"), "{name}");
    let fixture = std::fs::read(FIXTURE).unwrap();
    assert!(std::fs::read(&copies[0]).unwrap() == fixture, "the pre-migration copy differs from the fixture");
    let steps = (LAST_SCHEMA_VERSION - FIXTURE_SCHEMA) as usize;
    assert_eq!(s.log()[mark..].matches("store migrated").count(), steps, "{}", s.log());

    // The money as the old release left it.
    let v = verify_ok(&s);
    assert_eq!(
        (v["transfers"].as_u64(), v["sessions"].as_u64(), v["withdrawals"].as_u64()),
        (Some(11), Some(3), Some(2))
    );
    assert_eq!((v["accounts"].as_u64(), v["holds"].as_u64(), v["live_sessions"].as_u64()), (Some(7), Some(0), Some(0)));
    let mut names: Vec<String> =
        s.cli_json(&["user", "list"]).as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().into()).collect();
    names.sort();
    assert_eq!(names, USERS.map(|w| w.name));
    for w in &USERS {
        let u = show(&s, w.name);
        assert_eq!(u["admin"], w.admin, "{u}");
        assert_eq!(u["disabled"], false, "{u}");
        assert_eq!(u["balance_micros"], w.balance_micros, "{u}");
        assert_eq!(u["available_micros"], w.balance_micros, "{u}");
        assert_eq!(u["pending_withdrawals_micros"], w.pending_withdrawals_micros, "{u}");
        assert_eq!((u["held_micros"].as_i64(), u["accrued_micros"].as_i64()), (Some(0), Some(0)), "{u}");
        assert_eq!(u["devices"], w.devices, "{u}");
        assert_eq!(u["proxy_password"], w.proxy_password, "{u}");
    }
    let withdrawals = s.cli_json(&["withdrawal", "list"]);
    let got: Vec<_> = withdrawals
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (w["id"].as_u64().unwrap(), w["user"].clone(), w["status"].clone(), w["amount_micros"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(got, [(2, json!("bob"), json!("pending"), 6_000_000), (1, json!("bob"), json!("approved"), 5_000_000)]);
    assert_eq!(s.cli_json(&["ledger", "list"]).as_array().unwrap().len(), 11);
    // The deposit's idempotency key survived: the same payment credited again is a no-op.
    let again = s.cli(&["user", "credit", "alice", "50.00", "--id", "dep-alice-1"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(show(&s, "alice")["balance_micros"], USERS[1].balance_micros);
    let devices = s.devices();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!((&devices[0]["owner"], &devices[0]["vip"]), (&json!("bob"), &json!("100.64.0.1")));
    assert_eq!(devices[0]["id"], "e32d1ce185f794d9b7737b043bdf826a");

    // The old users log in over the API with the passwords they had.
    login(&s, "admin", &s.admin_password);
    let token = login(&s, "bob", USERS[2].login_password);
    let (status, me) = api(&s, "GET", "/api/v1/me", Some(&token), None);
    assert_eq!((status, &me["balance_micros"]), (200, &json!(USERS[2].balance_micros)), "{me}");

    // The old client's proxy password buys traffic through a new node of the old owner, which
    // gets the next free vIP; the money moves and the ledger still verifies.
    let node = s.start_node("bob", "127.0.0.2");
    assert_ne!(node.vip, "100.64.0.1");
    let url = format!("http://{}/bytes/100000", origin().addr);
    let out = curl(&["--proxy", &s.socks_url("alice", USERS[1].proxy_password), "-o", "/dev/null", &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("usage posted", || {
        let u = show(&s, "alice");
        (u["accrued_micros"] == 0 && u["balance_micros"].as_i64() < Some(USERS[1].balance_micros)).then_some(())
    });
    let paid = USERS[1].balance_micros - show(&s, "alice")["balance_micros"].as_i64().unwrap();
    assert!((100_000..=101_000).contains(&paid), "alice paid {paid} for 100000 bytes");
    let earned = show(&s, "bob")["balance_micros"].as_i64().unwrap() - USERS[2].balance_micros;
    assert_eq!(earned, paid * 70 / 100, "bob's share of {paid}");
    assert_eq!(verify_ok(&s)["sessions"], 4);

    // A restart neither migrates again nor takes another copy.
    let money: Vec<Value> = USERS.iter().map(|w| show(&s, w.name)["balance_micros"].clone()).collect();
    assert!(s.terminate().success(), "{}", s.log());
    let mark = s.log().len();
    s.spawn();
    assert_eq!(backups(&s), copies);
    assert_eq!(s.log()[mark..].matches("store migrated").count(), 0, "{}", s.log());
    assert!(!s.log()[mark..].contains("about to be upgraded"), "{}", s.log());
    assert_eq!(USERS.iter().map(|w| show(&s, w.name)["balance_micros"].clone()).collect::<Vec<_>>(), money);
    verify_ok(&s);
    drop(node);
    assert!(s.terminate().success(), "{}", s.log());
    let (_, found) = traffix::store::Store::open_unmigrated(&s.data_dir().join("traffix.redb")).unwrap();
    assert_eq!(found, LAST_SCHEMA_VERSION);
}
