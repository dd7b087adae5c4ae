//! Node egress policy (SECURITY.md §1, SPEC.md "Egress policy on the node").
//!
//! Owns the pure decision "may a client reach this target through a node?": the blocked-port
//! list, the host-spelling rules (canonical literals only, zone ids, local names, malformed
//! names), the special-purpose address table (IPv4 and IPv6, including the embedded-IPv4 forms
//! `::ffff:0:0/96`, `::/96`, NAT64, 6to4 and Teredo; SIIT's `::ffff:0:0:0/96` refused whole),
//! the node's own networks and the Traffix server's own listeners.
//!
//! The caller drives the sequence from §1: [`EgressPolicy::check_target`] on the requested
//! host and port, resolve the name **once**, [`EgressPolicy::check_addr`] on **every**
//! resolved address, dial the checked IP literal (never the name again), and compare the
//! connected peer with the checked address.
//!
//! Must not: do I/O, resolve names, read the clock or log. It is std-only (no tokio, serde or
//! other crates) so that the same table can be mirrored by the Android core and checked
//! against the shared vectors in `tests/vectors/egress.json`. It relies on an explicit prefix
//! table, never on std's `is_private`/`is_global` helpers, which miss mapped, NAT64 and 6to4
//! forms (and `is_global` is unstable).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A target host after spelling checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A canonical IPv4 dotted quad or an IPv6 literal (brackets removed).
    Ip(IpAddr),
    /// A DNS name, lower-cased, without the trailing dot.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Why a target was refused. Display gives a short human reason (it is shown to clients and logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The port is on the blocked list (port 0 is always refused).
    BlockedPort(u16),
    /// The address lies in a special-purpose range; `range` is the CIDR text from the table
    /// (for embedded-IPv4 forms, the IPv4 range of the embedded address).
    SpecialRange { addr: IpAddr, range: &'static str },
    /// `localhost`, `*.localhost`, `*.local`, `*.home.arpa`, `*.internal`, `*.lan`.
    LocalName(String),
    /// Empty, too long, control characters, `%`, bad labels and similar.
    InvalidName(&'static str),
    /// A spelling an inet_aton-style parser would read as an address but which is not a
    /// canonical dotted quad (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`).
    NonCanonicalNumeric(String),
    /// An IPv6 literal with a zone id (`fe80::1%wlan0`).
    ZonedIpv6(String),
    /// One of the node's own addresses or networks (interfaces, on-link prefixes, gateway, DNS),
    /// or one of the server's own addresses (its interfaces, its `public_address`).
    OwnAddress(IpAddr),
    /// The Traffix server's own listener (a proxy loop).
    ServerListener(SocketAddr),
}

impl Refusal {
    /// Stable snake_case code, shared with the Android core and the test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BlockedPort(_) => "blocked_port",
            Refusal::SpecialRange { .. } => "special_range",
            Refusal::LocalName(_) => "local_name",
            Refusal::InvalidName(_) => "invalid_name",
            Refusal::NonCanonicalNumeric(_) => "non_canonical_numeric",
            Refusal::ZonedIpv6(_) => "zoned_ipv6",
            Refusal::OwnAddress(_) => "own_address",
            Refusal::ServerListener(_) => "server_listener",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Client-supplied strings are printed with `{:?}` so that nothing odd reaches a log
        // line or a client unescaped.
        match self {
            Refusal::BlockedPort(port) => write!(f, "port {port} is blocked by the egress policy"),
            Refusal::SpecialRange { addr, range } => {
                write!(f, "{addr} is in the special-purpose range {range}")
            }
            Refusal::LocalName(name) => write!(f, "{name:?} is a local name"),
            Refusal::InvalidName(why) => write!(f, "invalid host name: {why}"),
            Refusal::NonCanonicalNumeric(host) => {
                write!(f, "{host:?} is a non-canonical numeric address (use a dotted quad)")
            }
            Refusal::ZonedIpv6(host) => write!(f, "{host:?} is an IPv6 address with a zone id"),
            Refusal::OwnAddress(addr) => write!(f, "{addr} belongs to the node's or the server's own network"),
            Refusal::ServerListener(addr) => {
                write!(f, "{addr} is the Traffix server's own listener")
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// Ports denied by default, inclusive ranges [Tor default exit policy + mail submission].
pub const DEFAULT_BLOCKED_PORTS: &[(u16, u16)] = &[
    (25, 25),
    (465, 465),
    (587, 587),
    (119, 119),
    (563, 563),
    (135, 139),
    (445, 445),
    (1214, 1214),
    (4661, 4666),
    (6346, 6429),
    (6699, 6699),
    (6881, 6999),
];

/// The allow-list an operator may narrow to for untrusted clients (SECURITY.md §1).
/// Turn it into [`EgressPolicy::blocked_ports`] with [`blocked_ports_except`].
pub const UNTRUSTED_CLIENT_PORTS: &[u16] = &[80, 443, 8080, 8443];

/// The blocked-port ranges that leave exactly `allowed` open (port 0 is refused regardless).
pub fn blocked_ports_except(allowed: &[u16]) -> Vec<(u16, u16)> {
    let mut open: Vec<u16> = allowed.iter().copied().filter(|&p| p != 0).collect();
    open.sort_unstable();
    open.dedup();
    let mut ranges = Vec::with_capacity(open.len() + 1);
    let mut next: u16 = 1;
    let mut done = false;
    for port in open {
        if port > next {
            ranges.push((next, port - 1));
        }
        match port.checked_add(1) {
            Some(n) => next = n,
            None => done = true,
        }
    }
    if !done {
        ranges.push((next, u16::MAX));
    }
    ranges
}

/// The node's egress policy. Build it from config plus the node's current interface state.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    /// Tests on one machine only: lifts the special-range, own-network and local-name checks.
    pub allow_private_targets: bool,
    /// Inclusive port ranges that are refused. Port 0 is refused even if not listed.
    pub blocked_ports: Vec<(u16, u16)>,
    /// Networks (addr, prefix_len) of the node itself: interface addresses, on-link prefixes, gateway, DNS servers,
    /// and the server's addresses; on the server, its own interface and public addresses.
    /// A prefix length above 32 (IPv4) or 128 (IPv6) is read as a single address.
    pub own_networks: Vec<(IpAddr, u8)>,
    /// The Traffix server's own listeners (never reachable through a node, even with allow_private_targets).
    pub server_endpoints: Vec<SocketAddr>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy {
            allow_private_targets: false,
            blocked_ports: DEFAULT_BLOCKED_PORTS.to_vec(),
            own_networks: Vec::new(),
            server_endpoints: Vec::new(),
        }
    }
}

impl EgressPolicy {
    /// Before resolution: port check and host spelling check. Returns the parsed host (literal IP or normalised lower-case name without trailing dot).
    /// Literal IPs are also checked with check_ip here (and against the server's listeners).
    /// Local names refused unless allow_private_targets.
    ///
    /// The port is checked first, so a blocked port is reported even for a bad host.
    pub fn check_target(&self, host: &str, port: u16) -> Result<Host, Refusal> {
        self.check_port(port)?;
        let parsed = parse_host(host)?;
        match &parsed {
            Host::Ip(ip) => self.check_addr(SocketAddr::new(*ip, port))?,
            Host::Name(name) => {
                if !self.allow_private_targets && is_local_name(name) {
                    return Err(Refusal::LocalName(name.clone()));
                }
            }
        }
        Ok(parsed)
    }

    /// After resolution: every resolved address must pass; also used to compare the connected peer.
    /// Order: port, server listener, then [`EgressPolicy::check_ip`].
    pub fn check_addr(&self, addr: SocketAddr) -> Result<(), Refusal> {
        self.check_port(addr.port())?;
        if let Some(listener) =
            self.server_endpoints.iter().find(|ep| ep.port() == addr.port() && same_host(addr.ip(), ep.ip()))
        {
            return Err(Refusal::ServerListener(*listener));
        }
        self.check_ip(addr.ip())
    }

    /// Special ranges and the node's own networks; both are lifted by `allow_private_targets`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allow_private_targets {
            return Ok(());
        }
        if let Some(range) = special_range(ip) {
            return Err(Refusal::SpecialRange { addr: ip, range });
        }
        if self.own_networks.iter().any(|&(net, len)| in_own_network(ip, net, len)) {
            return Err(Refusal::OwnAddress(ip));
        }
        Ok(())
    }

    fn check_port(&self, port: u16) -> Result<(), Refusal> {
        let blocked = port == 0 || self.blocked_ports.iter().any(|&(lo, hi)| lo <= port && port <= hi);
        if blocked { Err(Refusal::BlockedPort(port)) } else { Ok(()) }
    }
}

