//! The executor: runs tasks with bounded concurrency and memory.
//!
//! Concurrency is bounded twice: `object_concurrency` objects in flight
//! (`workerTaskThreadNum`), and a memory budget in MiB that every in-memory
//! body (a small file, a part) must hold a share of while it exists. So
//! memory is bounded by the budget whatever the mix of file sizes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::job::{DestSpec, JobSpec, SourceSpec, VerifyMode};
use storage::azure::AzureSource;
use storage::health::Health;
use storage::http::HttpSource;
use storage::limit::RateLimiter;
use storage::s3::{S3Config, S3Store};
use tokio::sync::Semaphore;

/// Live byte counters read by progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    /// Source bytes read and sent (or hashed, for audits and skips).
    pub bytes: AtomicU64,
    /// Objects being copied now, and their sizes summed.
    pub objects_in_flight: AtomicU64,
    pub bytes_in_flight: AtomicU64,
    /// Objects above the multipart threshold while they are copied, by
    /// object id: a display shows one bar each.
    large: std::sync::Mutex<std::collections::BTreeMap<i64, Arc<FileProgress>>>,
    /// One breaker per endpoint this process talks to, shared by the
    /// executors of every job that uses it and kept for the life of the
    /// process (so its outage counts only grow); see [`Progress::endpoint`].
    endpoints: Arc<storage::health::Registry>,
}

/// One large object's progress.
#[derive(Debug)]
pub struct FileProgress {
    pub name: String,
    pub total: u64,
    pub done: AtomicU64,
}

impl Progress {
    /// The endpoints down now, as progress lines show them.
    pub fn outages(&self) -> Vec<storage::health::Outage> {
        self.all_endpoints()
            .iter()
            .filter_map(|h| h.status().down)
            .collect()
    }

    /// The endpoints held to a rate now because they said they were
    /// overloaded, as progress lines show them.
    pub fn throttles(&self) -> Vec<String> {
        self.all_endpoints()
            .iter()
            .filter_map(|h| h.report().throttle_line())
            .collect()
    }

    /// Every endpoint this process has talked to, for heartbeats and
    /// `/metrics`.
    pub fn endpoints(&self) -> Vec<proto::api::EndpointHealth> {
        self.all_endpoints().iter().map(|h| h.report()).collect()
    }

    fn all_endpoints(&self) -> Vec<Arc<Health>> {
        self.endpoints.all()
    }

    /// The breaker of `role`'s endpoint `label` (`Bucket::endpoint_label`):
    /// the one this process has, or a new one.
    pub(crate) fn endpoint(&self, role: &'static str, label: &str) -> Arc<Health> {
        self.endpoints.get(role, label).0
    }

    /// The large objects in flight, oldest first.
    pub fn large_files(&self) -> Vec<Arc<FileProgress>> {
        self.large_map().values().cloned().collect()
    }

