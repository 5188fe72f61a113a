//! Command-line definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ossimportctl",
    version,
    about = "Migrate files into OSS and S3-compatible storage, verified",
    after_help = "Exit codes: 0 success; 1 the job failed or has failed objects; \
2 usage or configuration error (also an unknown job, or a job that already exists); \
3 the daemon is not running; 4 runtime error; 5 not implemented in this build; \
6 no permission on the daemon's socket; 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job on this machine, in one process, until it ends.
    Run(RunArgs),
    /// Print the version of ossimportctl and of the running daemon.
    Version(DaemonArgs),
    /// Submit a job to the daemon; it starts at once.
    Submit {
        /// The job file; default `conf/job.cfg`.
        job_cfg: Option<PathBuf>,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Start the daemon in the background (`ossimportd --daemon`).
    Start(DaemonArgs),
    /// Stop the daemon; jobs resume at the next start.
    Stop(DaemonArgs),
    /// Status of every job, or of one.
    Stat {
        job: Option<String>,
        /// Redraw every few seconds until the jobs end (Ctrl-C to quit).
        #[arg(long)]
        watch: bool,
        /// Print the original ossimport's `JobName:`/`JobState:` block.
        #[arg(long)]
        legacy: bool,
        /// Seconds between redraws with --watch.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Retry the failed objects of a job, or of every job.
    Retry {
        job: Option<String>,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Forget a job so its name can be submitted again.
    Clean {
        job: String,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Agents: state, load and last heartbeat.
    Workers(DaemonArgs),
    /// Every failed object of a job with its reason, in path order.
    Errors {
        job: String,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Verification report of a job, with the first failures.
    Report {
        job: String,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Stop dispatching a job's tasks; agents drop the ones they run.
    Pause {
        job: String,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Dispatch a paused job's tasks again.
    Resume {
        job: String,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Install agents on the hosts in `workers` (not in this build).
    Deploy(DaemonArgs),
}

/// How to reach the daemon, and the output format.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The daemon's control socket; default `<workingDir>/ossimportd.sock`.
    #[arg(long, env = "OSSIMPORT_SOCKET")]
    pub socket: Option<PathBuf>,
    /// `sys.properties`, whose `workingDir` holds the socket.
    #[arg(long, env = "OSSIMPORT_SYS_PROPERTIES")]
    pub sys: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
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
    /// No progress display and no resume note; the summary and errors
    /// are still printed.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Paging of a list of failures.
#[derive(Args, Debug, Clone, Default)]
pub struct PageArgs {
    /// At most this many failures (1 to 10000); `errors` without it prints
    /// them all, fetched a page at a time.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: Option<u64>,
    /// Only failures whose path sorts after KEY (the `next` of a previous page).
    #[arg(long, value_name = "KEY")]
    pub after: Option<String>,
}
