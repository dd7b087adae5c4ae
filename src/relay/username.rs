//! The proxy username grammar of SPEC.md ("Proxy credentials and targeting"): turns the username
//! a client sends (RFC 1929 over SOCKS5, or `Proxy-Authorization: Basic` on the HTTP proxy) into
//! the account or sub-user NAME plus its targeting options, a [`Targeting`].
//!
//! ```text
//! username = NAME *( "-" KEY "-" VALUE )     ; options in any order, each at most once
//! ```
//!
//! This module owns the syntax only. It does no I/O and no account, node or session lookups:
//! whether NAME exists, whether its password matches, whether any node serves the country or
//! holds the virtual IP, and session pinning are the callers' business. Every rejection is a
//! [`UsernameError`] with a stable [`code`](UsernameError::code) and a human reason (its
//! `Display`) that is safe to put in a 407 body and a log line: user text is quoted and escaped.
//!
//! The accepted and rejected cases, shared with other implementations (the Android app), live
//! in `tests/vectors/username.json`.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Usernames longer than this are rejected before any parsing. RFC 1929 caps the username at
/// 255 bytes, so the HTTP proxy gets the same limit.
pub const MAX_USERNAME_BYTES: usize = 255;
/// Shortest NAME, in characters (all ASCII, so also bytes).
pub const NAME_MIN_LEN: usize = 3;
/// Longest NAME.
pub const NAME_MAX_LEN: usize = 32;
/// Longest sticky-session id.
pub const SESSION_MAX_LEN: usize = 32;
/// Session lifetime after last use when the username gives no `ttl`.
pub const DEFAULT_SESSION_TTL_MINUTES: u16 = 10;
/// Smallest accepted `ttl`.
pub const MIN_SESSION_TTL_MINUTES: u16 = 1;
/// Largest accepted `ttl` (24 hours). Larger values are rejected, never clamped.
pub const MAX_SESSION_TTL_MINUTES: u16 = 1440;
/// Node virtual IPs are allocated from 100.64.0.0/10 (RFC 6598 shared address space).
pub const NODE_NETWORK: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// Prefix length of [`NODE_NETWORK`].
pub const NODE_NETWORK_PREFIX: u8 = 10;

/// Every code [`UsernameError::code`] can return.
pub const ERROR_CODES: [&str; 17] = [
    "empty",
    "too_long",
    "non_ascii",
    "bad_name",
    "unknown_key",
    "repeated_key",
    "missing_value",
    "bad_country",
    "bad_session",
    "bad_ttl",
    "ttl_out_of_range",
    "bad_node",
    "bad_mode",
    "bad_quality",
    "bad_trust",
    "ttl_without_session",
    "mode_without_session",
];

/// What happens to a sticky session whose node goes offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionMode {
    /// Re-pin the session to another node matching the other options (and say so in
    /// `Proxy-Status`).
    #[default]
    Flex,
    /// Fail the connection (SOCKS5 0x03 / HTTP 503).
    Strict,
}

impl SessionMode {
    /// The canonical lower-case spelling: `flex` or `strict`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Flex => "flex",
            SessionMode::Strict => "strict",
        }
    }
}

impl fmt::Display for SessionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An option KEY, whichever alias the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// `country` | `cc`
    Country,
    /// `session` | `sessid` | `sessionid`
    Session,
    /// `ttl` | `sesstime` | `lifetime`
    Ttl,
    /// `node`
    Node,
    /// `mode`
    Mode,
    /// `quality`
    Quality,
    /// `trust`
    Trust,
}

impl Key {
    /// All keys, in the order the grammar lists them.
    pub const ALL: [Key; 7] = [Key::Country, Key::Session, Key::Ttl, Key::Node, Key::Mode, Key::Quality, Key::Trust];

