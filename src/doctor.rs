//! `traffix doctor`: checks that a data directory can serve, and says how to fix what cannot.
//!
//! Checks, in order: the config parses; `public_address` is HOST:PORT and resolves; the listen
//! ports are free or held by this data directory's running server; the certificate and key load,
//! match, and are valid (a warning under 30 days left); ACME's state when it is on (a warning
//! while the self-signed certificate is served or renewals fail); the database opens and its ledger
//! verifies; the GeoIP databases open and are not stale (missing ones, and a failed last update,
//! are warnings naming `traffix geoip update`); the device trust files load (`[trust] roots`,
//! `revocation_list`; requiring `hardware` without a signing digest is a warning); the clock is
//! after this build and not absurdly
//! ahead; the data directory is 0700 and the key, JWT secret and database 0600, all with one
//! owner; and, when a server runs, its admin socket answers.
//!
//! It changes nothing: a database with an older schema is reported (it is upgraded, after a
//! copy, at the next start), not migrated. Exit codes: 0 healthy, 1 a problem, 2 warnings only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::admin::{self, AdminCtx};
use crate::app;
use crate::config::Config;
use crate::store::Store;

/// How long resolving `public_address` may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Below this many days of validity left, the certificate is a warning.
const CERT_WARN_DAYS: u64 = 30;
/// A clock further than this past the build is taken as wrong (a dead RTC battery reads 2106,
/// a mistyped year 2205).
const CLOCK_AHEAD_LIMIT_SECS: u64 = 20 * 365 * 86_400;
/// The build time, written by build.rs (seconds since the epoch).
const BUILD_TIME: &str = env!("TRAFFIX_BUILD_TIME");

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warning,
    Problem,
}

/// One check's outcome: what was checked, what was found, and the fix when it is not ok.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

/// Every check, and the counts.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub problems: usize,
    pub warnings: usize,
    pub checks: Vec<Check>,
}

impl Report {
    /// 0: healthy; 1: at least one problem; 2: warnings only.
    pub fn exit_code(&self) -> i32 {
        match (self.problems, self.warnings) {
            (0, 0) => 0,
            (0, _) => 2,
            _ => 1,
        }
    }
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn ok(&mut self, check: &'static str, message: impl Into<String>) {
        self.0.push(Check { check, status: Status::Ok, message: message.into(), fix: None });
    }
    fn warn(&mut self, check: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Check { check, status: Status::Warning, message: message.into(), fix: Some(fix.into()) });
    }
    fn problem(&mut self, check: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Check { check, status: Status::Problem, message: message.into(), fix: Some(fix.into()) });
    }
}

