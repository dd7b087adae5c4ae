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

impl Store {
    /// Starts a login family with its first refresh token (given by its hash).
    pub fn start_login(&self, user: &str, family: &str, token_hash: &str, now: u64) -> Result<(), StoreError> {
        let txn = self.write()?;
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
        s.start_login("ann", "fam1", "h1", 100).unwrap();
        assert_eq!(s.rotate_refresh("h1", "h2", 110).unwrap(), Ok(("ann".into(), "fam1".into())));
        assert_eq!(s.rotate_refresh("h2", "h3", 120).unwrap(), Ok(("ann".into(), "fam1".into())));
        assert_eq!(s.rotate_refresh("nope", "h9", 120).unwrap(), Err(RefreshError::Unknown));
        // h1 was spent: presenting it again revokes the family, h3 included.
        assert_eq!(s.rotate_refresh("h1", "h4", 130).unwrap(), Err(RefreshError::Reused));
        assert_eq!(s.rotate_refresh("h3", "h5", 131).unwrap(), Err(RefreshError::Revoked));

        s.start_login("ann", "fam2", "k1", 0).unwrap();
        assert_eq!(s.rotate_refresh("k1", "k2", REFRESH_IDLE_SECS + 1).unwrap(), Err(RefreshError::Expired));
        s.start_login("ann", "fam3", "m1", 0).unwrap();
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

        s.start_login("bob", "fam4", "b1", 0).unwrap();
        assert!(s.revoke_refresh("b1", "logout").unwrap());
        assert_eq!(s.rotate_refresh("b1", "b2", 1).unwrap(), Err(RefreshError::Revoked));
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
