//! Durable state in one embedded redb file: users, devices, pairing codes, the ledger's
//! transfers and balances, the audit log.
//!
//! The methods are the storage interface: one call per business operation, each one write
//! transaction, domain types in and out (no redb types leak). A PostgreSQL backend later
//! implements the same calls. Hot counters never live only here or only in memory: the
//! services flush them through these calls.

mod audit;
mod corrections;
mod deposits;
mod devices;
mod holds;
mod invoices;
mod ledger;
mod logins;
pub mod migrations;
mod payouts;
mod quality;
mod settings;
mod subusers;
pub mod tables;
mod telegram;
mod usage;
mod users;
mod verify;
mod withdrawals;

use std::path::Path;

pub use audit::AuditEntry;
pub use corrections::{Correction, TransferRef};
pub use deposits::{
    ADMIN_PROVIDER, Deposit, DepositOutcome, DepositRequest, DepositReturn, ReturnKind, ReturnOutcome, ReturnRequest,
    deposit_transfer_id, valid_external_id,
};
pub use devices::{DeviceRecord, PairCode, PairError, SeenRow};
pub use holds::{Hold, HoldRequest};
pub use invoices::{INVOICE_GRACE_SECS, Invoice, InvoiceStatus, Settled};
pub use ledger::{Account, Transfer};
pub use logins::{ApiKey, KeyScope, RefreshError, TokenFamily};
pub use payouts::PayoutProfile;
pub use settings::{BillingSettings, PaymentSettings};
pub use subusers::SubUser;
pub use telegram::{Notice, NotifyPrefs, TelegramToken, TokenKind};
pub use usage::{
    Accrual, AccrualRow, AccrualWrite, FlushBatch, Posted, Progress, Recovered, SessionFilter, SessionRecord,
    UsageBucket,
};
pub use users::UserRecord;
pub use verify::{VerifyParams, VerifyReport};
pub use withdrawals::{Withdrawal, WithdrawalStatus, auto_amount};

/// Errors from the store. Callers branch on the variants that describe domain outcomes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    #[error("the database is in use by another process (is `traffix serve` running without its admin socket?)")]
    Locked,
    #[error("database schema version {found} is newer than this build supports ({supported}); upgrade traffix")]
    TooNew { found: u64, supported: u64 },
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The change contradicts one already made (e.g. reversing a transfer twice).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.into()) }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            e => StoreError::Db(e.into()),
        }
    }
}

/// The store. Cheap to share behind an `Arc`; redb serialises writers internally.
pub struct Store {
    db: redb::Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// Begins a write transaction the way every write must (SECURITY.md §4): two-phase commit and
/// quick repair, so a kill -9 leaves the last committed state and reopening stays fast.
pub(crate) fn begin_write(db: &redb::Database) -> Result<redb::WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_two_phase_commit(true);
    txn.set_quick_repair(true);
    Ok(txn)
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Which rows of a time-ordered list a reader wants: those from `since` up to `until` (Unix
/// seconds, both inclusive), keyed below `before` (a ledger `seq` or a session `id`: the cursor
/// of the next page, for the lists that have such keys), newest first, at most `limit` (all when
/// `None`). The CLI, the admin socket and the API all filter with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    #[serde(default)]
    pub since: Option<u64>,
    #[serde(default)]
    pub until: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Window {
    /// Whether it takes every row (no bounds, no cursor, no limit).
    pub fn is_all(&self) -> bool {
        *self == Window::default()
    }

    /// Whether something that happened at `t` is inside the window.
    pub fn admits(&self, t: u64) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }

    /// Whether a row keyed `key` comes after the cursor (is older than the page before).
    pub fn after_cursor(&self, key: u64) -> bool {
        self.before.is_none_or(|b| key < b)
    }

    /// Whether something that lasted from `start` to `end` (`None`: still going) overlaps it.
    pub fn overlaps(&self, start: u64, end: Option<u64>) -> bool {
        self.until.is_none_or(|u| start <= u) && self.since.is_none_or(|s| end.is_none_or(|e| e >= s))
    }

    /// Whether a list of `len` rows is full.
    pub fn full(&self, len: usize) -> bool {
        self.limit.is_some_and(|l| len >= l)
    }

    /// Keeps the rows inside the window, newest first, given them oldest first with their times.
    /// For lists without keys: `before` is not looked at (see [`Window::apply_keyed`]).
    pub fn apply<T>(&self, oldest_first: Vec<T>, time: impl Fn(&T) -> u64) -> Vec<T> {
        self.take(oldest_first.into_iter().rev().filter(|r| self.admits(time(r))))
    }

    /// [`Window::apply`] for rows with a cursor key, which `before` applies to.
    pub fn apply_keyed<T>(&self, oldest_first: Vec<T>, key: impl Fn(&T) -> u64, time: impl Fn(&T) -> u64) -> Vec<T> {
        self.take(oldest_first.into_iter().rev().filter(|r| self.after_cursor(key(r)) && self.admits(time(r))))
    }

    fn take<T>(&self, rows: impl Iterator<Item = T>) -> Vec<T> {
        rows.take(self.limit.unwrap_or(usize::MAX)).collect()
    }
}

/// Creates `path` for the owner only (mode 0600 from the start, never over an existing file).
pub(crate) fn create_private(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut open = std::fs::OpenOptions::new();
    open.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StoreError::AlreadyExists(path.display().to_string()))
        }
        Err(e) => Err(StoreError::Invalid(format!("cannot create {}: {e}", path.display()))),
    }
}

