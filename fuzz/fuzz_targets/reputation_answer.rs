//! What the optional IP-reputation lookup reads from the network: the service's answer, with
//! the JSON pointer the operator configured (`[watchdog] reputation_pointer`). Nothing panics;
//! a risk that parses is a finite number from 0 to 100.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::watchdog::reputation::parse_risk;

fuzz_target!(|data: &[u8]| {
    // 1 byte N, N bytes of pointer, then the answer's body.
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n).min(rest.len());
    let (pointer, body) = rest.split_at(n);
    let pointer = String::from_utf8_lossy(pointer);
    if let Ok(risk) = parse_risk(body, &pointer) {
        assert!(risk.is_finite() && (0.0..=100.0).contains(&risk), "{risk}");
    }
});
