//! `traffix geoip update`: fetch the country and ASN databases from the configured source,
//! verify them, and install them in `geoip/` of the data directory.
//!
//! Sources and what is checked:
//! - DB-IP Lite (`dbip`): `{dbip_url}/dbip-country-lite-YYYY-MM.mmdb.gz` and `dbip-asn-lite-…`,
//!   this month's file, or last month's while this month's is not published (HTTP 404). No
//!   checksum is published; the file must unpack and verify.
//! - MaxMind GeoLite2 (`maxmind`): `{maxmind_url}/app/geoip_download?edition_id=E&license_key=K
//!   &suffix=tar.gz` (or, with an account id, `/geoip/databases/E/download?suffix=tar.gz` with
//!   HTTP Basic), a tar.gz holding `E_YYYYMMDD/E.mmdb`; its `suffix=tar.gz.sha256` twin gives
//!   `HEX  E_YYYYMMDD.tar.gz`, which the archive must match.
//!
//! Every database must then open as a MaxMind DB, verify, be of the right type and answer a
//! lookup ([`GeoIp::check`]) before it is written: to a temporary file (0600), synced, renamed
//! over the old one, the folder synced. A failure at any step leaves the old database in place
//! and is reported by name; a file already current is not downloaded again (unless forced).
//! `geoip/state.json` records what was installed and when, for the dashboard and `doctor`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fetch::{Client, FetchError, Request};
use super::{DIR, GeoIp, Kind, archive};
use crate::config::{Config, GeoipSource};

/// The record of updates, in [`DIR`].
pub const STATE_FILE: &str = "state.json";
/// Held (flock) while an update runs: two at once would race for the same files.
const LOCK_FILE: &str = ".lock";
/// The largest checksum file read.
const MAX_CHECKSUM_BYTES: u64 = 4096;

/// What the last updates did (`geoip/state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub source: Option<String>,
    /// The last run, Unix seconds.
    pub checked_at: Option<u64>,
    /// The last run that left every database current.
    pub updated_at: Option<u64>,
    /// Why the last run failed, if it did.
    pub last_error: Option<String>,
    pub country: Option<Installed>,
    pub asn: Option<Installed>,
}

/// One installed download.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Installed {
    /// The remote file it came from (`dbip-country-lite-2026-05.mmdb.gz`,
    /// `GeoLite2-Country_20260512.tar.gz`): the same name again is the same data.
    pub origin: String,
    /// SHA-256 of the installed `.mmdb`.
    pub sha256: String,
    pub installed_at: u64,
}

impl State {
    /// The state of a data directory; none yet (or unreadable) reads as empty.
    pub fn read(data_dir: &Path) -> State {
        std::fs::read(data_dir.join(DIR).join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn installed(&self, kind: Kind) -> Option<&Installed> {
        match kind {
            Kind::Country => self.country.as_ref(),
            Kind::Asn => self.asn.as_ref(),
        }
    }

    fn set_installed(&mut self, kind: Kind, i: Installed) {
        match kind {
            Kind::Country => self.country = Some(i),
            Kind::Asn => self.asn = Some(i),
        }
    }
}

/// What became of one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// A new database was verified and installed.
    Installed { origin: String, path: String, database_type: String, built_at: String },
    /// The installed database is the newest the source has.
    Current { origin: String },
    /// Nothing changed: the old database (if any) stays.
    Failed { error: String },
}

/// One database's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbOutcome {
    pub database: Kind,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Something the operator should know (the config names another file, so the server keeps
    /// using that one).
    pub note: Option<String>,
}

/// What `traffix geoip update` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub source: String,
    pub databases: Vec<DbOutcome>,
    /// Why nothing was attempted (`geoip.source = "off"`).
    pub skipped: Option<String>,
}

impl Report {
    /// Every database is installed or current.
    pub fn ok(&self) -> bool {
        self.databases.iter().all(|d| !matches!(d.outcome, Outcome::Failed { .. }))
    }

    /// Some database was installed (a running server should reload).
    pub fn installed_any(&self) -> bool {
        self.databases.iter().any(|d| matches!(d.outcome, Outcome::Installed { .. }))
    }
}

