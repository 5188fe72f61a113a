//! `ossimportd`: start-up, the shared state, and shutdown.
//!
//! [`run`] takes already-bound listeners (the agent API on TCP, the control
//! API on a Unix socket) and a shutdown future, so tests run the daemon
//! in-process on `127.0.0.1:0` and the binary only adds flags, logging and
//! binding. Start-up is linear: open the store, load the keys, reload every
//! job, give dispatched tasks a fresh lease, then serve.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use proto::auth::{Signer, Verifier};
use proto::server::{self, Limits};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::jobs::JobRt;
use crate::scheduler::{self, AgentEntry};
use crate::store::{Store, StoreError};

/// Name of the job store inside the work directory (shared with `run`).
pub const STORE_FILE: &str = "ossimport.db";
/// Name of the control socket inside the work directory.
pub const SOCKET_FILE: &str = "ossimportd.sock";
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
    /// Group allowed on the control socket besides our own user.
    pub socket_gid: Option<u32>,
    /// How long a dispatched task stays with an agent without a heartbeat.
    pub lease: Duration,
    /// An agent not heard from for this long is shown down and gets nothing.
    pub agent_timeout: Duration,
    pub batch_max: usize,
    /// Accepted clock difference on signed requests.
    pub auth_window: Duration,
    /// Scheduler pass interval when nothing wakes it earlier.
    pub tick: Duration,
    pub push_timeout: Duration,
    /// Pause before pushing again to an agent whose last push failed.
    pub push_backoff: Duration,
    /// Tasks the worker on the master runs at once; `None`: no local
    /// worker (every task goes to agents).
    pub local_worker: Option<u32>,
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
            socket_gid: None,
            lease: Duration::from_secs(30),
            agent_timeout: Duration::from_secs(15),
            batch_max: 16,
            auth_window: Duration::from_secs(120),
            tick: Duration::from_millis(500),
            push_timeout: Duration::from_secs(30),
            push_backoff: Duration::from_secs(2),
            local_worker: None,
        }
    }
}

/// The two listeners the daemon serves.
pub struct Listeners {
    pub ctl: UnixListener,
    pub agents: TcpListener,
}

/// Everything the handlers and the scheduler share.
pub struct State {
    pub config: Config,
    pub store: Arc<Store>,
    pub signer: Signer,
    /// Trusts the enrolled agents' keys.
    pub verifier: Verifier,
    /// Enrolled agents by fingerprint. A std mutex: never held across await.
    agents: Mutex<HashMap<String, AgentEntry>>,
    /// Jobs with a loaded plan, by job id.
    jobs: Mutex<HashMap<i64, JobRt>>,
    /// Wakes the scheduler early.
    pub wake: Notify,
    /// Root of every subsystem's token.
    pub cancel: CancellationToken,
    /// Every background task (pushes, scanners) is tracked here.
    pub tracker: TaskTracker,
    /// Last reload of the agent keys file (rate limit).
    keys_loaded: Mutex<Option<std::time::Instant>>,
    /// The worker on the master (idle unless `config.local_worker`).
    pub local: crate::local_worker::LocalWorker,
}

impl State {
    pub fn agents(&self) -> MutexGuard<'_, HashMap<String, AgentEntry>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn jobs(&self) -> MutexGuard<'_, HashMap<i64, JobRt>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the enrolled agent keys; new ones become trusted. Returns
    /// whether it read the file (at most once a second).
    pub fn reload_agent_keys(&self, force: bool) -> bool {
        {
            let mut last = self.keys_loaded.lock().unwrap_or_else(|p| p.into_inner());
            if !force && last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return false;
            }
            *last = Some(std::time::Instant::now());
        }
        let text = match std::fs::read_to_string(&self.config.agent_keys) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                warn!(file = %self.config.agent_keys.display(), error = %e, "Cannot read enrolled agent keys.");
                return true;
            }
        };
        match proto::auth::parse_public_keys(&text) {
            Ok(keys) => {
                let mut agents = self.agents();
                for key in keys {
                    let fp = proto::auth::fingerprint(&key);
                    let name = if key.comment().is_empty() {
                        fp.clone()
                    } else {
                        key.comment().to_string()
                    };
                    agents
                        .entry(fp.clone())
                        .or_insert_with(|| AgentEntry::enrolled(&name, &fp));
                    self.verifier.trust(key);
                }
            }
            Err(e) => {
                warn!(file = %self.config.agent_keys.display(), error = %e, "Enrolled agent keys file is malformed.")
            }
        }
        true
    }
}

