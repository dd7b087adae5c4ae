//! Runs the shared egress vectors (`tests/vectors/egress.json`, SECURITY.md §1) against
//! `egress`. The same file is meant to be run by the Android core, so its shape is
//! language-neutral: every case is checked and all mismatches are reported together.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use serde_json::Value;
use traffix::egress::{self, EgressPolicy, Host, Refusal};

fn load() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/egress.json");
    let text = std::fs::read_to_string(path).expect("read tests/vectors/egress.json");
    serde_json::from_str(&text).expect("tests/vectors/egress.json is valid JSON")
}

fn field<'a>(case: &'a Value, key: &str) -> &'a Value {
    case.get(key).unwrap_or_else(|| panic!("case {case} lacks {key:?}"))
}

fn str_field<'a>(case: &'a Value, key: &str) -> &'a str {
    field(case, key).as_str().unwrap_or_else(|| panic!("{key:?} is not a string in {case}"))
}

fn bool_field(case: &Value, key: &str) -> bool {
    field(case, key).as_bool().unwrap_or_else(|| panic!("{key:?} is not a bool in {case}"))
}

fn port_field(case: &Value) -> u16 {
    field(case, "port").as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or_else(|| panic!("bad port in {case}"))
}

fn list<'a>(doc: &'a Value, key: &str) -> &'a [Value] {
    field(doc, key).as_array().unwrap_or_else(|| panic!("{key:?} is not an array"))
}

fn parse_network(text: &str) -> (IpAddr, u8) {
    let (addr, len) = text.split_once('/').unwrap_or_else(|| panic!("{text:?} is not CIDR"));
    (
        addr.parse().unwrap_or_else(|_| panic!("bad address in {text:?}")),
        len.parse().unwrap_or_else(|_| panic!("bad prefix in {text:?}")),
    )
}

fn strings(case: &Value, key: &str) -> Vec<String> {
    field(case, key)
        .as_array()
        .unwrap_or_else(|| panic!("{key:?} is not an array in {case}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("non-string in {key:?}")).to_owned())
        .collect()
}

fn range_of(refusal: &Refusal) -> Option<&'static str> {
    match refusal {
        Refusal::SpecialRange { range, .. } => Some(range),
        _ => None,
    }
}

/// Compares one outcome with the case; returns a description of the mismatch, if any.
fn judge(case: &Value, outcome: Result<Option<Host>, Refusal>) -> Option<String> {
    let name = str_field(case, "name");
    let expect = str_field(case, "expect");
    match (expect, &outcome) {
        ("allow", Ok(host)) => {
            let want = case.get("normalized").and_then(Value::as_str)?;
            let got = host.as_ref().map(ToString::to_string);
            (got.as_deref() != Some(want)).then(|| format!("{name}: normalized to {got:?}, expected {want:?}"))
        }
        ("refuse", Err(refusal)) => {
            let code = str_field(case, "code");
            if refusal.code() != code {
                return Some(format!("{name}: refused as {} ({refusal}), expected {code}", refusal.code()));
            }
            if refusal.to_string().is_empty() {
                return Some(format!("{name}: empty Display"));
            }
            let want_range = case.get("range").and_then(Value::as_str);
            (want_range.is_some() && want_range != range_of(refusal))
                .then(|| format!("{name}: range {:?}, expected {want_range:?}", range_of(refusal)))
        }
        ("allow", Err(refusal)) => Some(format!("{name}: refused ({refusal}), expected allow")),
        ("refuse", Ok(_)) => Some(format!("{name}: allowed, expected refuse")),
        (other, _) => Some(format!("{name}: unknown expect {other:?}")),
    }
}

fn policy(allow_private_targets: bool) -> EgressPolicy {
    EgressPolicy { allow_private_targets, ..EgressPolicy::default() }
}

#[test]
fn vectors() {
    let doc = load();
    let mut failures = Vec::new();
    let mut names = BTreeSet::new();
    let mut ranges_seen = BTreeSet::new();
    let mut codes_seen = BTreeSet::new();

    let mut record = |case: &Value, outcome: Result<Option<Host>, Refusal>| {
        let name = str_field(case, "name").to_owned();
        if let Err(refusal) = &outcome {
            codes_seen.insert(refusal.code());
            if let Some(range) = range_of(refusal) {
                ranges_seen.insert(range);
            }
        }
        failures.extend(judge(case, outcome));
        if !names.insert(name.clone()) {
            failures.push(format!("duplicate case name {name:?}"));
        }
    };

    let cases = list(&doc, "cases");
    for case in cases {
        let policy = policy(bool_field(case, "allow_private_targets"));
        let outcome = policy.check_target(str_field(case, "host"), port_field(case)).map(Some);
        record(case, outcome);
    }

    let address_cases = list(&doc, "address_cases");
    for case in address_cases {
        let policy = policy(bool_field(case, "allow_private_targets"));
        let addr: IpAddr = str_field(case, "addr").parse().unwrap_or_else(|_| panic!("bad addr in {case}"));
        record(case, policy.check_ip(addr).map(|()| None));
    }

    let own_cases = list(&doc, "own_network_cases");
    for case in own_cases {
        let policy = EgressPolicy {
            own_networks: strings(case, "own_networks").iter().map(|n| parse_network(n)).collect(),
            server_endpoints: strings(case, "server_endpoints")
                .iter()
                .map(|e| e.parse::<SocketAddr>().unwrap_or_else(|_| panic!("bad endpoint {e:?}")))
                .collect(),
            ..policy(bool_field(case, "allow_private_targets"))
        };
        let outcome = policy.check_target(str_field(case, "host"), port_field(case)).map(Some);
        record(case, outcome);
    }

    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        cases.len() + address_cases.len() + own_cases.len(),
        failures.join("\n")
    );

    // The vectors themselves must keep covering every refusal and every §1 range.
    let all_codes = [
        "blocked_port",
        "special_range",
        "local_name",
        "invalid_name",
        "non_canonical_numeric",
        "zoned_ipv6",
        "own_address",
        "server_listener",
    ];
    for code in all_codes {
        assert!(codes_seen.contains(code), "no vector is refused as {code}");
    }
    let section_1_ranges = [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.31.196.0/24",
        "192.52.193.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "192.175.48.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    ];
    for range in section_1_ranges {
        assert!(ranges_seen.contains(range), "no vector is refused in {range}");
    }
}

#[test]
fn every_default_blocked_port_range_is_in_the_vectors() {
    let doc = load();
    let refused_ports: BTreeSet<u16> = list(&doc, "cases")
        .iter()
        .filter(|c| c.get("code").and_then(Value::as_str) == Some("blocked_port"))
        .map(port_field)
        .collect();
    for &(lo, hi) in egress::DEFAULT_BLOCKED_PORTS {
        assert!(refused_ports.contains(&lo), "no vector refuses port {lo}");
        assert!(refused_ports.contains(&hi), "no vector refuses port {hi}");
    }
}
