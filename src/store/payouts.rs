//! Payout profiles: where a node owner wants to be paid (a method and free-text details the
//! operator pays to) and the optional threshold at which a withdrawal is requested for them.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::tables::{PAYOUT_PROFILES, USERS};
use super::{Store, StoreError, from_json, to_json};
use crate::money::Micros;

/// A user's payout details.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PayoutProfile {
    /// How to pay, in the operator's words (`bank`, `usdt-trc20`, `paypal`, …).
    pub method: String,
    /// Where: an IBAN, a wallet address, an e-mail (free text).
    pub details: String,
    /// Request a withdrawal of everything available once it reaches this (≥ the minimum
    /// payout); `None`: by hand only.
    #[serde(default)]
    pub auto_threshold: Option<Micros>,
    pub updated_at: u64,
}

impl PayoutProfile {
    /// The destination a withdrawal records: `METHOD: DETAILS`.
    pub fn destination(&self) -> String {
        format!("{}: {}", self.method, self.details)
    }
}

impl Store {
    pub fn payout_profile(&self, user: &str) -> Result<Option<PayoutProfile>, StoreError> {
        let rtx = self.db.begin_read()?;
        rtx.open_table(PAYOUT_PROFILES)?.get(user)?.map(|v| from_json(v.value())).transpose()
    }

    /// Saves (or with `None`, forgets) a user's payout profile.
    pub fn set_payout_profile(&self, user: &str, p: Option<&PayoutProfile>) -> Result<(), StoreError> {
        let txn = self.write()?;
        if txn.open_table(USERS)?.get(user)?.is_none() {
            return Err(StoreError::NotFound(format!("user {user:?}")));
        }
        {
            let mut t = txn.open_table(PAYOUT_PROFILES)?;
            match p {
                Some(p) => {
                    t.insert(user, to_json(p)?.as_slice())?;
                }
                None => {
                    t.remove(user)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Every profile with an automatic threshold, by user.
    pub fn auto_payout_profiles(&self) -> Result<Vec<(String, PayoutProfile)>, StoreError> {
        let rtx = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in rtx.open_table(PAYOUT_PROFILES)?.iter()? {
            let (k, v) = row?;
            let p: PayoutProfile = from_json(v.value())?;
            if p.auto_threshold.is_some() {
                out.push((k.value().to_owned(), p));
            }
        }
        Ok(out)
    }
}
