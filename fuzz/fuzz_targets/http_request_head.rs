//! HTTP proxy front-end parsers: request head, absolute URI, authority, Basic credentials,
//! chunk-size lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::proxy::http::{basic_credentials, chunk_size, parse_absolute_uri, parse_authority, parse_request_head};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, n))) = parse_request_head(data) {
        assert!(n <= data.len(), "consumed {n} of {} bytes", data.len());
        let _ = head.keep_alive();
        if let Some(v) = head.header("proxy-authorization") {
            let _ = basic_credentials(v);
        }
        // What the front-end does with the request target.
        if head.method.eq_ignore_ascii_case("CONNECT") {
            let _ = parse_authority(&head.target, None);
        } else {
            let _ = parse_absolute_uri(&head.target);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_absolute_uri(s);
        let _ = parse_authority(s, Some(80));
        let _ = parse_authority(s, None);
    }
    let _ = basic_credentials(data);
    if let Some(n) = chunk_size(data) {
        assert!(n.checked_add(2).is_some(), "a chunk size leaves room for its CRLF");
    }
});
