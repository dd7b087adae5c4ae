//! Proxy username grammar (SPEC.md "Proxy credentials and targeting").
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::relay::username::{parse, parse_bytes};

fuzz_target!(|data: &[u8]| {
    let from_bytes = parse_bytes(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let from_str = parse(s);
        assert_eq!(from_str, from_bytes, "parse and parse_bytes disagree");
        if let Ok(t) = &from_str {
            let _ = (t.session_ttl(), t.country_code());
        }
    }
    if let Err(e) = &from_bytes {
        let _ = (e.code(), e.to_string());
    }
});
