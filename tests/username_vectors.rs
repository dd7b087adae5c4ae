//! Runs every case of `tests/vectors/username.json` (shared with the Android app) against
//! `relay::username::parse`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::Value;
use traffix::relay::username::{self, SessionMode, Targeting};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/username.json");
    let text = std::fs::read_to_string(path).expect("read tests/vectors/username.json");
    serde_json::from_str(&text).expect("tests/vectors/username.json is JSON")
}

fn cases<'a>(vectors: &'a Value, kind: &str) -> &'a [Value] {
    vectors[kind].as_array().unwrap_or_else(|| panic!("vectors have no {kind:?} array"))
}

fn username(case: &Value) -> &str {
    case["username"].as_str().unwrap_or_else(|| panic!("case without a username string: {case}"))
}

fn field_str<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field].as_str().unwrap_or_else(|| panic!("{field:?} is not a string in {case}"))
}

fn opt_str<'a>(case: &'a Value, field: &str) -> Option<&'a str> {
    match &case[field] {
        Value::Null => None,
        _ => Some(field_str(case, field)),
    }
}

fn expected(case: &Value) -> Targeting {
    Targeting {
        name: field_str(case, "name").to_owned(),
        country: opt_str(case, "country").map(|c| {
            <[u8; 2]>::try_from(c.as_bytes()).unwrap_or_else(|_| panic!("country is not two bytes in {case}"))
        }),
        session: opt_str(case, "session").map(str::to_owned),
        ttl_minutes: match &case["ttl_minutes"] {
            Value::Null => None,
            v => Some(
                v.as_u64()
                    .and_then(|m| u16::try_from(m).ok())
                    .unwrap_or_else(|| panic!("ttl_minutes is not a u16 in {case}")),
            ),
        },
        node: opt_str(case, "node")
            .map(|n| n.parse::<Ipv4Addr>().unwrap_or_else(|_| panic!("node is not an IPv4 address in {case}"))),
        mode: match field_str(case, "mode") {
            "flex" => SessionMode::Flex,
            "strict" => SessionMode::Strict,
            other => panic!("bad mode {other:?} in vector {case}"),
        },
        quality_high: match &case["quality"] {
            Value::Null => false,
            v if v == "high" => true,
            other => panic!("bad quality {other} in vector {case}"),
        },
        trust: opt_str(case, "trust").map(|t| {
            traffix::identity::TrustLevel::parse(t).unwrap_or_else(|| panic!("bad trust {t:?} in vector {case}"))
        }),
    }
}

#[test]
fn accepted_usernames_parse_to_the_expected_targeting() {
    let vectors = vectors();
    let mut failures = Vec::new();
    for case in cases(&vectors, "accept") {
        let want = expected(case);
        match username::parse(username(case)) {
            Ok(got) if got == want => {
                assert_eq!(
                    got.session_ttl().as_secs(),
                    60 * u64::from(want.ttl_minutes.unwrap_or(username::DEFAULT_SESSION_TTL_MINUTES))
                );
            }
            Ok(got) => failures.push(format!("{case}: got {got:?}")),
            Err(e) => failures.push(format!("{case}: rejected with {} ({e})", e.code())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rejected_usernames_fail_with_the_expected_code() {
    let vectors = vectors();
    let mut failures = Vec::new();
    for case in cases(&vectors, "reject") {
        let want = field_str(case, "code");
        match username::parse(username(case)) {
            Ok(got) => failures.push(format!("{case}: accepted as {got:?}")),
            Err(e) if e.code() != want => {
                failures.push(format!("{case}: got {} ({e})", e.code()));
            }
            Err(e) => {
                // The reason goes into a 407 body and a log line: never empty, one line.
                let reason = e.to_string();
                if reason.is_empty() || reason.chars().any(char::is_control) {
                    failures.push(format!("{case}: unusable reason {reason:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn vectors_cover_every_error_code_and_are_unique() {
    let vectors = vectors();
    let used: BTreeSet<&str> = cases(&vectors, "reject").iter().map(|c| field_str(c, "code")).collect();
    let known: BTreeSet<&str> = username::ERROR_CODES.into_iter().collect();
    assert_eq!(used, known);

    let all: Vec<&str> = cases(&vectors, "accept").iter().chain(cases(&vectors, "reject")).map(username).collect();
    let unique: BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a username appears twice");
}
