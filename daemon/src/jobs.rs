//! Jobs inside the daemon: submit, reload after a restart, scanning, and the
//! state changes behind `pause`, `resume`, `retry` and `clean`.
//!
//! At submit the daemon keeps its own copy of the job file (mode 0600) in
//! `<workDir>/jobs/<id>/job.cfg`, so a restart plans the job exactly as it
//! was submitted even if the original file changed or moved.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::api::{JobStatus, TaskProgress};
use proto::job::JobSpec;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::plan;
use crate::scanner::{self, ScanConfig};
use crate::server::{State, blocking, restrict};
use crate::store::{JobRow, JobState, Retried, Store, StoreError};

/// A job whose plan is loaded.
pub struct JobRt {
    /// With credentials: never sent as is (see `scheduler::for_agent`).
    pub spec: JobSpec,
    /// Stops this job's scanner.
    pub scan_cancel: CancellationToken,
    /// Set while a scanner runs for this job, so `retry` starts one only
    /// when none runs (after a failed scan).
    pub scanning: Arc<std::sync::atomic::AtomicBool>,
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

fn job_file(work: &Path, id: i64) -> PathBuf {
    work.join("jobs").join(id.to_string()).join("job.cfg")
}

/// Plans a job again from what was saved at submit: its job file, the
/// daemon's `sys.properties` or else the one sent with the job, and the
/// job file's original path (for relative secret files and messages).
fn load_saved(work: &Path, id: i64, sys: Option<&Path>) -> Result<plan::Plan, String> {
    let copy = job_file(work, id);
    let dir = copy.parent().unwrap_or(work);
    let origin = std::fs::read_to_string(dir.join("origin"))
        .map(PathBuf::from)
        .unwrap_or_else(|_| copy.clone());
    let bytes = plan::read_bytes(&copy)?;
    let saved_sys = dir.join("sys.properties");
    let sys = match sys {
        Some(p) => Some((p.to_path_buf(), plan::read_bytes(p)?)),
        None if saved_sys.is_file() => Some((saved_sys.clone(), plan::read_bytes(&saved_sys)?)),
        None => None,
    };
    plan::from_bytes(&origin, &bytes, sys)
}

/// Loads every job from the store and restarts scanners of unfinished ones.
pub async fn load_all(state: &Arc<State>) {
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
                activate(state, &job, spec, p.scan);
            }
            Ok(Err(e)) => {
                error!(job = %job.name, error = %e, "Cannot reload the job's plan; it gets no work until cleaned and resubmitted.")
            }
            Err(e) => error!(job = %job.name, error = %e, "Planning panicked."),
        }
    }
}

fn activate(state: &Arc<State>, job: &JobRow, spec: JobSpec, scan: ScanConfig) {
    let cancel = state.cancel.child_token();
    let scanning = Arc::new(std::sync::atomic::AtomicBool::new(false));
    state.jobs().insert(
        job.id,
        JobRt {
            spec,
            scan_cancel: cancel.clone(),
            scanning: Arc::clone(&scanning),
        },
    );
    if !job.scan_done && !job.state.is_finished() {
        start_scan(state, job.id, job.name.clone(), scan, cancel, scanning);
    }
}

