//! `/admin/…`: the operator's endpoints — overview, users, nodes, sessions, ledger,
//! withdrawals, audit log, settings — and the live event stream the dashboard listens to.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::me::{LimitQuery, PairResponse, UsageQuery, csv_field, transfers_csv};
use super::{ApiError, ApiJson, ApiState, ErrorBody, Principal, ServerInfo};
use crate::admin;
use crate::admin::views::*;
use crate::store::{WithdrawalStatus, now_secs};
use crate::telemetry::{DirLabel, Direction};

/// The operator's dashboard at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    pub nodes_online: usize,
    pub nodes_total: usize,
    pub streams_active: i64,
    pub users: usize,
    /// Bytes relayed since the server started, client → target and back (rates come from two
    /// samples).
    pub bytes_up_total: u64,
    pub bytes_down_total: u64,
    /// What the platform kept today (UTC).
    pub revenue_today_micros: u64,
    pub traffic_today_bytes: u64,
    pub pending_withdrawals: usize,
    pub pending_withdrawals_micros: u64,
    pub currency: String,
    /// A GeoIP country database is loaded: without one, nodes have no country (the nodes map is
    /// empty) and `-country-` targeting is refused.
    pub geoip_country: bool,
    /// Server time, RFC 3339, and in milliseconds since the epoch (for rates between samples).
    pub time: String,
    pub time_ms: u64,
    /// Online nodes by quality state (docs/watchdog.md): `healthy`, `degraded`, `flagged`.
    pub nodes_healthy: usize,
    pub nodes_degraded: usize,
    pub nodes_flagged: usize,
    /// Requests that found no node since the server started, by country asked for (`any`:
    /// none) and reason, most first: where to recruit nodes.
    pub unmet_demand: Vec<crate::watchdog::UnmetRow>,
}

/// An admin's quality state for a device.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QualityOverride {
    /// `healthy`, `degraded`, `flagged`, or `auto` to give the device back to the watchdog.
    pub state: String,
    /// Why (1-500 characters): the audit log and the owner's portal show it.
    pub note: String,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct UserQuery {
    /// Part of a user name.
    pub q: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LedgerQuery {
    /// Only this user's rows (an unknown user is 404 `not_found`).
    pub user: Option<String>,
    /// At most this many rows, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Only rows from this time on (inclusive): RFC 3339 (`2026-12-01T08:00:00Z`), a date
    /// (`2026-12-01`, midnight UTC), Unix seconds or an age (`24h`, `7d`).
    pub since: Option<String>,
    /// Only rows up to this time (inclusive), in the same forms as `since`.
    pub until: Option<String>,
    /// The next page: only rows older than this one (a transfer's `seq`: the smallest of the page
    /// before).
    pub before: Option<u64>,
}

/// The rows a ledger CSV holds: all that match, oldest first, at most [`CSV_MAX_ROWS`] (the
/// newest of them).
#[derive(Debug, Deserialize, IntoParams)]
pub struct LedgerExportQuery {
    /// Only this user's rows (an unknown user is 404 `not_found`).
    pub user: Option<String>,
    /// Only rows from this time on (inclusive), in the forms of `/admin/ledger`.
    pub since: Option<String>,
    /// Only rows up to this time (inclusive), in the same forms as `since`.
    pub until: Option<String>,
}

/// The most rows one CSV export holds; a narrower date range gets the older ones.
pub const CSV_MAX_ROWS: usize = 100_000;

/// A `since`/`until` query value read by the one parser of times ([`crate::units::parse_instant`]);
/// empty is no bound.
fn time_param(name: &str, v: Option<&str>, now: u64) -> Result<Option<u64>, ApiError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => crate::units::parse_instant(v, now).map(Some).map_err(|e| ApiError::invalid(format!("{name}: {e}"))),
    }
}

fn window(
    since: Option<&str>,
    until: Option<&str>,
    before: Option<u64>,
    limit: usize,
) -> Result<admin::Window, ApiError> {
    let now = now_secs();
    Ok(admin::Window {
        since: time_param("since", since, now)?,
        until: time_param("until", until, now)?,
        before,
        limit: Some(limit),
    })
}

