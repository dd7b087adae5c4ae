//! The tunnel's WebSocket framing as it reads the network after the upgrade: byte 0 picks the
//! side (0 mod 4: the server, reading a node's masked frames; 2 mod 4: a server that accepted
//! `x-traffix-unmasked`; odd: a node, reading the server's) and how the rest arrives (split
//! into reads of 1 + byte0/4 bytes). Nothing panics; the
//! decoder never buffers past its limits; a message split anywhere decodes as when it arrives
//! whole.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use traffix::tunnel::wsframe::{Decoder, Msg, Role};

const MAX_FRAME: usize = 64 * 1024;
const MAX_MESSAGE: usize = 128 * 1024;

fn run(role: Role, unmasked: bool, data: &[u8], step: usize) -> (Vec<Msg>, bool) {
    let mut d = Decoder::new(role, MAX_FRAME, MAX_MESSAGE);
    if unmasked {
        d.accept_unmasked();
    }
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => {
                    if let Msg::Binary(b) = &m {
                        assert!(b.len() <= MAX_MESSAGE);
                    }
                    out.push(m);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
        assert!(d.needed() > buf.len() || buf.is_empty(), "asked for no more than it holds");
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&b0, rest)) = data.split_first() else { return };
    let role = if b0 % 2 == 0 { Role::Server } else { Role::Client };
    let unmasked = b0 % 4 == 2;
    let whole = run(role, unmasked, rest, rest.len().max(1));
    let split = run(role, unmasked, rest, 1 + usize::from(b0 / 4));
    assert_eq!(whole, split, "the same bytes in other reads decode the same");
});
