//! The tunnel frame codec: every frame of `docs/protocol.md`, encoded and decoded.
//!
//! Pure: no I/O, no async, no knowledge of sessions. Decoding never panics on any input and
//! rejects what the spec calls a violation with a [`ProtocolError`] naming the problem.
//!
//! The domain types the frames carry — a stream's [`Target`] and its open-error and reset
//! reasons ([`crate::target`]), a device's key algorithm, id and nonce ([`crate::identity`]) —
//! live below the tunnel; this module only gives them their wire encoding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use crate::identity::{DEVICE_ID_LEN, KeyAlg, NONCE_LEN};
use crate::target::{OpenErrReason, ResetReason, Target};

/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 2;
/// The first version with control requests (STATS_REQUEST, STATS, UNPAIR, UNPAIRED and HELLO's
/// control-only sessions, docs/protocol.md "Control requests"); version 1 peers never see them.
pub const CONTROL_VERSION: u8 = 2;
/// The oldest protocol version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u8 = 1;
/// Frame header: type, flags, stream id.
pub const HEADER_LEN: usize = 6;
/// Largest frame (one WebSocket message), header included.
pub const MAX_FRAME_LEN: usize = 64 * 1024;
/// Largest DATA payload that fits in one frame.
pub const MAX_DATA_LEN: usize = MAX_FRAME_LEN - HEADER_LEN;
/// DATA flag: the sender's direction ends with this frame.
pub const FLAG_FIN: u8 = 0x01;
/// OPEN flag: a quality probe to the server's own probe endpoint (docs/protocol.md; the only
/// target exempt from the node's own-server refusal, SECURITY.md §1).
pub const FLAG_PROBE: u8 = 0x02;
/// Longest HEARTBEAT_ACK currency code, in bytes of UTF-8.
pub const MAX_CURRENCY_LEN: usize = 16;
/// Most day entries in one STATS (the last 62 days: two months of days).
pub const MAX_STATS_DAYS: usize = 62;
/// Most month entries in one STATS (two years).
pub const MAX_STATS_MONTHS: usize = 24;
/// Length of one STATS entry: start_day u32, bytes u64, earned u64.
pub const STATS_ENTRY_LEN: usize = 20;
/// Longest UNPAIR reason, in bytes of UTF-8.
pub const MAX_UNPAIR_REASON_LEN: usize = 200;

/// Frame type bytes.
pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const CHALLENGE: u8 = 0x02;
    pub const PROOF: u8 = 0x03;
    pub const PAIR: u8 = 0x04;
    pub const WELCOME: u8 = 0x05;
    pub const HEARTBEAT: u8 = 0x06;
    pub const HEARTBEAT_ACK: u8 = 0x07;
    pub const DRAIN: u8 = 0x08;
    pub const ERROR: u8 = 0x09;
    pub const STATS_REQUEST: u8 = 0x0a;
    pub const STATS: u8 = 0x0b;
    pub const UNPAIR: u8 = 0x0c;
    pub const UNPAIRED: u8 = 0x0d;
    pub const OPEN: u8 = 0x10;
    pub const OPEN_OK: u8 = 0x11;
    pub const OPEN_ERR: u8 = 0x12;
    pub const DATA: u8 = 0x13;
    pub const WINDOW: u8 = 0x14;
    pub const RESET: u8 = 0x15;
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Short(usize),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(usize),
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("{0} frame must use stream 0")]
    NeedsConnectionStream(&'static str),
    #[error("{0} frame must use a non-zero stream id")]
    NeedsStream(&'static str),
    #[error("{frame} frame is truncated: {what}")]
    Truncated { frame: &'static str, what: &'static str },
    #[error("{frame} field {tag} has length {len}, expected {expected}")]
    FieldLength { frame: &'static str, tag: u8, len: usize, expected: usize },
    #[error("{frame} field {tag} repeats")]
    RepeatedField { frame: &'static str, tag: u8 },
    #[error("{frame} lacks required field {tag}")]
    MissingField { frame: &'static str, tag: u8 },
    #[error("{frame} field {tag} is not valid: {why}")]
    BadField { frame: &'static str, tag: u8, why: &'static str },
    #[error("bad target address: {0}")]
    BadAddress(&'static str),
    #[error("empty DATA frame without FIN")]
    EmptyData,
}

/// What a node is willing to do, as reported in heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    #[default]
    Serving = 0,
    Draining = 1,
    Paused = 2,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Serving => "serving",
            NodeState::Draining => "draining",
            NodeState::Paused => "paused",
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(NodeState::Serving),
            1 => Some(NodeState::Draining),
            2 => Some(NodeState::Paused),
            _ => None,
        }
    }
}

/// The network a node is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkType {
    #[default]
    Unknown = 0,
    Wifi = 1,
    Cellular = 2,
    Ethernet = 3,
}

impl NetworkType {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Unknown => "unknown",
            NetworkType::Wifi => "wifi",
            NetworkType::Cellular => "cellular",
            NetworkType::Ethernet => "ethernet",
        }
    }

    /// Unknown values read as `Unknown`: a newer node may know more network kinds.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => NetworkType::Wifi,
            2 => NetworkType::Cellular,
            3 => NetworkType::Ethernet,
            _ => NetworkType::Unknown,
        }
    }
}

/// Which owner setting paused a node (HEARTBEAT tag 13, sent with state `paused`). The first
/// reason that applies, hard ones (that stop live streams) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// A reason this version does not know (a newer node may have more).
    #[default]
    Other = 0,
    /// Wi-Fi only, and not on Wi-Fi.
    NotOnWifi = 1,
    DailyCap = 2,
    MonthlyCap = 3,
    /// Share only while charging, and not charging.
    NotCharging = 4,
    /// Battery below the owner's floor.
    BatteryLow = 5,
    /// Outside the owner's schedule.
    OutsideSchedule = 6,
    /// Paused by hand.
    ByOwner = 7,
    /// Data Saver is on (for the node's app) and the network is metered (Android).
    DataSaver = 8,
    /// The phone is in Battery Saver and not charging (Android).
    BatterySaver = 9,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Other => "other",
            PauseReason::NotOnWifi => "not_on_wifi",
            PauseReason::DailyCap => "daily_cap",
            PauseReason::MonthlyCap => "monthly_cap",
            PauseReason::NotCharging => "not_charging",
            PauseReason::BatteryLow => "battery_low",
            PauseReason::OutsideSchedule => "outside_schedule",
            PauseReason::ByOwner => "by_owner",
            PauseReason::DataSaver => "data_saver",
            PauseReason::BatterySaver => "battery_saver",
        }
    }

    /// Unknown values read as `Other`.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => PauseReason::NotOnWifi,
            2 => PauseReason::DailyCap,
            3 => PauseReason::MonthlyCap,
            4 => PauseReason::NotCharging,
            5 => PauseReason::BatteryLow,
            6 => PauseReason::OutsideSchedule,
            7 => PauseReason::ByOwner,
            8 => PauseReason::DataSaver,
            9 => PauseReason::BatterySaver,
            _ => PauseReason::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    pub min_version: u8,
    pub max_version: u8,
    pub device_id: Option<[u8; DEVICE_ID_LEN]>,
    pub agent: Option<String>,
    pub max_streams: Option<u32>,
    pub max_inflight: Option<u32>,
    /// Tag 16 (version 2): a control-only session (`traffix node stats` while the node serves
    /// elsewhere) — no streams, no routing, and it does not replace the device's serving tunnel.
    pub control_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub version: Option<u8>,
    pub nonce: [u8; NONCE_LEN],
    pub server_time_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub nonce: [u8; NONCE_LEN],
    pub signature: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub code: String,
    pub key_alg: KeyAlg,
    pub public_key: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
    pub signature: Vec<u8>,
    pub model: Option<String>,
    pub os: Option<String>,
    pub app_version: Option<String>,
    pub attestation: Vec<Vec<u8>>,
    /// Emulator hints the app reports (weak signals for the admin, docs/trust.md): at most
    /// [`MAX_HINTS`] texts of at most [`MAX_HINT_LEN`] bytes.
    pub hints: Vec<String>,
}

