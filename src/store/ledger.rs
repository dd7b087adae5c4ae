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
    Postings::with(txn, |p| p.post(tr))
}

/// The ledger's tables, open in one write transaction, for many postings: opening and closing
/// four tables cost more than the posting itself (a flush that posts 10,000 ended sessions made
/// 100,000 table opens). The transfer sequence and the balances it moves are kept in memory and
/// written once, when [`Postings::with`]'s closure has returned (a flush's 334 postings moved
/// ~150 balances 668 times), so no caller can leave transfers written without their balances.
/// While it lives, nothing else in the transaction may open its tables.
pub(crate) struct Postings<'txn> {
    ids: Table<'txn, &'static str, u64>,
    meta: Table<'txn, &'static str, u64>,
    balances: Table<'txn, &'static str, i64>,
    transfers: Table<'txn, u64, &'static [u8]>,
    /// The last sequence number given out, once one was.
    seq: Option<u64>,
    /// Every balance moved so far, as it now stands.
    moved: std::collections::HashMap<String, i64>,
}

impl<'txn> Postings<'txn> {
    /// Runs `f` with the ledger's tables open, then writes the sequence and the balances its
    /// postings moved. When `f` fails nothing is finished: the caller drops the transaction.
    pub(crate) fn with<T>(
        txn: &'txn WriteTransaction,
        f: impl FnOnce(&mut Postings<'txn>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut p = Postings::open(txn)?;
        let out = f(&mut p)?;
        p.finish()?;
        Ok(out)
    }

    fn open(txn: &'txn WriteTransaction) -> Result<Postings<'txn>, StoreError> {
        Ok(Postings {
            ids: txn.open_table(TRANSFER_IDS)?,
            meta: txn.open_table(META)?,
            balances: txn.open_table(BALANCES)?,
            transfers: txn.open_table(TRANSFERS)?,
            seq: None,
            moved: std::collections::HashMap::new(),
        })
    }

    /// Writes the sequence and the balances the postings moved.
    fn finish(mut self) -> Result<(), StoreError> {
        if let Some(seq) = self.seq {
            self.meta.insert("transfer_seq", seq)?;
        }
        for (acct, balance) in &self.moved {
            self.balances.insert(acct.as_str(), *balance)?;
        }
        Ok(())
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
        let last = match self.seq {
            Some(s) => s,
            None => self.meta.get("transfer_seq")?.map(|v| v.value()).unwrap_or(0),
        };
        let seq = last + 1;
        // Both legs are checked before either moves, and the sequence and balances kept in memory
        // move only once the transfer is written: a posting refused for its amount leaves nothing
        // behind (a storage error leaves the transaction to be dropped, as every caller does).
        let mut legs = [(tr.debit.as_str(), -amount, 0i64), (tr.credit.as_str(), amount, 0i64)];
        for (acct, delta, new) in &mut legs {
            let cur = match self.moved.get(*acct) {
                Some(b) => *b,
                None => self.balances.get(*acct)?.map(|v| v.value()).unwrap_or(0),
            };
            *new = cur.checked_add(*delta).ok_or_else(|| StoreError::Invalid(format!("balance overflow on {acct}")))?;
        }
        tr.seq = seq;
        self.transfers.insert(seq, to_json(&tr)?.as_slice())?;
        self.ids.insert(tr.id.as_str(), seq)?;
        for (acct, _, new) in legs {
            self.moved.insert(acct.to_owned(), new);
        }
        self.seq = Some(seq);
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

    /// Many postings in one `Postings` keep the sequence and the balances in memory and write
    /// them when its closure returns: the same result as posting each alone, a refused one moving nothing.
    #[test]
    fn postings_write_sequence_and_balances_once_at_finish() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("l.redb")).unwrap();
        let tr = |id: &str, debit: &str, credit: &str, amount: u64| Transfer {
            seq: 0,
            id: id.into(),
            debit: debit.into(),
            credit: credit.into(),
            amount: Micros(amount),
            kind: "test".into(),
            reference: String::new(),
            time: 1,
        };
        let txn = s.write_for_test().unwrap();
        post(&txn, tr("t1", "a", "b", 5)).unwrap();
        Postings::with(&txn, |p| {
            assert_eq!(p.post(tr("t2", "b", "c", 3)).unwrap().seq, 2);
            assert_eq!(p.post(tr("t1", "a", "b", 5)).unwrap().seq, 1, "a replay returns the original");
            assert!(p.post(tr("t3", "b", "c", i64::MAX as u64)).is_err(), "c would overflow: b does not move either");
            assert_eq!(p.post(tr("t4", "a", "c", 1)).unwrap().seq, 3);
            Ok(())
        })
        .unwrap();
        txn.commit().unwrap();
        let bal = |a: &str| s.balances().unwrap().into_iter().find(|(k, _)| k == a).map(|(_, v)| v);
        assert_eq!((bal("a"), bal("b"), bal("c")), (Some(-6), Some(2), Some(4)));
        assert_eq!(s.list_transfers(None).unwrap().iter().map(|t| t.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
