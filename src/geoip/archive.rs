//! What GeoIP sources send, unpacked and checked: MaxMind's `.tar.gz` archives and their
//! `.sha256` files, DB-IP's `.mmdb.gz` files and its monthly names. Pure functions over bytes
//! a download controls: every size is capped, every malformed input is an error that says
//! what is wrong, nothing panics (the `geoip_archive` fuzz target holds them to that).

use std::io::Read;

/// Why a download could not be unpacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("unpacked, it is larger than {0} bytes (geoip.max_download_bytes)")]
    TooLarge(u64),
    #[error("it is not a complete gzip file (truncated or corrupt: {0})")]
    Gzip(String),
    #[error("it is not a complete tar archive (truncated or corrupt: {0})")]
    Tar(String),
    #[error("the archive holds no {0}")]
    Missing(String),
    #[error("the checksum file is malformed: {0}")]
    Checksum(String),
}

/// A reader that fails once more than `left` bytes have come through: a gzip bomb stops at
/// the cap instead of filling the memory or the disk.
struct Capped<R> {
    inner: R,
    left: u64,
    cap: u64,
    /// The cap was hit (what made the read fail, whatever error the layers above report).
    over: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte past the cap tells "exactly the cap" from "more".
        let room = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..room])?;
        if n as u64 > self.left {
            self.over = true;
            return Err(std::io::Error::other(ArchiveError::TooLarge(self.cap)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn capped<R: Read>(inner: R, cap: u64) -> Capped<R> {
    Capped { inner, left: cap, cap, over: false }
}

/// Unpacks a gzip file of at most `max` bytes unpacked (DB-IP's `.mmdb.gz`).
pub fn gunzip(data: &[u8], max: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut r = capped(flate2::read::GzDecoder::new(data), max);
    let mut out = Vec::new();
    match r.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(_) if r.over => Err(ArchiveError::TooLarge(max)),
        Err(e) => Err(ArchiveError::Gzip(e.to_string())),
    }
}

/// Finds `name` (a file name, in any folder) in a `.tar.gz` and returns its bytes. The whole
/// archive, unpacked (tar headers and padding included), must stay within `max` bytes.
pub fn file_from_tar_gz(data: &[u8], name: &str, max: u64) -> Result<Vec<u8>, ArchiveError> {
    let gz = capped(flate2::read::GzDecoder::new(data), max);
    let mut archive = tar::Archive::new(gz);
    // A read error surfaces through the tar crate; `classify` tells the cap from corruption.
    let mut found = None;
    for entry in archive.entries().map_err(|e| classify(e, max))? {
        let mut entry = entry.map_err(|e| classify(e, max))?;
        let is_it = entry.header().entry_type().is_file()
            && entry.path().ok().and_then(|p| p.file_name().map(|f| f == name)).unwrap_or(false);
        if !is_it {
            continue;
        }
        let size = entry.header().size().map_err(|e| ArchiveError::Tar(e.to_string()))?;
        if size > max {
            return Err(ArchiveError::TooLarge(max));
        }
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(64 << 20));
        entry.read_to_end(&mut out).map_err(|e| classify(e, max))?;
        if out.len() as u64 != size {
            return Err(ArchiveError::Tar(format!("{name} is cut short: {} of {size} bytes", out.len())));
        }
        found = Some(out);
        break;
    }
    // The rest of the stream too: a gzip file cut short fails its trailer (length and CRC)
    // here, instead of passing as complete (or as an archive without the database).
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|e| classify(e, max))?;
    found.ok_or_else(|| ArchiveError::Missing(name.to_owned()))
}

/// Names a read error of an archive: the cap, the gzip layer or the tar layer.
fn classify(e: std::io::Error, max: u64) -> ArchiveError {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<ArchiveError>()) {
        return match inner {
            ArchiveError::TooLarge(_) => ArchiveError::TooLarge(max),
            other => other.clone(),
        };
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ArchiveError::Tar("it ends early".into()),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => ArchiveError::Gzip(e.to_string()),
        _ => ArchiveError::Tar(e.to_string()),
    }
}

/// Reads MaxMind's `.sha256` file: `HEX  NAME` (lowercase or uppercase hex of SHA-256, then
/// the archive's file name, as `sha256sum` writes it). Returns the digest and the name.
pub fn parse_sha256_file(text: &[u8]) -> Result<([u8; 32], String), ArchiveError> {
    let bad = |m: &str| ArchiveError::Checksum(m.to_owned());
    if text.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
    let line = text.lines().find(|l| !l.trim().is_empty()).ok_or_else(|| bad("empty"))?;
    let mut parts = line.split_whitespace();
    let hex_digest = parts.next().ok_or_else(|| bad("empty"))?;
    // `sha256sum -b` marks the name with a `*`.
    let name = parts.next().map(|n| n.trim_start_matches('*').to_owned()).unwrap_or_default();
    if parts.next().is_some() {
        return Err(bad("more than a digest and a file name on its line"));
    }
    if hex_digest.len() != 64 {
        return Err(bad(&format!("the digest has {} characters, not 64", hex_digest.len())));
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| bad("the digest is not hex"))?;
    Ok((digest, name))
}

/// Checks that `data` has the SHA-256 `want`.
pub fn check_sha256(data: &[u8], want: &[u8; 32]) -> Result<(), String> {
    let got = ring::digest::digest(&ring::digest::SHA256, data);
    if got.as_ref() == want {
        Ok(())
    } else {
        Err(format!(
            "its SHA-256 is {}, but the checksum file says {}: the download is corrupt or was changed on the way",
            hex::encode(got.as_ref()),
            hex::encode(want)
        ))
    }
}