/// Runs every check on `data_dir`.
pub async fn run(data_dir: &Path, config: Option<&Path>) -> Report {
    let mut c = Checks::default();
    let cfg = match app::load_config(data_dir, config) {
        Ok(cfg) => {
            c.ok("config", format!("{} parses", cfg.config_path.display()));
            Some(cfg)
        }
        Err(e) => {
            let fix = if data_dir.join(crate::config::CONFIG_FILE).exists() || config.is_some() {
                "correct the file (`traffix config example` shows every key with its default)".to_owned()
            } else {
                format!("run `traffix init --data-dir {} --public-address HOST:PORT`", data_dir.display())
            };
            c.problem("config", e.to_string(), fix);
            None
        }
    };
    let running = server_running(data_dir).await;
    if let Some(cfg) = &cfg {
        public_address(&mut c, cfg).await;
        ports(&mut c, cfg, running.is_some());
        certificate(&mut c, cfg);
        acme(&mut c, cfg);
        geoip(&mut c, cfg, crate::store::now_secs());
        trust(&mut c, cfg);
    }
    database(&mut c, data_dir, cfg.as_ref(), running.is_some()).await;
    clock(&mut c, crate::store::now_secs());
    permissions(&mut c, data_dir, cfg.as_ref());
    match running {
        Some(Ok(pid)) => c.ok("server", format!("running{}; its admin socket answers", pid_text(pid))),
        Some(Err((pid, e))) => c.problem(
            "server",
            format!("a server runs{} but its admin socket does not answer: {e}", pid_text(pid)),
            "restart it (systemctl restart traffix); admin commands cannot reach it meanwhile",
        ),
        None => c.ok("server", "not running (checked the stopped data directory)"),
    }
    let problems = c.0.iter().filter(|x| x.status == Status::Problem).count();
    let warnings = c.0.iter().filter(|x| x.status == Status::Warning).count();
    Report { ok: problems == 0 && warnings == 0, problems, warnings, checks: c.0 }
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// Whether a server runs on `data_dir`: `Some(Ok(pid))` when its admin socket answers,
/// `Some(Err(_))` when a process holds it but the socket does not answer.
async fn server_running(data_dir: &Path) -> Option<Result<Option<u32>, (Option<u32>, String)>> {
    let pid = admin::backup::running_pid(data_dir);
    match admin::socket::call(data_dir, &admin::SettingsShow {}).await {
        Ok(Some(_)) => Some(Ok(pid)),
        Ok(None) if pid.is_some() || Store::in_use(&data_dir.join(app::DB_FILE)) => {
            Some(Err((pid, "no admin socket".into())))
        }
        Ok(None) => None,
        Err(e) => Some(Err((pid, e))),
    }
}

async fn public_address(c: &mut Checks, cfg: &Config) {
    let addr = &cfg.server.public_address;
    if addr.is_empty() {
        c.warn(
            "public_address",
            "no public address: the server runs with pairing off",
            format!(
                "set server.public_address = \"HOST:PORT\" in {} to the web listener as seen from the internet, \
                 then restart the server",
                cfg.config_path.display()
            ),
        );
        return;
    }
    if let Err(e) = crate::units::check_host_port(addr) {
        c.problem(
            "public_address",
            format!("server.public_address {addr:?} {e}"),
            "set server.public_address in traffix.toml to the HOST:PORT nodes dial (the web listener as seen from the internet)",
        );
        return;
    }
    let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(addr.as_str())).await;
    match resolved.map(|r| r.map(|mut addrs| addrs.next())) {
        Ok(Ok(Some(_))) => c.ok("public_address", format!("{addr} resolves; nodes are told to dial it")),
        Ok(Ok(None)) => c.problem(
            "public_address",
            format!("{addr} resolves to no address"),
            "publish a DNS record for it, or use the server's public IP",
        ),
        Ok(Err(e)) => c.problem(
            "public_address",
            format!("{addr} does not resolve: {e}"),
            "publish a DNS record for it, or set server.public_address to the server's public IP and port",
        ),
        Err(_) => c.problem(
            "public_address",
            format!("resolving {addr} took longer than {} s", RESOLVE_TIMEOUT.as_secs()),
            "check the resolver (/etc/resolv.conf), or use the server's public IP",
        ),
    }
}

fn ports(c: &mut Checks, cfg: &Config, running: bool) {
    let s = &cfg.server;
    for (key, addr) in [
        ("web_listen", s.web_listen),
        ("socks_listen", s.socks_listen),
        ("http_listen", s.http_listen),
        ("metrics_listen", s.metrics_listen),
    ] {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                drop(l);
                if running {
                    c.warn(
                        "ports",
                        format!("{key} {addr} is free although the server runs"),
                        "the running server uses another config: restart it to apply this one",
                    );
                } else {
                    c.ok("ports", format!("{key} {addr} is free"));
                }
            }
            Err(_) if running => c.ok("ports", format!("{key} {addr} is held by this data directory's server")),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => c.problem(
                "ports",
                format!("{key} {addr}: not allowed to bind ({e})"),
                "grant CAP_NET_BIND_SERVICE (a drop-in for traffix.service: docs/operations.md) or choose a port above 1023",
            ),
            Err(e) => c.problem(
                "ports",
                format!("{key} {addr} is taken by another process ({e})"),
                format!(
                    "stop what listens there (`ss -ltnp 'sport = :{}'` names it) or change server.{key}",
                    addr.port()
                ),
            ),
        }
    }
}

