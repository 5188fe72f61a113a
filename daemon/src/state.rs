//! What the engine, the control API and the agent API share: the daemon's
//! configuration, the job store handle, its keys and the agent table. The
//! jobs being run are the engine's ([`crate::engine::Engine`]). [`crate::server`] builds it for `ossimportd`,
//! [`State::standalone`] for `ossimportctl run`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::auth::{Signer, Verifier};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::{AgentEntry, Agents};
use crate::store::{Store, StoreError};

pub use proto::control::{SOCKET_FILE, STORE_FILE};
/// Default key files inside the work directory.
pub const KEY_FILE: &str = "daemon_ed25519";
pub const AGENT_KEYS_FILE: &str = "agent_keys";

/// How the daemon runs; built once by `main` (or a test).
#[derive(Clone, Debug)]
pub struct Config {
    /// `sys.properties`, handed to every job's planning.
    pub sys: Option<PathBuf>,
    /// Job store and job copies live here.
    pub work_dir: PathBuf,
    /// The daemon's private key (signs requests to agents).
    pub key_file: PathBuf,
    /// Enrolled agents: `ssh-ed25519 AAAA... name` lines. Re-read when an
    /// unknown key knocks, so agents can be enrolled while jobs run.
    pub agent_keys: PathBuf,
    /// Hosts of the `workers` file: `ossimportctl workers` lists the ones
    /// no agent has checked in from.
    pub workers: Vec<String>,
    /// The `workers` file, read again by every `ossimportctl workers` (so
    /// `workers add` and `remove` show at once); `workers` when it cannot be.
    pub workers_file: Option<PathBuf>,
    /// Group allowed on the control socket besides our own user: operators.
    pub socket_gid: Option<u32>,
    /// Group whose members are administrators (`--admin-group`).
    pub admin_gid: Option<u32>,
    /// How long a dispatched task stays with an agent without a heartbeat.
    pub lease: Duration,
    /// An agent not heard from for this long is shown down and gets nothing.
    pub agent_timeout: Duration,
    pub batch_max: usize,
    /// Scheduler pass interval when nothing wakes it earlier.
    pub tick: Duration,
    pub push_timeout: Duration,
    /// Pause before pushing again to an agent whose last push failed.
    pub push_backoff: Duration,
    /// Tasks the worker on the master runs at once; `None`: no local
    /// worker (every task goes to agents).
    pub local_worker: Option<u32>,
    /// The daemon's own binary, when it runs as root: the worker on the
    /// master runs a job an unprivileged user submitted in a child started
    /// from it under that user (`engine::confined`). `None`: in process,
    /// with `access::file_rule` as the only limit.
    pub confine_exe: Option<PathBuf>,
    /// Start every job of the store at start-up (the daemon). A standalone
    /// run starts only the job it was given.
    pub reload_jobs: bool,
}

impl Config {
    /// Defaults for a work directory; flags override fields.
    pub fn new(work_dir: &Path, sys: Option<PathBuf>) -> Config {
        Config {
            sys,
            work_dir: work_dir.to_path_buf(),
            key_file: work_dir.join(KEY_FILE),
            agent_keys: work_dir.join(AGENT_KEYS_FILE),
            workers: Vec::new(),
            workers_file: None,
            socket_gid: None,
            admin_gid: None,
            lease: Duration::from_secs(30),
            agent_timeout: Duration::from_secs(15),
            batch_max: 16,
            tick: Duration::from_millis(500),
            push_timeout: Duration::from_secs(30),
            push_backoff: Duration::from_secs(2),
            local_worker: None,
            confine_exe: None,
            reload_jobs: true,
        }
    }
}

/// How many `submit --wait` answers a daemon holds at once: the control
/// socket takes 64 connections, and a member of the socket's group holding
/// all of them with waits would leave none for an administrator.
pub const WAITERS: usize = 16;

