//! Admin commands (`traffix user|pair|device|ledger|backup`), one function per command over the
//! store and, when the server runs, its live state. The CLI sends them over the local admin
//! socket (`socket.rs`) to a running server, or runs them directly on the database when the
//! server is stopped — the same code either way.

pub mod socket;
pub mod views;

pub use views::rfc3339;
use views::*;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::money::{Micros, format_signed};
use crate::store::{
    Account, DeviceRecord, PairCode, Store, StoreError, SubUser, UsageBucket, UserRecord, VerifyParams,
    WithdrawalStatus, now_secs,
};
use crate::tunnel::protocol::ErrorCode;
use crate::tunnel::registry::Registry;

/// Prefix of API keys (`tfx_…`), told apart from JWTs in the `Authorization` header.
pub const API_KEY_PREFIX: &str = "tfx_";

/// How long a pairing code stays valid.
pub const PAIR_CODE_TTL_SECS: u64 = 600;

/// One admin command, as sent over the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AdminRequest {
    UserAdd {
        name: String,
        password: Option<String>,
        admin: bool,
    },
    UserList,
    UserShow {
        name: String,
    },
    UserCredit {
        /// Idempotency key of an external payment: a replay credits once.
        #[serde(default)]
        id: Option<String>,
        name: String,
        amount: String,
        reason: Option<String>,
    },
    UserProxyPassword {
        name: String,
    },
    UserDisable {
        name: String,
        reason: Option<String>,
    },
    UserEnable {
        name: String,
    },
    Pair {
        name: String,
    },
    DeviceList,
    DeviceBan {
        id: String,
        reason: String,
    },
    DeviceUnban {
        id: String,
    },
    LedgerList {
        user: Option<String>,
    },
    AuditList {
        limit: Option<usize>,
    },
    LedgerVerify,
    Backup {
        path: String,
    },
    WithdrawalRequest {
        name: String,
        amount: String,
        destination: Option<String>,
    },
    WithdrawalList {
        user: Option<String>,
        status: Option<String>,
    },
    WithdrawalApprove {
        id: u64,
        reason: Option<String>,
    },
    WithdrawalReject {
        id: u64,
        reason: String,
    },
    SessionList {
        user: Option<String>,
        limit: Option<usize>,
    },
    /// Usage per hour or day of a client (`client:NAME`), an owner's nodes (`owner:NAME`) or
    /// one device (`device:ID`), the last `last` buckets, zero-filled.
    Usage {
        subject: String,
        by: String,
        last: Option<u64>,
    },
    SubUserAdd {
        parent: String,
        name: String,
        byte_cap: Option<u64>,
        max_streams: Option<u32>,
        valid_days: Option<u32>,
    },
    /// Sub-users of `parent`, or all.
    SubUserList {
        parent: Option<String>,
    },
    /// Disables or re-enables a sub-user; with `parent`, only one of that account's.
    SubUserDisable {
        name: String,
        parent: Option<String>,
        disabled: bool,
    },
    SubUserDelete {
        name: String,
        parent: Option<String>,
    },
    SubUserPassword {
        name: String,
        parent: Option<String>,
    },
    /// A user's API keys (never the keys themselves).
    ApiKeyList {
        user: String,
    },
    /// Creates an API key for `user`; the answer carries the key, shown once.
    ApiKeyCreate {
        user: String,
        name: String,
        scope: crate::store::KeyScope,
    },
    ApiKeyDelete {
        user: String,
        id: String,
    },
    /// The billing settings in force.
    SettingsShow,
    /// Changes billing settings at run time (they override traffix.toml from now on).
    SettingsSet {
        price_per_gb: Option<String>,
        platform_fee_percent: Option<u8>,
        min_payout: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// A command failure: a stable code and a reason for the user.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{reason}")]
pub struct AdminError {
    pub error: String,
    pub reason: String,
}

impl AdminError {
    pub fn new(code: &str, reason: impl Into<String>) -> Self {
        AdminError { error: code.into(), reason: reason.into() }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NotFound(_) => "not_found",
            StoreError::AlreadyExists(_) => "already_exists",
            StoreError::Invalid(_) => "invalid",
            StoreError::Locked => "locked",
            _ => "store_error",
        };
        AdminError::new(code, e.to_string())
    }
}

/// Called with the user's name after a deposit.
pub type CreditHook = Arc<dyn Fn(&str) + Send + Sync>;

