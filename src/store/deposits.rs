//! Deposits and their receipts: every credit from outside (an admin credit, a payment webhook, a
//! paid invoice) is one `deposit` transfer from `external:deposits` plus one receipt row, written
//! in the same write transaction. The receipt is keyed by the transfer's id, which is derived
//! from the provider's payment id (`deposit:PROVIDER:ID`), so the dedup key and the credit can
//! never be apart: after a kill -9 either both are on disk or neither is, and a replay finds the
//! receipt and answers as the first call did (SECURITY.md §4.6).
//!
//! Refunds and chargebacks are returns against a receipt: the provider (or the operator) claims
//! some of the money back, and a `refund` / `chargeback` transfer takes from the user at most
//! what is still unspent (available = posted − accrued − held). What cannot be recovered is kept
//! on the receipt as `unrecovered`: an operator decision (an adjustment), never an overdraft.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::holds::available_in;
use super::ledger::{Account, Transfer, post};
use super::tables::{BALANCES, DEPOSITS, TRANSFER_IDS, TRANSFERS, USERS};
use super::{Store, StoreError, from_json, to_json};
use crate::money::Micros;

/// Kind of the transfer of a deposit.
pub const DEPOSIT: &str = "deposit";
/// Provider name of credits made by an admin (`traffix user credit`, the dashboard).
pub const ADMIN_PROVIDER: &str = "admin";

/// The longest external payment id accepted (bytes).
pub const MAX_EXTERNAL_ID: usize = 128;

/// The transfer id of the deposit of payment `external_id` from `provider`. Admin credits with
/// an `--id` keep their documented form `deposit:ID`, which is also what lets an operator who
/// credited a payment by hand under `PROVIDER:ID` stop the provider's own notice from crediting
/// it again.
pub fn deposit_transfer_id(provider: &str, external_id: &str) -> String {
    if provider == ADMIN_PROVIDER {
        format!("deposit:{external_id}")
    } else {
        format!("deposit:{provider}:{external_id}")
    }
}

/// An external payment id: 1–128 visible ASCII characters (no spaces or control characters).
pub fn valid_external_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EXTERNAL_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A refund (the money went back to the payer at the user's or operator's request) or a
/// chargeback (the payer's bank or wallet took it back).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReturnKind {
    Refund,
    Chargeback,
}

impl ReturnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnKind::Refund => "refund",
            ReturnKind::Chargeback => "chargeback",
        }
    }

    pub fn parse(s: &str) -> Option<ReturnKind> {
        match s {
            "refund" => Some(ReturnKind::Refund),
            "chargeback" => Some(ReturnKind::Chargeback),
            _ => None,
        }
    }
}

/// Money claimed back from a deposit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DepositReturn {
    pub kind: ReturnKind,
    /// The provider's or the operator's id of this return: replaying it changes nothing.
    pub id: String,
    /// What was claimed back.
    pub claimed: Micros,
    /// What was taken back from the user (at most what was unspent).
    pub recovered: Micros,
    /// The transfer that took it; `None` when nothing was left to take.
    pub transfer_id: Option<String>,
    pub time: u64,
    pub reason: String,
    pub actor: String,
}

/// One deposit's receipt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deposit {
    /// The deposit transfer's id (the receipt's key) and sequence number.
    pub transfer_id: String,
    pub seq: u64,
    /// `admin`, `generic`, `cryptopay`, `stars`.
    pub provider: String,
    /// The provider's payment id.
    pub external_id: String,
    pub user: String,
    pub amount: Micros,
    /// The currency the provider reported (`None`: the operator's own, e.g. an admin credit).
    #[serde(default)]
    pub currency: Option<String>,
    pub time: u64,
    pub reference: String,
    #[serde(default)]
    pub returns: Vec<DepositReturn>,
    /// The reversal (`ledger reverse`) that undid the whole deposit.
    #[serde(default)]
    pub reversed_by: Option<String>,
}

