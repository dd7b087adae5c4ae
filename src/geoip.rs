//! GeoIP: country and ASN lookups from MaxMind-format databases, and keeping them current.
//!
//! The server reads two files: the operator's own (`geoip.country_db`, `geoip.asn_db`), or,
//! when those keys are empty, the ones `traffix geoip update` keeps in `geoip/` in the data
//! directory. [`SharedGeoIp`] holds what is loaded and is swapped whole by [`SharedGeoIp::reload`]
//! while the server runs: a lookup sees the old databases or the new ones, never a mix, and a
//! file that does not open leaves the loaded one in place. With no country database there is
//! no country, and `-country-` targeting says so.
//!
//! The parts of an update: `archive.rs` unpacks and checks what a source sends (pure),
//! `fetch.rs` is the bounded HTTPS client, `update.rs` fetches, verifies and installs. This
//! module never downloads anything itself and knows nothing of the tunnel or the API.

pub mod archive;
pub mod fetch;
pub mod update;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The folder of the data directory that `traffix geoip update` writes to.
pub const DIR: &str = "geoip";

/// The marker before a MaxMind DB's metadata, at the end of the file.
const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The zero bytes between the search tree and the data section.
const DATA_SEPARATOR: u64 = 16;

/// A database's bytes, shared by its reader and the checks of its search tree.
#[derive(Clone)]
struct Bytes(Arc<[u8]>);

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// An opened database whose search tree was walked once: every pointer in it leads to a node,
/// to nothing or into the data section, so lookups stay inside the file.
pub struct GeoIp {
    reader: maxminddb::Reader<Bytes>,
    bytes: Bytes,
    /// Where the metadata marker starts (the data section ends there).
    metadata_at: usize,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeoIp({})", self.database_type())
    }
}

#[derive(serde::Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    country: Option<Country<'a>>,
}

#[derive(serde::Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

