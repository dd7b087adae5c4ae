//! The registry of online nodes: virtual IP → live session, with each node's reported status.
//! In memory only (atomics and a read-mostly lock); last-seen times are persisted by the
//! session through the store. A second connection of a device replaces the first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::mux::Mux;
use super::protocol::{ErrorCode, Heartbeat, NodeState};
use crate::identity::DeviceId;

/// One live node session.
#[derive(Debug)]
pub struct NodeHandle {
    pub device_id: DeviceId,
    pub vip: Ipv4Addr,
    pub owner: String,
    /// Distinguishes this connection from a later one of the same device.
    pub session_id: u64,
    pub mux: Mux,
    /// The address the tunnel connection came from (the node's public IP).
    pub public_ip: IpAddr,
    /// ISO country of `public_ip` (two upper-case ASCII letters, 0: unknown), looked up again
    /// when the GeoIP database changes.
    country: AtomicU16,
    pub connected_at: u64,
    state: AtomicU8,
    /// The smaller of the server's cap and the node's declared `max_streams`.
    max_streams: AtomicU32,
    last_heartbeat: AtomicU64,
    /// The node's last heartbeat put it within [`CAP_MARGIN_BYTES`] of its owner's daily or
    /// monthly data cap: route nothing new there before the node has to cut streams.
    near_cap: AtomicBool,
    /// Paused by its owner on the server (the bot's /devices): connected, routed nothing.
    owner_paused: AtomicBool,
    status: Mutex<Heartbeat>,
    /// The device's trust level as judged at pairing (routing may require one).
    pub trust: crate::identity::TrustLevel,
    /// The protocol version the session negotiated (ERROR codes it knows).
    pub version: u8,
}

/// How close to a node's data cap the server stops routing new streams to it: 1 % of the cap,
/// at least 1 MiB. The node cuts its live streams itself when the cap is reached.
pub const CAP_MARGIN_MIN_BYTES: u64 = 1 << 20;

/// Whether `hb` reports the node within the margin of its daily or monthly cap.
pub fn near_data_cap(hb: &Heartbeat) -> bool {
    let near = |used: Option<u64>, cap: Option<u64>| match cap {
        Some(cap) => used.unwrap_or(0).saturating_add((cap / 100).max(CAP_MARGIN_MIN_BYTES)) >= cap,
        None => false,
    };
    near(hb.bytes_today, hb.daily_cap) || near(hb.bytes_month, hb.monthly_cap)
}

