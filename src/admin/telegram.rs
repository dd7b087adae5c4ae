//! Telegram identity and the bot's own commands over the store: linking codes shown in the
//! portal, invitations, `/start` (sign-up or linking), one-time dashboard login links, unlinking,
//! pausing a device, the notification inbox and preferences. The bot (`crate::telegram`) is one
//! more front end of these commands, like the API; every change is audited here.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::{DeviceView, UserView, rfc3339};
use super::{AdminCtx, AdminError, Audit, Command, valid_name};
use crate::store::{Notice, NotifyPrefs, TelegramToken, TokenKind, UserRecord, now_secs};

/// How long a code to link a web account stays valid.
pub const LINK_CODE_TTL_SECS: u64 = 600;
/// How long an invitation stays valid.
pub const INVITE_TTL_SECS: u64 = 7 * 86_400;
/// The largest inbox page.
pub const MAX_NOTICES_PAGE: usize = 200;

/// `telegram.signup`: who may create an account by writing to the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Signup {
    /// Anyone who writes `/start`.
    #[default]
    Open,
    /// Only with an invitation code from an admin (`/start CODE`).
    Invite,
    /// Nobody: only web accounts linked with a code.
    Off,
}

impl Signup {
    pub fn parse(s: &str) -> Option<Signup> {
        match s {
            "open" => Some(Signup::Open),
            "invite" => Some(Signup::Invite),
            "off" => Some(Signup::Off),
            _ => None,
        }
    }
}

/// A one-time code for the bot: `/start CODE` (or the bot's deep link with it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TelegramCodeView {
    pub code: String,
    /// `link` or `invite`.
    pub kind: String,
    pub expires_at: String,
    /// What to send to the bot.
    pub command: String,
}

/// Makes a code that links user `name`'s Telegram account when sent to the bot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramLinkCode {
    pub name: String,
}

/// Makes an invitation: `/start CODE` creates an account while sign-up is by invitation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TelegramInvite {}

/// Removes a user's Telegram link (an admin, or the user itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramUnlink {
    pub name: String,
}

/// The bot's `/start`: finds the sender's account, or links one with a code, or signs up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramStart {
    pub telegram_id: i64,
    /// What followed `/start`: a link code, an invitation, or a wished user name.
    #[serde(default)]
    pub payload: Option<String>,
    pub signup: Signup,
}

/// What `/start` did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartOutcome {
    /// Already linked: nothing changed.
    Existing,
    /// A new account.
    Created,
    /// A web account linked with its code.
    Linked,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramStartView {
    pub user: String,
    pub admin: bool,
    pub outcome: StartOutcome,
}

/// A one-time dashboard login link for the Telegram user `telegram_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramLoginLink {
    pub telegram_id: i64,
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramLoginLinkView {
    pub user: String,
    pub link: String,
    pub expires_at: String,
}

/// Spends a login link's token; the user it signs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramLoginRedeem {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramLoginRedeemView {
    pub user: String,
}

/// Pauses or resumes routing to a device; with `owner`, only that user's device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevicePause {
    pub id: String,
    #[serde(default)]
    pub owner: Option<String>,
    pub paused: bool,
}

/// A user's notifications, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeList {
    pub name: String,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Marks a user's notifications up to `upto` read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeRead {
    pub name: String,
    pub upto: u64,
}

/// One notification as the API and the portal show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NoticeView {
    pub seq: u64,
    pub time: String,
    pub kind: String,
    pub text: String,
    pub read: bool,
    /// Sent by the bot (false: kept only here — quiet hours, rate limit, no Telegram link).
    pub delivered: bool,
}

impl From<&Notice> for NoticeView {
    fn from(n: &Notice) -> Self {
        NoticeView {
            seq: n.seq,
            time: rfc3339(n.time),
            kind: n.kind.clone(),
            text: n.text.clone(),
            read: n.read,
            delivered: n.delivered,
        }
    }
}

/// A user's notification preferences.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyPrefsShow {
    pub name: String,
}

/// Replaces a user's notification preferences.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyPrefsSet {
    pub name: String,
    pub prefs: NotifyPrefsView,
}

/// Notification preferences (times in UTC hours; money in currency units).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NotifyPrefsView {
    /// Kinds not sent to Telegram: `node_offline`, `node_back`, `node_flagged`, `low_balance`,
    /// `deposit`, `withdrawal`, `cap_reached`, `admin_alert` (still kept in the inbox).
    #[serde(default)]
    pub muted: Vec<String>,
    #[serde(default)]
    pub quiet_start_hour: u8,
    #[serde(default)]
    pub quiet_end_hour: u8,
    /// Tell me once when my balance falls below this; `"0"`: never.
    #[serde(default)]
    pub low_balance: String,
    /// Report a node of mine offline after this many minutes without it (0: at the next check).
    #[serde(default)]
    pub offline_minutes: u32,
}

