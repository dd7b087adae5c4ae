//! User commands (`traffix user …`): add, list, show, credit, adjust, password,
//! proxy-password, disable and enable — and the user view, whose balance is the posted one
//! minus unposted accruals.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::views::{CorrectionView, CreditView, PasswordView, ProxyPasswordView, UserView, rfc3339};
use super::{AdminCtx, AdminError, Audit, Command, Window, checked_reason, valid_name};
use crate::money::{Micros, format_signed, parse_signed};
use crate::relay::live::Cut;
use crate::store::{Account, UserRecord, WithdrawalStatus, now_secs};
use crate::tunnel::protocol::ErrorCode;

/// Adds a user; a login password is generated, and returned once, unless given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserAdd {
    pub name: String,
    pub password: Option<String>,
    pub admin: bool,
}

/// Users created inside `window`, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserList {
    #[serde(default, skip_serializing_if = "Window::is_all")]
    pub window: Window,
}

/// One user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserShow {
    pub name: String,
}

/// Credits a user's balance (a deposit from `external:deposits`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserCredit {
    /// Idempotency key of an external payment: a replay credits once.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// Currency units, e.g. `12.50`.
    pub amount: String,
    pub reason: Option<String>,
}

/// Corrects a user's balance by a signed amount, against `platform:adjustments`, with a reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserAdjust {
    pub name: String,
    /// Signed currency units, e.g. `-13.50` or `+2`.
    pub amount: String,
    pub reason: String,
}

/// Sets a user's login password (given, or generated and returned once) and signs out its
/// logins — all of them, or all but `keep_login` when users change their own.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserPassword {
    pub name: String,
    /// The new password; `None` generates one.
    pub password: Option<String>,
    /// A login (refresh-token family) that stays signed in.
    #[serde(default)]
    pub keep_login: Option<String>,
}

impl std::fmt::Debug for UserPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPassword")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("keep_login", &self.keep_login)
            .finish()
    }
}

/// Rotates a user's proxy password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserProxyPassword {
    pub name: String,
}

/// Disables a user: proxy access, logins and pairing stop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDisable {
    pub name: String,
    pub reason: Option<String>,
}

/// Re-enables a disabled user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserEnable {
    pub name: String,
}

impl Command for UserAdd {
    type Output = UserView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("user.add", &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<UserView, AdminError> {
        let UserAdd { name, password, admin } = self;
        if !valid_name(&name) {
            return Err(AdminError::new(
                "invalid",
                format!("user name {name:?} must be 3-32 characters of a-z, 0-9 and _"),
            ));
        }
        let generated = password.is_none();
        let password = match password {
            Some(p) => p,
            None => crate::auth::new_login_password().map_err(|e| AdminError::new("internal", e.to_string()))?,
        };
        crate::auth::check_login_password(&password).map_err(|e| AdminError::new("invalid", e))?;
        let hash = crate::auth::hash_password(&password).map_err(|e| AdminError::new("internal", e.to_string()))?;
        let proxy_password =
            crate::auth::new_proxy_password().map_err(|e| AdminError::new("internal", e.to_string()))?;
        let user =
            UserRecord { admin, password_hash: Some(hash), ..UserRecord::new(&name, &proxy_password, now_secs()) };
        ctx.store.create_user(&user)?;
        tracing::info!(user = %name, admin, "user added");
        let mut v = ctx.user_view(&user)?;
        if generated {
            v.password = Some(password);
        }
        Ok(v)
    }
}

impl Command for UserList {
    type Output = Vec<UserView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<UserView>, AdminError> {
        let mut users = ctx.store.list_users()?;
        users.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        let users = self.window.apply(users, |u| u.created_at);
        let totals = ctx.user_totals()?;
        users.iter().map(|u| ctx.user_view_with(u, &totals)).collect()
    }
}

impl Command for UserShow {
    type Output = UserView;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<UserView, AdminError> {
        let name = self.name;
        let u = ctx.store.get_user(&name)?.ok_or_else(|| AdminError::new("not_found", format!("no user {name:?}")))?;
        ctx.user_view(&u)
    }
}

impl Command for UserCredit {
    type Output = CreditView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("user.credit", &self.name).reason(self.reason.clone()))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.user_before(&self.name)
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<CreditView, AdminError> {
        let UserCredit { id, name, amount, reason } = self;
        let amount = Micros::parse(&amount).map_err(|e| AdminError::new("invalid", e.to_string()))?;
        if amount.0 == 0 {
            return Err(AdminError::new("invalid", "amount must be greater than zero"));
        }
        let max = ctx.money().max_credit;
        if amount > max {
            return Err(AdminError::new(
                "invalid",
                format!("a single credit is at most {max} (billing.max_credit); split a larger sum"),
            ));
        }
        if ctx.store.get_user(&name)?.is_none() {
            return Err(AdminError::new("not_found", format!("no user {name:?}")));
        }
        let (tid, external_id) = match id {
            Some(id) if !crate::store::valid_external_id(&id) => {
                return Err(AdminError::new("invalid", "--id must be 1-128 visible ASCII characters (no spaces)"));
            }
            Some(id) => (crate::store::deposit_transfer_id(crate::store::ADMIN_PROVIDER, &id), id),
            None => {
                let hex = hex::encode(
                    crate::auth::random_bytes::<8>().map_err(|e| AdminError::new("internal", e.to_string()))?,
                );
                (format!("admin-credit:{hex}"), format!("admin-credit:{hex}"))
            }
        };
        let reference = reason.unwrap_or_else(|| "admin credit".into());
        let req = crate::store::DepositRequest {
            transfer_id: Some(tid),
            provider: crate::store::ADMIN_PROVIDER.into(),
            external_id,
            user: name.clone(),
            amount,
            currency: None,
            reference,
            time: now_secs(),
        };
        let (out, bal) = ctx.store.record_deposit(&req)?;
        let tr = out.deposit();
        ctx.invalidate(&name);
        if let Some(l) = &ctx.live {
            (l.credited)(&name);
        }
        tracing::info!(user = %name, amount = %amount, transfer = tr.seq, "admin credit");
        if out.is_new() {
            ctx.notify(crate::notify::Event::Deposit { user: name.clone(), amount, provider: "operator".into() });
        }
        Ok(CreditView::new(&name, amount, tr.seq, bal))
    }
}

