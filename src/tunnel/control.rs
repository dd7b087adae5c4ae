//! Control requests over the tunnel (docs/protocol.md "Control requests", version 2): a device's
//! own traffic and earnings per day and per month (STATS_REQUEST → STATS) and unpairing
//! (UNPAIR → UNPAIRED), on the serving tunnel or on a control-only session, which carries
//! nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{Instrument, debug, info, warn};

use super::mux::Mux;
use super::protocol::{
    ErrorCode, Frame, MAX_STATS_DAYS, MAX_STATS_MONTHS, Stats, StatsEntry, StatsRequest, StatsStatus,
};
use crate::identity::DeviceId;
use crate::store::{Store, StoreError, UsageBucket, now_secs};
use crate::telemetry::Metrics;
use crate::units::{civil_from_days, days_from_civil};

/// Removes a device as the admin's `device remove` does, on behalf of the device itself, with
/// the node's reason (blocking: run it on the blocking pool). Set by the app, which owns the
/// admin commands the tunnel may not call.
pub type UnpairHook = Arc<dyn Fn(&DeviceId, Option<&str>) -> Result<(), String> + Send + Sync>;

/// STATS_REQUESTs answered back to back on one connection before the rate applies.
pub const STATS_BURST: u32 = 3;
/// Then one STATS_REQUEST per this long; more are answered `rate_limited`.
pub const STATS_EVERY: Duration = Duration::from_secs(10);
/// How long a control-only session may stay open.
pub const CONTROL_SESSION_SECS: u64 = 60;
/// Control-only sessions one device may hold at once.
pub const CONTROL_SESSIONS_PER_DEVICE: u32 = 2;

/// The control-only sessions open per device (entries leave with their last session, so the map
/// is bounded by the paired devices times [`CONTROL_SESSIONS_PER_DEVICE`]).
#[derive(Default)]
pub struct ControlSessions(Mutex<HashMap<DeviceId, Open>>);

/// A device's open control-only sessions and the STATS rate they share, so closing a session
/// and opening another does not buy a fresh burst. The entry stays while its rate still has
/// debt (bounded by the paired devices).
struct Open {
    sessions: u32,
    rate: Arc<Mutex<StatsRate>>,
}

/// One open control-only session; frees its slot when dropped.
pub(super) struct Slot<'a> {
    table: &'a ControlSessions,
    device: DeviceId,
    /// The device's STATS rate, shared by its control-only sessions.
    pub(super) rate: Arc<Mutex<StatsRate>>,
}

impl ControlSessions {
    /// A slot for one more control-only session of `device`, or `None` when it has
    /// [`CONTROL_SESSIONS_PER_DEVICE`] open.
    pub(super) fn take(&self, device: DeviceId) -> Option<Slot<'_>> {
        let mut m = crate::sync::lock(&self.0);
        let open = m.entry(device).or_insert_with(|| Open {
            sessions: 0,
            rate: Arc::new(Mutex::new(StatsRate::new(tokio::time::Instant::now()))),
        });
        if open.sessions >= CONTROL_SESSIONS_PER_DEVICE {
            return None;
        }
        open.sessions += 1;
        Some(Slot { table: self, device, rate: open.rate.clone() })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut m = crate::sync::lock(&self.table.0);
        if let Some(open) = m.get_mut(&self.device) {
            open.sessions = open.sessions.saturating_sub(1);
        }
        // This device's entry, and any kept for its rate's debt, go once nothing is owed.
        m.retain(|_, o| o.sessions > 0 || !crate::sync::lock(&o.rate).full(tokio::time::Instant::now()));
    }
}

/// STATS_REQUEST's rate on one connection, on an injected clock: [`STATS_BURST`] back to back,
/// then one per [`STATS_EVERY`].
#[derive(Debug)]
pub(super) struct StatsRate {
    tokens: u32,
    last: tokio::time::Instant,
}

impl StatsRate {
    pub(super) fn new(now: tokio::time::Instant) -> Self {
        StatsRate { tokens: STATS_BURST, last: now }
    }

