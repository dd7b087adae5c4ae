//! The `traffix` command line (clap), with the names and outputs of SPEC.md's scripting
//! contract. Read commands print a human table, or JSON with `--json`. Admin commands go to a
//! running server through its admin socket, or straight to the database when it is stopped.
#![allow(clippy::print_stdout)] // printing results is this module's job

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::admin::views::{DeviceView, SubUserView, UsagePoint, UserView, WithdrawalView};
use crate::admin::{self, AdminCtx, AdminError};
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
    /// Correct a user's balance by a signed AMOUNT (e.g. -13.50 or +2), against the
    /// platform:adjustments account; never below what is held for live streams.
    Adjust {
        name: String,
        #[arg(allow_negative_numbers = true)]
        amount: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a user's login password (signs out all its logins).
    Password {
        name: String,
        /// Generate a random password and print it once.
        #[arg(long, conflicts_with = "stdin", required_unless_present = "stdin")]
        generate: bool,
        /// Read the new password from one line of standard input.
        #[arg(long)]
        stdin: bool,
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
    /// Reverse a deposit or an adjustment (by sequence number or id) once, with the exact
    /// opposite transfer.
    Reverse {
        id: String,
        #[arg(long)]
        reason: String,
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

/// Prints an answer as pretty JSON. It goes through a `Value`, whose keys are sorted, so the
/// text does not depend on the order of a view's fields.
fn print_json<T: Serialize>(v: &T) {
    let v = serde_json::to_value(v).unwrap_or_default();
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
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
    println!("{}", cols.iter().map(|(h, w, _)| cell(h, *w)).collect::<Vec<_>>().join(" "));
    for r in rows {
        println!("{}", cols.iter().map(|(_, w, f)| cell(&f(r), *w)).collect::<Vec<_>>().join(" "));
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
        };
        #[cfg(unix)]
        let uid = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").ok().map(|m| m.uid())
        };
        #[cfg(not(unix))]
        let uid = None;
        let actor = admin::socket::cli_actor(uid, true);
        tokio::task::spawn_blocking(move || ctx.execute_as(cmd, &actor))
            .await
            .map_err(|e| CliError::fail(e.to_string()))?
            .map_err(Into::into)
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
        println!("{k:>16}: {v}");
    }
    if let Some(p) = &u.password {
        println!("{:>16}: {p}   (shown once)", "login password");
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

/// Runs one CLI invocation.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let (data_dir, config) = (cli.data_dir.clone(), cli.config.clone());
    let admin_cmds = Admin { data_dir: &data_dir, config: config.as_deref() };
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
                print_json(&out);
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
                let u = admin_cmds.run(admin::UserAdd { name, password, admin }).await?;
                if json { print_json(&u) } else { print_user(&u) }
            }
            UserCmd::List { json } => {
                let users = admin_cmds.run(admin::UserList {}).await?;
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
                    println!(
                        "credited {} to {}; balance now {} (transfer #{})",
                        c.amount, c.user, c.balance, c.transfer
                    );
                }
            }
            UserCmd::Adjust { name, amount, reason, json } => {
                let c = admin_cmds.run(admin::UserAdjust { name, amount, reason }).await?;
                if json {
                    print_json(&c);
                } else {
                    println!(
                        "adjusted {} by {}; balance now {} (transfer #{})",
                        c.user, c.amount, c.balance, c.transfer
                    );
                }
            }
            UserCmd::Password { name, generate, stdin: _, json } => {
                let password = if generate { None } else { Some(read_password_line()?) };
                let p = admin_cmds.run(admin::UserPassword { name, password, keep_login: None }).await?;
                if json {
                    print_json(&p);
                } else {
                    match &p.password {
                        Some(pw) => println!("new login password of {}: {pw}   (shown once: store it now)", p.name),
                        None => println!("login password of {} changed", p.name),
                    }
                    println!("signed out {} login(s)", p.revoked_logins);
                }
            }
            UserCmd::ProxyPassword { name, json } => {
                let p = admin_cmds.run(admin::UserProxyPassword { name }).await?;
                if json { print_json(&p) } else { println!("{}", p.proxy_password) }
            }
            UserCmd::Disable { name, reason, json } => {
                let u = admin_cmds.run(admin::UserDisable { name, reason }).await?;
                if json { print_json(&u) } else { println!("user {} disabled", u.name) }
            }
            UserCmd::Enable { name, json } => {
                let u = admin_cmds.run(admin::UserEnable { name }).await?;
                if json { print_json(&u) } else { println!("user {} enabled", u.name) }
            }
        },
        Command::Pair { name, json } => {
            let p = admin_cmds.run(admin::Pair { name }).await?;
            if json {
                print_json(&p);
            } else {
                println!("{}", p.link);
                println!("code {} for user {}, valid until {} (single use)", p.code, p.user, p.expires_at);
                println!("On the node: traffix node --pair '{}' --state node.json", p.link);
            }
        }
        Command::Device(cmd) => {
            let (devices, json) = match cmd {
                DeviceCmd::List { json } => (Rows::Many(admin_cmds.run(admin::DeviceList {}).await?), json),
                DeviceCmd::Ban { id, reason, json } => {
                    (Rows::One(admin_cmds.run(admin::DeviceBan { id, reason }).await?), json)
                }
                DeviceCmd::Unban { id, json } => (Rows::One(admin_cmds.run(admin::DeviceUnban { id }).await?), json),
            };
            if json { print_json(&devices) } else { table(devices.as_slice(), DEVICE_COLUMNS) }
        }
        Command::Ledger(LedgerCmd::List { user, json }) => {
            let transfers = admin_cmds.run(admin::LedgerList { user }).await?;
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
                println!(
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
            } else if r.ok {
                println!(
                    "ledger OK: {} transfers over {} accounts; {} sessions ({} live), {} holds, {} withdrawals",
                    r.transfers, r.accounts, r.sessions, r.live_sessions, r.holds, r.withdrawals
                );
            } else {
                for p in &r.problems {
                    println!("VIOLATION: {p}");
                }
            }
            if !r.ok {
                return Err(CliError::fail("ledger verification failed"));
            }
        }
        Command::Audit(AuditCmd::List { limit, json }) => {
            let entries = admin_cmds.run(admin::AuditList { limit: Some(limit) }).await?;
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
                SubuserCmd::List { parent, json } => {
                    (Rows::Many(admin_cmds.run(admin::SubUserList { parent }).await?), json)
                }
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
                    println!("deleted sub-user {}", d.deleted);
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
                WithdrawalCmd::List { user, status, json } => {
                    (Rows::Many(admin_cmds.run(admin::WithdrawalList { user, status }).await?), json)
                }
                WithdrawalCmd::Approve { id, reason, json } => {
                    (Rows::One(admin_cmds.run(admin::WithdrawalApprove { id, reason }).await?), json)
                }
                WithdrawalCmd::Reject { id, reason, json } => {
                    (Rows::One(admin_cmds.run(admin::WithdrawalReject { id, reason }).await?), json)
                }
            };
            if json { print_json(&list) } else { table(list.as_slice(), WITHDRAWAL_COLUMNS) }
        }
        Command::Session(SessionCmd::List { user, limit, json }) => {
            let sessions = admin_cmds.run(admin::SessionList { user, limit: Some(limit) }).await?;
            if json {
                print_json(&sessions);
            } else {
                table(
                    &sessions,
                    &[
                        ("ID", 7, |s| s.id.cell()),
                        ("CLIENT", -16, |s| s.client.cell()),
                        ("NODE", -15, |s| s.vip.cell()),
                        ("TARGET", -28, |s| s.target.cell()),
                        ("START", -20, |s| s.start.cell()),
                        ("UP", 12, |s| s.bytes_up.cell()),
                        ("DOWN", 12, |s| s.bytes_down.cell()),
                        ("CHARGE", 10, |s| s.charge.cell()),
                        // A live session's END reads "live".
                        ("END", 0, |s| if s.live { "live".into() } else { s.end_reason.cell() }),
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
                println!("{} by {}", u.subject, u.by);
                println!(
                    "{:<22} {:>14} {:>14} {:>12} {:>12} {:>12} {:>8}",
                    "START", "UP", "DOWN", "PAID", "EARNED", "FEE", "STREAMS"
                );
                let line = |start: String, r: &UsagePoint| {
                    println!(
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
        Command::Backup { file } => {
            let path = std::path::absolute(&file).map_err(|e| CliError::fail(e.to_string()))?;
            let b = admin_cmds.run(admin::Backup { path: path.display().to_string() }).await?;
            println!("backup written to {}", b.backup);
        }
        Command::Config(ConfigCmd::Example) => print!("{}", crate::config::EXAMPLE),
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
                let fields = [
                    ("price_per_gb", s.price_per_gb.cell()),
                    ("platform_fee_percent", s.platform_fee_percent.cell()),
                    ("min_payout", s.min_payout.cell()),
                    ("max_overdraft_micros", s.max_overdraft_micros.cell()),
                    ("updated_at", s.updated_at.cell()),
                    ("updated_by", s.updated_by.cell()),
                ];
                for (k, v) in fields {
                    println!("{k:>22}: {v}");
                }
            }
        }
        Command::Demo(a) => crate::demo::run(a.demo_dir).await.map_err(CliError::fail)?,
        Command::Openapi => println!("{}", crate::api::openapi::document()),
    }
    Ok(())
}
