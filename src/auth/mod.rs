//! Authentication rules: login password hashing (argon2id), proxy-password tokens, pairing
//! codes, and device signature checks. No HTTP types, no storage: callers bring the records.

pub mod jwt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use crate::identity::{DEVICE_ID_LEN, KeyAlg, NONCE_LEN, challenge_message};

/// argon2id with the OWASP parameters of SECURITY.md §3: m = 19456 KiB, t = 2, p = 1.
fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's documented bounds.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the system random generator failed")]
    Random,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Fills `n` random bytes from the OS generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| AuthError::Random)?;
    Ok(b)
}

/// Hashes a login password (slow: run it on the blocking pool).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt_bytes = random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks a login password against a stored PHC hash (slow: run it on the blocking pool).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// Shortest login password accepted, in characters.
pub const MIN_LOGIN_PASSWORD_CHARS: usize = 8;
/// Longest login password accepted, in bytes (logins refuse longer ones before hashing).
pub const MAX_LOGIN_PASSWORD_BYTES: usize = 1024;

/// Checks a login password chosen by a person: at least [`MIN_LOGIN_PASSWORD_CHARS`]
/// characters and at most [`MAX_LOGIN_PASSWORD_BYTES`] bytes. The reason when it is refused.
pub fn check_login_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LOGIN_PASSWORD_CHARS {
        return Err(format!("passwords need at least {MIN_LOGIN_PASSWORD_CHARS} characters"));
    }
    if password.len() > MAX_LOGIN_PASSWORD_BYTES {
        return Err(format!("passwords are at most {MAX_LOGIN_PASSWORD_BYTES} bytes"));
    }
    Ok(())
}

/// Characters of a proxy password: letters and digits, nothing that needs quoting in a proxy URL.
const PROXY_PASSWORD_ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of a proxy password: 22 uniform letters or digits carry 22 · log2(62) ≈ 131 bits.
pub const PROXY_PASSWORD_LEN: usize = 22;

/// A fresh proxy password: [`PROXY_PASSWORD_LEN`] characters drawn uniformly from 62 letters and
/// digits (at least 128 bits). Bytes of 248 and above are skipped so no character is likelier
/// than another (248 = 4 · 62).
pub fn new_proxy_password() -> Result<String, AuthError> {
    let mut out = String::with_capacity(PROXY_PASSWORD_LEN);
    while out.len() < PROXY_PASSWORD_LEN {
        for b in random_bytes::<32>()? {
            if b < 248 && out.len() < PROXY_PASSWORD_LEN {
                out.push(char::from(PROXY_PASSWORD_ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// A generated login password for `init` and `user add` without `--password`.
pub fn new_login_password() -> Result<String, AuthError> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<15>()?))
}

/// A one-time pairing code: 20 characters of an unambiguous alphabet (~100 bits).
pub fn new_pairing_code() -> Result<String, AuthError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let raw = random_bytes::<20>()?;
    Ok(raw.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect())
}

/// The stored key of a pairing code (only its hash is kept).
pub fn pairing_code_hash(code: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, code.trim().to_ascii_uppercase().as_bytes()))
}

/// Hash of a machine-generated bearer secret (refresh tokens, API keys) as stored: SHA-256 hex
/// of the exact bytes. Unlike [`pairing_code_hash`], nothing is trimmed or case-folded: a token
/// matches only as it was issued.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()))
}

/// Constant-time string equality (proxy passwords).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Checks a device's answer to a challenge (docs/protocol.md, "Signed bytes").
pub fn verify_device_signature(
    alg: KeyAlg,
    public_key: &[u8],
    pin: &[u8; 32],
    device_id: &[u8; DEVICE_ID_LEN],
    nonce: &[u8; NONCE_LEN],
    signature: &[u8],
) -> bool {
    let msg = challenge_message(pin, device_id, nonce);
    let algorithm: &dyn ring::signature::VerificationAlgorithm = match alg {
        KeyAlg::Ed25519 if public_key.len() == 32 => &ring::signature::ED25519,
        KeyAlg::EcdsaP256 if public_key.len() == 65 => &ring::signature::ECDSA_P256_SHA256_ASN1,
        _ => return false,
    };
    ring::signature::UnparsedPublicKey::new(algorithm, public_key).verify(&msg, signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn chosen_passwords_have_a_minimum_and_a_maximum_length() {
        assert!(check_login_password("1234567").is_err());
        assert!(check_login_password("12345678").is_ok());
        assert!(check_login_password("ääääääää").is_ok(), "characters, not bytes, for the minimum");
        assert!(check_login_password("äääää").is_err(), "ten bytes, five characters");
        assert!(check_login_password(&"x".repeat(1024)).is_ok());
        assert_eq!(check_login_password(&"x".repeat(1025)), Err("passwords are at most 1024 bytes".into()));
        assert!(new_login_password().is_ok_and(|p| check_login_password(&p).is_ok()));
    }

    /// Proxy passwords are uniform over 62 symbols (the old base64 with `-` and `_` folded
    /// into `x` made `x` three times as likely and carried ~126 bits).
    #[test]
    fn proxy_passwords_carry_at_least_128_bits() {
        assert!(PROXY_PASSWORD_LEN as f64 * 62f64.log2() >= 128.0);
        let mut counts = std::collections::HashMap::new();
        let n = 2_000;
        for _ in 0..n {
            let p = new_proxy_password().unwrap();
            assert_eq!(p.len(), PROXY_PASSWORD_LEN);
            for c in p.chars() {
                assert!(c.is_ascii_alphanumeric(), "{p}");
                *counts.entry(c).or_insert(0u32) += 1;
            }
        }
        // 44,000 draws: each symbol is expected ~710 times (σ ≈ 26); twice that is impossible
        // for a uniform draw and certain for a symbol with three times the share.
        let expected = (n * PROXY_PASSWORD_LEN) as f64 / 62.0;
        assert_eq!(counts.len(), 62, "every letter and digit appears");
        for (c, k) in counts {
            assert!(f64::from(k) < 1.5 * expected && f64::from(k) > 0.5 * expected, "{c} drawn {k} times");
        }
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = new_proxy_password().unwrap();
        assert!(a.len() >= 22 && a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, new_proxy_password().unwrap());
        assert!(ct_eq(&a, &a.clone()) && !ct_eq(&a, "x"));
        assert_eq!(pairing_code_hash("abc "), pairing_code_hash("ABC"));
        // Generated secrets match exactly: no trimming, no case folding.
        assert_ne!(secret_hash("tfr_abc"), secret_hash("TFR_ABC"));
        assert_ne!(secret_hash("tfr_abc"), secret_hash(" tfr_abc "));
        assert_eq!(secret_hash("tfr_abc"), secret_hash("tfr_abc"));
    }

    #[test]
    fn device_signature_binds_pin_id_and_nonce() {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let pk = kp.public_key().as_ref().to_vec();
        let id = crate::identity::device_id(KeyAlg::Ed25519, &pk);
        let (pin, nonce) = ([1u8; 32], [2u8; 32]);
        let sig = kp.sign(&challenge_message(&pin, &id, &nonce));
        assert!(verify_device_signature(KeyAlg::Ed25519, &pk, &pin, &id, &nonce, sig.as_ref()));
        assert!(!verify_device_signature(KeyAlg::Ed25519, &pk, &[9; 32], &id, &nonce, sig.as_ref()));
        assert!(!verify_device_signature(KeyAlg::Ed25519, &pk, &pin, &id, &[3; 32], sig.as_ref()));
        assert!(!verify_device_signature(KeyAlg::EcdsaP256, &pk, &pin, &id, &nonce, sig.as_ref()));
    }
}
