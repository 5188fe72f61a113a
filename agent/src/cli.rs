//! The command line of `ossimport-agent`: here, not in `main.rs`, so that
//! `ossimportctl generate` renders its man page from the same definition.

use std::path::PathBuf;

use clap::Parser;

/// The worker service of ossimport: runs task batches pushed by ossimportd.
#[derive(Debug, Parser)]
#[command(name = "ossimport-agent", version = proto::VERSION)]
pub struct Args {
    /// Create the agent key if missing, print its public key (to append to
    /// the daemon's `agent_keys` file) and exit.
    #[arg(long)]
    pub init: bool,
    /// The agent's ed25519 private key (OpenSSH format, mode 0600).
    #[arg(
        long,
        env = "OSSIMPORT_AGENT_KEY",
        default_value = "/etc/ossimport/agent_ed25519"
    )]
    pub key: PathBuf,
    /// The daemon's agent API, `host:port`.
    #[arg(long, env = "OSSIMPORT_DAEMON", required_unless_present = "init")]
    pub daemon: Option<String>,
    /// The daemon's public key (`ossimportd --init` prints it).
    #[arg(
        long,
        env = "OSSIMPORT_DAEMON_KEY",
        default_value = "/etc/ossimport/daemon_ed25519.pub"
    )]
    pub daemon_key: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "OSSIMPORT_AGENT_LISTEN", default_value = "0.0.0.0:7601")]
    pub listen: String,
    /// `host:port` the daemon reaches this agent at; default: the listen
    /// address (required when listening on 0.0.0.0).
    #[arg(long, env = "OSSIMPORT_AGENT_ADVERTISE")]
    pub advertise: Option<String>,
    /// Name shown by `ossimportctl workers`; default: the host name.
    #[arg(long, env = "OSSIMPORT_AGENT_NAME")]
    pub name: Option<String>,
    /// Tasks run at once.
    #[arg(long, env = "OSSIMPORT_AGENT_TASKS", default_value_t = 4)]
    pub tasks: u32,
    /// A local directory jobs may read from or write into, with what lies
    /// below it (repeatable; comma-separated in the environment). None: the
    /// agent takes no job with a local source or destination, so a leaked
    /// daemon key cannot make it read or write anywhere.
    #[arg(
        long = "allow-root",
        env = "OSSIMPORT_AGENT_ALLOW_ROOT",
        value_delimiter = ','
    )]
    pub allow_root: Vec<PathBuf>,
    /// `accessKeyId=secretKey` lines for the stores of the jobs (mode 0600).
    #[arg(long, env = "OSSIMPORT_AGENT_SECRETS")]
    pub secrets: Option<PathBuf>,
    /// Milliseconds between heartbeats. One that fails is tried again
    /// sooner, from 50 ms doubling up to this.
    #[arg(long, env = "OSSIMPORT_AGENT_HEARTBEAT_MS", default_value_t = 3000)]
    pub heartbeat_ms: u64,
    /// Log as JSON lines.
    #[arg(long, env = "OSSIMPORT_LOG_JSON")]
    pub log_json: bool,
    /// Detach from the terminal once the keys are read and the port is
    /// bound (how `ossimportctl deploy` starts it where systemd does not
    /// run); needs --pid-file and --log-file.
    #[arg(long, requires_all = ["pid_file", "log_file"])]
    pub detach: bool,
    /// With --detach: the pid file (refused while another agent holds it).
    #[arg(long, env = "OSSIMPORT_AGENT_PID_FILE")]
    pub pid_file: Option<PathBuf>,
    /// With --detach: where the log goes (appended).
    #[arg(long, env = "OSSIMPORT_AGENT_LOG_FILE")]
    pub log_file: Option<PathBuf>,
}