/// Everything the handlers and the scheduler share.
pub struct State {
    pub config: Config,
    pub store: Arc<Store>,
    pub signer: Signer,
    /// Trusts the enrolled agents' keys.
    pub verifier: Verifier,
    /// Enrolled agents.
    pub registry: Agents,
    /// Wakes the scheduler early.
    pub wake: Notify,
    /// Counts up after a job's state changed, a pass began or ended, or
    /// leased tasks finished, were released or expired: a watcher (`run`'s
    /// wait for the end) never misses a change made between its look and
    /// its wait.
    pub job_changed: tokio::sync::watch::Sender<u64>,
    /// The `submit --wait` answers held until a job ends: at most
    /// [`WAITERS`] at once (`ctl_api::wait_end`).
    pub waiters: tokio::sync::Semaphore,
    /// Root of every subsystem's token.
    pub cancel: CancellationToken,
    /// Every background task (pushes, scanners) is tracked here.
    pub tracker: TaskTracker,
    /// Kept TLS connections to each agent (by fingerprint), see
    /// [`State::channel_to_agent`].
    channels: std::sync::Mutex<HashMap<String, Arc<proto::client::Channel>>>,
}

impl State {
    /// The enrolled agents' table.
    pub fn agents(&self) -> MutexGuard<'_, HashMap<String, AgentEntry>> {
        self.registry.table()
    }

    /// Whether the agent key `fingerprint` is enrolled now; an unknown key
    /// makes the enrolment file be read again (at most once a second), so
    /// an agent enrolled while the daemon runs is let in without a restart.
    pub fn agent_trusted(&self, fingerprint: &str) -> bool {
        self.verifier.knows(fingerprint)
            || (self.reload_agent_keys(false) && self.verifier.knows(fingerprint))
    }

    /// The channel for pushing to the agent `fingerprint` at `addr` (pinned
    /// to its enrolled key; its connections kept between pushes), or `None`
    /// when it is not enrolled. A channel is made again when the agent's
    /// address changed, and dropped (its connections with it) once its key
    /// is no longer enrolled.
    pub fn channel_to_agent(
        &self,
        fingerprint: &str,
        addr: &str,
    ) -> Option<Arc<proto::client::Channel>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let Some(key) = self.verifier.key(fingerprint) else {
            channels.remove(fingerprint);
            return None;
        };
        if let Some(c) = channels.get(fingerprint)
            && c.addr() == addr
        {
            return Some(Arc::clone(c));
        }
        match proto::tls::client_config(&self.signer, &key) {
            Ok(config) => {
                let c = Arc::new(proto::client::Channel::tls(addr.to_string(), None, config));
                channels.insert(fingerprint.to_string(), Arc::clone(&c));
                Some(c)
            }
            Err(e) => {
                tracing::warn!(agent = fingerprint, error = %e, "No TLS configuration for the agent.");
                None
            }
        }
    }

    /// Tells watchers of [`State::job_changed`] to look again.
    pub fn jobs_changed(&self) {
        self.job_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Reads the `agent_keys` file again (see [`Agents::reload_keys`]).
    pub fn reload_agent_keys(&self, force: bool) -> bool {
        self.registry.reload_keys(&self.verifier, force)
    }

    /// The shared state of a daemon over an open store.
    pub fn new(config: Config, store: Arc<Store>, signer: Signer) -> Arc<State> {
        let verifier = Verifier::default();
        Arc::new(State {
            store,
            signer,
            verifier,
            registry: Agents::new(config.agent_keys.clone()),
            wake: Notify::new(),
            job_changed: tokio::sync::watch::Sender::new(0),
            waiters: tokio::sync::Semaphore::new(WAITERS),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            channels: Default::default(),
            config,
        })
    }

    /// The state of `ossimportctl run`: the same engine with the local
    /// worker as its only executor. No agent port is served, so its key is
    /// a throw-away one nobody trusts and no key file is written.
    pub fn standalone(config: Config, store: Arc<Store>) -> Arc<State> {
        State::new(config, store, Signer::random())
    }
}

/// Runs a store call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let s = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Makes a file private to its owner (the store and job copies hold
/// credentials).
pub fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