/// The money settings admin commands apply (editable at run time: `settings set`).
#[derive(Debug, Clone, Copy)]
pub struct MoneyRules {
    pub tariff: crate::billing::rules::Tariff,
    /// The smallest withdrawal.
    pub min_payout: Micros,
    /// The stream cap per client, which the overdraft bound scales with.
    pub client_max_streams: u32,
}

impl Default for MoneyRules {
    fn default() -> Self {
        MoneyRules::from_parts(&crate::config::BillingConfig::default(), &crate::config::Limits::default())
    }
}

impl MoneyRules {
    /// The rules of `cfg` (after [`crate::app::apply_settings`] has applied run-time changes).
    pub fn from_config(cfg: &crate::config::Config) -> MoneyRules {
        MoneyRules::from_parts(&cfg.billing, &cfg.limits)
    }

    fn from_parts(b: &crate::config::BillingConfig, limits: &crate::config::Limits) -> MoneyRules {
        MoneyRules {
            tariff: crate::billing::rules::Tariff {
                price_per_gb: b.price_per_gb,
                platform_fee_percent: b.platform_fee_percent,
            },
            min_payout: b.min_payout,
            client_max_streams: limits.client_max_streams,
        }
    }

    /// The documented overdraft bound `ledger verify` checks, in money.
    pub fn max_overdraft(&self) -> Micros {
        crate::billing::meter::overdraft_bound(&self.tariff, self.client_max_streams)
    }

    /// Shared between the admin commands and the API, changed by `settings set`.
    pub fn shared(self) -> Arc<std::sync::RwLock<MoneyRules>> {
        Arc::new(std::sync::RwLock::new(self))
    }
}

/// The running server's state that admin commands touch.
#[derive(Clone)]
pub struct Live {
    pub registry: Arc<Registry>,
    /// Forgets a cached proxy account after a change (rotation, disable, credit).
    pub invalidate_account: Arc<dyn Fn(&str) + Send + Sync>,
    /// Tells metering about a deposit, so a client's live budget grows at once.
    pub credited: CreditHook,
    /// Tells metering about a new price or fee.
    pub tariff_changed: Arc<dyn Fn(crate::billing::rules::Tariff) + Send + Sync>,
    /// The operator's ASN database, if configured.
    pub asn_db: Option<Arc<crate::geoip::GeoIp>>,
}

/// What admin commands run against.
#[derive(Clone)]
pub struct AdminCtx {
    pub store: Arc<Store>,
    pub public_address: String,
    pub pin: String,
    /// The web listener serves plain HTTP (`--insecure-http`): links say so.
    pub insecure_http: bool,
    pub live: Option<Live>,
    pub money: Arc<std::sync::RwLock<MoneyRules>>,
}

struct UserTotals {
    accrued: HashMap<String, i64>,
    held: HashMap<String, i64>,
    withdrawing: HashMap<String, u64>,
    devices: HashMap<String, usize>,
}

/// Secrets never reach the audit log.
fn redact(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["password", "proxy_password", "code", "link", "key"] {
            if o.contains_key(k) {
                o.insert(k.into(), json!("***"));
            }
        }
    }
    v
}

