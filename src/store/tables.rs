//! Every redb table of the store, in one place. Values are JSON documents (serde) so that
//! adding a field is not a migration; renames and re-keyings are (see `migrations.rs`).

use redb::TableDefinition;

/// Schema metadata and counters: `schema_version`, `next_vip`, `transfer_seq`, `audit_seq`.
pub const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// User name → `UserRecord` JSON.
pub const USERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("users");
/// Device id (16 bytes) → `DeviceRecord` JSON.
pub const DEVICES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("devices");
/// Virtual IP (u32) → device id: keeps vIPs unique.
pub const VIPS: TableDefinition<'_, u32, &[u8]> = TableDefinition::new("vips");
/// SHA-256 (hex) of a pairing code → `PairCode` JSON.
pub const PAIR_CODES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("pair_codes");
/// Transfer sequence → `Transfer` JSON (immutable, append-only).
pub const TRANSFERS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("transfers");
/// Transfer id → sequence: idempotency of external events.
pub const TRANSFER_IDS: TableDefinition<'_, &str, u64> = TableDefinition::new("transfer_ids");
/// Account → balance in micro-units, maintained in the same transaction as its transfers.
pub const BALANCES: TableDefinition<'_, &str, i64> = TableDefinition::new("balances");
/// Audit sequence → `AuditEntry` JSON.
pub const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");
/// Session id → `SessionRecord` JSON: one row per client stream (the seed's `sessions`).
pub const SESSIONS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("sessions");
/// Session id → `Accrual`: unposted usage of a live session, one row per session (schemas 2–8;
/// v9 moved its rows to [`ACCRUAL_CHUNKS`] and dropped it).
pub const ACCRUALS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("accruals");
/// Session id ÷ 64 → the accrual rows of the live sessions among those 64 ids, in id order
/// (`store::usage`): unposted usage, rewritten every flush. Bounded: one row per live session,
/// one entry per 64 ids that have one.
pub const ACCRUAL_CHUNKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("accrual_chunks");
/// Hold id → `Hold` JSON: money reserved for a client's live streams (SECURITY.md §4.4). Holds
/// live only while the server runs: a restart expires them all.
pub const HOLDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("holds");
/// Withdrawal id → `Withdrawal` JSON: node owners' payout requests and their outcome.
pub const WITHDRAWALS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("withdrawals");
/// (subject, hour since the epoch) → `UsageBucket` JSON: hourly usage and earnings rolled up by
/// every flush, for charts. Subjects: `client:NAME`, `owner:NAME`, `device:HEX`, `sub:NAME`, `all`.
pub const USAGE: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("usage");
/// Client → what its live sessions' accruals owe in total (micro-units), maintained by every
/// flush, so reservations and balances read one row instead of every accrual.
pub const ACCRUED: TableDefinition<'_, &str, i64> = TableDefinition::new("accrued");
/// SHA-256 (hex) of a refresh token → `RefreshToken` JSON (SECURITY.md §3: stored hashed).
pub const REFRESH_TOKENS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("refresh_tokens");
/// Login family id → `TokenFamily` JSON: one per login, revoked as a whole on reuse or logout.
pub const TOKEN_FAMILIES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("token_families");
/// SHA-256 (hex) of an API key → `ApiKey` JSON.
pub const API_KEYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("api_keys");
/// Sub-user name → `SubUser` JSON (names are unique across users and sub-users).
pub const SUBUSERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("subusers");
/// Setting group → JSON: settings changed at run time, overriding `traffix.toml`.
pub const SETTINGS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("settings");
/// Deposit transfer id → `Deposit` JSON: the receipt of every credit from outside (admin
/// credits and payments), written in the same transaction as the credit; its key is the
/// payment's dedup key.
pub const DEPOSITS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("deposits");
/// `PROVIDER:INVOICE_ID` → `Invoice` JSON: invoices created at a payment provider for a user's
/// top-up, watched until paid (and credited) or expired.
pub const INVOICES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("invoices");
/// User name → `PayoutProfile` JSON: where a node owner wants to be paid, and the optional
/// threshold of automatic withdrawal requests.
pub const PAYOUT_PROFILES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("payout_profiles");
/// Device id (16 bytes) → the quality watchdog's record of the node (state, score, reasons,
/// flags, an admin's override and the last window's summary), rewritten every evaluation:
/// one row per device.
pub const NODE_QUALITY: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("node_quality");
/// Telegram user id → user name: the bot's accounts (the user record holds the other side).
pub const TELEGRAM_LINKS: TableDefinition<'_, i64, &str> = TableDefinition::new("telegram_links");
/// SHA-256 (hex) of a one-time Telegram code (link, invite or login) → `TelegramToken` JSON.
/// At most one of each kind per user: a new one replaces the old.
pub const TELEGRAM_TOKENS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("telegram_tokens");
/// (user name, sequence) → `Notice` JSON: the notification inbox, bounded per user.
pub const NOTICES: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("notices");
/// User name → `NotifyPrefs` JSON: which notifications a user wants and when.
pub const NOTIFY_PREFS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("notify_prefs");
