//! The server's own addresses, refused as targets so that a client cannot loop through a node
//! back into the server (SECURITY.md §1): every interface address of the machine and
//! `server.public_address` (the literal, or what its host name resolves to, at start and every
//! `server.address_refresh_secs`). They go into the router's egress policy as single addresses,
//! refused on every port unless `allow_private_targets`, and, for wildcard listeners, as
//! listener endpoints, refused on the listener ports even then. On-link prefixes, gateways and
//! DNS servers are not included: other hosts of the server's subnet are legitimate targets.
//!
//! Owns the set, the policy built from it and the refresh task; the router only holds the
//! policy and is handed a new one when the set changes.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tracing::{info, warn};

use crate::egress::{EgressPolicy, Host, Refusal, parse_host};
use crate::shutdown::Shutdown;
use crate::target::Target;

/// How long one resolution of `public_address` may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the machine's interface addresses.
pub type Interfaces = Arc<dyn Fn() -> Vec<IpAddr> + Send + Sync>;
/// Resolves a `host:port` to its addresses.
pub type Resolve = Arc<dyn Fn(String) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> + Send + Sync>;

/// Where the addresses come from: the system in production, fixed functions in tests.
#[derive(Clone)]
pub struct Sources {
    pub interfaces: Interfaces,
    pub resolve: Resolve,
}

impl Sources {
    /// `/proc` for the interfaces, the system resolver for names.
    pub fn system() -> Sources {
        Sources {
            interfaces: Arc::new(crate::netinfo::interface_addresses),
            resolve: Arc::new(|host_port: String| {
                Box::pin(async move { Ok(tokio::net::lookup_host(host_port).await?.map(|a| a.ip()).collect()) })
            }),
        }
    }
}

/// The host of `public_address` (`HOST:PORT`, an IPv6 literal in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicHost {
    Ip(IpAddr),
    /// A host name, lower-case without a trailing dot; resolved, never trusted as a spelling.
    Name(String),
}

impl PublicHost {
    /// `None` when there is no public address (pairing off).
    pub fn of(public_address: &str) -> Option<PublicHost> {
        if public_address.is_empty() {
            return None;
        }
        let host = public_address.rsplit_once(':').map(|(h, _)| h).unwrap_or(public_address);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Some(PublicHost::Ip(ip));
        }
        Some(match parse_host(host) {
            Ok(Host::Ip(ip)) => PublicHost::Ip(ip),
            Ok(Host::Name(name)) => PublicHost::Name(name),
            // An odd spelling (`127.1`) is still what the resolver is asked about.
            Err(_) => PublicHost::Name(host.to_ascii_lowercase()),
        })
    }
}

/// The server's own addresses at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnAddresses {
    /// Every interface address of the machine.
    pub interfaces: BTreeSet<IpAddr>,
    /// `public_address`'s host: the literal, or what its name resolved to.
    pub public: BTreeSet<IpAddr>,
}

impl OwnAddresses {
    pub fn all(&self) -> BTreeSet<IpAddr> {
        self.interfaces.union(&self.public).copied().collect()
    }
}

/// The router's policy: the egress policy, and the name the server is known by with the
/// addresses it resolved to.
#[derive(Debug, Clone, Default)]
pub struct ServerPolicy {
    pub egress: EgressPolicy,
    /// `public_address`'s host name and its addresses. The server does not resolve clients'
    /// names (the node does), but it knows what its own name resolves to: a target naming it is
    /// checked as those addresses.
    pub own_name: Option<(String, Vec<IpAddr>)>,
}

