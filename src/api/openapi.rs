//! The OpenAPI document, generated from the handlers and the view types (utoipa). A committed
//! copy, `docs/openapi.json`, is compared in a test so the contract cannot drift silently;
//! `traffix openapi > docs/openapi.json` refreshes it.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, auth, me, payments, telegram};

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = api.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("A JWT access token from /auth/login, or an API key (tfx_…)"))
                        .build(),
                ),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Traffix API", version = "1", description = "The REST API of a Traffix server (docs/api.md)."),
    modifiers(&Bearer),
    paths(
        auth::login, auth::refresh, auth::logout, auth::telegram_login,
        telegram::link_code, telegram::unlink_me, telegram::notifications, telegram::mark_read, telegram::prefs,
        telegram::set_prefs, telegram::unlink_user, telegram::invite,
        me::me, me::rotate_proxy_password, me::change_password, me::usage, me::earnings, me::devices, me::pair, me::sessions,
        me::ledger, me::ledger_csv, me::withdrawals, me::request_withdrawal, me::api_keys, me::create_api_key,
        me::delete_api_key, me::sub_users, me::create_sub_user, me::change_sub_user, me::delete_sub_user,
        admin::overview, admin::usage, admin::users, admin::create_user, admin::credit, admin::adjust,
        admin::set_password, admin::disable, admin::enable, admin::rotate_proxy_password, admin::pair, admin::sub_users,
        admin::nodes, admin::ban, admin::unban, admin::remove, admin::quality, admin::sessions, admin::sessions_csv, admin::ledger, admin::ledger_csv,
        admin::reverse, admin::withdrawals,
        admin::approve, admin::reject, admin::audit, admin::settings, admin::update_settings, admin::events,
        admin::tls_renew,
        payments::generic_webhook, payments::cryptopay_webhook, payments::topup_options, payments::topup_cryptopay,
        payments::my_deposits, payments::my_deposits_csv, payments::my_payout_profile, payments::set_my_payout_profile,
        payments::deposits, payments::deposits_csv_export, payments::deposit_return, payments::invoices,
        payments::payouts_csv, payments::mark_paid, payments::payment_settings, payments::update_payment_settings,
    ),
    tags((name = "auth"), (name = "me", description = "The signed-in user's own account"),
         (name = "admin", description = "Operator endpoints (admins only)"),
         (name = "payments", description = "Payment providers' webhooks (signed; no bearer token)"))
)]
pub struct ApiDoc;

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    /// The committed copy matches the code; refresh it with `traffix openapi > docs/openapi.json`.
    #[test]
    fn committed_openapi_document_matches_the_code() {
        let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
        assert!(
            committed.trim() == super::document().trim(),
            "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json`"
        );
    }
}
