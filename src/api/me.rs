//! `/me/…`: what every signed-in user sees and does with its own account — balance, usage,
//! proxy credentials, devices and earnings, pairing, sessions, ledger lines, withdrawals, API
//! keys.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiJson, ApiState, ErrorBody, Principal};
use crate::admin;
use crate::admin::views::*;
use crate::store::KeyScope;

/// Proxy credentials with copy-ready command lines.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProxyInfo {
    pub username: String,
    pub password: String,
    /// `HOST:PORT` of the SOCKS5 and HTTP proxies.
    pub socks5: String,
    pub http: String,
    pub curl_socks5: String,
    pub curl_http: String,
}

/// The signed-in user: its account, the price it pays, and how to reach the proxies.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    #[serde(flatten)]
    pub user: UserView,
    pub currency: String,
    pub price_per_gb: String,
    /// The smallest withdrawal.
    pub min_payout: String,
    pub min_payout_micros: u64,
    pub proxy: ProxyInfo,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct UsageQuery {
    /// `hour` or `day` (default `hour`).
    pub by: Option<String>,
    /// Buckets up to now (default 24 hours or 30 days).
    pub last: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LimitQuery {
    /// At most this many rows, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct WithdrawalRequest {
    /// Currency units, e.g. `"12.50"`.
    pub amount: String,
    /// Where to pay (free text for the operator).
    pub destination: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PairResponse {
    #[serde(flatten)]
    pub pair: PairView,
    /// An SVG document of the link's QR code.
    pub qr_svg: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewApiKey {
    pub name: String,
    /// `read`, `billing` or `admin`.
    #[schema(value_type = String)]
    pub scope: KeyScope,
}

fn limit(q: &LimitQuery) -> usize {
    q.limit.unwrap_or(100).clamp(1, 1000)
}

/// The caller's account, balance and proxy credentials.
#[utoipa::path(get, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<MeView>, ApiError> {
    let user = state.run(admin::UserShow { name: p.user.name.clone() }, &p.actor()).await?;
    let (name, pass) = (&p.user.name, &p.user.proxy_password);
    let info = &state.info;
    let proxy = ProxyInfo {
        username: name.clone(),
        password: pass.clone(),
        socks5: info.socks5.clone(),
        http: info.http.clone(),
        curl_socks5: format!("curl --socks5-hostname '{name}:{pass}@{}' https://example.com/", info.socks5),
        curl_http: format!("curl -x 'http://{name}:{pass}@{}' https://example.com/", info.http),
    };
    let money = state.admin.money();
    Ok(Json(MeView {
        user,
        currency: info.currency.clone(),
        price_per_gb: money.tariff.price_per_gb.to_string(),
        min_payout: money.min_payout.to_string(),
        min_payout_micros: money.min_payout.0,
        proxy,
    }))
}

/// Rotate the proxy password (connections with the old one are refused from now on).
#[utoipa::path(post, path = "/api/v1/me/proxy-password", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = ProxyPasswordView), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn rotate_proxy_password(
    State(state): State<Arc<ApiState>>,
    p: Principal,
) -> Result<Json<ProxyPasswordView>, ApiError> {
    p.may_write()?;
    Ok(Json(state.run(admin::UserProxyPassword { name: p.user.name.clone() }, &p.actor()).await?))
}

/// A change of the caller's own login password.
#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current: String,
    /// 8 characters to 1024 bytes.
    pub new: String,
}

