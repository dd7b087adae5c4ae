//! Last-seen persistence in batches. Every node session reports when it came online, every
//! minute while online (each session at its own second of the minute, so the rows of nodes
//! that connected together arrive spread out), and when it went away ([`SeenLog::record`]); one
//! writer task ([`SeenLog::run`]) keeps the newest row per device and writes them all with one
//! `Store::touch_devices` transaction every `server.seen_flush_ms` (sooner once
//! `limits.seen_queue` devices have rows waiting), and once more when the server stops
//! ([`SeenLog::close`]). So a restart or a network blip that brings 10,000 nodes back (or drops
//! them) costs a handful of fsyncs, not 10,000.
//!
//! A row goes straight into a map keyed by device (at most one row per paired device, the
//! newest), so a session never waits for the writer and the newest row of a device is never
//! lost. It is visible the moment it is recorded: [`SeenLog::overlay`] and
//! [`list_devices`] show rows not yet written to whoever reads a device right after its
//! node left (the admin views, the notification watcher). A session records its last row under
//! the registry's lock as it leaves it, so a reader that finds a node gone also finds how it
//! left. (After [`SeenLog::close`], late rows are written one by one and not shown meanwhile.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, warn};

use crate::identity::DeviceId;
use crate::store::{DeviceRecord, SeenRow, Store, StoreError};
use crate::telemetry::{Metrics, ResultLabel};

/// One last-seen update of a device (see [`DeviceRecord::saw`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Unix seconds.
    pub at: u64,
    /// The tunnel's source address; `None` keeps the last one known.
    pub ip: Option<String>,
    /// Its country; `None` keeps the last one known.
    pub country: Option<String>,
    /// The pause reason the node reported (`None` while it serves).
    pub pause: Option<String>,
}

/// A row with its order of arrival: of two rows of one device, the later one wins.
#[derive(Debug, Clone)]
struct Row {
    seq: u64,
    device: DeviceId,
    seen: Seen,
}

impl Row {
    fn to_store(&self) -> SeenRow {
        let s = &self.seen;
        (self.device.to_vec(), s.at, s.ip.clone(), s.country.clone(), s.pause.clone())
    }
}

/// Rows not yet written: waiting for the next batch, and in the batch being written; `closed`
/// once the writer took its last batch (later rows are written one by one). One lock for all
/// of it, so a reader never finds a row in neither map.
#[derive(Debug, Default)]
struct Book {
    pending: HashMap<DeviceId, Row>,
    /// Shared with the writer, which turns it into store rows without the lock.
    writing: Arc<HashMap<DeviceId, Row>>,
    closed: bool,
}

/// The batched last-seen writer (one per server).
pub struct SeenLog {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    /// Devices with a row waiting that make the writer start a batch before its tick.
    early: usize,
    seq: AtomicU64,
    book: Mutex<Book>,
    full: tokio::sync::Notify,
    closing: tokio::sync::Notify,
    close_asked: AtomicBool,
}

impl std::fmt::Debug for SeenLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeenLog")
    }
}

/// Keeps the later of `row` and the device's row in `map`, as if both were written in turn (an
/// address or country the later one lacks comes from the earlier); true when one was coalesced
/// (it will never be written itself).
fn keep_newest(map: &mut HashMap<DeviceId, Row>, row: Row) -> bool {
    let Some(had) = map.get_mut(&row.device) else {
        map.insert(row.device, row);
        return false;
    };
    let (mut later, earlier) = if had.seq > row.seq { (had.clone(), row) } else { (row, had.clone()) };
    later.seen.ip = later.seen.ip.or(earlier.seen.ip);
    later.seen.country = later.seen.country.or(earlier.seen.country);
    *had = later;
    true
}

