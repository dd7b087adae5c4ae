//! Payments and payouts (`traffix payment …`, `traffix payout …`): deposit receipts and the
//! refunds and chargebacks recorded against them, provider invoices, payout profiles (where a
//! node owner is paid, and the automatic request threshold), the batch export of approved
//! payouts and marking them paid, and the payment settings (enabled providers, write-only
//! secrets, rates).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::views::{WithdrawalView, rfc3339};
use super::{AdminCtx, AdminError, Audit, Command, Window, checked_reason};
use crate::money::{Micros, format_signed};
use crate::payments::config::{MIN_GENERIC_SECRET, Provider};
use crate::secret::Secret;
use crate::store::{
    Deposit, DepositReturn, Invoice, PayoutProfile, ReturnKind, ReturnRequest, WithdrawalStatus, now_secs,
};

/// One refund or chargeback on a receipt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReturnView {
    /// `refund` or `chargeback`.
    pub kind: String,
    pub id: String,
    pub claimed: String,
    pub claimed_micros: u64,
    /// What was taken back from the user (at most what was unspent).
    pub recovered: String,
    pub recovered_micros: u64,
    pub transfer_id: Option<String>,
    pub time: String,
    pub reason: String,
    pub actor: String,
}

impl From<&DepositReturn> for ReturnView {
    fn from(r: &DepositReturn) -> Self {
        ReturnView {
            kind: r.kind.as_str().into(),
            id: r.id.clone(),
            claimed: r.claimed.to_string(),
            claimed_micros: r.claimed.0,
            recovered: r.recovered.to_string(),
            recovered_micros: r.recovered.0,
            transfer_id: r.transfer_id.clone(),
            time: rfc3339(r.time),
            reason: r.reason.clone(),
            actor: r.actor.clone(),
        }
    }
}

/// A deposit's receipt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DepositView {
    /// The deposit transfer's id and sequence number.
    pub transfer_id: String,
    pub seq: u64,
    /// `admin`, `generic`, `cryptopay` or `stars`.
    pub provider: String,
    /// The provider's payment id.
    pub external_id: String,
    pub user: String,
    pub amount: String,
    pub amount_micros: u64,
    /// The currency the provider reported (`null`: the operator's own, e.g. an admin credit).
    pub currency: Option<String>,
    pub time: String,
    pub time_unix: u64,
    pub reference: String,
    /// `credited`, `partially_refunded`, `refunded`, `charged_back` or `reversed`.
    pub status: String,
    /// What refunds and chargebacks claimed back, what they took from the user, and the rest
    /// (left to the operator: never taken as an overdraft).
    pub claimed_micros: u64,
    pub recovered_micros: u64,
    pub unrecovered_micros: u64,
    pub returns: Vec<ReturnView>,
    pub reversed_by: Option<String>,
}

impl From<&Deposit> for DepositView {
    fn from(d: &Deposit) -> Self {
        DepositView {
            transfer_id: d.transfer_id.clone(),
            seq: d.seq,
            provider: d.provider.clone(),
            external_id: d.external_id.clone(),
            user: d.user.clone(),
            amount: d.amount.to_string(),
            amount_micros: d.amount.0,
            currency: d.currency.clone(),
            time: rfc3339(d.time),
            time_unix: d.time,
            reference: d.reference.clone(),
            status: d.status().into(),
            claimed_micros: d.claimed().0,
            recovered_micros: d.recovered().0,
            unrecovered_micros: d.unrecovered().0,
            returns: d.returns.iter().map(ReturnView::from).collect(),
            reversed_by: d.reversed_by.clone(),
        }
    }
}

/// What a refund or chargeback did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReturnOutcomeView {
    pub deposit: DepositView,
    #[serde(rename = "return")]
    pub ret: ReturnView,
    /// `false`: the same return id was recorded before; nothing changed.
    pub new: bool,
    /// The user's posted balance after it.
    pub balance_micros: i64,
    pub balance: String,
}