/// The two databases Traffix reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Country,
    Asn,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Country, Kind::Asn];

    /// The file `traffix geoip update` keeps in [`DIR`].
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Country => "country.mmdb",
            Kind::Asn => "asn.mmdb",
        }
    }

    /// The config key naming the operator's own file.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Country => "geoip.country_db",
            Kind::Asn => "geoip.asn_db",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Country => "country",
            Kind::Asn => "ASN",
        }
    }

    /// The name with its article, for sentences.
    fn a(self) -> &'static str {
        match self {
            Kind::Country => "a country",
            Kind::Asn => "an ASN",
        }
    }

    /// Whether a database of `database_type` (its metadata) holds this kind of record: country
    /// data is in Country, City and Enterprise databases; ASN data in ASN databases, whatever
    /// the vendor (`GeoLite2-ASN`, `DBIP-ASN-Lite (compat=GeoLite2-ASN)`).
    pub fn accepts_type(self, database_type: &str) -> bool {
        let t = database_type.to_ascii_lowercase();
        match self {
            Kind::Country => ["country", "city", "enterprise"].iter().any(|w| t.contains(w)),
            Kind::Asn => t.contains("asn"),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        let fail = |e: String| format!("cannot open GeoIP database {}: {e}", path.display());
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let db = GeoIp::from_bytes(bytes).map_err(fail)?;
        db.walk().map_err(fail)?;
        Ok(db)
    }

    /// A database from its bytes (a download not yet written anywhere). The search tree the
    /// metadata declares must fit in the file before maxminddb opens it: it reads the tree while
    /// it opens and indexes past the end of one that does not.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoIp, String> {
        let bad = |e: String| format!("not a MaxMind DB: {e}");
        let at = bytes
            .windows(METADATA_MARKER.len())
            .rposition(|w| w == METADATA_MARKER)
            .ok_or_else(|| bad("it has no MaxMind DB metadata".into()))?;
        // The metadata alone, after one all-zero node (whatever the record size): opening it
        // reads nothing but that node.
        let mut probe = vec![0u8; 8];
        probe.extend_from_slice(&bytes[at..]);
        let meta = maxminddb::Reader::from_source(probe).map_err(|e| bad(e.to_string()))?.metadata;
        let tree = u64::from(meta.node_count) * u64::from(meta.record_size) / 4;
        if tree + DATA_SEPARATOR > at as u64 {
            return Err(bad(format!("its search tree ({} nodes) is larger than the file", meta.node_count)));
        }
        if !matches!(meta.ip_version, 4 | 6) {
            return Err(bad(format!("ip_version is {}, not 4 or 6", meta.ip_version)));
        }
        let bytes = Bytes(Arc::from(bytes));
        let reader = maxminddb::Reader::from_source(bytes.clone()).map_err(|e| bad(e.to_string()))?;
        Ok(GeoIp { reader, bytes, metadata_at: at })
    }

    /// Walks the search tree once, each node at most once and never deeper than an address
    /// has bits, checking every pointer: a node, nothing, or a record inside the data section.
    /// Returns one address for each distinct record. (maxminddb's own iterator would follow a
    /// crafted tree whose nodes point back up for ever.)
    fn walk(&self) -> Result<Vec<IpAddr>, String> {
        let meta = &self.reader.metadata;
        let buf = self.bytes.as_ref();
        let nodes = meta.node_count as usize;
        let bits: u32 = if meta.ip_version == 6 { 128 } else { 32 };
        let data_start = nodes * meta.record_size as usize / 4 + DATA_SEPARATOR as usize;
        let data_len = self.metadata_at.saturating_sub(data_start);
        let corrupt = |what: &str| format!("the database is corrupt: {what}");
        let read = |node: usize, right: bool| -> Option<usize> {
            let at = node * meta.record_size as usize / 4;
            let b = |i: usize| buf.get(at + i).map(|&x| x as usize);
            Some(match (meta.record_size, right) {
                (24, false) => b(0)? << 16 | b(1)? << 8 | b(2)?,
                (24, true) => b(3)? << 16 | b(4)? << 8 | b(5)?,
                (28, false) => (b(3)? & 0xF0) << 20 | b(0)? << 16 | b(1)? << 8 | b(2)?,
                (28, true) => (b(3)? & 0x0F) << 24 | b(4)? << 16 | b(5)? << 8 | b(6)?,
                (32, false) => b(0)? << 24 | b(1)? << 16 | b(2)? << 8 | b(3)?,
                (32, true) => b(4)? << 24 | b(5)? << 16 | b(6)? << 8 | b(7)?,
                _ => return None,
            })
        };
        if nodes == 0 {
            return Err(corrupt("its search tree is empty"));
        }
        let mut seen = vec![false; nodes];
        let mut stack: Vec<(usize, u32, u128)> = vec![(0, 0, 0)];
        let mut records = std::collections::BTreeMap::new();
        while let Some((node, depth, ip)) = stack.pop() {
            if std::mem::replace(&mut seen[node], true) {
                continue;
            }
            for right in [false, true] {
                let child = read(node, right).ok_or_else(|| corrupt("its search tree is cut short"))?;
                let child_ip = ip | (u128::from(right) << (bits - 1 - depth));
                match child.cmp(&nodes) {
                    std::cmp::Ordering::Less if depth + 1 >= bits => {
                        return Err(corrupt("its search tree is deeper than an address"));
                    }
                    std::cmp::Ordering::Less => stack.push((child, depth + 1, child_ip)),
                    std::cmp::Ordering::Equal => {}
                    std::cmp::Ordering::Greater => {
                        let offset = child - nodes;
                        if offset < DATA_SEPARATOR as usize || offset - DATA_SEPARATOR as usize >= data_len {
                            return Err(corrupt("a record pointer leads outside the data section"));
                        }
                        records.entry(offset).or_insert(child_ip);
                    }
                }
            }
        }
        Ok(records
            .into_values()
            .map(|ip| match bits {
                32 => IpAddr::from(std::net::Ipv4Addr::from(ip as u32)),
                _ => IpAddr::from(std::net::Ipv6Addr::from(ip)),
            })
            .collect())
    }

    /// The vendor's name of the database (`GeoLite2-Country`, `DBIP-Country-Lite`, …).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata.database_type
    }

    /// When the vendor built it, in Unix seconds.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata.build_epoch
    }

    /// The autonomous system of `ip` and its organisation (an ASN database).
    pub fn asn(&self, ip: IpAddr) -> Option<(u32, String)> {
        let result = self.reader.lookup(ip).ok()?;
        let rec: AsnRecord<'_> = result.decode().ok()??;
        Some((rec.autonomous_system_number?, rec.autonomous_system_organization.unwrap_or_default().to_owned()))
    }

    /// The ISO 3166-1 alpha-2 country of `ip`, upper case.
    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let result = self.reader.lookup(ip).ok()?;
        let rec: CountryRecord<'_> = result.decode().ok()??;
        let code = rec.country?.iso_code?.as_bytes();
        match code {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => None,
        }
    }

    /// Checks a database before it is installed: its type is one of `kind`, its search tree
    /// is sound ([`GeoIp::walk`]), every record it holds decodes as a `kind` record, and some
    /// record answers a lookup with a country (or an AS number).
    pub fn check(&self, kind: Kind) -> Result<(), String> {
        let t = self.database_type();
        if !kind.accepts_type(t) {
            return Err(format!("it is a {t:?} database, not {} database", kind.a()));
        }
        let records = self.walk()?;
        if records.is_empty() {
            return Err("the database holds no records".into());
        }
        let corrupt =
            |ip: IpAddr, e: maxminddb::MaxMindDbError| format!("the database is corrupt: the record of {ip}: {e}");
        let mut answers = false;
        for ip in records {
            let found = self.reader.lookup(ip).map_err(|e| corrupt(ip, e))?;
            answers |= match kind {
                Kind::Country => {
                    found.decode::<CountryRecord<'_>>().map_err(|e| corrupt(ip, e))?.is_some()
                        && self.country(ip).is_some()
                }
                Kind::Asn => {
                    found.decode::<AsnRecord<'_>>().map_err(|e| corrupt(ip, e))?.is_some() && self.asn(ip).is_some()
                }
            };
        }
        if !answers {
            return Err(format!("no lookup in it finds {} record", kind.a()));
        }
        Ok(())
    }

    /// What a licence asks to be said wherever this database's data is shown.
    pub fn attribution(&self) -> Option<&'static str> {
        attribution_of(self.database_type())
    }
}