impl Command for UserAdjust {
    type Output = CorrectionView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("user.adjust", &self.name).reason(Some(self.reason.trim().to_owned())))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.user_before(&self.name)
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<CorrectionView, AdminError> {
        let UserAdjust { name, amount, reason } = self;
        let reason = checked_reason(&reason)?;
        let delta = parse_signed(&amount).map_err(|e| AdminError::new("invalid", e.to_string()))?;
        if delta == 0 {
            return Err(AdminError::new("invalid", "an adjustment of zero changes nothing"));
        }
        let max = ctx.money().max_credit;
        if delta > 0 && Micros(delta.unsigned_abs()) > max {
            return Err(AdminError::new(
                "invalid",
                format!("a single adjustment is at most {max} (billing.max_credit); split a larger sum"),
            ));
        }
        let id = format!(
            "adjustment:{}",
            hex::encode(crate::auth::random_bytes::<8>().map_err(|e| AdminError::new("internal", e.to_string()))?)
        );
        let c = ctx.store.adjust(&name, delta, &id, &reason, now_secs())?;
        ctx.after_correction(&c);
        tracing::info!(user = %name, amount = %format_signed(delta), transfer = c.transfer.seq, "adjustment");
        Ok(CorrectionView::from(&c))
    }
}

impl Command for UserPassword {
    type Output = PasswordView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("user.password", &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<PasswordView, AdminError> {
        let UserPassword { name, password, keep_login } = self;
        if ctx.store.get_user(&name)?.is_none() {
            return Err(AdminError::new("not_found", format!("no user {name:?}")));
        }
        let generated = password.is_none();
        let password = match password {
            Some(p) => p,
            None => crate::auth::new_login_password().map_err(|e| AdminError::new("internal", e.to_string()))?,
        };
        crate::auth::check_login_password(&password).map_err(|e| AdminError::new("invalid", e))?;
        let hash = crate::auth::hash_password(&password).map_err(|e| AdminError::new("internal", e.to_string()))?;
        ctx.store.update_user(&name, |u| u.password_hash = Some(hash))?;
        let reason = if keep_login.is_some() { "password changed" } else { "password reset" };
        let revoked = ctx.store.revoke_logins(&name, keep_login.as_deref(), reason, now_secs())?;
        tracing::info!(user = %name, revoked_logins = revoked, "{reason}");
        Ok(PasswordView { name, password: generated.then_some(password), revoked_logins: revoked })
    }
}

impl Command for UserProxyPassword {
    type Output = ProxyPasswordView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("user.proxy_password", &self.name))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.user_before(&self.name)
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<ProxyPasswordView, AdminError> {
        let name = self.name;
        let pw = crate::auth::new_proxy_password().map_err(|e| AdminError::new("internal", e.to_string()))?;
        let u = ctx.store.update_user(&name, |u| u.proxy_password = pw.clone())?;
        ctx.invalidate(&name);
        tracing::info!(user = %name, "proxy password rotated");
        Ok(ProxyPasswordView { name: u.name, proxy_password: u.proxy_password })
    }
}