/// A provider invoice of a user's top-up.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceView {
    pub provider: String,
    pub invoice_id: String,
    pub user: String,
    pub amount: String,
    pub amount_micros: u64,
    pub currency: String,
    /// `active`, `credited`, `expired` or `disputed`.
    pub status: String,
    /// Where the payer pays.
    pub pay_url: String,
    pub created_at: String,
    pub expires_at: String,
    pub transfer_id: Option<String>,
    /// Why a disputed invoice was not credited.
    pub note: Option<String>,
}

impl From<&Invoice> for InvoiceView {
    fn from(i: &Invoice) -> Self {
        InvoiceView {
            provider: i.provider.clone(),
            invoice_id: i.invoice_id.clone(),
            user: i.user.clone(),
            amount: i.amount.to_string(),
            amount_micros: i.amount.0,
            currency: i.currency.clone(),
            status: i.status.as_str().into(),
            pay_url: i.pay_url.clone(),
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
            transfer_id: i.transfer_id.clone(),
            note: i.note.clone(),
        }
    }
}

/// Where a user is paid out, and the automatic request threshold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PayoutProfileView {
    pub user: String,
    /// How (`bank`, `usdt-trc20`, `paypal`, … in the operator's words); `null`: not set.
    pub method: Option<String>,
    /// Where (an IBAN, a wallet address, an e-mail).
    pub details: Option<String>,
    /// A withdrawal of everything available is requested once it reaches this; `null`: off.
    pub auto_threshold: Option<String>,
    pub auto_threshold_micros: Option<u64>,
    /// The smallest withdrawal (and threshold).
    pub min_payout: String,
    pub min_payout_micros: u64,
    pub updated_at: Option<String>,
}

/// One approved payout to pay outside (the batch export).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PayoutRow {
    pub id: u64,
    pub user: String,
    pub amount: String,
    pub amount_micros: u64,
    /// Where to pay: the withdrawal's destination, or the user's payout profile now.
    pub destination: Option<String>,
    pub requested_at: String,
    pub approved_at: Option<String>,
    pub approved_by: Option<String>,
    /// Requested by the user's automatic threshold.
    pub auto: bool,
    pub paid_at: Option<String>,
    pub paid_reference: Option<String>,
}

/// The payment settings in force (secrets never: only whether they are set).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentSettingsView {
    /// The providers that take payments: `stars`, `cryptopay`, `generic`.
    pub enabled: Vec<String>,
    pub generic_secret_set: bool,
    pub cryptopay_token_set: bool,
    /// Telegram Stars for one currency unit.
    pub stars_per_unit: u32,
    /// The smallest top-up from the portal.
    pub min_topup: String,
    pub min_topup_micros: u64,
    /// Where providers call: the generic webhook and the Crypto Pay webhook (set it in the
    /// Crypto Pay app), under this server's public address.
    pub generic_webhook_path: String,
    pub cryptopay_webhook_path: String,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}

/// Deposit receipts, newest first; of one user, one provider.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DepositList {
    pub user: Option<String>,
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Window::is_all")]
    pub window: Window,
}

/// Records a refund or a chargeback against a deposit: what is claimed (default: all not yet
/// claimed) is taken back from the user as far as it is unspent; the rest stays on the receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositReturnCmd {
    /// The deposit: its transfer id (`deposit:generic:ord-1`), `PROVIDER:ID` or its sequence number.
    pub deposit: String,
    /// `refund` or `chargeback`.
    pub kind: String,
    /// Currency units; `None`: everything not claimed yet.
    #[serde(default)]
    pub amount: Option<String>,
    /// The provider's id of the refund (a replay changes nothing).
    #[serde(default)]
    pub id: Option<String>,
    pub reason: String,
}

/// Provider invoices, newest first; of one user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InvoiceList {
    pub user: Option<String>,
}

/// A user's payout profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayoutProfileShow {
    pub name: String,
}

