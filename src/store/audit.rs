//! The audit log: every admin action and every money movement not caused by traffic, with
//! actor, time, action, target, reason and the state before and after. Append-only.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::tables::{AUDIT, META};
use super::{Store, StoreError, from_json, to_json};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    #[serde(default)]
    pub seq: u64,
    pub time: u64,
    /// Who: `uid:0` for the local admin socket, `system` for init, later API users.
    pub actor: String,
    /// What, dotted: `user.credit`, `device.ban`…
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub before: Option<serde_json::Value>,
    #[serde(default)]
    pub after: Option<serde_json::Value>,
}

impl Store {
    /// Appends an entry with the next sequence number.
    pub fn append_audit(&self, mut entry: AuditEntry) -> Result<u64, StoreError> {
        let txn = self.write()?;
        {
            let mut meta = txn.open_table(META)?;
            let seq = meta.get("audit_seq")?.map(|v| v.value()).unwrap_or(0) + 1;
            meta.insert("audit_seq", seq)?;
            entry.seq = seq;
            txn.open_table(AUDIT)?.insert(seq, to_json(&entry)?.as_slice())?;
        }
        txn.commit()?;
        Ok(entry.seq)
    }

    /// The entries inside `window`, newest first.
    pub fn list_audit(&self, window: &super::Window) -> Result<Vec<AuditEntry>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(AUDIT)?;
        let mut out = Vec::new();
        for row in t.iter()?.rev() {
            if window.full(out.len()) {
                break;
            }
            let e: AuditEntry = from_json(row?.1.value())?;
            if window.admits(e.time) {
                out.push(e);
            }
        }
        Ok(out)
    }
}
