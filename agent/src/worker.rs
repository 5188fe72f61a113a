//! The executor: runs tasks with bounded concurrency and memory.
//!
//! Concurrency is bounded twice: `object_concurrency` objects in flight
//! (`workerTaskThreadNum`), and a memory budget in MiB that every in-memory
//! body (a small file, a part) must hold a share of while it exists. So
//! memory is bounded by the budget whatever the mix of file sizes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::job::{DestSpec, Event, JobSpec, SourceSpec, TaskSpec};
use storage::s3::{S3Config, S3Store};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::upload;

/// Live byte counters read by progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    /// Source bytes read and sent (or hashed, for audits and skips).
    pub bytes: AtomicU64,
}

/// Where objects go.
#[derive(Clone, Debug)]
pub enum Dest {
    S3 { store: S3Store, prefix: String },
    Local { dir: PathBuf, prefix: String },
}

/// Shared state of an executor; cheap to clone through an `Arc`.
pub struct Executor {
    pub(crate) spec: JobSpec,
    pub(crate) source_root: PathBuf,
    pub(crate) dest: Dest,
    /// Objects in flight.
    objects: Arc<Semaphore>,
    /// Memory budget in MiB for in-memory bodies.
    pub(crate) memory: Arc<Semaphore>,
    pub(crate) memory_mib: u32,
    pub(crate) progress: Arc<Progress>,
}

impl Executor {
    pub fn new(spec: JobSpec, progress: Arc<Progress>) -> Executor {
        let source_root = match &spec.source {
            SourceSpec::Local { root } => PathBuf::from(root),
        };
        let dest = match &spec.dest {
            DestSpec::S3 {
                endpoint,
                region,
                bucket,
                access_key,
                secret_key,
                path_style,
                prefix,
                server_side_encryption,
            } => Dest::S3 {
                store: S3Store::new(&S3Config {
                    endpoint: endpoint.clone(),
                    region: region.clone(),
                    bucket: bucket.clone(),
                    access_key: access_key.clone(),
                    secret_key: secret_key.clone(),
                    path_style: *path_style,
                    max_attempts: spec.max_attempts,
                    server_side_encryption: *server_side_encryption,
                }),
                prefix: prefix.clone(),
            },
            DestSpec::Local { dir, prefix } => Dest::Local {
                dir: PathBuf::from(dir),
                prefix: prefix.clone(),
            },
        };
        // Enough for every part of two large files in flight, at least 1 GiB.
        let part_mib = spec.part_size.div_ceil(1 << 20) as u32;
        let memory_mib = (1024u32).max(
            part_mib
                .saturating_mul(spec.part_concurrency.max(1))
                .saturating_mul(2),
        );
        Executor {
            objects: Arc::new(Semaphore::new(spec.object_concurrency.max(1) as usize)),
            memory: Arc::new(Semaphore::new(memory_mib as usize)),
            memory_mib,
            spec,
            source_root,
            dest,
            progress,
        }
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

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
                    r = upload::process(&this, task_id, &obj, &events) => r,
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

    pub(crate) fn add_progress(&self, n: u64) {
        self.progress.bytes.fetch_add(n, Ordering::Relaxed);
    }
}
