//! Metered usage: the `sessions` table (one row per client stream) and the bounded accruals
//! (unposted charges of live sessions, packed 64 session ids to a chunk). One call,
//! [`Store::flush_usage`], writes a whole flush — session rows, accruals, and the postings that
//! are due — in one write transaction.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::ledger::{Account, Postings, Transfer};
use super::tables::{ACCRUAL_CHUNKS, ACCRUED, META, SESSIONS, USAGE};
use super::{Store, StoreError, from_json, to_json};
use crate::billing::rules::{Carry, Charge, Tariff};
use crate::money::Micros;

/// One client stream, as the seed's `sessions` table holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: u64,
    /// The account billed.
    pub client: String,
    /// The sub-user that opened the stream, if one did.
    #[serde(default)]
    pub sub: Option<String>,
    /// Node device id (hex), its owner, virtual IP and public IP.
    pub device: String,
    pub owner: String,
    pub vip: String,
    pub node_ip: String,
    pub target: String,
    pub start: u64,
    #[serde(default)]
    pub end: Option<u64>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Everything charged to the client so far (posted and accrued) by the tariff's rule:
    /// `floor(price × bytes / 10^9)`, micro-units.
    pub charge: Micros,
    /// The node owner's share of `charge` (the rest is the platform fee). When the client is
    /// the node's owner it is not paid: the client pays only the fee.
    #[serde(default)]
    pub node_credit: Micros,
    /// The tariff the session was billed at (fixed at its start).
    #[serde(default)]
    pub tariff: Option<Tariff>,
    #[serde(default)]
    pub end_reason: Option<String>,
}

impl SessionRecord {
    /// True when the client used its own node (it pays only the platform fee).
    pub fn self_use(&self) -> bool {
        self.client == self.owner
    }
}

/// Unposted usage of one session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Accrual {
    pub session: u64,
    pub client: String,
    pub owner: String,
    /// Charged but not yet posted.
    pub pending: Charge,
    /// Sub-micro remainders carried for this session.
    pub carry: Carry,
    /// Postings made so far (the next posting's id uses this number).
    pub posts: u32,
    /// The session's totals as of the last flush that wrote this row (the session's own row is
    /// written only at its start and its end).
    #[serde(default)]
    pub progress: Option<Progress>,
}

/// A live session's bytes and cumulative charge, as of the last flush.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub charge_micros: u64,
    pub node_credit_micros: u64,
}

impl SessionRecord {
    /// Brings a live session's row up to date with its accrual's progress.
    pub fn apply(&mut self, p: &Progress) {
        self.bytes_up = p.bytes_up;
        self.bytes_down = p.bytes_down;
        self.charge = Micros(p.charge_micros);
        self.node_credit = Micros(p.node_credit_micros);
    }
}

/// First byte of an accrual row in the compact encoding (older rows are JSON and start `{`).
const ACCRUAL_V1: u8 = 0xA1;

impl Accrual {
    /// The row as stored (see [`AccrualRow::encode`]).
    pub fn encode(&self) -> Vec<u8> {
        self.row().encode()
    }

    /// Its fields, borrowed.
    pub fn row(&self) -> AccrualRow<'_> {
        AccrualRow {
            session: self.session,
            client: &self.client,
            owner: &self.owner,
            pending: self.pending,
            carry: self.carry,
            posts: self.posts,
            progress: self.progress,
        }
    }

    /// Reads a row in either encoding.
    pub fn decode(b: &[u8]) -> Result<Accrual, StoreError> {
        if b.first() == Some(&b'{') {
            return from_json(b);
        }
        let bad = || StoreError::Corrupt("truncated or malformed accrual row".into());
        let mut r = b.strip_prefix(&[ACCRUAL_V1]).ok_or_else(bad)?;
        let mut take = |n: usize| -> Result<&[u8], StoreError> {
            let (head, tail) = r.split_at_checked(n).ok_or_else(bad)?;
            r = tail;
            Ok(head)
        };
        let mut u64_ =
            || -> Result<u64, StoreError> { Ok(u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?)) };
        let session = u64_()?;
        let pending =
            Charge { client_debit: Micros(u64_()?), node_credit: Micros(u64_()?), platform_fee: Micros(u64_()?) };
        let debit_rem = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?);
        let split_rem = take(1)?[0];
        let carry = Carry::from_parts(debit_rem, split_rem).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let posts = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad())?);
        let progress = match take(1)?[0] {
            0 => None,
            1 => {
                let mut v = [0u64; 4];
                for x in &mut v {
                    *x = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?);
                }
                Some(Progress { bytes_up: v[0], bytes_down: v[1], charge_micros: v[2], node_credit_micros: v[3] })
            }
            _ => return Err(bad()),
        };
        let mut name = || -> Result<String, StoreError> {
            let len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| bad())?);
            String::from_utf8(take(usize::from(len))?.to_vec()).map_err(|_| bad())
        };
        let (client, owner) = (name()?, name()?);
        if !r.is_empty() {
            return Err(bad());
        }
        Ok(Accrual { session, client, owner, pending, carry, posts, progress })
    }

    /// What the client owes for the pending charge: all of it, or only the platform fee when
    /// it used its own node.
    pub fn owed(&self) -> u64 {
        if self.client == self.owner { self.pending.platform_fee.0 } else { self.pending.client_debit.0 }
    }
}

