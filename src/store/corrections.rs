//! Corrections of the ledger by hand: adjustments (a signed movement between a user and
//! `platform:adjustments`, with a reason) and reversals (the exact opposite of a deposit or an
//! adjustment, against its original counter-account, at most once). Both are new transfers
//! that say what they correct; the originals are never touched (SECURITY.md §4.5).
//!
//! Neither may take a user below what is spoken for: money held for live streams and usage
//! accrued but not yet posted. Pending withdrawals have already left the user's balance (they
//! sit in `pending:payouts`), so they are out of reach too.

use redb::{ReadableTable, WriteTransaction};

use super::holds::available_in;
use super::ledger::{Account, Transfer, post};
use super::tables::{BALANCES, TRANSFER_IDS, TRANSFERS, USERS};
use super::{Store, StoreError, from_json};
use crate::money::{Micros, format_signed};

/// Kind of an adjustment transfer.
pub const ADJUSTMENT: &str = "adjustment";
/// Kind of a reversal transfer.
pub const REVERSAL: &str = "reversal";
/// A reversal's id is this prefix and the reversed transfer's id: the pointer to the original,
/// and deterministic, so one transfer cannot be reversed twice.
pub const REVERSAL_PREFIX: &str = "reversal:";

/// Why a transfer of `kind` cannot be reversed; `None` when it can (deposits and adjustments).
pub fn irreversible(kind: &str) -> Option<&'static str> {
    match kind {
        "deposit" | ADJUSTMENT => None,
        "refund" | "chargeback" => Some("it is a return of a deposit itself; correct it with an adjustment"),
        REVERSAL => Some("it is a reversal itself; post an adjustment instead"),
        "usage" | "usage_fee" => Some("usage is billed by metering; correct it with an adjustment"),
        "withdrawal" | "payout" | "payout_reversal" => {
            Some("withdrawals are undone by rejecting them while pending; correct a paid one with an adjustment")
        }
        _ => Some("only deposits and adjustments can be reversed"),
    }
}

/// Which transfer: by its sequence number (as `ledger list` shows it) or by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferRef {
    Seq(u64),
    Id(String),
}

impl TransferRef {
    /// `42` is a sequence number, anything else a transfer id.
    pub fn parse(s: &str) -> TransferRef {
        let s = s.trim();
        match s.parse() {
            Ok(seq) if s.bytes().all(|b| b.is_ascii_digit()) => TransferRef::Seq(seq),
            _ => TransferRef::Id(s.to_owned()),
        }
    }
}

impl std::fmt::Display for TransferRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferRef::Seq(s) => write!(f, "#{s}"),
            TransferRef::Id(id) => write!(f, "{id:?}"),
        }
    }
}

/// What a correction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub transfer: Transfer,
    /// The user whose balance moved.
    pub user: String,
    /// The signed change of the user's balance.
    pub delta: i64,
    /// The user's posted balance after it.
    pub balance: i64,
    /// What the user may spend or withdraw after it (posted − accrued − held).
    pub available: i64,
    /// The transfer a reversal undid.
    pub reverses: Option<Transfer>,
}

/// Refuses to take `amount` from `user` when less is available (posted − accrued − held).
fn check_take(txn: &WriteTransaction, user: &str, amount: Micros) -> Result<(), StoreError> {
    let available = available_in(txn, user)?;
    if i128::from(amount.0) > i128::from(available) {
        let posted = balance_in(txn, user)?;
        return Err(StoreError::Invalid(format!(
            "cannot take {amount} from {user}: only {} is available (of a balance of {}, the rest is held for \
             live streams or owed for unposted usage)",
            format_signed(available.max(0)),
            format_signed(posted)
        )));
    }
    Ok(())
}

fn balance_in(txn: &WriteTransaction, user: &str) -> Result<i64, StoreError> {
    Ok(txn.open_table(BALANCES)?.get(Account::User(user.to_owned()).key().as_str())?.map(|v| v.value()).unwrap_or(0))
}

fn find(txn: &WriteTransaction, which: &TransferRef) -> Result<Transfer, StoreError> {
    let seq = match which {
        TransferRef::Seq(s) => Some(*s),
        TransferRef::Id(id) => txn.open_table(TRANSFER_IDS)?.get(id.as_str())?.map(|v| v.value()),
    };
    let row = match seq {
        Some(seq) => txn.open_table(TRANSFERS)?.get(seq)?.map(|v| from_json::<Transfer>(v.value())).transpose()?,
        None => None,
    };
    row.ok_or_else(|| StoreError::NotFound(format!("transfer {which}")))
}