/// The kinds of notifications (`NotifyPrefsView::muted`).
pub const NOTICE_KINDS: &[&str] = &[
    "node_offline",
    "node_back",
    "node_flagged",
    "low_balance",
    "deposit",
    "withdrawal",
    "cap_reached",
    "admin_alert",
];

impl NotifyPrefsView {
    pub fn from_prefs(p: &NotifyPrefs) -> Self {
        NotifyPrefsView {
            muted: p.muted.clone(),
            quiet_start_hour: p.quiet_start_hour,
            quiet_end_hour: p.quiet_end_hour,
            low_balance: crate::money::Micros(p.low_balance_micros).to_string(),
            offline_minutes: p.offline_minutes,
        }
    }

    fn to_prefs(&self) -> Result<NotifyPrefs, AdminError> {
        if let Some(k) = self.muted.iter().find(|k| !NOTICE_KINDS.contains(&k.as_str())) {
            return Err(AdminError::new("invalid", format!("unknown notification kind {k:?}")));
        }
        if self.quiet_start_hour > 23 || self.quiet_end_hour > 23 {
            return Err(AdminError::new("invalid", "quiet hours are 0-23"));
        }
        if self.offline_minutes > 10_080 {
            return Err(AdminError::new("invalid", "offline_minutes is at most 10080 (a week)"));
        }
        let low = match self.low_balance.trim() {
            "" | "0" | "off" => 0,
            s => crate::money::Micros::parse(s).map_err(|e| AdminError::new("invalid", e.to_string()))?.0,
        };
        let mut muted = self.muted.clone();
        muted.sort();
        muted.dedup();
        Ok(NotifyPrefs {
            muted,
            quiet_start_hour: self.quiet_start_hour,
            quiet_end_hour: self.quiet_end_hour,
            low_balance_micros: low,
            offline_minutes: self.offline_minutes,
        })
    }
}

