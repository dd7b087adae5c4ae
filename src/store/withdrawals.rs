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
        if amount < min_payout || amount.0 == 0 {
            return Err(StoreError::Invalid(format!("the minimum payout is {min_payout}; asked for {amount}")));
        }
        let txn = self.write()?;
        if txn.open_table(USERS)?.get(user)?.is_none() {
            return Err(StoreError::NotFound(format!("user {user:?}")));
        }
        let available = available_in(&txn, user)?;
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
        };
        post(
            &txn,
            phase_transfer(&w, "request", Account::User(user.to_owned()), Account::PendingPayouts, "withdrawal", now),
        )?;
        txn.open_table(WITHDRAWALS)?.insert(id, to_json(&w)?.as_slice())?;
        txn.commit()?;
        Ok(w)
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
}
