//! Command-line definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ossimportctl",
    version = proto::VERSION,
    about = "Migrate files into OSS and S3-compatible storage, verified",
    after_help = "Exit codes: 0 success; 1 the job failed or has failed objects; \
2 usage or configuration error (also an unknown job, or a job that already exists); \
3 the daemon is not running; 4 runtime error; \
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
        /// Do not submit: check the job and list its source here, print
        /// what it would copy, leave out and fail (see `run --dry-run`).
        #[arg(long)]
        dry_run: bool,
        /// With `--dry-run`: list only the first N objects.
        #[arg(long, value_name = "N", requires = "dry_run")]
        sample: Option<u64>,
        /// Return once the job has ended: exit 0 when every object is
        /// verified or skipped, 1 when any failed or its listing failed;
        /// a line on stderr every 30 s meanwhile. Not for an incremental
        /// job, which never ends (`sync --wait` waits for a cut-over).
        #[arg(long, conflicts_with = "dry_run")]
        wait: bool,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Start the daemon in the background (`ossimportd --daemon`), then the
    /// agents deployed on the hosts of `workers`.
    Start {
        #[command(flatten)]
        d: DaemonArgs,
        #[command(flatten)]
        agents: AgentsArgs,
    },
    /// Stop the deployed agents, then the daemon; jobs resume at the next start.
    Stop {
        #[command(flatten)]
        d: DaemonArgs,
        #[command(flatten)]
        agents: AgentsArgs,
    },
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
    /// Agents: state, load and last heartbeat; `add HOST` deploys one,
    /// `remove HOST` revokes one at once.
    Workers {
        #[command(subcommand)]
        action: Option<WorkersCmd>,
        #[command(flatten)]
        d: DaemonArgs,
    },
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
        /// Also write the verification manifest to FILE: one line per
        /// object (CSV; JSON Lines for `.jsonl`), then a summary line with
        /// the SHA-256 of the lines above it.
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// A cut-over of an incremental job: a pass now (a watched job lists
    /// every change seen so far); with --wait, return once each change seen
    /// before the call is verified at the destination (exit 0: nothing
    /// pending or failed).
    Sync {
        job: String,
        /// Wait until the changes seen before the call are copied.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (0: never).
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        timeout: u64,
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
    /// Change a running job's limits: agents apply them within a heartbeat,
    /// and the change is kept with the job (shown by `stat`).
    #[command(
        after_help = "KEYS: workerMaxThroughput (KB/s per executor, 0 for none), workerTaskThreadNum (objects in flight per executor), maxRequestsPerSecond (0 for none), workerMaxThroughputSchedule (e.g. \"08:00,512 18:00,10M 23:00,off\"; none to remove)."
    )]
    Set {
        job: String,
        /// `KEY=VALUE`, one or more.
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
        #[command(flatten)]
        d: DaemonArgs,
    },
    /// Install, enrol and start the agent on every host in `workers`, over
    /// SSH (settings from sys.properties); a second run changes only what
    /// differs.
    Deploy(DeployArgs),
    /// Print a job file with every key, commented, for a sort of job: fill
    /// in the values in upper case and the paths, then `run` it.
    Template {
        #[arg(value_enum)]
        kind: job::config::keys::Template,
    },
    /// Write the man pages or the shell completions into DIR (what the
    /// packages install).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
        dir: PathBuf,
    },
}

/// What `generate` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Generated {
    /// ossimportctl(1), ossimportd(8), ossimport-agent(8),
    /// ossimport-job.cfg(5), ossimport-sys.properties(5).
    Man,
    /// bash, zsh and fish completions of ossimportctl.
    Completions,
}

#[derive(Debug, Subcommand)]
pub enum WorkersCmd {
    /// Add HOST to `workers` and deploy the agent there.
    Add {
        /// `host`, `user@host` or `user@host:port`, as in `workers`.
        host: String,
        #[command(flatten)]
        deploy: DeployArgs,
    },
    /// Revoke HOST's agent key at once (its next request is refused), return
    /// its tasks to pending, drop it from `workers`, and stop and remove the
    /// agent over SSH when the host answers.
    Remove {
        host: String,
        /// The `workers` file; default: next to sys.properties.
        #[arg(long)]
        workers: Option<PathBuf>,
        #[command(flatten)]
        d: DaemonArgs,
    },
}

