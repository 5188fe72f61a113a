//! The control verbs while no `ossimportd` runs, as the original's worked
//! with the service stopped: `submit` records the job in the store the
//! daemon reads when it starts, `clean` forgets one, `stat` shows them as
//! last recorded. The store's lock decides a race with a daemon starting
//! now: if the daemon holds it, [`Offline::open`] answers `None` and the
//! caller asks the daemon instead. Jobs change only through the
//! lifecycle ([`crate::engine::lifecycle::next`]), as under the daemon.

use std::path::{Path, PathBuf};

use proto::api::JobStatus;

use crate::access::Caller;
use crate::engine::lifecycle::{self, Effect, Event};
use crate::engine::{self, Saved};
use crate::plan::Plan;
use crate::preflight::Preflight;
use crate::standalone::RunError;
use crate::state::{STORE_FILE, restrict};
use crate::store::{Store, StoreError};

/// A daemon's job store, opened by a control verb because no daemon
/// answers.
pub struct Offline {
    work: PathBuf,
    store: Store,
}

impl Offline {
    /// The job store in `work`, when there is one (`create`: make it) and
    /// no daemon holds it.
    pub fn open(work: &Path, create: bool) -> Result<Option<Offline>, RunError> {
        let work = std::path::absolute(work).unwrap_or_else(|_| work.to_path_buf());
        let path = work.join(STORE_FILE);
        if !create && !path.is_file() {
            return Ok(None);
        }
        if create {
            std::fs::create_dir_all(&work)
                .map_err(|e| RunError::Runtime(format!("{}: {e}", work.display())))?;
        }
        let store = match Store::open(&path) {
            Ok(s) => s,
            Err(StoreError::InUse { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        restrict(&path);
        Ok(Some(Offline { work, store }))
    }

    /// Where the store is.
    pub fn store_path(&self) -> PathBuf {
        self.work.join(STORE_FILE)
    }

    /// Records a planned job as the daemon's submit would: the same path
    /// checks for `caller`, the same preflight, the job file's bytes (and
    /// the sys.properties planned with, `saved_sys`) saved for the daemon
    /// to plan it again at start. The caller is this process's user.
    pub async fn submit(
        &self,
        plan: &Plan,
        content: &[u8],
        saved_sys: Option<&[u8]>,
        origin: &str,
    ) -> Result<(), RunError> {
        let caller = Caller::current();
        engine::check_paths(plan, &self.work, caller)
            .map_err(|e| RunError::Usage(e.to_string()))?;
        plan.preflight()
            .await
            .map_err(|e| RunError::Usage(format!("{e:#}")))?;
        let owner = crate::access::user_name(caller.uid);
        engine::record(
            &self.store,
            &self.work,
            &plan.name,
            &plan.config_json,
            &plan.fingerprint,
            Saved {
                content,
                sys: saved_sys,
                origin,
                owner: Some((caller.uid, &owner)),
            },
        )?;
        Ok(())
    }

    /// Forgets job `name` through the lifecycle's [`Event::Clean`]: its rows
    /// and saved files deleted. Returns the directory that held its files.
    pub fn clean(&self, name: &str) -> Result<PathBuf, RunError> {
        let job = self
            .store
            .find_job(name)?
            .ok_or_else(|| RunError::Usage(format!("job {name} not found")))?;
        let t = lifecycle::next(job.state, job.scan_done, Event::Clean)
            .map_err(|r| RunError::Usage(format!("job {name} {r}")))?;
        let mut dir = None;
        for e in t.effects {
            match e {
                // No scanner runs in this process.
                Effect::StopScan => {}
                Effect::Forget => dir = Some(engine::forget(&self.store, &self.work, job.id)?),
                other => {
                    return Err(RunError::Runtime(format!(
                        "cleaning job {name} needs {other:?}, which only a running daemon does"
                    )));
                }
            }
        }
        dir.ok_or_else(|| RunError::Runtime(format!("job {name} was not forgotten")))
    }

    /// The jobs (or job `name`) as last recorded.
    pub fn stat(&self, name: Option<&str>) -> Result<Vec<JobStatus>, RunError> {
        let mut out = Vec::new();
        for row in self.store.jobs()? {
            if name.is_some_and(|j| j != row.name) {
                continue;
            }
            out.push(engine::status_in(&self.store, row, |_| None)?);
        }
        if let (Some(j), true) = (name, out.is_empty()) {
            return Err(RunError::Usage(format!("job {j} not found")));
        }
        Ok(out)
    }
}

/// What `clean` prints, as the original did.
pub fn cleaned(job: &str, dir: &Path) -> String {
    crate::ctl_api::cleaned(job, dir)
}