/// Change the caller's login password (signed-in users only, not API keys). The current
/// password is checked like a login (and counted by the same throttle); the caller's other
/// logins are signed out, this one stays.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "me", security(("bearer" = [])), request_body = PasswordChange,
    responses((status = 200, body = PasswordView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<Arc<ApiState>>,
    ext: Extensions,
    p: Principal,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<Json<PasswordView>, ApiError> {
    if p.scope.is_some() {
        return Err(ApiError::forbidden("API keys cannot change passwords; sign in"));
    }
    crate::auth::check_login_password(&req.new).map_err(ApiError::invalid)?;
    let wrong = || ApiError::new(StatusCode::FORBIDDEN, "invalid_credentials", "the current password is wrong");
    if req.current.len() > crate::auth::MAX_LOGIN_PASSWORD_BYTES {
        return Err(wrong());
    }
    let name = p.user.name.clone();
    let ip = super::peer_ip(&ext);
    // As at login: the slot is taken before the (slow) hash.
    let attempt = state
        .throttle
        .reserve_login(ip, &name)
        .map_err(|wait| ApiError::throttled(wait, format!("too many failed attempts; try again in {wait} s")))?;
    let phc = p.user.password_hash.clone();
    let current = req.current;
    let ok = {
        let _permit = state.hashing.acquire().await.map_err(|e| ApiError::internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || phc.is_some_and(|h| crate::auth::verify_password(&current, &h)))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
    };
    if !ok {
        drop(attempt);
        if crate::telemetry::LOGIN_FAILURES.admit_now("failed logins") {
            tracing::info!(user = %name, %ip, "password change with a wrong current password");
        }
        return Err(wrong());
    }
    attempt.succeeded();
    let cmd = admin::UserPassword { name, password: Some(req.new), keep_login: p.family.clone() };
    let _permit = state.hashing.acquire().await.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// What the caller used and paid, per hour or day.
#[utoipa::path(get, path = "/api/v1/me/usage", tag = "me", security(("bearer" = [])), params(UsageQuery),
    responses((status = 200, body = UsageView), (status = 400, body = ErrorBody)))]
pub async fn usage(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<UsageQuery>,
) -> Result<Json<UsageView>, ApiError> {
    let req =
        admin::Usage { subject: format!("client:{}", p.user.name), by: q.by.unwrap_or("hour".into()), last: q.last };
    Ok(Json(state.run(req, &p.actor()).await?))
}

/// What the caller's nodes carried and earned, per hour or day.
#[utoipa::path(get, path = "/api/v1/me/earnings", tag = "me", security(("bearer" = [])), params(UsageQuery),
    responses((status = 200, body = UsageView), (status = 400, body = ErrorBody)))]
pub async fn earnings(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<UsageQuery>,
) -> Result<Json<UsageView>, ApiError> {
    let req =
        admin::Usage { subject: format!("owner:{}", p.user.name), by: q.by.unwrap_or("day".into()), last: q.last };
    Ok(Json(state.run(req, &p.actor()).await?))
}

/// The caller's devices with their live status and today's earnings.
#[utoipa::path(get, path = "/api/v1/me/devices", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = [DeviceView])))]
pub async fn devices(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let all = state.run(admin::DeviceList::default(), &p.actor()).await?;
    // Other accounts' use of an attestation key is the operator's business, not the owner's.
    let mine = all
        .into_iter()
        .filter(|d| d.owner == p.user.name)
        .map(|mut d| {
            d.attestation_key_accounts = None;
            d.shared_attestation_key = None;
            d.emulator_hints = None;
            d
        })
        .collect();
    Ok(Json(mine))
}

/// A one-time pairing link (10 minutes) for a new device, with its QR code.
#[utoipa::path(post, path = "/api/v1/me/pair", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = PairResponse), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn pair(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<PairResponse>, ApiError> {
    p.may_write()?;
    Ok(Json(pair_link(&state, &p.user.name, &p.actor()).await?))
}

/// A pairing link for `user` with its QR code, counted by the per-account pairing throttle
/// (shared by the user's own portal and the admin's user page).
pub(super) async fn pair_link(state: &ApiState, user: &str, actor: &str) -> Result<PairResponse, ApiError> {
    state
        .throttle
        .pair(user)
        .map_err(|wait| ApiError::throttled(wait, "too many pairing links; try again in a minute"))?;
    let pair = state.run(admin::Pair { name: user.to_owned() }, actor).await?;
    let qr = qrcode::QrCode::new(pair.link.as_bytes()).map_err(|e| ApiError::internal(e.to_string()))?;
    let qr_svg = qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(256, 256).quiet_zone(true).build();
    Ok(PairResponse { pair, qr_svg })
}