/// DB-IP Lite is CC BY 4.0 and GeoLite2's licence asks for a credit too.
pub fn attribution_of(database_type: &str) -> Option<&'static str> {
    let t = database_type.to_ascii_lowercase();
    if t.starts_with("dbip") {
        Some("IP geolocation by DB-IP (https://db-ip.com), licensed CC BY 4.0")
    } else if t.starts_with("geolite2") {
        Some("This product includes GeoLite2 data created by MaxMind, available from https://www.maxmind.com")
    } else {
        None
    }
}

/// Where `traffix geoip update` keeps the `kind` database of a data directory.
pub fn managed_path(data_dir: &Path, kind: Kind) -> PathBuf {
    data_dir.join(DIR).join(kind.file_name())
}

/// The file the server reads for `kind`, and whether the operator named it in the config.
pub fn db_path(cfg: &Config, kind: Kind) -> (PathBuf, bool) {
    let key = match kind {
        Kind::Country => &cfg.geoip.country_db,
        Kind::Asn => &cfg.geoip.asn_db,
    };
    match key.trim() {
        "" => (managed_path(&cfg.data_dir, kind), false),
        p => (cfg.path(Path::new(p)), true),
    }
}

/// What identifies one version of a file: a new file renamed over it changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp { modified: m.modified().ok(), len: m.len(), inode })
}

/// One loaded database and the file it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub db: Arc<GeoIp>,
    pub path: PathBuf,
    stamp: Option<Stamp>,
}

/// The databases in use.
#[derive(Debug, Clone, Default)]
pub struct Databases {
    pub country: Option<Loaded>,
    pub asn: Option<Loaded>,
}

impl Databases {
    pub fn get(&self, kind: Kind) -> Option<&Loaded> {
        match kind {
            Kind::Country => self.country.as_ref(),
            Kind::Asn => self.asn.as_ref(),
        }
    }

