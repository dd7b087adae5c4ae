//! TCP listeners shared by every server socket (web, SOCKS5, HTTP proxy, metrics): binding with
//! the configured backlog, accepting with back-off when the process runs out of descriptors, and
//! the connection caps of a listener ([`Gate`]: all connections, per source address, unfinished
//! handshakes per source address). Knows nothing of what is served on them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Binds a listener with the configured backlog (SECURITY.md §2: ≥ 1024).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(backlog)
}

/// Accepts with back-off on transient errors (EMFILE and friends) instead of spinning.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The key per-address caps and throttles count a source under: an IPv4 address as itself
/// (also when it arrives IPv4-mapped, `::ffff:a.b.c.d`), an IPv6 address by its /64 — one
/// host is handed a whole /64 and could otherwise walk past every per-address limit.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Descriptors kept free of the listeners' caps: the database, the admin socket, logs, DNS.
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-file limit to the hard one (one listener's flood must not exhaust the
/// descriptors the others need) and returns the soft limit now in force (`u64::MAX`: none).
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum || (lim.current.is_some() && lim.maximum.is_none()) {
        let raised = Rlimit { current: lim.maximum, maximum: lim.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-file limit");
        }
    }
    // `None` reads as unlimited.
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The connection caps of the listeners under one open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FittedCaps {
    /// The web listener: every node's tunnel (one long-lived connection each), the dashboard
    /// and the API.
    pub web: usize,
    /// Each proxy listener (SOCKS5, HTTP).
    pub proxy: usize,
}

/// Connections at once on the ACME HTTP-01 listener (port 80, only with ACME on): each gets one
/// request (a challenge answer or a redirect to HTTPS), so a small fixed cap, kept out of the
/// room the other listeners share.
pub const ACME_HTTP_MAX_CONNECTIONS: usize = 256;

/// `max_connections` per listener such that all listeners full still leave [`RESERVED_FDS`]
/// descriptors free under a soft limit of `nofile`. After the ACME listener's
/// [`ACME_HTTP_MAX_CONNECTIONS`], the web listener gets three fifths of the room (it holds the
/// fleet: 10,000 nodes are 10,000 descriptors for as long as they are online) and each proxy
/// listener one fifth, so a flood on one listener still cannot take the descriptors another
/// needs.
pub fn fit_connections(max_connections: usize, nofile: u64) -> FittedCaps {
    let fifth = nofile.saturating_sub(RESERVED_FDS + ACME_HTTP_MAX_CONNECTIONS as u64) / 5;
    let cap =
        |fifths: u64| max_connections.min(usize::try_from(fifth.saturating_mul(fifths)).unwrap_or(usize::MAX)).max(1);
    FittedCaps { web: cap(3), proxy: cap(1) }
}

/// Caps on the connections of one listener (SECURITY.md §2; `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// All connections at once.
    pub total: usize,
    /// Connections from one source address.
    pub per_ip: usize,
    /// Connections from one source address that have not finished their handshake (TLS,
    /// SOCKS5 negotiation and authentication, an HTTP proxy client's first authenticated request).
    pub handshakes_per_ip: usize,
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
    Handshakes,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "listener full",
            Refused::PerIp => "too many connections from this address",
            Refused::Handshakes => "too many unfinished handshakes from this address",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, (usize, usize)>,
}

/// Counts one listener's connections against its [`ConnLimits`]. A connection over a cap is
/// refused at once — the accept loop never stops accepting, so one flood cannot starve the
/// clients that come after it. The per-address map holds only addresses with live connections.
#[derive(Debug)]
pub struct Gate {
    name: &'static str,
    limits: ConnLimits,
    counts: Mutex<Counts>,
    refusals: crate::telemetry::LogLimiter,
    refused: prometheus_client::metrics::counter::Counter,
}

