//! Traffix: a self-hosted residential-proxy appliance. Nodes (Android phones, Linux boxes) hold
//! one TLS WebSocket tunnel to the server; paying clients connect over SOCKS5 or an HTTP proxy
//! and their streams exit through a node.
//!
//! # Layout
//! - [`app`]: wires the services together and runs them until shutdown.
//! - [`cli`]: the `traffix` command line (clap), exactly as SPEC.md names it.
//! - [`config`]: `traffix.toml`, `TRAFFIX_*` overrides, validation.
//! - [`telemetry`]: logging and Prometheus metrics.
//! - [`shutdown`]: the shutdown signal shared by every task.
//! - [`sync`]: lock helpers that survive poisoning.
//! - [`tls`]: the appliance certificate, its pin, server and pinned-client configs.
//! - [`acme`]: certificates from an ACME CA for the appliance's key, swapped in while serving.
//! - [`store`]: durable state in redb behind a narrow interface.
//! - [`billing`]: exact charging rules (pure) and the real-time meter with its holds.
//! - [`auth`]: password hashing, proxy tokens, pairing codes, device signatures (pure).
//! - [`egress`]: the node egress policy of SECURITY.md §1 (pure).
//! - [`money`]: integer micro-unit amounts (pure).
//! - [`netinfo`]: the machine's own addresses and networks, read from `/proc` (a leaf).
//! - [`units`]: byte sizes, instants and `HOST:PORT` as people type them (pure).
//! - [`target`], [`identity`]: leaf types every side shares (a stream's target and its failure
//!   reasons; device key algorithms, ids and challenge bytes). They import nothing of the project.
//! - [`listener`]: binding and accepting TCP listeners.
//! - [`tunnel`]: the frame protocol (pure), the stream multiplexer, copying a socket to a stream,
//!   the server's node sessions and the registry of online nodes. Knows nothing of proxies or money.
//! - [`relay`]: the join between a client's stream and everything it needs: account checks,
//!   username grammar, routing, the billing hold and meter, opening on a node, copying.
//! - [`proxy`]: client front-ends (SOCKS5, HTTP proxy) that hand (stream, account, target) to the
//!   relay.
//! - [`node`]: the Linux node agent (`traffix node`).
//! - [`admin`]: admin commands, served over a local socket and run directly on the store.
//! - [`web`]: the HTTPS listener: `/healthz` and the node tunnel endpoint.
//! - [`api`]: the REST API under `/api/v1` (JWT logins, API keys, OpenAPI) and the dashboard.
//! - [`demo`]: `traffix demo`, a whole local network in one process.
//! - [`doctor`]: `traffix doctor`, health checks of a data directory, each problem with its fix.
//! - [`geoip`]: country and ASN lookups from MaxMind-format databases, swapped in while serving,
//!   and `traffix geoip update`, which downloads, verifies and installs them.
//! - [`trust`]: Android Key Attestation chains verified offline at pairing, and device trust
//!   levels (pure).
//! - [`payments`]: money in from providers (signed webhooks, Crypto Pay invoices and polling)
//!   and automatic payout requests.
//! - [`watchdog`]: node quality: measurements fed by the tunnel's and the relay's events,
//!   scores, states (healthy, degraded, flagged, banned) with reasons, tiers for routing.
//! - [`telegram`]: the Telegram bot (teloxide): sign-up and linking, commands, Stars payments,
//!   notification delivery; another front end of the admin commands.
//! - [`notify`]: notification events other parts emit, and the node and balance watcher's rules.

pub mod acme;
pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod egress;
pub mod geoip;
pub mod identity;
pub mod listener;
pub mod money;
pub mod netinfo;
pub mod node;
pub mod notify;
pub mod payments;
pub mod proxy;
pub mod relay;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod sync;
pub mod target;
pub mod telegram;
pub mod telemetry;
pub mod tls;
pub mod trust;
pub mod tunnel;
pub mod units;
pub mod watchdog;
pub mod web;
