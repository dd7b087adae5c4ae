//! The REST API under `/api/v1` (docs/api.md; OpenAPI at `/api/v1/openapi.json`) and the
//! dashboard it serves. Handlers are thin: they authenticate, check the caller may act, and run
//! the same admin commands as the CLI (`crate::admin`), so every change is audited once, in
//! one place, whoever makes it.
//!
//! Errors are `{"error": "snake_case_code", "reason": "text"}` with the matching status; JSON
//! bodies are capped at 64 KiB; state-changing requests from another origin are refused.

mod admin;
mod auth;
pub mod dashboard;
mod me;
pub mod openapi;
mod payments;
mod telegram;
mod throttle;

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::ToSchema;

use crate::admin::{AdminCtx, AdminError, Command};
use crate::auth::jwt::Jwt;
use crate::money::Micros;
use crate::store::{KeyScope, UserRecord};
use crate::telemetry::Metrics;
use crate::tunnel::registry::Registry;

pub use payments::payouts_to_csv;
pub use throttle::Throttle;

/// Largest JSON body the API reads.
pub const MAX_BODY: usize = 64 * 1024;
pub use crate::admin::API_KEY_PREFIX;

/// What the API shows of the server's configuration.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerInfo {
    pub currency: String,
    pub billing_enabled: bool,
    pub hold_chunk_micros: u64,
    /// Where clients reach the proxies (`HOST:PORT`).
    pub socks5: String,
    pub http: String,
    /// A GeoIP country database is loaded (`geoip.country_db`): nodes have countries and
    /// `-country-` targeting works.
    pub geoip_country: bool,
    #[schema(value_type = Object)]
    pub limits: Value,
}

/// Everything the handlers share.
pub struct ApiState {
    pub admin: Arc<AdminCtx>,
    /// The payment providers' webhooks and top-up invoices.
    pub payments: Arc<crate::payments::Payments>,
    pub jwt: Jwt,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub info: ServerInfo,
    pub throttle: Throttle,
    /// At most two argon2 hashes at once (each takes 19 MiB).
    pub hashing: tokio::sync::Semaphore,
    pub shutdown: crate::shutdown::Shutdown,
    /// Live logins per user (`limits.max_logins_per_user`).
    pub max_logins_per_user: usize,
}

impl ApiState {
    /// Runs an admin command on the blocking pool as `actor`.
    async fn run<C: Command>(&self, cmd: C, actor: &str) -> Result<C::Output, ApiError> {
        let admin = self.admin.clone();
        let actor = actor.to_owned();
        tokio::task::spawn_blocking(move || admin.execute_as(cmd, &actor))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(ApiError::from)
    }
}

/// An API error: status, stable code, reason.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub reason: String,
    pub retry_after: Option<u64>,
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// `bad_request`, `invalid`, `invalid_credentials`, `invalid_token`, `forbidden`,
    /// `disabled`, `not_found`, `conflict`, `too_large`, `unprocessable`, `throttled`,
    /// `internal`.
    pub error: String,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError { status, code, reason: reason.into(), retry_after: None }
    }
    pub fn bad_request(r: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r)
    }
    pub fn invalid(r: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", r)
    }
    pub fn unauthorized(code: &'static str, r: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, r)
    }
    pub fn forbidden(r: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", r)
    }
    pub fn not_found(r: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", r)
    }
    pub fn internal(r: impl Into<String>) -> ApiError {
        tracing::error!(reason = %r.into(), "API internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }
    pub fn throttled(retry_after: u64, r: impl Into<String>) -> ApiError {
        ApiError { retry_after: Some(retry_after), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "throttled", r) }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let (status, code) = match e.error.as_str() {
            "not_found" => (StatusCode::NOT_FOUND, "not_found"),
            "already_exists" | "conflict" => (StatusCode::CONFLICT, "conflict"),
            "invalid" | "ambiguous" | "not_linked" | "signup_off" | "invite_required" => {
                (StatusCode::BAD_REQUEST, "invalid")
            }
            "invalid_token" => (StatusCode::UNAUTHORIZED, "invalid_token"),
            "disabled" => (StatusCode::FORBIDDEN, "disabled"),
            "locked" | "pairing_off" => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => return ApiError::internal(e.reason),
        };
        ApiError::new(status, code, e.reason)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(AdminError::from(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(ErrorBody { error: self.code.into(), reason: self.reason })).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// A JSON body whose rejections are API errors: malformed JSON or a wrong content type is 400,
/// well-formed JSON of the wrong shape 422, a body over [`MAX_BODY`] 413.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", e.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::bad_request(e.body_text())),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::bad_request("send the body as JSON with Content-Type: application/json"))
            }
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("bodies are at most {MAX_BODY} bytes"),
            )),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// Who is calling: a signed-in user (JWT) or an API key of a user.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRecord,
    /// `None` for a JWT (everything the user may do), the key's scope otherwise.
    pub scope: Option<KeyScope>,
    pub key_id: Option<String>,
    /// The API key's name, when the caller used one.
    pub key_name: Option<String>,
    /// The login (refresh-token family) a JWT belongs to.
    pub family: Option<String>,
}

