//! The watchdog on an injected clock: every event carries its time and evaluations are called
//! at chosen instants, so nothing here depends on timing.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::config::WatchdogConfig;
use super::quality::{FailureClass, NodeQuality, ReasonCode, State};
use super::*;

const T0: u64 = 1_800_000_000;

fn cfg() -> WatchdogConfig {
    WatchdogConfig { ban_after_flags: 2, probation_secs: 600, ..WatchdogConfig::default() }
}

fn watchdog(cfg: WatchdogConfig) -> Watchdog {
    let limits = WatchdogLimits::from_limits(&crate::config::Limits::default());
    Watchdog::new(cfg, limits, None, Arc::default())
}

fn id(n: u8) -> DeviceId {
    [n; 16]
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([198, 51, 100, n])
}

fn online(w: &Watchdog, n: u8, now: u64) {
    w.record(Event::Online { device: id(n), owner: "bob", ip: ip(n), country: None }, now);
}

fn state(w: &Watchdog, n: u8) -> State {
    w.view(&id(n)).map(|v| v.state).unwrap_or(State::Healthy)
}

/// `n` healthy opens and streams with quick first bytes, at `now`.
fn good_traffic(w: &Watchdog, n: u8, count: u32, now: u64) {
    for i in 0..count {
        let target = format!("site{i}.example:443");
        w.record(Event::Opened { device: id(n), target: &target }, now);
        w.record(
            Event::StreamEnded {
                device: id(n),
                target: &target,
                client: "carol",
                up: 500,
                down: 5000,
                ttfb: Some(Duration::from_millis(120)),
                waited: false,
            },
            now,
        );
    }
    w.record(
        Event::Heartbeat {
            device: id(n),
            serving: true,
            pause_reason: None,
            rtt: Some(Duration::from_millis(40)),
            counter: None,
        },
        now,
    );
}

/// A behaviour fed for a while, evaluated each minute; the states seen, in order.
fn run(w: &Watchdog, minutes: u64, start: u64, mut feed: impl FnMut(&Watchdog, u64)) -> Vec<Transition> {
    let mut all = Vec::new();
    for m in 0..minutes {
        let now = start + m * 60;
        feed(w, now);
        all.extend(w.evaluate(now));
    }
    all
}

fn states(changes: &[Transition], device: u8) -> Vec<State> {
    let hex = hex::encode(id(device));
    changes.iter().filter(|t| t.device == hex).map(|t| t.to).collect()
}

#[test]
fn a_node_failing_every_dial_is_flagged_then_banned_and_a_healthy_one_is_not() {
    let w = watchdog(cfg());
    online(&w, 1, T0);
    online(&w, 2, T0);
    // The targets work through node 2; node 1 times out every dial (it answers OPEN_ERR).
    let changes = run(&w, 40, T0, |w, now| {
        good_traffic(w, 2, 5, now);
        for i in 0..5 {
            let target = format!("site{i}.example:443");
            let v = w.record(
                Event::OpenFailed {
                    device: id(1),
                    target: &target,
                    client: &format!("c{}", now % 7),
                    class: FailureClass::Timeout,
                    answered: true,
                },
                now,
            );
            assert!(v.counted, "the target worked through another node: counted");
        }
    });
    assert_eq!(states(&changes, 1), [State::Flagged, State::Degraded, State::Banned], "{changes:#?}");
    let flagged = changes.iter().find(|t| t.to == State::Flagged).unwrap();
    assert_eq!(flagged.reason, ReasonCode::OpenFailures);
    assert!(flagged.detail.starts_with("100 % of opens failed"), "{}", flagged.detail);
    let degraded = changes.iter().find(|t| t.to == State::Degraded).unwrap();
    assert_eq!(degraded.reason, ReasonCode::Probation);
    assert_eq!(changes.iter().find(|t| t.to == State::Banned).unwrap().reason, ReasonCode::RepeatedFlags);
    assert!(states(&changes, 2).is_empty(), "the healthy node never changed state");
    assert_eq!(state(&w, 2), State::Healthy);
    assert!(!w.routable(&id(1)) && w.routable(&id(2)));
}

/// A stream through node `n` to `target` that sent 700 bytes, got nothing back and waited for
/// it (the idle timeout).
fn silent(n: u8, target: &str) -> Event<'_> {
    Event::StreamEnded { device: id(n), target, client: "carol", up: 700, down: 0, ttfb: None, waited: true }
}

/// A client that closes its streams at once, or closes many after waiting, cannot make a
/// healthy node look like a blackhole.
#[test]
fn a_client_closing_its_own_streams_flags_nobody() {
    let w = watchdog(cfg());
    online(&w, 1, T0);
    online(&w, 2, T0);
    let changes = run(&w, 40, T0, |w, now| {
        good_traffic(w, 2, 4, now);
        for i in 0..4 {
            let target = format!("site{i}.example:443");
            w.record(Event::Opened { device: id(1), target: &target }, now);
            // One byte out, closed at once: 200 of them a minute.
            for _ in 0..50 {
                let quick = Event::StreamEnded {
                    device: id(1),
                    target: &target,
                    client: "mallory",
                    up: 1,
                    down: 0,
                    ttfb: None,
                    waited: false,
                };
                w.record(quick, now);
            }
        }
    });
    assert!(states(&changes, 1).is_empty(), "{changes:#?}");
    // Waiting each time is held against the node only up to the client's cap of failures.
    let w = watchdog(cfg());
    online(&w, 1, T0);
    online(&w, 2, T0);
    good_traffic(&w, 2, 1, T0);
    for _ in 0..1000 {
        let waited = Event::StreamEnded {
            device: id(1),
            target: "site0.example:443",
            client: "mallory",
            up: 1,
            down: 0,
            ttfb: None,
            waited: true,
        };
        w.record(waited, T0);
    }
    w.evaluate(T0);
    let v = w.view(&id(1)).unwrap();
    assert_eq!(v.summary.silent_streams, crate::config::Limits::default().client_failed_opens_per_minute);
}