/// The caller's streams, newest first.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "me", security(("bearer" = [])), params(LimitQuery),
    responses((status = 200, body = [SessionView])))]
pub async fn sessions(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let window = admin::Window { limit: Some(limit(&q)), ..admin::Window::default() };
    let req = admin::SessionList { user: Some(p.user.name.clone()), node_ip: None, window };
    Ok(Json(state.run(req, &p.actor()).await?))
}

async fn my_transfers(state: &ApiState, p: &Principal, n: usize) -> Result<Vec<TransferView>, ApiError> {
    let window = admin::Window { limit: Some(n), ..admin::Window::default() };
    state.run(admin::LedgerList { user: Some(p.user.name.clone()), window }, &p.actor()).await
}

/// The caller's ledger lines, newest first.
#[utoipa::path(get, path = "/api/v1/me/ledger", tag = "me", security(("bearer" = [])), params(LimitQuery),
    responses((status = 200, body = [TransferView])))]
pub async fn ledger(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Vec<TransferView>>, ApiError> {
    Ok(Json(my_transfers(&state, &p, limit(&q)).await?))
}

/// One CSV field, quoted. A leading `=`, `+`, `-`, `@`, tab or carriage return gets a `'` so
/// that spreadsheets show the text instead of running it as a formula.
pub(super) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Transfers as CSV lines under a header, in the order given.
pub(super) fn transfers_csv(list: &[TransferView]) -> String {
    let mut out = String::from("seq,time,kind,debit,credit,amount,amount_micros,reference\n");
    for t in list {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            t.seq,
            t.time,
            csv_field(&t.kind),
            csv_field(&t.debit),
            csv_field(&t.credit),
            t.amount,
            t.amount_micros,
            csv_field(&t.reference)
        ));
    }
    out
}

/// The caller's whole ledger as CSV (oldest first).
#[utoipa::path(get, path = "/api/v1/me/ledger.csv", tag = "me", security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv", description = "seq,time,kind,debit,credit,amount,amount_micros,reference")))]
pub async fn ledger_csv(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Response, ApiError> {
    let mut list = my_transfers(&state, &p, usize::MAX).await?;
    list.reverse();
    let mut resp = transfers_csv(&list).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"traffix-ledger.csv\""));
    Ok(resp)
}

/// The caller's withdrawals, newest first.
#[utoipa::path(get, path = "/api/v1/me/withdrawals", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = [WithdrawalView])))]
pub async fn withdrawals(
    State(state): State<Arc<ApiState>>,
    p: Principal,
) -> Result<Json<Vec<WithdrawalView>>, ApiError> {
    let req = admin::WithdrawalList { user: Some(p.user.name.clone()), ..Default::default() };
    Ok(Json(state.run(req, &p.actor()).await?))
}