impl Principal {
    /// The audit actor, as screens show it: the login name, or `api-key:KEY (USER)` for a call
    /// made with an API key.
    pub fn actor(&self) -> String {
        match &self.key_name {
            // A key's name is free text: anything but a plain word is quoted, so a name cannot
            // pass for another actor.
            Some(k) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) => {
                format!("api-key:{k} ({})", self.user.name)
            }
            Some(k) => format!("api-key:{k:?} ({})", self.user.name),
            None => self.user.name.clone(),
        }
    }

    /// Allows a change (not a read) of the caller's own things.
    pub fn may_write(&self) -> Result<(), ApiError> {
        match self.scope {
            Some(KeyScope::Read) => Err(ApiError::forbidden("this API key is read-only")),
            _ => Ok(()),
        }
    }

    /// Allows an admin read.
    pub fn admin_read(&self) -> Result<(), ApiError> {
        if !self.user.admin {
            return Err(ApiError::forbidden("admins only"));
        }
        Ok(())
    }

    /// Allows an admin change; `billing` says whether a billing-scoped key suffices.
    pub fn admin_write(&self, billing: bool) -> Result<(), ApiError> {
        self.admin_read()?;
        match self.scope {
            None | Some(KeyScope::Admin) => Ok(()),
            Some(KeyScope::Billing) if billing => Ok(()),
            Some(_) => Err(ApiError::forbidden("this API key's scope does not allow this")),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let v = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "send Authorization: Bearer <token>"))?;
    let v = v.to_str().map_err(|_| ApiError::unauthorized("invalid_token", "malformed Authorization header"))?;
    v.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 4096)
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "send Authorization: Bearer <token>"))
}

/// An API key as issued: the prefix, then 48 lower-case hex digits.
fn is_canonical_api_key(token: &str) -> bool {
    token
        .strip_prefix(API_KEY_PREFIX)
        .is_some_and(|hex| hex.len() == 48 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

impl FromRequestParts<Arc<ApiState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)?;
        let store = &state.admin.store;
        let (name, scope, key_id, key_name, family) = if token.starts_with(API_KEY_PREFIX) {
            // Exact match only. Keys made before exact hashing were stored case-folded: they
            // are looked up that way too, but only when presented exactly as issued (the
            // canonical lower-case form), so no other spelling of a key passes.
            let legacy = || is_canonical_api_key(token).then(|| crate::auth::pairing_code_hash(token));
            let key = match store.api_key(&crate::auth::secret_hash(token))? {
                Some(k) => Some(k),
                None => legacy().map(|h| store.api_key(&h)).transpose()?.flatten(),
            }
            .ok_or_else(|| ApiError::unauthorized("invalid_token", "unknown API key"))?;
            if parts.method != Method::GET && key.scope == KeyScope::Read {
                return Err(ApiError::forbidden("this API key is read-only"));
            }
            (key.user, Some(key.scope), Some(key.id), Some(key.name), None)
        } else {
            let claims = state.jwt.verify(token).map_err(|e| ApiError::unauthorized("invalid_token", e.to_string()))?;
            (claims.sub, None, None, None, Some(claims.fam))
        };
        let user = store.get_user(&name)?.ok_or_else(|| ApiError::unauthorized("invalid_token", "the user is gone"))?;
        if user.disabled {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "disabled", "this account is disabled"));
        }
        Ok(Principal { user, scope, key_id, key_name, family })
    }
}

