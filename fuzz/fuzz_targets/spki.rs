//! Certificate pin extraction: the DER walk that finds the SubjectPublicKeyInfo.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::tls::spki_of_cert;

fuzz_target!(|data: &[u8]| {
    if let Ok(spki) = spki_of_cert(data) {
        // The SPKI is a sub-slice of the certificate.
        let start = spki.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + spki.len() <= data.len());
        assert_eq!(spki.first(), Some(&0x30));
    }
});