/// User names: SPEC.md's NAME (3–32 of a-z, 0-9, `_`).
pub fn valid_name(name: &str) -> bool {
    (3..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl AdminCtx {
    /// The money rules in force.
    pub fn money(&self) -> MoneyRules {
        crate::sync::read(&self.money)
    }

    fn invalidate(&self, name: &str) {
        if let Some(l) = &self.live {
            (l.invalidate_account)(name);
        }
    }

    /// Unposted accruals and device counts of every user, read once per command.
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

    /// A device with its live state when connected.
    pub fn device_view(&self, d: &DeviceRecord) -> DeviceView {
        let live = self.live.as_ref().and_then(|l| {
            hex::decode(&d.id).ok().and_then(|id| <[u8; 16]>::try_from(id).ok()).and_then(|id| l.registry.get(&id))
        });
        let status = live.as_ref().map(|n| n.status());
        let today = self.store.device_today(&d.id, now_secs()).unwrap_or_default();
        let name = |v: Result<Value, serde_json::Error>| v.ok().and_then(|v| v.as_str().map(str::to_owned));
        let ip = live.as_ref().map(|n| n.public_ip).or_else(|| d.last_ip.as_deref().and_then(|ip| ip.parse().ok()));
        let asn = self.live.as_ref().and_then(|l| l.asn_db.as_ref()).zip(ip).and_then(|(db, ip)| db.asn(ip));
        DeviceView {
            id: d.id.clone(),
            owner: d.owner.clone(),
            vip: d.vip.to_string(),
            online: live.is_some(),
            state: live.as_ref().and_then(|n| name(serde_json::to_value(n.state()))),
            active_streams: live.as_ref().map(|n| n.mux.active_streams()),
            public_ip: live.as_ref().map(|n| n.public_ip.to_string()).or_else(|| d.last_ip.clone()),
            country: live.as_ref().and_then(|n| n.country_str()).or_else(|| d.country.clone()),
            battery_pct: status.as_ref().and_then(|s| s.battery_pct),
            network: status.as_ref().and_then(|s| name(serde_json::to_value(s.network))),
            model: d.model.clone(),
            os: d.os.clone(),
            key_alg: name(serde_json::to_value(d.key_alg)).unwrap_or_default(),
            paired_at: rfc3339(d.paired_at),
            last_seen: d.last_seen.map(rfc3339),
            banned: d.banned,
            ban_reason: d.ban_reason.clone(),
            bytes_today: today.bytes(),
            earned_today_micros: today.earned,
            connected_at: live.as_ref().map(|n| rfc3339(n.connected_at)),
            rtt_ms: live.as_ref().and_then(|n| n.mux.rtt()).map(|r| r.as_secs_f64() * 1000.0),
            asn: asn.as_ref().map(|a| a.0),
            as_org: asn.map(|a| a.1),
            uptime_s: status.as_ref().and_then(|s| s.uptime_s),
            charging: status.as_ref().and_then(|s| s.charging),
            max_streams: status.as_ref().and_then(|s| s.max_streams),
            daily_cap_bytes: status.as_ref().and_then(|s| s.daily_cap),
            monthly_cap_bytes: status.as_ref().and_then(|s| s.monthly_cap),
            node_bytes_today: status.as_ref().and_then(|s| s.bytes_today),
            node_bytes_month: status.as_ref().and_then(|s| s.bytes_month),
        }
    }

    /// Finds a device by full id, unique id prefix (≥ 6 hex digits) or virtual IP.
    fn find_device(&self, key: &str) -> Result<DeviceRecord, AdminError> {
        let all = self.store.list_devices()?;
        let key = key.trim().to_ascii_lowercase();
        if let Ok(vip) = key.parse::<Ipv4Addr>() {
            return all
                .into_iter()
                .find(|d| d.vip == vip)
                .ok_or_else(|| AdminError::new("not_found", format!("no device has virtual IP {vip}")));
        }
        if key.len() < 6 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AdminError::new("invalid", "give a device id (at least 6 hex digits) or its virtual IP"));
        }
        let mut hits: Vec<DeviceRecord> = all.into_iter().filter(|d| d.id.starts_with(&key)).collect();
        match hits.len() {
            0 => Err(AdminError::new("not_found", format!("no device id starts with {key}"))),
            1 => Ok(hits.remove(0)),
            n => Err(AdminError::new("ambiguous", format!("{n} devices start with {key}; give more digits"))),
        }
    }

    /// Runs one command as `system` (init, demo).
    pub fn execute(&self, req: AdminRequest) -> Result<Value, AdminError> {
        self.execute_as(req, "system")
    }

    /// Runs one command on behalf of `actor` and writes the audit entry of a change.
    /// Blocking (store I/O, argon2): call it from a blocking context.
    pub fn execute_as(&self, req: AdminRequest, actor: &str) -> Result<Value, AdminError> {
        let (action, target, reason) = match &req {
            AdminRequest::UserAdd { name, .. } => ("user.add", name.clone(), None),
            AdminRequest::UserCredit { name, reason, .. } => ("user.credit", name.clone(), reason.clone()),
            AdminRequest::UserProxyPassword { name } => ("user.proxy_password", name.clone(), None),
            AdminRequest::UserDisable { name, reason } => ("user.disable", name.clone(), reason.clone()),
            AdminRequest::UserEnable { name } => ("user.enable", name.clone(), None),
            AdminRequest::Pair { name } => ("pair.create", name.clone(), None),
            AdminRequest::DeviceBan { id, reason } => ("device.ban", id.clone(), Some(reason.clone())),
            AdminRequest::DeviceUnban { id } => ("device.unban", id.clone(), None),
            AdminRequest::Backup { path } => ("store.backup", path.clone(), None),
            AdminRequest::WithdrawalRequest { name, .. } => ("withdrawal.request", name.clone(), None),
            AdminRequest::SubUserAdd { name, .. } => ("subuser.add", name.clone(), None),
            AdminRequest::ApiKeyCreate { user, .. } => ("api_key.create", user.clone(), None),
            AdminRequest::ApiKeyDelete { id, .. } => ("api_key.delete", id.clone(), None),
            AdminRequest::SettingsSet { reason, .. } => ("settings.update", "billing".to_owned(), reason.clone()),
            AdminRequest::SubUserDisable { name, disabled: true, .. } => ("subuser.disable", name.clone(), None),
            AdminRequest::SubUserDisable { name, .. } => ("subuser.enable", name.clone(), None),
            AdminRequest::SubUserDelete { name, .. } => ("subuser.delete", name.clone(), None),
            AdminRequest::SubUserPassword { name, .. } => ("subuser.proxy_password", name.clone(), None),
            AdminRequest::WithdrawalApprove { id, reason } => ("withdrawal.approve", id.to_string(), reason.clone()),
            AdminRequest::WithdrawalReject { id, reason } => {
                ("withdrawal.reject", id.to_string(), Some(reason.clone()))
            }
            _ => return self.run(req, actor),
        };
        let before = match &req {
            AdminRequest::UserCredit { name, .. }
            | AdminRequest::UserDisable { name, .. }
            | AdminRequest::UserEnable { name }
            | AdminRequest::UserProxyPassword { name } => self
                .store
                .get_user(name)
                .ok()
                .flatten()
                .and_then(|u| self.user_view(&u).ok())
                .and_then(|v| to_json(&v).ok())
                .map(redact),
            AdminRequest::DeviceBan { id, .. } | AdminRequest::DeviceUnban { id } => {
                self.find_device(id).ok().and_then(|d| to_json(&self.device_view(&d)).ok())
            }
            AdminRequest::SettingsSet { .. } => to_json(&self.settings_view()).ok(),
            AdminRequest::WithdrawalApprove { id, .. } | AdminRequest::WithdrawalReject { id, .. } => self
                .store
                .list_withdrawals(None, None)
                .ok()
                .and_then(|all| all.into_iter().find(|w| w.id == *id))
                .and_then(|w| to_json(&WithdrawalView::from(&w)).ok()),
            _ => None,
        };
        let result = self.run(req, actor)?;
        let entry = crate::store::AuditEntry {
            seq: 0,
            time: now_secs(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target,
            reason,
            before,
            after: Some(redact(result.clone())),
        };
        if let Err(e) = self.store.append_audit(entry) {
            tracing::error!(error = %e, action, "could not write the audit entry");
        }
        Ok(result)
    }

    fn run(&self, req: AdminRequest, actor: &str) -> Result<Value, AdminError> {
        match req {
            AdminRequest::UserAdd { name, password, admin } => {
                if !valid_name(&name) {
                    return Err(AdminError::new(
                        "invalid",
                        format!("user name {name:?} must be 3-32 characters of a-z, 0-9 and _"),
                    ));
                }
                let generated = password.is_none();
                let password = match password {
                    Some(p) => p,
                    None => {
                        crate::auth::new_login_password().map_err(|e| AdminError::new("internal", e.to_string()))?
                    }
                };
                if password.len() < 8 {
                    return Err(AdminError::new("invalid", "passwords need at least 8 characters"));
                }
                let hash =
                    crate::auth::hash_password(&password).map_err(|e| AdminError::new("internal", e.to_string()))?;
                let proxy_password =
                    crate::auth::new_proxy_password().map_err(|e| AdminError::new("internal", e.to_string()))?;
                let user = UserRecord {
                    admin,
                    password_hash: Some(hash),
                    ..UserRecord::new(&name, &proxy_password, now_secs())
                };
                self.store.create_user(&user)?;
                tracing::info!(user = %name, admin, "user added");
                let mut v = self.user_view(&user)?;
                if generated {
                    v.password = Some(password);
                }
                to_json(&v)
            }
            AdminRequest::UserList => {
                let users = self.store.list_users()?;
                let totals = self.user_totals()?;
                let views = users.iter().map(|u| self.user_view_with(u, &totals)).collect::<Result<Vec<_>, _>>()?;
                to_json(&views)
            }
            AdminRequest::UserShow { name } => {
                let u = self
                    .store
                    .get_user(&name)?
                    .ok_or_else(|| AdminError::new("not_found", format!("no user {name:?}")))?;
                to_json(&self.user_view(&u)?)
            }
            AdminRequest::UserCredit { name, amount, reason, id } => {
                let amount = Micros::parse(&amount).map_err(|e| AdminError::new("invalid", e.to_string()))?;
                if amount.0 == 0 {
                    return Err(AdminError::new("invalid", "amount must be greater than zero"));
                }
                if self.store.get_user(&name)?.is_none() {
                    return Err(AdminError::new("not_found", format!("no user {name:?}")));
                }
                let tid = match id {
                    Some(id) if id.is_empty() || id.len() > 128 => {
                        return Err(AdminError::new("invalid", "--id must be 1-128 characters"));
                    }
                    Some(id) => format!("deposit:{id}"),
                    None => format!(
                        "admin-credit:{}",
                        hex::encode(
                            crate::auth::random_bytes::<8>().map_err(|e| AdminError::new("internal", e.to_string()))?
                        )
                    ),
                };
                let reference = reason.unwrap_or_else(|| "admin credit".into());
                let (tr, bal) = self.store.deposit(&name, amount, &tid, &reference, now_secs())?;
                self.invalidate(&name);
                if let Some(l) = &self.live {
                    (l.credited)(&name);
                }
                tracing::info!(user = %name, amount = %amount, transfer = tr.seq, "admin credit");
                to_json(&CreditView::new(&name, amount, tr.seq, bal))
            }
            AdminRequest::UserProxyPassword { name } => {
                let pw = crate::auth::new_proxy_password().map_err(|e| AdminError::new("internal", e.to_string()))?;
                let u = self.store.update_user(&name, |u| u.proxy_password = pw.clone())?;
                self.invalidate(&name);
                tracing::info!(user = %name, "proxy password rotated");
                Ok(json!({"name": u.name, "proxy_password": u.proxy_password}))
            }
            AdminRequest::UserDisable { name, reason } => {
                let u = self.store.update_user(&name, |u| {
                    u.disabled = true;
                    u.disabled_reason = reason.clone();
                })?;
                self.invalidate(&name);
                tracing::info!(user = %name, reason = ?reason, "user disabled");
                to_json(&self.user_view(&u)?)
            }
            AdminRequest::UserEnable { name } => {
                let u = self.store.update_user(&name, |u| {
                    u.disabled = false;
                    u.disabled_reason = None;
                })?;
                self.invalidate(&name);
                tracing::info!(user = %name, "user enabled");
                to_json(&self.user_view(&u)?)
            }
            AdminRequest::Pair { name } => {
                let code = crate::auth::new_pairing_code().map_err(|e| AdminError::new("internal", e.to_string()))?;
                let now = now_secs();
                let expires_at = now + PAIR_CODE_TTL_SECS;
                match self.store.get_user(&name)? {
                    None => return Err(AdminError::new("not_found", format!("no user {name:?}"))),
                    Some(u) if u.disabled => {
                        return Err(AdminError::new("disabled", format!("user {name:?} is disabled")));
                    }
                    Some(_) => {}
                }
                self.store.create_pair_code(
                    &crate::auth::pairing_code_hash(&code),
                    &PairCode { user: name.clone(), created_at: now, expires_at, used: false },
                )?;
                let link = crate::node::state::PairLink {
                    server: self.public_address.clone(),
                    pin: crate::tls::parse_pin(&self.pin).unwrap_or_default(),
                    code: code.clone(),
                    insecure: self.insecure_http,
                }
                .to_link();
                to_json(&PairView { link, code, expires_at: rfc3339(expires_at), user: name })
            }
            AdminRequest::DeviceList => {
                let devices = self.store.list_devices()?;
                to_json(&devices.iter().map(|d| self.device_view(d)).collect::<Vec<_>>())
            }
            AdminRequest::DeviceBan { id, reason } => {
                let dev = self.find_device(&id)?;
                let raw = hex::decode(&dev.id).map_err(|_| AdminError::new("store_error", "corrupt device id"))?;
                let dev = self.store.update_device(&raw, |d| {
                    d.banned = true;
                    d.ban_reason = Some(reason.clone());
                })?;
                if let (Some(l), Ok(id16)) = (&self.live, <[u8; 16]>::try_from(raw.as_slice())) {
                    l.registry.kick(&id16, ErrorCode::DeviceBanned, &format!("device banned: {reason}"));
                }
                tracing::info!(device = %dev.id, %reason, "device banned");
                to_json(&self.device_view(&dev))
            }
            AdminRequest::DeviceUnban { id } => {
                let dev = self.find_device(&id)?;
                let raw = hex::decode(&dev.id).map_err(|_| AdminError::new("store_error", "corrupt device id"))?;
                let dev = self.store.update_device(&raw, |d| {
                    d.banned = false;
                    d.ban_reason = None;
                })?;
                tracing::info!(device = %dev.id, "device unbanned");
                to_json(&self.device_view(&dev))
            }
            AdminRequest::LedgerList { user } => {
                let acct = user.map(Account::User);
                let list = self.store.list_transfers(acct.as_ref())?;
                to_json(&list.iter().map(TransferView::from).collect::<Vec<_>>())
            }
            AdminRequest::LedgerVerify => {
                let m = self.money();
                let params = VerifyParams {
                    max_overdraft: m.max_overdraft(),
                    overdraft_bytes: crate::billing::meter::Billing::overdraft_bound_bytes(m.client_max_streams),
                };
                to_json(&self.store.verify(&params)?)
            }
            AdminRequest::AuditList { limit } => {
                let list = self.store.list_audit(limit.unwrap_or(100))?;
                to_json(&list.into_iter().map(AuditView::from).collect::<Vec<_>>())
            }
            AdminRequest::Backup { path } => {
                self.store.backup(std::path::Path::new(&path))?;
                Ok(json!({"backup": path}))
            }
            AdminRequest::WithdrawalRequest { name, amount, destination } => {
                let amount = Micros::parse(&amount).map_err(|e| AdminError::new("invalid", e.to_string()))?;
                let w =
                    self.store.request_withdrawal(&name, amount, self.money().min_payout, destination, now_secs())?;
                tracing::info!(user = %name, amount = %amount, withdrawal = w.id, "withdrawal requested");
                to_json(&WithdrawalView::from(&w))
            }
            AdminRequest::WithdrawalList { user, status } => {
                let status = match status.as_deref() {
                    None => None,
                    Some("pending") => Some(WithdrawalStatus::Pending),
                    Some("approved") => Some(WithdrawalStatus::Approved),
                    Some("rejected") => Some(WithdrawalStatus::Rejected),
                    Some(other) => {
                        return Err(AdminError::new(
                            "invalid",
                            format!("status {other:?} must be pending, approved or rejected"),
                        ));
                    }
                };
                let list = self.store.list_withdrawals(user.as_deref(), status)?;
                to_json(&list.iter().map(WithdrawalView::from).collect::<Vec<_>>())
            }
            AdminRequest::WithdrawalApprove { id, reason } => {
                let w = self.store.decide_withdrawal(id, true, actor, reason, now_secs())?;
                tracing::info!(withdrawal = id, user = %w.user, amount = %w.amount, "withdrawal approved");
                to_json(&WithdrawalView::from(&w))
            }
            AdminRequest::WithdrawalReject { id, reason } => {
                if reason.trim().is_empty() {
                    return Err(AdminError::new("invalid", "a rejection needs a reason"));
                }
                let w = self.store.decide_withdrawal(id, false, actor, Some(reason), now_secs())?;
                self.invalidate(&w.user);
                if let Some(l) = &self.live {
                    (l.credited)(&w.user);
                }
                tracing::info!(withdrawal = id, user = %w.user, amount = %w.amount, "withdrawal rejected");
                to_json(&WithdrawalView::from(&w))
            }
            AdminRequest::SessionList { user, limit } => {
                let list = self.store.list_sessions(user.as_deref(), limit.unwrap_or(100))?;
                to_json(&list.iter().map(SessionView::from).collect::<Vec<_>>())
            }
            AdminRequest::Usage { subject, by, last } => to_json(&self.usage(&subject, &by, last)?),
            AdminRequest::SubUserAdd { parent, name, byte_cap, max_streams, valid_days } => {
                if !valid_name(&name) {
                    return Err(AdminError::new(
                        "invalid",
                        format!("sub-user name {name:?} must be 3-32 characters of a-z, 0-9 and _"),
                    ));
                }
                if max_streams == Some(0) || byte_cap == Some(0) || valid_days == Some(0) {
                    return Err(AdminError::new("invalid", "caps and validity must be greater than zero"));
                }
                let now = now_secs();
                let sub = SubUser {
                    name: name.clone(),
                    parent: parent.clone(),
                    proxy_password: crate::auth::new_proxy_password()
                        .map_err(|e| AdminError::new("internal", e.to_string()))?,
                    byte_cap,
                    max_streams,
                    expires_at: valid_days.map(|d| now + u64::from(d) * 86_400),
                    disabled: false,
                    created_at: now,
                };
                self.store.create_subuser(&sub)?;
                self.invalidate(&name);
                tracing::info!(parent = %parent, sub = %name, "sub-user added");
                to_json(&self.subuser_view(&sub)?)
            }
            AdminRequest::ApiKeyList { user } => {
                to_json(&self.store.list_api_keys(&user)?.iter().map(ApiKeyView::from).collect::<Vec<_>>())
            }
            AdminRequest::ApiKeyCreate { user, name, scope } => {
                let name = name.trim();
                if name.is_empty() || name.len() > 64 {
                    return Err(AdminError::new("invalid", "the key's name is 1-64 characters"));
                }
                let internal = |e: crate::auth::AuthError| AdminError::new("internal", e.to_string());
                let id = hex::encode(crate::auth::random_bytes::<6>().map_err(internal)?);
                let key =
                    format!("{}{}", API_KEY_PREFIX, hex::encode(crate::auth::random_bytes::<24>().map_err(internal)?));
                let rec = crate::store::ApiKey { id, user, name: name.to_owned(), scope, created_at: now_secs() };
                self.store.add_api_key(&crate::auth::pairing_code_hash(&key), &rec)?;
                to_json(&ApiKeyView { key: Some(key), ..ApiKeyView::from(&rec) })
            }
            AdminRequest::ApiKeyDelete { user, id } => {
                self.store.delete_api_key(&user, &id)?;
                Ok(json!({"deleted": id}))
            }
            AdminRequest::SettingsShow => to_json(&self.settings_view()),
            AdminRequest::SettingsSet { price_per_gb, platform_fee_percent, min_payout, .. } => {
                if price_per_gb.is_none() && platform_fee_percent.is_none() && min_payout.is_none() {
                    return Err(AdminError::new(
                        "invalid",
                        "nothing to change: give a price, a fee or a minimum payout",
                    ));
                }
                let mut m = self.money();
                if let Some(p) = price_per_gb {
                    m.tariff.price_per_gb =
                        Micros::parse(&p).map_err(|e| AdminError::new("invalid", format!("price: {e}")))?;
                }
                if let Some(f) = platform_fee_percent {
                    m.tariff.platform_fee_percent = f;
                }
                if let Some(p) = min_payout {
                    m.min_payout =
                        Micros::parse(&p).map_err(|e| AdminError::new("invalid", format!("minimum payout: {e}")))?;
                }
                m.tariff.validate().map_err(|e| AdminError::new("invalid", e.to_string()))?;
                if m.min_payout.0 == 0 {
                    return Err(AdminError::new("invalid", "the minimum payout must be greater than zero"));
                }
                self.store.set_billing_settings(&crate::store::BillingSettings {
                    price_per_gb: m.tariff.price_per_gb,
                    platform_fee_percent: m.tariff.platform_fee_percent,
                    min_payout: m.min_payout,
                    updated_at: now_secs(),
                    updated_by: actor.to_owned(),
                })?;
                crate::sync::write(&self.money, m);
                if let Some(l) = &self.live {
                    (l.tariff_changed)(m.tariff);
                }
                tracing::info!(price_per_gb = %m.tariff.price_per_gb, fee = m.tariff.platform_fee_percent,
                    min_payout = %m.min_payout, %actor, "billing settings changed");
                to_json(&self.settings_view())
            }
            AdminRequest::SubUserList { parent } => {
                let list = self.store.list_subusers(parent.as_deref())?;
                to_json(&list.iter().map(|s| self.subuser_view(s)).collect::<Result<Vec<_>, _>>()?)
            }
            AdminRequest::SubUserDisable { name, parent, disabled } => {
                let parent = self.subuser_parent(&name, parent)?;
                let sub = self.store.update_subuser(&parent, &name, |s| s.disabled = disabled)?;
                self.invalidate(&name);
                to_json(&self.subuser_view(&sub)?)
            }
            AdminRequest::SubUserDelete { name, parent } => {
                let parent = self.subuser_parent(&name, parent)?;
                self.store.delete_subuser(&parent, &name)?;
                self.invalidate(&name);
                Ok(json!({"deleted": name}))
            }
            AdminRequest::SubUserPassword { name, parent } => {
                let parent = self.subuser_parent(&name, parent)?;
                let pw = crate::auth::new_proxy_password().map_err(|e| AdminError::new("internal", e.to_string()))?;
                let sub = self.store.update_subuser(&parent, &name, |s| s.proxy_password = pw)?;
                self.invalidate(&name);
                to_json(&self.subuser_view(&sub)?)
            }
        }
    }

    fn settings_view(&self) -> SettingsView {
        let m = self.money();
        let changed = self.store.billing_settings().ok().flatten();
        SettingsView {
            price_per_gb: m.tariff.price_per_gb.to_string(),
            price_per_gb_micros: m.tariff.price_per_gb.0,
            platform_fee_percent: m.tariff.platform_fee_percent,
            min_payout: m.min_payout.to_string(),
            min_payout_micros: m.min_payout.0,
            max_overdraft_micros: m.max_overdraft().0,
            updated_at: changed.as_ref().map(|c| rfc3339(c.updated_at)),
            updated_by: changed.map(|c| c.updated_by),
        }
    }

    fn subuser_view(&self, s: &SubUser) -> Result<SubUserView, AdminError> {
        Ok(SubUserView {
            name: s.name.clone(),
            parent: s.parent.clone(),
            proxy_password: s.proxy_password.clone(),
            byte_cap: s.byte_cap,
            bytes_used: self.store.subuser_bytes(&s.name)?,
            max_streams: s.max_streams,
            expires_at: s.expires_at.map(rfc3339),
            disabled: s.disabled,
            created_at: rfc3339(s.created_at),
        })
    }

    /// The parent of sub-user `name`, which must be `parent` when one is given.
    fn subuser_parent(&self, name: &str, parent: Option<String>) -> Result<String, AdminError> {
        match (self.store.get_subuser(name)?, parent) {
            (Some(s), Some(p)) if s.parent == p => Ok(p),
            (Some(s), None) => Ok(s.parent),
            _ => Err(AdminError::new("not_found", format!("no sub-user {name:?}"))),
        }
    }

    /// A zero-filled usage series of `subject`, the last `last` hours or days up to now.
    pub fn usage(&self, subject: &str, by: &str, last: Option<u64>) -> Result<UsageView, AdminError> {
        let bad_subject = || AdminError::new("invalid", "the subject is client:NAME, owner:NAME, device:ID or all");
        let subject = match subject.split_once(':') {
            None if subject == "all" => subject.to_owned(),
            None => return Err(bad_subject()),
            Some((kind @ ("client" | "owner"), key)) => {
                if self.store.get_user(key)?.is_none() {
                    return Err(AdminError::new("not_found", format!("no user {key:?}")));
                }
                format!("{kind}:{key}")
            }
            Some(("device", key)) => format!("device:{}", self.find_device(key)?.id),
            Some(("sub", key)) => {
                if self.store.get_subuser(key)?.is_none() {
                    return Err(AdminError::new("not_found", format!("no sub-user {key:?}")));
                }
                format!("sub:{key}")
            }
            Some(_) => return Err(bad_subject()),
        };
        let (width, default_last) = match by {
            "hour" => (1u64, 24u64),
            "day" => (24, 30),
            _ => return Err(AdminError::new("invalid", "--by is hour or day")),
        };
        let last = last.unwrap_or(default_last).clamp(1, 24 * 366 / width);
        let now_bucket = now_secs() / 3600 / width;
        let first = now_bucket + 1 - last;
        let rows = self.store.usage_series(&subject, first * width, (now_bucket + 1) * width)?;
        let mut buckets = vec![UsageBucket::default(); last as usize];
        let mut total = UsageBucket::default();
        for (hour, b) in rows {
            total.add(&b);
            if let Some(slot) = buckets.get_mut((hour / width - first) as usize) {
                slot.add(&b);
            }
        }
        Ok(UsageView {
            subject,
            by: by.to_owned(),
            series: buckets
                .iter()
                .enumerate()
                .map(|(i, b)| UsagePoint::new(Some(rfc3339((first + i as u64) * width * 3600)), b))
                .collect(),
            total: UsagePoint::new(None, &total),
        })
    }
}

/// Serialises a view for the admin socket and the CLI.
fn to_json<T: Serialize>(v: &T) -> Result<Value, AdminError> {
    serde_json::to_value(v).map_err(|e| AdminError::new("internal", e.to_string()))
}