impl Command for UserDisable {
    type Output = UserView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("user.disable", &self.name).reason(self.reason.clone()))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.user_before(&self.name)
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<UserView, AdminError> {
        let UserDisable { name, reason } = self;
        let u = ctx.store.update_user(&name, |u| {
            u.disabled = true;
            u.disabled_reason = reason.clone();
        })?;
        ctx.invalidate(&name);
        // Its sub-users' cached accounts carry its state too.
        for sub in ctx.store.list_subusers(Some(&name))? {
            ctx.invalidate(&sub.name);
        }
        // In force at once: its streams, and the streams through its nodes, which leave the
        // network (a disabled owner's device may not connect either).
        ctx.cut(Cut::Client(name.clone()), "account_disabled");
        ctx.cut(Cut::Owner(name.clone()), "owner_disabled");
        if let Some(l) = &ctx.live {
            for d in ctx.store.list_devices()?.iter().filter(|d| d.owner == name) {
                if let Some(id) = d.device_id() {
                    l.registry.kick(&id, ErrorCode::AuthFailed, "the device owner's account is disabled");
                }
            }
        }
        tracing::info!(user = %name, reason = reason.as_deref(), "user disabled");
        ctx.user_view(&u)
    }
}

impl Command for UserEnable {
    type Output = UserView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("user.enable", &self.name))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        ctx.user_before(&self.name)
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<UserView, AdminError> {
        let name = self.name;
        let u = ctx.store.update_user(&name, |u| {
            u.disabled = false;
            u.disabled_reason = None;
        })?;
        ctx.invalidate(&name);
        tracing::info!(user = %name, "user enabled");
        ctx.user_view(&u)
    }
}

/// Per-user sums every user view needs, read once per command.
struct UserTotals {
    accrued: HashMap<String, i64>,
    held: HashMap<String, i64>,
    withdrawing: HashMap<String, u64>,
    devices: HashMap<String, usize>,
}

impl AdminCtx {
    /// Unposted accruals, holds, pending withdrawals and device counts of every user.
    fn user_totals(&self) -> Result<UserTotals, AdminError> {
        let mut devices: HashMap<String, usize> = HashMap::new();
        for d in self.store.list_devices()? {
            *devices.entry(d.owner).or_default() += 1;
        }
        let mut withdrawing: HashMap<String, u64> = HashMap::new();
        for w in self.store.list_withdrawals(None, Some(WithdrawalStatus::Pending))? {
            *withdrawing.entry(w.user).or_default() += w.amount.0;
        }
        Ok(UserTotals {
            accrued: self.store.accrued_by_client()?,
            held: self.store.held_by_client()?,
            withdrawing,
            devices,
        })
    }

    pub(super) fn user_view(&self, u: &UserRecord) -> Result<UserView, AdminError> {
        self.user_view_with(u, &self.user_totals()?)
    }

    fn user_view_with(&self, u: &UserRecord, totals: &UserTotals) -> Result<UserView, AdminError> {
        // Shown balance = posted − unposted accruals (at most one flush behind).
        let posted = self.store.balance(&Account::User(u.name.clone()))?;
        let accrued = totals.accrued.get(&u.name).copied().unwrap_or(0);
        let bal = posted - accrued;
        let held = totals.held.get(&u.name).copied().unwrap_or(0);
        Ok(UserView {
            name: u.name.clone(),
            admin: u.admin,
            disabled: u.disabled,
            disabled_reason: u.disabled_reason.clone(),
            telegram_id: u.telegram_id,
            balance_micros: bal,
            balance: format_signed(bal),
            posted_micros: posted,
            accrued_micros: accrued,
            held_micros: held,
            available_micros: bal - held,
            pending_withdrawals_micros: totals.withdrawing.get(&u.name).copied().unwrap_or(0),
            proxy_password: u.proxy_password.clone(),
            devices: totals.devices.get(&u.name).copied().unwrap_or(0),
            created_at: rfc3339(u.created_at),
            password: None,
        })
    }

