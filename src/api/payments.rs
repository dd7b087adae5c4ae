//! Payments over HTTP: the providers' webhooks (`/payments/generic/webhook`, signed as SPEC.md
//! says; `/payments/cryptopay/webhook`, signed as Crypto Pay documents), a user's top-ups,
//! receipts and payout profile (`/me/…`), and the operator's receipts, refunds, invoices,
//! payout batches and payment settings (`/admin/…`).
//!
//! A webhook body is read raw (at most 64 KiB, refused unread beyond), its signature checked
//! over those exact bytes before anything is parsed, and every refusal is a 4xx with a log line
//! that says why (rate-limited) — nothing changes.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin::{CSV_MAX_ROWS, csv_response};
use super::me::csv_field;
use super::{ApiError, ApiJson, ApiState, ErrorBody, Principal};
use crate::admin;
use crate::admin::payments::{
    DepositView, InvoiceView, PaymentSettingsView, PayoutProfileView, PayoutRow, ReturnOutcomeView,
};
use crate::admin::views::WithdrawalView;
use crate::payments::{CryptoPayOutcome, MAX_WEBHOOK_BODY, TopUpError, WEBHOOK_LOG, WebhookError};
use crate::store::{DepositOutcome, StoreError, now_secs};

/// The generic webhook's signature header.
pub const SIGNATURE_HEADER: &str = "x-traffix-signature";
/// Crypto Pay's signature header.
pub const CRYPTOPAY_SIGNATURE_HEADER: &str = "crypto-pay-api-signature";

/// A webhook's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAnswer {
    /// `credited` (a new credit), `duplicate` (seen before: nothing changed), and for Crypto Pay
    /// also `ignored` (not for this server, or not paid) and `disputed` (paid, but not as asked:
    /// not credited).
    pub status: String,
    /// The deposit transfer's id (for a duplicate: the first one's).
    pub transfer_id: Option<String>,
    pub transfer_seq: Option<u64>,
}

impl From<&DepositOutcome> for WebhookAnswer {
    fn from(o: &DepositOutcome) -> Self {
        let d = o.deposit();
        WebhookAnswer {
            status: if o.is_new() { "credited" } else { "duplicate" }.into(),
            transfer_id: Some(d.transfer_id.clone()),
            transfer_seq: Some(d.seq),
        }
    }
}

/// Reads a webhook body: at most [`MAX_WEBHOOK_BODY`] bytes (a larger one is refused unread).
async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_WEBHOOK_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("bodies are at most {MAX_WEBHOOK_BODY} bytes"),
        )
    })
}

fn rejected(provider: &str, ip: std::net::IpAddr, e: &ApiError) {
    if WEBHOOK_LOG.admit_now("rejected payment webhooks") {
        tracing::warn!(provider, %ip, status = e.status.as_u16(), error = e.code, reason = %e.reason,
            "payment webhook rejected");
    }
}

fn webhook_error(e: WebhookError) -> ApiError {
    use crate::payments::generic::BodyError;
    match e {
        WebhookError::Disabled(_) => ApiError::not_found(e.to_string()),
        WebhookError::Signature(s) => ApiError::unauthorized(s.code(), s.to_string()),
        WebhookError::Body(BodyError::Malformed(m)) => ApiError::bad_request(format!("malformed JSON: {m}")),
        WebhookError::Body(BodyError::Shape(m)) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", m),
        WebhookError::Body(BodyError::Invalid(m)) => ApiError::invalid(m),
        WebhookError::Store(StoreError::NotFound(m)) => ApiError::not_found(format!("{m}: no such user")),
        WebhookError::Store(e) => ApiError::from(e),
    }
}

/// A webhook's check and credit: (service, signature header, raw body, now).
type Handle<T> = fn(&crate::payments::Payments, Option<&[u8]>, &[u8], u64) -> Result<T, WebhookError>;