    /// Whether the burst is whole again at `now` (nothing left to remember).
    pub(super) fn full(&self, now: tokio::time::Instant) -> bool {
        let earned = (now.saturating_duration_since(self.last).as_millis() / STATS_EVERY.as_millis()) as u64;
        u64::from(self.tokens) + earned >= u64::from(STATS_BURST)
    }

    /// Takes a token at `now`, or says how long until the next one.
    pub(super) fn take(&mut self, now: tokio::time::Instant) -> Result<(), Duration> {
        let since = now.saturating_duration_since(self.last);
        let earned = (since.as_millis() / STATS_EVERY.as_millis()) as u32;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(STATS_BURST);
            self.last += STATS_EVERY * earned;
        }
        if self.tokens == STATS_BURST {
            self.last = now;
        }
        if self.tokens == 0 {
            return Err(STATS_EVERY.saturating_sub(now.saturating_duration_since(self.last)));
        }
        self.tokens -= 1;
        Ok(())
    }
}

/// A device's usage per UTC day and per UTC calendar month from the hourly roll-up of
/// `device:<id>`: the last `days` days (at most [`MAX_STATS_DAYS`]) and `months` months (at most
/// [`MAX_STATS_MONTHS`]) up to `now`, oldest first and zero-filled; and today's day number.
pub fn device_stats(
    store: &Store,
    device: &str,
    now: u64,
    days: u16,
    months: u16,
) -> Result<(u32, Vec<StatsEntry>, Vec<StatsEntry>), StoreError> {
    let today = now / 86_400;
    let days = u64::from(days).min(MAX_STATS_DAYS as u64).min(today + 1);
    let months = usize::from(months).min(MAX_STATS_MONTHS);
    let (y, m, _) = civil_from_days(today as i64);
    let this_month = y * 12 + i64::from(m) - 1;
    let month_starts: Vec<u64> = (0..months as i64)
        .rev()
        .map(|back| {
            let k = this_month - back;
            days_from_civil(k.div_euclid(12), (k.rem_euclid(12) + 1) as u32, 1).max(0) as u64
        })
        .collect();
    let first_day = today + 1 - days;
    let from_day = month_starts.first().map_or(first_day, |&m| m.min(first_day));
    let to_day = today + 1;
    let entry = |start: u64, b: &UsageBucket| StatsEntry {
        start_day: u32::try_from(start).unwrap_or(u32::MAX),
        bytes: b.bytes(),
        earned: b.earned,
    };
    let mut day_buckets = vec![UsageBucket::default(); days as usize];
    let mut month_buckets = vec![UsageBucket::default(); months];
    if from_day < to_day {
        for (hour, b) in store.usage_series(&format!("device:{device}"), from_day * 24, to_day * 24)? {
            let day = hour / 24;
            if day >= first_day
                && let Some(slot) = day_buckets.get_mut((day - first_day) as usize)
            {
                slot.add(&b);
            }
            let i = month_starts.partition_point(|&s| s <= day);
            if i > 0 {
                month_buckets[i - 1].add(&b);
            }
        }
    }
    let days = day_buckets.iter().enumerate().map(|(i, b)| entry(first_day + i as u64, b)).collect();
    let months = month_buckets.iter().zip(&month_starts).map(|(b, &s)| entry(s, b)).collect();
    Ok((u32::try_from(today).unwrap_or(u32::MAX), days, months))
}

/// What control requests need from the server (the tunnel service's parts).
#[derive(Clone)]
pub struct ControlDeps {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// The billing currency; `None` when billing is off (STATS then says `unavailable`).
    pub currency: Option<String>,
    /// The removal behind UNPAIR; `None` answers it `ERROR 10`.
    pub unpair: Option<UnpairHook>,
}

/// One connection's control requests.
pub(super) struct Control {
    deps: ControlDeps,
    /// The device id in hex, as the usage roll-up names it.
    device: String,
    device_id: DeviceId,
    rate: Arc<Mutex<StatsRate>>,
}

impl Control {
    /// Requests on a serving tunnel (their own rate) or, with `rate`, on a control-only
    /// session (the rate its device's control-only sessions share).
    pub(super) fn new(deps: ControlDeps, device_id: DeviceId, rate: Option<Arc<Mutex<StatsRate>>>) -> Self {
        let rate = rate.unwrap_or_else(|| Arc::new(Mutex::new(StatsRate::new(tokio::time::Instant::now()))));
        Control { deps, device: hex::encode(device_id), device_id, rate }
    }

