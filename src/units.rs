//! What people type for sizes and times, parsed one way everywhere: byte sizes with SI or
//! binary units (`5GB`, `500 MiB`, `1.5GiB`, `1024`), instants (`2026-12-01`, RFC 3339, Unix
//! seconds) and "that long ago" (`24h`, `7d`), and `HOST:PORT` addresses. Pure: imports nothing of the project.

/// Bytes for people, in decimal units: `950 B`, `1.50 MB`, `2.00 GB`.
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.2} {}", UNITS[u]) }
}

/// Parses a byte size: a non-negative decimal number and an optional unit, case-insensitive,
/// optionally separated by a space. SI units are powers of 1000 (`kB`, `MB`, `GB`, `TB`, `PB`),
/// binary ones powers of 1024 (`KiB`, `MiB`, `GiB`, `TiB`, `PiB`); no unit or `B` is bytes.
/// Refused: signs, fractions of a byte (`1.5B`, `0.0001kB`), values over `u64::MAX`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad = || format!("{text:?} is not a byte size (e.g. 500MB, 1.5GiB or 1048576)");
    let mult: u128 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000u128.pow(2),
        "gb" => 1000u128.pow(3),
        "tb" => 1000u128.pow(4),
        "pb" => 1000u128.pow(5),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "pib" => 1 << 50,
        _ => return Err(bad()),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    // At most 20 integer digits (u64::MAX has 20) and 18 fraction digits keep u128 exact.
    if (int.is_empty() && frac.is_empty())
        || int.len() > 20
        || frac.len() > 18
        || frac.contains('.')
        || (num.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let digits = |d: &str| if d.is_empty() { Ok(0) } else { d.parse::<u128>().map_err(|_| bad()) };
    let (int, frac_value) = (digits(int)?, digits(frac)?);
    let scale = 10u128.pow(frac.len() as u32);
    let frac_bytes = frac_value * mult;
    if !frac_bytes.is_multiple_of(scale) {
        return Err(format!("{text:?} is not a whole number of bytes"));
    }
    let total = int.checked_mul(mult).and_then(|b| b.checked_add(frac_bytes / scale));
    total.and_then(|t| u64::try_from(t).ok()).ok_or_else(|| format!("{text:?} is too large a byte size"))
}

/// Parses an instant as Unix seconds: RFC 3339 (`2026-12-01T08:00:00Z`, `…+02:00`, fractions
/// of a second dropped, the seconds optional: `2026-12-01T08:00Z`), a UTC date (`2026-12-01`,
/// its midnight), Unix seconds (`1796112000`), or a duration meaning that long before `now`
/// (`90s`, `30m`, `24h`, `7d`, `2w`). The CLI's `--since`/`--until` and the API's
/// `since=`/`until=` all read times with it.
pub fn parse_instant(text: &str, now: u64) -> Result<u64, String> {
    let s = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a time: use RFC 3339 (2026-12-01T08:00:00Z), a date like 2026-12-01, \
             Unix seconds, or an age like 24h or 7d"
        )
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    if let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic() && !s.contains('-')) {
        let n: u64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
        let secs = match unit.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        return Ok(now.saturating_sub(n.saturating_mul(secs)));
    }
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let mut num = |len: usize| {
        parts.next().filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).and_then(|p| p.parse().ok())
    };
    let (y, m, d): (i64, u32, u32) = match (num(4), num(2), num(2)) {
        (Some(y), Some(m), Some(d)) => (y, m as u32, d as u32),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        let (clock, offset) = match t.find(['Z', 'z', '+', '-']) {
            Some(i) => t.split_at(i),
            None => return Err(bad()),
        };
        let clock = match clock.split_once('.') {
            Some((c, frac)) if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) => c,
            Some(_) => return Err(bad()),
            None => clock,
        };
        let hms: Vec<&str> = clock.split(':').collect();
        let field = |i: usize, max: i64| {
            hms.get(i)
                .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<i64>().ok())
                .filter(|v| *v <= max)
        };
        // Seconds may be left out (`08:00Z`), but not with a fraction after the minutes.
        let seconds = if hms.len() == 2 && !t.contains('.') { Some(0) } else { field(2, 60) };
        let (Some(h), Some(mi), Some(se)) = (field(0, 23), field(1, 59), seconds) else {
            return Err(bad());
        };
        if !(2..=3).contains(&hms.len()) {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + se;
        if !offset.eq_ignore_ascii_case("z") {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (oh, om) = offset[1..].split_once(':').ok_or_else(bad)?;
            let p = |v: &str, max: i64| {
                Some(v).filter(|v| v.len() == 2).and_then(|v| v.parse::<i64>().ok()).filter(|v| *v <= max)
            };
            let (Some(oh), Some(om)) = (p(oh, 23), p(om, 59)) else {
                return Err(bad());
            };
            secs -= sign * (oh * 3600 + om * 60);
        }
    }
    u64::try_from(secs).map_err(|_| format!("{text:?} is before 1970"))
}