impl NodeHandle {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device_id: DeviceId,
        vip: Ipv4Addr,
        owner: String,
        session_id: u64,
        mux: Mux,
        public_ip: IpAddr,
        country: Option<[u8; 2]>,
        max_streams: u32,
        now: u64,
    ) -> Self {
        NodeHandle {
            device_id,
            vip,
            owner,
            session_id,
            mux,
            public_ip,
            country: AtomicU16::new(country.map_or(0, u16::from_be_bytes)),
            connected_at: now,
            state: AtomicU8::new(NodeState::Serving as u8),
            max_streams: AtomicU32::new(max_streams),
            last_heartbeat: AtomicU64::new(now),
            near_cap: AtomicBool::new(false),
            owner_paused: AtomicBool::new(false),
            status: Mutex::new(Heartbeat::default()),
            trust: crate::identity::TrustLevel::None,
            version: crate::tunnel::protocol::MIN_PROTOCOL_VERSION,
        }
    }

    /// The same node on a session of protocol `version`.
    pub fn with_version(mut self, version: u8) -> Self {
        self.version = version;
        self
    }

    /// The same node with the device trust level `trust`.
    pub fn with_trust(mut self, trust: crate::identity::TrustLevel) -> Self {
        self.trust = trust;
        self
    }

    pub fn state(&self) -> NodeState {
        NodeState::from_u8(self.state.load(Ordering::Acquire)).unwrap_or(NodeState::Paused)
    }

    pub fn set_state(&self, s: NodeState) {
        self.state.store(s as u8, Ordering::Release);
    }

    pub fn max_streams(&self) -> usize {
        self.max_streams.load(Ordering::Relaxed) as usize
    }

    /// Takes a heartbeat: state, declared stream cap (never above the server's), status.
    pub fn heartbeat(&self, hb: Heartbeat, server_cap: u32, now: u64) {
        self.set_state(hb.state);
        if let Some(m) = hb.max_streams {
            self.max_streams.store(m.min(server_cap), Ordering::Relaxed);
        }
        self.last_heartbeat.store(now, Ordering::Relaxed);
        self.near_cap.store(near_data_cap(&hb), Ordering::Relaxed);
        if let Ok(mut s) = self.status.lock() {
            *s = hb;
        }
    }

    /// The node refused a stream as busy with `active` streams open: no more than that until
    /// its next heartbeat declares its cap again.
    pub fn busy_at(&self, active: usize) {
        let active = u32::try_from(active).unwrap_or(u32::MAX);
        self.max_streams.fetch_min(active, Ordering::Relaxed);
    }

    pub fn status(&self) -> Heartbeat {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn last_heartbeat(&self) -> u64 {
        self.last_heartbeat.load(Ordering::Relaxed)
    }

    /// Whether new streams may go here: serving, below its stream cap and not about to reach
    /// its owner's data cap (docs/protocol.md "Heartbeats and drain").
    pub fn accepts_streams(&self) -> bool {
        self.state() == NodeState::Serving
            && !self.near_cap.load(Ordering::Relaxed)
            && !self.owner_paused.load(Ordering::Relaxed)
            && !self.mux.is_closed()
            && self.mux.active_streams() < self.max_streams()
    }

    /// Serving and below its data caps, but at its stream cap: busy, not paused.
    pub fn at_stream_cap(&self) -> bool {
        self.state() == NodeState::Serving
            && !self.near_cap.load(Ordering::Relaxed)
            && !self.owner_paused.load(Ordering::Relaxed)
            && !self.mux.is_closed()
            && self.mux.active_streams() >= self.max_streams()
    }

    /// Pauses or resumes routing to this node by its owner's wish (kept in its device record).
    pub fn set_owner_paused(&self, paused: bool) {
        self.owner_paused.store(paused, Ordering::Relaxed);
    }

    pub fn owner_paused(&self) -> bool {
        self.owner_paused.load(Ordering::Relaxed)
    }

    /// ISO country of `public_ip`, upper case, when a GeoIP database knows it.
    pub fn country(&self) -> Option<[u8; 2]> {
        match self.country.load(Ordering::Relaxed) {
            0 => None,
            c => Some(c.to_be_bytes()),
        }
    }

    /// Sets the country after a new GeoIP database was loaded.
    pub fn set_country(&self, country: Option<[u8; 2]>) {
        self.country.store(country.map_or(0, u16::from_be_bytes), Ordering::Relaxed);
    }

    pub fn country_str(&self) -> Option<String> {
        self.country().map(|c| String::from_utf8_lossy(&c).into_owned())
    }
}

/// A device the server sent away (banned, removed, its owner disabled): what control-only
/// sessions, which are not in the registry, listen for.
#[derive(Debug, Clone)]
pub struct Kick {
    pub device: DeviceId,
    pub code: ErrorCode,
    pub why: String,
}

/// The kicks broadcast (bounded: a receiver that falls behind is told it lagged).
#[derive(Debug)]
struct Kicks(tokio::sync::broadcast::Sender<Kick>);

impl Default for Kicks {
    fn default() -> Self {
        Kicks(tokio::sync::broadcast::channel(256).0)
    }
}

/// All online nodes.
#[derive(Debug, Default)]
pub struct Registry {
    kicks: Kicks,
    nodes: RwLock<HashMap<DeviceId, Arc<NodeHandle>>>,
    /// The online nodes by virtual IP (a device keeps its vIP forever), for `-node-` pins.
    vips: RwLock<HashMap<Ipv4Addr, DeviceId>>,
    next_session: AtomicU64,
    /// Nodes inserted so far (see [`Registry::generation`]).
    inserted: AtomicU64,
    rotation: std::sync::atomic::AtomicUsize,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Grows with every node added: what was true of the registry's nodes at one generation
    /// may have changed once it moves.
    pub fn generation(&self) -> u64 {
        self.inserted.load(Ordering::Acquire)
    }

    /// Adds a node; an older session of the same device is told it was replaced and closed.
    pub fn insert(&self, node: Arc<NodeHandle>) {
        // The vIP index changes under the node map's lock (the order everywhere: nodes, vips).
        let old = self.nodes.write().ok().and_then(|mut m| {
            if let Ok(mut v) = self.vips.write() {
                v.insert(node.vip, node.device_id);
            }
            m.insert(node.device_id, node)
        });
        self.inserted.fetch_add(1, Ordering::Release);
        if let Some(old) = old {
            tracing::info!(device = %hex::encode(old.device_id), "device reconnected; replacing its previous session");
            old.mux.send_error(ErrorCode::Replaced, "this device connected again; closing the older connection");
            old.mux.close("replaced by a newer connection");
        }
    }

    /// Removes the node if `session_id` is still its current session.
    pub fn remove(&self, device_id: &DeviceId, session_id: u64) -> bool {
        self.remove_with(device_id, session_id, || {})
    }

