//! Runs the golden tunnel frames of `tests/vectors/frames.json` (docs/protocol.md, shared with the
//! Android app's Kotlin core) against `tunnel::protocol`, and fuzzes the decoder.
//!
//! Every case is checked and all mismatches are reported together.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};
use traffix::identity::{KeyAlg, attestation_challenge, challenge_message, device_id};
use traffix::target::{OpenErrReason, ResetReason, Target};
use traffix::tunnel::protocol::{
    Challenge, ErrorCode, Frame, HEADER_LEN, Heartbeat, HeartbeatAck, Hello, MAX_CURRENCY_LEN, MAX_DATA_LEN,
    MAX_FRAME_LEN, MAX_STATS_DAYS, MAX_STATS_MONTHS, NetworkType, NodeState, Pair, PauseReason, Proof, ProtocolError,
    Stats, StatsEntry, StatsRequest, StatsStatus, Welcome, negotiate_version,
};

fn load() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/frames.json");
    let text = std::fs::read_to_string(path).expect("read tests/vectors/frames.json");
    serde_json::from_str(&text).expect("tests/vectors/frames.json is valid JSON")
}

fn cases<'a>(vectors: &'a Value, kind: &str) -> &'a [Value] {
    vectors[kind].as_array().unwrap_or_else(|| panic!("vectors have no {kind:?} array"))
}

fn str_of<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key].as_str().unwrap_or_else(|| panic!("{key:?} is not a string in {case}"))
}

fn hex_of(case: &Value, key: &str) -> Vec<u8> {
    let s = str_of(case, key);
    assert_eq!(s, s.to_ascii_lowercase(), "{key:?} is not lowercase hex in {case}");
    hex::decode(s).unwrap_or_else(|e| panic!("{key:?} is not hex ({e}) in {case}"))
}

fn array_of<const N: usize>(case: &Value, key: &str) -> [u8; N] {
    hex_of(case, key).try_into().unwrap_or_else(|_| panic!("{key:?} is not {N} bytes in {case}"))
}

/// The stable vector name of a decode error (the mapping documented in the JSON description).
fn error_name(e: &ProtocolError) -> &'static str {
    match e {
        ProtocolError::Short(_) => "short",
        ProtocolError::TooLarge(_) => "too_large",
        ProtocolError::UnknownType(_) => "unknown_type",
        ProtocolError::NeedsConnectionStream(_) => "needs_connection_stream",
        ProtocolError::NeedsStream(_) => "needs_stream",
        ProtocolError::Truncated { .. } => "truncated",
        ProtocolError::FieldLength { .. } => "field_length",
        ProtocolError::RepeatedField { .. } => "repeated_field",
        ProtocolError::MissingField { .. } => "missing_field",
        ProtocolError::BadField { .. } => "bad_field",
        ProtocolError::BadAddress(_) => "bad_address",
        ProtocolError::EmptyData => "empty_data",
    }
}

const ERROR_NAMES: [&str; 12] = [
    "short",
    "too_large",
    "unknown_type",
    "needs_connection_stream",
    "needs_stream",
    "truncated",
    "field_length",
    "repeated_field",
    "missing_field",
    "bad_field",
    "bad_address",
    "empty_data",
];

const FRAME_TYPES: [&str; 19] = [
    "HELLO",
    "CHALLENGE",
    "PROOF",
    "PAIR",
    "WELCOME",
    "HEARTBEAT",
    "HEARTBEAT_ACK",
    "DRAIN",
    "ERROR",
    "STATS_REQUEST",
    "STATS",
    "UNPAIR",
    "UNPAIRED",
    "OPEN",
    "OPEN_OK",
    "OPEN_ERR",
    "DATA",
    "WINDOW",
    "RESET",
];

