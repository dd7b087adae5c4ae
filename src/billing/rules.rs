//! Billing rules: the pure arithmetic of charging traffic and splitting revenue, exact to the
//! micro-unit, with sub-micro remainders carried per session (SPEC.md "Money and the ledger",
//! SECURITY.md §4.2, §4.4 and §4.8).
//!
//! This module owns:
//! - [`Tariff::charge`]: bytes → what the client pays, what the node earns and the platform fee,
//!   with a per-session [`Carry`] so that billing a session in many pieces charges exactly what
//!   billing it in one piece would;
//! - [`Tariff::quote`] and [`Tariff::bytes_for`]: stateless conversions for quotes and holds;
//! - [`HoldPolicy`]: how much to reserve next, and the documented overdraft bound;
//! - [`apply`] and [`available`]: checked signed balance arithmetic for the ledger.
//!
//! It must not do I/O, read a clock or touch storage: callers persist the [`Carry`] with the
//! session's accrual row and post the [`Charge`]s as transfers. Every operation is checked:
//! overflow is an error (or, for the documented saturating helpers, a saturation), never a wrap
//! or a panic.
//!
//! # The rounding rule
//! Over a session billed at one tariff, with `B` bytes so far (both directions counted):
//! - **Client**: the cumulative debit is `D = floor(price_per_gb × B / 10^9)` micros. The fraction
//!   below one micro is carried in [`Carry`] and completed by later bytes; what is left when the
//!   session ends (less than one micro) is never charged — see [`Carry::settle`].
//! - **Split**: the node gets the floor and the platform gets the remainder, carried per session:
//!   the cumulative node credit is `floor(D × (100 − fee) / 100)` and the cumulative platform fee
//!   is `D − that`. This holds exactly after every charge, not only at session end, so the split
//!   of the sum always equals the sum of the splits.
//!
//! Every single [`Charge`] satisfies `client_debit == node_credit + platform_fee`, whatever the
//! tariff or the carry; the cumulative identities above assume one tariff per session (snapshot
//! it when the session starts).

use serde::{Deserialize, Serialize};

use crate::money::Micros;

/// Bytes in one billed GB (decimal: 10^9 bytes, both directions counted).
pub const BYTES_PER_GB: u64 = 1_000_000_000;

/// Modulus of [`Carry`]'s debit remainder: price × bytes is in units of 1/10^9 micro.
const DEBIT_MODULUS: u128 = BYTES_PER_GB as u128;

/// Modulus of [`Carry`]'s split remainder: debit × (100 − fee) is in units of 1/100 micro.
const SPLIT_MODULUS: u128 = 100;

/// Errors of the billing rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("platform fee {0}% is out of range (must be 0..=100)")]
    FeeOutOfRange(u8),
    #[error("billing arithmetic overflow")]
    Overflow,
    #[error("carry remainder out of range (debit {debit} must be < 10^9, split {split} must be < 100)")]
    CarryOutOfRange { debit: u32, split: u8 },
}

/// Price per GB (10^9 bytes, both directions counted) and the platform fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tariff {
    /// What a client pays per 10^9 bytes.
    pub price_per_gb: Micros,
    /// Share of every client debit kept by the operator, 0..=100; node owners earn the rest.
    pub platform_fee_percent: u8,
}

/// Per-session carry of sub-micro remainders, so that billing a session in many small pieces
/// charges exactly what billing it in one piece would (never rounded away, never invented).
///
/// - `debit_rem`: the client's exact price not yet charged, in units of 1/10^9 micro (< 10^9).
/// - `split_rem`: the node's exact share of the debits so far that the floor gave to the
///   platform, in units of 1/100 micro (< 100).
///
/// Both stay below their modulus by construction; [`Carry::from_parts`] and deserialization
/// reject anything else. Persist it with the session's accrual row so that a restart resumes
/// the same arithmetic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "CarryParts")]
pub struct Carry {
    debit_rem: u32,
    split_rem: u8,
}

/// Unvalidated wire form of [`Carry`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CarryParts {
    debit_rem: u32,
    split_rem: u8,
}

impl TryFrom<CarryParts> for Carry {
    type Error = RuleError;
    fn try_from(p: CarryParts) -> Result<Self, Self::Error> {
        Carry::from_parts(p.debit_rem, p.split_rem)
    }
}

/// What is left of a session's [`Carry`] when it ends. Both are fractions of one micro: not
/// money, never posted. Nothing is invented (the client is never charged for a fraction) and
/// nothing is lost (the split fraction is already inside the platform fees posted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settlement {
    /// The client's exact price below one micro that is never charged, in 1/10^9 micro.
    pub forgiven_debit_nanos: u32,
    /// The node's exact share below one micro that the platform already holds, in 1/100 micro.
    pub platform_kept_split_centis: u8,
}

