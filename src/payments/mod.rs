//! Payments: money in from providers and the automatic payout requests. What it owns:
//!
//! - [`config`]: `[payments]` (pure) and the run-time settings applied over it;
//! - [`signature`]: the webhook signature checks, pure functions of (secret, header, body, now);
//! - [`generic`]: the generic signed webhook's body (pure);
//! - [`cryptopay`]: Crypto Pay's JSON shapes and the pure decisions on them (what a paid
//!   invoice credits, how polling backs off);
//! - [`http`]: the client that calls a provider's API (deadline, size cap);
//! - [`Payments`]: the running service — the webhooks' checks and credits, top-up invoices,
//!   the `getInvoices` poller and the automatic withdrawal job.
//!
//! Every credit goes through the store's deposit call, which writes the credit and its receipt
//! (the dedup key) in one transaction. This module never imports the admin commands, the API
//! or the proxies: the API calls it, and the app wires its hooks.

pub mod config;
pub mod cryptopay;
pub mod generic;
pub mod http;
pub mod signature;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::Method;

use self::config::{PaymentsConfig, Provider};
use self::cryptopay::{ApiFailure, InvoiceList, PollOutcome, RemoteInvoice, Verdict};
use self::signature::SigError;
use crate::money::Micros;
use crate::shutdown::Shutdown;
use crate::store::{
    DepositOutcome, DepositRequest, Invoice, InvoiceStatus, PaymentSettings, Settled, Store, StoreError, now_secs,
};

/// The largest webhook body read (SPEC.md: 64 KiB); a larger one is refused unread.
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;

/// Rejected webhooks and failed provider calls: at most this many log lines a minute.
pub static WEBHOOK_LOG: crate::telemetry::LogLimiter = crate::telemetry::LogLimiter::new(100, Duration::from_secs(60));

