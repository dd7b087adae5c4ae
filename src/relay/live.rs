//! The client streams the running server is relaying, so that an admin change — a disabled
//! account or sub-user, a deleted sub-user, a banned device, a disabled node owner — cuts
//! exactly the streams it affects, and the command returns only once they are gone.
//!
//! Each relay registers its stream for as long as it runs ([`LiveStreams::register`]) and
//! watches its [`Cutter`]; [`LiveStreams::cut`] trips the matching ones with a reason (which
//! becomes the stream's end reason in its session row) and waits, on a condition variable, until
//! their relays have ended. Bounded: one entry per open client stream, which the per-client
//! stream caps already bound.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::identity::DeviceId;

/// Which live streams an admin change affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// Streams billed to this account (its own and its sub-users').
    Client(String),
    /// Streams opened with this sub-user's credentials.
    Sub(String),
    /// Streams through this device.
    Device(DeviceId),
    /// Streams through any device of this owner.
    Owner(String),
}

/// Who a live stream belongs to and where it goes out. A stream is registered before it is
/// admitted (so a change made while it is being opened reaches it); its device and owner are
/// known once it is routed.
#[derive(Debug, Clone)]
pub struct StreamOwner {
    /// The paying account.
    pub client: String,
    /// The sub-user whose credentials opened it.
    pub sub: Option<String>,
    pub device: Option<DeviceId>,
    /// The device's owner.
    pub owner: Option<String>,
}

impl Cut {
    fn matches(&self, s: &StreamOwner) -> bool {
        match self {
            Cut::Client(c) => &s.client == c,
            Cut::Sub(n) => s.sub.as_ref() == Some(n),
            Cut::Device(d) => s.device.as_ref() == Some(d),
            Cut::Owner(o) => s.owner.as_ref() == Some(o),
        }
    }
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Client(c) => write!(f, "account {c}"),
            Cut::Sub(n) => write!(f, "sub-user {n}"),
            Cut::Device(d) => write!(f, "device {}", hex::encode(d)),
            Cut::Owner(o) => write!(f, "devices of {o}"),
        }
    }
}

struct Entry {
    who: StreamOwner,
    /// Set when the stream is cut.
    cut: Option<&'static str>,
}

#[derive(Default)]
struct Table {
    next: u64,
    streams: HashMap<u64, Entry>,
}

/// The live streams of this process.
///
/// One [`Notify`] serves every stream: a cut wakes all relays, and each looks up its own
/// entry. Cuts are rare admin actions, while every idle stream would pay for a channel of its
/// own (a watch channel per stream cost about a kilobyte each).
#[derive(Default)]
pub struct LiveStreams {
    table: Mutex<Table>,
    /// Signalled whenever a stream leaves the table.
    gone: Condvar,
    /// Woken on every cut.
    cuts: Notify,
}

impl std::fmt::Debug for LiveStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStreams").field("streams", &self.len()).finish()
    }
}

impl LiveStreams {
    /// Registers a stream for as long as the returned [`Cutter`] lives.
    pub fn register(self: &Arc<Self>, who: StreamOwner) -> Cutter {
        let mut t = crate::sync::lock(&self.table);
        t.next += 1;
        let id = t.next;
        t.streams.insert(id, Entry { who, cut: None });
        Cutter { live: self.clone(), id }
    }

    fn reason(&self, id: u64) -> Option<&'static str> {
        crate::sync::lock(&self.table).streams.get(&id).and_then(|e| e.cut)
    }

    /// Streams registered now.
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.table).streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cuts every stream `which` matches with `reason`, then waits until their relays have
    /// ended or `wait` has passed. Returns how many were cut. Blocking: call it from a blocking
    /// context (admin commands run on the blocking pool).
    pub fn cut(&self, which: &Cut, reason: &'static str, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut t = crate::sync::lock(&self.table);
        let ids: Vec<u64> = t
            .streams
            .iter_mut()
            .filter(|(_, e)| which.matches(&e.who))
            .map(|(id, e)| {
                e.cut.get_or_insert(reason);
                *id
            })
            .collect();
        if !ids.is_empty() {
            self.cuts.notify_waiters();
        }
        while ids.iter().any(|id| t.streams.contains_key(id)) {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(which = %which, reason, "cut streams did not end in time");
                break;
            }
            t = match self.gone.wait_timeout(t, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        ids.len()
    }
}

/// A registered stream's side: tells the relay when it is cut, and leaves the table when
/// dropped.
pub struct Cutter {
    live: Arc<LiveStreams>,
    id: u64,
}