impl Gate {
    /// A gate for the listener `name`; `refused` counts the connections it turns away.
    pub fn new(
        name: &'static str,
        limits: ConnLimits,
        refused: prometheus_client::metrics::counter::Counter,
    ) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            limits,
            counts: Mutex::new(Counts::default()),
            refusals: crate::telemetry::LogLimiter::new(5, Duration::from_secs(60)),
            refused,
        })
    }

    /// Admits a new connection from `ip`, counted as in its handshake until
    /// [`Admitted::handshake_done`]; or says which cap it is over (and logs that, a few lines a
    /// minute).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let ip = source_key(ip);
        let refused = {
            let mut c = crate::sync::lock(&self.counts);
            let (conns, handshakes) = c.per_ip.get(&ip).copied().unwrap_or((0, 0));
            if c.total >= self.limits.total {
                Some(Refused::Total)
            } else if conns >= self.limits.per_ip {
                Some(Refused::PerIp)
            } else if handshakes >= self.limits.handshakes_per_ip {
                Some(Refused::Handshakes)
            } else {
                c.total += 1;
                c.per_ip.insert(ip, (conns + 1, handshakes + 1));
                None
            }
        };
        match refused {
            None => Ok(Admitted { gate: self.clone(), ip, in_handshake: true, per_address: true }),
            Some(r) => Err(self.refuse(ip, r)),
        }
    }

    fn refuse(&self, ip: IpAddr, r: Refused) -> Refused {
        self.refused.inc();
        if self.refusals.admit_now("refused connections") {
            tracing::warn!(listener = self.name, %ip, reason = r.as_str(), "connection refused");
        }
        r
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        crate::sync::lock(&self.counts).total
    }
}

/// A connection counted by its [`Gate`]; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    gate: Arc<Gate>,
    ip: IpAddr,
    in_handshake: bool,
    /// Counted against `max_connections_per_ip` (until [`Admitted::release_address`]).
    per_address: bool,
}

impl Admitted {
    /// The connection finished its handshake: it no longer counts against
    /// `handshakes_per_ip`.
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.in_handshake) {
            let mut c = crate::sync::lock(&self.gate.counts);
            if let Some(e) = c.per_ip.get_mut(&self.ip) {
                e.1 = e.1.saturating_sub(1);
            }
        }
    }
}

impl Admitted {
    /// The connection starts another handshake (a node's tunnel after its WebSocket upgrade,
    /// until the server's WELCOME): it counts against `max_handshakes_per_ip` again, or is
    /// refused when that address is at the cap.
    pub fn handshake_again(&mut self) -> Result<(), Refused> {
        if self.in_handshake || !self.per_address {
            return Ok(());
        }
        let over = {
            let mut c = crate::sync::lock(&self.gate.counts);
            match c.per_ip.get_mut(&self.ip) {
                Some(e) if e.1 >= self.gate.limits.handshakes_per_ip => true,
                Some(e) => {
                    e.1 += 1;
                    false
                }
                None => {
                    c.per_ip.insert(self.ip, (0, 1));
                    false
                }
            }
        };
        if over {
            return Err(self.gate.refuse(self.ip, Refused::Handshakes));
        }
        self.in_handshake = true;
        Ok(())
    }

    /// The connection stops counting against its address's caps and counts only against the
    /// listener's total: an established node tunnel (many phones share one carrier address).
    pub fn release_address(&mut self) {
        self.handshake_done();
        if std::mem::take(&mut self.per_address) {
            let mut c = crate::sync::lock(&self.gate.counts);
            Self::forget_one(&mut c, self.ip, false);
        }
    }