/// Longest host spelling looked at: a 253-byte name plus a trailing dot, or a bracketed literal.
const MAX_HOST_LEN: usize = 255;
/// RFC 1035 limits, without the trailing dot.
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Parse a host spelling: canonical dotted quad or RFC 5952-parsable IPv6 (brackets allowed, e.g. "[::1]") → Host::Ip;
/// anything an inet_aton-style parser would read as a number but is not a canonical dotted quad → NonCanonicalNumeric;
/// zone ids → ZonedIpv6; otherwise validated DNS name → Host::Name (lower-cased, trailing dot removed).
///
/// "Read as a number" follows the WHATWG URL host parser: the last dot-separated part (after
/// dropping one empty part left by a trailing dot) is all decimal digits or `0x`/`0X` followed
/// by hex digits. Every string glibc's inet_aton accepts either ends that way or carries
/// trailing whitespace (refused as an invalid name), and no DNS top-level label is numeric, so
/// nothing legitimate is lost.
pub fn parse_host(host: &str) -> Result<Host, Refusal> {
    if host.is_empty() {
        return Err(Refusal::InvalidName("empty"));
    }
    if host.len() > MAX_HOST_LEN {
        return Err(Refusal::InvalidName("too long"));
    }
    if host.bytes().any(|b| b.is_ascii_control()) {
        return Err(Refusal::InvalidName("control character"));
    }
    if let Some(rest) = host.strip_prefix('[') {
        let inner = rest.strip_suffix(']').ok_or(Refusal::InvalidName("unbalanced bracket"))?;
        return parse_ipv6_literal(host, inner);
    }
    if host.contains('%') || host.contains(':') {
        return parse_ipv6_literal(host, host);
    }
    if ends_in_number(host) {
        return parse_canonical_ipv4(host)
            .map(|v4| Host::Ip(IpAddr::V4(v4)))
            .ok_or_else(|| Refusal::NonCanonicalNumeric(host.to_owned()));
    }
    parse_name(host).map(Host::Name)
}