impl Deposit {
    /// What returns claimed in all.
    pub fn claimed(&self) -> Micros {
        Micros(self.returns.iter().map(|r| r.claimed.0).sum())
    }

    /// What returns took back from the user in all.
    pub fn recovered(&self) -> Micros {
        Micros(self.returns.iter().map(|r| r.recovered.0).sum())
    }

    /// What was claimed but not taken back (the operator's decision).
    pub fn unrecovered(&self) -> Micros {
        Micros(self.claimed().0.saturating_sub(self.recovered().0))
    }

    /// `credited`, `partially_refunded`, `refunded`, `charged_back` or `reversed`.
    pub fn status(&self) -> &'static str {
        if self.reversed_by.is_some() {
            "reversed"
        } else if self.returns.iter().any(|r| r.kind == ReturnKind::Chargeback) {
            "charged_back"
        } else if self.returns.is_empty() {
            "credited"
        } else if self.claimed() >= self.amount {
            "refunded"
        } else {
            "partially_refunded"
        }
    }
}

/// A deposit to make: the provider's payment, whom it credits, how much.
#[derive(Debug, Clone)]
pub struct DepositRequest {
    /// The deposit transfer's id; `None`: [`deposit_transfer_id`] of the provider and payment id.
    pub transfer_id: Option<String>,
    pub provider: String,
    pub external_id: String,
    pub user: String,
    pub amount: Micros,
    pub currency: Option<String>,
    pub reference: String,
    pub time: u64,
}

/// What a deposit did: a new credit, or a replay answered with the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositOutcome {
    Credited(Deposit),
    Duplicate(Deposit),
}

impl DepositOutcome {
    pub fn deposit(&self) -> &Deposit {
        match self {
            DepositOutcome::Credited(d) | DepositOutcome::Duplicate(d) => d,
        }
    }

    pub fn is_new(&self) -> bool {
        matches!(self, DepositOutcome::Credited(_))
    }
}

/// What a return did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnOutcome {
    pub deposit: Deposit,
    pub ret: DepositReturn,
    /// `false` when the same return id was seen before (nothing changed).
    pub new: bool,
    /// The user's posted balance after it.
    pub balance: i64,
}

fn get_deposit(txn: &WriteTransaction, transfer_id: &str) -> Result<Option<Deposit>, StoreError> {
    txn.open_table(DEPOSITS)?.get(transfer_id)?.map(|v| from_json(v.value())).transpose()
}

fn put_deposit(txn: &WriteTransaction, d: &Deposit) -> Result<(), StoreError> {
    txn.open_table(DEPOSITS)?.insert(d.transfer_id.as_str(), to_json(d)?.as_slice())?;
    Ok(())
}

