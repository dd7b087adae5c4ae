//! Device trust (SECURITY.md §5, docs/trust.md): the Android Key Attestation chain a phone sends
//! at pairing, verified offline, gives the device a trust level.
//!
//! - `hardware`: the chain reaches a root of the configured set, every certificate is in date
//!   and unrevoked, the leaf certifies the device key for this pairing's challenge, the key is in
//!   a TEE or StrongBox, boot is verified with a locked bootloader, and the app is ours (package
//!   and signing-certificate digest, when configured).
//! - `software`: a chain was sent but does not prove all of that; the reasons say what failed.
//! - `none`: no chain (Linux nodes, phones without attestation).
//!
//! Pure: the caller brings the chain, the expected challenge, the device key, the policy (roots,
//! revocation list, package and signers) and the time. Hostile input gives reasons, never a
//! panic.

pub mod der;
pub mod gate;
pub mod key_description;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use key_description::{BootState, SecurityLevel};

/// The most certificates a chain may have (real ones have 3–5).
pub const MAX_CHAIN: usize = 8;
/// The largest certificate read.
pub const MAX_CERT_BYTES: usize = 16 * 1024;
/// At most this many reasons are kept per device.
const MAX_REASONS: usize = 8;

/// A device's trust level (defined with the other device identity types).
pub use crate::identity::TrustLevel as Level;

/// What a chain proved, as stored with the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Verdict {
    pub level: Level,
    /// Why the level is not `hardware` (empty when it is, or when there was no chain).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// `software`, `tee` or `strongbox`, as the attestation claims (even when not proven).
    #[serde(default)]
    pub security_level: Option<String>,
    /// SHA-256 (hex) of the attestation key: the public key that signed the leaf. Factory
    /// batches share one; the same key on many accounts hints at a leaked keybox.
    #[serde(default)]
    pub attestation_key: Option<String>,
}

impl Verdict {
    fn none() -> Verdict {
        Verdict::default()
    }

    fn push(&mut self, reason: String) {
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason);
        }
    }
}

/// The operator's rules for `hardware`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Trusted roots, as the DER of their SubjectPublicKeyInfo (a root is trusted by its key,
    /// as Google advises: re-issued root certificates of one key all match).
    pub root_keys: Vec<Vec<u8>>,
    /// Revoked certificate serials (lowercase hex, no leading zeros) and why.
    pub revoked: BTreeMap<String, String>,
    /// Package names of the app; empty: not checked.
    pub packages: Vec<String>,
    /// SHA-256 digests of the app's signing certificate; empty: not checked.
    pub signing_digests: BTreeSet<Vec<u8>>,
}

/// Why a root set or revocation list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Roots(String),
    #[error("{0}")]
    Revocation(String),
}

/// The default root set: Google's hardware attestation roots, bundled.
pub const GOOGLE_ROOTS_PEM: &str = include_str!("../../assets/trust/google-attestation-roots.pem");

/// The SubjectPublicKeyInfo DER of every certificate in `pem` (at least one).
pub fn root_keys_from_pem(pem: &str) -> Result<Vec<Vec<u8>>, PolicyError> {
    let mut keys = Vec::new();
    let mut reader = std::io::Cursor::new(pem.as_bytes());
    for item in rustls_pemfile::certs(&mut reader) {
        let der = item.map_err(|e| PolicyError::Roots(format!("not PEM certificates: {e}")))?;
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| PolicyError::Roots(format!("root certificate {} does not parse: {e}", keys.len() + 1)))?;
        keys.push(cert.public_key().raw.to_vec());
    }
    if keys.is_empty() {
        return Err(PolicyError::Roots("no CERTIFICATE block in the root set".into()));
    }
    Ok(keys)
}

