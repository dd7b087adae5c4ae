//! `traffix.toml` loading: TOML parse, typed deserialisation and validation.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use traffix::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Err(e) = Config::from_str_with_env(s, Path::new("fuzz.toml"), Path::new("/tmp"), std::iter::empty()) {
        let _ = e.to_string();
    }
});
