//! Tunnel frame decoder (`docs/protocol.md`): any message either decodes or is rejected with a
//! `ProtocolError`, never a panic; a frame that decodes re-encodes to bytes that decode to the
//! same frame (round-trip stability).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use traffix::tunnel::protocol::Frame;

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Frame::decode(Bytes::copy_from_slice(data)) else { return };
    let _ = (first.name(), first.stream());
    let encoded = first.encode();
    let second = Frame::decode(encoded.clone())
        .unwrap_or_else(|e| panic!("re-encoded {} frame does not decode: {e}\n  frame: {first:?}", first.name()));
    assert_eq!(second, first, "decode(encode(decode(x))) != decode(x); re-encoded bytes: {encoded:02x?}");
});