    fn large_map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<i64, Arc<FileProgress>>> {
        self.large.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Shows `object_id` as a large file until the guard is dropped.
    pub(crate) fn track(self: &Arc<Self>, object_id: i64, name: &str, total: u64) -> Tracked {
        self.large_map().insert(
            object_id,
            Arc::new(FileProgress {
                name: name.to_string(),
                total,
                done: AtomicU64::new(0),
            }),
        );
        Tracked {
            progress: Arc::clone(self),
            object_id,
        }
    }

    /// `n` more bytes of `object_id` (counted for its bar when it has one).
    pub(crate) fn add(&self, object_id: i64, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(f) = self.large_map().get(&object_id) {
            f.done.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Counts one object in flight until dropped.
pub(crate) struct InFlight {
    progress: Arc<Progress>,
    size: u64,
}

impl InFlight {
    pub(crate) fn new(progress: &Arc<Progress>, size: u64) -> InFlight {
        progress.objects_in_flight.fetch_add(1, Ordering::Relaxed);
        progress.bytes_in_flight.fetch_add(size, Ordering::Relaxed);
        InFlight {
            progress: Arc::clone(progress),
            size,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.progress
            .objects_in_flight
            .fetch_sub(1, Ordering::Relaxed);
        self.progress
            .bytes_in_flight
            .fetch_sub(self.size, Ordering::Relaxed);
    }
}

/// Removes a large file's bar when its copy ends, however it ends.
pub(crate) struct Tracked {
    progress: Arc<Progress>,
    object_id: i64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.progress.large_map().remove(&self.object_id);
    }
}

/// Where objects go.
#[derive(Clone, Debug)]
pub enum Dest {
    S3 { store: S3Store, prefix: String },
    Local { dir: PathBuf, prefix: String },
}

/// Where objects come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A directory; objects are `root + rel_path`, opened without
    /// following symlinks (but for the file itself with `follow_symlinks`).
    Local {
        root: PathBuf,
        follow_symlinks: bool,
    },
    /// A bucket; objects are `prefix + rel_path`, read with `If-Match` on
    /// the ETag seen at listing.
    S3 { store: S3Store, prefix: String },
    /// URLs; each object's URL is its `src_ref`.
    Http {
        client: Box<Result<HttpSource, String>>,
    },
    /// An Azure Blob container; blobs are `prefix + rel_path`, read with
    /// `If-Match` on the listed ETag.
    Azure {
        store: Box<Result<AzureSource, String>>,
        prefix: String,
    },
    /// A CDN in front of a bucket: `domain/prefix+rel_path`, checked
    /// against the listed size and ETag.
    Cdn {
        client: Box<Result<HttpSource, String>>,
        domain: String,
        prefix: String,
    },
}

/// One executor per job, kept across batches: a batch whose spec differs
/// from the executor's only in what may change while the job runs (its
/// live limits, [`JobSpec::identity`]) gets the same executor with those
/// limits applied; any other change makes a new one. The agent service,
/// the master's local worker and its confined children each keep one.
#[derive(Default)]
pub struct Executors {
    jobs: std::sync::Mutex<std::collections::HashMap<i64, (JobSpec, Arc<Executor>)>>,
}

impl Executors {
    /// The executor for `spec`'s job, and whether its live limits changed;
    /// `make` builds a new one when there is none or the spec changed.
    pub fn get(&self, spec: &JobSpec, make: impl FnOnce() -> Executor) -> (Arc<Executor>, bool) {
        let key = spec.identity();
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, e)) = jobs.get(&spec.job_id)
            && *k == key
        {
            let changed = e.set_limits(&spec.live_limits());
            return (Arc::clone(e), changed);
        }
        let e = Arc::new(make());
        jobs.insert(spec.job_id, (key, Arc::clone(&e)));
        (e, false)
    }

    /// Applies a job's new limits to its executor, if there is one;
    /// whether anything changed.
    pub fn set_limits(&self, limits: &proto::job::LiveLimits) -> bool {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.get(&limits.job_id)
            .is_some_and(|(_, e)| e.set_limits(limits))
    }
}

/// Shared state of an executor; cheap to clone through an `Arc`.
pub struct Executor {
    pub(crate) spec: JobSpec,
    pub(crate) source_root: PathBuf,
    pub(crate) source: Source,
    /// Bandwidth cap shared by every transfer (`workerMaxThroughput`).
    pub(crate) bandwidth: Arc<RateLimiter>,
    /// Requests per second to the source and destination stores.
    pub(crate) requests: Arc<RateLimiter>,
    /// Permits of `objects` now (changed by [`Executor::set_limits`]).
    object_permits: std::sync::Mutex<u32>,
    pub(crate) dest: Dest,
    /// Objects in flight.
    pub(crate) objects: Arc<Semaphore>,
    /// Held by the task now handing out its objects (`run_task`): tasks
    /// start theirs one after another, in the order they came.
    pub(crate) turn: tokio::sync::Mutex<()>,
    /// Memory budget in MiB for in-memory bodies.
    pub(crate) memory: Arc<Semaphore>,
    pub(crate) memory_mib: u32,
    pub(crate) progress: Arc<Progress>,
    /// Where the executor reads for a job on someone's behalf (the worker
    /// on the master, for a job an unprivileged user submitted): asked
    /// about every local source file once it is open, with its path below
    /// the root; an `Err` (why) means it is not read for this job.
    pub(crate) confine: Option<Confine>,
    /// The breaker of each store this executor talks to (the destination,
    /// a bucket source): see [`storage::health`] and `crate::object`.
    /// A URL list's origins have theirs too ([`Executor::endpoints_for`]).
    pub(crate) endpoints: Vec<Arc<Health>>,
    /// Whether bucket-to-bucket copies are made within the store: the job
    /// allows it (`serverSideCopy`) and both buckets are on one endpoint;
    /// cleared for the rest of the job when the store refuses one (the
    /// destination's keys may not read the source).
    pub(crate) server_side: std::sync::atomic::AtomicBool,
}

/// The process's breaker for `bucket`'s endpoint, kept in `all` too.
fn endpoint_health(
    progress: &Progress,
    all: &mut Vec<Arc<Health>>,
    role: &'static str,
    bucket: &proto::job::Bucket,
) -> Arc<Health> {
    let h = progress.endpoint(role, &bucket.endpoint_label());
    all.push(Arc::clone(&h));
    h
}

/// See [`Executor::confine`].
pub type Confine = Arc<
    dyn Fn(&std::path::Path, &storage::beneath::SourceFile) -> Result<(), String> + Send + Sync,
>;

impl Executor {
    /// The breakers `obj` depends on: the destination's, a bucket source's,
    /// or its URL's origin's.
    pub(crate) fn endpoints_for(&self, obj: &proto::job::ObjectSpec) -> Vec<Arc<Health>> {
        let mut all = self.endpoints.clone();
        let origin = match &self.source {
            Source::Http { client } => (**client)
                .as_ref()
                .ok()
                .and_then(|c| c.health_of(obj.src_ref.as_deref().unwrap_or_default())),
            Source::Cdn { client, domain, .. } => (**client)
                .as_ref()
                .ok()
                .and_then(|c| c.health_of(&format!("{domain}/"))),
            _ => None,
        };
        all.extend(origin);
        all
    }

