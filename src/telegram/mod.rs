//! The Telegram bot (teloxide): one more front end of the admin commands, like the API. What
//! it owns:
//!
//! - [`Bot`]: receiving updates (long polling, or the webhook at `/telegram/webhook` with the
//!   secret-token check), answering commands and inline buttons, Telegram Stars invoices,
//!   pre-checkout checks and payments (credited through the payments service's idempotent
//!   deposit, keyed by Telegram's charge id);
//! - [`command`]: parsing what users send (pure); [`texts`]: every text (translatable);
//!   [`qr`]: pairing QR codes as PNG; [`notices`]: delivering notifications.
//!
//! A failure here (the API down, a bad token, a hostile update) is logged and backed off; it
//! never touches the proxy. This module calls the admin commands and the payments service; it
//! never reaches into the tunnel, the relay or the API.

pub mod command;
pub mod notices;
pub mod qr;
pub mod texts;

use std::sync::Arc;
use std::time::Duration;

use teloxide::RequestError;
use teloxide::payloads::{
    AnswerPreCheckoutQuerySetters, GetUpdatesSetters, SendInvoiceSetters, SendMessageSetters, SendPhotoSetters,
    SetWebhookSetters,
};
use teloxide::prelude::Requester;
use teloxide::types::{
    CallbackQuery, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, LabeledPrice, LinkPreviewOptions,
    Message, PreCheckoutQuery, TelegramTransactionId, Update, UpdateKind, UserId,
};

use self::command::{Callback, Command, StarsPayload};
use crate::admin::telegram::{Signup, StartOutcome};
use crate::admin::{self, AdminCtx, AdminError};
use crate::config::TelegramConfig;
use crate::money::Micros;
use crate::payments::Payments;
use crate::shutdown::Shutdown;
use crate::store::{DepositOutcome, now_secs};

/// How long one update may take to handle (Telegram wants a pre-checkout answer within 10 s).
const HANDLE_TIMEOUT: Duration = Duration::from_secs(9);
/// The largest webhook body read.
pub const MAX_WEBHOOK_BODY: usize = 1 << 20;

/// Bot problems: at most this many log lines a minute.
static BOT_LOG: crate::telemetry::LogLimiter = crate::telemetry::LogLimiter::new(30, Duration::from_secs(60));

/// Where clients reach the proxies, for `/proxy`.
#[derive(Debug, Clone)]
pub struct ProxyAddrs {
    pub socks5: String,
    pub http: String,
}

/// Counters of the bot (Prometheus: `traffix_telegram_*`).
#[derive(Debug, Default)]
pub struct BotMetrics {
    pub updates: prometheus_client::metrics::counter::Counter,
    pub updates_skipped: prometheus_client::metrics::counter::Counter,
    pub api_errors: prometheus_client::metrics::counter::Counter,
    pub notices_sent: prometheus_client::metrics::counter::Counter,
}

impl BotMetrics {
    pub fn register(&self, reg: &mut prometheus_client::registry::Registry) {
        reg.register("traffix_telegram_updates", "Telegram updates handled", self.updates.clone());
        reg.register(
            "traffix_telegram_updates_skipped",
            "Telegram updates skipped as malformed or unsupported",
            self.updates_skipped.clone(),
        );
        reg.register("traffix_telegram_api_errors", "Failed calls to the Telegram Bot API", self.api_errors.clone());
        reg.register("traffix_telegram_notices_sent", "Notifications delivered by the bot", self.notices_sent.clone());
    }
}

/// The running bot.
pub struct Bot {
    api: teloxide::Bot,
    admin: Arc<AdminCtx>,
    payments: Arc<Payments>,
    cfg: TelegramConfig,
    signup: Signup,
    proxy: ProxyAddrs,
    currency: String,
    /// The bot's own user name (from getMe), for `/cmd@name`.
    username: std::sync::RwLock<Option<String>>,
    /// The server's certificate, uploaded in setWebhook when asked.
    cert_path: std::path::PathBuf,
    webhook_slots: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<BotMetrics>,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot").field("api_url", &self.cfg.api_url).finish_non_exhaustive()
    }
}

type Markup = Option<InlineKeyboardMarkup>;

impl Bot {
    /// The bot over the admin commands and the payments service. `cert_path`: `tls.cert`.
    pub fn new(
        cfg: TelegramConfig,
        admin: Arc<AdminCtx>,
        payments: Arc<Payments>,
        proxy: ProxyAddrs,
        currency: &str,
        cert_path: std::path::PathBuf,
        webhook_concurrency: usize,
    ) -> Result<Bot, String> {
        let url = reqwest_url(&cfg.api_url)?;
        let api = teloxide::Bot::new(cfg.bot_token.expose()).set_api_url(url);
        Ok(Bot {
            api,
            admin,
            payments,
            signup: Signup::parse(&cfg.signup).unwrap_or_default(),
            cfg,
            proxy,
            currency: currency.to_owned(),
            username: std::sync::RwLock::new(None),
            cert_path,
            webhook_slots: Arc::new(tokio::sync::Semaphore::new(webhook_concurrency.max(1))),
            metrics: Arc::default(),
        })
    }