/// Google's attestation status list (`https://android.googleapis.com/attestation/status`):
/// `{"entries": {"<serial hex>": {"status": "REVOKED"|"SUSPENDED", "reason": "...", ...}}}`.
/// Both statuses count as revoked. Serials are lowercased and stripped of leading zeros.
pub fn revocations_from_json(json: &str, max_entries: usize) -> Result<BTreeMap<String, String>, PolicyError> {
    #[derive(Deserialize)]
    struct Entry {
        status: String,
        #[serde(default)]
        reason: Option<String>,
    }
    #[derive(Deserialize)]
    struct StatusList {
        entries: BTreeMap<String, Entry>,
    }
    let list: StatusList = serde_json::from_str(json)
        .map_err(|e| PolicyError::Revocation(format!("not an attestation status list: {e}")))?;
    if list.entries.len() > max_entries {
        return Err(PolicyError::Revocation(format!(
            "{} entries, more than trust.max_revocation_entries = {max_entries}",
            list.entries.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (serial, e) in list.entries {
        let s = normalize_serial(&serial)
            .ok_or_else(|| PolicyError::Revocation(format!("entry {serial:?} is not a hex serial number")))?;
        let status = e.status.to_ascii_uppercase();
        if status != "REVOKED" && status != "SUSPENDED" {
            continue;
        }
        let why = match e.reason {
            Some(r) if !r.is_empty() => format!("{} ({})", status.to_ascii_lowercase(), r.to_ascii_lowercase()),
            _ => status.to_ascii_lowercase(),
        };
        out.insert(s, why.chars().take(64).collect());
    }
    Ok(out)
}

fn normalize_serial(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let t = s.trim_start_matches('0');
    Some(if t.is_empty() { "0".into() } else { t.into() })
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

/// Verifies `chain` (DER, leaf first, as PAIR sent it) for the device key `device_key` (PAIR's
/// public key bytes) at unix time `now`. `challenge` is the attestation challenge this pairing
/// must carry (`identity::attestation_challenge`).
pub fn verify(chain: &[Vec<u8>], challenge: &[u8; 32], device_key: &[u8], policy: &Policy, now: i64) -> Verdict {
    if chain.is_empty() {
        return Verdict::none();
    }
    let mut v = Verdict { level: Level::Software, ..Verdict::default() };
    if chain.len() > MAX_CHAIN {
        v.push(format!("the chain has {} certificates, more than {MAX_CHAIN}", chain.len()));
        return v;
    }
    let mut certs = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        if der.len() > MAX_CERT_BYTES {
            v.push(format!("certificate {i} is {} bytes, more than {MAX_CERT_BYTES}", der.len()));
            return v;
        }
        match X509Certificate::from_der(der) {
            Ok(([], c)) => certs.push(c),
            Ok((rest, _)) => {
                v.push(format!("certificate {i} has {} trailing bytes", rest.len()));
                return v;
            }
            Err(e) => {
                v.push(format!("certificate {i} is not valid DER X.509: {e}"));
                return v;
            }
        }
    }
    // The key that signed the leaf, when it did (a made-up chain cannot pin its leaf on
    // somebody else's attestation key and so make it look shared).
    if let Some(inter) = certs.get(1)
        && certs[0].verify_signature(Some(inter.public_key())).is_ok()
    {
        v.attestation_key = Some(sha256_hex(inter.public_key().raw));
    }

    // The leaf's claims first: they are shown even when the chain fails.
    let leaf = &certs[0];
    let description = match leaf.extensions().iter().find(|e| e.oid.as_bytes() == key_description::OID) {
        None => {
            v.push("the leaf certificate has no Key Attestation extension".into());
            None
        }
        Some(ext) => match key_description::parse(ext.value) {
            Ok(d) => Some(d),
            Err(e) => {
                v.push(format!("malformed Key Attestation extension: {e}"));
                None
            }
        },
    };

    // Only the leaf may describe a key: an attested key with PURPOSE_SIGN can sign a made-up
    // certificate, so a chain "extended" below a genuine leaf must not pass for the genuine one.
    for (i, c) in certs.iter().enumerate().skip(1) {
        if c.extensions().iter().any(|e| e.oid.as_bytes() == key_description::OID) {
            v.push(format!(
                "certificate {i} is not the leaf but has a Key Attestation extension (a chain extended by an attested key)"
            ));
        }
    }
    check_path(&certs, policy, now, &mut v);

    if leaf.public_key().subject_public_key.data.as_ref() != device_key {
        v.push("the attested key is not the device key sent in PAIR".into());
    }
    if let Some(d) = description {
        v.security_level = Some(d.attestation_security_level.name().into());
        if !bool::from(subtle::ConstantTimeEq::ct_eq(d.challenge.as_slice(), challenge.as_slice())) {
            v.push("the attestation challenge is not this pairing's (pin and code)".into());
        }
        if d.attestation_security_level == SecurityLevel::Software
            || d.keymint_security_level == SecurityLevel::Software
        {
            v.push("the key is attested by software, not a TEE or StrongBox".into());
        }
        match d.root_of_trust {
            None => v.push("no hardware-enforced root of trust (verified boot unknown)".into()),
            Some(rot) => {
                if rot.boot_state != BootState::Verified {
                    v.push(format!("verified boot state is {}", rot.boot_state.name()));
                }
                if !rot.device_locked {
                    v.push("the bootloader is unlocked".into());
                }
            }
        }
        check_app(d.application.as_ref(), policy, &mut v);
    }
    if v.reasons.is_empty() {
        v.level = Level::Hardware;
    }
    v
}

/// Signatures link each certificate to the next, the last one to a trusted root; dates and
/// revocation of every certificate below the trust anchor.
fn check_path(certs: &[X509Certificate<'_>], policy: &Policy, now: i64, v: &mut Verdict) {
    let trusted = |spki: &[u8]| policy.root_keys.iter().any(|k| k.as_slice() == spki);
    // The anchor: the first certificate whose key is a trusted root's (later ones are ignored).
    let anchor = certs.iter().position(|c| trusted(c.public_key().raw));
    let path_end = anchor.unwrap_or(certs.len() - 1);
    // SHA-1 signatures are forgeable (chosen-prefix collisions): not accepted, whatever ring
    // would verify.
    use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
    for (i, c) in certs.iter().enumerate().take(path_end) {
        let alg = &c.signature_algorithm.algorithm;
        if *alg == OID_PKCS1_SHA1WITHRSA || *alg == OID_SHA1_WITH_RSA {
            v.push(format!("certificate {i} is signed with SHA-1"));
        }
    }
    for i in 0..path_end {
        if let Err(e) = certs[i].verify_signature(Some(certs[i + 1].public_key())) {
            v.push(format!("certificate {i} is not signed by certificate {}: {e}", i + 1));
        }
    }
    // A certificate that signs another must be allowed to (RFC 5280 4.2.1.3 and 4.2.1.9): when
    // it says what it is, it must say CA and certificate signing. (Some older attestation
    // intermediates carry neither extension; those are judged by their signatures alone.)
    for (i, c) in certs.iter().enumerate().take(path_end + 1).skip(1) {
        match c.basic_constraints() {
            Ok(Some(bc)) if !bc.value.ca => {
                v.push(format!("certificate {i} signs another but is not a CA (basicConstraints CA false)"));
            }
            Err(e) => v.push(format!("certificate {i} has a malformed basicConstraints: {e}")),
            _ => {}
        }
        match c.key_usage() {
            Ok(Some(ku)) if !ku.value.key_cert_sign() => {
                v.push(format!("certificate {i} signs another but its key usage does not allow certificate signing"));
            }
            Err(e) => v.push(format!("certificate {i} has a malformed key usage: {e}")),
            _ => {}
        }
    }
    match anchor {
        Some(_) => {}
        None => {
            let last = &certs[path_end];
            let by_root = policy.root_keys.iter().any(|k| {
                x509_parser::x509::SubjectPublicKeyInfo::from_der(k)
                    .is_ok_and(|(_, spki)| last.verify_signature(Some(&spki)).is_ok())
            });
            if !by_root {
                if last.verify_signature(None).is_ok() {
                    v.push(format!(
                        "the chain ends at a root that is not in the trusted set (key SHA-256 {})",
                        sha256_hex(last.public_key().raw)
                    ));
                } else {
                    v.push(format!("the chain does not reach a root: certificate {path_end} is not self-signed and no trusted root signed it"));
                }
            }
        }
    }
    for (i, c) in certs.iter().enumerate().take(path_end + usize::from(anchor.is_none())) {
        let validity = c.validity();
        if now < validity.not_before.timestamp() {
            v.push(format!("certificate {i} is not valid before {}", validity.not_before));
        } else if now > validity.not_after.timestamp() {
            v.push(format!("certificate {i} expired {}", validity.not_after));
        }
    }
    for (i, c) in certs.iter().enumerate() {
        let serial = format!("{:x}", c.serial);
        if let Some(why) = policy.revoked.get(&serial) {
            v.push(format!("certificate {i} (serial {serial}) is on the revocation list: {why}"));
        }
    }
}

fn check_app(app: Option<&key_description::ApplicationId>, policy: &Policy, v: &mut Verdict) {
    if policy.packages.is_empty() && policy.signing_digests.is_empty() {
        return;
    }
    let Some(app) = app else {
        v.push("the attestation names no application (attestationApplicationId)".into());
        return;
    };
    if !policy.packages.is_empty() && !app.packages.iter().any(|p| policy.packages.contains(p)) {
        let got: Vec<&str> = app.packages.iter().map(String::as_str).take(4).collect();
        v.push(format!("the key belongs to package {:?}, not {}", got.join(","), policy.packages.join(" or ")));
    }
    if !policy.signing_digests.is_empty() && !app.signature_digests.iter().any(|d| policy.signing_digests.contains(d)) {
        v.push("the app's signing certificate is not one of trust.signing_digests".into());
    }
}