/// An accrual row's fields, borrowed: what a flush encodes for every live session that moved
/// bytes, without copying its names into an [`Accrual`] first.
#[derive(Debug, Clone, Copy)]
pub struct AccrualRow<'a> {
    pub session: u64,
    pub client: &'a str,
    pub owner: &'a str,
    pub pending: Charge,
    pub carry: Carry,
    pub posts: u32,
    pub progress: Option<Progress>,
}

impl AccrualRow<'_> {
    /// An owned copy (for a row that is posted: the posting needs the names).
    pub fn to_accrual(&self) -> Accrual {
        Accrual {
            session: self.session,
            client: self.client.to_owned(),
            owner: self.owner.to_owned(),
            pending: self.pending,
            carry: self.carry,
            posts: self.posts,
            progress: self.progress,
        }
    }

    /// The row as stored: a compact fixed layout, rewritten every second for every live session
    /// (JSON cost a third of a flush). Little-endian: tag, session, the pending charge (client,
    /// node, fee), the carry (debit remainder, split remainder), posts, a progress flag and its
    /// four totals, then the client and owner names with u16 lengths.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(96 + self.client.len() + self.owner.len());
        b.push(ACCRUAL_V1);
        b.extend_from_slice(&self.session.to_le_bytes());
        for m in [self.pending.client_debit, self.pending.node_credit, self.pending.platform_fee] {
            b.extend_from_slice(&m.0.to_le_bytes());
        }
        b.extend_from_slice(&self.carry.debit_remainder().to_le_bytes());
        b.push(self.carry.split_remainder());
        b.extend_from_slice(&self.posts.to_le_bytes());
        match &self.progress {
            None => b.push(0),
            Some(p) => {
                b.push(1);
                for v in [p.bytes_up, p.bytes_down, p.charge_micros, p.node_credit_micros] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        for name in [self.client, self.owner] {
            let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
        }
        b
    }
}

/// Unposted accruals per client, as the client owes them, summed from the accrual rows
/// (migration and verification; the hot paths read [`ACCRUED`]).
pub(crate) fn accrued_by(rows: &[Accrual]) -> HashMap<String, i64> {
    let mut out: HashMap<String, i64> = HashMap::new();
    for a in rows {
        *out.entry(a.client.clone()).or_default() += a.owed() as i64;
    }
    out
}

/// How many low bits of a session id an accrual chunk spans: [`ACCRUAL_CHUNKS`] keys rows by
/// `session >> CHUNK_BITS`, so a flush that rewrites 10,000 live sessions' rows makes ~160
/// B-tree inserts instead of 10,000 (each insert, not the bytes, was most of a flush's write).
const CHUNK_BITS: u32 = 6;

fn chunk_key(session: u64) -> u64 {
    session >> CHUNK_BITS
}

/// The rows of one accrual chunk, in session order: `(session, encoded row)`. A chunk is a run
/// of rows ([`AccrualRow::encode`]), each after its length as a little-endian u32; a row that
/// is truncated, of another chunk or out of order is [`StoreError::Corrupt`] (and ends the
/// iteration).
pub(crate) fn chunk_rows(key: u64, chunk: &[u8]) -> ChunkRows<'_> {
    ChunkRows { key, rest: chunk, last: None }
}