/// Why an update could not start at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Updates the databases of `cfg` as its `[geoip]` says. `now` (Unix seconds) picks DB-IP's
/// month and dates the state; `force` downloads even what is current.
pub async fn run(cfg: &Config, now: u64, force: bool) -> Result<Report, StartError> {
    let g = &cfg.geoip;
    let source = g.source;
    if source == GeoipSource::Off {
        return Ok(Report {
            source: source.name().into(),
            databases: Vec::new(),
            skipped: Some("geoip.source is \"off\": nothing to download (set it to \"dbip\" or \"maxmind\")".into()),
        });
    }
    if source == GeoipSource::Maxmind && g.maxmind_license_key.is_empty() {
        return Err(StartError(
            "geoip.source is \"maxmind\" but geoip.maxmind_license_key is empty: put the licence key of your \
             MaxMind account in traffix.toml (or TRAFFIX_GEOIP__MAXMIND_LICENSE_KEY), or use source = \"dbip\""
                .into(),
        ));
    }
    let dir = cfg.data_dir.join(DIR);
    let owner = data_dir_owner(&cfg.data_dir);
    create_private_dir(&dir, owner).map_err(|e| StartError(format!("cannot create {}: {e}", dir.display())))?;
    let _lock = lock(&dir, owner)?;
    let client = Client::new(Duration::from_secs(g.download_timeout_secs)).map_err(StartError)?;
    let mut state = State::read(&cfg.data_dir);
    let mut report = Report { source: source.name().into(), databases: Vec::new(), skipped: None };
    for kind in Kind::ALL {
        let installed = state.installed(kind).filter(|_| !force && super::managed_path(&cfg.data_dir, kind).exists());
        let got = match source {
            GeoipSource::Dbip => dbip(cfg, &client, kind, now, installed.map(|i| i.origin.as_str())).await,
            _ => maxmind(cfg, &client, kind, installed.map(|i| i.origin.as_str())).await,
        };
        let outcome = match got {
            Ok(Got::Current(origin)) => Outcome::Current { origin },
            Ok(Got::New { origin, mmdb }) => match install(&dir, kind, &mmdb, owner) {
                Ok(path) => {
                    let db = GeoIp::from_bytes(mmdb.clone()).ok();
                    state.set_installed(
                        kind,
                        Installed {
                            origin: origin.clone(),
                            sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &mmdb)),
                            installed_at: now,
                        },
                    );
                    Outcome::Installed {
                        origin,
                        path: path.display().to_string(),
                        database_type: db.as_ref().map(|d| d.database_type().to_owned()).unwrap_or_default(),
                        built_at: crate::units::rfc3339(db.as_ref().map_or(0, GeoIp::build_epoch)),
                    }
                }
                Err(e) => Outcome::Failed { error: format!("cannot install it in {}: {e}", dir.display()) },
            },
            Err(error) => Outcome::Failed { error },
        };
        if let Outcome::Failed { error } = &outcome {
            tracing::warn!(database = %kind, %error, "GeoIP update failed; the old database stays");
        }
        let (path, configured) = super::db_path(cfg, kind);
        let note = configured.then(|| {
            format!(
                "{} names {}, which the server uses instead of this download: empty it to use the updated database",
                kind.key(),
                path.display()
            )
        });
        report.databases.push(DbOutcome { database: kind, outcome, note });
    }
    state.source = Some(source.name().into());
    state.checked_at = Some(now);
    let failures: Vec<String> = report
        .databases
        .iter()
        .filter_map(|d| match &d.outcome {
            Outcome::Failed { error } => Some(format!("{}: {error}", d.database)),
            _ => None,
        })
        .collect();
    if failures.is_empty() {
        state.updated_at = Some(now);
        state.last_error = None;
    } else {
        state.last_error = Some(failures.join("; "));
    }
    if let Err(e) = write_state(&dir, &state, owner) {
        tracing::warn!(error = %e, "cannot write {}", dir.join(STATE_FILE).display());
    }
    Ok(report)
}

/// A download's result: the data of a new file, or the name of the one installed already.
enum Got {
    New { origin: String, mmdb: Vec<u8> },
    Current(String),
}

/// Joins a file name to a base URL (which may have a path: `https://download.db-ip.com/free`).
fn join(base: &str, rest: &str) -> Result<url::Url, String> {
    url::Url::parse(&format!("{}/{rest}", base.trim_end_matches('/'))).map_err(|e| format!("bad URL: {e}"))
}

/// Opens `mmdb` and checks it is a `kind` database that answers lookups.
fn checked(kind: Kind, mmdb: Vec<u8>, what: &str) -> Result<Vec<u8>, String> {
    // The reader owns its bytes: it checks a copy, and the original is what gets written.
    let db = GeoIp::from_bytes(mmdb.clone()).map_err(|e| format!("{what} is {e}"))?;
    db.check(kind).map_err(|e| format!("{what}: {e}"))?;
    Ok(mmdb)
}

