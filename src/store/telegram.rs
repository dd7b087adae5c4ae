//! The Telegram bot's state: which Telegram id is which user, the one-time codes (linking a web
//! account, invitations, dashboard logins) and the notification inbox with its preferences.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::tables::{NOTICES, NOTIFY_PREFS, SUBUSERS, TELEGRAM_LINKS, TELEGRAM_TOKENS, USERS};
use super::{Store, StoreError, UserRecord, from_json, to_json};

/// What a one-time Telegram code is for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Shown in the portal: `/start CODE` links the sender's Telegram id to this user.
    Link,
    /// Made by an admin: `/start CODE` creates an account when sign-up is by invitation.
    Invite,
    /// Sent by the bot: signs its user in to the dashboard once.
    Login,
}

/// A one-time code, stored under the SHA-256 of its text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TelegramToken {
    pub kind: TokenKind,
    /// The user it links or signs in; the admin who made it, for an invitation.
    pub user: String,
    pub created_at: u64,
    pub expires_at: u64,
}

/// One notification in a user's inbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notice {
    pub seq: u64,
    pub time: u64,
    /// The event's kind (`node_offline`, `deposit`, …).
    pub kind: String,
    pub text: String,
    #[serde(default)]
    pub read: bool,
    /// Whether the bot delivered it (false: quiet hours, rate limit, no Telegram link).
    #[serde(default)]
    pub delivered: bool,
}

/// What a user wants to be told, and when not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct NotifyPrefs {
    /// Kinds of events not sent to Telegram (still kept in the inbox).
    pub muted: Vec<String>,
    /// Quiet hours (UTC, start inclusive, end exclusive; equal: none): nothing is sent then.
    pub quiet_start_hour: u8,
    pub quiet_end_hour: u8,
    /// Tell the user once when the balance falls below this (micro-units; 0: never).
    pub low_balance_micros: u64,
    /// A node is reported offline after this many minutes without it.
    pub offline_minutes: u32,
}

impl Default for NotifyPrefs {
    fn default() -> Self {
        NotifyPrefs {
            muted: Vec::new(),
            quiet_start_hour: 0,
            quiet_end_hour: 0,
            low_balance_micros: 0,
            offline_minutes: 10,
        }
    }
}

impl NotifyPrefs {
    /// Whether `hour` (0–23, UTC) is inside the quiet hours.
    pub fn quiet_at(&self, hour: u8) -> bool {
        let (s, e) = (self.quiet_start_hour % 24, self.quiet_end_hour % 24);
        match s.cmp(&e) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => hour >= s && hour < e,
            std::cmp::Ordering::Greater => hour >= s || hour < e,
        }
    }
}

fn conflict(m: String) -> StoreError {
    StoreError::Conflict(m)
}

impl Store {
    /// The user linked to Telegram id `tg`.
    pub fn telegram_user(&self, tg: i64) -> Result<Option<UserRecord>, StoreError> {
        let rtx = self.db.begin_read()?;
        let links = rtx.open_table(TELEGRAM_LINKS)?;
        let Some(name) = links.get(tg)?.map(|v| v.value().to_owned()) else { return Ok(None) };
        let users = rtx.open_table(USERS)?;
        users.get(name.as_str())?.map(|v| from_json(v.value())).transpose()
    }

