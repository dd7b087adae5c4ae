//! The `traffix` command line (clap), with the names and outputs of SPEC.md's scripting
//! contract. Read commands print a human table, or JSON with `--json`. Admin commands go to a
//! running server through its admin socket, or straight to the database when it is stopped.
#![allow(clippy::print_stdout)] // printing results is this module's job

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::admin::{self, AdminCtx, AdminError, AdminRequest};
use crate::app::{self, App, InitOptions};

pub const ENV_DATA_DIR: &str = "TRAFFIX_DATA_DIR";

#[derive(Debug, Parser)]
#[command(
    name = "traffix",
    version,
    about = "Self-hosted residential-proxy appliance: server, node agent and admin CLI"
)]
pub struct Cli {
    /// Data directory (config, database, TLS key).
    #[arg(long, global = true, env = ENV_DATA_DIR, default_value = "./traffix-data")]
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
        name: String,
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
    /// Client streams (the sessions table), newest first; live ones are at most a second old.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Usage and earnings per hour or day of a client, an owner's nodes or one device.
    Usage(UsageArgs),
    /// Write a consistent copy of the database to FILE.
    Backup { file: PathBuf },
    /// The audit log: admin actions and money movements not caused by traffic.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Print the example configuration with every key and its default.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Billing settings in force, and changing them at run time (overrides traffix.toml).
    #[command(subcommand)]
    Settings(SettingsCmd),
    /// Start a complete local network (server, node, funded client, origin) and print a curl line.
    Demo(DemoArgs),
    /// Print the REST API's OpenAPI document.
    Openapi,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// HOST:PORT nodes dial (default: the web listen address, or this host's name).
    #[arg(long)]
    pub public_address: Option<String>,
    #[arg(long)]
    pub web_listen: Option<SocketAddr>,
    #[arg(long)]
    pub socks_listen: Option<SocketAddr>,
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
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
pub struct NodeArgs {
    /// One-time pairing link: traffix://pair?server=HOST:PORT&pin=HEX&code=CODE
    #[arg(long)]
    pub pair: Option<String>,
    /// Identity file (created with mode 0600).
    #[arg(long)]
    pub state: PathBuf,
    /// Local source address of the tunnel connection.
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Let clients reach private and loopback targets through this node (tests only).
    #[arg(long)]
    pub allow_private_targets: bool,
    /// Most concurrent streams this node accepts.
    #[arg(long, default_value_t = crate::node::DEFAULT_MAX_STREAMS)]
    pub max_streams: u32,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user (a login password is generated unless given).
    Add {
        name: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        json: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one user.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Credit a user's balance (AMOUNT in currency units, e.g. 12.50).
    Credit {
        name: String,
        amount: String,
        #[arg(long)]
        reason: Option<String>,
        /// Idempotency key, e.g. the payment's id: crediting again with the same id is a no-op,
        /// with a different amount an error.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rotate a user's proxy password and print the new one.
    ProxyPassword {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: proxy access and pairing stop.
    Disable {
        name: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Re-enable a disabled user.
    Enable {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// List devices with their online state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Ban a device (id, id prefix or virtual IP); a connected one is disconnected.
    Ban {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Lift a ban.
    Unban {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// List transfers.
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check every ledger invariant; exit 1 on any violation.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubuserCmd {
    /// Add sub-user NAME under account PARENT (its proxy password is generated).
    Add {
        parent: String,
        name: String,
        /// Bytes (both directions) it may move in all.
        #[arg(long)]
        byte_cap: Option<u64>,
        /// Streams it may have open at once.
        #[arg(long)]
        max_streams: Option<u32>,
        /// Days until it expires.
        #[arg(long)]
        days: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// List sub-users.
    List {
        #[arg(long)]
        parent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stop a sub-user's proxy access.
    Disable {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a disabled sub-user.
    Enable {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Rotate a sub-user's proxy password.
    ProxyPassword {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a sub-user (its history stays).
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum WithdrawalCmd {
    /// Request a payout of AMOUNT (currency units) for NAME; the amount is held until decided.
    Request {
        name: String,
        amount: String,
        /// Where to pay (free text for the operator).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List withdrawals, newest first.
    List {
        #[arg(long)]
        user: Option<String>,
        /// pending, approved or rejected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Approve (pay out) a pending withdrawal.
    Approve {
        id: u64,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Reject a pending withdrawal: the money goes back to the user.
    Reject {
        id: u64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// List sessions, newest first.
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
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
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// List the newest entries.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCmd {
    /// Show the billing settings in force.
    Show {
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

/// A failure with its exit code (64 = bad usage or config, 1 = anything else).
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    fn usage(m: impl Into<String>) -> Self {
        CliError { code: 64, message: m.into() }
    }
    fn fail(m: impl Into<String>) -> Self {
        CliError { code: 1, message: m.into() }
    }
}

impl From<app::AppError> for CliError {
    fn from(e: app::AppError) -> Self {
        match e {
            app::AppError::Config(_) => CliError::usage(e.to_string()),
            other => CliError::fail(other.to_string()),
        }
    }
}

impl From<AdminError> for CliError {
    fn from(e: AdminError) -> Self {
        CliError::fail(format!("{} ({})", e.reason, e.error))
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints a JSON array (or one object) as a table: per column its header, JSON key and width
/// (negative: left-aligned; 0: the last column, unpadded).
fn table(v: &Value, cols: &[(&str, &str, i32)]) {
    let cell = |text: &str, w: i32| match w {
        0 => text.to_owned(),
        w if w < 0 => format!("{text:<width$}", width = w.unsigned_abs() as usize),
        w => format!("{text:>width$}", width = w as usize),
    };
    let line = |f: &dyn Fn(&str, &str) -> String| {
        cols.iter().map(|(h, k, w)| cell(&f(h, k), *w)).collect::<Vec<_>>().join(" ")
    };
    println!("{}", line(&|h, _| h.to_string()));
    for r in rows(v) {
        println!("{}", line(&|_, k| s(&r, k)));
    }
}

/// A JSON array's items, or the one object.
fn rows(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Runs an admin command through the running server, or directly on the database.
pub async fn admin(data_dir: &Path, config: Option<&Path>, req: AdminRequest) -> Result<Value, CliError> {
    if let Some(res) = crate::admin::socket::call_raw(data_dir, &req).await.map_err(CliError::fail)? {
        return Ok(res?);
    }
    let cfg = app::load_config(data_dir, config)?;
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
    };
    #[cfg(unix)]
    let actor = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| format!("uid:{} (offline)", m.uid()))
            .unwrap_or_else(|_| "offline".into())
    };
    #[cfg(not(unix))]
    let actor = "offline".to_owned();
    tokio::task::spawn_blocking(move || ctx.dispatch(req, &actor))
        .await
        .map_err(|e| CliError::fail(e.to_string()))?
        .map_err(Into::into)
}

fn print_user(v: &Value) {
    for k in [
        "name",
        "admin",
        "disabled",
        "disabled_reason",
        "balance",
        "proxy_password",
        "devices",
        "telegram_id",
        "created_at",
    ] {
        println!("{k:>16}: {}", s(v, k));
    }
    if let Some(p) = v.get("password").and_then(Value::as_str) {
        println!("{:>16}: {p}   (shown once)", "login password");
    }
}

/// Runs one CLI invocation.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let dd = cli.data_dir.clone();
    let cfgp = cli.config.clone();
    let admin_cmd = |req| admin(&dd, cfgp.as_deref(), req);
    match cli.command {
        Command::Init(a) => {
            let out = app::init(&InitOptions {
                data_dir: cli.data_dir.clone(),
                public_address: a.public_address,
                web_listen: a.web_listen,
                socks_listen: a.socks_listen,
                http_listen: a.http_listen,
                metrics_listen: a.metrics_listen,
            })
            .map_err(|e| CliError::fail(e.to_string()))?;
            if a.json {
                print_json(&serde_json::to_value(&out).unwrap_or_default());
            } else {
                println!("Initialised {}", out.data_dir.display());
                println!("  config:          {}", out.config_path.display());
                println!("  public address:  {}", out.public_address);
                println!("  TLS pin:         {}", out.pin);
                println!("  admin user:      {}", out.admin_user);
                println!("  admin password:  {}   (shown once: store it now)", out.admin_password);
                println!("Start it with: traffix serve --data-dir {}", out.data_dir.display());
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
            let cfg = app::load_config(&cli.data_dir, cli.config.as_deref()).ok();
            let limits = cfg.map(|c| c.limits).unwrap_or_default();
            let (trigger, shutdown) = crate::shutdown::channel();
            tokio::spawn(async move {
                crate::shutdown::os_signal().await;
                trigger.trigger();
            });
            let opts = crate::node::NodeOptions {
                state: a.state,
                pair: a.pair,
                bind: a.bind,
                allow_private_targets: a.allow_private_targets,
                max_streams: a.max_streams.max(1),
                limits,
            };
            crate::node::run(opts, shutdown).await.map_err(CliError::fail)?;
        }
        Command::User(cmd) => match cmd {
            UserCmd::Add { name, password, admin, json } => {
                let v = admin_cmd(AdminRequest::UserAdd(admin::UserAdd { name, password, admin })).await?;
                if json { print_json(&v) } else { print_user(&v) }
            }
            UserCmd::List { json } => {
                let v = admin_cmd(AdminRequest::UserList(admin::UserList {})).await?;
                if json {
                    print_json(&v);
                } else {
                    table(
                        &v,
                        &[
                            ("NAME", "name", -32),
                            ("ADMIN", "admin", -5),
                            ("DISABLED", "disabled", -8),
                            ("BALANCE", "balance", 14),
                            ("DEVICES", "devices", 0),
                        ],
                    );
                }
            }
            UserCmd::Show { name, json } => {
                let v = admin_cmd(AdminRequest::UserShow(admin::UserShow { name })).await?;
                if json { print_json(&v) } else { print_user(&v) }
            }
            UserCmd::Credit { name, amount, reason, id, json } => {
                let v = admin_cmd(AdminRequest::UserCredit(admin::UserCredit { name, amount, reason, id })).await?;
                if json {
                    print_json(&v);
                } else {
                    println!(
                        "credited {} to {}; balance now {} (transfer #{})",
                        s(&v, "amount"),
                        s(&v, "user"),
                        s(&v, "balance"),
                        s(&v, "transfer")
                    );
                }
            }
            UserCmd::ProxyPassword { name, json } => {
                let v = admin_cmd(AdminRequest::UserProxyPassword(admin::UserProxyPassword { name })).await?;
                if json { print_json(&v) } else { println!("{}", s(&v, "proxy_password")) }
            }
            UserCmd::Disable { name, reason, json } => {
                let v = admin_cmd(AdminRequest::UserDisable(admin::UserDisable { name, reason })).await?;
                if json { print_json(&v) } else { println!("user {} disabled", s(&v, "name")) }
            }
            UserCmd::Enable { name, json } => {
                let v = admin_cmd(AdminRequest::UserEnable(admin::UserEnable { name })).await?;
                if json { print_json(&v) } else { println!("user {} enabled", s(&v, "name")) }
            }
        },
        Command::Pair { name, json } => {
            let v = admin_cmd(AdminRequest::Pair(admin::Pair { name })).await?;
            if json {
                print_json(&v);
            } else {
                println!("{}", s(&v, "link"));
                println!(
                    "code {} for user {}, valid until {} (single use)",
                    s(&v, "code"),
                    s(&v, "user"),
                    s(&v, "expires_at")
                );
                println!("On the node: traffix node --pair '{}' --state node.json", s(&v, "link"));
            }
        }
        Command::Device(cmd) => {
            let (v, json) = match cmd {
                DeviceCmd::List { json } => (admin_cmd(AdminRequest::DeviceList(admin::DeviceList {})).await?, json),
                DeviceCmd::Ban { id, reason, json } => {
                    (admin_cmd(AdminRequest::DeviceBan(admin::DeviceBan { id, reason })).await?, json)
                }
                DeviceCmd::Unban { id, json } => {
                    (admin_cmd(AdminRequest::DeviceUnban(admin::DeviceUnban { id })).await?, json)
                }
            };
            if json {
                print_json(&v);
            } else {
                table(
                    &v,
                    &[
                        ("ID", "id", -32),
                        ("OWNER", "owner", -16),
                        ("VIP", "vip", -15),
                        ("ONLINE", "online", -7),
                        ("COUNTRY", "country", -7),
                        ("LAST SEEN", "last_seen", -20),
                        ("BANNED", "banned", 0),
                    ],
                );
            }
        }
        Command::Ledger(LedgerCmd::List { user, json }) => {
            let v = admin_cmd(AdminRequest::LedgerList(admin::LedgerList { user })).await?;
            if json {
                print_json(&v);
            } else {
                table(
                    &v,
                    &[
                        ("SEQ", "seq", 6),
                        ("TIME", "time", -20),
                        ("KIND", "kind", -18),
                        ("DEBIT", "debit", -22),
                        ("CREDIT", "credit", -22),
                        ("AMOUNT", "amount", 12),
                        ("REFERENCE", "reference", 0),
                    ],
                );
            }
        }
        Command::Ledger(LedgerCmd::Verify { json }) => {
            let v = admin_cmd(AdminRequest::LedgerVerify(admin::LedgerVerify {})).await?;
            let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
            if json {
                print_json(&v);
            } else if ok {
                println!(
                    "ledger OK: {} transfers over {} accounts; {} sessions ({} live), {} holds, {} withdrawals",
                    s(&v, "transfers"),
                    s(&v, "accounts"),
                    s(&v, "sessions"),
                    s(&v, "live_sessions"),
                    s(&v, "holds"),
                    s(&v, "withdrawals")
                );
            } else {
                for p in v["problems"].as_array().into_iter().flatten() {
                    println!("VIOLATION: {}", p.as_str().unwrap_or_default());
                }
            }
            if !ok {
                return Err(CliError::fail("ledger verification failed"));
            }
        }
        Command::Audit(AuditCmd::List { limit, json }) => {
            let v = admin_cmd(AdminRequest::AuditList(admin::AuditList { limit: Some(limit) })).await?;
            if json {
                print_json(&v);
            } else {
                table(
                    &v,
                    &[
                        ("SEQ", "seq", 5),
                        ("TIME", "time", -20),
                        ("ACTOR", "actor", -18),
                        ("ACTION", "action", -20),
                        ("TARGET", "target", -34),
                        ("REASON", "reason", 0),
                    ],
                );
            }
        }
        Command::Subuser(cmd) => {
            let (v, json) = match cmd {
                SubuserCmd::Add { parent, name, byte_cap, max_streams, days, json } => (
                    admin_cmd(AdminRequest::SubUserAdd(admin::SubUserAdd {
                        parent,
                        name,
                        byte_cap,
                        max_streams,
                        valid_days: days,
                    }))
                    .await?,
                    json,
                ),
                SubuserCmd::List { parent, json } => {
                    (admin_cmd(AdminRequest::SubUserList(admin::SubUserList { parent })).await?, json)
                }
                SubuserCmd::Disable { name, json } => (
                    admin_cmd(AdminRequest::SubUserDisable(admin::SubUserDisable {
                        name,
                        parent: None,
                        disabled: true,
                    }))
                    .await?,
                    json,
                ),
                SubuserCmd::Enable { name, json } => (
                    admin_cmd(AdminRequest::SubUserDisable(admin::SubUserDisable {
                        name,
                        parent: None,
                        disabled: false,
                    }))
                    .await?,
                    json,
                ),
                SubuserCmd::ProxyPassword { name, json } => (
                    admin_cmd(AdminRequest::SubUserPassword(admin::SubUserPassword { name, parent: None })).await?,
                    json,
                ),
                SubuserCmd::Delete { name } => {
                    let v = admin_cmd(AdminRequest::SubUserDelete(admin::SubUserDelete { name, parent: None })).await?;
                    println!("deleted sub-user {}", s(&v, "deleted"));
                    return Ok(());
                }
            };
            if json {
                print_json(&v);
            } else {
                table(
                    &v,
                    &[
                        ("NAME", "name", -32),
                        ("PARENT", "parent", -20),
                        ("PROXY PASSWORD", "proxy_password", -24),
                        ("BYTES USED", "bytes_used", 14),
                        ("BYTE CAP", "byte_cap", 14),
                        ("STREAMS", "max_streams", 8),
                        ("EXPIRES", "expires_at", -20),
                        ("DISABLED", "disabled", 0),
                    ],
                );
            }
        }
        Command::Withdrawal(cmd) => {
            let (v, json) = match cmd {
                WithdrawalCmd::Request { name, amount, to, json } => (
                    admin_cmd(AdminRequest::WithdrawalRequest(admin::WithdrawalRequest {
                        name,
                        amount,
                        destination: to,
                    }))
                    .await?,
                    json,
                ),
                WithdrawalCmd::List { user, status, json } => {
                    (admin_cmd(AdminRequest::WithdrawalList(admin::WithdrawalList { user, status })).await?, json)
                }
                WithdrawalCmd::Approve { id, reason, json } => {
                    (admin_cmd(AdminRequest::WithdrawalApprove(admin::WithdrawalApprove { id, reason })).await?, json)
                }
                WithdrawalCmd::Reject { id, reason, json } => {
                    (admin_cmd(AdminRequest::WithdrawalReject(admin::WithdrawalReject { id, reason })).await?, json)
                }
            };
            if json {
                print_json(&v);
            } else {
                table(
                    &v,
                    &[
                        ("ID", "id", 5),
                        ("USER", "user", -20),
                        ("AMOUNT", "amount", 12),
                        ("STATUS", "status", -9),
                        ("REQUESTED", "requested_at", -20),
                        ("TO", "destination", -20),
                        ("REASON", "reason", 0),
                    ],
                );
            }
        }
        Command::Session(SessionCmd::List { user, limit, json }) => {
            let v = admin_cmd(AdminRequest::SessionList(admin::SessionList { user, limit: Some(limit) })).await?;
            if json {
                print_json(&v);
            } else {
                // A live session's END reads "live".
                let mut v = v;
                for r in v.as_array_mut().into_iter().flatten() {
                    if r["live"] == true {
                        r["end_reason"] = Value::from("live");
                    }
                }
                table(
                    &v,
                    &[
                        ("ID", "id", 7),
                        ("CLIENT", "client", -16),
                        ("NODE", "vip", -15),
                        ("TARGET", "target", -28),
                        ("START", "start", -20),
                        ("UP", "bytes_up", 12),
                        ("DOWN", "bytes_down", 12),
                        ("CHARGE", "charge", 10),
                        ("END", "end_reason", 0),
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
            let v = admin_cmd(AdminRequest::Usage(admin::Usage { subject, by: a.by, last: a.last })).await?;
            if a.json {
                print_json(&v);
            } else {
                let money = |v: &Value, k: &str| crate::money::format_signed(v[k].as_i64().unwrap_or(0));
                println!("{} by {}", s(&v, "subject"), s(&v, "by"));
                println!(
                    "{:<22} {:>14} {:>14} {:>12} {:>12} {:>12} {:>8}",
                    "START", "UP", "DOWN", "PAID", "EARNED", "FEE", "STREAMS"
                );
                let line = |start: String, r: &Value| {
                    println!(
                        "{:<22} {:>14} {:>14} {:>12} {:>12} {:>12} {:>8}",
                        start,
                        s(r, "bytes_up"),
                        s(r, "bytes_down"),
                        money(r, "debit_micros"),
                        money(r, "earned_micros"),
                        money(r, "fee_micros"),
                        s(r, "sessions")
                    )
                };
                for r in v["series"].as_array().into_iter().flatten() {
                    line(s(r, "start"), r);
                }
                line("total".into(), &v["total"]);
            }
        }
        Command::Backup { file } => {
            let path = std::path::absolute(&file).map_err(|e| CliError::fail(e.to_string()))?;
            let v = admin_cmd(AdminRequest::Backup(admin::Backup { path: path.display().to_string() })).await?;
            println!("backup written to {}", s(&v, "backup"));
        }
        Command::Config(ConfigCmd::Example) => print!("{}", crate::config::EXAMPLE),
        Command::Settings(cmd) => {
            let (v, json) = match cmd {
                SettingsCmd::Show { json } => {
                    (admin_cmd(AdminRequest::SettingsShow(admin::SettingsShow {})).await?, json)
                }
                SettingsCmd::Set { price_per_gb, platform_fee_percent, min_payout, reason, json } => {
                    if price_per_gb.is_none() && platform_fee_percent.is_none() && min_payout.is_none() {
                        return Err(CliError::usage("give --price-per-gb, --platform-fee-percent or --min-payout"));
                    }
                    (
                        admin_cmd(AdminRequest::SettingsSet(admin::SettingsSet {
                            price_per_gb,
                            platform_fee_percent,
                            min_payout,
                            reason,
                        }))
                        .await?,
                        json,
                    )
                }
            };
            if json {
                print_json(&v);
            } else {
                for k in [
                    "price_per_gb",
                    "platform_fee_percent",
                    "min_payout",
                    "max_overdraft_micros",
                    "updated_at",
                    "updated_by",
                ] {
                    println!("{k:>22}: {}", s(&v, k));
                }
            }
        }
        Command::Demo(a) => crate::demo::run(a.demo_dir).await.map_err(CliError::fail)?,
        Command::Openapi => println!("{}", crate::api::openapi::document()),
    }
    Ok(())
}
