//! Real-time metering: every client stream is a session whose byte counters live with it; a
//! flusher persists them once a second as accruals (one bounded row per live session, packed 64
//! session ids to a store entry; one write transaction per flush) and posts them to the ledger
//! at least once a minute and when the session ends.
//!
//! Streams bill against a **hold** (SECURITY.md §4.4): a client's live streams share one
//! budget, backed by a reservation in the store of at most [`HoldPolicy::chunk`] at a time.
//! Bytes are charged to the budget as they pass (rounded up); when it runs low the
//! [`HoldDesk`] reserves more, many clients' requests in one write transaction (group commit).
//! When nothing more can be reserved the client's live streams are cut and new ones refused,
//! within the bound of [`Billing::overdraft_bound_bytes`]. Flushes lower holds by what was
//! accrued against them and release them when the client's last stream is posted; a restart
//! expires the holds a previous run left.
//!
//! Money never lives only in memory: what a crash loses is at most one flush interval of
//! traffic, and `Store::recover_usage` posts what the last flush saved.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{info, trace, warn};

use super::rules::{Carry, Charge, HoldPolicy, Tariff};
use crate::shutdown::Shutdown;
use crate::store::{
    AccrualRow, AccrualWrite, FlushBatch, HoldRequest, Posted, Progress, SessionRecord, Store, UsageBucket, now_secs,
};
use crate::sync::lock;
use crate::telemetry::BillingCounters;

/// How often live usage is persisted as accruals.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often a live session's accrual is posted to the ledger.
pub const POST_EVERY_SECS: u64 = 60;
/// The relay reports usage at least every this many bytes per direction (its meter batch); the
/// overdraft bound is computed from it. `crate::relay` asserts at compile time that the copy's
/// batch is no larger.
pub const METER_BATCH_BYTES: u64 = 256 * 1024;
/// A hold reserves at least what this much traffic costs, so a stream at full speed does not
/// outrun the reservation that extends it (at 10 Gbit/s, half of it lasts about 100 ms).
pub const HOLD_MIN_BYTES: u64 = 256 << 20;

/// The documented overdraft bound in money for clients of at most `max_streams` streams:
/// what [`Billing::overdraft_bound_bytes`] costs, rounded up.
pub fn overdraft_bound(tariff: &Tariff, max_streams: u32) -> crate::money::Micros {
    tariff.max_debit(Billing::overdraft_bound_bytes(max_streams))
}

/// Hashes the server's own sequential ids (sessions, holds) with one multiply (Fibonacci
/// hashing). No peer chooses them, so SipHash's resistance to chosen keys buys nothing here, and
/// it was a tenth of a flush with 10,000 live sessions.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;
type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// A usage roll-up subject (`client:` and a name, `owner:`, `device:`, `sub:`) with its hash,
/// taken (keyed, SipHash) when the session opened: each flush adds 10,000 live sessions' usage
/// to their subjects without hashing their names again (that was a sixth of a steady flush).
#[derive(Debug, Clone, Copy)]
struct Subject<'a> {
    hash: u64,
    kind: &'static str,
    name: &'a str,
}

impl Hash for Subject<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

impl PartialEq for Subject<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash && self.kind == o.kind && self.name == o.name
    }
}

impl Eq for Subject<'_> {}

type SubjectMap<'a, V> = HashMap<Subject<'a>, V, BuildHasherDefault<IdHasher>>;

/// The roll-up kinds, in the order of [`SessionInfo::subject_names`].
const SUBJECT_KINDS: [&str; 4] = ["client:", "owner:", "device:", "sub:"];
const CLIENT: usize = 0;
const OWNER: usize = 1;
const DEVICE: usize = 2;
const SUB: usize = 3;

/// What a session is about (fixed at its start).
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The account billed.
    pub client: String,
    /// The sub-user that opened the stream, if it was one (billed to `client`).
    pub sub: Option<String>,
    pub device: String,
    pub owner: String,
    pub vip: String,
    pub node_ip: String,
    pub target: String,
}

impl SessionInfo {
    /// The names of its usage roll-up subjects, in the order of [`SUBJECT_KINDS`].
    fn subject_names(&self) -> [Option<&str>; 4] {
        [Some(&self.client), Some(&self.owner), Some(&self.device), self.sub.as_deref()]
    }
}

/// A client's spendable money while it has live streams: what its hold reserved, minus a
/// rounded-up charge for every byte since.
#[derive(Debug)]
pub struct Budget {
    /// The id of its hold in the store.
    hold: u64,
    client: String,
    remaining: AtomicI64,
    streams: AtomicUsize,
    /// The last reservation found no money: at zero the streams are cut.
    dry: AtomicBool,
    /// A reservation is queued or running.
    extending: AtomicBool,
    exhausted: watch::Sender<bool>,
    /// Completed reservation attempts (waiters watch it).
    outcomes: watch::Sender<u64>,
    error: Mutex<Option<String>>,
}

impl Budget {
    fn new(hold: u64, client: &str) -> Budget {
        Budget {
            hold,
            client: client.to_owned(),
            remaining: AtomicI64::new(0),
            streams: AtomicUsize::new(0),
            dry: AtomicBool::new(false),
            extending: AtomicBool::new(false),
            exhausted: watch::channel(false).0,
            outcomes: watch::channel(0).0,
            error: Mutex::new(None),
        }
    }

    pub fn remaining(&self) -> i64 {
        self.remaining.load(Ordering::Acquire)
    }

    /// Resolves when the budget runs out (the stream must be cut).
    pub fn exhausted(&self) -> watch::Receiver<bool> {
        self.exhausted.subscribe()
    }