/// The most emulator hints a PAIR may carry.
pub const MAX_HINTS: usize = 16;
/// The longest emulator hint, in bytes.
pub const MAX_HINT_LEN: usize = 64;

/// Slack in the liveness rule, for a slow network and a late timer.
pub const LIVENESS_SLACK: std::time::Duration = std::time::Duration::from_secs(10);

/// The liveness rule of both ends (docs/protocol.md "Heartbeats"): a tunnel over which nothing
/// arrived for 2.5 × the heartbeat interval in force + [`LIVENESS_SLACK`] is dead. Two
/// heartbeats (or their ACKs) may be lost; the third missing one ends it.
pub fn liveness_timeout(interval_s: u16) -> std::time::Duration {
    std::time::Duration::from_millis(u64::from(interval_s.max(1)) * 2_500) + LIVENESS_SLACK
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub device_id: [u8; DEVICE_ID_LEN],
    pub vip: Ipv4Addr,
    pub heartbeat_interval_s: u16,
    pub max_streams: u32,
    pub initial_window: u32,
    pub max_frame: u32,
    pub challenge_interval_s: u16,
    pub max_inflight: u32,
    /// The longer heartbeat interval the node may use while it has no live streams (tag 9,
    /// optional); absent: `heartbeat_interval_s` always. See [`liveness_timeout`].
    pub idle_heartbeat_interval_s: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    pub seq: u32,
    pub state: NodeState,
    pub battery_pct: Option<u8>,
    pub charging: Option<bool>,
    pub network: NetworkType,
    pub bytes_today: Option<u64>,
    pub bytes_month: Option<u64>,
    pub max_streams: Option<u32>,
    pub daily_cap: Option<u64>,
    pub monthly_cap: Option<u64>,
    pub active_streams: Option<u32>,
    pub uptime_s: Option<u64>,
    /// Why the node paused (tag 13), sent with state `paused`.
    #[serde(default)]
    pub pause_reason: Option<PauseReason>,
    /// The node's last HEARTBEAT → HEARTBEAT_ACK round trip in milliseconds (tag 14): the
    /// server's tunnel RTT now that it sends no WebSocket pings.
    #[serde(default)]
    pub rtt_ms: Option<u32>,
}

/// The server's answer to a HEARTBEAT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatAck {
    /// The HEARTBEAT's `seq`, echoed.
    pub seq: u32,
    pub server_time_ms: Option<u64>,
    /// The server's count for the node's device today (UTC): bytes both ways, and its owner's
    /// earnings in micro-units of `currency` (at most [`MAX_CURRENCY_LEN`] bytes). Informational
    /// (the node shows them to its owner); the ledger is authoritative.
    pub bytes_today: Option<u64>,
    pub earned_today: Option<u64>,
    pub currency: Option<String>,
}

/// STATS_REQUEST (version 2): the device's own traffic and earnings, per day and per month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsRequest {
    /// Echoed in the STATS that answers it.
    pub request_id: u32,
    /// The last this many UTC days, today included (absent: 0; the server answers at most
    /// [`MAX_STATS_DAYS`]).
    pub days: u16,
    /// The last this many UTC calendar months, this one included (at most [`MAX_STATS_MONTHS`]).
    pub months: u16,
}

/// Whether a STATS carries the numbers asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatsStatus {
    #[default]
    Ok = 0,
    /// Too many requests on this connection: ask again after `retry_after_s`.
    RateLimited = 1,
    /// The server has no numbers to give (billing off, or it could not read them). Unknown
    /// status values read as this.
    Unavailable = 2,
}

impl StatsStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StatsStatus::Ok => "ok",
            StatsStatus::RateLimited => "rate_limited",
            StatsStatus::Unavailable => "unavailable",
        }
    }

    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => StatsStatus::Ok,
            1 => StatsStatus::RateLimited,
            _ => StatsStatus::Unavailable,
        }
    }
}

/// One day or month of a device's usage: the period's first UTC day (days since 1970-01-01),
/// bytes carried both ways, and its owner's earnings in micro-units of the STATS currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct StatsEntry {
    pub start_day: u32,
    pub bytes: u64,
    pub earned: u64,
}

impl StatsEntry {
    fn to_bytes(self) -> [u8; STATS_ENTRY_LEN] {
        let mut b = [0u8; STATS_ENTRY_LEN];
        b[..4].copy_from_slice(&self.start_day.to_be_bytes());
        b[4..12].copy_from_slice(&self.bytes.to_be_bytes());
        b[12..].copy_from_slice(&self.earned.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8; STATS_ENTRY_LEN]) -> Self {
        let u64_at =
            |i: usize| u64::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        StatsEntry { start_day: u32::from_be_bytes([b[0], b[1], b[2], b[3]]), bytes: u64_at(4), earned: u64_at(12) }
    }
}

/// STATS (version 2): the server's answer to a STATS_REQUEST.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub request_id: u32,
    pub status: StatsStatus,
    /// The billing currency of every `earned` (at most [`MAX_CURRENCY_LEN`] bytes).
    pub currency: Option<String>,
    /// The server's current UTC day (days since 1970-01-01).
    pub today: Option<u32>,
    /// Oldest first, every day present (zero-filled), the last one today; at most [`MAX_STATS_DAYS`].
    pub days: Vec<StatsEntry>,
    /// Oldest first, every month present, the last one this month; at most [`MAX_STATS_MONTHS`].
    pub months: Vec<StatsEntry>,
    /// With `RateLimited`: seconds until a request is answered again.
    pub retry_after_s: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    VersionUnsupported = 1,
    AuthFailed = 2,
    PairingCodeInvalid = 3,
    DeviceBanned = 4,
    ProtocolViolation = 5,
    Replaced = 6,
    ServerShutdown = 7,
    LimitExceeded = 8,
    ChallengeTimeout = 9,
    Internal = 10,
    /// The device was removed (unpaired by itself or by the admin): forget the identity and pair
    /// again. Sent on version 2 sessions; version 1 sessions get `AuthFailed` instead.
    DeviceRemoved = 11,
}

