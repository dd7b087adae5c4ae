//! The REST API on a real server (TLS, pinned) and a real redb file, driven with curl: logins,
//! token rotation and reuse detection, scopes, admin actions, bad input, cross-origin requests,
//! the OpenAPI document and the dashboard's files.

use base64::Engine;
use serde_json::{Value, json};

use crate::common::*;

pub(crate) struct Api<'a> {
    s: &'a Server,
    pin: String,
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: String,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

impl<'a> Api<'a> {
    pub(crate) fn new(s: &'a Server) -> Api<'a> {
        let pin = hex_to_b64(&s.pin);
        Api { s, pin }
    }

    /// One request; `extra` are raw curl arguments (headers, a raw body).
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>, extra: &[&str]) -> Reply {
        let url = format!("https://{}{path}", self.s.web);
        let dir = tempfile::tempdir().unwrap();
        let head = dir.path().join("h");
        let mut args: Vec<String> = vec![
            "-sS".into(),
            "-k".into(),
            "--pinnedpubkey".into(),
            format!("sha256//{}", self.pin),
            "-X".into(),
            method.into(),
            "-D".into(),
            head.display().to_string(),
            "-w".into(),
            "\n%{http_code}".into(),
        ];
        if let Some(t) = token {
            args.push("-H".into());
            args.push(format!("Authorization: Bearer {t}"));
        }
        if let Some(b) = body {
            args.extend(["-H".into(), "Content-Type: application/json".into(), "--data-binary".into(), b.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(url);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(&refs);
        assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap();
        Reply {
            status: code.parse().unwrap(),
            headers: std::fs::read_to_string(head).unwrap_or_default(),
            body: body.into(),
        }
    }

    pub(crate) fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), None, &[])
    }

    pub(crate) fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("POST", path, Some(token), Some(&body), &[])
    }

    pub(crate) fn login(&self, user: &str, password: &str) -> Value {
        let r =
            self.call("POST", "/api/v1/auth/login", None, Some(&json!({"username": user, "password": password})), &[]);
        assert_eq!(r.status, 200, "login {user}: {}", r.body);
        r.json()
    }
}

fn hex_to_b64(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn token(v: &Value) -> String {
    v["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn logins_rotate_refresh_tokens_and_a_reused_one_revokes_the_login() {
    let s = Server::start();
    let api = Api::new(&s);
    let t = api.login("admin", &s.admin_password);
    assert_eq!(t["expires_in"], 600);
    assert_eq!(t["token_type"], "Bearer");
    let me = api.get("/api/v1/me", &token(&t)).json();
    assert_eq!(me["name"], "admin");
    assert_eq!(me["admin"], true);
    assert!(me["proxy"]["curl_socks5"].as_str().unwrap().starts_with("curl --socks5-hostname 'admin:"));

    let r1 = t["refresh_token"].as_str().unwrap();
    // A refresh token matches only exactly as issued: not upper-cased, not padded.
    for variant in [r1.to_uppercase(), format!(" {r1} "), format!("{} ", r1.to_uppercase())] {
        let v = api.call("POST", "/api/v1/auth/refresh", None, Some(&json!({"refresh_token": variant})), &[]);
        assert_eq!((v.status, v.error()), (401, "invalid_token".into()), "{variant:?}: {}", v.body);
    }
    let t2 = api.call("POST", "/api/v1/auth/refresh", None, Some(&json!({"refresh_token": r1})), &[]);
    assert_eq!(t2.status, 200, "{}", t2.body);
    let r2 = t2.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated");
    assert_eq!(api.get("/api/v1/me", &token(&t2.json())).status, 200);
    // r1 is spent: presenting it again is reuse — and revokes r2 with it.
    let reuse = api.call("POST", "/api/v1/auth/refresh", None, Some(&json!({"refresh_token": r1})), &[]);
    assert_eq!((reuse.status, reuse.error()), (401, "invalid_token".into()), "{}", reuse.body);
    let after = api.call("POST", "/api/v1/auth/refresh", None, Some(&json!({"refresh_token": r2})), &[]);
    assert_eq!(after.status, 401, "the whole family is revoked: {}", after.body);

    // Logout revokes the login.
    let t3 = api.login("admin", &s.admin_password);
    let r3 = t3["refresh_token"].as_str().unwrap();
    assert_eq!(api.call("POST", "/api/v1/auth/logout", None, Some(&json!({"refresh_token": r3})), &[]).status, 204);
    assert_eq!(api.call("POST", "/api/v1/auth/refresh", None, Some(&json!({"refresh_token": r3})), &[]).status, 401);
}

#[test]
fn bad_credentials_tokens_and_bodies_get_the_right_errors() {
    let s = Server::start();
    let api = Api::new(&s);
    let bad =
        api.call("POST", "/api/v1/auth/login", None, Some(&json!({"username": "admin", "password": "nope"})), &[]);
    assert_eq!((bad.status, bad.error()), (401, "invalid_credentials".into()));
    let ghost = api.call("POST", "/api/v1/auth/login", None, Some(&json!({"username": "ghost", "password": "x"})), &[]);
    assert_eq!(ghost.status, 401);
    let malformed = api.call(
        "POST",
        "/api/v1/auth/login",
        None,
        None,
        &["-H", "Content-Type: application/json", "--data-binary", "{\"username\":"],
    );
    assert_eq!((malformed.status, malformed.error()), (400, "bad_request".into()), "{}", malformed.body);
    let missing = api.call("POST", "/api/v1/auth/login", None, Some(&json!({"username": "admin"})), &[]);
    assert_eq!((missing.status, missing.error()), (422, "unprocessable".into()), "{}", missing.body);
    let wrong_type = api.call("POST", "/api/v1/auth/login", None, None, &["--data-binary", "username=admin"]);
    assert_eq!(wrong_type.status, 400, "{}", wrong_type.body);
    let big = json!({"username": "admin", "password": "x".repeat(70_000)});
    let too_large = api.call("POST", "/api/v1/auth/login", None, Some(&big), &[]);
    assert_eq!((too_large.status, too_large.error()), (413, "too_large".into()), "{}", too_large.body);

    for t in ["", "garbage", "a.b.c", "tfx_nope", &"x".repeat(5000)] {
        let r = api.call("GET", "/api/v1/me", None, None, &["-H", &format!("Authorization: Bearer {t}")]);
        assert_eq!(r.status, 401, "token {t:.20}: {}", r.body);
    }
    assert_eq!(api.call("GET", "/api/v1/me", None, None, &[]).status, 401);
    // An expired token signed with the server's own key is still refused.
    let secret = hex_decode(std::fs::read_to_string(s.data_dir().join("jwt.secret")).unwrap().trim());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"sub": "admin", "iss": "traffix", "aud": "traffix-api", "iat": now - 700, "nbf": now - 700, "exp": now - 100, "fam": "x"});
    let expired = sign(&secret, &claims);
    let r = api.get("/api/v1/me", &expired);
    assert_eq!((r.status, r.error()), (401, "invalid_token".into()), "{}", r.body);
    let fresh = sign(
        &secret,
        &json!({"sub": "admin", "iss": "traffix", "aud": "traffix-api", "iat": now, "nbf": now, "exp": now + 60, "fam": "x"}),
    );
    assert_eq!(api.get("/api/v1/me", &fresh).status, 200, "the forge itself is right");
    assert_eq!(api.get("/api/v1/nope", &fresh).status, 404);

    // Five failures, then back-off with Retry-After.
    for _ in 0..5 {
        api.call("POST", "/api/v1/auth/login", None, Some(&json!({"username": "admin", "password": "wrong"})), &[]);
    }
    let r = api.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"username": "admin", "password": &s.admin_password})),
        &[],
    );
    assert_eq!((r.status, r.error()), (429, "throttled".into()), "{}", r.body);
    assert!(r.headers.to_ascii_lowercase().contains("retry-after:"), "{}", r.headers);
}

