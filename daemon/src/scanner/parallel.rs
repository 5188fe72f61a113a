//! Parallel listing (`scanThreadCount` > 1): the source is split into
//! branches down to `maxMultiThreadScanDepth` (directories, or common
//! prefixes of a bucket): each level above the depth lists its own files
//! (a flat branch), each directory or prefix at the depth everything below
//! it (a deep branch). The split is stored before the first branch is
//! listed, and each branch commits its tasks with its own checkpoint, so a
//! killed listing resumes every branch where it stopped, with no object
//! listed twice or missed. Up to `scanThreadCount` branches are listed at
//! once, each closing its own tasks at the count and size limits.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

use super::bucket::{self, BucketLister};
use super::local::{self, LocalLister};
use super::{Lister, ScanConfig, ScanError, ScanOutcome, ScanStats, Tasks};
use crate::store::{BranchRow, NewObject, Store};
use proto::job::SourceSpec;
use storage::s3::S3Config;

pub(super) fn scan(
    store: &Store,
    job_id: i64,
    pass: u32,
    cfg: &ScanConfig,
    cancel: &CancellationToken,
    on_task: impl FnMut(i64, &[NewObject]) + Send,
    (folded, held): (Option<super::Folded>, super::Held<'_>),
) -> Result<ScanOutcome, ScanError> {
    let mut branches = store.branches(job_id)?;
    if branches.is_empty() {
        let split = match &cfg.source {
            SourceSpec::Local { root, .. } => local::partition(Path::new(root), cfg.split_depth)?,
            SourceSpec::S3(b) => bucket::partition(
                &S3Config::new(b.clone(), cfg.attempts),
                cfg.page_size,
                cfg.split_depth,
            )?,
            SourceSpec::Http | SourceSpec::Azure(_) | SourceSpec::Cdn { .. } => {
                vec![(true, String::new())]
            }
        };
        store.set_branches(job_id, &split)?;
        branches = store.branches(job_id)?;
    }
    let todo: Vec<BranchRow> = branches.into_iter().filter(|b| !b.done).collect();
    let next = AtomicUsize::new(0);
    let on_task = Mutex::new(on_task);
    // An error in one branch stops the others at their next entry.
    let stop = cancel.child_token();
    let handle = tokio::runtime::Handle::try_current().ok();
    let threads = cfg.threads.clamp(1, todo.len().max(1));
    let results: Vec<Result<(ScanStats, bool), ScanError>> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let _rt = handle.as_ref().map(|h| h.enter());
                    let stop = &stop;
                    let mut report = |id: i64, objs: &[NewObject]| {
                        (on_task.lock().unwrap_or_else(|p| p.into_inner()))(id, objs)
                    };
                    let r = work(
                        store,
                        job_id,
                        pass,
                        cfg,
                        stop,
                        (&todo, &next),
                        &mut report,
                        (&folded, held),
                    );
                    if r.is_err() {
                        stop.cancel();
                    }
                    r
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(ScanError::List("a listing thread panicked".into())))
            })
            .collect()
    });
    let mut stats = ScanStats::default();
    let mut complete = true;
    let mut first_err = None;
    for r in results {
        match r {
            Ok((s, c)) => {
                stats.add(&s);
                complete &= c;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if !complete || cancel.is_cancelled() {
        return Ok(ScanOutcome::Stopped(stats));
    }
    store.finish_scan(job_id)?;
    Ok(ScanOutcome::Finished(stats))
}

/// One listing thread: takes the next branch not yet taken until none is
/// left. Returns its counts and whether it listed every branch it took to
/// its end (false: stopped).
#[allow(clippy::too_many_arguments)]
fn work(
    store: &Store,
    job_id: i64,
    pass: u32,
    cfg: &ScanConfig,
    stop: &CancellationToken,
    (todo, next): (&[BranchRow], &AtomicUsize),
    report: &mut dyn FnMut(i64, &[NewObject]),
    (folded, held): (&Option<super::Folded>, super::Held<'_>),
) -> Result<(ScanStats, bool), ScanError> {
    let mut stats = ScanStats::default();
    let mut bucket = match &cfg.source {
        SourceSpec::S3(b) => Some(BucketLister::new(
            &S3Config::new(b.clone(), cfg.attempts),
            cfg.page_size,
        )),
        _ => None,
    };
    loop {
        let Some(b) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else {
            return Ok((stats, true));
        };
        let mut local_lister;
        let lister: &mut dyn Lister = match (&cfg.source, bucket.as_mut()) {
            (
                SourceSpec::Local {
                    root,
                    follow_symlinks,
                },
                _,
            ) => {
                local_lister =
                    LocalLister::branch(Path::new(root), *follow_symlinks, &b.at, b.deep)?;
                &mut local_lister
            }
            (_, Some(l)) => {
                l.set_branch(&b.at, b.deep);
                l
            }
            _ => {
                return Err(ScanError::List(
                    "no parallel listing for this source".into(),
                ));
            }
        };
        let mut out = Tasks::new(store, job_id, pass, cfg, stop, report, Some(b.ord));
        out.folded = folded.clone();
        out.held = held;
        let end = lister.list(b.checkpoint.as_deref(), &mut out);
        let end = match end {
            Ok(e) => e,
            Err(e) => {
                stats.add(&out.stats);
                return Err(e);
            }
        };
        match end {
            None => {
                stats.add(&out.stats);
                return Ok((stats, false));
            }
            Some(end) => {
                out.flush(&end)?;
                store.finish_branch(job_id, b.ord)?;
                stats.add(&out.stats);
            }
        }
    }
}