impl Carry {
    /// A carry from persisted parts; `Err(CarryOutOfRange)` unless `debit_rem < 10^9` and
    /// `split_rem < 100`.
    pub fn from_parts(debit_rem: u32, split_rem: u8) -> Result<Carry, RuleError> {
        if u128::from(debit_rem) < DEBIT_MODULUS && u128::from(split_rem) < SPLIT_MODULUS {
            Ok(Carry { debit_rem, split_rem })
        } else {
            Err(RuleError::CarryOutOfRange { debit: debit_rem, split: split_rem })
        }
    }

    /// The client's exact price not yet charged, in units of 1/10^9 micro (always < 10^9).
    pub fn debit_remainder(&self) -> u32 {
        self.debit_rem
    }

    /// The node's exact share kept by the platform's rounding so far, in 1/100 micro (< 100).
    pub fn split_remainder(&self) -> u8 {
        self.split_rem
    }

    /// True when there is no remainder at all.
    pub fn is_zero(&self) -> bool {
        *self == Carry::default()
    }

    /// Ends the session: returns what is left (see [`Settlement`]) and resets the carry to zero.
    /// Nothing is posted for it: the session's totals are exactly the floor rule of the module
    /// docs, the same as billing the whole session in one piece.
    pub fn settle(&mut self) -> Settlement {
        let s = Settlement { forgiven_debit_nanos: self.debit_rem, platform_kept_split_centis: self.split_rem };
        *self = Carry::default();
        s
    }
}

/// One posting's outcome: what the client pays and how it splits.
///
/// Invariant: `client_debit == node_credit + platform_fee` (see [`Charge::is_balanced`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub client_debit: Micros,
    pub node_credit: Micros,
    pub platform_fee: Micros,
}

impl Charge {
    /// Nothing charged.
    pub const ZERO: Charge = Charge { client_debit: Micros(0), node_credit: Micros(0), platform_fee: Micros(0) };

    /// True when `client_debit == node_credit + platform_fee` (checked: an overflowing sum is
    /// not balanced).
    pub fn is_balanced(&self) -> bool {
        self.node_credit.0.checked_add(self.platform_fee.0) == Some(self.client_debit.0)
    }

    /// Field-wise checked sum, e.g. to accumulate per-second charges into one posting.
    pub fn checked_add(self, other: Charge) -> Result<Charge, RuleError> {
        let add = |a: Micros, b: Micros| a.0.checked_add(b.0).map(Micros).ok_or(RuleError::Overflow);
        Ok(Charge {
            client_debit: add(self.client_debit, other.client_debit)?,
            node_credit: add(self.node_credit, other.node_credit)?,
            platform_fee: add(self.platform_fee, other.platform_fee)?,
        })
    }
}

impl Tariff {
    /// A validated tariff: `Err(FeeOutOfRange)` when the fee is above 100%.
    pub fn new(price_per_gb: Micros, platform_fee_percent: u8) -> Result<Tariff, RuleError> {
        let t = Tariff { price_per_gb, platform_fee_percent };
        t.validate()?;
        Ok(t)
    }