/// `inner` is the literal without brackets; `original` is what the client sent.
fn parse_ipv6_literal(original: &str, inner: &str) -> Result<Host, Refusal> {
    if let Some((addr, _zone)) = inner.split_once('%') {
        return if addr.parse::<Ipv6Addr>().is_ok() {
            Err(Refusal::ZonedIpv6(original.to_owned()))
        } else if addr.contains(':') {
            Err(Refusal::InvalidName("malformed IPv6 literal"))
        } else {
            Err(Refusal::InvalidName("'%' in name"))
        };
    }
    inner
        .parse::<Ipv6Addr>()
        .map(|v6| Host::Ip(IpAddr::V6(v6)))
        .map_err(|_| Refusal::InvalidName("malformed IPv6 literal"))
}

fn ends_in_number(host: &str) -> bool {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let last = trimmed.rsplit('.').next().unwrap_or(trimmed);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last.strip_prefix("0x").or_else(|| last.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// Exactly four decimal parts 0..=255, no leading zeros, no trailing dot.
fn parse_canonical_ipv4(host: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = host.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        let well_formed = !part.is_empty()
            && part.len() <= 3
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'));
        if !well_formed {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// Letters, digits, `-` and `_` (seen in real host names); labels 1..=63 bytes not starting or
/// ending with `-`; at most 253 bytes without the trailing dot. IDNs must arrive as A-labels.
fn parse_name(host: &str) -> Result<String, Refusal> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Err(Refusal::InvalidName("empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Refusal::InvalidName("too long"));
    }
    if host.contains('%') {
        return Err(Refusal::InvalidName("'%' in name"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(Refusal::InvalidName("empty label"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(Refusal::InvalidName("label too long"));
        }
        if !label.is_ascii() {
            return Err(Refusal::InvalidName("non-ASCII character"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(Refusal::InvalidName("invalid character"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Refusal::InvalidName("label starts or ends with '-'"));
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// Special-use names that resolve on the node's own network (RFC 6761, 6762, 8375, ICANN
/// `.internal`, and the common home-router `.lan`). The zone apex itself counts too.
const LOCAL_SUFFIXES: &[&str] = &["localhost", "local", "home.arpa", "internal", "lan"];

/// True for `localhost`, `*.localhost`, `*.local`, `*.home.arpa`, `*.internal`, `*.lan`
/// (case-insensitive, with or without a trailing dot).
pub fn is_local_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    LOCAL_SUFFIXES
        .iter()
        .any(|suffix| name == *suffix || name.strip_suffix(suffix).is_some_and(|head| head.ends_with('.')))
}

struct V4Range {
    net: Ipv4Addr,
    len: u8,
    text: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, text: &'static str) -> V4Range {
    V4Range { net: Ipv4Addr::new(a, b, c, d), len, text }
}

/// IPv4 special-purpose ranges, SECURITY.md §1. First match wins, so the /32 broadcast comes
/// before 240.0.0.0/4 to be reported by name.
const SPECIAL_V4: &[V4Range] = &[
    v4(0, 0, 0, 0, 8, "0.0.0.0/8"),
    v4(10, 0, 0, 0, 8, "10.0.0.0/8"),
    v4(100, 64, 0, 0, 10, "100.64.0.0/10"),
    v4(127, 0, 0, 0, 8, "127.0.0.0/8"),
    v4(169, 254, 0, 0, 16, "169.254.0.0/16"),
    v4(172, 16, 0, 0, 12, "172.16.0.0/12"),
    v4(192, 0, 0, 0, 24, "192.0.0.0/24"),
    v4(192, 0, 2, 0, 24, "192.0.2.0/24"),
    v4(192, 31, 196, 0, 24, "192.31.196.0/24"),
    v4(192, 52, 193, 0, 24, "192.52.193.0/24"),
    v4(192, 88, 99, 0, 24, "192.88.99.0/24"),
    v4(192, 168, 0, 0, 16, "192.168.0.0/16"),
    v4(192, 175, 48, 0, 24, "192.175.48.0/24"),
    // 198.18.0.0/15, not 192.18 (a common typo).
    v4(198, 18, 0, 0, 15, "198.18.0.0/15"),
    v4(198, 51, 100, 0, 24, "198.51.100.0/24"),
    v4(203, 0, 113, 0, 24, "203.0.113.0/24"),
    v4(224, 0, 0, 0, 4, "224.0.0.0/4"),
    v4(255, 255, 255, 255, 32, "255.255.255.255/32"),
    v4(240, 0, 0, 0, 4, "240.0.0.0/4"),
];

#[derive(Clone, Copy)]
enum V6Rule {
    /// Refused whole.
    Refuse,
    /// `::ffff:0:0/96`, `::/96`, `64:ff9b::/96`: decide on the IPv4 in the last 32 bits.
    EmbeddedLast32,
    /// `2002::/16`: decide on the IPv4 in bits 16..48.
    SixToFour,
    /// `2001::/32`: report the client IPv4's range if it has one, else fall through to
    /// `2001::/23`, which is refused whole.
    Teredo,
}

struct V6Range {
    net: Ipv6Addr,
    len: u8,
    text: &'static str,
    rule: V6Rule,
}

const fn v6(segments: [u16; 8], len: u8, text: &'static str, rule: V6Rule) -> V6Range {
    let [a, b, c, d, e, f, g, h] = segments;
    V6Range { net: Ipv6Addr::new(a, b, c, d, e, f, g, h), len, text, rule }
}

/// IPv6 special-purpose ranges, SECURITY.md §1. First match wins: `::/128` and `::1/128`
/// before `::/96`, Teredo `2001::/32` before `2001::/23`.
const SPECIAL_V6: &[V6Range] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "::/128", V6Rule::Refuse),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "::1/128", V6Rule::Refuse),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "::ffff:0:0/96", V6Rule::EmbeddedLast32),
    // IPv4-translated (SIIT, RFC 6052 §2.1 / RFC 2765): a translator would deliver it to the
    // embedded IPv4. No public target needs this spelling, so it is refused whole.
    v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96, "::ffff:0:0:0/96", V6Rule::Refuse),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, "::/96", V6Rule::EmbeddedLast32),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "64:ff9b::/96", V6Rule::EmbeddedLast32),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "64:ff9b:1::/48", V6Rule::Refuse),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "100::/64", V6Rule::Refuse),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "2001::/32", V6Rule::Teredo),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "2001::/23", V6Rule::Refuse),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "2001:db8::/32", V6Rule::Refuse),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "3fff::/20", V6Rule::Refuse),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "2002::/16", V6Rule::SixToFour),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "5f00::/16", V6Rule::Refuse),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "fc00::/7", V6Rule::Refuse),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "fe80::/10", V6Rule::Refuse),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "fec0::/10", V6Rule::Refuse),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "ff00::/8", V6Rule::Refuse),
];

