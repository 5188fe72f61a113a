//! The job engine: one owner of a job's life for `ossimportd` and
//! `ossimportctl run` alike. It scans, leases, requeues, records results,
//! finishes, retries, pauses and cleans; the two modes differ only in how
//! leased tasks reach an executor ([`schedule::Dispatch`]: in memory to the
//! local worker, or pushed over signed HTTP to agents). Every event, from
//! either, goes through the one [`recorder`] with the lease filter in front.
//!
//! Every change of a job's state is decided by the pure
//! [`lifecycle::next`] and carried out by [`change`], one change at a time.
//!
//! At submit the daemon keeps its own copy of the job file (mode 0600) in
//! `<workDir>/jobs/<id>/job.cfg`, so a restart plans the job exactly as it
//! was submitted even if the original file changed or moved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use proto::api::{JobStatus, TaskProgress};
use proto::job::JobSpec;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::plan;
use crate::preflight::Preflight;
use crate::scanner::{self, ScanConfig};
use crate::state::{State, blocking, restrict, unix_now};
use crate::store::{JobRow, JobState, Retried, Store, StoreError};

pub mod confined;
pub mod evidence;
pub mod lifecycle;
pub mod limits;
pub mod local;
pub mod push;
pub mod recorder;
pub mod scan_slot;
pub mod schedule;
pub mod watch;

use lifecycle::{Effect, Event};
use local::LocalWorker;
pub use recorder::Live;
use recorder::Recorder;

/// A job whose plan is loaded.
pub struct JobRt {
    /// With credentials: never sent as is (see `push::for_agent`).
    pub spec: JobSpec,
    /// How to list it, for a scan started again (`retry`, `resume`).
    pub scan: ScanConfig,
    /// Stops this job's scanner.
    pub scan_cancel: CancellationToken,
    /// Whether a scanner runs for this job: one per job, and a start asked
    /// for while one ends is kept (`scan_slot`).
    pub scanning: Arc<scan_slot::ScanSlot>,
    /// Counters for progress displays.
    pub live: Arc<Live>,
    /// What `set` and the bandwidth schedule change.
    pub tuning: limits::Tuning,
    /// Who submitted it (uid, user name): what the daemon reads for the
    /// job is held to what they could read (`access::file_rule`).
    pub owner: Option<(u32, String)>,
    /// `incrementalMode=watch`: the watch of its source tree.
    pub watch: Option<Arc<watch::Watch>>,
    /// `sync` asked for a pass now (a rescan job: the next starts as soon
    /// as the running one ends).
    pub sync_now: Arc<AtomicBool>,
}

/// The job engine over a daemon's shared state: the jobs being run, the
/// recorder and the worker on the master. The scheduler, the executors'
/// reports and the control handlers all go through it.
pub struct Engine {
    pub state: Arc<State>,
    /// Jobs with a loaded plan, by job id. A std mutex: never held across
    /// an await.
    jobs: Mutex<HashMap<i64, JobRt>>,
    /// The worker on the master (idle unless `config.local_worker`).
    pub local: LocalWorker,
    /// Every executor's events pass here on their way to the store.
    pub recorder: Recorder,
    /// What `/metrics` and the status page show besides the store.
    pub metrics: crate::metrics::Metrics,
    /// Job state changes happen one at a time (see [`change`]).
    changes: tokio::sync::Mutex<()>,
    /// Taken by [`Engine::stop`].
    background: Mutex<Option<Background>>,
    /// Every agent is silent and their leases are being kept (see
    /// `schedule::every_agent_silent`); logged once per such spell.
    all_silent: std::sync::atomic::AtomicBool,
}

struct Background {
    schedule: JoinHandle<()>,
    local: Option<JoinHandle<()>>,
    recorder: JoinHandle<()>,
}

/// Starts the engine over a state: the recorder, every stored job (scanners
/// of unfinished ones restarted from their checkpoints), one fresh lease
/// for dispatched tasks so live agents can check back in, the scheduler,
/// and the local worker when configured.
pub async fn start(state: &Arc<State>) -> Result<Arc<Engine>, StoreError> {
    let eng = Arc::new(Engine {
        state: Arc::clone(state),
        jobs: Mutex::new(HashMap::new()),
        local: LocalWorker::default(),
        recorder: Recorder::new(),
        metrics: Default::default(),
        changes: tokio::sync::Mutex::new(()),
        background: Mutex::new(None),
        all_silent: std::sync::atomic::AtomicBool::new(false),
    });
    let recorder = tokio::spawn(recorder::run(Arc::clone(&eng)));
    if state.config.reload_jobs {
        load_all(&eng).await;
        // Agents still working since before a restart get one lease to
        // check back in (a standalone run takes its leases back instead).
        let grace = unix_now() + state.config.lease.as_secs() as i64;
        let extended = blocking(&state.store, move |s| s.extend_leases(grace)).await?;
        if extended > 0 {
            info!(
                tasks = extended,
                "Dispatched tasks wait one lease for their agents to check in."
            );
        }
    }
    let schedule = tokio::spawn(schedule::run(Arc::clone(&eng)));
    let local = state
        .config
        .local_worker
        .map(|n| tokio::spawn(local::run(Arc::clone(&eng), n)));
    *lock(&eng.background) = Some(Background {
        schedule,
        local,
        recorder,
    });
    Ok(eng)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    pub fn jobs(&self) -> MutexGuard<'_, HashMap<i64, JobRt>> {
        lock(&self.jobs)
    }

    /// Stops handing out work, lets executors and scanners finish their
    /// current step (in-flight objects are dropped, their parts stay
    /// recorded), commits every queued event, and returns.
    pub async fn stop(&self) {
        let state = &self.state;
        state.cancel.cancel();
        let Some(bg) = lock(&self.background).take() else {
            return;
        };
        let _ = bg.schedule.await;
        if let Some(l) = bg.local {
            let _ = l.await;
        }
        state.tracker.close();
        if tokio::time::timeout(std::time::Duration::from_secs(10), state.tracker.wait())
            .await
            .is_err()
        {
            warn!("Background work still running at the deadline; its tasks keep their leases.");
        }
        self.recorder.close();
        let _ = bg.recorder.await;
    }
}

