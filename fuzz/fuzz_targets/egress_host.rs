//! Node egress policy (SECURITY.md §1): host spelling parser and the default policy's target check.
//! Input: two bytes of big-endian port, then the host as UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::egress::{EgressPolicy, Host, parse_host};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let port = u16::from_be_bytes([data[0], data[1]]);
    let Ok(host) = std::str::from_utf8(&data[2..]) else { return };
    let parsed = parse_host(host);
    let checked = EgressPolicy::default().check_target(host, port);
    if let Ok(h) = &checked {
        // Whatever the policy lets through must be what the host parser made of it.
        assert_eq!(Ok(h), parsed.as_ref(), "check_target and parse_host disagree on {host:?}");
        // A normalised name parses to itself.
        if let Host::Name(n) = h {
            assert_eq!(parse_host(n).as_ref(), Ok(h), "normalised name {n:?} does not re-parse to itself");
        }
    }
    if let Err(r) = &checked {
        let _ = (r.code(), r.to_string());
    }
});