/// Runs the daemon until `shutdown` completes, then shuts down in order:
/// stop accepting, cancel, drain HTTP, let scanners and pushes finish their
/// current step, close the store.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("creating work directory {}", config.work_dir.display()))?;
    let store_path = config.work_dir.join(STORE_FILE);
    let store = Arc::new(Store::open(&store_path)?);
    restrict(&store_path);
    info!(path = %store_path.display(), "Opened job store.");

    let signer = Signer::load_or_generate(&config.key_file, "ossimportd")
        .context("loading the daemon key")?;
    info!(fingerprint = %signer.fingerprint(), "Loaded daemon key.");
    let verifier = Verifier::new(signer.fingerprint(), config.auth_window);
    let state = Arc::new(State {
        store,
        signer,
        verifier,
        agents: Mutex::new(HashMap::new()),
        jobs: Mutex::new(HashMap::new()),
        wake: Notify::new(),
        cancel: CancellationToken::new(),
        tracker: TaskTracker::new(),
        keys_loaded: Mutex::new(None),
        local: Default::default(),
        config,
    });
    state.reload_agent_keys(true);
    info!(agents = state.agents().len(), "Loaded enrolled agent keys.");

    crate::jobs::load_all(&state).await;
    let grace = unix_now() + state.config.lease.as_secs() as i64;
    let extended = blocking(&state.store, move |s| s.extend_leases(grace)).await?;
    if extended > 0 {
        info!(
            tasks = extended,
            "Dispatched tasks wait one lease for their agents to check in."
        );
    }

    // The control socket's callers are local users the kernel named
    // (checked per request); job files travel in its bodies.
    let ctl_limits = Limits {
        max_body: 16 << 20,
        max_connections: 64,
        max_per_peer: 64,
        request_deadline: Duration::from_secs(60),
        drain: Duration::from_secs(10),
        gate: None,
    };
    // The agent port is open to the network: nothing but headers is read
    // before the signer, timestamp and nonce pass (see `agent_api::gate`).
    let agent_limits = Limits {
        max_body: 0,
        max_connections: 256,
        max_per_peer: 16,
        request_deadline: Duration::from_secs(60),
        drain: Duration::from_secs(10),
        gate: Some(crate::agent_api::gate(Arc::clone(&state))),
    };
    let http_cancel = state.cancel.child_token();
    let ctl_server = tokio::spawn(server::serve_unix(
        listeners.ctl,
        crate::ctl_api::handler(Arc::clone(&state)),
        ctl_limits,
        http_cancel.clone(),
    ));
    let agent_server = tokio::spawn(server::serve_tcp(
        listeners.agents,
        crate::agent_api::handler(Arc::clone(&state)),
        agent_limits,
        http_cancel.clone(),
    ));
    let sched = tokio::spawn(scheduler::run(Arc::clone(&state)));
    let local = state
        .config
        .local_worker
        .map(|n| tokio::spawn(crate::local_worker::run(Arc::clone(&state), n)));
    info!("Daemon ready.");

    tokio::select! {
        _ = shutdown => info!("Shutdown requested."),
        _ = state.cancel.cancelled() => info!("Shutdown requested over the control socket."),
    }
    state.cancel.cancel();
    let _ = ctl_server.await;
    let _ = agent_server.await;
    info!("Stopped serving.");
    let _ = sched.await;
    if let Some(l) = local {
        let _ = l.await;
    }
    state.tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), state.tracker.wait())
        .await
        .is_err()
    {
        warn!("Background work still running at the deadline; its tasks keep their leases.");
    }
    info!("Daemon stopped; job store closed.");
    Ok(())
}

/// Binds the control socket: refuses to start while another daemon answers
/// on it, removes a stale file, and sets mode 0600 (0660 with a group).
pub fn bind_socket(
    path: &Path,
    gid: Option<u32>,
) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another ossimportd is already listening on {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating socket directory {}", dir.display()))?;
    }
    // Created with no access at all, then opened up, so no other user can
    // connect in between.
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above; restores the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("giving {} to group {gid}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    listener
        .set_nonblocking(true)
        .context("socket to non-blocking")?;
    Ok(listener)
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
