//! Crypto Pay (the Telegram crypto wallet's merchant API, `https://pay.crypt.bot/api`): fiat
//! invoices for top-ups (`createInvoice` with `currency_type=fiat` in `billing.currency`), their
//! state (`getInvoices`), and the webhook update a paid invoice sends (`invoice_paid`). Every
//! request carries the app's token in `Crypto-Pay-API-Token`; answers are
//! `{"ok": true, "result": …}` or `{"ok": false, "error": {"code", "name"}}`.
//!
//! The JSON shapes are read leniently where Crypto Pay's documentation allows variants (amounts
//! as strings, `getInvoices` as an array or `{"items": […]}`) and strictly where money is
//! decided: a payment is credited only when the invoice is one this server created, `paid`,
//! fiat in the operator's currency, for exactly the amount asked.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::money::Micros;

/// Invoices asked about in one `getInvoices` call (Crypto Pay allows up to 1000).
pub const POLL_BATCH: usize = 100;

/// An invoice as Crypto Pay describes it (the fields this server reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteInvoice {
    pub invoice_id: u64,
    #[serde(default)]
    pub hash: String,
    /// `crypto` or `fiat`.
    #[serde(default)]
    pub currency_type: String,
    #[serde(default)]
    pub asset: Option<String>,
    #[serde(default)]
    pub fiat: Option<String>,
    /// The amount asked, a decimal string (a number is read as its decimal text).
    #[serde(deserialize_with = "decimal_text")]
    pub amount: String,
    /// `active`, `paid` or `expired`.
    pub status: String,
    #[serde(default)]
    pub bot_invoice_url: Option<String>,
    /// The older name of `bot_invoice_url`.
    #[serde(default)]
    pub pay_url: Option<String>,
    #[serde(default)]
    pub web_app_invoice_url: Option<String>,
    #[serde(default)]
    pub mini_app_invoice_url: Option<String>,
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub paid_asset: Option<String>,
    #[serde(default)]
    pub paid_at: Option<String>,
}

impl RemoteInvoice {
    /// Where the payer pays.
    pub fn pay_url(&self) -> Option<&str> {
        self.bot_invoice_url
            .as_deref()
            .or(self.pay_url.as_deref())
            .or(self.web_app_invoice_url.as_deref())
            .or(self.mini_app_invoice_url.as_deref())
    }
}

fn decimal_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("amount is {other}, not a decimal"))),
    }
}

/// A webhook update: `{update_id, update_type: "invoice_paid", request_date, payload}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    pub update_id: u64,
    pub update_type: String,
    #[serde(default)]
    pub request_date: Option<String>,
    pub payload: Value,
}

/// What to do about an invoice this server created, given what Crypto Pay says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Paid as asked: credit this.
    Credit(Micros),
    Pending,
    Expired,
    /// Paid, but not as asked (currency type, currency or amount): not credited.
    Mismatch(String),
}

/// Decides a remote invoice against the amount and currency this server asked for.
pub fn verdict(remote: &RemoteInvoice, asked: Micros, currency: &str) -> Verdict {
    match remote.status.as_str() {
        "paid" => {}
        "expired" => return Verdict::Expired,
        _ => return Verdict::Pending,
    }
    if remote.currency_type != "fiat" {
        return Verdict::Mismatch(format!("currency_type {:?}, not fiat", remote.currency_type));
    }
    if remote.fiat.as_deref() != Some(currency) {
        return Verdict::Mismatch(format!("fiat {:?}, not {currency}", remote.fiat));
    }
    match Micros::parse(&remote.amount) {
        Ok(a) if a == asked => Verdict::Credit(a),
        Ok(a) => Verdict::Mismatch(format!("amount {a}, not the {asked} asked")),
        Err(e) => Verdict::Mismatch(format!("amount: {e}")),
    }
}

/// Reads a webhook body: an `invoice_paid` update's invoice; `Ok(None)` for other update types.
pub fn parse_update(body: &[u8]) -> Result<Option<(u64, RemoteInvoice)>, String> {
    let u: Update = serde_json::from_slice(body).map_err(|e| format!("not a Crypto Pay update: {e}"))?;
    if u.update_type != "invoice_paid" {
        return Ok(None);
    }
    let inv: RemoteInvoice =
        serde_json::from_value(u.payload).map_err(|e| format!("the update's payload is not an invoice: {e}"))?;
    Ok(Some((u.update_id, inv)))
}

