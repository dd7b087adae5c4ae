//! The generic signed webhook's body (SPEC.md "Payments"): `{"id", "user", "amount",
//! "currency"}`, read after its signature passed. Pure: the caller brings the operator's
//! currency and the largest single credit.

use serde::Deserialize;

use crate::money::Micros;

/// A payment the generic webhook reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericPayment {
    /// The shop's or gateway's payment id (the dedup key).
    pub id: String,
    pub user: String,
    pub amount: Micros,
    pub currency: String,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON (400 `bad_request`).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// JSON of the wrong shape (422 `unprocessable`).
    #[error("{0}")]
    Shape(String),
    /// A field outside its grammar or the server's rules (400 `invalid`).
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Raw {
    id: String,
    user: String,
    amount: String,
    currency: String,
}

/// SPEC.md's NAME: 3–32 of a-z, 0-9 and `_`.
fn valid_user(name: &str) -> bool {
    (3..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Reads and checks a body. Unknown fields are ignored (gateways add their own); `amount` is a
/// decimal string in the money grammar (`"12.50"`, never a JSON number), greater than zero and
/// at most `max_credit`; `currency` must be `currency` exactly.
pub fn parse_body(body: &[u8], currency: &str, max_credit: Micros) -> Result<GenericPayment, BodyError> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            let msg = e.to_string();
            if msg.contains("amount") || (msg.contains("invalid type") && msg.contains("string")) {
                BodyError::Shape(format!(
                    "{msg}: the body is {{\"id\", \"user\", \"amount\", \"currency\"}}, all strings (amount like \"12.50\")"
                ))
            } else {
                BodyError::Shape(msg)
            }
        }
        _ => BodyError::Malformed(e.to_string()),
    })?;
    if !crate::store::valid_external_id(&raw.id) {
        return Err(BodyError::Invalid("id must be 1-128 visible ASCII characters (no spaces)".into()));
    }
    if !valid_user(&raw.user) {
        return Err(BodyError::Invalid(format!("user {:?} is not a user name (3-32 of a-z, 0-9, _)", raw.user)));
    }
    if raw.currency != currency {
        return Err(BodyError::Invalid(format!("currency {:?}: this server takes {currency} only", raw.currency)));
    }
    let amount = Micros::parse(&raw.amount).map_err(|e| BodyError::Invalid(e.to_string()))?;
    if amount.0 == 0 {
        return Err(BodyError::Invalid("amount must be greater than zero".into()));
    }
    if amount > max_credit {
        return Err(BodyError::Invalid(format!("amount {amount} is above the largest single credit ({max_credit})")));
    }
    Ok(GenericPayment { id: raw.id, user: raw.user, amount, currency: raw.currency })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Micros = Micros(1_000_000_000);

    fn parse(body: &str) -> Result<GenericPayment, BodyError> {
        parse_body(body.as_bytes(), "USD", MAX)
    }

    #[test]
    fn the_spec_body_parses() {
        let p = parse(r#"{"id": "ord-1", "user": "alice", "amount": "12.50", "currency": "USD"}"#).unwrap();
        assert_eq!(
            p,
            GenericPayment {
                id: "ord-1".into(),
                user: "alice".into(),
                amount: Micros(12_500_000),
                currency: "USD".into()
            }
        );
        let p = parse(r#"{"currency":"USD","amount":"0.000001","user":"bob_2","id":"x","extra":{"a":[1]}}"#).unwrap();
        assert_eq!(p.amount, Micros(1));
    }

    #[test]
    fn malformed_truncated_and_wrongly_shaped_bodies_are_refused() {
        let full = r#"{"id": "ord-1", "user": "alice", "amount": "12.50", "currency": "USD"}"#;
        for cut in 0..full.len() - 1 {
            let e = parse(&full[..cut]).unwrap_err();
            assert!(matches!(e, BodyError::Malformed(_)), "{cut}: {e}");
        }
        for bad in ["", "nul", "\u{feff}{}", "{\"id\":\"a\"", r#"["a","b""#] {
            assert!(matches!(parse(bad), Err(BodyError::Malformed(_))), "{bad:.40}");
        }
        // Hostile nesting, in a field that is ignored and in one that is read: refused, no panic.
        let deep = format!("{{\"x\":{}", "[".repeat(100_000));
        assert!(matches!(parse(&deep), Err(BodyError::Malformed(_))));
        assert!(parse(&"[".repeat(100_000)).is_err());
        for shape in [
            "null",
            "[]",
            "{}",
            r#"{"id":"a","user":"alice","amount":12.5,"currency":"USD"}"#,
            r#"{"id":"a","user":"alice","amount":"1","currency":"USD","amount":"2"}"#,
            r#"{"id":7,"user":"alice","amount":"1","currency":"USD"}"#,
            r#"{"id":"a","user":null,"amount":"1","currency":"USD"}"#,
        ] {
            assert!(matches!(parse(shape), Err(BodyError::Shape(_))), "{shape}");
        }
        let e = parse(r#"{"id":"a","user":"alice","amount":12.5,"currency":"USD"}"#).unwrap_err();
        assert!(e.to_string().contains("12.50"), "{e}");
    }

    #[test]
    fn fields_outside_their_grammar_are_refused() {
        let body = |id: &str, user: &str, amount: &str, cur: &str| {
            serde_json::json!({"id": id, "user": user, "amount": amount, "currency": cur}).to_string()
        };
        for (b, why) in [
            (body("", "alice", "1", "USD"), "id"),
            (body("a b", "alice", "1", "USD"), "id"),
            (body(&"x".repeat(129), "alice", "1", "USD"), "id"),
            (body("a\u{0}", "alice", "1", "USD"), "id"),
            (body("a", "Alice", "1", "USD"), "user"),
            (body("a", "al", "1", "USD"), "user"),
            (body("a", "../etc", "1", "USD"), "user"),
            (body("a", "alice", "1", "usd"), "currency"),
            (body("a", "alice", "1", "EUR"), "currency"),
            (body("a", "alice", "-1", "USD"), "amount"),
            (body("a", "alice", "1e3", "USD"), "amount"),
            (body("a", "alice", "1,50", "USD"), "amount"),
            (body("a", "alice", "1.0000001", "USD"), "amount"),
            (body("a", "alice", "0", "USD"), "amount"),
            (body("a", "alice", "0.00", "USD"), "amount"),
            (body("a", "alice", "1000.000001", "USD"), "amount"),
            (body("a", "alice", "99999999999999999999", "USD"), "amount"),
            (body("a", "alice", "NaN", "USD"), "amount"),
        ] {
            let e = parse(&b).unwrap_err();
            assert!(matches!(e, BodyError::Invalid(_)), "{b}: {e}");
            assert!(e.to_string().contains(why) || why == "amount", "{b}: {e}");
        }
    }
}