/// The field names a vector of each type may use (docs/protocol.md; `stream` for stream frames).
fn allowed_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "HELLO" => &["min_version", "max_version", "device_id", "agent", "max_streams", "max_inflight", "session"],
        "CHALLENGE" => &["version", "nonce", "server_time_ms"],
        "PROOF" => &["nonce", "signature"],
        "PAIR" => &[
            "code",
            "key_alg",
            "public_key",
            "nonce",
            "signature",
            "model",
            "os",
            "app_version",
            "attestation",
            "hints",
        ],
        "WELCOME" => &[
            "device_id",
            "vip",
            "heartbeat_interval_s",
            "max_streams",
            "initial_window",
            "max_frame",
            "challenge_interval_s",
            "max_inflight",
            "idle_heartbeat_interval_s",
        ],
        "HEARTBEAT" => &[
            "seq",
            "state",
            "battery_pct",
            "charging",
            "network",
            "bytes_today",
            "bytes_month",
            "max_streams",
            "daily_cap",
            "monthly_cap",
            "active_streams",
            "uptime_s",
            "pause_reason",
            "rtt_ms",
        ],
        "HEARTBEAT_ACK" => &["seq", "server_time_ms", "bytes_today", "earned_today", "currency"],
        "DRAIN" => &["reason", "deadline_s"],
        "ERROR" => &["code", "message"],
        "STATS_REQUEST" => &["request_id", "days", "months"],
        "STATS" => &["request_id", "status", "currency", "today", "days", "months", "retry_after_s"],
        "UNPAIR" => &["request_id", "reason"],
        "UNPAIRED" => &["request_id"],
        "OPEN" => &["stream", "window", "port", "atyp", "addr", "probe"],
        "OPEN_OK" => &["stream", "window", "port", "atyp", "addr"],
        "OPEN_ERR" | "RESET" => &["stream", "reason", "message"],
        "DATA" => &["stream", "fin", "payload"],
        "WINDOW" => &["stream", "increment"],
        other => panic!("unknown frame type {other:?}"),
    }
}

/// Typed access to the "fields" object of one frame vector.
struct Fields<'a> {
    case: &'a Value,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(case: &'a Value) -> Self {
        let map = case["fields"].as_object().unwrap_or_else(|| panic!("no \"fields\" object in {case}"));
        Fields { case, map }
    }

    fn opt_uint<T: TryFrom<u64>>(&self, key: &str) -> Option<T> {
        self.map.get(key).map(|v| {
            v.as_u64()
                .and_then(|n| T::try_from(n).ok())
                .unwrap_or_else(|| panic!("{key:?} is not an integer of the right width in {}", self.case))
        })
    }

    fn uint<T: TryFrom<u64>>(&self, key: &str) -> T {
        self.opt_uint(key).unwrap_or_else(|| panic!("{key:?} missing in {}", self.case))
    }

    fn opt_text(&self, key: &str) -> Option<String> {
        self.map
            .get(key)
            .map(|v| v.as_str().unwrap_or_else(|| panic!("{key:?} is not a string in {}", self.case)).to_owned())
    }

    fn text(&self, key: &str) -> String {
        self.opt_text(key).unwrap_or_else(|| panic!("{key:?} missing in {}", self.case))
    }

    fn opt_bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.map.contains_key(key).then(|| hex_of(&self.case["fields"], key))
    }

    fn bytes(&self, key: &str) -> Vec<u8> {
        self.opt_bytes(key).unwrap_or_else(|| panic!("{key:?} missing in {}", self.case))
    }

    fn opt_array<const N: usize>(&self, key: &str) -> Option<[u8; N]> {
        self.opt_bytes(key)
            .map(|b| b.try_into().unwrap_or_else(|_| panic!("{key:?} is not {N} bytes in {}", self.case)))
    }

    fn array<const N: usize>(&self, key: &str) -> [u8; N] {
        self.opt_array(key).unwrap_or_else(|| panic!("{key:?} missing in {}", self.case))
    }

    fn flag(&self, key: &str) -> bool {
        self.map
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or_else(|| panic!("{key:?} is not a boolean in {}", self.case))
    }

    fn stream(&self) -> u32 {
        self.uint("stream")
    }

    /// `port`, `atyp` and `addr` of OPEN / OPEN_OK.
    fn target(&self) -> Target {
        let port: u16 = self.uint("port");
        let addr = self.text("addr");
        let ip: Option<IpAddr> = match self.uint::<u8>("atyp") {
            1 => addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            4 => addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            3 => return Target::Domain(addr, port),
            other => panic!("atyp {other} in a valid vector {}", self.case),
        };
        match ip {
            Some(ip) => Target::Ip(SocketAddr::new(ip, port)),
            None => panic!("addr {addr:?} does not match atyp in {}", self.case),
        }
    }
}

