//! The agent side: the executor that copies and verifies the objects of a
//! task, reporting every step as a `proto::job::Event`.
//!
//! The same executor runs inside `ossimportctl run` (standalone) and, in
//! distributed mode, inside the `ossimport-agent` service: [`server`] takes
//! task batches over mutual TLS, [`daemon_client`] heartbeats and reports,
//! [`secrets`] holds the credentials delivered out of band, and [`roots`]
//! the local directories it may use.

pub mod cli;
pub mod daemon_client;
mod dest;
mod fail;
mod local;
mod object;
mod remote;
pub mod roots;
pub mod secrets;
pub mod server;
mod step;
pub mod verify;
pub mod worker;
