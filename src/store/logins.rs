//! Logins of the REST API: opaque refresh tokens stored hashed, grouped in families (one per
//! login) that rotate on every use — presenting a spent token revokes its whole family (RFC 9700
//! reuse detection) — and scoped API keys, also stored hashed.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::tables::{API_KEYS, REFRESH_TOKENS, TOKEN_FAMILIES};
use super::{Store, StoreError, from_json, to_json};

/// A refresh token older than this since its issue is dead (idle timeout).
pub const REFRESH_IDLE_SECS: u64 = 7 * 86_400;
/// A login older than this is dead whatever its tokens (absolute timeout).
pub const REFRESH_ABSOLUTE_SECS: u64 = 30 * 86_400;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefreshToken {
    pub family: String,
    pub user: String,
    pub issued_at: u64,
    /// Exchanged for a newer token: presenting it again is reuse.
    pub spent: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenFamily {
    pub user: String,
    pub started_at: u64,
    pub last_used: u64,
    pub revoked: bool,
    #[serde(default)]
    pub revoked_reason: Option<String>,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("unknown refresh token")]
    Unknown,
    #[error("this login was signed out or revoked")]
    Revoked,
    #[error("refresh token reused: every token of this login is revoked")]
    Reused,
    #[error("the login expired; sign in again")]
    Expired,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Read-only.
    Read,
    /// Read, credits and withdrawal decisions.
    Billing,
    /// Everything its owner may do.
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub user: String,
    pub name: String,
    pub scope: KeyScope,
    pub created_at: u64,
}

impl TokenFamily {
    /// Signed out, revoked, or past its idle or absolute lifetime at `now`.
    pub fn is_dead(&self, now: u64) -> bool {
        self.revoked
            || now.saturating_sub(self.started_at) > REFRESH_ABSOLUTE_SECS
            || now.saturating_sub(self.last_used) > REFRESH_IDLE_SECS
    }
}

/// What [`Store::prune_logins`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub families: usize,
    pub tokens: usize,
}

