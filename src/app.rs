//! Wiring: `init` creates a data directory; [`App::build`] opens the store and builds every
//! service from the config; [`App::run`] binds the listeners, serves until shutdown, drains
//! live streams under the grace timeout and closes the database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use crate::admin::{self, AdminCtx, Live};
use crate::config::{self, Config};
use crate::egress::EgressPolicy;
use crate::geoip::{Kind, Reloaded, SharedGeoIp};
use crate::listener::bind;
use crate::relay::RelayService;
use crate::relay::accounts::Accounts;
use crate::relay::own_addresses::{self, OwnAddresses, PolicyInputs, PublicHost};
use crate::relay::router::Router;
use crate::shutdown::{self, Shutdown};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::tunnel::registry::Registry;
use crate::tunnel::session::TunnelService;

/// Removes dead API logins and their refresh tokens at start and every hour, until shutdown.
async fn prune_logins(store: Arc<Store>, mut shutdown: Shutdown) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.recv() => return,
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.prune_logins(crate::store::now_secs())).await {
            Ok(Ok(p)) if p.families + p.tokens > 0 => {
                info!(logins = p.families, tokens = p.tokens, "dead logins pruned");
            }
            Ok(Err(e)) => warn!(error = %e, "could not prune dead logins"),
            _ => {}
        }
    }
}

/// The watchdog's probe endpoint and prober (`[watchdog] probe_listen`; nothing without it).
async fn run_probes(
    listener: Option<tokio::net::TcpListener>,
    (wd, limits): (crate::watchdog::config::WatchdogConfig, config::Limits),
    registry: Arc<Registry>,
    watchdog: Arc<crate::watchdog::Watchdog>,
    metrics: Arc<Metrics>,
    (stop_endpoint, stop_prober): (Shutdown, Shutdown),
) {
    use crate::relay::probe;
    let (Some(l), Some(target)) = (listener, wd.probe_listen) else { return };
    let seen = probe::seen_table(limits.watchdog_max_nodes as u64);
    let endpoint = tokio::spawn(probe::serve_endpoint(
        l,
        seen.clone(),
        limits.watchdog_probe_connections,
        u64::from(wd.probe_bytes),
        stop_endpoint,
    ));
    let settings = probe::ProberSettings {
        target,
        bytes: wd.probe_bytes,
        capped_too: wd.probe_capped_nodes,
        open_wait: limits.dial_timeout() + Duration::from_secs(5),
        tick: Duration::from_secs(wd.probe_interval_secs.clamp(1, 10)),
    };
    info!(%target, interval_s = wd.probe_interval_secs, "watchdog probes on");
    probe::run_prober(registry, watchdog, seen, settings, metrics, stop_prober).await;
    let _ = endpoint.await;
}

/// Tells owners when the quality watchdog flags or bans one of their nodes (an admin's override
/// included), with the reason, through the notification path the bot and the inbox read.
async fn notify_quality(
    mut changes: tokio::sync::broadcast::Receiver<crate::watchdog::Transition>,
    store: Arc<Store>,
    notifier: crate::notify::Notifier,
    mut shutdown: Shutdown,
) {
    use crate::watchdog::quality::State;
    loop {
        let t = tokio::select! {
            r = changes.recv() => match r {
                Ok(t) => t,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "quality notifications fell behind; some were not sent");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.recv() => return,
        };
        if !matches!(t.to, State::Flagged | State::Banned) || t.from == t.to {
            continue;
        }
        let (s, device) = (store.clone(), t.device.clone());
        let vip = tokio::task::spawn_blocking(move || {
            hex::decode(&device).ok().and_then(|id| s.get_device(&id).ok().flatten()).map(|d| d.vip.to_string())
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| t.device.clone());
        notifier.emit(crate::notify::Event::NodeFlagged {
            owner: t.owner,
            device: t.device,
            vip,
            banned: t.to == State::Banned,
            reason: if t.detail.is_empty() { t.reason.as_str().to_owned() } else { t.detail },
        });
    }
}

/// A device as the notification watcher sees it: `online` or not, and the pause reason it
/// reports: its heartbeat's (via the watchdog) while online, the one it left with (kept with its
/// last-seen) while gone.
fn notice_state(
    d: crate::store::DeviceRecord,
    online: bool,
    watchdog: Option<&crate::watchdog::Watchdog>,
) -> crate::notify::DeviceState {
    let reason = if online { d.device_id().and_then(|id| watchdog?.pause_reason(&id)) } else { d.node_pause.clone() };
    crate::notify::DeviceState {
        cap: reason.as_deref().and_then(|r| match r {
            "daily_cap" => Some("daily"),
            "monthly_cap" => Some("monthly"),
            _ => None,
        }),
        left_paused: !online && d.node_pause.is_some(),
        online,
        id: d.id,
        owner: d.owner,
        vip: d.vip.to_string(),
        paused: d.paused,
        banned: d.banned,
        last_seen: d.last_seen,
    }
}

/// Looks at nodes and balances every `every` until shutdown and emits what users should hear
/// about: a node offline for its owner's threshold (not when paused by its owner) and back, a
/// node at its own data cap, a balance below its owner's alert level, a sub-user at its byte cap, a mass disconnect and a
/// flood of failures (admins).
async fn watch_for_notices(
    admin: Arc<AdminCtx>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    notifier: crate::notify::Notifier,
    every: Duration,
    mut shutdown: Shutdown,
) {
    let mut watcher = crate::notify::Watcher::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.recv() => return,
        }
        let (ctx, reg) = (admin.clone(), registry.clone());
        let round = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
            // In this order, so a node that just left is never taken for one gone without a
            // word: who is online; then the rows not yet written (a session records its last
            // row under the registry's lock as it leaves, and a row leaves these only once
            // committed), with the store.
            let connected: std::collections::HashSet<crate::identity::DeviceId> =
                reg.all().iter().map(|n| n.device_id).collect();
            let live = ctx.live.as_ref();
            // One record at a time: only the small state of each is kept.
            let mut devices: Vec<crate::notify::DeviceState> = Vec::new();
            crate::tunnel::seen::visit_devices(&ctx.store, live.map(|l| l.seen.as_ref()), |d| {
                // Or connected since the snapshot: its new session's first row may have
                // replaced the one it left with.
                let online = d.device_id().is_some_and(|id| connected.contains(&id) || reg.get(&id).is_some());
                devices.push(notice_state(d, online, live.and_then(|l| l.watchdog.as_deref())));
            })?;
            let mut prefs = std::collections::HashMap::new();
            for u in ctx.store.list_users()? {
                prefs.insert(u.name.clone(), ctx.store.notify_prefs(&u.name)?);
            }
            let mut balances = Vec::new();
            for (name, p) in &prefs {
                if p.low_balance_micros > 0
                    && let Ok(v) = ctx.execute(admin::UserShow { name: name.clone() })
                {
                    balances.push((name.clone(), v.balance_micros, crate::money::Micros(p.low_balance_micros)));
                }
            }
            let subs = ctx.execute(admin::SubUserList { parent: None, window: Default::default() }).unwrap_or_default();
            Ok((devices, prefs, balances, subs))
        })
        .await;
        let Ok(Ok((devices, prefs, balances, subs))) = round else {
            warn!("the notification watcher could not read the store");
            continue;
        };
        let after = |owner: &str| prefs.get(owner).map_or(600, |p| u64::from(p.offline_minutes) * 60);
        for e in watcher.devices(&devices, crate::store::now_secs(), after) {
            notifier.emit(e);
        }
        for (name, bal, threshold) in balances {
            if let Some(e) = watcher.balance(&name, bal, threshold) {
                notifier.emit(e);
            }
        }
        for s in subs {
            if let Some(e) = watcher.sub_cap(&s.parent, &s.name, s.bytes_used, s.byte_cap) {
                notifier.emit(e);
            }
        }
        let (auth, refused) = (metrics.proxy_auth_failures.get(), metrics.connections_refused.get());
        if let Some(e) = watcher.failures(auth, refused, crate::store::now_secs()) {
            notifier.emit(e);
        }
    }
}

