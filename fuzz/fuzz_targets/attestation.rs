//! Android Key Attestation (docs/trust.md): the strict DER reader of the KeyDescription
//! extension, and whole chains through `trust::verify` against Google's roots.
//! Input: byte 0 picks the mode; even: the rest is a KeyDescription; odd: the rest is a chain of
//! certificates, each a 2-byte big-endian length and that many bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::trust::{self, Level, Policy, key_description};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(d) = key_description::parse(rest) {
            // What parsed is bounded by the input.
            assert!(d.challenge.len() <= rest.len());
            let app = d.application.unwrap_or_default();
            assert!(app.packages.len() <= 32 && app.signature_digests.len() <= 32);
        }
        return;
    }
    let mut chain = Vec::new();
    let mut at = rest;
    while at.len() >= 2 && chain.len() < 10 {
        let n = usize::from(u16::from_be_bytes([at[0], at[1]]));
        let end = (2 + n).min(at.len());
        chain.push(at[2..end].to_vec());
        at = &at[end..];
    }
    let policy = Policy {
        root_keys: trust::root_keys_from_pem(trust::GOOGLE_ROOTS_PEM).expect("bundled roots"),
        packages: vec!["net.traffix.node".into()],
        ..Policy::default()
    };
    let v = trust::verify(&chain, &[7; 32], &[4; 65], &policy, 1_800_000_000);
    // Nobody forges a chain to Google's roots for our device key and challenge.
    assert_ne!(v.level, Level::Hardware);
    assert_eq!(v.level == Level::None, chain.is_empty());
    assert!(v.reasons.len() <= 8);
});
