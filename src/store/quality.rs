//! The quality watchdog's record of each node (`node_quality`): the records that changed are
//! written after each evaluation, read back at start so flags, bans in progress and admin
//! overrides survive a restart; a device's record goes with the device. The record's type
//! belongs to the watchdog; the store keeps it as a JSON document.

use redb::{ReadableDatabase, ReadableTable};

use super::tables::{DEVICES, NODE_QUALITY};
use super::{Store, StoreError, from_json, to_json};
use crate::identity::DeviceId;

impl Store {
    /// Replaces the records of `rows` (one per device) in one transaction.
    pub fn put_quality<T: serde::Serialize>(&self, rows: &[(DeviceId, T)]) -> Result<(), StoreError> {
        let rows = rows.iter().map(|(id, rec)| Ok((*id, to_json(rec)?))).collect::<Result<Vec<_>, StoreError>>()?;
        self.put_quality_json(&rows).map(|_| ())
    }

    /// Replaces the records of `rows` (one per device, already JSON) in one transaction, and
    /// returns how many were written: a device that no longer exists (removed while its record
    /// was being written) gets none.
    pub fn put_quality_json(&self, rows: &[(DeviceId, Vec<u8>)]) -> Result<usize, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let txn = self.write()?;
        let mut written = 0;
        {
            let devices = txn.open_table(DEVICES)?;
            let mut t = txn.open_table(NODE_QUALITY)?;
            for (id, json) in rows {
                if devices.get(id.as_slice())?.is_some() {
                    t.insert(id.as_slice(), json.as_slice())?;
                    written += 1;
                }
            }
        }
        txn.commit()?;
        Ok(written)
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

    /// Pairs device `id` to bob.
    fn paired(s: &Store, id: DeviceId) {
        let code =
            crate::store::PairCode { user: "bob".into(), created_at: 1, expires_at: 1000, used: false, used_by: None };
        let hash = format!("h{}", id[0]);
        s.create_pair_code(&hash, &code).unwrap();
        let rec = crate::store::DeviceRecord::new(hex::encode(id), crate::identity::KeyAlg::Ed25519, hex::encode(id));
        s.pair_device(&hash, 2, rec).unwrap();
    }

    #[test]
    fn records_round_trip_are_replaced_and_go_with_their_device() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("q.redb")).unwrap();
        s.create_user(&crate::store::UserRecord::new("bob", "pw", 1)).unwrap();
        let a = [1u8; 16];
        let b = [2u8; 16];
        paired(&s, a);
        paired(&s, b);
        s.put_quality(&[(a, serde_json::json!({"state": "flagged"})), (b, serde_json::json!({"state": "healthy"}))])
            .unwrap();
        s.put_quality(&[(a, serde_json::json!({"state": "degraded"}))]).unwrap();
        let mut got: Vec<(DeviceId, serde_json::Value)> = s.list_quality().unwrap();
        got.sort_by_key(|r| r.0);
        assert_eq!(
            got,
            vec![(a, serde_json::json!({"state": "degraded"})), (b, serde_json::json!({"state": "healthy"}))]
        );
        // Removing a device removes its record; a write racing the removal brings none back, nor
        // one for a device never paired.
        s.remove_device(&a).unwrap();
        let got: Vec<(DeviceId, serde_json::Value)> = s.list_quality().unwrap();
        assert_eq!(got, vec![(b, serde_json::json!({"state": "healthy"}))]);
        let late = [(a, b"{}".to_vec()), ([9; 16], b"{}".to_vec()), (b, b"{\"state\":\"flagged\"}".to_vec())];
        assert_eq!(s.put_quality_json(&late).unwrap(), 1);
        let got: Vec<(DeviceId, serde_json::Value)> = s.list_quality().unwrap();
        assert_eq!(got, vec![(b, serde_json::json!({"state": "flagged"}))]);
    }
}
