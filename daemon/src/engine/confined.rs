//! Privilege separation for the worker on the master.
//!
//! A daemon running as root must not open, for a job an unprivileged user
//! submitted, anything that user could not open. Checking permissions in
//! the daemon (`access::file_rule`) is a second line; the first is the
//! kernel's: the worker on the master runs such a job's tasks in a child
//! process, the daemon's own binary started again with
//! `--confined-worker`, under the submitter's uid, gid and supplementary
//! groups (as OpenSSH separates its privileges). One child per user, kept
//! while the daemon runs.
//!
//! The daemon talks to it as to an agent, over the child's stdin and stdout
//! as JSON lines: it hands over a task with its job, or cancels one, or
//! changes a job's limits; the child answers with the task's events, each
//! tagged with the task, then `done`, and with its byte counter. Its events
//! go to the same recorder and through the same checks as an agent's
//! (`engine::evidence`): the child is not trusted either.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::worker::{Executor, Progress};
use proto::job::{Event, JobSpec, LiveLimits, TaskSpec};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The hidden flag of `ossimportd` that makes it a confined worker.
pub const FLAG: &str = "--confined-worker";

/// How long a cancelled task may take to stop in the child before its
/// events are no longer waited for.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// The longest line taken from a child (an event names one object).
const MAX_LINE: u64 = 1 << 20;

/// Daemon to child.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "snake_case")]
enum ToChild {
    Run { job: Box<JobSpec>, task: TaskSpec },
    Cancel { task_id: i64 },
    Limits { limits: LiveLimits },
}

/// Child to daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "snake_case")]
enum FromChild {
    Event {
        task_id: i64,
        event: Event,
    },
    Done {
        task_id: i64,
    },
    /// Its byte counter and the state of the endpoints it talks to (see
    /// `storage::health`), every second.
    Bytes {
        bytes: u64,
        #[serde(default)]
        endpoints: Vec<proto::api::EndpointHealth>,
    },
}

/// Most endpoints taken from a child's report (a job names a few).
const MAX_ENDPOINTS: usize = 64;

/// A task handed to the child: where its events go, and who waits for its
/// end.
struct Running {
    events: mpsc::Sender<Event>,
    done: oneshot::Sender<()>,
}

/// The daemon's side of one user's confined worker.
pub struct Child {
    pub uid: u32,
    to: mpsc::UnboundedSender<ToChild>,
    running: Mutex<HashMap<i64, Running>>,
    /// Cancelled when the child has exited (or its pipes broke).
    gone: CancellationToken,
    /// What it last said of its endpoints.
    endpoints: Mutex<Vec<proto::api::EndpointHealth>>,
}

