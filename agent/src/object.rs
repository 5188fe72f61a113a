//! The life of one object, whatever it is: which copy path takes it
//! (local or remote source, import or audit), its deadline, and the
//! [`ObjectResult`] it ends in; and the task loop that runs objects with
//! bounded concurrency.
//!
//! An object is reported `Verified` only after what the destination reports
//! (size, ETag, CRC64, or the bytes themselves on read-back) matched what
//! was computed while reading the source, and the source was unchanged from
//! before the first read to after the last (see [`crate::verify`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proto::job::{
    ErrorCode, Event, JobMode, ObjectError, ObjectResult, ObjectSpec, Outcome, TaskSpec,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::step::{Done, Fail};
use crate::worker::{Dest, Executor, Source};
use crate::{local, remote};

/// Copies (or audits) one object and returns its result; never panics on
/// bad input, every problem becomes a failed result with a reason.
async fn process(
    ex: &Arc<Executor>,
    task_id: i64,
    obj: &ObjectSpec,
    events: &mpsc::Sender<Event>,
    lease: &CancellationToken,
) -> ObjectResult {
    let retries = Arc::new(AtomicU32::new(0));
    let _in_flight = crate::worker::InFlight::new(&ex.progress, obj.size);
    let remote = !matches!(ex.source, Source::Local { .. });
    // A bar of its own on a terminal while a large object is copied (its
    // parts count towards it; audits and skips have none).
    let _bar = (ex.spec.mode == JobMode::Import && obj.size > ex.spec.multipart_threshold)
        .then(|| ex.progress.track(obj.object_id, &obj.rel_path, obj.size));
    // `overwriteMode`: what this object's writes may replace.
    let write_if = ex.spec.overwrite.write_if(obj.dest_etag.as_deref());
    let outcome = storage::s3::RETRIES
        .scope(
            Arc::clone(&retries),
            storage::s3::WRITE_IF
                .scope(write_if, riding_out_outages(ex, obj, events, lease, remote)),
        )
        .await;
    let retries = retries.load(Ordering::Relaxed);
    let mut result = ObjectResult {
        object_id: obj.object_id,
        task_id,
        outcome: Outcome::Failed,
        size: obj.size,
        crc64: None,
        md5: None,
        etag: None,
        verified_by: Default::default(),
        error: None,
        retries,
        parts_resumed: 0,
        source_ident: None,
        metadata: None,
    };
    match outcome {
        Ok(Done::Verified(v)) => {
            result.outcome = Outcome::Verified;
            result.size = v.size();
            result.crc64 = v.crc64();
            result.md5 = v.md5_hex();
            result.etag = v.etag().map(str::to_owned);
            result.verified_by = v.by();
            result.parts_resumed = v.parts_resumed();
            result.source_ident = v.source_ident();
            result.metadata = v.metadata();
        }
        Ok(Done::Skipped(s)) => {
            result.outcome = Outcome::Skipped;
            result.etag = s.etag;
            result.verified_by = s.by;
        }
        Err(Fail(ErrorCode::DestConflict, _)) => {
            result.error = Some(ObjectError {
                code: ErrorCode::DestConflict,
                message: conflict(ex, obj).await,
            })
        }
        Err(Fail(code, message)) => result.error = Some(ObjectError { code, message }),
    }
    result
}

/// Why a conditional write was refused, with both ETags: what this job
/// verified at the key (if anything) and what the key holds now.
async fn conflict(ex: &Executor, obj: &ObjectSpec) -> String {
    let now = match (&ex.dest, crate::dest::dest_name(&ex.dest, &obj.rel_path)) {
        (Dest::S3 { store, .. }, Ok(key)) => match store.head(&key).await {
            Ok(info) => format!("ETag {}", info.etag),
            Err(e) => format!("not readable now ({e})"),
        },
        _ => "unknown".into(),
    };
    let mode = ex.spec.overwrite;
    match &obj.dest_etag {
        Some(ours) => format!(
            "the destination object changed since this job wrote it (this job verified ETag {ours}; the destination holds {now}): not overwritten (overwriteMode={})",
            mode.as_str()
        ),
        None => format!(
            "the destination key holds an object this job did not write ({now}): not overwritten (overwriteMode={})",
            mode.as_str()
        ),
    }
}

