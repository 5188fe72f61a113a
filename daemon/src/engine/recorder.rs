//! The one way executor events reach the store: agents' reports (through the
//! agent API) and the local worker's queue into the same recorder, which
//! commits what arrives together in one transaction with the lease filter
//! in front ([`Store::record`]) and then updates the jobs' live counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proto::job::{Event, Outcome};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Engine;
use crate::scanner::ScanStats;
use crate::store::StoreError;

/// Most events committed in one transaction.
const MAX_BATCH: usize = 2000;
/// Longest wait for more events before a batch is committed: a commit per
/// one or two events cost more than the copying itself for small files.
const GATHER: Duration = Duration::from_millis(25);
/// Reports queued before senders wait (each holds up to a few thousand
/// events).
const QUEUE: usize = 64;

/// Counters of a running job for progress displays, updated after each
/// commit; the store stays the source of truth.
#[derive(Debug, Default)]
pub struct Live {
    pub scanned_objects: AtomicU64,
    pub scanned_bytes: AtomicU64,
    pub verified: AtomicU64,
    pub verified_bytes: AtomicU64,
    pub skipped: AtomicU64,
    pub skipped_bytes: AtomicU64,
    pub failed: AtomicU64,
    /// The listing has ended (cleanly or not) in this process.
    pub scan_ended: AtomicBool,
    /// How the last listing in this process ended: its statistics, or why
    /// it failed.
    pub scan: Mutex<Option<Result<ScanStats, String>>>,
}

impl Live {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }

    fn count(&self, outcome: Outcome, size: u64) {
        let (n, b) = match outcome {
            Outcome::Verified => (&self.verified, Some(&self.verified_bytes)),
            Outcome::Skipped => (&self.skipped, Some(&self.skipped_bytes)),
            Outcome::Failed => (&self.failed, None),
        };
        n.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = b {
            b.fetch_add(size, Ordering::Relaxed);
        }
    }
}

struct Report {
    /// The executor: an agent's key fingerprint, or the local worker.
    from: Arc<str>,
    events: Vec<Event>,
    /// Told once the report (and everything queued before it) is committed.
    ack: Option<oneshot::Sender<Result<(), RecordError>>>,
}

/// Why events were not recorded; the executor reports them again (an
/// agent) or its task is redone (the local worker).
#[derive(Clone, Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the recorder has stopped")]
    Stopped,
    #[error("the recorder stopped before committing")]
    NotCommitted,
    /// The commit failed (shared by every report of the batch).
    #[error("{0}")]
    Store(String),
}

/// The sending side, kept in [`State`]; [`run`] is the other end.
pub struct Recorder {
    tx: mpsc::Sender<Report>,
    rx: Mutex<Option<mpsc::Receiver<Report>>>,
    /// Ends [`run`] once every producer has stopped.
    stop: CancellationToken,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        Recorder {
            tx,
            rx: Mutex::new(Some(rx)),
            stop: CancellationToken::new(),
        }
    }

    /// Queues events and waits until they are committed (the agent API
    /// answers an agent only then).
    pub async fn record(&self, from: &str, events: Vec<Event>) -> Result<(), RecordError> {
        let (ack, done) = oneshot::channel();
        self.send(Report {
            from: from.into(),
            events,
            ack: Some(ack),
        })
        .await?;
        done.await.map_err(|_| RecordError::NotCommitted)?
    }

    /// Queues events without waiting for their commit.
    pub async fn queue(&self, from: &Arc<str>, events: Vec<Event>) -> Result<(), RecordError> {
        self.send(Report {
            from: Arc::clone(from),
            events,
            ack: None,
        })
        .await
    }

    async fn send(&self, r: Report) -> Result<(), RecordError> {
        self.tx.send(r).await.map_err(|_| RecordError::Stopped)
    }

    /// Lets [`run`] finish what is queued and end.
    pub(crate) fn close(&self) {
        self.stop.cancel();
    }
}