#[test]
fn a_node_that_drops_data_is_flagged_then_banned_but_a_target_that_answers_nobody_flags_nobody() {
    let w = watchdog(cfg());
    online(&w, 1, T0);
    online(&w, 2, T0);
    let changes = run(&w, 40, T0, |w, now| {
        // The targets answer through node 2.
        good_traffic(w, 2, 4, now);
        for i in 0..4 {
            let target = format!("site{i}.example:443");
            w.record(Event::Opened { device: id(1), target: &target }, now);
            // Online, accepting opens, returning nothing.
            w.record(silent(1, &target), now);
            // A tarpit that answers nobody, through either node.
            for n in [1, 2] {
                w.record(silent(n, "tarpit.example:443"), now);
            }
        }
    });
    assert!(states(&changes, 2).is_empty(), "{changes:#?}");
    assert_eq!(states(&changes, 1), [State::Flagged, State::Degraded, State::Banned], "{changes:#?}");
    assert_eq!(changes[0].reason, ReasonCode::Blackhole);
    let v = w.view(&id(1)).unwrap();
    assert_eq!(v.summary.silent_streams, v.summary.streams);
}

#[test]
fn a_slow_node_is_flagged_and_a_fast_one_is_not() {
    let w = watchdog(WatchdogConfig { ban_after_flags: 0, ..cfg() });
    online(&w, 1, T0);
    online(&w, 2, T0);
    let changes = run(&w, 10, T0, |w, now| {
        good_traffic(w, 2, 3, now);
        for i in 0..3 {
            let target = format!("slow{i}.example:443");
            w.record(Event::Opened { device: id(1), target: &target }, now);
            let ended = Event::StreamEnded {
                device: id(1),
                target: &target,
                client: "carol",
                up: 10,
                down: 10,
                ttfb: Some(Duration::from_secs(12)),
                waited: true,
            };
            w.record(ended, now);
        }
        w.record(
            Event::Heartbeat {
                device: id(1),
                serving: true,
                pause_reason: None,
                rtt: Some(Duration::from_secs(6)),
                counter: None,
            },
            now,
        );
    });
    assert_eq!(states(&changes, 1), [State::Flagged]);
    let v = w.view(&id(1)).unwrap();
    let codes: Vec<ReasonCode> = v.reasons.iter().map(|r| r.code).collect();
    assert!(codes.contains(&ReasonCode::SlowTtfb) && codes.contains(&ReasonCode::SlowRtt), "{codes:?}");
    assert!(v.reasons.iter().all(|r| !r.hint.is_empty()), "every reason says what would raise the score");
    assert!(states(&changes, 2).is_empty());
}

#[test]
fn a_flapping_node_is_flagged_then_banned_but_a_node_that_pauses_itself_is_not_churning() {
    let w = watchdog(cfg());
    let changes = run(&w, 60, T0, |w, now| {
        // Node 1 drops its tunnel every minute (until banned: the handshake refuses it then).
        if state(w, 1) != State::Banned {
            online(w, 1, now);
            w.record(Event::Offline { device: id(1), node_side: true }, now + 30);
        }
        // Node 2 pauses (Wi-Fi only, off Wi-Fi) and then goes away, every minute.
        online(w, 2, now);
        w.record(
            Event::Heartbeat {
                device: id(2),
                serving: false,
                pause_reason: Some("not_on_wifi"),
                rtt: None,
                counter: None,
            },
            now + 10,
        );
        w.record(Event::Offline { device: id(2), node_side: true }, now + 30);
        // Node 3 is disconnected by the server (shutdown, replacement): not its doing.
        online(w, 3, now);
        w.record(Event::Offline { device: id(3), node_side: false }, now + 30);
    });
    assert_eq!(
        states(&changes, 1),
        [State::Degraded, State::Flagged, State::Degraded, State::Banned],
        "degraded as the reconnects add up, flagged, on probation, banned: {changes:#?}"
    );
    assert!(
        changes
            .iter()
            .filter(|t| t.to != State::Degraded || t.reason != ReasonCode::Probation)
            .all(|t| t.reason == ReasonCode::Churn || t.reason == ReasonCode::RepeatedFlags)
    );
    assert!(states(&changes, 2).is_empty(), "paused with a reason is not churn");
    assert!(states(&changes, 3).is_empty(), "server-side disconnects are not churn");
    assert_eq!(w.view(&id(2)).unwrap().summary.reconnects, 0);
}

#[test]
fn a_client_asking_only_for_dead_targets_flags_nobody() {
    let w = watchdog(cfg());
    for n in 1..=3 {
        online(&w, n, T0);
    }
    let changes = run(&w, 60, T0, |w, now| {
        for n in 1..=3 {
            good_traffic(w, n, 2, now);
            for i in 0..20 {
                let dead = format!("dead{i}.invalid:443");
                for class in [FailureClass::Dns, FailureClass::Refused, FailureClass::Timeout] {
                    let v = w.record(
                        Event::OpenFailed { device: id(n), target: &dead, client: "mallory", class, answered: true },
                        now,
                    );
                    assert!(!v.counted, "a dead target never worked anywhere: not the node's fault");
                }
            }
        }
    });
    assert!(changes.is_empty(), "{changes:#?}");
    for n in 1..=3 {
        let v = w.view(&id(n)).unwrap();
        assert_eq!((v.state, v.score), (State::Healthy, 100));
        assert!(v.summary.failed_dns > 0 && v.summary.failed_counted == 0);
    }
}

#[test]
fn failures_one_client_causes_are_capped() {
    let limits =
        WatchdogLimits { client_failed_opens_per_minute: 3, ..WatchdogLimits::from_limits(&Default::default()) };
    let w = Watchdog::new(cfg(), limits, None, Arc::default());
    online(&w, 1, T0);
    online(&w, 2, T0);
    w.record(Event::Opened { device: id(2), target: "a.example:443" }, T0);
    let verdicts: Vec<Verdict> = (0..5)
        .map(|_| {
            w.record(
                Event::OpenFailed {
                    device: id(1),
                    target: "a.example:443",
                    client: "eve",
                    class: FailureClass::Timeout,
                    answered: false,
                },
                T0,
            )
        })
        .collect();
    assert_eq!(verdicts.iter().filter(|v| v.counted).count(), 3);
    assert!(verdicts[3].client_capped && verdicts[4].client_capped && !verdicts[2].client_capped);
}