    /// Checks the fee (the fields are public, so a tariff may have been built without `new`).
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.platform_fee_percent > 100 {
            return Err(RuleError::FeeOutOfRange(self.platform_fee_percent));
        }
        Ok(())
    }

    /// Charges `bytes` more bytes of a session whose carry is `carry`, updating the carry.
    ///
    /// `price × bytes` is computed in u128: `debit = floor((debit_rem + price × bytes) / 10^9)`
    /// and the new `debit_rem` is the remainder. The split carries too — node gets the floor,
    /// platform gets the remainder: `node = floor((split_rem + debit × (100 − fee)) / 100)`, the
    /// new `split_rem` is the remainder, and `platform_fee = debit − node`. Since
    /// `split_rem < 100`, `node ≤ debit` always holds, so the fee never goes negative.
    ///
    /// Errors: `FeeOutOfRange` for a fee above 100, `Overflow` when the debit does not fit in
    /// u64 (only for absurd prices × byte counts). On error the carry is left unchanged.
    pub fn charge(&self, carry: &mut Carry, bytes: u64) -> Result<Charge, RuleError> {
        self.validate()?;
        let exact = u128::from(self.price_per_gb.0)
            .checked_mul(u128::from(bytes))
            .and_then(|v| v.checked_add(u128::from(carry.debit_rem)))
            .ok_or(RuleError::Overflow)?;
        let debit = u64::try_from(exact / DEBIT_MODULUS).map_err(|_| RuleError::Overflow)?;
        let debit_rem = u32::try_from(exact % DEBIT_MODULUS).map_err(|_| RuleError::Overflow)?;

        let node_share = u128::from(100 - self.platform_fee_percent);
        let split = u128::from(debit)
            .checked_mul(node_share)
            .and_then(|v| v.checked_add(u128::from(carry.split_rem)))
            .ok_or(RuleError::Overflow)?;
        let node = u64::try_from(split / SPLIT_MODULUS).map_err(|_| RuleError::Overflow)?;
        let split_rem = u8::try_from(split % SPLIT_MODULUS).map_err(|_| RuleError::Overflow)?;
        let fee = debit.checked_sub(node).ok_or(RuleError::Overflow)?;

        *carry = Carry { debit_rem, split_rem };
        Ok(Charge { client_debit: Micros(debit), node_credit: Micros(node), platform_fee: Micros(fee) })
    }

    /// The charge for `bytes` without state (quotes and holds): the floor of the exact price,
    /// `floor(price × bytes / 10^9)` — ceil is not used. Saturates at `u64::MAX` micros.
    /// From a zero carry, the debits of [`Tariff::charge`] over any split of `bytes` sum to this.
    pub fn quote(&self, bytes: u64) -> Micros {
        let exact = u128::from(self.price_per_gb.0) * u128::from(bytes) / DEBIT_MODULUS;
        Micros(u64::try_from(exact).unwrap_or(u64::MAX))
    }

    /// How many bytes `amount` buys at this price: the largest `b` whose exact price does not
    /// exceed it (`price × b ≤ amount × 10^9`), so a hold of `amount` is never overrun by
    /// `bytes_for(amount)` bytes whatever the carry. Saturates at `u64::MAX`; price 0 → `u64::MAX`.
    pub fn bytes_for(&self, amount: Micros) -> u64 {
        if self.price_per_gb.0 == 0 {
            return u64::MAX;
        }
        let b = u128::from(amount.0) * DEBIT_MODULUS / u128::from(self.price_per_gb.0);
        u64::try_from(b).unwrap_or(u64::MAX)
    }

    /// `ceil(price × bytes / 10^9)`, saturating: the most that [`Tariff::charge`] can debit for
    /// `bytes` whatever the carry (a carry is below one micro).
    pub fn max_debit(&self, bytes: u64) -> Micros {
        let exact = u128::from(self.price_per_gb.0) * u128::from(bytes);
        Micros(u64::try_from(exact.div_ceil(DEBIT_MODULUS)).unwrap_or(u64::MAX))
    }
}

/// Holds (reservations): a client's streams bill against a reserved amount so the balance
/// cannot be overdrawn by more than a documented bound (SECURITY.md §4.4).
///
/// The protocol the meter follows (the meter lives elsewhere; this is its arithmetic):
/// 1. Before a stream carries bytes it takes a hold of [`HoldPolicy::next_reservation`] of the
///    client's `available` = posted balance − unposted accruals − live holds; `None` refuses the
///    stream.
/// 2. As bytes pass, the stream's charges ([`Tariff::charge`]) are taken from its hold in
///    memory, in real time (not at flush time). When the hold cannot cover the next charge the
///    stream asks for another; `None` cuts it.
/// 3. Postings move actual usage to the ledger and release the unused part of holds; a crash
///    leaves holds that expire.
///
/// Holds are granted only from a positive `available` and never exceed it, so all holds
/// together never exceed the balance. The only way below zero is the traffic a stream moves
/// after its hold is exhausted and before it is cut: at most `per_stream_bytes` per stream (its
/// in-flight read or frame). Hence [`HoldPolicy::overdraft_bound_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldPolicy {
    /// Largest single reservation.
    pub chunk: Micros,
    /// The overdraft the operator accepts: no client balance may go below `−max_overdraft`
    /// (`traffix ledger verify` checks it; see [`HoldPolicy::allows_balance`]).
    pub max_overdraft: Micros,
}

impl HoldPolicy {
    /// Amount to reserve next for a client with `available` (= posted balance − accrued − held),
    /// or `None` when nothing may be reserved (`available ≤ 0`, or a zero `chunk`): refuse new
    /// streams, cut live ones. Never more than `chunk`, never more than `available`.
    pub fn next_reservation(&self, available: i64) -> Option<Micros> {
        if available <= 0 || self.chunk.0 == 0 {
            return None;
        }
        Some(Micros(self.chunk.0.min(available.unsigned_abs())))
    }