fn done(
    txn: WriteTransaction,
    transfer: Transfer,
    user: &str,
    delta: i64,
    reverses: Option<Transfer>,
) -> Result<Correction, StoreError> {
    let balance = balance_in(&txn, user)?;
    let available = available_in(&txn, user)?;
    txn.commit()?;
    Ok(Correction { transfer, user: user.to_owned(), delta, balance, available, reverses })
}

impl Store {
    /// Moves `delta` micro-units into (positive) or out of (negative) `user`'s balance, against
    /// `platform:adjustments`, as transfer `id` with `reference` (the reason). A negative one
    /// may take no more than the user has available. Zero is refused.
    pub fn adjust(
        &self,
        user: &str,
        delta: i64,
        id: &str,
        reference: &str,
        now: u64,
    ) -> Result<Correction, StoreError> {
        if delta == 0 {
            return Err(StoreError::Invalid("an adjustment of zero changes nothing".into()));
        }
        let amount = Micros(delta.unsigned_abs());
        let txn = self.write()?;
        if txn.open_table(USERS)?.get(user)?.is_none() {
            return Err(StoreError::NotFound(format!("user {user:?}")));
        }
        let (mine, theirs) = (Account::User(user.to_owned()).key(), Account::Adjustments.key());
        let (debit, credit) = if delta > 0 { (theirs, mine) } else { (mine, theirs) };
        if delta < 0 {
            check_take(&txn, user, amount)?;
        }
        let tr = Transfer {
            seq: 0,
            id: id.to_owned(),
            debit,
            credit,
            amount,
            kind: ADJUSTMENT.into(),
            reference: reference.to_owned(),
            time: now,
        };
        let tr = post(&txn, tr)?;
        done(txn, tr, user, delta, None)
    }