/// Builds the frame a vector describes, refusing values the Rust model would silently change.
fn build(case: &Value) -> Frame {
    let ty = str_of(case, "type");
    let f = Fields::new(case);
    let allowed = allowed_fields(ty);
    for key in f.map.keys() {
        assert!(allowed.contains(&key.as_str()), "{ty} has no field {key:?}: {case}");
    }
    match ty {
        "HELLO" => Frame::Hello(Hello {
            min_version: f.uint("min_version"),
            max_version: f.uint("max_version"),
            device_id: f.opt_array("device_id"),
            agent: f.opt_text("agent"),
            max_streams: f.opt_uint("max_streams"),
            max_inflight: f.opt_uint("max_inflight"),
            control_only: match f.opt_uint::<u8>("session") {
                None | Some(0) => false,
                Some(1) => true,
                Some(other) => panic!("session {other} in a valid vector {case}"),
            },
        }),
        "CHALLENGE" => Frame::Challenge(Challenge {
            version: f.opt_uint("version"),
            nonce: f.array("nonce"),
            server_time_ms: f.opt_uint("server_time_ms"),
        }),
        "PROOF" => Frame::Proof(Proof { nonce: f.array("nonce"), signature: f.bytes("signature") }),
        "PAIR" => Frame::Pair(Box::new(Pair {
            code: f.text("code"),
            key_alg: KeyAlg::from_u8(f.uint("key_alg")).unwrap_or_else(|| panic!("bad key_alg in {case}")),
            public_key: f.bytes("public_key"),
            nonce: f.array("nonce"),
            signature: f.bytes("signature"),
            model: f.opt_text("model"),
            os: f.opt_text("os"),
            app_version: f.opt_text("app_version"),
            attestation: match f.map.get("attestation") {
                None => Vec::new(),
                Some(list) => {
                    let list = list.as_array().unwrap_or_else(|| panic!("attestation is not a list in {case}"));
                    assert!(!list.is_empty(), "an empty attestation list is written as an absent field: {case}");
                    list.iter()
                        .map(|c| hex::decode(c.as_str().unwrap_or_default()).expect("attestation entries are hex"))
                        .collect()
                }
            },
            hints: match f.map.get("hints") {
                None => Vec::new(),
                Some(list) => {
                    let list = list.as_array().unwrap_or_else(|| panic!("hints is not a list in {case}"));
                    assert!(!list.is_empty(), "an empty hints list is written as an absent field: {case}");
                    list.iter().map(|h| h.as_str().expect("hints are text").to_owned()).collect()
                }
            },
        })),
        "WELCOME" => Frame::Welcome(Welcome {
            device_id: f.array("device_id"),
            vip: f.text("vip").parse().unwrap_or_else(|_| panic!("vip is not an IPv4 address in {case}")),
            heartbeat_interval_s: f.uint("heartbeat_interval_s"),
            max_streams: f.uint("max_streams"),
            initial_window: f.uint("initial_window"),
            max_frame: f.uint("max_frame"),
            challenge_interval_s: f.uint("challenge_interval_s"),
            max_inflight: f.uint("max_inflight"),
            idle_heartbeat_interval_s: f.opt_uint("idle_heartbeat_interval_s"),
        }),
        "HEARTBEAT" => Frame::Heartbeat(Heartbeat {
            seq: f.uint("seq"),
            state: NodeState::from_u8(f.uint("state")).unwrap_or_else(|| panic!("bad state in {case}")),
            battery_pct: f.opt_uint("battery_pct"),
            charging: f.opt_uint::<u8>("charging").map(|c| match c {
                0 => false,
                1 => true,
                _ => panic!("charging is neither 0 nor 1 in {case}"),
            }),
            network: {
                let n: u8 = f.opt_uint("network").unwrap_or(0);
                let network = NetworkType::from_u8(n);
                assert_eq!(network as u8, n, "network {n} is not modelled: {case}");
                network
            },
            bytes_today: f.opt_uint("bytes_today"),
            bytes_month: f.opt_uint("bytes_month"),
            max_streams: f.opt_uint("max_streams"),
            daily_cap: f.opt_uint("daily_cap"),
            monthly_cap: f.opt_uint("monthly_cap"),
            active_streams: f.opt_uint("active_streams"),
            uptime_s: f.opt_uint("uptime_s"),
            pause_reason: f.opt_uint::<u8>("pause_reason").map(|r| {
                let reason = PauseReason::from_u8(r);
                assert_eq!(reason as u8, r, "pause_reason {r} is not modelled: {case}");
                reason
            }),
            rtt_ms: f.opt_uint("rtt_ms"),
        }),
        "HEARTBEAT_ACK" => Frame::HeartbeatAck(HeartbeatAck {
            seq: f.uint("seq"),
            server_time_ms: f.opt_uint("server_time_ms"),
            bytes_today: f.opt_uint("bytes_today"),
            earned_today: f.opt_uint("earned_today"),
            currency: f.opt_text("currency").inspect(|c| {
                assert!(c.len() <= MAX_CURRENCY_LEN, "currency over {MAX_CURRENCY_LEN} bytes in a valid vector {case}")
            }),
        }),
        "DRAIN" => Frame::Drain { reason: f.opt_text("reason"), deadline_s: f.opt_uint("deadline_s") },
        "ERROR" => {
            let n: u16 = f.uint("code");
            let code = ErrorCode::from_u16(n);
            assert_eq!(code as u16, n, "ERROR code {n} is not modelled: {case}");
            Frame::Error { code, message: f.opt_text("message").unwrap_or_default() }
        }
        "STATS_REQUEST" => Frame::StatsRequest(StatsRequest {
            request_id: f.uint("request_id"),
            days: f.opt_uint("days").unwrap_or(0),
            months: f.opt_uint("months").unwrap_or(0),
        }),
        "STATS" => {
            let n: u8 = f.uint("status");
            let status = StatsStatus::from_u8(n);
            assert_eq!(status as u8, n, "STATS status {n} is not modelled: {case}");
            let entries = |key: &str, max: usize| -> Vec<StatsEntry> {
                let Some(list) = f.map.get(key) else { return Vec::new() };
                let list = list.as_array().unwrap_or_else(|| panic!("{key} is not a list in {case}"));
                assert!(!list.is_empty() && list.len() <= max, "{key}: 1..={max} entries in a valid vector: {case}");
                list.iter()
                    .map(|e| {
                        let n = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{key}.{k} in {case}"));
                        StatsEntry {
                            start_day: u32::try_from(n("start_day")).expect("start_day is a u32"),
                            bytes: n("bytes"),
                            earned: n("earned"),
                        }
                    })
                    .collect()
            };
            Frame::Stats(Box::new(Stats {
                request_id: f.uint("request_id"),
                status,
                currency: f.opt_text("currency"),
                today: f.opt_uint("today"),
                days: entries("days", MAX_STATS_DAYS),
                months: entries("months", MAX_STATS_MONTHS),
                retry_after_s: f.opt_uint("retry_after_s"),
            }))
        }
        "UNPAIR" => Frame::Unpair { request_id: f.uint("request_id"), reason: f.opt_text("reason") },
        "UNPAIRED" => Frame::Unpaired { request_id: f.uint("request_id") },
        "OPEN" => Frame::Open {
            stream: f.stream(),
            window: f.uint("window"),
            target: f.target(),
            // Flag bit 1 (docs/protocol.md); absent: not a probe.
            probe: f.map.contains_key("probe") && f.flag("probe"),
        },
        "OPEN_OK" => {
            let peer = match f.target() {
                Target::Ip(a) if a.port() == 0 && a.ip().is_unspecified() => None,
                Target::Ip(a) => Some(a),
                Target::Domain(..) => panic!("OPEN_OK with a domain peer in a valid vector {case}"),
            };
            Frame::OpenOk { stream: f.stream(), window: f.uint("window"), peer }
        }
        "OPEN_ERR" => {
            let n: u8 = f.uint("reason");
            let reason = OpenErrReason::from_u8(n);
            assert_eq!(reason as u8, n, "OPEN_ERR reason {n} is not modelled: {case}");
            Frame::OpenErr { stream: f.stream(), reason, message: f.text("message") }
        }
        "DATA" => Frame::Data { stream: f.stream(), fin: f.flag("fin"), payload: Bytes::from(f.bytes("payload")) },
        "WINDOW" => Frame::Window { stream: f.stream(), increment: f.uint("increment") },
        "RESET" => {
            let n: u8 = f.uint("reason");
            let reason = ResetReason::from_u8(n);
            assert_eq!(reason as u8, n, "RESET reason {n} is not modelled: {case}");
            Frame::Reset { stream: f.stream(), reason, message: f.text("message") }
        }
        other => panic!("unknown frame type {other:?} in {case}"),
    }
}

