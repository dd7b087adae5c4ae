//! Whole-server backups (`traffix backup FILE`, `traffix restore FILE`): one tar archive that
//! brings a server back — a consistent snapshot of the database, `traffix.toml`, the TLS
//! certificate and key (the key nodes pin) and the JWT secret — with `manifest.json` first:
//! format version, traffix version, schema version, creation time and every file's size and
//! SHA-256.
//!
//! While the server runs, it builds the archive and streams it over the admin socket
//! (`stream.rs` frames it) for the CLI to write: under systemd's `ProtectSystem=strict` the
//! server cannot write where the operator points. The database snapshot goes to a private
//! temporary file under `backups/` in the data directory (always writable by the server) and is
//! removed once sent. Stopped, the CLI builds the same archive itself.
//!
//! Restoring trusts nothing in the archive: only the six known names, regular files only (no
//! links, no `..`, no absolute paths), sizes and checksums as the manifest says, the key and
//! secret present; files are written privately into a staging folder and moved into place only
//! when all of them check out.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AdminCtx, AdminError, Audit};
use crate::store::Store;

/// The archive format this build writes and reads.
pub const FORMAT: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const DB: &str = "traffix.redb";
pub const CONFIG: &str = "traffix.toml";
pub const CERT: &str = "tls/cert.pem";
pub const KEY: &str = "tls/key.pem";
pub const JWT_SECRET: &str = "jwt.secret";
/// Every file an archive holds besides the manifest; a restore needs all of them.
pub const FILES: [&str; 5] = [DB, CONFIG, CERT, KEY, JWT_SECRET];
/// The largest manifest, config, certificate, key or secret accepted.
const MAX_SMALL_FILE: u64 = 1024 * 1024;
/// Files written with mode 0600 on restore (everything but the certificate).
const PRIVATE: [&str; 4] = [DB, CONFIG, KEY, JWT_SECRET];
/// Folder of the data directory for backups the server makes itself (snapshots being sent,
/// copies taken before a schema upgrade).
pub const BACKUPS_DIR: &str = "backups";

/// Where a server's files are: the data directory, its config, TLS files and JWT secret.
#[derive(Debug, Clone)]
pub struct Sources {
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub jwt_secret: PathBuf,
}

/// The first entry of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub traffix_version: String,
    pub schema_version: u64,
    pub created_at: String,
    pub files: Vec<ManifestFile>,
}

/// One file of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// An archive ready to be written: the manifest, the small files in memory, and the database
/// snapshot in a private temporary file (removed when this is dropped).
pub struct Prepared {
    pub manifest: Manifest,
    small: Vec<(&'static str, Vec<u8>)>,
    snapshot: PathBuf,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.snapshot);
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b))
}

fn failed(m: impl Into<String>) -> AdminError {
    AdminError::new("backup_failed", m)
}

fn read_small(path: &Path, what: &str) -> Result<Vec<u8>, AdminError> {
    let f = std::fs::File::open(path).map_err(|e| failed(format!("cannot read the {what} {}: {e}", path.display())))?;
    let mut out = Vec::new();
    f.take(MAX_SMALL_FILE + 1)
        .read_to_end(&mut out)
        .map_err(|e| failed(format!("cannot read the {what} {}: {e}", path.display())))?;
    if out.len() as u64 > MAX_SMALL_FILE {
        return Err(failed(format!("the {what} {} is larger than {MAX_SMALL_FILE} bytes", path.display())));
    }
    Ok(out)
}

/// Creates the data directory's `backups/` folder (mode 0700) and returns it.
pub fn backups_dir(data_dir: &Path) -> Result<PathBuf, AdminError> {
    let dir = data_dir.join(BACKUPS_DIR);
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(&dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Snapshots the database (one read transaction: consistent while serving), reads the other
/// files and writes the manifest; audited as `store.backup` by `actor`.
pub fn prepare(ctx: &AdminCtx, src: &Sources, actor: &str) -> Result<Prepared, AdminError> {
    let now = crate::store::now_secs();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos());
    let snapshot = backups_dir(&src.data_dir)?.join(format!(
        ".archive-{}-{now}-{}.redb",
        std::process::id(),
        nanos.unwrap_or_default()
    ));
    ctx.store.backup(&snapshot)?;
    // From here on, dropping `prepared` removes the snapshot.
    let mut prepared = Prepared {
        manifest: Manifest {
            format: FORMAT,
            traffix_version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version: ctx.store.schema_version()?,
            created_at: crate::units::rfc3339(now),
            files: Vec::new(),
        },
        small: Vec::new(),
        snapshot,
    };
    let (size, sha256) = hash_file(&prepared.snapshot)?;
    prepared.manifest.files.push(ManifestFile { path: DB.into(), size, sha256 });
    for (name, path, what) in [
        (CONFIG, &src.config, "config"),
        (CERT, &src.cert, "certificate"),
        (KEY, &src.key, "TLS key"),
        (JWT_SECRET, &src.jwt_secret, "JWT secret"),
    ] {
        let data = read_small(path, what)?;
        prepared.manifest.files.push(ManifestFile {
            path: name.into(),
            size: data.len() as u64,
            sha256: sha256_hex(&data),
        });
        prepared.small.push((name, data));
    }
    super::audit::record(ctx, actor, Audit::new("store.backup", "archive"), None, &prepared.manifest);
    Ok(prepared)
}

fn hash_file(path: &Path) -> Result<(u64, String), AdminError> {
    let mut f = std::fs::File::open(path).map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(ctx.finish())))
}

