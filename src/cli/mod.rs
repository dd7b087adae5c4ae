//! The `traffix` command line (clap), with the names and outputs of SPEC.md's scripting
//! contract. Read commands print a human table, or JSON with `--json`. Admin commands go to a
//! running server through its admin socket, or straight to the database when it is stopped.

pub mod output;
mod payments;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::admin::views::{DeviceView, SubUserView, UsagePoint, UserView, WithdrawalView};
use crate::admin::{self, AdminCtx, AdminError};
use crate::app::{self, App, InitOptions};
use output::outln;

pub const ENV_DATA_DIR: &str = "TRAFFIX_DATA_DIR";

/// The data directory when neither `--data-dir` nor `TRAFFIX_DATA_DIR` names one: the system
/// directory in the packaged build (the `system-paths` feature the `.deb` and the container
/// enable), `./traffix-data` otherwise.
#[cfg(feature = "system-paths")]
pub const DEFAULT_DATA_DIR: &str = "/var/lib/traffix";
#[cfg(not(feature = "system-paths"))]
pub const DEFAULT_DATA_DIR: &str = "./traffix-data";

#[derive(Debug, Parser)]
#[command(
    name = "traffix",
    version,
    about = "Self-hosted residential-proxy appliance: server, node agent and admin CLI"
)]
pub struct Cli {
    /// Data directory (config, database, TLS key).
    #[arg(long, global = true, env = ENV_DATA_DIR, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Config file (default: traffix.toml in the data directory).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: config, TLS certificate, database and the admin user.
    Init(InitArgs),
    /// Run the server until SIGTERM.
    Serve(ServeArgs),
    /// Run a Linux node agent (pair once with --pair, then reuse --state).
    Node(NodeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Print a one-time pairing link for a user's new node.
    Pair {
        /// The user whose node it will be.
        name: String,
        /// Print JSON: {"link","code","expires_at","user"}.
        #[arg(long)]
        json: bool,
    },
    /// Manage paired devices (nodes).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Inspect and verify the ledger.
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Sub-users: extra proxy credentials billed to an account, with their own caps.
    #[command(subcommand)]
    Subuser(SubuserCmd),
    /// Node owners' payouts: request, list, approve, reject.
    #[command(subcommand)]
    Withdrawal(WithdrawalCmd),
    /// Payments: deposit receipts, refunds and chargebacks, provider invoices, payment settings.
    #[command(subcommand)]
    Payment(payments::PaymentCmd),
    /// Payouts: where node owners are paid, the batch export of approved payouts, marking them paid.
    #[command(subcommand)]
    Payout(payments::PayoutCmd),
    /// The Telegram bot's accounts: invitations, link codes, unlinking (docs/telegram.md).
    #[command(subcommand)]
    Telegram(TelegramCmd),
    /// Client streams (the sessions table), newest first; live ones are at most a second old.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Usage and earnings per hour or day of a client, an owner's nodes or one device.
    Usage(UsageArgs),
    /// Write one archive that brings the whole server back: a consistent snapshot of the
    /// database, traffix.toml, the TLS certificate and key, and the JWT secret (streamed by a
    /// running server; built directly when it is stopped).
    Backup {
        /// Where to write the archive, a tar (created with mode 0600; never overwritten).
        file: PathBuf,
        /// Print JSON: {"manifest","bytes","sha256","streamed"}.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup archive into --data-dir, then verify its ledger (exit 1 if it fails).
    Restore {
        /// The archive `traffix backup` wrote.
        file: PathBuf,
        /// Replace the server files of a non-empty (stopped) data directory.
        #[arg(long)]
        force: bool,
        /// Print JSON: {"restore","ledger_verify","tls_paths_elsewhere"}.
        #[arg(long)]
        json: bool,
    },
    /// Check a server's health: config, ports, certificate, database, GeoIP, clock, permissions,
    /// admin socket; each problem with its fix (exit 0 healthy, 1 problems, 2 warnings only).
    Doctor {
        /// Print JSON: {"ok","problems","warnings","checks":[{"check","status","message","fix"}]}.
        #[arg(long)]
        json: bool,
    },
    /// The audit log: admin actions and money movements not caused by traffic.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Print the example configuration with every key and its default.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Billing settings in force, and changing them at run time (overrides traffix.toml).
    #[command(subcommand)]
    Settings(SettingsCmd),
    /// GeoIP databases (countries and networks of nodes): download and swap them in, or show
    /// what is in use.
    #[command(subcommand)]
    Geoip(GeoipCmd),
    /// The web listener's certificate: what is served (ACME or self-signed) and renewing it.
    #[command(subcommand)]
    Tls(TlsCmd),
    /// Start a complete local network (server, node, funded client, origin) and print a curl line.
    Demo(DemoArgs),
    /// Print the REST API's OpenAPI document.
    Openapi,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// HOST:PORT nodes dial: a host name, an IPv4 address or a bracketed IPv6 address, and a
    /// port (default: the web listen address, or this host's name when that is 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pub public_address: Option<String>,
    /// Set no public address: the server runs with pairing off until server.public_address is
    /// set in the config (then restart it).
    #[arg(long, conflicts_with = "public_address")]
    pub no_public_address: bool,
    /// Address of the web listener: dashboard, API and node tunnel [default: 0.0.0.0:8443].
    #[arg(long, value_name = "ADDR")]
    pub web_listen: Option<SocketAddr>,
    /// Address of the SOCKS5 proxy listener [default: 0.0.0.0:1080].
    #[arg(long, value_name = "ADDR")]
    pub socks_listen: Option<SocketAddr>,
    /// Address of the HTTP proxy listener [default: 0.0.0.0:3128].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Address of the Prometheus metrics listener [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Print JSON: {"admin_user","admin_password","pin","public_address","config_path","data_dir"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve the web listener over plain HTTP (development and tests only).
    #[arg(long)]
    pub insecure_http: bool,
    /// Let clients reach private and loopback targets (tests on one machine only).
    #[arg(long)]
    pub allow_private_targets: bool,
}

#[derive(Debug, Args)]
#[command(subcommand_negates_reqs = true)]
pub struct NodeArgs {
    /// Instead of serving: ask the server about this node (`stats`, `unpair`; works while the
    /// agent serves), or `pause` / `resume` a node through its settings file.
    #[command(subcommand)]
    pub action: Option<NodeAction>,
    /// One-time pairing link: traffix://pair?server=HOST:PORT&pin=HEX&code=CODE
    #[arg(long, value_name = "LINK")]
    pub pair: Option<String>,
    /// Identity file (created with mode 0600); the data counters are kept next to it
    /// (FILE with the extension `.usage.json`).
    #[arg(long, value_name = "FILE", required = true)]
    pub state: Option<PathBuf>,
    /// The owner's settings file (TOML: paused, daily_cap, monthly_cap, monthly_reset_day,
    /// max_up, max_down, max_streams, schedule, utc_offset). Re-read when it changes and on
    /// SIGHUP; the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// Stop sharing for the day after this many bytes (both legs of every relayed byte),
    /// e.g. 2GB.
    #[arg(long, value_name = "SIZE")]
    pub daily_cap: Option<String>,
    /// Stop sharing for the month after this many bytes, e.g. 50GB.
    #[arg(long, value_name = "SIZE")]
    pub monthly_cap: Option<String>,
    /// Day of the month (1-31, the last day of shorter months) the monthly count restarts.
    #[arg(long, value_name = "DAY")]
    pub monthly_reset_day: Option<u8>,
    /// Most bytes a second sent into the tunnel (what clients download), e.g. 1MB.
    #[arg(long, value_name = "SIZE")]
    pub max_up: Option<String>,
    /// Most bytes a second taken from the tunnel (what clients upload), e.g. 1MB.
    #[arg(long, value_name = "SIZE")]
    pub max_down: Option<String>,
    /// When to share: a rule like "mon-fri 18:00-23:30" or "daily 22:00-07:00"; repeat for
    /// more rules. Without any the node shares at all hours.
    #[arg(long, value_name = "RULE")]
    pub schedule: Vec<String>,
    /// Offset from UTC of the days, months and schedule, e.g. +02:00 [default: UTC].
    #[arg(long, value_name = "+HH:MM", allow_hyphen_values = true)]
    pub utc_offset: Option<String>,
    /// Local source address of the tunnel connection.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// Local source address of the connections dialled for clients (default: --bind).
    #[arg(long, value_name = "ADDR")]
    pub egress_bind: Option<IpAddr>,
    /// Let clients reach private and loopback targets through this node (tests only).
    #[arg(long)]
    pub allow_private_targets: bool,
    /// Most concurrent streams this node accepts [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_streams: Option<u32>,
    /// While the server refuses this device (banned, or its owner disabled), ask again every
    /// this many seconds; an unban brings the node back on its own.
    #[arg(long, default_value_t = crate::node::DEFAULT_REFUSED_RETRY_SECS, value_name = "SECS")]
    pub refused_retry_secs: u64,
}

/// Requests a node makes with its saved identity (docs/protocol.md "Control requests"), and
/// pausing or resuming a node by its settings file (a running node applies it within seconds).
#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Print this node's traffic and earnings per day and per month, as the server counts them.
    Stats {
        /// The last N days, today included (at most 62).
        #[arg(long, default_value_t = 7, value_name = "N")]
        days: u16,
        /// The last N calendar months, this one included (at most 24).
        #[arg(long, default_value_t = 3, value_name = "N")]
        months: u16,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unpair: the server forgets this device and the identity file is deleted.
    Unpair {
        /// Do it (without this, nothing is sent).
        #[arg(long)]
        yes: bool,
        /// Why (recorded in the server's audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Stop sharing: the node reports paused (by_owner), drains and closes its tunnel.
    Pause {
        /// The node's settings file (created when missing).
        #[arg(long, value_name = "FILE")]
        settings: PathBuf,
    },
    /// Share again: the node reconnects.
    Resume {
        /// The node's settings file (created when missing).
        #[arg(long, value_name = "FILE")]
        settings: PathBuf,
    },
}

/// Which rows of a list: newest first, `--limit`, `--since`, `--until`.
#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    /// Show at most N rows (the newest).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only rows from this time on: RFC 3339, a UTC date (2026-12-01), Unix seconds or an age
    /// (24h, 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<u64>,
    /// Only rows up to this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<u64>,
}

impl WindowArgs {
    fn window(&self, default_limit: Option<usize>) -> admin::Window {
        admin::Window { since: self.since, until: self.until, limit: self.limit.or(default_limit), before: None }
    }
}

/// `--since`/`--until` values: an instant, or an age meaning that long before now.
fn parse_time(s: &str) -> Result<u64, String> {
    crate::units::parse_instant(s, crate::store::now_secs())
}

/// Byte-size values: `5GB`, `500MiB`, `1.5GiB` or raw bytes.
fn parse_byte_size(s: &str) -> Result<u64, String> {
    crate::units::parse_bytes(s)
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user (a login password is generated unless given).
    Add {
        /// The user name: 3-32 characters of a-z, 0-9 and _.
        name: String,
        /// The login password (default: a generated one, printed once).
        #[arg(long)]
        password: Option<String>,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Print the new user as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List users, newest first.
    List {
        #[command(flatten)]
        window: WindowArgs,
        /// Print a JSON array of users.
        #[arg(long)]
        json: bool,
    },
    /// Show one user.
    Show {
        /// The user.
        name: String,
        /// Print the user as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Credit a user's balance (AMOUNT in currency units, e.g. 12.50).
    Credit {
        /// The user to credit.
        name: String,
        /// How much, in currency units with at most six decimals, e.g. 12.50.
        amount: String,
        /// Why (for the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Idempotency key, e.g. the payment's id: crediting again with the same id is a no-op,
        /// with a different amount an error.
        #[arg(long)]
        id: Option<String>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Correct a user's balance by a signed AMOUNT (e.g. -13.50 or +2), against the
    /// platform:adjustments account; never below what is held for live streams.
    Adjust {
        /// The user.
        name: String,
        /// A signed amount: `-13.50` takes, `2.00` or `+2.00` gives.
        #[arg(allow_negative_numbers = true)]
        amount: String,
        /// Why (recorded in the audit log and the ledger).
        #[arg(long)]
        reason: String,
        /// Print the correction as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's login password (signs out all its logins).
    Password {
        /// The user.
        name: String,
        /// Generate a random password and print it once.
        #[arg(long, conflicts_with = "stdin", required_unless_present = "stdin")]
        generate: bool,
        /// Read the new password from one line of standard input.
        #[arg(long)]
        stdin: bool,
        /// Print JSON: {"name","password"?,"revoked_logins"}.
        #[arg(long)]
        json: bool,
    },
    /// Rotate a user's proxy password and print the new one.
    ProxyPassword {
        /// The user.
        name: String,
        /// Print JSON: {"name","proxy_password"}.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: proxy access and pairing stop.
    Disable {
        /// The user.
        name: String,
        /// Why (for the audit log and the user).
        #[arg(long)]
        reason: Option<String>,
        /// Print the user as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-enable a disabled user.
    Enable {
        /// The user.
        name: String,
        /// Print the user as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// List devices with their online state, newest paired first.
    List {
        #[command(flatten)]
        window: WindowArgs,
        /// Print a JSON array of devices.
        #[arg(long)]
        json: bool,
    },
    /// Ban a device (id, id prefix or virtual IP); a connected one is disconnected.
    Ban {
        /// The device: its id, an unambiguous id prefix, or its virtual IP.
        id: String,
        /// Why (for the audit log and the device's owner).
        #[arg(long)]
        reason: String,
        /// Print the device as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove (unpair) a device: it can no longer connect until paired again; its live streams
    /// are cut. Its virtual IP stays reserved and its history stays.
    Remove {
        /// The device: its id, an unambiguous id prefix, or its virtual IP.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print the removed device as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a device's quality state by hand, or give it back to the watchdog (docs/watchdog.md).
    Quality {
        /// The device: its id, an unambiguous id prefix, or its virtual IP.
        id: String,
        /// `healthy`, `degraded` (routed last), `flagged` (not routed) or `auto` (the watchdog
        /// judges it again). To ban: `traffix device ban`.
        #[arg(long = "set")]
        state: String,
        /// Why (for the audit log and the device's owner).
        #[arg(long)]
        note: String,
        /// Print the device as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift a ban; the node comes back at its next attempt.
    Unban {
        /// The device: its id, an unambiguous id prefix, or its virtual IP.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print the device as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// List transfers, newest first.
    List {
        /// Only transfers to or from this user.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        window: WindowArgs,
        /// Print a JSON array of transfers.
        #[arg(long)]
        json: bool,
    },
    /// Reverse a deposit or an adjustment (by sequence number or id) once, with the exact
    /// opposite transfer.
    Reverse {
        /// The transfer: its sequence number (as `ledger list` shows it) or its id.
        id: String,
        /// Why (recorded in the audit log and the ledger).
        #[arg(long)]
        reason: String,
        /// Print the correction as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every ledger invariant; exit 1 on any violation.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubuserCmd {
    /// Add sub-user NAME under account PARENT (its proxy password is generated).
    Add {
        /// The account it is billed to.
        parent: String,
        /// The sub-user's name: 3-32 characters of a-z, 0-9 and _.
        name: String,
        /// Bytes (both directions) it may move in all: 5GB, 500MiB, 1.5GiB or raw bytes.
        #[arg(long, value_name = "SIZE", value_parser = parse_byte_size)]
        byte_cap: Option<u64>,
        /// Streams it may have open at once.
        #[arg(long)]
        max_streams: Option<u32>,
        /// Days until it expires.
        #[arg(long)]
        days: Option<u32>,
        /// Print the sub-user as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List sub-users, newest first.
    List {
        /// Only this account's sub-users.
        #[arg(long, visible_alias = "parent")]
        user: Option<String>,
        #[command(flatten)]
        window: WindowArgs,
        /// Print a JSON array of sub-users.
        #[arg(long)]
        json: bool,
    },
    /// Stop a sub-user's proxy access.
    Disable {
        /// The sub-user.
        name: String,
        /// Print the sub-user as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a disabled sub-user.
    Enable {
        /// The sub-user.
        name: String,
        /// Print the sub-user as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rotate a sub-user's proxy password.
    ProxyPassword {
        /// The sub-user.
        name: String,
        /// Print the sub-user as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a sub-user (its history stays).
    Delete {
        /// The sub-user.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WithdrawalCmd {
    /// Request a payout of AMOUNT (currency units) for NAME; the amount is held until decided.
    Request {
        /// The user to pay.
        name: String,
        /// How much, in currency units, e.g. 25.00.
        amount: String,
        /// Where to pay (free text for the operator).
        #[arg(long)]
        to: Option<String>,
        /// Print the withdrawal as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List withdrawals, newest first.
    List {
        /// Only this user's withdrawals.
        #[arg(long)]
        user: Option<String>,
        /// pending, approved or rejected.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        window: WindowArgs,
        /// Print a JSON array of withdrawals.
        #[arg(long)]
        json: bool,
    },
    /// Approve (pay out) a pending withdrawal.
    Approve {
        /// The withdrawal's number.
        id: u64,
        /// Why, or a payment reference (for the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print the withdrawal as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reject a pending withdrawal: the money goes back to the user.
    Reject {
        /// The withdrawal's number.
        id: u64,
        /// Why (for the audit log and the user).
        #[arg(long)]
        reason: String,
        /// Print the withdrawal as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// List sessions, newest first: with --node-ip, --since and --until, who used a node's
    /// public IP at the time of an abuse report.
    List {
        /// Only this client's sessions.
        #[arg(long)]
        user: Option<String>,
        /// Only sessions carried by the node with this public IP.
        #[arg(long, value_name = "IP")]
        node_ip: Option<IpAddr>,
        /// Show at most N sessions (the newest).
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: usize,
        /// Only sessions still open at or after this time: RFC 3339, a UTC date (2026-12-01),
        /// Unix seconds or an age (24h, 7d).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<u64>,
        /// Only sessions started at or before this time (same forms as --since).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<u64>,
        /// Print a JSON array of sessions.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct UsageSubject {
    /// What a client used and paid.
    #[arg(long)]
    pub user: Option<String>,
    /// What a user's nodes carried and earned.
    #[arg(long)]
    pub owner: Option<String>,
    /// What one device carried and earned (id, id prefix or virtual IP).
    #[arg(long)]
    pub device: Option<String>,
    /// What one sub-user used (billed to its parent).
    #[arg(long)]
    pub sub: Option<String>,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub subject: UsageSubject,
    /// Bucket size: hour or day (UTC).
    #[arg(long, default_value = "day")]
    pub by: String,
    /// How many buckets up to now (default 24 hours or 30 days).
    #[arg(long)]
    pub last: Option<u64>,
    /// Print the series as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// List entries, newest first.
    List {
        /// Show at most N entries (the newest).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// Only entries from this time on: RFC 3339, a UTC date (2026-12-01), Unix seconds or an
        /// age (24h, 7d).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<u64>,
        /// Only entries up to this time (same forms as --since).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<u64>,
        /// Print a JSON array of entries.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCmd {
    /// Show the billing settings in force.
    Show {
        /// Print the settings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change billing settings: new streams are billed at the new price; kept across restarts.
    Set {
        /// Price per GB in currency units, e.g. 3.00.
        #[arg(long)]
        price_per_gb: Option<String>,
        /// The operator's share of every charge, 0-100.
        #[arg(long)]
        platform_fee_percent: Option<u8>,
        /// The smallest withdrawal, in currency units.
        #[arg(long)]
        min_payout: Option<String>,
        /// Why (for the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print the settings as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GeoipCmd {
    /// Download the country and ASN databases from geoip.source (DB-IP Lite or MaxMind
    /// GeoLite2), verify them and swap them in; a running server loads them at once. Exit 1 if
    /// any failed: its old database stays in place.
    Update {
        /// Download even the databases that are already current.
        #[arg(long)]
        force: bool,
        /// Print JSON: {"source","databases":[{"database","status",…}],"skipped","server"}.
        #[arg(long)]
        json: bool,
    },
    /// Show the GeoIP source, the databases in use (build date, age) and the last and next update.
    Status {
        /// Print JSON: the dashboard's GeoIP section (GET /api/v1/admin/settings, "geoip").
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCmd {
    /// Show the certificate served: issuer, names, expiry, pin, and ACME's last attempt.
    Status {
        /// Print JSON: {"source","issuer","subject","dns_names","not_after","pin","acme",…}.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running server for an ACME certificate now (issue or renew) and wait for it.
    Renew {
        /// Print the certificate served afterwards as JSON (as `tls status --json`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the example configuration.
    Example,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's data here instead of a temporary directory.
    #[arg(long)]
    pub demo_dir: Option<PathBuf>,
}

/// A failure: its exit code (64 = bad usage or config, 1 = anything else), a stable
/// snake_case code as the API's error bodies have (printed with `--json`), and the reason.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub error: String,
    pub message: String,
}

impl CliError {
    fn usage(m: impl Into<String>) -> Self {
        CliError { code: 64, error: "invalid".into(), message: m.into() }
    }
    fn fail(m: impl Into<String>) -> Self {
        CliError::with(1, "failed", m)
    }
    fn with(code: i32, error: &str, m: impl Into<String>) -> Self {
        CliError { code, error: error.into(), message: m.into() }
    }

    /// Prints the failure on stderr: its reason, or with `json` the API's error body.
    pub fn print(&self, json: bool) {
        output::error(&self.error, &self.message, json);
    }
}

impl From<app::AppError> for CliError {
    fn from(e: app::AppError) -> Self {
        match e {
            app::AppError::Config(_) => CliError::with(64, "config_invalid", e.to_string()),
            app::AppError::Invalid(_) => CliError::usage(e.to_string()),
            app::AppError::AlreadyInitialised(..) => CliError::with(1, "already_exists", e.to_string()),
            app::AppError::Store(crate::store::StoreError::Locked) => CliError::with(1, "locked", e.to_string()),
            app::AppError::AlreadyRunning(..) => CliError::with(1, "already_running", e.to_string()),
            other => CliError::fail(other.to_string()),
        }
    }
}

impl From<AdminError> for CliError {
    /// The reason alone is for people; the code is for scripts (`--json`).
    fn from(e: AdminError) -> Self {
        CliError::with(1, &e.error, e.reason)
    }
}

/// Parses the command line, and tells whether the command asked for JSON (its errors are then
/// JSON too). `--help` and `--version` print and exit 0; a usage error prints (as the API's
/// error body with `--json`) and exits 2, as clap does.
pub fn parse() -> (Cli, bool) {
    use clap::{CommandFactory, FromArgMatches};
    fn json_flag(m: &clap::ArgMatches) -> bool {
        m.try_get_one::<bool>("json").ok().flatten().copied().unwrap_or(false)
            || m.subcommand().is_some_and(|(_, sub)| json_flag(sub))
    }
    let parsed =
        Cli::command().try_get_matches().and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, json_flag(&m))));
    match parsed {
        Ok(v) => v,
        Err(e) if e.use_stderr() && std::env::args_os().any(|a| a == "--json") => {
            let text = e.to_string();
            output::error("usage", text.lines().next().unwrap_or_default().trim_start_matches("error: "), true);
            std::process::exit(e.exit_code());
        }
        Err(e) => e.exit(),
    }
}

/// Prints an answer as pretty JSON. It goes through a `Value`, whose keys are sorted, so the
/// text does not depend on the order of a view's fields.
fn print_json<T: Serialize>(v: &T) {
    let v = serde_json::to_value(v).unwrap_or_default();
    outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

/// How a field reads in a table cell or a `key: value` line: `-` when absent, text raw,
/// numbers and booleans as JSON writes them.
trait Cell {
    fn cell(&self) -> String;
}

impl Cell for String {
    fn cell(&self) -> String {
        self.clone()
    }
}

macro_rules! display_cell {
    ($($t:ty),*) => {$(
        impl Cell for $t {
            fn cell(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
display_cell!(bool, u8, u32, u64, i64, usize);

impl Cell for f64 {
    /// Two decimals: `0.35`, not `0.35100000000000003`.
    fn cell(&self) -> String {
        format!("{self:.2}")
    }
}

impl<T: Cell> Cell for Option<T> {
    fn cell(&self) -> String {
        self.as_ref().map_or_else(|| "-".into(), Cell::cell)
    }
}

/// A table column: its header, its width (negative: left-aligned; 0: the last column,
/// unpadded) and its cell.
type Column<T> = (&'static str, i32, fn(&T) -> String);

/// Prints rows as a table.
fn table<T>(rows: &[T], cols: &[Column<T>]) {
    let cell = |text: &str, w: i32| match w {
        0 => text.to_owned(),
        w if w < 0 => format!("{text:<width$}", width = w.unsigned_abs() as usize),
        w => format!("{text:>width$}", width = w as usize),
    };
    outln!("{}", cols.iter().map(|(h, w, _)| cell(h, *w)).collect::<Vec<_>>().join(" "));
    for r in rows {
        outln!("{}", cols.iter().map(|(_, w, f)| cell(&f(r), *w)).collect::<Vec<_>>().join(" "));
    }
}

/// The answer of a list (printed as a JSON array) or of a change to one item (one object);
/// both print as a table.
#[derive(Serialize)]
#[serde(untagged)]
enum Rows<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Rows<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            Rows::One(t) => std::slice::from_ref(t),
            Rows::Many(v) => v,
        }
    }
}

const DEVICE_COLUMNS: &[Column<DeviceView>] = &[
    ("ID", -32, |d| d.id.cell()),
    ("OWNER", -16, |d| d.owner.cell()),
    ("VIP", -15, |d| d.vip.cell()),
    ("ONLINE", -7, |d| d.online.cell()),
    ("COUNTRY", -7, |d| d.country.cell()),
    ("LAST SEEN", -20, |d| d.last_seen.cell()),
    ("RTT MS", 7, |d| d.rtt_ms.cell()),
    ("QUALITY", -9, |d| d.quality_state.cell()),
    ("SCORE", 5, |d| d.score.cell()),
    ("TRUST", -22, |d| match d.shared_attestation_key {
        Some(true) => format!("{} (shared key)", d.trust),
        _ => d.trust.clone(),
    }),
    ("BANNED", 0, |d| d.banned.cell()),
];

const SUBUSER_COLUMNS: &[Column<SubUserView>] = &[
    ("NAME", -32, |s| s.name.cell()),
    ("PARENT", -20, |s| s.parent.cell()),
    ("PROXY PASSWORD", -24, |s| s.proxy_password.cell()),
    ("BYTES USED", 14, |s| s.bytes_used.cell()),
    ("BYTE CAP", 14, |s| s.byte_cap.cell()),
    ("STREAMS", 8, |s| s.max_streams.cell()),
    ("EXPIRES", -20, |s| s.expires_at.cell()),
    ("DISABLED", 0, |s| s.disabled.cell()),
];

const WITHDRAWAL_COLUMNS: &[Column<WithdrawalView>] = &[
    ("ID", 5, |w| w.id.cell()),
    ("USER", -20, |w| w.user.cell()),
    ("AMOUNT", 12, |w| w.amount.cell()),
    ("STATUS", -9, |w| w.status.cell()),
    ("REQUESTED", -20, |w| w.requested_at.cell()),
    ("TO", -20, |w| w.destination.cell()),
    ("REASON", 0, |w| w.reason.cell()),
];

/// Where admin commands go: the running server, or the database when it is stopped.
pub struct Admin<'a> {
    pub data_dir: &'a Path,
    pub config: Option<&'a Path>,
}

impl Admin<'_> {
    /// Runs an admin command through the running server's admin socket, or directly on the
    /// database when no server answers.
    pub async fn run<C: admin::Command>(&self, cmd: C) -> Result<C::Output, CliError> {
        let data_dir = self.data_dir;
        if let Some(res) = admin::socket::call(data_dir, &cmd).await.map_err(CliError::fail)? {
            return Ok(res?);
        }
        let (ctx, _) = self.offline()?;
        let actor = offline_actor();
        tokio::task::spawn_blocking(move || ctx.execute_as(cmd, &actor))
            .await
            .map_err(|e| CliError::fail(e.to_string()))?
            .map_err(Into::into)
    }

    /// The admin context on the database itself (no server running), and the config.
    fn offline(&self) -> Result<(AdminCtx, crate::config::Config), CliError> {
        let data_dir = self.data_dir;
        let cfg = app::load_config(data_dir, self.config)?;
        let pin = app::configured_pin(&cfg)?;
        let store = crate::store::Store::open(&data_dir.join(app::DB_FILE)).map_err(|e| match e {
            crate::store::StoreError::Locked => {
                CliError::fail("the database is open in another process, but no server answers on its admin socket")
            }
            e => CliError::fail(e.to_string()),
        })?;
        let mut cfg = cfg;
        app::apply_settings(&mut cfg, &store)?;
        let ctx = AdminCtx {
            store: Arc::new(store),
            public_address: cfg.server.public_address.clone(),
            pin,
            insecure_http: cfg.server.insecure_http,
            live: None,
            money: admin::MoneyRules::from_config(&cfg).shared(),
            shared_key_accounts: cfg.trust.shared_key_accounts,
        };
        Ok((ctx, cfg))
    }

    /// Writes a backup archive to `file` (created 0600, never over an existing file): streamed
    /// by the running server, or built here when it is stopped. A failure removes the file.
    async fn backup(&self, file: &Path) -> Result<BackupDone, CliError> {
        let out = admin::backup::create_private(file)?;
        let written = self.backup_into(std::io::BufWriter::new(out)).await;
        if written.is_err() {
            let _ = std::fs::remove_file(file);
        }
        written
    }

    async fn backup_into(&self, mut out: std::io::BufWriter<std::fs::File>) -> Result<BackupDone, CliError> {
        let done = match admin::socket::call_backup(self.data_dir, &mut out).await.map_err(CliError::fail)? {
            Some(res) => {
                let (header, end) = res?;
                BackupDone { manifest: header.manifest, bytes: end.bytes, sha256: end.sha256, streamed: true }
            }
            None => {
                let (ctx, cfg) = self.offline()?;
                let sources = app::backup_sources(&cfg);
                tokio::task::spawn_blocking(move || {
                    let prepared = admin::backup::prepare(&ctx, &sources, &offline_actor())?;
                    let mut counted =
                        Counted { inner: out, bytes: 0, hash: ring::digest::Context::new(&ring::digest::SHA256) };
                    counted = prepared.write_tar(counted)?;
                    Ok::<_, AdminError>(BackupDone {
                        manifest: prepared.manifest.clone(),
                        bytes: counted.bytes,
                        sha256: hex::encode(counted.hash.finish()),
                        streamed: false,
                    })
                })
                .await
                .map_err(|e| CliError::fail(e.to_string()))??
            }
        };
        Ok(done)
    }
}

/// What `traffix backup` wrote.
#[derive(Debug, Serialize)]
struct BackupDone {
    manifest: admin::backup::Manifest,
    bytes: u64,
    sha256: String,
    /// Streamed by a running server (`false`: built from the stopped server's files).
    streamed: bool,
}

/// A writer that counts and hashes what goes through it.
struct Counted<W> {
    inner: W,
    bytes: u64,
    hash: ring::digest::Context,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The audit actor of a command run on the database directly.
fn offline_actor() -> String {
    #[cfg(unix)]
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    };
    #[cfg(not(unix))]
    let uid = None;
    admin::socket::cli_actor(uid, true)
}

fn print_verify(r: &crate::store::VerifyReport) {
    if r.ok {
        outln!(
            "ledger OK: {} transfers over {} accounts; {} sessions ({} live), {} holds, {} withdrawals",
            r.transfers,
            r.accounts,
            r.sessions,
            r.live_sessions,
            r.holds,
            r.withdrawals
        );
    } else {
        for p in &r.problems {
            outln!("VIOLATION: {p}");
        }
    }
}

fn print_user(u: &UserView) {
    let fields = [
        ("name", u.name.cell()),
        ("admin", u.admin.cell()),
        ("disabled", u.disabled.cell()),
        ("disabled_reason", u.disabled_reason.cell()),
        ("balance", u.balance.cell()),
        ("proxy_password", u.proxy_password.cell()),
        ("devices", u.devices.cell()),
        ("telegram_id", u.telegram_id.cell()),
        ("created_at", u.created_at.cell()),
    ];
    for (k, v) in fields {
        outln!("{k:>16}: {v}");
    }
    if let Some(p) = &u.password {
        outln!("{:>16}: {p}   (shown once)", "login password");
    }
}

/// Reads a new login password from one line of standard input (the line break is not part
/// of it).
fn read_password_line() -> Result<String, CliError> {
    let mut line = String::new();
    // Bounded: anything over the maximum length is refused anyway.
    let mut input = std::io::Read::take(std::io::stdin().lock(), 4096);
    let n = std::io::BufRead::read_line(&mut input, &mut line)
        .map_err(|e| CliError::fail(format!("reading stdin: {e}")))?;
    if n == 0 {
        return Err(CliError::usage("--stdin: no password on standard input"));
    }
    let pw = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    Ok(pw.to_owned())
}

/// `traffix node stats` / `traffix node unpair`: one control request with the saved identity.
async fn node_action(
    opts: &crate::node::NodeOptions,
    req: crate::node::control::Request,
    json: bool,
) -> Result<(), CliError> {
    use crate::node::control::Answer;
    match crate::node::control::ask(opts, req).await.map_err(CliError::fail)? {
        Answer::Stats(v) if json => print_json(&v),
        Answer::Stats(v) => {
            outln!("device {} (earnings in {})", v.device, v.currency);
            for (title, rows) in [("day", &v.days), ("month", &v.months)] {
                if rows.is_empty() {
                    continue;
                }
                outln!("{title:<10}  {:>16}  {:>14}", "bytes", "earned");
                for r in rows {
                    outln!("{:<10}  {:>16}  {:>14}", r.period, r.bytes, r.earned);
                }
            }
        }
        Answer::Unpaired { device } => {
            outln!("device {device} unpaired: the server forgot it and {} was deleted", opts.state.display());
        }
    }
    Ok(())
}

/// `traffix geoip update`: downloads, verifies and installs, then asks a running server to load
/// what changed.
async fn geoip_update(data_dir: &Path, config: Option<&Path>, force: bool, json: bool) -> Result<(), CliError> {
    use crate::geoip::update::Outcome;
    let cfg = app::load_config(data_dir, config)?;
    let report = crate::geoip::update::run(&cfg, crate::store::now_secs(), force)
        .await
        .map_err(|e| CliError::with(1, "geoip_update_failed", e.0))?;
    // The server loads what changed (and anything it could not load before).
    let server = match report.skipped {
        Some(_) => None,
        None => match admin::socket::call(data_dir, &admin::GeoipReload {}).await {
            Ok(None) => None,
            Ok(Some(r)) => Some(r.map_err(|e| e.reason)),
            Err(e) => Some(Err(e)),
        },
    };
    if json {
        print_json(&serde_json::json!({
            "source": report.source,
            "databases": report.databases,
            "skipped": report.skipped,
            "server": match &server {
                None => serde_json::json!({"running": false}),
                Some(Ok(v)) => serde_json::json!({"running": true, "reloaded": v.changed, "errors": v.errors}),
                Some(Err(e)) => serde_json::json!({"running": true, "reloaded": [], "errors": [e]}),
            },
        }));
    } else {
        if let Some(why) = &report.skipped {
            outln!("{why}");
        }
        for d in &report.databases {
            match &d.outcome {
                Outcome::Installed { origin, path, database_type, built_at } => outln!(
                    "{:<8} installed {origin} ({database_type}, built {}) as {path}",
                    d.database.name(),
                    built_at.get(..10).unwrap_or(built_at)
                ),
                Outcome::Current { origin } => outln!("{:<8} up to date ({origin})", d.database.name()),
                Outcome::Failed { error } => {
                    outln!("{:<8} FAILED: {error}; the old database stays in place", d.database.name())
                }
            }
            if let Some(note) = &d.note {
                outln!("{:<8} note: {note}", "");
            }
        }
        match &server {
            None if report.skipped.is_none() => outln!("no server is running: it loads the databases when it starts"),
            None => {}
            Some(Ok(v)) => {
                if v.changed.is_empty() {
                    outln!("the running server already uses these databases");
                } else {
                    let names: Vec<_> = v.changed.iter().map(|k| k.name()).collect();
                    outln!("the running server now uses the new {} database(s)", names.join(" and "));
                }
                for e in &v.errors {
                    outln!("the running server could not load: {e}");
                }
                for a in &v.status.attribution {
                    outln!("{a}");
                }
            }
            Some(Err(e)) => {
                outln!("the running server could not be told to reload: {e} (it looks again within a minute)")
            }
        }
    }
    if !report.ok() {
        let failed: Vec<_> = report
            .databases
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Failed { .. }))
            .map(|d| d.database.name())
            .collect();
        return Err(CliError::with(
            1,
            "geoip_update_failed",
            format!("the {} update failed; the old database stays in place", failed.join(" and ")),
        ));
    }
    Ok(())
}

fn print_geoip_status(s: &crate::geoip::GeoipStatus) {
    let db = |d: &Option<crate::geoip::DatabaseInfo>, none: &str| match d {
        Some(d) => format!(
            "{} ({}, built {}, {} days old{}{})",
            d.path,
            d.database_type,
            d.built_at.get(..10).unwrap_or(&d.built_at),
            d.age_days,
            if d.stale { ", STALE" } else { "" },
            if d.managed { "" } else { ", your own file" }
        ),
        None => none.to_owned(),
    };
    let fields = [
        ("source", format!("{} (updates: {})", s.source, s.update_command)),
        ("country", db(&s.country, "none: countries are unknown and -country- targeting is refused")),
        ("asn", db(&s.asn, "none")),
        ("last update", s.last_update.cell()),
        ("last check", s.last_check.cell()),
        ("next update", s.next_update.cell()),
        ("last error", s.last_error.cell()),
    ];
    for (k, v) in fields {
        outln!("{k:>12}: {v}");
    }
    for a in &s.attribution {
        outln!("{:>12}: {a}", "credit");
    }
}

/// Runs one CLI invocation.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let (data_dir, config) = (cli.data_dir.clone(), cli.config.clone());
    let admin_cmds = Admin { data_dir: &data_dir, config: config.as_deref() };
    match cli.command {
        Command::Init(a) => {
            let out = app::init(&InitOptions {
                data_dir: cli.data_dir.clone(),
                public_address: a.public_address,
                no_public_address: a.no_public_address,
                web_listen: a.web_listen,
                socks_listen: a.socks_listen,
                http_listen: a.http_listen,
                metrics_listen: a.metrics_listen,
            })?;
            if a.json {
                print_json(&out);
            } else {
                outln!("Initialised {}", out.data_dir.display());
                outln!("  config:          {}", out.config_path.display());
                if out.public_address.is_empty() {
                    outln!("  public address:  none: pairing is off until server.public_address is set");
                } else if out.public_address_defaulted {
                    outln!("  public address:  {}   (defaulted: no --public-address given)", out.public_address);
                } else {
                    outln!("  public address:  {}", out.public_address);
                }
                outln!("  TLS pin:         {}", out.pin);
                outln!("  admin user:      {}", out.admin_user);
                outln!("  admin password:  {}   (shown once: store it now)", out.admin_password);
                if out.public_address.is_empty() {
                    outln!(
                        "Set server.public_address = \"HOST:PORT\" in {} to the address nodes can \
                         reach, then restart the server to turn pairing on.",
                        out.config_path.display()
                    );
                } else {
                    outln!(
                        "Nodes must be able to reach {} (pairing links tell them to dial it); \
                         change it with server.public_address in the config.",
                        out.public_address
                    );
                }
                outln!("Start it with: traffix serve --data-dir {}", out.data_dir.display());
            }
        }
        Command::Serve(a) => {
            let mut cfg = app::load_config(&cli.data_dir, cli.config.as_deref())?;
            cfg.server.insecure_http |= a.insecure_http;
            cfg.egress.allow_private_targets |= a.allow_private_targets;
            crate::telemetry::init(&cfg.log.level, cfg.log.format == "json");
            let app = App::build(cfg)?;
            app.run(crate::shutdown::os_signal()).await?;
        }
        Command::Node(a) => {
            use crate::node::control::Request;
            let control = match a.action {
                Some(NodeAction::Stats { days, months, json }) => Some((Request::Stats { days, months }, json)),
                Some(NodeAction::Unpair { yes: false, .. }) => {
                    return Err(CliError::usage(
                        "unpairing makes the server forget this device and deletes its identity file; \
                         the node can only come back with a new pairing link. Add --yes to do it",
                    ));
                }
                Some(NodeAction::Unpair { yes: true, reason }) => Some((Request::Unpair { reason }, false)),
                Some(NodeAction::Pause { settings }) => {
                    crate::node::controls::set_paused(&settings, true).map_err(CliError::fail)?;
                    outln!(
                        "paused: {} says paused = true; a running node drains and closes its tunnel",
                        settings.display()
                    );
                    return Ok(());
                }
                Some(NodeAction::Resume { settings }) => {
                    crate::node::controls::set_paused(&settings, false).map_err(CliError::fail)?;
                    outln!("resumed: {} says paused = false; a running node reconnects", settings.display());
                    return Ok(());
                }
                None => None,
            };
            let Some(state) = a.state else { return Err(CliError::fail("--state FILE is required")) };
            let cfg = app::load_config(&cli.data_dir, cli.config.as_deref()).ok();
            let limits = cfg.map(|c| c.limits).unwrap_or_default();
            let flags = crate::node::controls::SettingsFlags {
                daily_cap: a.daily_cap,
                monthly_cap: a.monthly_cap,
                monthly_reset_day: a.monthly_reset_day,
                max_up: a.max_up,
                max_down: a.max_down,
                max_streams: a.max_streams,
                schedule: a.schedule,
                utc_offset: a.utc_offset,
            };
            let default_streams = crate::node::DEFAULT_MAX_STREAMS;
            let file = match &a.settings {
                Some(p) => crate::node::controls::read_file(p).map_err(CliError::fail)?,
                None => crate::node::controls::SettingsFile::default(),
            };
            let settings =
                crate::node::controls::Settings::resolve(&file, &flags, default_streams).map_err(CliError::fail)?;
            let clock: crate::node::controls::Clock = Arc::new(crate::node::controls::system_secs);
            let controls = Arc::new(crate::node::controls::Controls::new(
                settings,
                crate::node::controls::Controls::usage_path(&state),
                clock,
            ));
            let (trigger, shutdown) = crate::shutdown::channel();
            tokio::spawn(async move {
                crate::shutdown::os_signal().await;
                trigger.trigger();
            });
            let opts = crate::node::NodeOptions {
                state,
                pair: a.pair,
                bind: a.bind,
                egress_bind: a.egress_bind,
                allow_private_targets: a.allow_private_targets,
                limits,
                refused_retry: std::time::Duration::from_secs(a.refused_retry_secs.max(1)),
                controls,
                settings: a.settings.map(|file| crate::node::SettingsSource { file, flags, default_streams }),
                started: tokio::time::Instant::now(),
            };
            if let Some((req, json)) = control {
                return node_action(&opts, req, json).await;
            }
            crate::node::run(opts, shutdown).await.map_err(CliError::fail)?;
        }
        Command::User(cmd) => match cmd {
            UserCmd::Add { name, password, admin, json } => {
                let u = admin_cmds.run(admin::UserAdd { name, password, admin }).await?;
                if json { print_json(&u) } else { print_user(&u) }
            }
            UserCmd::List { window, json } => {
                let users = admin_cmds.run(admin::UserList { window: window.window(None) }).await?;
                if json {
                    print_json(&users);
                } else {
                    table(
                        &users,
                        &[
                            ("NAME", -32, |u| u.name.cell()),
                            ("ADMIN", -5, |u| u.admin.cell()),
                            ("DISABLED", -8, |u| u.disabled.cell()),
                            ("BALANCE", 14, |u| u.balance.cell()),
                            ("DEVICES", 0, |u| u.devices.cell()),
                        ],
                    );
                }
            }
            UserCmd::Show { name, json } => {
                let u = admin_cmds.run(admin::UserShow { name }).await?;
                if json { print_json(&u) } else { print_user(&u) }
            }
            UserCmd::Credit { name, amount, reason, id, json } => {
                let c = admin_cmds.run(admin::UserCredit { name, amount, reason, id }).await?;
                if json {
                    print_json(&c);
                } else {
                    outln!("credited {} to {}; balance now {} (transfer #{})", c.amount, c.user, c.balance, c.transfer);
                }
            }
            UserCmd::Adjust { name, amount, reason, json } => {
                let c = admin_cmds.run(admin::UserAdjust { name, amount, reason }).await?;
                if json {
                    print_json(&c);
                } else {
                    outln!("adjusted {} by {}; balance now {} (transfer #{})", c.user, c.amount, c.balance, c.transfer);
                }
            }
            UserCmd::Password { name, generate, stdin: _, json } => {
                let password = if generate { None } else { Some(read_password_line()?) };
                let p = admin_cmds.run(admin::UserPassword { name, password, keep_login: None }).await?;
                if json {
                    print_json(&p);
                } else {
                    match &p.password {
                        Some(pw) => outln!("new login password of {}: {pw}   (shown once: store it now)", p.name),
                        None => outln!("login password of {} changed", p.name),
                    }
                    outln!("signed out {} login(s)", p.revoked_logins);
                }
            }
            UserCmd::ProxyPassword { name, json } => {
                let p = admin_cmds.run(admin::UserProxyPassword { name }).await?;
                if json { print_json(&p) } else { outln!("{}", p.proxy_password) }
            }
            UserCmd::Disable { name, reason, json } => {
                let u = admin_cmds.run(admin::UserDisable { name, reason }).await?;
                if json { print_json(&u) } else { outln!("user {} disabled", u.name) }
            }
            UserCmd::Enable { name, json } => {
                let u = admin_cmds.run(admin::UserEnable { name }).await?;
                if json { print_json(&u) } else { outln!("user {} enabled", u.name) }
            }
        },
        Command::Pair { name, json } => {
            let p = admin_cmds.run(admin::Pair { name }).await?;
            if json {
                print_json(&p);
            } else {
                outln!("{}", p.link);
                outln!("code {} for user {}, valid until {} (single use)", p.code, p.user, p.expires_at);
                outln!("On the node: traffix node --pair '{}' --state node.json", p.link);
            }
        }
        Command::Device(cmd) => {
            let (devices, json) = match cmd {
                DeviceCmd::List { window, json } => {
                    (Rows::Many(admin_cmds.run(admin::DeviceList { window: window.window(None) }).await?), json)
                }
                DeviceCmd::Ban { id, reason, json } => {
                    (Rows::One(admin_cmds.run(admin::DeviceBan { id, reason }).await?), json)
                }
                DeviceCmd::Unban { id, reason, json } => {
                    (Rows::One(admin_cmds.run(admin::DeviceUnban { id, reason }).await?), json)
                }
                DeviceCmd::Remove { id, reason, json } => {
                    (Rows::One(admin_cmds.run(admin::DeviceRemove { id, reason }).await?), json)
                }
                DeviceCmd::Quality { id, state, note, json } => {
                    (Rows::One(admin_cmds.run(admin::DeviceQuality { id, state, note }).await?), json)
                }
            };
            if json { print_json(&devices) } else { table(devices.as_slice(), DEVICE_COLUMNS) }
        }
        Command::Ledger(LedgerCmd::List { user, window, json }) => {
            let transfers = admin_cmds.run(admin::LedgerList { user, window: window.window(None) }).await?;
            if json {
                print_json(&transfers);
            } else {
                table(
                    &transfers,
                    &[
                        ("SEQ", 6, |t| t.seq.cell()),
                        ("TIME", -20, |t| t.time.cell()),
                        ("KIND", -18, |t| t.kind.cell()),
                        ("DEBIT", -22, |t| t.debit.cell()),
                        ("CREDIT", -22, |t| t.credit.cell()),
                        ("AMOUNT", 12, |t| t.amount.cell()),
                        ("REFERENCE", 0, |t| t.reference.cell()),
                    ],
                );
            }
        }
        Command::Ledger(LedgerCmd::Reverse { id, reason, json }) => {
            let c = admin_cmds.run(admin::LedgerReverse { id, reason }).await?;
            if json {
                print_json(&c);
            } else {
                outln!(
                    "reversed transfer #{} with transfer #{}: {} {}; balance now {}",
                    c.reverses.unwrap_or_default(),
                    c.transfer,
                    c.user,
                    c.amount,
                    c.balance
                );
            }
        }
        Command::Ledger(LedgerCmd::Verify { json }) => {
            let r = admin_cmds.run(admin::LedgerVerify {}).await?;
            if json {
                print_json(&r);
            } else {
                print_verify(&r);
            }
            if !r.ok {
                return Err(CliError::fail("ledger verification failed"));
            }
        }
        Command::Audit(AuditCmd::List { limit, since, until, json }) => {
            let window = admin::Window { since, until, limit: Some(limit), before: None };
            let entries = admin_cmds.run(admin::AuditList { window }).await?;
            if json {
                print_json(&entries);
            } else {
                table(
                    &entries,
                    &[
                        ("SEQ", 5, |e| e.seq.cell()),
                        ("TIME", -20, |e| e.time.cell()),
                        ("ACTOR", -18, |e| e.actor.cell()),
                        ("ACTION", -20, |e| e.action.cell()),
                        ("TARGET", -34, |e| e.target.cell()),
                        ("REASON", 0, |e| e.reason.cell()),
                    ],
                );
            }
        }
        Command::Subuser(cmd) => {
            let (subs, json) = match cmd {
                SubuserCmd::Add { parent, name, byte_cap, max_streams, days, json } => (
                    Rows::One(
                        admin_cmds
                            .run(admin::SubUserAdd { parent, name, byte_cap, max_streams, valid_days: days })
                            .await?,
                    ),
                    json,
                ),
                SubuserCmd::List { user, window, json } => (
                    Rows::Many(admin_cmds.run(admin::SubUserList { parent: user, window: window.window(None) }).await?),
                    json,
                ),
                SubuserCmd::Disable { name, json } => (
                    Rows::One(admin_cmds.run(admin::SubUserDisable { name, parent: None, disabled: true }).await?),
                    json,
                ),
                SubuserCmd::Enable { name, json } => (
                    Rows::One(admin_cmds.run(admin::SubUserDisable { name, parent: None, disabled: false }).await?),
                    json,
                ),
                SubuserCmd::ProxyPassword { name, json } => {
                    (Rows::One(admin_cmds.run(admin::SubUserPassword { name, parent: None }).await?), json)
                }
                SubuserCmd::Delete { name } => {
                    let d = admin_cmds.run(admin::SubUserDelete { name, parent: None }).await?;
                    outln!("deleted sub-user {}", d.deleted);
                    return Ok(());
                }
            };
            if json { print_json(&subs) } else { table(subs.as_slice(), SUBUSER_COLUMNS) }
        }
        Command::Withdrawal(cmd) => {
            let (list, json) = match cmd {
                WithdrawalCmd::Request { name, amount, to, json } => {
                    (Rows::One(admin_cmds.run(admin::WithdrawalRequest { name, amount, destination: to }).await?), json)
                }
                WithdrawalCmd::List { user, status, window, json } => (
                    Rows::Many(
                        admin_cmds.run(admin::WithdrawalList { user, status, window: window.window(None) }).await?,
                    ),
                    json,
                ),
                WithdrawalCmd::Approve { id, reason, json } => {
                    (Rows::One(admin_cmds.run(admin::WithdrawalApprove { id, reason }).await?), json)
                }
                WithdrawalCmd::Reject { id, reason, json } => {
                    (Rows::One(admin_cmds.run(admin::WithdrawalReject { id, reason }).await?), json)
                }
            };
            if json { print_json(&list) } else { table(list.as_slice(), WITHDRAWAL_COLUMNS) }
        }
        Command::Session(SessionCmd::List { user, node_ip, limit, since, until, json }) => {
            let window = admin::Window { since, until, limit: Some(limit), before: None };
            let node_ip = node_ip.map(|ip| ip.to_string());
            let sessions = admin_cmds.run(admin::SessionList { user, node_ip, window }).await?;
            if json {
                print_json(&sessions);
            } else {
                table(
                    &sessions,
                    &[
                        ("ID", 7, |s| s.id.cell()),
                        ("CLIENT", -16, |s| s.client.cell()),
                        ("NODE", -15, |s| s.vip.cell()),
                        ("NODE IP", -15, |s| s.node_ip.cell()),
                        ("TARGET", -28, |s| s.target.cell()),
                        ("START", -20, |s| s.start.cell()),
                        ("UP", 12, |s| s.bytes_up.cell()),
                        ("DOWN", 12, |s| s.bytes_down.cell()),
                        ("CHARGE", 10, |s| s.charge.cell()),
                        // A live session's END reads "live"; reasons are codes (`sub_user_cap`),
                        // read as words here.
                        ("END", 0, |s| if s.live { "live".into() } else { s.end_reason.cell().replace('_', " ") }),
                    ],
                );
            }
        }
        Command::Usage(a) => {
            let subject = match (a.subject.user, a.subject.owner, a.subject.device, a.subject.sub) {
                (Some(u), ..) => format!("client:{u}"),
                (_, Some(o), ..) => format!("owner:{o}"),
                (_, _, Some(d), _) => format!("device:{d}"),
                (.., Some(s)) => format!("sub:{s}"),
                _ => return Err(CliError::usage("give --user, --owner, --device or --sub")),
            };
            let u = admin_cmds.run(admin::Usage { subject, by: a.by, last: a.last }).await?;
            if a.json {
                print_json(&u);
            } else {
                let money = |m: u64| crate::money::format_signed(i64::try_from(m).unwrap_or(0));
                outln!("{} by {}", u.subject, u.by);
                outln!(
                    "{:<22} {:>14} {:>14} {:>12} {:>12} {:>12} {:>8}",
                    "START",
                    "UP",
                    "DOWN",
                    "PAID",
                    "EARNED",
                    "FEE",
                    "STREAMS"
                );
                let line = |start: String, r: &UsagePoint| {
                    outln!(
                        "{:<22} {:>14} {:>14} {:>12} {:>12} {:>12} {:>8}",
                        start,
                        r.bytes_up,
                        r.bytes_down,
                        money(r.debit_micros),
                        money(r.earned_micros),
                        money(r.fee_micros),
                        r.sessions
                    )
                };
                for r in &u.series {
                    line(r.start.cell(), r);
                }
                line("total".into(), &u.total);
            }
        }
        Command::Backup { file, json } => {
            let b = admin_cmds.backup(&file).await?;
            if json {
                print_json(&b);
            } else {
                outln!(
                    "backup written to {} ({} bytes, sha256 {}): database (schema v{}), config, TLS certificate and key, JWT secret",
                    file.display(),
                    b.bytes,
                    b.sha256,
                    b.manifest.schema_version
                );
                outln!("It holds password hashes, proxy passwords and the TLS key: keep it private.");
            }
        }
        Command::Restore { file, force, json } => {
            let dir = data_dir.clone();
            let report = tokio::task::spawn_blocking(move || admin::backup::restore(&file, &dir, force))
                .await
                .map_err(|e| CliError::fail(e.to_string()))??;
            let verify = admin_cmds.run(admin::LedgerVerify {}).await?;
            let cfg = app::load_config(&data_dir, config.as_deref())?;
            let tls_elsewhere = [(&cfg.tls.cert, admin::backup::CERT), (&cfg.tls.key, admin::backup::KEY)]
                .into_iter()
                .filter(|(p, name)| cfg.path(p) != data_dir.join(name))
                .map(|(p, _)| cfg.path(p).display().to_string())
                .collect::<Vec<_>>();
            if json {
                print_json(&serde_json::json!({
                    "restore": report,
                    "ledger_verify": verify,
                    "tls_paths_elsewhere": tls_elsewhere,
                }));
            } else {
                let m = &report.manifest;
                outln!(
                    "restored {} into {} (made {} by traffix {}, schema v{})",
                    report.files.join(", "),
                    report.data_dir,
                    m.created_at,
                    m.traffix_version,
                    m.schema_version
                );
                for p in &tls_elsewhere {
                    outln!(
                        "note: the config points at {p}; the archive's copy is under {}/tls/ — point the config there or copy it",
                        report.data_dir
                    );
                }
                print_verify(&verify);
                if verify.ok {
                    outln!("Start it with: traffix serve --data-dir {}", report.data_dir);
                }
            }
            if !verify.ok {
                return Err(CliError::fail("the restored ledger does not verify"));
            }
        }
        Command::Doctor { json } => {
            let report = crate::doctor::run(&data_dir, config.as_deref()).await;
            if json {
                print_json(&report);
            } else {
                for c in &report.checks {
                    let status = match c.status {
                        crate::doctor::Status::Ok => "ok",
                        crate::doctor::Status::Warning => "WARNING",
                        crate::doctor::Status::Problem => "PROBLEM",
                    };
                    outln!("{status:<8} {:<14} {}", c.check, c.message);
                    if let Some(fix) = &c.fix {
                        outln!("{:<8} {:<14} fix: {fix}", "", "");
                    }
                }
                outln!("{} problems, {} warnings", report.problems, report.warnings);
            }
            match report.exit_code() {
                0 => {}
                code => {
                    return Err(CliError::with(
                        code,
                        "doctor",
                        format!("doctor found {} problems and {} warnings", report.problems, report.warnings),
                    ));
                }
            }
        }
        Command::Config(ConfigCmd::Example) => output::write(format_args!("{}", crate::config::EXAMPLE)),
        Command::Settings(cmd) => {
            let (s, json) = match cmd {
                SettingsCmd::Show { json } => (admin_cmds.run(admin::SettingsShow {}).await?, json),
                SettingsCmd::Set { price_per_gb, platform_fee_percent, min_payout, reason, json } => {
                    if price_per_gb.is_none() && platform_fee_percent.is_none() && min_payout.is_none() {
                        return Err(CliError::usage("give --price-per-gb, --platform-fee-percent or --min-payout"));
                    }
                    (
                        admin_cmds
                            .run(admin::SettingsSet { price_per_gb, platform_fee_percent, min_payout, reason })
                            .await?,
                        json,
                    )
                }
            };
            if json {
                print_json(&s);
            } else {
                let money = |m: u64| crate::money::format_signed(i64::try_from(m).unwrap_or(i64::MAX));
                let fields = [
                    ("price_per_gb", s.price_per_gb.cell()),
                    ("platform_fee_percent", s.platform_fee_percent.cell()),
                    ("min_payout", s.min_payout.cell()),
                    ("max_overdraft", money(s.max_overdraft_micros)),
                    ("updated_at", s.updated_at.cell()),
                    ("updated_by", s.updated_by.cell()),
                ];
                for (k, v) in fields {
                    outln!("{k:>22}: {v}");
                }
            }
        }
        Command::Geoip(GeoipCmd::Update { force, json }) => {
            geoip_update(&data_dir, config.as_deref(), force, json).await?
        }
        Command::Geoip(GeoipCmd::Status { json }) => {
            let status = match admin::socket::call(&data_dir, &admin::GeoipShow {}).await.map_err(CliError::fail)? {
                Some(r) => r?,
                None => {
                    let cfg = app::load_config(&data_dir, config.as_deref())?;
                    let (g, _) = crate::geoip::SharedGeoIp::open(&cfg);
                    crate::geoip::status(&cfg, &g.databases(), crate::store::now_secs())
                }
            };
            if json { print_json(&status) } else { print_geoip_status(&status) }
        }
        Command::Tls(cmd) => {
            let (v, json, renew) = match cmd {
                TlsCmd::Status { json } => {
                    let v = match admin::socket::call(&data_dir, &admin::TlsStatus {}).await.map_err(CliError::fail)? {
                        Some(r) => r?,
                        None => {
                            let cfg = app::load_config(&data_dir, config.as_deref())?;
                            crate::acme::Certificates::load(&cfg, Arc::new(crate::acme::schedule::SystemClock))
                                .map_err(CliError::fail)?
                                .view()
                        }
                    };
                    (v, json, false)
                }
                TlsCmd::Renew { json } => {
                    match admin::socket::call(&data_dir, &admin::TlsRenew {}).await.map_err(CliError::fail)? {
                        Some(r) => (r?, json, true),
                        None => {
                            return Err(CliError::fail(
                                "no server is running: `traffix serve` issues and renews the certificate",
                            ));
                        }
                    }
                }
            };
            if json {
                print_json(&v);
            } else {
                outln!("{:>16}: {}", "source", v.source.replace('_', "-"));
                outln!("{:>16}: {}", "issuer", v.issuer);
                outln!("{:>16}: {}", "names", v.dns_names.join(", "));
                outln!("{:>16}: {}", "valid until", v.not_after);
                outln!("{:>16}: {}", "pin", v.pin);
                if let Some(a) = &v.acme {
                    outln!("{:>16}: {} ({}, {})", "acme", a.domain, a.challenge, a.directory);
                    outln!("{:>16}: {}", "renews at", a.renew_at.cell());
                    outln!("{:>16}: {}", "next attempt", a.next_attempt_at.cell());
                    outln!("{:>16}: {}", "last attempt", a.last_attempt_at.cell());
                    outln!("{:>16}: {}", "last error", a.last_error.cell());
                }
            }
            if let Some(e) = v.acme.as_ref().filter(|a| renew && a.failures > 0).and_then(|a| a.last_error.clone()) {
                return Err(CliError::fail(format!("the ACME attempt failed: {e}")));
            }
        }
        Command::Demo(a) => crate::demo::run(a.demo_dir).await.map_err(CliError::fail)?,
        Command::Openapi => outln!("{}", crate::api::openapi::document()),
        Command::Payment(cmd) => payments::payment(&admin_cmds, cmd).await?,
        Command::Payout(cmd) => payments::payout(&admin_cmds, cmd).await?,
        Command::Telegram(cmd) => telegram(&admin_cmds, cmd).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every option and argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() && !path.is_empty() {
                missing.push(format!("{path} (the command itself)"));
            }
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "arguments without help text: {missing:#?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn byte_sizes_and_times_parse_on_the_command_line() {
        let cli = Cli::try_parse_from(["traffix", "subuser", "add", "ann", "ann_sub", "--byte-cap", "1.5GiB"]).unwrap();
        assert!(matches!(cli.command, Command::Subuser(SubuserCmd::Add { byte_cap: Some(1_610_612_736), .. })));
        let cli = Cli::try_parse_from(["traffix", "subuser", "add", "ann", "ann_sub", "--byte-cap", "5 GB"]).unwrap();
        assert!(matches!(cli.command, Command::Subuser(SubuserCmd::Add { byte_cap: Some(5_000_000_000), .. })));
        for bad in ["-5GB", "1.5B", "lots", "99999999999TB"] {
            assert!(
                Cli::try_parse_from(["traffix", "subuser", "add", "ann", "ann_sub", "--byte-cap", bad]).is_err(),
                "{bad}"
            );
        }
        let cli = Cli::try_parse_from(["traffix", "ledger", "list", "--since", "2026-12-01", "--limit", "5"]).unwrap();
        let Command::Ledger(LedgerCmd::List { window, .. }) = cli.command else { panic!("ledger list") };
        assert_eq!(
            window.window(None),
            admin::Window { since: Some(1_796_083_200), until: None, limit: Some(5), before: None }
        );
        // --parent stays as an alias of subuser list's --user.
        let cli = Cli::try_parse_from(["traffix", "subuser", "list", "--parent", "ann"]).unwrap();
        assert!(matches!(cli.command, Command::Subuser(SubuserCmd::List { user: Some(ref u), .. }) if u == "ann"));
        assert!(Cli::try_parse_from(["traffix", "session", "list", "--node-ip", "not-an-ip"]).is_err());
    }

    #[test]
    fn admin_errors_print_their_reason_not_their_code() {
        let e = CliError::from(AdminError::new("not_found", "no user \"bob\""));
        assert_eq!((e.code, e.error.as_str(), e.message.as_str()), (1, "not_found", "no user \"bob\""));
    }
}

/// `traffix telegram …`.
#[derive(Debug, Subcommand)]
pub enum TelegramCmd {
    /// An invitation code for sign-up through the bot while telegram.signup = "invite" (once, 7 days).
    Invite {
        /// Print JSON: {"code","kind","expires_at","command"}.
        #[arg(long)]
        json: bool,
    },
    /// A code that links user NAME's Telegram account when sent to the bot (once, 10 minutes).
    LinkCode {
        /// The user to link.
        name: String,
        /// Print JSON: {"code","kind","expires_at","command"}.
        #[arg(long)]
        json: bool,
    },
    /// Remove user NAME's Telegram link (the bot no longer knows it until it links again).
    Unlink {
        /// The user to unlink.
        name: String,
        /// Print the user as JSON.
        #[arg(long)]
        json: bool,
    },
}

async fn telegram(admin_cmds: &Admin<'_>, cmd: TelegramCmd) -> Result<(), CliError> {
    let code = |c: &admin::telegram::TelegramCodeView, json: bool| {
        if json {
            print_json(c);
        } else {
            outln!("send to the bot: {}", c.command);
            outln!("valid until {}, once", c.expires_at);
        }
    };
    match cmd {
        TelegramCmd::Invite { json } => code(&admin_cmds.run(admin::TelegramInvite {}).await?, json),
        TelegramCmd::LinkCode { name, json } => code(&admin_cmds.run(admin::TelegramLinkCode { name }).await?, json),
        TelegramCmd::Unlink { name, json } => {
            let u = admin_cmds.run(admin::TelegramUnlink { name }).await?;
            if json { print_json(&u) } else { print_user(&u) }
        }
    }
    Ok(())
}