    /// The documented worst-case overdraft in bytes: how far a balance can go below zero
    /// between two flushes with `streams` live streams, each allowed to run ahead of its hold by
    /// at most `per_stream_bytes`.
    ///
    /// Bound: `streams × per_stream_bytes` bytes (saturating), and 0 when the price is 0 (free
    /// traffic cannot move a balance). It does not grow with the flush interval, because holds
    /// are drawn down in real time; in money it is [`HoldPolicy::overdraft_bound_micros`].
    pub fn overdraft_bound_bytes(&self, tariff: &Tariff, streams: u32, per_stream_bytes: u64) -> u64 {
        if tariff.price_per_gb.0 == 0 {
            return 0;
        }
        u64::from(streams).saturating_mul(per_stream_bytes)
    }

    /// The same bound in micros: `streams × ceil(price × per_stream_bytes / 10^9)`, saturating.
    /// The ceil covers the carry: one stream's overrun of `b` bytes debits at most
    /// `floor((debit_rem + price × b) / 10^9) ≤ ceil(price × b / 10^9)` since `debit_rem < 10^9`
    /// (and streams sharing one carry debit no more than the sum of their ceilings).
    pub fn overdraft_bound_micros(&self, tariff: &Tariff, streams: u32, per_stream_bytes: u64) -> Micros {
        Micros(tariff.max_debit(per_stream_bytes).0.saturating_mul(u64::from(streams)))
    }

    /// True when `streams` streams each running ahead by `per_stream_bytes` stay within
    /// `max_overdraft`.
    pub fn admits(&self, tariff: &Tariff, streams: u32, per_stream_bytes: u64) -> bool {
        self.overdraft_bound_micros(tariff, streams, per_stream_bytes) <= self.max_overdraft
    }

    /// The largest per-stream run-ahead (bytes) that [`HoldPolicy::admits`] for `streams`
    /// streams: `bytes_for(floor(max_overdraft / streams))`; `u64::MAX` for price 0 or no
    /// streams.
    pub fn max_run_ahead_bytes(&self, tariff: &Tariff, streams: u32) -> u64 {
        if streams == 0 || tariff.price_per_gb.0 == 0 {
            return u64::MAX;
        }
        tariff.bytes_for(Micros(self.max_overdraft.0 / u64::from(streams)))
    }

    /// True when `balance` is within the accepted overdraft (`balance ≥ −max_overdraft`).
    pub fn allows_balance(&self, balance: i64) -> bool {
        i128::from(balance) >= -i128::from(self.max_overdraft.0)
    }
}

/// Signed balance arithmetic used by the ledger: checked add of a signed delta;
/// `Err(Overflow)` instead of wrapping.
pub fn apply(balance: i64, delta: i128) -> Result<i64, RuleError> {
    i128::from(balance).checked_add(delta).and_then(|v| i64::try_from(v).ok()).ok_or(RuleError::Overflow)
}