/// Days in month `m` (1–12) of year `y`.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats Unix seconds as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// The civil date (year, month 1–12, day 1–31) of a day counted from 1970-01-01 (Howard
/// Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Checks an address nodes dial: `HOST:PORT` with a host name, an IPv4 address or a bracketed
/// IPv6 address, and a port 1-65535. No scheme, path, user or query.
pub fn check_host_port(text: &str) -> Result<(), String> {
    let example = "(e.g. proxy.example.com:8443)";
    if text.contains("://") {
        return Err(format!("must be HOST:PORT {example}, not a URL"));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("must be HOST:PORT {example}: the port is missing"));
    };
    match port.parse::<u16>() {
        Ok(0) => return Err(format!("must be HOST:PORT {example}: the port must not be 0")),
        Ok(_) if port.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => return Err(format!("must be HOST:PORT {example}: {port:?} is not a port")),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("must be HOST:PORT {example}: {host} is not an IPv6 address"));
    }
    if host.contains(':') {
        return Err(format!("must be HOST:PORT {example}: write an IPv6 address in brackets, [{host}]:{port}"));
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("must be HOST:PORT {example}: {host:?} is not a host name or address"));
    }
    // All-numeric names must be a real IPv4 address (no `1.2.3`, `999.1.1.1`).
    if name.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit())) && name.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!("must be HOST:PORT {example}: {host:?} is not an IPv4 address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_with_si_and_binary_units() {
        for (text, want) in [
            ("0", 0),
            ("1024", 1024),
            ("5GB", 5_000_000_000),
            ("5gb", 5_000_000_000),
            ("5 GB", 5_000_000_000),
            (" 5 gB ", 5_000_000_000),
            ("500MiB", 500 << 20),
            ("1.5GiB", 3 << 29),
            ("1.5GB", 1_500_000_000),
            ("0.5kB", 500),
            ("10B", 10),
            ("1kib", 1024),
            ("2TiB", 2 << 40),
            ("1TB", 1_000_000_000_000),
            (".5KiB", 512),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_bytes(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_and_hostile_byte_sizes_are_refused() {
        for text in [
            "",
            " ",
            "-5GB",
            "+5GB",
            "-0",
            "GB",
            "5 G B",
            "5GBs",
            "5XB",
            "1.5B",
            "0.0001kB",
            "1.",
            ".",
            "1..5GB",
            "1.2.3",
            "18446744073709551616",
            "99999999999999999999999999",
            "17179869184GiB",
            "16777216TiB",
            "1e9",
            "0x10",
            "5 GB GB",
            "５GB",
            "1.0000000000000000001GB",
            "NaN",
            "inf",
        ] {
            assert!(parse_bytes(text).is_err(), "{text:?} must be refused");
        }
        // Exactness, not floats: 1.1 GB is exactly 1_100_000_000.
        assert_eq!(parse_bytes("1.1GB"), Ok(1_100_000_000));
        assert!(parse_bytes("16EiB").is_err(), "no exbibytes: they overflow anyway");
    }

    #[test]
    fn instants_dates_and_ages() {
        let now = 1_800_000_000;
        assert_eq!(parse_instant("1970-01-01", now), Ok(0));
        assert_eq!(parse_instant("2026-12-01", now), Ok(1_796_083_200));
        assert_eq!(parse_instant("2026-11-25T23:03:13Z", now), Ok(1_795_647_793));
        assert_eq!(parse_instant("2026-11-25t23:03:13.123z", now), Ok(1_795_647_793));
        assert_eq!(parse_instant("2026-11-26T01:03:13+02:00", now), Ok(1_795_647_793));
        assert_eq!(parse_instant("2026-11-25T22:03:13-01:00", now), Ok(1_795_647_793));
        assert_eq!(parse_instant("2000-02-29", now), Ok(951_782_400));
        assert_eq!(parse_instant("24h", now), Ok(now - 86_400));
        assert_eq!(parse_instant("7d", now), Ok(now - 7 * 86_400));
        assert_eq!(parse_instant("30m", now), Ok(now - 1800));
        assert_eq!(parse_instant("99999999999999w", now), Ok(0));
        assert_eq!(parse_instant("1795647793", now), Ok(1_795_647_793), "Unix seconds");
        assert_eq!(parse_instant("0", now), Ok(0));
        assert_eq!(parse_instant("2026-11-25T20:03-03:00", now), Ok(1_795_647_780), "no seconds");
        assert_eq!(parse_instant("2026-12-01T10:00Z", now), Ok(1_796_119_200));
        assert_eq!(parse_instant("2026-11-25 23:03:13.999Z", now), Ok(1_795_647_793));
        assert_eq!(parse_instant("2026-12-02T23:59:59.999Z", now), Ok(1_796_255_999), "what a browser sends");
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "2026-1-1",
            "2026-12-01T25:00:00Z",
            "2026-12-01T10:00:00",
            "2026-12-01T10:00",
            "2026-12-01T10Z",
            "2026-12-01T10:00.5Z",
            "2026-11-25T23:03:13.Z",
            "2026-11-25T23:03:13.5xZ",
            "2026-11-25X",
            "99999999999999999999999",
            "2026-12-01T10:00:00+2",
            "1969-12-31",
            "-5h",
            "5x",
            "h",
            "1.5h",
        ] {
            assert!(parse_instant(bad, now).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn host_port_addresses() {
        for ok in ["proxy.example.com:8443", "1.2.3.4:443", "[2001:db8::1]:8443", "localhost:1", "a-b.c:65535"] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("http://proxy.example.com:8443", "not a URL"),
            ("https://proxy.example.com", "not a URL"),
            ("proxy.example.com", "port is missing"),
            ("proxy.example.com:0", "must not be 0"),
            ("proxy.example.com:65536", "not a port"),
            ("proxy.example.com:+80", "not a port"),
            ("proxy.example.com:8443/path", "not a port"),
            ("2001:db8::1:8443", "brackets"),
            ("[not-v6]:8443", "IPv6"),
            (":8443", "host name"),
            ("user@host:8443", "host name"),
            ("-bad.example:80", "host name"),
            ("999.1.1.1:80", "IPv4"),
            ("exa mple.com:80", "host name"),
        ] {
            let e = check_host_port(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
