//! Certificates of the web listener: the self-signed one from `traffix init`, and, when
//! `tls.acme_domain` is set, one from an ACME CA (Let's Encrypt by default) for the **same
//! key** — nodes pin the key (docs/protocol.md), so issuance and renewals never change the pin.
//!
//! [`Certificates`] owns the resolver the web listener's rustls config asks on every handshake
//! (`resolver.rs`): a new certificate is swapped in whole and only new handshakes see it, so
//! nothing is dropped. [`Certificates::run`] is the background service: it issues at start
//! when no valid ACME certificate is on disk, renews when `schedule.rs` says so, retries with
//! backoff, and serves the self-signed certificate with a loud warning while it has nothing
//! better. Challenges: TLS-ALPN-01 on the web listener itself (the CA connects to port 443),
//! or HTTP-01 on `tls.acme_http_listen` (port 80; `http01.rs`). The CA's HTTPS goes through
//! our own small client (`client.rs`) on the process's one crypto provider.
//!
//! Files in the data directory: `acme/account.json` (the ACME account and its key, 0600),
//! `acme/state.json` (the last attempts, for the dashboard and `traffix doctor`) and
//! `tls/acme-cert.pem` (the issued chain, written atomically). It must not touch the key
//! file, nor the self-signed certificate, nor anything of the tunnel.

pub mod client;
pub mod http01;
mod order;
pub mod resolver;
pub mod schedule;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use order::csr_der;
pub use resolver::{CertResolver, Source};

use crate::config::{Challenge, Config};
use crate::shutdown::Shutdown;
use schedule::{Clock, Facts, Policy};

/// The ACME account (with its key), inside the data directory.
pub const ACCOUNT_FILE: &str = "acme/account.json";
/// The last attempts, inside the data directory.
pub const STATE_FILE: &str = "acme/state.json";
/// The issued chain, inside the data directory.
pub const CERT_FILE: &str = "tls/acme-cert.pem";
/// One whole issuance, account to certificate. The CA's own polling is bounded below this.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest sleep before the schedule is looked at again (a wall clock that jumps, a
/// suspended machine: the next look corrects it).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("cannot {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// The ACME settings in force (`[tls]` `acme_*`, validated by the config).
#[derive(Debug, Clone)]
pub struct Settings {
    pub domain: String,
    pub contact: String,
    pub directory: String,
    pub ca_roots: Option<PathBuf>,
    pub challenge: Challenge,
    pub http_listen: Option<SocketAddr>,
    pub policy: Policy,
}

impl Settings {
    /// `None` when ACME is off.
    pub fn from_config(cfg: &Config) -> Result<Option<Settings>, String> {
        let t = &cfg.tls;
        if !t.acme_enabled() {
            return Ok(None);
        }
        Ok(Some(Settings {
            domain: t.acme_domain.clone(),
            contact: t.acme_contact.trim().to_owned(),
            directory: t.acme_directory.trim().to_owned(),
            ca_roots: match t.acme_ca_roots.trim() {
                "" => None,
                p => Some(cfg.path(Path::new(p))),
            },
            challenge: t.challenge()?,
            http_listen: t.http_listen()?,
            policy: Policy {
                renew_before_days: t.acme_renew_before_days,
                retry_secs: t.acme_retry_secs,
                retry_max_secs: t.acme_retry_max_secs,
            },
        }))
    }
}

/// What `acme/state.json` holds: the attempts so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempts {
    /// Attempts since this data directory first used ACME.
    pub attempts: u64,
    /// Failed attempts since the last success.
    pub failures: u32,
    pub last_attempt_at: Option<u64>,
    pub last_success_at: Option<u64>,
    pub last_error: Option<String>,
}

/// The certificate the web listener serves, as the dashboard, the API and the CLI show it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateView {
    /// `"acme"` or `"self_signed"`.
    pub source: String,
    pub issuer: String,
    pub subject: String,
    /// The DNS names it is valid for.
    pub dns_names: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    /// The pin paired nodes check (SHA-256 of the key): the same whatever the source.
    pub pin: String,
    /// Present when `tls.acme_domain` is set.
    pub acme: Option<AcmeView>,
}