/// An API failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiFailure {
    /// Crypto Pay answered `ok: false` (e.g. `UNAUTHORIZED`, `AMOUNT_TOO_SMALL`).
    #[error("Crypto Pay refused: {0}")]
    Refused(String),
    /// No usable answer (network, HTTP status, a body that is not the API's JSON).
    #[error("Crypto Pay did not answer usefully: {0}")]
    Unavailable(String),
}

/// Reads an answer `{"ok": true, "result": T}`.
pub fn parse_answer<T: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ApiFailure> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiFailure::Unavailable(format!("HTTP {status}, not JSON ({e})")))?;
    match v.get("ok") {
        Some(Value::Bool(true)) => {
            let r = v.get("result").cloned().ok_or_else(|| ApiFailure::Unavailable("ok without a result".into()))?;
            serde_json::from_value(r).map_err(|e| ApiFailure::Unavailable(format!("unexpected result: {e}")))
        }
        Some(Value::Bool(false)) => {
            let e = v.get("error");
            let name = e.and_then(|e| e.get("name")).and_then(Value::as_str).unwrap_or("unknown error");
            let code = e.and_then(|e| e.get("code")).and_then(Value::as_i64).unwrap_or(i64::from(status));
            Err(ApiFailure::Refused(format!("{name} ({code})").chars().take(200).collect()))
        }
        _ => Err(ApiFailure::Unavailable(format!("HTTP {status} without \"ok\""))),
    }
}

/// `getInvoices`' result: an array, or `{"items": […]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InvoiceList {
    Items { items: Vec<RemoteInvoice> },
    Plain(Vec<RemoteInvoice>),
}

impl InvoiceList {
    pub fn into_vec(self) -> Vec<RemoteInvoice> {
        match self {
            InvoiceList::Items { items } | InvoiceList::Plain(items) => items,
        }
    }
}

/// How a look at the open invoices went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// An invoice was credited or expired.
    Changed,
    Unchanged,
    Failed,
}

/// The wait before the next look: back to `min` after a change, doubled (up to `max`) while
/// nothing changes or the API fails.
pub fn next_delay(current: Duration, outcome: PollOutcome, min: Duration, max: Duration) -> Duration {
    match outcome {
        PollOutcome::Changed => min,
        PollOutcome::Unchanged | PollOutcome::Failed => current.saturating_mul(2).clamp(min, max),
    }
}

