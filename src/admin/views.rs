//! What admin commands and the REST API return: one typed view per answer (each command's
//! `Output`). The CLI, the admin socket and the API all serialise these, and the OpenAPI
//! document is generated from the same types, so the documented shape is the shape on the wire.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::money::format_signed;
use crate::store::{AuditEntry, Correction, SessionRecord, Transfer, UsageBucket, Withdrawal};

pub use crate::units::rfc3339;

/// A user account with its money.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub telegram_id: Option<i64>,
    /// Posted balance minus unposted usage (at most a second behind).
    pub balance_micros: i64,
    pub balance: String,
    pub posted_micros: i64,
    pub accrued_micros: i64,
    /// Reserved for live streams.
    pub held_micros: i64,
    /// What may be spent or withdrawn: balance − held.
    pub available_micros: i64,
    pub pending_withdrawals_micros: u64,
    pub proxy_password: String,
    pub devices: usize,
    pub created_at: String,
    /// The generated login password, only in the answer that created the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A paired device (node) and, when connected, its live state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub owner: String,
    pub vip: String,
    pub online: bool,
    /// `serving`, `draining` or `paused` while online.
    pub state: Option<String>,
    pub active_streams: Option<usize>,
    pub public_ip: Option<String>,
    pub country: Option<String>,
    pub battery_pct: Option<u8>,
    /// `wifi`, `cellular`, `ethernet` or `unknown` while online.
    pub network: Option<String>,
    pub model: Option<String>,
    pub os: Option<String>,
    pub key_alg: String,
    pub paired_at: String,
    pub last_seen: Option<String>,
    pub banned: bool,
    pub ban_reason: Option<String>,
    /// Paused by its owner: routed nothing while set (and never reported offline).
    #[serde(default)]
    pub paused: bool,
    /// The reason the node paused itself (its owner's controls on the device: `daily_cap`,
    /// `monthly_cap`, `outside_schedule`, `not_on_wifi`, `battery_low`, `not_charging`,
    /// `by_owner`, `data_saver`, `battery_saver`, `other`): while online and paused, from its
    /// heartbeat; while offline, the
    /// reason it left with — such a node closed its tunnel until the condition clears and is
    /// shown as paused, not offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    /// Bytes carried and earned today (UTC), as the server metered them.
    pub bytes_today: u64,
    pub earned_today_micros: u64,
    /// The tunnel's smoothed round-trip time while online.
    pub rtt_ms: Option<f64>,
    /// The autonomous system of its public IP (with an ASN database configured).
    pub asn: Option<u32>,
    pub as_org: Option<String>,
    /// While online: when this connection started, and the node's own report of its resource
    /// settings and use (its owner's policy: stream cap, data caps, charging).
    pub connected_at: Option<String>,
    pub uptime_s: Option<u64>,
    pub charging: Option<bool>,
    pub max_streams: Option<u32>,
    pub daily_cap_bytes: Option<u64>,
    pub monthly_cap_bytes: Option<u64>,
    pub node_bytes_today: Option<u64>,
    pub node_bytes_month: Option<u64>,
    /// The quality watchdog's state (`healthy`, `degraded`, `flagged`, `banned`) and score, and
    /// the whole judgement: reasons (worst first) with what would raise the score.
    pub quality_state: Option<String>,
    pub score: Option<u8>,
    pub quality: Option<crate::watchdog::QualityView>,
    /// Device trust (docs/trust.md): `none`, `software` or `hardware`, judged from the Key
    /// Attestation chain at pairing.
    pub trust: String,
    /// Why the level is not `hardware` (empty when it is, or when there was no chain).
    pub trust_reasons: Vec<String>,
    /// Where the key lives as the attestation claims: `software`, `tee` or `strongbox`.
    pub security_level: Option<String>,
    /// Admin only: how many accounts have a device attested by this device's attestation key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_key_accounts: Option<u32>,
    /// Admin only: that count is above `trust.shared_key_accounts` (a leaked keybox?).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_attestation_key: Option<bool>,
    /// Admin only: emulator hints the app reported at pairing (weak signals, never a ban by
    /// themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator_hints: Option<Vec<String>>,
}

