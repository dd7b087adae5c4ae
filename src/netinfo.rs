//! A machine's own addresses and networks, for the egress policy (SECURITY.md §1). The node
//! refuses its interface addresses, on-link prefixes, gateways and DNS servers
//! ([`own_networks`]); the server refuses its interface addresses only
//! ([`interface_addresses`]): other hosts of its subnet are legitimate targets. Read from Linux
//! `/proc` and `/etc/resolv.conf`; on other systems the lists are empty and the special-range
//! table still applies. A leaf: it imports nothing of the project.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// (network address, prefix length) pairs the node must never dial for a client.
pub fn own_networks() -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    if let Ok(route) = std::fs::read_to_string("/proc/net/route") {
        out.extend(parse_route(&route));
    }
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        out.extend(parse_fib_trie_locals(&trie).into_iter().map(|a| (IpAddr::V4(a), 32)));
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        out.extend(parse_if_inet6(&v6));
    }
    if let Ok(r) = std::fs::read_to_string("/etc/resolv.conf") {
        out.extend(parse_resolv(&r).into_iter().map(|ip| (ip, if ip.is_ipv4() { 32 } else { 128 })));
    }
    out.sort();
    out.dedup();
    out
}

/// The machine's own interface addresses (IPv4 `LOCAL` host entries and every IPv6 address),
/// each a single address: no on-link prefixes, gateways or DNS servers.
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        out.extend(parse_fib_trie_locals(&trie).into_iter().map(IpAddr::V4));
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        out.extend(parse_if_inet6_addresses(&v6).into_iter().map(IpAddr::V6));
    }
    out.sort();
    out.dedup();
    out
}

fn hex_le_v4(s: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(s, 16).ok().map(|v| Ipv4Addr::from(v.swap_bytes()))
}

/// Directly connected networks (gateway 0) and gateways from the IPv4 routing table.
fn parse_route(text: &str) -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Some(dest), Some(gw), Some(mask)) = (hex_le_v4(f[1]), hex_le_v4(f[2]), hex_le_v4(f[7])) else { continue };
        if !gw.is_unspecified() {
            out.push((IpAddr::V4(gw), 32));
        } else if !dest.is_unspecified() {
            out.push((IpAddr::V4(dest), u32::from(mask).count_ones() as u8));
        }
    }
    out
}

/// The node's own IPv4 addresses: `/32 host LOCAL` leaves of the FIB trie.
fn parse_fib_trie_locals(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last = rest.parse().ok();
        } else if t.contains("/32 host LOCAL")
            && let Some(a) = last
        {
            out.push(a);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The IPv6 addresses of `/proc/net/if_inet6`, without their prefixes.
fn parse_if_inet6_addresses(text: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|line| u128::from_str_radix(line.split_whitespace().next()?, 16).ok())
        .map(Ipv6Addr::from)
        .collect()
}

/// IPv6 addresses with their on-link prefix lengths.
fn parse_if_inet6(text: &str) -> Vec<(IpAddr, u8)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let raw = u128::from_str_radix(f.first()?, 16).ok()?;
            let plen = u8::from_str_radix(f.get(2)?, 16).ok()?;
            let addr = Ipv6Addr::from(raw);
            let net = if plen == 0 { 0 } else { raw & (u128::MAX << (128 - u32::from(plen.min(128)))) };
            Some([(IpAddr::V6(addr), 128), (IpAddr::V6(Ipv6Addr::from(net)), plen)])
        })
        .flatten()
        .collect()
}

fn parse_resolv(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|r| r.trim().split('%').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let r = parse_route(route);
        assert!(r.contains(&(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)), 32)));
        assert!(r.contains(&(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 0)), 24)));
        let trie = "Local:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 192.168.1.23\n        /32 host LOCAL\n     |-- 192.168.1.255\n        /32 link BROADCAST\n";
        assert_eq!(parse_fib_trie_locals(trie), vec![Ipv4Addr::new(192, 168, 1, 23)]);
        let v6 = "20010db8000000000000000000000001 02 40 00 80     eth0\n";
        let p = parse_if_inet6(v6);
        assert!(p.contains(&("2001:db8::".parse().unwrap(), 64)));
        assert_eq!(
            parse_resolv("# x\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\n"),
            vec!["10.0.0.53".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]
        );
    }

    /// The server's set: single interface addresses only, from both tables, each once.
    #[test]
    fn interface_addresses_are_single_addresses() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n        |-- 127.255.255.255\n           /32 link BROADCAST\n           |-- 192.0.2.0\n              /24 link UNICAST\n           |-- 192.0.2.2\n              /32 host LOCAL\nLocal:\n           |-- 127.0.0.1\n              /32 host LOCAL\n           |-- 192.0.2.2\n              /32 host LOCAL\n";
        assert_eq!(parse_fib_trie_locals(trie), vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]);
        let v6 = "00000000000000000000000000000001 01 80 10 80       lo\nfe8000000000000000fc00fffe000001 04 40 20 80     eth0\n2a0204b8000000000000000000000002 04 40 00 82     eth0\nnot-hex\n";
        let want: Vec<Ipv6Addr> =
            ["::1", "fe80::fc:ff:fe00:1", "2a02:4b8::2"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(parse_if_inet6_addresses(v6), want);
    }
}