fn start_scan(
    state: &Arc<State>,
    job_id: i64,
    name: String,
    cfg: ScanConfig,
    cancel: CancellationToken,
    scanning: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    if scanning.swap(true, Ordering::SeqCst) {
        return; // one scanner per job
    }
    let st = Arc::clone(state);
    state.tracker.spawn_blocking(move || {
        /// Clears the flag however the scan ends, a panic included.
        struct Done(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        let _done = Done(scanning);
        let wake = Arc::clone(&st);
        let r = scanner::scan(&st.store, job_id, &cfg, &cancel, |_, _| {
            wake.wake.notify_one();
        });
        match r {
            Ok((true, stats)) => {
                info!(job = %name, files = stats.files, tasks = stats.tasks, "Scan finished.")
            }
            Ok((false, _)) => info!(job = %name, "Scan stopped; it resumes at the next start."),
            Err(e) => {
                error!(job = %name, error = %e, "Scan failed; job marked failed.");
                let _ = st.store.set_job_state(job_id, JobState::Failed);
            }
        }
        st.wake.notify_one();
    });
}

/// Validates and stores a job file; the job starts at once.
/// Local paths of a job: never the daemon's work directory (job store,
/// keys, saved job files) or anything around it, and for an unprivileged
/// caller only what they could read (source) or write (destination).
pub fn check_paths(
    p: &plan::Plan,
    work_dir: &std::path::Path,
    caller: crate::access::Caller,
) -> Result<(), String> {
    use proto::job::{DestSpec, SourceSpec};
    let mut paths: Vec<(&str, PathBuf, bool)> = Vec::new();
    if let SourceSpec::Local { root, .. } = &p.spec.source {
        paths.push(("srcPrefix", PathBuf::from(root), false));
    }
    if let DestSpec::Local { dir, .. } = &p.spec.dest {
        paths.push(("destDir", PathBuf::from(dir), true));
    }
    if let crate::scanner::ScanSource::Http { list, .. } = &p.scan.source {
        paths.push(("httpListFilePath", list.clone(), false));
    }
    for (key, file) in &p.secret_files {
        paths.push((key, file.clone(), false));
    }
    for (key, path, write) in paths {
        if crate::access::overlaps(&path, work_dir) {
            return Err(format!(
                "{key}={}: overlaps the daemon's work directory {}, which holds its job store and keys",
                path.display(),
                work_dir.display()
            ));
        }
        if !caller.is_privileged() {
            let r = if write {
                caller.may_write(&path)
            } else {
                caller.may_read(&path)
            };
            r.map_err(|e| format!("{key}: {e}"))?;
        }
    }
    Ok(())
}

pub async fn submit(
    state: &Arc<State>,
    req: &proto::api::SubmitRequest,
    caller: crate::access::Caller,
) -> Result<JobStatus, JobError> {
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
        .map_err(JobError::Invalid)?
    };
    for w in &p.warnings {
        warn!(job = %p.name, warning = %w, "Job file warning.");
    }
    check_paths(&p, &state.config.work_dir, caller).map_err(JobError::Invalid)?;
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
            record(&p2, &work, &n, &cfg, &fp, &content, sys.as_deref(), &origin)
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
    activate(state, &row, spec, p.scan);
    info!(job = %name, job_id = id, "Job submitted.");
    state.wake.notify_one();
    status(state, &name).await
}

