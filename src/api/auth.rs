//! `/auth/login`, `/auth/refresh`, `/auth/logout`: argon2id logins, 10-minute JWT access
//! tokens, opaque refresh tokens stored hashed and rotated on every use.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::extract::State;
use axum::http::{Extensions, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, ApiState, ErrorBody};
use crate::auth::jwt::ACCESS_TTL_SECS;
use crate::store::{RefreshError, now_secs};

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    pub token_type: String,
}

fn random_token(prefix: &str) -> Result<String, ApiError> {
    let bytes = crate::auth::random_bytes::<32>().map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// A refresh token in the form this server issues: `tfr_` and URL-safe base64.
fn is_refresh_token(t: &str) -> bool {
    t.strip_prefix("tfr_")
        .is_some_and(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'))
}

/// Hash of a refresh token as stored: exact (SHA-256 hex of its bytes, no case folding). Tokens
/// issued before this rule were stored case-folded; they no longer match, so those logins sign
/// in once more.
fn hash(token: &str) -> String {
    crate::auth::secret_hash(token)
}

fn tokens(state: &ApiState, user: &str, family: &str, refresh: String) -> Result<TokenResponse, ApiError> {
    let access = state.jwt.issue(user, family, now_secs()).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(TokenResponse {
        access_token: access,
        refresh_token: refresh,
        expires_in: ACCESS_TTL_SECS,
        token_type: "Bearer".into(),
    })
}

/// A hash verified for unknown users, so a wrong name takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| crate::auth::hash_password("not a real password").unwrap_or_default())
}

/// Sign in with a login password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<Arc<ApiState>>,
    ext: Extensions,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let ip = super::peer_ip(&ext);
    let name = req.username.trim().to_ascii_lowercase();
    if name.len() > 64 || req.password.len() > 1024 {
        return Err(ApiError::unauthorized("invalid_credentials", "wrong user name or password"));
    }
    // The slot is taken before the (slow) hash, so concurrent attempts cannot overrun the limit.
    let attempt = state
        .throttle
        .reserve_login(ip, &name)
        .map_err(|wait| ApiError::throttled(wait, format!("too many failed logins; try again in {wait} s")))?;
    let user = state.admin.store.get_user(&name)?;
    let phc = user.as_ref().and_then(|u| u.password_hash.clone()).unwrap_or_else(|| dummy_hash().to_owned());
    let password = req.password;
    let ok = {
        let _permit = state.hashing.acquire().await.map_err(|e| ApiError::internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || crate::auth::verify_password(&password, &phc))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
    };
    let user = match user {
        Some(u) if ok && u.password_hash.is_some() => u,
        _ => {
            drop(attempt);
            if crate::telemetry::LOGIN_FAILURES.admit_now("failed logins") {
                tracing::info!(user = %name.escape_debug(), %ip, "login failed");
            }
            return Err(ApiError::unauthorized("invalid_credentials", "wrong user name or password"));
        }
    };
    // The password was right: not a failed attempt, whether or not the account may sign in.
    attempt.succeeded();
    if user.disabled {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "disabled", "this account is disabled"));
    }
    let family = hex::encode(crate::auth::random_bytes::<12>().map_err(|e| ApiError::internal(e.to_string()))?);
    let refresh = random_token("tfr_")?;
    state.admin.store.start_login(&user.name, &family, &hash(&refresh), now_secs(), state.max_logins_per_user)?;
    tracing::info!(user = %user.name, %ip, "login");
    Ok(Json(tokens(&state, &user.name, &family, refresh)?))
}

/// Exchange a refresh token for new tokens (the old one is spent; reusing it revokes the login).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<Arc<ApiState>>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    // Only a token as issued (`tfr_` and base64url) is looked up: tokens stored before exact
    // hashing were stored case-folded, and an upper-cased copy must not find them.
    if req.refresh_token.len() > 256 || !is_refresh_token(&req.refresh_token) {
        return Err(ApiError::unauthorized("invalid_token", "unknown refresh token"));
    }
    let next = random_token("tfr_")?;
    let outcome = state.admin.store.rotate_refresh(&hash(&req.refresh_token), &hash(&next), now_secs())?;
    let (user, family) = match outcome {
        Ok(v) => v,
        Err(e) => {
            if e == RefreshError::Reused {
                tracing::warn!("a spent refresh token was presented: its login is revoked");
            }
            return Err(ApiError::unauthorized("invalid_token", e.to_string()));
        }
    };
    let u = state.admin.store.get_user(&user)?;
    if u.is_none_or(|u| u.disabled) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "disabled", "this account is disabled"));
    }
    Ok(Json(tokens(&state, &user, &family, next)?))
}

/// Sign out: the login's refresh tokens stop working (access tokens expire within 10 minutes).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn logout(
    State(state): State<Arc<ApiState>>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if req.refresh_token.len() <= 256 && is_refresh_token(&req.refresh_token) {
        state.admin.store.revoke_refresh(&hash(&req.refresh_token), "logout")?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A one-time login token from the Telegram bot's `/login` link.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TelegramLoginRequest {
    pub token: String,
}

/// Sign in with a one-time link from the Telegram bot (`/login`). The link carries the token
/// in its fragment, which no link-preview fetch sends; the dashboard page spends it here, once.
#[utoipa::path(post, path = "/api/v1/auth/telegram", tag = "auth", request_body = TelegramLoginRequest,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn telegram_login(
    State(state): State<Arc<ApiState>>,
    ext: Extensions,
    ApiJson(req): ApiJson<TelegramLoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let ip = super::peer_ip(&ext);
    // Guessing tokens counts against the address like failed password logins. The account key
    // is the token's own (a shared key would let one guesser lock everyone out).
    let key = format!("tg-link:{}", &crate::auth::secret_hash(&req.token)[..16]);
    let attempt = state
        .throttle
        .reserve_login(ip, &key)
        .map_err(|wait| ApiError::throttled(wait, format!("too many failed logins; try again in {wait} s")))?;
    let user = match state.run(crate::admin::TelegramLoginRedeem { token: req.token }, "telegram").await {
        Ok(v) => v.user,
        Err(e) if e.status == StatusCode::FORBIDDEN => return Err(e),
        Err(_) => {
            drop(attempt);
            return Err(ApiError::unauthorized("invalid_token", "this login link is unknown, used or expired"));
        }
    };
    attempt.succeeded();
    let family = hex::encode(crate::auth::random_bytes::<12>().map_err(|e| ApiError::internal(e.to_string()))?);
    let refresh = random_token("tfr_")?;
    state.admin.store.start_login(&user, &family, &hash(&refresh), now_secs(), state.max_logins_per_user)?;
    tracing::info!(user = %user, %ip, "login with a Telegram link");
    Ok(Json(tokens(&state, &user, &family, refresh)?))
}
