//! Wire types shared by the daemon, the agents and the ctl tool.
//!
//! Everything here derives serde because it crosses a boundary: the daemon
//! hands [`job::TaskSpec`]s to an executor (in the same process for
//! `ossimportctl run`, over HTTP for agents) and receives [`job::Event`]s
//! back. Besides the wire types it holds the keys ([`auth`]), mutual TLS
//! pinned to them ([`tls`]), and the small HTTP client and server both
//! sides use ([`client`], [`server`]); nothing here touches SQLite or S3.

/// What every binary's `--version` prints: the package version and the
/// source commit it was built from (`proto/build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("OSSIMPORT_COMMIT"),
    ")"
);

/// The source commit alone (`unknown` when built outside a checkout).
pub const COMMIT: &str = env!("OSSIMPORT_COMMIT");

pub mod api;
pub mod auth;
pub mod client;
pub mod control;
pub mod job;
pub mod net;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod tls;

pub use secret::Secret;