impl ErrorCode {
    /// The code's name, as SPEC.md and logs write it (`protocol_violation`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::VersionUnsupported => "version_unsupported",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::PairingCodeInvalid => "pairing_code_invalid",
            ErrorCode::DeviceBanned => "device_banned",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::Replaced => "replaced",
            ErrorCode::ServerShutdown => "server_shutdown",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::ChallengeTimeout => "challenge_timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::DeviceRemoved => "device_removed",
        }
    }

    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => ErrorCode::VersionUnsupported,
            2 => ErrorCode::AuthFailed,
            3 => ErrorCode::PairingCodeInvalid,
            4 => ErrorCode::DeviceBanned,
            5 => ErrorCode::ProtocolViolation,
            6 => ErrorCode::Replaced,
            7 => ErrorCode::ServerShutdown,
            8 => ErrorCode::LimitExceeded,
            9 => ErrorCode::ChallengeTimeout,
            11 => ErrorCode::DeviceRemoved,
            _ => ErrorCode::Internal,
        }
    }

    /// The code in words, for people reading a node's log or output.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorCode::VersionUnsupported => "unsupported protocol version",
            ErrorCode::AuthFailed => "device authentication failed",
            ErrorCode::PairingCodeInvalid => "pairing code not accepted",
            ErrorCode::DeviceBanned => "device banned",
            ErrorCode::ProtocolViolation => "protocol violation",
            ErrorCode::Replaced => "replaced by a newer connection of this device",
            ErrorCode::ServerShutdown => "server shutting down",
            ErrorCode::LimitExceeded => "limit exceeded",
            ErrorCode::ChallengeTimeout => "challenge answered too late",
            ErrorCode::Internal => "internal server error",
            ErrorCode::DeviceRemoved => "this device was removed from the server (unpaired): pair it again",
        }
    }

    /// Whether a node should give up instead of reconnecting.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::VersionUnsupported
                | ErrorCode::AuthFailed
                | ErrorCode::PairingCodeInvalid
                | ErrorCode::DeviceBanned
                | ErrorCode::DeviceRemoved
        )
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    Challenge(Challenge),
    Proof(Proof),
    Pair(Box<Pair>),
    Welcome(Welcome),
    Heartbeat(Heartbeat),
    HeartbeatAck(HeartbeatAck),
    Drain {
        reason: Option<String>,
        deadline_s: Option<u16>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    StatsRequest(StatsRequest),
    Stats(Box<Stats>),
    /// Version 2: the device asks the server to forget it; `reason` (at most
    /// [`MAX_UNPAIR_REASON_LEN`] bytes) goes into the audit log.
    Unpair {
        request_id: u32,
        reason: Option<String>,
    },
    /// Version 2: the device is forgotten; the server closes the tunnel next.
    Unpaired {
        request_id: u32,
    },
    /// `probe`: flag bit 1, a watchdog probe to the server's own probe endpoint.
    Open {
        stream: u32,
        window: u32,
        target: Target,
        probe: bool,
    },
    OpenOk {
        stream: u32,
        window: u32,
        peer: Option<SocketAddr>,
    },
    OpenErr {
        stream: u32,
        reason: OpenErrReason,
        message: String,
    },
    Data {
        stream: u32,
        fin: bool,
        payload: Bytes,
    },
    Window {
        stream: u32,
        increment: u32,
    },
    Reset {
        stream: u32,
        reason: ResetReason,
        message: String,
    },
}

fn header(buf: &mut BytesMut, kind: u8, flags: u8, stream: u32) {
    buf.put_u8(kind);
    buf.put_u8(flags);
    buf.put_u32(stream);
}

/// Writes the header of a DATA frame into the first [`HEADER_LEN`] bytes of `buf`.
/// Used by the relay, which reads socket bytes straight into a buffer behind a reserved header.
pub fn write_data_header(buf: &mut [u8], stream: u32, fin: bool) {
    if buf.len() >= HEADER_LEN {
        buf[0] = kind::DATA;
        buf[1] = if fin { FLAG_FIN } else { 0 };
        buf[2..6].copy_from_slice(&stream.to_be_bytes());
    }
}

struct Tlv<'a>(&'a mut BytesMut);

impl Tlv<'_> {
    fn bytes(&mut self, tag: u8, v: &[u8]) {
        // Fields are bounded well below u16::MAX by construction (frame ≤ 64 KiB);
        // clamp rather than emit a corrupt length.
        let n = v.len().min(u16::MAX as usize);
        self.0.put_u8(tag);
        self.0.put_u16(n as u16);
        self.0.put_slice(&v[..n]);
    }
    fn u8(&mut self, tag: u8, v: u8) {
        self.bytes(tag, &[v]);
    }
    fn u16(&mut self, tag: u8, v: u16) {
        self.bytes(tag, &v.to_be_bytes());
    }
    fn u32(&mut self, tag: u8, v: u32) {
        self.bytes(tag, &v.to_be_bytes());
    }
    fn u64(&mut self, tag: u8, v: u64) {
        self.bytes(tag, &v.to_be_bytes());
    }
    fn opt_u8(&mut self, tag: u8, v: Option<u8>) {
        if let Some(v) = v {
            self.u8(tag, v);
        }
    }
    fn opt_u16(&mut self, tag: u8, v: Option<u16>) {
        if let Some(v) = v {
            self.u16(tag, v);
        }
    }
    fn opt_u32(&mut self, tag: u8, v: Option<u32>) {
        if let Some(v) = v {
            self.u32(tag, v);
        }
    }
    fn opt_u64(&mut self, tag: u8, v: Option<u64>) {
        if let Some(v) = v {
            self.u64(tag, v);
        }
    }
    fn opt_str(&mut self, tag: u8, v: &Option<String>) {
        if let Some(v) = v {
            self.bytes(tag, v.as_bytes());
        }
    }
}

fn put_addr(buf: &mut BytesMut, target: &Target) {
    match target {
        Target::Ip(SocketAddr::V4(a)) => {
            buf.put_u16(a.port());
            buf.put_u8(1);
            buf.put_slice(&a.ip().octets());
        }
        Target::Ip(SocketAddr::V6(a)) => {
            buf.put_u16(a.port());
            buf.put_u8(4);
            buf.put_slice(&a.ip().octets());
        }
        Target::Domain(d, port) => {
            // Callers pass names the egress policy accepted (≤ 253 bytes); cut on a char
            // boundary all the same so a frame is never malformed.
            let mut end = d.len().min(253);
            while !d.is_char_boundary(end) {
                end -= 1;
            }
            let d = &d.as_bytes()[..end];
            buf.put_u16(*port);
            buf.put_u8(3);
            buf.put_u8(d.len() as u8);
            buf.put_slice(d);
        }
    }
}

impl Frame {
    /// The stream this frame belongs to (0 for connection frames).
    pub fn stream(&self) -> u32 {
        match self {
            Frame::Open { stream, .. }
            | Frame::OpenOk { stream, .. }
            | Frame::OpenErr { stream, .. }
            | Frame::Data { stream, .. }
            | Frame::Window { stream, .. }
            | Frame::Reset { stream, .. } => *stream,
            _ => 0,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "HELLO",
            Frame::Challenge(_) => "CHALLENGE",
            Frame::Proof(_) => "PROOF",
            Frame::Pair(_) => "PAIR",
            Frame::Welcome(_) => "WELCOME",
            Frame::Heartbeat(_) => "HEARTBEAT",
            Frame::HeartbeatAck(_) => "HEARTBEAT_ACK",
            Frame::Drain { .. } => "DRAIN",
            Frame::Error { .. } => "ERROR",
            Frame::StatsRequest(_) => "STATS_REQUEST",
            Frame::Stats(_) => "STATS",
            Frame::Unpair { .. } => "UNPAIR",
            Frame::Unpaired { .. } => "UNPAIRED",
            Frame::Open { .. } => "OPEN",
            Frame::OpenOk { .. } => "OPEN_OK",
            Frame::OpenErr { .. } => "OPEN_ERR",
            Frame::Data { .. } => "DATA",
            Frame::Window { .. } => "WINDOW",
            Frame::Reset { .. } => "RESET",
        }
    }

