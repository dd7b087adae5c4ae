#![allow(clippy::unwrap_used)] // test crate
//! The dependency rules of STYLE.md §2, enforced by the build.
//!
//! 1. Pure files (protocol, egress policy, auth rules, money, username grammar, config) never
//!    import axum, teloxide, redb, hyper or tokio I/O adapters.
//! 2. Parts import only what their place allows ([`RULES`]): the front-ends hand clients to the
//!    relay and never touch the tunnel; the tunnel knows nothing of proxies or money; the store
//!    and auth sit below the tunnel and the API; the node agent has no server parts; the leaf
//!    types import nothing of the project.
//! 3. No two files of one folder import each other, directly or in a ring.
//!
//! This is the Rust version of an architecture test (mullvad's Konsist `dependsOnNothing`): it
//! reads the source as text. Comments, strings and `#[cfg(test)]` modules are blanked out first;
//! every `crate::…`, `super::…` and `self::…` path left (in `use` trees and inline) is resolved
//! to the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One boundary: files under any of `parts` must not name a module under any of `forbidden`.
struct Rule {
    parts: &'static [&'static str],
    forbidden: &'static [&'static str],
    why: &'static str,
}

/// The part-level rules. Parts are paths under `src/`; forbidden entries are module paths.
const RULES: &[Rule] = &[
    Rule {
        parts: &["src/proxy/"],
        forbidden: &["crate::tunnel", "crate::billing", "crate::store", "crate::api", "crate::admin"],
        why: "front-ends only turn a client connection into (stream, account, requested target) and \
              hand it to the relay (crate::relay); routing, money and the tunnel are the relay's business",
    },
    Rule {
        parts: &["src/tunnel/"],
        forbidden: &["crate::proxy", "crate::relay", "crate::billing", "crate::api", "crate::admin", "crate::web"],
        why: "the tunnel carries streams for whoever opens them and knows nothing of proxies or money; \
              the relay joins the two",
    },
    Rule {
        parts: &["src/store/"],
        forbidden: &["crate::tunnel", "crate::api", "crate::admin", "crate::proxy", "crate::relay", "crate::web"],
        why: "the store keeps durable state below every service and adapter; shared domain types live \
              in leaf modules (crate::target, crate::identity), not in the tunnel",
    },
    Rule {
        parts: &["src/auth/"],
        forbidden: &["crate::tunnel", "crate::store", "crate::api", "crate::admin", "crate::web"],
        why: "auth holds pure rules (hashing, tokens, signatures): callers bring the records, and \
              device identity comes from crate::identity, not the tunnel",
    },
    Rule {
        parts: &["src/node/"],
        forbidden: &[
            "crate::store",
            "crate::billing",
            "crate::admin",
            "crate::api",
            "crate::relay",
            "crate::proxy",
            "crate::web",
            "crate::app",
        ],
        why: "the node agent runs on a node owner's machine: it speaks the tunnel and never links \
              the server's state, money or admin parts",
    },
    Rule {
        parts: &["src/target.rs", "src/identity.rs", "src/netinfo.rs"],
        forbidden: &["crate"],
        why: "leaf types and readers (a stream's target, device identity, the machine's own \
              addresses) sit below every part that shares them and import nothing of the project",
    },
    Rule {
        parts: &[
            "src/tunnel/protocol.rs",
            "src/billing/rules.rs",
            "src/billing/mod.rs",
            "src/relay/username.rs",
            "src/auth/mod.rs",
        ],
        forbidden: &["crate::store", "crate::admin", "crate::web", "crate::api", "crate::proxy", "crate::app"],
        why: "pure rules (the frame codec, charging, the username grammar, auth) decide without \
              storage, adapters or front-ends",
    },
    Rule {
        parts: &["src/trust/"],
        forbidden: &[
            "crate::store",
            "crate::tunnel",
            "crate::api",
            "crate::admin",
            "crate::proxy",
            "crate::relay",
            "crate::web",
            "crate::app",
        ],
        why: "device trust judges a chain against a policy: callers bring the chain and store the \
              verdict; it never reaches into storage, the tunnel or the front-ends",
    },
    Rule {
        parts: &["src/payments/"],
        forbidden: &[
            "crate::admin",
            "crate::api",
            "crate::proxy",
            "crate::relay",
            "crate::tunnel",
            "crate::web",
            "crate::cli",
            "crate::app",
        ],
        why: "payments is an adapter over the store: the API calls it and the app wires its hooks; it \
              never reaches into the admin commands, the API or the data path",
    },
    Rule {
        parts: &["src/watchdog/"],
        forbidden: &[
            "crate::tunnel",
            "crate::relay",
            "crate::proxy",
            "crate::billing",
            "crate::admin",
            "crate::api",
            "crate::web",
            "crate::cli",
            "crate::app",
        ],
        why: "the watchdog is fed events by the tunnel and the relay and answers the router's \
              questions; it never reaches into them (bans go through a hook the app wires)",
    },
    Rule {
        parts: &["src/telegram/"],
        forbidden: &[
            "crate::api",
            "crate::proxy",
            "crate::relay",
            "crate::tunnel",
            "crate::web",
            "crate::cli",
            "crate::app",
        ],
        why: "the bot is a front end of the admin commands and the payments service, like the API; it \
              never reaches into the data path or another front end",
    },
    Rule {
        parts: &["src/notify/"],
        forbidden: &[
            "crate::api",
            "crate::admin",
            "crate::telegram",
            "crate::proxy",
            "crate::relay",
            "crate::tunnel",
            "crate::web",
        ],
        why: "notification events are emitted by every part and delivered by the bot: the event type and \
              the watcher's rules depend on none of them",
    },
    Rule {
        parts: &[
            "src/config.rs",
            "src/watchdog/config.rs",
            "src/money.rs",
            "src/egress.rs",
            "src/secret.rs",
            "src/payments/config.rs",
            "src/payments/signature.rs",
        ],
        forbidden: &["crate::tunnel", "crate::store", "crate::proxy", "crate::relay", "crate::api", "crate::admin"],
        why: "configuration and the pure rules below it are read by every part and depend on none of them",
    },
];

