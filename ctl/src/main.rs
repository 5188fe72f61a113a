//! `ossimportctl` entry point: parse flags, set up logging, dispatch.

use std::process::ExitCode;

use clap::Parser;
use ctl::cli::{Cli, Command};

fn main() -> ExitCode {
    proto::secret::no_core_dumps();
    storage::limit_malloc_arenas();
    // A reader that stops early (`ossimportctl stat | head`) is not an
    // error: std's print macros panic on EPIPE; end quietly instead.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info)
    }));
    let cli = Cli::parse();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OSSIMPORT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(ansi)
        .with_writer(move || proto::net::OneLine::new(std::io::stderr(), ansi))
        .init();
    match cli.command {
        Command::Run(args) => ctl::run::main(args),
        Command::Template { kind } => ctl::docs::template(kind),
        Command::Generate { what, dir } => ctl::docs::generate(what, &dir),
        other => ctl::daemon_cmd::main(other),
    }
}
