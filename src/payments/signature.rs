//! Webhook signatures, as pure functions of (secret, header, raw body, now): the generic
//! webhook's `X-Traffix-Signature: t=UNIX_SECONDS,v1=HEX` (HMAC-SHA256 over `"{t}." + body`,
//! ±300 s) and Crypto Pay's `crypto-pay-api-signature` (HMAC-SHA256 of the body keyed with
//! SHA-256 of the API token; no timestamp: the invoice id is the replay guard). Comparisons are
//! constant-time (`ring::hmac::verify`).

use ring::{digest, hmac};

/// How far a generic webhook's `t` may be from the server's clock.
pub const TOLERANCE_SECS: u64 = 300;
/// The longest signature header read.
pub const MAX_HEADER: usize = 1024;
/// At most this many `v1=` signatures in one header (a sender rotating its secret sends two).
const MAX_SIGNATURES: usize = 4;

/// Why a signature was refused (each one a log line and a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("no signature header")]
    Missing,
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    #[error("timestamp {t} is {skew} s away from the server's clock (at most {TOLERANCE_SECS} s)")]
    Stale { t: u64, skew: u64 },
    #[error("the signature does not match the body")]
    Mismatch,
}

impl SigError {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        match self {
            SigError::Stale { .. } => "stale_timestamp",
            _ => "invalid_signature",
        }
    }
}

/// A parsed `X-Traffix-Signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericSignature {
    pub t: u64,
    pub v1: Vec<[u8; 32]>,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Parses `t=UNIX_SECONDS,v1=HEX[,v1=HEX…]` (other keys are ignored, as newer schemes may be
/// added); `HEX` is 64 lower-case hex digits.
pub fn parse_generic_header(header: &[u8]) -> Result<GenericSignature, SigError> {
    if header.len() > MAX_HEADER {
        return Err(SigError::Malformed("longer than 1024 bytes"));
    }
    let text = std::str::from_utf8(header).map_err(|_| SigError::Malformed("not ASCII"))?;
    let (mut t, mut v1) = (None, Vec::new());
    for part in text.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(SigError::Malformed("expected t=…,v1=…"))?;
        match k {
            "t" => {
                if t.is_some() {
                    return Err(SigError::Malformed("t given twice"));
                }
                if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SigError::Malformed("t is not Unix seconds"));
                }
                t = Some(v.parse::<u64>().map_err(|_| SigError::Malformed("t is not Unix seconds"))?);
            }
            "v1" => {
                if v1.len() == MAX_SIGNATURES {
                    return Err(SigError::Malformed("too many v1 signatures"));
                }
                v1.push(hex32(v).ok_or(SigError::Malformed("v1 is not 64 lower-case hex digits"))?);
            }
            _ => {}
        }
    }
    let t = t.ok_or(SigError::Malformed("no t="))?;
    if v1.is_empty() {
        return Err(SigError::Malformed("no v1="));
    }
    Ok(GenericSignature { t, v1 })
}

/// The `v1` signature of `body` sent at `t` (for senders and tests).
pub fn sign_generic(secret: &[u8], t: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(format!("{t}.").as_bytes());
    ctx.update(body);
    hex::encode(ctx.sign().as_ref())
}