    fn forget_one(c: &mut Counts, ip: IpAddr, in_handshake: bool) {
        if let Some(e) = c.per_ip.get_mut(&ip) {
            e.0 = e.0.saturating_sub(1);
            if in_handshake {
                e.1 = e.1.saturating_sub(1);
            }
            if e.0 == 0 && e.1 == 0 {
                c.per_ip.remove(&ip);
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = crate::sync::lock(&self.gate.counts);
        c.total = c.total.saturating_sub(1);
        if self.per_address {
            Self::forget_one(&mut c, self.ip, self.in_handshake);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_keyed_by_ipv4_address_and_ipv6_slash_64() {
        let k = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(k("203.0.113.7"), "203.0.113.7");
        assert_eq!(k("::ffff:203.0.113.7"), "203.0.113.7", "IPv4-mapped folds to IPv4");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"), "one /64, one key");
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::1"), "::");
    }

    #[test]
    fn one_slash_64_shares_one_per_address_cap() {
        let g = Gate::new(
            "test",
            ConnLimits { total: 10, per_ip: 2, handshakes_per_ip: 2 },
            prometheus_client::metrics::counter::Counter::default(),
        );
        let _a = g.admit("2001:db8::1".parse().unwrap()).unwrap();
        let _b = g.admit("2001:db8::2".parse().unwrap()).unwrap();
        assert_eq!(g.admit("2001:db8::3:4:5".parse().unwrap()).err(), Some(Refused::PerIp));
        assert!(g.admit("2001:db8:0:1::1".parse().unwrap()).is_ok(), "the next /64 is another source");
        let _v4 = g.admit("192.0.2.1".parse().unwrap()).unwrap();
        let _v4b = g.admit("::ffff:192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(g.admit("192.0.2.1".parse().unwrap()).err(), Some(Refused::PerIp), "mapped = the same IPv4");
    }

    #[test]
    fn a_tunnel_counts_as_a_handshake_again_then_only_against_the_total() {
        let g = Gate::new(
            "test",
            ConnLimits { total: 4, per_ip: 2, handshakes_per_ip: 1 },
            prometheus_client::metrics::counter::Counter::default(),
        );
        let a: IpAddr = [10, 0, 0, 1].into();
        let mut t1 = g.admit(a).unwrap();
        t1.handshake_done();
        let mut t2 = g.admit(a).unwrap();
        t2.handshake_done();
        assert_eq!(g.admit(a).err(), Some(Refused::PerIp));
        t1.handshake_again().unwrap();
        assert_eq!(t2.handshake_again().err(), Some(Refused::Handshakes), "one HELLO at a time from this address");
        t1.release_address();
        t2.release_address();
        assert_eq!(g.open(), 2, "established tunnels still count against the total");
        let mut c = g.admit(a).unwrap();
        c.handshake_done();
        let d = g.admit(a).unwrap();
        assert_eq!(g.admit(a).err(), Some(Refused::Total));
        drop(t1);
        drop(t2);
        drop(c);
        drop(d);
        assert_eq!(g.open(), 0);
        assert!(crate::sync::lock(&g.counts).per_ip.is_empty());
    }

    #[test]
    fn the_caps_fit_the_descriptor_limit() {
        let caps = |web, proxy| FittedCaps { web, proxy };
        assert_eq!(fit_connections(20_000, 1_048_576), caps(20_000, 20_000));
        // The packaged unit's LimitNOFILE: (131,072 - 512) / 5 = 26,112 per fifth.
        assert_eq!(fit_connections(20_000, 131_072), caps(20_000, 20_000));
        // A hard limit of 20,000 still takes 10,000 nodes.
        assert_eq!(fit_connections(20_000, 20_000), caps(11_691, 3_897), "(20,000 - 512) / 5 = 3,897");
        assert_eq!(fit_connections(20_000, 1024), caps(306, 102), "(1024 - 512) / 5 = 102");
        assert_eq!(fit_connections(20_000, 100), caps(1, 1), "never zero");
        assert_eq!(fit_connections(20_000, u64::MAX), caps(20_000, 20_000));
        // All listeners full leave the reserve.
        for nofile in [1024, 4096, 20_000, 65_536, 131_072] {
            let c = fit_connections(usize::MAX, nofile);
            let all = (c.web + 2 * c.proxy + ACME_HTTP_MAX_CONNECTIONS) as u64;
            assert!(all + RESERVED_FDS <= nofile, "{nofile}: {c:?}");
        }
    }

    #[test]
    fn caps_refuse_new_connections_and_free_their_places() {
        let refused = prometheus_client::metrics::counter::Counter::default();
        let g = Gate::new("test", ConnLimits { total: 5, per_ip: 3, handshakes_per_ip: 2 }, refused.clone());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut a1 = g.admit(a).unwrap();
        let _a2 = g.admit(a).unwrap();
        assert_eq!(g.admit(a).err(), Some(Refused::Handshakes), "two still in their handshake");
        a1.handshake_done();
        let _a3 = g.admit(a).unwrap();
        assert_eq!(g.admit(a).err(), Some(Refused::PerIp));
        let _b1 = g.admit(b).unwrap();
        let b2 = g.admit(b).unwrap();
        assert_eq!(g.admit([10, 0, 0, 3].into()).err(), Some(Refused::Total));
        drop(b2);
        assert_eq!(g.open(), 4);
        let _c = g.admit([10, 0, 0, 3].into()).unwrap();
        drop(a1);
        drop(_a2);
        drop(_a3);
        drop(_b1);
        drop(_c);
        assert_eq!(g.open(), 0);
        assert!(crate::sync::lock(&g.counts).per_ip.is_empty(), "no address is kept without a connection");
        assert_eq!(refused.get(), 3);
    }
}
