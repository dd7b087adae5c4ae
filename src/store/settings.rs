//! Settings changed at run time (from the dashboard or `traffix settings set`): they override
//! `traffix.toml` and survive restarts: the billing settings and the payment settings.

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

/// Payment settings changed at run time (each `None` keeps `traffix.toml`'s value). The
/// secrets are kept in the database (which holds password hashes and proxy passwords too, mode
/// 0600) and never leave it through the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PaymentSettings {
    #[serde(default)]
    pub enabled: Option<Vec<String>>,
    #[serde(default)]
    pub generic_secret: Option<crate::secret::Secret>,
    #[serde(default)]
    pub cryptopay_token: Option<crate::secret::Secret>,
    #[serde(default)]
    pub stars_per_unit: Option<u32>,
    #[serde(default)]
    pub min_topup: Option<Micros>,
    pub updated_at: u64,
    pub updated_by: String,
}

impl Store {
    /// The payment settings changed at run time, if any.
    pub fn payment_settings(&self) -> Result<Option<PaymentSettings>, StoreError> {
        let rtx = self.db.begin_read()?;
        rtx.open_table(SETTINGS)?.get("payments")?.map(|v| from_json(v.value())).transpose()
    }

    pub fn set_payment_settings(&self, s: &PaymentSettings) -> Result<(), StoreError> {
        let txn = self.write()?;
        txn.open_table(SETTINGS)?.insert("payments", to_json(s)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_settings_round_trip_and_their_debug_masks_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(s.payment_settings().unwrap(), None);
        let p = PaymentSettings {
            enabled: Some(vec!["generic".into()]),
            generic_secret: Some(crate::secret::Secret::new("hunter2hunter2hunter2hunter2hunter2")),
            updated_by: "admin".into(),
            ..PaymentSettings::default()
        };
        s.set_payment_settings(&p).unwrap();
        assert_eq!(s.payment_settings().unwrap(), Some(p.clone()));
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