    /// Links Telegram id `tg` to user `name` (both ways, one transaction). Refused when either
    /// side is already linked to another.
    pub fn link_telegram(&self, name: &str, tg: i64) -> Result<UserRecord, StoreError> {
        let txn = self.write()?;
        let user = {
            let mut links = txn.open_table(TELEGRAM_LINKS)?;
            if let Some(other) = links.get(tg)?.map(|v| v.value().to_owned())
                && other != name
            {
                return Err(conflict(format!("this Telegram account is already linked to {other:?}")));
            }
            let mut users = txn.open_table(USERS)?;
            let mut user: UserRecord = match users.get(name)? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::NotFound(format!("user {name:?}"))),
            };
            if user.telegram_id.is_some_and(|t| t != tg) {
                return Err(conflict(format!("user {name:?} is already linked to another Telegram account")));
            }
            user.telegram_id = Some(tg);
            users.insert(name, to_json(&user)?.as_slice())?;
            links.insert(tg, name)?;
            user
        };
        txn.commit()?;
        Ok(user)
    }

    /// Creates `user` (which carries its Telegram id) and its link in one transaction.
    pub fn create_telegram_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let tg = user.telegram_id.ok_or_else(|| StoreError::Invalid("no Telegram id".into()))?;
        let txn = self.write()?;
        {
            let mut links = txn.open_table(TELEGRAM_LINKS)?;
            if links.get(tg)?.is_some() {
                return Err(conflict("this Telegram account already has a user".into()));
            }
            let mut t = txn.open_table(USERS)?;
            if t.get(user.name.as_str())?.is_some() || txn.open_table(SUBUSERS)?.get(user.name.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists(format!("user {:?}", user.name)));
            }
            t.insert(user.name.as_str(), to_json(user)?.as_slice())?;
            links.insert(tg, user.name.as_str())?;
        }
        super::ledger::ensure_account(&txn, &super::Account::User(user.name.clone()))?;
        txn.commit()?;
        Ok(())
    }

    /// Removes user `name`'s Telegram link; the id it had.
    pub fn unlink_telegram(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let txn = self.write()?;
        let old = {
            let mut users = txn.open_table(USERS)?;
            let mut user: UserRecord = match users.get(name)? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::NotFound(format!("user {name:?}"))),
            };
            let old = user.telegram_id.take();
            users.insert(name, to_json(&user)?.as_slice())?;
            if let Some(tg) = old {
                txn.open_table(TELEGRAM_LINKS)?.remove(tg)?;
            }
            old
        };
        txn.commit()?;
        Ok(old)
    }

    /// Keeps a one-time code under `hash`, replacing `token.user`'s earlier code of the same
    /// kind and dropping expired ones (so the table holds at most one per user and kind).
    pub fn put_telegram_token(&self, hash: &str, token: &TelegramToken, now: u64) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut t = txn.open_table(TELEGRAM_TOKENS)?;
            let mut stale = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let old: TelegramToken = from_json(v.value())?;
                if old.expires_at <= now || (old.kind == token.kind && old.user == token.user) {
                    stale.push(k.value().to_owned());
                }
            }
            for k in stale {
                t.remove(k.as_str())?;
            }
            t.insert(hash, to_json(token)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Spends the code under `hash` if it is of `kind` and not expired at `now` (single use:
    /// it is removed either way once found expired or spent).
    pub fn take_telegram_token(
        &self,
        hash: &str,
        kind: TokenKind,
        now: u64,
    ) -> Result<Option<TelegramToken>, StoreError> {
        let txn = self.write()?;
        let found = {
            let mut t = txn.open_table(TELEGRAM_TOKENS)?;
            let tok: Option<TelegramToken> = t.get(hash)?.map(|v| from_json(v.value())).transpose()?;
            match tok {
                Some(tok) if tok.kind == kind => {
                    t.remove(hash)?;
                    (tok.expires_at > now).then_some(tok)
                }
                _ => return Ok(None),
            }
        };
        txn.commit()?;
        Ok(found)
    }

    /// Adds a notice to `user`'s inbox, keeping the newest `max` (≥ 1); the stored notice.
    pub fn push_notice(
        &self,
        user: &str,
        kind: &str,
        text: &str,
        delivered: bool,
        now: u64,
        max: usize,
    ) -> Result<Notice, StoreError> {
        let txn = self.write()?;
        let notice = {
            let mut t = txn.open_table(NOTICES)?;
            let mut seqs = Vec::new();
            for row in t.range((user, 0)..=(user, u64::MAX))? {
                seqs.push(row?.0.value().1);
            }
            let seq = seqs.last().map_or(1, |s| s + 1);
            let notice =
                Notice { seq, time: now, kind: kind.to_owned(), text: text.to_owned(), read: false, delivered };
            t.insert((user, seq), to_json(&notice)?.as_slice())?;
            let excess = (seqs.len() + 1).saturating_sub(max.max(1));
            for s in seqs.into_iter().take(excess) {
                t.remove((user, s))?;
            }
            notice
        };
        txn.commit()?;
        Ok(notice)
    }

    /// `user`'s notices, newest first, at most `limit`.
    pub fn list_notices(&self, user: &str, limit: usize) -> Result<Vec<Notice>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(NOTICES)?;
        let mut out = Vec::new();
        for row in t.range((user, 0)..=(user, u64::MAX))?.rev().take(limit) {
            out.push(from_json(row?.1.value())?);
        }
        Ok(out)
    }

    /// Marks `user`'s notices up to `upto` read; how many changed.
    pub fn mark_notices_read(&self, user: &str, upto: u64) -> Result<usize, StoreError> {
        let txn = self.write()?;
        let n = {
            let mut t = txn.open_table(NOTICES)?;
            let mut unread = Vec::new();
            for row in t.range((user, 0)..=(user, upto))? {
                let n: Notice = from_json(row?.1.value())?;
                if !n.read {
                    unread.push(n);
                }
            }
            for mut n in unread.iter().cloned() {
                n.read = true;
                t.insert((user, n.seq), to_json(&n)?.as_slice())?;
            }
            unread.len()
        };
        txn.commit()?;
        Ok(n)
    }

    /// `user`'s notification preferences (the defaults when never set).
    pub fn notify_prefs(&self, user: &str) -> Result<NotifyPrefs, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(NOTIFY_PREFS)?;
        Ok(t.get(user)?.map(|v| from_json(v.value())).transpose()?.unwrap_or_default())
    }

    pub fn set_notify_prefs(&self, user: &str, prefs: &NotifyPrefs) -> Result<(), StoreError> {
        let txn = self.write()?;
        txn.open_table(NOTIFY_PREFS)?.insert(user, to_json(prefs)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        (dir, s)
    }

    #[test]
    fn links_are_one_to_one() {
        let (_d, s) = store();
        s.create_user(&UserRecord::new("alice", "pw", 1)).unwrap();
        s.create_user(&UserRecord::new("bob", "pw", 1)).unwrap();
        s.link_telegram("alice", 42).unwrap();
        assert_eq!(s.telegram_user(42).unwrap().unwrap().name, "alice");
        assert!(matches!(s.link_telegram("bob", 42), Err(StoreError::Conflict(_))));
        assert!(matches!(s.link_telegram("alice", 43), Err(StoreError::Conflict(_))));
        assert_eq!(s.unlink_telegram("alice").unwrap(), Some(42));
        assert!(s.telegram_user(42).unwrap().is_none());
        s.link_telegram("bob", 42).unwrap();
        let mut u = UserRecord::new("tg_42", "pw", 1);
        u.telegram_id = Some(42);
        assert!(matches!(s.create_telegram_user(&u), Err(StoreError::Conflict(_))));
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let (_d, s) = store();
        let t = TelegramToken { kind: TokenKind::Login, user: "alice".into(), created_at: 0, expires_at: 100 };
        s.put_telegram_token("h1", &t, 0).unwrap();
        assert!(s.take_telegram_token("h1", TokenKind::Link, 1).unwrap().is_none(), "wrong kind");
        assert_eq!(s.take_telegram_token("h1", TokenKind::Login, 1).unwrap(), Some(t.clone()));
        assert!(s.take_telegram_token("h1", TokenKind::Login, 1).unwrap().is_none(), "spent");
        s.put_telegram_token("h2", &t, 0).unwrap();
        assert!(s.take_telegram_token("h2", TokenKind::Login, 100).unwrap().is_none(), "expired");
        // A new code of the same kind replaces the user's earlier one.
        s.put_telegram_token("h3", &t, 0).unwrap();
        s.put_telegram_token("h4", &t, 0).unwrap();
        assert!(s.take_telegram_token("h3", TokenKind::Login, 1).unwrap().is_none());
        assert!(s.take_telegram_token("h4", TokenKind::Login, 1).unwrap().is_some());
    }

    #[test]
    fn inbox_is_bounded_and_newest_first() {
        let (_d, s) = store();
        for i in 0..5 {
            s.push_notice("alice", "deposit", &format!("n{i}"), true, i, 3).unwrap();
        }
        let l = s.list_notices("alice", 10).unwrap();
        assert_eq!(l.iter().map(|n| n.text.as_str()).collect::<Vec<_>>(), ["n4", "n3", "n2"]);
        assert_eq!(s.mark_notices_read("alice", l[1].seq).unwrap(), 2);
        assert!(s.list_notices("bob", 10).unwrap().is_empty());
    }

    #[test]
    fn quiet_hours_wrap_midnight() {
        let p = NotifyPrefs { quiet_start_hour: 22, quiet_end_hour: 7, ..NotifyPrefs::default() };
        assert!(p.quiet_at(23) && p.quiet_at(0) && p.quiet_at(6));
        assert!(!p.quiet_at(7) && !p.quiet_at(12) && !p.quiet_at(21));
        let day = NotifyPrefs { quiet_start_hour: 9, quiet_end_hour: 17, ..NotifyPrefs::default() };
        assert!(day.quiet_at(9) && !day.quiet_at(17));
        assert!(!NotifyPrefs::default().quiet_at(3));
    }
}