    /// Reads only what `confine` allows (see [`Executor::confine`]).
    pub fn with_confine(mut self, confine: Confine) -> Executor {
        self.confine = Some(confine);
        self
    }

    pub fn new(spec: JobSpec, progress: Arc<Progress>) -> Executor {
        // Both caps always exist (a rate of 0 is none), so `set` can
        // impose one on a running job.
        let requests = Arc::new(RateLimiter::new(f64::from(spec.limits.requests_per_second)));
        let bandwidth = Arc::new(RateLimiter::new(spec.limits.bytes_per_second as f64));
        let mut endpoints = Vec::new();
        // A condition on CopyObject is not among what the start checks
        // (`overwriteMode`): such jobs stream, under checked conditions.
        let server_side = spec.server_side_copy
            && spec.overwrite == proto::job::OverwriteMode::Always
            && match (&spec.source, &spec.dest) {
                (SourceSpec::S3(from), DestSpec::S3 { bucket: to, .. }) => {
                    from.endpoint.trim_end_matches('/') == to.endpoint.trim_end_matches('/')
                        && from.region == to.region
                }
                _ => false,
            };
        let (source_root, source) = match &spec.source {
            SourceSpec::Local {
                root,
                follow_symlinks,
            } => (
                PathBuf::from(root),
                Source::Local {
                    root: PathBuf::from(root),
                    follow_symlinks: *follow_symlinks,
                },
            ),
            SourceSpec::S3(bucket) => (
                PathBuf::new(),
                Source::S3 {
                    store: S3Store::new(&S3Config {
                        request_limiter: Some(Arc::clone(&requests)),
                        health: Some(endpoint_health(&progress, &mut endpoints, "source", bucket)),
                        ..S3Config::new(bucket.clone(), spec.max_attempts)
                    }),
                    prefix: bucket.prefix.clone(),
                },
            ),
            SourceSpec::Http => (
                PathBuf::new(),
                // Fails only when the system trust roots cannot be read at
                // all; every download then fails with this reason.
                Source::Http {
                    client: Box::new(
                        HttpSource::new()
                            .map(|c| c.with_health(Arc::clone(&progress.endpoints)))
                            .map_err(|e| e.to_string()),
                    ),
                },
            ),
            SourceSpec::Azure(container) => (
                PathBuf::new(),
                // Fails only for settings the daemon's plan already checked;
                // every download then fails with this reason.
                Source::Azure {
                    store: Box::new({
                        let h =
                            progress.endpoint("source", &storage::azure::health_label(container));
                        endpoints.push(Arc::clone(&h));
                        AzureSource::with_health(container, spec.max_attempts, h)
                    }),
                    prefix: container.prefix.clone(),
                },
            ),
            SourceSpec::Cdn { domain, prefix } => (
                PathBuf::new(),
                Source::Cdn {
                    client: Box::new(
                        HttpSource::new()
                            .map(|c| c.with_health(Arc::clone(&progress.endpoints)))
                            .map_err(|e| e.to_string()),
                    ),
                    domain: domain.trim_end_matches('/').to_string(),
                    prefix: prefix.clone(),
                },
            ),
        };
        let dest = match &spec.dest {
            DestSpec::S3 {
                bucket,
                server_side_encryption,
                storage_class,
            } => Dest::S3 {
                store: S3Store::new(&S3Config {
                    bucket: bucket.clone(),
                    max_attempts: spec.max_attempts,
                    server_side_encryption: *server_side_encryption,
                    storage_class: storage_class.clone(),
                    request_limiter: Some(Arc::clone(&requests)),
                    health: Some(endpoint_health(
                        &progress,
                        &mut endpoints,
                        "destination",
                        bucket,
                    )),
                }),
                prefix: bucket.prefix.clone(),
            },
            DestSpec::Local { dir, prefix } => Dest::Local {
                dir: PathBuf::from(dir),
                prefix: prefix.clone(),
            },
        };
        // Enough for every part of two large files in flight, at least 1 GiB.
        let part_mib = spec.part_size.div_ceil(1 << 20) as u32;
        // Remote objects up to the multipart threshold are held whole.
        let threshold_mib = spec
            .multipart_threshold
            .div_ceil(1 << 20)
            .min(u64::from(u32::MAX / 2)) as u32;
        let memory_mib = (1024u32)
            .max(
                part_mib
                    .saturating_mul(spec.part_concurrency.max(1))
                    .saturating_mul(2),
            )
            .max(threshold_mib.saturating_add(part_mib));
        Executor {
            objects: Arc::new(Semaphore::new(spec.object_concurrency.max(1) as usize)),
            object_permits: std::sync::Mutex::new(spec.object_concurrency.max(1)),
            turn: tokio::sync::Mutex::new(()),
            requests,
            memory: Arc::new(Semaphore::new(memory_mib as usize)),
            memory_mib,
            spec,
            source_root,
            source,
            bandwidth,
            dest,
            progress,
            confine: None,
            endpoints,
            server_side: server_side.into(),
        }
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Applies a running job's new limits to the transfers in flight and to
    /// come: the bandwidth and request caps at once, objects in flight as
    /// objects finish (a lower count waits for its permits). Returns whether
    /// anything changed.
    pub fn set_limits(&self, l: &proto::job::LiveLimits) -> bool {
        let mut changed = false;
        let bw = l.bytes_per_second as f64;
        if self.bandwidth.rate() != bw {
            self.bandwidth.set_rate(bw);
            changed = true;
        }
        let rq = f64::from(l.requests_per_second);
        if self.requests.rate() != rq {
            self.requests.set_rate(rq);
            changed = true;
        }
        let want = l.object_concurrency.max(1);
        let mut have = self
            .object_permits
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if want > *have {
            self.objects.add_permits((want - *have) as usize);
            changed = true;
        } else if want < *have {
            let (sem, n) = (Arc::clone(&self.objects), *have - want);
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(n).await {
                    p.forget();
                }
            });
            changed = true;
        }
        *have = want;
        changed
    }

    /// The verification mode for an object modified at `mtime`:
    /// `lastModify` makes objects modified after it size-only, as the
    /// original did (they are expected to change again).
    pub(crate) fn verify_mode(&self, mtime: i64) -> VerifyMode {
        let last_modify = self.spec.limits.last_modify;
        if last_modify > 0 && mtime > last_modify {
            VerifyMode::Size
        } else {
            self.spec.verify
        }
    }

    pub(crate) fn add_progress(&self, n: u64) {
        self.progress.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` more bytes of a part of `object_id`, a large object.
    pub(crate) fn add_part_progress(&self, object_id: i64, n: u64) {
        self.progress.add(object_id, n);
    }
}
