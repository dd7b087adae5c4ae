//! Schema versions and the migration steps between them. One function per step, committed in
//! the same write transaction as its version bump; a database newer than this build is refused.

use redb::{ReadableDatabase, WriteTransaction};

use super::StoreError;
use super::tables::*;

/// The schema this build writes.
pub const LAST_SCHEMA_VERSION: u64 = 3;

/// Brings the database to [`LAST_SCHEMA_VERSION`], one step per transaction.
pub fn migrate(db: &redb::Database) -> Result<u64, StoreError> {
    let current = {
        let rtx = db.begin_read()?;
        match rtx.open_table(META) {
            Ok(t) => t.get("schema_version")?.map(|v| v.value()).unwrap_or(0),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(e.into()),
        }
    };
    if current > LAST_SCHEMA_VERSION {
        return Err(StoreError::TooNew { found: current, supported: LAST_SCHEMA_VERSION });
    }
    for version in current + 1..=LAST_SCHEMA_VERSION {
        let txn = super::begin_write(db)?;
        match version {
            1 => migrate_to_v1(&txn)?,
            2 => migrate_to_v2(&txn)?,
            3 => migrate_to_v3(&txn)?,
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
    let totals = super::holds::accrued_by(&txn.open_table(ACCRUALS)?)?;
    let mut t = txn.open_table(ACCRUED)?;
    for (client, owed) in totals {
        t.insert(client.as_str(), owed)?;
    }
    Ok(())
}