/// What [`change`] did besides the state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Changed {
    /// Leased tasks returned to pending.
    pub requeued: usize,
    pub retried: Retried,
}

/// Moves a job by `ev`, as [`lifecycle::next`] decides, and carries out the
/// effects. One change at a time (the engine's change lock), always from the
/// job's current row, so a decision taken on a stale view (a scheduler pass
/// that saw a job drained just before a `retry`) cannot land. Failed objects
/// are queued again before a job becomes running, and a job stops being
/// running before its leases are taken back, so the scheduler never sees a
/// half-done change.
pub async fn change(eng: &Arc<Engine>, job_id: i64, ev: Event) -> Result<Changed, JobError> {
    let _one = eng.changes.lock().await;
    change_locked(eng, job_id, ev).await
}

/// Finishes a running job whose listing is done and whose tasks are all
/// final, with [`proto::api::JobCounts::outcome`]; checked under the change
/// lock, so a `retry` that just queued objects again is seen. Returns the
/// counts it finished with.
pub async fn finish_if_drained(
    eng: &Arc<Engine>,
    job_id: i64,
) -> Result<Option<crate::store::Counts>, JobError> {
    let state = &eng.state;
    let _one = eng.changes.lock().await;
    let incremental = eng
        .jobs()
        .get(&job_id)
        .is_some_and(|rt| rt.scan.incremental.is_some());
    let drained = blocking(&state.store, move |s| {
        let Some(job) = s.job(job_id)? else {
            return Ok(None);
        };
        let tasks = s.task_states(job_id)?;
        // An incremental pass ends once; then the job waits for the next.
        let waiting = incremental && job.next_pass_at.is_some();
        Ok(
            (job.state == JobState::Running && job.scan_done && tasks.none_left() && !waiting)
                .then_some(s.counts(job_id)?),
        )
    })
    .await?;
    let Some(c) = drained else {
        return Ok(None);
    };
    let ev = if incremental {
        Event::PassDrained
    } else {
        Event::Drained {
            outcome: c.outcome(),
        }
    };
    change_locked(eng, job_id, ev).await?;
    Ok(Some(c))
}

async fn change_locked(eng: &Arc<Engine>, job_id: i64, ev: Event) -> Result<Changed, JobError> {
    let state = &eng.state;
    let job = blocking(&state.store, move |s| s.job(job_id))
        .await?
        .ok_or_else(|| JobError::NotFound(format!("#{job_id}")))?;
    let t = lifecycle::next(job.state, job.scan_done, ev)
        .map_err(|r| JobError::Conflict(format!("job {} {r}", job.name)))?;
    let mut out = Changed::default();
    if t.effects.contains(&Effect::RetryFailed) {
        out.retried = blocking(&state.store, move |s| s.retry_failed(job_id)).await?;
    }
    if let Some(to) = t.to
        && to != job.state
    {
        blocking(&state.store, move |s| s.set_job_state(job_id, to)).await?;
        state.jobs_changed();
    }
    for e in &t.effects {
        match e {
            Effect::RetryFailed => {}
            Effect::RequeueLeased => {
                out.requeued =
                    blocking(&state.store, move |s| s.requeue_dispatched(job_id)).await?;
                eng.metrics.requeued("pause", out.requeued);
            }
            Effect::StartScan => {
                let rt = eng.jobs().get(&job_id).map(|rt| Scanner {
                    cfg: rt.scan.clone(),
                    cancel: rt.scan_cancel.clone(),
                    scanning: Arc::clone(&rt.scanning),
                    live: Arc::clone(&rt.live),
                    watch: rt.watch.clone(),
                });
                if let Some(sc) = rt {
                    out.retried.rescan = start_scan(eng, job_id, job.name.clone(), sc);
                }
            }
            Effect::StopScan => {
                if let Some(rt) = eng.jobs().remove(&job_id) {
                    rt.scan_cancel.cancel();
                }
            }
            Effect::Forget => {
                // A scanner between two entries may still commit one task;
                // that commit then fails on the deleted job and it ends.
                let work = state.config.work_dir.clone();
                blocking(&state.store, move |s| forget(s, &work, job_id)).await?;
            }
            Effect::EndPass => {
                let every = eng
                    .jobs()
                    .get(&job_id)
                    .and_then(|rt| rt.scan.incremental)
                    .unwrap_or_default();
                let at = unix_now() + every.as_secs() as i64;
                let p = blocking(&state.store, move |s| s.end_pass(job_id, at)).await?;
                if let Some(w) = eng.jobs().get(&job_id).and_then(|rt| rt.watch.clone()) {
                    w.pass_ended();
                }
                info!(job = %job.name, pass = p.number, found = p.found, new = p.new, changed = p.changed,
                    deleted = p.deleted, copied = p.copied, failed = p.failed, next_in_secs = every.as_secs(),
                    "Pass ended.");
                state.jobs_changed();
            }
            Effect::BeginPass => {
                let pass = blocking(&state.store, move |s| s.begin_pass(job_id)).await?;
                // The live counters are not reset: what was listed adds up
                // over the passes of a process as what was done does, so a
                // progress line never shows more done than listed.
                info!(job = %job.name, pass, "Pass started.");
                state.jobs_changed();
            }
            Effect::Wake => state.wake.notify_one(),
        }
    }
    Ok(out)
}

