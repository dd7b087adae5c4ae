//! What a GeoIP source sends (`traffix geoip update`): MaxMind's `.sha256` line, DB-IP's
//! `.mmdb.gz`, MaxMind's `.tar.gz`, and the database inside. None of them may panic, unpack
//! past its cap, or walk a crafted search tree for ever.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traffix::geoip::archive::{file_from_tar_gz, gunzip, parse_sha256_file};
use traffix::geoip::{GeoIp, Kind};

/// The cap given to the unpackers (geoip.max_download_bytes in production).
const CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, name)) = parse_sha256_file(data) {
        assert!(!name.contains(char::is_whitespace), "{name:?}");
    }
    if let Ok(out) = gunzip(data, CAP) {
        assert!(out.len() as u64 <= CAP);
    }
    if let Ok(out) = file_from_tar_gz(data, "GeoLite2-Country.mmdb", CAP) {
        assert!(out.len() as u64 <= CAP);
    }
    if let Ok(db) = GeoIp::from_bytes(data.to_vec()) {
        let _ = db.check(Kind::Country);
        let _ = db.check(Kind::Asn);
    }
});