    fn backoff(&self, d: Duration) -> Duration {
        (d * 2).clamp(Duration::from_secs(self.cfg.retry_min_secs), Duration::from_secs(self.cfg.retry_max_secs))
    }

    fn api_failed(&self, what: &str, e: &RequestError) {
        self.metrics.api_errors.inc();
        if BOT_LOG.admit_now("telegram") {
            tracing::warn!(call = what, error = %e, "Telegram Bot API call failed");
        }
    }

    /// Learns the bot's name and sets up webhook delivery or clears it for polling; retried
    /// with back-off until it works or the server stops.
    async fn setup(&self, shutdown: &mut Shutdown) -> bool {
        let mut delay = Duration::from_secs(self.cfg.retry_min_secs);
        loop {
            let r = async {
                let me = self.api.get_me().await?;
                *self.username.write().unwrap_or_else(|p| p.into_inner()) = me.user.username.clone();
                if self.cfg.webhook_url.is_empty() {
                    self.api.delete_webhook().await?;
                } else {
                    let url = reqwest_url(&self.cfg.webhook_url)
                        .map_err(|e| RequestError::Io(Arc::new(std::io::Error::other(e))))?;
                    let mut req = self.api.set_webhook(url).secret_token(self.cfg.webhook_secret.expose());
                    if self.cfg.webhook_upload_cert {
                        req = req.certificate(InputFile::file(self.cert_path.clone()));
                    }
                    req.await?;
                }
                Ok::<_, RequestError>(me.user.username.unwrap_or_default())
            }
            .await;
            match r {
                Ok(name) => {
                    let mode = if self.cfg.webhook_url.is_empty() { "long polling" } else { "webhook" };
                    tracing::info!(bot = %name, mode, signup = %self.cfg.signup, "Telegram bot running");
                    return true;
                }
                Err(e) => {
                    self.api_failed("getMe/setWebhook", &e);
                    tracing::warn!(retry_in_secs = delay.as_secs(), "Telegram bot not started yet: {e}");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.recv() => return false,
            }
            delay = self.backoff(delay);
        }
    }

    /// Runs until shutdown: sets up, then (without a webhook) polls `getUpdates`.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        if !self.setup(&mut shutdown).await || !self.cfg.webhook_url.is_empty() {
            return;
        }
        let min = Duration::from_secs(self.cfg.retry_min_secs);
        let mut delay = min;
        let mut offset: i32 = 0;
        loop {
            let req = self.api.get_updates().offset(offset).timeout(self.cfg.poll_timeout_secs).limit(100);
            let r = tokio::select! {
                r = teloxide::requests::Request::send(req) => r,
                _ = shutdown.recv() => return,
            };
            let wait = match r {
                Ok(updates) => {
                    delay = min;
                    for u in updates {
                        // Not `as_offset`: a hostile id near u32::MAX must not overflow it.
                        if let Some(next) = i32::try_from(u.id.0).ok().and_then(|i| i.checked_add(1)) {
                            offset = offset.max(next);
                        }
                        self.handle_isolated(u).await;
                    }
                    None
                }
                Err(RequestError::InvalidJson { raw, source }) => {
                    // A batch Telegram's types cannot read whole (an update without an id, a
                    // wrong type): skip past every id it names, handle what parses alone.
                    self.metrics.updates_skipped.inc();
                    tracing::warn!(error = %source, "malformed getUpdates answer: skipping it");
                    match self.salvage(&raw).await {
                        Some(next) if next > offset => {
                            offset = next;
                            None
                        }
                        _ => Some(delay),
                    }
                }
                Err(e) => {
                    self.api_failed("getUpdates", &e);
                    Some(delay)
                }
            };
            if let Some(d) = wait {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = shutdown.recv() => return,
                }
                delay = self.backoff(delay);
            }
        }
    }

    /// Handles one update in its own task, so that even a bug that panics on it costs only
    /// that update, never the bot.
    async fn handle_isolated(self: &Arc<Self>, u: Update) {
        let me = self.clone();
        if let Err(e) = tokio::spawn(async move { me.handle_update(u).await }).await {
            self.metrics.updates_skipped.inc();
            tracing::error!(error = %e, "handling a Telegram update failed; the bot goes on");
        }
    }

    /// Handles each update of a malformed batch that parses on its own; the next offset.
    async fn salvage(self: &Arc<Self>, raw: &str) -> Option<i32> {
        let v: serde_json::Value = serde_json::from_str(raw).ok()?;
        let list = v.get("result")?.as_array()?;
        let mut next = None;
        for item in list.iter().take(100) {
            if let Some(id) = item.get("update_id").and_then(serde_json::Value::as_i64)
                && let Ok(id) = i32::try_from(id)
                && id < i32::MAX
            {
                next = next.max(Some(id + 1));
            }
            // From text: teloxide's update reader wants borrowed keys, which a Value cannot lend.
            match parse_update(item.to_string().as_bytes()) {
                Ok(u) => self.handle_isolated(u).await,
                Err(e) => {
                    self.metrics.updates_skipped.inc();
                    tracing::warn!(error = %e, "malformed Telegram update skipped");
                }
            }
        }
        next
    }

    /// Handles one update within [`HANDLE_TIMEOUT`]; failures are logged, never raised.
    pub async fn handle_update(&self, u: Update) {
        self.metrics.updates.inc();
        let id = u.id.0;
        let r = tokio::time::timeout(HANDLE_TIMEOUT, async {
            match u.kind {
                UpdateKind::Message(m) => self.on_message(m).await,
                UpdateKind::CallbackQuery(q) => self.on_callback(q).await,
                UpdateKind::PreCheckoutQuery(q) => self.on_pre_checkout(q).await,
                UpdateKind::Error(v) => {
                    self.metrics.updates_skipped.inc();
                    let keys: Vec<String> =
                        v.as_object().map(|o| o.keys().take(4).cloned().collect()).unwrap_or_default();
                    tracing::warn!(update = id, ?keys, "unreadable Telegram update skipped");
                }
                _ => {
                    self.metrics.updates_skipped.inc();
                    tracing::debug!(update = id, "Telegram update of a kind the bot does not use");
                }
            }
        })
        .await;
        if r.is_err() {
            tracing::warn!(update = id, "handling a Telegram update took too long; abandoned");
        }
    }

    /// Runs an admin command on a blocking thread, on behalf of `actor`.
    async fn exec<C: admin::Command>(&self, cmd: C, actor: &str) -> Result<C::Output, AdminError> {
        let (ctx, actor) = (self.admin.clone(), actor.to_owned());
        tokio::task::spawn_blocking(move || ctx.execute_as(cmd, &actor))
            .await
            .map_err(|e| AdminError::new("internal", e.to_string()))?
    }

    async fn send(&self, chat: ChatId, text: String, markup: Markup) {
        let mut req = self.api.send_message(chat, text).link_preview_options(no_preview());
        if let Some(m) = markup {
            req = req.reply_markup(m);
        }
        if let Err(e) = req.await {
            self.api_failed("sendMessage", &e);
        }
    }

    /// Sends a notification's text to a Telegram user; whether it went out.
    pub async fn notify(&self, telegram_id: i64, text: String) -> bool {
        match self.api.send_message(ChatId(telegram_id), text).link_preview_options(no_preview()).await {
            Ok(_) => {
                self.metrics.notices_sent.inc();
                true
            }
            Err(e) => {
                self.api_failed("sendMessage (notification)", &e);
                false
            }
        }
    }

    async fn linked_user(&self, tg: i64) -> Option<crate::store::UserRecord> {
        let store = self.admin.store.clone();
        match tokio::task::spawn_blocking(move || store.telegram_user(tg)).await {
            Ok(Ok(u)) => u.filter(|u| !u.disabled),
            _ => None,
        }
    }

    async fn on_message(&self, m: Message) {
        if !m.chat.is_private() {
            return;
        }
        let Some(from) = m.from.as_ref().filter(|u| !u.is_bot) else { return };
        let Ok(tg) = i64::try_from(from.id.0) else { return };
        let chat = m.chat.id;
        if let Some(p) = m.successful_payment() {
            return self.on_payment(chat, tg, p).await;
        }
        let Some(text) = m.text() else { return };
        let bot = self.username.read().ok().and_then(|n| n.clone());
        let Some(cmd) = command::parse(text, bot.as_deref()) else {
            return self.send(chat, texts::unknown_command(), None).await;
        };
        if let Command::Start(payload) = cmd {
            let r = self.exec(admin::TelegramStart { telegram_id: tg, payload, signup: self.signup }, "telegram").await;
            let text = match r {
                Ok(v) if v.outcome == StartOutcome::Created => texts::welcome_created(&v.user),
                Ok(v) if v.outcome == StartOutcome::Linked => texts::welcome_linked(&v.user),
                Ok(v) => texts::welcome_back(&v.user),
                Err(e) => texts::failed(&e.reason),
            };
            return self.send(chat, text, None).await;
        }
        let Some(user) = self.linked_user(tg).await else {
            return self.send(chat, texts::not_linked(), None).await;
        };
        let (text, markup) = match self.command(cmd, &user, chat, tg).await {
            Ok(Some(reply)) => reply,
            Ok(None) => return,
            Err(e) => (texts::failed(&e.reason), None),
        };
        self.send(chat, text, markup).await;
    }

    /// One command of a linked user: the reply (`None`: already sent, e.g. a photo).
    async fn command(
        &self,
        cmd: Command,
        user: &crate::store::UserRecord,
        chat: ChatId,
        tg: i64,
    ) -> Result<Option<(String, Markup)>, AdminError> {
        let name = user.name.clone();
        let admin_cmd = matches!(cmd, Command::Today | Command::Withdrawals | Command::Refund(..) | Command::Invite);
        if admin_cmd && !user.admin {
            return Ok(Some((texts::admin_only(), None)));
        }
        let cur = self.currency.clone();
        let reply = match cmd {
            Command::Start(_) => unreachable_start(),
            Command::Help => (texts::help(user.admin), None),
            Command::Unknown(_) => (texts::unknown_command(), None),
            Command::Balance => {
                let v = self.exec(admin::UserShow { name: name.clone() }, &name).await?;
                let pending = Micros(v.pending_withdrawals_micros).to_string();
                let avail = crate::money::format_signed(v.available_micros);
                (texts::balance(&v.balance, &avail, &cur, &pending), None)
            }
            Command::Usage => {
                let day = self
                    .exec(admin::Usage { subject: format!("client:{name}"), by: "day".into(), last: Some(7) }, &name);
                let day = day.await?;
                let earned = self
                    .exec(admin::Usage { subject: format!("owner:{name}"), by: "day".into(), last: Some(7) }, &name)
                    .await?;
                let today = day.series.last().cloned().unwrap_or_default();
                let t = &day.total;
                let text = texts::usage(
                    today.bytes_up + today.bytes_down,
                    Micros(today.debit_micros),
                    t.bytes_up + t.bytes_down,
                    Micros(t.debit_micros),
                    Micros(earned.total.earned_micros),
                    &cur,
                );
                // With traffic to show, the 7 days as a bar chart with the figures as caption.
                let per_day: Vec<u64> = day.series.iter().map(|p| p.bytes_up + p.bytes_down).collect();
                if per_day.iter().any(|b| *b > 0)
                    && let Some(Ok(png)) = qr::bar_chart(&per_day)
                {
                    let photo = InputFile::memory(png).file_name("usage.png");
                    match self.api.send_photo(chat, photo).caption(text.clone()).await {
                        Ok(_) => return Ok(None),
                        Err(e) => self.api_failed("sendPhoto", &e),
                    }
                }
                (text, None)
            }
            Command::Proxy => {
                let v = self.exec(admin::UserShow { name: name.clone() }, &name).await?;
                let kb = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(
                    texts::rotate_button(),
                    Callback::RotateProxy.data(),
                )]]);
                (texts::proxy(&name, &v.proxy_password, &self.proxy.socks5, &self.proxy.http), Some(kb))
            }
            Command::Pair => {
                let p = self.exec(admin::Pair { name: name.clone() }, &name).await?;
                let caption = texts::pair(&p.link, &p.expires_at);
                match qr::png(&p.link) {
                    Ok(png) => {
                        let photo = InputFile::memory(png).file_name("pair.png");
                        if let Err(e) = self.api.send_photo(chat, photo).caption(caption.clone()).await {
                            self.api_failed("sendPhoto", &e);
                            return Ok(Some((caption, None)));
                        }
                        return Ok(None);
                    }
                    Err(_) => (caption, None),
                }
            }
            Command::Devices => self.devices(&name).await?,
            Command::TopUp(amount) => return self.topup(chat, &name, amount).await,
            Command::Withdraw(amount, dest) => {
                let min = self.admin.money().min_payout;
                let Some(amount) = amount else { return Ok(Some((texts::withdraw_usage(min, &cur), None))) };
                let w = self
                    .exec(admin::WithdrawalRequest { name: name.clone(), amount, destination: dest }, &name)
                    .await?;
                (texts::withdrawal_requested(w.id, &w.amount, &cur), None)
            }
            Command::Login => {
                let v = self
                    .exec(admin::TelegramLoginLink { telegram_id: tg, ttl_secs: self.cfg.login_link_ttl_secs }, &name)
                    .await?;
                (texts::login_link(&v.link, &v.expires_at), None)
            }
            Command::Notify(args) => (self.notify_prefs(&name, &args).await?, None),
            Command::Inbox => {
                let list = self.exec(admin::NoticeList { name: name.clone(), limit: Some(10) }, &name).await?;
                if list.is_empty() {
                    (texts::inbox_empty(), None)
                } else {
                    let upto = list.first().map_or(0, |n| n.seq);
                    self.exec(admin::NoticeRead { name: name.clone(), upto }, &name).await?;
                    (list.iter().map(|n| format!("{} – {}", n.time, n.text)).collect::<Vec<_>>().join("\n"), None)
                }
            }
            Command::Today => self.today(&name).await?,
            Command::Withdrawals => self.pending_withdrawals(&name).await?,
            Command::Refund(charge, force) => {
                let Some(charge) = charge else { return Ok(Some((texts::refund_usage(), None))) };
                (self.refund(&name, &charge, force).await?, None)
            }
            Command::Invite => {
                let v = self.exec(admin::TelegramInvite {}, &name).await?;
                (texts::invite(&v.code, &v.expires_at), None)
            }
        };
        Ok(Some(reply))
    }

    async fn devices(&self, name: &str) -> Result<(String, Markup), AdminError> {
        let all = self.exec(admin::DeviceList::default(), name).await?;
        let mine: Vec<_> = all.into_iter().filter(|d| d.owner == name).take(20).collect();
        if mine.is_empty() {
            return Ok((texts::no_devices(), None));
        }
        let mut lines = Vec::new();
        let mut rows = Vec::new();
        for d in &mine {
            let state = texts::device_state(d.online, d.paused, d.banned);
            lines.push(texts::device_line(
                &d.vip,
                state,
                d.bytes_today,
                Micros(d.earned_today_micros),
                &self.currency,
                d.country.as_deref(),
            ));
            let b = if d.paused {
                InlineKeyboardButton::callback(
                    texts::resume_button(&d.vip),
                    Callback::ResumeDevice(d.id.clone()).data(),
                )
            } else {
                InlineKeyboardButton::callback(texts::pause_button(&d.vip), Callback::PauseDevice(d.id.clone()).data())
            };
            if !d.banned {
                rows.push(vec![b]);
            }
        }
        Ok((lines.join("\n"), (!rows.is_empty()).then(|| InlineKeyboardMarkup::new(rows))))
    }

    async fn topup(
        &self,
        chat: ChatId,
        name: &str,
        amount: Option<String>,
    ) -> Result<Option<(String, Markup)>, AdminError> {
        let stars = self.payments.stars_rate();
        let crypto = self.payments.cryptopay_enabled();
        let min = self.payments.min_topup();
        let usage = || Ok(Some((texts::topup_usage(min, &self.currency, stars.is_some(), crypto), None)));
        let Some(amount) = amount else { return usage() };
        let Ok(amount) = Micros::parse(amount.trim()) else { return usage() };
        if amount < min || amount > self.payments.max_credit() {
            return Err(AdminError::new(
                "invalid",
                format!("a top-up is {min} to {} {}", self.payments.max_credit(), self.currency),
            ));
        }
        let mut sent = false;
        if let Some(rate) = stars {
            let Some(n) = command::stars_for(amount.0, rate) else {
                return Err(AdminError::new("invalid", "that is more than one Stars invoice can ask"));
            };
            let payload = StarsPayload { user: name.to_owned(), micros: amount.0, stars: n }.encode();
            let r = self
                .api
                .send_invoice(
                    chat,
                    texts::invoice_title(),
                    texts::invoice_description(amount, &self.currency, name),
                    payload,
                    "XTR",
                    [LabeledPrice::new(texts::invoice_title(), n)],
                )
                .provider_token("")
                .await;
            match r {
                Ok(_) => sent = true,
                Err(e) => self.api_failed("sendInvoice", &e),
            }
        }
        if crypto {
            match self.payments.create_invoice(name, amount).await {
                Ok(inv) => {
                    self.send(chat, texts::cryptopay_link(amount, &self.currency, &inv.pay_url), None).await;
                    sent = true;
                }
                Err(e) => return Err(AdminError::new("topup_failed", e.to_string())),
            }
        }
        if sent { Ok(None) } else { usage() }
    }

    async fn notify_prefs(&self, name: &str, args: &[String]) -> Result<String, AdminError> {
        let mut p = self.exec(admin::NotifyPrefsShow { name: name.to_owned() }, name).await?;
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let changed = match a.as_slice() {
            [] => false,
            ["quiet", "off"] => {
                (p.quiet_start_hour, p.quiet_end_hour) = (0, 0);
                true
            }
            ["quiet", s, e] => {
                let bad = || AdminError::new("invalid", "quiet hours are 0-23");
                p.quiet_start_hour = s.parse().map_err(|_| bad())?;
                p.quiet_end_hour = e.parse().map_err(|_| bad())?;
                true
            }
            ["low", v] => {
                p.low_balance = (*v).to_owned();
                true
            }
            ["offline", m] => {
                p.offline_minutes = m.parse().map_err(|_| AdminError::new("invalid", "minutes, e.g. 10"))?;
                true
            }
            ["mute", k] => {
                p.muted.push((*k).to_owned());
                true
            }
            ["unmute", k] => {
                p.muted.retain(|x| x != k);
                true
            }
            _ => return Err(AdminError::new("invalid", "see /notify for the forms")),
        };
        if changed {
            p = self.exec(admin::NotifyPrefsSet { name: name.to_owned(), prefs: p }, name).await?;
        }
        Ok(texts::notify_prefs(&p.muted, (p.quiet_start_hour, p.quiet_end_hour), &p.low_balance, p.offline_minutes))
    }

    async fn today(&self, name: &str) -> Result<(String, Markup), AdminError> {
        let usage = self.exec(admin::Usage { subject: "all".into(), by: "day".into(), last: Some(1) }, name).await?;
        let devices = self.exec(admin::DeviceList::default(), name).await?;
        let users = self.exec(admin::UserList::default(), name).await?;
        let pending =
            self.exec(admin::WithdrawalList { status: Some("pending".into()), ..Default::default() }, name).await?;
        let t = &usage.total;
        Ok((
            texts::today(
                users.len(),
                devices.iter().filter(|d| d.online).count(),
                devices.len(),
                t.bytes_up + t.bytes_down,
                Micros(t.debit_micros),
                Micros(t.fee_micros),
                pending.len(),
                &self.currency,
            ),
            None,
        ))
    }

    async fn pending_withdrawals(&self, name: &str) -> Result<(String, Markup), AdminError> {
        let list =
            self.exec(admin::WithdrawalList { status: Some("pending".into()), ..Default::default() }, name).await?;
        if list.is_empty() {
            return Ok((texts::no_pending_withdrawals(), None));
        }
        let list: Vec<_> = list.into_iter().take(20).collect();
        let text = list
            .iter()
            .map(|w| texts::withdrawal_line(w.id, &w.user, &w.amount, &self.currency, w.destination.as_deref()))
            .collect::<Vec<_>>()
            .join("\n");
        let rows: Vec<Vec<InlineKeyboardButton>> = list
            .iter()
            .map(|w| {
                vec![
                    InlineKeyboardButton::callback(
                        format!("{} #{}", texts::approve_button(), w.id),
                        Callback::ApproveWithdrawal(w.id).data(),
                    ),
                    InlineKeyboardButton::callback(
                        format!("{} #{}", texts::reject_button(), w.id),
                        Callback::RejectWithdrawal(w.id).data(),
                    ),
                ]
            })
            .collect();
        Ok((text, Some(InlineKeyboardMarkup::new(rows))))
    }

    /// Refunds a Stars payment at Telegram, then takes back the unspent part of its deposit.
    /// Telegram always pays back every Star, so nothing is sent there for a deposit already
    /// reversed or returned, and a deposit partly spent needs `force`.
    async fn refund(&self, admin_name: &str, charge: &str, force: bool) -> Result<String, AdminError> {
        let transfer = crate::store::deposit_transfer_id("stars", charge);
        let store = self.admin.store.clone();
        let t = transfer.clone();
        let dep = tokio::task::spawn_blocking(move || store.get_deposit(&t))
            .await
            .map_err(|e| AdminError::new("internal", e.to_string()))??
            .ok_or_else(|| AdminError::new("not_found", format!("no Stars payment {charge}")))?;
        if dep.reversed_by.is_some() || !dep.returns.is_empty() {
            return Err(AdminError::new(
                "conflict",
                format!("the Stars payment {charge} was already reversed or refunded: nothing was sent to Telegram"),
            ));
        }
        let payer = self.exec(admin::UserShow { name: dep.user.clone() }, admin_name).await?;
        if i128::from(payer.available_micros) < i128::from(dep.amount.0) && !force {
            return Err(AdminError::new(
                "partly_spent",
                texts::refund_partly_spent(
                    charge,
                    &crate::money::format_signed(payer.available_micros.max(0)),
                    &dep.amount.to_string(),
                    &self.currency,
                ),
            ));
        }
        let store = self.admin.store.clone();
        let u = dep.user.clone();
        let tg = tokio::task::spawn_blocking(move || store.get_user(&u))
            .await
            .map_err(|e| AdminError::new("internal", e.to_string()))??
            .and_then(|u| u.telegram_id)
            .and_then(|t| u64::try_from(t).ok())
            .ok_or_else(|| AdminError::new("not_linked", "the payer's Telegram account is no longer linked"))?;
        if let Err(e) = self.api.refund_star_payment(UserId(tg), TelegramTransactionId(charge.to_owned())).await {
            self.api_failed("refundStarPayment", &e);
            return Err(AdminError::new("telegram", format!("Telegram refused the refund: {e}")));
        }
        let out = self
            .exec(
                admin::DepositReturnCmd {
                    deposit: transfer,
                    kind: "refund".into(),
                    amount: None,
                    id: Some(format!("stars-refund-{charge}")),
                    reason: format!("Stars refund by {admin_name} in Telegram"),
                },
                admin_name,
            )
            .await?;
        Ok(texts::refunded(charge, &out.ret.recovered, &self.currency))
    }

    async fn on_callback(&self, q: CallbackQuery) {
        let answer = self.api.answer_callback_query(q.id.clone());
        if let Err(e) = answer.await {
            self.api_failed("answerCallbackQuery", &e);
        }
        let Ok(tg) = i64::try_from(q.from.id.0) else { return };
        let chat = ChatId(tg);
        let Some(cb) = q.data.as_deref().and_then(Callback::parse) else {
            self.metrics.updates_skipped.inc();
            return;
        };
        let Some(user) = self.linked_user(tg).await else {
            return self.send(chat, texts::not_linked(), None).await;
        };
        let name = user.name.clone();
        let r: Result<String, AdminError> = async {
            match cb {
                Callback::RotateProxy => {
                    let v = self.exec(admin::UserProxyPassword { name: name.clone() }, &name).await?;
                    Ok(format!(
                        "{}\n{}",
                        texts::rotated(),
                        texts::proxy(&name, &v.proxy_password, &self.proxy.socks5, &self.proxy.http)
                    ))
                }
                Callback::PauseDevice(ref id) | Callback::ResumeDevice(ref id) => {
                    let paused = matches!(cb, Callback::PauseDevice(_));
                    let d = self
                        .exec(admin::DevicePause { id: id.clone(), owner: Some(name.clone()), paused }, &name)
                        .await?;
                    Ok(texts::paused(&d.vip, paused))
                }
                Callback::ApproveWithdrawal(id) | Callback::RejectWithdrawal(id) if user.admin => {
                    let w = if matches!(cb, Callback::ApproveWithdrawal(_)) {
                        self.exec(admin::WithdrawalApprove { id, reason: Some("approved in Telegram".into()) }, &name)
                            .await?
                    } else {
                        self.exec(admin::WithdrawalReject { id, reason: texts::rejected_in_telegram(&name) }, &name)
                            .await?
                    };
                    Ok(texts::decided(id, &w.status))
                }
                Callback::ApproveWithdrawal(_) | Callback::RejectWithdrawal(_) => Ok(texts::admin_only()),
                Callback::TopUpStars(m) => {
                    self.topup(chat, &name, Some(Micros(m).to_string())).await?;
                    Err(AdminError::new("", ""))
                }
            }
        }
        .await;
        match r {
            Ok(text) => self.send(chat, text, None).await,
            Err(e) if e.error.is_empty() => {}
            Err(e) => self.send(chat, texts::failed(&e.reason), None).await,
        }
    }

    /// Whether a pre-checkout may go on: the payload is ours, for the payer's own account, in
    /// Stars, of the amount asked; the error to show otherwise.
    async fn check_checkout(&self, tg: i64, currency: &str, total: u32, payload: &str) -> Result<StarsPayload, String> {
        let p = StarsPayload::parse(payload).ok_or("unknown invoice")?;
        if currency != "XTR" || total != p.stars {
            return Err("the amount or currency does not match the invoice".into());
        }
        let Some(rate) = self.payments.stars_rate() else {
            return Err("Stars payments are not enabled".into());
        };
        // An invoice message stays payable: its price must still be today's.
        if command::stars_for(p.micros, rate) != Some(p.stars) || p.micros < self.payments.min_topup().0 {
            return Err("the price changed since this invoice was made: ask for a new one with /topup".into());
        }
        let user = self.linked_user(tg).await.ok_or("this Telegram account has no active user")?;
        if user.name != p.user {
            return Err("this invoice is for another account".into());
        }
        if p.micros > self.payments.max_credit().0 {
            return Err("the amount is too large".into());
        }
        Ok(p)
    }

    async fn on_pre_checkout(&self, q: PreCheckoutQuery) {
        let tg = i64::try_from(q.from.id.0).unwrap_or(-1);
        let verdict = self.check_checkout(tg, &q.currency, q.total_amount, &q.invoice_payload).await;
        let mut req = self.api.answer_pre_checkout_query(q.id.clone(), verdict.is_ok());
        if let Err(why) = &verdict {
            tracing::info!(telegram_id = tg, reason = %why, "Stars pre-checkout refused");
            req = req.error_message(texts::precheckout_refused());
        }
        if let Err(e) = req.await {
            self.api_failed("answerPreCheckoutQuery", &e);
        }
    }

    async fn on_payment(&self, chat: ChatId, tg: i64, p: &teloxide::types::SuccessfulPayment) {
        let charge = p.telegram_payment_charge_id.0.clone();
        let Some(payload) =
            StarsPayload::parse(&p.invoice_payload).filter(|x| p.currency == "XTR" && p.total_amount == x.stars)
        else {
            tracing::error!(telegram_id = tg, charge = %charge, currency = %p.currency, total = p.total_amount,
                "ALERT: a Telegram payment does not match any invoice of this bot; not credited (refund it with /refund)");
            return self.send(chat, texts::payment_disputed(), None).await;
        };
        let (pay, user, amount, stars) =
            (self.payments.clone(), payload.user.clone(), Micros(payload.micros), p.total_amount);
        let c = charge.clone();
        let r = tokio::task::spawn_blocking(move || pay.stars_payment(&user, &c, amount, stars, now_secs())).await;
        let text = match r {
            Ok(Ok(DepositOutcome::Credited(d))) => {
                let bal = self.exec(admin::UserShow { name: d.user.clone() }, "telegram").await;
                texts::credited(d.amount, &self.currency, &bal.map(|b| b.balance).unwrap_or_default())
            }
            Ok(Ok(DepositOutcome::Duplicate(_))) => texts::payment_duplicate(),
            Ok(Err(e)) => {
                tracing::error!(telegram_id = tg, charge = %charge, error = %e, "ALERT: a Stars payment could not be credited");
                texts::failed(&e.to_string())
            }
            Err(e) => texts::failed(&e.to_string()),
        };
        self.send(chat, text, None).await;
    }

    /// The webhook's handler: the secret-token header, then the update, handled in the
    /// background within the concurrency limit (Telegram wants a quick 200).
    pub async fn webhook(self: Arc<Self>, secret: Option<&[u8]>, body: &[u8]) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        use subtle::ConstantTimeEq;
        let want = self.cfg.webhook_secret.expose().as_bytes();
        if self.cfg.webhook_url.is_empty() || want.is_empty() || !secret.is_some_and(|s| bool::from(s.ct_eq(want))) {
            if BOT_LOG.admit_now("telegram webhook") {
                tracing::warn!("Telegram webhook call without the right secret token refused");
            }
            return StatusCode::UNAUTHORIZED;
        }
        let update = match parse_update(body) {
            Ok(u) => u,
            Err(e) => {
                self.metrics.updates_skipped.inc();
                tracing::warn!(error = %e, "malformed Telegram webhook update skipped");
                // 200: Telegram would only send the same bytes again.
                return StatusCode::OK;
            }
        };
        let Ok(permit) = self.webhook_slots.clone().try_acquire_owned() else {
            return StatusCode::SERVICE_UNAVAILABLE;
        };
        // A payment is credited before Telegram hears 200: a restart in between makes Telegram
        // deliver it again (credited once, by its charge id) instead of losing it.
        let money = matches!(&update.kind, UpdateKind::Message(m) if m.successful_payment().is_some());
        let task = tokio::spawn(async move {
            let _permit = permit;
            self.handle_update(update).await;
        });
        if money && task.await.is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        StatusCode::OK
    }
}

