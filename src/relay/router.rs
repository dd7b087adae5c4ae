//! Routing: turns (client, targeting options, target) into an open stream on a node.
//! Applies the server's copy of the egress policy, honours `-country-`, `-node-` and sticky
//! sessions (`flex` re-pins, `strict` fails), rotates to the least-loaded node otherwise, and
//! retries another node when the chosen one is busy or went away.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use moka::Expiry;

use super::own_addresses::ServerPolicy;
use super::username::{SessionMode, Targeting};
use crate::egress::Refusal;
use crate::identity::DeviceId;
use crate::target::{OpenErrReason, Target};
use crate::tunnel::mux::{MuxStream, OpenFailure};
use crate::tunnel::registry::{NodeHandle, Registry};

/// How many nodes a rotating connection tries when nodes are busy or vanish mid-open.
const OPEN_ATTEMPTS: usize = 3;

/// Why no stream could be opened. Each maps to one row of SPEC.md's failure table.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("target refused by policy: {0}")]
    Policy(#[from] Refusal),
    #[error("no node available: {0}")]
    NoNode(String),
    #[error("node could not reach the target: {reason} ({message})", reason = .reason.as_str())]
    Node { reason: OpenErrReason, message: String },
    #[error("node did not answer: {0}")]
    NodeFailed(String),
}

/// A stream opened for a client, and where it goes out.
pub struct Routed {
    pub stream: MuxStream,
    pub node: Arc<NodeHandle>,
    /// Set when a flex session moved to another node because its node went away.
    pub repinned: bool,
}

#[derive(Clone)]
struct Pin {
    device: DeviceId,
    ttl: Duration,
}

struct PinExpiry;
impl Expiry<(String, String), Pin> for PinExpiry {
    fn expire_after_create(&self, _k: &(String, String), v: &Pin, _now: std::time::Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_read(
        &self,
        _k: &(String, String),
        v: &Pin,
        _now: std::time::Instant,
        _cur: Option<Duration>,
        _last: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _k: &(String, String),
        v: &Pin,
        _now: std::time::Instant,
        _cur: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

pub struct Router {
    registry: Arc<Registry>,
    /// Swapped whole when the server's own addresses change (`own_addresses::refresh`).
    policy: RwLock<Arc<ServerPolicy>>,
    sessions: moka::sync::Cache<(String, String), Pin>,
    /// Country targeting works while a country database is loaded (swapped at run time).
    geoip: Arc<crate::geoip::SharedGeoIp>,
    max_node_streams: usize,
    open_wait: Duration,
    /// The weakest device trust that may carry traffic (`trust.require`).
    min_trust: crate::identity::TrustLevel,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Router")
    }
}

impl Router {
    pub fn new(
        registry: Arc<Registry>,
        policy: ServerPolicy,
        geoip: Arc<crate::geoip::SharedGeoIp>,
        max_node_streams: u32,
        dial_timeout: Duration,
        min_trust: crate::identity::TrustLevel,
    ) -> Self {
        Router {
            registry,
            policy: RwLock::new(Arc::new(policy)),
            sessions: moka::sync::Cache::builder().max_capacity(1_000_000).expire_after(PinExpiry).build(),
            geoip,
            max_node_streams: max_node_streams as usize,
            // The node's own dial timeout plus a margin for the round trip.
            open_wait: dial_timeout + Duration::from_secs(5),
            min_trust,
        }
    }

    /// The server's copy of the egress policy, checked before any node is asked.
    pub fn check_target(&self, target: &Target) -> Result<(), Refusal> {
        self.policy().check_target(target)
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<ServerPolicy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the policy; streams already open keep going, new ones are checked against it.
    pub fn set_policy(&self, policy: ServerPolicy) {
        crate::sync::write(&self.policy, Arc::new(policy));
    }

    fn matches(&self, t: &Targeting, n: &NodeHandle) -> bool {
        t.country.is_none_or(|c| n.country() == Some(c))
            && t.node.is_none_or(|v| n.vip == v)
            && n.trust >= self.min_trust.max(t.trust.unwrap_or_default())
    }

    fn pick(&self, t: &Targeting, exclude: &[DeviceId]) -> Result<Arc<NodeHandle>, RouteError> {
        if t.country.is_some() && !self.geoip.has_country() {
            return Err(RouteError::NoNode(
                "country targeting needs a GeoIP database and none is loaded (run `traffix geoip update`, \
                 or set geoip.country_db)"
                    .into(),
            ));
        }
        self.registry.pick(|n| self.matches(t, n) && !exclude.contains(&n.device_id)).ok_or_else(|| {
            let mut what = Vec::new();
            if let Some(c) = t.country_code() {
                what.push(format!("country {c}"));
            }
            if let Some(v) = t.node {
                what.push(format!("node {v}"));
            }
            let trust = self.min_trust.max(t.trust.unwrap_or_default());
            if trust > crate::identity::TrustLevel::None {
                what.push(format!("device trust {trust} or better"));
            }
            if what.is_empty() {
                RouteError::NoNode("no node is online and accepting streams".into())
            } else {
                RouteError::NoNode(format!("no online node matches {}", what.join(", ")))
            }
        })
    }

    /// Opens a stream for `client` to `target` as `targeting` asks.
    pub async fn open(&self, targeting: &Targeting, target: Target) -> Result<Routed, RouteError> {
        self.check_target(&target)?;
        let session_key = targeting.session.as_ref().map(|s| (targeting.name.clone(), s.clone()));
        let mut repinned = false;
        let mut tried: Vec<DeviceId> = Vec::new();
        let mut last_err = None;
        for _ in 0..OPEN_ATTEMPTS {
            let node = match &session_key {
                Some(key) => match self.sessions.get(key) {
                    Some(pin) => match self
                        .registry
                        .get(&pin.device)
                        .filter(|n| n.accepts_streams() && !tried.contains(&n.device_id))
                    {
                        Some(n) => n,
                        None if targeting.mode == SessionMode::Strict => {
                            return Err(RouteError::NoNode(format!("the node of strict session {:?} is gone", key.1)));
                        }
                        None => {
                            repinned = true;
                            let n = self.pick(targeting, &tried)?;
                            self.sessions
                                .insert(key.clone(), Pin { device: n.device_id, ttl: targeting.session_ttl() });
                            n
                        }
                    },
                    None => {
                        let n = self.pick(targeting, &tried)?;
                        self.sessions.insert(key.clone(), Pin { device: n.device_id, ttl: targeting.session_ttl() });
                        n
                    }
                },
                None => self.pick(targeting, &tried)?,
            };
            match node.mux.open(target.clone(), node.max_streams().min(self.max_node_streams), self.open_wait).await {
                Ok(stream) => return Ok(Routed { stream, node, repinned }),
                Err(OpenFailure::Refused {
                    reason: r @ (OpenErrReason::NodeBusy | OpenErrReason::Draining),
                    message,
                }) => {
                    last_err = Some(RouteError::Node { reason: r, message });
                }
                Err(OpenFailure::Refused { reason, message }) => return Err(RouteError::Node { reason, message }),
                Err(e @ (OpenFailure::Closed | OpenFailure::Busy)) => {
                    last_err = Some(RouteError::NodeFailed(e.to_string()))
                }
                Err(e @ OpenFailure::Timeout(_)) => return Err(RouteError::NodeFailed(e.to_string())),
            }
            if targeting.node.is_some() || (session_key.is_some() && targeting.mode == SessionMode::Strict) {
                break;
            }
            tried.push(node.device_id);
        }
        Err(last_err.unwrap_or_else(|| RouteError::NoNode("no node accepted the stream".into())))
    }
}