    fn set(&mut self, kind: Kind, l: Option<Loaded>) {
        match kind {
            Kind::Country => self.country = l,
            Kind::Asn => self.asn = l,
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The databases now in use that were not before.
    pub changed: Vec<Kind>,
    /// Files that could not be used (the loaded database, if any, stays).
    pub errors: Vec<String>,
}

/// The server's GeoIP databases, swapped whole when their files change.
#[derive(Debug)]
pub struct SharedGeoIp {
    /// Each kind's file, and whether the operator named it (then it must open).
    files: Vec<(Kind, PathBuf, bool)>,
    /// A short lock around an `Arc` clone or swap: std, never held across an await.
    current: RwLock<Arc<Databases>>,
}

impl SharedGeoIp {
    /// No databases and no files (tests, a server without GeoIP).
    pub fn empty() -> SharedGeoIp {
        SharedGeoIp { files: Vec::new(), current: RwLock::new(Arc::default()) }
    }

    /// Loads the databases of `cfg`. A file named in the config must open; a missing file in
    /// the default location means no database yet, and a broken one there is logged and skipped
    /// (the next `traffix geoip update` replaces it).
    pub fn load(cfg: &Config) -> Result<SharedGeoIp, String> {
        let (g, problems) = SharedGeoIp::open(cfg);
        match problems.into_iter().find(|(_, configured, _)| *configured) {
            Some((kind, _, e)) => Err(format!("{}: {e}", kind.key())),
            None => Ok(g),
        }
    }

    /// Loads what opens of the databases of `cfg`, and says what does not: each problem's
    /// kind, whether the config names the file, and the error.
    pub fn open(cfg: &Config) -> (SharedGeoIp, Vec<(Kind, bool, String)>) {
        let files: Vec<_> = Kind::ALL
            .iter()
            .map(|&k| {
                let (p, configured) = db_path(cfg, k);
                (k, p, configured)
            })
            .collect();
        let mut dbs = Databases::default();
        let mut problems = Vec::new();
        for (kind, path, configured) in &files {
            match open_file(path) {
                Ok(l) => dbs.set(*kind, Some(l)),
                Err(e) if *configured || path.exists() => {
                    if !configured {
                        tracing::warn!(error = %e, "the {kind} database of `traffix geoip update` does not open; run it again");
                    }
                    problems.push((*kind, *configured, e));
                }
                Err(_) => {}
            }
        }
        (SharedGeoIp { files, current: RwLock::new(Arc::new(dbs)) }, problems)
    }

    /// The databases in use now.
    pub fn databases(&self) -> Arc<Databases> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn has_country(&self) -> bool {
        self.databases().country.is_some()
    }

    pub fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        self.databases().country.as_ref()?.db.country(ip)
    }

    pub fn asn(&self, ip: IpAddr) -> Option<(u32, String)> {
        self.databases().asn.as_ref()?.db.asn(ip)
    }

    /// Opens every file that changed since it was loaded (or appeared) and swaps the new set
    /// in. A file that is gone or does not open keeps the database loaded from it.
    pub fn reload(&self) -> Reloaded {
        let old = self.databases();
        let mut new = (*old).clone();
        let mut out = Reloaded::default();
        for (kind, path, configured) in &self.files {
            let loaded = old.get(*kind);
            let now = match stamp(path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if *configured || loaded.is_some() {
                        out.errors.push(format!(
                            "{} is missing{}",
                            path.display(),
                            if loaded.is_some() { "; the loaded database stays in use" } else { "" }
                        ));
                    }
                    continue;
                }
                Err(e) => {
                    out.errors.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            if loaded.is_some_and(|l| l.stamp == Some(now)) {
                continue;
            }
            match open_file(path) {
                Ok(l) => {
                    new.set(*kind, Some(l));
                    out.changed.push(*kind);
                }
                Err(e) => out
                    .errors
                    .push(format!("{e}{}", if loaded.is_some() { "; the loaded database stays in use" } else { "" })),
            }
        }
        if !out.changed.is_empty() {
            crate::sync::write(&self.current, Arc::new(new));
        }
        out
    }
}

fn open_file(path: &Path) -> Result<Loaded, String> {
    // The stamp first: a file replaced while it is read is opened again at the next reload.
    let s = stamp(path).ok();
    let db = GeoIp::open(path)?;
    Ok(Loaded { db: Arc::new(db), path: path.to_path_buf(), stamp: s })
}

/// One database as the dashboard and `traffix geoip status` show it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatabaseInfo {
    pub path: String,
    /// The vendor's name of it (`GeoLite2-Country`, `DBIP-Country-Lite`, …).
    pub database_type: String,
    /// When the vendor built it, RFC 3339.
    pub built_at: String,
    pub age_days: u64,
    /// Built longer ago than `geoip.stale_after_days`.
    pub stale: bool,
    /// Kept by `traffix geoip update` (false: the operator's own file, named in the config).
    pub managed: bool,
}

/// The GeoIP state: source, databases in use, updates.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GeoipStatus {
    /// Where updates come from: `dbip`, `maxmind` or `off`.
    pub source: String,
    /// The country database in use (none: countries are unknown and `-country-` is refused).
    pub country: Option<DatabaseInfo>,
    pub asn: Option<DatabaseInfo>,
    /// The last update that left every database current, RFC 3339.
    pub last_update: Option<String>,
    /// The last time `traffix geoip update` ran, RFC 3339.
    pub last_check: Option<String>,
    /// What went wrong the last time, if it failed.
    pub last_error: Option<String>,
    /// When the next update is due: the last run plus `geoip.update_interval_days`.
    pub next_update: Option<String>,
    /// The credit the databases' licences ask for, to show with their data.
    pub attribution: Vec<String>,
    /// What updates the databases.
    pub update_command: String,
}

