//! `ossimportctl` entry point: parse flags, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;
use ctl::cli::{Cli, Command};
use ctl::exit;

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
        Command::Version => {
            println!("ossimportctl {}", env!("CARGO_PKG_VERSION"));
            ExitCode::from(exit::OK)
        }
        Command::Run(args) => ctl::run::main(args),
        Command::Other(args) => {
            let verb = args.first().map(String::as_str).unwrap_or("");
            match verb {
                "deploy" | "start" | "stop" | "submit" | "clean" | "stat" | "retry" | "workers"
                | "errors" | "report" | "pause" | "resume" => {
                    eprintln!(
                        "ossimportctl: `{verb}` belongs to the distributed mode (daemon + agents), which is not implemented yet in this build; use `ossimportctl run job.cfg`"
                    );
                    ExitCode::from(exit::UNSUPPORTED)
                }
                _ => {
                    eprintln!("ossimportctl: unknown command `{verb}`; see `ossimportctl --help`");
                    ExitCode::from(exit::USAGE)
                }
            }
        }
    }
}