    /// A reservation came back with `grant` micro-units (0: the client has nothing left).
    fn granted(&self, grant: u64) {
        let grant = i64::try_from(grant).unwrap_or(i64::MAX);
        let after = self.remaining.fetch_add(grant, Ordering::AcqRel) + grant;
        self.dry.store(grant == 0, Ordering::Release);
        *lock(&self.error) = None;
        self.extending.store(false, Ordering::Release);
        if after > 0 {
            self.exhausted.send_if_modified(|v| std::mem::replace(v, false));
        } else if grant == 0 {
            self.exhausted.send_replace(true);
        }
        self.outcomes.send_modify(|n| *n += 1);
    }

    fn failed(&self, error: String) {
        *lock(&self.error) = Some(error);
        self.extending.store(false, Ordering::Release);
        self.outcomes.send_modify(|n| *n += 1);
    }
}

/// Takes and extends holds. Requests queue up while a write transaction runs and go together
/// in the next one (group commit); one blocking worker at a time.
#[derive(Debug)]
pub struct HoldDesk {
    store: Arc<Store>,
    policy: HoldPolicy,
    /// The reservation size in force: the policy's chunk, or what [`HOLD_MIN_BYTES`] cost at
    /// the current price if more. Ask for more below half of it.
    chunk: AtomicU64,
    queue: Mutex<Vec<Arc<Budget>>>,
    busy: AtomicBool,
    tracker: TaskTracker,
}

impl HoldDesk {
    /// Queues a reservation for `b` (a no-op when one is already queued or running).
    fn ask(self: &Arc<Self>, b: &Arc<Budget>) {
        if b.extending.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.queue).push(b.clone());
        if !self.busy.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            if tokio::runtime::Handle::try_current().is_ok() {
                self.tracker.spawn_blocking(move || me.work());
            } else {
                me.work();
            }
        }
    }

    fn work(&self) {
        loop {
            let batch = std::mem::take(&mut *lock(&self.queue));
            if batch.is_empty() {
                self.busy.store(false, Ordering::Release);
                // An ask may have queued after the take and seen `busy` still set.
                if lock(&self.queue).is_empty() || self.busy.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            let want = crate::money::Micros(self.chunk.load(Ordering::Relaxed));
            let reqs: Vec<HoldRequest> =
                batch.iter().map(|b| HoldRequest { hold: b.hold, client: b.client.clone(), want }).collect();
            match self.store.take_holds(&reqs, now_secs()) {
                Ok(grants) => {
                    for (b, g) in batch.iter().zip(grants) {
                        b.granted(g.0);
                    }
                }
                Err(e) => {
                    warn!(error = %e, requests = batch.len(), "could not reserve money for live streams");
                    for b in &batch {
                        b.failed(e.to_string());
                    }
                }
            }
        }
    }
}

/// One live client stream.
#[derive(Debug)]
pub struct LiveSession {
    pub id: u64,
    pub info: SessionInfo,
    pub start: u64,
    up: AtomicU64,
    down: AtomicU64,
    end: Mutex<Option<(u64, String)>>,
    pub budget: Arc<Budget>,
    /// The tariff the session is billed at (fixed at its start).
    pub tariff: Tariff,
    /// Cut this far below zero even while a reservation is still running.
    slack: i64,
    desk: Arc<HoldDesk>,
    /// What the flusher has billed, accrued and posted of it (only a flush touches it, under
    /// the flush lock).
    ledger: Mutex<Ledgered>,
    /// The hashes of its roll-up subjects, in the order of [`SUBJECT_KINDS`] (the sub-user's is
    /// 0 when there is none).
    subjects: [u64; 4],
}

impl LiveSession {
    /// Counts bytes (called by the relay in batches) and charges the budget, rounding up;
    /// asks for more money when it runs low and trips the cut when it is gone.
    pub fn record(&self, up: u64, down: u64) {
        self.up.fetch_add(up, Ordering::Relaxed);
        self.down.fetch_add(down, Ordering::Relaxed);
        let cost = self.tariff.max_debit(up + down).0.min(i64::MAX as u64) as i64;
        if cost == 0 {
            return;
        }
        let b = &self.budget;
        let after = b.remaining.fetch_sub(cost, Ordering::AcqRel) - cost;
        let dry = b.dry.load(Ordering::Acquire);
        let low_water = (self.desk.chunk.load(Ordering::Relaxed) / 2).min(i64::MAX as u64) as i64;
        if after < low_water && !dry {
            self.desk.ask(b);
        }
        if after <= 0 && (dry || after <= -self.slack) {
            b.exhausted.send_replace(true);
        }
    }

    /// Its roll-up subject of kind `i` ([`SUBJECT_KINDS`]), if it has one.
    fn subject(&self, i: usize) -> Option<Subject<'_>> {
        let name = self.info.subject_names()[i]?;
        Some(Subject { hash: self.subjects[i], kind: SUBJECT_KINDS[i], name })
    }

    pub fn bytes(&self) -> (u64, u64) {
        (self.up.load(Ordering::Relaxed), self.down.load(Ordering::Relaxed))
    }
}

/// A stream counted on a budget; uncounted on drop unless it became a session.
struct Claim(Option<Arc<Budget>>);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.streams.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What the flusher remembers of each session between flushes.
#[derive(Debug, Default, Clone, Copy)]
struct Ledgered {
    billed_up: u64,
    billed_down: u64,
    carry: Carry,
    pending: Charge,
    charged: u64,
    credited: u64,
    posts: u32,
    last_post: u64,
    written: bool,
    /// What the session's accrual row on disk owes.
    owed_on_disk: u64,
}

