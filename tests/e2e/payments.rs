//! Payments end to end, with the real binary: the generic signed webhook sent by the Python
//! sender of docs/payments.md and by curl (replays, wrong signatures, stale timestamps,
//! oversized, malformed and hostile bodies), a kill -9 between the credit and the answer, a fake
//! Crypto Pay API (a real HTTP server on 127.0.0.1 speaking its JSON: `createInvoice`,
//! `getInvoices`, signed `invoice_paid` updates) with the portal's top-up, receipts and refunds,
//! payout profiles, automatic requests, the batch export and mark-paid, and the payment
//! settings — and `ledger verify` after each.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use traffix::payments::signature::{sign_cryptopay, sign_generic};

use crate::common::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
const TOKEN: &str = "4711:AAtestTOKENxyz";
const WEBHOOK: &str = "/api/v1/payments/generic/webhook";
const CP_WEBHOOK: &str = "/api/v1/payments/cryptopay/webhook";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A server with the generic webhook enabled.
fn generic_opts(extra: &[(&str, &str)]) -> ServerOpts {
    let mut e = env(&[("TRAFFIX_PAYMENTS__ENABLED", r#"["generic"]"#), ("TRAFFIX_PAYMENTS__GENERIC_SECRET", SECRET)]);
    e.extend(env(extra));
    ServerOpts { env: e, ..ServerOpts::default() }
}

fn balance(s: &Server, user: &str) -> i64 {
    s.cli_json(&["user", "show", user])["balance_micros"].as_i64().unwrap()
}

fn verify_ok(s: &Server) {
    let out = s.cli(&["ledger", "verify", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success() && v["ok"] == true, "ledger verify: {v}");
}

/// An HTTP answer.
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// One request to the server's web listener with curl (TLS, pinned to the server's key); the
/// body is sent exactly as given, from a file.
fn call(s: &Server, method: &str, path: &str, headers: &[String], body: Option<&[u8]>) -> Reply {
    let dir = tempfile::tempdir().unwrap();
    let pin = {
        use base64::Engine;
        let bytes = hex::decode(&s.pin).unwrap();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let mut args: Vec<String> = vec![
        "-k".into(),
        "--pinnedpubkey".into(),
        format!("sha256//{pin}"),
        "-X".into(),
        method.into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    for h in headers {
        args.extend(["-H".into(), h.clone()]);
    }
    if let Some(b) = body {
        let f = dir.path().join("body");
        std::fs::write(&f, b).unwrap();
        args.extend(["--data-binary".into(), format!("@{}", f.display())]);
    }
    args.push(format!("https://{}{path}", s.web));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = curl(&refs);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Reply { status: code.parse().unwrap_or(0), body: body.into() }
}

fn api(s: &Server, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
    let mut h = vec![format!("Authorization: Bearer {token}")];
    if body.is_some() {
        h.push("Content-Type: application/json".into());
    }
    call(s, method, path, &h, body.map(|b| b.to_string().into_bytes()).as_deref())
}

fn login(s: &Server, user: &str, password: &str) -> String {
    let body = json!({"username": user, "password": password}).to_string();
    let r = call(s, "POST", "/api/v1/auth/login", &["Content-Type: application/json".into()], Some(body.as_bytes()));
    assert_eq!(r.status, 200, "login {user}: {}", r.body);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

/// Sends a generic webhook body signed at `t` with `secret`.
fn signed(s: &Server, body: &[u8], t: u64, secret: &str) -> Reply {
    let sig = format!("X-Traffix-Signature: t={t},v1={}", sign_generic(secret.as_bytes(), t, body));
    call(s, "POST", WEBHOOK, &["Content-Type: application/json".into(), sig], Some(body))
}

fn payment(id: &str, user: &str, amount: &str) -> Vec<u8> {
    json!({"id": id, "user": user, "amount": amount, "currency": "USD"}).to_string().into_bytes()
}

/// The sender script of docs/payments.md, written to `dir`.
fn sender_script(dir: &std::path::Path) -> std::path::PathBuf {
    let doc = include_str!("../../docs/payments.md");
    let start = doc.find("```python\n").expect("docs/payments.md has the Python sender") + "```python\n".len();
    let end = start + doc[start..].find("\n```").unwrap();
    let path = dir.join("traffix-pay.py");
    std::fs::write(&path, &doc[start..end]).unwrap();
    path
}

/// Runs the documented sender against the server (TLS, trusting the server's certificate).
fn python_send(s: &Server, secret: &str, id: &str, user: &str, amount: &str) -> (bool, String) {
    let script = sender_script(s.data_dir());
    let url = format!("https://localhost:{}{WEBHOOK}", s.web.port());
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([url.as_str(), id, user, amount, "USD"])
        .arg(s.data_dir().join("tls/cert.pem"))
        .env("TRAFFIX_WEBHOOK_SECRET", secret)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_generic_webhook_credits_once_and_refuses_everything_else_changing_nothing() {
    let s = Server::start_with(generic_opts(&[]));
    s.add_user("alice", None);

    // The documented Python sender: credited, then a replay is a duplicate with the same id.
    let (ok, out) = python_send(&s, SECRET, "ord-1", "alice", "12.50");
    assert!(ok, "{out}");
    assert!(out.starts_with("200 ") && out.contains(r#""status": "credited""#), "{out}");
    assert!(out.contains(r#""transfer_id": "deposit:generic:ord-1""#), "{out}");
    let (ok, out) = python_send(&s, SECRET, "ord-1", "alice", "12.50");
    assert!(ok && out.contains(r#""status": "duplicate""#) && out.contains("deposit:generic:ord-1"), "{out}");
    assert_eq!(balance(&s, "alice"), 12_500_000);

    // The same id with another amount or user: 409, nothing changes.
    s.add_user("bob", None);
    let r = signed(&s, &payment("ord-1", "alice", "12.51"), now(), SECRET);
    assert_eq!((r.status, r.error()), (409, "conflict".into()), "{}", r.body);
    let r = signed(&s, &payment("ord-1", "bob", "12.50"), now(), SECRET);
    assert_eq!(r.status, 409, "{}", r.body);

    let good = payment("ord-2", "alice", "1.00");
    let t = now();
    let sig = sign_generic(SECRET.as_bytes(), t, &good);
    let json_h = "Content-Type: application/json".to_owned();
    /// (what, headers, body, status, error code)
    type Case<'a> = (&'a str, Vec<String>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("no signature", vec![json_h.clone()], good.clone(), 401, "invalid_signature"),
        (
            "another secret",
            vec![json_h.clone(), format!("X-Traffix-Signature: t={t},v1={}", sign_generic(b"wrong-secret", t, &good))],
            good.clone(),
            401,
            "invalid_signature",
        ),
        (
            "a changed body",
            vec![json_h.clone(), format!("X-Traffix-Signature: t={t},v1={sig}")],
            payment("ord-2", "alice", "100.00"),
            401,
            "invalid_signature",
        ),
        (
            "the signature of another t",
            vec![json_h.clone(), format!("X-Traffix-Signature: t={},v1={sig}", t + 1)],
            good.clone(),
            401,
            "invalid_signature",
        ),
        (
            "upper-case hex",
            vec![json_h.clone(), format!("X-Traffix-Signature: t={t},v1={}", sig.to_uppercase())],
            good.clone(),
            401,
            "invalid_signature",
        ),
        (
            "a truncated header",
            vec![json_h.clone(), format!("X-Traffix-Signature: t={t},v1={}", &sig[..40])],
            good.clone(),
            401,
            "invalid_signature",
        ),
        (
            "garbage in the header",
            vec![json_h.clone(), "X-Traffix-Signature: t==,,v1".into()],
            good.clone(),
            401,
            "invalid_signature",
        ),
        (
            "an oversized header",
            vec![json_h.clone(), format!("X-Traffix-Signature: t={t},v1={sig},{}", "x=y,".repeat(400))],
            good.clone(),
            401,
            "invalid_signature",
        ),
    ];
    for (what, headers, body, status, code) in cases {
        let r = call(&s, "POST", WEBHOOK, &headers, Some(&body));
        assert_eq!((r.status, r.error().as_str()), (status, code), "{what}: {}", r.body);
    }
    // Stale, an hour either way, though correctly signed.
    for t in [now() - 3600, now() + 3600] {
        let r = signed(&s, &good, t, SECRET);
        assert_eq!((r.status, r.error()), (401, "stale_timestamp".into()), "{}", r.body);
    }
    // Over 64 KiB: refused unread (the signature would have matched).
    let mut big = br#"{"id":"ord-3","user":"alice","amount":"1.00","currency":"USD","pad":""#.to_vec();
    big.resize(64 * 1024 + 1 - 2, b'x');
    big.extend_from_slice(br#""}"#);
    let r = signed(&s, &big, now(), SECRET);
    assert_eq!((r.status, r.error()), (413, "too_large".into()), "{}", r.body);
    // Signed, but not a payment: malformed, truncated, wrongly shaped, outside the grammar.
    let bodies: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "bad_request"),
        (good[..good.len() - 5].to_vec(), 400, "bad_request"),
        (b"".to_vec(), 400, "bad_request"),
        (vec![0xff, 0xfe, 0x00], 400, "bad_request"),
        (format!("{{\"x\":{}", "[".repeat(50_000)).into_bytes(), 400, "bad_request"),
        (b"[]".to_vec(), 422, "unprocessable"),
        (br#"{"id":"ord-4","user":"alice","amount":12.5,"currency":"USD"}"#.to_vec(), 422, "unprocessable"),
        (br#"{"id":"ord-4","user":"alice","currency":"USD"}"#.to_vec(), 422, "unprocessable"),
        (payment("ord-4", "alice", "12,50"), 400, "invalid"),
        (payment("ord-4", "alice", "-1"), 400, "invalid"),
        (payment("ord-4", "alice", "1e3"), 400, "invalid"),
        (payment("ord-4", "alice", "0"), 400, "invalid"),
        (payment("ord-4", "alice", "1000000.000001"), 400, "invalid"),
        (payment("ord 4", "alice", "1"), 400, "invalid"),
        (payment("ord-4", "Alice'; DROP", "1"), 400, "invalid"),
        (
            json!({"id": "ord-4", "user": "alice", "amount": "1", "currency": "EUR"}).to_string().into_bytes(),
            400,
            "invalid",
        ),
        (payment("ord-4", "nobody", "1"), 404, "not_found"),
    ];
    for (body, status, code) in bodies {
        let r = signed(&s, &body, now(), SECRET);
        assert_eq!(
            (r.status, r.error().as_str()),
            (status, code),
            "{:.80}: {}",
            String::from_utf8_lossy(&body),
            r.body
        );
    }
    // Nothing of it changed anything; the server still serves.
    assert_eq!(balance(&s, "alice"), 12_500_000);
    assert_eq!(balance(&s, "bob"), 0);
    let receipts = s.cli_json(&["payment", "list"]);
    let ids: Vec<&str> = receipts.as_array().unwrap().iter().map(|d| d["external_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ord-1"]);
    assert_eq!(receipts[0]["provider"], "generic");
    assert_eq!(receipts[0]["status"], "credited");
    // Every refusal has a log line that says why, and no log line holds the secret.
    let log = s.log();
    for why in ["stale_timestamp", "invalid_signature", "too_large", "unprocessable", "conflict", "not_found"] {
        assert!(
            log.lines().any(|l| l.contains("payment webhook rejected") && l.contains(why)),
            "no log line for {why}"
        );
    }
    assert!(!log.contains(SECRET), "the secret reached the log");
    verify_ok(&s);
}

/// The kill -9 case: the server dies right after the credit is committed and before it
/// answers (a debug-build failpoint sends SIGKILL to itself there). The provider, getting no
/// answer, sends the payment again to the restarted server: credited once.
#[test]
fn a_kill_9_between_the_credit_and_the_answer_never_credits_twice() {
    let mut s = Server::start_with(generic_opts(&[("TRAFFIX_FAILPOINT", "payments.after_credit")]));
    s.add_user("alice", None);
    let body = payment("crash-1", "alice", "7.25");
    let r = signed(&s, &body, now(), SECRET);
    assert_eq!(r.status, 0, "no answer: the server died before it: {}", r.body);
    let st = wait_for("the server to die", || s.child.as_mut().unwrap().try_wait().unwrap());
    assert!(!st.success(), "{st}");
    assert!(s.log().contains("failpoint reached"), "{}", s.log());
    s.child = None;
    s.opts.env.retain(|(k, _)| k != "TRAFFIX_FAILPOINT");
    s.spawn();
    // Committed before the crash.
    assert_eq!(balance(&s, "alice"), 7_250_000);
    // The provider's retry (a fresh t, the same body) is a duplicate of the first transfer.
    let r = signed(&s, &body, now(), SECRET);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "duplicate");
    assert_eq!(r.json()["transfer_id"], "deposit:generic:crash-1");
    assert_eq!(balance(&s, "alice"), 7_250_000);
    verify_ok(&s);
}

// ---------------------------------------------------------------------------------------------
// A fake Crypto Pay API: a real HTTP server speaking Crypto Pay's JSON.

#[derive(Default)]
struct FakeState {
    token: String,
    invoices: Vec<Value>,
    /// Paid invoices whose status `getInvoices` still shows as active (the webhook comes first).
    hidden: Vec<u64>,
    /// getInvoices answers 500 while set.
    failing: bool,
    created: Vec<Value>,
    /// (invoice ids asked, ids answered paid) per getInvoices call.
    polls: Vec<(Vec<u64>, Vec<u64>)>,
    update_id: u64,
}

struct FakeCryptoPay {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

fn cp_error(code: u16, name: &str) -> (axum::http::StatusCode, axum::Json<Value>) {
    let status = axum::http::StatusCode::from_u16(code).unwrap();
    (status, axum::Json(json!({"ok": false, "error": {"code": code, "name": name}})))
}

impl FakeCryptoPay {
    fn start(token: &str) -> FakeCryptoPay {
        use axum::extract::{Query, State};
        use axum::http::HeaderMap;
        use axum::routing::{get, post};
        let state = Arc::new(Mutex::new(FakeState { token: token.into(), ..FakeState::default() }));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                type S = State<Arc<Mutex<FakeState>>>;
                let authorized =
                    |st: &FakeState, h: &HeaderMap| h.get("crypto-pay-api-token").is_some_and(|v| v == st.token.as_str());
                let app = axum::Router::new()
                    .route(
                        "/api/createInvoice",
                        post(move |State(st): S, h: HeaderMap, axum::Json(req): axum::Json<Value>| async move {
                            let mut st = st.lock().unwrap();
                            if !authorized(&st, &h) {
                                return cp_error(401, "UNAUTHORIZED");
                            }
                            st.created.push(req.clone());
                            let id = 1000 + st.invoices.len() as u64;
                            let hash = format!("IV{id}abc");
                            let inv = json!({
                                "invoice_id": id, "hash": hash, "currency_type": req["currency_type"],
                                "fiat": req["fiat"], "amount": req["amount"],
                                "accepted_assets": req["accepted_assets"].as_str().map(|a| a.split(',').collect::<Vec<_>>()),
                                "status": "active", "description": req["description"], "payload": req["payload"],
                                "bot_invoice_url": format!("https://t.me/CryptoBot?start={hash}"),
                                "mini_app_invoice_url": format!("https://t.me/CryptoBot/app?startapp=invoice-{hash}"),
                                "web_app_invoice_url": format!("https://app.send.tg/invoices/{hash}"),
                                "created_at": "2026-01-01T00:00:00.000Z", "allow_comments": false, "allow_anonymous": true,
                            });
                            st.invoices.push(inv.clone());
                            (axum::http::StatusCode::OK, axum::Json(json!({"ok": true, "result": inv})))
                        }),
                    )
                    .route(
                        "/api/getInvoices",
                        get(move |State(st): S, h: HeaderMap, Query(q): Query<std::collections::HashMap<String, String>>| async move {
                            let mut st = st.lock().unwrap();
                            if !authorized(&st, &h) {
                                return cp_error(401, "UNAUTHORIZED");
                            }
                            if st.failing {
                                return cp_error(500, "INTERNAL_ERROR");
                            }
                            let ids: Vec<u64> = q
                                .get("invoice_ids")
                                .map(|s| s.split(',').filter_map(|i| i.parse().ok()).collect())
                                .unwrap_or_default();
                            let mut items = Vec::new();
                            for inv in st.invoices.iter().filter(|i| ids.contains(&i["invoice_id"].as_u64().unwrap())) {
                                let mut inv = inv.clone();
                                if st.hidden.contains(&inv["invoice_id"].as_u64().unwrap()) {
                                    inv["status"] = json!("active");
                                }
                                items.push(inv);
                            }
                            let paid = items.iter().filter(|i| i["status"] == "paid").map(|i| i["invoice_id"].as_u64().unwrap()).collect();
                            st.polls.push((ids, paid));
                            (axum::http::StatusCode::OK, axum::Json(json!({"ok": true, "result": {"items": items}})))
                        }),
                    )
                    .with_state(st);
                let l = tokio::net::TcpListener::from_std({
                    l.set_nonblocking(true).unwrap();
                    l
                })
                .unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        FakeCryptoPay { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Marks invoice `id` paid (with `amount` instead of the one asked, when given).
    fn pay(&self, id: u64, amount: Option<&str>, hidden: bool) {
        let mut st = self.state.lock().unwrap();
        let inv = st.invoices.iter_mut().find(|i| i["invoice_id"] == id).expect("known invoice");
        inv["status"] = json!("paid");
        inv["paid_asset"] = json!("USDT");
        inv["paid_amount"] = inv["amount"].clone();
        inv["paid_fiat_rate"] = json!("1.00");
        inv["paid_at"] = json!("2026-01-01T00:05:00.000Z");
        if let Some(a) = amount {
            inv["amount"] = json!(a);
        }
        if hidden {
            st.hidden.push(id);
        }
    }

    fn reveal(&self, id: u64) {
        self.state.lock().unwrap().hidden.retain(|h| *h != id);
    }

    /// The `invoice_paid` update Crypto Pay would send for invoice `id`.
    fn update(&self, id: u64) -> Vec<u8> {
        let mut st = self.state.lock().unwrap();
        st.update_id += 1;
        let inv = st.invoices.iter().find(|i| i["invoice_id"] == id).cloned().unwrap_or_else(|| {
            json!({"invoice_id": id, "hash": "IVother", "currency_type": "fiat", "fiat": "USD", "amount": "5",
                   "status": "paid", "created_at": "2026-01-01T00:00:00.000Z"})
        });
        json!({"update_id": st.update_id, "update_type": "invoice_paid", "request_date": "2026-01-01T00:05:01.000Z",
               "payload": inv})
        .to_string()
        .into_bytes()
    }

    /// How many getInvoices calls answered invoice `id` as paid.
    fn polled_paid(&self, id: u64) -> usize {
        self.state.lock().unwrap().polls.iter().filter(|(_, paid)| paid.contains(&id)).count()
    }
}

fn cp_webhook(s: &Server, body: &[u8], token: &str) -> Reply {
    let sig = format!("crypto-pay-api-signature: {}", sign_cryptopay(token, body));
    call(s, "POST", CP_WEBHOOK, &["Content-Type: application/json".into(), sig], Some(body))
}

fn cryptopay_server(fake: &FakeCryptoPay) -> Server {
    let e = env(&[
        ("TRAFFIX_PAYMENTS__ENABLED", r#"["cryptopay"]"#),
        ("TRAFFIX_PAYMENTS__CRYPTOPAY_TOKEN", TOKEN),
        ("TRAFFIX_PAYMENTS__CRYPTOPAY_API_URL", &fake.url()),
        ("TRAFFIX_PAYMENTS__CRYPTOPAY_POLL_SECS", "1"),
        ("TRAFFIX_PAYMENTS__CRYPTOPAY_POLL_MAX_SECS", "2"),
        ("TRAFFIX_PAYMENTS__CRYPTOPAY_ACCEPTED_ASSETS", r#"["USDT", "TON"]"#),
        ("TRAFFIX_PAYMENTS__MAX_OPEN_INVOICES_PER_USER", "3"),
    ]);
    Server::start_with(ServerOpts { env: e, ..ServerOpts::default() })
}

fn topup(s: &Server, token: &str, amount: &str) -> Reply {
    api(s, "POST", "/api/v1/me/topup/cryptopay", token, Some(json!({"amount": amount})))
}

#[test]
fn crypto_pay_invoices_are_credited_once_whichever_of_the_webhook_and_the_poller_sees_them_first() {
    let fake = FakeCryptoPay::start(TOKEN);
    let s = cryptopay_server(&fake);
    let out = s.cli(&["user", "add", "carol", "--password", "pw-carol-123"]);
    assert!(out.status.success());
    let tok = login(&s, "carol", "pw-carol-123");

    let opts = api(&s, "GET", "/api/v1/me/topup", &tok, None).json();
    assert_eq!(opts["providers"], json!(["cryptopay"]));
    assert_eq!(opts["currency"], "USD");

    // An invoice from the portal: fiat in the operator's currency, the accepted assets, the token.
    let r = topup(&s, &tok, "5.00");
    assert_eq!(r.status, 200, "{}", r.body);
    let inv = r.json();
    let first: u64 = inv["invoice_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(inv["status"], "active");
    assert!(inv["pay_url"].as_str().unwrap().starts_with("https://t.me/CryptoBot?start=IV"), "{inv}");
    {
        let st = fake.state.lock().unwrap();
        let req = &st.created[0];
        assert_eq!(
            (&req["currency_type"], &req["fiat"], &req["amount"], &req["accepted_assets"]),
            (&json!("fiat"), &json!("USD"), &json!("5.00"), &json!("USDT,TON"))
        );
    }
    for bad in ["0.99", "5,00", "-5", "1000000.01"] {
        assert_eq!(topup(&s, &tok, bad).status, 400, "{bad}");
    }

    // 1. The webhook first: the poller still sees the invoice active.
    fake.pay(first, None, true);
    let r = cp_webhook(&s, &fake.update(first), TOKEN);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["status"].as_str(), r.json()["transfer_id"].as_str()),
        (Some("credited"), Some(format!("deposit:cryptopay:{first}").as_str()))
    );
    assert_eq!(balance(&s, "carol"), 5_000_000);
    // Crypto Pay retries the update: a duplicate.
    assert_eq!(cp_webhook(&s, &fake.update(first), TOKEN).json()["status"], "duplicate");
    // Now the poller sees it paid too (a credited invoice is no longer watched, so it may
    // never ask): nothing more is credited either way.
    fake.reveal(first);

    // 2. The poller first.
    let second: u64 = topup(&s, &tok, "7.50").json()["invoice_id"].as_str().unwrap().parse().unwrap();
    fake.pay(second, None, false);
    wait_for("the poller to credit the second invoice", || (balance(&s, "carol") == 12_500_000).then_some(()));
    assert!(fake.polled_paid(second) >= 1);
    let r = cp_webhook(&s, &fake.update(second), TOKEN);
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("duplicate")), "{}", r.body);
    assert_eq!(balance(&s, "carol"), 12_500_000);

    // A payment that does not match its invoice is not credited: disputed.
    let third: u64 = topup(&s, &tok, "3.00").json()["invoice_id"].as_str().unwrap().parse().unwrap();
    fake.pay(third, Some("2.99"), false);
    wait_for("the poller to dispute the third invoice", || {
        let list = s.cli_json(&["payment", "invoices", "--user", "carol"]);
        list.as_array()
            .unwrap()
            .iter()
            .any(|i| i["invoice_id"].as_str() == Some(third.to_string().as_str()) && i["status"] == "disputed")
            .then_some(())
    });
    assert!(s.log().contains("ALERT: Crypto Pay reports a payment that does not match its invoice"));

    // Signatures: another token, a changed body, none; an invoice of another app; all refused
    // or ignored without a credit.
    let r = cp_webhook(&s, &fake.update(second), "4711:another");
    assert_eq!((r.status, r.error()), (401, "invalid_signature".into()));
    let body = fake.update(second);
    let sig = format!("crypto-pay-api-signature: {}", sign_cryptopay(TOKEN, &body));
    let mut changed = body.clone();
    let n = changed.len();
    changed[n - 3] = b' ';
    let r = call(&s, "POST", CP_WEBHOOK, &["Content-Type: application/json".into(), sig], Some(&changed));
    assert_eq!(r.status, 401);
    assert_eq!(call(&s, "POST", CP_WEBHOOK, &[], Some(&body)).status, 401);
    let r = cp_webhook(&s, &fake.update(999_999), TOKEN);
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ignored")));
    for hostile in [
        b"{".to_vec(),
        b"[]".to_vec(),
        br#"{"update_id":1,"update_type":"invoice_paid","payload":{"invoice_id":"x"}}"#.to_vec(),
    ] {
        let r = cp_webhook(&s, &hostile, TOKEN);
        assert!(r.status == 422 || r.status == 400, "{}: {}", String::from_utf8_lossy(&hostile), r.body);
    }
    let mut big = fake.update(second);
    big.resize(64 * 1024 + 1, b' ');
    assert_eq!(cp_webhook(&s, &big, TOKEN).status, 413);

    // Open invoices are bounded per user (3): the third is disputed, so two more may be opened.
    assert_eq!(topup(&s, &tok, "1.00").status, 200);
    assert_eq!(topup(&s, &tok, "1.00").status, 200);
    let r = topup(&s, &tok, "1.00");
    assert_eq!((r.status, r.error()), (200, String::new()), "{}", r.body);
    let r = topup(&s, &tok, "1.00");
    assert_eq!((r.status, r.error()), (429, "throttled".into()), "{}", r.body);

    // Crypto Pay failing: the poller backs off and the server goes on; once it answers again a
    // paid invoice is credited.
    fake.state.lock().unwrap().failing = true;
    let last: u64 =
        s.cli_json(&["payment", "invoices", "--user", "carol"])[0]["invoice_id"].as_str().unwrap().parse().unwrap();
    fake.pay(last, None, false);
    wait_for("the poller to log the failure", || s.log().contains("getInvoices failed; backing off").then_some(()));
    assert_eq!(balance(&s, "carol"), 12_500_000);
    fake.state.lock().unwrap().failing = false;
    wait_for("the poller to credit after the outage", || (balance(&s, "carol") == 13_500_000).then_some(()));

    // The receipts say what came from where.
    let mine = api(&s, "GET", "/api/v1/me/deposits", &tok, None).json();
    let got: Vec<(String, String)> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["provider"].as_str().unwrap().to_owned(), d["amount"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        got,
        [("cryptopay".into(), "1.00".into()), ("cryptopay".into(), "7.50".into()), ("cryptopay".into(), "5.00".into())]
    );
    assert!(!s.log().contains(TOKEN), "the token reached the log");
    verify_ok(&s);
}

#[test]
fn refunds_take_back_only_the_unspent_part_and_receipts_export_as_csv() {
    let s = Server::start_with(generic_opts(&[]));
    let out = s.cli(&["user", "add", "dave", "--password", "pw-dave-123"]);
    assert!(out.status.success());
    assert_eq!(signed(&s, &payment("pay-1", "dave", "10.00"), now(), SECRET).status, 200);
    assert_eq!(signed(&s, &payment("pay-2", "dave", "4.00"), now(), SECRET).status, 200);
    // 11.00 of it leaves dave's balance (a pending withdrawal): 3.00 is unspent.
    let w = s.cli_json(&["withdrawal", "request", "dave", "11.00"]);
    assert_eq!(w["status"], "pending");

    let r =
        s.cli_json(&["payment", "refund", "generic:pay-1", "--amount", "2.00", "--id", "re_1", "--reason", "asked"]);
    assert_eq!((r["return"]["recovered"].as_str(), r["new"].as_bool()), (Some("2.00"), Some(true)));
    assert_eq!(r["deposit"]["status"], "partially_refunded");
    let again =
        s.cli_json(&["payment", "refund", "generic:pay-1", "--amount", "2.00", "--id", "re_1", "--reason", "asked"]);
    assert_eq!(again["new"], false, "a replayed refund changes nothing");
    // A chargeback of the rest: 8.00 claimed, only 1.00 unspent.
    let cb = s.cli_json(&["payment", "chargeback", "deposit:generic:pay-1", "--reason", "bank"]);
    assert_eq!((cb["return"]["claimed"].as_str(), cb["return"]["recovered"].as_str()), (Some("8.00"), Some("1.00")));
    assert_eq!(
        (cb["deposit"]["status"].as_str(), cb["deposit"]["unrecovered_micros"].as_u64()),
        (Some("charged_back"), Some(7_000_000))
    );
    assert_eq!(balance(&s, "dave"), 0, "never below zero");
    let out = s.cli(&["payment", "refund", "generic:pay-1", "--reason", "again"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nothing is left"));
    // The ledger shows the returns as transfers against external:deposits.
    let kinds: Vec<String> = s
        .cli_json(&["ledger", "list", "--user", "dave"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"refund".to_owned()) && kinds.contains(&"chargeback".to_owned()), "{kinds:?}");

    // Receipts: the user's and the admin's, as JSON and CSV.
    let tok = login(&s, "dave", "pw-dave-123");
    let mine = api(&s, "GET", "/api/v1/me/deposits", &tok, None).json();
    assert_eq!(mine.as_array().unwrap().len(), 2);
    assert_eq!(mine[1]["returns"].as_array().unwrap().len(), 2);
    let csv = api(&s, "GET", "/api/v1/me/deposits.csv", &tok, None);
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(lines[0].starts_with("seq,time,provider,external_id,user,amount"), "{}", csv.body);
    assert!(
        lines[1].contains(r#""generic","pay-1","dave",10.00,10000000,"USD",charged_back,3000000,7000000"#),
        "{}",
        csv.body
    );
    assert!(lines[2].contains(r#""pay-2""#) && lines[2].contains(",credited,"), "{}", csv.body);
    let admin = login(&s, "admin", &s.admin_password);
    let all = api(&s, "GET", "/api/v1/admin/deposits.csv?user=dave", &admin, None);
    assert_eq!(all.body, csv.body);
    assert_eq!(api(&s, "GET", "/api/v1/admin/deposits.csv", &tok, None).status, 403, "admins only");
    let r = api(
        &s,
        "POST",
        "/api/v1/admin/deposits/generic:pay-2/return",
        &admin,
        Some(json!({"kind": "refund", "amount": "4.01", "reason": "x"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    verify_ok(&s);
}

#[test]
fn payout_profiles_request_withdrawals_at_their_threshold_and_approved_ones_are_exported_then_marked_paid() {
    let s = Server::start_with(generic_opts(&[("TRAFFIX_PAYMENTS__AUTO_WITHDRAW_INTERVAL_SECS", "1")]));
    let out = s.cli(&["user", "add", "erin", "--password", "pw-erin-123"]);
    assert!(out.status.success());
    let tok = login(&s, "erin", "pw-erin-123");
    let p = json!({"method": "bank", "details": "IBAN DE00 1234 5678", "auto_threshold": "4.99"});
    let r = api(&s, "PUT", "/api/v1/me/payout-profile", &tok, Some(p));
    assert_eq!(r.status, 400, "below the minimum payout: {}", r.body);
    let p = json!({"method": "bank", "details": "IBAN DE00 1234 5678", "auto_threshold": "10.00"});
    let r = api(&s, "PUT", "/api/v1/me/payout-profile", &tok, Some(p));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["auto_threshold"], "10.00");

    assert_eq!(signed(&s, &payment("e-1", "erin", "9.00"), now(), SECRET).status, 200);
    assert_eq!(signed(&s, &payment("e-2", "erin", "3.50"), now(), SECRET).status, 200);
    let w = wait_for("the automatic withdrawal", || {
        let list = s.cli_json(&["withdrawal", "list", "--user", "erin"]);
        list.as_array().unwrap().first().cloned()
    });
    assert_eq!((w["amount"].as_str(), w["destination"].as_str()), (Some("12.50"), Some("bank: IBAN DE00 1234 5678")));
    assert_eq!(balance(&s, "erin"), 0);
    let id = w["id"].as_u64().unwrap().to_string();
    s.cli_json(&["withdrawal", "approve", &id]);

    let admin = login(&s, "admin", &s.admin_password);
    let csv = api(&s, "GET", "/api/v1/admin/payouts.csv", &admin, None);
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.body);
    assert!(
        lines[1].starts_with(&format!("{id},\"erin\",12.50,12500000,\"bank: IBAN DE00 1234 5678\"")),
        "{}",
        csv.body
    );
    assert!(lines[1].contains(",true,"), "requested automatically: {}", csv.body);
    let r = api(
        &s,
        "POST",
        "/api/v1/admin/payouts/mark-paid",
        &admin,
        Some(json!({"ids": [id.parse::<u64>().unwrap()], "reference": "BATCH-1"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        api(&s, "GET", "/api/v1/admin/payouts.csv", &admin, None).body.lines().count(),
        1,
        "paid ones leave the batch"
    );
    let paid = s.cli(&["payout", "export", "--include-paid"]);
    assert!(String::from_utf8_lossy(&paid.stdout).contains("\"BATCH-1\""));
    // A pending one cannot be marked paid.
    assert_eq!(signed(&s, &payment("e-3", "erin", "11.00"), now(), SECRET).status, 200);
    let pending = wait_for("the second automatic withdrawal", || {
        let list = s.cli_json(&["withdrawal", "list", "--user", "erin", "--status", "pending"]);
        list.as_array().unwrap().first().cloned()
    });
    let out = s.cli(&["payout", "mark-paid", &pending["id"].to_string(), "--reference", "X"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("only approved"));
    let audit = s.cli_json(&["audit", "list"]);
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "payout.mark_paid"));
    verify_ok(&s);
}

#[test]
fn payment_settings_are_applied_at_once_and_secrets_are_write_only() {
    let s = Server::start();
    let out = s.cli(&["user", "add", "fay", "--password", "pw-fay-1234"]);
    assert!(out.status.success());
    let admin = login(&s, "admin", &s.admin_password);
    let fay = login(&s, "fay", "pw-fay-1234");
    assert_eq!(api(&s, "GET", "/api/v1/me/topup", &fay, None).json()["providers"], json!([]));
    assert_eq!(signed(&s, &payment("s-1", "fay", "1.00"), now(), SECRET).status, 404, "not enabled");

    let r = api(&s, "PUT", "/api/v1/admin/payments/settings", &admin, Some(json!({"enabled": ["generic"]})));
    assert_eq!(r.status, 400, "no secret yet: {}", r.body);
    let secret = "a-brand-new-secret-of-forty-characters!!";
    let r = api(
        &s,
        "PUT",
        "/api/v1/admin/payments/settings",
        &admin,
        Some(json!({"enabled": ["generic"], "generic_secret": secret, "min_topup": "2.00", "reason": "shop live"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = api(&s, "GET", "/api/v1/admin/payments/settings", &admin, None);
    assert!(v.json()["generic_secret_set"] == true && !v.body.contains(secret), "{}", v.body);
    assert_eq!(api(&s, "GET", "/api/v1/admin/payments/settings", &fay, None).status, 403);
    let opts = api(&s, "GET", "/api/v1/me/topup", &fay, None).json();
    assert_eq!((opts["providers"].clone(), opts["min_topup"].clone()), (json!(["generic"]), json!("2.00")));
    // In force without a restart.
    assert_eq!(signed(&s, &payment("s-1", "fay", "1.00"), now(), secret).status, 200);
    // And after one.
    let mut s = s;
    assert!(s.terminate().success());
    s.spawn();
    assert_eq!(signed(&s, &payment("s-2", "fay", "1.00"), now(), secret).json()["status"], "credited");
    let audit = s.cli(&["audit", "list", "--json"]);
    assert!(!String::from_utf8_lossy(&audit.stdout).contains(secret));
    assert!(!s.log().contains(secret));
    assert_eq!(balance(&s, "fay"), 2_000_000);
    verify_ok(&s);
}
