//! Command-line definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ossimportctl",
    version,
    about = "Migrate files into OSS and S3-compatible storage, verified"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job on this machine, in one process, until it ends.
    Run(RunArgs),
    /// Print the version.
    Version,
    /// Commands of the distributed mode (not implemented yet in this build).
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file (`job.cfg` / `local_job.cfg`).
    pub job_cfg: PathBuf,
    /// `sys.properties`; default: the one next to the job file, if any.
    #[arg(long, env = "OSSIMPORT_SYS_PROPERTIES")]
    pub sys: Option<PathBuf>,
    /// Directory for the job store; default: `workingDir` of sys.properties,
    /// else the current directory.
    #[arg(long, env = "OSSIMPORT_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Forget what an earlier run of this job recorded and start over.
    #[arg(long)]
    pub clean: bool,
    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 10)]
    pub progress_interval: u64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}