/// Saves a user's payout profile (`clear` forgets it); absent fields stay as they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayoutProfileSet {
    pub name: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    /// Currency units, at least the minimum payout; `""` or `"off"` turns it off.
    #[serde(default)]
    pub auto_threshold: Option<String>,
    #[serde(default)]
    pub clear: bool,
}

/// Approved payouts to pay outside, oldest first (with `include_paid`, those marked paid too).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PayoutExport {
    #[serde(default)]
    pub include_paid: bool,
}

/// Marks approved payouts as paid outside, all or none, with the payment's reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayoutMarkPaid {
    pub ids: Vec<u64>,
    pub reference: String,
}

/// The payment settings in force.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PaymentSettingsShow {}

/// Changes payment settings at run time (they override traffix.toml); absent fields stay.
/// Secrets can be replaced, never read back.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct PaymentSettingsSet {
    #[serde(default)]
    pub enabled: Option<Vec<String>>,
    #[serde(default)]
    pub generic_secret: Option<String>,
    #[serde(default)]
    pub cryptopay_token: Option<String>,
    #[serde(default)]
    pub stars_per_unit: Option<u32>,
    #[serde(default)]
    pub min_topup: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl std::fmt::Debug for PaymentSettingsSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mask = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("PaymentSettingsSet")
            .field("enabled", &self.enabled)
            .field("generic_secret", &mask(&self.generic_secret))
            .field("cryptopay_token", &mask(&self.cryptopay_token))
            .field("stars_per_unit", &self.stars_per_unit)
            .field("min_topup", &self.min_topup)
            .field("reason", &self.reason)
            .finish()
    }
}

/// The API path of the generic webhook.
pub const GENERIC_WEBHOOK_PATH: &str = "/api/v1/payments/generic/webhook";
/// The API path of Crypto Pay's webhook.
pub const CRYPTOPAY_WEBHOOK_PATH: &str = "/api/v1/payments/cryptopay/webhook";

impl Command for DepositList {
    type Output = Vec<DepositView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<DepositView>, AdminError> {
        if let Some(u) = &self.user {
            ctx.require_user(u)?;
        }
        let list = ctx.store.list_deposits(self.user.as_deref())?;
        let list: Vec<Deposit> =
            list.into_iter().filter(|d| self.provider.as_ref().is_none_or(|p| &d.provider == p)).collect();
        let list = self.window.apply_keyed(list, |d| d.seq, |d| d.time);
        Ok(list.iter().map(DepositView::from).collect())
    }
}

impl AdminCtx {
    /// Finds a deposit by its transfer id, `PROVIDER:ID` (or an admin credit's `ID`) or its
    /// sequence number.
    fn find_deposit(&self, which: &str) -> Result<Deposit, AdminError> {
        let which = which.trim();
        let not_found = || AdminError::new("not_found", format!("no deposit {which:?}"));
        if which.is_empty() || which.len() > 300 {
            return Err(not_found());
        }
        if which.bytes().all(|b| b.is_ascii_digit()) {
            let seq: u64 = which.parse().map_err(|_| not_found())?;
            return self.store.list_deposits(None)?.into_iter().find(|d| d.seq == seq).ok_or_else(not_found);
        }
        if let Some(d) = self.store.get_deposit(which)? {
            return Ok(d);
        }
        self.store.get_deposit(&format!("deposit:{which}"))?.ok_or_else(not_found)
    }
}

impl Command for DepositReturnCmd {
    type Output = ReturnOutcomeView;

    fn audit(&self) -> Option<Audit> {
        let action = if self.kind == "chargeback" { "deposit.chargeback" } else { "deposit.refund" };
        Some(Audit::new(action, self.deposit.trim()).reason(Some(self.reason.trim().to_owned())))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        serde_json::to_value(DepositView::from(&ctx.find_deposit(&self.deposit).ok()?)).ok()
    }