/// A client's available amount: posted balance − unposted accruals − live holds (checked).
pub fn available(posted: i64, accrued: Micros, held: Micros) -> Result<i64, RuleError> {
    apply(posted, -(i128::from(accrued.0) + i128::from(held.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GB: u64 = BYTES_PER_GB;

    fn tariff(price: u64, fee: u8) -> Tariff {
        Tariff::new(Micros(price), fee).unwrap()
    }

    /// Charges every chunk from a zero carry; returns the charges and the final carry.
    fn run(t: &Tariff, chunks: &[u64]) -> (Vec<Charge>, Carry) {
        let mut c = Carry::default();
        let charges = chunks.iter().map(|&b| t.charge(&mut c, b).unwrap()).collect();
        (charges, c)
    }

    fn sum(charges: &[Charge]) -> Charge {
        charges.iter().fold(Charge::ZERO, |a, &c| a.checked_add(c).unwrap())
    }

    /// (price, fee, chunks, debit, node, platform, debit_rem, split_rem)
    type Case = (u64, u8, &'static [u64], u64, u64, u64, u32, u8);

    #[test]
    fn charge_table() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // 3.00/GB × 1 byte = 0.003 micro: nothing now, carried.
            (3_000_000, 30, &[1], 0, 0, 0, 3_000_000, 0),
            (3_000_000, 30, &[GB], 3_000_000, 2_100_000, 900_000, 0, 0),
            // 2_999_999.997 micros: the floor, 0.997 carried; node floor(2_099_999.3).
            (3_000_000, 30, &[999_999_999], 2_999_999, 2_099_999, 900_000, 997_000_000, 30),
            (3_000_000, 30, &[333_333_333; 3], 2_999_999, 2_099_999, 900_000, 997_000_000, 30),
            // 333 × 1-byte pieces then one more: 1 micro appears at byte 334 (0.003 × 334 = 1.002).
            (3_000_000, 30, &[1; 334], 1, 0, 1, 2_000_000, 70),
            (3_000_000, 0, &[333_333_333; 3], 2_999_999, 2_999_999, 0, 997_000_000, 0),
            (3_000_000, 100, &[333_333_333; 3], 2_999_999, 0, 2_999_999, 997_000_000, 0),
            (0, 30, &[GB, 1, u64::MAX], 0, 0, 0, 0, 0),
            (1, 50, &[GB - 1, 1], 1, 0, 1, 0, 50),
            (1, 50, &[GB, GB], 2, 1, 1, 0, 0),
            (3_000_000, 30, &[u64::MAX], 55_340_232_221_128_654, 38_738_162_554_790_057, 16_602_069_666_338_597,
             845_000_000, 80),
            // The largest debit that fits: 1000.00/GB × u64::MAX bytes = u64::MAX micros.
            (GB, 30, &[u64::MAX], u64::MAX, 12_912_720_851_596_686_130, 5_534_023_222_112_865_485, 0, 50),
            (3_000_000, 30, &[0, 0], 0, 0, 0, 0, 0),
        ];
        for &(price, fee, chunks, debit, node, platform, debit_rem, split_rem) in cases {
            let t = tariff(price, fee);
            let (charges, carry) = run(&t, chunks);
            assert!(charges.iter().all(Charge::is_balanced), "{price} {fee} {chunks:?}");
            let total = sum(&charges);
            let want =
                Charge { client_debit: Micros(debit), node_credit: Micros(node), platform_fee: Micros(platform) };
            assert_eq!(total, want, "{price} {fee} {chunks:?}");
            assert_eq!(carry, Carry::from_parts(debit_rem, split_rem).unwrap(), "{price} {fee} {chunks:?}");
        }
    }

    #[test]
    fn pieces_match_one_shot_exactly() {
        let t = tariff(3_000_000, 30);
        let (pieces, carry_pieces) = run(&t, &[333_333_333; 3]);
        let (one, carry_one) = run(&t, &[999_999_999]);
        assert_eq!(sum(&pieces), sum(&one));
        assert_eq!(carry_pieces, carry_one);
        assert_eq!(pieces.iter().map(|c| c.client_debit.0).collect::<Vec<_>>(), [999_999, 1_000_000, 1_000_000]);
    }

    #[test]
    fn fee_validation() {
        assert_eq!(Tariff::new(Micros(1), 101), Err(RuleError::FeeOutOfRange(101)));
        assert_eq!(Tariff::new(Micros(1), 255), Err(RuleError::FeeOutOfRange(255)));
        assert!(Tariff::new(Micros(1), 0).is_ok());
        assert!(Tariff::new(Micros(1), 100).is_ok());
        // Built without `new`: charge refuses and leaves the carry alone.
        let bad = Tariff { price_per_gb: Micros(3_000_000), platform_fee_percent: 150 };
        let mut c = Carry::from_parts(5, 7).unwrap();
        assert_eq!(bad.charge(&mut c, GB), Err(RuleError::FeeOutOfRange(150)));
        assert_eq!(c, Carry::from_parts(5, 7).unwrap());
    }

    #[test]
    fn overflow_is_an_error_and_keeps_the_carry() {
        for (price, bytes) in [(u64::MAX, u64::MAX), (GB + 1, u64::MAX), (u64::MAX, 2 * GB)] {
            let t = tariff(price, 30);
            let mut c = Carry::from_parts(999_999_999, 99).unwrap();
            assert_eq!(t.charge(&mut c, bytes), Err(RuleError::Overflow), "{price} × {bytes}");
            assert_eq!(c, Carry::from_parts(999_999_999, 99).unwrap());
        }
        // Just fits: u64::MAX micros of price, GB bytes, max carry.
        let t = tariff(u64::MAX, 0);
        let mut c = Carry::from_parts(999_999_999, 0).unwrap();
        assert_eq!(t.charge(&mut c, GB).unwrap().client_debit, Micros(u64::MAX));
        assert_eq!(c.debit_remainder(), 999_999_999);
    }

    #[test]
    fn quote_and_bytes_for_table() {
        let t = tariff(3_000_000, 30);
        assert_eq!(t.quote(1), Micros(0));
        assert_eq!(t.quote(333), Micros(0));
        assert_eq!(t.quote(334), Micros(1));
        assert_eq!(t.quote(GB), Micros(3_000_000));
        assert_eq!(t.quote(999_999_999), Micros(2_999_999));
        assert_eq!(t.quote(u64::MAX), Micros(55_340_232_221_128_654));
        assert_eq!(tariff(u64::MAX, 0).quote(u64::MAX), Micros(u64::MAX), "saturates");
        assert_eq!(tariff(0, 0).quote(u64::MAX), Micros(0));

        assert_eq!(t.bytes_for(Micros(3_000_000)), GB);
        assert_eq!(t.bytes_for(Micros(1)), 333);
        assert_eq!(t.bytes_for(Micros(0)), 0);
        assert_eq!(tariff(0, 30).bytes_for(Micros(0)), u64::MAX);
        assert_eq!(tariff(1, 30).bytes_for(Micros(u64::MAX)), u64::MAX, "saturates");
        assert_eq!(tariff(u64::MAX, 30).bytes_for(Micros(1)), 0);

        assert_eq!(t.max_debit(1), Micros(1));
        assert_eq!(t.max_debit(0), Micros(0));
        assert_eq!(t.max_debit(GB), Micros(3_000_000));
        assert_eq!(tariff(u64::MAX, 0).max_debit(u64::MAX), Micros(u64::MAX));
    }

    #[test]
    fn hold_reservation_edges() {
        let p = HoldPolicy { chunk: Micros(1_000_000), max_overdraft: Micros(10_000) };
        for (available, want) in [
            (0, None),
            (-1, None),
            (-5_000_000, None),
            (i64::MIN, None),
            (1, Some(1)),
            (500, Some(500)),
            (999_999, Some(999_999)),
            (1_000_000, Some(1_000_000)),
            (5_000_000, Some(1_000_000)),
            (i64::MAX, Some(1_000_000)),
        ] {
            assert_eq!(p.next_reservation(available), want.map(Micros), "available {available}");
        }
        let zero = HoldPolicy { chunk: Micros(0), max_overdraft: Micros(0) };
        assert_eq!(zero.next_reservation(1_000), None);
        let huge = HoldPolicy { chunk: Micros(u64::MAX), max_overdraft: Micros(0) };
        assert_eq!(huge.next_reservation(i64::MAX), Some(Micros(i64::MAX as u64)));
    }

    #[test]
    fn overdraft_bound_table() {
        let p = HoldPolicy { chunk: Micros(1_000_000), max_overdraft: Micros(10_000) };
        let t = tariff(3_000_000, 30);
        // 10 streams × 64 KiB: 655_360 bytes; per stream ceil(196.608) = 197 micros.
        assert_eq!(p.overdraft_bound_bytes(&t, 10, 65_536), 655_360);
        assert_eq!(p.overdraft_bound_micros(&t, 10, 65_536), Micros(1_970));
        assert!(p.admits(&t, 10, 65_536));
        assert_eq!(p.overdraft_bound_bytes(&t, 0, 65_536), 0);
        assert_eq!(p.overdraft_bound_bytes(&tariff(0, 30), 10, 65_536), 0, "free traffic");
        assert_eq!(p.overdraft_bound_micros(&tariff(0, 30), 10, 65_536), Micros(0));
        assert_eq!(p.overdraft_bound_bytes(&t, u32::MAX, u64::MAX), u64::MAX, "saturates");
        assert_eq!(p.overdraft_bound_micros(&tariff(u64::MAX, 0), u32::MAX, u64::MAX), Micros(u64::MAX));
        // 10_000 micros over 10 streams: 1_000 micros each = 333_333 bytes at 3.00/GB.
        assert_eq!(p.max_run_ahead_bytes(&t, 10), 333_333);
        assert!(p.admits(&t, 10, 333_333));
        assert!(!p.admits(&t, 10, 333_334));
        assert_eq!(p.max_run_ahead_bytes(&t, 0), u64::MAX);
        assert_eq!(p.max_run_ahead_bytes(&tariff(0, 0), 7), u64::MAX);
        assert!(p.allows_balance(-10_000));
        assert!(!p.allows_balance(-10_001));
        assert!(p.allows_balance(i64::MAX));
        assert!(!p.allows_balance(i64::MIN));
        assert!(HoldPolicy { chunk: Micros(1), max_overdraft: Micros(u64::MAX) }.allows_balance(i64::MIN));
    }

    #[test]
    fn apply_and_available_table() {
        for (balance, delta, want) in [
            (0, -1, Ok(-1)),
            (5, 7, Ok(12)),
            (i64::MAX, 0, Ok(i64::MAX)),
            (i64::MAX, 1, Err(RuleError::Overflow)),
            (i64::MIN, -1, Err(RuleError::Overflow)),
            (i64::MIN, i128::from(u64::MAX), Ok(i64::MAX)),
            (1, i128::MAX, Err(RuleError::Overflow)),
            (-1, i128::MAX, Err(RuleError::Overflow)),
            (-1, i128::MIN, Err(RuleError::Overflow)),
            (0, i128::MIN, Err(RuleError::Overflow)),
        ] {
            assert_eq!(apply(balance, delta), want, "{balance} + {delta}");
        }
        assert_eq!(available(10_000_000, Micros(2_000_000), Micros(1_000_000)), Ok(7_000_000));
        assert_eq!(available(0, Micros(1), Micros(0)), Ok(-1));
        assert_eq!(available(i64::MIN, Micros(1), Micros(0)), Err(RuleError::Overflow));
        assert_eq!(available(i64::MAX, Micros(u64::MAX), Micros(u64::MAX)), Err(RuleError::Overflow));
    }

    #[test]
    fn carry_settle_and_persistence() {
        assert!(Carry::from_parts(999_999_999, 99).is_ok());
        assert_eq!(
            Carry::from_parts(1_000_000_000, 0),
            Err(RuleError::CarryOutOfRange { debit: 1_000_000_000, split: 0 })
        );
        assert!(Carry::from_parts(0, 100).is_err());

        let t = tariff(3_000_000, 30);
        let (_, mut c) = run(&t, &[999_999_999]);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"debit_rem":997000000,"split_rem":30}"#);
        assert_eq!(serde_json::from_str::<Carry>(&json).unwrap(), c);
        assert!(serde_json::from_str::<Carry>(r#"{"debit_rem":1000000000,"split_rem":0}"#).is_err());
        assert!(serde_json::from_str::<Carry>(r#"{"debit_rem":0,"split_rem":100}"#).is_err());

        assert_eq!(c.settle(), Settlement { forgiven_debit_nanos: 997_000_000, platform_kept_split_centis: 30 });
        assert!(c.is_zero());
        assert_eq!(c.settle(), Settlement::default());
    }

    #[test]
    fn charge_sum_overflow() {
        let big = Charge { client_debit: Micros(u64::MAX), node_credit: Micros(u64::MAX), platform_fee: Micros(0) };
        assert_eq!(
            big.checked_add(Charge { client_debit: Micros(1), node_credit: Micros(1), ..Charge::ZERO }),
            Err(RuleError::Overflow)
        );
        let unbalanced = Charge { client_debit: Micros(0), node_credit: Micros(u64::MAX), platform_fee: Micros(1) };
        assert!(!unbalanced.is_balanced());
    }

    /// Chunk sizes: mostly small (the carry matters), some large; total stays ≤ u64::MAX.
    fn chunks() -> impl Strategy<Value = Vec<u64>> {
        let chunk = prop_oneof![0u64..=1_000, 0u64..=10_000_000, 0u64..=(u64::MAX / 64)];
        proptest::collection::vec(chunk, 0..64)
    }

    fn prices() -> impl Strategy<Value = u64> {
        // Up to 1000.00/GB so that a debit always fits u64 for totals up to u64::MAX bytes.
        prop_oneof![Just(0u64), Just(3_000_000u64), 1u64..=1_000, 0u64..=GB]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// (a) pieces = one shot exactly, (b) every charge balanced, (c) cumulative split is the
        /// floor rule exactly after every step, (d) carries below their modulus; and the exact
        /// identities that nothing is lost or invented.
        #[test]
        fn pieces_equal_one_shot(price in prices(), fee in 0u8..=100, chunks in chunks()) {
            let t = tariff(price, fee);
            let mut carry = Carry::default();
            let mut total = Charge::ZERO;
            let mut bytes: u64 = 0;
            for &b in &chunks {
                let c = t.charge(&mut carry, b).unwrap();
                prop_assert!(c.is_balanced(), "{c:?}");                                   // (b)
                prop_assert!(c.node_credit <= c.client_debit);
                prop_assert!(u128::from(carry.debit_remainder()) < DEBIT_MODULUS);         // (d)
                prop_assert!(u128::from(carry.split_remainder()) < SPLIT_MODULUS);
                total = total.checked_add(c).unwrap();
                bytes += b;
                let exact = u128::from(price) * u128::from(bytes);
                let d = u128::from(total.client_debit.0);
                // Client: debit × 10^9 + carried fraction == exact price, at every step.
                prop_assert_eq!(d * DEBIT_MODULUS + u128::from(carry.debit_remainder()), exact);
                prop_assert_eq!(total.client_debit, t.quote(bytes));
                // (c) node × 100 + carried fraction == debit × (100 − fee), at every step.
                let node_exact = d * u128::from(100 - fee);
                prop_assert_eq!(u128::from(total.node_credit.0) * 100 + u128::from(carry.split_remainder()), node_exact);
                prop_assert_eq!(u128::from(total.node_credit.0), node_exact / 100);
            }
            // (a) one shot of the total: same charge, same carry.
            let mut one_carry = Carry::default();
            let one = t.charge(&mut one_carry, bytes).unwrap();
            prop_assert_eq!(total, one);
            prop_assert_eq!(carry, one_carry);
            let s = carry.settle();
            prop_assert!(carry.is_zero());
            prop_assert!(u128::from(s.forgiven_debit_nanos) < DEBIT_MODULUS);
        }

        /// Any valid carry, any tariff (fee possibly invalid), any bytes: no panic; either a
        /// balanced charge with a valid carry, or an error with the carry untouched.
        #[test]
        fn never_panics_or_unbalances(price: u64, fee: u8, bytes: u64, rem in 0u32..1_000_000_000, split in 0u8..100) {
            let t = Tariff { price_per_gb: Micros(price), platform_fee_percent: fee };
            let before = Carry::from_parts(rem, split).unwrap();
            let mut c = before;
            match t.charge(&mut c, bytes) {
                Ok(ch) => {
                    prop_assert!(fee <= 100);
                    prop_assert!(ch.is_balanced());
                    prop_assert!(ch.node_credit <= ch.client_debit);
                    prop_assert!(Carry::from_parts(c.debit_remainder(), c.split_remainder()).is_ok());
                    prop_assert!(ch.client_debit <= t.max_debit(bytes));
                }
                Err(e) => {
                    prop_assert_eq!(c, before);
                    if fee > 100 {
                        prop_assert_eq!(e, RuleError::FeeOutOfRange(fee));
                    } else {
                        prop_assert_eq!(e, RuleError::Overflow);
                    }
                }
            }
        }

        /// bytes_for is the exact inverse: price × b ≤ amount × 10^9 < price × (b + 1).
        #[test]
        fn bytes_for_is_exact_inverse(price in prices(), amount: u64) {
            let t = tariff(price, 0);
            let a = Micros(amount);
            let b = t.bytes_for(a);
            if price == 0 {
                prop_assert_eq!(b, u64::MAX);
            } else {
                prop_assert!(u128::from(price) * u128::from(b) <= u128::from(amount) * DEBIT_MODULUS);
                if b < u64::MAX {
                    prop_assert!(u128::from(price) * u128::from(b + 1) > u128::from(amount) * DEBIT_MODULUS);
                }
                prop_assert!(t.quote(b) <= a);
            }
            // A hold of `amount` is never overrun by `bytes_for(amount)` bytes, whatever the carry.
            if b < u64::MAX || price == 0 {
                let mut c = Carry::from_parts(999_999_999, 99).unwrap();
                let ch = t.charge(&mut c, b).unwrap();
                prop_assert!(ch.client_debit <= a || price == 0);
            }
        }

        #[test]
        fn reservation_bounds(chunk: u64, available: i64) {
            let p = HoldPolicy { chunk: Micros(chunk), max_overdraft: Micros(0) };
            match p.next_reservation(available) {
                Some(r) => {
                    prop_assert!(available > 0 && chunk > 0 && r.0 > 0);
                    prop_assert!(r.0 <= chunk);
                    prop_assert!(i128::from(r.0) <= i128::from(available));
                    prop_assert!(r.0 == chunk || i128::from(r.0) == i128::from(available));
                }
                None => prop_assert!(available <= 0 || chunk == 0),
            }
        }

        #[test]
        fn run_ahead_is_the_largest_admitted(price in prices(), max_overdraft in 0u64..=u64::MAX / 2, streams in 0u32..10_000) {
            let t = tariff(price, 30);
            let p = HoldPolicy { chunk: Micros(1), max_overdraft: Micros(max_overdraft) };
            let b = p.max_run_ahead_bytes(&t, streams);
            prop_assert!(p.admits(&t, streams, b));
            if b < u64::MAX {
                prop_assert!(!p.admits(&t, streams, b + 1));
            }
            let bytes = p.overdraft_bound_bytes(&t, streams, b);
            prop_assert!(price == 0 || bytes == u64::from(streams).saturating_mul(b));
        }

        #[test]
        fn apply_matches_wide_arithmetic(balance: i64, delta in any::<i64>().prop_map(i128::from)) {
            let wide = i128::from(balance) + delta;
            prop_assert_eq!(apply(balance, delta).ok(), i64::try_from(wide).ok());
        }
    }
}