/// What the router's policy is built from, besides the server's own addresses.
fn policy_inputs(cfg: &Config) -> Result<PolicyInputs, AppError> {
    let s = &cfg.server;
    Ok(PolicyInputs {
        base: EgressPolicy {
            allow_private_targets: cfg.egress.allow_private_targets,
            blocked_ports: cfg.egress.port_ranges().map_err(AppError::Other)?,
            ..EgressPolicy::default()
        },
        listeners: [s.web_listen, s.socks_listen, s.http_listen, s.metrics_listen]
            .into_iter()
            // The probe endpoint: no client reaches it through a node (only the prober's
            // probe-flagged opens, which do not pass the router's policy).
            .chain(cfg.watchdog.probe_listen)
            .chain(cfg.tls.acme_enabled().then(|| cfg.tls.http_listen().ok().flatten()).flatten())
            .collect(),
        public_address: s.public_address.clone(),
    })
}

/// Looks at the server's own addresses once (resolving a host-name `public_address`) and puts
/// them in the router's policy; then starts the task that looks again every
/// `server.address_refresh_secs` until shutdown.
async fn watch_own_addresses(
    cfg: &Config,
    router: impl Fn(own_addresses::ServerPolicy) + Send + 'static,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, AppError> {
    let inputs = policy_inputs(cfg)?;
    let sources = own_addresses::Sources::system();
    let own = inputs.look(&sources, &OwnAddresses::default()).await;
    info!(
        interfaces = ?own.interfaces, public_address = %inputs.public_address, public = ?own.public,
        "the server's own addresses are refused as targets"
    );
    router(inputs.policy(&own));
    let every = Duration::from_secs(cfg.server.address_refresh_secs);
    Ok(tokio::spawn(own_addresses::refresh(inputs, sources, own, every, router, shutdown)))
}

/// How often the server looks at its GeoIP files for a new version (one installed by hand, or
/// by an update that could not reach the admin socket). `traffix geoip update` itself asks for
/// a reload at once.
const GEOIP_WATCH: Duration = Duration::from_secs(60);

/// Loads the GeoIP files that changed; after a new country database, looks up the country of
/// every online node again, so `-country-` targeting sees it at once.
fn reload_geoip(geoip: &SharedGeoIp, registry: &Registry, watchdog: &crate::watchdog::Watchdog) -> Reloaded {
    let r = geoip.reload();
    if r.changed.contains(&Kind::Country) {
        for n in registry.all() {
            let country = geoip.country(n.public_ip);
            n.set_country(country);
            watchdog.set_country(&n.device_id, country);
        }
    }
    let dbs = geoip.databases();
    for kind in &r.changed {
        if let Some(l) = dbs.get(*kind) {
            info!(
                database = %kind, path = %l.path.display(), database_type = l.db.database_type(),
                built = %crate::units::rfc3339(l.db.build_epoch()), "GeoIP database loaded"
            );
        }
    }
    r
}

/// Reloads the GeoIP databases whose files changed, every [`GEOIP_WATCH`] until shutdown. A
/// problem is logged when it first appears, not every minute.
async fn watch_geoip(reload: Arc<dyn Fn() -> Reloaded + Send + Sync>, mut shutdown: Shutdown) {
    let mut every = tokio::time::interval(GEOIP_WATCH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut last_errors = Vec::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.recv() => return,
        }
        let reload = reload.clone();
        let Ok(r) = tokio::task::spawn_blocking(move || reload()).await else { continue };
        if r.errors != last_errors {
            for e in &r.errors {
                warn!(error = %e, "GeoIP database not loaded");
            }
            last_errors = r.errors;
        }
    }
}

