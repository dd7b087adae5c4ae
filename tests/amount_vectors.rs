//! Runs every case of `tests/vectors/amounts.json` (shared with the dashboard's browser tests)
//! against `Micros::parse`, the money grammar of the CLI and the API, and the signed cases
//! against `parse_signed`, the grammar of balance adjustments.

use serde_json::Value;
use traffix::money::{Micros, MoneyError, format_signed, parse_signed};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/amounts.json");
    let text = std::fs::read_to_string(path).expect("read tests/vectors/amounts.json");
    serde_json::from_str(&text).expect("tests/vectors/amounts.json is JSON")
}

fn error_code(e: &MoneyError) -> &'static str {
    match e {
        MoneyError::Syntax(_) => "syntax",
        MoneyError::TooPrecise(_) => "too_precise",
        MoneyError::Overflow(_) => "overflow",
    }
}

#[test]
fn unsigned_amounts_parse_as_the_vectors_say() {
    let v = vectors();
    let cases = v["unsigned"].as_array().expect("an \"unsigned\" array");
    assert!(cases.len() >= 40, "the vectors cover the grammar");
    let mut failures = Vec::new();
    for case in cases {
        let input = case["input"].as_str().unwrap_or_else(|| panic!("case without an input string: {case}"));
        let got = Micros::parse(input);
        if case["ok"].as_bool().unwrap_or_else(|| panic!("case without ok: {case}")) {
            let want: u64 = case["micros"]
                .as_str()
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| panic!("accepted case without micros as a decimal string: {case}"));
            if got != Ok(Micros(want)) {
                failures.push(format!("{input:?}: want {want}, got {got:?}"));
            }
        } else {
            let want = case["error"].as_str().unwrap_or_else(|| panic!("rejected case without error: {case}"));
            match &got {
                Err(e) if error_code(e) == want => {}
                _ => failures.push(format!("{input:?}: want error {want}, got {got:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} case(s) differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn signed_amounts_parse_as_the_vectors_say() {
    let v = vectors();
    let cases = v["signed"].as_array().expect("a \"signed\" array");
    assert!(cases.len() >= 40, "the vectors cover the signed grammar");
    let mut failures = Vec::new();
    for case in cases {
        let input = case["input"].as_str().unwrap_or_else(|| panic!("case without an input string: {case}"));
        let got = parse_signed(input);
        if case["ok"].as_bool().unwrap_or_else(|| panic!("case without ok: {case}")) {
            let want: i64 = case["micros"]
                .as_str()
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| panic!("accepted case without micros as a decimal string: {case}"));
            if got != Ok(want) {
                failures.push(format!("{input:?}: want {want}, got {got:?}"));
            }
        } else {
            let want = case["error"].as_str().unwrap_or_else(|| panic!("rejected case without error: {case}"));
            match &got {
                Err(e) if error_code(e) == want => {}
                _ => failures.push(format!("{input:?}: want error {want}, got {got:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} case(s) differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn signed_amounts_print_back_to_what_they_mean() {
    for case in vectors()["signed"].as_array().into_iter().flatten().filter(|c| c["ok"] == true) {
        let v = parse_signed(case["input"].as_str().unwrap_or_default()).expect("accepted");
        assert_eq!(parse_signed(&format_signed(v)), Ok(v), "{case}");
    }
}

#[test]
fn accepted_amounts_print_back_to_what_they_mean() {
    for case in vectors()["unsigned"].as_array().into_iter().flatten().filter(|c| c["ok"] == true) {
        let m = Micros::parse(case["input"].as_str().unwrap_or_default()).expect("accepted");
        assert_eq!(Micros::parse(&m.to_string()), Ok(m), "{case}");
    }
}