#[test]
fn hysteresis_keeps_a_node_degraded_until_it_is_clearly_better() {
    let c = cfg();
    let mut q = NodeQuality::new("bob", T0);
    q.online = true;
    let feed = |q: &mut NodeQuality, ok: u32, failed: u32, now: u64| {
        q.minutes.clear();
        let m = q.minute(now, c.bucket_minutes());
        m.opens_ok = ok;
        m.failures[2] = failed;
        m.counted = failed;
    };
    // 35 % failures: score 65, degraded.
    feed(&mut q, 65, 35, T0);
    assert_eq!(q.evaluate(&c, T0).map(|c| c.to), Some(State::Degraded));
    // 25 %: score 75, above 70 but below 70 + 10: still degraded.
    feed(&mut q, 75, 25, T0 + 60);
    assert_eq!(q.evaluate(&c, T0 + 60), None);
    assert_eq!((q.state, q.score), (State::Degraded, 75));
    // 15 %: score 85: healthy again.
    feed(&mut q, 85, 15, T0 + 120);
    let change = q.evaluate(&c, T0 + 120).unwrap();
    assert_eq!((change.to, change.reason), (State::Healthy, ReasonCode::Recovered));
    // Going down needs no margin: 31 % is degraded at once.
    feed(&mut q, 69, 31, T0 + 180);
    assert_eq!(q.evaluate(&c, T0 + 180).map(|c| c.to), Some(State::Degraded));
    // Too little evidence judges nothing: 9 opens, all failed.
    let mut fresh = NodeQuality::new("bob", T0);
    feed(&mut fresh, 0, 9, T0);
    assert_eq!(fresh.evaluate(&c, T0), None);
    assert_eq!(fresh.score, 100);
}

#[test]
fn a_hosting_network_and_many_devices_behind_one_ip_are_degraded_except_on_cgnat() {
    let c = cfg();
    let mut q = NodeQuality::new("bob", T0);
    q.online = true;
    q.asn = Some((16509, "AMAZON-02".into()));
    let change = q.evaluate(&c, T0).unwrap();
    assert_eq!((change.to, change.reason), (State::Degraded, ReasonCode::HostingNetwork));
    assert!(q.reasons[0].detail.contains("AS16509"), "{:?}", q.reasons);

    let w = watchdog(c);
    for n in 1..=5 {
        w.record(Event::Online { device: id(n), owner: "bob", ip: ip(9), country: None }, T0);
    }
    let changes = w.evaluate(T0);
    assert_eq!(changes.len(), 5, "{changes:#?}");
    assert!(changes.iter().all(|t| t.to == State::Degraded && t.reason == ReasonCode::SharedIp));
    // Two of them leave: three left is allowed; they recover (score 100 ≥ 70 + 10).
    w.record(Event::Offline { device: id(4), node_side: false }, T0 + 60);
    w.record(Event::Offline { device: id(5), node_side: false }, T0 + 60);
    let back = w.evaluate(T0 + 60);
    assert_eq!(states(&back, 1), [State::Healthy]);
}

#[test]
fn routing_offers_healthy_tiers_first_degraded_only_as_a_fallback_and_never_flagged_ones() {
    let w = watchdog(WatchdogConfig { ban_after_flags: 0, ..cfg() });
    for n in 1..=4 {
        online(&w, n, T0);
    }
    // 1: high tier (enough good opens); 2: healthy without evidence (normal); 3: degraded; 4: flagged.
    good_traffic(&w, 1, 20, T0);
    w.set_override(&id(3), "bob", Some(State::Degraded), "test", "admin", T0);
    w.set_override(&id(4), "bob", Some(State::Flagged), "test", "admin", T0);
    w.evaluate(T0);
    assert_eq!((w.tier_len(Tier::High), w.tier_len(Tier::Normal), w.tier_len(Tier::Low)), (1, 1, 1));
    let offered = |high: bool, accept: &dyn Fn(&DeviceId) -> bool| {
        let seen = Mutex::new(Vec::new());
        w.offer(high, None, 8, |d| {
            seen.lock().unwrap().push(d[0]);
            accept(d)
        });
        seen.into_inner().unwrap()
    };
    for _ in 0..6 {
        let seen = offered(false, &|_| true);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, [1, 2], "healthy nodes accepted: the degraded one is not offered ({seen:?})");
    }
    // When no healthy node fits (say, all busy), the degraded one is offered; never the flagged.
    let seen = offered(false, &|d| d[0] == 3);
    assert!(seen.contains(&3) && !seen.contains(&4), "{seen:?}");
    assert_eq!(offered(true, &|_| true), [1], "-quality-high: the high tier only");
    // Both healthy tiers get offered first, weighted by size.
    let firsts: Vec<u8> = (0..30).map(|_| offered(false, &|_| true)[0]).collect();
    assert!(firsts.contains(&1) && firsts.contains(&2), "{firsts:?}");
    // Back to automatic: judged again from the window (no evidence against 4: healthy).
    let cleared = w.set_override(&id(4), "bob", None, "", "admin", T0 + 60).unwrap();
    assert_eq!((cleared.from, cleared.to, cleared.reason), (State::Flagged, State::Healthy, ReasonCode::AdminOverride));
    assert!(states(&w.evaluate(T0 + 60), 4).is_empty());
    assert!(w.routable(&id(4)));
}

