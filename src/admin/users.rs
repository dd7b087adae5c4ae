//! User commands (`traffix user …`): add, list, show, credit, proxy-password, disable and
//! enable — and the user view, whose balance is the posted one minus unposted accruals.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::views::{CreditView, ProxyPasswordView, UserView, rfc3339};
use super::{AdminCtx, AdminError, Audit, Command, Window, valid_name};
use crate::money::{Micros, format_signed};
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
        if password.len() < 8 {
            return Err(AdminError::new("invalid", "passwords need at least 8 characters"));
        }
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
        let tid = match id {
            Some(id) if id.is_empty() || id.len() > 128 => {
                return Err(AdminError::new("invalid", "--id must be 1-128 characters"));
            }
            Some(id) => format!("deposit:{id}"),
            None => format!(
                "admin-credit:{}",
                hex::encode(crate::auth::random_bytes::<8>().map_err(|e| AdminError::new("internal", e.to_string()))?)
            ),
        };
        let reference = reason.unwrap_or_else(|| "admin credit".into());
        let (tr, bal) = ctx.store.deposit(&name, amount, &tid, &reference, now_secs())?;
        ctx.invalidate(&name);
        if let Some(l) = &ctx.live {
            (l.credited)(&name);
        }
        tracing::info!(user = %name, amount = %amount, transfer = tr.seq, "admin credit");
        Ok(CreditView::new(&name, amount, tr.seq, bal))
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

    fn user_view(&self, u: &UserRecord) -> Result<UserView, AdminError> {
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
    fn user_before(&self, name: &str) -> Option<Value> {
        let u = self.store.get_user(name).ok().flatten()?;
        serde_json::to_value(self.user_view(&u).ok()?).ok()
    }
}