fn new_code() -> Result<String, AdminError> {
    use base64::Engine;
    let b = crate::auth::random_bytes::<16>().map_err(|e| AdminError::new("internal", e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// A code as the bot accepts it: what Telegram's deep links carry (1–64 of A-Z a-z 0-9 _ -).
pub fn valid_code(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl AdminCtx {
    fn put_code(&self, kind: TokenKind, user: &str, ttl: u64) -> Result<(String, u64), AdminError> {
        let code = new_code()?;
        let now = now_secs();
        let tok = TelegramToken { kind, user: user.to_owned(), created_at: now, expires_at: now + ttl };
        self.store.put_telegram_token(&crate::auth::secret_hash(&code), &tok, now)?;
        Ok((code, now + ttl))
    }

    /// The dashboard's address, as a login link starts.
    fn dashboard_url(&self) -> String {
        let scheme = if self.insecure_http { "http" } else { "https" };
        format!("{scheme}://{}", self.public_address)
    }
}

impl Command for TelegramLinkCode {
    type Output = TelegramCodeView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("telegram.link_code", &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<TelegramCodeView, AdminError> {
        ctx.require_user(&self.name)?;
        let (code, exp) = ctx.put_code(TokenKind::Link, &self.name, LINK_CODE_TTL_SECS)?;
        Ok(TelegramCodeView { command: format!("/start {code}"), code, kind: "link".into(), expires_at: rfc3339(exp) })
    }
}

impl Command for TelegramInvite {
    type Output = TelegramCodeView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("telegram.invite", "-"))
    }

    fn run(self, ctx: &AdminCtx, actor: &str) -> Result<TelegramCodeView, AdminError> {
        // One outstanding invitation per admin would be too few: key each by a fresh name.
        let (code, exp) = ctx.put_code(TokenKind::Invite, &format!("{actor}#{}", new_code()?), INVITE_TTL_SECS)?;
        Ok(TelegramCodeView {
            command: format!("/start {code}"),
            code,
            kind: "invite".into(),
            expires_at: rfc3339(exp),
        })
    }
}

impl Command for TelegramUnlink {
    type Output = UserView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("telegram.unlink", &self.name))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<serde_json::Value> {
        ctx.user_before(&self.name)
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<UserView, AdminError> {
        let old = ctx.store.unlink_telegram(&self.name)?;
        tracing::info!(user = %self.name, telegram_id = ?old, "Telegram account unlinked");
        let u = ctx.store.get_user(&self.name)?.ok_or_else(|| AdminError::new("not_found", "no such user"))?;
        ctx.user_view(&u)
    }
}

impl Command for TelegramStart {
    type Output = TelegramStartView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("telegram.start", self.telegram_id.to_string()))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<TelegramStartView, AdminError> {
        let tg = self.telegram_id;
        if tg <= 0 {
            return Err(AdminError::new("invalid", "a Telegram user id is positive"));
        }
        let payload = self.payload.as_deref().map(str::trim).filter(|p| !p.is_empty());
        let now = now_secs();
        let mut invited = false;
        if let Some(code) = payload.filter(|p| valid_code(p)) {
            let hash = crate::auth::secret_hash(code);
            if let Some(t) = ctx.store.take_telegram_token(&hash, TokenKind::Link, now)? {
                let u = ctx.store.link_telegram(&t.user, tg)?;
                tracing::info!(user = %u.name, telegram_id = tg, "Telegram account linked");
                return Ok(TelegramStartView { user: u.name, admin: u.admin, outcome: StartOutcome::Linked });
            }
            invited = ctx.store.take_telegram_token(&hash, TokenKind::Invite, now)?.is_some();
        }
        if let Some(u) = ctx.store.telegram_user(tg)? {
            return Ok(TelegramStartView { user: u.name, admin: u.admin, outcome: StartOutcome::Existing });
        }
        match self.signup {
            Signup::Off => {
                return Err(AdminError::new(
                    "signup_off",
                    "sign-up through the bot is off: link an existing account with the code from the dashboard",
                ));
            }
            Signup::Invite if !invited => {
                return Err(AdminError::new(
                    "invite_required",
                    "sign-up needs an invitation: send /start with the invitation code",
                ));
            }
            _ => {}
        }
        // A wished name (`/start alice`), else tg_<id>.
        let wished = payload.filter(|p| !invited && valid_name(p)).map(str::to_owned);
        let name = wished.unwrap_or_else(|| format!("tg_{tg}"));
        let pw = crate::auth::new_proxy_password().map_err(|e| AdminError::new("internal", e.to_string()))?;
        let mut rec = UserRecord::new(&name, &pw, now);
        rec.telegram_id = Some(tg);
        ctx.store.create_telegram_user(&rec)?;
        tracing::info!(user = %name, telegram_id = tg, invited, "account created through the Telegram bot");
        Ok(TelegramStartView { user: name, admin: false, outcome: StartOutcome::Created })
    }
}

impl Command for TelegramLoginLink {
    type Output = TelegramLoginLinkView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("telegram.login_link", self.telegram_id.to_string()))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<TelegramLoginLinkView, AdminError> {
        let u = ctx
            .store
            .telegram_user(self.telegram_id)?
            .ok_or_else(|| AdminError::new("not_linked", "this Telegram account has no user: send /start"))?;
        if u.disabled {
            return Err(AdminError::new("disabled", "this account is disabled"));
        }
        let (code, exp) = ctx.put_code(TokenKind::Login, &u.name, self.ttl_secs.clamp(30, 3600))?;
        // The token rides in the fragment, which no preview fetch sends to the server; the
        // page spends it with a POST.
        let link = format!("{}/#/telegram-login/{code}", ctx.dashboard_url());
        Ok(TelegramLoginLinkView { user: u.name, link, expires_at: rfc3339(exp) })
    }
}

impl Command for TelegramLoginRedeem {
    type Output = TelegramLoginRedeemView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("telegram.login", "-"))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<TelegramLoginRedeemView, AdminError> {
        let bad = || AdminError::new("invalid_token", "this login link is unknown, used or expired: ask the bot again");
        if !valid_code(&self.token) {
            return Err(bad());
        }
        let t = ctx
            .store
            .take_telegram_token(&crate::auth::secret_hash(&self.token), TokenKind::Login, now_secs())?
            .ok_or_else(bad)?;
        let u = ctx.store.get_user(&t.user)?.ok_or_else(bad)?;
        if u.disabled {
            return Err(AdminError::new("disabled", "this account is disabled"));
        }
        Ok(TelegramLoginRedeemView { user: u.name })
    }
}

impl Command for DevicePause {
    type Output = DeviceView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new(if self.paused { "device.pause" } else { "device.resume" }, &self.id))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<DeviceView, AdminError> {
        let d = ctx.find_device(&self.id)?;
        if self.owner.as_deref().is_some_and(|o| o != d.owner) {
            return Err(AdminError::new("not_found", "no such device of yours"));
        }
        let id = d.device_id().ok_or_else(|| AdminError::new("internal", "bad device id"))?;
        let d = ctx.store.update_device(&id, |d| d.paused = self.paused)?;
        if let Some(n) = ctx.live.as_ref().and_then(|l| l.registry.get(&id)) {
            n.set_owner_paused(self.paused);
        }
        tracing::info!(device = %d.id, owner = %d.owner, paused = self.paused, "device routing changed by its owner");
        Ok(ctx.device_view(&d))
    }
}

