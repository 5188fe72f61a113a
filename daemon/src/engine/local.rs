//! In-process dispatch: the worker on the master, and the only executor of
//! `ossimportctl run`. The same `agent::worker::Executor` an agent runs,
//! leased tasks like any agent.
//!
//! In the original, the master was also a worker (`workers` line 1 is the
//! master; standalone mode ran the worker inside the service). Here it is
//! an agent entry named `local` whose batches the scheduler hands over in
//! memory instead of over HTTP; its events go to the same recorder, behind
//! the same lease filter, as an agent's, and it renews its leases as a
//! heartbeat would, dropping tasks the engine took back (pause, clean).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::worker::{Executor, Executors, Progress};
use proto::api::TaskBatch;
use proto::job::Event;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Engine;
use super::confined::Child;
use crate::agents::AgentEntry;
use crate::state::{blocking, unix_now};

/// The identity its leases are recorded under (agent fingerprints are
/// `SHA256:...`, so this never collides with one).
pub const LOCAL: &str = "local";

/// How often it renews its leases and refreshes its entry.
const BEAT: Duration = Duration::from_secs(1);
/// Events handed to the recorder at once, at most.
const EVENT_BATCH: usize = 2_000;

/// Tasks it runs now, by id.
#[derive(Default)]
pub struct LocalWorker {
    running: Mutex<HashMap<i64, CancellationToken>>,
    /// One executor per job, rebuilt when the job's spec changes.
    executors: Executors,
    /// Confined workers, by uid (see [`super::confined`]).
    children: Mutex<HashMap<u32, Arc<Child>>>,
    /// Bytes moved by every task it ran (progress displays, the agent
    /// table's rate).
    pub progress: Arc<Progress>,
}

/// What runs a batch's tasks.
enum Runner {
    /// In this process (as the daemon's user).
    InProcess(Arc<Executor>),
    /// In the job owner's confined worker.
    Confined(Arc<Child>, Box<proto::job::JobSpec>),
    /// Nothing could: the owner's worker did not start (why).
    Unavailable(String),
}

impl LocalWorker {
    /// Applies a job's new limits to the executor running it, if any.
    pub fn set_limits(&self, limits: &proto::job::LiveLimits) {
        self.executors.set_limits(limits);
        for c in self.children().values() {
            c.set_limits(limits);
        }
    }

    fn children(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Child>>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `uid`'s confined worker, started when it has none (or it died).
    fn child(
        &self,
        exe: &std::path::Path,
        uid: u32,
        work_dir: &std::path::Path,
    ) -> std::io::Result<Arc<Child>> {
        let mut children = self.children();
        if let Some(c) = children.get(&uid).filter(|c| c.alive()) {
            return Ok(Arc::clone(c));
        }
        let c = Child::spawn(exe, uid, work_dir, Arc::clone(&self.progress))?;
        children.insert(uid, Arc::clone(&c));
        Ok(c)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, CancellationToken>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job's executor; `confine` holds its local reads to what the
    /// job's owner could read (see `access::file_rule`).
    fn executor(
        &self,
        batch: &TaskBatch,
        confine: Option<agent::worker::Confine>,
    ) -> Arc<Executor> {
        self.executors
            .get(&batch.job, || {
                let e = Executor::new(batch.job.clone(), Arc::clone(&self.progress));
                match confine {
                    Some(c) => e.with_confine(c),
                    None => e,
                }
            })
            .0
    }
}

/// Registers the worker and keeps its entry and leases fresh until the
/// engine stops; tasks left leased by an earlier run go back to pending.
pub async fn run(eng: Arc<Engine>, capacity: u32) {
    let state = &eng.state;
    let released = match blocking(&state.store, |s| s.release_agent(LOCAL)).await {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "Cannot release the local worker's old leases; they expire.");
            0
        }
    };
    if released > 0 {
        eng.metrics.requeued("restart", released);
        info!(
            tasks = released,
            "Tasks of the previous local worker back to pending."
        );
    }
    let mut entry = AgentEntry::enrolled(LOCAL, LOCAL);
    entry.addr = Some("in-process".into());
    entry.in_process = true;
    entry.capacity = capacity.max(1);
    entry.last_seen = Some(Instant::now());
    state.agents().insert(LOCAL.into(), entry);
    info!(capacity, "Local worker ready.");
    state.wake.notify_one();
    let cancel = state.cancel.child_token();
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(BEAT) => {}
            _ = cancel.cancelled() => break,
        }
        let bytes = eng.local.progress.bytes.load(Ordering::Relaxed);
        let now = Instant::now();
        if let Some(a) = state.agents().get_mut(LOCAL) {
            a.last_seen = Some(now);
            let secs = now.duration_since(last.0).as_secs_f64();
            a.bytes_per_sec = if secs > 0.0 {
                (bytes.saturating_sub(last.1) as f64 / secs) as u64
            } else {
                0
            };
            a.bytes = bytes;
            let p = &eng.local.progress;
            a.objects_in_flight = p.objects_in_flight.load(Ordering::Relaxed);
            a.bytes_in_flight = p.bytes_in_flight.load(Ordering::Relaxed);
            a.throttled = storage::s3::THROTTLED.load(Ordering::Relaxed);
            // Its own, and those its users' confined workers report.
            a.endpoints = p.endpoints();
            for c in eng.local.children().values() {
                a.endpoints.extend(c.endpoints());
            }
        }
        last = (now, bytes);
        let ids: Vec<i64> = eng.local.running().keys().copied().collect();
        let until = unix_now() + state.config.lease.as_secs() as i64;
        match blocking(&state.store, move |s| s.renew_leases(LOCAL, &ids, until)).await {
            Ok(taken_back) => {
                let running = eng.local.running();
                for id in taken_back {
                    if let Some(c) = running.get(&id) {
                        info!(
                            task_id = id,
                            "Engine took the task back; the local worker drops it."
                        );
                        c.cancel();
                    }
                }
            }
            Err(e) => warn!(error = %e, "Local worker could not renew its leases."),
        }
    }
    for c in eng.local.running().values() {
        c.cancel();
    }
}