/// What `deploy` installs, where, and how it trusts the hosts.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// The `workers` file; default: next to sys.properties.
    #[arg(long)]
    pub workers: Option<PathBuf>,
    /// Job files whose store credentials go into the agents' secrets file,
    /// and whose local `srcPrefix` and `destDir` the agents may use
    /// (repeatable); default: the `job.cfg` next to sys.properties.
    #[arg(long = "job", value_name = "FILE")]
    pub job: Vec<PathBuf>,
    /// The user a root login runs the agent as (made a system user where
    /// missing); `root` keeps it root. Other logins run it as themselves.
    #[arg(long, value_name = "USER", default_value = "ossimport")]
    pub agent_user: String,
    /// Another local directory the agents may read and write for jobs
    /// (repeatable; besides the jobs' own): agents take no other.
    #[arg(long = "allow-root", value_name = "DIR")]
    pub allow_root: Vec<PathBuf>,
    /// Install this .deb or .rpm instead of the agent binary.
    #[arg(long, value_name = "FILE")]
    pub package: Option<PathBuf>,
    /// The agent binary to install; default: `ossimport-agent` next to
    /// this ossimportctl.
    #[arg(long, value_name = "FILE")]
    pub agent_bin: Option<PathBuf>,
    /// SSH host keys of the workers; default: `knownHostsFile` of
    /// sys.properties, else ~/.ssh/known_hosts.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Record the host key of a host seen for the first time (a changed key
    /// is refused regardless).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Only rewrite the secrets files (after rotating a key) and restart
    /// the agents whose secrets changed.
    #[arg(long)]
    pub secrets_only: bool,
    /// Seconds to wait for each agent's first heartbeat.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub d: DaemonArgs,
}

impl DeployArgs {
    /// The settings `start`, `stop` and `workers remove` use to reach the
    /// deployed agents.
    pub fn for_agents(d: DaemonArgs, workers: Option<PathBuf>) -> DeployArgs {
        DeployArgs {
            workers,
            job: Vec::new(),
            allow_root: Vec::new(),
            agent_user: "ossimport".into(),
            package: None,
            agent_bin: None,
            known_hosts: None,
            accept_new_host_keys: false,
            secrets_only: false,
            timeout: 60,
            d,
        }
    }
}

/// Whether `start`/`stop` also act on the deployed agents.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentsArgs {
    /// Only the daemon on this machine, not the agents on the workers.
    #[arg(long)]
    pub local_only: bool,
    /// The `workers` file; default: next to sys.properties.
    #[arg(long)]
    pub workers: Option<PathBuf>,
}

/// How to reach the daemon, and the output format.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The daemon's control socket; default `<workingDir>/ossimportd.sock`
    /// of the sys.properties found (see --sys).
    #[arg(long, env = "OSSIMPORT_SOCKET")]
    pub socket: Option<PathBuf>,
    /// `sys.properties`, whose `workingDir` holds the socket; default: the
    /// one next to the job file (`conf/sys.properties` for verbs without
    /// one), else /etc/ossimport/sys.properties.
    #[arg(long, env = "OSSIMPORT_SYS_PROPERTIES")]
    pub sys: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Set by `conn::locate`: the daemon's work directory (its job store).
    #[arg(skip)]
    pub work_dir: Option<PathBuf>,
    /// Set by `conn::locate`: how the socket was found, for messages.
    #[arg(skip)]
    pub found_by: String,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file (`job.cfg` / `local_job.cfg`).
    pub job_cfg: PathBuf,
    /// `sys.properties`; default: the one next to the job file, if any.
    #[arg(long, env = "OSSIMPORT_SYS_PROPERTIES")]
    pub sys: Option<PathBuf>,
    /// Directory for the job store; default: `workingDir` of sys.properties,
    /// else the per-user state directory (`$XDG_STATE_HOME/ossimport`, else
    /// `~/.local/state/ossimport`).
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
    /// Check the job and list its source, print what a run would copy,
    /// leave out and fail, and stop; nothing is written anywhere.
    #[arg(long)]
    pub dry_run: bool,
    /// With `--dry-run`: list only the first N objects.
    #[arg(long, value_name = "N", requires = "dry_run")]
    pub sample: Option<u64>,
    /// At the end, write the verification manifest to FILE (see `report
    /// --manifest`).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Serve Prometheus `/metrics` and the status page on ADDR (e.g.
    /// 127.0.0.1:9750) while the run lasts: plain HTTP, read-only, no login.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
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
