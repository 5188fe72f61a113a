//! `ossimportctl`: the command-line tool. It runs jobs standalone (`run`),
//! wiring the daemon core and the agent executor together in one process,
//! and drives `ossimportd` over its control socket ([`daemon_cmd`]).

pub mod cli;
mod conn;
pub mod daemon_cmd;
pub mod deploy;
pub mod docs;
mod dry_run;
pub mod exit;
mod manifest;
mod progress;
pub mod run;
mod signals;
#[cfg(test)]
mod snapshots;