    /// A user as it was before a change, for the audit log.
    pub(super) fn user_before(&self, name: &str) -> Option<Value> {
        let u = self.store.get_user(name).ok().flatten()?;
        serde_json::to_value(self.user_view(&u).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{LedgerReverse, test_ctx};

    fn add(ctx: &AdminCtx, name: &str, credit: &str) {
        ctx.execute(UserAdd { name: name.into(), password: Some("long enough".into()), admin: false }).unwrap();
        ctx.execute(UserCredit { id: None, name: name.into(), amount: credit.into(), reason: None }).unwrap();
    }

    fn adjust(ctx: &AdminCtx, amount: &str, reason: &str) -> Result<CorrectionView, AdminError> {
        ctx.execute_as(UserAdjust { name: "bob".into(), amount: amount.into(), reason: reason.into() }, "admin (cli)")
    }

    #[test]
    fn adjustments_are_signed_bounded_audited_and_reversible_once() {
        let (_d, ctx) = test_ctx();
        add(&ctx, "bob", "20");
        let down = adjust(&ctx, "-13.50", "double top-up").unwrap();
        assert_eq!((down.amount.as_str(), down.amount_micros, down.balance_micros), ("-13.50", -13_500_000, 6_500_000));
        assert_eq!(down.kind, "adjustment");
        assert!(down.transfer_id.starts_with("adjustment:"));
        assert_eq!(adjust(&ctx, "+2", "goodwill").unwrap().balance_micros, 8_500_000);
        for bad in ["0", "-0.00", "1,5", "1e3", "-1.0000001", "--1", "", "abc"] {
            let e = adjust(&ctx, bad, "x").unwrap_err();
            assert_eq!(e.error, "invalid", "{bad}: {e}");
        }
        assert!(adjust(&ctx, "1000000.01", "x").unwrap_err().reason.contains("billing.max_credit"));
        assert!(adjust(&ctx, "-8.500001", "x").unwrap_err().reason.contains("only 8.50 is available"));
        assert_eq!(adjust(&ctx, "-1", "  ").unwrap_err().error, "invalid", "a reason is required");
        let nobody = ctx.execute(UserAdjust { name: "nobody".into(), amount: "1".into(), reason: "x".into() });
        assert_eq!(nobody.unwrap_err().error, "not_found");

        let entry = &ctx.store.list_audit(&crate::store::Window { limit: Some(10), ..Default::default() }).unwrap()[1];
        assert_eq!((entry.action.as_str(), entry.actor.as_str()), ("user.adjust", "admin (cli)"));
        assert_eq!((entry.target.as_str(), entry.reason.as_deref()), ("bob", Some("double top-up")));

        let rev = LedgerReverse { id: down.transfer.to_string(), reason: "it was right".into() };
        let r = ctx.execute_as(rev.clone(), "ann").unwrap();
        assert_eq!((r.amount.as_str(), r.reverses, r.balance_micros), ("13.50", Some(down.transfer), 22_000_000));
        assert_eq!(ctx.execute(rev).unwrap_err().error, "conflict");
        let again = ctx.execute(LedgerReverse { id: r.transfer_id.clone(), reason: "x".into() }).unwrap_err();
        assert!(again.reason.contains("is a reversal itself"), "{again}");
        let audit = &ctx.store.list_audit(&crate::store::Window { limit: Some(1), ..Default::default() }).unwrap()[0];
        assert_eq!((audit.action.as_str(), audit.actor.as_str()), ("ledger.reverse", "ann"));
        let report = ctx.execute(crate::admin::LedgerVerify {}).unwrap();
        assert!(report.ok, "{:?}", report.problems);
    }

    #[test]
    fn passwords_are_reset_within_bounds_audited_without_the_secret_and_logins_revoked() {
        let (_d, ctx) = test_ctx();
        add(&ctx, "bob", "1");
        ctx.store.start_login("bob", "f1", "t1", now_secs(), 20).unwrap();
        ctx.store.start_login("bob", "f2", "t2", now_secs(), 20).unwrap();
        let set = |password: Option<&str>, keep: Option<&str>| {
            ctx.execute(UserPassword {
                name: "bob".into(),
                password: password.map(str::to_owned),
                keep_login: keep.map(str::to_owned),
            })
        };
        assert_eq!(set(Some("short"), None).unwrap_err().error, "invalid");
        assert_eq!(set(Some(&"x".repeat(1025)), None).unwrap_err().error, "invalid");
        let kept = set(Some("a new secret"), Some("f2")).unwrap();
        assert_eq!((kept.password, kept.revoked_logins), (None, 1));
        let hash = ctx.store.get_user("bob").unwrap().unwrap().password_hash.unwrap();
        assert!(crate::auth::verify_password("a new secret", &hash));
        let generated = set(None, None).unwrap();
        assert_eq!(generated.revoked_logins, 1, "f2 goes too");
        let pw = generated.password.unwrap();
        let hash = ctx.store.get_user("bob").unwrap().unwrap().password_hash.unwrap();
        assert!(crate::auth::verify_password(&pw, &hash));
        let entries = ctx.store.list_audit(&crate::store::Window { limit: Some(10), ..Default::default() }).unwrap();
        let text = serde_json::to_string(&entries).unwrap();
        assert!(!text.contains(&pw) && !text.contains("a new secret"), "{text}");
        assert_eq!(entries.iter().filter(|e| e.action == "user.password").count(), 2);
        let nobody = ctx.execute(UserPassword { name: "nobody".into(), password: None, keep_login: None });
        assert_eq!(nobody.unwrap_err().error, "not_found");
    }
}
