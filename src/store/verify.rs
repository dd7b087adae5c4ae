//! `traffix ledger verify`: every invariant of SECURITY.md §4 checked on one consistent
//! snapshot (one read transaction), so it can run while the server serves.
//!
//! 1. conservation: all balances sum to zero;
//! 2. exact split: per session, `charge = floor(price × bytes / 10^9)`, the owner's share is
//!    `floor(charge × (100 − fee) / 100)`, and posted + accrued legs equal them;
//! 3. one counter: usage transfers exist only for sessions the server metered;
//! 4. overdraft: no client's posted − accrued balance is below the bound; holds never exceed
//!    what the client has;
//! 5. immutability and 6. idempotency: the id index and the transfer log agree one to one;
//! 7. a gap-free sequence whose replay from genesis reproduces every balance;
//! 8. crash prefix: each session's postings are numbered 0, 1, 2, … without a hole, and
//!    withdrawals have exactly the transfers their status implies;
//! 9. corrections: an adjustment moves money between one user and `platform:adjustments` (and
//!    nothing else touches that account but reversals of adjustments); a reversal undoes exactly
//!    an earlier deposit or adjustment, and no transfer is reversed twice;
//! 10. receipts: every deposit has exactly one receipt that agrees with it, every refund or
//!     chargeback transfer belongs to a return on a receipt, and no receipt gives back more
//!     than was deposited.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::corrections::{ADJUSTMENT, REVERSAL, REVERSAL_PREFIX};
use super::deposits::Deposit;
use super::holds::held_by;
use super::ledger::{Account, Transfer};
use super::tables::*;
use super::usage::{Accrual, SessionRecord, UsageBucket, accrued_by, all_accruals};
use super::withdrawals::{Withdrawal, WithdrawalStatus};
use super::{Store, StoreError, from_json};
use crate::money::Micros;

/// What verification needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct VerifyParams {
    /// The documented overdraft bound in money at the current price: no client may be further
    /// below zero.
    pub max_overdraft: Micros,
    /// The same bound in bytes: sessions billed at a higher price (before a price change) may
    /// have left up to this many bytes' worth at their price.
    pub overdraft_bytes: u64,
}

/// The outcome: counts of what was checked and every problem found (also the answer of the
/// `ledger verify` admin command).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub transfers: usize,
    pub accounts: usize,
    pub sessions: usize,
    pub live_sessions: usize,
    pub holds: usize,
    pub withdrawals: usize,
    pub problems: Vec<String>,
}

#[derive(Default)]
struct Posted {
    node: u128,
    fee: u128,
    posts: BTreeSet<u32>,
}

/// Parses a usage transfer id `usage:SESSION:POST:LEG`.
fn usage_id(id: &str) -> Option<(u64, u32, &str)> {
    let mut it = id.strip_prefix("usage:")?.splitn(3, ':');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?))
}