#[test]
fn a_rare_country_is_routed_from_its_own_lists_without_walking_the_whole_tier() {
    let w = watchdog(cfg());
    let node = |n: u16| -> DeviceId {
        let mut d = [0u8; 16];
        d[..2].copy_from_slice(&n.to_be_bytes());
        d
    };
    for n in 0..2000u16 {
        let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, (n >> 8) as u8, n as u8));
        let country = if n == 1234 { *b"IS" } else { *b"US" };
        w.record(Event::Online { device: node(n), owner: "bob", ip, country: Some(country) }, T0);
    }
    let offered = |country: Option<[u8; 2]>, want: usize| {
        let mut seen = Vec::new();
        w.offer(false, country, want, |d| {
            seen.push(*d);
            true
        });
        seen
    };
    // Iceland: its one node, and nothing else looked at.
    assert_eq!(offered(Some(*b"IS"), 8), [node(1234)]);
    assert_eq!(w.country_tier_len(Tier::Normal, *b"IS"), 1);
    // The United States: `want` nodes looked at, none from Iceland.
    let us = offered(Some(*b"US"), 8);
    assert_eq!(us.len(), 8);
    assert!(!us.contains(&node(1234)));
    assert_eq!(offered(Some(*b"DE"), 8), Vec::<DeviceId>::new(), "no node in Germany: nothing offered");
    assert_eq!(offered(None, 8).len(), 8, "without a country: every country's nodes");
    // A new GeoIP database moves the node; going offline takes it off its country's lists.
    w.set_country(&node(1234), Some(*b"NO"));
    assert!(offered(Some(*b"IS"), 8).is_empty());
    assert_eq!(offered(Some(*b"NO"), 8), [node(1234)]);
    w.record(Event::Offline { device: node(1234), node_side: true }, T0 + 1);
    assert!(offered(Some(*b"NO"), 8).is_empty());
    assert_eq!(w.country_tier_len(Tier::Normal, *b"NO"), 0);
    assert_eq!(w.tier_len(Tier::Normal), 1999);
    assert!(crate::sync::lock(&w.tiers).by_country.len() == 1, "an emptied country's lists are dropped");
}

#[test]
fn a_node_that_does_not_answer_an_open_is_skipped_until_it_shows_life() {
    let w = watchdog(cfg());
    online(&w, 1, T0);
    assert!(w.routable(&id(1)));
    w.record(
        Event::OpenFailed {
            device: id(1),
            target: "a.example:443",
            client: "c",
            class: FailureClass::Timeout,
            answered: false,
        },
        T0,
    );
    assert!(!w.routable(&id(1)), "skipped at once, without waiting for an evaluation");
    let v = w.view(&id(1)).unwrap();
    assert!(v.unresponsive && v.reasons[0].code == ReasonCode::Unresponsive);
    w.record(Event::Heartbeat { device: id(1), serving: true, pause_reason: None, rtt: None, counter: None }, T0 + 15);
    assert!(w.routable(&id(1)));
}

#[test]
fn unmet_demand_is_counted_by_country_and_reason() {
    let w = watchdog(cfg());
    w.unmet(Some("DE"), UnmetReason::NoNode);
    w.unmet(Some("DE"), UnmetReason::NoNode);
    w.unmet(None, UnmetReason::AllBusy);
    w.unmet(Some("de"), UnmetReason::AllPaused);
    let rows = w.unmet_demand();
    let got: Vec<(&str, UnmetReason, u64)> = rows.iter().map(|r| (r.country.as_str(), r.reason, r.count)).collect();
    assert_eq!(
        got,
        [("DE", UnmetReason::NoNode, 2), ("DE", UnmetReason::AllPaused, 1), ("any", UnmetReason::AllBusy, 1)]
    );
}

#[test]
fn changes_go_to_the_audit_log_to_subscribers_and_a_ban_bans_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(&dir.path().join("w.redb")).unwrap();
    store.create_user(&crate::store::UserRecord::new("bob", "x", 0)).unwrap();
    let rec = crate::store::DeviceRecord {
        owner: "bob".into(),
        vip: std::net::Ipv4Addr::new(100, 64, 0, 1),
        paired_at: T0,
        ..crate::store::DeviceRecord::new(hex::encode(id(1)), crate::identity::KeyAlg::Ed25519, hex::encode([7u8; 32]))
    };
    let code =
        crate::store::PairCode { user: "bob".into(), created_at: T0, expires_at: T0 + 600, used: false, used_by: None };
    store.create_pair_code("h", &code).unwrap();
    store.pair_device("h", T0, rec).unwrap();
    let w = watchdog(WatchdogConfig { ban_after_flags: 1, ..cfg() });
    let mut rx = w.subscribe();
    online(&w, 1, T0);
    w.record(Event::Opened { device: id(2), target: "a.example:443" }, T0);
    for _ in 0..12 {
        w.record(
            Event::OpenFailed {
                device: id(1),
                target: "a.example:443",
                client: "c",
                class: FailureClass::Refused,
                answered: true,
            },
            T0,
        );
    }
    let changes = w.evaluate(T0 + 1);
    assert_eq!(states(&changes, 1), [State::Banned]);
    let kicked = Arc::new(Mutex::new(Vec::new()));
    let k = kicked.clone();
    let hook: BanHook = Arc::new(move |d, why: &str| k.lock().unwrap().push((d, why.to_owned())));
    w.apply(&store, &changes, &hook);
    let dev = store.get_device(&id(1)).unwrap().unwrap();
    assert!(dev.banned);
    assert!(dev.ban_reason.as_deref().unwrap().starts_with("watchdog: repeated_flags"), "{:?}", dev.ban_reason);
    assert_eq!(kicked.lock().unwrap().len(), 1);
    let audit = store.list_audit(&crate::store::Window::default()).unwrap();
    assert_eq!((audit[0].actor.as_str(), audit[0].action.as_str()), ("watchdog", "device.quality"));
    assert_eq!(rx.try_recv().unwrap().to, State::Banned);
    // The summary survives a restart, with its state.
    store.put_quality(&w.snapshot()).unwrap();
    let w2 = watchdog(cfg());
    w2.restore(store.list_quality().unwrap());
    assert_eq!(state(&w2, 1), State::Banned);
    // An unban starts the device afresh.
    assert_eq!(w2.unbanned(&id(1), T0 + 100).map(|t| t.to), Some(State::Healthy));
    assert_eq!(w2.view(&id(1)).unwrap().score, 100);
    // Unbanned while the server was stopped (`traffix device unban` offline): it connects, so
    // it is not banned, and it is routed again.
    let w3 = watchdog(cfg());
    w3.restore(store.list_quality().unwrap());
    assert_eq!(state(&w3, 1), State::Banned);
    online(&w3, 1, T0 + 200);
    assert_eq!(state(&w3, 1), State::Healthy);
    assert!(w3.routable(&id(1)));
}