    /// The canonical (first-listed) spelling.
    pub fn as_str(self) -> &'static str {
        self.aliases()[0]
    }

    /// Every accepted spelling, canonical first, lower case.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Key::Country => &["country", "cc"],
            Key::Session => &["session", "sessid", "sessionid"],
            Key::Ttl => &["ttl", "sesstime", "lifetime"],
            Key::Node => &["node"],
            Key::Mode => &["mode"],
            Key::Quality => &["quality"],
            Key::Trust => &["trust"],
        }
    }

    /// Looks a key up by any alias, ASCII case-insensitively. Only ASCII letters fold: look-alike
    /// characters such as U+017F LATIN SMALL LETTER LONG S do not match `s`.
    pub fn from_alias(key: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.aliases().iter().any(|alias| alias.eq_ignore_ascii_case(key)))
    }

    fn index(self) -> usize {
        match self {
            Key::Country => 0,
            Key::Session => 1,
            Key::Ttl => 2,
            Key::Node => 3,
            Key::Mode => 4,
            Key::Quality => 5,
            Key::Trust => 6,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed proxy username: who is asking and how their connections should be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targeting {
    /// Account or sub-user name (already lower case by grammar).
    pub name: String,
    /// Upper-cased ISO 3166-1 alpha-2 code, e.g. `*b"DE"`; always an assigned code.
    pub country: Option<[u8; 2]>,
    /// Sticky session id, case preserved.
    pub session: Option<String>,
    /// `1..=1440`, only present together with `session`.
    pub ttl_minutes: Option<u16>,
    /// A node virtual IP inside 100.64.0.0/10.
    pub node: Option<Ipv4Addr>,
    /// Only meaningful with `session`; `Flex` unless the username says `mode-strict`.
    pub mode: SessionMode,
    /// `quality-high`: only nodes of the watchdog's high tier (docs/watchdog.md).
    pub quality_high: bool,
    /// The weakest device trust a node needs to carry this connection (docs/trust.md); the
    /// server's `trust.require` applies on top.
    pub trust: Option<crate::identity::TrustLevel>,
}

impl Targeting {
    /// How long a sticky session lives after its last use: the given `ttl` or
    /// [`DEFAULT_SESSION_TTL_MINUTES`].
    pub fn session_ttl(&self) -> Duration {
        let minutes = self.ttl_minutes.unwrap_or(DEFAULT_SESSION_TTL_MINUTES);
        Duration::from_secs(u64::from(minutes) * 60)
    }

    /// The country as text, e.g. `Some("DE")`.
    pub fn country_code(&self) -> Option<&str> {
        self.country.as_ref().and_then(|c| std::str::from_utf8(c).ok())
    }
}

/// Why a proxy username was rejected. `Display` is the human reason for the 407 body and the
/// log; [`code`](UsernameError::code) is the stable machine-readable cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernameError {
    /// The username is empty.
    Empty,
    /// Longer than [`MAX_USERNAME_BYTES`]; `len` is the byte length.
    TooLong { len: usize },
    /// A byte outside ASCII at byte `offset` (or invalid UTF-8 given to [`parse_bytes`]).
    NonAscii { offset: usize },
    /// NAME breaks `3*32( a-z / 0-9 / "_" )`.
    BadName { name: String, detail: &'static str },
    /// A KEY that is none of the known aliases (also an empty key, as in `alice--de`).
    UnknownKey { key: String },
    /// The same option twice, under any aliases: `first` and `second` as written.
    RepeatedKey { key: Key, first: String, second: String },
    /// A KEY with no VALUE after it, or an empty VALUE; `key` is as written and is empty for a
    /// trailing or stray `-`.
    MissingValue { key: String },
    /// Not two letters, or not an assigned ISO 3166-1 alpha-2 code.
    BadCountry { value: String, detail: &'static str },
    /// Not `1*32( A-Z / a-z / 0-9 )`.
    BadSession { value: String, detail: &'static str },
    /// Not decimal digits with an optional `m`/`M` suffix.
    BadTtl { value: String },
    /// Well-formed, but outside `1..=1440` minutes.
    TtlOutOfRange { value: String },
    /// Not a canonical dotted quad, or outside 100.64.0.0/10.
    BadNode { value: String, detail: &'static str },
    /// Neither `flex` nor `strict`.
    BadMode { value: String },
    /// Not `high`.
    BadQuality { value: String },
    /// Not `none`, `software` or `hardware`.
    BadTrust { value: String },
    /// `ttl` given without `session`.
    TtlWithoutSession,
    /// `mode` given without `session`.
    ModeWithoutSession,
}

impl UsernameError {
    /// Stable snake_case code (one of [`ERROR_CODES`]).
    pub fn code(&self) -> &'static str {
        match self {
            UsernameError::Empty => "empty",
            UsernameError::TooLong { .. } => "too_long",
            UsernameError::NonAscii { .. } => "non_ascii",
            UsernameError::BadName { .. } => "bad_name",
            UsernameError::UnknownKey { .. } => "unknown_key",
            UsernameError::RepeatedKey { .. } => "repeated_key",
            UsernameError::MissingValue { .. } => "missing_value",
            UsernameError::BadCountry { .. } => "bad_country",
            UsernameError::BadSession { .. } => "bad_session",
            UsernameError::BadTtl { .. } => "bad_ttl",
            UsernameError::TtlOutOfRange { .. } => "ttl_out_of_range",
            UsernameError::BadNode { .. } => "bad_node",
            UsernameError::BadMode { .. } => "bad_mode",
            UsernameError::BadQuality { .. } => "bad_quality",
            UsernameError::BadTrust { .. } => "bad_trust",
            UsernameError::TtlWithoutSession => "ttl_without_session",
            UsernameError::ModeWithoutSession => "mode_without_session",
        }
    }
}

// User text is always printed with `{:?}`: quoted, with control characters escaped, so a
// username cannot forge log lines or break the 407 body.
impl fmt::Display for UsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsernameError::Empty => f.write_str("the proxy username is empty"),
            UsernameError::TooLong { len } => {
                write!(f, "the proxy username is {len} bytes long; the limit is {MAX_USERNAME_BYTES}")
            }
            UsernameError::NonAscii { offset } => write!(
                f,
                "the proxy username has a non-ASCII character at byte {offset}; \
                 names, keys and values are plain ASCII"
            ),
            UsernameError::BadName { name, detail } => write!(
                f,
                "bad account name {name:?}: {detail}; a name is {NAME_MIN_LEN} to \
                 {NAME_MAX_LEN} characters of a-z, 0-9 and '_'"
            ),
            UsernameError::UnknownKey { key } if key.is_empty() => {
                f.write_str("empty option key (two '-' in a row?); options are written -KEY-VALUE")
            }
            UsernameError::UnknownKey { key } => write!(
                f,
                "unknown option {key:?}; known options are country (cc), \
                 session (sessid, sessionid), ttl (sesstime, lifetime), node, mode, quality and trust"
            ),
            UsernameError::RepeatedKey { key, first, second } => write!(
                f,
                "option {key} is given twice (as {first:?} and {second:?}); \
                 each option may appear at most once"
            ),
            UsernameError::MissingValue { key } if key.is_empty() => f.write_str(
                "the proxy username ends with '-' or has a stray '-'; options are written \
                 -KEY-VALUE",
            ),
            UsernameError::MissingValue { key } => {
                write!(f, "option {key:?} has no value; options are written -KEY-VALUE")
            }
            UsernameError::BadCountry { value, detail } => {
                write!(f, "bad country {value:?}: {detail}")
            }
            UsernameError::BadSession { value, detail } => write!(
                f,
                "bad session id {value:?}: {detail}; a session id is 1 to {SESSION_MAX_LEN} \
                 characters of A-Z, a-z and 0-9"
            ),
            UsernameError::BadTtl { value } => write!(
                f,
                "bad ttl {value:?}: give whole minutes as decimal digits, optionally followed \
                 by 'm', e.g. 30 or 30m"
            ),
            UsernameError::TtlOutOfRange { value } => write!(
                f,
                "ttl {value:?} is out of range: it must be {MIN_SESSION_TTL_MINUTES} to \
                 {MAX_SESSION_TTL_MINUTES} minutes"
            ),
            UsernameError::BadNode { value, detail } => write!(f, "bad node {value:?}: {detail}"),
            UsernameError::BadMode { value } => {
                write!(f, "bad mode {value:?}: use flex or strict")
            }
            UsernameError::BadQuality { value } => {
                write!(f, "bad quality {value:?}: the only tier a client can ask for is high")
            }
            UsernameError::BadTrust { value } => {
                write!(f, "bad trust {value:?}: use none, software or hardware")
            }
            UsernameError::TtlWithoutSession => {
                f.write_str("ttl needs a session: add -session-ID (ttl is how long a sticky session lives)")
            }
            UsernameError::ModeWithoutSession => f.write_str(
                "mode needs a session: add -session-ID (mode says what a sticky session does \
                 when its node goes offline)",
            ),
        }
    }
}

impl std::error::Error for UsernameError {}

/// Parses a proxy username into its [`Targeting`].
///
/// Checks run in this order and the first failure is returned, so every implementation reports
/// the same code:
/// 1. empty → `empty`; over [`MAX_USERNAME_BYTES`] bytes (UTF-8) → `too_long`; any non-ASCII
///    character → `non_ascii`.
/// 2. The username is split at every `-`; the first piece is NAME → `bad_name`.
/// 3. The rest is read left to right as KEY, VALUE pairs. For each: an empty key followed by
///    nothing or by an empty value (a trailing `-`, or `--` at the end) → `missing_value`;
///    an unknown key, including an empty key before a value (`alice--de`) → `unknown_key`; already seen under any alias → `repeated_key`; no value or an empty value
///    → `missing_value`; then the value itself → `bad_country`, `bad_session`, `bad_ttl`,
///    `ttl_out_of_range`, `bad_node`, `bad_mode`, `bad_quality`.
/// 4. Finally `ttl` without `session` → `ttl_without_session`, then `mode` without `session`
///    → `mode_without_session`.
pub fn parse(username: &str) -> Result<Targeting, UsernameError> {
    parse_bytes(username.as_bytes())
}

/// [`parse`] for raw bytes, as RFC 1929 delivers them. Invalid UTF-8 is `non_ascii`.
pub fn parse_bytes(username: &[u8]) -> Result<Targeting, UsernameError> {
    if username.is_empty() {
        return Err(UsernameError::Empty);
    }
    if username.len() > MAX_USERNAME_BYTES {
        return Err(UsernameError::TooLong { len: username.len() });
    }
    if let Some(offset) = username.iter().position(|b| !b.is_ascii()) {
        return Err(UsernameError::NonAscii { offset });
    }
    // Cannot fail once every byte is ASCII; mapped rather than unwrapped all the same.
    let username = std::str::from_utf8(username).map_err(|e| UsernameError::NonAscii { offset: e.valid_up_to() })?;
    parse_ascii(username)
}

fn parse_ascii(username: &str) -> Result<Targeting, UsernameError> {
    let mut pieces = username.split('-');
    let name = pieces.next().unwrap_or_default();
    check_name(name).map_err(|detail| UsernameError::BadName { name: name.to_owned(), detail })?;

    let mut target = Targeting {
        name: name.to_owned(),
        country: None,
        session: None,
        ttl_minutes: None,
        node: None,
        mode: SessionMode::Flex,
        quality_high: false,
        trust: None,
    };
    // The spelling each option was first given under, to report repeats.
    let mut seen: [Option<&str>; Key::ALL.len()] = [None; Key::ALL.len()];

    while let Some(written_key) = pieces.next() {
        let value = pieces.next();
        // A stray or trailing '-': nothing on either side to call a key or a value.
        if written_key.is_empty() && value.is_none_or(str::is_empty) {
            return Err(UsernameError::MissingValue { key: String::new() });
        }
        let key =
            Key::from_alias(written_key).ok_or_else(|| UsernameError::UnknownKey { key: written_key.to_owned() })?;
        if let Some(first) = seen[key.index()] {
            return Err(UsernameError::RepeatedKey { key, first: first.to_owned(), second: written_key.to_owned() });
        }
        seen[key.index()] = Some(written_key);
        let value = match value {
            Some(v) if !v.is_empty() => v,
            _ => {
                return Err(UsernameError::MissingValue { key: written_key.to_owned() });
            }
        };
        match key {
            Key::Country => target.country = Some(parse_country(value)?),
            Key::Session => target.session = Some(parse_session(value)?),
            Key::Ttl => target.ttl_minutes = Some(parse_ttl(value)?),
            Key::Node => target.node = Some(parse_node(value)?),
            Key::Mode => target.mode = parse_mode(value)?,
            Key::Quality => {
                if !value.eq_ignore_ascii_case("high") {
                    return Err(UsernameError::BadQuality { value: value.to_owned() });
                }
                target.quality_high = true;
            }
            Key::Trust => target.trust = Some(parse_trust(value)?),
        }
    }

    if target.session.is_none() {
        if seen[Key::Ttl.index()].is_some() {
            return Err(UsernameError::TtlWithoutSession);
        }
        if seen[Key::Mode.index()].is_some() {
            return Err(UsernameError::ModeWithoutSession);
        }
    }
    Ok(target)
}

fn parse_trust(value: &str) -> Result<crate::identity::TrustLevel, UsernameError> {
    crate::identity::TrustLevel::parse(&value.to_ascii_lowercase())
        .ok_or_else(|| UsernameError::BadTrust { value: value.to_owned() })
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty (the username starts with '-')");
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("names are lower case");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err("it has a character other than a-z, 0-9 and '_'");
    }
    if name.len() < NAME_MIN_LEN {
        return Err("it is too short");
    }
    if name.len() > NAME_MAX_LEN {
        return Err("it is too long");
    }
    Ok(())
}