/// ACME's state.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AcmeView {
    pub domain: String,
    pub directory: String,
    /// `"http-01"` or `"tls-alpn-01"`.
    pub challenge: String,
    /// When the certificate in use is renewed (absent while the self-signed one is served).
    pub renew_at: Option<String>,
    /// When the next attempt is due.
    pub next_attempt_at: Option<String>,
    pub attempts: u64,
    /// Failed attempts since the last success.
    pub failures: u32,
    pub last_attempt_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
}

/// The web listener's certificates, and the ACME service when it is on.
pub struct Certificates {
    pub resolver: Arc<CertResolver>,
    self_signed: Arc<rustls::sign::CertifiedKey>,
    key: PrivateKeyDer<'static>,
    /// The key as PEM, for CSRs.
    key_pem: crate::secret::Secret,
    pin: [u8; 32],
    data_dir: PathBuf,
    acme: Option<Settings>,
    attempts: Mutex<Attempts>,
    tokens: Arc<http01::Tokens>,
    renew: tokio::sync::Notify,
    /// (attempts ended, one under way): for [`Certificates::renew`] to wait on. One value, so
    /// the two always agree.
    done: tokio::sync::watch::Sender<(u64, bool)>,
    clock: Arc<dyn Clock>,
    metrics: AcmeMetrics,
}

/// `traffix_tls_certificate_acme` (1 while an ACME certificate is served),
/// `traffix_tls_cert_expiry_timestamp_seconds` (the served certificate's notAfter) and
/// `traffix_acme_failures_total`.
#[derive(Debug, Clone, Default)]
pub struct AcmeMetrics {
    pub acme_served: Gauge,
    pub cert_expiry: Gauge,
    pub failures: Counter,
}

impl AcmeMetrics {
    pub fn register(&self, reg: &mut prometheus_client::registry::Registry) {
        reg.register(
            "traffix_tls_certificate_acme",
            "1 while the web listener serves an ACME certificate, 0 while it serves the self-signed one",
            self.acme_served.clone(),
        );
        reg.register_with_unit(
            "traffix_tls_cert_expiry_timestamp",
            "End of validity (notAfter) of the certificate the web listener serves, Unix time",
            prometheus_client::registry::Unit::Seconds,
            self.cert_expiry.clone(),
        );
        reg.register("traffix_acme_failures", "Failed ACME issuance or renewal attempts", self.failures.clone());
    }

    /// What `resolver` serves now. The expiry is 0 when the certificate's validity cannot be
    /// read: an expiry alert then fires, which is the point.
    fn observe(&self, resolver: &CertResolver) {
        let cur = resolver.current();
        self.acme_served.set(i64::from(cur.source == Source::Acme));
        let not_after = cur.key.cert.first().and_then(|c| crate::tls::validity_of_cert(c).ok()).map_or(0, |v| v.1);
        self.cert_expiry.set(i64::try_from(not_after).unwrap_or(i64::MAX));
    }
}

/// Writes `data` to `path` through a temporary file and a rename, so readers see the old file
/// or the new one, never half of one.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), AcmeError> {
    use std::io::Write;
    let io = |what: &str, p: &Path| {
        let what = format!("{what} {}", p.display());
        move |source| AcmeError::Io { what, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let mut f = opts.open(&tmp).map_err(io("create", &tmp))?;
    f.write_all(data).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("replace", path))
}

/// Checks an issued (or stored) chain: it certifies our key (`pin`), names `domain`, and is
/// valid at `now`. Returns the chain and its leaf's validity.
pub fn check_chain(
    pem: &[u8],
    pin: &[u8; 32],
    domain: &str,
    now: u64,
) -> Result<(Vec<CertificateDer<'static>>, (u64, u64)), String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..]).filter_map(Result::ok).collect();
    let leaf = certs.first().ok_or("no PEM certificate")?;
    let got = crate::tls::pin_bytes_of_cert(leaf).map_err(|e| e.to_string())?;
    if got != *pin {
        return Err("it certifies another key than tls.key (the pin would change)".into());
    }
    let names = crate::tls::names_of_cert(leaf).map_err(|e| e.to_string())?;
    if !names.dns_names.iter().any(|n| n == domain) {
        return Err(format!("it is for {:?}, not {domain}", names.dns_names));
    }
    let (nb, na) = crate::tls::validity_of_cert(leaf).map_err(|e| e.to_string())?;
    if na <= now {
        return Err(format!("it expired at {}", crate::units::rfc3339(na)));
    }
    Ok((certs, (nb, na)))
}