fn probe(w: &Watchdog, n: u8, egress: IpAddr, now: u64) {
    w.record(Event::Probe { device: id(n), egress, ttfb: Duration::from_millis(80), kbps: Some(20_000) }, now);
}

#[test]
fn a_node_whose_egress_ip_is_not_its_tunnel_ip_is_flagged_then_banned_and_a_direct_one_is_not() {
    let w = watchdog(WatchdogConfig { probe_listen: Some("192.0.2.1:7070".parse().unwrap()), ..cfg() });
    online(&w, 1, T0);
    online(&w, 2, T0);
    // One probe of each a minute: node 1's leave from another address (a VPN), node 2's from
    // its own.
    let changes = run(&w, 40, T0, |w, now| {
        probe(w, 1, IpAddr::from([203, 0, 113, 9]), now);
        probe(w, 2, ip(2), now);
    });
    assert_eq!(states(&changes, 1), [State::Flagged, State::Degraded, State::Banned], "{changes:#?}");
    let flagged = changes.iter().find(|t| t.to == State::Flagged).unwrap();
    assert_eq!(flagged.reason, ReasonCode::EgressMismatch);
    assert!(flagged.detail.contains("another proxy or VPN"), "{}", flagged.detail);
    assert!(
        flagged.detail.contains("203.0.113.9") && flagged.detail.contains(&ip(1).to_string()),
        "{}",
        flagged.detail
    );
    assert!(states(&changes, 2).is_empty(), "the direct node never changed state: {changes:#?}");
    let v = w.view(&id(2)).unwrap();
    assert_eq!(
        (v.summary.egress_ip, v.summary.probe_kbps, v.summary.egress_mismatches),
        (Some(ip(2)), Some(20_000), 0)
    );
    assert!(v.summary.probes >= 30);
}

#[test]
fn one_stray_probe_is_not_enough_and_a_majority_of_matching_probes_clears_the_reason() {
    let w = watchdog(WatchdogConfig { probe_listen: Some("192.0.2.1:7070".parse().unwrap()), ..cfg() });
    online(&w, 1, T0);
    // A single mismatching probe is below min_probes (2): no reason.
    probe(&w, 1, IpAddr::from([203, 0, 113, 9]), T0);
    assert!(w.evaluate(T0).is_empty());
    assert!(w.view(&id(1)).unwrap().reasons.is_empty());
    // Two of three leaving from the tunnel's own IP: no mismatch majority, no reason.
    probe(&w, 1, ip(1), T0 + 1);
    probe(&w, 1, ip(1), T0 + 2);
    assert!(w.evaluate(T0 + 3).is_empty());
    assert!(w.view(&id(1)).unwrap().reasons.iter().all(|r| r.code != ReasonCode::EgressMismatch));
    // A dual-stack node: its IPv4 tunnel and IPv6 egress are not compared at all.
    online(&w, 3, T0);
    for i in 0..5 {
        probe(&w, 3, "2001:db8::7".parse().unwrap(), T0 + i);
    }
    w.evaluate(T0 + 10);
    let v = w.view(&id(3)).unwrap();
    assert_eq!((v.summary.probes, v.summary.egress_mismatches), (0, 0));
    assert_eq!(v.summary.egress_ip, Some("2001:db8::7".parse().unwrap()));
    assert_eq!(v.state, State::Healthy);
}

#[test]
fn probes_are_due_once_an_interval_per_node_and_rate_limited_per_minute() {
    let mut limits = WatchdogLimits::from_limits(&crate::config::Limits::default());
    limits.probes_per_minute = 3;
    let on =
        WatchdogConfig { probe_listen: Some("192.0.2.1:7070".parse().unwrap()), probe_interval_secs: 300, ..cfg() };
    let w = Watchdog::new(on.clone(), limits, None, Arc::default());
    let t = T0 - T0 % 60;
    // Three nodes due; the fourth waits for the next minute (the rate limit).
    assert!((1..=3).all(|n| w.probe_due(&id(n), t)));
    assert!(!w.probe_due(&id(4), t + 30));
    assert!(w.probe_due(&id(4), t + 60));
    // A node probed is not due again before its interval, and is after it.
    assert!(!w.probe_due(&id(1), t + 299));
    assert!(w.probe_due(&id(1), t + 300));
    // Without a probe endpoint, or with the watchdog off, nothing is ever due.
    let off = Watchdog::new(WatchdogConfig { probe_listen: None, ..on.clone() }, limits, None, Arc::default());
    assert!(!off.probe_due(&id(1), t));
    let disabled = Watchdog::new(WatchdogConfig { enabled: false, ..on }, limits, None, Arc::default());
    assert!(!disabled.probe_due(&id(1), t));
}

