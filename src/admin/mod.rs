//! Admin commands (`traffix user|pair|device|ledger|backup|…`) over the store and, when the
//! server runs, its live state. Each command is a struct implementing [`Command`], whose
//! `Output` is a typed view (`views.rs`): the CLI, the admin socket, the REST API and the
//! OpenAPI document share one type per answer. The CLI sends commands over the local admin
//! socket (`socket.rs`) to a running server, or runs them directly on the database when the
//! server is stopped — the same code either way.
//!
//! This file owns the context, the errors, the [`Command`] trait, the wire enum
//! [`AdminRequest`] and its dispatch; the commands live one family per file: `users.rs`,
//! `devices.rs` (pairing, devices), `ledger.rs` (transfers, verify, a database copy),
//! `backup.rs` (whole-server archives and restore; `stream.rs` frames them on the socket),
//! `withdrawals.rs`,
//! `sessions.rs` (sessions, usage), `subusers.rs`, `api_keys.rs`, `settings.rs`, `tls.rs` (the
//! certificate and ACME), `geoip.rs` (reloading GeoIP databases while serving) and `audit.rs`
//! (the audit log, and writing its entries). Every change is audited here, in
//! [`AdminCtx::execute_as`], whoever asks for it.

mod api_keys;
mod audit;
pub mod backup;
mod devices;
mod geoip;
mod ledger;
pub mod payments;
mod sessions;
mod settings;
pub mod socket;
pub mod stream;
mod subusers;
pub mod telegram;
mod tls;
mod users;
pub mod views;
mod withdrawals;

pub use crate::store::Window;
pub use api_keys::{ApiKeyCreate, ApiKeyDelete, ApiKeyList};
pub use audit::AuditList;
pub use devices::{DeviceBan, DeviceList, DeviceQuality, DeviceRemove, DeviceUnban, Pair};
pub use geoip::{GeoipReload, GeoipReloadView, GeoipShow};
pub use ledger::{Backup, LedgerList, LedgerReverse, LedgerVerify};
pub use payments::{
    DepositList, DepositReturnCmd, InvoiceList, PaymentSettingsSet, PaymentSettingsShow, PayoutExport, PayoutMarkPaid,
    PayoutProfileSet, PayoutProfileShow,
};
pub use sessions::{SessionList, Usage};
pub use settings::{SettingsSet, SettingsShow};
pub use subusers::{SubUserAdd, SubUserDelete, SubUserDisable, SubUserList, SubUserPassword};
pub use telegram::{
    DevicePause, NoticeList, NoticeRead, NotifyPrefsSet, NotifyPrefsShow, TelegramInvite, TelegramLinkCode,
    TelegramLoginLink, TelegramLoginRedeem, TelegramStart, TelegramUnlink,
};
pub use tls::{TlsRenew, TlsStatus};
pub use users::{
    UserAdd, UserAdjust, UserCredit, UserDisable, UserEnable, UserList, UserPassword, UserProxyPassword, UserShow,
};
pub use views::rfc3339;
pub use withdrawals::{WithdrawalApprove, WithdrawalList, WithdrawalReject, WithdrawalRequest};

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::money::Micros;
use crate::relay::live::Cut;
use crate::store::{Store, StoreError};
use crate::tunnel::registry::Registry;

/// Prefix of API keys (`tfx_…`), told apart from JWTs in the `Authorization` header.
pub const API_KEY_PREFIX: &str = "tfx_";

/// The admin socket's file name in the data directory (`socket.rs`).
pub const SOCKET_FILE: &str = "admin.sock";

/// How long a pairing code stays valid.
pub const PAIR_CODE_TTL_SECS: u64 = 600;

/// One admin command: its fields are the request, [`Command::Output`] the answer.
pub trait Command: Clone + Serialize + DeserializeOwned + Into<AdminRequest> + Send + 'static {
    /// The typed answer, as the CLI prints it and the API returns it.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// What the audit log records of this command; `None` for reads, which are not audited.
    fn audit(&self) -> Option<Audit> {
        None
    }

    /// The state the command is about to change, for the audit entry's `before`.
    fn before(&self, _ctx: &AdminCtx) -> Option<Value> {
        None
    }

    /// Runs the command on behalf of `actor`. Blocking (store I/O, argon2). Callers go through
    /// [`AdminCtx::execute_as`]: this alone writes no audit entry.
    fn run(self, ctx: &AdminCtx, actor: &str) -> Result<Self::Output, AdminError>;
}

