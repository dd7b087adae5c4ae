//! The quality watchdog's record of each node (`node_quality`): written whole every evaluation,
//! read back at start so flags, bans in progress and admin overrides survive a restart. The
//! record's type belongs to the watchdog; the store keeps it as a JSON document.

use redb::{ReadableDatabase, ReadableTable};

use super::tables::NODE_QUALITY;
use super::{Store, StoreError, from_json, to_json};
use crate::identity::DeviceId;

impl Store {
    /// Replaces the records of `rows` (one per device) in one transaction.
    pub fn put_quality<T: serde::Serialize>(&self, rows: &[(DeviceId, T)]) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut t = txn.open_table(NODE_QUALITY)?;
            for (id, rec) in rows {
                t.insert(id.as_slice(), to_json(rec)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Every record; rows that no longer parse are skipped with a warning.
    pub fn list_quality<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<(DeviceId, T)>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(NODE_QUALITY)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let Ok(id) = DeviceId::try_from(k.value()) else { continue };
            match from_json(v.value()) {
                Ok(rec) => out.push((id, rec)),
                Err(e) => {
                    tracing::warn!(device = %hex::encode(id), error = %e, "skipping an unreadable quality record")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("q.redb")).unwrap();
        let a = [1u8; 16];
        let b = [2u8; 16];
        s.put_quality(&[(a, serde_json::json!({"state": "flagged"})), (b, serde_json::json!({"state": "healthy"}))])
            .unwrap();
        s.put_quality(&[(a, serde_json::json!({"state": "degraded"}))]).unwrap();
        let mut got: Vec<(DeviceId, serde_json::Value)> = s.list_quality().unwrap();
        got.sort_by_key(|r| r.0);
        assert_eq!(
            got,
            vec![(a, serde_json::json!({"state": "degraded"})), (b, serde_json::json!({"state": "healthy"}))]
        );
    }
}
