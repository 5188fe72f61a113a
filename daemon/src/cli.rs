//! The command line of `ossimportd`: here, not in `main.rs`, so that
//! `ossimportctl generate` renders its man page from the same definition.

use std::path::PathBuf;

use clap::Parser;

/// The ossimport master: keeps jobs in SQLite, dispatches tasks to agents,
/// serves ossimportctl on a Unix socket.
#[derive(Debug, Parser)]
#[command(name = "ossimportd", version = proto::VERSION)]
pub struct Args {
    /// `sys.properties` (workingDir and worker settings).
    #[arg(long, env = "OSSIMPORT_SYS_PROPERTIES")]
    pub sys: Option<PathBuf>,
    /// The `workers` host list; default: `workers` next to sys.properties.
    #[arg(long, env = "OSSIMPORT_WORKERS")]
    pub workers: Option<PathBuf>,
    /// Work directory; default: `workingDir` of sys.properties.
    #[arg(long, env = "OSSIMPORT_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Control socket; default: `<workDir>/ossimportd.sock`.
    #[arg(long, env = "OSSIMPORT_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Group (name or id) allowed on the control socket (mode 0660): its
    /// members are operators (they submit jobs and manage their own).
    #[arg(long, env = "OSSIMPORT_SOCKET_GROUP")]
    pub socket_group: Option<String>,
    /// Group (name or id) whose members are administrators, as root and the
    /// daemon's own user are: they enrol and revoke agents, deploy, stop the
    /// daemon and act on every job. They reach the socket through
    /// `--socket-group` (be in it too), or, without one, this group is the
    /// socket's.
    #[arg(long, env = "OSSIMPORT_ADMIN_GROUP")]
    pub admin_group: Option<String>,
    /// Address of the agent API; default: `daemonAddress` of sys.properties
    /// (its port, and its host when that is an address of this machine,
    /// else every interface), else 127.0.0.1:7600.
    #[arg(long, env = "OSSIMPORT_LISTEN")]
    pub listen: Option<String>,
    /// Serve Prometheus `/metrics` and the status page on this address
    /// (plain HTTP, read-only, no login: keep it on loopback or behind a
    /// proxy). Off by default.
    #[arg(long, env = "OSSIMPORT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// The daemon's private key; default `<workDir>/daemon_ed25519`.
    #[arg(long, env = "OSSIMPORT_DAEMON_KEY_FILE")]
    pub key: Option<PathBuf>,
    /// Enrolled agent public keys; default `<workDir>/agent_keys`.
    #[arg(long, env = "OSSIMPORT_AGENT_KEYS")]
    pub agent_keys: Option<PathBuf>,
    /// Seconds a task stays leased to an agent without a heartbeat.
    #[arg(long, env = "OSSIMPORT_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Milliseconds without a heartbeat before an agent counts as down.
    #[arg(long, env = "OSSIMPORT_AGENT_TIMEOUT_MS", default_value_t = 15000)]
    pub agent_timeout_ms: u64,
    /// Internal: run as the confined worker of one user (started by the
    /// daemon itself, see `engine::confined`).
    #[arg(long, hide = true)]
    pub confined_worker: bool,
    /// Create the daemon key if missing, print its public key and exit.
    #[arg(long)]
    pub init: bool,
    /// Detach from the terminal (pid file and log file in the work directory
    /// unless given).
    #[arg(long)]
    pub daemon: bool,
    #[arg(long, env = "OSSIMPORT_PID_FILE")]
    pub pid_file: Option<PathBuf>,
    #[arg(long, env = "OSSIMPORT_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, env = "OSSIMPORT_LOG_JSON")]
    pub log_json: bool,
    /// Copy on this machine too, as the original's master did: `auto` when
    /// the `workers` file is absent or empty or lists this machine.
    #[arg(long, env = "OSSIMPORT_LOCAL_WORKER", value_enum, default_value_t = LocalWorker::Auto)]
    pub local_worker: LocalWorker,
    /// Tasks the worker on this machine runs at once (each with
    /// `workerTaskThreadNum` objects in flight).
    #[arg(long, env = "OSSIMPORT_LOCAL_TASKS", default_value_t = 2)]
    pub local_tasks: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalWorker {
    Auto,
    On,
    Off,
}