fn header(path: &str, size: u64, mode: u32, mtime: u64) -> Result<tar::Header, AdminError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(|e| failed(e.to_string()))?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

impl Prepared {
    /// Writes the archive: the manifest, the database, then the other files.
    pub fn write_tar<W: Write>(&self, out: W) -> Result<W, AdminError> {
        let io = |e: std::io::Error| failed(format!("cannot write the archive: {e}"));
        let now = crate::store::now_secs();
        let mut tar = tar::Builder::new(out);
        let manifest = serde_json::to_vec_pretty(&self.manifest).map_err(|e| failed(e.to_string()))?;
        tar.append(&header(MANIFEST, manifest.len() as u64, 0o600, now)?, manifest.as_slice()).map_err(io)?;
        let db = std::fs::File::open(&self.snapshot).map_err(io)?;
        let size = self.manifest.files.first().map(|f| f.size).unwrap_or_default();
        tar.append(&header(DB, size, 0o600, now)?, db.take(size)).map_err(io)?;
        for (name, data) in &self.small {
            let mode = if *name == CERT { 0o644 } else { 0o600 };
            tar.append(&header(name, data.len() as u64, mode, now)?, data.as_slice()).map_err(io)?;
        }
        let mut out = tar.into_inner().map_err(io)?;
        out.flush().map_err(io)?;
        Ok(out)
    }
}

/// Creates `path` for the owner only: mode 0600 from the start, never over an existing file.
pub fn create_private(path: &Path) -> Result<std::fs::File, AdminError> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    open.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            AdminError::new("already_exists", format!("{} already exists; refusing to overwrite it", path.display()))
        }
        _ => failed(format!("cannot create {}: {e}", path.display())),
    })
}

/// Why a data directory must not be restored into, if a server is using it.
pub fn live_server(data_dir: &Path) -> Option<String> {
    let sock = data_dir.join(super::SOCKET_FILE);
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        return Some(format!("a server answers on {}", sock.display()));
    }
    if let Some(pid) = running_pid(data_dir) {
        return Some(format!("a traffix process (pid {pid}) named in serve.pid is running"));
    }
    let db = data_dir.join(DB);
    if Store::in_use(&db) {
        return Some(format!("{} is open in another process", db.display()));
    }
    None
}

/// The pid in `serve.pid`, if a traffix process by that id is alive.
pub fn running_pid(data_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(data_dir.join("serve.pid")).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    comm.trim().starts_with("traffix").then_some(pid)
}

/// What a restore did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    pub data_dir: String,
    pub manifest: Manifest,
    /// Files written, as archive names.
    pub files: Vec<String>,
}

/// Checks an archive's entry name: a relative path of plain components, one of the known files.
fn entry_name(path: &Path) -> Result<String, AdminError> {
    let bad = |why: &str| AdminError::new("bad_archive", format!("entry {}: {why}", path.display()));
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(|| bad("not UTF-8"))?.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("path traversal (..) refused")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("absolute path refused")),
        }
    }
    let name = parts.join("/");
    if name == MANIFEST || FILES.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(bad("not a file a traffix backup holds"))
    }
}

