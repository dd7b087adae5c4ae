//! Real-time metering: every client stream is a session whose byte counters live with it; a
//! flusher persists them once a second as accruals (one bounded row per live session, one
//! write transaction per flush) and posts them to the ledger at least once a minute and when
//! the session ends. Each client also has an in-memory budget, charged conservatively as bytes
//! pass, so a client whose money runs out is refused new streams and has live ones cut within
//! a small, documented bound (see [`Billing::overdraft_bound_bytes`]).
//!
//! Money never lives only in memory: what a crash loses is at most one flush interval of
//! traffic, and `Store::recover_usage` posts what the last flush saved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::rules::{Carry, Charge, Tariff};
use crate::shutdown::Shutdown;
use crate::store::{Accrual, FlushBatch, SessionRecord, Store, now_secs};

/// How often live usage is persisted as accruals.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often a live session's accrual is posted to the ledger.
pub const POST_EVERY_SECS: u64 = 60;
/// The relay reports usage at least every this many bytes per direction (its meter batch).
pub const METER_BATCH_BYTES: u64 = crate::tunnel::relay::METER_BATCH;

/// What a session is about (fixed at its start).
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub client: String,
    pub device: String,
    pub owner: String,
    pub vip: String,
    pub node_ip: String,
    pub target: String,
}

/// A client's spendable money while it has live streams: posted − accrued when the first
/// stream started, minus a rounded-up charge for every byte since, plus credits since.
#[derive(Debug)]
pub struct Budget {
    remaining: AtomicI64,
    streams: AtomicUsize,
    exhausted: watch::Sender<bool>,
}

impl Budget {
    pub fn remaining(&self) -> i64 {
        self.remaining.load(Ordering::Acquire)
    }

    /// Resolves when the budget runs out (the stream must be cut).
    pub fn exhausted(&self) -> watch::Receiver<bool> {
        self.exhausted.subscribe()
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
}

impl LiveSession {
    /// Counts bytes (called by the relay in batches) and charges the budget, rounding up.
    pub fn record(&self, tariff: &Tariff, up: u64, down: u64) {
        self.up.fetch_add(up, Ordering::Relaxed);
        self.down.fetch_add(down, Ordering::Relaxed);
        let cost = tariff.max_debit(up + down).0.min(i64::MAX as u64) as i64;
        if cost > 0 && self.budget.remaining.fetch_sub(cost, Ordering::AcqRel) - cost <= 0 {
            self.budget.exhausted.send_replace(true);
        }
    }

    pub fn bytes(&self) -> (u64, u64) {
        (self.up.load(Ordering::Relaxed), self.down.load(Ordering::Relaxed))
    }
}

/// What the flusher remembers of each session between flushes.
#[derive(Debug, Default)]
struct Ledgered {
    billed: u64,
    carry: Carry,
    pending: Charge,
    charged: u64,
    posts: u32,
    last_post: u64,
    written: bool,
}

/// The metering service.
pub struct Billing {
    tariff: Tariff,
    store: Arc<Store>,
    live: Mutex<HashMap<u64, Arc<LiveSession>>>,
    budgets: Mutex<HashMap<String, Arc<Budget>>>,
    state: tokio::sync::Mutex<HashMap<u64, Ledgered>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing").field("tariff", &self.tariff).finish_non_exhaustive()
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
    /// Builds the service; posts what a previous run left accrued and closes its sessions.
    pub fn start(store: Arc<Store>, tariff: Tariff) -> Result<Billing, crate::store::StoreError> {
        let recovered = store.recover_usage(now_secs(), "server_restart")?;
        if recovered > 0 {
            info!(sessions = recovered, "posted usage accrued before the last stop");
        }
        let next = store.max_session_id()? + 1;
        Ok(Billing {
            tariff,
            store,
            live: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            state: tokio::sync::Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(next),
        })
    }

    pub fn tariff(&self) -> &Tariff {
        &self.tariff
    }