/// Why a job operation failed, as the control API maps it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Invalid(String),
    #[error("job {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl JobError {
    /// The control API's code for it.
    pub fn code(&self) -> proto::api::ErrorCode {
        use proto::api::ErrorCode;
        match self {
            JobError::Invalid(_) => ErrorCode::Invalid,
            JobError::NotFound(_) => ErrorCode::NotFound,
            JobError::Conflict(_) => ErrorCode::Conflict,
            JobError::Store(_) | JobError::Other(_) => ErrorCode::Internal,
        }
    }
}

fn job_file(work: &Path, id: i64) -> PathBuf {
    job_dir(work, id).join("job.cfg")
}

/// Plans a job again from what was saved at submit: its job file, the
/// daemon's `sys.properties` or else the one sent with the job, and the
/// job file's original path (for relative secret files and messages).
fn load_saved(work: &Path, id: i64, sys: Option<&Path>) -> Result<plan::Plan, plan::PlanError> {
    let copy = job_file(work, id);
    let dir = copy.parent().unwrap_or(work);
    let origin = std::fs::read_to_string(dir.join("origin"))
        .map(PathBuf::from)
        .unwrap_or_else(|_| copy.clone());
    let bytes = plan::read_bytes(&copy)?;
    let saved_sys = dir.join("sys.properties");
    let sys = match sys.map(|p| (p, plan::read_bytes(p))) {
        Some((p, Ok(b))) => Some((p.to_path_buf(), b)),
        // The daemon's sys.properties went away (or was never readable
        // from here): the copy saved with the job still plans it.
        Some((p, Err(e))) if saved_sys.is_file() => {
            warn!(job_id = id, sys = %p.display(), error = %e, "Cannot read the daemon's sys.properties; planning the job with the copy saved at submit.");
            Some((saved_sys.clone(), plan::read_bytes(&saved_sys)?))
        }
        Some((_, Err(e))) => return Err(e),
        None if saved_sys.is_file() => Some((saved_sys.clone(), plan::read_bytes(&saved_sys)?)),
        None => None,
    };
    plan::from_bytes(&origin, &bytes, sys)
}

/// Loads every job from the store and starts the unfinished ones again.
async fn load_all(eng: &Arc<Engine>) {
    let state = &eng.state;
    let jobs = match blocking(&state.store, |s| s.jobs()).await {
        Ok(j) => j,
        Err(e) => {
            error!(error = %e, "Cannot list jobs.");
            return;
        }
    };
    for job in jobs {
        let (work, id) = (state.config.work_dir.clone(), job.id);
        let sys = state.config.sys.clone();
        let loaded =
            tokio::task::spawn_blocking(move || load_saved(&work, id, sys.as_deref())).await;
        match loaded {
            Ok(Ok(p)) => {
                info!(job = %job.name, state = %job.state, "Reloaded job.");
                let mut spec = p.spec;
                spec.job_id = job.id;
                if let Err(e) = adopt(eng, &job, spec, p.scan, false).await {
                    error!(job = %job.name, error = %e, "Cannot start the job again.");
                }
            }
            Ok(Err(e)) => {
                error!(job = %job.name, error = %e, "Cannot reload the job's plan; it gets no work until cleaned and resubmitted.")
            }
            Err(e) => error!(job = %job.name, error = %e, "Planning panicked."),
        }
    }
}

