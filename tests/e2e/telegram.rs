//! The Telegram bot end to end: the real server against a fake Bot API (real HTTP, the real
//! JSON shapes of getUpdates, sendMessage, sendPhoto, sendInvoice, answerPreCheckoutQuery,
//! answerCallbackQuery, setWebhook/deleteWebhook and refundStarPayment), driven by scripted
//! updates.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::common::*;

const TOKEN: &str = "123456:TEST-token";

/// One call the bot made: the method and its JSON body (multipart bodies kept raw).
#[derive(Debug, Clone)]
struct Call {
    method: String,
    body: Value,
    raw: Vec<u8>,
}

#[derive(Default)]
struct BotState {
    /// Raw update JSON texts, with their ids (None: a hostile update without one).
    updates: Vec<(Option<i64>, String)>,
    next_id: i64,
    calls: Vec<Call>,
}

struct FakeBotApi {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<BotState>>,
    /// The server's log, shown when a wait times out.
    log: Mutex<Option<std::path::PathBuf>>,
}

fn msg_result(chat: i64, extra: Value) -> Value {
    let mut m =
        json!({"message_id": 7, "date": 1_700_000_000, "chat": {"id": chat, "type": "private", "first_name": "U"}});
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    json!({"ok": true, "result": m})
}

impl FakeBotApi {
    fn start() -> FakeBotApi {
        use axum::body::Bytes;
        use axum::extract::{Path, State};
        use axum::http::HeaderMap;
        use axum::routing::post;
        let state = Arc::new(Mutex::new(BotState { next_id: 100, ..BotState::default() }));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route(
                        "/{bot}/{method}",
                        post(
                            |State(st): State<Arc<Mutex<BotState>>>,
                             Path((bot, method)): Path<(String, String)>,
                             h: HeaderMap,
                             body: Bytes| async move {
                                // Telegram's method names are case-insensitive; teloxide
                                // sends them capitalised (`GetMe`).
                                let mut method = method;
                                if let Some(f) = method.get_mut(..1) {
                                    f.make_ascii_lowercase();
                                }
                                if bot != format!("bot{TOKEN}") {
                                    return axum::Json(
                                        json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
                                    )
                                    .into_response_text();
                                }
                                let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let multipart = h
                                    .get("content-type")
                                    .is_some_and(|v| v.to_str().unwrap_or("").starts_with("multipart/"));
                                if method == "getUpdates" {
                                    let offset = json_body["offset"].as_i64().unwrap_or(0);
                                    let pending: Vec<String> = {
                                        let mut s = st.lock().unwrap();
                                        s.updates.retain(|(id, _)| id.is_none_or(|id| id >= offset));
                                        // A hostile update without an id is served once.
                                        let out = s.updates.iter().map(|(_, t)| t.clone()).collect();
                                        s.updates.retain(|(id, _)| id.is_some());
                                        out
                                    };
                                    if pending.is_empty() {
                                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                    }
                                    return format!("{{\"ok\":true,\"result\":[{}]}}", pending.join(","));
                                }
                                let mut s = st.lock().unwrap();
                                s.calls.push(Call {
                                    method: method.clone(),
                                    body: json_body.clone(),
                                    raw: body.to_vec(),
                                });
                                let chat = json_body["chat_id"].as_i64().unwrap_or(0);
                                let answer = match method.as_str() {
                                    "getMe" => {
                                        json!({"ok": true, "result": {"id": 1, "is_bot": true, "first_name": "Traffix",
                                        "username": "traffix_test_bot", "can_join_groups": false,
                                        "can_read_all_group_messages": false, "supports_inline_queries": false,
                                        "can_connect_to_business": false, "has_main_web_app": false}})
                                    }
                                    "sendMessage" => msg_result(chat, json!({"text": json_body["text"]})),
                                    "sendPhoto" => {
                                        let chat = if multipart { multipart_chat(&body) } else { chat };
                                        msg_result(
                                            chat,
                                            json!({"photo": [{"file_id": "f1", "file_unique_id": "u1",
                                            "width": 320, "height": 320, "file_size": 100}]}),
                                        )
                                    }
                                    "sendInvoice" => msg_result(
                                        chat,
                                        json!({"invoice": {"title": json_body["title"],
                                        "description": json_body["description"], "start_parameter": "",
                                        "currency": json_body["currency"],
                                        "total_amount": json_body["prices"][0]["amount"]}}),
                                    ),
                                    _ => json!({"ok": true, "result": true}),
                                };
                                answer.to_string()
                            },
                        ),
                    )
                    .with_state(st);
                l.set_nonblocking(true).unwrap();
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        FakeBotApi { addr, state, log: Mutex::new(None) }
    }