pub(crate) struct ChunkRows<'a> {
    key: u64,
    rest: &'a [u8],
    last: Option<u64>,
}

impl<'a> ChunkRows<'a> {
    fn step(&mut self) -> Result<(u64, &'a [u8]), StoreError> {
        let key = self.key;
        let bad = |what: &str| StoreError::Corrupt(format!("accrual chunk {key}: {what}"));
        let (len, rest) = self.rest.split_first_chunk::<4>().ok_or_else(|| bad("truncated row length"))?;
        let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| bad("row too long"))?;
        let (row, rest) = rest.split_at_checked(len).ok_or_else(|| bad("truncated row"))?;
        let session = match row {
            [ACCRUAL_V1, id @ ..] => id.first_chunk::<8>().map(|b| u64::from_le_bytes(*b)),
            _ => None,
        }
        .ok_or_else(|| bad("malformed row"))?;
        if chunk_key(session) != key || self.last.is_some_and(|l| l >= session) {
            return Err(bad(&format!("row of session {session} out of place")));
        }
        self.last = Some(session);
        self.rest = rest;
        Ok((session, row))
    }
}

impl<'a> Iterator for ChunkRows<'a> {
    type Item = Result<(u64, &'a [u8]), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

fn push_row(chunk: &mut Vec<u8>, row: &[u8]) {
    let len = u32::try_from(row.len()).unwrap_or(u32::MAX);
    chunk.extend_from_slice(&len.to_le_bytes());
    chunk.extend_from_slice(row);
}

/// Every accrual row of a chunk table, decoded.
pub(crate) fn all_accruals(t: &impl ReadableTable<u64, &'static [u8]>) -> Result<Vec<Accrual>, StoreError> {
    let mut out = Vec::new();
    for chunk in t.iter()? {
        let (k, v) = chunk?;
        for row in chunk_rows(k.value(), v.value()) {
            out.push(Accrual::decode(row?.1)?);
        }
    }
    Ok(out)
}

/// `session`'s accrual row, if it has one.
pub(crate) fn accrual_of(
    t: &impl ReadableTable<u64, &'static [u8]>,
    session: u64,
) -> Result<Option<Accrual>, StoreError> {
    let key = chunk_key(session);
    let Some(chunk) = t.get(key)? else { return Ok(None) };
    for row in chunk_rows(key, chunk.value()) {
        let (s, row) = row?;
        if s == session {
            return Accrual::decode(row).map(Some);
        }
    }
    Ok(None)
}

/// Applies `writes` (one per session) to a chunk table: each touched chunk is read once,
/// merged with the writes that fall in it, and written back (or removed when it empties). A
/// chunk that does not parse fails the write (and so every flush that touches it) rather than
/// losing the rows in it: `ledger verify` names it.
pub(crate) fn write_accruals(
    t: &mut redb::Table<'_, u64, &'static [u8]>,
    writes: &[AccrualWrite],
) -> Result<(), StoreError> {
    let mut order: Vec<&AccrualWrite> = writes.iter().collect();
    order.sort_unstable_by_key(|w| w.session());
    if let Some(w) = order.windows(2).find(|w| w[0].session() == w[1].session()) {
        return Err(StoreError::Invalid(format!("session {} written twice in one flush", w[0].session())));
    }
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for group in order.chunk_by(|a, b| chunk_key(a.session()) == chunk_key(b.session())) {
        let key = chunk_key(group[0].session());
        old.clear();
        if let Some(v) = t.get(key)? {
            old.extend_from_slice(v.value());
        }
        new.clear();
        let mut writes = group.iter().peekable();
        let put = |chunk: &mut Vec<u8>, w: &AccrualWrite| match w {
            AccrualWrite::Keep { session, row } => {
                debug_assert_eq!(row.get(1..9), Some(&session.to_le_bytes()[..]), "a row under its own session");
                push_row(chunk, row)
            }
            AccrualWrite::Post { ended: true, .. } => {}
            AccrualWrite::Post { accrual, ended: false } => push_row(chunk, &accrual.encode()),
        };
        for row in chunk_rows(key, &old) {
            let (session, row) = row?;
            while let Some(w) = writes.next_if(|w| w.session() < session) {
                put(&mut new, w);
            }
            match writes.next_if(|w| w.session() == session) {
                Some(w) => put(&mut new, w),
                None => push_row(&mut new, row),
            }
        }
        for w in writes {
            put(&mut new, w);
        }
        if new.is_empty() {
            t.remove(key)?;
        } else {
            t.insert(key, new.as_slice())?;
        }
    }
    Ok(())
}

/// Usage of one subject in one hour (the roll-up behind usage and earnings charts).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageBucket {
    /// Bytes client → target and target → client.
    pub up: u64,
    pub down: u64,
    /// What clients were charged (for a client: what it paid).
    pub debit: u64,
    /// What node owners earned (0 for a client's use of its own node).
    pub earned: u64,
    /// What the platform kept.
    pub fee: u64,
    /// Streams started.
    pub sessions: u64,
}

impl UsageBucket {
    /// Bytes both ways.
    pub fn bytes(&self) -> u64 {
        self.up.saturating_add(self.down)
    }