impl SeenLog {
    /// A writer for `store` that starts a batch early once `early` devices have rows waiting
    /// (`limits.seen_queue`, at least 1).
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>, early: usize) -> Arc<SeenLog> {
        Arc::new(SeenLog {
            store,
            metrics,
            early: early.max(1),
            seq: AtomicU64::new(0),
            book: Mutex::default(),
            full: tokio::sync::Notify::new(),
            closing: tokio::sync::Notify::new(),
            close_asked: AtomicBool::new(false),
        })
    }

    /// Takes a device's last-seen row for the next batch, visible to readers at once. Never
    /// waits for a write (the lock is held for map inserts and swaps; the writer builds and
    /// frees its batches outside it); after [`SeenLog::close`] the row is written on its own,
    /// and is not shown by [`SeenLog::pending`].
    pub fn record(&self, device: DeviceId, seen: Seen) {
        let row = Row { seq: self.seq.fetch_add(1, Ordering::Relaxed), device, seen };
        let mut b = crate::sync::lock(&self.book);
        if !b.closed {
            if keep_newest(&mut b.pending, row) {
                self.metrics.seen_coalesced.inc();
            }
            if b.pending.len() >= self.early {
                self.full.notify_one();
            }
            return;
        }
        drop(b);
        // The server is past its last batch (a session that ended late): this row alone.
        let store = self.store.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || {
                    if let Err(e) = store.touch_devices(&[row.to_store()]) {
                        warn!(error = %e, "could not persist last-seen");
                    }
                });
            }
            Err(_) => warn!(device = %hex::encode(row.device), "last-seen after shutdown not persisted"),
        }
    }

    /// The row of `device` not yet written, if any.
    pub fn pending(&self, device: &DeviceId) -> Option<Seen> {
        let b = crate::sync::lock(&self.book);
        newest(b.pending.get(device), b.writing.get(device)).map(|r| r.seen.clone())
    }

    /// Every row not yet written, one per device (the newest). Taken before the devices are
    /// read from the store, it misses none: a row leaves it only once it is committed.
    fn pending_rows(&self) -> HashMap<DeviceId, Seen> {
        let b = crate::sync::lock(&self.book);
        let mut out: HashMap<DeviceId, Seen> = HashMap::with_capacity(b.pending.len() + b.writing.len());
        for r in b.writing.values() {
            out.insert(r.device, r.seen.clone());
        }
        for r in b.pending.values() {
            // A waiting row is later than the one being written.
            out.insert(r.device, r.seen.clone());
        }
        out
    }

    /// `d` as it will be once its pending row is written; `None` when it has none.
    pub fn overlay(&self, d: &DeviceRecord) -> Option<DeviceRecord> {
        let s = self.pending(&d.device_id()?)?;
        Some(apply(d.clone(), &s))
    }

    /// Asks the writer to write what it holds and stop ([`SeenLog::run`] returns once it has).
    pub fn close(&self) {
        self.close_asked.store(true, Ordering::Release);
        self.closing.notify_one();
    }

    /// Moves the waiting rows to the batch being written.
    fn start_batch(&self, last: bool) -> Vec<SeenRow> {
        let batch = {
            let mut b = crate::sync::lock(&self.book);
            b.closed = last;
            let room = b.pending.len();
            let batch = Arc::new(std::mem::replace(&mut b.pending, HashMap::with_capacity(room)));
            b.writing = batch.clone();
            batch
        };
        batch.values().map(Row::to_store).collect()
    }

    /// After a batch: forgets it when written; when not, its rows wait for the next one (unless
    /// a later row of the device came meanwhile). True when it was written.
    fn end_batch(&self, result: Result<(), StoreError>, rows: usize, took: Duration) -> bool {
        let written = result.is_ok();
        let label = match result {
            Ok(()) => ResultLabel::ok(),
            Err(_) => ResultLabel::failed(),
        };
        self.metrics.seen_batches.get_or_create(&label).inc();
        self.metrics.seen_batch_seconds.0.observe(took.as_secs_f64());
        let mut b = crate::sync::lock(&self.book);
        let batch = std::mem::take(&mut b.writing);
        match result {
            Ok(()) => {
                drop(b);
                // Freed outside the lock.
                drop(batch);
                self.metrics.seen_rows.inc_by(rows as u64);
                debug!(rows, took_ms = took.as_millis() as u64, "last-seen batch written");
            }
            Err(e) if b.closed => {
                drop(b);
                warn!(error = %e, rows, "could not persist last-seen at shutdown: the rows are lost");
            }
            Err(e) => {
                warn!(error = %e, rows, "could not persist last-seen; retrying at the next tick");
                let mut coalesced = 0;
                for row in Arc::unwrap_or_clone(batch).into_values() {
                    if keep_newest(&mut b.pending, row) {
                        coalesced += 1;
                    }
                }
                self.metrics.seen_coalesced.inc_by(coalesced);
            }
        }
        written
    }

    /// Writes a batch; true unless it failed.
    async fn write(&self, rows: Vec<SeenRow>) -> bool {
        let n = rows.len();
        if n == 0 {
            crate::sync::lock(&self.book).writing = Arc::default();
            return true;
        }
        let started = tokio::time::Instant::now();
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || store.touch_devices(&rows))
            .await
            .unwrap_or_else(|e| Err(StoreError::Corrupt(format!("last-seen writer: {e}"))));
        self.end_batch(result, n, started.elapsed())
    }

    /// Writes the rows at most every `every` (sooner when `limits.seen_queue` devices wait,
    /// unless the last batch failed: then the next try waits for the tick), until
    /// [`SeenLog::close`]; then writes what is left and returns. Rows keep arriving (and
    /// coalescing) while a batch is written.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failed = false;
        while !self.close_asked.load(Ordering::Acquire) {
            tokio::select! {
                biased;
                _ = self.closing.notified() => break,
                _ = tick.tick() => {}
                _ = self.full.notified(), if !failed => tick.reset(),
            }
            let rows = self.start_batch(false);
            failed = !self.write(rows).await;
        }
        let rows = self.start_batch(true);
        let n = rows.len();
        self.write(rows).await;
        debug!(rows = n, "last-seen writer stopped");
    }
}