/// Holds a flush took out of memory (their budgets went idle) whose deletion has not committed
/// yet, and their clients: until it commits, those holds still count against the clients'
/// money in the store. A failed flush leaves them for the next one.
#[derive(Debug, Default)]
struct Releasing {
    holds: Vec<u64>,
    clients: HashSet<String>,
}

/// What one flush did and how long it took: the walk over live sessions in memory (billing new
/// bytes, staging rows) and the write transaction (on a blocking thread, until it committed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Live sessions walked.
    pub live: usize,
    /// Accrual rows written, posted or deleted.
    pub written: usize,
    pub walk: Duration,
    pub write: Duration,
}

/// A stream's billing session that is ended exactly once: by [`Billed::end`] with the stream's
/// end reason, or, when it is dropped first (the client's success reply could not be written,
/// the task was cancelled), as `abandoned`. A session that is never ended stays in the live
/// table, is walked by every flush and keeps its client's hold.
pub struct Billed {
    billing: Arc<Billing>,
    session: Arc<LiveSession>,
    ended: bool,
}

impl std::fmt::Debug for Billed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billed").field("session", &self.session.id).field("ended", &self.ended).finish()
    }
}

impl Billed {
    pub fn session(&self) -> &Arc<LiveSession> {
        &self.session
    }

    /// Ends the session; the next flush bills its last bytes and posts it.
    pub fn end(mut self, reason: &str) {
        self.ended = true;
        self.billing.end(&self.session, reason);
    }
}

impl std::ops::Deref for Billed {
    type Target = LiveSession;
    fn deref(&self) -> &LiveSession {
        &self.session
    }
}

impl Drop for Billed {
    fn drop(&mut self) {
        if !self.ended {
            self.billing.end(&self.session, "abandoned");
        }
    }
}

/// The metering service.
pub struct Billing {
    tariff: Mutex<Tariff>,
    store: Arc<Store>,
    desk: Arc<HoldDesk>,
    live: Mutex<IdMap<Arc<LiveSession>>>,
    budgets: Mutex<HashMap<String, Arc<Budget>>>,
    /// Locked inside `budgets` or alone, never the other way round.
    releasing: Mutex<Releasing>,
    /// Held by a flush from before it takes idle budgets out until its transaction committed.
    flushing: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    next_hold: AtomicU64,
    /// What was posted, and failed flushes, for the metrics.
    counters: BillingCounters,
    /// Keys the roll-up subjects' hashes (random per process: names are chosen by users).
    subject_hasher: RandomState,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing").field("tariff", &self.tariff()).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("balance exhausted: top up to continue")]
    Exhausted,
    #[error("billing unavailable: {0}")]
    Store(String),
}

impl Billing {
    /// Builds the service; posts what a previous run left accrued, closes its sessions and
    /// expires its holds. Postings and failed flushes are counted in `counters`.
    pub fn start(
        store: Arc<Store>,
        tariff: Tariff,
        holds: HoldPolicy,
        counters: BillingCounters,
    ) -> Result<Billing, crate::store::StoreError> {
        let recovered = store.recover_usage(now_secs(), "server_restart")?;
        count_posted(&counters, recovered.posted);
        if recovered.sessions > 0 || recovered.holds > 0 {
            info!(
                sessions = recovered.sessions,
                holds = recovered.holds,
                "posted usage accrued before the last stop and expired its holds"
            );
        }
        let next = store.max_session_id()? + 1;
        let desk = Arc::new(HoldDesk {
            store: store.clone(),
            policy: holds,
            chunk: AtomicU64::new(holds.chunk.max(tariff.max_debit(HOLD_MIN_BYTES)).0),
            queue: Mutex::new(Vec::new()),
            busy: AtomicBool::new(false),
            tracker: TaskTracker::new(),
        });
        Ok(Billing {
            tariff: Mutex::new(tariff),
            store,
            desk,
            live: Mutex::new(IdMap::default()),
            budgets: Mutex::new(HashMap::new()),
            releasing: Mutex::new(Releasing::default()),
            flushing: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(next),
            next_hold: AtomicU64::new(1),
            counters,
            subject_hasher: RandomState::new(),
        })
    }

    /// The tariff new sessions are billed at.
    pub fn tariff(&self) -> Tariff {
        *lock(&self.tariff)
    }

    /// Changes the price or fee: sessions started from now on use it, live ones keep theirs.
    pub fn set_tariff(&self, tariff: Tariff) {
        *lock(&self.tariff) = tariff;
        self.desk.chunk.store(self.desk.policy.chunk.max(tariff.max_debit(HOLD_MIN_BYTES)).0, Ordering::Relaxed);
        info!(price_per_gb = %tariff.price_per_gb, fee_percent = tariff.platform_fee_percent, "tariff changed");
    }

    /// The worst case a client's balance can go below zero, in bytes: every live stream may
    /// deliver up to one relay meter batch per direction before the cut takes effect, and the
    /// budget may run one more such batch ahead while its last reservation is being refused.
    pub fn overdraft_bound_bytes(max_streams: u32) -> u64 {
        (u64::from(max_streams) + 1) * METER_BATCH_BYTES * 2
    }

    /// Whether a new stream of `client` may start: false once its money is visibly gone.
    pub async fn may_open(&self, client: &str) -> Result<bool, String> {
        let releasing = {
            let budgets = lock(&self.budgets);
            if let Some(b) = budgets.get(client) {
                return Ok(!(b.dry.load(Ordering::Acquire) && b.remaining() <= 0));
            }
            lock(&self.releasing).clients.contains(client)
        };
        if releasing && !self.released(client).await {
            // The store still holds the old hold: `open` decides (and says why).
            return Ok(true);
        }
        self.store.available(client).map(|a| a > 0).map_err(|e| e.to_string())
    }

