//! Users: accounts that log in (argon2id hash) and use the proxy (random proxy password).

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::tables::{SUBUSERS, USERS};
use super::{Store, StoreError, from_json, to_json};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    #[serde(default)]
    pub disabled_reason: Option<String>,
    #[serde(default)]
    pub telegram_id: Option<i64>,
    /// PHC string of the argon2id login password hash; `None` = cannot log in.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// The proxy password (a random token, displayable and rotatable).
    pub proxy_password: String,
    pub created_at: u64,
}

impl UserRecord {
    /// A plain enabled user without a login password (it gets one with `user add` or the API).
    pub fn new(name: &str, proxy_password: &str, created_at: u64) -> UserRecord {
        UserRecord {
            name: name.to_owned(),
            admin: false,
            disabled: false,
            disabled_reason: None,
            telegram_id: None,
            password_hash: None,
            proxy_password: proxy_password.to_owned(),
            created_at,
        }
    }
}

impl Store {
    pub fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut t = txn.open_table(USERS)?;
            if t.get(user.name.as_str())?.is_some() || txn.open_table(SUBUSERS)?.get(user.name.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists(format!("user {:?}", user.name)));
            }
            t.insert(user.name.as_str(), to_json(user)?.as_slice())?;
        }
        super::ledger::ensure_account(&txn, &super::Account::User(user.name.clone()))?;
        txn.commit()?;
        Ok(())
    }

    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(USERS)?;
        t.get(name)?.map(|v| from_json(v.value())).transpose()
    }

    pub fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(USERS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(from_json(row?.1.value())?);
        }
        Ok(out)
    }

    /// Reads, changes and writes one user in one transaction; returns the new record.
    pub fn update_user(&self, name: &str, change: impl FnOnce(&mut UserRecord)) -> Result<UserRecord, StoreError> {
        let txn = self.write()?;
        let user = {
            let mut t = txn.open_table(USERS)?;
            let mut user: UserRecord = match t.get(name)? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::NotFound(format!("user {name:?}"))),
            };
            change(&mut user);
            t.insert(name, to_json(&user)?.as_slice())?;
            user
        };
        txn.commit()?;
        Ok(user)
    }
}
