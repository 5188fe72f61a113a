//! The agent side: the executor that copies and verifies the objects of a
//! task, reporting every step as a `proto::job::Event`.
//!
//! The same executor runs inside `ossimportctl run` (standalone) and, in
//! distributed mode, inside the `ossimport-agent` service: [`server`] takes
//! signed task batches, [`daemon_client`] heartbeats and reports, and
//! [`secrets`] holds the credentials delivered out of band.

pub mod cli;
pub mod daemon_client;
mod dest;
mod local;
mod object;
mod remote;
pub mod secrets;
pub mod server;
mod step;
pub mod verify;
pub mod worker;