    pub fn add(&mut self, o: &UsageBucket) {
        self.up = self.up.saturating_add(o.up);
        self.down = self.down.saturating_add(o.down);
        self.debit = self.debit.saturating_add(o.debit);
        self.earned = self.earned.saturating_add(o.earned);
        self.fee = self.fee.saturating_add(o.fee);
        self.sessions = self.sessions.saturating_add(o.sessions);
    }
}
/// What [`Store::recover_usage`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Sessions whose accrued usage was posted.
    pub sessions: usize,
    /// Holds expired.
    pub holds: usize,
    /// What the postings moved.
    pub posted: Posted,
}

/// Money that usage postings moved, in micro-units: what clients paid, what node owners got,
/// what the platform kept (`client_debit = node_credit + platform_fee`; a client using its own
/// node pays only the fee).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    pub client_debit: u64,
    pub node_credit: u64,
    pub platform_fee: u64,
}

/// What one flush does with one live session's accrual row.
#[derive(Debug)]
pub enum AccrualWrite {
    /// Rewrite the row, already encoded ([`AccrualRow::encode`]): nothing is due.
    Keep { session: u64, row: Vec<u8> },
    /// Post its pending charge (ended sessions, and those due by time), then rewrite it, or
    /// delete it when the session `ended`. Out: the accrual as written (pending zeroed, one
    /// more posting).
    Post { accrual: Accrual, ended: bool },
}

impl AccrualWrite {
    pub fn session(&self) -> u64 {
        match self {
            AccrualWrite::Keep { session, .. } => *session,
            AccrualWrite::Post { accrual, .. } => accrual.session,
        }
    }
}

/// Everything one flush writes.
#[derive(Debug, Default)]
pub struct FlushBatch {
    pub sessions: Vec<SessionRecord>,
    /// Live sessions' accrual rows, in the order the caller staged them.
    pub accruals: Vec<AccrualWrite>,
    /// (hold, micro-units accrued against it in this flush).
    pub hold_used: Vec<(u64, u64)>,
    /// Holds released (their client has no live stream left).
    pub hold_release: Vec<u64>,
    /// Usage roll-up deltas: (subject, hour, delta).
    pub usage: Vec<(String, u64, UsageBucket)>,
    /// Change of each client's accrued total (what its written accrual rows owe, after posting).
    pub accrued_delta: Vec<(String, i64)>,
    /// Out: what the postings of a committed flush moved.
    pub posted: Posted,
}

/// Posts one accrual's pending charge as usage transfers (client → node owner, client →
/// platform fees) with deterministic ids, and zeroes it; adds what it posted to `posted`.
fn post_accrual(postings: &mut Postings<'_>, a: &mut Accrual, now: u64, posted: &mut Posted) -> Result<(), StoreError> {
    if a.pending.client_debit.0 == 0 {
        return Ok(());
    }
    let client = Account::User(a.client.clone()).key();
    let reference = format!("session {}", a.session);
    let legs = [
        (Account::User(a.owner.clone()).key(), a.pending.node_credit, "usage", "node"),
        (Account::PlatformFees.key(), a.pending.platform_fee, "usage_fee", "fee"),
    ];
    for (credit, amount, kind, leg) in legs {
        // A client using its own node pays only the platform's share.
        if amount.0 == 0 || credit == client {
            continue;
        }
        postings.post(Transfer {
            seq: 0,
            id: format!("usage:{}:{}:{leg}", a.session, a.posts),
            debit: client.clone(),
            credit,
            amount,
            kind: kind.into(),
            reference: reference.clone(),
            time: now,
        })?;
        posted.client_debit = posted.client_debit.saturating_add(amount.0);
        let share = if leg == "node" { &mut posted.node_credit } else { &mut posted.platform_fee };
        *share = share.saturating_add(amount.0);
    }
    a.pending = Charge::ZERO;
    a.posts += 1;
    Ok(())
}