#[test]
fn a_node_busy_well_below_its_declared_cap_is_degraded_and_one_busy_at_its_cap_is_not() {
    let w = watchdog(cfg());
    online(&w, 1, T0);
    online(&w, 2, T0);
    let changes = run(&w, 10, T0, |w, now| {
        good_traffic(w, 1, 2, now);
        good_traffic(w, 2, 2, now);
        // 1 declares 64 streams and says busy with 3 open; 2 says busy with 60 of 64 open.
        w.record(Event::Busy { device: id(1), active: 3, declared: 64 }, now);
        w.record(Event::Busy { device: id(2), active: 60, declared: 64 }, now);
    });
    assert_eq!(states(&changes, 1), [State::Degraded], "{changes:#?}");
    assert!(states(&changes, 2).is_empty(), "{changes:#?}");
    let v = w.view(&id(1)).unwrap();
    assert_eq!(v.reasons[0].code, ReasonCode::BusyBelowDeclared);
    assert!(
        v.reasons[0].detail.contains("refused 10 streams as busy")
            && v.reasons[0].detail.contains("at most 3 of the 64"),
        "{:?}",
        v.reasons
    );
    assert!(v.reasons[0].hint.contains("max streams"));
    assert_eq!((v.summary.busy_below_declared, v.summary.declared_streams), (10, 64));
    assert_eq!(w.view(&id(2)).unwrap().summary.busy_below_declared, 0, "within the slack of its cap");
    // A small cap: the slack is 2 streams.
    assert_eq!((busy_slack(4), busy_slack(64), busy_slack(1024)), (2, 6, 102));
}

#[test]
fn a_node_whose_traffic_counter_lags_what_it_carried_is_told_and_honest_counters_are_not() {
    let w = watchdog(cfg());
    for n in 1..=3 {
        online(&w, n, T0);
    }
    const MIB: u64 = 1 << 20;
    let beat = |w: &Watchdog, n: u8, node: u64, carried: u64, now: u64| {
        w.record(
            Event::Heartbeat {
                device: id(n),
                serving: true,
                pause_reason: None,
                rtt: None,
                counter: Some(Counter { node, carried }),
            },
            now,
        );
    };
    // 40 heartbeats, 20 MiB carried through each node between two of them (800 MiB in all).
    // 1 counts a tenth of it; 2 counts what the radio moved (twice the payload and some); 3
    // counts exactly the payload but its day rolled over halfway (its counter went back to 0).
    for i in 0..=40u64 {
        let now = T0 + i * 15;
        let carried = i * 20 * MIB;
        beat(&w, 1, i * 2 * MIB, carried, now);
        beat(&w, 2, i * 45 * MIB, carried, now);
        let day = if i < 20 { i } else { i - 20 };
        beat(&w, 3, day * 20 * MIB, carried, now);
    }
    let changes = w.evaluate(T0 + 600);
    let v1 = w.view(&id(1)).unwrap();
    assert_eq!(
        v1.reasons.iter().map(|r| r.code).collect::<Vec<_>>(),
        [ReasonCode::UndercountedTraffic],
        "{changes:#?}"
    );
    assert!(
        v1.reasons[0].detail.contains("counted 83.89 MB") && v1.reasons[0].detail.contains("838.86 MB"),
        "{:?}",
        v1.reasons
    );
    assert_eq!(v1.score, 80);
    assert!(w.view(&id(2)).unwrap().reasons.is_empty());
    let v3 = w.view(&id(3)).unwrap();
    assert!(v3.reasons.is_empty(), "{:?}", v3.reasons);
    assert_eq!(v3.summary.server_carried_bytes, 39 * 20 * MIB, "the interval where the counter went back is skipped");
    // A new tunnel starts a new baseline (the server's count starts again from 0).
    online(&w, 3, T0 + 700);
    beat(&w, 3, 0, 0, T0 + 700);
    beat(&w, 3, 10 * MIB, 10 * MIB, T0 + 715);
    assert_eq!(w.view(&id(3)).unwrap().summary.server_carried_bytes, 39 * 20 * MIB, "not evaluated yet");
    w.evaluate(T0 + 720);
    assert_eq!(w.view(&id(3)).unwrap().summary.server_carried_bytes, 39 * 20 * MIB + 10 * MIB);
}

