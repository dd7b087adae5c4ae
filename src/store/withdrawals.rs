//! Withdrawals: a user asks to be paid out; the amount moves at once from the user to
//! `pending:payouts` (held until decided); an admin approves (→ `external:payouts`) or rejects
//! (→ back to the user). Each step is a transfer with the id `payout:ID:PHASE`.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::holds::available_in;
use super::ledger::{Account, Transfer, post};
use super::tables::{META, USERS, WITHDRAWALS};
use super::{Store, StoreError, from_json, to_json};
use crate::money::Micros;

/// Where a withdrawal stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStatus {
    Pending,
    Approved,
    Rejected,
}

impl WithdrawalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalStatus::Pending => "pending",
            WithdrawalStatus::Approved => "approved",
            WithdrawalStatus::Rejected => "rejected",
        }
    }
}

/// One payout request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Withdrawal {
    pub id: u64,
    pub user: String,
    pub amount: Micros,
    /// Where the user wants the money (free text the operator pays to).
    #[serde(default)]
    pub destination: Option<String>,
    pub status: WithdrawalStatus,
    pub requested_at: u64,
    #[serde(default)]
    pub decided_at: Option<u64>,
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Requested by the automatic threshold of the user's payout profile, not by hand.
    #[serde(default)]
    pub auto: bool,
    /// An approved withdrawal the operator has paid outside (a batch export, then marked).
    #[serde(default)]
    pub paid_at: Option<u64>,
    #[serde(default)]
    pub paid_by: Option<String>,
    /// The operator's reference of the payment (a bank batch, a transaction id).
    #[serde(default)]
    pub paid_reference: Option<String>,
}

fn phase_transfer(w: &Withdrawal, phase: &str, debit: Account, credit: Account, kind: &str, now: u64) -> Transfer {
    Transfer {
        seq: 0,
        id: format!("payout:{}:{phase}", w.id),
        debit: debit.key(),
        credit: credit.key(),
        amount: w.amount,
        kind: kind.into(),
        reference: format!("withdrawal {}", w.id),
        time: now,
    }
}

/// What an automatic withdrawal asks for: everything available, once it reaches the threshold
/// (and the minimum payout), and only while no other request of the user is pending.
pub fn auto_amount(available: i64, threshold: Micros, min_payout: Micros, pending: bool) -> Option<Micros> {
    let available = u64::try_from(available).ok()?;
    (!pending && available >= threshold.0.max(min_payout.0) && available > 0).then_some(Micros(available))
}

fn request_in(
    txn: &redb::WriteTransaction,
    user: &str,
    amount: Micros,
    min_payout: Micros,
    destination: Option<String>,
    auto: bool,
    now: u64,
) -> Result<Withdrawal, StoreError> {
    if amount < min_payout || amount.0 == 0 {
        return Err(StoreError::Invalid(format!("the minimum payout is {min_payout}; asked for {amount}")));
    }
    if txn.open_table(USERS)?.get(user)?.is_none() {
        return Err(StoreError::NotFound(format!("user {user:?}")));
    }
    let available = available_in(txn, user)?;
    if i128::from(amount.0) > i128::from(available) {
        return Err(StoreError::Invalid(format!(
            "only {} is available to withdraw",
            crate::money::format_signed(available.max(0))
        )));
    }
    let id = {
        let mut meta = txn.open_table(META)?;
        let id = meta.get("withdrawal_seq")?.map(|v| v.value()).unwrap_or(0) + 1;
        meta.insert("withdrawal_seq", id)?;
        id
    };
    let w = Withdrawal {
        id,
        user: user.to_owned(),
        amount,
        destination,
        status: WithdrawalStatus::Pending,
        requested_at: now,
        decided_at: None,
        decided_by: None,
        reason: None,
        auto,
        paid_at: None,
        paid_by: None,
        paid_reference: None,
    };
    post(
        txn,
        phase_transfer(&w, "request", Account::User(user.to_owned()), Account::PendingPayouts, "withdrawal", now),
    )?;
    txn.open_table(WITHDRAWALS)?.insert(id, to_json(&w)?.as_slice())?;
    Ok(w)
}

impl Store {
    /// Files a withdrawal of `amount` for `user`: at least `min_payout`, at most what the user
    /// has available (posted − accrued − held). The amount leaves the user's balance at once.
    pub fn request_withdrawal(
        &self,
        user: &str,
        amount: Micros,
        min_payout: Micros,
        destination: Option<String>,
        now: u64,
    ) -> Result<Withdrawal, StoreError> {
        let txn = self.write()?;
        let w = request_in(&txn, user, amount, min_payout, destination, false, now)?;
        txn.commit()?;
        Ok(w)
    }