/// The audit entry of a change: a dotted action (`user.credit`), its target and the reason given.
#[derive(Debug, Clone)]
pub struct Audit {
    pub action: &'static str,
    pub target: String,
    pub reason: Option<String>,
}

impl Audit {
    pub fn new(action: &'static str, target: impl Into<String>) -> Audit {
        Audit { action, target: target.into(), reason: None }
    }

    pub fn reason(self, reason: Option<String>) -> Audit {
        Audit { reason, ..self }
    }
}

/// Declares [`AdminRequest`], one newtype variant per command struct of the same name, with
/// its `From` conversions and [`AdminCtx::dispatch`], from one list so they cannot disagree.
macro_rules! admin_requests {
    ($($cmd:ident),* $(,)?) => {
        /// One admin command, as sent over the admin socket: `{"cmd": "user_add", "name": …}`
        /// (the tag, then the command's fields).
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "cmd", rename_all = "snake_case")]
        pub enum AdminRequest {
            $($cmd($cmd),)*
        }

        $(impl From<$cmd> for AdminRequest {
            fn from(c: $cmd) -> Self {
                AdminRequest::$cmd(c)
            }
        })*

        impl AdminCtx {
            /// Runs a request from the admin socket and serialises its answer for the wire.
            /// Blocking, like [`AdminCtx::execute_as`].
            pub fn dispatch(&self, req: AdminRequest, actor: &str) -> Result<Value, AdminError> {
                match req {
                    $(AdminRequest::$cmd(c) => to_json(&self.execute_as(c, actor)?),)*
                }
            }
        }
    };
}

admin_requests!(
    UserAdd,
    UserList,
    UserShow,
    UserCredit,
    UserAdjust,
    UserPassword,
    UserProxyPassword,
    UserDisable,
    UserEnable,
    Pair,
    DeviceList,
    DeviceBan,
    DeviceUnban,
    DeviceQuality,
    DeviceRemove,
    LedgerList,
    AuditList,
    LedgerVerify,
    LedgerReverse,
    Backup,
    WithdrawalRequest,
    WithdrawalList,
    WithdrawalApprove,
    WithdrawalReject,
    SessionList,
    Usage,
    SubUserAdd,
    SubUserList,
    SubUserDisable,
    SubUserDelete,
    SubUserPassword,
    ApiKeyList,
    ApiKeyCreate,
    ApiKeyDelete,
    SettingsShow,
    SettingsSet,
    TlsStatus,
    TlsRenew,
    GeoipReload,
    GeoipShow,
    DepositList,
    DepositReturnCmd,
    InvoiceList,
    PayoutProfileShow,
    PayoutProfileSet,
    PayoutExport,
    PayoutMarkPaid,
    PaymentSettingsShow,
    PaymentSettingsSet,
    TelegramLinkCode,
    TelegramInvite,
    TelegramUnlink,
    TelegramStart,
    TelegramLoginLink,
    TelegramLoginRedeem,
    DevicePause,
    NoticeList,
    NoticeRead,
    NotifyPrefsShow,
    NotifyPrefsSet,
);

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
            StoreError::Conflict(_) => "conflict",
            StoreError::Invalid(_) => "invalid",
            StoreError::Locked => "locked",
            _ => "store_error",
        };
        AdminError::new(code, e.to_string())
    }
}