    /// The worst case a client's balance can go below zero, in bytes: every live stream may
    /// deliver up to one relay meter batch before the cut takes effect.
    pub fn overdraft_bound_bytes(max_streams: u32) -> u64 {
        u64::from(max_streams) * METER_BATCH_BYTES * 2
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        match m.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// What a client may still spend: its live budget, or its posted balance when it has no
    /// unposted usage.
    pub fn available(&self, client: &str) -> Result<i64, String> {
        if let Some(b) = Self::lock(&self.budgets).get(client) {
            return Ok(b.remaining());
        }
        self.store.balance(&crate::store::Account::User(client.to_owned())).map_err(|e| e.to_string())
    }

    /// Admits a stream: refuses when the client's money is gone, otherwise opens a session
    /// charged against the client's budget.
    pub fn open(&self, info: SessionInfo) -> Result<Arc<LiveSession>, BillingError> {
        // The ledger is read only when the client has no live budget yet (outside the lock).
        let existing = Self::lock(&self.budgets).get(&info.client).cloned();
        let posted = match existing {
            Some(_) => 0,
            None => self
                .store
                .balance(&crate::store::Account::User(info.client.clone()))
                .map_err(|e| BillingError::Store(e.to_string()))?,
        };
        let budget = {
            let mut budgets = Self::lock(&self.budgets);
            // A client without live streams has nothing unposted (finished sessions keep their
            // budget until the flush that posts them), so its posted balance is what it has.
            budgets
                .entry(info.client.clone())
                .or_insert_with(|| {
                    let (tx, _) = watch::channel(false);
                    Arc::new(Budget { remaining: AtomicI64::new(posted), streams: AtomicUsize::new(0), exhausted: tx })
                })
                .clone()
        };
        if budget.remaining() <= 0 {
            return Err(BillingError::Exhausted);
        }
        budget.streams.fetch_add(1, Ordering::AcqRel);
        let s = Arc::new(LiveSession {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            info,
            start: now_secs(),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            end: Mutex::new(None),
            budget,
        });
        Self::lock(&self.live).insert(s.id, s.clone());
        Ok(s)
    }

    /// Forgets a client's budget once it has no live stream (the next one re-reads the ledger).
    fn release(&self, client: &str, budget: &Arc<Budget>) {
        let mut budgets = Self::lock(&self.budgets);
        if budget.streams.load(Ordering::Acquire) == 0 && budgets.get(client).is_some_and(|b| Arc::ptr_eq(b, budget)) {
            budgets.remove(client);
        }
    }

    /// Marks a session ended; the next flush bills its last bytes and posts it.
    pub fn end(&self, s: &LiveSession, reason: &str) {
        *Self::lock(&s.end) = Some((now_secs(), reason.to_owned()));
        s.budget.streams.fetch_sub(1, Ordering::AcqRel);
    }

    /// A deposit landed: live budgets see it at once.
    pub fn credited(&self, client: &str, amount: i64) {
        if let Some(b) = Self::lock(&self.budgets).get(client)
            && b.remaining.fetch_add(amount, Ordering::AcqRel) + amount > 0
        {
            b.exhausted.send_replace(false);
        }
    }

    /// One flush: bill new bytes, persist accruals and session rows, post what is due.
    pub async fn flush(&self) -> Result<(), crate::store::StoreError> {
        let now = now_secs();
        let sessions: Vec<Arc<LiveSession>> = Self::lock(&self.live).values().cloned().collect();
        let mut state = self.state.lock().await;
        let mut batch = FlushBatch::default();
        for s in &sessions {
            let st = state.entry(s.id).or_insert_with(|| Ledgered { last_post: now, ..Ledgered::default() });
            // End first, bytes second: `end` is set after the relay's last `record`, so bytes
            // read after seeing it are final (the other order could post a session short).
            let ended = Self::lock(&s.end).clone();
            let (up, down) = s.bytes();
            let total = up + down;
            let delta = total - st.billed.min(total);
            if delta > 0 {
                let c = self
                    .tariff
                    .charge(&mut st.carry, delta)
                    .map_err(|e| crate::store::StoreError::Invalid(e.to_string()))?;
                st.pending = st.pending.checked_add(c).map_err(|e| crate::store::StoreError::Invalid(e.to_string()))?;
                st.charged += c.client_debit.0;
                st.billed = total;
            }
            let due = ended.is_some() || now.saturating_sub(st.last_post) >= POST_EVERY_SECS;
            if delta == 0 && ended.is_none() && !due && st.written {
                continue;
            }
            batch.sessions.push(SessionRecord {
                id: s.id,
                client: s.info.client.clone(),
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
                end_reason: ended.as_ref().map(|e| e.1.clone()),
            });
            batch.accruals.push(Accrual {
                session: s.id,
                client: s.info.client.clone(),
                owner: s.info.owner.clone(),
                pending: st.pending,
                carry: st.carry,
                posts: st.posts,
            });
            if due {
                batch.post.push(s.id);
            }
            if ended.is_some() {
                batch.done.push(s.id);
            }
        }
        if batch.sessions.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        let (res, batch) = tokio::task::spawn_blocking(move || {
            let r = store.flush_usage(&mut batch, now);
            (r, batch)
        })
        .await
        .map_err(|e| crate::store::StoreError::Invalid(e.to_string()))?;
        res?;
        // Committed: mirror what the store posted, forget finished sessions.
        for a in &batch.accruals {
            if let Some(st) = state.get_mut(&a.session) {
                st.written = true;
                if batch.post.contains(&a.session) {
                    st.pending = a.pending;
                    st.posts = a.posts;
                    st.last_post = now;
                }
            }
        }
        if !batch.done.is_empty() {
            let finished: Vec<Arc<LiveSession>> = {
                let mut live = Self::lock(&self.live);
                batch.done.iter().filter_map(|id| live.remove(id)).collect()
            };
            for s in finished {
                state.remove(&s.id);
                self.release(&s.info.client, &s.budget);
            }
        }
        Ok(())
    }

    /// Flushes every [`FLUSH_EVERY`] until shutdown, then once more after live streams ended.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.flush().await {
                        warn!(error = %e, "usage flush failed; retrying next second");
                    }
                }
                _ = shutdown.recv() => return,
            }
        }
    }

    /// The final flush at shutdown: whatever is still live is closed as `reason`.
    pub async fn close_all(&self, reason: &str) {
        let live: Vec<Arc<LiveSession>> = Self::lock(&self.live).values().cloned().collect();
        for s in live {
            let mut end = Self::lock(&s.end);
            if end.is_none() {
                *end = Some((now_secs(), reason.to_owned()));
            }
        }
        if let Err(e) = self.flush().await {
            warn!(error = %e, "final usage flush failed; the next start posts what was saved");
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::money::Micros;
    use crate::store::{Account, UserRecord};

    #[derive(Debug, Clone)]
    enum Op {
        Deposit(usize, u64),
        Open(usize, usize),
        Bytes(usize, u64),
        End(usize),
        Flush,
        Crash,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize, 1..5_000_000u64).prop_map(|(u, a)| Op::Deposit(u, a)),
            (0..3usize, 0..3usize).prop_map(|(c, o)| Op::Open(c, o)),
            (0..8usize, 0..3_000_000u64).prop_map(|(s, b)| Op::Bytes(s, b)),
            (0..8usize).prop_map(Op::End),
            Just(Op::Flush),
            Just(Op::Crash),
        ]
    }

    const USERS: [&str; 3] = ["alice", "bob_", "carol"];

    fn user(name: &str) -> UserRecord {
        UserRecord {
            name: name.into(),
            admin: false,
            disabled: false,
            disabled_reason: None,
            telegram_id: None,
            password_hash: None,
            proxy_password: "x".into(),
            created_at: 0,
        }
    }

    /// Conservation, replay and gap-free sequence: the store-level invariants of SECURITY.md §4.
    fn check_ledger(store: &Store) {
        let balances = store.balances().unwrap();
        assert_eq!(balances.iter().map(|(_, b)| i128::from(*b)).sum::<i128>(), 0, "conservation");
        let mut replay: HashMap<String, i128> = HashMap::new();
        for (i, t) in store.list_transfers(None).unwrap().iter().enumerate() {
            assert_eq!(t.seq, i as u64 + 1, "gap-free sequence");
            *replay.entry(t.debit.clone()).or_default() -= i128::from(t.amount.0);
            *replay.entry(t.credit.clone()).or_default() += i128::from(t.amount.0);
        }
        for (acct, b) in balances {
            assert_eq!(replay.get(&acct).copied().unwrap_or(0), i128::from(b), "replay of {acct}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Random deposits, streams, bytes, flushes and crashes (drop everything, reopen,
        /// recover): the ledger invariants always hold, and clients are never billed more than
        /// the bytes recorded (1 micro-unit per byte here).
        #[test]
        fn invariants_hold_across_usage_and_crashes(ops in proptest::collection::vec(op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("p.redb");
                let tariff = Tariff::new(Micros(1_000_000_000), 30).unwrap();
                let mut store = Arc::new(Store::open(&path).unwrap());
                for u in USERS {
                    store.create_user(&user(u)).unwrap();
                }
                let mut billing = Billing::start(store.clone(), tariff).unwrap();
                let mut live: Vec<Arc<LiveSession>> = Vec::new();
                let mut recorded: u64 = 0;
                let mut deposits = 0u64;
                for (n, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Deposit(u, a) => {
                            store.deposit(USERS[u], Micros(a), &format!("dep:{n}"), "t", 1).unwrap();
                            deposits += a;
                            billing.credited(USERS[u], a as i64);
                        }
                        Op::Open(c, o) => {
                            let info = SessionInfo {
                                client: USERS[c].into(), device: "d".into(), owner: USERS[o].into(),
                                vip: "100.64.0.1".into(), node_ip: "127.0.0.2".into(), target: "t:1".into(),
                            };
                            if let Ok(s) = billing.open(info) {
                                live.push(s);
                            }
                        }
                        Op::Bytes(i, b) => {
                            if let Some(s) = live.get(i % live.len().max(1)) {
                                s.record(&tariff, b / 2, b - b / 2);
                                recorded += b;
                            }
                        }
                        Op::End(i) => {
                            if !live.is_empty() {
                                let s = live.remove(i % live.len());
                                billing.end(&s, "closed");
                            }
                        }
                        Op::Flush => billing.flush().await.unwrap(),
                        Op::Crash => {
                            live.clear();
                            drop(billing);
                            drop(store);
                            store = Arc::new(Store::open(&path).unwrap());
                            billing = Billing::start(store.clone(), tariff).unwrap();
                        }
                    }
                    check_ledger(&store);
                }
                for s in live.drain(..) {
                    billing.end(&s, "closed");
                }
                billing.flush().await.unwrap();
                check_ledger(&store);
                let spent: i64 = USERS.iter().map(|u| store.balance(&Account::User((*u).into())).unwrap()).sum::<i64>()
                    - deposits as i64;
                let fees = store.balance(&Account::PlatformFees).unwrap();
                // Clients' net spending is exactly what the platform kept (owners are clients too).
                prop_assert_eq!(-spent, fees);
                let billed: u64 = store
                    .list_transfers(None)
                    .unwrap()
                    .iter()
                    .filter(|t| t.kind == "usage" || t.kind == "usage_fee")
                    .map(|t| t.amount.0)
                    .sum();
                prop_assert!(billed <= recorded, "billed {} for {} recorded bytes", billed, recorded);
                prop_assert!(store.accrued_by_client().unwrap().is_empty(), "nothing left accrued");
                Ok(())
            })?;
        }
    }
}