/// One ledger transfer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransferView {
    pub seq: u64,
    pub id: String,
    pub time: String,
    pub debit: String,
    pub credit: String,
    pub amount: String,
    pub amount_micros: u64,
    pub kind: String,
    pub reference: String,
}

impl From<&Transfer> for TransferView {
    fn from(t: &Transfer) -> Self {
        TransferView {
            seq: t.seq,
            id: t.id.clone(),
            time: rfc3339(t.time),
            debit: t.debit.clone(),
            credit: t.credit.clone(),
            amount: t.amount.to_string(),
            amount_micros: t.amount.0,
            kind: t.kind.clone(),
            reference: t.reference.clone(),
        }
    }
}

/// A payout request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WithdrawalView {
    pub id: u64,
    pub user: String,
    pub amount: String,
    pub amount_micros: u64,
    pub destination: Option<String>,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub requested_at: String,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    /// Requested by the user's automatic threshold, not by hand.
    pub auto: bool,
    /// An approved withdrawal the operator marked paid (outside Traffix), with the reference.
    pub paid_at: Option<String>,
    pub paid_reference: Option<String>,
}

impl From<&Withdrawal> for WithdrawalView {
    fn from(w: &Withdrawal) -> Self {
        WithdrawalView {
            id: w.id,
            user: w.user.clone(),
            amount: w.amount.to_string(),
            amount_micros: w.amount.0,
            destination: w.destination.clone(),
            status: w.status.as_str().into(),
            requested_at: rfc3339(w.requested_at),
            decided_at: w.decided_at.map(rfc3339),
            decided_by: w.decided_by.clone(),
            reason: w.reason.clone(),
            auto: w.auto,
            paid_at: w.paid_at.map(rfc3339),
            paid_reference: w.paid_reference.clone(),
        }
    }
}

/// One client stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    pub id: u64,
    /// The account billed.
    pub client: String,
    /// The sub-user that opened the stream, if one did.
    pub sub: Option<String>,
    pub device: String,
    pub owner: String,
    pub vip: String,
    pub node_ip: String,
    pub target: String,
    pub start: String,
    pub end: Option<String>,
    pub live: bool,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub charge: String,
    pub charge_micros: u64,
    pub node_credit_micros: u64,
    /// The client used its own node (it pays only the platform fee).
    pub self_use: bool,
    pub end_reason: Option<String>,
}

impl From<&SessionRecord> for SessionView {
    fn from(r: &SessionRecord) -> Self {
        SessionView {
            id: r.id,
            client: r.client.clone(),
            sub: r.sub.clone(),
            device: r.device.clone(),
            owner: r.owner.clone(),
            vip: r.vip.clone(),
            node_ip: r.node_ip.clone(),
            target: r.target.clone(),
            start: rfc3339(r.start),
            end: r.end.map(rfc3339),
            live: r.end.is_none(),
            bytes_up: r.bytes_up,
            bytes_down: r.bytes_down,
            charge: r.charge.to_string(),
            charge_micros: r.charge.0,
            node_credit_micros: r.node_credit.0,
            self_use: r.self_use(),
            end_reason: r.end_reason.clone(),
        }
    }
}

/// An audit-log entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        AuditView {
            seq: e.seq,
            time: rfc3339(e.time),
            actor: e.actor,
            action: e.action,
            target: e.target,
            reason: e.reason,
            before: e.before,
            after: e.after,
        }
    }
}

/// Usage in one bucket (an hour or a day) or in total.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UsagePoint {
    /// Start of the bucket (absent in totals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// What clients paid.
    pub debit_micros: u64,
    /// What node owners earned.
    pub earned_micros: u64,
    /// What the platform kept.
    pub fee_micros: u64,
    /// Streams started.
    pub sessions: u64,
}

impl UsagePoint {
    pub fn new(start: Option<String>, b: &UsageBucket) -> UsagePoint {
        UsagePoint {
            start,
            bytes_up: b.up,
            bytes_down: b.down,
            debit_micros: b.debit,
            earned_micros: b.earned,
            fee_micros: b.fee,
            sessions: b.sessions,
        }
    }
}