fn certificate(c: &mut Checks, cfg: &Config) {
    let (cert_path, key_path) = (cfg.path(&cfg.tls.cert), cfg.path(&cfg.tls.key));
    let regenerate = "restore tls/ from a backup (nodes pin this key: a new one means re-pairing them all), or point tls.cert and tls.key at the right files";
    let (certs, key) = match crate::tls::load_cert_and_key(&cert_path, &key_path) {
        Ok(v) => v,
        Err(e) => return c.problem("certificate", e.to_string(), regenerate),
    };
    let Some(first) = certs.first() else { return c.problem("certificate", "no certificate", regenerate) };
    let pin = crate::tls::pin_of_cert(first).unwrap_or_default();
    if let Err(e) = crate::tls::server_config(certs.clone(), key) {
        return c.problem("certificate", format!("the key does not go with the certificate: {e}"), regenerate);
    }
    match crate::tls::validity_of_cert(first) {
        Err(e) => c.problem("certificate", format!("{}: {e}", cert_path.display()), regenerate),
        Ok((from, until)) => {
            let now = crate::store::now_secs();
            let expires = crate::units::rfc3339(until);
            if now < from {
                c.problem(
                    "certificate",
                    format!("not valid before {} (is the clock right?)", crate::units::rfc3339(from)),
                    "check the clock (timedatectl), or use a certificate valid now",
                );
            } else if now > until {
                c.problem(
                    "certificate",
                    format!("expired at {expires}"),
                    "renew it with the same key (nodes pin the key, not the certificate) and restart",
                );
            } else if until - now < CERT_WARN_DAYS * 86_400 {
                c.warn(
                    "certificate",
                    format!("expires at {expires}, in {} days", (until - now) / 86_400),
                    "renew it with the same key (nodes pin the key, not the certificate) and restart",
                );
            } else {
                c.ok("certificate", format!("valid until {expires}; pin {pin}"));
            }
        }
    }
}

/// ACME's state, from the files the server keeps (`crate::acme`): which certificate a start
/// would serve, and the last attempt.
fn acme(c: &mut Checks, cfg: &Config) {
    if !cfg.tls.acme_enabled() {
        return c.ok("acme", "off: the self-signed certificate is served (tls.acme_domain gets one browsers trust)");
    }
    let certs = match crate::acme::Certificates::load(cfg, std::sync::Arc::new(crate::acme::schedule::SystemClock)) {
        Ok(certs) => certs,
        Err(e) => return c.problem("acme", e, "fix the certificate check above first"),
    };
    let v = certs.view();
    let Some(a) = v.acme else { return };
    let reach = match certs.acme().map(|s| s.challenge) {
        Some(crate::config::Challenge::Http01) => "port 80 reaches tls.acme_http_listen",
        _ => "port 443 reaches the web listener",
    };
    let fix = format!(
        "check that {} resolves to this server and {reach}, then run `traffix tls renew` (the server also retries by itself)",
        a.domain
    );
    let last = a
        .last_error
        .map(|e| format!("; last attempt {}: {e}", a.last_attempt_at.unwrap_or_default()))
        .unwrap_or_default();
    match (v.source.as_str(), a.failures) {
        ("acme", 0) => c.ok(
            "acme",
            format!(
                "certificate for {} from {}, valid until {}; renewed from {}",
                a.domain,
                v.issuer,
                v.not_after,
                a.renew_at.unwrap_or_default()
            ),
        ),
        ("acme", n) => c.warn(
            "acme",
            format!("certificate for {} valid until {}, but {n} renewal attempts failed{last}", a.domain, v.not_after),
            fix,
        ),
        _ => c.warn(
            "acme",
            format!("no ACME certificate for {} yet: the self-signed one is served{last}", a.domain),
            fix,
        ),
    }
}