impl Child {
    /// Starts `exe --confined-worker` as `uid` with its primary group and
    /// supplementary groups from the user databases. `progress` gets the
    /// bytes the child moves. Long because every step of dropping to the
    /// user (groups, ids, no_new_privs, descriptors, environment) is spelled
    /// out here, in the order it must happen.
    pub fn spawn(
        exe: &Path,
        uid: u32,
        work_dir: &Path,
        progress: Arc<Progress>,
    ) -> std::io::Result<Arc<Child>> {
        let gid = crate::access::Caller::of_uid(uid).gid;
        if gid == u32::MAX {
            return Err(std::io::Error::other(format!(
                "uid {uid} is not in the password database"
            )));
        }
        let groups: Vec<libc::gid_t> = crate::access::groups_of(uid, gid);
        let mut cmd = std::process::Command::new(exe);
        cmd.arg(FLAG)
            .arg("--work-dir")
            .arg(work_dir)
            .current_dir("/")
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // What a worker needs from the daemon's environment: logging and
        // the TLS trust store. Nothing else (credentials included) passes.
        for k in [
            "PATH",
            "LANG",
            "TZ",
            "OSSIMPORT_LOG",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "AWS_CA_BUNDLE",
        ] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        // SAFETY: between fork and exec the closure only makes system calls
        // (setgroups, setgid, setuid, prctl, close_range) on data prepared
        // before the fork; nothing allocates.
        unsafe {
            cmd.pre_exec(move || drop_privileges(uid, gid, &groups));
        }
        let mut proc = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()?;
        let (stdin, stdout, stderr) = (
            proc.stdin.take().expect("piped"),
            proc.stdout.take().expect("piped"),
            proc.stderr.take().expect("piped"),
        );
        let (to, mut rx) = mpsc::unbounded_channel::<ToChild>();
        let child = Arc::new(Child {
            uid,
            to,
            running: Mutex::new(HashMap::new()),
            gone: CancellationToken::new(),
            endpoints: Mutex::new(Vec::new()),
        });
        info!(uid, pid = proc.id(), "Confined worker started.");
        // Writer: one JSON line per message.
        let gone = child.gone.clone();
        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(m) = rx.recv().await {
                let mut line = serde_json::to_vec(&m).expect("serializable");
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() {
                    break;
                }
            }
            gone.cancel();
        });
        // Its log, into ours.
        tokio::spawn(async move {
            let mut from = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match (&mut from)
                    .take(16 << 10)
                    .read_until(b'\n', &mut line)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let l = String::from_utf8_lossy(&line);
                info!(uid, "confined worker: {}", l.trim_end().escape_debug());
            }
        });
        // Reader: events to their tasks; when it ends the child is gone and
        // every task it held ends unreported (the store takes them back).
        let me = Arc::clone(&child);
        tokio::spawn(async move {
            let mut from = BufReader::new(stdout);
            let mut last_bytes = 0u64;
            let mut line = Vec::new();
            loop {
                // One line, at most MAX_LINE: the child runs as the user,
                // who may have taken it over; it gets nothing unbounded.
                line.clear();
                match (&mut from)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut line)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.last() != Some(&b'\n') => {
                        warn!(uid, "Confined worker sent an overlong line; stopping it.");
                        break;
                    }
                    Ok(_) => {}
                }
                let msg: FromChild = match serde_json::from_slice(&line) {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(uid, error = %e, "Confined worker sent a bad line; stopping it.");
                        break;
                    }
                };
                match msg {
                    FromChild::Event { task_id, event } => {
                        let tx = me.running().get(&task_id).map(|r| r.events.clone());
                        if let Some(tx) = tx {
                            let _ = tx.send(event).await;
                        }
                    }
                    FromChild::Done { task_id } => {
                        if let Some(r) = me.running().remove(&task_id) {
                            let _ = r.done.send(());
                        }
                    }
                    FromChild::Bytes { bytes, endpoints } => {
                        *me.endpoints.lock().unwrap_or_else(|p| p.into_inner()) =
                            endpoints.into_iter().take(MAX_ENDPOINTS).collect();
                        progress
                            .bytes
                            .fetch_add(bytes.saturating_sub(last_bytes), Ordering::Relaxed);
                        last_bytes = bytes.max(last_bytes);
                    }
                }
            }
            me.gone.cancel();
            me.running().clear();
            let _ = proc.start_kill();
            match proc.wait().await {
                Ok(s) => warn!(uid, status = %s, "Confined worker exited."),
                Err(e) => warn!(uid, error = %e, "Confined worker lost."),
            }
        });
        Ok(child)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The endpoints it talks to, as it last said (nothing once it is gone).
    pub fn endpoints(&self) -> Vec<proto::api::EndpointHealth> {
        if !self.alive() {
            return Vec::new();
        }
        self.endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether it still runs.
    pub fn alive(&self) -> bool {
        !self.gone.is_cancelled()
    }

    /// Runs `task` in the child, sending its events to `events`, and
    /// returns when the child says it ended (or is gone). Like
    /// `Executor::run_task`, it stops when `cancel` fires.
    pub async fn run_task(
        &self,
        job: &JobSpec,
        task: TaskSpec,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) {
        let task_id = task.task_id;
        let (done, mut ended) = oneshot::channel();
        self.running().insert(task_id, Running { events, done });
        let sent = self.to.send(ToChild::Run {
            job: Box::new(job.clone()),
            task,
        });
        if sent.is_err() || !self.alive() {
            self.running().remove(&task_id);
            return;
        }
        tokio::select! {
            _ = &mut ended => return,
            _ = self.gone.cancelled() => {}
            _ = cancel.cancelled() => {
                let _ = self.to.send(ToChild::Cancel { task_id });
                tokio::select! {
                    _ = tokio::time::sleep(CANCEL_GRACE) => {}
                    _ = &mut ended => return,
                    _ = self.gone.cancelled() => {}
                }
            }
        }
        self.running().remove(&task_id);
    }

    /// A job's new limits, for its tasks in the child.
    pub fn set_limits(&self, limits: &LiveLimits) {
        let _ = self.to.send(ToChild::Limits {
            limits: limits.clone(),
        });
    }
}