/// Extracts and checks `archive` into `staging` (an empty private folder); the manifest.
fn extract(archive: &Path, staging: &Path) -> Result<Manifest, AdminError> {
    let bad = |m: String| AdminError::new("bad_archive", m);
    let file = std::fs::File::open(archive).map_err(|e| failed(format!("cannot read {}: {e}", archive.display())))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let io = |e: std::io::Error| bad(format!("unreadable archive: {e}"));
    let mut manifest: Option<Manifest> = None;
    let mut seen: Vec<String> = Vec::new();
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.into_owned();
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            return Err(bad(format!("entry {}: only regular files are accepted, not {kind:?}", path.display())));
        }
        let name = entry_name(&path)?;
        if seen.contains(&name) {
            return Err(bad(format!("entry {name} appears twice")));
        }
        seen.push(name.clone());
        let size = entry.size();
        let Some(m) = &manifest else {
            if name != MANIFEST {
                return Err(bad(format!("the first entry is {name}, not {MANIFEST}")));
            }
            if size > MAX_SMALL_FILE {
                return Err(bad(format!("{MANIFEST} is larger than {MAX_SMALL_FILE} bytes")));
            }
            let mut text = Vec::new();
            (&mut entry).take(MAX_SMALL_FILE).read_to_end(&mut text).map_err(io)?;
            let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(format!("bad {MANIFEST}: {e}")))?;
            check_manifest(&m)?;
            manifest = Some(m);
            continue;
        };
        let Some(want) = m.files.iter().find(|f| f.path == name) else {
            return Err(bad(format!("entry {name} is not in the manifest")));
        };
        if size != want.size {
            return Err(bad(format!("{name} has {size} bytes, the manifest says {}", want.size)));
        }
        let dest = staging.join(&name);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut out = create_private(&dest)?;
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            got += n as u64;
            out.write_all(&buf[..n]).map_err(|e| failed(format!("cannot write {}: {e}", dest.display())))?;
        }
        out.sync_all().map_err(|e| failed(format!("cannot write {}: {e}", dest.display())))?;
        let sha = hex::encode(hash.finish());
        if got != want.size {
            return Err(bad(format!("{name} ends after {got} of its {} bytes: the archive is truncated", want.size)));
        }
        if sha != want.sha256 {
            return Err(bad(format!("{name} does not match its checksum in the manifest (corrupt or altered)")));
        }
        #[cfg(unix)]
        if !PRIVATE.contains(&name.as_str()) {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644));
        }
    }
    let m = manifest.ok_or_else(|| bad(format!("no {MANIFEST}: not a traffix backup")))?;
    for f in &m.files {
        if !seen.contains(&f.path) {
            return Err(bad(format!("{} is in the manifest but not in the archive (truncated?)", f.path)));
        }
    }
    Ok(m)
}

/// A manifest this build can restore: its format, a schema not newer than this build's, and
/// every needed file listed once with a well-formed checksum.
fn check_manifest(m: &Manifest) -> Result<(), AdminError> {
    let bad = |m: String| AdminError::new("bad_archive", m);
    if m.format != FORMAT {
        return Err(bad(format!("archive format {} is not {FORMAT}: written by another traffix version", m.format)));
    }
    let last = crate::store::migrations::LAST_SCHEMA_VERSION;
    if m.schema_version > last {
        return Err(bad(format!(
            "the database has schema {} and this build reads up to {last}: restore it with traffix {} or newer",
            m.schema_version, m.traffix_version
        )));
    }
    for f in &m.files {
        if !FILES.contains(&f.path.as_str()) {
            return Err(bad(format!("the manifest lists {}, which no traffix backup holds", f.path)));
        }
        if m.files.iter().filter(|g| g.path == f.path).count() > 1 {
            return Err(bad(format!("the manifest lists {} twice", f.path)));
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("the manifest's checksum of {} is not a SHA-256", f.path)));
        }
    }
    for (need, what) in [
        (KEY, "the TLS key"),
        (JWT_SECRET, "the JWT secret"),
        (DB, "the database"),
        (CONFIG, "the config"),
        (CERT, "the certificate"),
    ] {
        if !m.files.iter().any(|f| f.path == need) {
            return Err(bad(format!("the archive lacks {what} ({need}): it cannot bring a server back")));
        }
    }
    Ok(())
}