/// Records a planned job in the store with what it is reloaded from at the
/// next start (`jobs/<id>/`: the job file's bytes, the sys.properties sent
/// with it, and where the job file was). Used by the daemon at submit and
/// by `ossimportctl submit` while no daemon runs (it holds the store's lock
/// then, so the two never write at once).
#[allow(clippy::too_many_arguments)]
pub fn record(
    store: &crate::store::Store,
    work_dir: &Path,
    name: &str,
    config: &str,
    fingerprint: &str,
    content: &[u8],
    sys: Option<&[u8]>,
    origin: &str,
) -> Result<i64, JobError> {
    if store.find_job(name)?.is_some() {
        return Err(JobError::Conflict(format!(
            "job {name} already exists; run `ossimportctl clean {name}` first to start it over"
        )));
    }
    let id = store.create_job(name, config, fingerprint)?;
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

pub async fn find(state: &Arc<State>, name: &str) -> Result<JobRow, JobError> {
    let n = name.to_string();
    blocking(&state.store, move |s| s.find_job(&n))
        .await?
        .ok_or_else(|| JobError::NotFound(name.to_string()))
}

pub async fn status(state: &Arc<State>, name: &str) -> Result<JobStatus, JobError> {
    let job = find(state, name).await?;
    status_of(state, job).await
}

pub async fn status_of(state: &Arc<State>, job: JobRow) -> Result<JobStatus, JobError> {
    let names: std::collections::HashMap<String, String> = state
        .agents()
        .iter()
        .map(|(fp, a)| (fp.clone(), a.name.clone()))
        .collect();
    Ok(blocking(&state.store, move |s| {
        status_in(s, job, |fp| names.get(fp).cloned())
    })
    .await?)
}

/// A job's status from the store; `agent_name` names an agent by its key's
/// fingerprint when it is known.
pub fn status_in(
    store: &Store,
    job: JobRow,
    agent_name: impl Fn(&str) -> Option<String>,
) -> Result<JobStatus, StoreError> {
    let (c, running) = (store.counts(job.id)?, store.running_tasks(job.id)?);
    Ok(JobStatus {
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

/// Stops dispatching a job and takes its tasks back from the agents (they
/// are told to drop them at their next heartbeat).
pub async fn pause(state: &Arc<State>, name: &str) -> Result<u64, JobError> {
    let job = find(state, name).await?;
    if job.state != JobState::Running {
        return Err(JobError::Conflict(format!(
            "job {name} is {}, not running",
            job.state
        )));
    }
    let id = job.id;
    let n = blocking(&state.store, move |s| {
        s.set_job_state(id, JobState::Paused)?;
        s.requeue_dispatched(id)
    })
    .await?;
    info!(job = %name, tasks = n, "Job paused.");
    Ok(n as u64)
}

pub async fn resume(state: &Arc<State>, name: &str) -> Result<(), JobError> {
    let job = find(state, name).await?;
    if job.state != JobState::Paused {
        return Err(JobError::Conflict(format!(
            "job {name} is {}, not paused",
            job.state
        )));
    }
    let id = job.id;
    blocking(&state.store, move |s| {
        s.set_job_state(id, JobState::Running)
    })
    .await?;
    info!(job = %name, "Job resumed.");
    state.wake.notify_one();
    Ok(())
}

/// Makes failed objects of a job pending again; returns how many.
pub async fn retry(state: &Arc<State>, name: &str) -> Result<Retried, JobError> {
    let job = find(state, name).await?;
    let id = job.id;
    let mut n = blocking(&state.store, move |s| s.retry_failed(id)).await?;
    info!(job = %name, objects = n.queued, left = n.unfixable, "Failed objects queued again.");
    // A scan that failed (source unreachable, listing refused) starts again
    // from its checkpoint: nothing listed before is listed twice.
    if !job.scan_done {
        let rt = state
            .jobs()
            .get(&id)
            .map(|rt| (rt.scan_cancel.clone(), Arc::clone(&rt.scanning)));
        if let Some((cancel, scanning)) = rt
            && !scanning.load(std::sync::atomic::Ordering::SeqCst)
        {
            let work = state.config.work_dir.clone();
            let sys = state.config.sys.clone();
            let p = tokio::task::spawn_blocking(move || load_saved(&work, id, sys.as_deref()))
                .await
                .map_err(|e| JobError::Other(e.into()))?
                .map_err(JobError::Invalid)?;
            info!(job = %name, "Scan starts again from its checkpoint.");
            start_scan(state, id, name.to_string(), p.scan, cancel, scanning);
            n.rescan = true;
        }
    }
    state.wake.notify_one();
    Ok(n)
}

/// Forgets a job: scanner stopped, rows deleted, copy removed. Returns the
/// directory that held its saved files.
pub async fn clean(state: &Arc<State>, name: &str) -> Result<PathBuf, JobError> {
    let job = find(state, name).await?;
    if let Some(rt) = state.jobs().remove(&job.id) {
        rt.scan_cancel.cancel();
    }
    let id = job.id;
    let work = state.config.work_dir.clone();
    // A scanner between two entries may still commit one task; that commit
    // then fails on the deleted job and the scanner ends.
    let dir = blocking(&state.store, move |s| forget(s, &work, id)).await?;
    info!(job = %name, "Job cleaned.");
    Ok(dir)
}

/// The rows and saved files of job `id` deleted (by the daemon, or by
/// `ossimportctl clean` when no daemon holds the store).
pub fn forget(store: &Store, work: &Path, id: i64) -> Result<PathBuf, StoreError> {
    store.delete_job(id)?;
    let dir = work.join("jobs").join(id.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(dir)
}