/// A one-line account of the GeoIP databases in use, for the start-up summary.
fn geoip_summary(geoip: &SharedGeoIp) -> String {
    let dbs = geoip.databases();
    let one = |kind: Kind| dbs.get(kind).map(|l| format!("{kind} {} ({})", l.path.display(), l.db.database_type()));
    match (one(Kind::Country), one(Kind::Asn)) {
        (None, asn) => format!(
            "off (no country database: -country- targeting is refused; run `traffix geoip update`){}",
            asn.map(|a| format!("; {a}")).unwrap_or_default()
        ),
        (Some(c), asn) => format!("on ({c}{})", asn.map(|a| format!("; {a}")).unwrap_or_default()),
    }
}

/// How long an admin command that cuts live streams waits for them to end.
const CUT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "traffix.redb";
/// File holding the JWT signing secret (used by the REST API).
pub const JWT_SECRET_FILE: &str = "jwt.secret";
/// The process id of the server that holds the database, so a second `serve` can name it.
pub const PID_FILE: &str = "serve.pid";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0} is already initialised (found {1}); refusing to overwrite it")]
    AlreadyInitialised(PathBuf, PathBuf),
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("a server is already running on {}{}; stop it first (systemctl stop traffix, or kill -TERM the pid)",
        .0.display(), .1.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning(PathBuf, Option<u32>),
    #[error("{0}")]
    Other(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AppError {
    let what = what.into();
    move |source| AppError::Io { what, source }
}

/// Options of `traffix init`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub data_dir: PathBuf,
    pub public_address: Option<String>,
    /// No public address: the server runs with pairing off until `server.public_address` is set.
    pub no_public_address: bool,
    pub web_listen: Option<SocketAddr>,
    pub socks_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
}

/// What `traffix init --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct InitOutput {
    pub admin_user: String,
    pub admin_password: String,
    pub pin: String,
    pub public_address: String,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    /// `public_address` was not given but defaulted (not in the JSON: its shape is a contract).
    #[serde(skip)]
    pub public_address_defaulted: bool,
}

/// Replaces port 0 with a currently free port: a saved config never holds port 0.
fn concrete(addr: SocketAddr) -> Result<SocketAddr, AppError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = std::net::TcpListener::bind(addr).map_err(io(format!("bind {addr} to pick a free port")))?;
    l.local_addr().map_err(io("read the picked port"))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), AppError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(format!("create {}", path.display())))?;
    f.write_all(data).map_err(io(format!("write {}", path.display())))
}

fn set_line(text: &str, key: &str, value: &str) -> String {
    let mut done = false;
    text.lines()
        .map(|l| {
            if !done && l.trim_start().starts_with(&format!("{key} =")) {
                done = true;
                format!("{key} = {value}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Applies the settings changed at run time (stored in the database) over `traffix.toml`.
pub fn apply_settings(cfg: &mut Config, store: &Store) -> Result<(), AppError> {
    if let Some(b) = store.billing_settings()? {
        cfg.billing.price_per_gb = b.price_per_gb;
        cfg.billing.platform_fee_percent = b.platform_fee_percent;
        cfg.billing.min_payout = b.min_payout;
        info!(by = %b.updated_by, "billing settings changed at run time override traffix.toml");
    }
    if let Some(p) = store.payment_settings()? {
        crate::payments::apply_settings(&mut cfg.payments, &p);
        cfg.payments.validate().map_err(AppError::Invalid)?;
        info!(by = %p.updated_by, "payment settings changed at run time override traffix.toml");
    }
    Ok(())
}

/// `traffix init`: config, TLS certificate and key, JWT secret, database, admin user.
pub fn init(opts: &InitOptions) -> Result<InitOutput, AppError> {
    let dir = &opts.data_dir;
    let cfg_path = dir.join(config::CONFIG_FILE);
    if cfg_path.exists() {
        return Err(AppError::AlreadyInitialised(dir.clone(), cfg_path));
    }
    // Checked before anything is written: a link with a URL in it reaches no node.
    if let Some(p) = &opts.public_address {
        crate::units::check_host_port(p).map_err(|e| AppError::Invalid(format!("--public-address {e}")))?;
    }
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("restrict the data directory"))?;
    }
    let web = concrete(opts.web_listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8443))))?;
    let socks = concrete(opts.socks_listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 1080))))?;
    let http = concrete(opts.http_listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 3128))))?;
    let metrics = concrete(opts.metrics_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))))?;
    let public = match &opts.public_address {
        Some(p) => p.clone(),
        None if opts.no_public_address => String::new(),
        None => config::default_public_address(web),
    };

    let mut text = config::EXAMPLE.to_owned();
    for (k, v) in [
        ("public_address", format!("{public:?}")),
        ("web_listen", format!("\"{web}\"")),
        ("socks_listen", format!("\"{socks}\"")),
        ("http_listen", format!("\"{http}\"")),
        ("metrics_listen", format!("\"{metrics}\"")),
    ] {
        text = set_line(&text, k, &v);
    }
    // Validate before writing anything else.
    let cfg = Config::from_str_with_env(&text, &cfg_path, dir, std::iter::empty())?;

    let host = public.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_owned()).unwrap_or_default();
    let mut names = vec![host, "localhost".to_owned(), "127.0.0.1".to_owned()];
    names.retain(|n| !n.is_empty());
    names.dedup();
    let g = crate::tls::generate_self_signed(&names)?;
    let cert_path = cfg.path(&cfg.tls.cert);
    let key_path = cfg.path(&cfg.tls.key);
    if let Some(p) = cert_path.parent() {
        std::fs::create_dir_all(p).map_err(io(format!("create {}", p.display())))?;
    }
    write_private(&key_path, g.key_pem.as_bytes())?;
    std::fs::write(&cert_path, g.cert_pem.as_bytes()).map_err(io(format!("write {}", cert_path.display())))?;
    let secret = crate::auth::random_bytes::<32>().map_err(|e| AppError::Other(e.to_string()))?;
    write_private(&dir.join(JWT_SECRET_FILE), hex::encode(secret).as_bytes())?;

    let store = Arc::new(Store::open(&dir.join(DB_FILE))?);
    let ctx = AdminCtx {
        store,
        public_address: public.clone(),
        pin: g.pin.clone(),
        insecure_http: false,
        live: None,
        money: admin::MoneyRules::default().shared(),
        shared_key_accounts: crate::config::TrustConfig::default().shared_key_accounts,
    };
    let admin = ctx
        .execute(admin::UserAdd { name: "admin".into(), password: None, admin: true })
        .map_err(|e| AppError::Other(e.reason))?;
    let password = admin.password.unwrap_or_default();
    // The config goes last: its presence is what marks the directory as initialised.
    std::fs::write(&cfg_path, text).map_err(io(format!("write {}", cfg_path.display())))?;
    Ok(InitOutput {
        admin_user: "admin".into(),
        admin_password: password,
        pin: g.pin,
        public_address: public,
        config_path: cfg_path,
        data_dir: dir.clone(),
        public_address_defaulted: opts.public_address.is_none() && !opts.no_public_address,
    })
}

