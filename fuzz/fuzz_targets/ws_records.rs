//! The tunnel's WebSocket reader over its own TLS 1.3 records, as a node or the server reads its
//! peer after the switch from rustls: `tunnel::ws` reading a `tunnel::record::RecordStream`
//! through `WsRead::poll_fill`, each record opened in the reader's own buffer and the frames
//! sliced from there (`tls_records` covers the plain `AsyncRead` path). Tags cannot be forged,
//! so the input describes records that a peer with the right keys seals (`TestPeer`), as in
//! `tls_records`: each is 1 byte of outer type (mapped: mostly 23), 1 byte of content type
//! (below 0x80: application data; else its low 7 bits), 1 byte of padding, 2 bytes big-endian
//! body length, the body. The bodies are the WebSocket bytes, split across records anywhere; a
//! body that starts with a KeyUpdate makes the peer move to its next keys after it. Byte 0 picks
//! the side (even: the server, which reads masked frames) and the read size (1 + byte0/2).
//! Nothing panics; the records give the reader no more plaintext than was sealed as data, and
//! the messages hold no more than that; the same records read in one piece give the same
//! messages and the same end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::tunnel::record::{Side, TestPeer};
use traffix::tunnel::ws::{TestWsRead, read_ws_from_test_peer};
use traffix::tunnel::wsframe::Msg;

/// Payload bytes of the messages read.
fn payload(r: &TestWsRead) -> usize {
    r.msgs
        .iter()
        .map(|m| match m {
            Msg::Binary(b) | Msg::Ping(b) => b.len(),
            Msg::Text | Msg::Pong | Msg::Close(_) => 0,
        })
        .sum()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let side = if mode % 2 == 0 { Side::Server } else { Side::Client };
    let mut peer = TestPeer::new();
    let mut wire = Vec::new();
    let mut sealed = 0usize;
    while let [outer, ct, pad, a, b, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len()).min(17_000);
        let (body, next) = tail.split_at(n);
        let outer = match outer % 8 {
            0 => *outer,
            _ => 23,
        };
        let ct = if *ct < 0x80 { 23 } else { *ct & 0x7f };
        wire.extend(peer.record(outer, body, ct, usize::from(*pad)));
        // A record without a content type of its own takes the body's last non-zero byte.
        if ct == 23 || ct == 0 {
            sealed += body.len();
        }
        if ct == 22 && body.first() == Some(&24) {
            peer.update();
        }
        rest = next;
    }
    wire.extend_from_slice(rest);
    let stepped = read_ws_from_test_peer(side, &wire, 1 + usize::from(mode / 2));
    let whole = read_ws_from_test_peer(side, &wire, wire.len());
    for r in [&stepped, &whole] {
        assert!(r.plain <= sealed, "{} bytes of plaintext from {sealed} sealed", r.plain);
        assert!(payload(r) <= r.plain);
    }
    assert_eq!(stepped.msgs, whole.msgs);
    assert_eq!(stepped.end.map(|e| e.to_string()), whole.end.map(|e| e.to_string()));
});