    /// Encodes the frame into one WebSocket message payload.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        match self {
            Frame::Hello(h) => {
                header(&mut buf, kind::HELLO, 0, 0);
                let mut t = Tlv(&mut buf);
                t.u8(1, h.min_version);
                t.u8(2, h.max_version);
                if let Some(id) = &h.device_id {
                    t.bytes(3, id);
                }
                t.opt_str(4, &h.agent);
                t.opt_u32(5, h.max_streams);
                t.opt_u32(6, h.max_inflight);
                if h.control_only {
                    t.u8(16, 1);
                }
            }
            Frame::Challenge(c) => {
                header(&mut buf, kind::CHALLENGE, 0, 0);
                let mut t = Tlv(&mut buf);
                t.opt_u8(1, c.version);
                t.bytes(2, &c.nonce);
                t.opt_u64(3, c.server_time_ms);
            }
            Frame::Proof(p) => {
                header(&mut buf, kind::PROOF, 0, 0);
                let mut t = Tlv(&mut buf);
                t.bytes(1, &p.nonce);
                t.bytes(2, &p.signature);
            }
            Frame::Pair(p) => {
                header(&mut buf, kind::PAIR, 0, 0);
                let mut t = Tlv(&mut buf);
                t.bytes(1, p.code.as_bytes());
                t.u8(2, p.key_alg as u8);
                t.bytes(3, &p.public_key);
                t.bytes(4, &p.nonce);
                t.bytes(5, &p.signature);
                t.opt_str(6, &p.model);
                t.opt_str(7, &p.os);
                t.opt_str(8, &p.app_version);
                for cert in &p.attestation {
                    t.bytes(9, cert);
                }
                for hint in &p.hints {
                    t.bytes(10, hint.as_bytes());
                }
            }
            Frame::Welcome(w) => {
                header(&mut buf, kind::WELCOME, 0, 0);
                let mut t = Tlv(&mut buf);
                t.bytes(1, &w.device_id);
                t.bytes(2, &w.vip.octets());
                t.u16(3, w.heartbeat_interval_s);
                t.u32(4, w.max_streams);
                t.u32(5, w.initial_window);
                t.u32(6, w.max_frame);
                t.u16(7, w.challenge_interval_s);
                t.u32(8, w.max_inflight);
                t.opt_u16(9, w.idle_heartbeat_interval_s);
            }
            Frame::Heartbeat(h) => {
                header(&mut buf, kind::HEARTBEAT, 0, 0);
                let mut t = Tlv(&mut buf);
                t.u32(1, h.seq);
                t.u8(2, h.state as u8);
                t.opt_u8(3, h.battery_pct);
                t.opt_u8(4, h.charging.map(u8::from));
                t.u8(5, h.network as u8);
                t.opt_u64(6, h.bytes_today);
                t.opt_u64(7, h.bytes_month);
                t.opt_u32(8, h.max_streams);
                t.opt_u64(9, h.daily_cap);
                t.opt_u64(10, h.monthly_cap);
                t.opt_u32(11, h.active_streams);
                t.opt_u64(12, h.uptime_s);
                t.opt_u8(13, h.pause_reason.map(|r| r as u8));
                t.opt_u32(14, h.rtt_ms);
            }
            Frame::HeartbeatAck(a) => {
                header(&mut buf, kind::HEARTBEAT_ACK, 0, 0);
                let mut t = Tlv(&mut buf);
                t.u32(1, a.seq);
                t.opt_u64(2, a.server_time_ms);
                t.opt_u64(3, a.bytes_today);
                t.opt_u64(4, a.earned_today);
                if let Some(c) = &a.currency {
                    // Callers pass a configured code (validated short); cut on a char boundary
                    // all the same so a frame is never malformed.
                    t.bytes(5, &c.as_bytes()[..char_cut(c, MAX_CURRENCY_LEN)]);
                }
            }
            Frame::Drain { reason, deadline_s } => {
                header(&mut buf, kind::DRAIN, 0, 0);
                let mut t = Tlv(&mut buf);
                t.opt_str(1, reason);
                if let Some(d) = deadline_s {
                    t.u16(2, *d);
                }
            }
            Frame::Error { code, message } => {
                header(&mut buf, kind::ERROR, 0, 0);
                let mut t = Tlv(&mut buf);
                t.u16(1, *code as u16);
                t.bytes(2, message.as_bytes());
            }
            Frame::StatsRequest(r) => {
                header(&mut buf, kind::STATS_REQUEST, 0, 0);
                let mut t = Tlv(&mut buf);
                t.u32(1, r.request_id);
                t.u16(2, r.days);
                t.u16(3, r.months);
            }
            Frame::Stats(s) => {
                buf.reserve(3 * 16 + (MAX_STATS_DAYS + MAX_STATS_MONTHS) * (3 + STATS_ENTRY_LEN));
                header(&mut buf, kind::STATS, 0, 0);
                let mut t = Tlv(&mut buf);
                t.u32(1, s.request_id);
                t.u8(2, s.status as u8);
                if let Some(c) = &s.currency {
                    t.bytes(3, &c.as_bytes()[..char_cut(c, MAX_CURRENCY_LEN)]);
                }
                t.opt_u32(4, s.today);
                // Callers stay within the bounds; the newest entries are kept if not.
                for e in &s.days[s.days.len().saturating_sub(MAX_STATS_DAYS)..] {
                    t.bytes(5, &e.to_bytes());
                }
                for e in &s.months[s.months.len().saturating_sub(MAX_STATS_MONTHS)..] {
                    t.bytes(6, &e.to_bytes());
                }
                if let Some(r) = s.retry_after_s {
                    t.u16(7, r);
                }
            }
            Frame::Unpair { request_id, reason } => {
                header(&mut buf, kind::UNPAIR, 0, 0);
                let mut t = Tlv(&mut buf);
                t.u32(1, *request_id);
                if let Some(r) = reason {
                    t.bytes(2, &r.as_bytes()[..char_cut(r, MAX_UNPAIR_REASON_LEN)]);
                }
            }
            Frame::Unpaired { request_id } => {
                header(&mut buf, kind::UNPAIRED, 0, 0);
                Tlv(&mut buf).u32(1, *request_id);
            }
            Frame::Open { stream, window, target, probe } => {
                header(&mut buf, kind::OPEN, if *probe { FLAG_PROBE } else { 0 }, *stream);
                buf.put_u32(*window);
                put_addr(&mut buf, target);
            }
            Frame::OpenOk { stream, window, peer } => {
                header(&mut buf, kind::OPEN_OK, 0, *stream);
                buf.put_u32(*window);
                let peer = peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                put_addr(&mut buf, &Target::Ip(peer));
            }
            Frame::OpenErr { stream, reason, message } => {
                header(&mut buf, kind::OPEN_ERR, 0, *stream);
                buf.put_u8(*reason as u8);
                buf.put_slice(&message.as_bytes()[..text_cut(message)]);
            }
            Frame::Data { stream, fin, payload } => {
                buf.reserve(payload.len());
                header(&mut buf, kind::DATA, if *fin { FLAG_FIN } else { 0 }, *stream);
                buf.put_slice(payload);
            }
            Frame::Window { stream, increment } => {
                header(&mut buf, kind::WINDOW, 0, *stream);
                buf.put_u32(*increment);
            }
            Frame::Reset { stream, reason, message } => {
                header(&mut buf, kind::RESET, 0, *stream);
                buf.put_u8(*reason as u8);
                buf.put_slice(&message.as_bytes()[..text_cut(message)]);
            }
        }
        buf.freeze()
    }

    /// Decodes one WebSocket message payload. `DATA` payloads are zero-copy slices of `msg`.
    pub fn decode(msg: Bytes) -> Result<Frame, ProtocolError> {
        if msg.len() < HEADER_LEN {
            return Err(ProtocolError::Short(msg.len()));
        }
        if msg.len() > MAX_FRAME_LEN {
            return Err(ProtocolError::TooLarge(msg.len()));
        }
        let ty = msg[0];
        let flags = msg[1];
        let stream = u32::from_be_bytes([msg[2], msg[3], msg[4], msg[5]]);
        let body = &msg[HEADER_LEN..];
        let conn = |name: &'static str| {
            if stream == 0 { Ok(()) } else { Err(ProtocolError::NeedsConnectionStream(name)) }
        };
        let strm = |name: &'static str| {
            if stream != 0 { Ok(()) } else { Err(ProtocolError::NeedsStream(name)) }
        };
        match ty {
            kind::HELLO => {
                conn("HELLO")?;
                let f = Fields::parse("HELLO", body)?;
                Ok(Frame::Hello(Hello {
                    min_version: f.req_u8(1)?,
                    max_version: f.req_u8(2)?,
                    device_id: f.opt_array::<DEVICE_ID_LEN>(3)?,
                    agent: f.opt_str(4)?,
                    max_streams: f.opt_u32(5)?,
                    max_inflight: f.opt_u32(6)?,
                    control_only: match f.opt_u8(16)? {
                        None | Some(0) => false,
                        Some(1) => true,
                        Some(_) => {
                            return Err(ProtocolError::BadField {
                                frame: "HELLO",
                                tag: 16,
                                why: "unknown session kind",
                            });
                        }
                    },
                }))
            }
            kind::CHALLENGE => {
                conn("CHALLENGE")?;
                let f = Fields::parse("CHALLENGE", body)?;
                Ok(Frame::Challenge(Challenge {
                    version: f.opt_u8(1)?,
                    nonce: f.req_array::<NONCE_LEN>(2)?,
                    server_time_ms: f.opt_u64(3)?,
                }))
            }
            kind::PROOF => {
                conn("PROOF")?;
                let f = Fields::parse("PROOF", body)?;
                Ok(Frame::Proof(Proof { nonce: f.req_array::<NONCE_LEN>(1)?, signature: f.req_bytes(2)?.to_vec() }))
            }
            kind::PAIR => {
                conn("PAIR")?;
                let f = Fields::parse("PAIR", body)?;
                let alg = f.req_u8(2)?;
                Ok(Frame::Pair(Box::new(Pair {
                    code: f.req_str(1)?,
                    key_alg: KeyAlg::from_u8(alg).ok_or(ProtocolError::BadField {
                        frame: "PAIR",
                        tag: 2,
                        why: "unknown key algorithm",
                    })?,
                    public_key: f.req_bytes(3)?.to_vec(),
                    nonce: f.req_array::<NONCE_LEN>(4)?,
                    signature: f.req_bytes(5)?.to_vec(),
                    model: f.opt_str(6)?,
                    os: f.opt_str(7)?,
                    app_version: f.opt_str(8)?,
                    attestation: f.list(9).map(<[u8]>::to_vec).collect(),
                    hints: f.hints(10)?,
                })))
            }
            kind::WELCOME => {
                conn("WELCOME")?;
                let f = Fields::parse("WELCOME", body)?;
                Ok(Frame::Welcome(Welcome {
                    device_id: f.req_array::<DEVICE_ID_LEN>(1)?,
                    vip: Ipv4Addr::from(f.req_array::<4>(2)?),
                    heartbeat_interval_s: f.req_u16(3)?,
                    max_streams: f.req_u32(4)?,
                    initial_window: f.req_u32(5)?,
                    max_frame: f.req_u32(6)?,
                    challenge_interval_s: f.req_u16(7)?,
                    max_inflight: f.req_u32(8)?,
                    idle_heartbeat_interval_s: f.opt_u16(9)?,
                }))
            }
            kind::HEARTBEAT => {
                conn("HEARTBEAT")?;
                let f = Fields::parse("HEARTBEAT", body)?;
                let state = f.req_u8(2)?;
                Ok(Frame::Heartbeat(Heartbeat {
                    seq: f.req_u32(1)?,
                    state: NodeState::from_u8(state).ok_or(ProtocolError::BadField {
                        frame: "HEARTBEAT",
                        tag: 2,
                        why: "unknown node state",
                    })?,
                    battery_pct: f.opt_u8(3)?,
                    charging: f.opt_u8(4)?.map(|v| v != 0),
                    network: NetworkType::from_u8(f.opt_u8(5)?.unwrap_or(0)),
                    bytes_today: f.opt_u64(6)?,
                    bytes_month: f.opt_u64(7)?,
                    max_streams: f.opt_u32(8)?,
                    daily_cap: f.opt_u64(9)?,
                    monthly_cap: f.opt_u64(10)?,
                    active_streams: f.opt_u32(11)?,
                    uptime_s: f.opt_u64(12)?,
                    pause_reason: f.opt_u8(13)?.map(PauseReason::from_u8),
                    rtt_ms: f.opt_u32(14)?,
                }))
            }
            kind::HEARTBEAT_ACK => {
                conn("HEARTBEAT_ACK")?;
                let f = Fields::parse("HEARTBEAT_ACK", body)?;
                Ok(Frame::HeartbeatAck(HeartbeatAck {
                    seq: f.req_u32(1)?,
                    server_time_ms: f.opt_u64(2)?,
                    bytes_today: f.opt_u64(3)?,
                    earned_today: f.opt_u64(4)?,
                    currency: f.opt_str_max(5, MAX_CURRENCY_LEN, "currency is longer than 16 bytes")?,
                }))
            }
            kind::DRAIN => {
                conn("DRAIN")?;
                let f = Fields::parse("DRAIN", body)?;
                Ok(Frame::Drain { reason: f.opt_str(1)?, deadline_s: f.opt_u16(2)? })
            }
            kind::ERROR => {
                conn("ERROR")?;
                let f = Fields::parse("ERROR", body)?;
                Ok(Frame::Error {
                    code: ErrorCode::from_u16(f.req_u16(1)?),
                    message: f.opt_str(2)?.unwrap_or_default(),
                })
            }
            kind::STATS_REQUEST => {
                conn("STATS_REQUEST")?;
                let f = Fields::parse("STATS_REQUEST", body)?;
                Ok(Frame::StatsRequest(StatsRequest {
                    request_id: f.req_u32(1)?,
                    days: f.opt_u16(2)?.unwrap_or(0),
                    months: f.opt_u16(3)?.unwrap_or(0),
                }))
            }
            kind::STATS => {
                conn("STATS")?;
                let f = Fields::parse("STATS", body)?;
                Ok(Frame::Stats(Box::new(Stats {
                    request_id: f.req_u32(1)?,
                    status: StatsStatus::from_u8(f.req_u8(2)?),
                    currency: f.opt_str_max(3, MAX_CURRENCY_LEN, "currency is longer than 16 bytes")?,
                    today: f.opt_u32(4)?,
                    days: f.entries(5, MAX_STATS_DAYS, "more than 62 day entries")?,
                    months: f.entries(6, MAX_STATS_MONTHS, "more than 24 month entries")?,
                    retry_after_s: f.opt_u16(7)?,
                })))
            }
            kind::UNPAIR => {
                conn("UNPAIR")?;
                let f = Fields::parse("UNPAIR", body)?;
                Ok(Frame::Unpair {
                    request_id: f.req_u32(1)?,
                    reason: f.opt_str_max(2, MAX_UNPAIR_REASON_LEN, "reason is longer than 200 bytes")?,
                })
            }
            kind::UNPAIRED => {
                conn("UNPAIRED")?;
                let f = Fields::parse("UNPAIRED", body)?;
                Ok(Frame::Unpaired { request_id: f.req_u32(1)? })
            }
            kind::OPEN => {
                strm("OPEN")?;
                let (window, target) = read_window_addr("OPEN", body)?;
                Ok(Frame::Open { stream, window, target, probe: flags & FLAG_PROBE != 0 })
            }
            kind::OPEN_OK => {
                strm("OPEN_OK")?;
                let (window, target) = read_window_addr("OPEN_OK", body)?;
                let peer = match target {
                    Target::Ip(a) if a.port() != 0 || !a.ip().is_unspecified() => Some(a),
                    Target::Ip(_) => None,
                    Target::Domain(..) => {
                        return Err(ProtocolError::BadAddress("OPEN_OK peer must be an IP"));
                    }
                };
                Ok(Frame::OpenOk { stream, window, peer })
            }
            kind::OPEN_ERR => {
                strm("OPEN_ERR")?;
                let (&reason, msg) =
                    body.split_first().ok_or(ProtocolError::Truncated { frame: "OPEN_ERR", what: "reason" })?;
                Ok(Frame::OpenErr { stream, reason: OpenErrReason::from_u8(reason), message: bounded_text(msg) })
            }
            kind::DATA => {
                strm("DATA")?;
                let fin = flags & FLAG_FIN != 0;
                if body.is_empty() && !fin {
                    return Err(ProtocolError::EmptyData);
                }
                Ok(Frame::Data { stream, fin, payload: msg.slice(HEADER_LEN..) })
            }
            kind::WINDOW => {
                let b: [u8; 4] = body
                    .get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(ProtocolError::Truncated { frame: "WINDOW", what: "increment" })?;
                Ok(Frame::Window { stream, increment: u32::from_be_bytes(b) })
            }
            kind::RESET => {
                strm("RESET")?;
                let (&reason, msg) =
                    body.split_first().ok_or(ProtocolError::Truncated { frame: "RESET", what: "reason" })?;
                Ok(Frame::Reset { stream, reason: ResetReason::from_u8(reason), message: bounded_text(msg) })
            }
            other => Err(ProtocolError::UnknownType(other)),
        }
    }
}

