//! `ossimportctl` entry point: parse flags, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;
use ctl::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OSSIMPORT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Run(args) => ctl::run::main(args),
        other => ctl::daemon_cmd::main(other),
    }
}