/// Runs the object; when its failure overlapped a confirmed outage of an
/// endpoint (see [`storage::health`]), waits for the endpoint and runs it
/// again, not charged; an outage confirmed while it runs stops it at once
/// (a multipart upload keeps the parts it reported, and goes on from them).
/// No object starts while an endpoint is down, and they start ramping up
/// when it is back. Past `endpointOutageLimit`
/// the object fails `ENDPOINT_DOWN`. A failure while an endpoint said it
/// was overloaded (a governor holds its rate, see
/// [`storage::limit::Governor`]) runs again too, not charged, up to
/// [`THROTTLED_RERUNS`] times.
async fn riding_out_outages(
    ex: &Arc<Executor>,
    obj: &ObjectSpec,
    events: &mpsc::Sender<Event>,
    lease: &CancellationToken,
    remote: bool,
) -> Result<Done, Fail> {
    let limit = match ex.spec.limits.endpoint_outage_secs {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let endpoints = ex.endpoints_for(obj);
    let mut obj = std::borrow::Cow::Borrowed(obj);
    let mut throttled_reruns = 0u32;
    loop {
        for h in &endpoints {
            h.wait_up(limit).await.map_err(|o| {
                Fail(
                    ErrorCode::EndpointDown,
                    format!(
                        "{} (longer than endpointOutageLimit={} s)",
                        o.line(),
                        ex.spec.limits.endpoint_outage_secs
                    ),
                )
            })?;
        }
        // After an outage, work resumes ramping up (see `Health::admit`).
        let mut places = Vec::with_capacity(endpoints.len());
        for h in &endpoints {
            places.push(h.admit().await);
        }
        let before: u64 = endpoints.iter().map(|h| h.status().outages).sum();
        let signs_before: u64 = endpoints.iter().map(|h| h.governor().signs()).sum();
        let mut watches: Vec<_> = endpoints.iter().map(|h| h.watch()).collect();
        let went_down = async {
            if watches.is_empty() {
                return std::future::pending().await;
            }
            let changes = watches.iter_mut().map(|w| {
                Box::pin(async move {
                    let _ = w.wait_for(|st| st.down.is_some()).await;
                })
            });
            futures_util::future::select_all(changes).await;
        };
        // Parts this run reports, so that a run stopped by an outage goes on
        // from them.
        let (tx, mut rx) = mpsc::channel(64);
        let mut resume = obj.resume.clone();
        let run = {
            let obj = &*obj;
            async move {
                let work = async {
                    match (ex.spec.mode, remote) {
                        (JobMode::Import, false) => {
                            Box::pin(local::import(ex, obj, &tx, lease)).await
                        }
                        (JobMode::Import, true) => {
                            Box::pin(remote::import(ex, obj, &tx, lease)).await
                        }
                        (JobMode::Audit, false) => {
                            Box::pin(local::audit(ex, obj)).await.map(Done::from)
                        }
                        (JobMode::Audit, true) => {
                            Box::pin(remote::audit(ex, obj)).await.map(Done::from)
                        }
                    }
                };
                // A deadline per run, retries included, outage waits not.
                let work = async {
                    match ex.spec.limits.object_timeout_secs {
                        0 => work.await,
                        secs => match tokio::time::timeout(Duration::from_secs(secs), work).await {
                            Ok(r) => r,
                            Err(_) => Err(Fail(
                                ErrorCode::DestError,
                                format!("gave up after objectTimeout={secs} s"),
                            )),
                        },
                    }
                };
                tokio::select! {
                    r = work => Some(r),
                    () = went_down => None,
                }
            }
        };
        let forward = async {
            while let Some(e) = rx.recv().await {
                note_upload(&mut resume, &e);
                if events.send(e).await.is_err() {
                    break;
                }
            }
        };
        let (ran, ()) = tokio::join!(run, forward);
        drop(places);
        let failed_in_outage = match &ran {
            None => true,
            Some(Err(Fail(code, _))) if is_endpoint_code(*code) => {
                // A probe may be deciding about the signs this failure left.
                for h in &endpoints {
                    let _ = h.watch().wait_for(|st| !st.suspect).await;
                }
                let now: u64 = endpoints.iter().map(|h| h.status().outages).sum();
                now != before || endpoints.iter().any(|h| h.status().down.is_some())
            }
            _ => false,
        };
        // A failure while its endpoint said it was overloaded (its requests'
        // attempts spent on 503s and 429s) is the governor's business, not
        // the object's: it runs again at the rate now held, not charged.
        let failed_throttled = match &ran {
            Some(Err(Fail(code, _))) if is_endpoint_code(*code) && !failed_in_outage => {
                let signs_now: u64 = endpoints.iter().map(|h| h.governor().signs()).sum();
                signs_now > signs_before
                    && endpoints.iter().any(|h| h.governor().rate() > 0.0)
                    && throttled_reruns < THROTTLED_RERUNS
            }
            _ => false,
        };
        if failed_throttled {
            throttled_reruns += 1;
            if let Some(Err(Fail(_, why))) = &ran {
                tracing::debug!(
                    object = %proto::net::printable(&obj.rel_path),
                    why = %why,
                    "Failed while its endpoint was throttling; runs again at the rate now held (not counted as a failure)."
                );
            }
            let mut next = obj.into_owned();
            next.resume = resume;
            obj = std::borrow::Cow::Owned(next);
            continue;
        }
        match ran {
            Some(r) if !failed_in_outage => return r,
            _ => {
                tracing::debug!(
                    object = %proto::net::printable(&obj.rel_path),
                    "Stopped by an endpoint outage; runs again when it is back (not counted as a failure)."
                );
                let mut next = obj.into_owned();
                next.resume = resume;
                obj = std::borrow::Cow::Owned(next);
            }
        }
    }
}

/// Runs of one object that failed while its endpoint was throttling and
/// are run again, not charged, before such a failure counts.
const THROTTLED_RERUNS: u32 = 10;

/// Failure codes an unreachable endpoint ends in (the others are about the
/// object itself).
fn is_endpoint_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::DestError | ErrorCode::SourceUnreadable | ErrorCode::DestMissing
    )
}