/// The special-purpose range containing `ip`, or `None` if the address is public.
///
/// Embedded IPv4 is decoded and re-checked for `::ffff:0:0/96` (mapped), `::/96`
/// (compatible), `64:ff9b::/96` (NAT64, the normal path on IPv6-only mobile networks) and
/// `2002::/16` (6to4, IPv4 in bits 16..48): these are allowed when the embedded IPv4 is public
/// and otherwise report the embedded address's IPv4 range (e.g. `127.0.0.0/8` for
/// `::ffff:127.0.0.1`). Teredo `2001::/32` reports the client IPv4's range (last 32 bits XOR
/// `0xffffffff`) when it has one; every other address in `2001::/23`, Teredo with a public
/// client included, reports `2001::/23`. `64:ff9b:1::/48` and the IPv4-translated (SIIT)
/// `::ffff:0:0:0/96` are refused whole.
/// `::` and `::1` report `::/128` and `::1/128`; other `::/96` addresses are IPv4-compatible.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_range_v4(v4),
        IpAddr::V6(v6) => special_range_v6(v6),
    }
}

fn special_range_v4(ip: Ipv4Addr) -> Option<&'static str> {
    SPECIAL_V4.iter().find(|r| v4_in(ip, r.net, r.len)).map(|r| r.text)
}