    /// [`Registry::remove`], running `last` first under the node map's lock unless a newer
    /// session of the device took this one's place: whoever finds the device gone finds what
    /// `last` left (its last-seen row), and a replaced session's `last` never lands after its
    /// successor's first.
    pub fn remove_with(&self, device_id: &DeviceId, session_id: u64, last: impl FnOnce()) -> bool {
        let Ok(mut m) = self.nodes.write() else { return false };
        match m.get(device_id) {
            Some(n) if n.session_id != session_id => false,
            Some(_) => {
                last();
                if let Some(n) = m.remove(device_id) {
                    self.forget_vip(&n);
                }
                true
            }
            None => {
                last();
                false
            }
        }
    }

    /// Runs `f` under the node map's lock if `session_id` is the device's current session (a
    /// session that a newer one replaced has nothing more to say about the device).
    pub fn while_current(&self, device_id: &DeviceId, session_id: u64, f: impl FnOnce()) {
        if let Ok(m) = self.nodes.read()
            && m.get(device_id).is_some_and(|n| n.session_id == session_id)
        {
            f();
        }
    }

    pub fn get(&self, device_id: &DeviceId) -> Option<Arc<NodeHandle>> {
        self.nodes.read().ok().and_then(|m| m.get(device_id).cloned())
    }

    pub fn by_vip(&self, vip: Ipv4Addr) -> Option<Arc<NodeHandle>> {
        let id = self.vips.read().ok()?.get(&vip).copied()?;
        self.get(&id).filter(|n| n.vip == vip)
    }

    /// Called with the node map's write lock held.
    fn forget_vip(&self, node: &NodeHandle) {
        if let Ok(mut v) = self.vips.write()
            && v.get(&node.vip) == Some(&node.device_id)
        {
            v.remove(&node.vip);
        }
    }

