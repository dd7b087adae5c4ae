//! Access tokens (SECURITY.md §3): JWTs signed with HS256 only (the algorithm is pinned, never
//! read from the token), `iss`, `aud`, `exp`, `nbf` required and checked with 30 s of leeway,
//! 10 minutes of life. jsonwebtoken ≥ 10.3 (CVE-2026-25537: a string `exp` skipped the check).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Life of an access token.
pub const ACCESS_TTL_SECS: u64 = 600;
const ISSUER: &str = "traffix";
const AUDIENCE: &str = "traffix-api";
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    /// The login family the token was issued for.
    pub fam: String,
}

/// Signs and checks access tokens with the server's secret.
pub struct Jwt {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jwt(HS256)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("invalid access token: {0}")]
    Invalid(String),
}

impl Jwt {
    pub fn new(secret: &[u8]) -> Jwt {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Jwt { enc: EncodingKey::from_secret(secret), dec: DecodingKey::from_secret(secret), validation }
    }

    /// A fresh access token for `user` of login family `fam`, issued at `now`.
    pub fn issue(&self, user: &str, fam: &str, now: u64) -> Result<String, JwtError> {
        let claims = Claims {
            sub: user.into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            nbf: now,
            exp: now + ACCESS_TTL_SECS,
            fam: fam.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .map_err(|e| JwtError::Invalid(e.to_string()))
    }

    /// Checks signature, algorithm, issuer, audience and times (against the system clock).
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        jsonwebtoken::decode::<Claims>(token, &self.dec, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| JwtError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn forge(secret: &[u8], header: &str, claims: serde_json::Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let head = b64.encode(header);
        let body = b64.encode(claims.to_string());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let sig = ring::hmac::sign(&key, format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", b64.encode(sig.as_ref()))
    }

    #[test]
    fn issued_tokens_verify_and_tampered_ones_do_not() {
        let j = Jwt::new(b"0123456789abcdef0123456789abcdef");
        let t = j.issue("ann", "fam", now()).unwrap();
        assert_eq!(j.verify(&t).unwrap().sub, "ann");
        assert!(Jwt::new(b"another secret of enough length!").verify(&t).is_err(), "other key");
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(j.verify(&bad).is_err(), "bad signature");
        assert!(j.verify("").is_err() && j.verify("a.b.c").is_err() && j.verify(&"x".repeat(10_000)).is_err());
    }

    #[test]
    fn expired_early_foreign_and_unpinned_tokens_are_refused() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let j = Jwt::new(secret);
        let n = now();
        let claims = |exp: serde_json::Value, nbf: u64, iss: &str, aud: &str| serde_json::json!({"sub": "ann", "iss": iss, "aud": aud, "iat": n, "nbf": nbf, "exp": exp, "fam": "f"});
        let hs = r#"{"alg":"HS256","typ":"JWT"}"#;
        assert!(j.verify(&forge(secret, hs, claims(serde_json::json!(n + 60), n, "traffix", "traffix-api"))).is_ok());
        assert!(
            j.verify(&forge(secret, hs, claims(serde_json::json!(n - 31), n - 700, "traffix", "traffix-api"))).is_err(),
            "expired"
        );
        assert!(
            j.verify(&forge(secret, hs, claims(serde_json::json!(n + 900), n + 300, "traffix", "traffix-api")))
                .is_err(),
            "not yet valid"
        );
        assert!(
            j.verify(&forge(secret, hs, claims(serde_json::json!(n + 60), n, "evil", "traffix-api"))).is_err(),
            "issuer"
        );
        assert!(
            j.verify(&forge(secret, hs, claims(serde_json::json!(n + 60), n, "traffix", "other"))).is_err(),
            "audience"
        );
        // CVE-2026-25537: a string exp must not skip the expiry check.
        assert!(
            j.verify(&forge(
                secret,
                hs,
                claims(serde_json::json!((n - 3600).to_string()), n - 4000, "traffix", "traffix-api")
            ))
            .is_err(),
            "string exp"
        );
        // The algorithm is pinned: HS384 and `none` are refused even with a valid MAC.
        assert!(
            j.verify(&forge(
                secret,
                r#"{"alg":"HS384","typ":"JWT"}"#,
                claims(serde_json::json!(n + 60), n, "traffix", "traffix-api")
            ))
            .is_err()
        );
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(claims(serde_json::json!(n + 60), n, "traffix", "traffix-api").to_string())
        );
        assert!(j.verify(&none).is_err(), "alg none");
        let mut missing = claims(serde_json::json!(n + 60), n, "traffix", "traffix-api");
        missing.as_object_mut().unwrap().remove("nbf");
        assert!(j.verify(&forge(secret, hs, missing)).is_err(), "nbf required");
    }
}