/// Loads the config of a data directory (with `TRAFFIX_*` overrides from the environment).
pub fn load_config(data_dir: &Path, config: Option<&Path>) -> Result<Config, AppError> {
    let path = config.map(Path::to_path_buf).unwrap_or_else(|| data_dir.join(config::CONFIG_FILE));
    if !path.exists() {
        return Err(AppError::Other(format!(
            "{} not found: run `traffix init --data-dir {}` first",
            path.display(),
            data_dir.display()
        )));
    }
    Ok(Config::load(&path, data_dir, std::env::vars())?)
}

/// Where a server's files are, for backup archives.
pub fn backup_sources(cfg: &Config) -> admin::backup::Sources {
    admin::backup::Sources {
        data_dir: cfg.data_dir.clone(),
        config: cfg.config_path.clone(),
        cert: cfg.path(&cfg.tls.cert),
        key: cfg.path(&cfg.tls.key),
        jwt_secret: cfg.data_dir.join(JWT_SECRET_FILE),
    }
}

/// The pin of the configured certificate.
pub fn configured_pin(cfg: &Config) -> Result<String, AppError> {
    let (certs, _) = crate::tls::load_cert_and_key(&cfg.path(&cfg.tls.cert), &cfg.path(&cfg.tls.key))?;
    let first = certs.first().ok_or_else(|| AppError::Other("no certificate".into()))?;
    Ok(crate::tls::pin_of_cert(first)?)
}

/// A built server, ready to run.
pub struct App {
    pub cfg: Config,
    pub store: Arc<Store>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub relay: Arc<RelayService>,
    pin: String,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The web listener's certificates and the ACME service.
    certificates: Arc<crate::acme::Certificates>,
    geoip: Arc<SharedGeoIp>,
    /// Device trust: the attestation policy and required level (docs/trust.md).
    trust: Arc<crate::trust::gate::TrustGate>,
    trigger: shutdown::ShutdownTrigger,
    /// Node quality (`src/watchdog`): fed by the tunnel and the relay, consulted by routing.
    pub watchdog: Arc<crate::watchdog::Watchdog>,
}