fn parse_country(value: &str) -> Result<[u8; 2], UsernameError> {
    let bad = |detail| UsernameError::BadCountry { value: value.to_owned(), detail };
    let code = match value.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            [a.to_ascii_uppercase(), b.to_ascii_uppercase()]
        }
        _ => {
            return Err(bad("a country is a two-letter ISO 3166-1 alpha-2 code, e.g. DE or us"));
        }
    };
    if is_assigned_country(code) {
        return Ok(code);
    }
    Err(bad(match &code {
        b"UK" => "UK is not an ISO 3166-1 code; the United Kingdom is GB",
        b"EL" => "EL is not an ISO 3166-1 code; Greece is GR",
        _ => "not an assigned ISO 3166-1 alpha-2 country code",
    }))
}

fn parse_session(value: &str) -> Result<String, UsernameError> {
    let bad = |detail| UsernameError::BadSession { value: value.to_owned(), detail };
    if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad("it has a character other than a letter or digit"));
    }
    if value.len() > SESSION_MAX_LEN {
        return Err(bad("it is too long"));
    }
    Ok(value.to_owned())
}

/// Decimal minutes with an optional `m`/`M` suffix. Leading zeros are accepted (`05` is 5);
/// any digit string above 1440, however long, is out of range rather than malformed.
fn parse_ttl(value: &str) -> Result<u16, UsernameError> {
    let digits = value.strip_suffix(['m', 'M']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsernameError::BadTtl { value: value.to_owned() });
    }
    let minutes = digits.bytes().fold(0u32, |acc, b| acc.saturating_mul(10).saturating_add(u32::from(b - b'0')));
    u16::try_from(minutes)
        .ok()
        .filter(|m| (MIN_SESSION_TTL_MINUTES..=MAX_SESSION_TTL_MINUTES).contains(m))
        .ok_or_else(|| UsernameError::TtlOutOfRange { value: value.to_owned() })
}