/// Runs a batch the scheduler leased to the local worker; returns at once.
pub fn start(eng: &Arc<Engine>, batch: TaskBatch) {
    let state = &eng.state;
    let owner = eng
        .jobs()
        .get(&batch.job.job_id)
        .and_then(|rt| rt.owner.clone())
        .map(|(uid, _)| crate::access::Caller::of_uid(uid))
        .filter(|c| !c.is_privileged());
    let runner = match (owner, &state.config.confine_exe) {
        (None, _) => Runner::InProcess(eng.local.executor(&batch, None)),
        // Root: the kernel holds the job to its owner's permissions.
        (Some(c), Some(exe)) => match eng.local.child(exe, c.uid, &state.config.work_dir) {
            Ok(child) => Runner::Confined(child, Box::new(batch.job.clone())),
            Err(e) => {
                warn!(uid = c.uid, error = %e, "Cannot start the confined worker; the job's objects fail.");
                Runner::Unavailable(format!(
                    "the worker for {} (uid {}) could not start: {e}",
                    crate::access::user_name(c.uid),
                    c.uid
                ))
            }
        },
        // Not root: the daemon cannot change users; it checks each file.
        (Some(c), None) => {
            let rule: agent::worker::Confine =
                Arc::new(crate::access::file_rule(c, state.config.work_dir.clone()));
            Runner::InProcess(eng.local.executor(&batch, Some(rule)))
        }
    };
    let runner = Arc::new(runner);
    let parent = state.cancel.child_token();
    let from: Arc<str> = LOCAL.into();
    for task in batch.tasks {
        let id = task.task_id;
        let cancel = parent.child_token();
        eng.local.running().insert(id, cancel.clone());
        let (tx, rx) = mpsc::channel::<Event>(EVENT_BATCH);
        let (eng2, runner, from) = (Arc::clone(eng), Arc::clone(&runner), Arc::clone(&from));
        state.tracker.spawn(async move {
            let eng = eng2;
            let st = &eng.state;
            let forward = tokio::spawn(forward(Arc::clone(&eng), Arc::clone(&from), rx));
            match &*runner {
                Runner::InProcess(ex) => ex.run_task(task, tx, cancel.clone()).await,
                Runner::Confined(child, job) => {
                    child.run_task(job, task, tx, cancel.clone()).await
                }
                Runner::Unavailable(why) => fail_all(task, why, tx).await,
            }
            // The sender is dropped: the forwarder hands over what is left,
            // and the flush returns once all of it is committed.
            if let Err(e) = forward.await {
                warn!(task_id = id, error = %e, "Local event forwarder stopped.");
            }
            if let Err(e) = eng.recorder.record(LOCAL, Vec::new()).await {
                warn!(task_id = id, error = %e, "Local worker's results not recorded; the task is redone.");
            }
            eng.local.running().remove(&id);
            // A task its executor ended without reporting in full (it was
            // not cancelled, so nothing else will run it) goes back to
            // pending now instead of after its lease.
            if !cancel.is_cancelled()
                && let Ok(n) = blocking(&st.store, move |s| s.release_tasks(LOCAL, &[id])).await
                && n > 0
            {
                warn!(task_id = id, "Task ended with objects unreported; it runs again.");
                // Fewer tasks leased: a waiter for the job's end looks again.
                st.jobs_changed();
            }
            st.wake.notify_one();
        });
    }
}

/// Every object of `task` failed for `why` (its worker could not start):
/// the job ends with the reason instead of retrying without end. Takes the
/// sender, as an executor does, so the forwarder ends when this returns.
async fn fail_all(task: proto::job::TaskSpec, why: &str, tx: mpsc::Sender<Event>) {
    for o in task.objects {
        let result = proto::job::ObjectResult {
            object_id: o.object_id,
            task_id: task.task_id,
            outcome: proto::job::Outcome::Failed,
            size: 0,
            crc64: None,
            md5: None,
            etag: None,
            verified_by: Default::default(),
            error: Some(proto::job::ObjectError {
                code: proto::job::ErrorCode::SourceUnreadable,
                message: why.to_string(),
            }),
            retries: 0,
            parts_resumed: 0,
            source_ident: None,
            metadata: None,
        };
        if tx.send(Event::ObjectDone(result)).await.is_err() {
            return;
        }
    }
    let _ = tx
        .send(Event::TaskDone {
            task_id: task.task_id,
        })
        .await;
}

/// Hands a task's events to the recorder as they come, in batches of what
/// is already queued.
async fn forward(eng: Arc<Engine>, from: Arc<str>, mut rx: mpsc::Receiver<Event>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < EVENT_BATCH {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        if let Err(e) = eng.recorder.queue(&from, batch).await {
            warn!(error = %e, "Local worker's results not recorded; the task is redone after its lease.");
            return;
        }
    }
}