/// A webhook handler's common part: the body within its cap, then `f` on the blocking pool.
async fn webhook<T: Send + 'static>(
    state: &Arc<ApiState>,
    provider: &'static str,
    ext: &Extensions,
    headers: &HeaderMap,
    header: &'static str,
    body: Body,
    f: Handle<T>,
) -> Result<T, ApiError> {
    let ip = super::peer_ip(ext);
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => {
            rejected(provider, ip, &e);
            return Err(e);
        }
    };
    let sig = headers.get(header).map(|v| v.as_bytes().to_vec());
    let payments = state.payments.clone();
    let out = tokio::task::spawn_blocking(move || f(&payments, sig.as_deref(), &body, now_secs()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    out.map_err(|e| {
        let e = webhook_error(e);
        if e.status.is_client_error() {
            rejected(provider, ip, &e);
        }
        e
    })
}

/// The generic signed webhook (SPEC.md "Payments"): a shop or gateway reports a payment
/// `{"id", "user", "amount", "currency"}` with `X-Traffix-Signature: t=UNIX_SECONDS,v1=HEX`, HEX
/// being lower-case hex HMAC-SHA256(payments.generic_secret, "{t}." + the raw body); `t` within
/// 300 s of the server's clock; at most 64 KiB. The same `id` again credits nothing (`duplicate`,
/// with the first transfer's id); with another user or amount it is 409. No bearer token: the
/// signature is the authentication.
#[utoipa::path(post, path = "/api/v1/payments/generic/webhook", tag = "payments",
    params(("X-Traffix-Signature" = String, Header, description = "t=UNIX_SECONDS,v1=HEX")),
    request_body(content = String, content_type = "application/json",
        description = r#"{"id": "EXTERNAL-ID", "user": "NAME", "amount": "12.50", "currency": "USD"}"#),
    responses((status = 200, body = WebhookAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody, description = "invalid_signature or stale_timestamp"),
        (status = 404, body = ErrorBody, description = "unknown user, or the webhook is not enabled"),
        (status = 409, body = ErrorBody, description = "the same id with another user or amount"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn generic_webhook(
    State(state): State<Arc<ApiState>>,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<WebhookAnswer>, ApiError> {
    let out =
        webhook(&state, "generic", &ext, &headers, SIGNATURE_HEADER, body, |p, h, b, now| p.generic_webhook(h, b, now))
            .await?;
    Ok(Json(WebhookAnswer::from(&out)))
}

/// Crypto Pay's webhook (set its URL in the Crypto Pay app; it needs public HTTPS): an
/// `invoice_paid` update, signed in `crypto-pay-api-signature` with HMAC-SHA256 of the raw body
/// keyed with SHA-256 of the API token. The invoice id is the replay guard: a paid invoice of
/// this server is credited once, whichever of this webhook and the poller sees it first.
#[utoipa::path(post, path = "/api/v1/payments/cryptopay/webhook", tag = "payments",
    params(("crypto-pay-api-signature" = String, Header)),
    request_body(content = String, content_type = "application/json",
        description = r#"{"update_id": 1, "update_type": "invoice_paid", "request_date": "…", "payload": {invoice}}"#),
    responses((status = 200, body = WebhookAnswer), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn cryptopay_webhook(
    State(state): State<Arc<ApiState>>,
    ext: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<WebhookAnswer>, ApiError> {
    let out = webhook(&state, "cryptopay", &ext, &headers, CRYPTOPAY_SIGNATURE_HEADER, body, |p, h, b, now| {
        p.cryptopay_webhook(h, b, now)
    })
    .await?;
    Ok(Json(match out {
        CryptoPayOutcome::Deposit(d) => WebhookAnswer::from(&d),
        CryptoPayOutcome::Ignored(why) => {
            tracing::info!(%why, "Crypto Pay update ignored");
            WebhookAnswer { status: "ignored".into(), transfer_id: None, transfer_seq: None }
        }
        CryptoPayOutcome::Disputed(_) => {
            WebhookAnswer { status: "disputed".into(), transfer_id: None, transfer_seq: None }
        }
    }))
}

/// How the signed-in user can top up.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopUpOptions {
    pub currency: String,
    /// The enabled providers: `stars` (in the Telegram bot: /topup), `cryptopay` (an invoice
    /// from here), `generic` (the operator's shop or gateway).
    pub providers: Vec<String>,
    pub min_topup: String,
    pub min_topup_micros: u64,
    pub max_topup: String,
    pub max_topup_micros: u64,
    /// Telegram Stars for one currency unit.
    pub stars_per_unit: u32,
    /// The user's latest invoices, newest first.
    pub invoices: Vec<InvoiceView>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TopUpRequest {
    /// Currency units, e.g. `"12.50"`.
    pub amount: String,
}

/// The top-up options: enabled providers, limits, and the caller's recent invoices.
#[utoipa::path(get, path = "/api/v1/me/topup", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = TopUpOptions)))]
pub async fn topup_options(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Json<TopUpOptions>, ApiError> {
    let mut invoices = state.run(admin::InvoiceList { user: Some(p.user.name.clone()) }, &p.actor()).await?;
    invoices.truncate(20);
    let rules = state.admin.money().payments;
    let max = state.payments.max_credit();
    Ok(Json(TopUpOptions {
        currency: state.payments.currency().to_owned(),
        providers: rules.enabled_names(),
        min_topup: rules.min_topup.to_string(),
        min_topup_micros: rules.min_topup.0,
        max_topup: max.to_string(),
        max_topup_micros: max.0,
        stars_per_unit: rules.stars_per_unit,
        invoices,
    }))
}

/// Start a Crypto Pay top-up: an invoice in the operator's currency (payable in the assets the
/// operator accepts); pay it at `pay_url`. The balance grows once Crypto Pay reports it paid.
#[utoipa::path(post, path = "/api/v1/me/topup/cryptopay", tag = "me", security(("bearer" = [])),
    request_body = TopUpRequest,
    responses((status = 200, body = InvoiceView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn topup_cryptopay(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<TopUpRequest>,
) -> Result<Json<InvoiceView>, ApiError> {
    p.may_write()?;
    let amount = super::parse_money(&req.amount)?;
    let inv = state.payments.create_invoice(&p.user.name, amount).await.map_err(|e| match e {
        TopUpError::Disabled(_) => ApiError::not_found(e.to_string()),
        TopUpError::Invalid(m) => ApiError::invalid(m),
        TopUpError::TooMany(m) => ApiError::throttled(60, m),
        TopUpError::Provider(f) => {
            tracing::warn!(user = %p.user.name, error = %f, "Crypto Pay invoice could not be created");
            ApiError::new(StatusCode::BAD_GATEWAY, "provider_unavailable", f.to_string())
        }
        TopUpError::Store(s) => ApiError::from(s),
    })?;
    Ok(Json(InvoiceView::from(&inv)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DepositQuery {
    /// Only this user's receipts (admins; an unknown user is 404).
    pub user: Option<String>,
    /// Only this provider's: `admin`, `generic`, `cryptopay`, `stars`.
    pub provider: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

fn limit(n: Option<usize>) -> usize {
    n.unwrap_or(100).clamp(1, 1000)
}

/// Deposits as CSV lines under a header, oldest first.
pub fn deposits_csv(list: &[DepositView]) -> String {
    let mut out = String::from(
        "seq,time,provider,external_id,user,amount,amount_micros,currency,status,recovered_micros,unrecovered_micros,transfer_id,reference\n",
    );
    for d in list {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            d.seq,
            d.time,
            csv_field(&d.provider),
            csv_field(&d.external_id),
            csv_field(&d.user),
            d.amount,
            d.amount_micros,
            d.currency.as_deref().map(csv_field).unwrap_or_default(),
            d.status,
            d.recovered_micros,
            d.unrecovered_micros,
            csv_field(&d.transfer_id),
            csv_field(&d.reference),
        ));
    }
    out
}

/// The caller's deposits (receipts), newest first: provider, payment id, amount, time, status.
#[utoipa::path(get, path = "/api/v1/me/deposits", tag = "me", security(("bearer" = [])), params(DepositQuery),
    responses((status = 200, body = [DepositView])))]
pub async fn my_deposits(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<DepositQuery>,
) -> Result<Json<Vec<DepositView>>, ApiError> {
    let window = admin::Window { limit: Some(limit(q.limit)), ..admin::Window::default() };
    let req = admin::DepositList { user: Some(p.user.name.clone()), provider: q.provider, window };
    Ok(Json(state.run(req, &p.actor()).await?))
}

/// The caller's deposits as CSV, oldest first.
#[utoipa::path(get, path = "/api/v1/me/deposits.csv", tag = "me", security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv",
        description = "seq,time,provider,external_id,user,amount,amount_micros,currency,status,recovered_micros,unrecovered_micros,transfer_id,reference")))]
pub async fn my_deposits_csv(State(state): State<Arc<ApiState>>, p: Principal) -> Result<Response, ApiError> {
    let window = admin::Window { limit: Some(CSV_MAX_ROWS), ..admin::Window::default() };
    let mut list =
        state.run(admin::DepositList { user: Some(p.user.name.clone()), provider: None, window }, &p.actor()).await?;
    list.reverse();
    Ok(csv_response(deposits_csv(&list), "traffix-deposits.csv"))
}

/// Where the caller is paid out, and the automatic request threshold.
#[utoipa::path(get, path = "/api/v1/me/payout-profile", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = PayoutProfileView)))]
pub async fn my_payout_profile(
    State(state): State<Arc<ApiState>>,
    p: Principal,
) -> Result<Json<PayoutProfileView>, ApiError> {
    Ok(Json(state.run(admin::PayoutProfileShow { name: p.user.name.clone() }, &p.actor()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PayoutProfileUpdate {
    /// How to pay, e.g. `bank`, `usdt-trc20` (1-32 characters).
    pub method: Option<String>,
    /// Where: an IBAN, a wallet address (1-500 characters).
    pub details: Option<String>,
    /// Request a withdrawal of everything available once it reaches this (currency units, at
    /// least the minimum payout); `""` turns it off.
    pub auto_threshold: Option<String>,
    /// Forget the profile.
    #[serde(default)]
    pub clear: bool,
}

/// Save where the caller is paid out (absent fields stay as they are).
#[utoipa::path(put, path = "/api/v1/me/payout-profile", tag = "me", security(("bearer" = [])),
    request_body = PayoutProfileUpdate,
    responses((status = 200, body = PayoutProfileView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_my_payout_profile(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<PayoutProfileUpdate>,
) -> Result<Json<PayoutProfileView>, ApiError> {
    p.may_write()?;
    let cmd = admin::PayoutProfileSet {
        name: p.user.name.clone(),
        method: req.method,
        details: req.details,
        auto_threshold: req.auto_threshold,
        clear: req.clear,
    };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

/// Deposits (receipts) of every user, newest first.
#[utoipa::path(get, path = "/api/v1/admin/deposits", tag = "admin", security(("bearer" = [])), params(DepositQuery),
    responses((status = 200, body = [DepositView]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deposits(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<DepositQuery>,
) -> Result<Json<Vec<DepositView>>, ApiError> {
    p.admin_read()?;
    let window = admin::Window { limit: Some(limit(q.limit)), ..admin::Window::default() };
    Ok(Json(state.run(admin::DepositList { user: q.user, provider: q.provider, window }, &p.actor()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DepositExportQuery {
    /// Only this user's receipts.
    pub user: Option<String>,
    /// Only this provider's.
    pub provider: Option<String>,
}

/// Deposits as CSV, oldest first (at most 100,000: the newest).
#[utoipa::path(get, path = "/api/v1/admin/deposits.csv", tag = "admin", security(("bearer" = [])),
    params(DepositExportQuery),
    responses((status = 200, content_type = "text/csv",
        description = "seq,time,provider,external_id,user,amount,amount_micros,currency,status,recovered_micros,unrecovered_micros,transfer_id,reference"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deposits_csv_export(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<DepositExportQuery>,
) -> Result<Response, ApiError> {
    p.admin_read()?;
    let window = admin::Window { limit: Some(CSV_MAX_ROWS), ..admin::Window::default() };
    let mut list = state.run(admin::DepositList { user: q.user, provider: q.provider, window }, &p.actor()).await?;
    list.reverse();
    Ok(csv_response(deposits_csv(&list), "traffix-deposits.csv"))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DepositReturnRequest {
    /// `refund` or `chargeback`.
    pub kind: String,
    /// What is claimed back (currency units); absent: everything not claimed yet.
    pub amount: Option<String>,
    /// The provider's id of the refund (a replay changes nothing).
    pub id: Option<String>,
    pub reason: String,
}

/// Record a refund or a chargeback of a deposit (audited): the claim is taken back from the
/// user as far as it is unspent, the rest stays on the receipt as `unrecovered` (an operator
/// decision, never an overdraft).
#[utoipa::path(post, path = "/api/v1/admin/deposits/{id}/return", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "the deposit's transfer id, PROVIDER:ID or sequence number")),
    request_body = DepositReturnRequest,
    responses((status = 200, body = ReturnOutcomeView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn deposit_return(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DepositReturnRequest>,
) -> Result<Json<ReturnOutcomeView>, ApiError> {
    p.admin_write(true)?;
    let cmd =
        admin::DepositReturnCmd { deposit: id, kind: req.kind, amount: req.amount, id: req.id, reason: req.reason };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InvoiceQuery {
    /// Only this user's invoices.
    pub user: Option<String>,
}

/// Provider invoices (top-ups), newest first: active, credited, expired or disputed.
#[utoipa::path(get, path = "/api/v1/admin/invoices", tag = "admin", security(("bearer" = [])), params(InvoiceQuery),
    responses((status = 200, body = [InvoiceView]), (status = 403, body = ErrorBody)))]
pub async fn invoices(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<InvoiceQuery>,
) -> Result<Json<Vec<InvoiceView>>, ApiError> {
    p.admin_read()?;
    Ok(Json(state.run(admin::InvoiceList { user: q.user }, &p.actor()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PayoutExportQuery {
    /// Include payouts already marked paid.
    #[serde(default)]
    pub include_paid: bool,
}

/// The payout batch: approved withdrawals not yet marked paid, as CSV, oldest first, to pay
/// outside (then `POST /admin/payouts/mark-paid`).
#[utoipa::path(get, path = "/api/v1/admin/payouts.csv", tag = "admin", security(("bearer" = [])),
    params(PayoutExportQuery),
    responses((status = 200, content_type = "text/csv",
        description = "id,user,amount,amount_micros,destination,requested_at,approved_at,approved_by,auto,paid_at,paid_reference"),
        (status = 403, body = ErrorBody)))]
pub async fn payouts_csv(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    Query(q): Query<PayoutExportQuery>,
) -> Result<Response, ApiError> {
    p.admin_read()?;
    let rows = state.run(admin::PayoutExport { include_paid: q.include_paid }, &p.actor()).await?;
    Ok(csv_response(payouts_to_csv(&rows), "traffix-payouts.csv"))
}

/// Payout rows as CSV under a header.
pub fn payouts_to_csv(rows: &[PayoutRow]) -> String {
    let mut out = String::from(
        "id,user,amount,amount_micros,destination,requested_at,approved_at,approved_by,auto,paid_at,paid_reference\n",
    );
    let opt = |v: &Option<String>| v.as_deref().map(csv_field).unwrap_or_default();
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            r.id,
            csv_field(&r.user),
            r.amount,
            r.amount_micros,
            opt(&r.destination),
            r.requested_at,
            r.approved_at.as_deref().unwrap_or_default(),
            opt(&r.approved_by),
            r.auto,
            r.paid_at.as_deref().unwrap_or_default(),
            opt(&r.paid_reference),
        ));
    }
    out
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MarkPaid {
    /// The withdrawals paid (approved ones; all or none).
    pub ids: Vec<u64>,
    /// The payment's reference (a bank batch, a transaction id).
    pub reference: String,
}

/// Mark approved payouts as paid outside (audited; all or none).
#[utoipa::path(post, path = "/api/v1/admin/payouts/mark-paid", tag = "admin", security(("bearer" = [])),
    request_body = MarkPaid,
    responses((status = 200, body = [WithdrawalView]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn mark_paid(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<MarkPaid>,
) -> Result<Json<Vec<WithdrawalView>>, ApiError> {
    p.admin_write(true)?;
    Ok(Json(state.run(admin::PayoutMarkPaid { ids: req.ids, reference: req.reference }, &p.actor()).await?))
}

/// The payment settings in force (secrets are never returned: only whether they are set).
#[utoipa::path(get, path = "/api/v1/admin/payments/settings", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = PaymentSettingsView), (status = 403, body = ErrorBody)))]
pub async fn payment_settings(
    State(state): State<Arc<ApiState>>,
    p: Principal,
) -> Result<Json<PaymentSettingsView>, ApiError> {
    p.admin_read()?;
    Ok(Json(state.run(admin::PaymentSettingsShow {}, &p.actor()).await?))
}

/// A change of payment settings; absent fields stay as they are. Secrets are write-only.
#[derive(Deserialize, ToSchema)]
pub struct PaymentSettingsUpdate {
    /// The providers that take payments: `stars`, `cryptopay`, `generic`.
    pub enabled: Option<Vec<String>>,
    /// A new HMAC key of the generic webhook (32-256 characters).
    pub generic_secret: Option<String>,
    /// A new Crypto Pay API token.
    pub cryptopay_token: Option<String>,
    pub stars_per_unit: Option<u32>,
    /// Currency units, e.g. `"1.00"`.
    pub min_topup: Option<String>,
    /// Why (for the audit log).
    pub reason: Option<String>,
}

/// Change the enabled providers, their secrets or the rates (audited, without the secrets).
#[utoipa::path(put, path = "/api/v1/admin/payments/settings", tag = "admin", security(("bearer" = [])),
    request_body = PaymentSettingsUpdate,
    responses((status = 200, body = PaymentSettingsView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn update_payment_settings(
    State(state): State<Arc<ApiState>>,
    p: Principal,
    ApiJson(req): ApiJson<PaymentSettingsUpdate>,
) -> Result<Json<PaymentSettingsView>, ApiError> {
    p.admin_write(false)?;
    let cmd = admin::PaymentSettingsSet {
        enabled: req.enabled,
        generic_secret: req.generic_secret.filter(|s| !s.is_empty()),
        cryptopay_token: req.cryptopay_token.filter(|s| !s.is_empty()),
        stars_per_unit: req.stars_per_unit,
        min_topup: req.min_topup,
        reason: req.reason.filter(|r| !r.trim().is_empty()),
    };
    Ok(Json(state.run(cmd, &p.actor()).await?))
}