/// Longest OPEN_ERR / RESET message, in bytes (docs/protocol.md).
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Where to cut `text` so it fits [`MAX_MESSAGE_LEN`] without splitting a character.
fn text_cut(text: &str) -> usize {
    char_cut(text, MAX_MESSAGE_LEN)
}

/// Where to cut `text` so it fits `max` bytes without splitting a character.
fn char_cut(text: &str, max: usize) -> usize {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// A peer's free-text message: invalid UTF-8 replaced, then bounded like the encoder bounds it,
/// so decode → encode → decode is stable.
fn bounded_text(raw: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(&raw[..raw.len().min(MAX_MESSAGE_LEN)]).into_owned();
    let cut = text_cut(&text);
    text.truncate(cut);
    text
}

fn read_window_addr(frame: &'static str, body: &[u8]) -> Result<(u32, Target), ProtocolError> {
    if body.len() < 7 {
        return Err(ProtocolError::Truncated { frame, what: "window, port and address type" });
    }
    let window = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let port = u16::from_be_bytes([body[4], body[5]]);
    let rest = &body[7..];
    let target = match body[6] {
        1 => {
            let o: [u8; 4] = rest
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or(ProtocolError::Truncated { frame, what: "IPv4 address" })?;
            Target::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o)), port))
        }
        4 => {
            let o: [u8; 16] = rest
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .ok_or(ProtocolError::Truncated { frame, what: "IPv6 address" })?;
            Target::Ip(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        3 => {
            let (&n, name) = rest.split_first().ok_or(ProtocolError::Truncated { frame, what: "name length" })?;
            if n == 0 {
                return Err(ProtocolError::BadAddress("empty domain name"));
            }
            if n > 253 {
                return Err(ProtocolError::BadAddress("domain name longer than 253 bytes"));
            }
            let name = name.get(..n as usize).ok_or(ProtocolError::Truncated { frame, what: "name" })?;
            let name = std::str::from_utf8(name).map_err(|_| ProtocolError::BadAddress("domain name is not UTF-8"))?;
            Target::Domain(name.to_owned(), port)
        }
        _ => return Err(ProtocolError::BadAddress("unknown address type")),
    };
    Ok((window, target))
}

