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
use crate::worker::{Executor, Source};
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
    let work = async {
        match (ex.spec.mode, remote) {
            (JobMode::Import, false) => local::import(ex, obj, events, lease).await,
            (JobMode::Import, true) => remote::import(ex, obj, events, lease).await,
            (JobMode::Audit, false) => local::audit(ex, obj).await.map(Done::from),
            (JobMode::Audit, true) => remote::audit(ex, obj).await.map(Done::from),
        }
    };
    let work = storage::s3::RETRIES.scope(Arc::clone(&retries), work);
    // A total deadline per object, retries included.
    let outcome = match ex.spec.limits.object_timeout_secs {
        0 => work.await,
        secs => match tokio::time::timeout(Duration::from_secs(secs), work).await {
            Ok(r) => r,
            Err(_) => Err(Fail(
                ErrorCode::DestError,
                format!("gave up after objectTimeout={secs} s"),
            )),
        },
    };
    let retries = retries.load(Ordering::Relaxed);
    let mut result = ObjectResult {
        object_id: obj.object_id,
        task_id,
        outcome: Outcome::Failed,
        size: obj.size,
        crc64: None,
        md5: None,
        etag: None,
        verified_by: String::new(),
        error: None,
        retries,
        parts_resumed: 0,
        source_ident: None,
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
        }
        Ok(Done::Skipped(s)) => {
            result.outcome = Outcome::Skipped;
            result.etag = s.etag;
            result.verified_by = s.by.to_owned();
        }
        Err(Fail(code, message)) => result.error = Some(ObjectError { code, message }),
    }
    result
}

impl Executor {
    /// Runs one task to the end, sending events as objects finish. When
    /// `cancel` fires, objects not yet started are left alone (they stay
    /// pending in the store) and in-flight ones are dropped; a multipart
    /// upload keeps its recorded parts for the next run. `TaskDone` is sent
    /// only if every object reported.
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