fn parse_node(value: &str) -> Result<Ipv4Addr, UsernameError> {
    let ip =
        parse_canonical_ipv4(value).map_err(|detail| UsernameError::BadNode { value: value.to_owned(), detail })?;
    if !is_node_address(ip) {
        return Err(UsernameError::BadNode {
            value: value.to_owned(),
            detail: "not a node address; node virtual IPs are in 100.64.0.0/10 \
                     (100.64.0.0 to 100.127.255.255)",
        });
    }
    Ok(ip)
}

/// Only the canonical form: four decimal octets, 0..=255, without leading zeros or signs.
/// `100.64.0.012` could mean octal to some resolvers, so it is refused, not guessed.
fn parse_canonical_ipv4(value: &str) -> Result<Ipv4Addr, &'static str> {
    const NOT_DOTTED_QUAD: &str = "not an IPv4 address in dotted-quad form, e.g. 100.64.0.12";
    let mut octets = [0u8; 4];
    let mut parts = value.split('.');
    for octet in &mut octets {
        let part = parts.next().ok_or(NOT_DOTTED_QUAD)?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NOT_DOTTED_QUAD);
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err("an octet has a leading zero; write the address canonically, \
                        e.g. 100.64.0.12");
        }
        *octet = part.parse().map_err(|_| "an octet is above 255")?;
    }
    if parts.next().is_some() {
        return Err(NOT_DOTTED_QUAD);
    }
    Ok(Ipv4Addr::from(octets))
}

