//! The daemon core: the SQLite job store, the source
//! scanner that splits a job into tasks, and the engine that leases tasks
//! to executors and records what they report.
//!
//! One job [`engine`] runs both modes. `ossimportctl run` starts it over a
//! [`state::State::standalone`] with the local worker as its only executor;
//! the distributed daemon (`ossimportd`, [`server`]) starts the same engine
//! and serves [`ctl_api`] (`ossimportctl`, on a Unix socket) and
//! [`agent_api`] (heartbeats and results from [`agents`]); the engine's
//! scheduler pushes task batches to them under leases.

pub mod access;
pub mod agent_api;
pub mod agents;
pub mod cli;
pub mod ctl_api;
pub mod engine;
pub mod metrics;
pub mod offline;
pub mod preflight;
pub mod report;
pub mod scanner;
pub mod server;
pub mod standalone;
pub mod state;
pub mod status;
pub mod store;

// The job's files and plan live in the `job` crate; these paths stay for
// the daemon's own modules and its tests.
pub use job::{config, filter, plan};