/// Commits reports until [`Recorder::close`], then drains the queue.
pub(crate) async fn run(eng: Arc<Engine>) {
    let Some(mut rx) = eng
        .recorder
        .rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    let stop = eng.recorder.stop.clone();
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else {
            // Closed: whatever is still queued is committed, then we end.
            rx.close();
            let mut rest = Vec::new();
            while let Some(r) = rx.recv().await {
                rest.push(r);
            }
            commit(&eng, rest).await;
            return;
        };
        let mut n = first.events.len();
        let mut waited_on = first.ack.is_some();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + GATHER;
        while n < MAX_BATCH {
            // Someone waits for this commit (an agent's request, a finished
            // task): take what is queued now and commit; what arrives
            // meanwhile rides the next commit. Otherwise gather a moment.
            let Some(r) = proto::runtime::next_by(&mut rx, deadline, waited_on).await else {
                break;
            };
            n += r.events.len();
            waited_on |= r.ack.is_some();
            batch.push(r);
        }
        commit(&eng, batch).await;
    }
}

async fn commit(eng: &Arc<Engine>, mut batch: Vec<Report>) {
    let state = &eng.state;
    if batch.is_empty() {
        return;
    }
    let acks: Vec<_> = batch.iter_mut().filter_map(|r| r.ack.take()).collect();
    let senders = {
        let mut s: Vec<&str> = batch.iter().map(|r| &*r.from).collect();
        s.sort_unstable();
        s.dedup();
        s.join(",")
    };
    let store = Arc::clone(&state.store);
    let metrics = eng.metrics.clone();
    // What each job asks of its results, and the executors' names, for the
    // daemon's own check of every result (`evidence::check`).
    let policies: HashMap<i64, super::evidence::Policy> = eng
        .jobs()
        .iter()
        .map(|(id, rt)| (*id, super::evidence::Policy::of(&rt.spec)))
        .collect();
    let names: HashMap<String, String> = state
        .agents()
        .iter()
        .map(|(fp, a)| (fp.clone(), a.name.clone()))
        .collect();
    let r = tokio::task::spawn_blocking(move || {
        let reports: Vec<(&str, &[Event])> = batch
            .iter()
            .map(|r| (&*r.from, r.events.as_slice()))
            .collect();
        let started = std::time::Instant::now();
        let check = |from: &str, listed: &crate::store::Listed, r: &proto::job::ObjectResult| {
            let Some(p) = policies.get(&listed.job_id) else {
                return Ok(());
            };
            super::evidence::check(p, listed, r).map_err(|why| {
                let who = names.get(from).map_or(from, String::as_str);
                format!("the daemon rejected the result of {who}: {why}")
            })
        };
        let r = store.record_checked(&reports, &check);
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        if r.is_ok() {
            metrics
                .events_recorded
                .inc_by(reports.iter().map(|(_, e)| e.len() as u64).sum());
        }
        r
    })
    .await
    .map_err(|e| StoreError::Worker(e.to_string()))
    .and_then(|r| r);
    let answer = match r {
        Ok(done) => {
            for (from, why) in &done.rejected {
                let name = {
                    let mut agents = state.agents();
                    match agents.get_mut(from.as_str()) {
                        Some(a) => {
                            a.rejected += 1;
                            a.name.clone()
                        }
                        None => from.clone(),
                    }
                };
                eng.metrics.rejected(&name);
                warn!(agent = %name, reason = %why, "Executor result rejected.");
            }
            if done.dropped > 0 {
                // A late report for a task requeued, re-leased or cleaned.
                info!(from = %senders, dropped = done.dropped, "Dropped events for tasks not leased to this agent.");
            }
            {
                let jobs = eng.jobs();
                for f in &done.objects {
                    if let Some(rt) = jobs.get(&f.job_id) {
                        rt.live.count(f.outcome, f.size);
                    }
                }
            }
            if done.tasks_done > 0 {
                state.wake.notify_one();
                state.jobs_changed();
            }
            Ok(())
        }
        Err(e) => {
            warn!(error = %e, "Executor results not recorded; they are reported again or redone.");
            Err(RecordError::Store(e.to_string()))
        }
    };
    for a in acks {
        let _ = a.send(answer.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proto::api::JobState;
    use proto::job::{ObjectResult, Outcome};

    use super::*;
    use crate::state::{Config, State};
    use crate::store::{NewObject, ObjectState, Store};

    fn done(object_id: i64, task_id: i64, size: u64, outcome: Outcome) -> Event {
        Event::ObjectDone(ObjectResult {
            object_id,
            task_id,
            outcome,
            size,
            crc64: Some(7),
            md5: Some("00".repeat(16)),
            etag: None,
            verified_by: if outcome == Outcome::Verified {
                "size+md5".into()
            } else {
                Default::default()
            },
            error: None,
            retries: 0,
            parts_resumed: 0,
            source_ident: None,
            metadata: None,
        })
    }

    /// Through the engine's recorder: `record` returns once the results
    /// are committed; only the lease holder's count, once; a result that
    /// disagrees with the listing is rejected (`REJECTED_RESULT`); the
    /// job's live counters follow what was recorded, not what was sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_lease_holder_counts_once_and_a_false_claim_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["src", "dest", "work"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        let text = format!(
            "jobName=recorder_t\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}\n",
            tmp.path().join("src").display(),
            tmp.path().join("dest").display()
        );
        let plan = crate::plan::from_bytes(&tmp.path().join("job.cfg"), text.as_bytes(), None)
            .expect("plan");
        let store = Arc::new(Store::in_memory().unwrap());
        let mut config = Config::new(&tmp.path().join("work"), None);
        config.reload_jobs = false;
        let state = State::standalone(config, Arc::clone(&store));
        let eng = crate::engine::start(&state).await.unwrap();

        let id = store
            .create_job(&plan.name, &plan.config_json, &plan.fingerprint)
            .unwrap();
        let obj = |p: &str, size: u64| NewObject {
            rel_path: p.into(),
            size,
            mtime: 1,
            ident: None,
            src_ref: None,
            failure: None,
        };
        let task = store
            .commit_task(id, &[obj("a", 10), obj("b", 20), obj("c", 30)], "[\"c\"]")
            .unwrap();
        // Paused: adopted without a listing or a dispatch of its own.
        store.set_job_state(id, JobState::Paused).unwrap();
        let row = store.job(id).unwrap().unwrap();
        let mut spec = plan.spec.clone();
        spec.job_id = id;
        let (live, _) = crate::engine::adopt(&eng, &row, spec, plan.scan.clone(), false)
            .await
            .unwrap();
        let leased = store.lease_tasks(id, 10, "A", i64::MAX).unwrap();
        let ids: Vec<i64> = leased[0].objects.iter().map(|o| o.object_id).collect();

        // B holds no lease: nothing of it counts.
        eng.recorder
            .record("B", vec![done(ids[0], task, 10, Outcome::Verified)])
            .await
            .unwrap();
        assert_eq!(store.counts(id).unwrap().verified, 0);

        eng.recorder
            .record(
                "A",
                vec![
                    done(ids[0], task, 10, Outcome::Verified),
                    done(ids[0], task, 10, Outcome::Verified),
                    // Claims 21 bytes of a 20-byte listing.
                    done(ids[1], task, 21, Outcome::Verified),
                    done(ids[2], task, 30, Outcome::Failed),
                    Event::TaskDone { task_id: task },
                ],
            )
            .await
            .unwrap();
        let c = store.counts(id).unwrap();
        assert_eq!((c.verified, c.failed, c.pending), (1, 2, 0));
        let b = store
            .objects()
            .unwrap()
            .into_iter()
            .find(|o| o.rel_path == "b")
            .unwrap();
        assert_eq!(b.state, ObjectState::Failed);
        assert_eq!(b.error_code.as_deref(), Some("REJECTED_RESULT"));
        assert_eq!(
            (Live::get(&live.verified), Live::get(&live.failed)),
            (1, 2),
            "live counters follow what was recorded"
        );
        eng.stop().await;
    }
}