/// The later of a waiting row and one being written.
fn newest<'a>(pending: Option<&'a Row>, writing: Option<&'a Row>) -> Option<&'a Row> {
    [pending, writing].into_iter().flatten().max_by_key(|r| r.seq)
}

/// Every device in `store` as it will be once the rows `log` has not yet written are: the rows
/// are taken before the store is read (a row leaves them only once committed), so a device read
/// before a batch landed still shows its row.
pub fn list_devices(store: &Store, log: Option<&SeenLog>) -> Result<Vec<DeviceRecord>, StoreError> {
    let mut out = Vec::new();
    visit_devices(store, log, |d| out.push(d))?;
    Ok(out)
}

/// [`list_devices`], one device at a time: for a reader that keeps only a little of each.
pub fn visit_devices(
    store: &Store,
    log: Option<&SeenLog>,
    mut visit: impl FnMut(DeviceRecord),
) -> Result<(), StoreError> {
    let pending = log.map(SeenLog::pending_rows).unwrap_or_default();
    store.visit_devices(|d| {
        visit(match d.device_id().and_then(|id| pending.get(&id)) {
            Some(row) => apply(d, row),
            None => d,
        })
    })
}

/// `d` with the row `s` applied, as the store will have it.
fn apply(mut d: DeviceRecord, s: &Seen) -> DeviceRecord {
    d.saw(s.at, s.ip.as_deref(), s.country.as_deref(), s.pause.as_deref());
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: usize = 10_000;

    fn id(n: usize) -> DeviceId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(n as u64).to_be_bytes());
        id
    }

    fn seen(at: u64, pause: Option<&str>) -> Seen {
        Seen { at, ip: Some("198.51.100.7".into()), country: Some("DE".into()), pause: pause.map(str::to_owned) }
    }

    /// A store with `n` paired devices.
    fn store_with(n: usize) -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.redb")).unwrap());
        let recs: Vec<DeviceRecord> = (0..n)
            .map(|i| DeviceRecord::new(hex::encode(id(i)), crate::identity::KeyAlg::Ed25519, hex::encode(id(i))))
            .collect();
        store.put_devices_for_test(&recs).unwrap();
        (dir, store)
    }

    fn batches(m: &Metrics, result: ResultLabel) -> u64 {
        m.seen_batches.get_or_create(&result).get()
    }

    #[tokio::test(start_paused = true)]
    async fn ten_thousand_session_ends_are_a_handful_of_transactions_and_the_newest_row_wins() {
        let (_dir, store) = store_with(DEV);
        let metrics = Arc::new(Metrics::default());
        // No early batch: only the tick writes.
        let log = SeenLog::new(store.clone(), metrics.clone(), 2 * DEV);
        let writer = tokio::spawn(log.clone().run(Duration::from_millis(1000)));
        // Each node came online (t=100) and went away paused (t=105); node 0 twice more.
        for i in 0..DEV {
            log.record(id(i), seen(100, None));
            log.record(id(i), seen(105, Some("daily_cap")));
            if i % 97 == 0 {
                tokio::task::yield_now().await;
            }
        }
        log.record(id(0), Seen { at: 106, ip: None, country: None, pause: None });
        // Before anything is written, readers see the newest rows.
        assert_eq!(store.get_device(&id(1)).unwrap().unwrap().last_seen, None);
        let d = store.get_device(&id(1)).unwrap().unwrap();
        let shown = log.overlay(&d).expect("a pending row");
        assert_eq!((shown.last_seen, shown.node_pause.as_deref()), (Some(105), Some("daily_cap")));
        assert_eq!(log.overlay(&store.get_device(&id(0)).unwrap().unwrap()).unwrap().last_seen, Some(106));

        tokio::time::sleep(Duration::from_millis(1500)).await;
        while batches(&metrics, ResultLabel::ok()) == 0 {
            tokio::task::yield_now().await;
        }
        log.close();
        writer.await.unwrap();
        let written = batches(&metrics, ResultLabel::ok());
        assert!((1..=3).contains(&written), "{written} transactions for {} rows", 2 * DEV + 1);
        assert_eq!(batches(&metrics, ResultLabel::failed()), 0);
        assert_eq!(metrics.seen_rows.get(), DEV as u64, "one row per device");
        assert_eq!(metrics.seen_coalesced.get(), DEV as u64 + 1, "every older row was coalesced");
        for i in [1, 77, DEV - 1] {
            let d = store.get_device(&id(i)).unwrap().unwrap();
            assert_eq!((d.last_seen, d.node_pause.as_deref()), (Some(105), Some("daily_cap")), "device {i}");
            assert_eq!((d.last_ip.as_deref(), d.country.as_deref()), (Some("198.51.100.7"), Some("DE")));
            assert!(log.pending(&id(i)).is_none());
        }
        // The last row had no address or country: the known ones stay; it serves again.
        let d = store.get_device(&id(0)).unwrap().unwrap();
        assert_eq!((d.last_seen, d.node_pause, d.last_ip.as_deref()), (Some(106), None, Some("198.51.100.7")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_row_is_visible_as_soon_as_recorded_and_enough_waiting_devices_start_a_batch_early() {
        let (_dir, store) = store_with(3);
        let metrics = Arc::new(Metrics::default());
        // A batch early once 3 devices wait; the tick is an hour away.
        let log = SeenLog::new(store.clone(), metrics.clone(), 3);
        let writer = tokio::spawn(log.clone().run(Duration::from_secs(3600)));
        tokio::task::yield_now().await;
        log.record(id(0), seen(10, None));
        for t in 11..=50 {
            log.record(id(1), seen(t, Some("by_owner")));
        }
        // Recorded, not written, and shown to readers at once (no task had to run).
        assert_eq!(log.pending(&id(0)).map(|s| s.at), Some(10));
        let rows = log.pending_rows();
        assert_eq!(rows.len(), 2, "one row per device");
        assert_eq!(rows[&id(1)], seen(50, Some("by_owner")));
        let d = store.get_device(&id(1)).unwrap().unwrap();
        assert_eq!(apply(d, &rows[&id(1)]).node_pause.as_deref(), Some("by_owner"));
        assert_eq!(metrics.seen_coalesced.get(), 39);
        // Two devices wait: no batch, however long the writer runs (a batch begun shows in
        // `writing` at once, before its transaction ends).
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(batches(&metrics, ResultLabel::ok()), 0);
        assert!(crate::sync::lock(&log.book).writing.is_empty());
        assert_eq!(crate::sync::lock(&log.book).pending.len(), 2);
        // The third does: one transaction for all three, long before the tick.
        log.record(id(2), seen(60, Some("daily_cap")));
        while batches(&metrics, ResultLabel::ok()) == 0 {
            tokio::task::yield_now().await;
        }
        let at = |i| store.get_device(&id(i)).unwrap().unwrap();
        assert_eq!(at(0).last_seen, Some(10));
        assert_eq!((at(1).last_seen, at(1).node_pause.as_deref()), (Some(50), Some("by_owner")));
        assert_eq!((at(2).last_seen, at(2).node_pause.as_deref()), (Some(60), Some("daily_cap")));
        assert!(log.pending_rows().is_empty(), "written rows are no longer pending");
        assert_eq!(metrics.seen_rows.get(), 3);
        log.close();
        writer.await.unwrap();
        assert_eq!(batches(&metrics, ResultLabel::ok()), 1, "the early batch (the last one had nothing to write)");
    }

    /// Puts `value` as device `n`'s row, as it is stored (a row that does not parse fails the
    /// batch that touches it).
    fn put_raw(store: &Store, n: usize, value: &[u8]) {
        let txn = store.write_for_test().unwrap();
        txn.open_table(crate::store::tables::DEVICES).unwrap().insert(id(n).as_slice(), value).unwrap();
        txn.commit().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_batch_keeps_its_rows_and_is_retried_at_the_tick_not_at_every_new_row() {
        let (_dir, store) = store_with(3);
        let good = serde_json::to_vec(&store.get_device(&id(1)).unwrap().unwrap()).unwrap();
        put_raw(&store, 1, b"not a device");
        let metrics = Arc::new(Metrics::default());
        // A batch early once 2 devices wait; the tick a minute apart.
        let log = SeenLog::new(store.clone(), metrics.clone(), 2);
        let writer = tokio::spawn(log.clone().run(Duration::from_secs(60)));
        tokio::task::yield_now().await;
        log.record(id(0), seen(10, None));
        log.record(id(1), seen(10, None));
        while batches(&metrics, ResultLabel::failed()) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(log.pending(&id(0)).map(|s| s.at), Some(10), "the failed batch's rows wait again");
        // More rows while the store fails: no batch until the tick, however many come.
        for t in 11..=40 {
            log.record(id(2), seen(t, Some("by_owner")));
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(batches(&metrics, ResultLabel::failed()), 1, "not retried at every row");
        assert!(crate::sync::lock(&log.book).writing.is_empty(), "no batch begun");
        assert_eq!(crate::sync::lock(&log.book).pending.len(), 3);
        // The store mended: the tick writes everything, the newest row of each device.
        put_raw(&store, 1, &good);
        tokio::time::sleep(Duration::from_secs(61)).await;
        while batches(&metrics, ResultLabel::ok()) == 0 {
            tokio::task::yield_now().await;
        }
        let at = |i| store.get_device(&id(i)).unwrap().unwrap();
        assert_eq!((at(0).last_seen, at(1).last_seen), (Some(10), Some(10)));
        assert_eq!((at(2).last_seen, at(2).node_pause.as_deref()), (Some(40), Some("by_owner")));
        assert!(log.pending_rows().is_empty());
        log.close();
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_left_and_later_rows_still_land() {
        let (_dir, store) = store_with(2);
        let metrics = Arc::new(Metrics::default());
        let log = SeenLog::new(store.clone(), metrics.clone(), 16);
        // An hour between flushes: only the shutdown writes.
        let writer = tokio::spawn(log.clone().run(Duration::from_secs(3600)));
        log.record(id(0), seen(7, Some("by_owner")));
        tokio::task::yield_now().await;
        log.close();
        writer.await.unwrap();
        let d = store.get_device(&id(0)).unwrap().unwrap();
        assert_eq!((d.last_seen, d.node_pause.as_deref()), (Some(7), Some("by_owner")));
        assert_eq!(batches(&metrics, ResultLabel::ok()), 1);
        // A session that ends after the last batch still has its row written, on its own.
        log.record(id(1), seen(9, None));
        // Written on the blocking pool: polled.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while store.get_device(&id(1)).unwrap().unwrap().last_seen != Some(9) {
            assert!(std::time::Instant::now() < deadline, "the late row was not written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