impl App {
    /// Opens the store and builds every service. Fails fast on a bad certificate or database.
    pub fn build(mut cfg: Config) -> Result<App, AppError> {
        for key in cfg.limits.ignored_keys() {
            warn!(
                key,
                "limits.{key} is no longer used and is ignored (the heartbeat is the only keepalive): remove it"
            );
        }
        let pid_file = cfg.data_dir.join(PID_FILE);
        let store = match Store::open_with_cache(&cfg.data_dir.join(DB_FILE), cfg.server.store_cache_mb) {
            Ok(s) => Arc::new(s),
            Err(crate::store::StoreError::Locked) => {
                let pid = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse().ok());
                return Err(AppError::AlreadyRunning(cfg.data_dir.clone(), pid));
            }
            Err(e) => return Err(e.into()),
        };
        // This process holds the database now: say which one it is.
        if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
            warn!(error = %e, "cannot write {}", pid_file.display());
        }
        apply_settings(&mut cfg, &store)?;
        // Three listeners take connections (web with every node's tunnel, SOCKS5, HTTP proxy);
        // full, they must still leave descriptors for everything else.
        let nofile = crate::listener::raise_nofile();
        let fit = crate::listener::fit_connections(cfg.limits.max_connections, nofile);
        if fit.proxy < cfg.limits.max_connections {
            warn!(
                nofile,
                configured = cfg.limits.max_connections,
                web = fit.web,
                proxy = fit.proxy,
                "limits.max_connections lowered to fit the open-file limit (web listener, each proxy listener)"
            );
        }
        cfg.limits.max_connections = fit.web;
        cfg.limits.proxy_max_connections = Some(fit.proxy);
        info!(nofile, web = fit.web, proxy = fit.proxy, "open-file limit: connections per listener");
        let certificates = Arc::new(
            crate::acme::Certificates::load(&cfg, Arc::new(crate::acme::schedule::SystemClock))
                .map_err(AppError::Other)?,
        );
        let pin = certificates.view().pin;
        let tls = if cfg.server.insecure_http {
            warn!("--insecure-http: the web listener serves plain HTTP (development and tests only)");
            None
        } else {
            let alpn = certificates.acme().is_some_and(|a| a.challenge == crate::config::Challenge::TlsAlpn01);
            let server = crate::tls::server_config_with_resolver(certificates.resolver.clone(), alpn)?;
            Some(Arc::new(server))
        };
        let geoip = Arc::new(SharedGeoIp::load(&cfg).map_err(AppError::Other)?);
        let trust = Arc::new(
            crate::trust::gate::TrustGate::new(&cfg.trust, &cfg.data_dir)
                .map_err(|e| AppError::Other(format!("device trust: {e}")))?,
        );
        if cfg.egress.allow_private_targets {
            warn!("egress.allow_private_targets is ON: clients may reach private and loopback targets (tests only)");
        }
        let registry = Arc::new(Registry::new());
        let metrics = Arc::new(Metrics::default());
        metrics.start_time.set(i64::try_from(crate::store::now_secs()).unwrap_or(i64::MAX));
        // Until `run` has resolved a host-name public_address: the interfaces and a literal.
        let inputs = policy_inputs(&cfg)?;
        let own = OwnAddresses {
            interfaces: crate::netinfo::interface_addresses().into_iter().collect(),
            public: match PublicHost::of(&cfg.server.public_address) {
                Some(PublicHost::Ip(ip)) => [ip].into(),
                Some(PublicHost::Name(_)) | None => Default::default(),
            },
        };
        let watchdog = Arc::new(crate::watchdog::Watchdog::new(
            cfg.watchdog.clone(),
            crate::watchdog::WatchdogLimits::from_limits(&cfg.limits),
            Some(geoip.clone()),
            metrics.clone(),
        ));
        // Flags, bans in progress and admin overrides survive a restart.
        watchdog.restore(store.list_quality()?);
        let router = Router::new(
            registry.clone(),
            inputs.policy(&own),
            geoip.clone(),
            watchdog.clone(),
            &cfg.limits,
            metrics.clone(),
            cfg.trust.require,
        );
        let tariff = crate::billing::rules::Tariff::new(cfg.billing.price_per_gb, cfg.billing.platform_fee_percent)
            .map_err(|e| AppError::Other(format!("billing config: {e}")))?;
        let billing = if cfg.billing.enabled {
            let holds = crate::billing::rules::HoldPolicy {
                chunk: cfg.billing.hold_chunk,
                max_overdraft: crate::billing::meter::overdraft_bound(&tariff, cfg.limits.client_max_streams),
            };
            Some(Arc::new(crate::billing::meter::Billing::start(
                store.clone(),
                tariff,
                holds,
                metrics.billing.clone(),
            )?))
        } else {
            tracing::warn!("billing is off (billing.enabled = false): traffic is neither metered nor charged");
            None
        };
        let relay = Arc::new(RelayService {
            billing,
            accounts: Accounts::new(store.clone(), cfg.limits.clone()),
            router,
            metrics: metrics.clone(),
            limits: cfg.limits.clone(),
            tracker: tokio_util::task::TaskTracker::new(),
            live: Arc::new(crate::relay::live::LiveStreams::default()),
        });
        let (trigger, _) = shutdown::channel();
        Ok(App { cfg, store, registry, metrics, relay, pin, tls, certificates, geoip, trust, trigger, watchdog })
    }

    /// What the watchdog calls to ban a device (after marking it banned in the store): its
    /// streams are cut, then its tunnel is told why and closed (`traffix device ban` does the same).
    fn ban_hook(&self) -> crate::watchdog::BanHook {
        let (live, registry) = (self.relay.live.clone(), self.registry.clone());
        Arc::new(move |id, why: &str| {
            live.cut(&crate::relay::live::Cut::Device(id), "device_banned", CUT_WAIT);
            registry.kick(&id, crate::tunnel::protocol::ErrorCode::DeviceBanned, &format!("device banned: {why}"));
        })
    }

    /// A handle that stops the server when triggered.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    pub fn trigger_shutdown(&self) {
        self.trigger.trigger();
    }

    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// The REST API's state: its signing key, throttles and what it shows of the configuration.
    fn api_state(
        &self,
        admin: Arc<AdminCtx>,
        payments: Arc<crate::payments::Payments>,
        socks: &tokio::net::TcpListener,
        http: &tokio::net::TcpListener,
    ) -> Result<crate::api::ApiState, AppError> {
        let cfg = &self.cfg;
        let secret_path = cfg.data_dir.join(JWT_SECRET_FILE);
        let secret = match std::fs::read_to_string(&secret_path) {
            Ok(hexs) => hex::decode(hexs.trim())
                .map_err(|_| AppError::Other(format!("{} is not hex", secret_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = crate::auth::random_bytes::<32>().map_err(|e| AppError::Other(e.to_string()))?;
                write_private(&secret_path, hex::encode(secret).as_bytes())?;
                secret.to_vec()
            }
            Err(e) => return Err(io(format!("read {}", secret_path.display()))(e)),
        };
        if secret.len() < 32 {
            return Err(AppError::Other(format!("{} holds fewer than 32 bytes", secret_path.display())));
        }
        // With no public address (pairing off) the proxy addresses shown carry a placeholder.
        let host =
            cfg.server.public_address.rsplit_once(':').map_or_else(|| "SERVER".to_owned(), |(h, _)| h.to_owned());
        let port = |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.port()).unwrap_or_default();
        let b = &cfg.billing;
        let info = crate::api::ServerInfo {
            currency: b.currency.clone(),
            billing_enabled: b.enabled,
            hold_chunk_micros: b.hold_chunk.0,
            socks5: format!("{host}:{}", port(socks)),
            http: format!("{host}:{}", port(http)),
            geoip_country: self.geoip.has_country(),
            limits: serde_json::to_value(&cfg.limits).unwrap_or_default(),
        };
        Ok(crate::api::ApiState {
            admin,
            payments,
            jwt: crate::auth::jwt::Jwt::new(&secret),
            metrics: self.metrics.clone(),
            registry: self.registry.clone(),
            info,
            throttle: crate::api::Throttle::new(
                cfg.limits.login_failures_per_hour,
                cfg.limits.auth_failures_per_minute_per_ip,
            ),
            hashing: tokio::sync::Semaphore::new(2),
            shutdown: self.trigger.subscribe(),
            max_logins_per_user: cfg.limits.max_logins_per_user as usize,
        })
    }

    /// Binds every listener, serves until `stop` resolves, then drains and closes.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<(), AppError> {
        let cfg = &self.cfg;
        let s = &cfg.server;
        let backlog = cfg.limits.listen_backlog;
        let web = bind(s.web_listen, backlog).map_err(io(format!("listen on {} (web)", s.web_listen)))?;
        let socks = bind(s.socks_listen, backlog).map_err(io(format!("listen on {} (SOCKS5)", s.socks_listen)))?;
        let http = bind(s.http_listen, backlog).map_err(io(format!("listen on {} (HTTP proxy)", s.http_listen)))?;
        let metrics_l = bind(s.metrics_listen, 128).map_err(io(format!("listen on {} (metrics)", s.metrics_listen)))?;
        let admin_l = admin::socket::bind(&cfg.data_dir).map_err(io("create the admin socket"))?;
        let probe_l = match cfg.watchdog.probe_listen.filter(|_| cfg.watchdog.enabled) {
            Some(a) => Some(bind(a, 128).map_err(io(format!("listen on {a} (watchdog probe endpoint)")))?),
            None => None,
        };

        let acme_http = match self.certificates.acme().and_then(|a| a.http_listen) {
            Some(a) => Some(
                bind(a, 128)
                    .map_err(io(format!("listen on {a} (ACME HTTP-01; below 1024 it needs CAP_NET_BIND_SERVICE)")))?,
            ),
            None => None,
        };
        let mut prom = prometheus_client::registry::Registry::default();
        self.metrics.register(&mut prom);
        self.certificates.metrics().register(&mut prom);
        if self.relay.billing.is_some() {
            self.metrics.register_billing(&mut prom);
        }
        let seen = crate::tunnel::seen::SeenLog::new(self.store.clone(), self.metrics.clone(), cfg.limits.seen_queue);
        // Not one of `tasks`: it outlives them, to take the rows of the last sessions to end.
        let seen_writer = tokio::spawn(seen.clone().run(Duration::from_millis(s.seen_flush_ms)));
        let tunnel = Arc::new(TunnelService {
            trust: self.trust.clone(),
            pair_attempts: TunnelService::pair_attempts_table(),
            store: self.store.clone(),
            registry: self.registry.clone(),
            limits: cfg.limits.clone(),
            tls: self.tls.is_some(),
            pin: crate::tls::parse_pin(&self.pin).unwrap_or_default(),
            geoip: self.geoip.clone(),
            metrics: self.metrics.clone(),
            shutdown: self.trigger.subscribe(),
            shutdown_grace_secs: s.shutdown_grace_secs,
            currency: cfg.billing.enabled.then(|| cfg.billing.currency.clone()),
            watchdog: self.watchdog.clone(),
            unpair: std::sync::OnceLock::new(),
            control_sessions: Default::default(),
            seen: seen.clone(),
            tasks: tokio_util::task::TaskTracker::new(),
        });
        let tunnel_tasks = tunnel.tasks.clone();
        let payments = {
            let relay = self.relay.clone();
            let on_credit: crate::payments::CreditHook = Arc::new(move |name: &str| {
                relay.accounts.invalidate(name);
                if let Some(b) = &relay.billing {
                    b.credited(name);
                }
            });
            Arc::new(
                crate::payments::Payments::new(
                    self.store.clone(),
                    cfg.payments.clone(),
                    &cfg.billing.currency,
                    cfg.billing.max_credit,
                    on_credit,
                )
                .map_err(AppError::Invalid)?,
            )
        };
        let (notifier, notices_rx) = crate::notify::Notifier::channel(cfg.limits.notify_queue);
        payments.set_notifier(notifier.clone());
        let relay_svc = self.relay.clone();
        let geoip_reload: Arc<dyn Fn() -> Reloaded + Send + Sync> = {
            let (geoip, registry, watchdog) = (self.geoip.clone(), self.registry.clone(), self.watchdog.clone());
            Arc::new(move || reload_geoip(&geoip, &registry, &watchdog))
        };
        let admin_ctx = Arc::new(AdminCtx {
            store: self.store.clone(),
            public_address: s.public_address.clone(),
            pin: self.pin.clone(),
            insecure_http: s.insecure_http,
            live: Some(Live {
                registry: self.registry.clone(),
                watchdog: Some(self.watchdog.clone()),
                invalidate_account: Arc::new(move |name: &str| relay_svc.accounts.invalidate(name)),
                credited: {
                    let billing = self.relay.billing.clone();
                    Arc::new(move |name: &str| {
                        if let Some(b) = &billing {
                            b.credited(name);
                        }
                    })
                },
                geoip: self.geoip.clone(),
                geoip_reload: geoip_reload.clone(),
                geoip_status: {
                    let (geoip, cfg) = (self.geoip.clone(), cfg.clone());
                    Arc::new(move || crate::geoip::status(&cfg, &geoip.databases(), crate::store::now_secs()))
                },
                cut_streams: {
                    let live = self.relay.live.clone();
                    Arc::new(move |which, reason| live.cut(which, reason, CUT_WAIT))
                },
                certificates: Some(self.certificates.clone()),
                payments_changed: {
                    let p = payments.clone();
                    Arc::new(move || {
                        if let Err(e) = p.reload() {
                            warn!(error = %e, "payment settings could not be applied");
                        }
                    })
                },
                notify: notifier.clone(),
                seen: seen.clone(),
                tariff_changed: {
                    let billing = self.relay.billing.clone();
                    Arc::new(move |t| {
                        if let Some(b) = &billing {
                            b.set_tariff(t);
                        }
                    })
                },
            }),
            money: admin::MoneyRules::from_config(cfg).shared(),
            shared_key_accounts: cfg.trust.shared_key_accounts,
        });
        {
            // UNPAIR over the tunnel: the admin's removal, on behalf of the device itself.
            let ctx = admin_ctx.clone();
            let hook: crate::tunnel::control::UnpairHook = Arc::new(move |id, reason| {
                let device = hex::encode(id);
                let cmd = admin::DeviceRemove { id: device.clone(), reason: reason.map(str::to_owned) };
                ctx.execute_as(cmd, &format!("device:{device}")).map(|_| ()).map_err(|e| e.to_string())
            });
            let _ = tunnel.unpair.set(hook);
        }
        let api = Arc::new(self.api_state(admin_ctx.clone(), payments.clone(), &socks, &http)?);
        let bot = if cfg.telegram.enabled() {
            let bot = crate::telegram::Bot::new(
                cfg.telegram.clone(),
                admin_ctx.clone(),
                payments.clone(),
                crate::telegram::ProxyAddrs { socks5: api.info.socks5.clone(), http: api.info.http.clone() },
                &cfg.billing.currency,
                cfg.path(&cfg.tls.cert),
                cfg.limits.telegram_webhook_concurrency,
            )
            .map_err(AppError::Invalid)?;
            bot.metrics.register(&mut prom);
            Some(Arc::new(bot))
        } else {
            None
        };
        let mut web_routes =
            crate::web::router(tunnel).merge(crate::api::router(api)).merge(crate::api::dashboard::router());
        if let Some(b) = &bot {
            web_routes = web_routes.merge(crate::telegram::webhook_router(b.clone()));
        }
        let relay = self.relay.clone();
        let own_addresses =
            watch_own_addresses(cfg, move |p| relay.router.set_policy(p), self.trigger.subscribe()).await?;
        let web_tracker = tokio_util::task::TaskTracker::new();
        let hs = cfg.limits.handshake_timeout();
        let mut tasks = vec![
            tokio::spawn(crate::web::serve(
                web,
                self.tls.clone(),
                web_routes.layer(axum::middleware::from_fn_with_state(
                    self.metrics.http_requests.clone(),
                    crate::web::count_responses,
                )),
                crate::web::WebTimeouts {
                    handshake: hs,
                    request: crate::web::RequestDeadline(std::time::Duration::from_secs(
                        cfg.limits.request_timeout_secs,
                    )),
                    keepalive_idle: std::time::Duration::from_secs(cfg.limits.keepalive_idle_secs),
                },
                crate::listener::Gate::new("web", cfg.limits.conn_limits(), self.metrics.connections_refused.clone()),
                self.trigger.subscribe(),
                web_tracker.clone(),
            )),
            tokio::spawn(crate::proxy::socks5::serve(socks, self.relay.clone(), self.trigger.subscribe())),
            tokio::spawn(crate::proxy::http::serve(http, self.relay.clone(), self.trigger.subscribe())),
            tokio::spawn(crate::web::serve_metrics(metrics_l, Arc::new(prom), self.trigger.subscribe())),
            tokio::spawn(admin::socket::serve(
                admin_l,
                admin_ctx.clone(),
                Arc::new(backup_sources(cfg)),
                self.trigger.subscribe(),
            )),
            tokio::spawn(prune_logins(self.store.clone(), self.trigger.subscribe())),
            tokio::spawn(watch_geoip(geoip_reload, self.trigger.subscribe())),
            tokio::spawn(self.watchdog.clone().run(self.store.clone(), self.ban_hook(), self.trigger.subscribe())),
            tokio::spawn(run_probes(
                probe_l,
                (cfg.watchdog.clone(), cfg.limits.clone()),
                self.registry.clone(),
                self.watchdog.clone(),
                self.metrics.clone(),
                (self.trigger.subscribe(), self.trigger.subscribe()),
            )),
            tokio::spawn(notify_quality(
                self.watchdog.subscribe(),
                self.store.clone(),
                notifier.clone(),
                self.trigger.subscribe(),
            )),
            tokio::spawn(payments.clone().run_poller(self.trigger.subscribe())),
            tokio::spawn(payments.clone().run_auto_withdrawals(
                {
                    let money = admin_ctx.money.clone();
                    Arc::new(move || crate::sync::read(&money).min_payout)
                },
                self.trigger.subscribe(),
            )),
            own_addresses,
            tokio::spawn(self.certificates.clone().run(self.trigger.subscribe())),
            tokio::spawn(
                crate::telegram::notices::Delivery {
                    store: self.store.clone(),
                    bot: bot.clone(),
                    currency: cfg.billing.currency.clone(),
                    per_minute: cfg.telegram.notify_per_minute,
                    inbox_max: cfg.limits.notify_inbox_per_user,
                }
                .run(notices_rx, self.trigger.subscribe()),
            ),
            tokio::spawn(watch_for_notices(
                admin_ctx.clone(),
                self.registry.clone(),
                self.metrics.clone(),
                notifier.clone(),
                Duration::from_secs(cfg.telegram.watch_interval_secs),
                self.trigger.subscribe(),
            )),
        ];
        if let Some(b) = &bot {
            tasks.push(tokio::spawn(b.clone().run(self.trigger.subscribe())));
        }
        if let (Some(l), Some(a)) = (acme_http, self.certificates.acme()) {
            let port = s.public_address.rsplit_once(':').map(|(_, p)| p).filter(|p| *p != "443");
            let base = format!("https://{}{}", a.domain, port.map(|p| format!(":{p}")).unwrap_or_default());
            let caps = crate::listener::ConnLimits {
                total: crate::listener::ACME_HTTP_MAX_CONNECTIONS.min(cfg.limits.max_connections),
                ..cfg.limits.conn_limits()
            };
            let gate = crate::listener::Gate::new("acme-http", caps, self.metrics.connections_refused.clone());
            tasks.push(tokio::spawn(crate::acme::http01::serve(
                l,
                self.certificates.tokens(),
                base,
                gate,
                cfg.limits.handshake_timeout(),
                self.trigger.subscribe(),
            )));
        }
        let flusher = self.relay.billing.clone().map(|b| tokio::spawn(b.run(self.trigger.subscribe())));
        let changed = cfg.limits.changed_from_default();
        let limits = if changed.is_empty() { "defaults".to_owned() } else { changed.join(" ") };
        let geoip = geoip_summary(&self.geoip);
        let billing = match &self.relay.billing {
            Some(_) => format!(
                "on ({} {} per GB, fee {}%)",
                cfg.billing.price_per_gb, cfg.billing.currency, cfg.billing.platform_fee_percent
            ),
            None => "off".to_owned(),
        };
        info!(
            web = %s.web_listen, socks5 = %s.socks_listen, http = %s.http_listen, metrics = %s.metrics_listen,
            public_address = %s.public_address, pin = %self.pin, tls = self.tls.is_some(),
            certificate = %self.certificates.view().source,
            data_dir = %cfg.data_dir.display(), limits = %limits, geoip = %geoip, billing = %billing,
            "traffix serving"
        );
        if s.public_address.is_empty() {
            warn!(
                config = %cfg.config_path.display(),
                "pairing is off: server.public_address is not set; set it to the HOST:PORT nodes can reach \
                 (the web listener as seen from the internet) and restart"
            );
        }

        let mut own = self.trigger.subscribe();
        tokio::select! {
            _ = stop => {}
            _ = own.recv() => {}
        }
        info!("shutting down: no new connections; draining live streams");
        self.trigger.trigger();
        for t in tasks {
            let _ = t.await;
        }
        self.relay.tracker.close();
        let grace = Duration::from_secs(s.shutdown_grace_secs);
        if tokio::time::timeout(grace, self.relay.tracker.wait()).await.is_err() {
            warn!(grace_secs = s.shutdown_grace_secs, "streams still open after the grace period; cutting them");
        }
        // Node sessions saw the shutdown signal and are closing; give them a moment.
        for n in self.registry.all() {
            n.mux.close("server shutdown");
        }
        web_tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), web_tracker.wait()).await;
        // Node sessions end within their writer's 5 s grace; their last rows go to the writer
        // before it writes its final batch.
        tunnel_tasks.close();
        if tokio::time::timeout(Duration::from_secs(7), tunnel_tasks.wait()).await.is_err() {
            warn!("node sessions still open after 7 s; their last-seen rows are written on their own");
        }
        // The sessions have ended (or are past waiting for): their last-seen rows are written
        // now; a session later still writes its own row.
        seen.close();
        if let Err(e) = seen_writer.await {
            warn!(error = %e, "the last-seen writer failed");
        }
        // Bill the last bytes: everything still live is closed and posted.
        if let (Some(flusher), Some(billing)) = (flusher, &self.relay.billing) {
            let _ = flusher.await;
            billing.close_all("shutdown").await;
        }
        let _ = std::fs::remove_file(admin::socket::socket_path(&cfg.data_dir));
        let _ = std::fs::remove_file(cfg.data_dir.join(PID_FILE));
        drop(self.relay);
        info!("database closed; bye");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Event;
    use crate::watchdog::Transition;
    use crate::watchdog::quality::{ReasonCode, State};

    fn change(from: State, to: State) -> Transition {
        Transition {
            device: "00112233445566778899aabbccddeeff".into(),
            owner: "bob".into(),
            from,
            to,
            reason: ReasonCode::OpenFailures,
            detail: "34 % of opens failed in the last hour".into(),
            score: 30,
            at: 1,
        }
    }

    /// Flags and bans reach the owner with the reason; recoveries and degradations do not.
    #[tokio::test]
    async fn quality_flags_and_bans_become_owner_notifications() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("n.redb")).unwrap());
        let (tx, rx) = tokio::sync::broadcast::channel(8);
        let (notifier, mut notices) = crate::notify::Notifier::channel(8);
        let (trigger, shutdown) = shutdown::channel();
        let task = tokio::spawn(notify_quality(rx, store, notifier, shutdown));
        for (from, to) in [
            (State::Healthy, State::Degraded),
            (State::Degraded, State::Flagged),
            (State::Flagged, State::Healthy),
            (State::Flagged, State::Banned),
        ] {
            tx.send(change(from, to)).unwrap();
        }
        let first = notices.recv().await.unwrap();
        assert!(
            matches!(&first, Event::NodeFlagged { owner, banned: false, reason, vip, .. }
                if owner == "bob" && reason.contains("34 %") && vip == "00112233445566778899aabbccddeeff"),
            "{first:?}"
        );
        let second = notices.recv().await.unwrap();
        assert!(matches!(second, Event::NodeFlagged { banned: true, .. }), "{second:?}");
        trigger.trigger();
        task.await.unwrap();
        assert!(notices.try_recv().is_err(), "nothing for the degradation or the recovery");
    }
}