impl Store {
    /// Checks every ledger invariant; `Ok` carries the report (problems are not errors).
    pub fn verify(&self, params: &VerifyParams) -> Result<VerifyReport, StoreError> {
        let rtx = self.db.begin_read()?;
        let mut problems: Vec<String> = Vec::new();
        let mut p = |s: String| {
            if problems.len() < 1000 {
                problems.push(s);
            }
        };

        // 5–7: the log, its index, the sequence and the replay.
        let transfers_t = rtx.open_table(TRANSFERS)?;
        let mut replay: HashMap<String, i128> = HashMap::new();
        let mut ids: HashMap<String, u64> = HashMap::new();
        let mut usage: HashMap<u64, Posted> = HashMap::new();
        let mut payouts: HashMap<String, Transfer> = HashMap::new();
        let adjustments = Account::Adjustments.key();
        // 9: deposits and adjustments by id (what a reversal may undo), and reversals per original.
        let mut reversible: HashMap<String, Transfer> = HashMap::new();
        let mut reversed: BTreeMap<String, u32> = BTreeMap::new();
        // 10: deposits and returns by id, matched against the receipts below.
        let mut deposits: HashMap<String, Transfer> = HashMap::new();
        let mut returns: HashMap<String, Transfer> = HashMap::new();
        let mut count = 0u64;
        for row in transfers_t.iter()? {
            let (k, v) = row?;
            let t: Transfer = from_json(v.value())?;
            count += 1;
            if k.value() != count || t.seq != count {
                p(format!("sequence: transfer #{count} is stored at {} with seq {}", k.value(), t.seq));
            }
            if t.amount.0 == 0 || t.debit == t.credit {
                p(format!("transfer {} ({}) moves {} from {} to itself or nothing", t.seq, t.id, t.amount, t.debit));
            }
            *replay.entry(t.debit.clone()).or_default() -= i128::from(t.amount.0);
            *replay.entry(t.credit.clone()).or_default() += i128::from(t.amount.0);
            if ids.insert(t.id.clone(), t.seq).is_some() {
                p(format!("transfer id {} is used twice", t.id));
            }
            if t.kind == "usage" || t.kind == "usage_fee" {
                match usage_id(&t.id) {
                    Some((session, post, leg)) => {
                        let e = usage.entry(session).or_default();
                        e.posts.insert(post);
                        match leg {
                            "node" => e.node += u128::from(t.amount.0),
                            "fee" => e.fee += u128::from(t.amount.0),
                            _ => p(format!("transfer {}: unknown usage leg {leg}", t.id)),
                        }
                    }
                    None => p(format!("transfer {}: usage with a malformed id", t.id)),
                }
            }
            let corrects = t.kind == ADJUSTMENT || t.kind == REVERSAL;
            if !corrects && (t.debit == adjustments || t.credit == adjustments) {
                p(format!("transfer {} of kind {} touches {adjustments}", t.id, t.kind));
            }
            match t.kind.as_str() {
                ADJUSTMENT => {
                    let user_side = |a: &str| a.starts_with("user:");
                    let ok = (t.debit == adjustments && user_side(&t.credit))
                        || (t.credit == adjustments && user_side(&t.debit));
                    if !ok {
                        p(format!(
                            "adjustment {}: moves money from {} to {}, not between a user and {adjustments}",
                            t.id, t.debit, t.credit
                        ));
                    }
                    reversible.insert(t.id.clone(), t.clone());
                }
                "deposit" => {
                    reversible.insert(t.id.clone(), t.clone());
                    deposits.insert(t.id.clone(), t.clone());
                }
                "refund" | "chargeback" => {
                    returns.insert(t.id.clone(), t.clone());
                }
                REVERSAL => match t.id.strip_prefix(REVERSAL_PREFIX) {
                    None => p(format!("reversal {} names no transfer (its id is not {REVERSAL_PREFIX}ID)", t.id)),
                    Some(orig) => {
                        *reversed.entry(orig.to_owned()).or_default() += 1;
                        match reversible.get(orig) {
                            Some(o) if o.debit == t.credit && o.credit == t.debit && o.amount == t.amount => {}
                            Some(o) => p(format!(
                                "reversal {}: moves {} from {} to {}, which does not undo transfer {} ({} from {} to {})",
                                t.id, t.amount, t.debit, t.credit, o.id, o.amount, o.debit, o.credit
                            )),
                            None if ids.get(orig).is_some_and(|&seq| seq < t.seq) => {
                                p(format!("reversal {}: transfer {orig} is not a deposit or an adjustment", t.id))
                            }
                            None => p(format!("reversal {}: there is no earlier transfer {orig}", t.id)),
                        }
                    }
                },
                _ => {}
            }
            if t.id.starts_with("payout:") {
                payouts.insert(t.id.clone(), t);
            }
        }
        for (orig, n) in &reversed {
            if *n > 1 {
                p(format!("transfer {orig} is reversed {n} times"));
            }
        }
        for row in rtx.open_table(DEPOSITS)?.iter()? {
            let (k, v) = row?;
            let d: Deposit = from_json(v.value())?;
            let Some(t) = deposits.remove(k.value()) else {
                p(format!("receipt {} has no deposit transfer", k.value()));
                continue;
            };
            let user = Account::User(d.user.clone()).key();
            if d.transfer_id != k.value()
                || t.seq != d.seq
                || t.amount != d.amount
                || t.credit != user
                || t.debit != Account::ExternalDeposits.key()
            {
                p(format!(
                    "receipt {}: says {} to {} at #{}, its transfer #{} moves {} from {} to {}",
                    k.value(),
                    d.amount,
                    d.user,
                    d.seq,
                    t.seq,
                    t.amount,
                    t.debit,
                    t.credit
                ));
            }
            if d.claimed() > d.amount {
                p(format!("receipt {}: {} claimed back of a deposit of {}", d.transfer_id, d.claimed(), d.amount));
            }
            for r in &d.returns {
                let moved = r.transfer_id.as_ref().map(|id| (id, returns.remove(id)));
                let ok = r.recovered <= r.claimed
                    && match moved {
                        None => r.recovered.0 == 0,
                        Some((_, None)) => false,
                        Some((_, Some(rt))) => {
                            rt.amount == r.recovered
                                && rt.kind == r.kind.as_str()
                                && rt.debit == user
                                && rt.credit == Account::ExternalDeposits.key()
                        }
                    };
                if !ok {
                    p(format!(
                        "receipt {}: {} {} (claimed {}, recovered {}) does not match its transfer {:?}",
                        d.transfer_id,
                        r.kind.as_str(),
                        r.id,
                        r.claimed,
                        r.recovered,
                        r.transfer_id
                    ));
                }
            }
            let reversal = format!("{REVERSAL_PREFIX}{}", d.transfer_id);
            let has_reversal = ids.contains_key(&reversal);
            if has_reversal != (d.reversed_by.as_deref() == Some(reversal.as_str())) {
                p(format!(
                    "receipt {}: reversed_by {:?}, reversal in the log: {has_reversal}",
                    d.transfer_id, d.reversed_by
                ));
            }
        }
        for id in deposits.keys() {
            p(format!("deposit {id} has no receipt"));
        }
        for id in returns.keys() {
            p(format!("return transfer {id} belongs to no receipt"));
        }
        let last_seq = rtx.open_table(META)?.get("transfer_seq")?.map(|v| v.value()).unwrap_or(0);
        if last_seq != count {
            p(format!("sequence: the counter says {last_seq} transfers, the log has {count}"));
        }
        let index_t = rtx.open_table(TRANSFER_IDS)?;
        let mut indexed = 0usize;
        for row in index_t.iter()? {
            let (k, v) = row?;
            indexed += 1;
            if ids.get(k.value()) != Some(&v.value()) {
                p(format!("index: id {} points at seq {} but the log disagrees", k.value(), v.value()));
            }
        }
        if indexed != ids.len() {
            p(format!("index: {indexed} ids for {} transfers", ids.len()));
        }

        // 1 and 7: balances.
        let mut balances: BTreeMap<String, i64> = BTreeMap::new();
        for row in rtx.open_table(BALANCES)?.iter()? {
            let (k, v) = row?;
            balances.insert(k.value().to_owned(), v.value());
        }
        let sum: i128 = balances.values().map(|b| i128::from(*b)).sum();
        if sum != 0 {
            p(format!("conservation: balances sum to {sum}, not zero"));
        }
        for (acct, bal) in &balances {
            let r = replay.get(acct).copied().unwrap_or(0);
            if r != i128::from(*bal) {
                p(format!("replay: {acct} has balance {bal} but its transfers sum to {r}"));
            }
        }
        for (acct, r) in &replay {
            if !balances.contains_key(acct) {
                p(format!("replay: {acct} has transfers summing to {r} but no balance"));
            }
        }
        let users = rtx.open_table(USERS)?;
        for acct in balances.keys() {
            let known = match acct.strip_prefix("user:") {
                Some(name) => users.get(name)?.is_some(),
                None => Account::system_keys().contains(acct),
            };
            if !known {
                p(format!("account {acct} belongs to no user"));
            }
        }

        // 4: overdraft bound and holds.
        let accrual_rows = all_accruals(&rtx.open_table(ACCRUAL_CHUNKS)?)?;
        let accrued = accrued_by(&accrual_rows);
        let mut totals: HashMap<String, i64> = HashMap::new();
        for row in rtx.open_table(ACCRUED)?.iter()? {
            let (k, v) = row?;
            totals.insert(k.value().to_owned(), v.value());
        }
        let nonzero = |m: &HashMap<String, i64>| {
            m.iter().filter(|(_, v)| **v != 0).map(|(k, v)| (k.clone(), *v)).collect::<BTreeMap<_, _>>()
        };
        if nonzero(&totals) != nonzero(&accrued) {
            p(format!("accrued totals {:?} differ from the accrual rows {:?}", nonzero(&totals), nonzero(&accrued)));
        }
        let holds_t = rtx.open_table(HOLDS)?;
        let held = held_by(&holds_t)?;
        for (client, h) in &held {
            if !balances.contains_key(&format!("user:{client}")) && *h > 0 {
                p(format!("holds: {client} has {h} held and no account"));
            }
        }

        // 2, 3 and 8: sessions against their postings and accruals.
        let mut live: HashMap<u64, Accrual> = accrual_rows.into_iter().map(|a| (a.session, a)).collect();
        let live_sessions = live.len();
        let sessions_t = rtx.open_table(SESSIONS)?;
        let mut sessions = 0usize;
        let mut max_bound = Micros(0);
        let (mut owed_total, mut earned_total, mut fee_total) = (0u128, 0u128, 0u128);
        for row in sessions_t.iter()? {
            let mut r: SessionRecord = from_json(row?.1.value())?;
            sessions += 1;
            let posted = usage.remove(&r.id).unwrap_or_default();
            let accrual = live.remove(&r.id);
            // A live session's latest totals are in its accrual.
            if let Some(p) = accrual.as_ref().and_then(|a| a.progress) {
                r.apply(&p);
            }
            let posts = accrual.as_ref().map(|a| a.posts).unwrap_or(posted.posts.len() as u32);
            if !posted.posts.iter().copied().eq(0..posts) {
                p(format!("session {}: postings {:?}, expected 0..{posts}", r.id, posted.posts));
            }
            if accrual.is_some() == r.end.is_some() {
                p(format!("session {}: ended = {} but accrued = {}", r.id, r.end.is_some(), accrual.is_some()));
            }
            let Some(tariff) = r.tariff else { continue };
            max_bound = max_bound.max(tariff.max_debit(params.overdraft_bytes));
            let bytes = r.bytes_up + r.bytes_down;
            if r.charge != tariff.quote(bytes) {
                p(format!(
                    "session {}: charged {} for {bytes} bytes, the rule says {}",
                    r.id,
                    r.charge,
                    tariff.quote(bytes)
                ));
            }
            let node = u128::from(r.charge.0) * u128::from(100 - tariff.platform_fee_percent.min(100)) / 100;
            if u128::from(r.node_credit.0) != node {
                p(format!("session {}: owner share {} of {}, the rule says {node}", r.id, r.node_credit, r.charge));
            }
            let fee = u128::from(r.charge.0 - r.node_credit.0.min(r.charge.0));
            let pending = accrual.map(|a| a.pending).unwrap_or_default();
            let node_due = if r.self_use() { 0 } else { u128::from(r.node_credit.0) };
            let node_accrued = if r.self_use() { 0 } else { u128::from(pending.node_credit.0) };
            if posted.fee + u128::from(pending.platform_fee.0) != fee || posted.node + node_accrued != node_due {
                p(format!(
                    "session {}: posted node {} + fee {} (+ accrued {:?}) for owner share {node_due} and fee {fee}",
                    r.id, posted.node, posted.fee, pending
                ));
            }
            owed_total += fee + node_due;
            earned_total += node_due;
            fee_total += fee;
        }
        for id in usage.keys() {
            p(format!("usage transfers for session {id}, which was never metered"));
        }

        // 4 (continued): the bound in money is the bound in bytes at the highest price billed.
        let bound = max_bound.max(params.max_overdraft);
        for (acct, bal) in &balances {
            let Some(name) = acct.strip_prefix("user:") else { continue };
            let net = i128::from(*bal) - i128::from(accrued.get(name).copied().unwrap_or(0));
            if net < -i128::from(bound.0) {
                p(format!("overdraft: {name} is at {net}, beyond the bound of {bound}"));
            }
            let h = i128::from(held.get(name).copied().unwrap_or(0));
            if h > net.max(0) {
                p(format!("holds: {name} has {h} held but only {net} to hold"));
            }
        }
        for id in live.keys() {
            p(format!("accrual for session {id}, which has no session row"));
        }

        // The usage roll-up agrees with the sessions.
        let (mut r_debit, mut r_earned, mut r_fee) = (0u128, 0u128, 0u128);
        for row in rtx.open_table(USAGE)?.iter()? {
            let (k, v) = row?;
            let b: UsageBucket = from_json(v.value())?;
            let (subject, _) = k.value();
            if subject.starts_with("client:") {
                r_debit += u128::from(b.debit);
            } else if subject.starts_with("owner:") {
                r_earned += u128::from(b.earned);
                r_fee += u128::from(b.fee);
            }
        }
        if (r_debit, r_earned, r_fee) != (owed_total, earned_total, fee_total) {
            p(format!(
                "usage roll-up: clients paid {r_debit}, owners earned {r_earned}, fees {r_fee}; sessions say \
                 {owed_total}, {earned_total}, {fee_total}"
            ));
        }

        // 8: withdrawals and their transfers.
        let mut pending_sum = 0i128;
        let mut withdrawals = 0usize;
        for row in rtx.open_table(WITHDRAWALS)?.iter()? {
            let w: Withdrawal = from_json(row?.1.value())?;
            withdrawals += 1;
            let mut has = |phase: &str| payouts.remove(&format!("payout:{}:{phase}", w.id));
            let (req, app, rej) = (has("request"), has("approve"), has("reject"));
            let want = match w.status {
                WithdrawalStatus::Pending => (true, false, false),
                WithdrawalStatus::Approved => (true, true, false),
                WithdrawalStatus::Rejected => (true, false, true),
            };
            if (req.is_some(), app.is_some(), rej.is_some()) != want {
                p(format!("withdrawal {} is {} but its transfers do not say so", w.id, w.status.as_str()));
            }
            if [req, app, rej].iter().flatten().any(|t| t.amount != w.amount) {
                p(format!("withdrawal {}: a transfer's amount differs from {}", w.id, w.amount));
            }
            if w.status == WithdrawalStatus::Pending {
                pending_sum += i128::from(w.amount.0);
            }
        }
        for id in payouts.keys() {
            p(format!("payout transfer {id} belongs to no withdrawal"));
        }
        let pending_bal = balances.get("pending:payouts").copied().unwrap_or(0);
        if i128::from(pending_bal) != pending_sum {
            p(format!("pending:payouts holds {pending_bal} but pending withdrawals sum to {pending_sum}"));
        }

        let holds = holds_t.iter()?.count();
        Ok(VerifyReport {
            ok: problems.is_empty(),
            transfers: count as usize,
            accounts: balances.len(),
            sessions,
            live_sessions,
            holds,
            withdrawals,
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ledger::post;
    use crate::store::{TransferRef, UserRecord};

    const PARAMS: VerifyParams = VerifyParams { max_overdraft: Micros(0), overdraft_bytes: 0 };

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("v.redb")).unwrap();
        s.create_user(&UserRecord::new("alice", "x", 0)).unwrap();
        s.deposit("alice", Micros(10_000_000), "d1", "top-up", 1).unwrap();
        (dir, s)
    }

    fn transfer(id: &str, kind: &str, debit: &str, credit: &str, amount: u64) -> Transfer {
        Transfer {
            seq: 0,
            id: id.into(),
            debit: debit.into(),
            credit: credit.into(),
            amount: Micros(amount),
            kind: kind.into(),
            reference: "corrupt".into(),
            time: 9,
        }
    }

    /// Posts a transfer as the ledger would, bypassing the corrections' own checks.
    fn forge(s: &Store, t: Transfer) {
        let txn = s.write().unwrap();
        post(&txn, t).unwrap();
        txn.commit().unwrap();
    }

    /// Appends a copy of transfer `seq` under the next sequence number, balances moved, as a
    /// second row with the same id (which the index cannot hold twice).
    fn duplicate(s: &Store, seq: u64) {
        let txn = s.write().unwrap();
        {
            let mut t: Transfer =
                from_json(txn.open_table(TRANSFERS).unwrap().get(seq).unwrap().unwrap().value()).unwrap();
            let mut meta = txn.open_table(META).unwrap();
            t.seq = meta.get("transfer_seq").unwrap().unwrap().value() + 1;
            meta.insert("transfer_seq", t.seq).unwrap();
            let mut bal = txn.open_table(BALANCES).unwrap();
            for (acct, delta) in [(&t.debit, -(t.amount.0 as i64)), (&t.credit, t.amount.0 as i64)] {
                let cur = bal.get(acct.as_str()).unwrap().unwrap().value();
                bal.insert(acct.as_str(), cur + delta).unwrap();
            }
            txn.open_table(TRANSFERS).unwrap().insert(t.seq, crate::store::to_json(&t).unwrap().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    fn problems(s: &Store) -> Vec<String> {
        s.verify(&PARAMS).unwrap().problems
    }

    fn fires(s: &Store, needle: &str) {
        let p = problems(s);
        assert!(p.iter().any(|x| x.contains(needle)), "{needle:?} in {p:#?}");
    }

    #[test]
    fn receipts_and_returns_verify_clean_and_strays_are_named() {
        let (_d, s) = store();
        let req = crate::store::ReturnRequest {
            transfer_id: "d1".into(),
            kind: crate::store::ReturnKind::Refund,
            id: None,
            amount: Some(Micros(4_000_000)),
            reason: "asked".into(),
            actor: "admin".into(),
            time: 2,
        };
        s.return_deposit(&req).unwrap();
        s.return_deposit(&crate::store::ReturnRequest { kind: crate::store::ReturnKind::Chargeback, ..req }).unwrap();
        assert_eq!(problems(&s), Vec::<String>::new());
        forge(&s, transfer("refund:d1:9", "refund", "user:alice", "external:deposits", 1));
        fires(&s, "return transfer refund:d1:9 belongs to no receipt");
        forge(&s, transfer("deposit:x", "deposit", "external:deposits", "user:alice", 5));
        fires(&s, "deposit deposit:x has no receipt");
    }

    #[test]
    fn adjustments_and_reversals_verify_clean() {
        let (_d, s) = store();
        s.adjust("alice", 2_000_000, "adj:1", "goodwill", 2).unwrap();
        s.adjust("alice", -500_000, "adj:2", "fee", 3).unwrap();
        s.reverse(&TransferRef::Id("adj:2".into()), "waived", 4).unwrap();
        s.reverse(&TransferRef::Id("d1".into()), "wrong user", 5).unwrap();
        s.reverse(&TransferRef::Id("adj:1".into()), "no", 6).unwrap();
        let r = s.verify(&PARAMS).unwrap();
        assert!(r.ok, "{:#?}", r.problems);
        assert_eq!(s.balance(&Account::Adjustments).unwrap(), 0);
    }

    #[test]
    fn an_adjustment_must_be_between_a_user_and_the_adjustments_account() {
        let (_d, s) = store();
        forge(&s, transfer("adj:x", "adjustment", "external:deposits", "user:alice", 1));
        fires(&s, "adjustment adj:x: moves money from external:deposits to user:alice");
    }

    #[test]
    fn only_adjustments_and_their_reversals_touch_the_adjustments_account() {
        let (_d, s) = store();
        forge(&s, transfer("gift", "deposit", "platform:adjustments", "user:alice", 1));
        fires(&s, "transfer gift of kind deposit touches platform:adjustments");
    }

    #[test]
    fn a_reversal_must_undo_its_original_exactly() {
        let (_d, s) = store();
        forge(&s, transfer("reversal:d1", "reversal", "user:alice", "external:deposits", 9_000_000));
        fires(&s, "reversal reversal:d1: moves 9.00 from user:alice to external:deposits, which does not undo");
        let (_d, s) = store();
        forge(&s, transfer("reversal:d1", "reversal", "user:alice", "platform:fees", 10_000_000));
        fires(&s, "which does not undo transfer d1");
    }

    #[test]
    fn a_reversal_must_point_at_an_earlier_reversible_transfer() {
        let (_d, s) = store();
        forge(&s, transfer("reversal:ghost", "reversal", "user:alice", "external:deposits", 1));
        fires(&s, "reversal reversal:ghost: there is no earlier transfer ghost");
        forge(&s, transfer("undo-1", "reversal", "user:alice", "external:deposits", 1));
        fires(&s, "reversal undo-1 names no transfer");
        let w = s.request_withdrawal("alice", Micros(1_000_000), Micros(1), None, 3).unwrap();
        let id = format!("payout:{}:request", w.id);
        forge(&s, transfer(&format!("reversal:{id}"), "reversal", "pending:payouts", "user:alice", 1_000_000));
        fires(&s, &format!("transfer {id} is not a deposit or an adjustment"));
        // A reversal of a reversal is the same: only deposits and adjustments are reversible.
        s.adjust("alice", 3_000_000, "adj:1", "x", 5).unwrap();
        let r = s.reverse(&TransferRef::Id("adj:1".into()), "x", 6).unwrap();
        forge(
            &s,
            transfer(
                &format!("reversal:{}", r.transfer.id),
                "reversal",
                "user:alice",
                "platform:adjustments",
                3_000_000,
            ),
        );
        fires(&s, "transfer reversal:adj:1 is not a deposit or an adjustment");
    }

    #[test]
    fn no_transfer_is_reversed_twice() {
        let (_d, s) = store();
        let r = s.reverse(&TransferRef::Id("d1".into()), "wrong user", 2).unwrap();
        assert!(problems(&s).is_empty());
        s.deposit("alice", Micros(10_000_000), "d2", "top-up", 3).unwrap();
        duplicate(&s, r.transfer.seq);
        fires(&s, "transfer d1 is reversed 2 times");
    }
}