    fn run(self, ctx: &AdminCtx, actor: &str) -> Result<ReturnOutcomeView, AdminError> {
        let reason = checked_reason(&self.reason)?;
        let kind = ReturnKind::parse(self.kind.trim())
            .ok_or_else(|| AdminError::new("invalid", "the kind is \"refund\" or \"chargeback\""))?;
        let amount = match self.amount.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            None => None,
            Some(a) => {
                let m = Micros::parse(a).map_err(|e| AdminError::new("invalid", e.to_string()))?;
                if m.0 == 0 {
                    return Err(AdminError::new("invalid", "amount must be greater than zero"));
                }
                Some(m)
            }
        };
        let d = ctx.find_deposit(&self.deposit)?;
        let req = ReturnRequest {
            transfer_id: d.transfer_id,
            kind,
            id: self.id.map(|i| i.trim().to_owned()).filter(|i| !i.is_empty()),
            amount,
            reason,
            actor: actor.to_owned(),
            time: now_secs(),
        };
        let out = ctx.store.return_deposit(&req)?;
        ctx.invalidate(&out.deposit.user);
        tracing::info!(deposit = %out.deposit.transfer_id, user = %out.deposit.user, kind = kind.as_str(),
            claimed = %out.ret.claimed, recovered = %out.ret.recovered, new = out.new, "deposit return recorded");
        Ok(ReturnOutcomeView {
            deposit: DepositView::from(&out.deposit),
            ret: ReturnView::from(&out.ret),
            new: out.new,
            balance_micros: out.balance,
            balance: format_signed(out.balance),
        })
    }
}

impl Command for InvoiceList {
    type Output = Vec<InvoiceView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<InvoiceView>, AdminError> {
        if let Some(u) = &self.user {
            ctx.require_user(u)?;
        }
        let mut list = ctx.store.list_invoices(None, self.user.as_deref())?;
        list.reverse();
        Ok(list.iter().map(InvoiceView::from).collect())
    }
}

impl AdminCtx {
    fn payout_profile_view(&self, name: &str) -> Result<PayoutProfileView, AdminError> {
        let p = self.store.payout_profile(name)?;
        let min = self.money().min_payout;
        Ok(PayoutProfileView {
            user: name.to_owned(),
            method: p.as_ref().map(|p| p.method.clone()),
            details: p.as_ref().map(|p| p.details.clone()),
            auto_threshold: p.as_ref().and_then(|p| p.auto_threshold).map(|m| m.to_string()),
            auto_threshold_micros: p.as_ref().and_then(|p| p.auto_threshold).map(|m| m.0),
            min_payout: min.to_string(),
            min_payout_micros: min.0,
            updated_at: p.map(|p| rfc3339(p.updated_at)),
        })
    }
}

impl Command for PayoutProfileShow {
    type Output = PayoutProfileView;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<PayoutProfileView, AdminError> {
        ctx.require_user(&self.name)?;
        ctx.payout_profile_view(&self.name)
    }
}

/// Free text an operator pays to: trimmed, 1–`max` characters, no control characters.
fn free_text(what: &str, s: &str, max: usize) -> Result<String, AdminError> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(AdminError::new("invalid", format!("{what} is 1-{max} characters without control characters")));
    }
    Ok(s.to_owned())
}