impl ServerPolicy {
    /// The server's copy of the egress policy, checked before any node is asked.
    pub fn check_target(&self, target: &Target) -> Result<(), Refusal> {
        match target {
            Target::Ip(a) => self.egress.check_target(&a.ip().to_string(), a.port()).map(|_| ()),
            Target::Domain(d, port) => {
                let host = self.egress.check_target(d, *port)?;
                if let (Host::Name(name), Some((own, addrs))) = (&host, &self.own_name)
                    && name == own
                {
                    for ip in addrs {
                        self.egress.check_addr(SocketAddr::new(*ip, *port))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// What the policy is built from besides the addresses (fixed for the server's life).
#[derive(Debug, Clone)]
pub struct PolicyInputs {
    /// The configured part of the policy: `allow_private_targets` and the blocked ports.
    pub base: EgressPolicy,
    /// Every listener of the server (web, SOCKS5, HTTP proxy, metrics).
    pub listeners: Vec<SocketAddr>,
    pub public_address: String,
}

impl PolicyInputs {
    /// The policy refusing `own`: each address on every port (lifted by
    /// `allow_private_targets`), and on the listener ports always.
    pub fn policy(&self, own: &OwnAddresses) -> ServerPolicy {
        let all = own.all();
        let mut egress = self.base.clone();
        egress.own_networks.extend(all.iter().map(|&ip| (ip, if ip.is_ipv4() { 32 } else { 128 })));
        egress.server_endpoints.extend(server_endpoints(&self.listeners, &self.public_address, &all));
        let own_name = match PublicHost::of(&self.public_address) {
            Some(PublicHost::Name(name)) => Some((name, own.public.iter().copied().collect())),
            Some(PublicHost::Ip(_)) | None => None,
        };
        ServerPolicy { egress, own_name }
    }

    /// One look at the interfaces and at `public_address`. A name that does not resolve (or
    /// resolves to nothing) keeps the addresses of `last`, with a warning.
    pub async fn look(&self, sources: &Sources, last: &OwnAddresses) -> OwnAddresses {
        let interfaces = (sources.interfaces)().into_iter().collect();
        let public = match PublicHost::of(&self.public_address) {
            None => BTreeSet::new(),
            Some(PublicHost::Ip(ip)) => BTreeSet::from([ip]),
            Some(PublicHost::Name(_)) => {
                let why =
                    match tokio::time::timeout(RESOLVE_TIMEOUT, (sources.resolve)(self.public_address.clone())).await {
                        Ok(Ok(addrs)) if !addrs.is_empty() => {
                            return OwnAddresses { interfaces, public: addrs.into_iter().collect() };
                        }
                        Ok(Ok(_)) => "it resolved to no address".to_owned(),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs()),
                    };
                warn!(
                    public_address = %self.public_address, error = %why, kept = ?last.public,
                    "cannot resolve server.public_address; keeping the addresses it had"
                );
                last.public.clone()
            }
        };
        OwnAddresses { interfaces, public }
    }
}

/// The server endpoints a node must never be asked to reach (proxy loops): each listener, and
/// for wildcard listeners the loopback addresses, the `public_address` literal and every
/// address in `own`, on the listener's port.
pub fn server_endpoints(listeners: &[SocketAddr], public: &str, own: &BTreeSet<IpAddr>) -> Vec<SocketAddr> {
    let mut wildcard_ips: BTreeSet<IpAddr> =
        BTreeSet::from([IpAddr::from([127, 0, 0, 1]), IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    if let Some(PublicHost::Ip(ip)) = PublicHost::of(public) {
        wildcard_ips.insert(ip);
    }
    wildcard_ips.extend(own.iter().copied());
    let mut out = Vec::new();
    for l in listeners {
        if l.ip().is_unspecified() {
            out.extend(wildcard_ips.iter().map(|&ip| SocketAddr::new(ip, l.port())));
        } else {
            out.push(*l);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Looks again every `every` until shutdown; when the addresses change, logs them and hands the
/// new policy to `apply`. `last` is what the current policy was built from.
pub async fn refresh(
    inputs: PolicyInputs,
    sources: Sources,
    mut last: OwnAddresses,
    every: Duration,
    apply: impl Fn(ServerPolicy) + Send,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.recv() => return,
        }
        let next = tokio::select! {
            next = inputs.look(&sources, &last) => next,
            _ = shutdown.recv() => return,
        };
        if next != last {
            info!(
                interfaces = ?next.interfaces, public_address = %inputs.public_address, public = ?next.public,
                "the server's own addresses changed; they are refused as targets"
            );
            apply(inputs.policy(&next));
            last = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::relay::router::Router;
    use crate::tunnel::registry::Registry;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn at(host: &str, port: u16) -> Target {
        match host.parse::<IpAddr>() {
            Ok(a) => Target::Ip(SocketAddr::new(a, port)),
            Err(_) => Target::Domain(host.to_owned(), port),
        }
    }

    /// Interfaces fixed; the resolver answers from `answers` in turn and counts its calls.
    fn sources(interfaces: &[&str], answers: Vec<io::Result<Vec<IpAddr>>>) -> (Sources, Arc<Mutex<usize>>) {
        let interfaces: Vec<IpAddr> = interfaces.iter().map(|a| ip(a)).collect();
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        let calls = Arc::new(Mutex::new(0));
        let counted = calls.clone();
        let resolve: Resolve = Arc::new(move |_host_port: String| {
            *crate::sync::lock(&counted) += 1;
            let next = crate::sync::lock(&answers).pop_front();
            Box::pin(async move { next.unwrap_or_else(|| Err(io::Error::other("no more answers"))) })
        });
        (Sources { interfaces: Arc::new(move || interfaces.clone()), resolve }, calls)
    }

    fn inputs(allow_private_targets: bool, public_address: &str) -> PolicyInputs {
        PolicyInputs {
            base: EgressPolicy { allow_private_targets, ..EgressPolicy::default() },
            listeners: vec![
                "0.0.0.0:8443".parse().expect("sockaddr"),
                "0.0.0.0:1080".parse().expect("sockaddr"),
                "127.0.0.1:9464".parse().expect("sockaddr"),
            ],
            public_address: public_address.to_owned(),
        }
    }

    /// Interface 81.2.69.7; `proxy.example.com` resolved to 2a02:4b8::7.
    fn own() -> OwnAddresses {
        OwnAddresses { interfaces: [ip("81.2.69.7")].into(), public: [ip("2a02:4b8::7")].into() }
    }

    fn code(policy: &ServerPolicy, host: &str, port: u16) -> Result<(), &'static str> {
        policy.check_target(&at(host, port)).map_err(|r| r.code())
    }

    #[test]
    fn public_host_is_a_literal_or_a_name() {
        assert_eq!(PublicHost::of("203.0.113.7:8443"), Some(PublicHost::Ip(ip("203.0.113.7"))));
        assert_eq!(PublicHost::of("[2001:db8::1]:8443"), Some(PublicHost::Ip(ip("2001:db8::1"))));
        assert_eq!(PublicHost::of("Proxy.Example.COM.:8443"), Some(PublicHost::Name("proxy.example.com".into())));
        assert_eq!(PublicHost::of("localhost:8443"), Some(PublicHost::Name("localhost".into())));
        assert_eq!(PublicHost::of(""), None, "no public address: pairing off");
    }

    #[tokio::test]
    async fn a_name_is_resolved_and_a_literal_is_taken_as_it_is() {
        let (src, calls) = sources(&["192.0.2.2", "::1"], vec![Ok(vec![ip("81.2.69.7"), ip("2a02:4b8::7")])]);
        let got = inputs(false, "proxy.example.com:8443").look(&src, &OwnAddresses::default()).await;
        assert_eq!(got.interfaces, [ip("192.0.2.2"), ip("::1")].into());
        assert_eq!(got.public, [ip("81.2.69.7"), ip("2a02:4b8::7")].into());
        assert_eq!(*crate::sync::lock(&calls), 1);

        let got = inputs(false, "81.2.69.9:8443").look(&src, &OwnAddresses::default()).await;
        assert_eq!(got.public, [ip("81.2.69.9")].into());
        assert_eq!(*crate::sync::lock(&calls), 1, "a literal is not resolved");
    }

    #[tokio::test]
    async fn a_failed_resolution_keeps_the_last_addresses() {
        let (src, _) = sources(&["192.0.2.2"], vec![Err(io::Error::other("SERVFAIL")), Ok(Vec::new())]);
        let last = own();
        let got = inputs(false, "proxy.example.com:8443").look(&src, &last).await;
        assert_eq!(got, OwnAddresses { interfaces: [ip("192.0.2.2")].into(), public: last.public.clone() });
        let got = inputs(false, "proxy.example.com:8443").look(&src, &last).await;
        assert_eq!(got.public, last.public, "no address is no answer");
    }

    #[test]
    fn own_addresses_are_refused_on_every_port() {
        let p = inputs(false, "proxy.example.com:8443").policy(&own());
        // The listener ports are reported as such; every other port as an own address.
        for (port, want) in
            [(80, "own_address"), (443, "own_address"), (1080, "server_listener"), (8443, "server_listener")]
        {
            for host in [
                "81.2.69.7",
                "2a02:4b8::7",
                // The same host in IPv4-mapped and NAT64 spellings.
                "::ffff:81.2.69.7",
                "64:ff9b::5102:4507",
                // The server's name stands for the addresses it resolved to.
                "proxy.example.com",
                "PROXY.example.com.",
            ] {
                assert_eq!(code(&p, host, port), Err(want), "{host}:{port}");
            }
        }
        // Neighbours of the server's subnet and other names are targets like any other.
        assert_eq!(code(&p, "81.2.69.8", 443), Ok(()));
        assert_eq!(code(&p, "2a02:4b8::8", 443), Ok(()));
        assert_eq!(code(&p, "www.example.com", 443), Ok(()));
    }

    #[test]
    fn with_allow_private_targets_only_the_listener_ports_are_refused() {
        let p = inputs(true, "proxy.example.com:8443").policy(&own());
        for port in [8443, 1080] {
            for host in ["81.2.69.7", "::ffff:81.2.69.7", "64:ff9b::5102:4507", "2a02:4b8::7", "proxy.example.com"] {
                assert_eq!(code(&p, host, port), Err("server_listener"), "{host}:{port}");
            }
            assert_eq!(code(&p, "127.0.0.1", port), Err("server_listener"));
            assert_eq!(code(&p, "::1", port), Err("server_listener"));
        }
        for host in ["81.2.69.7", "2a02:4b8::7", "proxy.example.com"] {
            assert_eq!(code(&p, host, 443), Ok(()), "{host}");
            // The metrics listener is on loopback only: the public addresses do not reach it.
            assert_eq!(code(&p, host, 9464), Ok(()), "{host}");
        }
        assert_eq!(code(&p, "127.0.0.1", 9464), Err("server_listener"));
        assert_eq!(code(&p, "81.2.69.8", 1080), Ok(()));
    }

    #[test]
    fn a_literal_public_address_is_refused_too() {
        let own = OwnAddresses { interfaces: BTreeSet::new(), public: [ip("81.2.69.9")].into() };
        let p = inputs(false, "81.2.69.9:8443").policy(&own);
        assert_eq!(code(&p, "81.2.69.9", 443), Err("own_address"));
        let p = inputs(true, "81.2.69.9:8443").policy(&own);
        assert_eq!(code(&p, "81.2.69.9", 8443), Err("server_listener"));
        assert_eq!(code(&p, "81.2.69.9", 443), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresh_swaps_the_routers_policy_when_the_addresses_change() {
        let (trigger, _) = crate::shutdown::channel();
        // At start the name resolves to A; then once not at all; then to B.
        let (src, calls) = sources(
            &["192.0.2.2"],
            vec![Ok(vec![ip("81.2.69.7")]), Err(io::Error::other("SERVFAIL")), Ok(vec![ip("81.2.69.8")])],
        );
        let inputs = inputs(false, "proxy.example.com:8443");
        let first = inputs.look(&src, &OwnAddresses::default()).await;
        let router = Arc::new(Router::new(
            Arc::new(Registry::new()),
            inputs.policy(&first),
            Arc::new(crate::geoip::SharedGeoIp::empty()),
            Arc::new(crate::watchdog::Watchdog::new(
                crate::watchdog::config::WatchdogConfig::default(),
                crate::watchdog::WatchdogLimits::from_limits(&crate::config::Limits::default()),
                None,
                Arc::default(),
            )),
            &crate::config::Limits::default(),
            Arc::default(),
            crate::identity::TrustLevel::None,
        ));
        assert_eq!(router.check_target(&at("81.2.69.7", 443)).map_err(|r| r.code()), Err("own_address"));
        assert_eq!(router.check_target(&at("81.2.69.8", 443)), Ok(()));

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r = router.clone();
        let task = tokio::spawn(refresh(
            inputs,
            src,
            first,
            Duration::from_secs(300),
            move |p| {
                r.set_policy(p);
                let _ = tx.send(());
            },
            trigger.subscribe(),
        ));
        // Virtual time: a bound on the looks, not on the clock.
        tokio::time::timeout(Duration::from_secs(3600), rx.recv())
            .await
            .expect("a new policy within a dozen looks")
            .expect("the task is alive");
        // The failed look in between kept A, so the first change handed over is B.
        assert_eq!(*crate::sync::lock(&calls), 3);
        assert_eq!(router.check_target(&at("81.2.69.8", 443)).map_err(|r| r.code()), Err("own_address"));
        assert_eq!(router.check_target(&at("proxy.example.com", 443)).map_err(|r| r.code()), Err("own_address"));
        assert_eq!(router.check_target(&at("81.2.69.7", 443)), Ok(()), "A is no longer the server's");

        trigger.trigger();
        task.await.expect("the refresh task stops on shutdown");
    }
}