/// The DB-IP Lite months to try at `now` (Unix seconds, UTC): this month, then the one before
/// (a month's file appears in its first days). `YYYY-MM`.
pub fn dbip_months(now: u64) -> [String; 2] {
    let date = crate::units::rfc3339(now);
    let (y, m) = (date[..4].parse::<i64>().unwrap_or(1970), date[5..7].parse::<u32>().unwrap_or(1));
    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    [format!("{y:04}-{m:02}"), format!("{py:04}-{pm:02}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        gz(&b.into_inner().unwrap())
    }

    #[test]
    fn gunzip_unpacks_and_refuses_what_is_broken_or_too_big() {
        assert_eq!(gunzip(&gz(b"hello"), 5).unwrap(), b"hello");
        assert_eq!(gunzip(&gz(b"hello"), 4), Err(ArchiveError::TooLarge(4)));
        let z = gz(&vec![0u8; 100_000]);
        assert!(z.len() < 1000, "a small bomb");
        assert_eq!(gunzip(&z, 99_999), Err(ArchiveError::TooLarge(99_999)));
        let whole = gz(b"hello world, hello world");
        for cut in [0, 1, 10, whole.len() - 1] {
            assert!(matches!(gunzip(&whole[..cut], 1000), Err(ArchiveError::Gzip(_))), "cut at {cut}");
        }
        assert!(matches!(gunzip(b"plain text, not gzip", 1000), Err(ArchiveError::Gzip(_))));
    }

    #[test]
    fn the_database_is_found_in_its_folder_and_nothing_else_passes() {
        let db = b"MMDB bytes".as_slice();
        let name = "GeoLite2-Country.mmdb";
        let good = tar_gz(&[
            ("GeoLite2-Country_20260512/COPYRIGHT.txt", b"(c)"),
            ("GeoLite2-Country_20260512/GeoLite2-Country.mmdb", db),
        ]);
        assert_eq!(file_from_tar_gz(&good, name, 10_000).unwrap(), db);
        assert_eq!(file_from_tar_gz(&good, name, 5), Err(ArchiveError::TooLarge(5)));
        let without = tar_gz(&[("GeoLite2-Country_20260512/README.txt", b"no database here")]);
        assert_eq!(file_from_tar_gz(&without, name, 10_000), Err(ArchiveError::Missing(name.into())));
        // A similar name is not the database.
        let other = tar_gz(&[("x/GeoLite2-Country.mmdb.old", db), ("x/GeoLite2-ASN.mmdb", db)]);
        assert_eq!(file_from_tar_gz(&other, name, 10_000), Err(ArchiveError::Missing(name.into())));
        for cut in [0, 1, 20, good.len() / 2, good.len() - 1] {
            let e = file_from_tar_gz(&good[..cut], name, 10_000).unwrap_err();
            assert!(matches!(e, ArchiveError::Gzip(_) | ArchiveError::Tar(_)), "{cut}: {e:?}");
        }
        assert!(file_from_tar_gz(&gz(b"not a tar archive at all"), name, 10_000).is_err());
        assert!(file_from_tar_gz(b"not gzip", name, 10_000).is_err());
        // A huge other member stops at the cap, before the database is reached.
        let big = tar_gz(&[("x/filler.bin", &vec![0u8; 50_000]), ("x/GeoLite2-Country.mmdb", db)]);
        assert_eq!(file_from_tar_gz(&big, name, 10_000), Err(ArchiveError::TooLarge(10_000)));
    }

    #[test]
    fn checksum_files_parse_as_maxmind_writes_them() {
        let hex = "a".repeat(64);
        let (d, n) = parse_sha256_file(format!("{hex}  GeoLite2-Country_20260512.tar.gz\n").as_bytes()).unwrap();
        assert_eq!((d, n.as_str()), ([0xaa; 32], "GeoLite2-Country_20260512.tar.gz"));
        let (_, n) = parse_sha256_file(format!("{}  *x.tar.gz", "A".repeat(64)).as_bytes()).unwrap();
        assert_eq!(n, "x.tar.gz");
        assert_eq!(parse_sha256_file(hex.as_bytes()).unwrap().1, "", "a bare digest");
        for bad in [
            "".to_owned(),
            "\n\n".to_owned(),
            "abc  x.tar.gz".to_owned(),
            format!("{}  x", "g".repeat(64)),
            format!("{hex}  x y"),
            format!("{}  x", "a".repeat(65)),
            "<html>Unauthorized</html>".to_owned(),
            "x".repeat(5000),
        ] {
            assert!(parse_sha256_file(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_sha256_file(&[0xff, 0xfe]).is_err());
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, b"data").as_ref().try_into().unwrap();
        assert!(check_sha256(b"data", &digest).is_ok());
        assert!(check_sha256(b"datA", &digest).unwrap_err().contains("corrupt"));
    }

    #[test]
    fn dbip_months_step_back_over_a_new_year() {
        // 2026-01-01T00:00:00Z and 2026-05-31T23:59:59Z.
        assert_eq!(dbip_months(1_767_225_600), ["2026-01".to_owned(), "2025-12".to_owned()]);
        assert_eq!(dbip_months(1_780_271_999), ["2026-05".to_owned(), "2026-04".to_owned()]);
    }
}