/// The `createInvoice` request of a top-up.
pub fn create_request(
    fiat: &str,
    amount: Micros,
    accepted_assets: &[String],
    description: &str,
    payload: &str,
    expires_in: u64,
) -> Value {
    let mut req = serde_json::json!({
        "currency_type": "fiat",
        "fiat": fiat,
        "amount": amount.to_string(),
        "description": description,
        "payload": payload,
        "expires_in": expires_in,
        "allow_comments": false,
        "allow_anonymous": true,
    });
    if !accepted_assets.is_empty() {
        req["accepted_assets"] = Value::String(accepted_assets.join(","));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(status: &str, fiat: &str, amount: &str) -> RemoteInvoice {
        serde_json::from_value(serde_json::json!({
            "invoice_id": 42, "hash": "IVabc", "currency_type": "fiat", "fiat": fiat, "amount": amount,
            "status": status, "bot_invoice_url": "https://t.me/CryptoBot?start=IVabc",
            "created_at": "2026-01-01T00:00:00.000Z", "accepted_assets": ["USDT", "TON"]
        }))
        .unwrap()
    }

    #[test]
    fn only_a_paid_fiat_invoice_for_the_amount_asked_is_credited() {
        let asked = Micros(12_500_000);
        assert_eq!(verdict(&invoice("paid", "USD", "12.5"), asked, "USD"), Verdict::Credit(asked));
        assert_eq!(verdict(&invoice("paid", "USD", "12.50"), asked, "USD"), Verdict::Credit(asked));
        assert_eq!(verdict(&invoice("active", "USD", "12.5"), asked, "USD"), Verdict::Pending);
        assert_eq!(verdict(&invoice("expired", "USD", "12.5"), asked, "USD"), Verdict::Expired);
        assert!(matches!(verdict(&invoice("paid", "EUR", "12.5"), asked, "USD"), Verdict::Mismatch(_)));
        assert!(matches!(verdict(&invoice("paid", "USD", "12.49"), asked, "USD"), Verdict::Mismatch(_)));
        assert!(matches!(verdict(&invoice("paid", "USD", "1e3"), asked, "USD"), Verdict::Mismatch(_)));
        let mut crypto = invoice("paid", "USD", "12.5");
        crypto.currency_type = "crypto".into();
        assert!(matches!(verdict(&crypto, asked, "USD"), Verdict::Mismatch(_)));
    }

    #[test]
    fn updates_answers_and_lists_read_their_documented_shapes() {
        let inv = serde_json::to_value(invoice("paid", "USD", "5")).unwrap();
        let body = serde_json::json!({"update_id": 7, "update_type": "invoice_paid",
            "request_date": "2026-01-01T00:00:00.000Z", "payload": inv})
        .to_string();
        let (id, got) = parse_update(body.as_bytes()).unwrap().unwrap();
        assert_eq!((id, got.invoice_id, got.pay_url()), (7, 42, Some("https://t.me/CryptoBot?start=IVabc")));
        let other = serde_json::json!({"update_id": 8, "update_type": "check_activated", "payload": {}}).to_string();
        assert_eq!(parse_update(other.as_bytes()).unwrap(), None);
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"update_id":-1,"update_type":"invoice_paid","payload":{}}"#,
            r#"{"update_id":1,"update_type":"invoice_paid","payload":{"invoice_id":"x"}}"#,
            r#"{"update_id":1,"update_type":"invoice_paid","payload":{"invoice_id":1,"amount":[],"status":"paid"}}"#,
        ] {
            assert!(parse_update(bad.as_bytes()).is_err(), "{bad}");
        }
        // A number amount is read as its decimal text.
        let n: RemoteInvoice = serde_json::from_str(r#"{"invoice_id":1,"amount":12.5,"status":"active"}"#).unwrap();
        assert_eq!(n.amount, "12.5");

        let list = serde_json::json!({"ok": true, "result": {"items": [inv.clone()]}}).to_string();
        assert_eq!(parse_answer::<InvoiceList>(200, list.as_bytes()).unwrap().into_vec().len(), 1);
        let plain = serde_json::json!({"ok": true, "result": [inv]}).to_string();
        assert_eq!(parse_answer::<InvoiceList>(200, plain.as_bytes()).unwrap().into_vec().len(), 1);
        let refused = r#"{"ok":false,"error":{"code":401,"name":"UNAUTHORIZED"}}"#;
        assert_eq!(
            parse_answer::<InvoiceList>(401, refused.as_bytes()).unwrap_err(),
            ApiFailure::Refused("UNAUTHORIZED (401)".into())
        );
        for junk in ["<html>bad gateway</html>", "{}", r#"{"ok":true}"#, r#"{"ok":true,"result":7}"#, r#"{"ok":"yes"}"#]
        {
            assert!(
                matches!(parse_answer::<InvoiceList>(502, junk.as_bytes()), Err(ApiFailure::Unavailable(_))),
                "{junk}"
            );
        }
    }

    #[test]
    fn polling_backs_off_while_nothing_changes_and_restarts_after_a_change() {
        let (min, max) = (Duration::from_secs(15), Duration::from_secs(600));
        let mut d = min;
        let mut seen = Vec::new();
        for _ in 0..8 {
            d = next_delay(d, PollOutcome::Unchanged, min, max);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, [30, 60, 120, 240, 480, 600, 600, 600]);
        assert_eq!(next_delay(max, PollOutcome::Failed, min, max), max);
        assert_eq!(next_delay(max, PollOutcome::Changed, min, max), min);
        assert_eq!(next_delay(Duration::MAX, PollOutcome::Unchanged, min, max), max, "no overflow");
    }

    #[test]
    fn a_top_up_invoice_is_fiat_in_the_operators_currency() {
        let r = create_request("USD", Micros(12_500_000), &["USDT".into(), "TON".into()], "d", "traffix:alice", 3600);
        assert_eq!(r["currency_type"], "fiat");
        assert_eq!(r["fiat"], "USD");
        assert_eq!(r["amount"], "12.50");
        assert_eq!(r["accepted_assets"], "USDT,TON");
        assert_eq!(r["expires_in"], 3600);
        assert!(create_request("USD", Micros(1), &[], "d", "p", 60).get("accepted_assets").is_none());
    }
}
