//! `ossimportctl run`: the daemon's engine with the local worker as its
//! only executor, in the caller's process. This module owns everything
//! that touches the job store for a run: where the store lives, creating
//! or resuming the job (a changed configuration refused, `--clean` through
//! the lifecycle's [`Event::Clean`](crate::engine::lifecycle::Event)), the
//! wait for the end (the engine's [`State::job_changed`] watch, no
//! polling), and what is left to say afterwards ([`RunReport`]). `ctl`
//! presents; it never opens the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proto::api::{JobState, PassRecord};
use tokio_util::sync::CancellationToken;

pub use crate::engine::Live;
use crate::engine::{self, Engine, JobError};
use crate::plan::Plan;
use crate::preflight::Preflight;
pub use crate::scanner::ScanStats;
use crate::state::{Config, STORE_FILE, State, unix_now};
pub use crate::store::FailedObject;
use crate::store::{Counts, JobRow, Store, StoreError};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The command or the job file must change (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The store, the work directory, the source (exit 4).
    #[error("{0}")]
    Runtime(String),
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> RunError {
        RunError::Runtime(e.to_string())
    }
}

impl From<JobError> for RunError {
    fn from(e: JobError) -> RunError {
        match e {
            JobError::Invalid(m) | JobError::Conflict(m) => RunError::Usage(m),
            other => RunError::Runtime(other.to_string()),
        }
    }
}

/// Where a run keeps its job store.
pub struct WorkDir {
    pub path: PathBuf,
    /// The per-user default was not used because the current directory
    /// holds this job's store from an earlier version (worth a note).
    pub found_here: bool,
}

/// Where `run` keeps its job store without `--work-dir` or `workingDir`:
/// the per-user state directory (`$XDG_STATE_HOME/ossimport`, else
/// `~/.local/state/ossimport`), so the same command typed in another
/// directory finds the same job. A job store of this job in the current
/// directory (where earlier versions kept it) is used where it is rather
/// than silently starting over.
pub fn default_work_dir(job: &str) -> Result<WorkDir, RunError> {
    let here = Path::new(".").join(STORE_FILE);
    if here.is_file()
        && Store::open_read_only(&here)
            .and_then(|s| s.find_job(job))
            .is_ok_and(|j| j.is_some())
    {
        return Ok(WorkDir {
            path: PathBuf::from("."),
            found_here: true,
        });
    }
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let path = match (xdg, home) {
        (Some(x), _) => x.join("ossimport"),
        (None, Some(h)) => h.join(".local/state/ossimport"),
        (None, None) => {
            return Err(RunError::Usage(
                "no state directory: neither XDG_STATE_HOME nor HOME is set; give --work-dir or workingDir"
                    .into(),
            ));
        }
    };
    Ok(WorkDir {
        path,
        found_here: false,
    })
}

/// What the start of a run found and changed.
#[derive(Clone, Debug, Default)]
pub struct Resumed {
    /// The job's counts as the store held them before this run, with the
    /// failures this start queued again counted as pending.
    pub start: Counts,
    /// Failed objects queued again, and those a retry cannot fix.
    pub retried: u64,
    pub unfixable: u64,
    /// An incremental job: the last pass an earlier run ended, when the
    /// next is due (unix seconds) and in how many seconds.
    pub last_pass: Option<(u32, i64, i64)>,
}

/// A job being run in this process.
pub struct Standalone {
    state: Arc<State>,
    eng: Arc<Engine>,
    store: Arc<Store>,
    job_id: i64,
    name: String,
    spec: proto::job::JobSpec,
    incremental: Option<Duration>,
    live: Arc<Live>,
    work_dir: PathBuf,
    before: Counts,
    /// The passes an earlier run already told of.
    seen: PassesSeen,
    resumed: Resumed,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The job finished in this state (`JobCounts::outcome`, or a failed
    /// listing).
    Finished(JobState),
    /// Ctrl-C, SIGTERM, or the job was cleaned under us: the same command
    /// resumes.
    Interrupted,
}

/// What is left to say once a run ended. Every figure comes from the store
/// after the engine stopped.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub ending: Ending,
    pub before: Counts,
    pub counts: Counts,
    /// How this process's listing ended, when it listed.
    pub scan: Option<Result<ScanStats, String>>,
    /// Every failure, one per line (`code\tpath\treason`), when any failed.
    pub errors_file: Option<PathBuf>,
    /// The first failures, in path order, up to the number asked for.
    pub first_failures: Vec<FailedObject>,
}