    /// Waits for the flush that is releasing `client`'s hold: it holds the flush lock from
    /// before it takes idle budgets out until its transaction has committed. False when that
    /// flush failed and the hold is still in the store (the next flush retries the release).
    async fn released(&self, client: &str) -> bool {
        drop(self.flushing.lock().await);
        !lock(&self.releasing).clients.contains(client)
    }

    /// Admits a stream: reserves money for the client when its budget is empty, refuses the
    /// stream when there is none, otherwise opens a session charged against the budget.
    async fn open_session(&self, info: SessionInfo) -> Result<Arc<LiveSession>, BillingError> {
        // Counted under the map lock, so a flush never releases a budget a stream is joining.
        let (mut claim, releasing) = {
            let mut budgets = lock(&self.budgets);
            let releasing = lock(&self.releasing).clients.contains(&info.client);
            let b = budgets
                .entry(info.client.clone())
                .or_insert_with(|| Arc::new(Budget::new(self.next_hold.fetch_add(1, Ordering::Relaxed), &info.client)))
                .clone();
            b.streams.fetch_add(1, Ordering::AcqRel);
            (Claim(Some(b)), releasing)
        };
        let budget = claim.0.clone().ok_or_else(|| BillingError::Store("no budget".into()))?;
        // The client's previous hold is being deleted: reserving before that commits would find
        // its money still held and refuse the stream, and mark the new budget dry for every
        // stream joining it. (The budget counts this stream, so no flush takes it out meanwhile.)
        if releasing && !self.released(&info.client).await {
            // Reserving now would find nothing and mark the budget dry: refuse this stream only.
            return Err(BillingError::Store("usage flush failing: the previous hold is not released yet".into()));
        }
        self.fund(&budget).await?;
        let tariff = self.tariff();
        let names = info.subject_names();
        let subjects =
            std::array::from_fn(|i| names[i].map_or(0, |n| self.subject_hasher.hash_one((SUBJECT_KINDS[i], n))));
        let s = Arc::new(LiveSession {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            info,
            start: now_secs(),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            end: Mutex::new(None),
            budget,
            tariff,
            slack: tariff.max_debit(2 * METER_BATCH_BYTES).0.min(i64::MAX as u64) as i64,
            desk: self.desk.clone(),
            ledger: Mutex::new(Ledgered::default()),
            subjects,
        });
        lock(&self.live).insert(s.id, s.clone());
        claim.0 = None; // the session owns the count now: `end` uncounts it
        Ok(s)
    }

    /// Makes sure `b` has money, reserving some when it is empty.
    async fn fund(&self, b: &Arc<Budget>) -> Result<(), BillingError> {
        if b.remaining() > 0 {
            return Ok(());
        }
        if b.dry.load(Ordering::Acquire) {
            return Err(BillingError::Exhausted);
        }
        let mut outcomes = b.outcomes.subscribe();
        let seen = *outcomes.borrow_and_update();
        self.desk.ask(b);
        outcomes.wait_for(|n| *n > seen).await.map_err(|_| BillingError::Store("billing stopped".into()))?;
        if b.remaining() > 0 {
            return Ok(());
        }
        match lock(&b.error).clone() {
            Some(e) => Err(BillingError::Store(e)),
            None => Err(BillingError::Exhausted),
        }
    }

    /// Marks a session ended; the next flush bills its last bytes and posts it. Only through
    /// [`Billed`], which calls it exactly once (it uncounts the stream).
    fn end(&self, s: &LiveSession, reason: &str) {
        *lock(&s.end) = Some((now_secs(), reason.to_owned()));
        s.budget.streams.fetch_sub(1, Ordering::AcqRel);
    }

    /// Opens a session that is ended exactly once ([`Billed`]): by its owner with the stream's
    /// end, or as `abandoned` when it is dropped first.
    pub async fn open(self: &Arc<Self>, info: SessionInfo) -> Result<Billed, BillingError> {
        let session = self.open_session(info).await?;
        Ok(Billed { billing: self.clone(), session, ended: false })
    }

    /// A deposit landed: a client with live streams gets a fresh reservation at once.
    pub fn credited(&self, client: &str) {
        // Asked under the map lock: a flush cannot take the budget out (and release its hold)
        // between the look-up and the ask, which would extend a hold nothing releases any more.
        let budgets = lock(&self.budgets);
        if let Some(b) = budgets.get(client) {
            b.dry.store(false, Ordering::Release);
            self.desk.ask(b);
        }
    }

    /// Waits for running reservations to finish.
    pub async fn settle(&self) {
        self.desk.tracker.close();
        self.desk.tracker.wait().await;
        self.desk.tracker.reopen();
    }