/// A zero-filled usage series, ready for a chart.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// `client:NAME`, `owner:NAME`, `device:ID` or `all`.
    pub subject: String,
    /// `hour` or `day` (UTC).
    pub by: String,
    pub series: Vec<UsagePoint>,
    pub total: UsagePoint,
}

/// A credit's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditView {
    pub user: String,
    pub amount: String,
    pub transfer: u64,
    pub balance_micros: i64,
    pub balance: String,
}

impl CreditView {
    pub fn new(user: &str, amount: crate::money::Micros, transfer: u64, balance: i64) -> CreditView {
        CreditView {
            user: user.to_owned(),
            amount: amount.to_string(),
            transfer,
            balance_micros: balance,
            balance: format_signed(balance),
        }
    }
}

/// A correction's outcome: an adjustment, or a reversal of a deposit or an adjustment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CorrectionView {
    pub user: String,
    /// The signed change of the user's balance, e.g. `"-13.50"`.
    pub amount: String,
    pub amount_micros: i64,
    /// The new transfer's sequence number and id.
    pub transfer: u64,
    pub transfer_id: String,
    /// `adjustment` or `reversal`.
    pub kind: String,
    /// The transfer a reversal undid: its sequence number and id.
    pub reverses: Option<u64>,
    pub reverses_id: Option<String>,
    /// The user's posted balance after the correction.
    pub balance_micros: i64,
    pub balance: String,
    /// What the user may spend or withdraw after it (balance − unposted usage − held).
    pub available_micros: i64,
}

impl From<&Correction> for CorrectionView {
    fn from(c: &Correction) -> Self {
        CorrectionView {
            user: c.user.clone(),
            amount: format_signed(c.delta),
            amount_micros: c.delta,
            transfer: c.transfer.seq,
            transfer_id: c.transfer.id.clone(),
            kind: c.transfer.kind.clone(),
            reverses: c.reverses.as_ref().map(|t| t.seq),
            reverses_id: c.reverses.as_ref().map(|t| t.id.clone()),
            balance_micros: c.balance,
            balance: format_signed(c.balance),
            available_micros: c.available,
        }
    }
}

/// A login password set by an admin or changed by its user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasswordView {
    pub name: String,
    /// The generated password, only when one was generated (shown once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Logins signed out (their refresh tokens stop working; access tokens expire within
    /// 10 minutes).
    pub revoked_logins: usize,
}

/// A one-time pairing link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PairView {
    /// `traffix://pair?server=HOST:PORT&pin=HEX&code=CODE`
    pub link: String,
    pub code: String,
    pub expires_at: String,
    pub user: String,
}

/// A sub-user: extra proxy credentials billed to its parent account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubUserView {
    pub name: String,
    pub parent: String,
    pub proxy_password: String,
    /// Bytes (both directions) it may move in all, if capped.
    pub byte_cap: Option<u64>,
    /// Bytes moved so far (at most a second behind).
    pub bytes_used: u64,
    pub max_streams: Option<u32>,
    pub expires_at: Option<String>,
    pub disabled: bool,
    pub created_at: String,
}

/// The billing settings in force (traffix.toml, or changed at run time).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SettingsView {
    pub price_per_gb: String,
    pub price_per_gb_micros: u64,
    pub platform_fee_percent: u8,
    pub min_payout: String,
    pub min_payout_micros: u64,
    /// How far below zero a client may end (the documented bound, at this price).
    pub max_overdraft_micros: u64,
    /// When and by whom they were last changed at run time (absent: as in traffix.toml).
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}

/// An API key (the key itself only in the answer that created it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    #[schema(value_type = String)]
    pub scope: crate::store::KeyScope,
    pub created_at: String,
    /// The key itself, only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<&crate::store::ApiKey> for ApiKeyView {
    fn from(k: &crate::store::ApiKey) -> Self {
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            scope: k.scope,
            created_at: rfc3339(k.created_at),
            key: None,
        }
    }
}

/// A user's new proxy password (`user proxy-password`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProxyPasswordView {
    pub name: String,
    pub proxy_password: String,
}

/// Where a backup was written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupView {
    pub backup: String,
}

/// What a delete removed: a sub-user's name or an API key's id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedView {
    pub deleted: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_647_793), "2026-11-25T23:03:13Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
