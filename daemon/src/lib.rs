//! The daemon core: job configuration, the SQLite job store, the source
//! scanner that splits a job into tasks, and the coordinator that leases
//! tasks to executors and records what they report.
//!
//! `ossimportctl run` wires this core to an in-process `agent::Executor`;
//! the distributed daemon puts HTTP between the two.

pub mod config;
pub mod coordinator;
pub mod plan;
pub mod scanner;
pub mod store;
