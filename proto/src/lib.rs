//! Wire types shared by the daemon, the agents and the ctl tool.
//!
//! Everything here derives serde because it crosses a boundary: the daemon
//! hands [`job::TaskSpec`]s to an executor (in the same process for
//! `ossimportctl run`, over HTTP for agents) and receives [`job::Event`]s
//! back. Nothing in this crate does IO.

pub mod job;
pub mod secret;

pub use secret::Secret;