/// Sixty wrong logins at once from one address, each for another name: the per-IP limit (20 a
/// minute) holds exactly — twenty are checked (401), the rest refused before any hash (429).
/// The check and the count used to be separate steps around the hash, and most got through.
#[test]
fn concurrent_wrong_logins_cannot_overrun_the_ip_limit() {
    let s = Server::start();
    let api = Api::new(&s);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..60)
            .map(|i| {
                let api = &api;
                scope.spawn(move || {
                    let body = json!({"username": format!("nobody{i}"), "password": "wrong password"});
                    api.call("POST", "/api/v1/auth/login", None, Some(&body), &[]).status
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let count = |code| statuses.iter().filter(|&&s| s == code).count();
    assert_eq!((count(401), count(429)), (20, 40), "{statuses:?}");
    let more = api.call("POST", "/api/v1/auth/login", None, Some(&json!({"username": "x", "password": "y"})), &[]);
    assert_eq!(more.status, 429, "{}", more.body);
}

fn hex_decode(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

fn sign(secret: &[u8], claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let sig = ring::hmac::sign(&key, format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64.encode(sig.as_ref()))
}

#[test]
fn admins_act_through_the_api_and_others_cannot() {
    let s = Server::start();
    let api = Api::new(&s);
    let admin = token(&api.login("admin", &s.admin_password));
    let created = api.post("/api/v1/admin/users", &admin, json!({"name": "carol", "password": "carol-password"}));
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(api.post("/api/v1/admin/users", &admin, json!({"name": "carol"})).status, 409);
    assert_eq!(api.post("/api/v1/admin/users", &admin, json!({"name": "Bad Name"})).status, 400);
    let carol = token(&api.login("carol", "carol-password"));
    for path in ["/api/v1/admin/overview", "/api/v1/admin/users", "/api/v1/admin/nodes", "/api/v1/admin/audit"] {
        let r = api.get(path, &carol);
        assert_eq!((r.status, r.error()), (403, "forbidden".into()), "{path}");
    }
    let r = api.post("/api/v1/admin/users/carol/credit", &carol, json!({"amount": "100", "reason": "me"}));
    assert_eq!(r.status, 403);

    let credit = api.post("/api/v1/admin/users/carol/credit", &admin, json!({"amount": "12.50", "reason": "welcome"}));
    assert_eq!(credit.status, 200, "{}", credit.body);
    assert_eq!(credit.json()["balance_micros"], 12_500_000);
    assert_eq!(
        api.post("/api/v1/admin/users/carol/credit", &admin, json!({"amount": "1.5.0", "reason": "x"})).status,
        400
    );
    assert_eq!(api.post("/api/v1/admin/users/carol/credit", &admin, json!({"amount": "1", "reason": ""})).status, 400);
    assert_eq!(
        api.post("/api/v1/admin/users/nobody/credit", &admin, json!({"amount": "1", "reason": "x"})).status,
        404
    );
    assert_eq!(api.get("/api/v1/me", &carol).json()["balance_micros"], 12_500_000);

    // A cross-origin POST is refused and changes nothing.
    let csrf = api.call(
        "POST",
        "/api/v1/admin/users/carol/credit",
        Some(&admin),
        Some(&json!({"amount": "1000", "reason": "csrf"})),
        &["-H", "Origin: https://evil.example"],
    );
    assert_eq!((csrf.status, csrf.error()), (403, "forbidden".into()), "{}", csrf.body);
    assert_eq!(api.get("/api/v1/me", &carol).json()["balance_micros"], 12_500_000);
    let same = format!("Origin: https://{}", s.web);
    let ok = api.call(
        "POST",
        "/api/v1/admin/users/carol/credit",
        Some(&admin),
        Some(&json!({"amount": "1", "reason": "same origin"})),
        &["-H", &same],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Withdrawals: carol asks, the admin rejects one and approves another.
    let w = api.post("/api/v1/me/withdrawals", &carol, json!({"amount": "6", "destination": "IBAN 1"})).json();
    assert_eq!(w["status"], "pending");
    assert_eq!(api.post("/api/v1/me/withdrawals", &carol, json!({"amount": "1"})).status, 400, "below the minimum");
    let id = w["id"].as_u64().unwrap();
    let rej = api.post(&format!("/api/v1/admin/withdrawals/{id}/reject"), &admin, json!({"reason": "wrong IBAN"}));
    assert_eq!(rej.json()["status"], "rejected");
    let w2 = api.post("/api/v1/me/withdrawals", &carol, json!({"amount": "7.50", "destination": "IBAN 2"})).json();
    let id2 = w2["id"].as_u64().unwrap();
    let app = api.call("POST", &format!("/api/v1/admin/withdrawals/{id2}/approve"), Some(&admin), None, &[]);
    assert_eq!(app.json()["status"], "approved", "{}", app.body);
    assert_eq!(api.get("/api/v1/me", &carol).json()["balance_micros"], 6_000_000);
    let list = api.get("/api/v1/admin/withdrawals", &admin).json();
    assert_eq!(list.as_array().unwrap().len(), 2);

    // Disable: carol's tokens stop working.
    assert_eq!(api.post("/api/v1/admin/users/admin/disable", &admin, json!({"reason": "oops"})).status, 400);
    assert_eq!(api.post("/api/v1/admin/users/carol/disable", &admin, json!({"reason": "abuse"})).status, 200);
    assert_eq!(api.get("/api/v1/me", &carol).error(), "disabled");
    assert_eq!(api.call("POST", "/api/v1/admin/users/carol/enable", Some(&admin), None, &[]).status, 200);
    assert_eq!(api.get("/api/v1/me", &carol).status, 200, "enabled again");
    let listed = api.get("/api/v1/admin/users", &admin).json();
    assert!(listed.as_array().unwrap().iter().all(|u| u["proxy_password"] == ""), "no proxy passwords in lists");
    // Settings: admins change the price; others may not.
    assert_eq!(
        api.call("PUT", "/api/v1/admin/settings", Some(&carol), Some(&json!({"price_per_gb": "1"})), &[]).status,
        403
    );
    let set = api.call(
        "PUT",
        "/api/v1/admin/settings",
        Some(&admin),
        Some(&json!({"price_per_gb": "4.25", "platform_fee_percent": 25})),
        &[],
    );
    assert_eq!(set.json()["price_per_gb"], "4.25", "{}", set.body);
    assert_eq!(
        api.call("PUT", "/api/v1/admin/settings", Some(&admin), Some(&json!({"platform_fee_percent": 300})), &[])
            .status,
        422
    );
    let shown = api.get("/api/v1/admin/settings", &admin).json();
    assert_eq!(
        (shown["billing"]["platform_fee_percent"].as_u64(), shown["billing"]["updated_by"].as_str()),
        (Some(25), Some("admin"))
    );
    assert_eq!(api.get("/api/v1/me", &carol).json()["price_per_gb"], "4.25");

    let audit = api.get("/api/v1/admin/audit", &admin).json();
    let entries = audit.as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "user.credit" && e["actor"] == "admin" && e["reason"] == "welcome"));
    assert!(entries.iter().any(|e| e["action"] == "withdrawal.reject" && e["reason"] == "wrong IBAN"));
    let users = api.get("/api/v1/admin/users?q=car", &admin).json();
    assert_eq!(users.as_array().unwrap().len(), 1);
    let o = api.get("/api/v1/admin/overview", &admin).json();
    assert_eq!(o["users"], 2);
    let verify = s.cli(&["ledger", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[test]
fn api_keys_have_scopes_and_the_portal_endpoints_work() {
    let s = Server::start();
    let api = Api::new(&s);
    let admin = token(&api.login("admin", &s.admin_password));
    let read = api.post("/api/v1/me/api-keys", &admin, json!({"name": "grafana", "scope": "read"})).json();
    let read_key = read["key"].as_str().unwrap().to_owned();
    assert!(read_key.starts_with("tfx_"));
    // A key matches only exactly as issued, not upper-cased.
    let upper = format!("tfx_{}", read_key["tfx_".len()..].to_uppercase());
    assert_eq!(api.get("/api/v1/admin/overview", &upper).status, 401);
    assert_eq!(api.get("/api/v1/admin/overview", &read_key).status, 200);
    let r = api.post("/api/v1/admin/users", &read_key, json!({"name": "zed"}));
    assert_eq!((r.status, r.error()), (403, "forbidden".into()));
    assert_eq!(api.post("/api/v1/me/api-keys", &read_key, json!({"name": "x", "scope": "admin"})).status, 403);
    assert_eq!(api.post("/api/v1/me/api-keys", &admin, json!({"name": "x", "scope": "root"})).status, 422);
    let billing = api.post("/api/v1/me/api-keys", &admin, json!({"name": "books", "scope": "billing"})).json();
    let billing_key = billing["key"].as_str().unwrap();
    s.add_user("dora", None);
    assert_eq!(
        api.post("/api/v1/admin/users/dora/credit", billing_key, json!({"amount": "2", "reason": "k"})).status,
        200
    );
    assert_eq!(api.post("/api/v1/admin/users", billing_key, json!({"name": "zed"})).status, 403);
    let audit = api.get("/api/v1/admin/audit", &admin).json();
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["action"] == "user.credit" && e["actor"] == "api-key:books (admin)"),
        "a key's action names the key and its user: {audit}"
    );
    let keys = api.get("/api/v1/me/api-keys", &admin).json();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(keys[0].get("key").is_none(), "keys are shown once");
    let id = read["id"].as_str().unwrap();
    assert_eq!(api.call("DELETE", &format!("/api/v1/me/api-keys/{id}"), Some(&admin), None, &[]).status, 204);
    assert_eq!(api.get("/api/v1/me", &read_key).status, 401);

    // Sub-users through the portal API.
    let sub =
        api.post("/api/v1/me/sub-users", &admin, json!({"name": "admin_ci", "byte_cap": 1000000, "valid_days": 7}));
    assert_eq!(sub.status, 200, "{}", sub.body);
    assert_eq!(sub.json()["parent"], "admin");
    assert_eq!(api.post("/api/v1/me/sub-users", &admin, json!({"name": "admin_ci"})).status, 409);
    assert_eq!(api.post("/api/v1/me/sub-users", &admin, json!({"name": "X"})).status, 400);
    let off = api.call("POST", "/api/v1/me/sub-users/admin_ci/disable", Some(&admin), None, &[]);
    assert_eq!(off.json()["disabled"], true, "{}", off.body);
    assert_eq!(api.call("POST", "/api/v1/me/sub-users/admin_ci/explode", Some(&admin), None, &[]).status, 404);
    assert_eq!(api.get("/api/v1/me/sub-users", &admin).json().as_array().unwrap().len(), 1);
    assert_eq!(api.call("DELETE", "/api/v1/me/sub-users/admin_ci", Some(&admin), None, &[]).status, 204);
    assert_eq!(api.call("DELETE", "/api/v1/me/sub-users/admin_ci", Some(&admin), None, &[]).status, 404);

    // Pairing with a QR code, usage series, ledger lines and their CSV.
    let pair = api.call("POST", "/api/v1/me/pair", Some(&admin), None, &[]).json();
    assert!(pair["link"].as_str().unwrap().starts_with("traffix://pair?"));
    assert!(pair["qr_svg"].as_str().unwrap().contains("<svg"));
    let usage = api.get("/api/v1/me/usage?by=day&last=7", &admin).json();
    assert_eq!(usage["series"].as_array().unwrap().len(), 7);
    assert_eq!(api.get("/api/v1/me/usage?by=week", &admin).status, 400);
    api.post("/api/v1/admin/users/admin/credit", &admin, json!({"amount": "3", "reason": "=HYPERLINK(\"x\")"}));
    let ledger = api.get("/api/v1/me/ledger", &admin).json();
    assert_eq!(ledger[0]["amount_micros"], 3_000_000);
    let csv = api.get("/api/v1/me/ledger.csv", &admin);
    assert!(csv.headers.to_ascii_lowercase().contains("content-type: text/csv"), "{}", csv.headers);
    assert!(csv.body.starts_with("seq,time,kind,debit,credit,amount,amount_micros,reference\n"), "{}", csv.body);
    assert!(csv.body.contains("\"'=HYPERLINK(\"\"x\"\")\""), "formulas are neutralised: {}", csv.body);
}

#[test]
fn openapi_document_and_dashboard_files_are_served() {
    let s = Server::start();
    let api = Api::new(&s);
    let doc = api.call("GET", "/api/v1/openapi.json", None, None, &[]);
    assert_eq!(doc.status, 200);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc.json(), committed, "the served document is the committed one");
    assert!(committed["paths"]["/api/v1/auth/login"]["post"].is_object());

    let index = api.call("GET", "/", None, None, &[]);
    assert_eq!(index.status, 200);
    assert!(index.body.contains("<html"), "{}", &index.body[..index.body.len().min(200)]);
    let h = index.headers.to_ascii_lowercase();
    assert!(h.contains("content-security-policy: default-src 'self'"), "{h}");
    assert!(h.contains("x-frame-options: deny"));
    for bad in ["/assets/../Cargo.toml", "/assets/%2e%2e/Cargo.toml", "/assets/nope.js"] {
        assert_eq!(api.call("GET", bad, None, None, &["--path-as-is"]).status, 404, "{bad}");
    }
}

/// A user keeps at most `max_logins_per_user` live logins: one more signs out the least
/// recently used (its refresh token is refused), the others go on.
#[test]
fn logins_beyond_the_per_user_cap_sign_out_the_oldest() {
    let s = Server::start_with(ServerOpts {
        env: vec![("TRAFFIX_LIMITS__MAX_LOGINS_PER_USER".into(), "2".into())],
        ..ServerOpts::default()
    });
    let api = Api::new(&s);
    let refresh = |t: &Value| t["refresh_token"].as_str().unwrap().to_owned();
    let first = refresh(&api.login("admin", &s.admin_password));
    let second = refresh(&api.login("admin", &s.admin_password));
    let third = refresh(&api.login("admin", &s.admin_password));
    let try_refresh = |r: &str| api.call("POST", "/api/v1/auth/refresh", None, Some(&json!({"refresh_token": r})), &[]);
    // The newest login always lives; of the two before it (started in the same second here,
    // so equally old) exactly one was signed out.
    assert_eq!(try_refresh(&third).status, 200);
    let mut earlier = [try_refresh(&first).status, try_refresh(&second).status];
    earlier.sort_unstable();
    assert_eq!(earlier, [200, 401]);
}

/// Adjustments and reversals through the API: admins and billing keys only, bad amounts and
/// a second reversal refused with their codes, `ledger verify` passing after each.
#[test]
fn corrections_through_the_api_have_the_billing_scope_and_clear_errors() {
    let s = Server::start();
    let api = Api::new(&s);
    let admin = token(&api.login("admin", &s.admin_password));
    let verify = || {
        let out = s.cli(&["ledger", "verify"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    };
    s.cli_json(&["user", "add", "erin", "--password", "erin-password"]);
    let erin = token(&api.login("erin", "erin-password"));
    let credit =
        api.post("/api/v1/admin/users/erin/credit", &admin, json!({"amount": "10", "reason": "top-up"})).json();
    let credit_seq = credit["transfer"].as_u64().unwrap();

    let adj = api.post("/api/v1/admin/users/erin/adjust", &admin, json!({"amount": "-3.50", "reason": "typo"}));
    assert_eq!(adj.status, 200, "{}", adj.body);
    let adj = adj.json();
    assert_eq!((adj["amount"].as_str(), adj["balance_micros"].as_i64()), (Some("-3.50"), Some(6_500_000)));
    verify();
    for bad in ["1e3", "0", "1,5", "-1.0000001", "- 1", "lots"] {
        let r = api.post("/api/v1/admin/users/erin/adjust", &admin, json!({"amount": bad, "reason": "x"}));
        assert_eq!((r.status, r.error()), (400, "invalid".into()), "{bad}: {}", r.body);
    }
    let r = api.post("/api/v1/admin/users/erin/adjust", &admin, json!({"amount": "-6.51", "reason": "x"}));
    assert!(r.status == 400 && r.json()["reason"].as_str().unwrap().contains("only 6.50 is available"), "{}", r.body);
    let r = api.post("/api/v1/admin/users/erin/adjust", &admin, json!({"amount": "1", "reason": ""}));
    assert_eq!(r.status, 400);
    let r = api.post("/api/v1/admin/users/erin/adjust", &admin, json!({"amount": 1, "reason": "x"}));
    assert_eq!(r.status, 422, "amounts are strings: {}", r.body);
    assert_eq!(
        api.post("/api/v1/admin/users/nobody/adjust", &admin, json!({"amount": "1", "reason": "x"})).status,
        404
    );
    let r = api.post("/api/v1/admin/users/erin/adjust", &erin, json!({"amount": "100", "reason": "me"}));
    assert_eq!((r.status, r.error()), (403, "forbidden".into()));
    let r = api.post(&format!("/api/v1/admin/ledger/{credit_seq}/reverse"), &erin, json!({"reason": "me"}));
    assert_eq!((r.status, r.error()), (403, "forbidden".into()));
    let billing = api.post("/api/v1/me/api-keys", &admin, json!({"name": "books", "scope": "billing"})).json();
    let billing = billing["key"].as_str().unwrap();
    let read = api.post("/api/v1/me/api-keys", &admin, json!({"name": "ro", "scope": "read"})).json();
    let read = read["key"].as_str().unwrap();
    assert_eq!(api.post("/api/v1/admin/users/erin/adjust", read, json!({"amount": "1", "reason": "k"})).status, 403);
    let by_key = api.post("/api/v1/admin/users/erin/adjust", billing, json!({"amount": "+1.25", "reason": "k"}));
    assert_eq!(by_key.json()["balance_micros"], 7_750_000, "{}", by_key.body);
    verify();

    // Reverse the credit by its id: the opposite transfer, once.
    let id = api
        .get("/api/v1/admin/ledger?user=erin", &admin)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["seq"] == credit_seq)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api.post(&format!("/api/v1/admin/ledger/{credit_seq}/reverse"), &admin, json!({"reason": "x"}));
    assert!(r.status == 400 && r.json()["reason"].as_str().unwrap().contains("only 7.75 is available"), "{}", r.body);
    api.post("/api/v1/admin/users/erin/credit", &admin, json!({"amount": "5", "reason": "more"}));
    let rev = api.post(&format!("/api/v1/admin/ledger/{id}/reverse"), &admin, json!({"reason": "wrong user"}));
    assert_eq!(rev.status, 200, "{}", rev.body);
    let rev = rev.json();
    assert_eq!(
        (rev["amount"].as_str(), rev["reverses"].as_u64(), rev["kind"].as_str()),
        (Some("-10.00"), Some(credit_seq), Some("reversal"))
    );
    assert_eq!(rev["balance_micros"], 2_750_000);
    verify();
    let again = api.post(&format!("/api/v1/admin/ledger/{credit_seq}/reverse"), billing, json!({"reason": "again"}));
    assert_eq!((again.status, again.error()), (409, "conflict".into()), "{}", again.body);
    let rr = rev["transfer"].as_u64().unwrap();
    let r = api.post(&format!("/api/v1/admin/ledger/{rr}/reverse"), &admin, json!({"reason": "x"}));
    assert_eq!((r.status, r.error()), (400, "invalid".into()), "{}", r.body);
    assert_eq!(api.post("/api/v1/admin/ledger/424242/reverse", &admin, json!({"reason": "x"})).status, 404);
    assert_eq!(api.post("/api/v1/admin/ledger/nope/reverse", &admin, json!({"reason": "x"})).status, 404);
    assert_eq!(api.post(&format!("/api/v1/admin/ledger/{rr}/reverse"), &admin, json!({})).status, 422);
    let audit = api.get("/api/v1/admin/audit", &admin).json();
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["action"] == "user.adjust" && e["actor"] == "api-key:books (admin)")
    );
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "ledger.reverse" && e["reason"] == "wrong user"));
    assert_eq!(api.get("/api/v1/me", &erin).json()["balance_micros"], 2_750_000);
    verify();
}