impl Store {
    /// Writes one metering flush in one write transaction.
    pub fn flush_usage(&self, batch: &mut FlushBatch, now: u64) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            for s in &batch.sessions {
                sessions.insert(s.id, to_json(s)?.as_slice())?;
            }
        }
        let mut posted = Posted::default();
        // (Most flushes post nothing: they leave the ledger's tables closed.)
        if batch.accruals.iter().any(|w| matches!(w, AccrualWrite::Post { .. })) {
            Postings::with(&txn, |postings| {
                for w in &mut batch.accruals {
                    if let AccrualWrite::Post { accrual, .. } = w {
                        post_accrual(postings, accrual, now, &mut posted)?;
                    }
                }
                Ok(())
            })?;
        }
        write_accruals(&mut txn.open_table(ACCRUAL_CHUNKS)?, &batch.accruals)?;
        super::holds::settle_holds(&txn, &batch.hold_used, &batch.hold_release)?;
        {
            let mut totals = txn.open_table(ACCRUED)?;
            for (client, delta) in &batch.accrued_delta {
                let cur = totals.get(client.as_str())?.map(|v| v.value()).unwrap_or(0);
                let new = cur.checked_add(*delta).filter(|v| *v >= 0).ok_or_else(|| {
                    StoreError::Corrupt(format!("accrued total of {client} would be {cur} + {delta}"))
                })?;
                if new == 0 {
                    totals.remove(client.as_str())?;
                } else {
                    totals.insert(client.as_str(), new)?;
                }
            }
        }
        {
            let mut usage = txn.open_table(USAGE)?;
            for (subject, hour, delta) in &batch.usage {
                let mut b: UsageBucket = usage
                    .get((subject.as_str(), *hour))?
                    .map(|v| from_json(v.value()))
                    .transpose()?
                    .unwrap_or_default();
                b.add(delta);
                usage.insert((subject.as_str(), *hour), to_json(&b)?.as_slice())?;
            }
        }
        txn.commit()?;
        batch.posted = posted;
        Ok(())
    }

    /// The highest session id ever written (ids continue after it).
    pub fn max_session_id(&self) -> Result<u64, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(SESSIONS)?;
        let last = t.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        let meta = rtx.open_table(META)?.get("session_seq")?.map(|v| v.value()).unwrap_or(0);
        Ok(last.max(meta))
    }

    /// Unposted charges per client, in micro-units.
    pub fn accrued_by_client(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(ACCRUED)?;
        t.iter()?
            .map(|r| {
                let (k, v) = r?;
                Ok((k.value().to_owned(), v.value()))
            })
            .collect()
    }

    /// The sum of `subject`'s usage over hours `from..to`.
    pub fn usage_total(&self, subject: &str, from: u64, to: u64) -> Result<UsageBucket, StoreError> {
        let mut total = UsageBucket::default();
        for (_, b) in self.usage_series(subject, from, to)? {
            total.add(&b);
        }
        Ok(total)
    }

    /// `subject`'s usage today (UTC), up to `now`.
    pub fn usage_today(&self, subject: &str, now: u64) -> Result<UsageBucket, StoreError> {
        let hour = now / 3600;
        self.usage_total(subject, hour - hour % 24, hour + 1)
    }

    /// What device `device` (hex id) carried and earned its owner today (UTC), up to `now`: the
    /// device's "today" on its admin page and in the HEARTBEAT_ACK its node receives.
    pub fn device_today(&self, device: &str, now: u64) -> Result<UsageBucket, StoreError> {
        self.usage_today(&format!("device:{device}"), now)
    }

    /// Hourly usage of `subject` (`client:NAME`, `owner:NAME`, `device:HEX`) for hours
    /// `from..to` (hours since the epoch), oldest first; hours without usage are absent.
    pub fn usage_series(&self, subject: &str, from: u64, to: u64) -> Result<Vec<(u64, UsageBucket)>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(USAGE)?;
        t.range((subject, from)..(subject, to))?
            .map(|r| {
                let (k, v) = r?;
                Ok((k.value().1, from_json(v.value())?))
            })
            .collect()
    }

    /// After a restart: posts what live sessions had accrued when the process stopped, closes
    /// them with `reason` and expires the holds that were taken for them, in one transaction.
    pub fn recover_usage(&self, now: u64, reason: &str) -> Result<Recovered, StoreError> {
        let txn = self.write()?;
        let mut n = 0;
        let mut posted = Posted::default();
        let holds = super::holds::expire_holds_in(&txn)?;
        // Every accrual is posted below: nothing stays accrued.
        txn.open_table(ACCRUED)?.retain(|_, _| false)?;
        {
            let mut accruals = txn.open_table(ACCRUAL_CHUNKS)?;
            let rows = all_accruals(&accruals)?;
            accruals.retain(|_, _| false)?;
            let mut sessions = txn.open_table(SESSIONS)?;
            Postings::with(&txn, |postings| {
                for mut a in rows {
                    post_accrual(postings, &mut a, now, &mut posted)?;
                    let rec: Option<SessionRecord> =
                        sessions.get(a.session)?.map(|v| from_json(v.value())).transpose()?;
                    if let Some(mut rec) = rec
                        && rec.end.is_none()
                    {
                        if let Some(p) = &a.progress {
                            rec.apply(p);
                        }
                        rec.end = Some(now);
                        rec.end_reason = Some(reason.into());
                        sessions.insert(a.session, to_json(&rec)?.as_slice())?;
                    }
                    n += 1;
                }
                Ok(())
            })?;
            // Sessions written without an accrual (nothing charged) but never ended.
            let open: Vec<SessionRecord> = sessions
                .iter()?
                .map(|r| r.map_err(StoreError::from).and_then(|r| from_json::<SessionRecord>(r.1.value())))
                .filter(|r| r.as_ref().map_or(true, |s| s.end.is_none()))
                .collect::<Result<_, _>>()?;
            for mut rec in open {
                rec.end = Some(now);
                rec.end_reason = Some(reason.into());
                sessions.insert(rec.id, to_json(&rec)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(Recovered { sessions: n, holds, posted })
    }

    /// Sessions, newest first, that match `filter` (client, node public IP), come before its
    /// window's `before` (a session id) and overlap its window (a live session lasts until now).
    pub fn list_sessions(&self, filter: &SessionFilter<'_>) -> Result<Vec<SessionRecord>, StoreError> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(SESSIONS)?;
        let accruals = rtx.open_table(ACCRUAL_CHUNKS)?;
        let mut out = Vec::new();
        for row in t.range(..filter.window.before.unwrap_or(u64::MAX))?.rev() {
            if filter.window.full(out.len()) {
                break;
            }
            let mut s: SessionRecord = from_json(row?.1.value())?;
            if filter.client.is_none_or(|c| s.client == c)
                && filter.node_ip.is_none_or(|ip| s.node_ip == ip)
                && filter.window.overlaps(s.start, s.end)
            {
                if s.end.is_none()
                    && let Some(p) = accrual_of(&accruals, s.id)?.and_then(|a| a.progress)
                {
                    s.apply(&p);
                }
                out.push(s);
            }
        }
        Ok(out)
    }
}

/// Which sessions [`Store::list_sessions`] returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionFilter<'a> {
    /// Only this client's.
    pub client: Option<&'a str>,
    /// Only those carried by a node with this public IP (as the server saw it).
    pub node_ip: Option<&'a str>,
    pub window: super::Window,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample(progress: Option<Progress>) -> Accrual {
        Accrual {
            session: 42,
            client: "alice".into(),
            owner: "bob_ünï".into(),
            pending: Charge { client_debit: Micros(1000), node_credit: Micros(700), platform_fee: Micros(300) },
            carry: Carry::from_parts(999_999_999, 99).unwrap(),
            posts: 7,
            progress,
        }
    }

    #[test]
    fn accrual_rows_round_trip_and_old_json_rows_still_read() {
        let p = Progress { bytes_up: 1, bytes_down: u64::MAX, charge_micros: 3, node_credit_micros: 2 };
        for a in [sample(None), sample(Some(p))] {
            assert_eq!(Accrual::decode(&a.encode()).unwrap(), a);
            assert_eq!(Accrual::decode(&to_json(&a).unwrap()).unwrap(), a, "JSON rows of older builds");
        }
        assert!(sample(Some(p)).encode().len() < to_json(&sample(Some(p))).unwrap().len() / 2);
    }

    #[test]
    fn malformed_accrual_rows_are_errors() {
        let row = sample(None).encode();
        for n in 0..row.len() {
            assert!(Accrual::decode(&row[..n]).is_err(), "truncated at {n}");
        }
        let mut long = row.clone();
        long.push(0);
        assert!(Accrual::decode(&long).is_err(), "trailing bytes");
        let mut tag = row.clone();
        tag[0] = 0xA2;
        assert!(Accrual::decode(&tag).is_err(), "unknown encoding");
        let mut carry = row.clone();
        carry[33..37].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Accrual::decode(&carry).is_err(), "carry out of range");
    }

    fn with_session(session: u64) -> Accrual {
        Accrual { session, ..sample(None) }
    }

    fn keep(session: u64) -> AccrualWrite {
        AccrualWrite::Keep { session, row: with_session(session).encode() }
    }

    /// A flush's writes merge with the rows already in their chunks: untouched rows stay,
    /// new ones go in order, ended ones go, and a chunk left empty is removed.
    #[test]
    fn accrual_writes_merge_into_their_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("a.redb")).unwrap();
        let txn = s.write_for_test().unwrap();
        {
            let mut t = txn.open_table(ACCRUAL_CHUNKS).unwrap();
            write_accruals(&mut t, &[keep(70), keep(2), keep(1), keep(63)]).unwrap();
            let sessions = |t: &redb::Table<'_, u64, &'static [u8]>| -> Vec<u64> {
                all_accruals(t).unwrap().iter().map(|a| a.session).collect()
            };
            assert_eq!(sessions(&t), [1, 2, 63, 70]);
            assert_eq!(redb::ReadableTableMetadata::len(&t).unwrap(), 2, "ids 0–63 and 64–127");
            let mut posted = with_session(70);
            posted.posts = 8;
            write_accruals(
                &mut t,
                &[
                    keep(3),
                    AccrualWrite::Post { accrual: with_session(2), ended: true },
                    AccrualWrite::Post { accrual: posted.clone(), ended: false },
                ],
            )
            .unwrap();
            assert_eq!(sessions(&t), [1, 3, 63, 70]);
            assert_eq!(accrual_of(&t, 70).unwrap(), Some(posted));
            assert_eq!(accrual_of(&t, 2).unwrap(), None);
            assert_eq!(accrual_of(&t, 1 << 40).unwrap(), None);
            let ended = |id| AccrualWrite::Post { accrual: with_session(id), ended: true };
            write_accruals(&mut t, &[ended(1), ended(3), ended(63)]).unwrap();
            assert_eq!(sessions(&t), [70]);
            assert_eq!(redb::ReadableTableMetadata::len(&t).unwrap(), 1, "the emptied chunk is removed");
            assert!(matches!(write_accruals(&mut t, &[keep(5), keep(5)]), Err(StoreError::Invalid(_))));
        }
    }

    #[test]
    fn malformed_accrual_chunks_are_errors() {
        let mut chunk = Vec::new();
        for id in [1, 2] {
            push_row(&mut chunk, &with_session(id).encode());
        }
        assert_eq!(chunk_rows(0, &chunk).map(|r| r.unwrap().0).collect::<Vec<_>>(), [1, 2]);
        let fails = |key: u64, b: &[u8]| chunk_rows(key, b).any(|r| r.is_err());
        for n in 1..chunk.len() {
            let whole = n == chunk.len() / 2;
            assert_eq!(fails(0, &chunk[..n]), !whole, "cut at {n}");
        }
        assert!(fails(1, &chunk), "rows of another chunk");
        let mut twice = chunk.clone();
        twice.extend_from_slice(&chunk);
        assert!(fails(0, &twice), "out of order");
        let mut tag = chunk.clone();
        tag[4] = 0xA2;
        assert!(fails(0, &tag), "unknown encoding");
        let mut long = chunk.clone();
        long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(fails(0, &long), "length past the end");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Accrual::decode(&b);
            let _ = chunk_rows(0, &b).count();
        }
    }
}