/// The status of `dbs` (what a server has loaded, or the files a stopped one would load).
pub fn status(cfg: &Config, dbs: &Databases, now: u64) -> GeoipStatus {
    let state = update::State::read(&cfg.data_dir);
    let info = |kind: Kind| {
        dbs.get(kind).map(|l| {
            let built = l.db.build_epoch();
            let age_days = now.saturating_sub(built) / 86_400;
            DatabaseInfo {
                path: l.path.display().to_string(),
                database_type: l.db.database_type().to_owned(),
                built_at: crate::units::rfc3339(built),
                age_days,
                stale: age_days > u64::from(cfg.geoip.stale_after_days),
                managed: !db_path(cfg, kind).1,
            }
        })
    };
    let mut attribution: Vec<String> =
        Kind::ALL.iter().filter_map(|&k| dbs.get(k).and_then(|l| l.db.attribution())).map(str::to_owned).collect();
    attribution.dedup();
    let interval = u64::from(cfg.geoip.update_interval_days) * 86_400;
    GeoipStatus {
        source: cfg.geoip.source.name().to_owned(),
        country: info(Kind::Country),
        asn: info(Kind::Asn),
        last_update: state.updated_at.map(crate::units::rfc3339),
        last_check: state.checked_at.map(crate::units::rfc3339),
        last_error: state.last_error.clone(),
        next_update: match cfg.geoip.source {
            crate::config::GeoipSource::Off => None,
            _ => Some(crate::units::rfc3339(state.checked_at.map_or(now, |c| c.saturating_add(interval)))),
        },
        attribution,
        update_command: "traffix geoip update".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_types_are_told_apart() {
        for t in ["GeoLite2-Country", "GeoIP2-Country", "DBIP-Country-Lite", "GeoIP2-City", "DBIP-City-Lite"] {
            assert!(Kind::Country.accepts_type(t), "{t}");
            assert!(!Kind::Asn.accepts_type(t), "{t}");
        }
        for t in ["GeoLite2-ASN", "DBIP-ASN-Lite (compat=GeoLite2-ASN)"] {
            assert!(Kind::Asn.accepts_type(t), "{t}");
            assert!(!Kind::Country.accepts_type(t), "{t}");
        }
        assert!(!Kind::Country.accepts_type("GeoIP2-Anonymous-IP"));
        assert!(attribution_of("DBIP-Country-Lite").is_some_and(|a| a.contains("CC BY 4.0")));
        assert!(attribution_of("GeoLite2-ASN").is_some_and(|a| a.contains("MaxMind")));
        assert_eq!(attribution_of("GeoIP2-Country"), None);
    }

    /// MaxMind DB encodings, enough for a metadata map and one record.
    fn str_(s: &str) -> Vec<u8> {
        [vec![0x40 | s.len() as u8], s.as_bytes().to_vec()].concat()
    }
    fn uint(ty: u8, v: u64) -> Vec<u8> {
        let b: Vec<u8> = v.to_be_bytes().iter().copied().skip_while(|&x| x == 0).collect();
        match ty {
            5 | 6 => [vec![(ty << 5) | b.len() as u8], b].concat(),
            _ => [vec![b.len() as u8, ty - 7], b].concat(), // extended types (uint64: 9)
        }
    }
    fn map(pairs: Vec<(&str, Vec<u8>)>) -> Vec<u8> {
        let mut out = vec![0xE0 | pairs.len() as u8];
        for (k, v) in pairs {
            out.extend(str_(k));
            out.extend(v);
        }
        out
    }

    /// A database of record size 24 and IPv4 with `nodes` (each two 24-bit records) and `data`.
    fn mmdb(node_count: u32, nodes: &[[u32; 2]], data: &[u8], database_type: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nodes {
            for r in n {
                out.extend_from_slice(&r.to_be_bytes()[1..]);
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(data);
        out.extend_from_slice(METADATA_MARKER);
        out.extend(map(vec![
            ("binary_format_major_version", uint(5, 2)),
            ("binary_format_minor_version", uint(5, 0)),
            ("build_epoch", uint(9, 1_780_000_000)),
            ("database_type", str_(database_type)),
            ("description", map(vec![("en", str_("test"))])),
            ("ip_version", uint(5, 4)),
            ("languages", vec![0x00, 0x04]), // an empty array
            ("node_count", uint(6, u64::from(node_count))),
            ("record_size", uint(5, 24)),
        ]));
        out
    }

    #[test]
    fn a_sound_tiny_database_passes_and_crafted_trees_are_refused_without_hanging() {
        let de = map(vec![("country", map(vec![("iso_code", str_("DE"))]))]);
        // One node: 0.0.0.0/1 → the record (pointer 1 + 16 + 0), 128.0.0.0/1 → nothing (1).
        let good = GeoIp::from_bytes(mmdb(1, &[[17, 1]], &de, "Test-Country")).unwrap();
        assert_eq!(good.country("1.2.3.4".parse().unwrap()), Some(*b"DE"));
        assert_eq!(good.country("200.1.1.1".parse().unwrap()), None);
        good.check(Kind::Country).unwrap();
        assert!(good.check(Kind::Asn).unwrap_err().contains("not an ASN database"));
        let asn_type = GeoIp::from_bytes(mmdb(1, &[[17, 1]], &de, "Test-ASN")).unwrap();
        assert!(asn_type.check(Kind::Asn).unwrap_err().contains("no lookup"), "a country record in an ASN db");

        // Node 1 points back at node 0: maxminddb's iterator would never end; the walk does.
        let cycle = GeoIp::from_bytes(mmdb(2, &[[1, 1], [0, 2]], &de, "Test-Country")).unwrap();
        assert!(cycle.check(Kind::Country).unwrap_err().contains("no records"));
        // A pointer into the 16-byte separator, and one past the data.
        for bad in [[3u32, 1], [17 + 500, 1]] {
            let db = GeoIp::from_bytes(mmdb(1, &[bad], &de, "Test-Country")).unwrap();
            assert!(db.check(Kind::Country).unwrap_err().contains("outside the data section"), "{bad:?}");
        }
        // A node chain deeper than 32 bits.
        let deep: Vec<[u32; 2]> = (0..40).map(|i| [i + 1, 40]).collect();
        let db = GeoIp::from_bytes(mmdb(40, &deep, &de, "Test-Country")).unwrap();
        assert!(db.check(Kind::Country).unwrap_err().contains("deeper than an address"));
        // A tree that claims more nodes than the file holds is refused before maxminddb reads it.
        let e = GeoIp::from_bytes(mmdb(1_000_000, &[[17, 1]], &de, "Test-Country")).unwrap_err();
        assert!(e.contains("larger than the file"), "{e}");
        assert!(GeoIp::from_bytes(b"not a database".to_vec()).unwrap_err().contains("no MaxMind DB metadata"));
        let mut cut = mmdb(1, &[[17, 1]], &de, "Test-Country");
        cut.truncate(cut.len() - 5);
        assert!(GeoIp::from_bytes(cut).is_err());
    }

    #[test]
    fn an_empty_handle_knows_no_country() {
        let g = SharedGeoIp::empty();
        assert!(!g.has_country());
        assert_eq!(g.country("1.2.3.4".parse().unwrap()), None);
        assert_eq!(g.reload(), Reloaded::default());
    }
}