/// Gives a stored job its loaded plan and starts it ([`Event::Start`]);
/// `fresh_start` (a standalone run) first takes back what an earlier
/// process had leased and queues its failures again. Returns the job's
/// live counters and what the start changed.
pub async fn adopt(
    eng: &Arc<Engine>,
    job: &JobRow,
    spec: JobSpec,
    scan: ScanConfig,
    fresh_start: bool,
) -> Result<(Arc<Live>, Changed), JobError> {
    let state = &eng.state;
    let live = Arc::new(Live::default());
    live.scan_ended.store(job.scan_done, Ordering::Relaxed);
    // Limits changed with `set` since the job was submitted hold again.
    let id = job.id;
    let changes = blocking(&state.store, move |s| s.limit_changes(id)).await?;
    let mut spec = spec;
    let mut tuning = limits::Tuning::of(&spec);
    limits::reapply(&job.name, &mut spec, &mut tuning, &changes);
    // Watched before anything is listed, so no change falls between the
    // listing and the watch.
    let watch = match (scan.watch, scan.local_root()) {
        (Some(settle), Some(root))
            if matches!(job.state, JobState::Running | JobState::Paused) || fresh_start =>
        {
            let (name, root) = (job.name.clone(), root.to_path_buf());
            let w = tokio::task::spawn_blocking(move || watch::Watch::start(&name, &root, settle))
                .await
                .map_err(|e| JobError::Other(anyhow::anyhow!("watch: {e}")))?;
            Some(Arc::new(w))
        }
        _ => None,
    };
    eng.jobs().insert(
        job.id,
        JobRt {
            spec,
            scan,
            scan_cancel: state.cancel.child_token(),
            scanning: Arc::default(),
            live: Arc::clone(&live),
            tuning,
            owner: job.owner.clone(),
            watch,
            sync_now: Arc::new(AtomicBool::new(false)),
        },
    );
    let changed = change(eng, job.id, Event::Start { fresh_start }).await?;
    Ok((live, changed))
}

/// What a job's listing runs with.
struct Scanner {
    cfg: ScanConfig,
    cancel: CancellationToken,
    scanning: Arc<scan_slot::ScanSlot>,
    live: Arc<Live>,
    watch: Option<Arc<watch::Watch>>,
}

/// Starts a job's scanner unless one runs; returns whether it started. A
/// start asked for while one runs is kept: that scanner lists again when
/// it ends if the job's listing is still not done (a pass begun while the
/// last one's scanner was ending). A watched job's pass lists what its
/// watch planned: the settled changes, or everything.
fn start_scan(eng: &Arc<Engine>, job_id: i64, name: String, sc: Scanner) -> bool {
    if !sc.scanning.claim() {
        return false; // one scanner per job; it lists again when it ends
    }
    // Progress shows the listing as under way from now, not from when its
    // thread starts.
    sc.live.scan_ended.store(false, Ordering::Relaxed);
    let eng = Arc::clone(eng);
    let rt = tokio::runtime::Handle::current();
    eng.state.tracker.clone().spawn_blocking(move || {
        /// Frees the slot if the scanner panics.
        struct Abandon<'a>(&'a scan_slot::ScanSlot);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.abandon();
                }
            }
        }
        let _abandon = Abandon(&sc.scanning);
        loop {
            list_once(&eng, &rt, job_id, &name, &sc);
            // Asked again while it ran: list again if the job still needs
            // it (a pass begun meanwhile), not for a start its own listing
            // already served. Checked after each ask, so none falls between
            // the check and the slot's release.
            loop {
                if !sc.scanning.release() {
                    return;
                }
                let needed = !sc.cancel.is_cancelled()
                    && eng.jobs().contains_key(&job_id)
                    && matches!(
                        eng.state.store.job(job_id),
                        Ok(Some(j)) if !j.scan_done && matches!(j.state, JobState::Running | JobState::Paused)
                    );
                if needed {
                    break;
                }
            }
            info!(job = %name, "A pass began while its last listing ended: listing it now.");
        }
    });
    true
}