impl Command for PayoutProfileSet {
    type Output = PayoutProfileView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("payout.profile", &self.name))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        serde_json::to_value(ctx.payout_profile_view(&self.name).ok()?).ok()
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<PayoutProfileView, AdminError> {
        ctx.require_user(&self.name)?;
        if self.clear {
            ctx.store.set_payout_profile(&self.name, None)?;
            return ctx.payout_profile_view(&self.name);
        }
        let old = ctx.store.payout_profile(&self.name)?;
        let method = match (&self.method, &old) {
            (Some(m), _) => free_text("the method", m, 32)?,
            (None, Some(o)) => o.method.clone(),
            (None, None) => return Err(AdminError::new("invalid", "give a payout method (e.g. bank, usdt-trc20)")),
        };
        let details = match (&self.details, &old) {
            (Some(d), _) => free_text("the payout details", d, 500)?,
            (None, Some(o)) => o.details.clone(),
            (None, None) => return Err(AdminError::new("invalid", "give the payout details (e.g. an IBAN)")),
        };
        let min = ctx.money().min_payout;
        let auto_threshold = match self.auto_threshold.as_deref().map(str::trim) {
            None => old.as_ref().and_then(|o| o.auto_threshold),
            Some("" | "off") => None,
            Some(t) => {
                let m = Micros::parse(t).map_err(|e| AdminError::new("invalid", format!("threshold: {e}")))?;
                if m < min {
                    return Err(AdminError::new(
                        "invalid",
                        format!("the automatic threshold must be at least the minimum payout ({min})"),
                    ));
                }
                Some(m)
            }
        };
        let p = PayoutProfile { method, details, auto_threshold, updated_at: now_secs() };
        ctx.store.set_payout_profile(&self.name, Some(&p))?;
        ctx.payout_profile_view(&self.name)
    }
}

impl Command for PayoutExport {
    type Output = Vec<PayoutRow>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<PayoutRow>, AdminError> {
        let mut list = ctx.store.list_withdrawals(None, Some(WithdrawalStatus::Approved))?;
        list.reverse();
        let mut out = Vec::new();
        for w in list.into_iter().filter(|w| self.include_paid || w.paid_at.is_none()) {
            let destination = match &w.destination {
                Some(d) => Some(d.clone()),
                None => ctx.store.payout_profile(&w.user)?.map(|p| p.destination()),
            };
            out.push(PayoutRow {
                id: w.id,
                user: w.user.clone(),
                amount: w.amount.to_string(),
                amount_micros: w.amount.0,
                destination,
                requested_at: rfc3339(w.requested_at),
                approved_at: w.decided_at.map(rfc3339),
                approved_by: w.decided_by.clone(),
                auto: w.auto,
                paid_at: w.paid_at.map(rfc3339),
                paid_reference: w.paid_reference.clone(),
            });
        }
        Ok(out)
    }
}

/// The most withdrawals one mark-paid batch takes.
pub const MAX_BATCH: usize = 10_000;

impl Command for PayoutMarkPaid {
    type Output = Vec<WithdrawalView>;

    fn audit(&self) -> Option<Audit> {
        let ids: Vec<String> = self.ids.iter().take(50).map(u64::to_string).collect();
        Some(Audit::new("payout.mark_paid", ids.join(",")).reason(Some(self.reference.trim().to_owned())))
    }

    fn run(self, ctx: &AdminCtx, actor: &str) -> Result<Vec<WithdrawalView>, AdminError> {
        let reference = free_text("the payment reference", &self.reference, 200)?;
        if self.ids.is_empty() || self.ids.len() > MAX_BATCH {
            return Err(AdminError::new("invalid", format!("give 1-{MAX_BATCH} withdrawal numbers")));
        }
        let mut ids = self.ids;
        ids.sort_unstable();
        ids.dedup();
        let paid = ctx.store.mark_withdrawals_paid(&ids, actor, &reference, now_secs())?;
        tracing::info!(count = paid.len(), reference = %reference, "payouts marked paid");
        for w in &paid {
            ctx.notify(crate::notify::Event::Withdrawal {
                user: w.user.clone(),
                id: w.id,
                amount: w.amount,
                outcome: crate::notify::WithdrawalOutcome::Paid,
                reason: Some(reference.clone()),
            });
        }
        Ok(paid.iter().map(WithdrawalView::from).collect())
    }
}

