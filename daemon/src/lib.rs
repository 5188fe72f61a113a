//! The daemon core: job configuration, the SQLite job store, the source
//! scanner that splits a job into tasks, and the coordinator that leases
//! tasks to executors and records what they report.
//!
//! `ossimportctl run` wires this core to an in-process `agent::Executor`;
//! the distributed daemon (`ossimportd`) puts HTTP between the two:
//! [`server`] starts it, [`ctl_api`] serves `ossimportctl` on a Unix
//! socket, [`agent_api`] hears from agents, [`scheduler`] pushes task
//! batches to them under leases, and [`jobs`] keeps job plans and scanners.
//! [`local_worker`] is the worker on the master: the same executor, leased
//! tasks in memory.

pub mod access;
pub mod agent_api;
pub mod config;
pub mod coordinator;
pub mod ctl_api;
pub mod filter;
pub mod jobs;
pub mod local_worker;
pub mod plan;
pub mod scanner;
pub mod scheduler;
pub mod server;
pub mod store;
