//! Holds: money reserved on a client's balance for its live streams (SECURITY.md §4.4). A hold
//! is not a transfer: it lowers what the client can spend or withdraw (`available = posted −
//! accrued − held`) until usage is accrued against it or it is released. Holds belong to a
//! running server: every start expires the holds a previous run left.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::ledger::Account;
use super::tables::{ACCRUED, BALANCES, HOLDS};
use super::{Store, StoreError, from_json, to_json};
use crate::money::Micros;

/// One reservation (one per client budget of the running server).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hold {
    pub client: String,
    /// Reserved and not yet accrued, micro-units.
    pub amount: u64,
    /// When the hold was first taken, and last extended (Unix seconds).
    pub since: u64,
    pub extended: u64,
}

/// A request to reserve up to `want` more for hold `hold` of `client`.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub hold: u64,
    pub client: String,
    pub want: Micros,
}

/// What `client`'s live sessions owe (the maintained total).
pub(crate) fn accrued_of(t: &impl ReadableTable<&'static str, i64>, client: &str) -> Result<i64, StoreError> {
    Ok(t.get(client)?.map(|v| v.value()).unwrap_or(0))
}

/// Live holds per client.
pub(crate) fn held_by(t: &impl ReadableTable<u64, &'static [u8]>) -> Result<HashMap<String, i64>, StoreError> {
    let mut out: HashMap<String, i64> = HashMap::new();
    for row in t.iter()? {
        let h: Hold = from_json(row?.1.value())?;
        *out.entry(h.client).or_default() += h.amount as i64;
    }
    Ok(out)
}

/// What `client` may spend or withdraw, inside `txn`: posted − accrued − held.
pub(crate) fn available_in(txn: &WriteTransaction, client: &str) -> Result<i64, StoreError> {
    let posted = txn.open_table(BALANCES)?.get(Account::User(client.to_owned()).key().as_str())?.map(|v| v.value());
    let accrued = accrued_of(&txn.open_table(ACCRUED)?, client)?;
    let held = held_by(&txn.open_table(HOLDS)?)?.get(client).copied().unwrap_or(0);
    Ok(posted.unwrap_or(0) - accrued - held)
}

/// Lowers holds by what was accrued against them and deletes released ones, inside `txn`.
pub(crate) fn settle_holds(txn: &WriteTransaction, used: &[(u64, u64)], release: &[u64]) -> Result<(), StoreError> {
    let mut t = txn.open_table(HOLDS)?;
    for &(id, amount) in used {
        let row: Option<Hold> = t.get(id)?.map(|v| from_json(v.value())).transpose()?;
        if let Some(mut h) = row {
            h.amount = h.amount.saturating_sub(amount);
            t.insert(id, to_json(&h)?.as_slice())?;
        }
    }
    for id in release {
        t.remove(id)?;
    }
    Ok(())
}

/// Expires every hold inside `txn` (at start: the streams they were for are gone).
pub(crate) fn expire_holds_in(txn: &WriteTransaction) -> Result<usize, StoreError> {
    let mut t = txn.open_table(HOLDS)?;
    let n = t.len()? as usize;
    t.retain(|_, _| false)?;
    Ok(n)
}

impl Store {
    /// Reserves money for live streams, all requests in one write transaction (group commit).
    /// Each grant is `min(want, available)` of its client, 0 when nothing is available; grants
    /// never exceed the client's available money, so all holds together never exceed it.
    pub fn take_holds(&self, reqs: &[HoldRequest], now: u64) -> Result<Vec<Micros>, StoreError> {
        let txn = self.write()?;
        let mut held = held_by(&txn.open_table(HOLDS)?)?;
        let mut grants = Vec::with_capacity(reqs.len());
        {
            let accrued_t = txn.open_table(ACCRUED)?;
            let balances = txn.open_table(BALANCES)?;
            let mut holds = txn.open_table(HOLDS)?;
            for r in reqs {
                let posted = balances.get(Account::User(r.client.clone()).key().as_str())?.map(|v| v.value());
                let h = held.entry(r.client.clone()).or_default();
                let available = posted.unwrap_or(0) - accrued_of(&accrued_t, &r.client)? - *h;
                let grant = if available > 0 { r.want.0.min(available.unsigned_abs()) } else { 0 };
                let row: Option<Hold> = holds.get(r.hold)?.map(|v| from_json(v.value())).transpose()?;
                let mut row = row.unwrap_or(Hold { client: r.client.clone(), amount: 0, since: now, extended: now });
                if row.client != r.client {
                    return Err(StoreError::Invalid(format!("hold {} belongs to {}", r.hold, row.client)));
                }
                row.amount =
                    row.amount.checked_add(grant).ok_or_else(|| StoreError::Invalid("hold overflow".into()))?;
                row.extended = now;
                holds.insert(r.hold, to_json(&row)?.as_slice())?;
                *h += grant as i64;
                grants.push(Micros(grant));
            }
        }
        txn.commit()?;
        Ok(grants)
    }

    /// Every live hold, by id.
    pub fn list_holds(&self) -> Result<Vec<(u64, Hold)>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(HOLDS)?;
        t.iter()?
            .map(|r| {
                let (k, v) = r?;
                Ok((k.value(), from_json(v.value())?))
            })
            .collect()
    }

    /// Live holds per client, in micro-units.
    pub fn held_by_client(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rtx = self.db.begin_read()?;
        held_by(&rtx.open_table(HOLDS)?)
    }

    /// What `client` may spend or withdraw: posted − unposted accruals − live holds.
    pub fn available(&self, client: &str) -> Result<i64, StoreError> {
        let rtx = self.db.begin_read()?;
        let posted = rtx.open_table(BALANCES)?.get(Account::User(client.to_owned()).key().as_str())?.map(|v| v.value());
        let accrued = accrued_of(&rtx.open_table(ACCRUED)?, client)?;
        let held = held_by(&rtx.open_table(HOLDS)?)?.get(client).copied().unwrap_or(0);
        Ok(posted.unwrap_or(0) - accrued - held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserRecord;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("h.redb")).unwrap();
        (dir, s)
    }

    fn user(s: &Store, name: &str) {
        s.create_user(&UserRecord::new(name, "x", 0)).unwrap();
    }

    #[test]
    fn grants_never_exceed_what_is_available_and_expire() {
        let (_d, s) = store();
        user(&s, "alice");
        s.deposit("alice", Micros(3_000_000), "d1", "t", 1).unwrap();
        let req = |hold, want| HoldRequest { hold, client: "alice".into(), want: Micros(want) };
        let g = s.take_holds(&[req(1, 2_000_000), req(2, 2_000_000), req(1, 5)], 1).unwrap();
        assert_eq!(g, vec![Micros(2_000_000), Micros(1_000_000), Micros(0)]);
        assert_eq!(s.available("alice").unwrap(), 0);
        let txn = s.write().unwrap();
        settle_holds(&txn, &[(1, 500_000)], &[2]).unwrap();
        txn.commit().unwrap();
        assert_eq!(
            s.list_holds().unwrap(),
            vec![(1, Hold { client: "alice".into(), amount: 1_500_000, since: 1, extended: 1 })]
        );
        assert_eq!(s.available("alice").unwrap(), 1_500_000);
        assert_eq!(s.recover_usage(3, "restart").unwrap().holds, 1);
        assert_eq!(s.available("alice").unwrap(), 3_000_000);
        assert_eq!(
            s.take_holds(&[req(3, 1), HoldRequest { hold: 3, client: "bob".into(), want: Micros(1) }], 2)
                .unwrap_err()
                .to_string(),
            "hold 3 belongs to alice"
        );
    }
}