/// Checks a generic webhook: the header's form, `|now − t| ≤ 300 s`, then the HMAC of
/// `"{t}." + body` against each `v1`.
pub fn verify_generic(secret: &[u8], header: Option<&[u8]>, body: &[u8], now: u64) -> Result<u64, SigError> {
    let sig = parse_generic_header(header.ok_or(SigError::Missing)?)?;
    let skew = now.abs_diff(sig.t);
    if skew > TOLERANCE_SECS {
        return Err(SigError::Stale { t: sig.t, skew });
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut msg = Vec::with_capacity(body.len() + 21);
    msg.extend_from_slice(format!("{}.", sig.t).as_bytes());
    msg.extend_from_slice(body);
    if sig.v1.iter().any(|v| hmac::verify(&key, &msg, v).is_ok()) { Ok(sig.t) } else { Err(SigError::Mismatch) }
}

fn cryptopay_key(token: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// Crypto Pay's `crypto-pay-api-signature` of `body` (for the fake API in tests).
pub fn sign_cryptopay(token: &str, body: &[u8]) -> String {
    hex::encode(hmac::sign(&cryptopay_key(token), body).as_ref())
}

/// Checks Crypto Pay's `crypto-pay-api-signature`: lower- or upper-case hex of
/// HMAC-SHA256(key = SHA-256(token), raw body).
pub fn verify_cryptopay(token: &str, header: Option<&[u8]>, body: &[u8]) -> Result<(), SigError> {
    let h = header.ok_or(SigError::Missing)?;
    let text = std::str::from_utf8(h).map_err(|_| SigError::Malformed("not ASCII"))?.trim().to_ascii_lowercase();
    let sig = hex32(&text).ok_or(SigError::Malformed("not 64 hex digits"))?;
    hmac::verify(&cryptopay_key(token), body, &sig).map_err(|_| SigError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const BODY: &[u8] = br#"{"id":"ord-1","user":"alice","amount":"12.50","currency":"USD"}"#;

    fn header(t: u64, body: &[u8]) -> String {
        format!("t={t},v1={}", sign_generic(SECRET, t, body))
    }

    /// A known answer, computed independently (Python's `hmac`):
    /// `hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()`.
    #[test]
    fn the_generic_signature_is_hmac_sha256_of_t_dot_body() {
        assert_eq!(
            sign_generic(SECRET, 1_700_000_000, BODY),
            "07132f0b5e3d36a9f2d399f78c7ad03fa33b36a7e47c6ddc0d0b845cb02a48f8"
        );
        let h = header(1_700_000_000, BODY);
        assert_eq!(verify_generic(SECRET, Some(h.as_bytes()), BODY, 1_700_000_000), Ok(1_700_000_000));
    }

    #[test]
    fn the_window_is_300_seconds_either_way() {
        let t = 1_700_000_000;
        let h = header(t, BODY);
        for now in [t - 300, t + 300, t] {
            assert!(verify_generic(SECRET, Some(h.as_bytes()), BODY, now).is_ok(), "{now}");
        }
        for now in [t - 301, t + 301, 0, u64::MAX] {
            let e = verify_generic(SECRET, Some(h.as_bytes()), BODY, now).unwrap_err();
            assert!(matches!(e, SigError::Stale { .. }), "{now}: {e}");
            assert_eq!(e.code(), "stale_timestamp");
        }
    }

    #[test]
    fn a_changed_body_secret_or_signature_is_refused() {
        let t = 1_700_000_000;
        let h = header(t, BODY);
        let mut other = BODY.to_vec();
        other[10] ^= 1;
        assert_eq!(verify_generic(SECRET, Some(h.as_bytes()), &other, t), Err(SigError::Mismatch));
        assert_eq!(verify_generic(b"another secret", Some(h.as_bytes()), BODY, t), Err(SigError::Mismatch));
        // The signature covers t: the same v1 with another t does not pass.
        let moved = h.replacen(&format!("t={t}"), &format!("t={}", t + 1), 1);
        assert_eq!(verify_generic(SECRET, Some(moved.as_bytes()), BODY, t), Err(SigError::Mismatch));
        // With two signatures (a sender rotating its secret) either one passes.
        let two = format!("t={t},v1={},v1={}", "0".repeat(64), sign_generic(SECRET, t, BODY));
        assert!(verify_generic(SECRET, Some(two.as_bytes()), BODY, t).is_ok());
        assert_eq!(verify_generic(SECRET, None, BODY, t), Err(SigError::Missing));
    }

    #[test]
    fn malformed_truncated_oversized_and_hostile_headers_are_refused() {
        let good = sign_generic(SECRET, 5, BODY);
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"t=5".to_vec(),
            format!("v1={good}").into_bytes(),
            format!("t=5,v1={}", &good[..63]).into_bytes(),
            format!("t=5,v1={}", good.to_uppercase()).into_bytes(),
            format!("t=5,v1={good}0").into_bytes(),
            format!("t=-5,v1={good}").into_bytes(),
            format!("t=5.0,v1={good}").into_bytes(),
            format!("t=99999999999999999999,v1={good}").into_bytes(),
            format!("t=5,t=5,v1={good}").into_bytes(),
            format!("t=5;v1={good}").into_bytes(),
            format!("t=5,v1={good},v1={good},v1={good},v1={good},v1={good}").into_bytes(),
            b"t=5,v1=\xff\xfe".to_vec(),
            format!("t=5,v1={good},{}", "x=y,".repeat(300)).into_bytes(),
            vec![b','; 2000],
        ];
        for h in cases {
            let e = verify_generic(SECRET, Some(&h), BODY, 5).unwrap_err();
            assert!(matches!(e, SigError::Malformed(_)), "{:?}: {e}", String::from_utf8_lossy(&h));
        }
        // Unknown schemes are ignored, spaces around parts too.
        let h = format!(" t=5 , v0=abc , v1={good} ");
        assert!(verify_generic(SECRET, Some(h.as_bytes()), BODY, 5).is_ok());
    }

    #[test]
    fn crypto_pay_signatures_are_keyed_with_the_tokens_sha256() {
        let token = "1234:AAHtestTOKENxyz";
        let body = br#"{"update_id":1,"update_type":"invoice_paid"}"#;
        let sig = sign_cryptopay(token, body);
        // Independently: HMAC-SHA256(key = SHA256(token)) over the body.
        let key = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let expect = hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()), body).as_ref());
        assert_eq!(sig, expect);
        assert_eq!(verify_cryptopay(token, Some(sig.as_bytes()), body), Ok(()));
        assert_eq!(verify_cryptopay(token, Some(sig.to_uppercase().as_bytes()), body), Ok(()));
        assert_eq!(verify_cryptopay("other", Some(sig.as_bytes()), body), Err(SigError::Mismatch));
        assert_eq!(verify_cryptopay(token, Some(sig.as_bytes()), b"{}"), Err(SigError::Mismatch));
        assert_eq!(verify_cryptopay(token, None, body), Err(SigError::Missing));
        for bad in [&b""[..], b"zz", &sig.as_bytes()[..10], b"\xff"] {
            assert!(matches!(verify_cryptopay(token, Some(bad), body), Err(SigError::Malformed(_))));
        }
    }
}
