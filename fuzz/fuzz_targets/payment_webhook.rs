//! Payment webhooks: the generic webhook's `X-Traffix-Signature` header and JSON body, Crypto
//! Pay's signature, update and API answers. Input: one byte N, then N bytes of header, then the
//! body. Nothing panics; a parsed body is within the rules; a body signed with its own
//! timestamp verifies and a changed one does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::money::Micros;
use traffix::payments::{cryptopay, generic, signature};

const MAX_CREDIT: Micros = Micros(1_000_000_000_000);
const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let (header, body) = rest.split_at(usize::from(n).min(rest.len()));

    if let Ok(sig) = signature::parse_generic_header(header) {
        assert!(!sig.v1.is_empty() && sig.v1.len() <= 4);
    }
    if let Err(e) = signature::verify_generic(b"fuzz-secret", Some(header), body, NOW) {
        let _ = (e.code(), e.to_string());
    }
    let _ = signature::verify_cryptopay("1:fuzz", Some(header), body);

    let h = format!("t={NOW},v1={}", signature::sign_generic(b"fuzz-secret", NOW, body));
    assert_eq!(signature::verify_generic(b"fuzz-secret", Some(h.as_bytes()), body, NOW), Ok(NOW));
    let mut changed = body.to_vec();
    changed.push(b' ');
    assert!(signature::verify_generic(b"fuzz-secret", Some(h.as_bytes()), &changed, NOW).is_err());

    match generic::parse_body(body, "USD", MAX_CREDIT) {
        Ok(p) => {
            assert!(p.amount.0 > 0 && p.amount <= MAX_CREDIT && p.currency == "USD");
            assert!(traffix::store::valid_external_id(&p.id));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(Some((_, inv))) = cryptopay::parse_update(body) {
        let _ = cryptopay::verdict(&inv, Micros(5_000_000), "USD");
        let _ = inv.pay_url();
    }
    let _ = cryptopay::parse_answer::<cryptopay::InvoiceList>(200, body);
    let _ = cryptopay::parse_answer::<cryptopay::RemoteInvoice>(200, body);
});