    fn push(&self, kind: &str, body: Value) -> i64 {
        let mut s = self.state.lock().unwrap();
        let id = s.next_id;
        s.next_id += 1;
        let mut u = json!({"update_id": id});
        u[kind] = body;
        s.updates.push((Some(id), u.to_string()));
        id
    }

    fn push_raw(&self, id: Option<i64>, text: &str) {
        self.state.lock().unwrap().updates.push((id, text.to_owned()));
    }

    fn text(&self, from: i64, text: &str) -> i64 {
        self.push(
            "message",
            json!({"message_id": 1, "date": 1_700_000_000, "text": text,
            "chat": {"id": from, "type": "private", "first_name": "U"},
            "from": {"id": from, "is_bot": false, "first_name": "U"}}),
        )
    }

    fn callback(&self, from: i64, data: &str) -> i64 {
        self.push(
            "callback_query",
            json!({"id": format!("cb{from}{data}"), "chat_instance": "ci", "data": data,
            "from": {"id": from, "is_bot": false, "first_name": "U"}}),
        )
    }

    fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Waits for the `n`-th (from 0) call of `method` to `chat` whose text contains `needle`.
    fn wait_message(&self, chat: i64, needle: &str) -> Call {
        self.wait(&format!("a message to {chat} containing {needle:?}"), || {
            self.calls().into_iter().find(|c| {
                c.method == "sendMessage"
                    && c.body["chat_id"] == chat
                    && c.body["text"].as_str().is_some_and(|t| t.contains(needle))
            })
        })
    }

    fn count_messages(&self, chat: i64, needle: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| {
                c.method == "sendMessage"
                    && c.body["chat_id"] == chat
                    && c.body["text"].as_str().is_some_and(|t| t.contains(needle))
            })
            .count()
    }

    fn wait_call(&self, method: &str, pred: impl Fn(&Call) -> bool) -> Call {
        self.wait(&format!("a {method} call"), || self.calls().into_iter().find(|c| c.method == method && pred(c)))
    }

    /// [`wait_for`], with the calls made and the server's log in the failure.
    fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let start = std::time::Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            if start.elapsed() > PATIENCE {
                let log = self.log.lock().unwrap().as_ref().and_then(|p| std::fs::read_to_string(p).ok());
                let calls: Vec<String> = self.calls().iter().map(|c| format!("{} {}", c.method, c.body)).collect();
                panic!("timed out waiting for {what}\ncalls:\n{}\nlog:\n{}", calls.join("\n"), log.unwrap_or_default());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

trait IntoText {
    fn into_response_text(self) -> String;
}
impl IntoText for axum::Json<Value> {
    fn into_response_text(self) -> String {
        self.0.to_string()
    }
}

/// The chat id field of a multipart body.
fn multipart_chat(body: &[u8]) -> i64 {
    let t = String::from_utf8_lossy(body);
    let i = t.find("name=\"chat_id\"").unwrap_or(0);
    t[i..].lines().nth(2).and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}

fn start_server(fake: &FakeBotApi, signup: &str) -> Server {
    let env = vec![
        ("TRAFFIX_TELEGRAM__BOT_TOKEN".into(), TOKEN.into()),
        ("TRAFFIX_TELEGRAM__API_URL".into(), format!("http://{}", fake.addr)),
        ("TRAFFIX_TELEGRAM__POLL_TIMEOUT_SECS".into(), "0".into()),
        ("TRAFFIX_TELEGRAM__SIGNUP".into(), signup.into()),
        ("TRAFFIX_TELEGRAM__WATCH_INTERVAL_SECS".into(), "1".into()),
        ("TRAFFIX_TELEGRAM__NOTIFY_PER_MINUTE".into(), "100".into()),
        ("TRAFFIX_PAYMENTS__ENABLED".into(), "[\"stars\"]".into()),
    ];
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        insecure_http: true,
        env,
        ..ServerOpts::default()
    });
    *fake.log.lock().unwrap() = Some(s.log_path());
    s
}

