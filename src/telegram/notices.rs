//! Delivering notifications: every event goes to its users' inboxes (the dashboard shows them);
//! the bot also sends it to a linked Telegram account unless the user muted that kind, it is
//! their quiet hours, or they were already sent `telegram.notify_per_minute` this minute.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Bot, texts};
use crate::notify::{Event, Recipient};
use crate::shutdown::Shutdown;
use crate::store::{Store, now_secs};

/// Per-user send counts of the current minute (cleared every minute: bounded by the users
/// notified within one minute).
#[derive(Debug, Default)]
pub struct RateLimit {
    minute: u64,
    sent: HashMap<String, u32>,
}

impl RateLimit {
    /// Whether `user` may be sent one more message at `now` (at most `per_minute` a minute).
    pub fn admit(&mut self, user: &str, per_minute: u32, now: u64) -> bool {
        if now / 60 != self.minute {
            self.minute = now / 60;
            self.sent.clear();
        }
        let n = self.sent.entry(user.to_owned()).or_insert(0);
        if *n >= per_minute {
            return false;
        }
        *n += 1;
        true
    }
}

/// What the delivery task needs.
pub struct Delivery {
    pub store: Arc<Store>,
    pub bot: Option<Arc<Bot>>,
    pub currency: String,
    pub per_minute: u32,
    pub inbox_max: usize,
}

impl Delivery {
    /// Delivers events until shutdown.
    pub async fn run(self, mut rx: tokio::sync::mpsc::Receiver<Event>, mut shutdown: Shutdown) {
        let mut rate = RateLimit::default();
        loop {
            let e = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                _ = shutdown.recv() => return,
            };
            self.deliver(&e, &mut rate).await;
        }
    }

    async fn deliver(&self, e: &Event, rate: &mut RateLimit) {
        let store = self.store.clone();
        let recipient = e.recipient();
        let users = tokio::task::spawn_blocking(move || -> Result<Vec<_>, crate::store::StoreError> {
            Ok(match recipient {
                Recipient::User(n) => store.get_user(&n)?.into_iter().collect(),
                Recipient::Admins => store.list_users()?.into_iter().filter(|u| u.admin && !u.disabled).collect(),
            })
        })
        .await;
        let Ok(Ok(users)) = users else { return };
        let text = texts::notice(e, &self.currency);
        let kind = e.kind();
        for u in users {
            let now = now_secs();
            let store = self.store.clone();
            let name = u.name.clone();
            let Ok(Ok(prefs)) = tokio::task::spawn_blocking(move || store.notify_prefs(&name)).await else { continue };
            let hour = u8::try_from(now % 86_400 / 3600).unwrap_or(0);
            let wanted = !prefs.muted.iter().any(|m| m == kind) && !prefs.quiet_at(hour);
            let mut delivered = false;
            if let (Some(bot), Some(tg)) = (&self.bot, u.telegram_id)
                && wanted
                && rate.admit(&u.name, self.per_minute, now)
            {
                delivered = bot.notify(tg, text.clone()).await;
            }
            let (store, name, t, max) = (self.store.clone(), u.name.clone(), text.clone(), self.inbox_max);
            match tokio::task::spawn_blocking(move || store.push_notice(&name, kind, &t, delivered, now, max)).await {
                Ok(Ok(_)) => tracing::debug!(user = %u.name, kind, delivered, "notification"),
                _ => tracing::warn!(user = %u.name, kind, "notification could not be kept in the inbox"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_per_user_per_minute() {
        let mut r = RateLimit::default();
        assert!(r.admit("a", 2, 60));
        assert!(r.admit("a", 2, 61));
        assert!(!r.admit("a", 2, 62));
        assert!(r.admit("b", 2, 62));
        assert!(r.admit("a", 2, 120), "a new minute");
    }
}