/// Runs `traffix ARGS --data-dir D` with `input` on standard input.
fn cli_with_stdin(s: &Server, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(s.data_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// An admin resets a password (CLI or API) and every login of the user ends; a user changes
/// its own with the current one (wrong: 403, throttled like a login) and keeps this login only.
#[test]
fn passwords_are_reset_by_admins_and_changed_by_their_users() {
    let s = Server::start();
    let api = Api::new(&s);
    let refresh = |t: &Value| {
        let r = t["refresh_token"].as_str().unwrap();
        api.call("POST", "/api/v1/auth/refresh", None, Some(&json!({"refresh_token": r})), &[])
    };
    let login_status = |user: &str, pw: &str| {
        api.call("POST", "/api/v1/auth/login", None, Some(&json!({"username": user, "password": pw})), &[]).status
    };
    s.cli_json(&["user", "add", "dave", "--password", "dave-password-1"]);
    let (l1, l2) = (api.login("dave", "dave-password-1"), api.login("dave", "dave-password-1"));

    // The CLI: --stdin or --generate, exactly one; the length rules of `user add`.
    let out = cli_with_stdin(&s, &["user", "password", "dave", "--stdin"], "short\n");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));
    let long = format!("{}\n", "x".repeat(1025));
    let out = cli_with_stdin(&s, &["user", "password", "dave", "--stdin"], &long);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at most 1024 bytes"));
    assert!(!s.cli(&["user", "password", "dave"]).status.success(), "--generate or --stdin");
    assert!(!s.cli(&["user", "password", "dave", "--generate", "--stdin"]).status.success());
    assert!(!cli_with_stdin(&s, &["user", "password", "dave", "--stdin"], "").status.success());
    assert_eq!(refresh(&l1).status, 200, "nothing changed yet");
    let out = cli_with_stdin(&s, &["user", "password", "dave", "--stdin", "--json"], "dave-password-2\r\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["revoked_logins"].as_u64(), v.get("password")), (Some(2), None), "{v}");
    assert_eq!(refresh(&l2).status, 401, "every login ended");
    assert_eq!(login_status("dave", "dave-password-1"), 401);
    assert_eq!(login_status("dave", "dave-password-2"), 200);
    let v = s.cli_json(&["user", "password", "dave", "--generate"]);
    let generated = v["password"].as_str().unwrap().to_owned();
    assert!(generated.len() >= 16, "{v}");
    assert_eq!(login_status("dave", &generated), 200);
    let text = String::from_utf8_lossy(&s.cli(&["user", "password", "dave", "--generate"]).stdout).to_string();
    assert!(text.contains("shown once"), "{text}");

    // The API: admins only, either a password or generate.
    let admin = token(&api.login("admin", &s.admin_password));
    let dave = token(&api.login("dave", text.split_whitespace().find(|w| w.len() >= 16).unwrap()));
    let path = "/api/v1/admin/users/dave/password";
    for body in [json!({}), json!({"generate": false}), json!({"password": "new-password-3", "generate": true})] {
        let r = api.post(path, &admin, body.clone());
        assert_eq!((r.status, r.error()), (400, "invalid".into()), "{body}: {}", r.body);
    }
    assert_eq!(api.post(path, &admin, json!({"password": "short"})).status, 400);
    assert_eq!(api.post("/api/v1/admin/users/nobody/password", &admin, json!({"generate": true})).status, 404);
    let r = api.post("/api/v1/admin/users/admin/password", &dave, json!({"password": "i-am-admin-now"}));
    assert_eq!((r.status, r.error()), (403, "forbidden".into()));
    let billing = api.post("/api/v1/me/api-keys", &admin, json!({"name": "books", "scope": "billing"})).json();
    let billing = billing["key"].as_str().unwrap().to_owned();
    assert_eq!(api.post(path, &billing, json!({"generate": true})).status, 403, "not a billing matter");
    let r = api.post(path, &admin, json!({"password": "dave-password-4"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("password").is_none());
    let g = api.post(path, &admin, json!({"generate": true})).json();
    assert_eq!(login_status("dave", g["password"].as_str().unwrap()), 200);
    api.post(path, &admin, json!({"password": "dave-password-5"}));

    // Self-service: the current password is checked; the other logins end, this one stays.
    let mine = api.login("dave", "dave-password-5");
    let other = api.login("dave", "dave-password-5");
    let me = token(&mine);
    let change =
        |t: &str, current: &str, new: &str| api.post("/api/v1/me/password", t, json!({"current": current, "new": new}));
    let r = change(&me, "wrong password", "dave-password-6");
    assert_eq!((r.status, r.error()), (403, "invalid_credentials".into()), "{}", r.body);
    let r = change(&me, "dave-password-5", "short");
    assert_eq!((r.status, r.error()), (400, "invalid".into()), "{}", r.body);
    let key = api.post("/api/v1/me/api-keys", &me, json!({"name": "k", "scope": "admin"})).json();
    let r = change(key["key"].as_str().unwrap(), "dave-password-5", "dave-password-6");
    assert_eq!((r.status, r.error()), (403, "forbidden".into()), "API keys cannot: {}", r.body);
    let missing = api.post("/api/v1/me/password", &me, json!({"new": "dave-password-6"}));
    assert_eq!(missing.status, 422);
    let r = change(&me, "dave-password-5", "dave-password-6");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["revoked_logins"], 1, "{}", r.body);
    assert_eq!(refresh(&other).status, 401, "the other login ended");
    let kept = refresh(&mine);
    assert_eq!(kept.status, 200, "this login stays: {}", kept.body);
    assert_eq!(api.get("/api/v1/me", &token(&kept.json())).status, 200);
    assert_eq!(login_status("dave", "dave-password-5"), 401);
    assert_eq!(login_status("dave", "dave-password-6"), 200);

    // Wrong current passwords count like failed logins: back-off after five.
    let statuses: Vec<u16> = (0..6).map(|_| change(&me, "not it", "dave-password-7").status).collect();
    assert_eq!(statuses, [403, 403, 403, 403, 403, 429], "{statuses:?}");
    assert_eq!(login_status("dave", "dave-password-6"), 429, "the same throttle as logins");

    let audit = s.cli(&["audit", "list", "--json"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    let entries: Value = serde_json::from_str(&text).unwrap();
    let resets = entries.as_array().unwrap().iter().filter(|e| e["action"] == "user.password").count();
    assert_eq!(resets, 7, "{text}");
    for secret in ["dave-password-2", "dave-password-4", "dave-password-6", generated.as_str()] {
        assert!(!text.contains(secret), "no secret in the audit log");
    }
    assert!(s.cli(&["ledger", "verify"]).status.success());
}

/// The admin's user page acts for another user: rotates its proxy password, makes it a pairing
/// link with a QR code and lists its sub-users (without their passwords); others cannot.
#[test]
fn admins_rotate_pair_and_list_sub_users_for_a_user() {
    let s = Server::start();
    let api = Api::new(&s);
    let admin = token(&api.login("admin", &s.admin_password));
    s.cli_json(&["user", "add", "gus", "--password", "gus-password"]);
    let gus = token(&api.login("gus", "gus-password"));
    let old = api.get("/api/v1/me", &gus).json()["proxy"]["password"].as_str().unwrap().to_owned();

    let r = api.post("/api/v1/admin/users/gus/proxy-password", &admin, json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.json()["proxy_password"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(api.get("/api/v1/me", &gus).json()["proxy"]["password"], new.as_str(), "the user sees the new one");

    let r = api.post("/api/v1/admin/users/gus/pair", &admin, json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let pair = r.json();
    assert_eq!(pair["user"], "gus");
    assert!(pair["link"].as_str().unwrap().starts_with("traffix://pair?"), "{pair}");
    assert!(pair["qr_svg"].as_str().unwrap().contains("<svg"), "{pair}");

    api.post("/api/v1/me/sub-users", &gus, json!({"name": "gus_bot", "max_streams": 3}));
    let subs = api.get("/api/v1/admin/users/gus/sub-users", &admin);
    assert_eq!(subs.status, 200, "{}", subs.body);
    let subs = subs.json();
    assert_eq!(subs.as_array().map(Vec::len), Some(1), "{subs}");
    assert_eq!((subs[0]["name"].as_str(), subs[0]["max_streams"].as_u64()), (Some("gus_bot"), Some(3)));
    assert_eq!(subs[0]["proxy_password"], "", "lists never carry proxy passwords");

    for (method, path) in [
        ("POST", "/api/v1/admin/users/nobody/proxy-password"),
        ("POST", "/api/v1/admin/users/nobody/pair"),
        ("GET", "/api/v1/admin/users/nobody/sub-users"),
    ] {
        let body = (method == "POST").then(|| json!({}));
        let r = api.call(method, path, Some(&admin), body.as_ref(), &[]);
        assert_eq!((r.status, r.error()), (404, "not_found".into()), "{path}: {}", r.body);
    }
    let billing = api.post("/api/v1/me/api-keys", &admin, json!({"name": "books", "scope": "billing"})).json();
    let billing = billing["key"].as_str().unwrap().to_owned();
    for t in [gus.as_str(), billing.as_str()] {
        for path in ["/api/v1/admin/users/gus/proxy-password", "/api/v1/admin/users/gus/pair"] {
            let r = api.post(path, t, json!({}));
            assert_eq!((r.status, r.error()), (403, "forbidden".into()), "{path}: {}", r.body);
        }
    }
    assert_eq!(api.get("/api/v1/admin/users/gus/sub-users", &gus).status, 403);
    // A disabled user gets no pairing link, and the refusal is not the caller's own `disabled`.
    api.post("/api/v1/admin/users/gus/disable", &admin, json!({"reason": "test"}));
    let r = api.post("/api/v1/admin/users/gus/pair", &admin, json!({}));
    assert_eq!((r.status, r.error()), (400, "invalid".into()), "{}", r.body);
    assert!(r.json()["reason"].as_str().unwrap().contains("disabled"), "{}", r.body);
    api.post("/api/v1/admin/users/gus/enable", &admin, json!({}));
    let gus = token(&api.login("gus", "gus-password"));
    assert_eq!(api.get("/api/v1/me", &gus).json()["proxy"]["password"], new.as_str(), "nothing else changed");

    let audit = api.get("/api/v1/admin/audit", &admin).json();
    let by_admin = |action: &str| {
        audit.as_array().unwrap().iter().any(|e| e["action"] == action && e["actor"] == "admin" && e["target"] == "gus")
    };
    assert!(by_admin("user.proxy_password") && by_admin("pair.create"), "{audit}");
}

#[test]
fn admin_ledger_and_sessions_page_by_cursor_and_date_and_export_csv() {
    let s = Server::start();
    let api = Api::new(&s);
    let admin = token(&api.login("admin", &s.admin_password));
    let pass = s.add_user("paula", None);
    for (i, reason) in ["one", "two", "three", "=HYPERLINK(\"http://evil\")", "five"].iter().enumerate() {
        let body = json!({"amount": format!("{}.00", i + 1), "reason": reason, "id": format!("pay-{i}")});
        assert_eq!(api.post("/api/v1/admin/users/paula/credit", &admin, body).status, 200);
    }
    let seqs = |r: &Reply| -> Vec<u64> {
        assert_eq!(r.status, 200, "{}", r.body);
        r.json().as_array().unwrap().iter().map(|t| t["seq"].as_u64().unwrap()).collect()
    };
    let all = seqs(&api.get("/api/v1/admin/ledger?user=paula", &admin));
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");
    // Cursor paging: each page continues before the smallest seq of the one before.
    let first = seqs(&api.get("/api/v1/admin/ledger?user=paula&limit=2", &admin));
    assert_eq!(first, all[..2]);
    let second = seqs(&api.get(&format!("/api/v1/admin/ledger?user=paula&limit=2&before={}", first[1]), &admin));
    assert_eq!(second, all[2..4]);
    let third = seqs(&api.get(&format!("/api/v1/admin/ledger?user=paula&limit=2&before={}", second[1]), &admin));
    assert_eq!(third, all[4..]);
    // Date ranges: `since` and `until` both inclusive; dates, RFC 3339, Unix seconds and ages.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let day = |d: i64| traffix::admin::rfc3339((now as i64 + d * 86_400) as u64)[..10].to_owned();
    let count = |q: &str| seqs(&api.get(&format!("/api/v1/admin/ledger?user=paula&{q}"), &admin)).len();
    assert_eq!(count(&format!("since={}&until={}", day(0), day(1))), 5);
    assert_eq!(count(&format!("since={}", day(1))), 0);
    assert_eq!(count(&format!("until={}", day(0))), 0);
    assert_eq!(count(&format!("since={}", now - 3600)), 5);
    assert_eq!(count(&format!("until={}", traffix::admin::rfc3339(now + 3600))), 5);
    assert_eq!(count("since=1h"), 5);
    assert_eq!(count("since=1h&until=2h"), 0, "until two hours ago");
    let newest =
        api.get("/api/v1/admin/ledger?user=paula&limit=1", &admin).json()[0]["time"].as_str().unwrap().to_owned();
    assert!(count(&format!("since={newest}&until={newest}")) >= 1, "a transfer made at `until` is inside");
    // An unknown user is not an empty list.
    for path in ["ledger", "ledger.csv", "sessions", "sessions.csv"] {
        let r = api.get(&format!("/api/v1/admin/{path}?user=nobody"), &admin);
        assert_eq!((r.status, r.error()), (404, "not_found".into()), "{path}: {}", r.body);
    }
    for bad in ["since=yesterday", "until=2026-02-30", "since=2026-11-25T23:03:13"] {
        let r = api.get(&format!("/api/v1/admin/ledger?{bad}"), &admin);
        assert_eq!((r.status, r.error()), (400, "invalid".into()), "{bad}: {}", r.body);
        assert!(r.json()["reason"].as_str().unwrap().contains("RFC 3339"), "{}", r.body);
    }
    // CSV: what the filter selects, oldest first, formulas neutralised.
    let csv = api.get(&format!("/api/v1/admin/ledger.csv?user=paula&since={}", day(0)), &admin);
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(csv.headers.to_ascii_lowercase().contains("content-type: text/csv"), "{}", csv.headers);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "seq,time,kind,debit,credit,amount,amount_micros,reference");
    assert_eq!(lines.len(), 6, "{}", csv.body);
    assert!(lines[1].starts_with(&format!("{},", all[4])) && lines[5].starts_with(&format!("{},", all[0])));
    assert!(lines[5].contains(",5.00,5000000,"), "{}", lines[5]);
    assert!(!csv.body.contains(",\"=") && !csv.body.contains("\n="), "no cell starts with '=': {}", csv.body);
    assert!(csv.body.contains(",\"'=HYPERLINK(\"\"http://evil\"\")\""), "{}", csv.body);
    let empty = api.get(&format!("/api/v1/admin/ledger.csv?user=paula&since={}", day(1)), &admin);
    assert_eq!(empty.body.lines().count(), 1, "only the header: {}", empty.body);
    assert_eq!(api.get("/api/v1/admin/ledger.csv?until=nope", &admin).status, 400);

    // Sessions: three through a node, then the same paging, range and CSV.
    let _node = s.start_node("paula", "127.0.0.2");
    for i in 0..3 {
        let out =
            curl(&["-sS", "--proxy", &s.socks_url("paula", &pass), &format!("http://{}/hello?{i}", origin().addr)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let ids = |r: &Reply| -> Vec<u64> {
        assert_eq!(r.status, 200, "{}", r.body);
        r.json().as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect()
    };
    let all = wait_for("three sessions ended", || {
        let r = api.get("/api/v1/admin/sessions?user=paula", &admin);
        let ended = r.json().as_array().is_some_and(|l| l.len() == 3 && l.iter().all(|s| !s["end"].is_null()));
        ended.then(|| ids(&r))
    });
    let page1 = ids(&api.get("/api/v1/admin/sessions?user=paula&limit=2", &admin));
    assert_eq!(page1.len(), 2);
    let min = *page1.iter().min().unwrap();
    let page2 = ids(&api.get(&format!("/api/v1/admin/sessions?user=paula&limit=2&before={min}"), &admin));
    assert_eq!(page2, vec![*all.iter().min().unwrap()]);
    let scount = |q: &str| ids(&api.get(&format!("/api/v1/admin/sessions?user=paula&{q}"), &admin)).len();
    assert_eq!(scount(&format!("since={}&until={}", day(0), day(1))), 3);
    assert_eq!(scount(&format!("since={}", day(1))), 0, "all ended before tomorrow");
    assert_eq!(scount(&format!("until={}", day(-1))), 0, "none had started by yesterday");
    assert_eq!(scount("since=1h"), 3);
    // The node-IP filter of abuse reports goes with the cursor and the window.
    let by_ip = ids(&api.get(&format!("/api/v1/admin/sessions?node_ip=127.0.0.2&since=1h&before={min}"), &admin));
    assert_eq!(by_ip, vec![*all.iter().min().unwrap()]);
    assert_eq!(scount("node_ip=127.0.0.9"), 0);
    assert_eq!(api.get("/api/v1/admin/sessions?since=soon", &admin).status, 400);
    assert_eq!(api.get("/api/v1/admin/sessions.csv?node_ip=nope", &admin).status, 400);
    let csv = api.get(&format!("/api/v1/admin/sessions.csv?user=paula&node_ip=127.0.0.2&until={}", day(1)), &admin);
    assert_eq!(csv.status, 200, "{}", csv.body);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(lines[0].starts_with("id,start,end,client,"), "{}", lines[0]);
    assert_eq!(lines.len(), 4, "{}", csv.body);
    assert!(lines[1..].iter().all(|l| l.contains(",\"paula\",")), "{}", csv.body);
    // Not for non-admins.
    s.cli(&["user", "add", "quinn", "--password", "quinn-password"]);
    let quinn = token(&api.login("quinn", "quinn-password"));
    for path in ["/api/v1/admin/ledger.csv", "/api/v1/admin/sessions.csv"] {
        assert_eq!(api.get(path, &quinn).status, 403, "{path}");
    }
}

#[test]
fn overview_says_whether_geoip_is_configured() {
    let s = Server::start();
    let api = Api::new(&s);
    let admin = token(&api.login("admin", &s.admin_password));
    assert_eq!(api.get("/api/v1/admin/overview", &admin).json()["geoip_country"], false);
    let settings = api.get("/api/v1/admin/settings", &admin).json();
    assert_eq!(settings["server"]["geoip_country"], false);
    // The dashboard's GeoIP section: no database, and what brings one.
    assert!(settings["geoip"]["country"].is_null(), "{settings}");
    assert_eq!(settings["geoip"]["update_command"], "traffix geoip update");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("country.mmdb");
    make_geoip(&db, &[("127.0.0.2", "DE")]);
    let s = Server::start_with(ServerOpts { allow_private_targets: true, geoip: Some(db), ..ServerOpts::default() });
    let api = Api::new(&s);
    let admin = token(&api.login("admin", &s.admin_password));
    assert_eq!(api.get("/api/v1/admin/overview", &admin).json()["geoip_country"], true);
    let geoip = api.get("/api/v1/admin/settings", &admin).json()["geoip"].clone();
    assert_eq!(geoip["country"]["database_type"], "GeoIP2-Country", "{geoip}");
    assert_eq!(geoip["country"]["managed"], false, "the operator's own file: {geoip}");
    assert_eq!(geoip["country"]["stale"], false, "{geoip}");
}