/// Pure files and the crates they must not depend on.
const PURE: &[&str] = &[
    "src/tunnel/protocol.rs",
    "src/egress.rs",
    "src/auth/mod.rs",
    "src/money.rs",
    "src/billing/rules.rs",
    "src/billing/mod.rs",
    "src/relay/username.rs",
    "src/config.rs",
    "src/secret.rs",
    "src/payments/config.rs",
    "src/payments/signature.rs",
    "src/target.rs",
    "src/identity.rs",
    "src/watchdog/config.rs",
    "src/watchdog/quality.rs",
    "src/trust/mod.rs",
    "src/trust/der.rs",
    "src/trust/key_description.rs",
];
const FORBIDDEN_CRATES: &[&str] = &[
    "tokio",
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

fn src_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as `src/…` paths, sorted.
fn source_files() -> Vec<String> {
    let root = src_root();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(format!("src/{}", p.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    out.sort();
    out
}

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The source with comments, string and char literals blanked (newlines kept, so line numbers
/// hold).
fn blank_comments_and_strings(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r' && (next == Some(b'"') || next == Some(b'#')) && !prev_is_ident(b, i) {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            out.resize(out.len() + (j + 1 - i), b' ');
            i = j + 1;
            while i < b.len() && !b[i..].starts_with(&close) {
                blank(&mut out, b[i]);
                i += 1;
            }
            out.resize(out.len() + close.len().min(b.len() - i), b' ');
            i += close.len();
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' && is_char_literal(b, i) {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    out.push(b' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(b' ');
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out.truncate(src.len());
    String::from_utf8_lossy(&out).into_owned()
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// `'x'`, `'\n'`, `'\u{1F600}'` are char literals; `'a` in `&'a str` is a lifetime.
fn is_char_literal(b: &[u8], i: usize) -> bool {
    match b.get(i + 1) {
        Some(b'\\') => true,
        Some(_) => {
            // One UTF-8 character, then the closing quote.
            let mut j = i + 2;
            while b.get(j).is_some_and(|c| c & 0xC0 == 0x80) {
                j += 1;
            }
            b.get(j) == Some(&b'\'')
        }
        None => false,
    }
}

/// Blanks every `#[cfg(test)]` item (test modules and their imports may wire anything).
fn blank_test_modules(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(pos) = code[from..].find("#[cfg(test)]").map(|p| p + from) {
        // The item ends at its `;` (a `mod tests;` declaration) or at the brace that closes
        // its body.
        let mut depth = 0usize;
        let mut end = code.len();
        for (k, ch) in code[pos..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = pos + k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = pos + k + 1;
                    break;
                }
                _ => {}
            }
        }
        for c in &mut out[pos..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(out).unwrap()
}

/// The module path of a source file: `src/store/holds.rs` → `crate::store::holds`,
/// `src/store/mod.rs` → `crate::store`, `src/lib.rs` → `crate`.
fn module_of(file: &str) -> String {
    let rel = file.trim_start_matches("src/").trim_end_matches(".rs");
    let mut parts: Vec<&str> = rel.split('/').collect();
    if matches!(parts.last(), Some(&"mod") | Some(&"lib") | Some(&"main")) {
        parts.pop();
    }
    std::iter::once("crate").chain(parts).collect::<Vec<_>>().join("::")
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand_use_tree(tree: &str) -> Vec<String> {
    // Renames (`x as y`) do not change what is imported: drop them, then the spaces.
    let mut tokens = tree.split_whitespace().peekable();
    let mut joined = String::new();
    while let Some(t) = tokens.next() {
        if t == "as" {
            // The new name, with whatever punctuation follows it (`y,` or `y}`).
            let name = tokens.next().unwrap_or_default();
            joined.extend(name.chars().filter(|c| !(c.is_ascii_alphanumeric() || *c == '_')));
        } else {
            joined.push_str(t);
        }
    }
    let tree = joined;
    let Some(open) = tree.find('{') else { return vec![tree] };
    let prefix = &tree[..open];
    let Some(close) = tree.rfind('}') else { return vec![tree] };
    let inner = &tree[open + 1..close];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (k, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.is_empty())
        .flat_map(|i| {
            let i = if i == "self" { prefix.trim_end_matches("::").to_owned() } else { format!("{prefix}{i}") };
            expand_use_tree(&i)
        })
        .collect()
}

/// Resolves a path as written in `module` to an absolute `crate::…` path, or `None` when it
/// names nothing of the project (std, a dependency).
fn resolve(module: &str, path: &str) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = module.split("::").collect();
    match segs.first().copied() {
        Some("crate") => return Some(path.to_owned()),
        Some("self") => {
            segs.remove(0);
        }
        Some("super") => {
            while segs.first() == Some(&"super") {
                segs.remove(0);
                base.pop();
            }
        }
        _ => return None,
    }
    base.extend(segs);
    Some(base.join("::"))
}

/// Every project path `file` names outside comments, strings and test modules: (line, path).
fn project_paths(file: &str, text: &str) -> Vec<(usize, String)> {
    let module = module_of(file);
    let code = blank_test_modules(&blank_comments_and_strings(text));
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let line_of = |pos: usize| code[..pos].bytes().filter(|&c| c == b'\n').count() + 1;
    // `use` trees, which may span lines and hold braces.
    let mut i = 0;
    while let Some(p) = code[i..].find("use ").map(|p| p + i) {
        let at_item_start = p == 0 || code[..p].trim_end().ends_with([';', '{', '}', ']']) || {
            let before = code[..p].trim_end();
            before.ends_with("pub") || before.ends_with(')')
        };
        let Some(end) = code[p..].find(';').map(|e| e + p) else { break };
        if at_item_start && !prev_is_ident(bytes, p) {
            for path in expand_use_tree(&code[p + 4..end]) {
                if let Some(abs) = resolve(&module, &path) {
                    out.push((line_of(p), abs));
                }
            }
            i = end;
        } else {
            i = p + 4;
        }
    }
    // Inline paths: `crate::a::b`, `super::x`, `self::y` anywhere else.
    let mut k = 0;
    while k < bytes.len() {
        let rest = &code[k..];
        let starts = ["crate::", "super::", "self::"].iter().find(|s| rest.starts_with(**s));
        if let Some(s) = starts
            && !prev_is_ident(bytes, k)
            && !(k >= 2 && &code[k - 2..k] == "::")
        {
            let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            let path = rest[..len].trim_end_matches(':');
            if let Some(abs) = resolve(&module, path) {
                out.push((line_of(k), abs));
            }
            k += len.max(s.len());
        } else {
            k += 1;
        }
    }
    out.sort();
    out.dedup();
    // `crate::a` seen inline in `use crate::a::{B, C}` says nothing the full paths do not.
    let full = out.clone();
    out.retain(|(line, p)| !full.iter().any(|(l, q)| l == line && q.len() > p.len() && names(q, p)));
    out
}

fn names(path: &str, module: &str) -> bool {
    path == module || path.starts_with(&format!("{module}::"))
}

/// Rule violations of one file: "file:line: path — rule reason".
fn violations(file: &str, text: &str) -> Vec<String> {
    let own = module_of(file);
    let mut bad = Vec::new();
    for rule in RULES.iter().filter(|r| r.parts.iter().any(|p| file.starts_with(p))) {
        for (line, path) in project_paths(file, text) {
            // A file may always name itself and what it contains.
            if names(&path, &own) && own != "crate" {
                continue;
            }
            if let Some(f) = rule.forbidden.iter().find(|f| names(&path, f)) {
                bad.push(format!("{file}:{line}: names {path} (forbidden: {f}) — {}", rule.why));
            }
        }
    }
    bad
}

#[test]
fn parts_import_only_what_their_place_allows() {
    let mut bad = Vec::new();
    for file in source_files() {
        if file.ends_with("/tests.rs") {
            continue;
        }
        bad.extend(violations(&file, &read(&file)));
    }
    assert!(bad.is_empty(), "forbidden imports across parts:\n{}", bad.join("\n"));
}

#[test]
fn every_rule_names_files_that_exist() {
    let files = source_files();
    for rule in RULES {
        for part in rule.parts {
            assert!(files.iter().any(|f| f.starts_with(part)), "rule part {part} matches no file");
        }
    }
}

#[test]
fn a_forbidden_import_fails_with_the_rules_reason() {
    let v = violations("src/proxy/socks5.rs", "use crate::tunnel::mux::MuxStream;\nuse crate::relay::RelayService;\n");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("src/proxy/socks5.rs:1: names crate::tunnel::mux::MuxStream"), "{}", v[0]);
    assert!(v[0].contains("hand it to the relay"), "{}", v[0]);
    // Grouped, nested and inline forms, `super::` climbing, and a rename are all seen.
    let v = violations("src/tunnel/session.rs", "use crate::{auth, relay::{router::Router, self}};\n");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("names crate::relay::router::Router"), "{v:?}");
    let v = violations("src/tunnel/session.rs", "use crate::{auth, relay::{self}};\n");
    assert_eq!(v.len(), 1, "{v:?}");
    let v = violations("src/store/holds.rs", "fn f() { let _ = super::super::tunnel::mux::Mux::new(); }");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("crate::tunnel::mux::Mux::new"), "{v:?}");
    let v = violations("src/auth/jwt.rs", "use crate::store::Store as S;\n");
    assert_eq!(v.len(), 1, "{v:?}");
    // A grouped import in a pure file is resolved like any other.
    let v = violations("src/billing/rules.rs", "use crate::{money::Micros, store::Store};\n");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("names crate::store::Store"), "{v:?}");
    // Leaf types may name nothing of the project, but std is fine and so is themselves.
    assert_eq!(violations("src/target.rs", "use std::net::SocketAddr;\nimpl self::Target {}\n").len(), 0);
    assert_eq!(violations("src/identity.rs", "use super::money::Micros;\n").len(), 1);
}

#[test]
fn comments_strings_and_test_modules_are_not_imports() {
    let text = r##"
        // use crate::tunnel::mux;
        /// [`crate::tunnel::copy`] does the copying.
        /* crate::tunnel::registry */
        const S: &str = "crate::tunnel::protocol";
        const R: &str = r#"use crate::tunnel::ws;"#;
        const C: char = '"';
        fn f<'a>(x: &'a str) -> &'a str { x }
        #[cfg(test)]
        mod tests {
            use crate::tunnel::mux::Mux;
            fn g() { let _ = '{'; }
        }
        use crate::relay::RelayService;
    "##;
    assert!(violations("src/proxy/http.rs", text).is_empty(), "{:?}", violations("src/proxy/http.rs", text));
    let after = format!("{text}\nuse crate::billing::meter::Billing;\n");
    assert_eq!(violations("src/proxy/http.rs", &after).len(), 1);
}

