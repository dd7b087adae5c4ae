//! Notifications: the events other parts emit for users and admins, and the watcher that turns
//! node and balance state into such events. What it owns:
//!
//! - [`Event`]: one closed set of what anyone is told about; a new source adds a variant here;
//! - [`Notifier`]: the cheap, cloneable, never-blocking handle emitters hold (a bounded queue:
//!   when it is full the event is dropped and counted, never waited for);
//! - [`Watcher`]: pure decisions "this node has been offline long enough", "it is back",
//!   "this balance fell below its threshold", "many nodes dropped at once", fed by the app.
//!
//! Delivery (the inbox in the store, the bot's message, rate limits and quiet hours) is the
//! Telegram front end's job (`crate::telegram::notices`); this module never sends anything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::money::Micros;

/// What a withdrawal request became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithdrawalOutcome {
    Approved,
    Rejected,
    Paid,
}

/// Something a user (or the admins) should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node of `owner` has been gone for `minutes` (not when paused by its owner).
    NodeOffline { owner: String, device: String, vip: String, minutes: u64 },
    /// A node reported offline is connected again.
    NodeBack { owner: String, device: String, vip: String },
    /// The node-quality watchdog (issue 17) flagged or banned a node, with its reason. Emit it
    /// with [`Notifier::emit`] from the watchdog; delivery and texts are ready.
    NodeFlagged { owner: String, device: String, vip: String, banned: bool, reason: String },
    /// A data cap was reached (`what` names it: a sub-user's byte cap, a node's daily cap).
    CapReached { user: String, what: String },
    /// The balance fell below the user's threshold (told once until it is above again).
    LowBalance { user: String, balance: i64, threshold: Micros },
    /// Money arrived.
    Deposit { user: String, amount: Micros, provider: String },
    /// A withdrawal was approved, rejected or paid.
    Withdrawal { user: String, id: u64, amount: Micros, outcome: WithdrawalOutcome, reason: Option<String> },
    /// For every admin: a new withdrawal request, a mass disconnect, a flood of failures.
    AdminAlert { text: String },
}

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    User(String),
    Admins,
}

impl Event {
    /// The kind, as preferences mute it and the inbox shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::NodeOffline { .. } => "node_offline",
            Event::NodeBack { .. } => "node_back",
            Event::NodeFlagged { .. } => "node_flagged",
            Event::CapReached { .. } => "cap_reached",
            Event::LowBalance { .. } => "low_balance",
            Event::Deposit { .. } => "deposit",
            Event::Withdrawal { .. } => "withdrawal",
            Event::AdminAlert { .. } => "admin_alert",
        }
    }

    pub fn recipient(&self) -> Recipient {
        match self {
            Event::NodeOffline { owner, .. } | Event::NodeBack { owner, .. } | Event::NodeFlagged { owner, .. } => {
                Recipient::User(owner.clone())
            }
            Event::CapReached { user, .. }
            | Event::LowBalance { user, .. }
            | Event::Deposit { user, .. }
            | Event::Withdrawal { user, .. } => Recipient::User(user.clone()),
            Event::AdminAlert { .. } => Recipient::Admins,
        }
    }
}

/// The emitters' handle: a bounded queue to the delivery task.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: Option<tokio::sync::mpsc::Sender<Event>>,
    dropped: Arc<AtomicU64>,
}

impl Notifier {
    /// A notifier and the receiving end, holding at most `capacity` undelivered events
    /// (`limits.notify_queue`).
    pub fn channel(capacity: usize) -> (Notifier, tokio::sync::mpsc::Receiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (Notifier { tx: Some(tx), dropped: Arc::default() }, rx)
    }

    /// A notifier that drops everything (CLI runs without a server).
    pub fn disabled() -> Notifier {
        Notifier { tx: None, dropped: Arc::default() }
    }