/// The client address (the TLS listener attaches it).
fn peer_ip(ext: &axum::http::Extensions) -> IpAddr {
    ext.get::<crate::web::PeerAddr>().map(|p| p.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Refuses state-changing requests from another origin (CSRF): browsers send `Origin` on them,
/// and only the dashboard's own origin may change anything.
async fn same_origin(req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let h = req.headers();
        let cross_site = h.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site");
        let origin_ok = match (h.get(header::ORIGIN), h.get(header::HOST)) {
            (None, _) => true,
            (Some(o), Some(host)) => {
                let o = o.to_str().unwrap_or_default();
                let host = host.to_str().unwrap_or_default();
                o == format!("https://{host}") || o == format!("http://{host}")
            }
            (Some(_), None) => false,
        };
        if cross_site || !origin_ok {
            return ApiError::forbidden("cross-origin requests may not change anything").into_response();
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

async fn fallback() -> ApiError {
    ApiError::not_found("no such API endpoint")
}

/// The `/api/v1` routes.
pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/telegram", post(auth::telegram_login))
        .route("/me/telegram", delete(telegram::unlink_me))
        .route("/me/telegram/link-code", post(telegram::link_code))
        .route("/me/notifications", get(telegram::notifications))
        .route("/me/notifications/read", post(telegram::mark_read))
        .route("/me/notify-prefs", get(telegram::prefs).put(telegram::set_prefs))
        .route("/admin/users/{name}/telegram/unlink", post(telegram::unlink_user))
        .route("/admin/telegram/invite", post(telegram::invite))
        .route("/me", get(me::me))
        .route("/me/proxy-password", post(me::rotate_proxy_password))
        .route("/me/password", post(me::change_password))
        .route("/me/usage", get(me::usage))
        .route("/me/earnings", get(me::earnings))
        .route("/me/devices", get(me::devices))
        .route("/me/pair", post(me::pair))
        .route("/me/sessions", get(me::sessions))
        .route("/me/ledger", get(me::ledger))
        .route("/me/ledger.csv", get(me::ledger_csv))
        .route("/me/withdrawals", get(me::withdrawals).post(me::request_withdrawal))
        .route("/me/api-keys", get(me::api_keys).post(me::create_api_key))
        .route("/me/api-keys/{id}", delete(me::delete_api_key))
        .route("/me/sub-users", get(me::sub_users).post(me::create_sub_user))
        .route("/me/sub-users/{name}", delete(me::delete_sub_user))
        .route("/me/sub-users/{name}/{action}", post(me::change_sub_user))
        .route("/admin/overview", get(admin::overview))
        .route("/admin/usage", get(admin::usage))
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{name}/credit", post(admin::credit))
        .route("/admin/users/{name}/adjust", post(admin::adjust))
        .route("/admin/users/{name}/password", post(admin::set_password))
        .route("/admin/users/{name}/disable", post(admin::disable))
        .route("/admin/users/{name}/enable", post(admin::enable))
        .route("/admin/users/{name}/proxy-password", post(admin::rotate_proxy_password))
        .route("/admin/users/{name}/pair", post(admin::pair))
        .route("/admin/users/{name}/sub-users", get(admin::sub_users))
        .route("/admin/nodes", get(admin::nodes))
        .route("/admin/nodes/{id}/ban", post(admin::ban))
        .route("/admin/nodes/{id}/unban", post(admin::unban))
        .route("/admin/nodes/{id}/remove", post(admin::remove))
        .route("/admin/nodes/{id}/quality", post(admin::quality))
        .route("/admin/sessions", get(admin::sessions))
        .route("/admin/sessions.csv", get(admin::sessions_csv))
        .route("/admin/ledger", get(admin::ledger))
        .route("/admin/ledger.csv", get(admin::ledger_csv))
        .route("/admin/ledger/{id}/reverse", post(admin::reverse))
        .route("/admin/withdrawals", get(admin::withdrawals))
        .route("/admin/withdrawals/{id}/approve", post(admin::approve))
        .route("/admin/withdrawals/{id}/reject", post(admin::reject))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/settings", get(admin::settings).put(admin::update_settings))
        .route("/admin/tls/renew", post(admin::tls_renew))
        .route("/admin/events", get(admin::events))
        .route("/payments/generic/webhook", post(payments::generic_webhook))
        .route("/payments/cryptopay/webhook", post(payments::cryptopay_webhook))
        .route("/me/topup", get(payments::topup_options))
        .route("/me/topup/cryptopay", post(payments::topup_cryptopay))
        .route("/me/deposits", get(payments::my_deposits))
        .route("/me/deposits.csv", get(payments::my_deposits_csv))
        .route("/me/payout-profile", get(payments::my_payout_profile).put(payments::set_my_payout_profile))
        .route("/admin/deposits", get(payments::deposits))
        .route("/admin/deposits.csv", get(payments::deposits_csv_export))
        .route("/admin/deposits/{id}/return", post(payments::deposit_return))
        .route("/admin/invoices", get(payments::invoices))
        .route("/admin/payouts.csv", get(payments::payouts_csv))
        .route("/admin/payouts/mark-paid", post(payments::mark_paid))
        .route("/admin/payments/settings", get(payments::payment_settings).put(payments::update_payment_settings))
        .route("/openapi.json", get(openapi::serve))
        .fallback(fallback)
        .layer(axum::middleware::from_fn(same_origin))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

/// Micro-units parsed from a decimal string, as an API error when malformed.
fn parse_money(s: &str) -> Result<Micros, ApiError> {
    Micros::parse(s).map_err(|e| ApiError::invalid(format!("amount {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_as_issued_are_canonical() {
        let key = format!("tfx_{}", "0123456789abcdef".repeat(3));
        assert!(is_canonical_api_key(&key));
        for bad in [
            key.to_uppercase(),
            format!("tfx_{}", "0123456789ABCDEF".repeat(3)),
            format!(" {key}"),
            format!("{key} "),
            key[..key.len() - 1].to_owned(),
            format!("{key}0"),
            format!("tfx_{}", "0123456789abcdeg".repeat(3)),
        ] {
            assert!(!is_canonical_api_key(&bad), "{bad:?}");
        }
    }
}
