//! `[payments]` of `traffix.toml`: which providers take payments, their secrets, the rates and
//! the bounds of everything a payer or a provider can make the server keep or do. Pure: no I/O,
//! read by the config loader, the admin commands and the payments service alike.

use serde::{Deserialize, Serialize};

use crate::money::Micros;
use crate::secret::Secret;

/// The providers, as `payments.enabled` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Telegram Stars, through the bot.
    Stars,
    /// Crypto Pay (the Telegram crypto wallet's merchant API).
    Cryptopay,
    /// The generic signed webhook any shop or gateway can call.
    Generic,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Stars, Provider::Cryptopay, Provider::Generic];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Stars => "stars",
            Provider::Cryptopay => "cryptopay",
            Provider::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The shortest `generic_secret` accepted: 128 bits written as hex.
pub const MIN_GENERIC_SECRET: usize = 32;

/// `[payments]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Providers that take payments: `"stars"`, `"cryptopay"`, `"generic"`.
    pub enabled: Vec<String>,
    /// The HMAC key of the generic webhook (at least 32 characters).
    pub generic_secret: Secret,
    /// The Crypto Pay app's API token.
    pub cryptopay_token: Secret,
    /// Crypto Pay's API (`…/api`); plain `http://` only to a loopback address (tests).
    pub cryptopay_api_url: String,
    /// Telegram Stars for one currency unit.
    pub stars_per_unit: u32,
    /// The smallest top-up a user may start from the portal (the largest is `billing.max_credit`).
    pub min_topup: Micros,
    /// The crypto assets a Crypto Pay invoice accepts (empty: every asset Crypto Pay offers).
    pub cryptopay_accepted_assets: Vec<String>,
    /// How long a Crypto Pay invoice can be paid (its `expires_in`).
    pub cryptopay_invoice_ttl_secs: u64,
    /// The first wait between two looks at open invoices (`getInvoices`); it doubles while
    /// nothing changes or the API fails, up to `cryptopay_poll_max_secs`, and starts again
    /// when an invoice is created.
    pub cryptopay_poll_secs: u64,
    pub cryptopay_poll_max_secs: u64,
    /// One request to Crypto Pay, connection to last byte.
    pub cryptopay_timeout_secs: u64,
    /// The largest answer read from Crypto Pay.
    pub cryptopay_max_response_bytes: usize,
    /// Open (unpaid, unexpired) invoices one user may have, and all users together.
    pub max_open_invoices_per_user: u32,
    pub max_open_invoices: u32,
    /// How often automatic withdrawal thresholds are looked at.
    pub auto_withdraw_interval_secs: u64,
    /// Invoices that expired unpaid are deleted this many days after they were created (a user
    /// can open a few every hour; paid and disputed ones are kept).
    pub expired_invoice_retention_days: u32,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            enabled: Vec::new(),
            generic_secret: Secret::default(),
            cryptopay_token: Secret::default(),
            cryptopay_api_url: "https://pay.crypt.bot/api".into(),
            stars_per_unit: 50,
            min_topup: Micros(1_000_000),
            cryptopay_accepted_assets: Vec::new(),
            cryptopay_invoice_ttl_secs: 3600,
            cryptopay_poll_secs: 15,
            cryptopay_poll_max_secs: 600,
            cryptopay_timeout_secs: 15,
            cryptopay_max_response_bytes: 1024 * 1024,
            max_open_invoices_per_user: 5,
            max_open_invoices: 1000,
            auto_withdraw_interval_secs: 60,
            expired_invoice_retention_days: 7,
        }
    }
}

/// What the admin commands and the portal need to know of `[payments]` (no secrets: only
/// whether they are set). Copied freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaymentRules {
    pub stars: bool,
    pub cryptopay: bool,
    pub generic: bool,
    pub generic_secret_set: bool,
    pub cryptopay_token_set: bool,
    pub stars_per_unit: u32,
    pub min_topup: Micros,
}

impl PaymentRules {
    pub fn enabled(&self, p: Provider) -> bool {
        match p {
            Provider::Stars => self.stars,
            Provider::Cryptopay => self.cryptopay,
            Provider::Generic => self.generic,
        }
    }

    /// The enabled providers, in [`Provider::ALL`] order.
    pub fn enabled_names(&self) -> Vec<String> {
        Provider::ALL.into_iter().filter(|p| self.enabled(*p)).map(|p| p.as_str().to_owned()).collect()
    }
}

/// Whether `url` is a Crypto Pay API base this server may call: `https://`, or `http://` to a
/// loopback address.
pub fn check_api_url(url: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(url.trim()).map_err(|e| format!("payments.cryptopay_api_url {url:?}: {e}"))?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match u.scheme() {
        "https" if u.host().is_some() => Ok(u),
        "http" if loopback => Ok(u),
        _ => Err(format!(
            "payments.cryptopay_api_url {url:?} must be an https:// URL (plain http:// only to a loopback address)"
        )),
    }
}