/// A run that ended: its report, and its store still open for the
/// manifest.
pub struct Finished {
    pub report: RunReport,
    store: Arc<Store>,
    job_id: i64,
    spec: proto::job::JobSpec,
}

impl Standalone {
    /// Checks that the source and destination answer ([`Preflight`]),
    /// opens (or creates) the job store in `work_dir`, starts the engine
    /// with the local worker, and creates or resumes the job: a job first
    /// run with another configuration is refused unless `clean`, which
    /// forgets it through the lifecycle first. The start takes back what a
    /// killed run had leased and queues what failed last time again.
    pub async fn start(plan: &Plan, work_dir: &Path, clean: bool) -> Result<Standalone, RunError> {
        plan.preflight()
            .await
            .map_err(|e| RunError::Runtime(format!("{e:#}")))?;
        std::fs::create_dir_all(work_dir).map_err(|e| {
            RunError::Runtime(format!(
                "creating work directory {}: {e}",
                work_dir.display()
            ))
        })?;
        let store = Arc::new(Store::open(&work_dir.join(STORE_FILE))?);
        let mut config = Config::new(work_dir, None);
        config.reload_jobs = false;
        config.local_worker = Some(plan.spec.object_concurrency.clamp(2, 16));
        let state = State::standalone(config, Arc::clone(&store));
        let eng = engine::start(&state).await?;
        match Standalone::open(&state, &eng, plan, work_dir, clean).await {
            Ok(s) => Ok(s),
            Err(e) => {
                eng.stop().await;
                Err(e)
            }
        }
    }

    async fn open(
        state: &Arc<State>,
        eng: &Arc<Engine>,
        plan: &Plan,
        work_dir: &Path,
        clean: bool,
    ) -> Result<Standalone, RunError> {
        let store = Arc::clone(&state.store);
        if let Some(job) = store.find_job(&plan.name)? {
            if clean {
                engine::clean(eng, &job.name).await?;
            } else if job.fingerprint != plan.fingerprint {
                return Err(RunError::Usage(format!(
                    "job {} was first run with a different configuration; its recorded progress would not match. \
                     Run with --clean to discard it and start over, or give the changed job a new jobName",
                    plan.name
                )));
            }
        }
        let job_id = match store.find_job(&plan.name)? {
            Some(job) => job.id,
            None => store.create_job(&plan.name, &plan.config_json, &plan.fingerprint)?,
        };
        let mut spec = plan.spec.clone();
        spec.job_id = job_id;
        let before = store.counts(job_id)?;
        let row = store.job(job_id)?.ok_or_else(|| {
            RunError::Runtime(format!("job {} vanished from the store", plan.name))
        })?;
        let passes = store.passes(job_id)?;
        let (live, changed) =
            engine::adopt(eng, &row, spec.clone(), plan.scan.clone(), true).await?;
        let retried = changed.retried;
        let mut start = before.clone();
        start.pending += retried.queued;
        start.failed = start.failed.saturating_sub(retried.queued);
        // A rerun tells only of passes from now on.
        let seen = PassesSeen {
            started: passes.last().map_or(0, |p| p.number),
            ended: passes
                .iter()
                .filter(|p| p.ended_at.is_some())
                .map(|p| p.number)
                .max()
                .unwrap_or(0),
        };
        let last_pass = match (passes.last(), row.next_pass_at) {
            (Some(p), Some(at)) if plan.scan.incremental.is_some() => {
                Some((p.number, at, (at - unix_now()).max(0)))
            }
            _ => None,
        };
        Ok(Standalone {
            state: Arc::clone(state),
            eng: Arc::clone(eng),
            store,
            job_id,
            name: plan.name.clone(),
            spec,
            incremental: plan.scan.incremental,
            live,
            work_dir: work_dir.to_path_buf(),
            before,
            seen,
            resumed: Resumed {
                start,
                retried: retried.queued,
                unfixable: retried.unfixable,
                last_pass,
            },
        })
    }

