#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // test crate: a panic is a failure with a location
//! End-to-end tests: the real `traffix` binary as server and nodes, real clients nobody here
//! wrote (curl, python requests), real sockets on 127.0.0.x, real redb files in temp dirs.

#[path = "../common/mod.rs"]
mod common;

mod acme;
mod admin;
mod api;
mod attacks;
mod billing;
mod cli;
mod control;
mod datapath;
mod failures;
mod geoip;
mod hostile;
mod limits;
mod money;
mod node_controls;
mod ops;
mod payments;
mod readme;
mod routing;
mod telegram;
mod trust;
mod upgrade;
mod watchdog;