/// Device `n` of many.
fn many(n: u32) -> DeviceId {
    let mut id = [0xa0; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id
}

#[test]
fn only_records_that_changed_are_written_and_a_removed_device_is_forgotten() {
    const NODES: u32 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(&dir.path().join("w.redb")).unwrap();
    let recs: Vec<_> = (0..NODES)
        .map(|n| {
            let hexid = hex::encode(many(n));
            crate::store::DeviceRecord::new(hexid.clone(), crate::identity::KeyAlg::Ed25519, hexid)
        })
        .collect();
    store.put_devices_for_test(&recs).unwrap();
    let w = watchdog(cfg());
    let heartbeat = |w: &Watchdog, n: u32, now: u64| {
        // An idle node with a data cap: its traffic counter does not move.
        let counter = Some(Counter { node: 5_000, carried: 7_000 });
        let rtt = Some(Duration::from_millis(30 + u64::from(n % 7) + now % 11));
        w.record(Event::Heartbeat { device: many(n), serving: true, pause_reason: None, rtt, counter }, now);
    };
    for n in 0..NODES {
        let ip = IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
        w.record(Event::Online { device: many(n), owner: "bob", ip, country: None }, T0);
        heartbeat(&w, n, T0 + 1);
    }
    w.evaluate(T0 + 10);
    assert_eq!(w.persist(&store).unwrap(), NODES as usize, "every record is new");

    // Idle minutes: heartbeats (their RTTs vary), evaluations, uptimes growing: nothing to write.
    for minute in 1..=3 {
        for n in 0..NODES {
            heartbeat(&w, n, T0 + minute * 60);
        }
        w.evaluate(T0 + minute * 60 + 10);
        assert_eq!(w.persist(&store).unwrap(), 0, "minute {minute}");
    }
    // One node carries traffic: its record alone is written, with its counts.
    w.record(Event::Opened { device: many(7), target: "a.example:443" }, T0 + 250);
    w.evaluate(T0 + 260);
    assert_eq!(w.persist(&store).unwrap(), 1);
    let stored: Vec<(DeviceId, NodeQuality)> = store.list_quality().unwrap();
    assert_eq!(stored.len(), NODES as usize);
    let (_, q) = stored.iter().find(|(id, _)| *id == many(7)).unwrap();
    assert_eq!(q.summary.opens_ok, 1);
    assert_eq!(w.persist(&store).unwrap(), 0);
    // A node that leaves changed: written.
    w.record(Event::Offline { device: many(8), node_side: false }, T0 + 270);
    assert_eq!(w.persist(&store).unwrap(), 1);

    // After a restart, what was read counts as written.
    let w2 = watchdog(cfg());
    w2.restore(store.list_quality().unwrap());
    assert_eq!(w2.persist(&store).unwrap(), 0);
    assert_eq!(w2.view(&many(7)).unwrap().summary.opens_ok, 1, "the counts survive the restart");

    // A removed device: its record goes with it in the store, and the watchdog forgets it.
    assert!(w.routable(&many(7)));
    store.remove_device(&many(7)).unwrap();
    w.forget(&many(7));
    assert!(w.view(&many(7)).is_none());
    assert!(!w.routable(&many(7)));
    w.record(Event::Opened { device: many(7), target: "a.example:443" }, T0 + 300);
    assert_eq!(w.persist(&store).unwrap(), 0);
    let stored: Vec<(DeviceId, NodeQuality)> = store.list_quality().unwrap();
    assert_eq!(stored.len(), NODES as usize - 1);
    assert!(stored.iter().all(|(id, _)| *id != many(7)));
    // Its address no longer counts as shared with it.
    assert!(!w.online_ips().contains(&IpAddr::from([10, 0, 0, 7])));
}

#[test]
fn a_busy_node_s_history_is_a_dozen_buckets_spanning_the_window_and_at_most_one_bucket_more() {
    let c = cfg();
    assert_eq!((c.window_secs, c.bucket_minutes()), (3600, 5));
    let w = watchdog(c.clone());
    online(&w, 1, T0);
    // Two hours of a busy node: two streams and a heartbeat every 15 s (minutes 0–119 after
    // T0, eight opens each), evaluated every minute.
    for s in (0..7200).step_by(15) {
        good_traffic(&w, 1, 2, T0 + s);
        if s % 60 == 0 {
            w.evaluate(T0 + s);
        }
    }
    let (_, mut q) = w.snapshot().into_iter().find(|(d, _)| *d == id(1)).unwrap();
    // Minute 122: the window is minutes 63–122 (57 minutes of traffic, 456 opens); the bucket
    // of minutes 60–64 still has minutes in it, so it stays whole.
    q.evaluate(&c, T0 + 122 * 60);
    assert_eq!(q.minutes.len(), 12);
    assert_eq!(q.summary.opens_ok, 480);
    // Minute 125: the window is 66–125 (432 opens); that bucket has left, the next (65–69) not.
    q.evaluate(&c, T0 + 125 * 60);
    assert_eq!(q.minutes.len(), 11);
    assert_eq!(q.summary.opens_ok, 440);
    // Samples leave with the window (the RTTs of the heartbeats since second 3900) and stop at
    // 256 (the TTFBs, eight a minute), 8 bytes each: the whole history of a node busy all hour is
    // about 5 KiB (it was ~14 KiB with a record per minute and 16-byte samples).
    assert_eq!((q.rtt.len(), q.ttfb.len()), ((7200 - 3900) / 15, super::quality::MAX_SAMPLES));
    let bytes = q.minutes.capacity() * std::mem::size_of::<super::quality::Minute>()
        + (q.rtt.capacity() + q.ttfb.capacity()) * std::mem::size_of::<(u32, u32)>();
    assert!(bytes <= 6 * 1024, "{bytes} bytes");
}

#[test]
fn a_node_s_first_stream_gives_its_history_the_window_s_room_at_once_and_it_never_grows_after() {
    use super::quality::MAX_SAMPLES;
    let c = cfg();
    let mut q = NodeQuality::new("bob", T0);
    // Heartbeats alone (an idle node): the RTTs' room grows only as they come.
    q.sample_rtt(T0, 20);
    assert!(q.rtt.capacity() < MAX_SAMPLES, "{}", q.rtt.capacity());
    assert_eq!((q.minutes.capacity(), q.ttfb.capacity()), (0, 0));
    // A probe's sample takes no more than it needs.
    q.sample_ttfb(T0, 40);
    assert!(q.ttfb.capacity() < MAX_SAMPLES, "{}", q.ttfb.capacity());
    // The first stream: room for a busy hour of samples and buckets.
    q.sample_stream_ttfb(T0, 30);
    let room = (q.minutes.capacity(), q.rtt.capacity(), q.ttfb.capacity());
    assert!(room.0 >= super::quality::BUSY_BUCKETS, "{room:?}");
    assert!(room.1 >= MAX_SAMPLES && room.2 >= MAX_SAMPLES, "{room:?}");
    let bytes =
        room.0 * std::mem::size_of::<super::quality::Minute>() + (room.1 + room.2) * std::mem::size_of::<(u32, u32)>();
    assert!(bytes <= 6 * 1024, "{bytes} bytes");
    // Two busy hours (a stream and a heartbeat every 15 s, evaluated every minute) fill it
    // and never make it grow.
    for s in (15..7200).step_by(15) {
        q.minute(T0 + s, c.bucket_minutes()).opens_ok += 1;
        q.sample_stream_ttfb(T0 + s, 30);
        q.sample_rtt(T0 + s, 20);
        if s % 60 == 0 {
            q.evaluate(&c, T0 + s);
        }
        assert_eq!((q.minutes.capacity(), q.rtt.capacity(), q.ttfb.capacity()), room, "at {s} s");
    }
    // An hour of samples 15 s apart (the window keeps 240 and the last evaluation's minute).
    assert_eq!((q.rtt.len(), q.ttfb.len()), (244, 244));
    assert!(q.minutes.len() >= super::config::WINDOW_BUCKETS as usize, "{}", q.minutes.len());
}

#[test]
fn a_bucket_is_stored_without_its_zero_counts_and_records_written_in_full_still_read() {
    use super::quality::Minute;
    let m = Minute { minute: 30_000_000, opens_ok: 8, streams: 8, ..Minute::default() };
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(json, r#"{"minute":30000000,"opens_ok":8,"streams":8}"#);
    assert_eq!(serde_json::from_str::<Minute>(&json).unwrap(), m);
    let full = r#"{"minute":1,"opens_ok":2,"failures":[0,0,3,0,0],"counted":3,"streams":0,"silent":0,"reconnects":1}"#;
    let m: Minute = serde_json::from_str(full).unwrap();
    assert_eq!((m.opens_ok, m.failures[2], m.counted, m.reconnects, m.probes), (2, 3, 3, 1, 0));
}

#[test]
fn records_kept_a_minute_at_a_time_before_buckets_are_read_as_buckets_and_the_reasons_say_their_span() {
    let c = cfg();
    let base = T0 / 60;
    let mut q = NodeQuality::new("bob", T0);
    q.online = true;
    // As restored from a database written before buckets: one entry per minute, minutes 1–60,
    // one open and one counted timeout each.
    for m in 1..=60 {
        q.minutes.push_back(super::quality::Minute {
            minute: base + m,
            opens_ok: 1,
            failures: [0, 0, 1, 0, 0],
            counted: 1,
            ..Default::default()
        });
    }
    // Minute 62 falls in the bucket of minutes 60–64, whose first minute has an entry: added
    // to it, not a second entry.
    q.minute(T0 + 62 * 60, c.bucket_minutes()).opens_ok += 1;
    assert_eq!(q.minutes.len(), 60);
    // Minute 65: the window is 6–65. An old entry is read as a bucket of 5 minutes, so the
    // entries of minutes 2–5 stay (their "bucket" reaches into the window) and minute 1 leaves.
    q.evaluate(&c, T0 + 65 * 60);
    assert_eq!(q.minutes.len(), 59);
    assert_eq!((q.summary.opens_ok, q.summary.failed_counted), (60, 59));
    let reason = q.reasons.iter().find(|r| r.code == ReasonCode::OpenFailures).unwrap();
    assert!(reason.detail.contains("in the last 64 min"), "{}", reason.detail);
    // Minute 70: the window is 11–70; the entries of minutes 2–6 have left.
    q.evaluate(&c, T0 + 70 * 60);
    assert_eq!((q.minutes.len(), q.summary.opens_ok), (54, 55));
    let reason = q.reasons.iter().find(|r| r.code == ReasonCode::OpenFailures).unwrap();
    assert!(reason.detail.contains("in the last 64 min"), "{}", reason.detail);
}

#[test]
fn the_fleet_is_judged_and_written_a_share_at_a_time_each_node_in_exactly_one_share() {
    // A share every 5 s for the default minute; fewer shares for a shorter interval, never
    // more than one a second; each node once every `evaluate_secs` either way.
    for (secs, every, of) in [(60, 5000, 12), (90, 7500, 12), (13, 1083, 12), (7, 1000, 7), (1, 1000, 1)] {
        let (gap, shares) = share_schedule(secs);
        assert_eq!(gap.as_millis(), every, "evaluate_secs {secs}");
        // Round and round: every share once in each `evaluate_secs`, in turn.
        let turns: Vec<Share> = shares.take(2 * of as usize).collect();
        let want: Vec<Share> = (0..2 * of).map(|i| Share { index: i % of, of }).collect();
        assert_eq!(turns, want, "evaluate_secs {secs}");
    }

    // 600 nodes as pairing names them, all behind one public IP: each evaluation degrades
    // the nodes it judges (shared_ip), so the transitions show which nodes a share judged.
    const NODES: u32 = 600;
    let ids: Vec<DeviceId> =
        (0..NODES).map(|i| crate::identity::device_id(crate::identity::KeyAlg::Ed25519, &i.to_le_bytes())).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(&dir.path().join("w.redb")).unwrap();
    let recs: Vec<_> = ids
        .iter()
        .map(|d| crate::store::DeviceRecord::new(hex::encode(d), crate::identity::KeyAlg::Ed25519, hex::encode(d)))
        .collect();
    store.put_devices_for_test(&recs).unwrap();
    let w = watchdog(cfg());
    for d in &ids {
        w.record(Event::Online { device: *d, owner: "bob", ip: ip(9), country: None }, T0);
    }
    let healthy = || {
        w.metrics.watchdog_nodes.get_or_create(&crate::telemetry::QualityStateLabel { state: "healthy".into() }).get()
    };
    let degraded = || {
        w.metrics.watchdog_nodes.get_or_create(&crate::telemetry::QualityStateLabel { state: "degraded".into() }).get()
    };
    let mut judged = std::collections::HashSet::new();
    let mut written = 0;
    for index in 0..12 {
        let share = Share { index, of: 12 };
        let changes = w.evaluate_share(T0 + 5 * index, share);
        // A twelfth of the fleet each (50 on average), every node of it and no other.
        assert!((25..=75).contains(&changes.len()), "share {index}: {}", changes.len());
        for t in &changes {
            assert_eq!(t.to, State::Degraded);
            let d: DeviceId = hex::decode(&t.device).unwrap().try_into().unwrap();
            assert!(share.holds(&d), "{} judged in share {index}", t.device);
            assert!(judged.insert(d), "{} judged twice", t.device);
        }
        // The gauges count the whole fleet, not the share.
        assert_eq!((healthy(), degraded()), (i64::from(NODES) - judged.len() as i64, judged.len() as i64));
        // Only the share's records are written.
        let n = w.persist_share(&store, share).unwrap();
        assert_eq!(n, changes.len(), "share {index}");
        written += n;
        assert_eq!(store.list_quality::<NodeQuality>().unwrap().len(), written);
    }
    assert_eq!(judged.len(), NODES as usize, "every node judged once over the interval");
    assert_eq!(w.persist(&store).unwrap(), 0, "every record written once");
    // A node whose device record is gone: its record is not written, and not counted.
    let gone = crate::identity::device_id(crate::identity::KeyAlg::Ed25519, b"gone");
    w.record(Event::Online { device: gone, owner: "bob", ip: ip(10), country: None }, T0 + 60);
    assert_eq!(w.persist(&store).unwrap(), 0);
    assert_eq!(store.list_quality::<NodeQuality>().unwrap().len(), NODES as usize);
}