/// One listing of a job by its scanner, its end recorded as the job's
/// event.
fn list_once(
    eng: &Arc<Engine>,
    rt: &tokio::runtime::Handle,
    job_id: i64,
    name: &str,
    sc: &Scanner,
) {
    let Scanner {
        cfg,
        cancel,
        scanning: _,
        live,
        watch,
    } = sc;
    live.scan_ended.store(false, Ordering::Relaxed);
    let st = &eng.state;
    let owner = eng.jobs().get(&job_id).and_then(|rt| rt.owner.clone());
    let planned = watch.as_ref().and_then(|w| w.take_planned());
    let listing = || {
        owner_may_use(owner.clone(), cfg, &st.config.work_dir).and_then(|()| {
            let on_task = |_: i64, objs: &[crate::store::NewObject]| {
                live.scanned_objects
                    .fetch_add(objs.len() as u64, Ordering::Relaxed);
                live.scanned_bytes
                    .fetch_add(objs.iter().map(|o| o.size).sum(), Ordering::Relaxed);
                st.wake.notify_one();
            };
            let held = watch
                .as_deref()
                .map(|w| move |rel: &str, ctime: Option<i64>| w.unsettled(rel, ctime));
            let held = held
                .as_ref()
                .map(|f| f as &(dyn Fn(&str, Option<i64>) -> bool + Sync));
            match &planned {
                Some(watch::Planned::Changes(changed)) => {
                    let scope = watch
                        .as_deref()
                        .map(|w| w.scope(changed.clone()))
                        .unwrap_or_default();
                    scanner::scan_scope(&st.store, job_id, cfg, &scope, held, cancel, on_task)
                }
                _ => {
                    if let Some(w) = &watch
                        && scanner::lists_from_start(&st.store, job_id)?
                    {
                        w.listing_whole();
                    }
                    scanner::scan_with(&st.store, job_id, cfg, held, cancel, on_task)
                }
            }
        })
    };
    // A root daemon lists an unprivileged user's job with that user's
    // file-system credentials: on a thread of its own (the listing's
    // threads inherit them), which ends with the listing.
    let as_owner = owner
        .as_ref()
        .map(|(uid, _)| crate::access::Caller::of_uid(*uid))
        .filter(|c| !c.is_privileged() && crate::access::daemon_is_root());
    let r = match as_owner {
        None => listing(),
        Some(c) => std::thread::scope(|sc| {
            sc.spawn(|| {
                let _rt = rt.enter();
                crate::access::open_files_as(c).map_err(|e| {
                    scanner::ScanError::Denied(format!("cannot list as uid {}: {e}", c.uid))
                })?;
                listing()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(scanner::ScanError::List(
                    "the listing thread panicked".into(),
                ))
            })
        }),
    };
    let ev = match &r {
        Ok(scanner::ScanOutcome::Finished(stats)) => {
            info!(job = %name, files = stats.files, tasks = stats.tasks, "Scan finished.");
            if cfg.incremental.is_none()
                && let Err(e) = st.store.note_scan_error(job_id, None)
            {
                warn!(job = %name, error = %e, "Cannot record the finished scan.");
            }
            Some(Event::ScanFinished)
        }
        Ok(scanner::ScanOutcome::Stopped(_)) => {
            info!(job = %name, "Scan stopped; it resumes at the next start.");
            None
        }
        Err(e) if cfg.incremental.is_some() => {
            // The pass ends with what it listed; the next one lists
            // everything again.
            error!(job = %name, error = %e, "Scan failed; this pass ends with what it listed.");
            let msg = e.to_string();
            match st.store.fail_pass_scan(job_id, &msg) {
                Ok(()) => Some(Event::ScanFinished),
                Err(e) => {
                    error!(job = %name, error = %e, "Cannot record the failed scan; job marked failed.");
                    Some(Event::ScanFailed)
                }
            }
        }
        Err(e) => {
            error!(job = %name, error = %e, "Scan failed; job marked failed.");
            if let Err(e) = st.store.note_scan_error(job_id, Some(&e.to_string())) {
                warn!(job = %name, error = %e, "Cannot record why the scan failed.");
            }
            Some(Event::ScanFailed)
        }
    };
    *live.scan.lock().unwrap_or_else(|p| p.into_inner()) = Some(match r {
        Ok(o) => Ok(o.stats().clone()),
        Err(e) => Err(e.to_string()),
    });
    if let Some(ev) = ev {
        if let Err(e) = rt.block_on(change(eng, job_id, ev)) {
            warn!(job = %name, error = %e, "Job state not changed after its scan.");
        }
        live.scan_ended.store(true, Ordering::Relaxed);
    }
    st.wake.notify_one();
}

/// Checks again, at the start of every listing pass (a retry and a reload
/// included), what `check_paths` checked at submit for a job an
/// unprivileged user submitted: the source directory (a symlink swapped in
/// for it since is followed to where it leads now) and the list file are
/// readable by them, the destination directory writable, and none of them
/// overlaps the daemon's work directory (by device and inode).
fn owner_may_use(
    owner: Option<(u32, String)>,
    cfg: &ScanConfig,
    work_dir: &Path,
) -> Result<(), scanner::ScanError> {
    let Some((uid, user)) = owner else {
        return Ok(());
    };
    let caller = crate::access::Caller::of_uid(uid);
    if caller.is_privileged() {
        return Ok(());
    }
    let denied = |key: &str, why: String| {
        scanner::ScanError::Denied(format!("{key}: for {user} (uid {uid}): {why}"))
    };
    let mut paths: Vec<(&str, &Path, bool)> = Vec::new();
    if let Some(root) = cfg.local_root() {
        paths.push(("srcPrefix", root, false));
    }
    if let Some(l) = &cfg.http_list {
        paths.push(("httpListFilePath", &l.path, false));
    }
    if let Some(d) = &cfg.dest_dir {
        paths.push(("destDir", d, true));
    }
    for (key, path, write) in paths {
        if let Ok(Some(_)) = storage::beneath::dir_overlap(path, work_dir) {
            return Err(denied(
                key,
                format!(
                    "{} overlaps the daemon's work directory {}",
                    path.display(),
                    work_dir.display()
                ),
            ));
        }
        let r = if write {
            caller.may_write(path)
        } else {
            caller.may_read(path)
        };
        r.map_err(|e| denied(key, e))?;
    }
    Ok(())
}
/// A local path of a job that the job may not use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathRefused {
    #[error(
        "{key}={}: overlaps the daemon's work directory {}, which holds its job store and keys",
        path.display(),
        work.display()
    )]
    WorkDir {
        key: &'static str,
        path: PathBuf,
        work: PathBuf,
    },
    /// The submitter could not read (or write) it.
    #[error("{key}: {why}")]
    Caller { key: &'static str, why: String },
}