impl Command for NoticeList {
    type Output = Vec<NoticeView>;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<Vec<NoticeView>, AdminError> {
        let limit = self.limit.unwrap_or(50).clamp(1, MAX_NOTICES_PAGE);
        Ok(ctx.store.list_notices(&self.name, limit)?.iter().map(NoticeView::from).collect())
    }
}

impl Command for NoticeRead {
    type Output = usize;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<usize, AdminError> {
        Ok(ctx.store.mark_notices_read(&self.name, self.upto)?)
    }
}

impl Command for NotifyPrefsShow {
    type Output = NotifyPrefsView;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<NotifyPrefsView, AdminError> {
        Ok(NotifyPrefsView::from_prefs(&ctx.store.notify_prefs(&self.name)?))
    }
}

impl Command for NotifyPrefsSet {
    type Output = NotifyPrefsView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("notify.prefs", &self.name))
    }

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<NotifyPrefsView, AdminError> {
        ctx.require_user(&self.name)?;
        let p = self.prefs.to_prefs()?;
        ctx.store.set_notify_prefs(&self.name, &p)?;
        Ok(NotifyPrefsView::from_prefs(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{UserAdd, test_ctx};

    fn start(ctx: &AdminCtx, tg: i64, payload: Option<&str>, signup: Signup) -> Result<TelegramStartView, AdminError> {
        ctx.execute(TelegramStart { telegram_id: tg, payload: payload.map(str::to_owned), signup })
    }

    #[test]
    fn signup_modes() {
        let (_d, ctx) = test_ctx();
        assert_eq!(start(&ctx, 7, None, Signup::Off).unwrap_err().error, "signup_off");
        assert_eq!(start(&ctx, 7, None, Signup::Invite).unwrap_err().error, "invite_required");
        let v = start(&ctx, 7, None, Signup::Open).unwrap();
        assert_eq!((v.user.as_str(), v.outcome), ("tg_7", StartOutcome::Created));
        assert_eq!(start(&ctx, 7, None, Signup::Off).unwrap().outcome, StartOutcome::Existing);
        let inv = ctx.execute_as(TelegramInvite {}, "admin").unwrap();
        let v = start(&ctx, 8, Some(&inv.code), Signup::Invite).unwrap();
        assert_eq!((v.user.as_str(), v.outcome), ("tg_8", StartOutcome::Created));
        assert_eq!(start(&ctx, 9, Some(&inv.code), Signup::Invite).unwrap_err().error, "invite_required", "spent");
        assert_eq!(start(&ctx, 10, Some("carol_tg"), Signup::Open).unwrap().user, "carol_tg");
    }

    #[test]
    fn link_code_and_login_link() {
        let (_d, ctx) = test_ctx();
        ctx.execute(UserAdd { name: "alice".into(), password: None, admin: false }).unwrap();
        let code = ctx.execute(TelegramLinkCode { name: "alice".into() }).unwrap();
        let v = start(&ctx, 42, Some(&code.code), Signup::Off).unwrap();
        assert_eq!((v.user.as_str(), v.outcome), ("alice", StartOutcome::Linked));
        let link = ctx.execute(TelegramLoginLink { telegram_id: 42, ttl_secs: 300 }).unwrap();
        let token = link.link.rsplit('/').next().unwrap().to_owned();
        assert!(link.link.contains("/#/telegram-login/"), "{}", link.link);
        let r = ctx.execute(TelegramLoginRedeem { token: token.clone() }).unwrap();
        assert_eq!(r.user, "alice");
        assert_eq!(ctx.execute(TelegramLoginRedeem { token }).unwrap_err().error, "invalid_token");
        assert_eq!(ctx.execute(TelegramLoginRedeem { token: "x y".into() }).unwrap_err().error, "invalid_token");
        ctx.execute(TelegramUnlink { name: "alice".into() }).unwrap();
        assert_eq!(ctx.execute(TelegramLoginLink { telegram_id: 42, ttl_secs: 300 }).unwrap_err().error, "not_linked");
    }

    #[test]
    fn prefs_are_checked() {
        let (_d, ctx) = test_ctx();
        ctx.execute(UserAdd { name: "alice".into(), password: None, admin: false }).unwrap();
        let mut p = NotifyPrefsView { low_balance: "2.50".into(), quiet_start_hour: 22, ..Default::default() };
        let set = ctx.execute(NotifyPrefsSet { name: "alice".into(), prefs: p.clone() }).unwrap();
        assert_eq!(set.low_balance, "2.50");
        p.muted = vec!["bogus".into()];
        assert!(ctx.execute(NotifyPrefsSet { name: "alice".into(), prefs: p }).is_err());
    }
}
