//! What the Telegram bot reads from the network: a whole update (a webhook body, an item of
//! `getUpdates`), and the texts it parses by hand — a command line, an inline button's data, a
//! Stars invoice payload. Nothing panics; what parses prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::telegram::command::{self, Callback, StarsPayload};

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = traffix::telegram::parse_update(data) {
        let _ = u.id;
    }
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = command::parse(s, Some("traffix_bot"));
    if let Some(c) = Callback::parse(s) {
        assert!(c.data().len() <= 64);
        assert_eq!(Callback::parse(&c.data()), Some(c.clone()), "{s:?}");
    }
    if let Some(p) = StarsPayload::parse(s) {
        assert_eq!(StarsPayload::parse(&p.encode()), Some(p), "{s:?}");
    }
});