    /// Posts the exact opposite of a deposit or an adjustment, against its original
    /// counter-account, once: a second reversal of the same transfer is a conflict, and
    /// reversals, usage and withdrawals cannot be reversed. Taking money back may take no more
    /// than the user has available.
    pub fn reverse(&self, which: &TransferRef, reference: &str, now: u64) -> Result<Correction, StoreError> {
        let txn = self.write()?;
        let original = find(&txn, which)?;
        if let Some(why) = irreversible(&original.kind) {
            return Err(StoreError::Invalid(format!(
                "transfer #{} ({}) cannot be reversed: {why}",
                original.seq, original.kind
            )));
        }
        let id = format!("{REVERSAL_PREFIX}{}", original.id);
        if let Some(seq) = txn.open_table(TRANSFER_IDS)?.get(id.as_str())?.map(|v| v.value()) {
            return Err(StoreError::Conflict(format!(
                "transfer #{} was already reversed by transfer #{seq}",
                original.seq
            )));
        }
        let user_of = |key: &str| key.strip_prefix("user:").map(str::to_owned);
        let (user, takes_back) = match (user_of(&original.credit), user_of(&original.debit)) {
            (Some(u), None) => (u, true),
            (None, Some(u)) => (u, false),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "transfer #{} moves {} from {} to {}: not between a user and a system account",
                    original.seq, original.amount, original.debit, original.credit
                )));
            }
        };
        // A deposit's receipt says it was reversed (refused when refunds took some of it back).
        super::deposits::note_reversal(&txn, &original.id, &id)?;
        if takes_back {
            check_take(&txn, &user, original.amount)?;
        }
        let amount = i64::try_from(original.amount.0).map_err(|_| StoreError::Invalid("amount too large".into()))?;
        let tr = Transfer {
            seq: 0,
            id,
            debit: original.credit.clone(),
            credit: original.debit.clone(),
            amount: original.amount,
            kind: REVERSAL.into(),
            reference: reference.to_owned(),
            time: now,
        };
        let tr = post(&txn, tr)?;
        done(txn, tr, &user, if takes_back { -amount } else { amount }, Some(original))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{HoldRequest, UserRecord};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("c.redb")).unwrap();
        s.create_user(&UserRecord::new("alice", "x", 0)).unwrap();
        (dir, s)
    }

    fn sum_is_zero(s: &Store) {
        assert_eq!(s.balances().unwrap().iter().map(|(_, v)| i128::from(*v)).sum::<i128>(), 0);
    }

    #[test]
    fn adjustments_move_money_both_ways_but_never_below_what_is_held() {
        let (_d, s) = store();
        s.deposit("alice", Micros(10_000_000), "d1", "top-up", 1).unwrap();
        let up = s.adjust("alice", 2_000_000, "adj:1", "goodwill", 2).unwrap();
        assert_eq!((up.balance, up.delta, up.transfer.kind.as_str()), (12_000_000, 2_000_000, "adjustment"));
        assert_eq!((up.transfer.debit.as_str(), up.transfer.credit.as_str()), ("platform:adjustments", "user:alice"));
        let down = s.adjust("alice", -1_500_000, "adj:2", "double credit", 3).unwrap();
        assert_eq!(down.balance, 10_500_000);
        assert_eq!(down.transfer.debit, "user:alice");
        assert_eq!(s.balance(&Account::Adjustments).unwrap(), -500_000);

        // 8.00 held for a live stream: only 2.50 may be taken.
        let req = HoldRequest { hold: 1, client: "alice".into(), want: Micros(8_000_000) };
        assert_eq!(s.take_holds(&[req], 4).unwrap(), vec![Micros(8_000_000)]);
        let err = s.adjust("alice", -2_500_001, "adj:3", "x", 5).unwrap_err().to_string();
        assert!(err.contains("only 2.50 is available") && err.contains("10.50"), "{err}");
        assert_eq!(s.adjust("alice", -2_500_000, "adj:3", "x", 5).unwrap().available, 0);

        assert!(matches!(s.adjust("alice", 0, "adj:4", "x", 6), Err(StoreError::Invalid(_))));
        assert!(matches!(s.adjust("nobody", 1, "adj:5", "x", 6), Err(StoreError::NotFound(_))));
        sum_is_zero(&s);
    }

    #[test]
    fn deposits_and_adjustments_are_reversed_once_and_nothing_else_is() {
        let (_d, s) = store();
        let dep = s.deposit("alice", Micros(5_000_000), "admin-credit:1", "oops", 1).unwrap().0;
        s.adjust("alice", -1_000_000, "adj:1", "fee", 2).unwrap();

        // Giving back a negative adjustment needs no funds.
        let back = s.reverse(&TransferRef::Id("adj:1".into()), "fee waived", 3).unwrap();
        assert_eq!((back.delta, back.balance), (1_000_000, 5_000_000));
        assert_eq!(
            (back.transfer.debit.as_str(), back.transfer.credit.as_str()),
            ("platform:adjustments", "user:alice")
        );
        assert_eq!(back.reverses.map(|t| t.id), Some("adj:1".to_owned()));

        let r = s.reverse(&TransferRef::Seq(dep.seq), "wrong user", 4).unwrap();
        assert_eq!(r.transfer.id, "reversal:admin-credit:1");
        assert_eq!((r.transfer.debit.as_str(), r.transfer.credit.as_str()), ("user:alice", "external:deposits"));
        assert_eq!((r.delta, r.balance), (-5_000_000, 0));
        let again = s.reverse(&TransferRef::Id("admin-credit:1".into()), "again", 5).unwrap_err();
        assert!(matches!(again, StoreError::Conflict(_)), "{again}");
        assert!(again.to_string().contains(&format!("already reversed by transfer #{}", r.transfer.seq)), "{again}");

        let err = s.reverse(&TransferRef::Seq(back.transfer.seq), "x", 6).unwrap_err().to_string();
        assert!(err.contains("is a reversal itself"), "{err}");
        assert!(matches!(s.reverse(&TransferRef::Seq(999), "x", 6), Err(StoreError::NotFound(_))));
        assert!(matches!(s.reverse(&TransferRef::Id("nope".into()), "x", 6), Err(StoreError::NotFound(_))));
        sum_is_zero(&s);
    }

    #[test]
    fn taking_a_deposit_back_needs_the_money_to_be_available() {
        let (_d, s) = store();
        let dep = s.deposit("alice", Micros(5_000_000), "dep:1", "top-up", 1).unwrap().0;
        s.request_withdrawal("alice", Micros(4_000_000), Micros(1), None, 2).unwrap();
        let err = s.reverse(&TransferRef::Seq(dep.seq), "x", 3).unwrap_err().to_string();
        assert!(err.contains("cannot take 5.00 from alice: only 1.00 is available"), "{err}");
        let w = s.list_transfers(None).unwrap().into_iter().find(|t| t.kind == "withdrawal").unwrap();
        let err = s.reverse(&TransferRef::Id(w.id), "x", 3).unwrap_err().to_string();
        assert!(err.contains("rejecting them"), "{err}");
    }

    #[test]
    fn transfer_refs_are_sequence_numbers_or_ids() {
        assert_eq!(TransferRef::parse("42"), TransferRef::Seq(42));
        assert_eq!(TransferRef::parse(" 7 "), TransferRef::Seq(7));
        for id in ["+7", "-1", "deposit:x", "99999999999999999999999", "0x10"] {
            assert_eq!(TransferRef::parse(id), TransferRef::Id(id.into()), "{id}");
        }
    }
}