/// Called with the user's name after a deposit.
pub type CreditHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Cuts the live streams a change affects with a reason and waits for them; how many.
pub type CutHook = Arc<dyn Fn(&Cut, &'static str) -> usize + Send + Sync>;

/// The money settings admin commands apply (editable at run time: `settings set`).
#[derive(Debug, Clone, Copy)]
pub struct MoneyRules {
    pub tariff: crate::billing::rules::Tariff,
    /// The smallest withdrawal.
    pub min_payout: Micros,
    /// The largest single credit.
    pub max_credit: Micros,
    /// The stream cap per client, which the overdraft bound scales with.
    pub client_max_streams: u32,
    /// The payment providers in force and their rates (no secrets).
    pub payments: crate::payments::config::PaymentRules,
}

impl Default for MoneyRules {
    fn default() -> Self {
        MoneyRules::from_parts(
            &crate::config::BillingConfig::default(),
            &crate::config::Limits::default(),
            &crate::payments::config::PaymentsConfig::default(),
        )
    }
}

impl MoneyRules {
    /// The rules of `cfg` (after [`crate::app::apply_settings`] has applied run-time changes).
    pub fn from_config(cfg: &crate::config::Config) -> MoneyRules {
        MoneyRules::from_parts(&cfg.billing, &cfg.limits, &cfg.payments)
    }

    fn from_parts(
        b: &crate::config::BillingConfig,
        limits: &crate::config::Limits,
        payments: &crate::payments::config::PaymentsConfig,
    ) -> MoneyRules {
        MoneyRules {
            tariff: crate::billing::rules::Tariff {
                price_per_gb: b.price_per_gb,
                platform_fee_percent: b.platform_fee_percent,
            },
            min_payout: b.min_payout,
            max_credit: b.max_credit,
            client_max_streams: limits.client_max_streams,
            payments: payments.rules(),
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
    /// Node quality: shown with each device, overridden and reset by admin commands.
    pub watchdog: Option<Arc<crate::watchdog::Watchdog>>,
    /// Forgets a cached proxy account after a change (rotation, disable, credit).
    pub invalidate_account: Arc<dyn Fn(&str) + Send + Sync>,
    /// Tells metering about a deposit, so a client's live budget grows at once.
    pub credited: CreditHook,
    /// Tells metering about a new price or fee.
    pub tariff_changed: Arc<dyn Fn(crate::billing::rules::Tariff) + Send + Sync>,
    /// The web listener's certificates and the ACME service (`traffix tls …`).
    pub certificates: Option<Arc<crate::acme::Certificates>>,
    /// The GeoIP databases in use (the ASN one names a node's network).
    pub geoip: Arc<crate::geoip::SharedGeoIp>,
    /// Loads GeoIP files that changed, looks up the countries of online nodes again and says
    /// what is in use now (`traffix geoip update` asks for it after installing).
    pub geoip_reload: Arc<dyn Fn() -> crate::geoip::Reloaded + Send + Sync>,
    /// The GeoIP databases in use and the state of their updates.
    pub geoip_status: Arc<dyn Fn() -> crate::geoip::GeoipStatus + Send + Sync>,
    /// Cuts the live client streams a change affects, with the reason for their session rows,
    /// and returns once they have ended (bounded); how many were cut.
    pub cut_streams: CutHook,
    /// Tells the payments service that its settings changed in the store.
    pub payments_changed: Arc<dyn Fn() + Send + Sync>,
    /// Where events for the users' notifications go (withdrawal decisions, admin alerts).
    pub notify: crate::notify::Notifier,
    /// Nodes' last-seen rows not yet written (batched): shown with their devices.
    pub seen: Arc<crate::tunnel::seen::SeenLog>,
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
    /// Devices whose attestation key is on more accounts than this are flagged (`[trust]`).
    pub shared_key_accounts: u32,
}

/// The reason of a correction: trimmed, 1-500 characters.
pub(crate) fn checked_reason(reason: &str) -> Result<String, AdminError> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > 500 {
        return Err(AdminError::new("invalid", "a correction needs a reason (1-500 characters)"));
    }
    Ok(r.to_owned())
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

    /// Fails with `not_found` unless user `name` exists (a filter naming nobody is a mistake,
    /// not an empty list).
    fn require_user(&self, name: &str) -> Result<(), AdminError> {
        match self.store.get_user(name)? {
            Some(_) => Ok(()),
            None => Err(AdminError::new("not_found", format!("no user {name:?}"))),
        }
    }

    /// Emits a notification event (a running server only).
    pub(crate) fn notify(&self, e: crate::notify::Event) {
        if let Some(l) = &self.live {
            l.notify.emit(e);
        }
    }

    fn invalidate(&self, name: &str) {
        if let Some(l) = &self.live {
            (l.invalidate_account)(name);
        }
    }

    /// Tells the running server about a correction: the user's cached account is stale, and
    /// money given lets its live streams go on.
    fn after_correction(&self, c: &crate::store::Correction) {
        self.invalidate(&c.user);
        if let Some(l) = &self.live
            && c.delta > 0
        {
            (l.credited)(&c.user);
        }
    }

    /// Cuts the live streams `which` matches (a running server only) and waits until they
    /// have ended, so a command that disables something returns once it is in force.
    fn cut(&self, which: Cut, reason: &'static str) {
        if let Some(l) = &self.live {
            let n = (l.cut_streams)(&which, reason);
            if n > 0 {
                tracing::info!(which = %which, reason, streams = n, "live streams cut");
            }
        }
    }

    /// Runs one command as `system` (init, demo).
    pub fn execute<C: Command>(&self, cmd: C) -> Result<C::Output, AdminError> {
        self.execute_as(cmd, "system")
    }

    /// Runs one command on behalf of `actor` and writes the audit entry of a change.
    /// Blocking (store I/O, argon2): call it from a blocking context.
    pub fn execute_as<C: Command>(&self, cmd: C, actor: &str) -> Result<C::Output, AdminError> {
        let Some(entry) = cmd.audit() else {
            return cmd.run(self, actor);
        };
        let before = cmd.before(self);
        let out = cmd.run(self, actor)?;
        audit::record(self, actor, entry, before, &out);
        Ok(out)
    }
}

/// Serialises an answer for the admin socket and the audit log.
fn to_json<T: Serialize>(v: &T) -> Result<Value, AdminError> {
    serde_json::to_value(v).map_err(|e| AdminError::new("internal", e.to_string()))
}

/// A context over a fresh database with the default money rules, for unit tests.
#[cfg(test)]
pub(crate) fn test_ctx() -> (tempfile::TempDir, AdminCtx) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("t.redb")).expect("store");
    let ctx = AdminCtx {
        store: Arc::new(store),
        public_address: "127.0.0.1:8443".into(),
        pin: "00".into(),
        insecure_http: true,
        live: None,
        money: MoneyRules::default().shared(),
        shared_key_accounts: crate::config::TrustConfig::default().shared_key_accounts,
    };
    (dir, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admin socket's requests keep their shape: the tag, then the command's fields, with
    /// absent options and defaulted fields accepted.
    #[test]
    fn requests_keep_their_wire_shape() {
        let add: AdminRequest = UserAdd { name: "ann".into(), password: None, admin: true }.into();
        assert_eq!(
            serde_json::to_string(&add).unwrap(),
            r#"{"cmd":"user_add","name":"ann","password":null,"admin":true}"#
        );
        assert_eq!(serde_json::to_string(&AdminRequest::from(UserList::default())).unwrap(), r#"{"cmd":"user_list"}"#);
        for line in [
            r#"{"cmd":"user_list"}"#,
            r#"{"cmd":"ledger_verify"}"#,
            r#"{"cmd":"user_credit","name":"ann","amount":"1.00"}"#,
            r#"{"cmd":"settings_set","price_per_gb":"2.00"}"#,
            r#"{"cmd":"usage","subject":"all","by":"day"}"#,
            r#"{"cmd":"user_adjust","name":"ann","amount":"-1.50","reason":"typo"}"#,
            r#"{"cmd":"ledger_reverse","id":"42","reason":"typo"}"#,
            r#"{"cmd":"user_password","name":"ann","password":null}"#,
        ] {
            let req: AdminRequest = serde_json::from_str(line).unwrap();
            let back: Value = serde_json::to_value(&req).unwrap();
            assert_eq!(back["cmd"], serde_json::from_str::<Value>(line).unwrap()["cmd"], "{line}");
        }
        let credit: AdminRequest = serde_json::from_str(r#"{"cmd":"user_credit","name":"ann","amount":"1"}"#).unwrap();
        assert!(matches!(credit, AdminRequest::UserCredit(UserCredit { id: None, reason: None, .. })));
        assert!(serde_json::from_str::<AdminRequest>(r#"{"cmd":"user_add","name":"ann"}"#).is_err());
        let pw = UserPassword { name: "ann".into(), password: Some("hunter2hunter2".into()), keep_login: None };
        assert!(!format!("{:?}", AdminRequest::from(pw)).contains("hunter2"), "Debug masks the password");
    }
}
