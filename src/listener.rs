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

/// `max_connections` per listener such that `listeners` full listeners still leave
/// [`RESERVED_FDS`] descriptors free under a soft limit of `nofile`.
pub fn fit_connections(max_connections: usize, listeners: u64, nofile: u64) -> usize {
    let room = nofile.saturating_sub(RESERVED_FDS) / listeners.max(1);
    max_connections.min(usize::try_from(room).unwrap_or(usize::MAX)).max(1)
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
            None => Ok(Admitted { gate: self.clone(), ip, in_handshake: true }),
            Some(r) => {
                self.refused.inc();
                if self.refusals.admit_now("refused connections") {
                    tracing::warn!(listener = self.name, %ip, reason = r.as_str(), "connection refused");
                }
                Err(r)
            }
        }
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

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = crate::sync::lock(&self.gate.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(e) = c.per_ip.get_mut(&self.ip) {
            e.0 = e.0.saturating_sub(1);
            if self.in_handshake {
                e.1 = e.1.saturating_sub(1);
            }
            if e.0 == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_fit_the_descriptor_limit() {
        assert_eq!(fit_connections(20_000, 3, 1_048_576), 20_000);
        assert_eq!(fit_connections(20_000, 3, 1024), 256, "(1024 - 256) / 3");
        assert_eq!(fit_connections(20_000, 3, 100), 1, "never zero");
        assert_eq!(fit_connections(20_000, 3, u64::MAX), 20_000);
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