/// What brings the GeoIP databases up to date, as the config stands.
/// Device trust (docs/trust.md): the root set and status list load; requiring `hardware` without
/// a signing digest lets any app on a real phone reach it (a warning).
fn trust(c: &mut Checks, cfg: &Config) {
    let t = &cfg.trust;
    match crate::trust::gate::TrustGate::new(t, &cfg.data_dir).and_then(|g| g.policy()) {
        Err(e) => c.problem(
            "trust",
            e.to_string(),
            "fix the file or empty the key in [trust] (roots = \"\" uses Google's bundled roots; \
             revocation_list = \"\" skips revocation): docs/trust.md",
        ),
        Ok(p) => {
            let roots = if t.roots.is_empty() { "Google's bundled roots".to_owned() } else { t.roots.clone() };
            let list = if t.revocation_list.is_empty() {
                "no revocation list".to_owned()
            } else {
                format!("{} revoked or suspended serials", p.revoked.len())
            };
            if t.require == crate::identity::TrustLevel::Hardware && t.signing_digests.is_empty() {
                c.warn(
                    "trust",
                    "trust.require = \"hardware\" but trust.signing_digests is empty: any app on a real phone can pair",
                    "add the SHA-256 of your APK's signing certificate (`apksigner verify --print-certs`) to \
                     trust.signing_digests",
                );
            } else {
                c.ok("trust", format!("require {}; {} ({} keys); {list}", t.require, roots, p.root_keys.len()));
            }
        }
    }
}

fn geoip_update_fix(cfg: &Config) -> String {
    use crate::config::GeoipSource;
    match cfg.geoip.source {
        GeoipSource::Off => "set geoip.source = \"dbip\" (free, no account) or \"maxmind\" in traffix.toml, then run \
                             `traffix geoip update`"
            .to_owned(),
        GeoipSource::Maxmind if cfg.geoip.maxmind_license_key.is_empty() => {
            "set geoip.maxmind_license_key (or geoip.source = \"dbip\"), then run `traffix geoip update`".to_owned()
        }
        _ => "run `traffix geoip update` (the package's traffix-geoip.timer runs it weekly: \
              systemctl enable --now traffix-geoip.timer)"
            .to_owned(),
    }
}

fn geoip(c: &mut Checks, cfg: &Config, now: u64) {
    use crate::geoip::Kind;
    let (g, problems) = crate::geoip::SharedGeoIp::open(cfg);
    let dbs = g.databases();
    let stale_days = u64::from(cfg.geoip.stale_after_days);
    for kind in Kind::ALL {
        let (path, configured) = crate::geoip::db_path(cfg, kind);
        let key = kind.key();
        if let Some((_, _, e)) = problems.iter().find(|(k, ..)| *k == kind) {
            if configured {
                c.problem(
                    "geoip",
                    format!("{key}: {e}"),
                    format!(
                        "put a MaxMind-format database at {}, or empty {key} to use the one `traffix geoip update` keeps",
                        path.display()
                    ),
                );
            } else {
                c.problem(
                    "geoip",
                    format!("the {kind} database does not open: {e}"),
                    "run `traffix geoip update --force`",
                );
            }
            continue;
        }
        let Some(l) = dbs.get(kind) else {
            if cfg.geoip.source == crate::config::GeoipSource::Off {
                c.ok("geoip", format!("no {kind} database (geoip.source is \"off\")"));
            } else {
                let what = match kind {
                    Kind::Country => ": nodes have no country and -country- targeting is refused",
                    Kind::Asn => ": the networks of nodes are unknown",
                };
                c.warn("geoip", format!("no {kind} database yet{what}"), geoip_update_fix(cfg));
            }
            continue;
        };
        let built = l.db.build_epoch();
        let age = now.saturating_sub(built) / 86_400;
        let date = crate::units::rfc3339(built);
        let date = date.get(..10).unwrap_or(&date);
        let about = format!("the {kind} database {} ({}, built {date})", path.display(), l.db.database_type());
        if age > stale_days {
            let fix = if configured {
                format!("replace {} with a current copy, or empty {key} and run `traffix geoip update`", path.display())
            } else {
                geoip_update_fix(cfg)
            };
            c.warn("geoip", format!("{about} is {age} days old (geoip.stale_after_days = {stale_days})"), fix);
        } else {
            c.ok("geoip", format!("{about} opens"));
        }
    }
    let state = crate::geoip::update::State::read(&cfg.data_dir);
    if let Some(e) = state.last_error {
        let when = state.checked_at.map(crate::units::rfc3339).unwrap_or_default();
        c.warn(
            "geoip",
            format!("the last `traffix geoip update` ({when}) failed: {e}"),
            "fix what it names, then run `traffix geoip update`",
        );
    }
}

