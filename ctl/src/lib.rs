//! `ossimportctl`: the command-line tool. Today it runs jobs standalone
//! (`run`), wiring the daemon core and the agent executor together in one
//! process; the daemon-backed verbs come with distributed mode.

pub mod cli;
pub mod exit;
mod progress;
pub mod run;