/// Makes the deposit `req` inside `txn` (the credit and its receipt), or finds the one made
/// before under the same payment id: the same user and amount is a duplicate, anything else a
/// conflict. The caller commits.
pub(crate) fn deposit_in(txn: &WriteTransaction, req: &DepositRequest) -> Result<DepositOutcome, StoreError> {
    if req.amount.0 == 0 {
        return Err(StoreError::Invalid("amount must be greater than zero".into()));
    }
    if !valid_external_id(&req.external_id) {
        return Err(StoreError::Invalid(format!(
            "a payment id is 1-{MAX_EXTERNAL_ID} visible ASCII characters, not {:?}",
            req.external_id
        )));
    }
    if !user_exists(txn, &req.user)? {
        return Err(StoreError::NotFound(format!("user {:?}", req.user)));
    }
    let tid = req.transfer_id.clone().unwrap_or_else(|| deposit_transfer_id(&req.provider, &req.external_id));
    if let Some(first) = get_deposit(txn, &tid)? {
        let same_currency = first.currency.is_none() || req.currency.is_none() || first.currency == req.currency;
        if first.user == req.user && first.amount == req.amount && same_currency {
            return Ok(DepositOutcome::Duplicate(first));
        }
        tracing::error!(id = %tid, first_user = %first.user, first_amount = %first.amount, user = %req.user,
            amount = %req.amount, "ALERT: a payment id was replayed with a different payload");
        return Err(StoreError::Conflict(format!(
            "payment {tid} already exists with a different payload: it credited {} to {} (transfer #{}), not {} to {}",
            first.amount, first.user, first.seq, req.amount, req.user
        )));
    }
    if txn.open_table(TRANSFER_IDS)?.get(tid.as_str())?.is_some() {
        // A transfer under this id without a receipt is not a deposit this build made.
        return Err(StoreError::Conflict(format!("transfer {tid} already exists with a different payload")));
    }
    let tr = post(
        txn,
        Transfer {
            seq: 0,
            id: tid.clone(),
            debit: Account::ExternalDeposits.key(),
            credit: Account::User(req.user.clone()).key(),
            amount: req.amount,
            kind: DEPOSIT.into(),
            reference: req.reference.clone(),
            time: req.time,
        },
    )?;
    let d = Deposit {
        transfer_id: tid,
        seq: tr.seq,
        provider: req.provider.clone(),
        external_id: req.external_id.clone(),
        user: req.user.clone(),
        amount: req.amount,
        currency: req.currency.clone(),
        time: req.time,
        reference: req.reference.clone(),
        returns: Vec::new(),
        reversed_by: None,
    };
    put_deposit(txn, &d)?;
    Ok(DepositOutcome::Credited(d))
}

/// Notes inside `txn` that `original` was reversed by `reversal` (`ledger reverse`), if it is a
/// deposit: refused when returns already took some of it back (the reversal would take more
/// than was deposited).
pub(crate) fn note_reversal(txn: &WriteTransaction, original: &str, reversal: &str) -> Result<(), StoreError> {
    let Some(mut d) = get_deposit(txn, original)? else { return Ok(()) };
    if !d.returns.is_empty() {
        return Err(StoreError::Conflict(format!(
            "deposit {original} has {} recorded against it ({} claimed back); record any further refund on the \
             deposit instead of reversing it",
            d.returns.len(),
            d.claimed()
        )));
    }
    d.reversed_by = Some(reversal.to_owned());
    put_deposit(txn, &d)
}

/// A return against a deposit.
#[derive(Debug, Clone)]
pub struct ReturnRequest {
    /// The deposit: its transfer id.
    pub transfer_id: String,
    pub kind: ReturnKind,
    /// The return's own id (idempotency); `None`: the next number.
    pub id: Option<String>,
    /// What is claimed back; `None`: all that has not been claimed yet.
    pub amount: Option<Micros>,
    pub reason: String,
    pub actor: String,
    pub time: u64,
}