/// The parsed TLV fields of a control frame, borrowed from the message.
struct Fields<'a> {
    frame: &'static str,
    items: Vec<(u8, &'a [u8])>,
}

impl<'a> Fields<'a> {
    /// Splits a TLV body. Repeats are judged when a field is read: a known scalar field that
    /// repeats is a violation, an unknown tag (skipped) may repeat, list fields may repeat.
    fn parse(frame: &'static str, mut body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut items: Vec<(u8, &'a [u8])> = Vec::new();
        while !body.is_empty() {
            if body.len() < 3 {
                return Err(ProtocolError::Truncated { frame, what: "field header" });
            }
            let tag = body[0];
            let len = u16::from_be_bytes([body[1], body[2]]) as usize;
            let value = body.get(3..3 + len).ok_or(ProtocolError::Truncated { frame, what: "field value" })?;
            items.push((tag, value));
            body = &body[3 + len..];
        }
        Ok(Fields { frame, items })
    }

    /// The value of a scalar field; a repeated scalar field is a violation.
    fn get(&self, tag: u8) -> Result<Option<&'a [u8]>, ProtocolError> {
        let mut hits = self.items.iter().filter(|(t, _)| *t == tag);
        let first = hits.next().map(|(_, v)| *v);
        if hits.next().is_some() {
            return Err(ProtocolError::RepeatedField { frame: self.frame, tag });
        }
        Ok(first)
    }

    fn list(&self, tag: u8) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.items.iter().filter(move |(t, _)| *t == tag).map(|(_, v)| *v)
    }

    fn opt_array<const N: usize>(&self, tag: u8) -> Result<Option<[u8; N]>, ProtocolError> {
        match self.get(tag)? {
            None => Ok(None),
            Some(v) => v.try_into().map(Some).map_err(|_| ProtocolError::FieldLength {
                frame: self.frame,
                tag,
                len: v.len(),
                expected: N,
            }),
        }
    }

    fn req_array<const N: usize>(&self, tag: u8) -> Result<[u8; N], ProtocolError> {
        self.opt_array(tag)?.ok_or(ProtocolError::MissingField { frame: self.frame, tag })
    }

    fn opt_u8(&self, tag: u8) -> Result<Option<u8>, ProtocolError> {
        Ok(self.opt_array::<1>(tag)?.map(u8::from_be_bytes))
    }
    fn req_u8(&self, tag: u8) -> Result<u8, ProtocolError> {
        Ok(u8::from_be_bytes(self.req_array(tag)?))
    }
    fn opt_u16(&self, tag: u8) -> Result<Option<u16>, ProtocolError> {
        Ok(self.opt_array::<2>(tag)?.map(u16::from_be_bytes))
    }
    fn req_u16(&self, tag: u8) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.req_array(tag)?))
    }
    fn opt_u32(&self, tag: u8) -> Result<Option<u32>, ProtocolError> {
        Ok(self.opt_array::<4>(tag)?.map(u32::from_be_bytes))
    }
    fn req_u32(&self, tag: u8) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.req_array(tag)?))
    }
    fn opt_u64(&self, tag: u8) -> Result<Option<u64>, ProtocolError> {
        Ok(self.opt_array::<8>(tag)?.map(u64::from_be_bytes))
    }
    fn req_bytes(&self, tag: u8) -> Result<&'a [u8], ProtocolError> {
        self.get(tag)?.ok_or(ProtocolError::MissingField { frame: self.frame, tag })
    }
    fn opt_str(&self, tag: u8) -> Result<Option<String>, ProtocolError> {
        match self.get(tag)? {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v).map(|s| Some(s.to_owned())).map_err(|_| ProtocolError::BadField {
                frame: self.frame,
                tag,
                why: "text is not UTF-8",
            }),
        }
    }
    /// PAIR's emulator hints: at most [`MAX_HINTS`] UTF-8 texts of at most [`MAX_HINT_LEN`] bytes.
    fn hints(&self, tag: u8) -> Result<Vec<String>, ProtocolError> {
        let bad = |why| ProtocolError::BadField { frame: self.frame, tag, why };
        let mut out = Vec::new();
        for v in self.list(tag) {
            if out.len() == MAX_HINTS {
                return Err(bad("more than 16 hints"));
            }
            if v.len() > MAX_HINT_LEN {
                return Err(bad("a hint longer than 64 bytes"));
            }
            out.push(std::str::from_utf8(v).map_err(|_| bad("text is not UTF-8"))?.to_owned());
        }
        Ok(out)
    }
    /// Text of at most `max` bytes; longer is a violation (`why` says which limit).
    fn opt_str_max(&self, tag: u8, max: usize, why: &'static str) -> Result<Option<String>, ProtocolError> {
        if self.get(tag)?.is_some_and(|v| v.len() > max) {
            return Err(ProtocolError::BadField { frame: self.frame, tag, why });
        }
        self.opt_str(tag)
    }
    /// STATS entries of `tag` (a list): each exactly [`STATS_ENTRY_LEN`] bytes, at most `max`.
    fn entries(&self, tag: u8, max: usize, why: &'static str) -> Result<Vec<StatsEntry>, ProtocolError> {
        let mut out = Vec::new();
        for v in self.list(tag) {
            if out.len() == max {
                return Err(ProtocolError::BadField { frame: self.frame, tag, why });
            }
            let b: &[u8; STATS_ENTRY_LEN] = v.try_into().map_err(|_| ProtocolError::FieldLength {
                frame: self.frame,
                tag,
                len: v.len(),
                expected: STATS_ENTRY_LEN,
            })?;
            out.push(StatsEntry::from_bytes(b));
        }
        Ok(out)
    }
    fn req_str(&self, tag: u8) -> Result<String, ProtocolError> {
        self.opt_str(tag)?.ok_or(ProtocolError::MissingField { frame: self.frame, tag })
    }
}

