//! Telegram and notifications in the API: the code that links a web account to the bot, the
//! user's notification inbox and preferences, and the admin's unlink and invitations. The
//! one-time login of a bot link is `/auth/telegram` (auth.rs).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiJson, ApiState, ErrorBody, Principal};
use crate::admin;
use crate::admin::telegram::{NoticeView, NotifyPrefsView, TelegramCodeView};
use crate::admin::views::UserView;

/// A code to send to the bot (`/start CODE`, valid 10 minutes) that links this account.
#[utoipa::path(post, path = "/api/v1/me/telegram/link-code", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = TelegramCodeView), (status = 403, body = ErrorBody)))]
pub async fn link_code(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<TelegramCodeView>, ApiError> {
    p.may_write()?;
    Ok(Json(state.run(admin::TelegramLinkCode { name: p.user.name.clone() }, &p.actor()).await?))
}

/// Unlink this account's Telegram account.
#[utoipa::path(delete, path = "/api/v1/me/telegram", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody)))]
pub async fn unlink_me(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<UserView>, ApiError> {
    p.may_write()?;
    Ok(Json(state.run(admin::TelegramUnlink { name: p.user.name.clone() }, &p.actor()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct NoticeQuery {
    /// At most this many, newest first (default 50, at most 200).
    pub limit: Option<usize>,
}

/// My notifications (node offline and back, deposits, withdrawals, low balance…), newest first.
#[utoipa::path(get, path = "/api/v1/me/notifications", tag = "me", security(("bearer" = [])), params(NoticeQuery),
    responses((status = 200, body = [NoticeView])))]
pub async fn notifications(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<NoticeQuery>,
) -> Result<Json<Vec<NoticeView>>, ApiError> {
    Ok(Json(state.run(admin::NoticeList { name: p.user.name.clone(), limit: q.limit }, &p.actor()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MarkRead {
    /// Marks every notification up to this sequence number read.
    pub upto: u64,
}

/// Mark my notifications read (up to a sequence number); how many changed.
#[utoipa::path(post, path = "/api/v1/me/notifications/read", tag = "me", security(("bearer" = [])),
    request_body = MarkRead, responses((status = 200, body = usize)))]
pub async fn mark_read(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<MarkRead>,
) -> Result<Json<usize>, ApiError> {
    p.may_write()?;
    Ok(Json(state.run(admin::NoticeRead { name: p.user.name.clone(), upto: req.upto }, &p.actor()).await?))
}

/// My notification preferences.
#[utoipa::path(get, path = "/api/v1/me/notify-prefs", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = NotifyPrefsView)))]
pub async fn prefs(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<NotifyPrefsView>, ApiError> {
    Ok(Json(state.run(admin::NotifyPrefsShow { name: p.user.name.clone() }, &p.actor()).await?))
}

/// Replace my notification preferences.
#[utoipa::path(put, path = "/api/v1/me/notify-prefs", tag = "me", security(("bearer" = [])),
    request_body = NotifyPrefsView, responses((status = 200, body = NotifyPrefsView), (status = 400, body = ErrorBody)))]
pub async fn set_prefs(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(prefs): ApiJson<NotifyPrefsView>,
) -> Result<Json<NotifyPrefsView>, ApiError> {
    p.may_write()?;
    Ok(Json(state.run(admin::NotifyPrefsSet { name: p.user.name.clone(), prefs }, &p.actor()).await?))
}

/// Unlink a user's Telegram account.
#[utoipa::path(post, path = "/api/v1/admin/users/{name}/telegram/unlink", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
pub async fn unlink_user(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    p.admin_write(false)?;
    Ok(Json(state.run(admin::TelegramUnlink { name }, &p.actor()).await?))
}

/// An invitation code for sign-up through the bot (`telegram.signup = "invite"`), valid 7 days.
#[utoipa::path(post, path = "/api/v1/admin/telegram/invite", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = TelegramCodeView), (status = 403, body = ErrorBody)))]
pub async fn invite(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<TelegramCodeView>, ApiError> {
    p.admin_write(false)?;
    Ok(Json(state.run(admin::TelegramInvite {}, &p.actor()).await?))
}