    /// Answers a STATS_REQUEST: at once when over the rate or with billing off, otherwise once
    /// the roll-up has been read on the blocking pool (the session goes on meanwhile).
    pub(super) fn stats(&mut self, req: StatsRequest, mux: &Mux) {
        let request_id = req.request_id;
        let reply = move |status, retry_after_s| {
            Frame::Stats(Box::new(Stats { request_id, status, retry_after_s, ..Stats::default() }))
        };
        let taken = crate::sync::lock(&self.rate).take(tokio::time::Instant::now());
        if let Err(wait) = taken {
            self.deps.metrics.tunnel_control("stats", "rate_limited");
            let secs = wait.as_secs_f64().ceil().clamp(1.0, f64::from(u16::MAX)) as u16;
            mux.send_frame(&reply(StatsStatus::RateLimited, Some(secs)));
            return;
        }
        let Some(currency) = self.deps.currency.clone() else {
            self.deps.metrics.tunnel_control("stats", "unavailable");
            mux.send_frame(&reply(StatsStatus::Unavailable, None));
            return;
        };
        let (metrics, device, mux) = (self.deps.metrics.clone(), self.device.clone(), mux.clone());
        let store = self.deps.store.clone();
        tokio::spawn(
            async move {
                let read = tokio::task::spawn_blocking(move || {
                    device_stats(&store, &device, now_secs(), req.days, req.months)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
                let frame = match read {
                    Ok((today, days, months)) => {
                        metrics.tunnel_control("stats", "ok");
                        debug!(days = days.len(), months = months.len(), "stats sent");
                        Frame::Stats(Box::new(Stats {
                            request_id: req.request_id,
                            status: StatsStatus::Ok,
                            currency: Some(currency),
                            today: Some(today),
                            days,
                            months,
                            retry_after_s: None,
                        }))
                    }
                    Err(e) => {
                        metrics.tunnel_control("stats", "unavailable");
                        warn!(error = %e, "could not read a device's usage for STATS");
                        reply(StatsStatus::Unavailable, None)
                    }
                };
                mux.send_frame(&frame);
            }
            .in_current_span(),
        );
    }

    /// Forgets the device (the admin's removal, as the device) and answers UNPAIRED, or ERROR 10
    /// when that failed. Either way the session ends; the caller breaks its loop.
    pub(super) async fn unpair(&self, request_id: u32, reason: Option<String>, mux: &Mux) -> Result<(), String> {
        let res = match self.deps.unpair.clone() {
            None => Err("unpairing is not available on this server".to_owned()),
            Some(hook) => {
                let id = self.device_id;
                tokio::task::spawn_blocking(move || hook(&id, reason.as_deref()))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
            }
        };
        match &res {
            Ok(()) => {
                self.deps.metrics.tunnel_control("unpair", "ok");
                info!("device unpaired at its own request");
                mux.send_frame(&Frame::Unpaired { request_id });
            }
            Err(e) => {
                self.deps.metrics.tunnel_control("unpair", "failed");
                warn!(error = %e, "unpairing failed");
                mux.send_error(ErrorCode::Internal, &format!("could not unpair: {e}"));
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FlushBatch;

    /// Adds usage to device `id` in hour `hour` (hours since the epoch).
    fn carry(store: &Store, id: &str, hour: u64, bytes: u64, earned: u64) {
        let b = UsageBucket { up: bytes / 2, down: bytes - bytes / 2, earned, ..UsageBucket::default() };
        let mut batch = FlushBatch { usage: vec![(format!("device:{id}"), hour, b)], ..FlushBatch::default() };
        store.flush_usage(&mut batch, hour * 3600).unwrap();
    }

    #[test]
    fn stats_roll_hours_up_into_days_and_calendar_months() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let day = |y, m, d| days_from_civil(y, m, d) as u64;
        // 2026-03-02 10:00 UTC is "now".
        let today = day(2026, 3, 2);
        let now = today * 86_400 + 10 * 3600;
        carry(&store, "ab", today * 24 + 9, 1_000, 70); // today
        carry(&store, "ab", today * 24 + 1, 500, 30); // today, another hour
        carry(&store, "ab", day(2026, 2, 28) * 24 + 23, 2_000, 140); // yesterday (February)
        carry(&store, "ab", day(2026, 1, 31) * 24, 4_000, 280); // January
        carry(&store, "ab", day(2025, 12, 31) * 24 + 5, 8_000, 560); // December, outside 3 months
        carry(&store, "other", today * 24, 9_999, 9_999); // another device
        let (t, days, months) = device_stats(&store, "ab", now, 3, 3).unwrap();
        assert_eq!(u64::from(t), today);
        let e = |d: u64, bytes, earned| StatsEntry { start_day: d as u32, bytes, earned };
        assert_eq!(days, vec![e(day(2026, 2, 28), 2_000, 140), e(day(2026, 3, 1), 0, 0), e(today, 1_500, 100)]);
        assert_eq!(
            months,
            vec![e(day(2026, 1, 1), 4_000, 280), e(day(2026, 2, 1), 2_000, 140), e(day(2026, 3, 1), 1_500, 100)]
        );
        // Bounded: 62 days and 24 months at most, crossing a year; none asked, none given.
        let (_, days, months) = device_stats(&store, "ab", now, 1_000, 1_000).unwrap();
        assert_eq!((days.len(), months.len()), (MAX_STATS_DAYS, MAX_STATS_MONTHS));
        assert_eq!(months[0].start_day as u64, day(2024, 4, 1));
        assert_eq!(months[20], e(day(2025, 12, 1), 8_000, 560));
        assert_eq!(days.iter().map(|d| d.bytes).sum::<u64>(), 15_500);
        assert_eq!(device_stats(&store, "ab", now, 0, 0).unwrap().1, vec![]);
        assert_eq!(device_stats(&store, "nobody", now, 2, 1).unwrap().1, vec![e(today - 1, 0, 0), e(today, 0, 0)]);
    }

    #[test]
    fn stats_requests_past_the_burst_wait_and_are_told_how_long() {
        let t0 = tokio::time::Instant::now();
        let mut r = StatsRate::new(t0);
        for i in 0..STATS_BURST {
            assert_eq!(r.take(t0), Ok(()), "burst {i}");
        }
        assert_eq!(r.take(t0), Err(STATS_EVERY));
        assert_eq!(r.take(t0 + Duration::from_secs(4)), Err(Duration::from_secs(6)));
        assert_eq!(r.take(t0 + STATS_EVERY), Ok(()));
        assert!(r.take(t0 + STATS_EVERY).is_err());
        // An app refreshing its history screen once a minute is never refused.
        let mut r = StatsRate::new(t0);
        for i in 0..500 {
            assert_eq!(r.take(t0 + Duration::from_secs(60 * i)), Ok(()), "request {i}");
        }
    }

    #[test]
    fn control_sessions_are_bounded_per_device_and_free_their_slot() {
        let table = ControlSessions::default();
        let a = table.take([1; 16]).expect("first");
        let b = table.take([1; 16]).expect("second");
        assert!(table.take([1; 16]).is_none(), "a third at once");
        assert!(table.take([2; 16]).is_some(), "another device has its own slots");
        drop(a);
        assert!(table.take([1; 16]).is_some());
        drop(b);
        assert!(crate::sync::lock(&table.0).is_empty(), "no entry outlives its sessions");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_control_session_does_not_buy_a_fresh_burst_of_stats() {
        let table = ControlSessions::default();
        let a = table.take([1; 16]).unwrap();
        for _ in 0..STATS_BURST {
            assert!(crate::sync::lock(&a.rate).take(tokio::time::Instant::now()).is_ok());
        }
        drop(a);
        let b = table.take([1; 16]).unwrap();
        assert!(crate::sync::lock(&b.rate).take(tokio::time::Instant::now()).is_err(), "the device's rate is kept");
        drop(b);
        tokio::time::advance(STATS_EVERY * STATS_BURST).await;
        let c = table.take([1; 16]).unwrap();
        drop(c);
        assert!(crate::sync::lock(&table.0).is_empty(), "a paid-off rate is forgotten");
    }
}