/// Local paths of a job: never the daemon's work directory (job store,
/// keys, saved job files) or anything around it, and for an unprivileged
/// caller only what they could read (source) or write (destination).
pub fn check_paths(
    p: &plan::Plan,
    work_dir: &std::path::Path,
    caller: crate::access::Caller,
) -> Result<(), PathRefused> {
    use proto::job::{DestSpec, SourceSpec};
    let mut paths: Vec<(&'static str, PathBuf, bool)> = Vec::new();
    if let SourceSpec::Local { root, .. } = &p.spec.source {
        paths.push(("srcPrefix", PathBuf::from(root), false));
    }
    if let DestSpec::Local { dir, .. } = &p.spec.dest {
        paths.push(("destDir", PathBuf::from(dir), true));
    }
    if let Some(l) = &p.scan.http_list {
        paths.push(("httpListFilePath", l.path.clone(), false));
    }
    for (key, file) in &p.secret_files {
        paths.push((key, file.clone(), false));
    }
    for (key, path, write) in paths {
        if crate::access::overlaps(&path, work_dir) {
            return Err(PathRefused::WorkDir {
                key,
                path,
                work: work_dir.to_path_buf(),
            });
        }
        if !caller.is_privileged() {
            let r = if write {
                caller.may_write(&path)
            } else {
                caller.may_read(&path)
            };
            r.map_err(|why| PathRefused::Caller { key, why })?;
        }
    }
    Ok(())
}

/// Validates and stores a job file; the job starts at once.
pub async fn submit(
    eng: &Arc<Engine>,
    req: &proto::api::SubmitRequest,
    caller: crate::access::Caller,
) -> Result<JobStatus, JobError> {
    let state = &eng.state;
    let path = PathBuf::from(&req.job_cfg);
    if !path.is_absolute() {
        return Err(JobError::Invalid(format!(
            "{}: give the job file as an absolute path",
            req.job_cfg
        )));
    }
    // The caller read the files and sent their bytes: the daemon opens no
    // file on a caller's behalf that the caller could not open.
    let content = req
        .content_bytes()
        .map_err(JobError::Invalid)?
        .ok_or_else(|| {
            JobError::Invalid(format!(
                "{}: this ossimportctl sent the job file's path, not its content; use the ossimportctl of the same version as ossimportd",
                path.display()
            ))
        })?;
    let sent_sys = req
        .sys_properties_bytes()
        .map_err(JobError::Invalid)?
        .map(|b| (plan::sibling_sys(&path).unwrap_or_default(), b));
    let own_sys = state.config.sys.clone();
    let p = {
        let (path, sent_sys, content) = (path.clone(), sent_sys.clone(), content.clone());
        tokio::task::spawn_blocking(move || {
            let sys = match own_sys {
                Some(p) => Some((p.clone(), plan::read_bytes(&p)?)),
                None => sent_sys,
            };
            plan::from_bytes(&path, &content, sys)
        })
        .await
        .map_err(|e| JobError::Other(e.into()))?
        .map_err(|e| JobError::Invalid(e.to_string()))?
    };
    for w in &p.warnings {
        warn!(job = %p.name, warning = %w, "Job file warning.");
    }
    check_paths(&p, &state.config.work_dir, caller)
        .map_err(|e| JobError::Invalid(e.to_string()))?;
    p.preflight()
        .await
        .map_err(|e| JobError::Invalid(format!("{e:#}")))?;
    let name = p.name.clone();
    if blocking(&state.store, {
        let n = name.clone();
        move |s| s.find_job(&n)
    })
    .await?
    .is_some()
    {
        return Err(JobError::Conflict(format!(
            "job {name} already exists; run `ossimportctl clean {name}` first to start it over"
        )));
    }
    let id = {
        let (work, p2) = (state.config.work_dir.clone(), Arc::clone(&state.store));
        let (cfg, fp) = (p.config_json.clone(), p.fingerprint.clone());
        let (n, origin, sys) = (name.clone(), req.job_cfg.clone(), sent_sys.map(|(_, t)| t));
        tokio::task::spawn_blocking(move || {
            let owner = crate::access::user_name(caller.uid);
            let saved = Saved {
                content: &content,
                sys: sys.as_deref(),
                origin: &origin,
                owner: Some((caller.uid, &owner)),
            };
            record(&p2, &work, &n, &cfg, &fp, saved)
        })
        .await
        .map_err(|e| JobError::Other(e.into()))??
    };
    let mut spec = p.spec;
    spec.job_id = id;
    let n = name.clone();
    let row = blocking(&state.store, move |s| s.find_job(&n))
        .await?
        .ok_or_else(|| JobError::NotFound(name.clone()))?;
    adopt(eng, &row, spec, p.scan, false).await?;
    info!(job = %name, job_id = id, "Job submitted.");
    status(eng, &name).await
}

/// What a submitted job is reloaded from, and who submitted it.
pub struct Saved<'a> {
    /// The job file's bytes.
    pub content: &'a [u8],
    /// The sys.properties sent with it.
    pub sys: Option<&'a [u8]>,
    /// Where the job file was.
    pub origin: &'a str,
    /// The submitter's uid and user name.
    pub owner: Option<(u32, &'a str)>,
}

/// Records a planned job in the store with what it is reloaded from at the
/// next start (`jobs/<id>/`: the job file's bytes, the sys.properties sent
/// with it, and where the job file was) and its owner. Used by the daemon
/// at submit and by `ossimportctl submit` while no daemon runs (it holds
/// the store's lock then, so the two never write at once).
pub fn record(
    store: &crate::store::Store,
    work_dir: &Path,
    name: &str,
    config: &str,
    fingerprint: &str,
    saved: Saved<'_>,
) -> Result<i64, JobError> {
    let Saved {
        content,
        sys,
        origin,
        owner,
    } = saved;
    if store.find_job(name)?.is_some() {
        return Err(JobError::Conflict(format!(
            "job {name} already exists; run `ossimportctl clean {name}` first to start it over"
        )));
    }
    let id = store.create_owned_job(name, config, fingerprint, owner)?;
    let copy = job_file(work_dir, id);
    let saved = (|| -> std::io::Result<()> {
        let dir = copy.parent().unwrap_or(work_dir);
        std::fs::create_dir_all(dir)?;
        proto::auth::write_private(&copy, content)?;
        restrict(&copy);
        if let Some(t) = sys {
            let s = dir.join("sys.properties");
            proto::auth::write_private(&s, t)?;
            restrict(&s);
        }
        proto::auth::write_private(&dir.join("origin"), origin.as_bytes())?;
        Ok(())
    })();
    if let Err(e) = saved {
        let _ = store.delete_job(id);
        return Err(JobError::Other(anyhow::anyhow!(
            "saving a copy of {origin} for job {name}: {e}"
        )));
    }
    Ok(id)
}

pub async fn find(eng: &Arc<Engine>, name: &str) -> Result<JobRow, JobError> {
    let state = &eng.state;
    let n = name.to_string();
    blocking(&state.store, move |s| s.find_job(&n))
        .await?
        .ok_or_else(|| JobError::NotFound(name.to_string()))
}

pub async fn status(eng: &Arc<Engine>, name: &str) -> Result<JobStatus, JobError> {
    let job = find(eng, name).await?;
    status_of(eng, job).await
}

pub async fn status_of(eng: &Arc<Engine>, job: JobRow) -> Result<JobStatus, JobError> {
    let state = &eng.state;
    let names: std::collections::HashMap<String, String> = state
        .agents()
        .iter()
        .map(|(fp, a)| (fp.clone(), a.name.clone()))
        .collect();
    let id = job.id;
    let (mut st, changes) = blocking(&state.store, move |s| {
        Ok((
            status_in(s, job, |fp| names.get(fp).cloned())?,
            s.limit_changes(id)?,
        ))
    })
    .await?;
    st.limits = eng.jobs().get(&id).map(|rt| limits::of(rt, changes));
    (st.outages, st.throttled) = endpoints_of(eng, id);
    if let (Some(inc), Some(w)) = (
        st.incremental.as_mut(),
        eng.jobs().get(&id).and_then(|rt| rt.watch.clone()),
    ) {
        inc.watch = Some(w.status());
    }
    Ok(st)
}

/// The job's endpoints that executors see down now, and those held to a
/// rate because they said they were overloaded, one line each (see
/// `JobStatus::outages` and `JobStatus::throttled`).
pub fn endpoints_of(eng: &Engine, job_id: i64) -> (Vec<String>, Vec<String>) {
    let Some(mut spec) = eng.jobs().get(&job_id).map(|rt| rt.spec.clone()) else {
        return Default::default();
    };
    let mine: Vec<String> = spec.buckets_mut().map(|b| b.endpoint_label()).collect();
    let (mut down, mut held) = (Vec::new(), Vec::new());
    for a in eng.state.agents().values() {
        for e in a.endpoints.iter().filter(|e| mine.contains(&e.endpoint)) {
            if let Some(line) = e.line() {
                down.push(format!("{line} (seen by {})", a.name));
            }
            if let Some(line) = e.throttle_line() {
                held.push(format!("{line} (seen by {})", a.name));
            }
        }
    }
    (down, held)
}

/// A job's status from the store; `agent_name` names an agent by its key's
/// fingerprint when it is known.
pub fn status_in(
    store: &Store,
    job: JobRow,
    agent_name: impl Fn(&str) -> Option<String>,
) -> Result<JobStatus, StoreError> {
    let (c, running) = (store.counts(job.id)?, store.running_tasks(job.id)?);
    let incremental = match job.incremental_interval() {
        Some(interval_secs) => Some(proto::api::Incremental {
            interval_secs,
            pass: job.pass,
            next_pass_at: job.next_pass_at,
            passes: store.passes(job.id)?,
            watch: None,
        }),
        None => None,
    };
    let listing_error = match &incremental {
        Some(_) => None,
        None => store.passes(job.id)?.pop().and_then(|p| p.error),
    };
    let control = store.control_log(&job.name)?;
    Ok(JobStatus {
        outages: Vec::new(),
        throttled: Vec::new(),
        listing_error,
        limits: None,
        incremental,
        owner: job
            .owner
            .map(|(uid, user)| proto::api::JobOwner { uid, user }),
        control,
        name: job.name,
        state: job.state,
        scan_done: job.scan_done,
        counts: c,
        running_tasks: running
            .into_iter()
            .map(|t| TaskProgress {
                task_id: t.task_id,
                agent: t.agent.map(|fp| agent_name(&fp).unwrap_or(fp)),
                bytes_done: t.bytes_done,
                bytes_total: t.bytes_total,
                files_done: t.files_done,
                files_total: t.files_total,
            })
            .collect(),
    })
}

/// Stops dispatching a job and takes its tasks back from the executors
/// (they are told to drop them at their next heartbeat).
pub async fn pause(eng: &Arc<Engine>, name: &str) -> Result<u64, JobError> {
    let job = find(eng, name).await?;
    let c = change(eng, job.id, Event::Pause).await?;
    info!(job = %name, tasks = c.requeued, "Job paused.");
    Ok(c.requeued as u64)
}

pub async fn resume(eng: &Arc<Engine>, name: &str) -> Result<(), JobError> {
    let job = find(eng, name).await?;
    change(eng, job.id, Event::Resume).await?;
    info!(job = %name, "Job resumed.");
    Ok(())
}

/// A cut-over of an incremental job: a pass now. A watched job lists every
/// change queued so far, settled or not (the writers have stopped); a
/// rescan job starts its next pass as soon as none runs. Returns what
/// `sync --wait` waits for.
pub async fn sync(eng: &Arc<Engine>, name: &str) -> Result<proto::api::SyncTicket, JobError> {
    let job = find(eng, name).await?;
    if job.incremental_interval().is_none() {
        return Err(JobError::Invalid(format!(
            "job {name} is not incremental (isIncremental=false): its one pass is all there is to wait for (ossimportctl stat {name})"
        )));
    }
    if job.state != JobState::Running {
        return Err(JobError::Conflict(format!(
            "job {name} is {}: a pass runs only while it is running",
            job.state.as_str()
        )));
    }
    let (watch, sync_now) = eng
        .jobs()
        .get(&job.id)
        .map(|rt| (rt.watch.clone(), Arc::clone(&rt.sync_now)))
        .ok_or_else(|| JobError::Conflict(format!("job {name} is not loaded")))?;
    let ticket = match watch {
        Some(w) => {
            let (seq, lag_ms) = w.sync();
            proto::api::SyncTicket {
                watch_seq: Some(seq),
                pass: None,
                lag_ms,
            }
        }
        None => {
            sync_now.store(true, Ordering::SeqCst);
            proto::api::SyncTicket {
                watch_seq: None,
                pass: Some(job.pass + 1),
                lag_ms: None,
            }
        }
    };
    eng.state.wake.notify_one();
    info!(job = %name, ?ticket, "Sync requested.");
    Ok(ticket)
}

/// Queues a job's failed objects again and restarts a listing that failed
/// (from its checkpoint: nothing listed before is listed twice).
pub async fn retry(eng: &Arc<Engine>, name: &str) -> Result<Retried, JobError> {
    let job = find(eng, name).await?;
    let n = change(eng, job.id, Event::Retry).await?.retried;
    info!(job = %name, objects = n.queued, left = n.unfixable, rescan = n.rescan, "Failed objects queued again.");
    Ok(n)
}

/// Forgets a job: scanner stopped, rows deleted (leases with them), copy
/// removed. Returns the directory that held its saved files.
pub async fn clean(eng: &Arc<Engine>, name: &str) -> Result<PathBuf, JobError> {
    let state = &eng.state;
    let job = find(eng, name).await?;
    change(eng, job.id, Event::Clean).await?;
    info!(job = %name, "Job cleaned.");
    Ok(job_dir(&state.config.work_dir, job.id))
}

fn job_dir(work: &Path, id: i64) -> PathBuf {
    work.join("jobs").join(id.to_string())
}

/// The rows and saved files of job `id` deleted (by the daemon, or by
/// `ossimportctl clean` when no daemon holds the store).
pub fn forget(store: &Store, work: &Path, id: i64) -> Result<PathBuf, StoreError> {
    store.delete_job(id)?;
    let dir = job_dir(work, id);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(dir)
}