impl Certificates {
    /// The certificates of a server with this config: the self-signed chain and key
    /// (`tls.cert`, `tls.key`) and, when ACME is on, a stored ACME certificate if it is still
    /// good for the domain and the key. Reads files only.
    pub fn load(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Certificates, String> {
        let (cert_path, key_path) = (cfg.path(&cfg.tls.cert), cfg.path(&cfg.tls.key));
        let (certs, key) = crate::tls::load_cert_and_key(&cert_path, &key_path).map_err(|e| e.to_string())?;
        let first = certs.first().ok_or("no certificate")?;
        let pin = crate::tls::pin_bytes_of_cert(first).map_err(|e| e.to_string())?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
        let self_signed = crate::tls::certified_key(certs, key.clone_key()).map_err(|e| e.to_string())?;
        let acme = Settings::from_config(cfg)?;
        let data_dir = cfg.data_dir.clone();
        let attempts = match &acme {
            Some(_) => std::fs::read(data_dir.join(STATE_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default(),
            None => Attempts::default(),
        };
        let resolver = Arc::new(CertResolver::new(self_signed.clone(), Source::SelfSigned));
        let c = Certificates {
            resolver,
            self_signed,
            key,
            key_pem: crate::secret::Secret::new(key_pem),
            pin,
            data_dir,
            acme,
            attempts: Mutex::new(attempts),
            tokens: Arc::default(),
            renew: tokio::sync::Notify::new(),
            done: tokio::sync::watch::Sender::new((0, false)),
            clock,
            metrics: AcmeMetrics::default(),
        };
        if let Some(s) = &c.acme {
            let path = c.data_dir.join(CERT_FILE);
            match std::fs::read(&path) {
                Ok(pem) => match check_chain(&pem, &c.pin, &s.domain, c.clock.now()) {
                    Ok((chain, (_, na))) => {
                        let ck = crate::tls::certified_key(chain, c.key.clone_key()).map_err(|e| e.to_string())?;
                        c.resolver.swap(ck, Source::Acme);
                        info!(domain = %s.domain, expires = %crate::units::rfc3339(na), "serving the ACME certificate from {}", path.display());
                    }
                    Err(e) => warn!(file = %path.display(), "the stored ACME certificate is not used: {e}"),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(file = %path.display(), error = %e, "cannot read the stored ACME certificate"),
            }
        }
        c.metrics.observe(&c.resolver);
        Ok(c)
    }

    pub fn metrics(&self) -> &AcmeMetrics {
        &self.metrics
    }

    pub fn acme(&self) -> Option<&Settings> {
        self.acme.as_ref()
    }

    /// The HTTP-01 challenges open right now (served by `http01::serve`).
    pub fn tokens(&self) -> Arc<http01::Tokens> {
        self.tokens.clone()
    }

    /// The validity of the ACME certificate in use (`None` while the self-signed one is served).
    fn acme_validity(&self) -> Option<(u64, u64)> {
        let cur = self.resolver.current();
        if cur.source != Source::Acme {
            return None;
        }
        cur.key.cert.first().and_then(|c| crate::tls::validity_of_cert(c).ok())
    }

    fn facts(&self) -> Facts {
        let a = crate::sync::lock(&self.attempts);
        Facts { cert: self.acme_validity(), failures: a.failures, last_attempt: a.last_attempt_at }
    }

    /// What is served, and ACME's state.
    pub fn view(&self) -> CertificateView {
        let cur = self.resolver.current();
        let leaf = cur.key.cert.first().map(|c| c.as_ref()).unwrap_or_default();
        let names = crate::tls::names_of_cert(leaf).ok();
        let (nb, na) = crate::tls::validity_of_cert(leaf).unwrap_or_default();
        let acme = self.acme.as_ref().map(|s| {
            let a = crate::sync::lock(&self.attempts).clone();
            let facts = Facts { cert: self.acme_validity(), failures: a.failures, last_attempt: a.last_attempt_at };
            let time = |t: Option<u64>| t.map(crate::units::rfc3339);
            AcmeView {
                domain: s.domain.clone(),
                directory: s.directory.clone(),
                challenge: s.challenge.as_str().to_owned(),
                renew_at: time(facts.cert.map(|(nb, na)| schedule::renew_at(nb, na, s.policy.renew_before_days))),
                next_attempt_at: time(Some(schedule::next_attempt(self.clock.now(), &facts, &s.policy))),
                attempts: a.attempts,
                failures: a.failures,
                last_attempt_at: time(a.last_attempt_at),
                last_success_at: time(a.last_success_at),
                last_error: a.last_error,
            }
        });
        CertificateView {
            source: match cur.source {
                Source::Acme => "acme",
                Source::SelfSigned => "self_signed",
            }
            .to_owned(),
            issuer: names.as_ref().map(|n| n.issuer.clone()).unwrap_or_default(),
            subject: names.as_ref().map(|n| n.subject.clone()).unwrap_or_default(),
            dns_names: names.map(|n| n.dns_names).unwrap_or_default(),
            not_before: crate::units::rfc3339(nb),
            not_after: crate::units::rfc3339(na),
            pin: hex::encode(self.pin),
            acme,
        }
    }

    /// Asks the service for an attempt now (whatever the schedule says) and waits up to `wait`
    /// for an attempt to end; returns what is served then.
    pub async fn renew(&self, wait: Duration) -> Result<CertificateView, String> {
        if self.acme.is_none() {
            return Err("ACME is off: set tls.acme_domain and tls.acme_contact in traffix.toml".into());
        }
        let mut done = self.done.subscribe();
        // An attempt already under way ends first; the one asked for here is the next.
        let (ended, busy) = *done.borrow_and_update();
        let want = ended + if busy { 2 } else { 1 };
        self.renew.notify_one();
        let ours = async {
            while done.borrow_and_update().0 < want {
                if done.changed().await.is_err() {
                    break;
                }
            }
        };
        match tokio::time::timeout(wait, ours).await {
            Ok(()) => Ok(self.view()),
            Err(_) => {
                Err(format!("no answer from the CA within {}s; `traffix tls status` shows the outcome", wait.as_secs()))
            }
        }
    }

    /// The ACME service: issues, renews and retries until shutdown. Returns at once when ACME
    /// is off.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let Some(s) = self.acme.clone() else { return };
        if self.resolver.current().source == Source::SelfSigned {
            warn!(domain = %s.domain, "ACME is on but no certificate is issued yet: serving the self-signed certificate (browsers warn) until one is");
        }
        let http = client::AcmeHttp::new(s.ca_roots.as_deref());
        loop {
            let now = self.clock.now();
            let at = schedule::next_attempt(now, &self.facts(), &s.policy);
            if at > now {
                let wait = Duration::from_secs(at - now).min(MAX_SLEEP);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = self.renew.notified() => info!("ACME renewal asked for"),
                    _ = shutdown.recv() => return,
                }
            }
            self.done.send_modify(|d| d.1 = true);
            let outcome = tokio::select! {
                r = tokio::time::timeout(ISSUE_TIMEOUT, self.attempt(&s, &http)) => match r {
                    Ok(r) => r,
                    Err(_) => Err(format!("no certificate within {}s", ISSUE_TIMEOUT.as_secs())),
                },
                _ = shutdown.recv() => return,
            };
            self.record(&s, outcome);
        }
    }

    async fn attempt(&self, s: &Settings, http: &Result<client::AcmeHttp, String>) -> Result<(u64, u64), String> {
        let http = http.as_ref().map_err(Clone::clone)?;
        info!(domain = %s.domain, directory = %s.directory, challenge = s.challenge.as_str(), "requesting a certificate over ACME");
        let pem = order::issue(
            s,
            http,
            &self.data_dir.join(ACCOUNT_FILE),
            self.key_pem.expose(),
            &self.tokens,
            &self.resolver,
        )
        .await
        .map_err(|e| e.to_string())?;
        let (chain, validity) = check_chain(pem.as_bytes(), &self.pin, &s.domain, self.clock.now())
            .map_err(|e| format!("the CA's certificate is refused: {e}"))?;
        write_atomic(&self.data_dir.join(CERT_FILE), pem.as_bytes(), 0o644).map_err(|e| e.to_string())?;
        let ck = crate::tls::certified_key(chain, self.key.clone_key()).map_err(|e| e.to_string())?;
        self.resolver.swap(ck, Source::Acme);
        Ok(validity)
    }

    /// Keeps an attempt's outcome (memory, `acme/state.json`, metrics, log).
    fn record(&self, s: &Settings, outcome: Result<(u64, u64), String>) {
        let now = self.clock.now();
        let snapshot = {
            let mut a = crate::sync::lock(&self.attempts);
            a.attempts += 1;
            a.last_attempt_at = Some(now);
            match &outcome {
                Ok(_) => {
                    a.failures = 0;
                    a.last_success_at = Some(now);
                    a.last_error = None;
                }
                Err(e) => {
                    a.failures = a.failures.saturating_add(1);
                    a.last_error = Some(e.clone());
                }
            }
            a.clone()
        };
        let acme_served = self.resolver.current().source == Source::Acme;
        self.metrics.observe(&self.resolver);
        match &outcome {
            Ok((_, na)) => {
                let renew =
                    schedule::renew_at(self.acme_validity().map_or(now, |v| v.0), *na, s.policy.renew_before_days);
                info!(domain = %s.domain, expires = %crate::units::rfc3339(*na), renews = %crate::units::rfc3339(renew),
                    "ACME certificate issued and served (same key: the pin is unchanged)");
            }
            Err(e) => {
                self.metrics.failures.inc();
                let retry = schedule::retry_delay(snapshot.failures, s.policy.retry_secs, s.policy.retry_max_secs);
                let serving = if acme_served { "the previous ACME certificate" } else { "the SELF-SIGNED certificate" };
                warn!(domain = %s.domain, error = %e, failures = snapshot.failures, retry_in_secs = retry,
                    "ACME issuance failed; serving {serving}");
            }
        }
        match serde_json::to_vec_pretty(&snapshot) {
            Ok(json) => {
                if let Err(e) = write_atomic(&self.data_dir.join(STATE_FILE), &json, 0o600) {
                    warn!(error = %e, "cannot keep the ACME state");
                }
            }
            Err(e) => warn!(error = %e, "cannot keep the ACME state"),
        }
        self.done.send_modify(|d| *d = (d.0 + 1, false));
    }

    /// The self-signed certificate (served while ACME has nothing better).
    pub fn self_signed(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.self_signed.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const DOMAIN: &str = "proxy.example.com";
    const DAY: u64 = 86_400;

    struct FakeClock(AtomicU64);
    impl Clock for FakeClock {
        fn now(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// A data directory as `init` leaves it, with ACME on for `DOMAIN`.
    fn data_dir() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let g = crate::tls::generate_self_signed(&["localhost".into()]).unwrap();
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        std::fs::write(dir.path().join("tls/cert.pem"), &g.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls/key.pem"), &g.key_pem).unwrap();
        let text = format!(
            "[server]\npublic_address='{DOMAIN}:443'\n[tls]\nacme_domain='{DOMAIN}'\nacme_contact='ops@example.com'\n"
        );
        let cfg = Config::from_str_with_env(&text, Path::new("t.toml"), dir.path(), std::iter::empty()).unwrap();
        (dir, cfg)
    }

    /// A CA-signed chain (leaf, CA) for `names` and the key in `key_pem`, valid `from..until`.
    fn issued(key_pem: &str, names: &[&str], from: u64, until: u64) -> String {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "Test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
        let mut leaf =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        let (y, m, d) = day_of(from);
        leaf.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = day_of(until);
        leaf.not_after = rcgen::date_time_ymd(y, m, d);
        let leaf = leaf.signed_by(&key, &rcgen::Issuer::from_params(&ca, &ca_key)).unwrap();
        format!("{}{}", leaf.pem(), ca_cert.pem())
    }

    /// Midnight of `t` (which the tests keep at midnight) as rcgen takes it.
    fn day_of(t: u64) -> (i32, u8, u8) {
        let d = crate::units::rfc3339(t);
        let ymd: Vec<i32> = d[..10].split('-').map(|p| p.parse().unwrap()).collect();
        (ymd[0], ymd[1] as u8, ymd[2] as u8)
    }

    #[test]
    fn a_stored_certificate_is_served_only_for_the_same_key_and_domain_and_renewal_follows_the_clock() {
        let (dir, cfg) = data_dir();
        let key_pem = std::fs::read_to_string(dir.path().join("tls/key.pem")).unwrap();
        let t0 = 1_900_000_000 / DAY * DAY;
        let clock = Arc::new(FakeClock(AtomicU64::new(t0)));
        let load = || Certificates::load(&cfg, clock.clone()).unwrap();

        // Nothing stored: self-signed, and an attempt is due at once.
        let certs = load();
        let v = certs.view();
        assert_eq!(v.source, "self_signed");
        let self_signed_until = crate::tls::validity_of_cert(certs.resolver.current().key.cert[0].as_ref()).unwrap().1;
        assert_eq!(certs.metrics().cert_expiry.get(), self_signed_until as i64, "the metric follows what is served");
        assert_eq!(certs.metrics().acme_served.get(), 0);
        assert_eq!(v.acme.unwrap().next_attempt_at, Some(crate::units::rfc3339(t0)));

        // Another key's certificate would change the pin: refused.
        let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
        std::fs::write(dir.path().join(CERT_FILE), issued(&other, &[DOMAIN], t0 - DAY, t0 + 90 * DAY)).unwrap();
        assert_eq!(load().view().source, "self_signed");
        // Another name, or an expired one: refused.
        std::fs::write(dir.path().join(CERT_FILE), issued(&key_pem, &["other.example.com"], t0 - DAY, t0 + 90 * DAY))
            .unwrap();
        assert_eq!(load().view().source, "self_signed");
        std::fs::write(dir.path().join(CERT_FILE), issued(&key_pem, &[DOMAIN], t0 - 90 * DAY, t0 - DAY)).unwrap();
        assert_eq!(load().view().source, "self_signed");

        // Ours: served, with the pin unchanged, renewed 30 days before its end.
        std::fs::write(dir.path().join(CERT_FILE), issued(&key_pem, &[DOMAIN], t0, t0 + 90 * DAY)).unwrap();
        let certs = load();
        let v = certs.view();
        assert_eq!(
            (v.source.as_str(), v.issuer.as_str(), v.dns_names.clone()),
            ("acme", "Test CA", vec![DOMAIN.into()])
        );
        assert_eq!(v.pin, crate::app::configured_pin(&cfg).unwrap(), "the pin is the key's");
        assert_eq!(certs.metrics().cert_expiry.get(), (t0 + 90 * DAY) as i64, "the metric follows what is served");
        assert_eq!(certs.metrics().acme_served.get(), 1);
        let renew_at = t0 + 60 * DAY;
        assert_eq!(v.acme.unwrap().renew_at, Some(crate::units::rfc3339(renew_at)));
        let due = |c: &Certificates| {
            schedule::next_attempt(clock.now(), &c.facts(), &c.acme.as_ref().unwrap().policy) <= clock.now()
        };
        assert!(!due(&certs));
        clock.0.store(renew_at - 1, Ordering::Relaxed);
        assert!(!due(&certs));
        clock.0.store(renew_at, Ordering::Relaxed);
        assert!(due(&certs), "the fake clock reached the renewal window");
    }

    #[test]
    fn the_csr_carries_the_appliance_key() {
        let g = crate::tls::generate_self_signed(&["localhost".into()]).unwrap();
        let der = csr_der(DOMAIN, &g.key_pem).unwrap();
        use rcgen::PublicKeyData;
        let spki = rcgen::KeyPair::from_pem(&g.key_pem).unwrap().subject_public_key_info();
        assert!(der.windows(spki.len()).any(|w| w == spki), "the CSR holds the appliance's public key");
        assert!(der.windows(DOMAIN.len()).any(|w| w == DOMAIN.as_bytes()), "and names the domain");
    }
}
