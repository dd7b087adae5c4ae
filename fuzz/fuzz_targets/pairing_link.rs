//! Pairing link (`traffix://pair?server=HOST:PORT&pin=HEX&code=CODE`) parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::node::state::PairLink;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = PairLink::parse(s);
});
