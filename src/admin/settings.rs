//! Billing settings (`traffix settings …`): the price, the platform fee and the minimum payout
//! in force, and changing them at run time (kept in the store, overriding traffix.toml).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::views::{SettingsView, rfc3339};
use super::{AdminCtx, AdminError, Audit, Command};
use crate::money::Micros;
use crate::store::now_secs;

/// The billing settings in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingsShow {}

/// Changes billing settings at run time (they override traffix.toml from now on); absent
/// fields stay as they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettingsSet {
    pub price_per_gb: Option<String>,
    pub platform_fee_percent: Option<u8>,
    pub min_payout: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Command for SettingsShow {
    type Output = SettingsView;

    fn run(self, ctx: &AdminCtx, _actor: &str) -> Result<SettingsView, AdminError> {
        Ok(ctx.settings_view())
    }
}

impl Command for SettingsSet {
    type Output = SettingsView;

    fn audit(&self) -> Option<Audit> {
        Some(Audit::new("settings.update", "billing").reason(self.reason.clone()))
    }

    fn before(&self, ctx: &AdminCtx) -> Option<Value> {
        serde_json::to_value(ctx.settings_view()).ok()
    }

    fn run(self, ctx: &AdminCtx, actor: &str) -> Result<SettingsView, AdminError> {
        let SettingsSet { price_per_gb, platform_fee_percent, min_payout, .. } = self;
        if price_per_gb.is_none() && platform_fee_percent.is_none() && min_payout.is_none() {
            return Err(AdminError::new("invalid", "nothing to change: give a price, a fee or a minimum payout"));
        }
        let mut m = ctx.money();
        if let Some(p) = price_per_gb {
            m.tariff.price_per_gb = Micros::parse(&p).map_err(|e| AdminError::new("invalid", format!("price: {e}")))?;
        }
        if let Some(f) = platform_fee_percent {
            m.tariff.platform_fee_percent = f;
        }
        if let Some(p) = min_payout {
            m.min_payout = Micros::parse(&p).map_err(|e| AdminError::new("invalid", format!("minimum payout: {e}")))?;
        }
        m.tariff.validate().map_err(|e| AdminError::new("invalid", e.to_string()))?;
        if m.min_payout.0 == 0 {
            return Err(AdminError::new("invalid", "the minimum payout must be greater than zero"));
        }
        ctx.store.set_billing_settings(&crate::store::BillingSettings {
            price_per_gb: m.tariff.price_per_gb,
            platform_fee_percent: m.tariff.platform_fee_percent,
            min_payout: m.min_payout,
            updated_at: now_secs(),
            updated_by: actor.to_owned(),
        })?;
        crate::sync::write(&ctx.money, m);
        if let Some(l) = &ctx.live {
            (l.tariff_changed)(m.tariff);
        }
        tracing::info!(price_per_gb = %m.tariff.price_per_gb, fee = m.tariff.platform_fee_percent,
            min_payout = %m.min_payout, %actor, "billing settings changed");
        Ok(ctx.settings_view())
    }
}

impl AdminCtx {
    fn settings_view(&self) -> SettingsView {
        let m = self.money();
        let changed = self.store.billing_settings().ok().flatten();
        SettingsView {
            price_per_gb: m.tariff.price_per_gb.to_string(),
            price_per_gb_micros: m.tariff.price_per_gb.0,
            platform_fee_percent: m.tariff.platform_fee_percent,
            min_payout: m.min_payout.to_string(),
            min_payout_micros: m.min_payout.0,
            max_overdraft_micros: m.max_overdraft().0,
            updated_at: changed.as_ref().map(|c| rfc3339(c.updated_at)),
            updated_by: changed.map(|c| c.updated_by),
        }
    }
}