fn parse_mode(value: &str) -> Result<SessionMode, UsernameError> {
    if value.eq_ignore_ascii_case("flex") {
        Ok(SessionMode::Flex)
    } else if value.eq_ignore_ascii_case("strict") {
        Ok(SessionMode::Strict)
    } else {
        Err(UsernameError::BadMode { value: value.to_owned() })
    }
}

/// Whether `ip` lies in [`NODE_NETWORK`]/[`NODE_NETWORK_PREFIX`] (100.64.0.0/10).
pub fn is_node_address(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - u32::from(NODE_NETWORK_PREFIX));
    u32::from(ip) & mask == u32::from(NODE_NETWORK)
}

/// Whether `code` (upper case) is an officially assigned ISO 3166-1 alpha-2 code, or one of
/// the few user-assigned codes GeoIP databases report for real places ([`GEOIP_EXTRA_CODES`]).
pub fn is_assigned_country(code: [u8; 2]) -> bool {
    std::str::from_utf8(&code)
        .map(|code| ASSIGNED_COUNTRY_CODES.binary_search(&code).is_ok() || GEOIP_EXTRA_CODES.contains(&code))
        .unwrap_or(false)
}

/// User-assigned codes that MaxMind-format databases use for real places, so nodes there can
/// be targeted: XK is Kosovo.
pub const GEOIP_EXTRA_CODES: [&str; 1] = ["XK"];

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted. Reserved and user-assigned
/// codes (UK, EU, UN, ...) are not countries here, except [`GEOIP_EXTRA_CODES`].
pub const ASSIGNED_COUNTRY_CODES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA",
    "ZM", "ZW",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Targeting {
        Targeting {
            name: name.to_owned(),
            country: None,
            session: None,
            ttl_minutes: None,
            node: None,
            mode: SessionMode::Flex,
            quality_high: false,
            trust: None,
        }
    }

    #[test]
    fn accepts() {
        let cases: Vec<(&str, Targeting)> = vec![
            ("bob", t("bob")),
            ("bob-trust-HARDWARE", Targeting { trust: Some(crate::identity::TrustLevel::Hardware), ..t("bob") }),
            ("bob-CC-fr", Targeting { country: Some(*b"FR"), ..t("bob") }),
            ("bob-quality-HIGH", Targeting { quality_high: true, ..t("bob") }),
            (
                "bob-mode-STRICT-sessid-Ab1-lifetime-1440M",
                Targeting {
                    session: Some("Ab1".into()),
                    ttl_minutes: Some(1440),
                    mode: SessionMode::Strict,
                    ..t("bob")
                },
            ),
            ("n_1-node-100.127.255.255", Targeting { node: Some(Ipv4Addr::new(100, 127, 255, 255)), ..t("n_1") }),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects() {
        let cases = [
            ("", "empty"),
            ("Bob", "bad_name"),
            ("bob-", "missing_value"),
            ("bob--cc-de", "unknown_key"),
            ("bob-cc", "missing_value"),
            ("bob-cc-", "missing_value"),
            ("bob-cc-de-country-fr", "repeated_key"),
            ("bob-cc-uk", "bad_country"),
            ("bob-session-a_b", "bad_session"),
            ("bob-ttl-5", "ttl_without_session"),
            ("bob-ttl-5-mode-flex", "ttl_without_session"),
            ("bob-mode-flex", "mode_without_session"),
            ("bob-session-x-ttl-1441", "ttl_out_of_range"),
            ("bob-session-x-ttl-99999999999999999999999", "ttl_out_of_range"),
            ("bob-session-x-ttl-1h", "bad_ttl"),
            ("bob-node-100.64.0.01", "bad_node"),
            ("bob-node-100.128.0.0", "bad_node"),
            ("bob-session-x-mode-sticky", "bad_mode"),
            ("bob-ſession-x", "non_ascii"),
        ];
        for (input, code) in cases {
            let err = parse(input).expect_err(input);
            assert_eq!(err.code(), code, "{input}: {err}");
            assert!(ERROR_CODES.contains(&err.code()));
        }
    }

    #[test]
    fn bytes_are_bounded_and_must_be_ascii() {
        assert_eq!(parse_bytes(&[b'a'; 256]), Err(UsernameError::TooLong { len: 256 }));
        assert_eq!(parse_bytes(b"bob\xff"), Err(UsernameError::NonAscii { offset: 3 }));
        assert_eq!(parse_bytes(b"bob-cc-de"), parse("bob-cc-de"));
    }

    #[test]
    fn reasons_are_helpful_and_escaped() {
        let uk = parse("bob-country-uk").expect_err("UK is not assigned");
        assert!(uk.to_string().contains("GB"), "{uk}");
        let injected = parse("bob-foo\r\nFAKE LOG LINE").expect_err("unknown key");
        let shown = injected.to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
        let repeated = parse("bob-cc-de-COUNTRY-fr").expect_err("repeated");
        assert!(repeated.to_string().contains("\"COUNTRY\""), "{repeated}");
    }

    #[test]
    fn session_ttl_defaults_to_ten_minutes() {
        assert_eq!(t("bob").session_ttl(), Duration::from_secs(600));
        let long = parse("bob-session-s-ttl-1440").expect("valid");
        assert_eq!(long.session_ttl(), Duration::from_secs(86_400));
    }

    #[test]
    fn country_table_is_sorted_upper_case_and_unique() {
        assert!(ASSIGNED_COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(ASSIGNED_COUNTRY_CODES.iter().all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())));
        for code in ["GB", "DE", "US", "AX", "SS", "ZW"] {
            let [a, b] = code.as_bytes() else { panic!() };
            assert!(is_assigned_country([*a, *b]), "{code}");
        }
        for code in [*b"UK", *b"EU", *b"de", *b"ZZ"] {
            assert!(!is_assigned_country(code));
        }
        assert!(is_assigned_country(*b"XK"), "GeoIP databases place Kosovo at XK");
    }

    #[test]
    fn node_network_bounds() {
        assert!(!is_node_address(Ipv4Addr::new(100, 63, 255, 255)));
        assert!(is_node_address(Ipv4Addr::new(100, 64, 0, 0)));
        assert!(is_node_address(Ipv4Addr::new(100, 127, 255, 255)));
        assert!(!is_node_address(Ipv4Addr::new(100, 128, 0, 0)));
    }

    #[test]
    fn every_key_alias_resolves_case_insensitively() {
        for key in Key::ALL {
            for alias in key.aliases() {
                assert_eq!(Key::from_alias(alias), Some(key));
                assert_eq!(Key::from_alias(&alias.to_ascii_uppercase()), Some(key));
            }
        }
        assert_eq!(Key::from_alias(""), None);
    }
}
