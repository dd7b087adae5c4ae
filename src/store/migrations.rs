//! Schema versions and the migration steps between them. One function per step, committed in
//! the same write transaction as its version bump; a database newer than this build is refused.

use redb::{ReadableDatabase, WriteTransaction};

use super::StoreError;
use super::tables::*;

/// The schema this build writes.
pub const LAST_SCHEMA_VERSION: u64 = 9;

/// The schema version of a database (0: a new, empty one), open for writing or read-only.
pub fn version(db: &impl ReadableDatabase) -> Result<u64, StoreError> {
    let rtx = db.begin_read()?;
    match rtx.open_table(META) {
        Ok(t) => Ok(t.get("schema_version")?.map(|v| v.value()).unwrap_or(0)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Whether opening a database at schema `found` migrates data that exists (a new database has
/// nothing to lose; a newer one is refused).
pub fn needs_backup(found: u64) -> bool {
    found > 0 && found < LAST_SCHEMA_VERSION
}

/// Where the copy taken before migrating the database at `db` from schema `from` goes:
/// `backups/pre-migration-FROM-TO-TIME.redb` beside it, TIME as `YYYYMMDDTHHMMSSZ`.
pub fn pre_migration_path(db: &std::path::Path, from: u64, now: u64) -> std::path::PathBuf {
    let time: String = crate::units::rfc3339(now).chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let dir = db.parent().unwrap_or(std::path::Path::new("."));
    dir.join("backups").join(format!("pre-migration-{from}-{LAST_SCHEMA_VERSION}-{time}.redb"))
}

/// Brings the database to [`LAST_SCHEMA_VERSION`], one step per transaction.
pub fn migrate(db: &redb::Database) -> Result<u64, StoreError> {
    let current = version(db)?;
    if current > LAST_SCHEMA_VERSION {
        return Err(StoreError::TooNew { found: current, supported: LAST_SCHEMA_VERSION });
    }
    for version in current + 1..=LAST_SCHEMA_VERSION {
        let txn = super::begin_write(db)?;
        match version {
            1 => migrate_to_v1(&txn)?,
            2 => migrate_to_v2(&txn)?,
            3 => migrate_to_v3(&txn)?,
            4 => migrate_to_v4(&txn)?,
            5 => migrate_to_v5(&txn)?,
            6 => migrate_to_v6(&txn)?,
            7 => migrate_to_v7(&txn)?,
            8 => migrate_to_v8(&txn)?,
            9 => migrate_to_v9(&txn)?,
            _ => unreachable_step(version)?,
        }
        txn.open_table(META)?.insert("schema_version", version)?;
        txn.commit()?;
        tracing::info!(version, "store migrated");
    }
    Ok(LAST_SCHEMA_VERSION)
}

fn unreachable_step(version: u64) -> Result<(), StoreError> {
    Err(StoreError::Corrupt(format!("no migration to schema version {version}")))
}

/// v1: the initial schema — create every table.
fn migrate_to_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(USERS)?;
    txn.open_table(DEVICES)?;
    txn.open_table(VIPS)?;
    txn.open_table(PAIR_CODES)?;
    txn.open_table(TRANSFERS)?;
    txn.open_table(TRANSFER_IDS)?;
    txn.open_table(BALANCES)?;
    txn.open_table(AUDIT)?;
    Ok(())
}

/// v2: metering — the per-stream `sessions` table and the per-live-session `accruals`.
fn migrate_to_v2(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(SESSIONS)?;
    txn.open_table(ACCRUALS)?;
    Ok(())
}

/// v3: holds, withdrawals, the hourly usage roll-up and per-client accrued totals (built from
/// the accruals a v2 server left).
fn migrate_to_v3(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(HOLDS)?;
    txn.open_table(WITHDRAWALS)?;
    txn.open_table(USAGE)?;
    let totals = super::usage::accrued_by(&flat_accruals(&txn.open_table(ACCRUALS)?)?);
    let mut t = txn.open_table(ACCRUED)?;
    for (client, owed) in totals {
        t.insert(client.as_str(), owed)?;
    }
    Ok(())
}

/// v4: the REST API's refresh tokens, their login families and API keys; sub-users; settings
/// changed at run time.
fn migrate_to_v4(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(SUBUSERS)?;
    txn.open_table(SETTINGS)?;
    txn.open_table(REFRESH_TOKENS)?;
    txn.open_table(TOKEN_FAMILIES)?;
    txn.open_table(API_KEYS)?;
    Ok(())
}

/// v5: payments — deposit receipts (one per deposit transfer a v4 server made, as admin
/// credits), provider invoices, payout profiles.
fn migrate_to_v5(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(DEPOSITS)?;
    txn.open_table(INVOICES)?;
    txn.open_table(PAYOUT_PROFILES)?;
    let n = super::deposits::backfill_receipts(txn, super::corrections::REVERSAL_PREFIX)?;
    if n > 0 {
        tracing::info!(receipts = n, "receipts written for the deposits made before v5");
    }
    Ok(())
}

/// v6: the quality watchdog's summary of each node (`node_quality`).
fn migrate_to_v6(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(NODE_QUALITY)?;
    Ok(())
}

/// v7: device trust — every device gets a trust verdict. Devices paired before had their chain
/// made for another challenge, so it cannot be judged now: level `none`, saying so when a chain
/// was stored. (Self-contained: renumber freely if another migration lands first.)
fn migrate_to_v7(txn: &WriteTransaction) -> Result<(), StoreError> {
    let n = super::devices::backfill_trust(txn)?;
    if n > 0 {
        tracing::info!(devices = n, "trust levels set for the devices paired before v7");
    }
    Ok(())
}

/// v8: the Telegram bot — links of Telegram ids to users (from the `telegram_id` a user record
/// may already hold), one-time codes, the notification inbox and preferences.
fn migrate_to_v8(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(TELEGRAM_TOKENS)?;
    txn.open_table(NOTICES)?;
    txn.open_table(NOTIFY_PREFS)?;
    let mut links = txn.open_table(TELEGRAM_LINKS)?;
    let users = txn.open_table(USERS)?;
    for row in redb::ReadableTable::iter(&users)? {
        let (name, v) = row?;
        let u: super::UserRecord = super::from_json(v.value())?;
        if let Some(id) = u.telegram_id {
            links.insert(id, name.value())?;
        }
    }
    Ok(())
}

/// v9: accrual rows packed 64 session ids to a chunk (`accrual_chunks`): a flush rewrites one
/// B-tree entry per chunk instead of one per live session. The rows a v8 server left (a crash,
/// to be posted at the next start) move there, and the per-session table goes.
fn migrate_to_v9(txn: &WriteTransaction) -> Result<(), StoreError> {
    let rows = flat_accruals(&txn.open_table(ACCRUALS)?)?;
    let writes: Vec<_> =
        rows.into_iter().map(|a| super::usage::AccrualWrite::Keep { session: a.session, row: a.encode() }).collect();
    super::usage::write_accruals(&mut txn.open_table(ACCRUAL_CHUNKS)?, &writes)?;
    txn.delete_table(ACCRUALS)?;
    Ok(())
}

/// The rows of the per-session accrual table of schemas 2–8 (JSON or compact); a row whose
/// session is not its key is corruption (it would move to another session).
fn flat_accruals(t: &impl redb::ReadableTable<u64, &'static [u8]>) -> Result<Vec<super::usage::Accrual>, StoreError> {
    t.iter()?
        .map(|r| {
            let (k, v) = r?;
            let a = super::usage::Accrual::decode(v.value())?;
            if a.session != k.value() {
                return Err(StoreError::Corrupt(format!("accrual row {} holds session {}", k.value(), a.session)));
            }
            Ok(a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::rules::{Carry, Charge};
    use crate::money::Micros;
    use crate::store::{Accrual, Store, to_json};

    /// A v2 database left accruals (a crash) and no per-client totals: v3 builds them.
    #[test]
    fn v3_builds_accrued_totals_from_v2_accruals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.redb");
        {
            let s = Store::open(&p).unwrap();
            let txn = s.write().unwrap();
            {
                let mut a = txn.open_table(ACCRUALS).unwrap();
                for (session, client, owner, debit) in
                    [(1, "ann", "bo", 100), (2, "ann", "bo", 50), (3, "bo", "bo", 10)]
                {
                    let pending = Charge {
                        client_debit: Micros(debit),
                        node_credit: Micros(debit * 7 / 10),
                        platform_fee: Micros(debit - debit * 7 / 10),
                    };
                    let row = Accrual {
                        session,
                        client: client.into(),
                        owner: owner.into(),
                        pending,
                        carry: Carry::default(),
                        posts: 0,
                        progress: None,
                    };
                    a.insert(session, to_json(&row).unwrap().as_slice()).unwrap();
                }
            }
            txn.delete_table(ACCRUED).unwrap();
            txn.open_table(META).unwrap().insert("schema_version", 2).unwrap();
            txn.commit().unwrap();
        }
        let s = Store::open(&p).unwrap();
        let mut totals: Vec<(String, i64)> = s.accrued_by_client().unwrap().into_iter().collect();
        totals.sort();
        // bo used its own node: it owes only the fee.
        assert_eq!(totals, vec![("ann".to_owned(), 150), ("bo".to_owned(), 3)]);
        // v9 moved the rows into chunks and dropped the per-session table.
        let rtx = redb::ReadableDatabase::begin_read(&s.db).unwrap();
        let rows = crate::store::usage::all_accruals(&rtx.open_table(ACCRUAL_CHUNKS).unwrap()).unwrap();
        assert_eq!(rows.iter().map(|a| a.session).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(rows[0].pending.client_debit, Micros(100), "JSON rows of v2 read and re-encoded");
        assert!(rtx.open_table(ACCRUALS).is_err(), "the v2–v8 table is gone");
    }

    /// A v5 database whose users carry a Telegram id (set before the bot existed) gets their
    /// links in v8, so the bot finds them.
    #[test]
    fn v8_links_the_telegram_ids_users_already_had() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.redb");
        {
            let s = Store::open(&p).unwrap();
            let mut u = crate::store::UserRecord::new("ann", "pw", 1);
            u.telegram_id = Some(77);
            s.create_user(&u).unwrap();
            s.create_user(&crate::store::UserRecord::new("bo", "pw", 1)).unwrap();
            let txn = s.write().unwrap();
            txn.delete_table(TELEGRAM_LINKS).unwrap();
            txn.open_table(META).unwrap().insert("schema_version", 7).unwrap();
            txn.commit().unwrap();
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), LAST_SCHEMA_VERSION);
        assert_eq!(s.telegram_user(77).unwrap().map(|u| u.name), Some("ann".into()));
        assert!(s.telegram_user(78).unwrap().is_none());
    }

    /// A v4 database's deposits (admin credits, one reversed) get receipts in v5, and the
    /// ledger verifies afterwards.
    #[test]
    fn v5_writes_receipts_for_the_deposits_of_a_v4_database() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.redb");
        {
            let s = Store::open(&p).unwrap();
            s.create_user(&crate::store::UserRecord::new("ann", "x", 0)).unwrap();
            s.deposit("ann", Micros(5_000_000), "deposit:stripe:1", "top-up", 1).unwrap();
            s.deposit("ann", Micros(2_000_000), "admin-credit:ab", "gift", 2).unwrap();
            s.reverse(&crate::store::TransferRef::Id("admin-credit:ab".into()), "oops", 3).unwrap();
            let txn = s.write().unwrap();
            txn.delete_table(DEPOSITS).unwrap();
            txn.delete_table(INVOICES).unwrap();
            txn.delete_table(PAYOUT_PROFILES).unwrap();
            txn.open_table(META).unwrap().insert("schema_version", 4).unwrap();
            txn.commit().unwrap();
        }
        let s = Store::open(&p).unwrap();
        let list = s.list_deposits(Some("ann")).unwrap();
        let got: Vec<(&str, &str, &str)> =
            list.iter().map(|d| (d.provider.as_str(), d.external_id.as_str(), d.status())).collect();
        assert_eq!(got, [("admin", "stripe:1", "credited"), ("admin", "admin-credit:ab", "reversed")]);
        let params = crate::store::VerifyParams { max_overdraft: Micros(0), overdraft_bytes: 0 };
        let r = s.verify(&params).unwrap();
        assert!(r.ok, "{:?}", r.problems);
    }

    /// A v6 device (with and without a chain) gets trust `none` in v7, with a reason when its
    /// chain could not be judged; the v7 verdict of a newer device is kept.
    #[test]
    fn v7_sets_trust_none_for_devices_paired_before() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.redb");
        let rec = |id: &str, chain: bool| crate::store::DeviceRecord {
            attestation: if chain { vec!["3000".into()] } else { vec![] },
            ..crate::store::DeviceRecord::new(id.into(), crate::identity::KeyAlg::EcdsaP256, "04".into())
        };
        {
            let s = Store::open(&p).unwrap();
            s.create_user(&crate::store::UserRecord::new("bo", "x", 0)).unwrap();
            for (i, (id, chain)) in
                [("00112233445566778899aabbccddeeff", true), ("ffeeddccbbaa99887766554433221100", false)]
                    .into_iter()
                    .enumerate()
            {
                let code = format!("code{i}");
                s.create_pair_code(
                    &code,
                    &crate::store::PairCode {
                        user: "bo".into(),
                        created_at: 1,
                        expires_at: 1_000_000,
                        used: false,
                        used_by: None,
                    },
                )
                .unwrap();
                s.pair_device(&code, 2, rec(id, chain)).unwrap();
            }
            let txn = s.write().unwrap();
            txn.open_table(META).unwrap().insert("schema_version", 6).unwrap();
            txn.commit().unwrap();
        }
        let s = Store::open(&p).unwrap();
        let mut devices = s.list_devices().unwrap();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        let with_chain = devices[0].trust.clone().unwrap();
        assert_eq!(with_chain.level, crate::identity::TrustLevel::None);
        assert!(with_chain.reasons[0].contains("pair it again"), "{:?}", with_chain.reasons);
        assert_eq!(devices[1].trust, Some(crate::trust::Verdict::default()));
    }
}