fn special_range_v6(ip: Ipv6Addr) -> Option<&'static str> {
    for range in SPECIAL_V6 {
        if !v6_in(ip, range.net, range.len) {
            continue;
        }
        match range.rule {
            V6Rule::Refuse => return Some(range.text),
            V6Rule::EmbeddedLast32 => return special_range_v4(last32(ip)),
            V6Rule::SixToFour => return special_range_v4(six_to_four_v4(ip)),
            V6Rule::Teredo => {
                if let Some(text) = special_range_v4(teredo_client_v4(ip)) {
                    return Some(text);
                }
            }
        }
    }
    None
}

fn last32(ip: Ipv6Addr) -> Ipv4Addr {
    // Truncation keeps exactly the low 32 bits.
    Ipv4Addr::from(ip.to_bits() as u32)
}

fn six_to_four_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((ip.to_bits() >> 80) as u32)
}

fn teredo_client_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from(!(ip.to_bits() as u32))
}

/// The IPv4 address a packet to `ip` ends up at, for the embedded forms of the table.
/// `::` and `::1` are not read as IPv4-compatible.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    let top96 = bits >> 32;
    let mapped = top96 == 0xffff;
    let compat = top96 == 0 && bits > 1;
    let nat64 = top96 == 0x0064_ff9b_0000_0000_0000_0000;
    if mapped || compat || nat64 {
        Some(last32(ip))
    } else if bits >> 112 == 0x2002 {
        Some(six_to_four_v4(ip))
    } else if bits >> 96 == 0x2001_0000 {
        Some(teredo_client_v4(ip))
    } else {
        None
    }
}