fn api(s: &Server, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let url = format!("http://{}{path}", s.web);
    let mut args = vec![
        "-s".to_owned(),
        "-o".into(),
        "-".into(),
        "-w".into(),
        "\n%{http_code}".into(),
        "-X".into(),
        method.into(),
    ];
    if let Some(t) = token {
        args.push("-H".into());
        args.push(format!("Authorization: Bearer {t}"));
    }
    if let Some(b) = body {
        args.extend(["-H".into(), "Content-Type: application/json".into(), "--data".into(), b.to_string()]);
    }
    args.push(url);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = curl(&a);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn login(s: &Server, user: &str, password: &str) -> String {
    let (code, v) = api(s, "POST", "/api/v1/auth/login", None, Some(json!({"username": user, "password": password})));
    assert_eq!(code, 200, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

fn balance(s: &Server, user: &str) -> String {
    s.cli_json(&["user", "show", user])["balance"].as_str().unwrap().to_owned()
}

#[test]
fn the_bot_signs_up_links_serves_commands_takes_stars_and_notifies() {
    let fake = FakeBotApi::start();
    let mut s = start_server(&fake, "open");
    fake.wait_call("getMe", |_| true);

    // Hostile input first: an update of a type teloxide cannot read, and a batch with an
    // update that has no id at all. Both are logged and skipped; the bot keeps serving.
    fake.push_raw(Some(90), r#"{"update_id":90,"message":"not an object"}"#);
    fake.push_raw(None, r#"{"no_update_id":true,"message":{"text":"/start"}}"#);
    fake.push_raw(Some(91), r#"{"update_id":91,"callback_query":{"id":"x","from":{"id":42,"is_bot":false,"first_name":"U"},"chat_instance":"c","data":"dev:pause:../../etc"}}"#);

    // Sign-up (open): /start creates tg_42.
    fake.text(42, "/start");
    fake.wait_message(42, "tg_42");
    let u = s.cli_json(&["user", "show", "tg_42"]);
    assert_eq!(u["telegram_id"], 42);
    assert!(s.log().contains("skipped"), "hostile updates are logged:\n{}", s.log());

    // Not linked, unknown command, group chats ignored.
    fake.text(43, "/balance");
    fake.wait_message(43, "/start");
    fake.text(42, "/frobnicate");
    fake.wait_message(42, "do not know");
    fake.push(
        "message",
        json!({"message_id": 1, "date": 1, "text": "/balance",
        "chat": {"id": -100, "type": "group", "title": "g"}, "from": {"id": 42, "is_bot": false, "first_name": "U"}}),
    );

    fake.text(42, "/help");
    fake.wait_message(42, "/topup");
    fake.text(42, "/balance");
    fake.wait_message(42, "Balance: 0.00");
    assert_eq!(fake.count_messages(-100, ""), 0, "nothing is said in a group");

    // /proxy and rotation.
    fake.text(42, "/proxy");
    let pw = u["proxy_password"].as_str().unwrap().to_owned();
    let m = fake.wait_message(42, &pw);
    assert_eq!(m.body["reply_markup"]["inline_keyboard"][0][0]["callback_data"], "proxy:rotate");
    fake.callback(42, "proxy:rotate");
    fake.wait_message(42, "New proxy password");
    let pw2 = s.cli_json(&["user", "show", "tg_42"])["proxy_password"].as_str().unwrap().to_owned();
    assert_ne!(pw, pw2);
    fake.wait_message(42, &pw2);

    // /usage, /pair (a PNG QR code).
    fake.text(42, "/usage");
    fake.wait_message(42, "Last 7 days");
    fake.text(42, "/pair");
    let photo = fake.wait_call("sendPhoto", |_| true);
    let png = b"\x89PNG\r\n\x1a\n";
    assert!(photo.raw.windows(png.len()).any(|w| w == png), "a PNG is uploaded");
    assert!(String::from_utf8_lossy(&photo.raw).contains("traffix://pair?"), "the caption holds the link");

    // Stars: /topup 5 → an XTR invoice of 250 Stars with no provider token.
    fake.text(42, "/topup 5");
    let inv = fake.wait_call("sendInvoice", |_| true);
    assert_eq!(inv.body["currency"], "XTR");
    assert_eq!(inv.body["prices"][0]["amount"], 250);
    assert!(inv.body["provider_token"].as_str().unwrap_or("").is_empty());
    let payload = inv.body["payload"].as_str().unwrap().to_owned();
    let from = json!({"id": 42, "is_bot": false, "first_name": "U"});
    // A pre-checkout of the wrong amount is refused, the right one accepted.
    fake.push(
        "pre_checkout_query",
        json!({"id": "pcq-bad", "from": from, "currency": "XTR", "total_amount": 1,
        "invoice_payload": payload}),
    );
    let bad = fake.wait_call("answerPreCheckoutQuery", |c| c.body["pre_checkout_query_id"] == "pcq-bad");
    assert_eq!(bad.body["ok"], false);
    assert!(bad.body["error_message"].is_string());
    fake.push(
        "pre_checkout_query",
        json!({"id": "pcq-ok", "from": from, "currency": "XTR", "total_amount": 250,
        "invoice_payload": payload}),
    );
    let ok = fake.wait_call("answerPreCheckoutQuery", |c| c.body["pre_checkout_query_id"] == "pcq-ok");
    assert_eq!(ok.body["ok"], true);
    let paid = json!({"message_id": 9, "date": 1_700_000_000, "chat": {"id": 42, "type": "private", "first_name": "U"},
        "from": from, "successful_payment": {"currency": "XTR", "total_amount": 250, "invoice_payload": payload,
        "telegram_payment_charge_id": "stxCHARGE1", "provider_payment_charge_id": ""}});
    fake.push("message", paid.clone());
    fake.wait_message(42, "Received 5.00");
    assert_eq!(balance(&s, "tg_42"), "5.00");
    // Replayed: credited once.
    fake.push("message", paid);
    fake.wait_message(42, "already credited");
    assert_eq!(balance(&s, "tg_42"), "5.00");
    let deposits = s.cli_json(&["payment", "list"]);
    assert!(deposits.to_string().contains("deposit:stars:stxCHARGE1"), "{deposits}");
    // The deposit notification reaches the inbox.
    wait_for("the deposit notice", || {
        let inbox = s.cli_json(&["user", "show", "tg_42"]);
        let _ = inbox;
        fake.calls().iter().any(|c| c.body["text"].as_str().is_some_and(|t| t.contains("(stars)"))).then_some(())
    });

    // The login link: a preview-style GET does not spend it; the page's POST does, once.
    fake.text(42, "/login");
    let m = fake.wait_message(42, "/#/telegram-login/");
    assert_eq!(m.body["link_preview_options"]["is_disabled"], true);
    let text = m.body["text"].as_str().unwrap();
    let link = text.lines().find(|l| l.starts_with("http")).unwrap();
    let token = link.rsplit('/').next().unwrap();
    let get = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", link]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "200");
    let (code, v) = api(&s, "POST", "/api/v1/auth/telegram", None, Some(json!({"token": token})));
    assert_eq!(code, 200, "{v}");
    let tg_access = v["access_token"].as_str().unwrap().to_owned();
    let (code, me) = api(&s, "GET", "/api/v1/me", Some(&tg_access), None);
    assert_eq!((code, me["name"].as_str()), (200, Some("tg_42")));
    let (code, _) = api(&s, "POST", "/api/v1/auth/telegram", None, Some(json!({"token": token})));
    assert_eq!(code, 401, "a login link works once");

    // Linking a web account (the admin) with the code from the portal; admin commands.
    let admin = login(&s, "admin", &s.admin_password.clone());
    let (code, c) = api(&s, "POST", "/api/v1/me/telegram/link-code", Some(&admin), None);
    assert_eq!(code, 200, "{c}");
    fake.text(1000, &format!("/start {}", c["code"].as_str().unwrap()));
    fake.wait_message(1000, "linked to admin");
    assert_eq!(s.cli_json(&["user", "show", "admin"])["telegram_id"], 1000);
    fake.text(42, "/today");
    fake.wait_message(42, "for admins");
    fake.text(1000, "/today");
    fake.wait_message(1000, "Nodes online");

    // A Stars refund takes back the unspent part.
    fake.text(1000, "/refund stxCHARGE1");
    let r = fake.wait_call("refundStarPayment", |_| true);
    assert_eq!(
        (r.body["user_id"].as_i64(), r.body["telegram_payment_charge_id"].as_str()),
        (Some(42), Some("stxCHARGE1"))
    );
    fake.wait_message(1000, "Refunded");
    assert_eq!(balance(&s, "tg_42"), "0.00");
    // Telegram pays back every Star each time it is asked: a second refund is not sent there.
    fake.text(1000, "/refund stxCHARGE1");
    fake.wait_message(1000, "already reversed or refunded");
    assert_eq!(fake.calls().iter().filter(|c| c.method == "refundStarPayment").count(), 1);

    // Withdrawals: requested in the bot, approved by the admin's button, the user is told.
    s.cli(&["user", "credit", "tg_42", "10.00", "--reason", "test"]);
    fake.text(42, "/withdraw 6 IBAN DE00 1");
    fake.wait_message(42, "Withdrawal #1");
    fake.wait_message(1000, "withdrawal #1 of 6.00 requested");
    fake.text(1000, "/withdrawals");
    let m = fake.wait_message(1000, "#1 tg_42");
    assert_eq!(m.body["reply_markup"]["inline_keyboard"][0][0]["callback_data"], "wd:approve:1");
    fake.callback(42, "wd:approve:1");
    fake.wait_message(42, "for admins");
    fake.callback(1000, "wd:approve:1");
    fake.wait_message(1000, "Withdrawal #1: approved");
    fake.wait_message(42, "Withdrawal #1 of 6.00 USD was approved");

    // Nodes: /devices, offline and back notifications, none while paused.
    fake.text(42, "/notify offline 0");
    fake.wait_message(42, "Node offline alert after: 0 min");
    let mut node = s.start_node("tg_42", "127.0.0.2");
    fake.text(42, "/devices");
    let m = fake.wait_message(42, &node.vip);
    let pause = m.body["reply_markup"]["inline_keyboard"][0][0]["callback_data"].as_str().unwrap().to_owned();
    assert!(pause.starts_with("dev:pause:"), "{pause}");
    node.kill9();
    fake.wait_message(42, &format!("Your node {} has been offline", node.vip));
    node.spawn(None);
    fake.wait_message(42, &format!("Your node {} is back online", node.vip));
    fake.callback(42, &pause);
    fake.wait_message(42, "is paused");
    let dev = s.devices().into_iter().find(|d| d["vip"] == node.vip.as_str()).unwrap();
    assert_eq!(dev["paused"], true);
    node.kill9();
    wait_for("the node offline", || (s.online_count() == 0).then_some(()));
    // Several watcher rounds (1 s each) pass: no new offline notice for a paused node.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(fake.count_messages(42, "has been offline"), 1, "a paused node is not reported offline");

    // An admin's ban reaches the owner with its reason.
    let out = s.cli(&["device", "ban", &node.vip, "--reason", "fraud report 17"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fake.wait_message(42, "was banned: fraud report 17");

    // The inbox in the API holds what was sent.
    let (code, inbox) = api(&s, "GET", "/api/v1/me/notifications", Some(&tg_access), None);
    assert_eq!(code, 200);
    assert!(inbox.to_string().contains("is back online"), "{inbox}");

    // The bot kept serving through all of it; the ledger is consistent.
    fake.text(42, "/balance");
    fake.wait_message(42, "Available");
    let v = s.cli(&["ledger", "verify"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    assert!(s.metric("traffix_telegram_updates_skipped_total") >= 2.0);
    s.terminate();
}

#[test]
fn invite_only_signup_needs_a_code() {
    let fake = FakeBotApi::start();
    let s = start_server(&fake, "invite");
    fake.text(5, "/start");
    fake.wait_message(5, "invitation");
    assert!(!s.cli(&["user", "show", "tg_5", "--json"]).status.success());
    let admin = login(&s, "admin", &s.admin_password.clone());
    let (code, inv) = api(&s, "POST", "/api/v1/admin/telegram/invite", Some(&admin), None);
    assert_eq!(code, 200, "{inv}");
    fake.text(5, &format!("/start {}", inv["code"].as_str().unwrap()));
    fake.wait_message(5, "tg_5 is ready");
    // The same invitation again creates nobody.
    fake.text(6, &format!("/start {}", inv["code"].as_str().unwrap()));
    fake.wait_message(6, "invitation");
    // The admin unlinks tg_5: the bot no longer knows it.
    let (code, _) = api(&s, "POST", "/api/v1/admin/users/tg_5/telegram/unlink", Some(&admin), None);
    assert_eq!(code, 200);
    assert!(s.cli_json(&["user", "show", "tg_5"])["telegram_id"].is_null());
    fake.text(5, "/balance");
    fake.wait_message(5, "no Traffix account");
    // The CLI: an invitation and a link code, then unlinking again.
    let inv = s.cli_json(&["telegram", "invite"]);
    fake.text(8, inv["command"].as_str().unwrap());
    fake.wait_message(8, "tg_8 is ready");
    let code = s.cli_json(&["telegram", "link-code", "tg_5"]);
    fake.text(5, code["command"].as_str().unwrap());
    fake.wait_message(5, "linked to tg_5");
    assert_eq!(s.cli_json(&["user", "show", "tg_5"])["telegram_id"], 5);
    assert!(s.cli_json(&["telegram", "unlink", "tg_5"])["telegram_id"].is_null());
    let audit = s.cli_json(&["audit", "list"]).to_string();
    for action in ["telegram.invite", "telegram.start", "telegram.link_code", "telegram.unlink"] {
        assert!(audit.contains(action), "{action} is audited: {audit}");
    }
}

#[test]
fn webhook_mode_checks_the_secret_token_and_skips_malformed_updates() {
    let fake = FakeBotApi::start();
    let secret = "s3cret_TOKEN-1_0123456789abcdef0123";
    let env = vec![
        ("TRAFFIX_TELEGRAM__BOT_TOKEN".into(), TOKEN.into()),
        ("TRAFFIX_TELEGRAM__API_URL".into(), format!("http://{}", fake.addr)),
        ("TRAFFIX_TELEGRAM__WEBHOOK_URL".into(), "http://127.0.0.1:8443/telegram/webhook".into()),
        ("TRAFFIX_TELEGRAM__WEBHOOK_SECRET".into(), secret.into()),
    ];
    let s = Server::start_with(ServerOpts {
        allow_private_targets: true,
        insecure_http: true,
        env,
        ..ServerOpts::default()
    });
    *fake.log.lock().unwrap() = Some(s.log_path());
    let set = fake.wait_call("setWebhook", |_| true);
    // setWebhook goes as multipart/form-data (it may carry a certificate file).
    let form = |c: &Call, name: &str| {
        let raw = String::from_utf8_lossy(&c.raw).into_owned();
        let i = raw.find(&format!("name=\"{name}\""))?;
        raw[i..].lines().nth(2).map(|l| l.trim().to_owned())
    };
    assert_eq!(form(&set, "secret_token").as_deref(), Some(secret));
    assert_eq!(form(&set, "url").as_deref(), Some("http://127.0.0.1:8443/telegram/webhook"));
    assert!(!fake.calls().iter().any(|c| c.method == "getUpdates"), "no polling with a webhook");

    let url = format!("http://{}/telegram/webhook", s.web);
    let update = json!({"update_id": 5, "message": {"message_id": 1, "date": 1, "text": "/start",
        "chat": {"id": 31, "type": "private", "first_name": "U"}, "from": {"id": 31, "is_bot": false, "first_name": "U"}}})
    .to_string();
    let post = |secret: Option<&str>, body: &str| {
        let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json"];
        let h = secret.map(|s| format!("X-Telegram-Bot-Api-Secret-Token: {s}"));
        if let Some(h) = &h {
            args.extend(["-H", h.as_str()]);
        }
        args.extend(["--data-binary", body, url.as_str()]);
        String::from_utf8_lossy(&curl(&args).stdout).into_owned()
    };
    assert_eq!(post(None, &update), "401");
    assert_eq!(post(Some("wrong"), &update), "401");
    assert_eq!(fake.count_messages(31, ""), 0, "refused updates are not handled");
    assert_eq!(post(Some(secret), "{not json"), "200", "malformed: skipped, not retried");
    assert_eq!(post(Some(secret), r#"{"message":{}}"#), "200");
    assert_eq!(post(Some(secret), &update), "200");
    fake.wait_message(31, "tg_31");
    assert!(s.metric("traffix_telegram_updates_skipped_total") >= 2.0);
}