    pub fn resumed(&self) -> &Resumed {
        &self.resumed
    }

    pub fn store_path(&self) -> PathBuf {
        self.work_dir.join(STORE_FILE)
    }

    /// Cancelling it stops the run as Ctrl-C does: in-flight work finishes,
    /// the job resumes on the next run.
    pub fn cancel_token(&self) -> CancellationToken {
        self.state.cancel.clone()
    }

    /// The listing's and the copies' live counters, for a progress display.
    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live)
    }

    /// Bytes read and sent by the local worker so far.
    pub fn progress(&self) -> Arc<agent::worker::Progress> {
        Arc::clone(&self.eng.local.progress)
    }

    /// Serves `/metrics` and the status page on `listener` for this run.
    pub fn serve_status(&self, listener: tokio::net::TcpListener) {
        crate::status::serve(&self.eng, listener, format!("run {}", self.name));
    }

    /// Waits for the job to end (and for the tasks still leased after a
    /// failed listing), or for [`Standalone::cancel_token`]. An incremental
    /// job never ends: its passes go on until cancelled, each given to
    /// `on_pass` as it begins and ends (with when the next is due). Then
    /// the engine stops, the errors file is written when any object failed,
    /// and the first `shown` failures are read.
    pub async fn finish(
        self,
        mut on_pass: impl FnMut(PassEvent<'_>),
        shown: usize,
    ) -> Result<Finished, RunError> {
        let incremental = self.incremental.is_some();
        let every = self.incremental.unwrap_or_default();
        let job_id = self.job_id;
        let mut seen = self.seen;
        let mut changed = self.state.job_changed.subscribe();
        let finished = loop {
            changed.mark_unchanged();
            let st = Arc::clone(&self.store);
            let (job, tasks, passes) = tokio::task::spawn_blocking(move || {
                let passes = if incremental {
                    st.passes(job_id)?
                } else {
                    Vec::new()
                };
                Ok::<_, StoreError>((st.job(job_id)?, st.task_states(job_id)?, passes))
            })
            .await
            .map_err(|e| RunError::Runtime(e.to_string()))??;
            match job {
                Some(j) if j.state.is_finished() && tasks.dispatched == 0 => break Some(j.state),
                Some(j) => seen.report(&j, &passes, every, &mut on_pass),
                None => break None,
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { break None },
                _ = self.state.cancel.cancelled() => break None,
            }
        };
        let cancelled = self.state.cancel.is_cancelled();
        self.eng.stop().await;
        let counts = self.store.counts(job_id)?;
        let scan = self
            .live
            .scan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let ending = match finished {
            Some(s) if !cancelled => Ending::Finished(s),
            _ => Ending::Interrupted,
        };
        let mut report = RunReport {
            ending,
            before: self.before,
            counts,
            scan,
            errors_file: None,
            first_failures: Vec::new(),
        };
        if ending != Ending::Interrupted && report.counts.failed > 0 {
            let path = self.work_dir.join(format!("{}.errors.tsv", self.name));
            crate::report::errors_file(&self.store, job_id, &path)
                .map_err(|e| RunError::Runtime(format!("writing {}: {e}", path.display())))?;
            report.errors_file = Some(path);
            report.first_failures = self.store.failed_page(job_id, None, shown)?.failed;
        }
        Ok(Finished {
            report,
            store: self.store,
            job_id,
            spec: self.spec,
        })
    }
}

/// A pass of an incremental job began or ended.
pub enum PassEvent<'a> {
    Began {
        number: u32,
        job: &'a str,
    },
    Ended {
        pass: &'a PassRecord,
        /// The next pass: its number, when (unix seconds), in how many
        /// seconds, and the interval.
        next: Option<(u32, i64, i64, Duration)>,
    },
}

/// The passes a run has told of so far.
#[derive(Clone, Copy, Default)]
struct PassesSeen {
    started: u32,
    ended: u32,
}