/// Keeps `resume` up to date with an upload's events.
fn note_upload(resume: &mut Option<proto::job::MultipartResume>, e: &Event) {
    match e {
        Event::UploadStarted {
            upload_id,
            part_size,
            ..
        } => {
            *resume = Some(proto::job::MultipartResume {
                upload_id: upload_id.clone(),
                part_size: *part_size,
                parts: Vec::new(),
            });
        }
        Event::PartDone { part, .. } => {
            if let Some(r) = resume {
                r.parts.retain(|p| p.number != part.number);
                r.parts.push(part.clone());
            }
        }
        Event::UploadAborted { .. } => *resume = None,
        _ => {}
    }
}

impl Executor {
    /// Runs one task to the end, sending events as objects finish. When
    /// `cancel` fires, objects not yet started are left alone (they stay
    /// pending in the store) and in-flight ones are dropped; a multipart
    /// upload keeps its recorded parts for the next run. `TaskDone` is sent
    /// only if every object reported.
    ///
    /// An executor's tasks start their objects one task after another, in
    /// the order they came (the executor's `turn`, a fair lock): the next
    /// task takes the slots its predecessor's last objects free. An agent
    /// holding two tasks then finishes the first while the second still
    /// has work, and the daemon's next task arrives before the slots run
    /// dry. Side by side, tasks shared the slots evenly and ended together,
    /// and every slot idled for a report's round trip at each pair.
    pub async fn run_task(
        self: &Arc<Self>,
        task: TaskSpec,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) {
        let mut set = JoinSet::new();
        let task_id = task.task_id;
        let total = task.objects.len();
        let mut reported = 0usize;
        let turn = tokio::select! {
            t = self.turn.lock() => t,
            _ = cancel.cancelled() => return,
        };
        for obj in task.objects {
            let permit = tokio::select! {
                p = self.objects.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = cancel.cancelled() => break,
            };
            let this = Arc::clone(self);
            let events = events.clone();
            let cancel = cancel.clone();
            set.spawn(async move {
                let _permit = permit;
                let result = tokio::select! {
                    r = process(&this, task_id, &obj, &events, &cancel) => r,
                    _ = cancel.cancelled() => return false,
                };
                events.send(Event::ObjectDone(result)).await.is_ok()
            });
            // Reap finished objects as we go so the set stays small.
            while let Some(done) = set.try_join_next() {
                reported += usize::from(matches!(done, Ok(true)));
            }
        }
        drop(turn);
        while let Some(done) = set.join_next().await {
            match done {
                Ok(ok) => reported += usize::from(ok),
                Err(e) => warn!(task_id, error = %e, "Object worker panicked."),
            }
        }
        if reported == total && !cancel.is_cancelled() {
            let _ = events.send(Event::TaskDone { task_id }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proto::job::{Event, JobSpec, ObjectSpec, TaskSpec};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use crate::worker::{Executor, Progress};

    /// Two tasks on one executor with two objects in flight: the second
    /// task starts its objects only as the first one's last ones leave
    /// the slots, so the first ends while the second still has work (a
    /// local source and destination in temporary directories).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_executors_tasks_start_their_objects_in_turn() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "job_id": 1, "job_name": "j", "mode": "import",
            "source": {"type": "local", "root": src.path(), "follow_symlinks": false},
            "dest": {"type": "local", "dir": dst.path(), "prefix": ""},
            "multipart_threshold": 1 << 20, "part_size": 1 << 20, "part_concurrency": 1,
            "object_concurrency": 2, "verify": "size", "skip": "none",
            "record_md5": false, "max_attempts": 1,
            "limits": {"bytes_per_second": 0, "requests_per_second": 0,
                "object_timeout_secs": 0, "last_modify": 0}
        }))
        .unwrap();
        const PER_TASK: usize = 8;
        let task = |task_id: i64| {
            let objects = (0..PER_TASK)
                .map(|i| {
                    let rel_path = format!("t{task_id}/{i}");
                    let path = src.path().join(&rel_path);
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
                    let mtime = std::fs::metadata(&path)
                        .unwrap()
                        .modified()
                        .unwrap()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64;
                    ObjectSpec {
                        object_id: task_id * 100 + i as i64,
                        rel_path,
                        size: 4096,
                        mtime,
                        ident: None,
                        resume: None,
                        src_ref: None,
                        written: None,
                        dest_etag: None,
                    }
                })
                .collect();
            TaskSpec {
                task_id,
                job_id: 1,
                objects,
            }
        };
        let (first, second) = (task(1), task(2));
        let exec = Arc::new(Executor::new(spec, Arc::new(Progress::default())));
        let (tx, mut rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        // Both at once: whichever takes its turn first goes first.
        let runs: Vec<_> = [first, second]
            .into_iter()
            .map(|t| {
                let (exec, tx, cancel) = (Arc::clone(&exec), tx.clone(), cancel.clone());
                tokio::spawn(async move { exec.run_task(t, tx, cancel).await })
            })
            .collect();
        drop(tx);
        for r in runs {
            r.await.unwrap();
        }
        let mut order = Vec::new();
        while let Ok(e) = rx.try_recv() {
            match e {
                Event::ObjectDone(r) => {
                    assert_eq!(r.outcome, proto::job::Outcome::Verified, "{r:?}");
                    order.push(r.task_id);
                }
                Event::TaskDone { task_id } => order.push(-task_id),
                _ => {}
            }
        }
        assert_eq!(order.iter().filter(|&&t| t == 1).count(), PER_TASK);
        assert_eq!(order.iter().filter(|&&t| t == 2).count(), PER_TASK);
        // No object of the task that went second ends before all but the
        // last two (the two slots) of the one that went first have, and
        // the first is done before the second.
        let went_first = order[0];
        let went_second = 3 - went_first;
        let starts = order.iter().position(|&t| t == went_second).unwrap();
        let ahead = order[..starts].iter().filter(|&&t| t == went_first).count();
        assert!(ahead >= PER_TASK - 2, "{order:?}");
        let done = |t: i64| order.iter().position(|&x| x == -t).unwrap();
        assert!(done(went_first) < done(went_second), "{order:?}");
    }
}