/// A crypto asset code as Crypto Pay writes them: 2–10 upper-case letters or digits.
fn valid_asset(a: &str) -> bool {
    (2..=10).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl PaymentsConfig {
    /// The enabled providers; an unknown name is an error.
    pub fn providers(&self) -> Result<Vec<Provider>, String> {
        let mut out = Vec::new();
        for name in &self.enabled {
            let p = Provider::parse(name.trim()).ok_or_else(|| {
                format!("payments.enabled: unknown provider {name:?} (use \"stars\", \"cryptopay\", \"generic\")")
            })?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub fn rules(&self) -> PaymentRules {
        let on = self.providers().unwrap_or_default();
        PaymentRules {
            stars: on.contains(&Provider::Stars),
            cryptopay: on.contains(&Provider::Cryptopay),
            generic: on.contains(&Provider::Generic),
            generic_secret_set: !self.generic_secret.is_empty(),
            cryptopay_token_set: !self.cryptopay_token.is_empty(),
            stars_per_unit: self.stars_per_unit,
            min_topup: self.min_topup,
        }
    }

    /// Checks the section; `Err` names the key.
    pub fn validate(&self) -> Result<(), String> {
        let on = self.providers()?;
        if on.contains(&Provider::Generic) && self.generic_secret.expose().len() < MIN_GENERIC_SECRET {
            return Err(format!(
                "payments.generic_secret must be at least {MIN_GENERIC_SECRET} characters when \"generic\" is enabled \
                 (e.g. `openssl rand -hex 32`)"
            ));
        }
        if on.contains(&Provider::Cryptopay) && self.cryptopay_token.is_empty() {
            return Err("payments.cryptopay_token must be set when \"cryptopay\" is enabled".into());
        }
        check_api_url(&self.cryptopay_api_url)?;
        if self.stars_per_unit == 0 {
            return Err("payments.stars_per_unit must be at least 1".into());
        }
        if self.min_topup.0 == 0 {
            return Err("payments.min_topup must be greater than zero".into());
        }
        if let Some(a) = self.cryptopay_accepted_assets.iter().find(|a| !valid_asset(a)) {
            return Err(format!("payments.cryptopay_accepted_assets: {a:?} is not an asset code like \"USDT\""));
        }
        // Crypto Pay accepts expires_in of 1 to 2678400 seconds.
        if !(60..=2_678_400).contains(&self.cryptopay_invoice_ttl_secs) {
            return Err("payments.cryptopay_invoice_ttl_secs must be 60..=2678400".into());
        }
        if self.cryptopay_poll_secs == 0 || self.cryptopay_poll_max_secs < self.cryptopay_poll_secs {
            return Err("payments.cryptopay_poll_secs must be at least 1 and at most cryptopay_poll_max_secs".into());
        }
        if self.cryptopay_timeout_secs == 0 || self.auto_withdraw_interval_secs == 0 {
            return Err("payments.cryptopay_timeout_secs and auto_withdraw_interval_secs must be at least 1".into());
        }
        if self.expired_invoice_retention_days == 0 {
            return Err("payments.expired_invoice_retention_days must be at least 1".into());
        }
        if self.cryptopay_max_response_bytes < 4096 {
            return Err("payments.cryptopay_max_response_bytes must be at least 4096".into());
        }
        if self.max_open_invoices_per_user == 0 || self.max_open_invoices < self.max_open_invoices_per_user {
            return Err("payments.max_open_invoices_per_user must be at least 1 and at most max_open_invoices".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_need_their_secrets_and_names_are_checked() {
        assert_eq!(PaymentsConfig::default().validate(), Ok(()));
        let with = |f: &dyn Fn(&mut PaymentsConfig)| {
            let mut c = PaymentsConfig::default();
            f(&mut c);
            c.validate()
        };
        let e = with(&|c| c.enabled = vec!["generic".into()]).unwrap_err();
        assert!(e.contains("generic_secret"), "{e}");
        assert_eq!(
            with(&|c| {
                c.enabled = vec!["generic".into(), "generic".into()];
                c.generic_secret = Secret::new("k".repeat(32));
            }),
            Ok(())
        );
        assert!(with(&|c| c.enabled = vec!["cryptopay".into()]).unwrap_err().contains("cryptopay_token"));
        assert!(with(&|c| c.enabled = vec!["paypal".into()]).unwrap_err().contains("unknown provider"));
        assert!(with(&|c| c.cryptopay_accepted_assets = vec!["usdt".into()]).unwrap_err().contains("asset"));
        assert!(with(&|c| c.cryptopay_poll_max_secs = 1).unwrap_err().contains("cryptopay_poll_secs"));
        assert!(with(&|c| c.max_open_invoices = 1).unwrap_err().contains("max_open_invoices"));
        assert!(with(&|c| c.min_topup = Micros(0)).unwrap_err().contains("min_topup"));
        let mut c = PaymentsConfig { enabled: vec!["stars".into(), "cryptopay".into()], ..Default::default() };
        c.cryptopay_token = Secret::new("1:AA");
        let r = c.rules();
        assert!(r.stars && r.cryptopay && !r.generic && r.cryptopay_token_set && !r.generic_secret_set);
        assert_eq!(r.enabled_names(), ["stars", "cryptopay"]);
    }

    /// The shipped example spells out every key of `[payments]` with its default.
    #[test]
    fn the_example_config_holds_the_defaults() {
        let t: toml::Table = toml::from_str(crate::config::EXAMPLE).unwrap();
        let section = t["payments"].as_table().unwrap();
        let parsed: PaymentsConfig = section.clone().try_into().unwrap();
        assert_eq!(parsed, PaymentsConfig::default());
        let keys = serde_json::to_value(PaymentsConfig::default()).unwrap();
        let keys: Vec<&String> = keys.as_object().unwrap().keys().collect();
        assert_eq!(section.len(), keys.len(), "every key once: {keys:?}");
    }

    #[test]
    fn the_api_url_is_https_or_loopback_http() {
        for ok in ["https://pay.crypt.bot/api", "http://127.0.0.1:9/api", "http://[::1]:9/api", "http://localhost:1/"] {
            assert!(check_api_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://pay.crypt.bot/api", "ftp://x/", "pay.crypt.bot", "http://10.0.0.1/api", "https://"] {
            assert!(check_api_url(bad).is_err(), "{bad}");
        }
    }
}