/// One update as Telegram sends it (a webhook body, an item of `getUpdates`). An update of a
/// kind this teloxide does not know parses as `UpdateKind::Error`; no `update_id` is an error.
pub fn parse_update(body: &[u8]) -> Result<Update, serde_json::Error> {
    serde_json::from_slice(body)
}

fn unreachable_start() -> (String, Markup) {
    (texts::unknown_command(), None)
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

fn reqwest_url(s: &str) -> Result<url::Url, String> {
    url::Url::parse(s).map_err(|e| format!("{s:?}: {e}"))
}

/// The webhook route, `POST /telegram/webhook`, mounted on the web listener.
pub fn webhook_router(bot: Arc<Bot>) -> axum::Router {
    use axum::body::Bytes;
    use axum::extract::{DefaultBodyLimit, State};
    use axum::http::HeaderMap;
    axum::Router::new()
        .route(
            "/telegram/webhook",
            axum::routing::post(|State(bot): State<Arc<Bot>>, headers: HeaderMap, body: Bytes| async move {
                let secret = headers.get("x-telegram-bot-api-secret-token").map(|v| v.as_bytes().to_vec());
                bot.webhook(secret.as_deref(), &body).await
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
        .with_state(bot)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Login links are sent with previews off: a preview fetch must never see the link.
    #[test]
    fn messages_are_sent_without_link_previews() {
        let p = serde_json::to_value(no_preview()).unwrap();
        assert_eq!(p["is_disabled"], true);
    }

    #[test]
    fn api_urls_parse() {
        assert!(reqwest_url("http://127.0.0.1:9/").is_ok());
        assert!(reqwest_url("not a url").is_err());
    }
}
