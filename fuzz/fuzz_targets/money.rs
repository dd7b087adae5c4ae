//! Money amounts: `Micros::parse` never panics, and what it accepts prints back to text that
//! parses to the same amount.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::money::Micros;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Micros::parse(s) {
        let printed = m.to_string();
        assert_eq!(Micros::parse(&printed), Ok(m), "{s:?} parsed to {m:?}, printed as {printed:?}");
    }
});