/// Ask to be paid out; the amount is held until an admin decides.
#[utoipa::path(post, path = "/api/v1/me/withdrawals", tag = "me", security(("bearer" = [])), request_body = WithdrawalRequest,
    responses((status = 200, body = WithdrawalView), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn request_withdrawal(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<WithdrawalRequest>,
) -> Result<Json<WithdrawalView>, ApiError> {
    p.may_write()?;
    super::parse_money(&req.amount)?;
    if req.destination.as_ref().is_some_and(|d| d.len() > 200) {
        return Err(ApiError::invalid("the destination is at most 200 characters"));
    }
    let cmd = admin::WithdrawalRequest { name: p.user.name.clone(), amount: req.amount, destination: req.destination };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// The caller's API keys (without the keys themselves).
#[utoipa::path(get, path = "/api/v1/me/api-keys", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = [ApiKeyView])))]
pub async fn api_keys(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    Ok(Json(state.run(admin::ApiKeyList { user: p.user.name.clone() }, &p.actor()).await?))
}

/// Create an API key (signed-in users only, not other keys); the key is shown once.
#[utoipa::path(post, path = "/api/v1/me/api-keys", tag = "me", security(("bearer" = [])), request_body = NewApiKey,
    responses((status = 200, body = ApiKeyView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_api_key(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<NewApiKey>,
) -> Result<Json<ApiKeyView>, ApiError> {
    if p.scope.is_some() {
        return Err(ApiError::forbidden("API keys cannot create API keys; sign in"));
    }
    let cmd = admin::ApiKeyCreate { user: p.user.name.clone(), name: req.name, scope: req.scope };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// Delete one of the caller's API keys.
#[utoipa::path(delete, path = "/api/v1/me/api-keys/{id}", tag = "me", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_api_key(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.may_write()?;
    state.run(admin::ApiKeyDelete { user: p.user.name.clone(), id }, &p.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewSubUser {
    /// 3-32 of a-z, 0-9 and `_`; unique across users and sub-users.
    pub name: String,
    /// Bytes (both directions) it may move in all.
    pub byte_cap: Option<u64>,
    /// Streams it may have open at once (your account's cap holds too).
    pub max_streams: Option<u32>,
    /// Days until it expires.
    pub valid_days: Option<u32>,
}

/// The caller's sub-users: extra proxy credentials billed to the caller.
#[utoipa::path(get, path = "/api/v1/me/sub-users", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = [SubUserView])))]
pub async fn sub_users(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<Vec<SubUserView>>, ApiError> {
    Ok(Json(
        state.run(admin::SubUserList { parent: Some(p.user.name.clone()), ..Default::default() }, &p.actor()).await?,
    ))
}

/// Create a sub-user with its own proxy name and password, byte cap, stream cap and expiry.
#[utoipa::path(post, path = "/api/v1/me/sub-users", tag = "me", security(("bearer" = [])), request_body = NewSubUser,
    responses((status = 200, body = SubUserView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_sub_user(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<NewSubUser>,
) -> Result<Json<SubUserView>, ApiError> {
    p.may_write()?;
    let cmd = admin::SubUserAdd {
        parent: p.user.name.clone(),
        name: req.name,
        byte_cap: req.byte_cap,
        max_streams: req.max_streams,
        valid_days: req.valid_days,
    };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// Change one of the caller's sub-users: `disable`, `enable` or `proxy-password` (rotate).
#[utoipa::path(post, path = "/api/v1/me/sub-users/{name}/{action}", tag = "me", security(("bearer" = [])),
    params(("name" = String, Path), ("action" = String, Path, description = "disable, enable or proxy-password")),
    responses((status = 200, body = SubUserView), (status = 404, body = ErrorBody)))]
pub async fn change_sub_user(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<SubUserView>, ApiError> {
    p.may_write()?;
    let parent = Some(p.user.name.clone());
    let sub = match action.as_str() {
        "disable" => state.run(admin::SubUserDisable { name, parent, disabled: true }, &p.actor()).await?,
        "enable" => state.run(admin::SubUserDisable { name, parent, disabled: false }, &p.actor()).await?,
        "proxy-password" => state.run(admin::SubUserPassword { name, parent }, &p.actor()).await?,
        _ => return Err(ApiError::not_found("the action is disable, enable or proxy-password")),
    };
    Ok(Json(sub))
}

/// Delete one of the caller's sub-users (its history stays).
#[utoipa::path(delete, path = "/api/v1/me/sub-users/{name}", tag = "me", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_sub_user(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.may_write()?;
    state.run(admin::SubUserDelete { name, parent: Some(p.user.name.clone()) }, &p.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
