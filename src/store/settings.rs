//! Settings changed at run time (from the dashboard or `traffix settings set`): they override
//! `traffix.toml` and survive restarts. Only the billing settings are editable this way.

use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};

use super::tables::SETTINGS;
use super::{Store, StoreError, from_json, to_json};
use crate::money::Micros;

/// The billing settings in force when they were changed at run time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BillingSettings {
    pub price_per_gb: Micros,
    pub platform_fee_percent: u8,
    pub min_payout: Micros,
    pub updated_at: u64,
    pub updated_by: String,
}

impl Store {
    /// The billing settings changed at run time, if any.
    pub fn billing_settings(&self) -> Result<Option<BillingSettings>, StoreError> {
        let rtx = self.db.begin_read()?;
        rtx.open_table(SETTINGS)?.get("billing")?.map(|v| from_json(v.value())).transpose()
    }

    pub fn set_billing_settings(&self, s: &BillingSettings) -> Result<(), StoreError> {
        let txn = self.write()?;
        txn.open_table(SETTINGS)?.insert("billing", to_json(s)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }
}