impl std::fmt::Debug for Cutter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cutter").field("id", &self.id).finish()
    }
}

impl Cutter {
    /// Records where the stream goes out, once it is routed; the reason if it was cut already.
    pub fn routed(&self, device: DeviceId, owner: &str) -> Option<&'static str> {
        let mut t = crate::sync::lock(&self.live.table);
        let e = t.streams.get_mut(&self.id)?;
        e.who.device = Some(device);
        e.who.owner = Some(owner.to_owned());
        e.cut
    }

    /// The reason, if the stream has been cut.
    pub fn reason(&self) -> Option<&'static str> {
        self.live.reason(self.id)
    }

    /// Resolves with the reason once the stream is cut. Cancel-safe.
    pub async fn cut(&mut self) -> &'static str {
        loop {
            // Registered before the check, so a cut between the two is not missed.
            let notified = self.live.cuts.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.live.reason(self.id) {
                return reason;
            }
            notified.await;
        }
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        crate::sync::lock(&self.live.table).streams.remove(&self.id);
        self.live.gone.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(client: &str, sub: Option<&str>, device: u8, owner: &str) -> StreamOwner {
        StreamOwner {
            client: client.into(),
            sub: sub.map(Into::into),
            device: Some([device; 16]),
            owner: Some(owner.into()),
        }
    }

    #[test]
    fn a_stream_cut_while_it_is_opened_learns_it_when_routed() {
        let live = Arc::new(LiveStreams::default());
        let c = live.register(StreamOwner { client: "ann".into(), sub: None, device: None, owner: None });
        assert_eq!(live.cut(&Cut::Owner("olga".into()), "owner_disabled", Duration::from_millis(1)), 0);
        assert_eq!(c.routed([1; 16], "olga"), None, "not cut: it was not routed to olga then");
        assert_eq!(live.cut(&Cut::Client("ann".into()), "account_disabled", Duration::from_millis(1)), 1);
        assert_eq!(c.reason(), Some("account_disabled"));
        assert_eq!(c.routed([1; 16], "olga"), Some("account_disabled"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_trips_the_matching_streams_and_waits_for_them() {
        let live = Arc::new(LiveStreams::default());
        let streams = [
            who("ann", None, 1, "olga"),
            who("ann", Some("ann_bot"), 2, "olga"),
            who("bob", None, 1, "olga"),
            who("bob", None, 3, "pete"),
        ];
        let mut relays = Vec::new();
        for s in streams {
            let mut c = live.register(s);
            let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
            relays.push((
                tokio::spawn(async move {
                    let reason = c.cut().await;
                    drop(c);
                    let _ = ended_tx.send(reason);
                }),
                ended_rx,
            ));
        }
        assert_eq!(live.len(), 4);
        let l = live.clone();
        let n = tokio::task::spawn_blocking(move || {
            l.cut(&Cut::Sub("ann_bot".into()), "sub_user_disabled", Duration::from_secs(10))
        })
        .await
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(live.len(), 3, "the cut returns once its streams are gone");
        let l = live.clone();
        let n =
            tokio::task::spawn_blocking(move || l.cut(&Cut::Device([1; 16]), "device_banned", Duration::from_secs(10)))
                .await
                .unwrap();
        assert_eq!(n, 2);
        assert_eq!(live.len(), 1);
        let l = live.clone();
        assert_eq!(l.cut(&Cut::Owner("nobody".into()), "owner_disabled", Duration::from_secs(1)), 0);
        let mut reasons = Vec::new();
        for (task, ended) in relays.drain(..3) {
            task.await.unwrap();
            reasons.push(ended.await.unwrap());
        }
        reasons.sort();
        assert_eq!(reasons, ["device_banned", "device_banned", "sub_user_disabled"]);
        let l = live.clone();
        let n = tokio::task::spawn_blocking(move || {
            l.cut(&Cut::Client("bob".into()), "account_disabled", Duration::from_secs(10))
        })
        .await
        .unwrap();
        assert_eq!((n, live.len()), (1, 0));
    }

    #[test]
    fn a_stream_that_does_not_end_is_waited_for_only_until_the_deadline() {
        let live = Arc::new(LiveStreams::default());
        let _stuck = live.register(who("ann", None, 1, "olga"));
        assert_eq!(live.cut(&Cut::Client("ann".into()), "account_disabled", Duration::from_millis(10)), 1);
        assert_eq!(live.len(), 1);
    }
}