async fn dbip(cfg: &Config, client: &Client, kind: Kind, now: u64, installed: Option<&str>) -> Result<Got, String> {
    let g = &cfg.geoip;
    let stem = match kind {
        Kind::Country => "dbip-country-lite",
        Kind::Asn => "dbip-asn-lite",
    };
    let months = archive::dbip_months(now);
    let mut tried = Vec::new();
    for month in &months {
        let origin = format!("{stem}-{month}.mmdb.gz");
        if installed == Some(origin.as_str()) {
            return Ok(Got::Current(origin));
        }
        let url = join(&g.dbip_url, &origin)?;
        let req = Request::new(url.clone(), url.to_string());
        match client.get(&req, g.max_download_bytes).await {
            Ok(gz) => {
                let mmdb = archive::gunzip(&gz, g.max_download_bytes).map_err(|e| format!("{}: {e}", req.shown()))?;
                let mmdb = checked(kind, mmdb, req.shown())?;
                return Ok(Got::New { origin, mmdb });
            }
            // This month's file is not out yet: last month's is the newest.
            Err(e) if e.status() == Some(404) => tried.push(req.shown().to_owned()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("not published: {} (HTTP 404)", tried.join(" and ")))
}

/// MaxMind's two requests for `edition`: the archive and its checksum.
fn maxmind_requests(cfg: &Config, edition: &str) -> Result<[Request; 2], String> {
    let g = &cfg.geoip;
    let key = &g.maxmind_license_key;
    let make = |suffix: &str| -> Result<Request, String> {
        if g.maxmind_account_id != 0 {
            let mut url = join(&g.maxmind_url, &format!("geoip/databases/{edition}/download"))?;
            url.query_pairs_mut().append_pair("suffix", suffix);
            let shown = url.to_string();
            Ok(Request::new(url, shown).basic_auth(&g.maxmind_account_id.to_string(), key))
        } else {
            let mut url = join(&g.maxmind_url, "app/geoip_download")?;
            let mut shown = url.clone();
            url.query_pairs_mut()
                .append_pair("edition_id", edition)
                .append_pair("license_key", key.expose())
                .append_pair("suffix", suffix);
            shown
                .query_pairs_mut()
                .append_pair("edition_id", edition)
                .append_pair("license_key", "***")
                .append_pair("suffix", suffix);
            Ok(Request::new(url, shown.to_string()))
        }
    };
    Ok([make("tar.gz")?, make("tar.gz.sha256")?])
}

async fn maxmind(cfg: &Config, client: &Client, kind: Kind, installed: Option<&str>) -> Result<Got, String> {
    let edition = match kind {
        Kind::Country => "GeoLite2-Country",
        Kind::Asn => "GeoLite2-ASN",
    };
    let [archive_req, sum_req] = maxmind_requests(cfg, edition)?;
    let sum = client.get(&sum_req, MAX_CHECKSUM_BYTES).await.map_err(|e| explain_maxmind(&e))?;
    let (digest, name) = archive::parse_sha256_file(&sum).map_err(|e| format!("{}: {e}", sum_req.shown()))?;
    // The archive's name dates it; a bare digest is still an identity.
    let origin = if name.is_empty() { hex::encode(digest) } else { name };
    if installed == Some(origin.as_str()) {
        return Ok(Got::Current(origin));
    }
    let max = cfg.geoip.max_download_bytes;
    let tgz = client.get(&archive_req, max).await.map_err(|e| explain_maxmind(&e))?;
    archive::check_sha256(&tgz, &digest).map_err(|e| format!("{}: {e}", archive_req.shown()))?;
    let mmdb = archive::file_from_tar_gz(&tgz, &format!("{edition}.mmdb"), max)
        .map_err(|e| format!("{}: {e}", archive_req.shown()))?;
    Ok(Got::New { mmdb: checked(kind, mmdb, archive_req.shown())?, origin })
}

/// MaxMind answers a bad key with 401 and an exhausted daily quota with 429: say so.
fn explain_maxmind(e: &FetchError) -> String {
    match e.status() {
        Some(401) => format!("{e}: the licence key (or account id) is not accepted; check geoip.maxmind_license_key"),
        Some(429) => format!("{e}: MaxMind's daily download limit is reached; try again tomorrow"),
        _ => e.to_string(),
    }
}

/// The owner of the data directory, when this process is root and someone else owns it: new
/// files are handed to that owner, so `sudo traffix geoip update` leaves files the service
/// user can read.
fn data_dir_owner(data_dir: &Path) -> Option<(u32, u32)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let m = std::fs::metadata(data_dir).ok()?;
        (m.uid() != 0).then_some((m.uid(), m.gid()))
    }
    #[cfg(not(unix))]
    {
        let _ = data_dir;
        None
    }
}