pub(super) fn csv_response(body: String, filename: &str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct StatusQuery {
    /// `pending`, `approved` or `rejected`.
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    pub name: String,
    /// Generated (and returned once) when absent.
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Credit {
    /// Currency units, e.g. `"12.50"`.
    pub amount: String,
    pub reason: String,
    /// Idempotency key (e.g. a payment's id): replays credit once.
    pub id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Adjustment {
    /// Signed currency units, e.g. `"-13.50"` or `"+2"`.
    pub amount: String,
    pub reason: String,
}

/// A new login password: give one, or ask for one to be generated (returned once).
#[derive(Default, Deserialize, ToSchema)]
pub struct NewPassword {
    /// 8 characters to 1024 bytes.
    pub password: Option<String>,
    #[serde(default)]
    pub generate: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Reason {
    pub reason: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct OptionalReason {
    pub reason: Option<String>,
}

fn limit(n: Option<usize>) -> usize {
    n.unwrap_or(100).clamp(1, 1000)
}

fn reason(r: &str) -> Result<String, ApiError> {
    let r = r.trim();
    if r.is_empty() || r.len() > 500 {
        return Err(ApiError::invalid("give a reason (1-500 characters)"));
    }
    Ok(r.to_owned())
}

/// Computes the overview (blocking: reads the store).
fn compute_overview(state: &ApiState) -> Result<Overview, ApiError> {
    let store = &state.admin.store;
    let today = store.usage_today("all", now_secs())?;
    let pending = store.list_withdrawals(None, Some(WithdrawalStatus::Pending))?;
    let bytes = |d| state.metrics.relayed_bytes.get_or_create(&DirLabel { direction: d }).get();
    let watchdog = state.admin.live.as_ref().and_then(|l| l.watchdog.clone());
    let mut by_state = [0usize; 4];
    if let Some(w) = &watchdog {
        for n in state.registry.all() {
            if let Some(v) = w.view(&n.device_id) {
                by_state[v.state as usize] += 1;
            }
        }
    }
    Ok(Overview {
        nodes_healthy: by_state[0],
        nodes_degraded: by_state[1],
        nodes_flagged: by_state[2],
        unmet_demand: watchdog.map(|w| w.unmet_demand()).unwrap_or_default(),
        nodes_online: state.registry.len(),
        nodes_total: store.count_devices()?,
        streams_active: state.metrics.streams_active.get(),
        users: store.list_users()?.len(),
        bytes_up_total: bytes(Direction::Up),
        bytes_down_total: bytes(Direction::Down),
        revenue_today_micros: today.fee,
        traffic_today_bytes: today.up + today.down,
        pending_withdrawals: pending.len(),
        pending_withdrawals_micros: pending.iter().map(|w| w.amount.0).sum(),
        currency: state.info.currency.clone(),
        geoip_country: geoip_country(state),
        time: rfc3339(now_secs()),
        time_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    })
}

/// Whether a country database is loaded now (it can arrive while the server runs).
fn geoip_country(state: &ApiState) -> bool {
    state.admin.live.as_ref().map_or(state.info.geoip_country, |l| l.geoip.has_country())
}

async fn overview_of(state: &Arc<ApiState>) -> Result<Overview, ApiError> {
    let s = state.clone();
    tokio::task::spawn_blocking(move || compute_overview(&s)).await.map_err(|e| ApiError::internal(e.to_string()))?
}

/// Nodes online, streams, traffic and revenue.
#[utoipa::path(get, path = "/api/v1/admin/overview", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Overview), (status = 403, body = ErrorBody)))]
pub async fn overview(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<Overview>, ApiError> {
    p.admin_read()?;
    Ok(Json(overview_of(&state).await?))
}

/// Platform-wide usage and revenue (fees) per hour or day.
#[utoipa::path(get, path = "/api/v1/admin/usage", tag = "admin", security(("bearer" = [])), params(UsageQuery),
    responses((status = 200, body = UsageView), (status = 403, body = ErrorBody)))]
pub async fn usage(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<UsageQuery>,
) -> Result<Json<UsageView>, ApiError> {
    p.admin_read()?;
    let req = admin::Usage { subject: "all".into(), by: q.by.unwrap_or("hour".into()), last: q.last };
    Ok(Json(state.run(req, &p.actor()).await?))
}

/// Users, optionally those whose name contains `q`.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])), params(UserQuery),
    responses((status = 200, body = [UserView]), (status = 403, body = ErrorBody)))]
pub async fn users(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<UserQuery>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    p.admin_read()?;
    let all = state.run(admin::UserList::default(), &p.actor()).await?;
    let needle = q.q.unwrap_or_default().trim().to_ascii_lowercase();
    // The list never carries proxy passwords (each user sees its own in its portal).
    Ok(Json(
        all.into_iter()
            .filter(|u| u.name.contains(&needle))
            .map(|u| UserView { proxy_password: String::new(), ..u })
            .collect(),
    ))
}

/// Create a user.
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])), request_body = NewUser,
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<NewUser>,
) -> Result<Json<UserView>, ApiError> {
    p.admin_write(false)?;
    let cmd = admin::UserAdd { name: req.name, password: req.password, admin: req.admin };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// Credit a user's balance (with a reason; audited). An `id` seen before with the same user and
/// amount credits nothing more; with another user or amount it is 409.
#[utoipa::path(post, path = "/api/v1/admin/users/{name}/credit", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = Credit,
    responses((status = 200, body = CreditView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn credit(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<Credit>,
) -> Result<Json<CreditView>, ApiError> {
    p.admin_write(true)?;
    super::parse_money(&req.amount)?;
    let cmd = admin::UserCredit { name, amount: req.amount, reason: Some(reason(&req.reason)?), id: req.id };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// Correct a user's balance by a signed amount (against `platform:adjustments`; audited). Money
/// held for live streams or owed for unposted usage cannot be taken.
#[utoipa::path(post, path = "/api/v1/admin/users/{name}/adjust", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = Adjustment,
    responses((status = 200, body = CorrectionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn adjust(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<Adjustment>,
) -> Result<Json<CorrectionView>, ApiError> {
    p.admin_write(true)?;
    let cmd = admin::UserAdjust { name, amount: req.amount, reason: reason(&req.reason)? };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// Set a user's login password, or generate one (returned once); every login of the user is
/// signed out (audited, without the password).
#[utoipa::path(post, path = "/api/v1/admin/users/{name}/password", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = NewPassword,
    responses((status = 200, body = PasswordView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn set_password(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<NewPassword>,
) -> Result<Json<PasswordView>, ApiError> {
    p.admin_write(false)?;
    let password = match (req.password, req.generate) {
        (Some(pw), false) => Some(pw),
        (None, true) => None,
        _ => return Err(ApiError::invalid("give either a password or \"generate\": true")),
    };
    let _permit = state.hashing.acquire().await.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(state.run(admin::UserPassword { name, password, keep_login: None }, &p.actor()).await?))
}

/// Rotate a user's proxy password (connections with the old one are refused from now on); the
/// new one is in the answer.
#[utoipa::path(post, path = "/api/v1/admin/users/{name}/proxy-password", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = ProxyPasswordView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_proxy_password(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<ProxyPasswordView>, ApiError> {
    p.admin_write(false)?;
    Ok(Json(state.run(admin::UserProxyPassword { name }, &p.actor()).await?))
}

/// A one-time pairing link (10 minutes) for a new device of the user, with its QR code; counted
/// by the same per-account limit as the user's own links. A disabled user gets none (400).
#[utoipa::path(post, path = "/api/v1/admin/users/{name}/pair", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = PairResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn pair(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<PairResponse>, ApiError> {
    p.admin_write(false)?;
    // 403 `disabled` means "your own account is disabled" to clients; here it is the user's.
    let pair = super::me::pair_link(&state, &name, &p.actor()).await.map_err(|e| match e.code {
        "disabled" => ApiError::invalid(format!("{}: enable the user first", e.reason)),
        _ => e,
    })?;
    Ok(Json(pair))
}

/// The user's sub-users, oldest first, without their proxy passwords.
#[utoipa::path(get, path = "/api/v1/admin/users/{name}/sub-users", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = [SubUserView]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sub_users(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<Vec<SubUserView>>, ApiError> {
    p.admin_read()?;
    let list = state.run(admin::SubUserList { parent: Some(name), ..Default::default() }, &p.actor()).await?;
    Ok(Json(list.into_iter().map(|s| SubUserView { proxy_password: String::new(), ..s }).collect()))
}

/// Disable a user: proxy access and logins stop.
#[utoipa::path(post, path = "/api/v1/admin/users/{name}/disable", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = Reason,
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
pub async fn disable(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<Reason>,
) -> Result<Json<UserView>, ApiError> {
    p.admin_write(false)?;
    if name == p.user.name {
        return Err(ApiError::invalid("you cannot disable yourself"));
    }
    let cmd = admin::UserDisable { name, reason: Some(reason(&req.reason)?) };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// Re-enable a disabled user.
#[utoipa::path(post, path = "/api/v1/admin/users/{name}/enable", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
pub async fn enable(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    p.admin_write(false)?;
    Ok(Json(state.run(admin::UserEnable { name }, &p.actor()).await?))
}

/// Every paired device with its live state.
#[utoipa::path(get, path = "/api/v1/admin/nodes", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = [DeviceView]), (status = 403, body = ErrorBody)))]
pub async fn nodes(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<Vec<DeviceView>>, ApiError> {
    p.admin_read()?;
    Ok(Json(state.run(admin::DeviceList::default(), &p.actor()).await?))
}

/// Ban a device (id, id prefix or vIP); a connected one is disconnected.
#[utoipa::path(post, path = "/api/v1/admin/nodes/{id}/ban", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Reason,
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody)))]
pub async fn ban(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Reason>,
) -> Result<Json<DeviceView>, ApiError> {
    p.admin_write(false)?;
    Ok(Json(state.run(admin::DeviceBan { id, reason: reason(&req.reason)? }, &p.actor()).await?))
}

/// Set a device's quality state by hand (`healthy`, `degraded`, `flagged`) with a note, or give
/// it back to the watchdog (`auto`).
#[utoipa::path(post, path = "/api/v1/admin/nodes/{id}/quality", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = QualityOverride,
    responses((status = 200, body = DeviceView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn quality(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<QualityOverride>,
) -> Result<Json<DeviceView>, ApiError> {
    p.admin_write(false)?;
    Ok(Json(state.run(admin::DeviceQuality { id, state: req.state, note: reason(&req.note)? }, &p.actor()).await?))
}

/// Lift a device's ban (an optional reason goes into the audit log).
#[utoipa::path(post, path = "/api/v1/admin/nodes/{id}/unban", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = OptionalReason,
    responses((status = 200, body = DeviceView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unban(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<DeviceView>, ApiError> {
    p.admin_write(false)?;
    let reason = optional_reason(&body)?;
    Ok(Json(state.run(admin::DeviceUnban { id, reason }, &p.actor()).await?))
}

/// Remove (unpair) a device: it can no longer connect until paired again, its live streams are
/// cut, its vIP stays reserved; an optional reason goes into the audit log. A banned device is
/// refused (409): its record keeps the banned key out, so it is unbanned first.
#[utoipa::path(post, path = "/api/v1/admin/nodes/{id}/remove", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = OptionalReason,
    responses((status = 200, body = DeviceView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<DeviceView>, ApiError> {
    p.admin_write(false)?;
    let reason = optional_reason(&body)?;
    Ok(Json(state.run(admin::DeviceRemove { id, reason }, &p.actor()).await?))
}

/// An optional `{"reason": …}` body: none, whitespace, or a reason of 1-500 characters.
fn optional_reason(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body: OptionalReason =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    body.reason.filter(|r| !r.trim().is_empty()).map(|r| reason(&r)).transpose()
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SessionQuery {
    /// Only this user's streams (an unknown user is 404 `not_found`).
    pub user: Option<String>,
    /// Only streams carried by the node with this public IP (an abuse report's address).
    pub node_ip: Option<String>,
    /// Only streams still open at or after this time (ended then or later, or live): RFC 3339
    /// (`2026-12-01T08:00:00Z`), a date (`2026-12-01`, midnight UTC), Unix seconds or an age
    /// (`24h`, `7d`).
    pub since: Option<String>,
    /// Only streams started at or before this time (same forms). With `since`, the streams open
    /// at some moment of `[since, until]`.
    pub until: Option<String>,
    /// The next page: only streams with an `id` below this one (the smallest `id` of the page
    /// before).
    pub before: Option<u64>,
    /// At most this many rows, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The streams a sessions CSV holds: all that match, oldest first, at most [`CSV_MAX_ROWS`] (the
/// newest of them).
#[derive(Debug, Deserialize, IntoParams)]
pub struct SessionExportQuery {
    /// Only this user's streams (an unknown user is 404 `not_found`).
    pub user: Option<String>,
    /// Only streams carried by the node with this public IP.
    pub node_ip: Option<String>,
    /// Only streams still open at or after this time, in the forms of `/admin/sessions`.
    pub since: Option<String>,
    /// Only streams started at or before this time (same forms).
    pub until: Option<String>,
}

/// Client streams, newest first, one page (live ones first within it); filtered by user, node
/// public IP and time (the streams open at some moment of `[since, until]`) for abuse reports.
/// The next page is `before` the smallest `id` of this one.
#[utoipa::path(get, path = "/api/v1/admin/sessions", tag = "admin", security(("bearer" = [])), params(SessionQuery),
    responses((status = 200, body = [SessionView]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sessions(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<SessionQuery>,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    p.admin_read()?;
    let window = window(q.since.as_deref(), q.until.as_deref(), q.before, limit(q.limit))?;
    let req = admin::SessionList { user: q.user, node_ip: q.node_ip, window };
    let mut list = state.run(req, &p.actor()).await?;
    list.sort_by_key(|s| !s.live);
    Ok(Json(list))
}

/// Client streams as CSV, oldest first: those of `user` and `node_ip` open at some moment of
/// `[since, until]`.
#[utoipa::path(get, path = "/api/v1/admin/sessions.csv", tag = "admin", security(("bearer" = [])), params(SessionExportQuery),
    responses((status = 200, content_type = "text/csv",
        description = "id,start,end,client,sub,owner,vip,node_ip,target,bytes_up,bytes_down,charge,charge_micros,node_credit_micros,end_reason"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn sessions_csv(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<SessionExportQuery>,
) -> Result<Response, ApiError> {
    p.admin_read()?;
    let window = window(q.since.as_deref(), q.until.as_deref(), None, CSV_MAX_ROWS)?;
    let list = state.run(admin::SessionList { user: q.user, node_ip: q.node_ip, window }, &p.actor()).await?;
    let mut out = String::from(
        "id,start,end,client,sub,owner,vip,node_ip,target,bytes_up,bytes_down,charge,charge_micros,node_credit_micros,end_reason\n",
    );
    for s in list.iter().rev() {
        let opt = |v: &Option<String>| v.as_deref().map(csv_field).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            s.id,
            s.start,
            s.end.as_deref().unwrap_or(""),
            csv_field(&s.client),
            opt(&s.sub),
            csv_field(&s.owner),
            csv_field(&s.vip),
            csv_field(&s.node_ip),
            csv_field(&s.target),
            s.bytes_up,
            s.bytes_down,
            s.charge,
            s.charge_micros,
            s.node_credit_micros,
            opt(&s.end_reason),
        ));
    }
    Ok(csv_response(out, "traffix-sessions.csv"))
}

/// Ledger transfers, newest first, one page. The next page is `before` the smallest `seq` of
/// this one.
#[utoipa::path(get, path = "/api/v1/admin/ledger", tag = "admin", security(("bearer" = [])), params(LedgerQuery),
    responses((status = 200, body = [TransferView]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn ledger(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<LedgerQuery>,
) -> Result<Json<Vec<TransferView>>, ApiError> {
    p.admin_read()?;
    let window = window(q.since.as_deref(), q.until.as_deref(), q.before, limit(q.limit))?;
    Ok(Json(state.run(admin::LedgerList { user: q.user, window }, &p.actor()).await?))
}

/// Reverse a deposit or an adjustment (by sequence number or id) with the exact opposite
/// transfer, once (audited). Reversals, usage and withdrawals cannot be reversed.
#[utoipa::path(post, path = "/api/v1/admin/ledger/{id}/reverse", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the transfer's sequence number or id")), request_body = Reason,
    responses((status = 200, body = CorrectionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reverse(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Reason>,
) -> Result<Json<CorrectionView>, ApiError> {
    p.admin_write(true)?;
    Ok(Json(state.run(admin::LedgerReverse { id, reason: reason(&req.reason)? }, &p.actor()).await?))
}

/// Ledger transfers as CSV, oldest first: those of `user` made in `[since, until]`.
#[utoipa::path(get, path = "/api/v1/admin/ledger.csv", tag = "admin", security(("bearer" = [])), params(LedgerExportQuery),
    responses((status = 200, content_type = "text/csv", description = "seq,time,kind,debit,credit,amount,amount_micros,reference"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn ledger_csv(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<LedgerExportQuery>,
) -> Result<Response, ApiError> {
    p.admin_read()?;
    let window = window(q.since.as_deref(), q.until.as_deref(), None, CSV_MAX_ROWS)?;
    let mut list = state.run(admin::LedgerList { user: q.user, window }, &p.actor()).await?;
    list.reverse();
    Ok(csv_response(transfers_csv(&list), "traffix-ledger.csv"))
}

/// Withdrawals, pending first.
#[utoipa::path(get, path = "/api/v1/admin/withdrawals", tag = "admin", security(("bearer" = [])), params(StatusQuery),
    responses((status = 200, body = [WithdrawalView])))]
pub async fn withdrawals(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<StatusQuery>,
) -> Result<Json<Vec<WithdrawalView>>, ApiError> {
    p.admin_read()?;
    let req = admin::WithdrawalList { user: None, status: q.status, window: admin::Window::default() };
    let mut list = state.run(req, &p.actor()).await?;
    list.sort_by_key(|w| w.status != "pending");
    Ok(Json(list))
}

/// Approve (pay out) a pending withdrawal.
#[utoipa::path(post, path = "/api/v1/admin/withdrawals/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = u64, Path)), request_body = OptionalReason,
    responses((status = 200, body = WithdrawalView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn approve(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Result<Json<WithdrawalView>, ApiError> {
    p.admin_write(true)?;
    // The body is optional here.
    let reason = optional_reason(&body)?;
    Ok(Json(state.run(admin::WithdrawalApprove { id, reason }, &p.actor()).await?))
}

/// Reject a pending withdrawal: the money goes back to the user.
#[utoipa::path(post, path = "/api/v1/admin/withdrawals/{id}/reject", tag = "admin", security(("bearer" = [])),
    params(("id" = u64, Path)), request_body = Reason,
    responses((status = 200, body = WithdrawalView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reject(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(id): Path<u64>,
    ApiJson(req): ApiJson<Reason>,
) -> Result<Json<WithdrawalView>, ApiError> {
    p.admin_write(true)?;
    Ok(Json(state.run(admin::WithdrawalReject { id, reason: reason(&req.reason)? }, &p.actor()).await?))
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", security(("bearer" = [])), params(LimitQuery),
    responses((status = 200, body = [AuditView])))]
pub async fn audit(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    p.admin_read()?;
    Ok(Json(
        state
            .run(
                admin::AuditList { window: admin::Window { limit: Some(limit(q.limit)), ..admin::Window::default() } },
                &p.actor(),
            )
            .await?,
    ))
}

/// The server's settings: billing (editable here) and the rest (edited in traffix.toml).
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsResponse {
    pub billing: SettingsView,
    pub server: ServerInfo,
    /// The web listener's certificate (ACME or self-signed) and ACME's last attempt.
    pub certificate: Option<crate::acme::CertificateView>,
    /// GeoIP: the source of updates, the databases in use (build dates, ages) and the last
    /// and next update.
    pub geoip: Option<crate::geoip::GeoipStatus>,
}

/// A change of billing settings; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SettingsUpdate {
    /// Currency units per GB, e.g. `"3.00"`.
    pub price_per_gb: Option<String>,
    /// 0–100.
    pub platform_fee_percent: Option<u8>,
    /// Currency units, e.g. `"5.00"`.
    pub min_payout: Option<String>,
    /// Why (for the audit log).
    pub reason: Option<String>,
}

/// The settings in force.
#[utoipa::path(get, path = "/api/v1/admin/settings", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = SettingsResponse)))]
pub async fn settings(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<SettingsResponse>, ApiError> {
    p.admin_read()?;
    let billing = state.run(admin::SettingsShow {}, &p.actor()).await?;
    let certificate = state.admin.live.as_ref().and_then(|l| l.certificates.as_ref()).map(|c| c.view());
    let geoip = match state.admin.live.clone() {
        // Reads the update record from the data directory: the blocking pool.
        Some(l) => tokio::task::spawn_blocking(move || (l.geoip_status)()).await.ok(),
        None => None,
    };
    let server = ServerInfo { geoip_country: geoip_country(&state), ..state.info.clone() };
    Ok(Json(SettingsResponse { billing, server, certificate, geoip }))
}

/// Change the price, the platform fee or the minimum payout (audited). New streams are billed
/// at the new price; live ones keep theirs.
#[utoipa::path(put, path = "/api/v1/admin/settings", tag = "admin", security(("bearer" = [])),
    request_body = SettingsUpdate,
    responses((status = 200, body = SettingsView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn update_settings(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<SettingsUpdate>,
) -> Result<Json<SettingsView>, ApiError> {
    p.admin_write(false)?;
    let cmd = admin::SettingsSet {
        price_per_gb: req.price_per_gb,
        platform_fee_percent: req.platform_fee_percent,
        min_payout: req.min_payout,
        reason: req.reason.filter(|r| !r.trim().is_empty()),
    };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// Live events (Server-Sent Events): `overview` every 2 s, `nodes` when a node comes, goes or
/// changes state, and every 10 s.
#[utoipa::path(get, path = "/api/v1/admin/events", tag = "admin", security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "`event: overview` / `event: nodes`")))]
pub async fn events(
    State(state): State<Arc<ApiState>>,
    p: Principal,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    p.admin_read()?;
    let actor = p.actor();
    let stream = futures_util::stream::unfold(
        (state.clone(), actor, 0u64, String::new(), state.shutdown.clone()),
        |(state, actor, tick, last_nodes, mut shutdown)| async move {
            if tick > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = shutdown.recv() => return None,
                }
            }
            let mut events = Vec::new();
            if let Ok(o) = overview_of(&state).await
                && let Ok(e) = Event::default().event("overview").json_data(&o)
            {
                events.push(Ok(e));
            }
            let mut last = last_nodes;
            if let Ok(nodes) = state.run(admin::DeviceList::default(), &actor).await {
                let sig: String =
                    nodes.iter().map(|d| format!("{}:{}:{:?}:{};", d.id, d.online, d.state, d.banned)).collect();
                if sig != last || tick % 5 == 0 {
                    if let Ok(e) = Event::default().event("nodes").json_data(&nodes) {
                        events.push(Ok(e));
                    }
                    last = sig;
                }
            }
            Some((futures_util::stream::iter(events), (state, actor, tick + 1, last, shutdown)))
        },
    );
    use futures_util::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}

/// Ask the CA for a certificate now (issue or renew, whatever the schedule says; audited) and
/// wait for the outcome (up to two minutes). 400 when ACME is off.
#[utoipa::path(post, path = "/api/v1/admin/tls/renew", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = crate::acme::CertificateView, description = "The certificate served after the attempt; `acme.last_error` says why it failed"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn tls_renew(
    State(state): State<Arc<ApiState>>,
    p: Principal,
) -> Result<Json<crate::acme::CertificateView>, ApiError> {
    p.admin_write(false)?;
    Ok(Json(state.run(admin::TlsRenew {}, &p.actor()).await?))
}