    /// Queues `e` without waiting; a full queue drops it (counted, logged at most once a minute).
    pub fn emit(&self, e: Event) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(e).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if NOTIFY_LOG.admit_now("notifications dropped") {
                tracing::warn!(
                    dropped = self.dropped(),
                    "notification queue full: event dropped (limits.notify_queue)"
                );
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Dropped-notification log lines: at most a few a minute.
static NOTIFY_LOG: crate::telemetry::LogLimiter =
    crate::telemetry::LogLimiter::new(5, std::time::Duration::from_secs(60));

/// A device as the watcher sees it each round.
#[derive(Debug, Clone)]
pub struct DeviceState {
    pub id: String,
    pub owner: String,
    pub vip: String,
    pub online: bool,
    pub paused: bool,
    pub banned: bool,
    /// When the server last heard from it (seconds since the epoch).
    pub last_seen: Option<u64>,
    /// `daily` or `monthly` while the node reports itself paused at that data cap of its own
    /// (online, or gone with that reason).
    pub cap: Option<&'static str>,
    /// Gone, but it paused itself before it left (a cap, its schedule, its owner's hand on the
    /// device: [`crate::store::DeviceRecord::node_pause`]): it closed its tunnel until that
    /// clears, so it is paused, not offline.
    pub left_paused: bool,
}

/// How many nodes dropping within one round make an admin alert, and the least share of those
/// that were online.
pub const MASS_DISCONNECT_MIN: usize = 5;

/// The watcher's memory between rounds: bounded by the number of devices and users.
#[derive(Debug, Default)]
pub struct Watcher {
    /// Devices seen offline: since when, and whether that was reported.
    offline: HashMap<String, (u64, bool)>,
    /// Users already told their balance is low.
    low: HashSet<String>,
    /// Sub-users already reported at their byte cap.
    capped: HashSet<String>,
    /// Devices already reported at their own data cap.
    node_capped: HashSet<String>,
    /// The failure counters at the last round and when, and when a flood was last reported.
    failures: Option<(u64, u64, u64)>,
    flood_told: Option<u64>,
    /// Devices online last round (for the mass-disconnect alert).
    was_online: HashSet<String>,
    started: Option<u64>,
}

impl Watcher {
    /// One round over every device: the events to emit. `offline_after(owner)` is the owner's
    /// threshold in seconds.
    pub fn devices(&mut self, devices: &[DeviceState], now: u64, offline_after: impl Fn(&str) -> u64) -> Vec<Event> {
        let started = *self.started.get_or_insert(now);
        let mut out = Vec::new();
        let ids: HashSet<&str> = devices.iter().map(|d| d.id.as_str()).collect();
        self.offline.retain(|k, _| ids.contains(k.as_str()));
        self.node_capped.retain(|k| ids.contains(k.as_str()));
        let mut dropped = 0;
        for d in devices {
            if d.online || d.left_paused {
                match d.cap {
                    Some(cap) if self.node_capped.insert(d.id.clone()) => out.push(Event::CapReached {
                        user: d.owner.clone(),
                        what: format!("node {} reached its {cap} data cap and pauses until it resets", d.vip),
                    }),
                    Some(_) => {}
                    None => {
                        self.node_capped.remove(&d.id);
                    }
                }
            }
            if d.online || (d.left_paused && !d.paused && !d.banned) {
                // Online, or it came back since it was reported offline and left paused (it
                // can only have reported the pause over a new connection): "back", once.
                if let Some((_, true)) = self.offline.remove(&d.id) {
                    out.push(Event::NodeBack { owner: d.owner.clone(), device: d.id.clone(), vip: d.vip.clone() });
                } else {
                    self.offline.remove(&d.id);
                }
                continue;
            }
            if self.was_online.contains(&d.id) && !d.paused && !d.left_paused {
                dropped += 1;
            }
            if d.paused || d.banned {
                // Paused by its owner (or banned): not "offline"; forget any earlier report.
                self.offline.remove(&d.id);
                continue;
            }
            // Gone since it was last seen, but never before this server started watching.
            let since = d.last_seen.unwrap_or(started).max(started);
            let e = self.offline.entry(d.id.clone()).or_insert((since, false));
            let after = offline_after(&d.owner);
            if !e.1 && now.saturating_sub(e.0) >= after {
                e.1 = true;
                out.push(Event::NodeOffline {
                    owner: d.owner.clone(),
                    device: d.id.clone(),
                    vip: d.vip.clone(),
                    minutes: now.saturating_sub(e.0) / 60,
                });
            }
        }
        let online_before = self.was_online.len();
        if dropped >= MASS_DISCONNECT_MIN && dropped * 2 >= online_before {
            out.push(Event::AdminAlert {
                text: format!("mass disconnect: {dropped} of {online_before} online nodes dropped at once"),
            });
        }
        self.was_online = devices.iter().filter(|d| d.online).map(|d| d.id.clone()).collect();
        out
    }

    /// A user's balance against its threshold (0: none): a `LowBalance` the first time it is
    /// below, nothing again until it has been above.
    pub fn balance(&mut self, user: &str, balance: i64, threshold: Micros) -> Option<Event> {
        let below = threshold.0 > 0 && balance < i64::try_from(threshold.0).unwrap_or(i64::MAX);
        if !below {
            self.low.remove(user);
            return None;
        }
        self.low.insert(user.to_owned()).then(|| Event::LowBalance { user: user.to_owned(), balance, threshold })
    }
}

/// Proxy-auth failures plus refused connections a minute that make a "flood of failures"
/// admin alert, and the quiet time after one.
pub const FLOOD_PER_MINUTE: u64 = 1000;
pub const FLOOD_ALERT_EVERY_SECS: u64 = 600;

impl Watcher {
    /// The failure counters (proxy-auth failures, connections refused; both totals since the
    /// start) at `now`: an admin alert when their rate since the last round reaches
    /// [`FLOOD_PER_MINUTE`], at most once per [`FLOOD_ALERT_EVERY_SECS`].
    pub fn failures(&mut self, auth: u64, refused: u64, now: u64) -> Option<Event> {
        let last = self.failures.replace((auth, refused, now));
        let (a0, r0, t0) = last?;
        let secs = now.saturating_sub(t0).max(1);
        let n = auth.saturating_sub(a0) + refused.saturating_sub(r0);
        if n.saturating_mul(60) / secs < FLOOD_PER_MINUTE
            || self.flood_told.is_some_and(|t| now.saturating_sub(t) < FLOOD_ALERT_EVERY_SECS)
        {
            return None;
        }
        self.flood_told = Some(now);
        Some(Event::AdminAlert {
            text: format!(
                "flood of failures: {} proxy-auth failures and {} refused connections in {secs} s",
                auth.saturating_sub(a0),
                refused.saturating_sub(r0)
            ),
        })
    }

    /// A sub-user's use against its byte cap: a `CapReached` for its parent the first time it
    /// is reached, nothing again until the use is below the cap (a raised cap, a new sub-user).
    pub fn sub_cap(&mut self, parent: &str, sub: &str, used: u64, cap: Option<u64>) -> Option<Event> {
        let reached = cap.is_some_and(|c| used >= c);
        if !reached {
            self.capped.remove(sub);
            return None;
        }
        self.capped.insert(sub.to_owned()).then(|| Event::CapReached {
            user: parent.to_owned(),
            what: format!("sub-user {sub} used its {} bytes", cap.unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_failures_alerts_admins_once_in_a_while() {
        let mut w = Watcher::default();
        assert!(w.failures(0, 0, 0).is_none(), "the first round only sets the base");
        assert!(w.failures(100, 0, 60).is_none(), "100 a minute is not a flood");
        assert!(matches!(w.failures(1100, 100, 120), Some(Event::AdminAlert { .. })));
        assert!(w.failures(5000, 100, 180).is_none(), "told at most every 10 minutes");
        assert!(w.failures(20000, 100, 780).is_some());
    }

    #[test]
    fn a_sub_user_cap_is_reported_once() {
        let mut w = Watcher::default();
        assert!(w.sub_cap("alice", "alice_s", 10, Some(100)).is_none());
        assert!(matches!(w.sub_cap("alice", "alice_s", 100, Some(100)), Some(Event::CapReached { .. })));
        assert!(w.sub_cap("alice", "alice_s", 150, Some(100)).is_none(), "told once");
        assert!(w.sub_cap("alice", "alice_s", 150, Some(1000)).is_none(), "cap raised");
        assert!(w.sub_cap("alice", "alice_s", 1000, Some(1000)).is_some());
        assert!(w.sub_cap("alice", "other", u64::MAX, None).is_none());
    }

    fn dev(id: &str, online: bool, paused: bool, last_seen: u64) -> DeviceState {
        DeviceState {
            id: id.into(),
            owner: "bob".into(),
            vip: "100.64.0.2".into(),
            online,
            paused,
            banned: false,
            last_seen: Some(last_seen),
            cap: None,
            left_paused: false,
        }
    }

    #[test]
    fn a_node_that_left_paused_is_not_offline_and_its_return_is_right() {
        let mut w = Watcher::default();
        let after = |_: &str| 600;
        let left = |cap, at| DeviceState { cap, left_paused: true, ..dev("a", false, false, at) };
        assert!(w.devices(&[dev("a", true, false, 0)], 1000, after).is_empty());
        // It paused itself (its schedule) and closed its tunnel: never "offline", however long.
        assert!(w.devices(&[left(None, 1000)], 1100, after).is_empty());
        assert!(w.devices(&[left(None, 1000)], 90_000, after).is_empty(), "a night outside its schedule");
        assert!(w.devices(&[dev("a", true, false, 90_000)], 90_001, after).is_empty(), "no 'back' either");
        // At its daily cap: the owner hears of the cap once, not of an outage.
        let e = w.devices(&[left(Some("daily"), 90_001)], 90_002, after);
        assert!(matches!(&e[..], [Event::CapReached { what, .. }] if what.contains("daily")), "{e:?}");
        assert!(w.devices(&[left(Some("daily"), 90_001)], 99_000, after).is_empty(), "told once");
        // A real outage is still reported, and a return that ends in a pause is a return.
        assert!(w.devices(&[dev("a", true, false, 99_000)], 99_001, after).is_empty());
        let e = w.devices(&[dev("a", false, false, 99_001)], 99_700, after);
        assert!(matches!(&e[..], [Event::NodeOffline { .. }]), "{e:?}");
        let e = w.devices(&[left(None, 99_800)], 99_900, after);
        assert!(matches!(&e[..], [Event::NodeBack { .. }]), "{e:?}");
        assert!(w.devices(&[left(None, 99_800)], 200_000, after).is_empty());
        // Six nodes leaving paused at once (a shared schedule) are no mass disconnect.
        let mut w = Watcher::default();
        let ids: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
        w.devices(&ids.iter().map(|i| dev(i, true, false, 0)).collect::<Vec<_>>(), 10, after);
        let gone: Vec<_> = ids.iter().map(|i| DeviceState { left_paused: true, ..dev(i, false, false, 10) }).collect();
        assert!(w.devices(&gone, 20, after).is_empty());
    }

    #[test]
    fn a_node_at_its_own_data_cap_is_reported_once_until_it_resets() {
        let mut w = Watcher::default();
        let after = |_: &str| 600;
        let capped = |cap| DeviceState { cap, ..dev("a", true, false, 0) };
        assert!(w.devices(&[capped(None)], 10, after).is_empty());
        let e = w.devices(&[capped(Some("daily"))], 20, after);
        assert!(
            matches!(&e[..], [Event::CapReached { user, what }] if user == "bob" && what.contains("daily data cap")),
            "{e:?}"
        );
        assert!(w.devices(&[capped(Some("daily"))], 30, after).is_empty(), "told once");
        assert!(w.devices(&[capped(None)], 40, after).is_empty(), "the cap reset");
        assert_eq!(w.devices(&[capped(Some("monthly"))], 50, after).len(), 1, "again after a reset");
    }

    #[test]
    fn offline_after_threshold_once_then_back() {
        let mut w = Watcher::default();
        let after = |_: &str| 600;
        assert!(w.devices(&[dev("a", true, false, 0)], 1000, after).is_empty());
        assert!(w.devices(&[dev("a", false, false, 1000)], 1100, after).is_empty(), "not yet");
        let e = w.devices(&[dev("a", false, false, 1000)], 1600, after);
        assert!(matches!(&e[..], [Event::NodeOffline { minutes: 10, .. }]), "{e:?}");
        assert!(w.devices(&[dev("a", false, false, 1000)], 1700, after).is_empty(), "told once");
        let e = w.devices(&[dev("a", true, false, 1700)], 1800, after);
        assert!(matches!(&e[..], [Event::NodeBack { .. }]), "{e:?}");
        assert!(w.devices(&[dev("a", true, false, 1800)], 1900, after).is_empty());
    }

    #[test]
    fn paused_nodes_are_not_offline() {
        let mut w = Watcher::default();
        let after = |_: &str| 0;
        assert!(w.devices(&[dev("a", true, true, 0)], 10, after).is_empty());
        assert!(w.devices(&[dev("a", false, true, 10)], 5000, after).is_empty());
        assert!(w.devices(&[dev("a", true, true, 5000)], 5001, after).is_empty(), "no 'back' either");
    }

    #[test]
    fn mass_disconnect_alerts_admins() {
        let mut w = Watcher::default();
        let ids: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
        let on: Vec<_> = ids.iter().map(|i| dev(i, true, false, 0)).collect();
        w.devices(&on, 10, |_| 600);
        let off: Vec<_> = ids.iter().map(|i| dev(i, false, false, 10)).collect();
        let e = w.devices(&off, 20, |_| 600);
        assert!(e.iter().any(|e| matches!(e, Event::AdminAlert { .. })), "{e:?}");
    }

    #[test]
    fn low_balance_once_until_recovered() {
        let mut w = Watcher::default();
        let t = Micros(2_000_000);
        assert!(w.balance("a", 5_000_000, t).is_none());
        assert!(w.balance("a", 1_000_000, t).is_some());
        assert!(w.balance("a", 500_000, t).is_none(), "told once");
        assert!(w.balance("a", 3_000_000, t).is_none());
        assert!(w.balance("a", 1_000_000, t).is_some(), "again after recovering");
        assert!(w.balance("b", -5, Micros(0)).is_none(), "no threshold");
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_blocking() {
        let (n, mut rx) = Notifier::channel(1);
        n.emit(Event::AdminAlert { text: "1".into() });
        n.emit(Event::AdminAlert { text: "2".into() });
        assert_eq!(n.dropped(), 1);
        assert_eq!(rx.recv().await, Some(Event::AdminAlert { text: "1".into() }));
        Notifier::disabled().emit(Event::AdminAlert { text: "x".into() });
    }
}
