//! Wire types shared by the daemon, the agents and the ctl tool.
//!
//! Everything here derives serde because it crosses a boundary: the daemon
//! hands [`job::TaskSpec`]s to an executor (in the same process for
//! `ossimportctl run`, over HTTP for agents) and receives [`job::Event`]s
//! back. Besides the wire types it holds request signing ([`auth`]) and a
//! small HTTP client ([`client`]); nothing here touches SQLite or S3.

pub mod api;
pub mod auth;
pub mod client;
pub mod control;
pub mod job;
pub mod net;
pub mod secret;
pub mod server;

pub use secret::Secret;