impl Store {
    /// Credits a user from `external:deposits` as an admin credit under the transfer id `id` (an
    /// admin credit or a payment in tests), with its receipt.
    pub fn deposit(
        &self,
        user: &str,
        amount: Micros,
        id: &str,
        reference: &str,
        now: u64,
    ) -> Result<(Transfer, i64), StoreError> {
        let req = DepositRequest {
            transfer_id: Some(id.to_owned()),
            provider: ADMIN_PROVIDER.into(),
            external_id: id.strip_prefix("deposit:").unwrap_or(id).to_owned(),
            user: user.to_owned(),
            amount,
            currency: None,
            reference: reference.to_owned(),
            time: now,
        };
        let (out, bal) = self.record_deposit(&req)?;
        let d = out.deposit();
        let rtx = self.db.begin_read()?;
        let tr = rtx
            .open_table(TRANSFERS)?
            .get(d.seq)?
            .map(|v| from_json::<Transfer>(v.value()))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt(format!("deposit {} has no transfer", d.transfer_id)))?;
        Ok((tr, bal))
    }

    /// Makes a deposit with its receipt in one write transaction (or answers a replay with the
    /// first); returns the user's posted balance after it.
    pub fn record_deposit(&self, req: &DepositRequest) -> Result<(DepositOutcome, i64), StoreError> {
        let txn = self.write()?;
        let out = deposit_in(&txn, req)?;
        let bal = user_balance(&txn, &req.user)?;
        if out.is_new() {
            txn.commit()?;
        }
        Ok((out, bal))
    }

    /// Receipts, oldest first; with `user`, only that user's.
    pub fn list_deposits(&self, user: Option<&str>) -> Result<Vec<Deposit>, StoreError> {
        let rtx = self.db.begin_read()?;
        let mut out = Vec::new();
        for row in rtx.open_table(DEPOSITS)?.iter()? {
            let d: Deposit = from_json(row?.1.value())?;
            if user.is_none_or(|u| d.user == u) {
                out.push(d);
            }
        }
        out.sort_by_key(|d| d.seq);
        Ok(out)
    }

    /// One receipt by its deposit transfer's id.
    pub fn get_deposit(&self, transfer_id: &str) -> Result<Option<Deposit>, StoreError> {
        let rtx = self.db.begin_read()?;
        rtx.open_table(DEPOSITS)?.get(transfer_id)?.map(|v| from_json(v.value())).transpose()
    }

    /// Records a refund or a chargeback against a deposit: what is claimed (at most what has not
    /// been claimed yet) is taken back from the user as far as it is unspent, in one `refund` /
    /// `chargeback` transfer; the rest stays on the receipt as unrecovered. A return id seen
    /// before answers with the first outcome and changes nothing.
    pub fn return_deposit(&self, req: &ReturnRequest) -> Result<ReturnOutcome, StoreError> {
        let txn = self.write()?;
        let mut d = get_deposit(&txn, &req.transfer_id)?
            .ok_or_else(|| StoreError::NotFound(format!("deposit {}", req.transfer_id)))?;
        if let Some(id) = &req.id {
            if !valid_external_id(id) {
                return Err(StoreError::Invalid(format!(
                    "a {} id is 1-{MAX_EXTERNAL_ID} visible ASCII characters",
                    req.kind.as_str()
                )));
            }
            if let Some(r) = d.returns.iter().find(|r| &r.id == id) {
                let same = r.kind == req.kind && req.amount.is_none_or(|a| a == r.claimed);
                if !same {
                    return Err(StoreError::Conflict(format!(
                        "{} {id} of deposit {} already exists with a different payload ({} claimed)",
                        r.kind.as_str(),
                        d.transfer_id,
                        r.claimed
                    )));
                }
                let (ret, balance) = (r.clone(), user_balance(&txn, &d.user)?);
                return Ok(ReturnOutcome { deposit: d, ret, new: false, balance });
            }
        }
        if let Some(by) = &d.reversed_by {
            return Err(StoreError::Conflict(format!("deposit {} was reversed already (by {by})", d.transfer_id)));
        }
        let open = Micros(d.amount.0.saturating_sub(d.claimed().0));
        let claimed = req.amount.unwrap_or(open);
        if claimed.0 == 0 {
            return Err(StoreError::Invalid(format!(
                "nothing is left to claim back from deposit {} ({} deposited, {} claimed already)",
                d.transfer_id,
                d.amount,
                d.claimed()
            )));
        }
        if claimed > open {
            return Err(StoreError::Invalid(format!(
                "at most {open} of deposit {} can still be claimed back ({} deposited, {} claimed already)",
                d.transfer_id,
                d.amount,
                d.claimed()
            )));
        }
        let available = available_in(&txn, &d.user)?;
        let recovered = Micros(claimed.0.min(u64::try_from(available.max(0)).unwrap_or(0)));
        let n = d.returns.len() + 1;
        let id = req.id.clone().unwrap_or_else(|| format!("{}-{n}", req.kind.as_str()));
        let transfer_id = if recovered.0 > 0 {
            let tid = format!("{}:{}:{n}", req.kind.as_str(), d.transfer_id);
            post(
                &txn,
                Transfer {
                    seq: 0,
                    id: tid.clone(),
                    debit: Account::User(d.user.clone()).key(),
                    credit: Account::ExternalDeposits.key(),
                    amount: recovered,
                    kind: req.kind.as_str().into(),
                    reference: req.reason.clone(),
                    time: req.time,
                },
            )?;
            Some(tid)
        } else {
            None
        };
        let ret = DepositReturn {
            kind: req.kind,
            id,
            claimed,
            recovered,
            transfer_id,
            time: req.time,
            reason: req.reason.clone(),
            actor: req.actor.clone(),
        };
        d.returns.push(ret.clone());
        put_deposit(&txn, &d)?;
        let balance = user_balance(&txn, &d.user)?;
        txn.commit()?;
        if ret.recovered < ret.claimed {
            tracing::warn!(deposit = %d.transfer_id, user = %d.user, claimed = %ret.claimed, recovered = %ret.recovered,
                "a {} claimed more than the user had left: the rest is the operator's decision", ret.kind.as_str());
        }
        Ok(ReturnOutcome { deposit: d, ret, new: true, balance })
    }
}

