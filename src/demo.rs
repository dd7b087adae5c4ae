//! `traffix demo`: a complete local network in one process — server (TLS), one paired node,
//! one funded client and a small origin web server — with the curl lines that go through it.
//! Everything binds to 127.0.0.1 on free ports; private targets are allowed because the origin
//! is on loopback (and only for that reason).
#![allow(clippy::print_stdout)] // the demo talks to the person who started it

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use crate::admin::{self, AdminCtx};
use crate::app::{self, App, InitOptions};

const ORIGIN_TEXT: &str =
    "Hello from the Traffix demo origin: this response travelled client -> server -> TLS tunnel -> node -> origin.\n";

fn loopback0() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 0)))
}

pub async fn run(dir: Option<PathBuf>) -> Result<(), String> {
    let (dir, temporary) = match dir {
        Some(d) => (d, false),
        None => (std::env::temp_dir().join(format!("traffix-demo-{}", std::process::id())), true),
    };
    let result = run_in(&dir).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(dir: &std::path::Path) -> Result<(), String> {
    let out = app::init(&InitOptions {
        data_dir: dir.to_path_buf(),
        public_address: None,
        no_public_address: false,
        web_listen: loopback0(),
        socks_listen: loopback0(),
        http_listen: loopback0(),
        metrics_listen: loopback0(),
    })
    .map_err(|e| e.to_string())?;
    let mut cfg = app::load_config(dir, None).map_err(|e| e.to_string())?;
    cfg.egress.allow_private_targets = true;

    // Client and pairing code, prepared on the database before the server opens it.
    let (password, link) = {
        let store = Arc::new(crate::store::Store::open(&dir.join(app::DB_FILE)).map_err(|e| e.to_string())?);
        let ctx = AdminCtx {
            store,
            public_address: out.public_address.clone(),
            pin: out.pin.clone(),
            insecure_http: false,
            live: None,
            money: admin::MoneyRules::from_config(&cfg).shared(),
            shared_key_accounts: cfg.trust.shared_key_accounts,
        };
        let user =
            ctx.execute(admin::UserAdd { name: "demo".into(), password: None, admin: false }).map_err(|e| e.reason)?;
        ctx.execute(admin::UserCredit {
            id: None,
            name: "demo".into(),
            amount: "10.00".into(),
            reason: Some("demo credit".into()),
        })
        .map_err(|e| e.reason)?;
        let pair = ctx.execute(admin::Pair { name: "demo".into() }).map_err(|e| e.reason)?;
        (user.proxy_password, pair.link)
    };

    let origin = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let origin_addr = origin.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(origin, Router::new().route("/", get(|| async { ORIGIN_TEXT }))).await;
    });

    let socks = cfg.server.socks_listen;
    let http = cfg.server.http_listen;
    let limits = cfg.limits.clone();
    let app = App::build(cfg).map_err(|e| e.to_string())?;
    let registry = app.registry.clone();
    let node_stop = app.shutdown_handle();
    let server = tokio::spawn(app.run(crate::shutdown::os_signal()));

    let node = tokio::spawn(crate::node::run(
        crate::node::NodeOptions {
            state: dir.join("node.json"),
            pair: Some(link),
            bind: None,
            egress_bind: None,
            allow_private_targets: true,
            limits,
            refused_retry: std::time::Duration::from_secs(crate::node::DEFAULT_REFUSED_RETRY_SECS),
            controls: crate::node::controls::Controls::unlimited(
                &dir.join("node.json"),
                crate::node::DEFAULT_MAX_STREAMS,
            ),
            settings: None,
            started: tokio::time::Instant::now(),
        },
        node_stop,
    ));
    let mut waited = 0;
    while registry.is_empty() {
        if waited > 200 || node.is_finished() {
            return Err("the demo node did not come online; see the log above".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }

    println!();
    println!("Traffix demo is running (Ctrl-C to stop). Data: {}", dir.display());
    println!("  server TLS pin: {}", out.pin);
    println!("  client 'demo' has 10.00 credit; one node is online.");
    println!();
    println!("Through SOCKS5:");
    println!("  curl --socks5-hostname 'demo:{password}@{socks}' http://{origin_addr}/");
    println!("Through the HTTP proxy:");
    println!("  curl -x 'http://demo:{password}@{http}' http://{origin_addr}/");
    println!("Dashboard (self-signed certificate: accept it once):");
    println!("  https://{}/   admin / {}", out.public_address, out.admin_password);
    println!();

    let res = server.await.map_err(|e| e.to_string())?;
    let _ = tokio::time::timeout(Duration::from_secs(5), node).await;
    res.map_err(|e| e.to_string())
}
