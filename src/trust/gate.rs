//! The server's side of device trust: the policy read from `[trust]` and its files (re-read
//! when a file changes, so a new root set or status list applies at the next pairing), and the
//! verdict for one PAIR.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{Level, Policy, PolicyError, Verdict};
use crate::config::TrustConfig;

/// Files larger than this are refused (Google's status list is well under 1 MiB).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

type Stamp = (Option<SystemTime>, Option<SystemTime>);

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

fn mtime(p: &Option<PathBuf>) -> Option<SystemTime> {
    p.as_ref().and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
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
        let stamp = (mtime(&self.roots), mtime(&self.revocation));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, p)) = cache.as_ref()
            && *s == stamp
        {
            return Ok(p.clone());
        }
        let root_keys = match &self.roots {
            None => super::root_keys_from_pem(super::GOOGLE_ROOTS_PEM)?,
            Some(p) => super::root_keys_from_pem(&read_bounded(p, "trust.roots").map_err(PolicyError::Roots)?)
                .map_err(|e| PolicyError::Roots(format!("trust.roots {}: {e}", p.display())))?,
        };
        let revoked = match &self.revocation {
            None => Default::default(),
            Some(p) => super::revocations_from_json(
                &read_bounded(p, "trust.revocation_list").map_err(PolicyError::Revocation)?,
                self.cfg.max_revocation_entries,
            )
            .map_err(|e| PolicyError::Revocation(format!("trust.revocation_list {}: {e}", p.display())))?,
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