/// Restores `archive` into `data_dir`: refuses a data directory a server uses, and a non-empty
/// one unless `force`; checks the whole archive before anything in `data_dir` is replaced.
pub fn restore(archive: &Path, data_dir: &Path, force: bool) -> Result<RestoreReport, AdminError> {
    if let Some(why) = live_server(data_dir) {
        return Err(AdminError::new(
            "in_use",
            format!("refusing to restore into {}: {why}; stop the server first", data_dir.display()),
        ));
    }
    let non_empty = std::fs::read_dir(data_dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if non_empty && !force {
        return Err(AdminError::new(
            "not_empty",
            format!(
                "{} is not empty; restore into a new directory, or give --force to replace its server files",
                data_dir.display()
            ),
        ));
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(data_dir).map_err(|e| failed(format!("cannot create {}: {e}", data_dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| failed(format!("cannot restrict {}: {e}", data_dir.display())))?;
    }
    let staging = data_dir.join(format!(".restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    b.create(&staging).map_err(|e| failed(format!("cannot create {}: {e}", staging.display())))?;
    let result = extract(archive, &staging).and_then(|m| {
        std::fs::create_dir_all(data_dir.join("tls")).map_err(|e| failed(format!("cannot create tls/: {e}")))?;
        let mut files = Vec::new();
        for name in FILES {
            std::fs::rename(staging.join(name), data_dir.join(name))
                .map_err(|e| failed(format!("cannot move {name} into place: {e}")))?;
            files.push(name.to_owned());
        }
        // A stopped server's leftovers would name a process or socket that is gone.
        let _ = std::fs::remove_file(data_dir.join("serve.pid"));
        let _ = std::fs::remove_file(data_dir.join(super::SOCKET_FILE));
        Ok(RestoreReport { data_dir: data_dir.display().to_string(), manifest: m, files })
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::*;

    /// A data directory with every file a backup holds, and its admin context.
    fn server_dir(dir: &Path) -> (AdminCtx, Sources) {
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        let g = crate::tls::generate_self_signed(&["localhost".into()]).unwrap();
        std::fs::write(dir.join(CERT), &g.cert_pem).unwrap();
        std::fs::write(dir.join(KEY), &g.key_pem).unwrap();
        std::fs::write(dir.join(JWT_SECRET), "ab".repeat(32)).unwrap();
        std::fs::write(dir.join(CONFIG), crate::config::EXAMPLE).unwrap();
        let store = Arc::new(Store::open(&dir.join(DB)).unwrap());
        let ctx = AdminCtx {
            store,
            public_address: "proxy.example.com:8443".into(),
            pin: g.pin,
            insecure_http: false,
            live: None,
            money: super::super::MoneyRules::default().shared(),
            shared_key_accounts: crate::config::TrustConfig::default().shared_key_accounts,
        };
        ctx.execute(super::super::UserAdd { name: "ann".into(), password: Some("pw-ann-123".into()), admin: false })
            .unwrap();
        let src = Sources {
            data_dir: dir.to_owned(),
            config: dir.join(CONFIG),
            cert: dir.join(CERT),
            key: dir.join(KEY),
            jwt_secret: dir.join(JWT_SECRET),
        };
        (ctx, src)
    }

    fn archive_of(dir: &Path) -> Vec<u8> {
        let (ctx, src) = server_dir(dir);
        let p = prepare(&ctx, &src, "test").unwrap();
        let out = p.write_tar(Vec::new()).unwrap();
        let snapshot = p.snapshot.clone();
        drop(p);
        assert!(!snapshot.exists(), "the snapshot is removed once written");
        out
    }

    /// An archive entry as a test wants it, hostile or not.
    #[derive(Clone)]
    struct Raw {
        name: String,
        kind: tar::EntryType,
        data: Vec<u8>,
    }

    fn entries(archive: &[u8]) -> Vec<Raw> {
        let mut a = tar::Archive::new(archive);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                Raw { name, kind: e.header().entry_type(), data }
            })
            .collect()
    }

    /// Writes entries with their names as raw bytes (no checks of the tar crate's own).
    fn assemble(raws: &[Raw]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for r in raws {
            let mut h = tar::Header::new_old();
            let name = &mut h.as_old_mut().name;
            name[..r.name.len()].copy_from_slice(r.name.as_bytes());
            h.set_size(r.data.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(r.kind);
            if r.kind == tar::EntryType::Symlink {
                h.as_old_mut().linkname[..11].copy_from_slice(b"/etc/shadow");
            }
            h.set_cksum();
            b.append(&h, r.data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn restore_bytes(archive: &[u8], dest: &Path, force: bool) -> Result<RestoreReport, AdminError> {
        let file = dest.with_extension("tar");
        std::fs::write(&file, archive).unwrap();
        restore(&file, dest, force)
    }

    fn with_manifest(raws: &mut [Raw], f: impl FnOnce(&mut Manifest)) {
        let mut m: Manifest = serde_json::from_slice(&raws[0].data).unwrap();
        f(&mut m);
        raws[0].data = serde_json::to_vec(&m).unwrap();
    }

    #[test]
    fn an_archive_restores_every_file_privately_and_the_database_opens() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = archive_of(&tmp.path().join("src"));
        let names: Vec<String> = entries(&archive).into_iter().map(|r| r.name).collect();
        assert_eq!(names, [MANIFEST, DB, CONFIG, CERT, KEY, JWT_SECRET]);
        let dest = tmp.path().join("dest");
        let report = restore_bytes(&archive, &dest, false).unwrap();
        assert_eq!(report.files, FILES);
        assert_eq!(report.manifest.schema_version, crate::store::migrations::LAST_SCHEMA_VERSION);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dest), 0o700);
        for f in [DB, CONFIG, KEY, JWT_SECRET] {
            assert_eq!(mode(&dest.join(f)), 0o600, "{f}");
            assert!(!std::fs::read(dest.join(f)).unwrap().is_empty());
        }
        for f in [KEY, JWT_SECRET, CERT, CONFIG] {
            assert_eq!(std::fs::read(dest.join(f)).unwrap(), std::fs::read(tmp.path().join("src").join(f)).unwrap());
        }
        let s = Store::open(&dest.join(DB)).unwrap();
        assert!(s.get_user("ann").unwrap().is_some());
        assert!(!dest.join(format!(".restore-{}", std::process::id())).exists(), "no staging left");
        // A second restore needs --force, which replaces the files.
        drop(s);
        let e = restore_bytes(&archive, &dest, false).unwrap_err();
        assert_eq!(e.error, "not_empty", "{e:?}");
        restore_bytes(&archive, &dest, true).unwrap();
    }

    #[test]
    fn hostile_and_broken_archives_are_refused_and_leave_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let good = entries(&archive_of(&tmp.path().join("src")));
        let entry = |name: &str, kind| Raw { name: name.into(), kind, data: b"x".to_vec() };
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut v = good.clone();
        v.push(entry("../evil", tar::EntryType::Regular));
        cases.push(("traversal", assemble(&v)));
        let mut v = good.clone();
        v.push(entry("tls/../../evil", tar::EntryType::Regular));
        cases.push(("traversal", assemble(&v)));
        let mut v = good.clone();
        v.push(entry("/etc/cron.d/evil", tar::EntryType::Regular));
        cases.push(("absolute path", assemble(&v)));
        let mut v = good.clone();
        v[4] = Raw { name: KEY.into(), kind: tar::EntryType::Symlink, data: vec![] };
        cases.push(("only regular files", assemble(&v)));
        let mut v = good.clone();
        v.insert(1, Raw { name: "tls".into(), kind: tar::EntryType::Directory, data: vec![] });
        cases.push(("only regular files", assemble(&v)));
        let mut v = good.clone();
        v.push(entry("extra.txt", tar::EntryType::Regular));
        cases.push(("not a file a traffix backup holds", assemble(&v)));
        let mut v = good.clone();
        v.push(good[5].clone());
        cases.push(("appears twice", assemble(&v)));
        let mut v = good.clone();
        v.swap(0, 1);
        cases.push(("not manifest.json", assemble(&v)));
        let mut v = good.clone();
        v[0].data = b"{not json".to_vec();
        cases.push(("bad manifest.json", assemble(&v)));
        let mut v = good.clone();
        with_manifest(&mut v, |m| m.format = 2);
        cases.push(("archive format 2", assemble(&v)));
        let mut v = good.clone();
        with_manifest(&mut v, |m| m.schema_version = 999);
        cases.push(("this build reads up to", assemble(&v)));
        let mut v = good.clone();
        with_manifest(&mut v, |m| m.files.retain(|f| f.path != KEY));
        v.retain(|r| r.name != KEY);
        cases.push(("lacks the TLS key", assemble(&v)));
        let mut v = good.clone();
        with_manifest(&mut v, |m| m.files.retain(|f| f.path != JWT_SECRET));
        v.retain(|r| r.name != JWT_SECRET);
        cases.push(("lacks the JWT secret", assemble(&v)));
        let mut v = good.clone();
        v.retain(|r| r.name != JWT_SECRET);
        cases.push(("not in the archive", assemble(&v)));
        let mut v = good.clone();
        let last = v[1].data.len() - 1;
        v[1].data[last] ^= 1;
        cases.push(("checksum", assemble(&v)));
        let mut v = good.clone();
        v[5].data.push(b'0');
        cases.push(("the manifest says", assemble(&v)));
        let whole = assemble(&good);
        cases.push(("truncated", whole[..whole.len() / 2].to_vec()));
        cases.push(("no manifest.json", Vec::new()));
        for (i, (says, archive)) in cases.iter().enumerate() {
            let dest = tmp.path().join(format!("d{i}"));
            let e = restore_bytes(archive, &dest, false).unwrap_err();
            assert!(e.reason.contains(says), "case {i}: expected {says:?}, got {e:?}");
            let left: Vec<_> = std::fs::read_dir(&dest).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert!(left.is_empty(), "case {i} ({says}) left {left:?}");
        }
        assert!(!tmp.path().join("evil").exists() && !Path::new("/etc/cron.d/evil").exists());
    }
}