impl AdminCtx {
    fn payment_settings_view(&self) -> PaymentSettingsView {
        let r = self.money().payments;
        let changed = self.store.payment_settings().ok().flatten();
        PaymentSettingsView {
            enabled: r.enabled_names(),
            generic_secret_set: r.generic_secret_set,
            cryptopay_token_set: r.cryptopay_token_set,
            stars_per_unit: r.stars_per_unit,
            min_topup: r.min_topup.to_string(),
            min_topup_micros: r.min_topup.0,
            generic_webhook_path: GENERIC_WEBHOOK_PATH.into(),
            cryptopay_webhook_path: CRYPTOPAY_WEBHOOK_PATH.into(),
            updated_at: changed.as_ref().map(|c| rfc3339(c.updated_at)),
            updated_by: changed.map(|c| c.updated_by),
        }
    }
}

impl Command for PaymentSettingsShow {
    type Output = PaymentSettingsView;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<PaymentSettingsView, AdminError> {
        Ok(ctx.payment_settings_view())
    }
}

impl Command for PaymentSettingsSet {
    type Output = PaymentSettingsView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("settings.update", "payments").reason(self.reason.clone()))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        serde_json::to_value(ctx.payment_settings_view()).ok()
    }

    fn run(self, ctx: &AdminCtx, actor: &str) -> Result<PaymentSettingsView, AdminError> {
        let PaymentSettingsSet { enabled, generic_secret, cryptopay_token, stars_per_unit, min_topup, .. } = self;
        if enabled.is_none()
            && generic_secret.is_none()
            && cryptopay_token.is_none()
            && stars_per_unit.is_none()
            && min_topup.is_none()
        {
            return Err(AdminError::new("invalid", "nothing to change"));
        }
        let mut m = ctx.money();
        let mut stored = ctx.store.payment_settings()?.unwrap_or_default();
        if let Some(list) = enabled {
            let mut names = Vec::new();
            for n in &list {
                let p = Provider::parse(n.trim()).ok_or_else(|| {
                    AdminError::new("invalid", format!("unknown provider {n:?} (stars, cryptopay, generic)"))
                })?;
                if !names.contains(&p.as_str().to_owned()) {
                    names.push(p.as_str().to_owned());
                }
            }
            m.payments.stars = names.iter().any(|n| n == "stars");
            m.payments.cryptopay = names.iter().any(|n| n == "cryptopay");
            m.payments.generic = names.iter().any(|n| n == "generic");
            stored.enabled = Some(names);
        }
        if let Some(s) = generic_secret {
            let s = s.trim().to_owned();
            if s.len() < MIN_GENERIC_SECRET || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AdminError::new(
                    "invalid",
                    format!("the generic secret is {MIN_GENERIC_SECRET}-256 visible ASCII characters"),
                ));
            }
            stored.generic_secret = Some(Secret::new(s));
            m.payments.generic_secret_set = true;
        }
        if let Some(t) = cryptopay_token {
            let t = t.trim().to_owned();
            if t.is_empty() || t.len() > 256 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AdminError::new("invalid", "the Crypto Pay token is 1-256 visible ASCII characters"));
            }
            stored.cryptopay_token = Some(Secret::new(t));
            m.payments.cryptopay_token_set = true;
        }
        if let Some(s) = stars_per_unit {
            if s == 0 {
                return Err(AdminError::new("invalid", "stars per unit must be at least 1"));
            }
            stored.stars_per_unit = Some(s);
            m.payments.stars_per_unit = s;
        }
        if let Some(t) = min_topup {
            let v = Micros::parse(&t).map_err(|e| AdminError::new("invalid", format!("minimum top-up: {e}")))?;
            if v.0 == 0 || v > m.max_credit {
                return Err(AdminError::new(
                    "invalid",
                    format!("the minimum top-up must be greater than zero and at most {}", m.max_credit),
                ));
            }
            stored.min_topup = Some(v);
            m.payments.min_topup = v;
        }
        if m.payments.generic && !m.payments.generic_secret_set {
            return Err(AdminError::new("invalid", "set the generic secret before enabling the generic webhook"));
        }
        if m.payments.cryptopay && !m.payments.cryptopay_token_set {
            return Err(AdminError::new("invalid", "set the Crypto Pay token before enabling Crypto Pay"));
        }
        stored.updated_at = now_secs();
        stored.updated_by = actor.to_owned();
        ctx.store.set_payment_settings(&stored)?;
        crate::sync::write(&ctx.money, m);
        if let Some(l) = &ctx.live {
            (l.payments_changed)();
        }
        tracing::info!(enabled = ?m.payments.enabled_names(), %actor, "payment settings changed");
        Ok(ctx.payment_settings_view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{UserAdd, test_ctx};

    #[test]
    fn settings_never_show_secrets_and_need_them_before_enabling() {
        let (_d, ctx) = test_ctx();
        let e = ctx
            .execute(PaymentSettingsSet { enabled: Some(vec!["generic".into()]), ..Default::default() })
            .unwrap_err();
        assert!(e.reason.contains("generic secret"), "{e:?}");
        let short = PaymentSettingsSet { generic_secret: Some("short".into()), ..Default::default() };
        assert!(ctx.execute(short).is_err());
        let secret = "s3cr3t-".repeat(6);
        let set = PaymentSettingsSet {
            enabled: Some(vec!["generic".into(), "generic".into()]),
            generic_secret: Some(secret.clone()),
            min_topup: Some("2.50".into()),
            ..Default::default()
        };
        assert!(!format!("{set:?}").contains(&secret), "Debug masks the secret");
        let v = ctx.execute(set).unwrap();
        assert_eq!(v.enabled, ["generic"]);
        assert!(v.generic_secret_set && !v.cryptopay_token_set);
        assert_eq!(v.min_topup_micros, 2_500_000);
        let shown = serde_json::to_string(&ctx.execute(PaymentSettingsShow {}).unwrap()).unwrap();
        assert!(!shown.contains(&secret), "{shown}");
        let audit = ctx.store.list_audit(&Window::default()).unwrap();
        assert!(!serde_json::to_string(&audit).unwrap().contains(&secret), "the audit log holds no secret");
        assert!(
            ctx.execute(PaymentSettingsSet { enabled: Some(vec!["paypal".into()]), ..Default::default() }).is_err()
        );
    }

    #[test]
    fn payout_profiles_keep_a_threshold_at_or_above_the_minimum_payout() {
        let (_d, ctx) = test_ctx();
        ctx.execute(UserAdd { name: "owner".into(), password: Some("pw-owner-1".into()), admin: false }).unwrap();
        let set = |method: Option<&str>, details: Option<&str>, t: Option<&str>| PayoutProfileSet {
            name: "owner".into(),
            method: method.map(Into::into),
            details: details.map(Into::into),
            auto_threshold: t.map(Into::into),
            clear: false,
        };
        assert!(ctx.execute(set(None, Some("DE00"), None)).is_err(), "a method first");
        assert!(ctx.execute(set(Some("bank"), Some("DE00\n1"), None)).is_err(), "no control characters");
        let e = ctx.execute(set(Some("bank"), Some("IBAN DE00 1234"), Some("4.99"))).unwrap_err();
        assert!(e.reason.contains("at least the minimum payout (5.00)"), "{e:?}");
        let v = ctx.execute(set(Some("bank"), Some("IBAN DE00 1234"), Some("25"))).unwrap();
        assert_eq!((v.method.as_deref(), v.auto_threshold_micros), (Some("bank"), Some(25_000_000)));
        let v = ctx.execute(set(None, Some("IBAN DE99"), None)).unwrap();
        assert_eq!((v.details.as_deref(), v.auto_threshold.as_deref()), (Some("IBAN DE99"), Some("25.00")), "kept");
        let v = ctx.execute(set(None, None, Some("off"))).unwrap();
        assert_eq!(v.auto_threshold, None);
        let cleared = PayoutProfileSet { clear: true, ..set(None, None, None) };
        assert_eq!(ctx.execute(cleared).unwrap().method, None);
        assert!(ctx.execute(PayoutProfileShow { name: "nobody".into() }).is_err());
    }
}