/// The files of one folder (its `mod.rs` aside, which declares them) and which of them each one
/// names.
fn sibling_graph(files: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let modules: BTreeMap<String, String> = files.iter().map(|f| (module_of(f), f.clone())).collect();
    for file in files {
        if file.ends_with("/mod.rs") || file.ends_with("/tests.rs") || !file.contains('/') {
            continue;
        }
        let own = module_of(file);
        let parent = own.rsplit_once("::").map(|(p, _)| p.to_owned()).unwrap_or_default();
        let entry = graph.entry(file.clone()).or_default();
        for (_, path) in project_paths(file, &read(file)) {
            // The sibling module this path goes through, if any.
            let Some(rest) = path.strip_prefix(&format!("{parent}::")) else { continue };
            let sibling = format!("{parent}::{}", rest.split("::").next().unwrap_or_default());
            if sibling != own
                && let Some(f) = modules.get(&sibling)
                && !f.ends_with("/mod.rs")
            {
                entry.insert(f.clone());
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut ring = stack[at..].to_vec();
            ring.push(n.to_owned());
            return Some(ring);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_two_files_of_a_folder_import_each_other() {
    let graph = sibling_graph(&source_files());
    assert!(graph.keys().any(|f| f.starts_with("src/store/")), "the store's files were not read");
    if let Some(ring) = find_cycle(&graph) {
        panic!("files that import each other (move the shared part to one of them): {}", ring.join(" -> "));
    }
}

#[test]
fn the_cycle_check_finds_a_ring() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycle(&g), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let mut acyclic = g.clone();
    acyclic.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&acyclic), None);
}

fn offending_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| {
            FORBIDDEN_CRATES.iter().any(|f| {
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
    let mut bad = Vec::new();
    for f in PURE {
        for l in offending_lines(&read(f)) {
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
    assert_eq!(offending_lines("use tokio::net::TcpStream;"), vec!["use tokio::net::TcpStream;"]);
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let mut missing = Vec::new();
    for f in source_files() {
        if !read(&f).trim_start().starts_with("//!") {
            missing.push(f);
        }
    }
    assert!(missing.is_empty(), "modules without a //! doc saying what they own:\n{}", missing.join("\n"));
}
