//! The server's side of device trust: the policy read from `[trust]` and its files (read at
//! every pairing and parsed again when their contents changed, so a new root set or status list
//! applies at the next pairing), and the verdict for one PAIR.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Level, Policy, PolicyError, Verdict};
use crate::config::TrustConfig;

/// Files larger than this are refused (Google's status list is well under 1 MiB).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// What the cached policy was built from: the files' contents (small; pairing is rare).
type Stamp = (Option<String>, Option<String>);

pub struct TrustGate {
    cfg: TrustConfig,
    roots: Option<PathBuf>,
    revocation: Option<PathBuf>,
    cache: Mutex<Option<(Stamp, Arc<Policy>)>>,
}

impl std::fmt::Debug for TrustGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustGate").field("require", &self.cfg.require).finish()
    }
}

fn read_bounded(path: &Path, what: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("{what} {} is larger than {MAX_FILE_BYTES} bytes", path.display()));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

impl TrustGate {
    /// The gate for `cfg`, file paths relative to `base` (the data directory). Reads the files
    /// once, so a broken configuration stops the server at start.
    pub fn new(cfg: &TrustConfig, base: &Path) -> Result<TrustGate, PolicyError> {
        let path = |p: &str| (!p.is_empty()).then(|| if Path::new(p).is_absolute() { p.into() } else { base.join(p) });
        let gate = TrustGate {
            roots: path(&cfg.roots),
            revocation: path(&cfg.revocation_list),
            cfg: cfg.clone(),
            cache: Mutex::new(None),
        };
        gate.policy()?;
        Ok(gate)
    }

    /// The level a device needs to pair and to carry traffic.
    pub fn require(&self) -> Level {
        self.cfg.require
    }

    /// More accounts than this on one attestation key are flagged.
    pub fn shared_key_accounts(&self) -> u32 {
        self.cfg.shared_key_accounts
    }

    /// The policy in force (re-read when a file changed since the last read).
    pub fn policy(&self) -> Result<Arc<Policy>, PolicyError> {
        let roots_text = self.roots.as_ref().map(|p| read_bounded(p, "trust.roots")).transpose();
        let roots_text = roots_text.map_err(PolicyError::Roots)?;
        let list_text = self.revocation.as_ref().map(|p| read_bounded(p, "trust.revocation_list")).transpose();
        let list_text = list_text.map_err(PolicyError::Revocation)?;
        let stamp = (roots_text, list_text);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, p)) = cache.as_ref()
            && *s == stamp
        {
            return Ok(p.clone());
        }
        let root_keys = match (&self.roots, &stamp.0) {
            (Some(p), Some(text)) => super::root_keys_from_pem(text)
                .map_err(|e| PolicyError::Roots(format!("trust.roots {}: {e}", p.display())))?,
            _ => super::root_keys_from_pem(super::GOOGLE_ROOTS_PEM)?,
        };
        let revoked = match (&self.revocation, &stamp.1) {
            (Some(p), Some(text)) => super::revocations_from_json(text, self.cfg.max_revocation_entries)
                .map_err(|e| PolicyError::Revocation(format!("trust.revocation_list {}: {e}", p.display())))?,
            _ => Default::default(),
        };
        let policy = Arc::new(Policy {
            root_keys,
            revoked,
            packages: self.cfg.packages.clone(),
            signing_digests: self.cfg.digests().map_err(PolicyError::Roots)?.into_iter().collect(),
        });
        tracing::info!(
            roots = policy.root_keys.len(),
            revoked = policy.revoked.len(),
            custom_roots = self.roots.is_some(),
            "device trust policy loaded"
        );
        *cache = Some((stamp, policy.clone()));
        Ok(policy)
    }

    /// The verdict on one PAIR's chain. A policy that cannot be read (a file removed or broken
    /// since the start) proves nothing: such chains are `software` with that reason.
    pub fn judge(&self, chain: &[Vec<u8>], challenge: &[u8; 32], device_key: &[u8], now: i64) -> Verdict {
        match self.policy() {
            Ok(p) => super::verify(chain, challenge, device_key, &p, now),
            Err(e) if chain.is_empty() => {
                tracing::warn!(error = %e, "device trust policy unreadable");
                Verdict::default()
            }
            Err(e) => {
                tracing::warn!(error = %e, "device trust policy unreadable");
                Verdict {
                    level: Level::Software,
                    reasons: vec![format!("the server's trust policy cannot be read: {e}")],
                    ..Verdict::default()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::testkit::{Attest, ChainSpec, TestRoot, chain, device_point, new_key};

    #[test]
    fn files_are_read_again_when_they_change_and_broken_ones_prove_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let (a, b) = (TestRoot::new("A"), TestRoot::new("B"));
        std::fs::write(dir.path().join("roots.pem"), a.pem()).expect("write");
        let cfg = TrustConfig {
            roots: "roots.pem".into(),
            revocation_list: "status.json".into(),
            packages: vec![],
            ..TrustConfig::default()
        };
        // A missing status list stops the start.
        assert!(TrustGate::new(&cfg, dir.path()).unwrap_err().to_string().contains("trust.revocation_list"));
        std::fs::write(dir.path().join("status.json"), r#"{"entries": {}}"#).expect("write");
        let gate = TrustGate::new(&cfg, dir.path()).expect("gate");
        let challenge = [3u8; 32];
        let device = new_key();
        let inter = new_key();
        let spec = ChainSpec::new(Attest::good(&challenge, "x", &[0; 32]));
        let under_b = chain(&b, &inter, &device, &spec);
        let judge = || gate.judge(&under_b, &challenge, &device_point(&device), 1_798_761_600);
        assert_eq!(judge().level, Level::Software);
        // The operator swaps the root set: the next pairing sees it, no restart.
        std::fs::write(dir.path().join("roots.pem"), b.pem()).expect("write");
        assert_eq!(judge().level, Level::Hardware, "{:?}", judge().reasons);
        // The intermediate's serial lands on the status list.
        std::fs::write(dir.path().join("status.json"), r#"{"entries": {"2c8cdddf": {"status": "REVOKED"}}}"#)
            .expect("write");
        assert!(judge().reasons.iter().any(|r| r.contains("revocation list")), "{:?}", judge().reasons);
        // A broken file: chains prove nothing (software with the reason), no chain stays none.
        std::fs::write(dir.path().join("status.json"), "not json").expect("write");
        let v = judge();
        assert_eq!(v.level, Level::Software);
        assert!(v.reasons[0].contains("cannot be read"), "{:?}", v.reasons);
        assert_eq!(gate.judge(&[], &challenge, &device_point(&device), 0).level, Level::None);
    }
}