impl PassesSeen {
    fn report(
        &mut self,
        job: &JobRow,
        passes: &[PassRecord],
        every: Duration,
        on_pass: &mut impl FnMut(PassEvent<'_>),
    ) {
        for p in passes {
            if p.number > self.started {
                self.started = p.number;
                if p.ended_at.is_none() {
                    on_pass(PassEvent::Began {
                        number: p.number,
                        job: &job.name,
                    });
                }
            }
            if p.ended_at.is_some() && p.number > self.ended {
                self.ended = p.number;
                let next = match job.next_pass_at {
                    Some(at) if job.pass == p.number => {
                        Some((p.number + 1, at, (at - unix_now()).max(0), every))
                    }
                    _ => None,
                };
                on_pass(PassEvent::Ended { pass: p, next });
            }
        }
    }
}

impl RunReport {
    /// 0 for a job that succeeded, as [`proto::api::JobCounts::outcome`]
    /// decided when it ended.
    pub fn succeeded(&self) -> bool {
        self.state() == Some(JobState::Succeed)
    }

    /// The state the job ended in; `None` when the run was interrupted.
    pub fn state(&self) -> Option<JobState> {
        match self.ending {
            Ending::Finished(s) => Some(s),
            Ending::Interrupted => None,
        }
    }
}

impl Finished {
    /// The job's manifest rows, a page at a time, each with its destination
    /// key and source name ([`crate::report::manifest`]).
    pub fn manifest_pages(
        &self,
        mut page: impl FnMut(&[proto::api::ManifestRow]) -> std::io::Result<()>,
    ) -> Result<(), RunError> {
        let mut after = 0;
        loop {
            let p =
                crate::report::manifest(&self.store, self.job_id, Some(&self.spec), after, 10_000)?;
            let Some(last) = p.rows.last() else {
                return Ok(());
            };
            after = last.id;
            page(&p.rows).map_err(|e| RunError::Runtime(e.to_string()))?;
        }
    }
}

/// What a dry run found: the job's source listed (all of it, or the first
/// `sample` objects) by the same scanner and rules as a run, into a job
/// store in memory. Nothing is written anywhere.
pub struct DryRun {
    /// The listing stopped at the sample size.
    pub sampled: bool,
    pub stats: ScanStats,
    pub counts: Counts,
    /// Names the copy would fail on, by code: (code, objects, bytes).
    pub failures: Vec<(String, u64, u64)>,
    /// The first `shown` of them, in path order.
    pub first_failed: Vec<FailedObject>,
    /// The `shown` largest objects: (path, size).
    pub largest: Vec<(String, u64)>,
}

/// Lists `plan`'s source for `run --dry-run` and `submit --dry-run`.
pub async fn dry_run(plan: &Plan, sample: Option<u64>, shown: usize) -> anyhow::Result<DryRun> {
    use std::sync::atomic::{AtomicU64, Ordering};
    plan.preflight_read_only().await?;
    let store = Arc::new(Store::in_memory()?);
    let job = store.create_job(&plan.name, &plan.config_json, &plan.fingerprint)?;
    let mut scan_cfg = plan.scan.clone();
    // A dry run writes nothing, not even a probe file in destDir.
    if scan_cfg.dest_case == crate::scanner::DestCase::Probe {
        scan_cfg.dest_case = crate::scanner::DestCase::ProbeReadOnly;
    }
    let st = Arc::clone(&store);
    let outcome = tokio::task::spawn_blocking(move || {
        let stop = CancellationToken::new();
        let listed = AtomicU64::new(0);
        crate::scanner::scan(&st, job, &scan_cfg, &stop, |_, objs| {
            let n = listed.fetch_add(objs.len() as u64, Ordering::SeqCst) + objs.len() as u64;
            if sample.is_some_and(|s| n >= s) {
                stop.cancel();
            }
        })
    })
    .await??;
    Ok(DryRun {
        sampled: matches!(outcome, crate::scanner::ScanOutcome::Stopped(_)),
        stats: outcome.stats().clone(),
        counts: store.counts(job)?,
        failures: store.failures_by_code(job)?,
        first_failed: store.failed_page(job, None, shown)?.failed,
        largest: store.largest(job, shown)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path, extra: &str) -> Plan {
        let cfg = dir.join("job.cfg");
        let text = format!(
            "jobName=standalone_t\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}\n{extra}",
            dir.join("src").display(),
            dir.join("dest").display()
        );
        crate::plan::from_bytes(&cfg, text.as_bytes(), None).expect("plan")
    }

    async fn run(plan: &Plan, work: &Path, clean: bool) -> Result<RunReport, RunError> {
        let s = Standalone::start(plan, work, clean).await?;
        Ok(s.finish(|_| {}, 10).await?.report)
    }

    /// `run` as a user repeats it: a first run copies and succeeds; a rerun
    /// resumes the same job (nothing to do); a changed configuration is
    /// refused with the job left as it was; `--clean` forgets the job
    /// through the lifecycle (its rows go, the copy is made again) and a
    /// file that cannot be read fails the job with an errors file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_resumes_refuses_a_changed_job_and_cleans_through_the_lifecycle() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        for (name, body) in [("a.txt", "alpha"), ("sub/b.txt", "bravo!")] {
            std::fs::write(src.join(name), body).unwrap();
        }
        let work = tmp.path().join("work");
        let p = plan(tmp.path(), "");

        let first = run(&p, &work, false).await.unwrap();
        assert_eq!(first.ending, Ending::Finished(JobState::Succeed));
        assert!(first.succeeded());
        assert_eq!((first.counts.objects, first.counts.verified), (2, 2));
        assert_eq!(first.before.objects, 0);
        assert!(first.errors_file.is_none());
        assert_eq!(
            std::fs::read(tmp.path().join("dest/sub/b.txt")).unwrap(),
            b"bravo!"
        );

        let again = run(&p, &work, false).await.unwrap();
        assert!(again.succeeded());
        assert_eq!(again.before.verified, 2, "the rerun resumed the same job");

        let changed = plan(tmp.path(), "taskObjectCountLimit=7\n");
        match run(&changed, &work, false).await {
            Err(RunError::Usage(m)) => assert!(m.contains("--clean"), "{m}"),
            other => panic!(
                "a changed job was not refused: {:?}",
                other.map(|r| r.ending)
            ),
        }

        // A name that cannot be a key, root or not.
        use std::os::unix::ffi::OsStrExt;
        std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")), b"x").unwrap();
        let cleaned = run(&changed, &work, true).await.unwrap();
        assert_eq!(cleaned.before.objects, 0, "--clean started the job over");
        assert_eq!(cleaned.ending, Ending::Finished(JobState::Failed));
        assert_eq!((cleaned.counts.verified, cleaned.counts.failed), (2, 1));
        let errors = std::fs::read_to_string(cleaned.errors_file.as_ref().unwrap()).unwrap();
        assert!(errors.starts_with("code\tpath\treason\n"), "{errors}");
        assert!(errors.contains("not valid UTF-8"), "{errors}");
        assert_eq!(cleaned.first_failures.len(), 1);
    }