async fn database(c: &mut Checks, data_dir: &Path, cfg: Option<&Config>, running: bool) {
    let verify_fix =
        "restore the last good backup (`traffix restore FILE --data-dir NEW`); keep this database for inspection";
    let report = if running {
        match admin::socket::call(data_dir, &admin::LedgerVerify {}).await {
            Ok(Some(Ok(r))) => r,
            Ok(Some(Err(e))) => {
                return c.problem("database", format!("ledger verify failed: {}", e.reason), verify_fix);
            }
            Ok(None) | Err(_) => return, // the server check reports the socket
        }
    } else {
        let path = data_dir.join(app::DB_FILE);
        let (store, found) = match Store::open_unmigrated(&path) {
            Ok(v) => v,
            Err(crate::store::StoreError::NotFound(_)) => {
                return c.problem(
                    "database",
                    format!("{} is missing", path.display()),
                    "restore it from a backup (`traffix restore`), or `traffix init` a new data directory",
                );
            }
            Err(e) => return c.problem("database", format!("{} does not open: {e}", path.display()), verify_fix),
        };
        let last = crate::store::migrations::LAST_SCHEMA_VERSION;
        if found < last {
            return c.warn(
                "database",
                format!("schema v{found}; this build upgrades it to v{last} at the next start"),
                "nothing to do: a copy is taken into backups/ before the upgrade (take a `traffix backup` too)",
            );
        }
        let mut cfg = cfg.cloned();
        if let Some(cfg) = cfg.as_mut()
            && let Err(e) = app::apply_settings(cfg, &store)
        {
            return c.problem("database", e.to_string(), verify_fix);
        }
        let money = cfg.as_ref().map(admin::MoneyRules::from_config).unwrap_or_default();
        let ctx = AdminCtx {
            store: std::sync::Arc::new(store),
            public_address: String::new(),
            pin: String::new(),
            insecure_http: false,
            live: None,
            money: money.shared(),
            shared_key_accounts: crate::config::TrustConfig::default().shared_key_accounts,
        };
        match tokio::task::spawn_blocking(move || ctx.execute(admin::LedgerVerify {})).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return c.problem("database", format!("ledger verify failed: {}", e.reason), verify_fix),
            Err(e) => return c.problem("database", e.to_string(), verify_fix),
        }
    };
    if report.ok {
        c.ok(
            "database",
            format!("opens; ledger verifies ({} transfers over {} accounts)", report.transfers, report.accounts),
        );
    } else {
        c.problem("database", format!("ledger verify: {}", report.problems.join("; ")), verify_fix);
    }
}

fn clock(c: &mut Checks, now: u64) {
    let built: u64 = BUILD_TIME.parse().unwrap_or(0);
    let check = clock_sanity(now, built);
    match check {
        Ok(()) => c.ok("clock", format!("{} (after this build)", crate::units::rfc3339(now))),
        Err(m) => c.problem(
            "clock",
            m,
            "set the time (timedatectl set-ntp true); tokens, pairing codes and billing depend on it",
        ),
    }
}

/// The system time is after the build and not absurdly far beyond it.
fn clock_sanity(now: u64, built: u64) -> Result<(), String> {
    if now < built {
        return Err(format!(
            "the system time {} is before this program was built ({})",
            crate::units::rfc3339(now),
            crate::units::rfc3339(built)
        ));
    }
    if now - built > CLOCK_AHEAD_LIMIT_SECS {
        return Err(format!(
            "the system time {} is more than 20 years after this program was built ({})",
            crate::units::rfc3339(now),
            crate::units::rfc3339(built)
        ));
    }
    Ok(())
}