/// Picks the protocol version both sides speak, or explains who must upgrade.
pub fn negotiate_version(node_min: u8, node_max: u8) -> Result<u8, String> {
    let hi = node_max.min(PROTOCOL_VERSION);
    let lo = node_min.max(MIN_PROTOCOL_VERSION);
    if node_min > node_max {
        return Err(format!("node sent an empty version range {node_min}..{node_max}"));
    }
    if hi >= lo {
        return Ok(hi);
    }
    if node_max < MIN_PROTOCOL_VERSION {
        Err(format!(
            "node speaks protocol {node_min}..{node_max} but this server needs \
             {MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION}: upgrade the node"
        ))
    } else {
        Err(format!(
            "node speaks protocol {node_min}..{node_max} but this server only speaks \
             {MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION}: upgrade the server"
        ))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_reasons_keep_their_wire_codes_and_names() {
        let names = [
            "other",
            "not_on_wifi",
            "daily_cap",
            "monthly_cap",
            "not_charging",
            "battery_low",
            "outside_schedule",
            "by_owner",
            "data_saver",
            "battery_saver",
        ];
        for (code, name) in names.iter().enumerate() {
            let r = PauseReason::from_u8(code as u8);
            assert_eq!(r as u8, code as u8, "{name}");
            assert_eq!(r.as_str(), *name);
            // The API's JSON spells it the same way.
            assert_eq!(serde_json::to_value(r).expect("serializes"), serde_json::json!(name));
        }
        assert_eq!(PauseReason::from_u8(8), PauseReason::DataSaver);
        assert_eq!(PauseReason::from_u8(9), PauseReason::BatterySaver);
        for unknown in [10u8, 42, 255] {
            assert_eq!(PauseReason::from_u8(unknown), PauseReason::Other, "a newer node may know more");
        }
    }

    #[test]
    fn every_prefix_of_a_frame_decodes_without_panic() {
        let frames = [
            Frame::Hello(Hello {
                min_version: 1,
                max_version: 1,
                device_id: Some([7; 16]),
                agent: Some("a".into()),
                max_streams: Some(5),
                max_inflight: None,
                control_only: true,
            }),
            Frame::Open { stream: 3, window: 262_144, target: Target::Domain("example.com".into(), 443), probe: false },
            Frame::Open {
                stream: 5,
                window: 65_536,
                target: Target::Ip("127.0.0.1:9".parse().expect("addr")),
                probe: true,
            },
            Frame::Data { stream: 3, fin: true, payload: Bytes::from_static(b"hello") },
        ];
        for f in frames {
            let enc = f.encode();
            assert_eq!(Frame::decode(enc.clone()), Ok(f));
            for n in 0..enc.len() {
                let _ = Frame::decode(enc.slice(..n));
            }
        }
    }

    /// A HEARTBEAT_ACK with only a seq.
    fn ack(seq: u32) -> Frame {
        Frame::HeartbeatAck(HeartbeatAck { seq, ..HeartbeatAck::default() })
    }

    /// A HEARTBEAT_ACK of seq 1 with only a currency.
    fn ack_in(currency: &str) -> Frame {
        Frame::HeartbeatAck(HeartbeatAck { seq: 1, currency: Some(currency.into()), ..HeartbeatAck::default() })
    }

    #[test]
    fn unknown_tlv_fields_are_skipped_and_repeats_rejected() {
        let mut b = ack(9).encode().to_vec();
        b.extend_from_slice(&[200, 0, 2, 0xaa, 0xbb]);
        assert_eq!(Frame::decode(Bytes::from(b.clone())), Ok(ack(9)));
        b.extend_from_slice(&[200, 0, 1, 0xcc]);
        assert_eq!(Frame::decode(Bytes::from(b.clone())), Ok(ack(9)), "an unknown tag may repeat");
        b.extend_from_slice(&[1, 0, 4, 0, 0, 0, 1]);
        assert!(matches!(Frame::decode(Bytes::from(b)), Err(ProtocolError::RepeatedField { .. })));
    }

    #[test]
    fn heartbeat_ack_carries_todays_traffic_and_earnings() {
        let full = Frame::HeartbeatAck(HeartbeatAck {
            seq: 7,
            server_time_ms: Some(1_767_225_615_000),
            bytes_today: Some(3_010_422),
            earned_today: Some(u64::MAX),
            currency: Some("USD".into()),
        });
        let wire = full.encode();
        assert_eq!(Frame::decode(wire.clone()), Ok(full));
        // Tags 3, 4, 5 follow the old fields: a reader that knows only tags 1 and 2 skips them.
        assert_eq!(&wire[HEADER_LEN + 7 + 11..][..3], &[3, 0, 8]);
        assert!(wire.ends_with(&[5, 0, 3, b'U', b'S', b'D']));
        let sixteen = "€€€€€x".to_owned(); // 16 bytes
        assert_eq!(Frame::decode(ack_in(&sixteen).encode()), Ok(ack_in(&sixteen)));
        // The encoder cuts an over-long currency on a character boundary, so it still decodes.
        assert_eq!(Frame::decode(ack_in(&format!("{sixteen}€")).encode()), Ok(ack_in(&sixteen)));
        assert_eq!(Frame::decode(ack_in("€€€€€€").encode()), Ok(ack_in("€€€€€")));
    }

    #[test]
    fn malformed_heartbeat_ack_fields_are_violations() {
        let with = |field: &[u8]| {
            let mut b = ack(1).encode().to_vec();
            b.extend_from_slice(field);
            Frame::decode(Bytes::from(b))
        };
        for tag in [3u8, 4] {
            for len in [0u8, 4, 9] {
                let mut field = vec![tag, 0, len];
                field.resize(3 + usize::from(len), 0);
                assert_eq!(
                    with(&field),
                    Err(ProtocolError::FieldLength { frame: "HEARTBEAT_ACK", tag, len: usize::from(len), expected: 8 }),
                    "tag {tag}, {len} bytes"
                );
            }
            let mut twice = vec![tag, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1];
            twice.extend_from_within(..);
            assert_eq!(with(&twice), Err(ProtocolError::RepeatedField { frame: "HEARTBEAT_ACK", tag }));
        }
        let long = with(b"\x05\x00\x11ABCDEFGHIJKLMNOPQ");
        assert!(
            matches!(long, Err(ProtocolError::BadField { tag: 5, why, .. }) if why.contains("16 bytes")),
            "{long:?}"
        );
        assert_eq!(
            with(&[5, 0, 2, 0xc3, 0x28]),
            Err(ProtocolError::BadField { frame: "HEARTBEAT_ACK", tag: 5, why: "text is not UTF-8" })
        );
        assert_eq!(with(&[5, 0, 0]), Ok(ack_in("")), "an empty currency is well-formed (the server never sends one)");
    }

    /// Inputs the fuzzer found (fuzz/regressions/frame_decode): decode → encode → decode is stable.
    #[test]
    fn fuzz_regressions_round_trip() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions/frame_decode");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let raw = std::fs::read(e.unwrap().path()).unwrap();
            if let Ok(f) = Frame::decode(Bytes::from(raw)) {
                assert_eq!(Frame::decode(f.encode()), Ok(f));
            }
            n += 1;
        }
        assert!(n >= 4);
    }

    #[test]
    fn version_negotiation_names_the_side_to_upgrade() {
        assert_eq!(negotiate_version(1, 3), Ok(2));
        assert_eq!(negotiate_version(1, 1), Ok(1), "a version 1 node keeps version 1");
        assert_eq!(negotiate_version(2, 2), Ok(2));
        assert!(negotiate_version(3, 4).unwrap_err().contains("upgrade the server"));
        assert!(negotiate_version(0, 0).unwrap_err().contains("upgrade the node"));
        assert!(negotiate_version(3, 1).is_err());
    }

    fn entry(day: u32, bytes: u64, earned: u64) -> StatsEntry {
        StatsEntry { start_day: day, bytes, earned }
    }

    #[test]
    fn control_requests_round_trip_and_every_prefix_is_safe() {
        let full = Stats {
            request_id: 7,
            status: StatsStatus::Ok,
            currency: Some("USD".into()),
            today: Some(20_425),
            days: (0..MAX_STATS_DAYS as u32)
                .map(|i| entry(20_364 + i, u64::from(i) << 33, u64::MAX - u64::from(i)))
                .collect(),
            months: (0..MAX_STATS_MONTHS as u32).map(|i| entry(19_700 + 30 * i, 1, 2)).collect(),
            retry_after_s: None,
        };
        let frames = [
            Frame::StatsRequest(StatsRequest { request_id: u32::MAX, days: 62, months: 24 }),
            Frame::Stats(Box::new(full.clone())),
            Frame::Stats(Box::new(Stats {
                request_id: 1,
                status: StatsStatus::RateLimited,
                retry_after_s: Some(9),
                ..Stats::default()
            })),
            Frame::Unpair { request_id: 3, reason: Some("selling the phone".into()) },
            Frame::Unpair { request_id: 4, reason: None },
            Frame::Unpaired { request_id: 3 },
        ];
        for f in frames {
            let enc = f.encode();
            assert!(enc.len() <= MAX_FRAME_LEN);
            assert_eq!(Frame::decode(enc.clone()), Ok(f.clone()), "{}", f.name());
            for n in 0..enc.len() {
                let _ = Frame::decode(enc.slice(..n));
            }
        }
        // The largest STATS is far below the frame limit.
        assert!(Frame::Stats(Box::new(full)).encode().len() < 2_200);
        // The encoder keeps the newest entries within the bounds and cuts a long reason.
        let over = Stats { days: (0..70).map(|i| entry(i, 0, 0)).collect(), ..Stats::default() };
        match Frame::decode(Frame::Stats(Box::new(over)).encode()) {
            Ok(Frame::Stats(s)) => assert_eq!((s.days.len(), s.days[0].start_day), (MAX_STATS_DAYS, 8)),
            other => panic!("{other:?}"),
        }
        let long = Frame::Unpair { request_id: 1, reason: Some("é".repeat(150)) };
        match Frame::decode(long.encode()) {
            Ok(Frame::Unpair { reason: Some(r), .. }) => assert_eq!(r.len(), MAX_UNPAIR_REASON_LEN),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_control_requests_are_violations() {
        let with = |kind: u8, body: &[u8]| {
            let mut b = vec![kind, 0, 0, 0, 0, 0];
            b.extend_from_slice(body);
            Frame::decode(Bytes::from(b))
        };
        let id = [1u8, 0, 4, 0, 0, 0, 9];
        let stats_head = [&id[..], &[2, 0, 1, 0]].concat();
        // A wrong-length entry, too many entries, a long currency, a missing status.
        let short_entry = [&stats_head[..], &[5, 0, 19], &[0; 19]].concat();
        assert!(matches!(
            with(kind::STATS, &short_entry),
            Err(ProtocolError::FieldLength { tag: 5, expected: 20, .. })
        ));
        let mut many = stats_head.clone();
        for _ in 0..=MAX_STATS_MONTHS {
            many.extend_from_slice(&[6, 0, 20]);
            many.extend_from_slice(&[0; 20]);
        }
        assert!(matches!(with(kind::STATS, &many), Err(ProtocolError::BadField { tag: 6, .. })));
        let cur = [&stats_head[..], b"\x03\x00\x11ABCDEFGHIJKLMNOPQ"].concat();
        assert!(matches!(with(kind::STATS, &cur), Err(ProtocolError::BadField { tag: 3, .. })));
        assert_eq!(with(kind::STATS, &id), Err(ProtocolError::MissingField { frame: "STATS", tag: 2 }));
        // An unknown status reads as unavailable (a newer server may know more).
        let odd = [&id[..], &[2, 0, 1, 9]].concat();
        assert!(matches!(with(kind::STATS, &odd), Ok(Frame::Stats(s)) if s.status == StatsStatus::Unavailable));
        // A cut field, a repeated scalar, a 201-byte reason, a wrong-width id, a stream id.
        assert!(matches!(with(kind::STATS_REQUEST, &[1, 0, 4, 0, 0]), Err(ProtocolError::Truncated { .. })));
        let twice = [&id[..], &[2, 0, 2, 0, 7, 2, 0, 2, 0, 7]].concat();
        assert!(matches!(with(kind::STATS_REQUEST, &twice), Err(ProtocolError::RepeatedField { tag: 2, .. })));
        let reason = [&id[..], &[2, 0, 201], &[b'x'; 201]].concat();
        assert!(matches!(with(kind::UNPAIR, &reason), Err(ProtocolError::BadField { tag: 2, .. })));
        assert!(matches!(with(kind::UNPAIRED, &[1, 0, 2, 0, 1]), Err(ProtocolError::FieldLength { tag: 1, .. })));
        let on_stream = [kind::UNPAIRED, 0, 0, 0, 0, 5, 1, 0, 4, 0, 0, 0, 1];
        assert_eq!(
            Frame::decode(Bytes::copy_from_slice(&on_stream)),
            Err(ProtocolError::NeedsConnectionStream("UNPAIRED"))
        );
        // HELLO's session kind: 1 is control-only, anything but 0 and 1 is a violation.
        let hello = |v: u8| with(kind::HELLO, &[1, 0, 1, 1, 2, 0, 1, 2, 16, 0, 1, v]);
        assert!(matches!(hello(1), Ok(Frame::Hello(h)) if h.control_only));
        assert!(matches!(hello(0), Ok(Frame::Hello(h)) if !h.control_only));
        assert!(matches!(hello(2), Err(ProtocolError::BadField { tag: 16, .. })));
    }
}