    /// A rerun of an incremental job killed mid-pass tells of nothing the
    /// earlier run told of, and of the pass it is in once that ends.
    #[test]
    fn a_rerun_tells_only_of_passes_from_now_on() {
        let pass = |number, ended: bool| PassRecord {
            number,
            started_at: 1,
            ended_at: ended.then_some(2),
            found: 0,
            new: 0,
            changed: 0,
            retried: 0,
            deleted: 0,
            copied: 0,
            failed: 0,
            error: None,
        };
        let job = JobRow {
            id: 1,
            name: "incr".into(),
            config: String::new(),
            fingerprint: String::new(),
            state: JobState::Running,
            scan_done: false,
            scan_checkpoint: None,
            pass: 3,
            next_pass_at: None,
            owner: None,
        };
        let mut seen = PassesSeen {
            started: 3,
            ended: 2,
        };
        let mut told = Vec::new();
        let mut tell = |ev: PassEvent<'_>| {
            told.push(match ev {
                PassEvent::Began { number, .. } => format!("began {number}"),
                PassEvent::Ended { pass, .. } => format!("ended {}", pass.number),
            })
        };
        let every = Duration::from_secs(900);
        seen.report(
            &job,
            &[pass(1, true), pass(2, true), pass(3, false)],
            every,
            &mut tell,
        );
        seen.report(
            &job,
            &[pass(1, true), pass(2, true), pass(3, true)],
            every,
            &mut tell,
        );
        seen.report(
            &job,
            &[pass(1, true), pass(2, true), pass(3, true), pass(4, false)],
            every,
            &mut tell,
        );
        assert_eq!(told, ["ended 3", "began 4"]);
    }
}
