//! A tunnel's own TLS 1.3 record layer (`tunnel::record`) as it reads a peer after the switch
//! from rustls. Tags cannot be forged, so the input describes records that a peer with the
//! right keys seals (`TestPeer`): each is 1 byte of outer type (mapped: mostly 23), 1 byte of
//! content type, 1 byte of padding, 2 bytes big-endian body length, the body; a body that
//! starts with a KeyUpdate makes the peer move to its next keys after it. Byte 0 picks the side
//! (even: the server) and the read size (1 + byte0/2). Nothing panics; application data is
//! never more than was sealed; the same records read in one piece give the same data and error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::tunnel::record::{Side, TestPeer, read_from_test_peer};

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
        wire.extend(peer.record(outer, body, *ct, usize::from(*pad)));
        sealed += body.len();
        if *ct == 22 && body.first() == Some(&24) {
            peer.update();
        }
        rest = next;
    }
    wire.extend_from_slice(rest);
    let stepped = read_from_test_peer(side, &wire, 1 + usize::from(mode / 2));
    let whole = read_from_test_peer(side, &wire, wire.len());
    assert!(stepped.data.len() <= sealed);
    assert_eq!(stepped.data, whole.data);
    assert_eq!(stepped.closed, whole.closed);
    assert_eq!(stepped.error.map(|e| e.to_string()), whole.error.map(|e| e.to_string()));
});