fn permissions(c: &mut Checks, data_dir: &Path, cfg: Option<&Config>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let Ok(dir) = std::fs::metadata(data_dir) else {
            return c.problem(
                "permissions",
                format!("{} does not exist", data_dir.display()),
                "run `traffix init` or `traffix restore`",
            );
        };
        let owner = dir.uid();
        let mut bad = 0;
        let mut check = |path: &Path, want: u32, what: &str| {
            let Ok(m) = std::fs::metadata(path) else { return };
            let mode = m.mode() & 0o777;
            if mode & 0o077 != 0 {
                bad += 1;
                c.problem(
                    "permissions",
                    format!("{what} {} is mode {mode:o}: others can read it", path.display()),
                    format!("chmod {want:o} {}", path.display()),
                );
            }
            if m.uid() != owner {
                bad += 1;
                c.problem(
                    "permissions",
                    format!("{what} {} is owned by uid {}, the data directory by uid {owner}", path.display(), m.uid()),
                    format!("chown {owner} {}", path.display()),
                );
            }
        };
        check(data_dir, 0o700, "the data directory");
        let key: PathBuf = cfg.map(|c| c.path(&c.tls.key)).unwrap_or_else(|| data_dir.join(admin::backup::KEY));
        check(&key, 0o600, "the TLS key");
        check(&data_dir.join(app::JWT_SECRET_FILE), 0o600, "the JWT secret");
        check(&data_dir.join(app::DB_FILE), 0o600, "the database");
        check(&admin::socket::socket_path(data_dir), 0o600, "the admin socket");
        check(&data_dir.join(admin::backup::BACKUPS_DIR), 0o700, "the backups folder");
        if bad == 0 {
            c.ok("permissions", "the data directory is 0700; key, JWT secret and database 0600, one owner");
        }
    }
    #[cfg(not(unix))]
    let _ = (data_dir, cfg, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_must_be_after_the_build_and_not_decades_beyond() {
        let built = 1_780_000_000;
        assert!(clock_sanity(built + 60, built).is_ok());
        assert!(clock_sanity(built - 1, built).unwrap_err().contains("before this program was built"));
        assert!(clock_sanity(built + CLOCK_AHEAD_LIMIT_SECS + 1, built).unwrap_err().contains("20 years"));
        assert!(BUILD_TIME.parse::<u64>().is_ok_and(|t| t > 1_700_000_000), "{BUILD_TIME}");
    }

    #[test]
    fn trust_files_are_checked_and_hardware_without_a_signer_warns() {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = |extra: &[(&str, &str)]| {
            let env = extra.iter().map(|(k, v)| (format!("TRAFFIX_TRUST__{k}"), (*v).to_owned()));
            Config::from_str_with_env(crate::config::EXAMPLE, Path::new("t.toml"), dir.path(), env).expect("config")
        };
        let run = |cfg: &Config| {
            let mut c = Checks::default();
            trust(&mut c, cfg);
            c.0.pop().expect("one check")
        };
        let ok = run(&cfg(&[]));
        assert_eq!(ok.status, Status::Ok, "{}", ok.message);
        assert!(ok.message.contains("Google's bundled roots (2 keys)"), "{}", ok.message);
        let missing = run(&cfg(&[("REVOCATION_LIST", "status.json")]));
        assert_eq!(missing.status, Status::Problem);
        assert!(missing.message.contains("status.json"), "{}", missing.message);
        std::fs::write(dir.path().join("status.json"), r#"{"entries": {"0a": {"status": "REVOKED"}}}"#).expect("write");
        assert!(run(&cfg(&[("REVOCATION_LIST", "status.json")])).message.contains("1 revoked or suspended serials"));
        assert_eq!(run(&cfg(&[("REQUIRE", "hardware")])).status, Status::Warning);
        let digest = "[\"".to_owned() + &"ab".repeat(32) + "\"]";
        assert_eq!(run(&cfg(&[("REQUIRE", "hardware"), ("SIGNING_DIGESTS", &digest)])).status, Status::Ok);
    }

    #[test]
    fn exit_codes_tell_problems_from_warnings() {
        let r = |problems, warnings| Report { ok: false, problems, warnings, checks: vec![] };
        assert_eq!(r(0, 0).exit_code(), 0);
        assert_eq!(r(0, 3).exit_code(), 2);
        assert_eq!(r(1, 3).exit_code(), 1);
    }
}