/// The bytes of an invalid vector: "hex", or "prefix_hex" followed by "repeat"."hex" "count" times.
fn invalid_bytes(case: &Value) -> Vec<u8> {
    if case.get("hex").is_some() {
        return hex_of(case, "hex");
    }
    let mut b = hex_of(case, "prefix_hex");
    let unit = hex_of(&case["repeat"], "hex");
    let count = case["repeat"]["count"].as_u64().unwrap_or_else(|| panic!("repeat.count is not a number in {case}"));
    for _ in 0..count {
        b.extend_from_slice(&unit);
    }
    b
}

#[test]
fn frames_encode_and_decode_as_the_vectors_say() {
    let vectors = load();
    let mut failures = Vec::new();
    for case in cases(&vectors, "frames") {
        let name = str_of(case, "name");
        let want = build(case);
        let wire = hex_of(case, "hex");
        let decode_only = case.get("decode_only").and_then(Value::as_bool).unwrap_or(false);
        assert_eq!(want.name(), str_of(case, "type"), "{name}");
        let encoded = hex::encode(want.encode());
        if decode_only {
            if encoded == str_of(case, "hex") {
                failures.push(format!("{name}: marked decode_only but encode() reproduces it"));
            }
        } else if encoded != str_of(case, "hex") {
            failures.push(format!("{name}: encode() gave\n  {encoded}\nexpected\n  {}", str_of(case, "hex")));
        }
        match Frame::decode(Bytes::from(wire)) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("{name}: decoded to {got:?}, expected {want:?}")),
            Err(e) => failures.push(format!("{name}: decode failed with {} ({e})", error_name(&e))),
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn invalid_frames_fail_with_the_named_error() {
    let vectors = load();
    let mut failures = Vec::new();
    for case in cases(&vectors, "invalid") {
        let name = str_of(case, "name");
        let want = str_of(case, "error");
        assert!(ERROR_NAMES.contains(&want), "{name}: unknown error name {want:?}");
        match Frame::decode(Bytes::from(invalid_bytes(case))) {
            Ok(f) => failures.push(format!("{name}: decoded to {f:?}, expected {want}")),
            Err(e) if error_name(&e) == want => {}
            Err(e) => failures.push(format!("{name}: failed with {} ({e}), expected {want}", error_name(&e))),
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn vectors_cover_every_frame_type_and_error() {
    let vectors = load();
    let types: BTreeSet<&str> = cases(&vectors, "frames").iter().map(|c| str_of(c, "type")).collect();
    assert_eq!(types, FRAME_TYPES.into_iter().collect::<BTreeSet<_>>());
    let errors: BTreeSet<&str> = cases(&vectors, "invalid").iter().map(|c| str_of(c, "error")).collect();
    assert_eq!(errors, ERROR_NAMES.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(vectors["protocol_version"].as_u64(), Some(u64::from(traffix::tunnel::protocol::PROTOCOL_VERSION)));
    let names: Vec<&str> = ["frames", "invalid", "signing"]
        .iter()
        .flat_map(|k| cases(&vectors, k).iter().map(|c| str_of(c, "name")))
        .collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "vector names repeat");
}

#[test]
fn frame_size_limit_is_inclusive() {
    let at_limit = Frame::Data { stream: 1, fin: false, payload: Bytes::from(vec![0xab; MAX_DATA_LEN]) };
    let wire = at_limit.encode();
    assert_eq!(wire.len(), MAX_FRAME_LEN);
    assert_eq!(MAX_FRAME_LEN, 65_536);
    assert_eq!(Frame::decode(wire.clone()), Ok(at_limit));
    let mut over = wire.to_vec();
    over.push(0xab);
    assert_eq!(Frame::decode(Bytes::from(over)).map_err(|e| error_name(&e)), Err("too_large"));
}

#[test]
fn attestation_challenges_match() {
    let vectors = load();
    let all = cases(&vectors, "attestation_challenges");
    assert!(all.len() >= 3);
    for case in all {
        let name = str_of(case, "name");
        let pin: [u8; 32] = array_of(case, "pin");
        let challenge = attestation_challenge(&pin, str_of(case, "code"));
        assert_eq!(hex::encode(challenge), str_of(case, "challenge"), "{name}");
    }
}

#[test]
fn challenge_messages_and_signatures_match() {
    let vectors = load();
    for case in cases(&vectors, "signing") {
        let name = str_of(case, "name");
        let pin: [u8; 32] = array_of(case, "pin");
        let id: [u8; 16] = array_of(case, "device_id");
        let nonce: [u8; 32] = array_of(case, "nonce");
        let msg = challenge_message(&pin, &id, &nonce);
        assert_eq!(hex::encode(&msg), str_of(case, "message"), "{name}");
        if case.get("signature").is_none() {
            continue;
        }
        let n: u8 = case["key_alg"].as_u64().and_then(|n| u8::try_from(n).ok()).expect("key_alg");
        let alg = KeyAlg::from_u8(n).unwrap_or_else(|| panic!("{name}: bad key_alg"));
        let public_key = hex_of(case, "public_key");
        let signature = hex_of(case, "signature");
        assert_eq!(device_id(alg, &public_key), id, "{name}: device_id is not derived from public_key");
        assert!(traffix::auth::verify_device_signature(alg, &public_key, &pin, &id, &nonce, &signature), "{name}");
        let mut other_nonce = nonce;
        other_nonce[0] ^= 1;
        assert!(!traffix::auth::verify_device_signature(alg, &public_key, &pin, &id, &other_nonce, &signature));
        if case.get("ed25519_seed").is_some() {
            // Ed25519 is deterministic: the seed reproduces the signature exactly.
            let pair =
                ring::signature::Ed25519KeyPair::from_seed_and_public_key(&hex_of(case, "ed25519_seed"), &public_key)
                    .expect("seed matches public_key");
            assert_eq!(pair.sign(&msg).as_ref(), signature.as_slice(), "{name}");
        }
    }
}

#[test]
fn device_ids_match() {
    let vectors = load();
    for case in cases(&vectors, "device_ids") {
        let n = case["key_alg"].as_u64().and_then(|n| u8::try_from(n).ok()).expect("key_alg");
        let alg = KeyAlg::from_u8(n).unwrap_or_else(|| panic!("bad key_alg in {case}"));
        assert_eq!(hex::encode(device_id(alg, &hex_of(case, "public_key"))), str_of(case, "device_id"), "{case}");
    }
}

#[test]
fn version_negotiation_matches() {
    let vectors = load();
    for case in cases(&vectors, "version_negotiation") {
        let min = case["node_min"].as_u64().and_then(|n| u8::try_from(n).ok()).expect("node_min");
        let max = case["node_max"].as_u64().and_then(|n| u8::try_from(n).ok()).expect("node_max");
        match (negotiate_version(min, max), case["version"].as_u64()) {
            (Ok(v), Some(want)) => assert_eq!(u64::from(v), want, "{case}"),
            (Err(msg), None) => {
                if let Some(side) = case["upgrade"].as_str() {
                    assert!(msg.contains(&format!("upgrade the {side}")), "{case}: {msg}");
                    assert!(msg.contains(&format!("{min}..{max}")), "{case}: message does not name the range: {msg}");
                }
            }
            (got, _) => panic!("{case}: negotiate_version gave {got:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests.

const TYPES: [u8; 19] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0a, 0x0b, 0x0c, 0x0d, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15];

/// A well-formed TLV sequence, then cut at a random point (sometimes not at all).
fn tlv_body() -> impl Strategy<Value = Vec<u8>> {
    (proptest::collection::vec((0u8..16, proptest::collection::vec(any::<u8>(), 0..40)), 0..12), any::<u16>()).prop_map(
        |(fields, cut)| {
            let mut b = Vec::new();
            for (tag, v) in fields {
                b.push(tag);
                b.extend_from_slice(&(v.len() as u16).to_be_bytes());
                b.extend_from_slice(&v);
            }
            if cut % 3 == 0 && !b.is_empty() {
                b.truncate(usize::from(cut) % b.len());
            }
            b
        },
    )
}

/// Bytes that get past the header checks more often than uniform noise does.
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    let stream = prop_oneof![Just(0u32), Just(1u32), any::<u32>()];
    let body = prop_oneof![
        tlv_body(),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(any::<u8>(), MAX_DATA_LEN - 8..MAX_DATA_LEN + 8),
    ];
    (proptest::sample::select(TYPES.to_vec()), any::<u8>(), stream, body).prop_map(|(ty, flags, stream, body)| {
        let mut b = vec![ty, flags];
        b.extend_from_slice(&stream.to_be_bytes());
        b.extend_from_slice(&body);
        b
    })
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("\\PC{{0,{max}}}")).expect("valid regex")
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((Ipv6Addr::from(ip), port))),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        socket_addr().prop_map(Target::Ip),
        ("[a-z0-9-]{1,60}(\\.[a-z0-9-]{1,60}){0,3}", any::<u16>()).prop_map(|(d, p)| Target::Domain(d, p)),
    ]
}

fn key_alg() -> impl Strategy<Value = KeyAlg> {
    prop_oneof![Just(KeyAlg::Ed25519), Just(KeyAlg::EcdsaP256)]
}

fn stream_id() -> impl Strategy<Value = u32> {
    1..=u32::MAX
}

fn control_frame() -> impl Strategy<Value = Frame> {
    let hello = (
        any::<u8>(),
        any::<u8>(),
        proptest::option::of(any::<[u8; 16]>()),
        proptest::option::of(text(64)),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
    )
        .prop_map(|(min_version, max_version, device_id, agent, max_streams, max_inflight, control_only)| {
            Frame::Hello(Hello { min_version, max_version, device_id, agent, max_streams, max_inflight, control_only })
        });
    let challenge = (proptest::option::of(any::<u8>()), any::<[u8; 32]>(), proptest::option::of(any::<u64>()))
        .prop_map(|(version, nonce, server_time_ms)| Frame::Challenge(Challenge { version, nonce, server_time_ms }));
    let pair = (
        (text(20), key_alg(), proptest::collection::vec(any::<u8>(), 0..70), any::<[u8; 32]>()),
        proptest::collection::vec(any::<u8>(), 0..80),
        (proptest::option::of(text(30)), proptest::option::of(text(30)), proptest::option::of(text(10))),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 0..4),
        proptest::collection::vec(text(16), 0..4),
    )
        .prop_map(
            |((code, key_alg, public_key, nonce), signature, (model, os, app_version), attestation, hints)| {
                Frame::Pair(Box::new(Pair {
                    code,
                    key_alg,
                    public_key,
                    nonce,
                    signature,
                    model,
                    os,
                    app_version,
                    attestation,
                    hints,
                }))
            },
        );
    let state = prop_oneof![Just(NodeState::Serving), Just(NodeState::Draining), Just(NodeState::Paused)];
    let network = prop_oneof![
        Just(NetworkType::Unknown),
        Just(NetworkType::Wifi),
        Just(NetworkType::Cellular),
        Just(NetworkType::Ethernet)
    ];
    let opt64 = || proptest::option::of(any::<u64>());
    let heartbeat = (
        (any::<u32>(), state, proptest::option::of(0u8..=100), proptest::option::of(any::<bool>()), network),
        (opt64(), opt64(), proptest::option::of(any::<u32>()), opt64(), opt64()),
        (
            proptest::option::of(any::<u32>()),
            opt64(),
            proptest::option::of((0u8..=9).prop_map(PauseReason::from_u8)),
            proptest::option::of(any::<u32>()),
        ),
    )
        .prop_map(
            |(
                (seq, state, battery_pct, charging, network),
                (bytes_today, bytes_month, max_streams, daily_cap, monthly_cap),
                (active_streams, uptime_s, pause_reason, rtt_ms),
            )| {
                Frame::Heartbeat(Heartbeat {
                    seq,
                    state,
                    battery_pct,
                    charging,
                    network,
                    bytes_today,
                    bytes_month,
                    max_streams,
                    daily_cap,
                    monthly_cap,
                    active_streams,
                    uptime_s,
                    pause_reason,
                    rtt_ms,
                })
            },
        );
    let welcome = (
        any::<[u8; 16]>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        (any::<u32>(), proptest::option::of(any::<u16>())),
    )
        .prop_map(|(device_id, vip, hb, max_streams, initial_window, max_frame, ci, (max_inflight, idle))| {
            Frame::Welcome(Welcome {
                device_id,
                vip: Ipv4Addr::from(vip),
                heartbeat_interval_s: hb,
                max_streams,
                initial_window,
                max_frame,
                challenge_interval_s: ci,
                max_inflight,
                idle_heartbeat_interval_s: idle,
            })
        });
    let error =
        (1u16..=11, text(100)).prop_map(|(code, message)| Frame::Error { code: ErrorCode::from_u16(code), message });
    let drain = (proptest::option::of(text(50)), proptest::option::of(any::<u16>()))
        .prop_map(|(reason, deadline_s)| Frame::Drain { reason, deadline_s });
    // At most 16 bytes: up to 16 ASCII letters, or up to 4 characters of any width.
    let currency = proptest::string::string_regex("[A-Z]{0,16}|\\PC{0,4}").expect("valid regex");
    let ack = (any::<u32>(), opt64(), opt64(), opt64(), proptest::option::of(currency)).prop_map(
        |(seq, server_time_ms, bytes_today, earned_today, currency)| {
            Frame::HeartbeatAck(HeartbeatAck { seq, server_time_ms, bytes_today, earned_today, currency })
        },
    );
    let proof = (any::<[u8; 32]>(), proptest::collection::vec(any::<u8>(), 0..80))
        .prop_map(|(nonce, signature)| Frame::Proof(Proof { nonce, signature }));
    let entry = (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(start_day, bytes, earned)| StatsEntry {
        start_day,
        bytes,
        earned,
    });
    let stats_request = (any::<u32>(), any::<u16>(), any::<u16>())
        .prop_map(|(request_id, days, months)| Frame::StatsRequest(StatsRequest { request_id, days, months }));
    let stats = (
        any::<u32>(),
        (0u8..=2).prop_map(StatsStatus::from_u8),
        proptest::option::of(proptest::string::string_regex("[A-Z]{0,16}").expect("valid regex")),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(entry.clone(), 0..=MAX_STATS_DAYS),
        proptest::collection::vec(entry, 0..=MAX_STATS_MONTHS),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(request_id, status, currency, today, days, months, retry_after_s)| {
            Frame::Stats(Box::new(Stats { request_id, status, currency, today, days, months, retry_after_s }))
        });
    // At most 200 bytes: ASCII, or up to 50 characters of any width.
    let reason = proptest::string::string_regex("[ -~]{0,200}|\\PC{0,50}").expect("valid regex");
    let unpair = (any::<u32>(), proptest::option::of(reason))
        .prop_map(|(request_id, reason)| Frame::Unpair { request_id, reason });
    let unpaired = any::<u32>().prop_map(|request_id| Frame::Unpaired { request_id });
    prop_oneof![
        hello,
        challenge,
        proof,
        pair,
        welcome,
        heartbeat,
        ack,
        drain,
        error,
        stats_request,
        stats,
        unpair,
        unpaired
    ]
}

fn stream_frame() -> impl Strategy<Value = Frame> {
    let open = (stream_id(), any::<u32>(), target(), any::<bool>())
        .prop_map(|(stream, window, target, probe)| Frame::Open { stream, window, target, probe });
    let peer =
        proptest::option::of(socket_addr().prop_filter("the unspecified address at port 0 means no peer", |a| {
            a.port() != 0 || !a.ip().is_unspecified()
        }));
    let open_ok =
        (stream_id(), any::<u32>(), peer).prop_map(|(stream, window, peer)| Frame::OpenOk { stream, window, peer });
    let open_err = (stream_id(), 1u8..=9, text(100)).prop_map(|(stream, r, message)| Frame::OpenErr {
        stream,
        reason: OpenErrReason::from_u8(r),
        message,
    });
    let data = (stream_id(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..2000))
        .prop_filter("empty DATA needs FIN", |(_, fin, payload)| *fin || !payload.is_empty())
        .prop_map(|(stream, fin, payload)| Frame::Data { stream, fin, payload: Bytes::from(payload) });
    let window = (any::<u32>(), any::<u32>()).prop_map(|(stream, increment)| Frame::Window { stream, increment });
    let reset = (stream_id(), 0u8..=6, text(100)).prop_map(|(stream, r, message)| Frame::Reset {
        stream,
        reason: ResetReason::from_u8(r),
        message,
    });
    prop_oneof![open, open_ok, open_err, data, window, reset]
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..=70 * 1024),
        frame_like(),
    ]) {
        let len = bytes.len();
        match Frame::decode(Bytes::from(bytes)) {
            Ok(f) => prop_assert!((HEADER_LEN..=MAX_FRAME_LEN).contains(&len), "{len} bytes decoded to {f:?}"),
            Err(e) => prop_assert!(ERROR_NAMES.contains(&error_name(&e))),
        }
    }

    #[test]
    fn decode_inverts_encode(frame in prop_oneof![control_frame(), stream_frame()]) {
        let wire = frame.encode();
        prop_assert_eq!(Frame::decode(wire), Ok(frame));
    }
}
