#![allow(clippy::unwrap_used)] // test crate
//! The dependency rule of STYLE.md §2: the pure modules (protocol, egress policy, auth rules,
//! money, username grammar, config) never import axum, teloxide, redb, hyper or tokio I/O
//! adapters. This is the Rust version of an architecture test: it greps their `use` lines.

use std::path::Path;

/// Pure modules and the crates they must not depend on.
const PURE: &[&str] = &[
    "src/tunnel/protocol.rs",
    "src/egress.rs",
    "src/auth/mod.rs",
    "src/money.rs",
    "src/billing/rules.rs",
    "src/billing/mod.rs",
    "src/proxy/username.rs",
    "src/config.rs",
    "src/secret.rs",
];
const FORBIDDEN: &[&str] = &[
    "axum",
    "teloxide",
    "redb",
    "hyper",
    "tokio_tungstenite",
    "fast_socks5",
    "moka",
    "crate::store",
    "crate::admin",
    "crate::web",
];

fn offending_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| {
            FORBIDDEN.iter().any(|f| {
                l.contains(&format!("{f}::"))
                    || l.starts_with(&format!("use {f}"))
                    || l.contains(&format!("extern crate {f}"))
            })
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn pure_modules_do_not_import_adapters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut bad = Vec::new();
    for f in PURE {
        let text = std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        for l in offending_lines(&text) {
            bad.push(format!("{f}: {l}"));
        }
    }
    assert!(bad.is_empty(), "pure modules import adapter crates:\n{}", bad.join("\n"));
}

#[test]
fn the_check_catches_a_forbidden_import() {
    assert_eq!(offending_lines("use axum::Router;\nuse std::fmt;\n"), vec!["use axum::Router;"]);
    assert_eq!(
        offending_lines("let t = redb::TableDefinition::new(\"x\");"),
        vec!["let t = redb::TableDefinition::new(\"x\");"]
    );
    assert!(offending_lines("// axum:: in a comment\nuse bytes::Bytes;").is_empty());
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                if !text.trim_start().starts_with("//!") {
                    missing.push(p.display().to_string());
                }
            }
        }
    }
    assert!(missing.is_empty(), "modules without a //! doc saying what they own:\n{}", missing.join("\n"));
}