impl Store {
    /// Starts a login family with its first refresh token (given by its hash). A user keeps at
    /// most `max_live` live logins: starting one more revokes the least recently used.
    pub fn start_login(
        &self,
        user: &str,
        family: &str,
        token_hash: &str,
        now: u64,
        max_live: usize,
    ) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut families = txn.open_table(TOKEN_FAMILIES)?;
            let mut live: Vec<(u64, String, TokenFamily)> = Vec::new();
            for row in families.iter()? {
                let (k, v) = row?;
                let f: TokenFamily = from_json(v.value())?;
                if f.user == user && !f.is_dead(now) {
                    live.push((f.last_used, k.value().to_owned(), f));
                }
            }
            live.sort_by_key(|(used, ..)| *used);
            let excess = (live.len() + 1).saturating_sub(max_live.max(1));
            for (_, key, mut f) in live.into_iter().take(excess) {
                f.revoked = true;
                f.revoked_reason = Some("too many logins: the least recently used one was signed out".into());
                families.insert(key.as_str(), to_json(&f)?.as_slice())?;
            }
        }
        let fam =
            TokenFamily { user: user.into(), started_at: now, last_used: now, revoked: false, revoked_reason: None };
        txn.open_table(TOKEN_FAMILIES)?.insert(family, to_json(&fam)?.as_slice())?;
        let tok = RefreshToken { family: family.into(), user: user.into(), issued_at: now, spent: false };
        txn.open_table(REFRESH_TOKENS)?.insert(token_hash, to_json(&tok)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Exchanges the refresh token `old` for `new` (both hashes) in one transaction. Returns
    /// the user and the login family. A spent token revokes its family (and the change is kept: the error is
    /// returned after the commit).
    pub fn rotate_refresh(
        &self,
        old: &str,
        new: &str,
        now: u64,
    ) -> Result<Result<(String, String), RefreshError>, StoreError> {
        let txn = self.write()?;
        let outcome = {
            let mut tokens = txn.open_table(REFRESH_TOKENS)?;
            let mut families = txn.open_table(TOKEN_FAMILIES)?;
            let tok: Option<RefreshToken> = tokens.get(old)?.map(|v| from_json(v.value())).transpose()?;
            let Some(mut tok) = tok else {
                return Ok(Err(RefreshError::Unknown));
            };
            let fam: Option<TokenFamily> =
                families.get(tok.family.as_str())?.map(|v| from_json(v.value())).transpose()?;
            let Some(mut fam) = fam else {
                return Ok(Err(RefreshError::Unknown));
            };
            if fam.revoked {
                Err(RefreshError::Revoked)
            } else if tok.spent {
                fam.revoked = true;
                fam.revoked_reason = Some("refresh token reused".into());
                families.insert(tok.family.as_str(), to_json(&fam)?.as_slice())?;
                Err(RefreshError::Reused)
            } else if now.saturating_sub(fam.started_at) > REFRESH_ABSOLUTE_SECS
                || now.saturating_sub(tok.issued_at) > REFRESH_IDLE_SECS
            {
                Err(RefreshError::Expired)
            } else {
                tok.spent = true;
                tokens.insert(old, to_json(&tok)?.as_slice())?;
                let next =
                    RefreshToken { family: tok.family.clone(), user: tok.user.clone(), issued_at: now, spent: false };
                tokens.insert(new, to_json(&next)?.as_slice())?;
                fam.last_used = now;
                families.insert(tok.family.as_str(), to_json(&fam)?.as_slice())?;
                Ok((tok.user, tok.family))
            }
        };
        txn.commit()?;
        Ok(outcome)
    }

    /// Revokes the family of a refresh token (logout). Unknown tokens are ignored.
    pub fn revoke_refresh(&self, token_hash: &str, reason: &str) -> Result<bool, StoreError> {
        let txn = self.write()?;
        let done = {
            let tokens = txn.open_table(REFRESH_TOKENS)?;
            let mut families = txn.open_table(TOKEN_FAMILIES)?;
            let tok: Option<RefreshToken> = tokens.get(token_hash)?.map(|v| from_json(v.value())).transpose()?;
            match tok {
                None => false,
                Some(tok) => {
                    let fam: Option<TokenFamily> =
                        families.get(tok.family.as_str())?.map(|v| from_json(v.value())).transpose()?;
                    if let Some(mut fam) = fam {
                        fam.revoked = true;
                        fam.revoked_reason = Some(reason.into());
                        families.insert(tok.family.as_str(), to_json(&fam)?.as_slice())?;
                    }
                    true
                }
            }
        };
        txn.commit()?;
        Ok(done)
    }

    /// Revokes every live login of `user` but `keep` (a family id), e.g. after a password
    /// change; returns how many were revoked.
    pub fn revoke_logins(&self, user: &str, keep: Option<&str>, reason: &str, now: u64) -> Result<usize, StoreError> {
        let txn = self.write()?;
        let mut n = 0;
        {
            let mut families = txn.open_table(TOKEN_FAMILIES)?;
            let mut hit = Vec::new();
            for row in families.iter()? {
                let (k, v) = row?;
                let f: TokenFamily = from_json(v.value())?;
                if f.user == user && !f.is_dead(now) && Some(k.value()) != keep {
                    hit.push((k.value().to_owned(), f));
                }
            }
            for (key, mut f) in hit {
                f.revoked = true;
                f.revoked_reason = Some(reason.to_owned());
                families.insert(key.as_str(), to_json(&f)?.as_slice())?;
                n += 1;
            }
        }
        txn.commit()?;
        Ok(n)
    }

    /// Removes dead logins (signed out, revoked or expired at `now`) with all their refresh
    /// tokens, spent or not, and tokens whose login is gone. A token of a removed login is then
    /// simply unknown (401), as it would have been refused anyway.
    pub fn prune_logins(&self, now: u64) -> Result<Pruned, StoreError> {
        let txn = self.write()?;
        let mut pruned = Pruned::default();
        {
            let mut families = txn.open_table(TOKEN_FAMILIES)?;
            let mut dead = Vec::new();
            let mut live = std::collections::HashSet::new();
            for row in families.iter()? {
                let (k, v) = row?;
                let f: TokenFamily = from_json(v.value())?;
                if f.is_dead(now) {
                    dead.push(k.value().to_owned());
                } else {
                    live.insert(k.value().to_owned());
                }
            }
            for k in &dead {
                families.remove(k.as_str())?;
            }
            pruned.families = dead.len();
            let mut tokens = txn.open_table(REFRESH_TOKENS)?;
            let mut gone = Vec::new();
            for row in tokens.iter()? {
                let (k, v) = row?;
                let t: RefreshToken = from_json(v.value())?;
                if !live.contains(&t.family) {
                    gone.push(k.value().to_owned());
                }
            }
            for k in &gone {
                tokens.remove(k.as_str())?;
            }
            pruned.tokens = gone.len();
        }
        txn.commit()?;
        Ok(pruned)
    }

    /// Stores an API key (by its hash).
    pub fn add_api_key(&self, hash: &str, key: &ApiKey) -> Result<(), StoreError> {
        let txn = self.write()?;
        txn.open_table(API_KEYS)?.insert(hash, to_json(key)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The API key with this hash.
    pub fn api_key(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let rtx = self.db.begin_read()?;
        rtx.open_table(API_KEYS)?.get(hash)?.map(|v| from_json(v.value())).transpose()
    }

    /// A user's API keys.
    pub fn list_api_keys(&self, user: &str) -> Result<Vec<ApiKey>, StoreError> {
        let rtx = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in rtx.open_table(API_KEYS)?.iter()? {
            let k: ApiKey = from_json(row?.1.value())?;
            if k.user == user {
                out.push(k);
            }
        }
        out.sort_by_key(|k| k.created_at);
        Ok(out)
    }

    /// Deletes `user`'s API key `id`.
    pub fn delete_api_key(&self, user: &str, id: &str) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut t = txn.open_table(API_KEYS)?;
            let mut hit = None;
            for row in t.iter()? {
                let (h, v) = row?;
                let k: ApiKey = from_json(v.value())?;
                if k.user == user && k.id == id {
                    hit = Some(h.value().to_owned());
                }
            }
            let hash = hit.ok_or_else(|| StoreError::NotFound(format!("API key {id}")))?;
            t.remove(hash.as_str())?;
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_reuse_detection_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("l.redb")).unwrap();
        s.start_login("ann", "fam1", "h1", 100, 20).unwrap();
        assert_eq!(s.rotate_refresh("h1", "h2", 110).unwrap(), Ok(("ann".into(), "fam1".into())));
        assert_eq!(s.rotate_refresh("h2", "h3", 120).unwrap(), Ok(("ann".into(), "fam1".into())));
        assert_eq!(s.rotate_refresh("nope", "h9", 120).unwrap(), Err(RefreshError::Unknown));
        // h1 was spent: presenting it again revokes the family, h3 included.
        assert_eq!(s.rotate_refresh("h1", "h4", 130).unwrap(), Err(RefreshError::Reused));
        assert_eq!(s.rotate_refresh("h3", "h5", 131).unwrap(), Err(RefreshError::Revoked));

        s.start_login("ann", "fam2", "k1", 0, 20).unwrap();
        assert_eq!(s.rotate_refresh("k1", "k2", REFRESH_IDLE_SECS + 1).unwrap(), Err(RefreshError::Expired));
        s.start_login("ann", "fam3", "m1", 0, 20).unwrap();
        let mut old = "m1".to_owned();
        let mut t = 0;
        while t < REFRESH_ABSOLUTE_SECS {
            t += 86_400;
            let new = format!("m{t}");
            assert_eq!(
                s.rotate_refresh(&old, &new, t).unwrap(),
                Ok(("ann".into(), "fam3".into())),
                "day {}",
                t / 86_400
            );
            old = new;
        }
        assert_eq!(s.rotate_refresh(&old, "late", t + 86_400).unwrap(), Err(RefreshError::Expired));

        s.start_login("bob", "fam4", "b1", 0, 20).unwrap();
        assert!(s.revoke_refresh("b1", "logout").unwrap());
        assert_eq!(s.rotate_refresh("b1", "b2", 1).unwrap(), Err(RefreshError::Revoked));
    }

    /// A user keeps at most its cap of live logins (the least recently used one goes), and
    /// pruning removes dead logins with every token they issued, spent or not.
    #[test]
    fn logins_are_capped_per_user_and_dead_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("p.redb")).unwrap();
        for i in 0..3u64 {
            s.start_login("ann", &format!("f{i}"), &format!("t{i}"), 100 + i, 3).unwrap();
        }
        // f0 is the least recently used once f1 and f2 rotate.
        assert!(s.rotate_refresh("t1", "t1b", 200).unwrap().is_ok());
        assert!(s.rotate_refresh("t2", "t2b", 201).unwrap().is_ok());
        s.start_login("ann", "f3", "t3", 300, 3).unwrap();
        assert_eq!(s.rotate_refresh("t0", "t0b", 301).unwrap(), Err(RefreshError::Revoked), "f0 was signed out");
        assert!(s.rotate_refresh("t1b", "t1c", 302).unwrap().is_ok(), "the others live on");
        s.start_login("bob", "g0", "u0", 300, 3).unwrap();
        assert!(s.rotate_refresh("u0", "u1", 303).unwrap().is_ok(), "another user's logins are not counted");

        // f0 (revoked) goes with its token; f1..f3 and g0 stay with theirs (spent ones too).
        let p = s.prune_logins(400).unwrap();
        assert_eq!(p, Pruned { families: 1, tokens: 1 });
        assert_eq!(s.rotate_refresh("t0", "x", 401).unwrap(), Err(RefreshError::Unknown));
        assert_eq!(s.rotate_refresh("t1", "x", 402).unwrap(), Err(RefreshError::Reused), "reuse is still detected");
        // Past the idle time every login is dead (f1, revoked by that reuse, f2, f3 and g0): all go.
        let p = s.prune_logins(10_000 + REFRESH_IDLE_SECS).unwrap();
        assert_eq!(p.families, 4);
        assert_eq!(s.prune_logins(20_000 + REFRESH_IDLE_SECS).unwrap(), Pruned::default());
        let rtx = s.db.begin_read().unwrap();
        assert_eq!(rtx.open_table(REFRESH_TOKENS).unwrap().iter().unwrap().count(), 0);
    }

    #[test]
    fn a_password_change_revokes_the_users_other_logins() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r.redb")).unwrap();
        for (fam, tok) in [("a1", "ta1"), ("a2", "ta2"), ("a3", "ta3")] {
            s.start_login("ann", fam, tok, 100, 20).unwrap();
        }
        s.start_login("bob", "b1", "tb1", 100, 20).unwrap();
        assert_eq!(s.revoke_logins("ann", Some("a2"), "password changed", 200).unwrap(), 2);
        assert_eq!(s.rotate_refresh("ta1", "x1", 201).unwrap(), Err(RefreshError::Revoked));
        assert_eq!(s.rotate_refresh("ta3", "x3", 201).unwrap(), Err(RefreshError::Revoked));
        assert_eq!(s.rotate_refresh("ta2", "x2", 201).unwrap(), Ok(("ann".into(), "a2".into())), "kept");
        assert_eq!(s.rotate_refresh("tb1", "y1", 201).unwrap(), Ok(("bob".into(), "b1".into())), "not ann's");
        assert_eq!(s.revoke_logins("ann", None, "password reset", 202).unwrap(), 1, "dead ones are not counted");
        assert_eq!(s.rotate_refresh("x2", "x4", 203).unwrap(), Err(RefreshError::Revoked));
    }

    #[test]
    fn api_keys_are_listed_per_user_and_deleted_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("k.redb")).unwrap();
        let key = |id: &str, user: &str| ApiKey {
            id: id.into(),
            user: user.into(),
            name: "ci".into(),
            scope: KeyScope::Read,
            created_at: 1,
        };
        s.add_api_key("ha", &key("a", "ann")).unwrap();
        s.add_api_key("hb", &key("b", "bob")).unwrap();
        assert_eq!(s.api_key("ha").unwrap(), Some(key("a", "ann")));
        assert_eq!(s.list_api_keys("ann").unwrap(), vec![key("a", "ann")]);
        assert!(s.delete_api_key("ann", "b").is_err(), "not ann's key");
        s.delete_api_key("bob", "b").unwrap();
        assert_eq!(s.api_key("hb").unwrap(), None);
    }
}