    /// The automatic request of a payout profile's threshold: when `user` has no pending
    /// withdrawal and at least `threshold` (and `min_payout`) available, files one of everything
    /// available, in one write transaction. `None` when there is nothing to do.
    pub fn auto_withdrawal(
        &self,
        user: &str,
        threshold: Micros,
        min_payout: Micros,
        destination: Option<String>,
        now: u64,
    ) -> Result<Option<Withdrawal>, StoreError> {
        let txn = self.write()?;
        let pending = {
            let t = txn.open_table(WITHDRAWALS)?;
            let mut any = false;
            for row in t.iter()? {
                let w: Withdrawal = from_json(row?.1.value())?;
                if w.user == user && w.status == WithdrawalStatus::Pending {
                    any = true;
                    break;
                }
            }
            any
        };
        let available = available_in(&txn, user)?;
        let Some(amount) = auto_amount(available, threshold, min_payout, pending) else { return Ok(None) };
        let w = request_in(&txn, user, amount, min_payout, destination, true, now)?;
        txn.commit()?;
        Ok(Some(w))
    }

    /// Approves (pays out) or rejects (returns the money) a pending withdrawal. Deciding again
    /// the same way returns the withdrawal unchanged; the other way is refused.
    pub fn decide_withdrawal(
        &self,
        id: u64,
        approve: bool,
        actor: &str,
        reason: Option<String>,
        now: u64,
    ) -> Result<Withdrawal, StoreError> {
        let txn = self.write()?;
        let mut w: Withdrawal = txn
            .open_table(WITHDRAWALS)?
            .get(id)?
            .map(|v| from_json(v.value()))
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("withdrawal {id}")))?;
        let wanted = if approve { WithdrawalStatus::Approved } else { WithdrawalStatus::Rejected };
        match w.status {
            WithdrawalStatus::Pending => {}
            s if s == wanted => return Ok(w),
            s => return Err(StoreError::Invalid(format!("withdrawal {id} is already {}", s.as_str()))),
        }
        let tr = if approve {
            phase_transfer(&w, "approve", Account::PendingPayouts, Account::ExternalPayouts, "payout", now)
        } else {
            phase_transfer(&w, "reject", Account::PendingPayouts, Account::User(w.user.clone()), "payout_reversal", now)
        };
        post(&txn, tr)?;
        w.status = wanted;
        w.decided_at = Some(now);
        w.decided_by = Some(actor.to_owned());
        w.reason = reason;
        txn.open_table(WITHDRAWALS)?.insert(id, to_json(&w)?.as_slice())?;
        txn.commit()?;
        Ok(w)
    }

    /// Marks approved withdrawals as paid outside (one batch, one reference), all or none: a
    /// pending or rejected one refuses the batch; one paid before stays as it was.
    pub fn mark_withdrawals_paid(
        &self,
        ids: &[u64],
        actor: &str,
        reference: &str,
        now: u64,
    ) -> Result<Vec<Withdrawal>, StoreError> {
        let txn = self.write()?;
        let mut out = Vec::with_capacity(ids.len());
        {
            let mut t = txn.open_table(WITHDRAWALS)?;
            for &id in ids {
                let mut w: Withdrawal = t
                    .get(id)?
                    .map(|v| from_json(v.value()))
                    .transpose()?
                    .ok_or_else(|| StoreError::NotFound(format!("withdrawal {id}")))?;
                if w.status != WithdrawalStatus::Approved {
                    return Err(StoreError::Invalid(format!(
                        "withdrawal {id} is {}: only approved withdrawals are paid",
                        w.status.as_str()
                    )));
                }
                if w.paid_at.is_none() {
                    w.paid_at = Some(now);
                    w.paid_by = Some(actor.to_owned());
                    w.paid_reference = Some(reference.to_owned());
                    t.insert(id, to_json(&w)?.as_slice())?;
                }
                out.push(w);
            }
        }
        txn.commit()?;
        Ok(out)
    }

    /// Withdrawals, newest first, optionally of one user and/or in one status.
    pub fn list_withdrawals(
        &self,
        user: Option<&str>,
        status: Option<WithdrawalStatus>,
    ) -> Result<Vec<Withdrawal>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(WITHDRAWALS)?;
        let mut out = Vec::new();
        for row in t.iter()?.rev() {
            let w: Withdrawal = from_json(row?.1.value())?;
            if user.is_none_or(|u| w.user == u) && status.is_none_or(|s| w.status == s) {
                out.push(w);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserRecord;

    #[test]
    fn request_approve_reject_move_money_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("w.redb")).unwrap();
        s.create_user(&UserRecord::new("owner", "x", 0)).unwrap();
        s.deposit("owner", Micros(10_000_000), "d", "t", 1).unwrap();
        let min = Micros(5_000_000);
        assert!(s.request_withdrawal("owner", Micros(4_000_000), min, None, 2).is_err(), "below the minimum");
        assert!(s.request_withdrawal("owner", Micros(11_000_000), min, None, 2).is_err(), "more than available");
        assert!(s.request_withdrawal("nobody", Micros(6_000_000), min, None, 2).is_err());
        let a = s.request_withdrawal("owner", Micros(6_000_000), min, Some("iban".into()), 2).unwrap();
        assert_eq!(s.balance(&Account::User("owner".into())).unwrap(), 4_000_000);
        assert_eq!(s.balance(&Account::PendingPayouts).unwrap(), 6_000_000);
        assert!(s.request_withdrawal("owner", Micros(5_000_000), min, None, 3).is_err(), "the rest is too little");
        let a2 = s.decide_withdrawal(a.id, true, "admin", None, 4).unwrap();
        assert_eq!(a2.status, WithdrawalStatus::Approved);
        assert_eq!(s.decide_withdrawal(a.id, true, "admin", None, 5).unwrap(), a2, "approving twice is a no-op");
        assert!(s.decide_withdrawal(a.id, false, "admin", None, 5).is_err());
        assert_eq!(s.balance(&Account::ExternalPayouts).unwrap(), 6_000_000);
        assert_eq!(s.balance(&Account::PendingPayouts).unwrap(), 0);

        s.deposit("owner", Micros(2_000_000), "d2", "t", 6).unwrap();
        let b = s.request_withdrawal("owner", Micros(5_000_000), min, None, 7).unwrap();
        let b = s.decide_withdrawal(b.id, false, "admin", Some("bad address".into()), 8).unwrap();
        assert_eq!(b.status, WithdrawalStatus::Rejected);
        assert_eq!(s.balance(&Account::User("owner".into())).unwrap(), 6_000_000);
        let kinds: Vec<String> = s.list_transfers(None).unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(kinds[1..], ["payout:1:request", "payout:1:approve", "d2", "payout:2:request", "payout:2:reject"]);
        assert_eq!(s.list_withdrawals(Some("owner"), Some(WithdrawalStatus::Rejected)).unwrap(), vec![b]);
    }

    #[test]
    fn the_automatic_request_takes_everything_once_past_the_threshold() {
        let t = Micros(10_000_000);
        let min = Micros(5_000_000);
        assert_eq!(auto_amount(9_999_999, t, min, false), None);
        assert_eq!(auto_amount(10_000_000, t, min, false), Some(Micros(10_000_000)));
        assert_eq!(auto_amount(12_345_678, t, min, false), Some(Micros(12_345_678)));
        assert_eq!(auto_amount(12_345_678, t, min, true), None, "one pending request at a time");
        assert_eq!(auto_amount(-5, t, min, false), None);
        // A threshold below the minimum payout waits for the minimum.
        assert_eq!(auto_amount(4_000_000, Micros(1), min, false), None);
        assert_eq!(auto_amount(5_000_000, Micros(1), min, false), Some(min));

        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.redb")).unwrap();
        s.create_user(&UserRecord::new("owner", "x", 0)).unwrap();
        s.deposit("owner", Micros(9_000_000), "d", "t", 1).unwrap();
        assert_eq!(s.auto_withdrawal("owner", t, min, None, 2).unwrap(), None);
        s.deposit("owner", Micros(2_000_000), "d2", "t", 3).unwrap();
        let w = s.auto_withdrawal("owner", t, min, Some("iban: DE00".into()), 4).unwrap().unwrap();
        assert_eq!((w.amount, w.auto, w.destination.as_deref()), (Micros(11_000_000), true, Some("iban: DE00")));
        s.deposit("owner", Micros(20_000_000), "d3", "t", 5).unwrap();
        assert_eq!(s.auto_withdrawal("owner", t, min, None, 6).unwrap(), None, "one is pending");
    }

    #[test]
    fn approved_withdrawals_are_marked_paid_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("p.redb")).unwrap();
        s.create_user(&UserRecord::new("owner", "x", 0)).unwrap();
        s.deposit("owner", Micros(30_000_000), "d", "t", 1).unwrap();
        let min = Micros(5_000_000);
        let a = s.request_withdrawal("owner", min, min, None, 2).unwrap();
        let b = s.request_withdrawal("owner", min, min, None, 2).unwrap();
        let c = s.request_withdrawal("owner", min, min, None, 2).unwrap();
        s.decide_withdrawal(a.id, true, "admin", None, 3).unwrap();
        s.decide_withdrawal(b.id, true, "admin", None, 3).unwrap();
        let e = s.mark_withdrawals_paid(&[a.id, c.id], "admin", "batch-1", 4).unwrap_err();
        assert!(e.to_string().contains("is pending"), "{e}");
        assert!(s.list_withdrawals(None, None).unwrap().iter().all(|w| w.paid_at.is_none()), "all or none");
        assert!(matches!(s.mark_withdrawals_paid(&[99], "admin", "x", 4), Err(StoreError::NotFound(_))));
        let paid = s.mark_withdrawals_paid(&[a.id, b.id], "admin", "batch-1", 4).unwrap();
        assert!(paid.iter().all(|w| w.paid_at == Some(4) && w.paid_reference.as_deref() == Some("batch-1")));
        let again = s.mark_withdrawals_paid(&[a.id], "admin", "batch-2", 5).unwrap();
        assert_eq!(again[0].paid_reference.as_deref(), Some("batch-1"), "paid once");
    }
}