fn adopt(path: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    let _ = (path, owner);
    Ok(())
}

fn create_private_dir(dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    match b.create(dir) {
        Ok(()) => adopt(dir, owner),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

fn lock(dir: &Path, owner: Option<(u32, u32)>) -> Result<std::fs::File, StartError> {
    let path = dir.join(LOCK_FILE);
    let f = private_file(&path)
        .and_then(|f| adopt(&path, owner).map(|()| f))
        .map_err(|e| StartError(format!("cannot create {}: {e}", path.display())))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StartError("another `traffix geoip update` is running on this data directory".into()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StartError(format!("cannot lock {}: {e}", path.display()))),
    }
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Writes `data` to `dir/name` atomically: a temporary file (0600), synced, renamed over the
/// old one, the folder synced. On any failure the old file is untouched.
fn write_atomic(dir: &Path, name: &str, data: &[u8], owner: Option<(u32, u32)>) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut f = private_file(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        adopt(&tmp, owner)?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(path)
}

fn install(dir: &Path, kind: Kind, mmdb: &[u8], owner: Option<(u32, u32)>) -> std::io::Result<PathBuf> {
    write_atomic(dir, kind.file_name(), mmdb, owner)
}

fn write_state(dir: &Path, state: &State, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    write_atomic(dir, STATE_FILE, &json, owner).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::from_str_with_env(
            &format!("[server]\npublic_address='a:1'\n[geoip]\n{extra}\n"),
            Path::new("t.toml"),
            Path::new("/tmp"),
            std::iter::empty(),
        )
        .unwrap()
    }

    #[test]
    fn maxmind_urls_have_the_documented_shapes_and_never_show_the_key() {
        let c = cfg("source='maxmind'\nmaxmind_license_key='s3cr3t'");
        let [a, s] = maxmind_requests(&c, "GeoLite2-Country").unwrap();
        assert_eq!(
            a.url.as_str(),
            "https://download.maxmind.com/app/geoip_download?edition_id=GeoLite2-Country&license_key=s3cr3t&suffix=tar.gz"
        );
        assert!(s.url.as_str().ends_with("suffix=tar.gz.sha256"));
        for r in [&a, &s] {
            assert!(!r.shown().contains("s3cr3t") && !format!("{r:?}").contains("s3cr3t"), "{}", r.shown());
            assert!(r.shown().contains("license_key=***"));
            assert!(r.authorization.is_none());
        }
        let c = cfg("source='maxmind'\nmaxmind_license_key='s3cr3t'\nmaxmind_account_id=42");
        let [a, _] = maxmind_requests(&c, "GeoLite2-ASN").unwrap();
        assert_eq!(a.url.as_str(), "https://download.maxmind.com/geoip/databases/GeoLite2-ASN/download?suffix=tar.gz");
        assert!(!a.shown().contains("s3cr3t"));
        // Basic base64("42:s3cr3t")
        assert_eq!(a.authorization.as_deref(), Some("Basic NDI6czNjcjN0"));
    }

    #[test]
    fn dbip_urls_join_the_base_path() {
        assert_eq!(
            join("https://download.db-ip.com/free", "dbip-asn-lite-2026-05.mmdb.gz").unwrap().as_str(),
            "https://download.db-ip.com/free/dbip-asn-lite-2026-05.mmdb.gz"
        );
        assert_eq!(join("http://127.0.0.1:9/x/", "f").unwrap().as_str(), "http://127.0.0.1:9/x/f");
    }

    #[tokio::test]
    async fn source_off_downloads_nothing_and_maxmind_needs_a_key() {
        let r = run(&cfg("source='off'"), 0, false).await.unwrap();
        assert!(r.databases.is_empty() && r.skipped.is_some() && r.ok());
        let e = run(&cfg("source='maxmind'"), 0, false).await.unwrap_err();
        assert!(e.0.contains("maxmind_license_key"), "{e}");
    }

    #[test]
    fn an_atomic_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"old").unwrap();
        write_atomic(d.path(), "f", b"new", None).unwrap();
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"new");
        assert!(!d.path().join(".f.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("f")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A folder that cannot take the file leaves the old one as it was.
        assert!(write_atomic(&d.path().join("missing"), "f", b"x", None).is_err());
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"new");
    }
}
