//! Sub-users: extra proxy credentials under one account, each with its own byte cap, stream
//! cap and expiry. They log in to the proxy with their own name and password and are billed
//! to their parent. Names share one namespace with users.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::tables::{SUBUSERS, USERS};
use super::{Store, StoreError, from_json, to_json};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubUser {
    pub name: String,
    /// The account it is billed to.
    pub parent: String,
    pub proxy_password: String,
    /// Bytes (both directions) it may move in all, if capped.
    #[serde(default)]
    pub byte_cap: Option<u64>,
    /// Streams it may have open at once, if capped (the parent's cap applies too).
    #[serde(default)]
    pub max_streams: Option<u32>,
    /// Unix seconds after which it is refused.
    #[serde(default)]
    pub expires_at: Option<u64>,
    pub disabled: bool,
    pub created_at: u64,
}

impl SubUser {
    /// Why it may not be used at `now`, if it may not.
    pub fn refusal(&self, now: u64) -> Option<String> {
        if self.disabled {
            return Some(format!("sub-user {} is disabled", self.name));
        }
        if self.expires_at.is_some_and(|e| now >= e) {
            return Some(format!("sub-user {} has expired", self.name));
        }
        None
    }
}

impl Store {
    /// Creates a sub-user; its name must not be taken by a user or another sub-user.
    pub fn create_subuser(&self, s: &SubUser) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let users = txn.open_table(USERS)?;
            match users.get(s.parent.as_str())? {
                None => return Err(StoreError::NotFound(format!("user {:?}", s.parent))),
                Some(v) => {
                    let parent: super::UserRecord = from_json(v.value())?;
                    if parent.disabled {
                        return Err(StoreError::Invalid(format!("user {:?} is disabled", s.parent)));
                    }
                }
            }
            let mut subs = txn.open_table(SUBUSERS)?;
            if users.get(s.name.as_str())?.is_some() || subs.get(s.name.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists(format!("the name {:?}", s.name)));
            }
            subs.insert(s.name.as_str(), to_json(s)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get_subuser(&self, name: &str) -> Result<Option<SubUser>, StoreError> {
        let rtx = self.db.begin_read()?;
        rtx.open_table(SUBUSERS)?.get(name)?.map(|v| from_json(v.value())).transpose()
    }

    /// Sub-users of `parent` (all when `None`), by name.
    pub fn list_subusers(&self, parent: Option<&str>) -> Result<Vec<SubUser>, StoreError> {
        let rtx = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in rtx.open_table(SUBUSERS)?.iter()? {
            let s: SubUser = from_json(row?.1.value())?;
            if parent.is_none_or(|p| s.parent == p) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Changes one of `parent`'s sub-users in one transaction.
    pub fn update_subuser(
        &self,
        parent: &str,
        name: &str,
        change: impl FnOnce(&mut SubUser),
    ) -> Result<SubUser, StoreError> {
        let txn = self.write()?;
        let s = {
            let mut t = txn.open_table(SUBUSERS)?;
            let mut s: SubUser = match t.get(name)? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::NotFound(format!("sub-user {name:?}"))),
            };
            if s.parent != parent {
                return Err(StoreError::NotFound(format!("sub-user {name:?}")));
            }
            change(&mut s);
            t.insert(name, to_json(&s)?.as_slice())?;
            s
        };
        txn.commit()?;
        Ok(s)
    }

    /// Deletes one of `parent`'s sub-users (its sessions and usage stay in the history).
    pub fn delete_subuser(&self, parent: &str, name: &str) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut t = txn.open_table(SUBUSERS)?;
            let s: Option<SubUser> = t.get(name)?.map(|v| from_json(v.value())).transpose()?;
            if s.is_none_or(|s| s.parent != parent) {
                return Err(StoreError::NotFound(format!("sub-user {name:?}")));
            }
            t.remove(name)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Bytes a sub-user has moved in all, from the usage roll-up (at most a flush behind).
    pub fn subuser_bytes(&self, name: &str) -> Result<u64, StoreError> {
        let total = self.usage_total(&format!("sub:{name}"), 0, u64::MAX)?;
        Ok(total.up + total.down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserRecord;

    #[test]
    fn names_are_unique_across_users_and_sub_users() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        for n in ["ann", "bob"] {
            s.create_user(&UserRecord::new(n, "x", 0)).unwrap();
        }
        let sub = |name: &str, parent: &str| SubUser {
            name: name.into(),
            parent: parent.into(),
            proxy_password: "p".into(),
            byte_cap: Some(10),
            max_streams: None,
            expires_at: Some(100),
            disabled: false,
            created_at: 0,
        };
        s.create_subuser(&sub("ann_scraper", "ann")).unwrap();
        assert!(matches!(s.create_subuser(&sub("ann_scraper", "bob")), Err(StoreError::AlreadyExists(_))));
        assert!(matches!(s.create_subuser(&sub("bob", "ann")), Err(StoreError::AlreadyExists(_))), "a user's name");
        assert!(matches!(s.create_subuser(&sub("x_1", "nobody")), Err(StoreError::NotFound(_))));
        assert!(s.update_subuser("bob", "ann_scraper", |x| x.disabled = true).is_err(), "not bob's");
        let u = s.update_subuser("ann", "ann_scraper", |x| x.byte_cap = None).unwrap();
        assert_eq!(u.byte_cap, None);
        assert_eq!(u.refusal(99), None);
        assert!(u.refusal(100).unwrap().contains("expired"));
        assert_eq!(s.list_subusers(Some("ann")).unwrap().len(), 1);
        assert!(s.delete_subuser("bob", "ann_scraper").is_err());
        s.delete_subuser("ann", "ann_scraper").unwrap();
        assert!(s.get_subuser("ann_scraper").unwrap().is_none());
    }
}
