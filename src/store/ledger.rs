//! The ledger's storage: immutable double-entry transfers with a gap-free sequence, and
//! balances maintained in the same write transaction. (Metering, holds and payouts build on
//! this in the billing module.)

use redb::{ReadableDatabase, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{BALANCES, META, TRANSFER_IDS, TRANSFERS};
use super::{Store, StoreError, from_json, to_json};
use crate::money::Micros;

/// A ledger account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Account {
    User(String),
    ExternalDeposits,
    ExternalPayouts,
    PlatformFees,
    /// Money of withdrawal requests awaiting an admin's decision.
    PendingPayouts,
    /// The operator's side of adjustments (corrections by hand, with a reason).
    Adjustments,
}

impl Account {
    pub fn key(&self) -> String {
        match self {
            Account::User(n) => format!("user:{n}"),
            Account::ExternalDeposits => "external:deposits".into(),
            Account::ExternalPayouts => "external:payouts".into(),
            Account::PlatformFees => "platform:fees".into(),
            Account::PendingPayouts => "pending:payouts".into(),
            Account::Adjustments => "platform:adjustments".into(),
        }
    }

    /// The keys of every system account (all accounts that belong to no user).
    pub fn system_keys() -> [String; 5] {
        [
            Account::ExternalDeposits.key(),
            Account::ExternalPayouts.key(),
            Account::PlatformFees.key(),
            Account::PendingPayouts.key(),
            Account::Adjustments.key(),
        ]
    }
}

/// One immutable movement of money from `debit` to `credit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Transfer {
    pub seq: u64,
    /// Deterministic id of the business event (idempotency key).
    pub id: String,
    pub debit: String,
    pub credit: String,
    pub amount: Micros,
    pub kind: String,
    pub reference: String,
    pub time: u64,
}

pub(crate) fn ensure_account(txn: &WriteTransaction, account: &Account) -> Result<(), StoreError> {
    let mut t = txn.open_table(BALANCES)?;
    let key = account.key();
    if t.get(key.as_str())?.is_none() {
        t.insert(key.as_str(), 0i64)?;
    }
    Ok(())
}

/// Appends a transfer and moves the balances, inside `txn`. Returns the stored transfer; a
/// replay of the same id with the same payload returns the original, a different payload fails.
pub(crate) fn post(txn: &WriteTransaction, tr: Transfer) -> Result<Transfer, StoreError> {
    Postings::open(txn)?.post(tr)
}

/// The ledger's tables, open in one write transaction, for many postings: opening and closing
/// four tables cost more than the posting itself (a flush that posts 10,000 ended sessions made
/// 100,000 table opens). While it lives, nothing else in the transaction may open them.
pub(crate) struct Postings<'txn> {
    ids: Table<'txn, &'static str, u64>,
    meta: Table<'txn, &'static str, u64>,
    balances: Table<'txn, &'static str, i64>,
    transfers: Table<'txn, u64, &'static [u8]>,
}

impl<'txn> Postings<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Postings<'txn>, StoreError> {
        Ok(Postings {
            ids: txn.open_table(TRANSFER_IDS)?,
            meta: txn.open_table(META)?,
            balances: txn.open_table(BALANCES)?,
            transfers: txn.open_table(TRANSFERS)?,
        })
    }

    /// [`post`], in the open tables.
    pub(crate) fn post(&mut self, mut tr: Transfer) -> Result<Transfer, StoreError> {
        if let Some(seq) = self.ids.get(tr.id.as_str())?.map(|v| v.value()) {
            let old: Transfer = match self.transfers.get(seq)? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::Corrupt(format!("transfer id {} points at missing seq {seq}", tr.id))),
            };
            let same =
                old.debit == tr.debit && old.credit == tr.credit && old.amount == tr.amount && old.kind == tr.kind;
            if !same {
                tracing::error!(id = %tr.id, "transfer id replayed with a different payload");
                return Err(StoreError::Invalid(format!("transfer {} already exists with a different payload", tr.id)));
            }
            return Ok(old);
        }
        if tr.debit == tr.credit {
            return Err(StoreError::Invalid("a transfer needs two different accounts".into()));
        }
        let amount = i64::try_from(tr.amount.0).map_err(|_| StoreError::Invalid("amount too large".into()))?;
        let seq = self.meta.get("transfer_seq")?.map(|v| v.value()).unwrap_or(0) + 1;
        self.meta.insert("transfer_seq", seq)?;
        tr.seq = seq;
        for (acct, delta) in [(&tr.debit, -amount), (&tr.credit, amount)] {
            let cur = self.balances.get(acct.as_str())?.map(|v| v.value()).unwrap_or(0);
            let new =
                cur.checked_add(delta).ok_or_else(|| StoreError::Invalid(format!("balance overflow on {acct}")))?;
            self.balances.insert(acct.as_str(), new)?;
        }
        self.transfers.insert(seq, to_json(&tr)?.as_slice())?;
        self.ids.insert(tr.id.as_str(), seq)?;
        Ok(tr)
    }
}

impl Store {
    /// The posted balance of an account in micro-units.
    pub fn balance(&self, account: &Account) -> Result<i64, StoreError> {
        let rtx = self.db.begin_read()?;
        Ok(rtx.open_table(BALANCES)?.get(account.key().as_str())?.map(|v| v.value()).unwrap_or(0))
    }

    /// Transfers in sequence order, optionally only those touching `account`.
    pub fn list_transfers(&self, account: Option<&Account>) -> Result<Vec<Transfer>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(TRANSFERS)?;
        let key = account.map(Account::key);
        let mut out = Vec::new();
        for row in t.iter()? {
            let tr: Transfer = from_json(row?.1.value())?;
            if key.as_ref().is_none_or(|k| &tr.debit == k || &tr.credit == k) {
                out.push(tr);
            }
        }
        Ok(out)
    }

    /// All balances, by account key.
    pub fn balances(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(BALANCES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_is_idempotent_and_conserves_money() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("l.redb")).unwrap();
        let u = crate::store::UserRecord::new("alice", "x", 0);
        s.create_user(&u).unwrap();
        let (_, b) = s.deposit("alice", Micros(5_000_000), "dep:1", "test", 1).unwrap();
        assert_eq!(b, 5_000_000);
        let (_, b) = s.deposit("alice", Micros(5_000_000), "dep:1", "test", 2).unwrap();
        assert_eq!(b, 5_000_000, "a replayed deposit credits once");
        assert!(s.deposit("alice", Micros(7), "dep:1", "test", 3).is_err(), "same id, other payload");
        let sum: i64 = s.balances().unwrap().iter().map(|(_, v)| v).sum();
        assert_eq!(sum, 0);
        assert_eq!(s.list_transfers(Some(&Account::User("alice".into()))).unwrap().len(), 1);
    }
}