/// In the child between fork and exec: becomes `uid`:`gid` with `groups`,
/// for good (a later `setuid(0)` must fail), and closes every inherited
/// descriptor but stdio at exec.
fn drop_privileges(uid: u32, gid: u32, groups: &[libc::gid_t]) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls on values owned by the caller.
    unsafe {
        check(libc::setgroups(groups.len(), groups.as_ptr()))?;
        check(libc::setgid(gid))?;
        check(libc::setuid(uid))?;
        if libc::setuid(0) == 0 {
            return Err(std::io::Error::other("could not drop root"));
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        // Descriptors opened without CLOEXEC (SQLite's, a library's) are
        // not inherited; stdio is.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
}

/// `ossimportd --confined-worker`: runs tasks from stdin until it closes.
/// Reads stay held to what this user may read by the kernel; the daemon's
/// work directory is refused besides (`access::file_rule`), in case it is
/// readable to the user.
pub fn child_main(work_dir: PathBuf) -> anyhow::Result<()> {
    // SAFETY: prctl with constant arguments; no core dumps of a process
    // that holds the job's credentials.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        anyhow::bail!("{FLAG} is started by the daemon for one user, never as root");
    }
    let rt = proto::runtime::build()?;
    rt.block_on(child_loop(work_dir))
}

async fn child_loop(work_dir: PathBuf) -> anyhow::Result<()> {
    // SAFETY: no preconditions.
    let me = crate::access::Caller {
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
    };
    let progress = Arc::new(Progress::default());
    let (out, mut out_rx) = mpsc::unbounded_channel::<FromChild>();
    // Writer: stdout carries only the protocol (the log goes to stderr).
    let writer = std::thread::spawn(move || {
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        while let Some(m) = out_rx.blocking_recv() {
            let ok = serde_json::to_writer(&mut stdout, &m).is_ok()
                && stdout.write_all(b"\n").is_ok()
                && (!out_rx.is_empty() || stdout.flush().is_ok());
            if !ok {
                break;
            }
        }
        let _ = stdout.flush();
    });
    {
        let (out, progress) = (out.clone(), Arc::clone(&progress));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let bytes = progress.bytes.load(Ordering::Relaxed);
                let endpoints = progress.endpoints();
                if out.send(FromChild::Bytes { bytes, endpoints }).is_err() {
                    break;
                }
            }
        });
    }
    let rule: agent::worker::Confine = Arc::new(crate::access::file_rule(me, work_dir));
    let executors = agent::worker::Executors::default();
    let mut tasks: HashMap<i64, CancellationToken> = HashMap::new();
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<i64>();
    let all = CancellationToken::new();
    // Reader: a thread, stdin being blocking; its channel ends at EOF.
    let (line_tx, mut lines) = mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for l in std::io::stdin().lock().lines() {
            let Ok(l) = l else { break };
            if line_tx.blocking_send(l).is_err() {
                break;
            }
        }
    });
    loop {
        let line = tokio::select! {
            l = lines.recv() => match l {
                Some(l) => l,
                None => break,
            },
            Some(id) = ended_rx.recv() => {
                tasks.remove(&id);
                continue;
            }
        };
        let msg: ToChild = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => anyhow::bail!("bad message from the daemon: {e}"),
        };
        match msg {
            ToChild::Run { job, task } => {
                let (ex, _) = executors.get(&job, || {
                    Executor::new((*job).clone(), Arc::clone(&progress))
                        .with_confine(Arc::clone(&rule))
                });
                let task_id = task.task_id;
                let cancel = all.child_token();
                tasks.insert(task_id, cancel.clone());
                let (out, ended) = (out.clone(), ended_tx.clone());
                tokio::spawn(async move {
                    let (tx, mut rx) = mpsc::channel::<Event>(2_000);
                    let run = ex.run_task(task, tx, cancel);
                    let forward = async {
                        while let Some(event) = rx.recv().await {
                            let _ = out.send(FromChild::Event { task_id, event });
                        }
                    };
                    tokio::join!(run, forward);
                    let _ = out.send(FromChild::Done { task_id });
                    let _ = ended.send(task_id);
                });
            }
            ToChild::Cancel { task_id } => {
                if let Some(c) = tasks.get(&task_id) {
                    c.cancel();
                }
            }
            ToChild::Limits { limits } => {
                executors.set_limits(&limits);
            }
        }
    }
    // The daemon closed the pipe (it stops): stop what runs and leave.
    all.cancel();
    drop(out);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(writer);
    Ok(())
}