    pub fn all(&self) -> Vec<Arc<NodeHandle>> {
        self.nodes.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.nodes.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The least-loaded node that accepts streams and passes `filter`; ties rotate, so idle
    /// nodes share new connections instead of one node taking them all.
    pub fn pick(&self, filter: impl Fn(&NodeHandle) -> bool) -> Option<Arc<NodeHandle>> {
        let m = self.nodes.read().ok()?;
        let mut best: Vec<&Arc<NodeHandle>> = Vec::new();
        let mut best_load = usize::MAX;
        for n in m.values().filter(|n| n.accepts_streams() && filter(n)) {
            // Load as a fraction of the node's cap, in 1/1024ths.
            let load = (n.mux.active_streams() * 1024) / n.max_streams().max(1);
            if load < best_load {
                best.clear();
                best_load = load;
            }
            if load == best_load {
                best.push(n);
            }
        }
        if best.is_empty() {
            return None;
        }
        best.sort_by_key(|n| n.device_id);
        let i = self.rotation.fetch_add(1, Ordering::Relaxed) % best.len();
        Some(best[i].clone())
    }

    /// Every kick from now on (control-only sessions end when their device is kicked).
    pub fn kicks(&self) -> tokio::sync::broadcast::Receiver<Kick> {
        self.kicks.0.subscribe()
    }

    /// Disconnects a node (ban): it is told why and its streams are reset. Its control-only
    /// sessions are told too. True when a serving tunnel was disconnected.
    pub fn kick(&self, device_id: &DeviceId, code: ErrorCode, why: &str) -> bool {
        let _ = self.kicks.0.send(Kick { device: *device_id, code, why: why.to_owned() });
        let node = self.nodes.write().ok().and_then(|mut m| {
            let n = m.remove(device_id)?;
            self.forget_vip(&n);
            Some(n)
        });
        match node {
            Some(n) => {
                // Version 1 sessions do not know `device_removed`: to them it is a failed login.
                let code = match code {
                    ErrorCode::DeviceRemoved if n.version < crate::tunnel::protocol::CONTROL_VERSION => {
                        ErrorCode::AuthFailed
                    }
                    c => c,
                };
                n.mux.send_error(code, why);
                n.mux.close(why);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(n: u8, session: u64) -> Arc<NodeHandle> {
        let (mux, _out) = crate::tunnel::mux::Mux::new(crate::tunnel::mux::MuxConfig::default());
        let ip = std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, n));
        Arc::new(NodeHandle::new([n; 16], Ipv4Addr::new(100, 64, 0, n), "bob".into(), session, mux, ip, None, 8, 0))
    }

    #[test]
    fn nodes_are_found_by_vip_across_replacement_removal_and_kicks() {
        let r = Registry::new();
        r.insert(handle(1, 1));
        r.insert(handle(2, 2));
        assert_eq!(r.by_vip(Ipv4Addr::new(100, 64, 0, 1)).map(|n| n.session_id), Some(1));
        assert!(r.by_vip(Ipv4Addr::new(100, 64, 0, 9)).is_none());
        // The device connects again: the new session is found; the old one's late removal
        // takes nothing away.
        r.insert(handle(1, 3));
        assert!(!r.remove(&[1; 16], 1));
        assert_eq!(r.by_vip(Ipv4Addr::new(100, 64, 0, 1)).map(|n| n.session_id), Some(3));
        assert!(r.remove(&[1; 16], 3));
        assert!(r.by_vip(Ipv4Addr::new(100, 64, 0, 1)).is_none());
        assert!(r.kick(&[2; 16], ErrorCode::DeviceBanned, "banned"));
        assert!(r.by_vip(Ipv4Addr::new(100, 64, 0, 2)).is_none());
        assert!(r.vips.read().unwrap().is_empty(), "the index holds online nodes only");
        // Kicks reach listeners (control-only sessions) even for a device with no tunnel.
        let mut kicks = r.kicks();
        assert!(!r.kick(&[7; 16], ErrorCode::DeviceBanned, "banned"));
        let k = kicks.try_recv().unwrap();
        assert_eq!((k.device, k.code, k.why.as_str()), ([7; 16], ErrorCode::DeviceBanned, "banned"));
        assert_eq!(r.generation(), 3);
    }

    #[test]
    fn a_session_says_its_last_unless_a_newer_one_took_its_place() {
        let r = Registry::new();
        let said = std::cell::RefCell::new(Vec::new());
        let log = &said;
        let say = |what: &'static str| move || log.borrow_mut().push(what);
        r.insert(handle(1, 1));
        r.while_current(&[1; 16], 1, say("1 ticks"));
        // Replaced: the old session's tick and its end say nothing, and leave the new one.
        r.insert(handle(1, 2));
        r.while_current(&[1; 16], 1, say("1 ticks late"));
        assert!(!r.remove_with(&[1; 16], 1, say("1 leaves late")));
        assert_eq!(r.get(&[1; 16]).map(|n| n.session_id), Some(2));
        // The current one says its last, then is gone.
        assert!(r.remove_with(&[1; 16], 2, || {
            assert!(r.nodes.try_write().is_err(), "said under the lock, before it is gone");
            said.borrow_mut().push("2 leaves");
        }));
        assert!(r.get(&[1; 16]).is_none());
        // Kicked (taken out by someone else, no successor): its end still says its last.
        r.insert(handle(2, 3));
        assert!(r.kick(&[2; 16], ErrorCode::DeviceBanned, "banned"));
        assert!(!r.remove_with(&[2; 16], 3, say("3 leaves kicked")));
        assert_eq!(*said.borrow(), ["1 ticks", "2 leaves", "3 leaves kicked"]);
    }

    #[test]
    fn routing_stops_within_the_margin_of_a_data_cap() {
        let hb = |today: u64, month: u64, daily: Option<u64>, monthly: Option<u64>| Heartbeat {
            bytes_today: Some(today),
            bytes_month: Some(month),
            daily_cap: daily,
            monthly_cap: monthly,
            ..Heartbeat::default()
        };
        let gb = 1_000_000_000;
        assert!(!near_data_cap(&hb(0, 0, None, None)), "no caps");
        assert!(!near_data_cap(&hb(5 * gb, 50 * gb, None, None)));
        assert!(!near_data_cap(&hb(gb - 10_000_001, 0, Some(gb), None)), "1 % of 1 GB is 10 MB");
        assert!(near_data_cap(&hb(gb - 10_000_000, 0, Some(gb), None)));
        assert!(near_data_cap(&hb(gb, 0, Some(gb), None)), "at the cap");
        assert!(near_data_cap(&hb(gb + 5, 0, Some(gb), None)), "past it");
        assert!(near_data_cap(&hb(0, 30 * gb, None, Some(30 * gb))), "monthly");
        // Small caps keep at least a 1 MiB margin.
        let small = 50_000_000;
        assert!(!near_data_cap(&hb(small - CAP_MARGIN_MIN_BYTES - 1, 0, Some(small), None)));
        assert!(near_data_cap(&hb(small - CAP_MARGIN_MIN_BYTES, 0, Some(small), None)));
        assert!(near_data_cap(&hb(0, 0, Some(500_000), None)), "a cap below the margin routes nothing");
        // A node that does not report its counters is not held to a cap it declared.
        let unknown = Heartbeat { daily_cap: Some(gb), ..Heartbeat::default() };
        assert!(!near_data_cap(&unknown));
        let huge = Heartbeat { daily_cap: Some(u64::MAX), bytes_today: Some(u64::MAX - 1), ..Heartbeat::default() };
        assert!(near_data_cap(&huge), "no overflow near u64::MAX");
    }
}