    /// One flush: bill new bytes, persist accruals, session rows, holds and the usage roll-up,
    /// post what is due — one write transaction.
    pub async fn flush(&self) -> Result<FlushStats, crate::store::StoreError> {
        let invalid = |e: super::rules::RuleError| crate::store::StoreError::Invalid(e.to_string());
        let began = Instant::now();
        let now = now_secs();
        let hour = now / 3600;
        let sessions: Vec<Arc<LiveSession>> = lock(&self.live).values().cloned().collect();
        let _flushing = self.flushing.lock().await;
        let mut batch = FlushBatch::default();
        let mut used: IdMap<u64> = IdMap::default();
        // Keyed by borrowed names and the hashes taken at open; the subject strings are built
        // once per flush, not per session.
        let mut usage: SubjectMap<'_, UsageBucket> = SubjectMap::default();
        let mut all = UsageBucket::default();
        let mut accrued_delta: SubjectMap<'_, i64> = SubjectMap::default();
        // Each session's new state, in the order of `batch.accruals`: applied to the sessions
        // only once the transaction commits, so a failed flush leaves everything to the next one.
        let mut staged: Vec<(&Arc<LiveSession>, Ledgered)> = Vec::with_capacity(sessions.len());
        batch.accruals.reserve(sessions.len());
        let mut still_live = IdSet::default();
        for s in &sessions {
            let mut st = *lock(&s.ledger);
            if !st.written {
                // A new session's first posting comes after 1–60 s, spread by id, so sessions
                // that started together do not all post in the same flush.
                st.last_post = now.saturating_sub(s.id % POST_EVERY_SECS);
            }
            // End first, bytes second: `end` is set after the relay's last `record`, so bytes
            // read after seeing it are final (the other order could post a session short).
            let ended = lock(&s.end).clone();
            if ended.is_none() {
                still_live.insert(s.budget.hold);
            }
            let (up, down) = s.bytes();
            let (d_up, d_down) = (up - st.billed_up.min(up), down - st.billed_down.min(down));
            let self_use = s.info.client == s.info.owner;
            let mut delta = UsageBucket { sessions: u64::from(!st.written), ..UsageBucket::default() };
            if d_up + d_down > 0 {
                let c = s.tariff.charge(&mut st.carry, d_up + d_down).map_err(invalid)?;
                st.pending = st.pending.checked_add(c).map_err(invalid)?;
                st.charged += c.client_debit.0;
                st.credited += c.node_credit.0;
                (st.billed_up, st.billed_down) = (up, down);
                let owed = if self_use { c.platform_fee.0 } else { c.client_debit.0 };
                *used.entry(s.budget.hold).or_default() += owed;
                delta.up = d_up;
                delta.down = d_down;
                delta.debit = owed;
                delta.earned = if self_use { 0 } else { c.node_credit.0 };
                delta.fee = c.platform_fee.0;
            }
            let due = ended.is_some() || now.saturating_sub(st.last_post) >= POST_EVERY_SECS;
            if d_up + d_down == 0 && ended.is_none() && !due && st.written {
                continue;
            }
            if delta != UsageBucket::default() {
                let client = UsageBucket { earned: 0, fee: 0, ..delta };
                for (kind, bucket) in [(CLIENT, &client), (OWNER, &delta), (DEVICE, &delta), (SUB, &client)] {
                    if let Some(k) = s.subject(kind) {
                        usage.entry(k).or_default().add(bucket);
                    }
                }
                all.add(&delta);
            }
            let progress =
                Progress { bytes_up: up, bytes_down: down, charge_micros: st.charged, node_credit_micros: st.credited };
            // The session row is written when it starts and when it ends; in between, its
            // accrual row carries its progress (readers apply it), also across postings: a
            // posting rewrote ~1/60 of the live sessions' rows a second, each on its own page.
            if !st.written || ended.is_some() {
                batch.sessions.push(SessionRecord {
                    id: s.id,
                    client: s.info.client.clone(),
                    sub: s.info.sub.clone(),
                    device: s.info.device.clone(),
                    owner: s.info.owner.clone(),
                    vip: s.info.vip.clone(),
                    node_ip: s.info.node_ip.clone(),
                    target: s.info.target.clone(),
                    start: s.start,
                    end: ended.as_ref().map(|e| e.0),
                    bytes_up: up,
                    bytes_down: down,
                    charge: crate::money::Micros(st.charged),
                    node_credit: crate::money::Micros(st.credited),
                    tariff: Some(s.tariff),
                    end_reason: ended.as_ref().map(|e| e.1.clone()),
                });
            }
            let row = AccrualRow {
                session: s.id,
                client: &s.info.client,
                owner: &s.info.owner,
                pending: st.pending,
                carry: st.carry,
                posts: st.posts,
                progress: Some(progress),
            };
            batch.accruals.push(if due {
                AccrualWrite::Post { accrual: row.to_accrual(), ended: ended.is_some() }
            } else {
                AccrualWrite::Keep { session: s.id, row: row.encode() }
            });
            // A posting zeroes the row; otherwise it owes its pending charge.
            let owed = if due {
                0
            } else if self_use {
                st.pending.platform_fee.0
            } else {
                st.pending.client_debit.0
            };
            if owed != st.owed_on_disk
                && let Some(k) = s.subject(CLIENT)
            {
                *accrued_delta.entry(k).or_default() += owed as i64 - st.owed_on_disk as i64;
            }
            st.owed_on_disk = owed;
            staged.push((s, st));
        }
        // Budgets whose streams have all ended and will be posted now release their holds.
        let release = {
            let mut budgets = lock(&self.budgets);
            let mut releasing = lock(&self.releasing);
            budgets.retain(|_, b| {
                let idle = b.streams.load(Ordering::Acquire) == 0
                    && !b.extending.load(Ordering::Acquire)
                    && !still_live.contains(&b.hold);
                if idle {
                    releasing.holds.push(b.hold);
                    releasing.clients.insert(b.client.clone());
                }
                !idle
            });
            releasing.holds.clone()
        };
        let mut stats = FlushStats { live: sessions.len(), written: batch.accruals.len(), ..FlushStats::default() };
        if batch.accruals.is_empty() && release.is_empty() {
            stats.walk = began.elapsed();
            return Ok(stats);
        }
        batch.hold_used = used.into_iter().collect();
        batch.hold_release = release;
        batch.usage = usage.into_iter().map(|(k, b)| (format!("{}{}", k.kind, k.name), hour, b)).collect();
        if all != UsageBucket::default() {
            batch.usage.push(("all".to_owned(), hour, all));
        }
        batch.accrued_delta =
            accrued_delta.into_iter().filter(|(_, d)| *d != 0).map(|(c, d)| (c.name.to_owned(), d)).collect();
        stats.walk = began.elapsed();
        let store = self.store.clone();
        let (res, batch) = tokio::task::spawn_blocking(move || {
            let r = store.flush_usage(&mut batch, now);
            (r, batch)
        })
        .await
        .map_err(|e| crate::store::StoreError::Invalid(e.to_string()))?;
        res?;
        stats.write = began.elapsed().saturating_sub(stats.walk);
        count_posted(&self.counters, batch.posted);
        // Committed: apply the staged state, mirror what the store posted, forget finished
        // sessions.
        // (Only a flush adds to `releasing`, under the flush lock this one still holds.)
        *lock(&self.releasing) = Releasing::default();
        let mut done = Vec::new();
        debug_assert_eq!(staged.len(), batch.accruals.len(), "one row per staged session");
        for ((s, mut st), w) in staged.into_iter().zip(&batch.accruals) {
            debug_assert_eq!(s.id, w.session(), "rows come back in the order they were staged");
            st.written = true;
            if let AccrualWrite::Post { accrual, ended } = w {
                st.pending = accrual.pending;
                st.posts = accrual.posts;
                st.last_post = now;
                if *ended {
                    done.push(s.id);
                }
            }
            *lock(&s.ledger) = st;
        }
        if !done.is_empty() {
            let mut live = lock(&self.live);
            for id in &done {
                live.remove(id);
            }
        }
        Ok(stats)
    }