/// Copies the database file at `src` (held open by this process, so no other process writes it,
/// and no transaction running) to a new private file `dest`, creating its folder (mode 0700) if
/// needed.
fn copy_private(src: &Path, dest: &Path) -> Result<(), StoreError> {
    if let Some(dir) = dest.parent() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut out = create_private(dest)?;
    let copied =
        std::fs::File::open(src).and_then(|mut f| std::io::copy(&mut f, &mut out)).and_then(|_| out.sync_all());
    if let Err(e) = copied {
        let _ = std::fs::remove_file(dest);
        return Err(StoreError::Invalid(format!("cannot copy {} to {}: {e}", src.display(), dest.display())));
    }
    Ok(())
}

/// Copies the database at `path`, at schema `found`, to its pre-migration path.
fn pre_migration_copy(path: &Path, found: u64) -> Result<(), StoreError> {
    let dest = migrations::pre_migration_path(path, found, now_secs());
    copy_private(path, &dest)?;
    tracing::warn!(
        from = found, to = migrations::LAST_SCHEMA_VERSION, backup = %dest.display(),
        "the database schema is about to be upgraded: a copy of the database was taken first"
    );
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    /// A database about to be migrated is first copied to
    /// `backups/pre-migration-FROM-TO-TIME.redb` beside it (mode 0600), byte for byte as it was.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, crate::config::DEFAULT_STORE_CACHE_MB)
    }

    /// [`Store::open`] with a page cache of `cache_mb` MiB (`server.store_cache_mb`).
    pub fn open_with_cache(path: &Path, cache_mb: u64) -> Result<Store, StoreError> {
        let mut looked = false;
        if !path.exists() {
            // It will hold password hashes and proxy passwords: private from the first byte
            // (redb starts a new database in an empty file).
            drop(create_private(path)?);
        } else {
            looked = Store::copy_if_migrating(path)?;
        }
        let cache = usize::try_from(cache_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let db = redb::Builder::new().set_cache_size(cache).create(path)?;
        if !looked {
            // A new or empty file has nothing to copy. One a crash left is repaired only by a
            // write handle, so its copy is taken under that handle, after the repair; it carries
            // redb's in-use mark, so opening the copy repairs again.
            let found = migrations::version(&db)?;
            if migrations::needs_backup(found) {
                pre_migration_copy(path, found)?;
            }
        }
        migrations::migrate(&db)?;
        Ok(Store { db })
    }

    /// Reads the schema of the existing database at `path` through a read-only handle and, if
    /// this build will migrate it, copies the file first. Read-only, because a write handle
    /// marks the header as in use the moment it opens: a copy taken under it is not the file
    /// the old release left, and opening it is a repair. The read-only handle's shared lock
    /// keeps writers out while the bytes are copied (and a running server's lock refuses it:
    /// [`StoreError::Locked`]). `false` when a read-only handle cannot tell: an empty file, or
    /// one a crash left needing a repair.
    fn copy_if_migrating(path: &Path) -> Result<bool, StoreError> {
        let len = std::fs::metadata(path)
            .map_err(|e| StoreError::Invalid(format!("cannot read {}: {e}", path.display())))?
            .len();
        if len == 0 {
            return Ok(false);
        }
        let db = match redb::ReadOnlyDatabase::open(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::RepairAborted) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let found = migrations::version(&db)?;
        if migrations::needs_backup(found) {
            pre_migration_copy(path, found)?;
        }
        Ok(true)
    }

    /// Opens an existing database without migrating it (for checks that must change nothing),
    /// with the schema version it has. A database with an older schema answers only
    /// [`Store::schema_version`] safely.
    pub fn open_unmigrated(path: &Path) -> Result<(Store, u64), StoreError> {
        if !path.exists() {
            return Err(StoreError::NotFound(path.display().to_string()));
        }
        let db = redb::Database::open(path)?;
        let found = migrations::version(&db)?;
        if found > migrations::LAST_SCHEMA_VERSION {
            return Err(StoreError::TooNew { found, supported: migrations::LAST_SCHEMA_VERSION });
        }
        Ok((Store { db }, found))
    }

    /// Whether another process holds the database at `path` open (a running server).
    pub fn in_use(path: &Path) -> bool {
        path.exists() && matches!(redb::Database::open(path), Err(redb::DatabaseError::DatabaseAlreadyOpen))
    }

    fn write(&self) -> Result<redb::WriteTransaction, StoreError> {
        begin_write(&self.db)
    }

    /// A write transaction for a test to hold, which stops every other writer until dropped.
    #[cfg(test)]
    pub(crate) fn write_for_test(&self) -> Result<redb::WriteTransaction, StoreError> {
        self.write()
    }

    /// The schema version on disk.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        use redb::ReadableDatabase;
        let rtx = self.db.begin_read()?;
        Ok(rtx.open_table(tables::META)?.get("schema_version")?.map(|v| v.value()).unwrap_or(0))
    }

    /// Copies a consistent snapshot of the database to `dest` (a fresh file).
    pub fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        // The copy holds password hashes and proxy passwords: it is created for the owner only
        // (mode 0600), never over an existing file, and written through the handle that created
        // it (not reopened by name). A failed backup removes its partial file.
        let file = create_private(dest)?;
        let written = self.backup_into(file);
        if written.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        written
    }

    fn backup_into(&self, file: std::fs::File) -> Result<(), StoreError> {
        use redb::{ReadableDatabase, ReadableTable};
        let out = redb::Builder::new().create_with_backend(redb::backends::FileBackend::new(file)?)?;
        let rtx = self.db.begin_read()?;
        let wtx = begin_write(&out)?;
        macro_rules! copy {
            ($t:expr) => {{
                let src = rtx.open_table($t)?;
                let mut dst = wtx.open_table($t)?;
                for row in src.iter()? {
                    let (k, v) = row?;
                    dst.insert(k.value(), v.value())?;
                }
            }};
        }
        copy!(tables::META);
        copy!(tables::USERS);
        copy!(tables::DEVICES);
        copy!(tables::VIPS);
        copy!(tables::PAIR_CODES);
        copy!(tables::TRANSFERS);
        copy!(tables::TRANSFER_IDS);
        copy!(tables::BALANCES);
        copy!(tables::AUDIT);
        copy!(tables::SESSIONS);
        copy!(tables::ACCRUAL_CHUNKS);
        copy!(tables::HOLDS);
        copy!(tables::WITHDRAWALS);
        copy!(tables::USAGE);
        copy!(tables::ACCRUED);
        copy!(tables::REFRESH_TOKENS);
        copy!(tables::TOKEN_FAMILIES);
        copy!(tables::API_KEYS);
        copy!(tables::SUBUSERS);
        copy!(tables::SETTINGS);
        copy!(tables::DEPOSITS);
        copy!(tables::INVOICES);
        copy!(tables::PAYOUT_PROFILES);
        copy!(tables::NODE_QUALITY);
        copy!(tables::TELEGRAM_LINKS);
        copy!(tables::TELEGRAM_TOKENS);
        copy!(tables::NOTICES);
        copy!(tables::NOTIFY_PREFS);
        wtx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_bounds_times_inclusively_pages_by_key_and_overlaps_spans() {
        // Rows (key, time), oldest first.
        let rows: Vec<(u64, u64)> = (1..=6).map(|k| (k, 100 * k)).collect();
        let keys = |w: Window, keyed: bool| -> Vec<u64> {
            let out =
                if keyed { w.apply_keyed(rows.clone(), |r| r.0, |r| r.1) } else { w.apply(rows.clone(), |r| r.1) };
            out.iter().map(|r| r.0).collect()
        };
        assert_eq!(keys(Window::default(), true), [6, 5, 4, 3, 2, 1]);
        let w = Window { since: Some(200), until: Some(500), ..Window::default() };
        assert_eq!(keys(w, true), [5, 4, 3, 2], "both ends inclusive");
        assert_eq!(keys(Window { before: Some(4), limit: Some(1), ..w }, true), [3], "the next page");
        assert_eq!(keys(Window { before: Some(4), ..w }, false), [5, 4, 3, 2], "unkeyed lists have no cursor");
        assert!(!Window { before: Some(1), ..Window::default() }.is_all());
        // A span overlaps a window when it was open at some moment of it.
        let w = Window { since: Some(200), until: Some(300), ..Window::default() };
        assert!(w.overlaps(100, Some(200)) && w.overlaps(300, None) && w.overlaps(100, None));
        assert!(!w.overlaps(100, Some(199)) && !w.overlaps(301, Some(400)));
    }

    #[test]
    fn fresh_store_is_at_the_last_schema_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        {
            let s = Store::open(&p).unwrap();
            assert_eq!(s.schema_version().unwrap(), migrations::LAST_SCHEMA_VERSION);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "private from the start");
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), migrations::LAST_SCHEMA_VERSION);
    }

    /// A database written by schema v1 (tests/fixtures/store/v1.redb) opens, migrates to the
    /// current schema and keeps its users, devices and money.
    #[test]
    fn v1_fixture_opens_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.redb");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store/v1.redb"), &p).unwrap();
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), migrations::LAST_SCHEMA_VERSION);
        let u = s.get_user("fixture_user").unwrap().expect("fixture user");
        assert!(crate::auth::verify_password("fixture-password", u.password_hash.as_deref().unwrap()));
        assert_eq!(s.balance(&Account::User("fixture_user".into())).unwrap(), 1_230_000);
        let devices = s.list_devices().unwrap();
        assert_eq!((devices.len(), s.count_devices().unwrap()), (1, 1));
        assert_eq!(devices[0].vip, std::net::Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(devices[0].owner, "fixture_user");
        assert!(s.get_user("admin").unwrap().is_some_and(|a| a.admin));
    }

    /// A backup holds password hashes and proxy passwords: only its owner may read it.
    #[cfg(unix)]
    #[test]
    fn backups_are_private_and_never_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.redb")).unwrap();
        let dest = dir.path().join("backup.redb");
        s.backup(&dest).unwrap();
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Store::open(&dest).unwrap().schema_version().unwrap(), migrations::LAST_SCHEMA_VERSION);
        assert!(matches!(s.backup(&dest), Err(StoreError::AlreadyExists(_))));
    }

    /// A backup has every table the database has (a table left out of `backup_into` would be
    /// missing after a restore, and no migration would bring it back).
    #[test]
    fn a_backup_has_every_table() {
        use redb::{ReadableDatabase, TableHandle};
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("t.redb");
        drop(Store::open(&src).unwrap());
        let dest = dir.path().join("backup.redb");
        Store::open(&src).unwrap().backup(&dest).unwrap();
        let names = |p: &Path| -> Vec<String> {
            let db = redb::Database::open(p).unwrap();
            let mut v: Vec<String> =
                db.begin_read().unwrap().list_tables().unwrap().map(|t| t.name().to_owned()).collect();
            v.sort();
            v
        };
        let (want, got) = (names(&src), names(&dest));
        assert!(want.len() >= 25, "{want:?}");
        assert_eq!(got, want);
    }

    /// A database about to be migrated is copied first, privately, as it was.
    #[cfg(unix)]
    #[test]
    fn a_migration_takes_a_private_copy_of_the_database_first() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        let from = migrations::LAST_SCHEMA_VERSION - 1;
        {
            let s = Store::open(&p).unwrap();
            let txn = s.write().unwrap();
            txn.open_table(tables::META).unwrap().insert("schema_version", from).unwrap();
            txn.commit().unwrap();
        }
        assert!(!dir.path().join("backups").exists(), "no copy when nothing migrates");
        let before = std::fs::read(&p).unwrap();
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), migrations::LAST_SCHEMA_VERSION);
        drop(s);
        let copies: Vec<_> =
            std::fs::read_dir(dir.path().join("backups")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        let name = copies[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("pre-migration-{from}-{}-", migrations::LAST_SCHEMA_VERSION)), "{name}");
        assert!(name.ends_with(".redb"), "{name}");
        assert_eq!(std::fs::metadata(&copies[0]).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("backups")).unwrap().permissions().mode() & 0o777, 0o700);
        // The copy is the database as it was, before the upgrade: byte for byte (not with the
        // in-use mark a write handle puts in the header, which would make opening it a repair).
        assert!(std::fs::read(&copies[0]).unwrap() == before, "the copy differs from the file as it was");
        let (old, found) = Store::open_unmigrated(&copies[0]).unwrap();
        assert_eq!((found, old.schema_version().unwrap()), (from, from));
        // Reopening the upgraded database takes no further copy.
        drop(Store::open(&p).unwrap());
        assert_eq!(std::fs::read_dir(dir.path().join("backups")).unwrap().count(), 1);
    }

    /// A database a crash left (redb's in-use mark still set) cannot be read read-only: the
    /// write handle repairs it, and the copy is taken under that handle before migrating.
    #[test]
    fn a_database_left_by_a_crash_is_still_copied_before_migrating() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        let crashed = dir.path().join("crashed").join("t.redb");
        std::fs::create_dir(crashed.parent().unwrap()).unwrap();
        let from = migrations::LAST_SCHEMA_VERSION - 1;
        {
            let s = Store::open(&p).unwrap();
            let txn = s.write().unwrap();
            txn.open_table(tables::META).unwrap().insert("schema_version", from).unwrap();
            txn.commit().unwrap();
            // The file as a kill -9 leaves it: committed, but marked in use.
            std::fs::copy(&p, &crashed).unwrap();
        }
        assert!(matches!(redb::ReadOnlyDatabase::open(&crashed), Err(redb::DatabaseError::RepairAborted)));
        let s = Store::open(&crashed).unwrap();
        assert_eq!(s.schema_version().unwrap(), migrations::LAST_SCHEMA_VERSION);
        let copies: Vec<_> =
            std::fs::read_dir(crashed.parent().unwrap().join("backups")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        let (_, found) = Store::open_unmigrated(&copies[0]).unwrap();
        assert_eq!(found, from);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.redb");
        {
            let s = Store::open(&p).unwrap();
            let txn = s.write().unwrap();
            txn.open_table(tables::META).unwrap().insert("schema_version", 99).unwrap();
            txn.commit().unwrap();
        }
        assert!(matches!(Store::open(&p), Err(StoreError::TooNew { found: 99, .. })));
    }
}
