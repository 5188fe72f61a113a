//! The local-directory scanner: a streaming, resumable walk that closes
//! tasks at a count or byte limit.
//!
//! The walk is depth-first with each directory's entries sorted by their
//! raw name bytes, so it visits paths in component-wise lexicographic order.
//! That order makes the checkpoint a single path: a restarted scan skips
//! every path that sorts at or before it (whole subtrees at a time) and
//! carries on. Only one directory's entries per level of depth are held in
//! memory, never the whole listing.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::{NewObject, Store, StoreError};

/// How to list a local source and cut it into tasks.
#[derive(Clone, Debug)]
pub struct ScanConfig {
    /// The source directory (`srcPrefix`).
    pub root: PathBuf,
    /// Follow symlinks to files (`isAllowSymbolicLink`); symlinks to
    /// directories are never followed, as in the original.
    pub follow_symlinks: bool,
    pub task_count_limit: u64,
    pub task_size_limit: u64,
    /// Only files with an mtime later than this (unix seconds; 0 = all).
    pub import_since: i64,
    /// Closes a task that has been open this long even if it is not full,
    /// so copying starts while a slow listing is still filling a task.
    pub max_task_age: Option<Duration>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanStats {
    pub files: u64,
    pub bytes: u64,
    pub tasks: u64,
    pub symlinks_skipped: u64,
    pub special_skipped: u64,
    pub older_than_import_since: u64,
    pub list_errors: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error("source directory {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error("scan checkpoint of this job is unreadable: {0}")]
    Checkpoint(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Path components as raw bytes; `Vec` ordering is exactly the walk order.
type Components = Vec<Vec<u8>>;

struct Frame {
    components: Components,
    entries: std::vec::IntoIter<OsString>,
}

/// Lists the job's source into tasks, resuming from the stored checkpoint.
/// The entry point for every source type; see [`scan_local`].
pub fn scan(
    store: &Store,
    job_id: i64,
    cfg: &ScanConfig,
    cancel: &CancellationToken,
    on_task: impl FnMut(i64, &[NewObject]),
) -> Result<(bool, ScanStats), ScanError> {
    scan_local(store, job_id, cfg, cancel, on_task)
}

/// Scans `cfg.root` into tasks of `job_id`, resuming from the stored
/// checkpoint. Blocking: run it on a blocking thread. Returns `Ok` with
/// `finished = false` when cancelled; the uncommitted tail is rescanned next
/// time. `on_task` is told about every committed task.
pub fn scan_local(
    store: &Store,
    job_id: i64,
    cfg: &ScanConfig,
    cancel: &CancellationToken,
    mut on_task: impl FnMut(i64, &[NewObject]),
) -> Result<(bool, ScanStats), ScanError> {
    let mut stats = ScanStats::default();
    let (done, checkpoint) = store.scan_checkpoint(job_id)?;
    if done {
        return Ok((true, stats));
    }
    let checkpoint: Option<Components> = match checkpoint {
        Some(s) => {
            Some(serde_json::from_str(&s).map_err(|e| ScanError::Checkpoint(e.to_string()))?)
        }
        None => None,
    };
    let root_entries = read_sorted(&cfg.root).map_err(|source| ScanError::Root {
        path: cfg.root.display().to_string(),
        source,
    })?;
    let mut stack = vec![Frame {
        components: Vec::new(),
        entries: root_entries.into_iter(),
    }];
    let mut batch: Vec<NewObject> = Vec::new();
    let mut batch_bytes = 0u64;
    let mut last: Components = Vec::new();
    let mut batch_started = Instant::now();

    let mut flush = |batch: &mut Vec<NewObject>,
                     batch_bytes: &mut u64,
                     last: &Components,
                     stats: &mut ScanStats| {
        if batch.is_empty() {
            return Ok::<(), ScanError>(());
        }
        let cp = serde_json::to_string(last).map_err(|e| ScanError::Checkpoint(e.to_string()))?;
        let task_id = store.commit_task(job_id, batch, &cp)?;
        stats.tasks += 1;
        on_task(task_id, batch);
        batch.clear();
        *batch_bytes = 0;
        Ok(())
    };

    while let Some(frame) = stack.last_mut() {
        if cancel.is_cancelled() {
            return Ok((false, stats));
        }
        let Some(name) = frame.entries.next() else {
            stack.pop();
            continue;
        };
        let mut components = frame.components.clone();
        components.push(name.as_bytes().to_vec());
        let path = path_of(&cfg.root, &components);
        let Ok(ft) = std::fs::symlink_metadata(&path).map(|m| m.file_type()) else {
            // Vanished between readdir and stat: nothing to copy.
            continue;
        };

        if ft.is_dir() {
            if let Some(cp) = &checkpoint
                && !cp.starts_with(&components)
                && components < *cp
            {
                continue; // the whole subtree was committed before
            }
            match read_sorted(&path) {
                Ok(entries) => stack.push(Frame {
                    components,
                    entries: entries.into_iter(),
                }),
                Err(e) => {
                    stats.list_errors += 1;
                    let rel = format!("{}/", rel_path(&components));
                    batch.push(NewObject {
                        rel_path: rel,
                        size: 0,
                        mtime: 0,
                        failure: Some(("LIST_ERROR".into(), format!("cannot list directory: {e}"))),
                    });
                    last = components;
                }
            }
            continue;
        }

        if let Some(cp) = &checkpoint
            && components <= *cp
        {
            continue;
        }
        let md = if ft.is_symlink() {
            if !cfg.follow_symlinks {
                stats.symlinks_skipped += 1;
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(md) if md.is_file() => md,
                // Dangling links and links to directories are not objects.
                _ => {
                    stats.symlinks_skipped += 1;
                    continue;
                }
            }
        } else if ft.is_file() {
            match std::fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(_) => continue,
            }
        } else {
            stats.special_skipped += 1;
            continue;
        };
        let mtime = storage::local::mtime_secs(&md);
        if cfg.import_since > 0 && mtime <= cfg.import_since {
            stats.older_than_import_since += 1;
            continue;
        }
        let rel = rel_path(&components);
        let failure = if components.iter().any(|c| std::str::from_utf8(c).is_err()) {
            Some((
                "INVALID_KEY".into(),
                format!("file name is not valid UTF-8: {rel}"),
            ))
        } else {
            None
        };
        stats.files += 1;
        stats.bytes += md.len();
        batch_bytes += md.len();
        batch.push(NewObject {
            rel_path: rel,
            size: md.len(),
            mtime,
            failure,
        });
        last = components;
        let aged = cfg
            .max_task_age
            .is_some_and(|age| batch_started.elapsed() >= age);
        if batch.len() as u64 >= cfg.task_count_limit || batch_bytes >= cfg.task_size_limit || aged
        {
            flush(&mut batch, &mut batch_bytes, &last, &mut stats)?;
            batch_started = Instant::now();
        }
    }
    flush(&mut batch, &mut batch_bytes, &last, &mut stats)?;
    store.finish_scan(job_id)?;
    Ok((true, stats))
}

fn read_sorted(dir: &std::path::Path) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn path_of(root: &std::path::Path, components: &Components) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in components {
        p.push(OsString::from_vec(c.clone()));
    }
    p
}

fn rel_path(components: &Components) -> String {
    let parts: Vec<String> = components
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    parts.join("/")
}

#[cfg(test)]
mod tests;