    /// Flushes every [`FLUSH_EVERY`] until shutdown, then once more after live streams ended.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match self.flush().await {
                        Ok(s) if s.written > 0 => trace!(
                            live = s.live,
                            written = s.written,
                            walk_us = s.walk.as_micros() as u64,
                            write_us = s.write.as_micros() as u64,
                            "usage flush"
                        ),
                        Ok(_) => {}
                        Err(e) => {
                            self.counters.flush_failures.inc();
                            warn!(error = %e, "usage flush failed; retrying next second");
                        }
                    }
                }
                _ = shutdown.recv() => return,
            }
        }
    }

    /// The final flush at shutdown: whatever is still live is closed as `reason`.
    pub async fn close_all(&self, reason: &str) {
        let live: Vec<Arc<LiveSession>> = lock(&self.live).values().cloned().collect();
        for s in live {
            let mut end = lock(&s.end);
            if end.is_none() {
                // (The stream count stays: its relay still calls `end`; the hold expires at
                // the next start.)
                *end = Some((now_secs(), reason.to_owned()));
            }
        }
        self.settle().await;
        if let Err(e) = self.flush().await {
            self.counters.flush_failures.inc();
            warn!(error = %e, "final usage flush failed; the next start posts what was saved");
        }
    }
}

fn count_posted(counters: &BillingCounters, posted: Posted) {
    counters.client_debits.inc_by(posted.client_debit);
    counters.node_credits.inc_by(posted.node_credit);
    counters.platform_fees.inc_by(posted.platform_fee);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::money::Micros;
    use crate::store::{Account, UserRecord, VerifyParams, WithdrawalStatus};

    #[derive(Debug, Clone)]
    enum Op {
        Deposit(usize, u64),
        Open(usize, usize),
        Bytes(usize, u64),
        End(usize),
        Flush,
        Withdraw(usize, u64),
        Decide(usize, bool),
        Crash,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => (0..3usize, 1..5_000_000u64).prop_map(|(u, a)| Op::Deposit(u, a)),
            1 => (0..3usize, 0..3usize).prop_map(|(c, o)| Op::Open(c, o)),
            3 => (0..8usize, 0..3_000_000_000u64).prop_map(|(s, b)| Op::Bytes(s, b)),
            1 => (0..8usize).prop_map(Op::End),
            2 => Just(Op::Flush),
            1 => (0..3usize, 0..4_000_000u64).prop_map(|(u, a)| Op::Withdraw(u, a)),
            1 => (0..4usize, any::<bool>()).prop_map(|(w, a)| Op::Decide(w, a)),
            1 => Just(Op::Crash),
        ]
    }

    const USERS: [&str; 3] = ["alice", "bob_", "carol"];
    const MIN_PAYOUT: Micros = Micros(1_000_000);

    fn user(name: &str) -> UserRecord {
        UserRecord::new(name, "x", 0)
    }

    fn policy(tariff: &Tariff) -> HoldPolicy {
        HoldPolicy { chunk: Micros(1_500_000), max_overdraft: overdraft_bound(tariff, 8) }
    }

    /// Every invariant `ledger verify` checks (SECURITY.md §4), on the store as it is.
    fn check_ledger(store: &Store, tariff: &Tariff) {
        let params = VerifyParams {
            max_overdraft: policy(tariff).max_overdraft,
            overdraft_bytes: Billing::overdraft_bound_bytes(8),
        };
        let report = store.verify(&params).unwrap();
        assert!(report.ok, "{:#?}", report.problems);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Random deposits, streams, bytes, flushes, withdrawals and crashes (drop everything,
        /// reopen, recover): every ledger invariant always holds, and clients are never billed
        /// more than the bytes recorded.
        #[test]
        fn invariants_hold_across_usage_withdrawals_and_crashes(ops in proptest::collection::vec(op(), 1..48)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("p.redb");
                // 1 micro-unit per 1000 bytes: holds of 1.5 (1.5 GB) are taken and extended.
                let tariff = Tariff::new(Micros(1_000_000), 30).unwrap();
                let mut store = Arc::new(Store::open(&path).unwrap());
                for u in USERS {
                    store.create_user(&user(u)).unwrap();
                }
                // One set of counters across restarts: together they saw every posting.
                let counters = BillingCounters::default();
                let mut billing = Arc::new(Billing::start(store.clone(), tariff, policy(&tariff), counters.clone()).unwrap());
                let mut live: Vec<Billed> = Vec::new();
                let mut recorded: u64 = 0;
                let mut deposits = 0u64;
                let mut paid_out = 0u64;
                for (n, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Deposit(u, a) => {
                            store.deposit(USERS[u], Micros(a), &format!("dep:{n}"), "t", 1).unwrap();
                            deposits += a;
                            billing.credited(USERS[u]);
                        }
                        Op::Open(c, o) => {
                            let info = SessionInfo {
                                                client: USERS[c].into(), sub: None, device: "d".into(), owner: USERS[o].into(),
                                vip: "100.64.0.1".into(), node_ip: "127.0.0.2".into(), target: "t:1".into(),
                            };
                            if let Ok(s) = billing.open(info).await {
                                live.push(s);
                            }
                        }
                        Op::Bytes(i, mut b) => {
                            if let Some(s) = live.get(i % live.len().max(1)) {
                                // In relay-sized batches; a cut stream moves nothing more.
                                while b > 0 && !*s.budget.exhausted().borrow() {
                                    let n = b.min(2 * METER_BATCH_BYTES);
                                    s.record(n / 2, n - n / 2);
                                    recorded += n;
                                    b -= n;
                                    if s.budget.extending.load(Ordering::Acquire) {
                                        billing.settle().await;
                                    }
                                }
                            }
                        }
                        Op::End(i) => {
                            if !live.is_empty() {
                                let s = live.remove(i % live.len());
                                s.end("closed");
                            }
                        }
                        Op::Flush => {
                            billing.flush().await.unwrap();
                        }
                        Op::Withdraw(u, a) => {
                            let avail = store.available(USERS[u]).unwrap();
                            let r = store.request_withdrawal(USERS[u], Micros(a), MIN_PAYOUT, None, 2);
                            prop_assert_eq!(r.is_ok(), a >= MIN_PAYOUT.0 && i128::from(a) <= i128::from(avail));
                        }
                        Op::Decide(w, approve) => {
                            let pending = store.list_withdrawals(None, Some(WithdrawalStatus::Pending)).unwrap();
                            if let Some(wd) = pending.get(w % pending.len().max(1)) {
                                store.decide_withdrawal(wd.id, approve, "admin", None, 3).unwrap();
                                if approve {
                                    paid_out += wd.amount.0;
                                } else {
                                    billing.credited(&wd.user);
                                }
                            }
                        }
                        Op::Crash => {
                            live.clear();
                            billing.settle().await;
                            drop(billing);
                            drop(store);
                            store = Arc::new(Store::open(&path).unwrap());
                            billing = Arc::new(Billing::start(store.clone(), tariff, policy(&tariff), counters.clone()).unwrap());
                            prop_assert!(store.list_holds().unwrap().is_empty(), "a restart expires every hold");
                        }
                    }
                    billing.settle().await;
                    check_ledger(&store, &tariff);
                }
                for s in live.drain(..) {
                    s.end("closed");
                }
                billing.flush().await.unwrap();
                check_ledger(&store, &tariff);
                prop_assert!(store.list_holds().unwrap().is_empty(), "holds are released with the last stream");
                let pending: u64 = store
                    .list_withdrawals(None, Some(WithdrawalStatus::Pending))
                    .unwrap()
                    .iter()
                    .map(|w| w.amount.0)
                    .sum();
                let spent: i64 = USERS.iter().map(|u| store.balance(&Account::User((*u).into())).unwrap()).sum::<i64>()
                    - deposits as i64 + (paid_out + pending) as i64;
                let fees = store.balance(&Account::PlatformFees).unwrap();
                // Clients' net spending is exactly what the platform kept (owners are clients too).
                prop_assert_eq!(-spent, fees);
                let transfers = store.list_transfers(None).unwrap();
                let sum_of = |kind: &str| -> u64 {
                    transfers.iter().filter(|t| t.kind == kind).map(|t| t.amount.0).sum()
                };
                let billed = sum_of("usage") + sum_of("usage_fee");
                prop_assert!(billed <= recorded / 1000, "billed {} for {} recorded bytes", billed, recorded);
                // The metrics count exactly what was posted, including what restarts recovered.
                prop_assert_eq!(counters.client_debits.get(), billed);
                prop_assert_eq!(counters.node_credits.get(), sum_of("usage"));
                prop_assert_eq!(counters.platform_fees.get(), sum_of("usage_fee"));
                prop_assert_eq!(counters.flush_failures.get(), 0);
                prop_assert!(store.accrued_by_client().unwrap().is_empty(), "nothing left accrued");
                Ok(())
            })?;
        }
    }

    /// A stream dropped before its relay ended it (its client's success reply failed, its task
    /// was cancelled) ends its session as `abandoned`: the flush posts it and takes it out of
    /// the live table, and the client's hold is released. Ending a kept one happens once.
    #[tokio::test]
    async fn a_billed_session_dropped_unended_is_ended_as_abandoned_and_posted() {
        let (_dir, store, billing, _) = thin_client(300_000);
        let billing = Arc::new(billing);
        let dropped = billing.open(thin_session()).await.unwrap();
        let kept = billing.open(thin_session()).await.unwrap();
        assert_eq!(billing.flush().await.unwrap().live, 2);
        drop(dropped);
        kept.end("closed");
        billing.flush().await.unwrap();
        assert_eq!(billing.flush().await.unwrap().live, 0, "both left the live table");
        let filter = crate::store::SessionFilter { client: Some("thin"), node_ip: None, window: Default::default() };
        let mut reasons: Vec<_> =
            store.list_sessions(&filter).unwrap().into_iter().map(|r| r.end_reason.unwrap_or_default()).collect();
        reasons.sort();
        assert_eq!(reasons, ["abandoned", "closed"]);
        assert_eq!(store.available("thin").unwrap(), 300_000, "the hold went back");
    }

    /// Client "thin" with `deposit` micro-units and node owner "node", billed 1.00 per GB with
    /// holds of 0.50 (the database lives as long as the returned directory).
    fn thin_client(deposit: u64) -> (tempfile::TempDir, Arc<Store>, Billing, HoldPolicy) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("b.redb")).unwrap());
        store.create_user(&user("thin")).unwrap();
        store.create_user(&user("node")).unwrap();
        store.deposit("thin", Micros(deposit), "d1", "t", 1).unwrap();
        let tariff = Tariff::new(Micros(1_000_000), 30).unwrap();
        let holds = HoldPolicy { chunk: Micros(500_000), max_overdraft: overdraft_bound(&tariff, 1) };
        let billing = Billing::start(store.clone(), tariff, holds, BillingCounters::default()).unwrap();
        (dir, store, billing, holds)
    }

    /// A stream of "thin" through a node of "node".
    fn thin_session() -> SessionInfo {
        SessionInfo {
            client: "thin".into(),
            sub: None,
            device: "d".into(),
            owner: "node".into(),
            vip: "v".into(),
            node_ip: "n".into(),
            target: "t".into(),
        }
    }

    /// A client whose one hold took all its money opens a stream just after its last one ended,
    /// while the flush that releases that hold is writing: the stream waits for the release. It
    /// used to find the money still held and was refused as "balance exhausted".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_opened_while_the_clients_hold_is_being_released_waits_for_the_release() {
        use futures_util::FutureExt;
        // 0.30 in the account and holds of 0.50: one hold reserves all of it.
        let (_dir, store, billing, _) = thin_client(300_000);
        let billing = Arc::new(billing);
        let s = billing.open(thin_session()).await.unwrap();
        assert_eq!(store.available("thin").unwrap(), 0, "the hold reserved everything");
        s.end("done");
        // The flush stops inside its write: it has taken the idle budget out, and the hold's
        // deletion has not committed.
        let writing = store.write_for_test().unwrap();
        let flush = tokio::spawn({
            let billing = billing.clone();
            async move { billing.flush().await }
        });
        tokio::time::timeout(Duration::from_secs(30), async {
            while lock(&billing.budgets).contains_key("thin") {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the flush takes the idle budget out");
        assert_eq!(store.available("thin").unwrap(), 0, "the old hold is still in the store");
        let mut may = Box::pin(billing.may_open("thin"));
        let mut open = Box::pin(billing.open(thin_session()));
        assert!((&mut may).now_or_never().is_none(), "may_open waits for the release");
        assert!((&mut open).now_or_never().is_none(), "open waits for the release");
        drop(writing);
        tokio::time::timeout(Duration::from_secs(30), flush).await.expect("the flush ends").unwrap().unwrap();
        assert!(may.await.unwrap(), "the money is back once the old hold is gone");
        let s2 = open.await.expect("the stream opens on a new hold");
        assert_eq!(store.list_holds().unwrap().len(), 1, "one hold: the new one");
        s2.end("done");
        billing.flush().await.unwrap();
        assert!(store.list_holds().unwrap().is_empty());
    }

    /// A client's streams draw on a hold that is extended chunk by chunk; when it cannot be
    /// extended the stream is cut, the balance stays within the bound, and a deposit lets the
    /// client back in.
    #[tokio::test]
    async fn exhaustion_cuts_within_the_bound_and_a_deposit_reopens() {
        // 1.00 per GB: 1.20 buys 1.2 GB, in holds of 0.50.
        let (_dir, store, billing, holds) = thin_client(1_200_000);
        let billing = Arc::new(billing);
        let s = billing.open(thin_session()).await.unwrap();
        assert_eq!(store.list_holds().unwrap()[0].1.amount, 500_000, "one chunk reserved");
        assert_eq!(store.available("thin").unwrap(), 700_000);
        let mut cut = s.budget.exhausted();
        let mut moved = 0u64;
        let mut max_held = 0;
        while !*cut.borrow_and_update() {
            s.record(0, 2 * METER_BATCH_BYTES);
            moved += 2 * METER_BATCH_BYTES;
            billing.settle().await;
            max_held = max_held.max(store.list_holds().unwrap()[0].1.amount);
            assert!(moved < 2_000_000_000, "never cut");
        }
        assert_eq!(max_held, 1_200_000, "extended chunk by chunk up to the balance, never beyond");
        let bound = Billing::overdraft_bound_bytes(1);
        assert!(moved >= 1_190_000_000 && moved <= 1_200_000_000 + bound, "cut after {moved} bytes");
        assert!(matches!(billing.open(thin_session()).await, Err(BillingError::Exhausted)));
        assert!(!billing.may_open("thin").await.unwrap());
        s.end("billing");
        billing.flush().await.unwrap();
        assert!(store.list_holds().unwrap().is_empty(), "released with the last stream");
        let bal = store.balance(&Account::User("thin".into())).unwrap();
        // The budget rounds each batch up by under a micro-unit; the ledger charges exactly.
        let rounding = (moved / (2 * METER_BATCH_BYTES)) as i64;
        assert!(bal <= rounding && bal >= -(holds.max_overdraft.0 as i64), "balance {bal}");
        store.deposit("thin", Micros(1_000_000), "d2", "t", 2).unwrap();
        billing.credited("thin");
        assert!(billing.may_open("thin").await.unwrap());
        assert!(billing.open(thin_session()).await.is_ok());
    }
}