fn user_balance(txn: &WriteTransaction, user: &str) -> Result<i64, StoreError> {
    Ok(txn.open_table(BALANCES)?.get(Account::User(user.to_owned()).key().as_str())?.map(|v| v.value()).unwrap_or(0))
}

/// Whether `user` exists, inside `txn`.
pub(crate) fn user_exists(txn: &WriteTransaction, user: &str) -> Result<bool, StoreError> {
    Ok(txn.open_table(USERS)?.get(user)?.is_some())
}

/// Receipts for the deposits a database made before receipts existed (migration to v5): one per
/// `deposit` transfer, as admin credits, with the reversal that undid it if any (reversal ids are
/// `reversal_prefix` + the deposit's id).
pub(crate) fn backfill_receipts(txn: &WriteTransaction, reversal_prefix: &str) -> Result<usize, StoreError> {
    let mut found = Vec::new();
    {
        let transfers = txn.open_table(TRANSFERS)?;
        let ids = txn.open_table(TRANSFER_IDS)?;
        for row in transfers.iter()? {
            let t: Transfer = from_json(row?.1.value())?;
            if t.kind != DEPOSIT {
                continue;
            }
            let reversal = format!("{reversal_prefix}{}", t.id);
            let reversed = ids.get(reversal.as_str())?.is_some().then_some(reversal);
            found.push((t, reversed));
        }
    }
    let n = found.len();
    for (t, reversed_by) in found {
        let d = Deposit {
            external_id: t.id.strip_prefix("deposit:").unwrap_or(&t.id).to_owned(),
            transfer_id: t.id.clone(),
            seq: t.seq,
            provider: ADMIN_PROVIDER.into(),
            user: t.credit.strip_prefix("user:").unwrap_or(&t.credit).to_owned(),
            amount: t.amount,
            currency: None,
            time: t.time,
            reference: t.reference.clone(),
            returns: Vec::new(),
            reversed_by,
        };
        put_deposit(txn, &d)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{HoldRequest, TransferRef, UserRecord};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("d.redb")).unwrap();
        s.create_user(&UserRecord::new("alice", "x", 0)).unwrap();
        s.create_user(&UserRecord::new("bob", "y", 0)).unwrap();
        (dir, s)
    }

    fn req(provider: &str, id: &str, user: &str, amount: u64) -> DepositRequest {
        DepositRequest {
            transfer_id: None,
            provider: provider.into(),
            external_id: id.into(),
            user: user.into(),
            amount: Micros(amount),
            currency: Some("USD".into()),
            reference: "test".into(),
            time: 10,
        }
    }

    fn sum_is_zero(s: &Store) {
        assert_eq!(s.balances().unwrap().iter().map(|(_, v)| i128::from(*v)).sum::<i128>(), 0);
    }

    #[test]
    fn a_payment_credits_once_and_a_conflicting_replay_is_refused() {
        let (_d, s) = store();
        let (first, bal) = s.record_deposit(&req("generic", "ord-1", "alice", 12_500_000)).unwrap();
        assert!(first.is_new());
        assert_eq!(bal, 12_500_000);
        assert_eq!(first.deposit().transfer_id, "deposit:generic:ord-1");
        let (again, bal) = s.record_deposit(&req("generic", "ord-1", "alice", 12_500_000)).unwrap();
        assert_eq!(again, DepositOutcome::Duplicate(first.deposit().clone()));
        assert_eq!(bal, 12_500_000, "credited once");
        for other in [req("generic", "ord-1", "alice", 1), req("generic", "ord-1", "bob", 12_500_000)] {
            let e = s.record_deposit(&other).unwrap_err();
            assert!(matches!(e, StoreError::Conflict(_)), "{e}");
            assert!(e.to_string().contains("different payload"), "{e}");
        }
        let mut eur = req("generic", "ord-1", "alice", 12_500_000);
        eur.currency = Some("EUR".into());
        assert!(matches!(s.record_deposit(&eur), Err(StoreError::Conflict(_))));
        // Another provider's payment with the same id is another payment.
        assert!(s.record_deposit(&req("cryptopay", "ord-1", "alice", 1_000_000)).unwrap().0.is_new());
        for bad in ["", "a b", "é", &"x".repeat(129)] {
            assert!(matches!(s.record_deposit(&req("generic", bad, "alice", 1)), Err(StoreError::Invalid(_))), "{bad}");
        }
        assert!(matches!(s.record_deposit(&req("generic", "z", "alice", 0)), Err(StoreError::Invalid(_))));
        assert_eq!(s.list_deposits(Some("alice")).unwrap().len(), 2);
        assert_eq!(s.list_deposits(Some("bob")).unwrap().len(), 0);
        sum_is_zero(&s);
    }

    #[test]
    fn an_admin_credit_by_payment_id_stops_the_providers_notice_from_crediting_again() {
        let (_d, s) = store();
        let mut by_hand = req(ADMIN_PROVIDER, "generic:ord-9", "alice", 5_000_000);
        by_hand.currency = None;
        s.record_deposit(&by_hand).unwrap();
        let (late, _) = s.record_deposit(&req("generic", "ord-9", "alice", 5_000_000)).unwrap();
        assert!(!late.is_new(), "the webhook finds the credit made by hand");
        assert_eq!(late.deposit().provider, ADMIN_PROVIDER);
        assert!(matches!(s.record_deposit(&req("generic", "ord-9", "alice", 6_000_000)), Err(StoreError::Conflict(_))));
    }

    #[test]
    fn returns_take_back_at_most_what_is_unspent_and_record_the_rest() {
        let (_d, s) = store();
        let dep = s.record_deposit(&req("generic", "p1", "alice", 10_000_000)).unwrap().0.deposit().clone();
        // alice spends 7.00 of it (a hold for live streams stands in for spending).
        let hold = HoldRequest { hold: 1, client: "alice".into(), want: Micros(7_000_000) };
        s.take_holds(&[hold], 11).unwrap();
        let ret = |kind, id: Option<&str>, amount: Option<u64>| ReturnRequest {
            transfer_id: dep.transfer_id.clone(),
            kind,
            id: id.map(str::to_owned),
            amount: amount.map(Micros),
            reason: "customer asked".into(),
            actor: "admin".into(),
            time: 12,
        };
        let r1 = s.return_deposit(&ret(ReturnKind::Refund, Some("re_1"), Some(2_000_000))).unwrap();
        assert_eq!((r1.ret.claimed, r1.ret.recovered, r1.new), (Micros(2_000_000), Micros(2_000_000), true));
        assert_eq!(r1.ret.transfer_id.as_deref(), Some("refund:deposit:generic:p1:1"));
        assert_eq!(r1.deposit.status(), "partially_refunded");
        assert_eq!(r1.balance, 8_000_000);
        // Replayed: nothing changes.
        let again = s.return_deposit(&ret(ReturnKind::Refund, Some("re_1"), Some(2_000_000))).unwrap();
        assert!(!again.new);
        assert_eq!(again.balance, 8_000_000);
        assert!(matches!(
            s.return_deposit(&ret(ReturnKind::Refund, Some("re_1"), Some(3_000_000))),
            Err(StoreError::Conflict(_))
        ));
        // More than is left to claim.
        let e = s.return_deposit(&ret(ReturnKind::Chargeback, None, Some(8_000_001))).unwrap_err();
        assert!(e.to_string().contains("at most 8.00"), "{e}");
        // A chargeback of the rest: only 1.00 is unspent (8.00 posted, 7.00 held).
        let cb = s.return_deposit(&ret(ReturnKind::Chargeback, None, None)).unwrap();
        assert_eq!((cb.ret.claimed, cb.ret.recovered), (Micros(8_000_000), Micros(1_000_000)));
        assert_eq!(cb.ret.id, "chargeback-2");
        assert_eq!(cb.deposit.status(), "charged_back");
        assert_eq!(cb.deposit.unrecovered(), Micros(7_000_000));
        assert_eq!(cb.balance, 7_000_000, "never below what is held: no overdraft");
        let e = s.return_deposit(&ret(ReturnKind::Refund, None, None)).unwrap_err();
        assert!(e.to_string().contains("nothing is left"), "{e}");
        // Reversing the whole deposit now would take more than was deposited.
        let e = s.reverse(&TransferRef::Id(dep.transfer_id.clone()), "x", 13).unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{e}");
        sum_is_zero(&s);
    }

    #[test]
    fn a_return_with_nothing_unspent_records_the_claim_without_a_transfer() {
        let (_d, s) = store();
        let dep = s.record_deposit(&req("generic", "p2", "bob", 3_000_000)).unwrap().0.deposit().clone();
        s.request_withdrawal("bob", Micros(3_000_000), Micros(1), None, 11).unwrap();
        let r = s
            .return_deposit(&ReturnRequest {
                transfer_id: dep.transfer_id,
                kind: ReturnKind::Chargeback,
                id: Some("cb_77".into()),
                amount: None,
                reason: "bank".into(),
                actor: "admin".into(),
                time: 12,
            })
            .unwrap();
        assert_eq!((r.ret.recovered, r.ret.transfer_id), (Micros(0), None));
        assert_eq!(r.deposit.unrecovered(), Micros(3_000_000));
        assert_eq!(r.balance, 0);
        sum_is_zero(&s);
    }

    #[test]
    fn a_reversed_deposit_says_so_and_takes_no_returns() {
        let (_d, s) = store();
        let (tr, _) = s.deposit("alice", Micros(4_000_000), "deposit:inv-3", "by hand", 1).unwrap();
        assert_eq!(tr.id, "deposit:inv-3");
        let d = s.get_deposit("deposit:inv-3").unwrap().unwrap();
        assert_eq!((d.provider.as_str(), d.external_id.as_str(), d.status()), ("admin", "inv-3", "credited"));
        s.reverse(&TransferRef::Seq(tr.seq), "wrong user", 2).unwrap();
        let d = s.get_deposit("deposit:inv-3").unwrap().unwrap();
        assert_eq!((d.status(), d.reversed_by.as_deref()), ("reversed", Some("reversal:deposit:inv-3")));
        let e = s
            .return_deposit(&ReturnRequest {
                transfer_id: d.transfer_id,
                kind: ReturnKind::Refund,
                id: None,
                amount: None,
                reason: "x".into(),
                actor: "admin".into(),
                time: 3,
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    }
}