fn v4_in(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
    ip.to_bits() & mask == net.to_bits() & mask
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
    ip.to_bits() & mask == net.to_bits() & mask
}

/// `ip` is inside the node's network `net/len`, also through an embedded IPv4 (NAT64
/// hairpin to the node's own public address) or an IPv4-mapped network entry.
fn in_own_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => v4_in(ip, net, len),
        (IpAddr::V6(ip), IpAddr::V6(net)) => v6_in(ip, net, len),
        (IpAddr::V6(ip), IpAddr::V4(net)) => embedded_v4(ip).is_some_and(|e| v4_in(e, net, len)),
        (IpAddr::V4(ip), IpAddr::V6(net)) => v6_in(ip.to_ipv6_mapped(), net, len),
    }
}

/// Same destination host: equal, or one is the other's embedded IPv4.
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    let as_v4 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => embedded_v4(v6),
    };
    a == b || matches!((as_v4(a), as_v4(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn table_texts_match_table_numbers() {
        for r in SPECIAL_V4 {
            let (addr, len) = r.text.split_once('/').expect("cidr");
            assert_eq!(addr.parse::<Ipv4Addr>().expect("v4"), r.net, "{}", r.text);
            assert_eq!(len.parse::<u8>().expect("len"), r.len, "{}", r.text);
            assert!(v4_in(r.net, r.net, r.len));
            let host_bits = r.net.to_bits() & !u32::MAX.checked_shl(32 - u32::from(r.len)).unwrap_or(0);
            assert_eq!(host_bits, 0, "{} has host bits set", r.text);
        }
        for r in SPECIAL_V6 {
            let (addr, len) = r.text.split_once('/').expect("cidr");
            assert_eq!(addr.parse::<Ipv6Addr>().expect("v6"), r.net, "{}", r.text);
            assert_eq!(len.parse::<u8>().expect("len"), r.len, "{}", r.text);
            let host_bits = r.net.to_bits() & !u128::MAX.checked_shl(128 - u32::from(r.len)).unwrap_or(0);
            assert_eq!(host_bits, 0, "{} has host bits set", r.text);
        }
    }

    #[test]
    fn special_range_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("198.18.0.0", Some("198.18.0.0/15")),
            ("198.19.255.255", Some("198.18.0.0/15")),
            ("192.18.0.1", None),
            ("255.255.255.255", Some("255.255.255.255/32")),
            ("255.255.255.254", Some("240.0.0.0/4")),
            ("::ffff:10.1.2.3", Some("10.0.0.0/8")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::7f00:1", Some("127.0.0.0/8")),
            ("64:ff9b::808:808", None),
            ("2002:c0a8:101::", Some("192.168.0.0/16")),
            ("2002:808:808::", None),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some("192.0.2.0/24")),
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", Some("2001::/23")),
            ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Some("2001::/23")),
            ("2001:200::", None),
            ("::", Some("::/128")),
            ("::1", Some("::1/128")),
            ("::2", Some("0.0.0.0/8")),
            ("2606:4700:4700::1111", None),
        ];
        for (addr, want) in cases {
            assert_eq!(special_range(ip(addr)), *want, "{addr}");
        }
    }

    #[test]
    fn parse_host_spellings() {
        let cases: &[(&str, Result<Host, &str>)] = &[
            ("127.0.0.1", Ok(Host::Ip(ip("127.0.0.1")))),
            ("[::1]", Ok(Host::Ip(ip("::1")))),
            ("Example.COM.", Ok(Host::Name("example.com".into()))),
            ("2130706433", Err("non_canonical_numeric")),
            ("0177.0.0.1", Err("non_canonical_numeric")),
            ("0x7f.1", Err("non_canonical_numeric")),
            ("127.1", Err("non_canonical_numeric")),
            ("127.0.0.1.", Err("non_canonical_numeric")),
            ("fe80::1%wlan0", Err("zoned_ipv6")),
            ("[fe80::1%25wlan0]", Err("zoned_ipv6")),
            ("%", Err("invalid_name")),
            ("a\0b", Err("invalid_name")),
            ("", Err("invalid_name")),
            ("[::1", Err("invalid_name")),
        ];
        for (host, want) in cases {
            let got = parse_host(host).map_err(|r| r.code());
            assert_eq!(&got, want, "{host:?}");
        }
    }

    #[test]
    fn allow_private_lifts_only_address_and_name_checks() {
        let policy = EgressPolicy {
            allow_private_targets: true,
            server_endpoints: vec!["127.0.0.1:8443".parse().expect("sockaddr")],
            ..EgressPolicy::default()
        };
        assert!(policy.check_target("127.0.0.1", 8080).is_ok());
        assert!(policy.check_target("localhost", 8080).is_ok());
        assert_eq!(
            policy.check_target("127.0.0.1", 8443),
            Err(Refusal::ServerListener("127.0.0.1:8443".parse().expect("sockaddr")))
        );
        assert_eq!(policy.check_target("::ffff:127.0.0.1", 8443).map_err(|r| r.code()), Err("server_listener"));
        assert_eq!(policy.check_target("127.0.0.1", 25), Err(Refusal::BlockedPort(25)));
        assert_eq!(policy.check_target("example.com", 0), Err(Refusal::BlockedPort(0)));
        assert_eq!(policy.check_target("127.1", 80).map_err(|r| r.code()), Err("non_canonical_numeric"));
    }

    #[test]
    fn own_networks_match_embedded_forms() {
        let policy = EgressPolicy {
            own_networks: vec![(ip("81.2.69.0"), 24), (ip("2a02:8109:1234:5600::"), 64)],
            ..EgressPolicy::default()
        };
        assert_eq!(policy.check_ip(ip("81.2.69.7")), Err(Refusal::OwnAddress(ip("81.2.69.7"))));
        assert!(policy.check_ip(ip("81.2.70.7")).is_ok());
        assert_eq!(policy.check_ip(ip("64:ff9b::5102:4507")).map_err(|r| r.code()), Err("own_address"));
        assert_eq!(policy.check_ip(ip("2a02:8109:1234:5600:1::9")).map_err(|r| r.code()), Err("own_address"));
        assert!(policy.check_ip(ip("2a02:8109:1234:5601::9")).is_ok());
    }

    #[test]
    fn port_allow_list() {
        assert_eq!(
            blocked_ports_except(UNTRUSTED_CLIENT_PORTS),
            vec![(1, 79), (81, 442), (444, 8079), (8081, 8442), (8444, 65535)]
        );
        assert_eq!(blocked_ports_except(&[65535, 1]), vec![(2, 65534)]);
        assert_eq!(blocked_ports_except(&[]), vec![(1, 65535)]);
        let policy =
            EgressPolicy { blocked_ports: blocked_ports_except(UNTRUSTED_CLIENT_PORTS), ..EgressPolicy::default() };
        assert!(policy.check_target("example.com", 8443).is_ok());
        assert_eq!(policy.check_target("example.com", 22), Err(Refusal::BlockedPort(22)));
    }

    #[test]
    fn display_escapes_client_text() {
        let r = Refusal::NonCanonicalNumeric("0x7f.1".into());
        assert_eq!(r.to_string(), "\"0x7f.1\" is a non-canonical numeric address (use a dotted quad)");
        let r = Refusal::SpecialRange { addr: ip("10.0.0.1"), range: "10.0.0.0/8" };
        assert_eq!(r.to_string(), "10.0.0.1 is in the special-purpose range 10.0.0.0/8");
    }
}