/// Why a webhook was refused; each maps to one 4xx (a store failure to 500).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the {0} payment webhook is not enabled (payments.enabled)")]
    Disabled(&'static str),
    #[error("{0}")]
    Signature(#[from] SigError),
    #[error("{0}")]
    Body(#[from] generic::BodyError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What a Crypto Pay webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoPayOutcome {
    Deposit(DepositOutcome),
    /// Not for this server (another update type, an invoice it did not create, not paid yet).
    Ignored(String),
    /// Paid, but not as asked: recorded on the invoice, not credited.
    Disputed(String),
}

/// Why a top-up invoice could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TopUpError {
    #[error("top-ups with {0} are not enabled")]
    Disabled(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    Provider(ApiFailure),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Called with a user's name after a new credit (metering's budget, the account cache).
pub type CreditHook = Arc<dyn Fn(&str) + Send + Sync>;
/// The minimum payout in force (editable at run time).
pub type MinPayout = Arc<dyn Fn() -> Micros + Send + Sync>;

/// Applies payment settings changed at run time over `traffix.toml`'s `[payments]`.
pub fn apply_settings(cfg: &mut PaymentsConfig, s: &PaymentSettings) {
    if let Some(e) = &s.enabled {
        cfg.enabled = e.clone();
    }
    if let Some(v) = &s.generic_secret {
        cfg.generic_secret = v.clone();
    }
    if let Some(v) = &s.cryptopay_token {
        cfg.cryptopay_token = v.clone();
    }
    if let Some(v) = s.stars_per_unit {
        cfg.stars_per_unit = v;
    }
    if let Some(v) = s.min_topup {
        cfg.min_topup = v;
    }
}

/// Test hook of debug builds: `TRAFFIX_FAILPOINT=NAME` makes the process SIGKILL itself at the
/// point `NAME` (a kill -9 exactly there). Release builds have no such hook.
fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("TRAFFIX_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!(failpoint = name, "failpoint reached: SIGKILL");
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// The running payments service.
pub struct Payments {
    store: Arc<Store>,
    /// `[payments]` of traffix.toml, and what is in force (with run-time settings over it).
    base: PaymentsConfig,
    current: RwLock<PaymentsConfig>,
    currency: String,
    max_credit: Micros,
    http: http::HttpClient,
    /// Woken when an invoice is created: the poller starts looking again at its shortest wait.
    poke: tokio::sync::Notify,
    on_credit: CreditHook,
    /// Where "money arrived" notifications go, once the app has wired it.
    notifier: std::sync::OnceLock<crate::notify::Notifier>,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments").field("currency", &self.currency).finish_non_exhaustive()
    }
}

impl Payments {
    /// The service over `store`, from `[payments]` (`base`, before run-time settings), the
    /// operator's currency and the largest single credit.
    pub fn new(
        store: Arc<Store>,
        base: PaymentsConfig,
        currency: &str,
        max_credit: Micros,
        on_credit: CreditHook,
    ) -> Result<Payments, String> {
        let http =
            http::HttpClient::new(Duration::from_secs(base.cryptopay_timeout_secs), base.cryptopay_max_response_bytes)?;
        let p = Payments {
            current: RwLock::new(base.clone()),
            base,
            store,
            currency: currency.to_owned(),
            max_credit,
            http,
            poke: tokio::sync::Notify::new(),
            on_credit,
            notifier: std::sync::OnceLock::new(),
        };
        p.reload()?;
        let cfg = p.config();
        tracing::info!(enabled = ?cfg.enabled, generic_secret = ?cfg.generic_secret,
            cryptopay_token = ?cfg.cryptopay_token, "payments");
        Ok(p)
    }

    /// Re-reads the run-time settings from the store (after `payments settings set`).
    pub fn reload(&self) -> Result<(), String> {
        let mut cfg = self.base.clone();
        if let Some(s) = self.store.payment_settings().map_err(|e| e.to_string())? {
            apply_settings(&mut cfg, &s);
        }
        cfg.validate()?;
        crate::sync::write(&self.current, cfg);
        Ok(())
    }

    /// `[payments]` in force.
    pub fn config(&self) -> PaymentsConfig {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }

    pub fn max_credit(&self) -> Micros {
        self.max_credit
    }

    fn enabled(&self, p: Provider) -> bool {
        self.config().providers().unwrap_or_default().contains(&p)
    }

    fn credited(&self, out: &DepositOutcome) {
        if out.is_new() {
            let d = out.deposit();
            tracing::info!(provider = %d.provider, payment = %d.external_id, user = %d.user, amount = %d.amount,
                transfer = d.seq, "payment credited");
            (self.on_credit)(&d.user);
            if let Some(n) = self.notifier.get() {
                n.emit(crate::notify::Event::Deposit {
                    user: d.user.clone(),
                    amount: d.amount,
                    provider: d.provider.clone(),
                });
            }
        }
    }

    /// Sends "money arrived" notifications to `n` from now on.
    pub fn set_notifier(&self, n: crate::notify::Notifier) {
        let _ = self.notifier.set(n);
    }

    /// Stars for one currency unit while Telegram Stars are enabled.
    pub fn stars_rate(&self) -> Option<u32> {
        self.enabled(Provider::Stars).then(|| self.config().stars_per_unit)
    }

    /// Whether Crypto Pay top-ups are enabled (with a token).
    pub fn cryptopay_enabled(&self) -> bool {
        self.enabled(Provider::Cryptopay) && !self.config().cryptopay_token.is_empty()
    }

    /// The smallest top-up.
    pub fn min_topup(&self) -> Micros {
        self.config().min_topup
    }

    /// Credits a Telegram Stars payment (blocking): `amount` to `user`, keyed by Telegram's
    /// charge id through the same idempotent deposit as every provider (a replayed
    /// `successful_payment` answers the first credit).
    pub fn stars_payment(
        &self,
        user: &str,
        charge_id: &str,
        amount: Micros,
        stars: u32,
        now: u64,
    ) -> Result<DepositOutcome, StoreError> {
        if !self.enabled(Provider::Stars) {
            // Paid while enabled, arriving after it was turned off: still credited (the money
            // is in the bot's account), and said loudly.
            tracing::warn!(user, charge = charge_id, "a Stars payment arrived while Stars are disabled; crediting it");
        }
        let req = DepositRequest {
            transfer_id: None,
            provider: Provider::Stars.as_str().into(),
            external_id: charge_id.to_owned(),
            user: user.to_owned(),
            amount,
            currency: Some(self.currency.clone()),
            reference: format!("Telegram Stars payment ({stars} XTR)"),
            time: now,
        };
        let (out, _) = self.store.record_deposit(&req)?;
        self.credited(&out);
        Ok(out)
    }

    /// The generic webhook (blocking: writes the store): the signature over the raw body within
    /// ±300 s of `now`, then the body, then the credit (or the first one, for a replay).
    pub fn generic_webhook(
        &self,
        header: Option<&[u8]>,
        body: &[u8],
        now: u64,
    ) -> Result<DepositOutcome, WebhookError> {
        let cfg = self.config();
        if !self.enabled(Provider::Generic) || cfg.generic_secret.is_empty() {
            return Err(WebhookError::Disabled("generic"));
        }
        signature::verify_generic(cfg.generic_secret.expose().as_bytes(), header, body, now)?;
        let p = generic::parse_body(body, &self.currency, self.max_credit)?;
        let req = DepositRequest {
            transfer_id: None,
            provider: Provider::Generic.as_str().into(),
            external_id: p.id.clone(),
            user: p.user,
            amount: p.amount,
            currency: Some(p.currency),
            reference: format!("payment {}", p.id),
            time: now,
        };
        let (out, _) = self.store.record_deposit(&req)?;
        failpoint("payments.after_credit");
        self.credited(&out);
        Ok(out)
    }

    /// Crypto Pay's webhook (blocking): its signature, then an `invoice_paid` update of an
    /// invoice this server created.
    pub fn cryptopay_webhook(
        &self,
        header: Option<&[u8]>,
        body: &[u8],
        now: u64,
    ) -> Result<CryptoPayOutcome, WebhookError> {
        let cfg = self.config();
        if !self.enabled(Provider::Cryptopay) || cfg.cryptopay_token.is_empty() {
            return Err(WebhookError::Disabled("cryptopay"));
        }
        signature::verify_cryptopay(cfg.cryptopay_token.expose(), header, body)?;
        let Some((update, remote)) =
            cryptopay::parse_update(body).map_err(|e| WebhookError::Body(generic::BodyError::Shape(e)))?
        else {
            return Ok(CryptoPayOutcome::Ignored("not an invoice_paid update".into()));
        };
        let out = self.settle(&remote, now)?;
        if let CryptoPayOutcome::Deposit(d) = &out {
            failpoint("payments.after_credit");
            tracing::debug!(update, invoice = remote.invoice_id, new = d.is_new(), "Crypto Pay webhook");
        }
        Ok(out)
    }

    /// Settles what Crypto Pay says of an invoice (blocking): credits it when it is ours and
    /// paid as asked, marks it expired or disputed.
    fn settle(&self, remote: &RemoteInvoice, now: u64) -> Result<CryptoPayOutcome, StoreError> {
        let provider = Provider::Cryptopay.as_str();
        let id = remote.invoice_id.to_string();
        let Some(ours) = self.store.get_invoice(provider, &id)? else {
            return Ok(CryptoPayOutcome::Ignored(format!("invoice {id} was not created by this server")));
        };
        match cryptopay::verdict(remote, ours.amount, &ours.currency) {
            Verdict::Credit(_) => {
                let Settled::Deposit(out) =
                    self.store.credit_invoice(provider, &id, &format!("Crypto Pay invoice {id}"), now)?
                else {
                    return Err(StoreError::Corrupt("crediting an invoice marked it".into()));
                };
                self.credited(&out);
                Ok(CryptoPayOutcome::Deposit(*out))
            }
            Verdict::Pending => Ok(CryptoPayOutcome::Ignored(format!("invoice {id} is {}", remote.status))),
            Verdict::Expired => {
                self.store.mark_invoice(provider, &id, InvoiceStatus::Expired, None, now)?;
                Ok(CryptoPayOutcome::Ignored(format!("invoice {id} expired")))
            }
            Verdict::Mismatch(why) => {
                tracing::error!(invoice = %id, user = %ours.user, asked = %ours.amount, %why,
                    "ALERT: Crypto Pay reports a payment that does not match its invoice; not credited");
                self.store.mark_invoice(provider, &id, InvoiceStatus::Disputed, Some(why.clone()), now)?;
                Ok(CryptoPayOutcome::Disputed(why))
            }
        }
    }

    fn api_url(&self, method: &str) -> Result<url::Url, ApiFailure> {
        let base = config::check_api_url(&self.config().cryptopay_api_url).map_err(ApiFailure::Unavailable)?;
        let s = format!("{}/{method}", base.as_str().trim_end_matches('/'));
        url::Url::parse(&s).map_err(|e| ApiFailure::Unavailable(e.to_string()))
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        api: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<T, ApiFailure> {
        let mut url = self.api_url(api)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let token = self.config().cryptopay_token.expose().to_owned();
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        let a = self
            .http
            .send(method, &url, &[("Crypto-Pay-API-Token", token)], body)
            .await
            .map_err(ApiFailure::Unavailable)?;
        cryptopay::parse_answer(a.status, &a.body)
    }

    /// Creates a Crypto Pay invoice of `amount` (in the operator's currency) for `user`'s
    /// top-up and keeps it to watch; the poller starts looking at once.
    pub async fn create_invoice(self: &Arc<Self>, user: &str, amount: Micros) -> Result<Invoice, TopUpError> {
        let cfg = self.config();
        if !self.enabled(Provider::Cryptopay) || cfg.cryptopay_token.is_empty() {
            return Err(TopUpError::Disabled("Crypto Pay"));
        }
        if amount < cfg.min_topup {
            return Err(TopUpError::Invalid(format!("the smallest top-up is {}", cfg.min_topup)));
        }
        if amount > self.max_credit {
            return Err(TopUpError::Invalid(format!("the largest top-up is {}", self.max_credit)));
        }
        let (per_user, total) = (cfg.max_open_invoices_per_user as usize, cfg.max_open_invoices as usize);
        let (store, name) = (self.store.clone(), user.to_owned());
        let (mine, all) = tokio::task::spawn_blocking(move || store.open_invoice_counts(&name, now_secs()))
            .await
            .map_err(|e| StoreError::Invalid(e.to_string()))??;
        if mine >= per_user || all >= total {
            return Err(TopUpError::TooMany(format!(
                "too many unpaid invoices (at most {per_user} per user): pay one or wait for it to expire"
            )));
        }
        let req = cryptopay::create_request(
            &self.currency,
            amount,
            &cfg.cryptopay_accepted_assets,
            &format!("Top-up of {amount} {} for {user}", self.currency),
            &format!("traffix:{user}"),
            cfg.cryptopay_invoice_ttl_secs,
        );
        let remote: RemoteInvoice =
            self.call(Method::POST, "createInvoice", &[], Some(req)).await.map_err(TopUpError::Provider)?;
        // What Crypto Pay made must be what was asked, or its payment could never be credited.
        if !matches!(
            cryptopay::verdict(&RemoteInvoice { status: "paid".into(), ..remote.clone() }, amount, &self.currency),
            Verdict::Credit(_)
        ) {
            return Err(TopUpError::Provider(ApiFailure::Unavailable(format!(
                "invoice {} is not a fiat invoice of {amount} {}",
                remote.invoice_id, self.currency
            ))));
        }
        let pay_url = remote.pay_url().filter(|u| u.starts_with("https://") || u.starts_with("http://"));
        let Some(pay_url) = pay_url.map(str::to_owned) else {
            return Err(TopUpError::Provider(ApiFailure::Unavailable("the invoice has no payment link".into())));
        };
        let now = now_secs();
        let inv = Invoice {
            provider: Provider::Cryptopay.as_str().into(),
            invoice_id: remote.invoice_id.to_string(),
            user: user.to_owned(),
            amount,
            currency: self.currency.clone(),
            status: InvoiceStatus::Active,
            pay_url,
            created_at: now,
            expires_at: now + cfg.cryptopay_invoice_ttl_secs,
            transfer_id: None,
            note: None,
            updated_at: None,
        };
        let (store, i) = (self.store.clone(), inv.clone());
        tokio::task::spawn_blocking(move || store.add_invoice(&i, per_user, total))
            .await
            .map_err(|e| StoreError::Invalid(e.to_string()))??;
        tracing::info!(user, invoice = %inv.invoice_id, amount = %amount, "Crypto Pay invoice created");
        self.poke.notify_one();
        Ok(inv)
    }

    /// One look at the open Crypto Pay invoices: what is paid is credited, what expired marked.
    pub async fn poll_once(self: &Arc<Self>) -> PollOutcome {
        if !self.enabled(Provider::Cryptopay) || self.config().cryptopay_token.is_empty() {
            return PollOutcome::Unchanged;
        }
        let now = now_secs();
        let store = self.store.clone();
        let Ok(Ok(all)) =
            tokio::task::spawn_blocking(move || store.list_invoices(Some(Provider::Cryptopay.as_str()), None)).await
        else {
            return PollOutcome::Failed;
        };
        let retention = u64::from(self.config().expired_invoice_retention_days) * 86_400;
        let store = self.store.clone();
        if let Ok(Ok(n)) =
            tokio::task::spawn_blocking(move || store.prune_expired_invoices(now.saturating_sub(retention))).await
            && n > 0
        {
            tracing::info!(invoices = n, "expired invoices pruned");
        }
        let mut changed = false;
        let mut watch = Vec::new();
        for inv in all.into_iter().filter(|i| i.status == InvoiceStatus::Active) {
            if inv.open(now) {
                watch.push(inv);
            } else {
                // Past expiry and grace without word from Crypto Pay: given up (a late webhook
                // still credits it).
                let me = self.clone();
                let note = Some("no word from Crypto Pay before expiry".to_owned());
                let _ = tokio::task::spawn_blocking(move || {
                    me.store.mark_invoice(&inv.provider, &inv.invoice_id, InvoiceStatus::Expired, note, now)
                })
                .await;
                changed = true;
            }
        }
        for batch in watch.chunks(cryptopay::POLL_BATCH) {
            let ids: Vec<String> = batch.iter().map(|i| i.invoice_id.clone()).collect();
            let query = [("invoice_ids", ids.join(",")), ("count", batch.len().to_string())];
            let list: InvoiceList = match self.call(Method::GET, "getInvoices", &query, None).await {
                Ok(l) => l,
                Err(e) => {
                    if WEBHOOK_LOG.admit_now("Crypto Pay calls") {
                        tracing::warn!(error = %e, "Crypto Pay getInvoices failed; backing off");
                    }
                    return PollOutcome::Failed;
                }
            };
            for remote in list.into_vec() {
                if !ids.contains(&remote.invoice_id.to_string()) || remote.status == "active" {
                    continue;
                }
                let me = self.clone();
                match tokio::task::spawn_blocking(move || me.settle(&remote, now_secs())).await {
                    Ok(Ok(CryptoPayOutcome::Ignored(_))) => changed = true,
                    Ok(Ok(_)) => changed = true,
                    Ok(Err(e)) => tracing::error!(error = %e, "settling a Crypto Pay invoice failed"),
                    Err(e) => tracing::error!(error = %e, "settling a Crypto Pay invoice failed"),
                }
            }
        }
        if changed { PollOutcome::Changed } else { PollOutcome::Unchanged }
    }

    /// Looks at open invoices until shutdown: at `cryptopay_poll_secs` after an invoice is
    /// created or one settles, doubling up to `cryptopay_poll_max_secs` while nothing changes.
    pub async fn run_poller(self: Arc<Self>, mut shutdown: Shutdown) {
        let cfg = self.config();
        let (min, max) =
            (Duration::from_secs(cfg.cryptopay_poll_secs), Duration::from_secs(cfg.cryptopay_poll_max_secs));
        let mut delay = min;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.poke.notified() => {
                    delay = min;
                    continue;
                }
                _ = shutdown.recv() => return,
            }
            let outcome = self.poll_once().await;
            delay = cryptopay::next_delay(delay, outcome, min, max);
        }
    }

    /// Files the automatic withdrawal requests of payout profiles with a threshold, every
    /// `auto_withdraw_interval_secs` until shutdown.
    pub async fn run_auto_withdrawals(self: Arc<Self>, min_payout: MinPayout, mut shutdown: Shutdown) {
        let every = Duration::from_secs(self.config().auto_withdraw_interval_secs);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.recv() => return,
            }
            let (store, min) = (self.store.clone(), min_payout());
            let done = tokio::task::spawn_blocking(move || auto_withdrawals(&store, min, now_secs())).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "automatic withdrawals failed");
            }
        }
    }
}

/// One round of automatic withdrawal requests (blocking): how many were filed.
pub fn auto_withdrawals(store: &Store, min_payout: Micros, now: u64) -> Result<usize, StoreError> {
    let mut n = 0;
    for (user, p) in store.auto_payout_profiles()? {
        let Some(threshold) = p.auto_threshold else { continue };
        match store.auto_withdrawal(&user, threshold, min_payout, Some(p.destination()), now) {
            Ok(Some(w)) => {
                tracing::info!(user = %user, amount = %w.amount, withdrawal = w.id, "automatic withdrawal requested");
                n += 1;
            }
            Ok(None) => {}
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
