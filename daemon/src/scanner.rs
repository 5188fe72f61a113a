//! The scanners: streaming, resumable listings of a job's source (a local
//! directory, an S3-compatible bucket, an HTTP URL list) that close tasks at
//! a count or byte limit.
//!
//! Each listing has a total order, so its checkpoint is a single position
//! stored with every committed task in the same transaction: a restarted
//! scan skips everything at or before it and carries on, with no gap and
//! no duplicate. Nothing holds the whole listing in memory.
//!
//! - Local: a depth-first walk with each directory's entries sorted by raw
//!   name bytes, i.e. component-wise lexicographic order; the checkpoint is
//!   the last path, and whole subtrees before it are skipped at once.
//! - S3: ListObjectsV2 pages in key order; the checkpoint is the last key,
//!   resumed with `StartAfter` (continuation tokens may expire).
//! - HTTP list: the file's lines in order; the checkpoint is the line number.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use storage::s3::{S3Config, S3Store};

use crate::filter::Filter;
use crate::store::{NewObject, Store, StoreError};

/// What to list.
#[derive(Clone, Debug)]
pub enum ScanSource {
    Local {
        /// The source directory (`srcPrefix`).
        root: PathBuf,
        /// Follow symlinks to files (`isAllowSymbolicLink`); symlinks to
        /// directories are never followed, as in the original.
        follow_symlinks: bool,
    },
    S3 {
        store: S3Config,
        /// `srcPrefix`; relative paths are keys with it removed.
        prefix: String,
        /// Keys per ListObjectsV2 page (`srcListPageSize`).
        page_size: u32,
    },
    Http {
        /// `httpListFilePath`.
        list: PathBuf,
        /// 1-based columns (`httpPrefixColumn`, `relativePathColumn`).
        prefix_column: usize,
        rel_column: usize,
    },
}

/// How to list a source and cut it into tasks.
#[derive(Clone, Debug)]
pub struct ScanConfig {
    pub source: ScanSource,
    /// Include/exclude globs on the relative path.
    pub filter: Filter,
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
    pub filtered_out: u64,
    pub dir_markers: u64,
    pub list_errors: u64,
    /// List pages that came back inconsistent (out of order, or claiming to
    /// be the last while full) and were checked with another request.
    pub suspicious_pages: u64,
}

/// How a listing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// Every entry is in the store; the job's `scan_done` is set.
    Finished(ScanStats),
    /// Cancelled between entries; it resumes from its checkpoint.
    Stopped(ScanStats),
}

impl ScanOutcome {
    pub fn stats(&self) -> &ScanStats {
        match self {
            ScanOutcome::Finished(s) | ScanOutcome::Stopped(s) => s,
        }
    }

    pub fn finished(&self) -> bool {
        matches!(self, ScanOutcome::Finished(_))
    }
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
    #[error("listing the source bucket: {0}")]
    List(String),
    #[error("{0}")]
    HttpList(String),
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
) -> Result<ScanOutcome, ScanError> {
    match &cfg.source {
        ScanSource::Local {
            root,
            follow_symlinks,
        } => scan_local(store, job_id, cfg, root, *follow_symlinks, cancel, on_task),
        ScanSource::S3 {
            store: s3,
            prefix,
            page_size,
        } => scan_s3(store, job_id, cfg, s3, prefix, *page_size, cancel, on_task),
        ScanSource::Http {
            list,
            prefix_column,
            rel_column,
        } => scan_http(
            store,
            job_id,
            cfg,
            list,
            *prefix_column,
            *rel_column,
            cancel,
            on_task,
        ),
    }
}

/// Scans the directory `root` into tasks of `job_id`, resuming from the stored
/// checkpoint. Blocking: run it on a blocking thread. Returns `Ok` with
/// `finished = false` when cancelled; the uncommitted tail is rescanned next
/// time. `on_task` is told about every committed task.
#[allow(clippy::too_many_arguments)]
fn scan_local(
    store: &Store,
    job_id: i64,
    cfg: &ScanConfig,
    root: &std::path::Path,
    follow_symlinks: bool,
    cancel: &CancellationToken,
    mut on_task: impl FnMut(i64, &[NewObject]),
) -> Result<ScanOutcome, ScanError> {
    let mut stats = ScanStats::default();
    let (done, checkpoint) = store.scan_checkpoint(job_id)?;
    if done {
        return Ok(ScanOutcome::Finished(stats));
    }
    let checkpoint: Option<Components> = match checkpoint {
        Some(s) => {
            Some(serde_json::from_str(&s).map_err(|e| ScanError::Checkpoint(e.to_string()))?)
        }
        None => None,
    };
    let root_entries = read_sorted(root).map_err(|source| ScanError::Root {
        path: root.display().to_string(),
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
            return Ok(ScanOutcome::Stopped(stats));
        }
        let Some(name) = frame.entries.next() else {
            stack.pop();
            continue;
        };
        let mut components = frame.components.clone();
        components.push(name.as_bytes().to_vec());
        let path = path_of(root, &components);
        // One stat per entry: its metadata serves regular files directly.
        let lmd = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            // Vanished between readdir and stat: nothing to copy.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // Anything else (EACCES on a directory that can be listed but
            // not entered, EIO, ESTALE) is an entry we cannot see: it is
            // recorded as a failed object, so the job cannot succeed
            // without it.
            Err(e) => {
                // Committed before, unless it is a directory the
                // checkpoint lies inside (whose rest we cannot see now).
                if let Some(cp) = &checkpoint
                    && components <= *cp
                    && !(cp.len() > components.len() && cp.starts_with(&components))
                {
                    continue;
                }
                stats.list_errors += 1;
                batch.push(list_error(&components, format!("cannot stat: {e}")));
                last = components;
                continue;
            }
        };
        let ft = lmd.file_type();

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
                    let mut o = list_error(&components, format!("cannot list directory: {e}"));
                    o.rel_path.push('/');
                    batch.push(o);
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
            if !follow_symlinks {
                stats.symlinks_skipped += 1;
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(md) if md.is_file() => md,
                // An unreadable target is reported like any unreadable entry.
                Err(e)
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) && e.raw_os_error() != Some(libc::ELOOP) =>
                {
                    stats.list_errors += 1;
                    batch.push(list_error(
                        &components,
                        format!("cannot stat the symlink's target: {e}"),
                    ));
                    last = components;
                    continue;
                }
                // Dangling links and links to directories are not objects.
                _ => {
                    stats.symlinks_skipped += 1;
                    continue;
                }
            }
        } else if ft.is_file() {
            lmd
        } else {
            stats.special_skipped += 1;
            continue;
        };
        let mtime = storage::beneath::mtime_secs(&md);
        if cfg.import_since > 0 && mtime <= cfg.import_since {
            stats.older_than_import_since += 1;
            continue;
        }
        let rel = rel_path(&components);
        if !cfg.filter.accepts(&rel) {
            stats.filtered_out += 1;
            continue;
        }
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
            src_ref: None,
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
    Ok(ScanOutcome::Finished(stats))
}

/// Collects listed objects into tasks and commits each closed task with
/// the listing position it reached.
struct Batcher<'a, F: FnMut(i64, &[NewObject])> {
    store: &'a Store,
    job_id: i64,
    cfg: &'a ScanConfig,
    batch: Vec<NewObject>,
    bytes: u64,
    started: Instant,
    on_task: F,
    stats: ScanStats,
}

impl<'a, F: FnMut(i64, &[NewObject])> Batcher<'a, F> {
    fn new(store: &'a Store, job_id: i64, cfg: &'a ScanConfig, on_task: F) -> Self {
        Batcher {
            store,
            job_id,
            cfg,
            batch: Vec::new(),
            bytes: 0,
            started: Instant::now(),
            on_task,
            stats: ScanStats::default(),
        }
    }

    /// Adds an object; commits the task when it is full, with `checkpoint`
    /// as the position everything up to and including it was listed at.
    fn push(&mut self, obj: NewObject, checkpoint: &str) -> Result<(), ScanError> {
        self.stats.files += 1;
        self.stats.bytes += obj.size;
        self.bytes += obj.size;
        self.batch.push(obj);
        let aged = self
            .cfg
            .max_task_age
            .is_some_and(|age| self.started.elapsed() >= age);
        if self.batch.len() as u64 >= self.cfg.task_count_limit
            || self.bytes >= self.cfg.task_size_limit
            || aged
        {
            self.flush(checkpoint)?;
        }
        Ok(())
    }

    fn flush(&mut self, checkpoint: &str) -> Result<(), ScanError> {
        if !self.batch.is_empty() {
            let task_id = self
                .store
                .commit_task(self.job_id, &self.batch, checkpoint)?;
            self.stats.tasks += 1;
            (self.on_task)(task_id, &self.batch);
            self.batch.clear();
        }
        self.bytes = 0;
        self.started = Instant::now();
        Ok(())
    }
}

/// Lists a bucket under `prefix` with ListObjectsV2. Pages are not taken at
/// their word: keys must increase (repeats are dropped), a page that says
/// "truncated" without a token is continued with `StartAfter`, and a full
/// page that says "last" is checked with one more request, because some
/// servers end listings early.
#[allow(clippy::too_many_arguments)]
fn scan_s3(
    store: &Store,
    job_id: i64,
    cfg: &ScanConfig,
    s3: &S3Config,
    prefix: &str,
    page_size: u32,
    cancel: &CancellationToken,
    on_task: impl FnMut(i64, &[NewObject]),
) -> Result<ScanOutcome, ScanError> {
    let (done, checkpoint) = store.scan_checkpoint(job_id)?;
    if done {
        return Ok(ScanOutcome::Finished(ScanStats::default()));
    }
    let mut last_key: Option<String> = match checkpoint {
        Some(s) => {
            Some(serde_json::from_str(&s).map_err(|e| ScanError::Checkpoint(e.to_string()))?)
        }
        None => None,
    };
    let rt = tokio::runtime::Handle::current();
    let client = S3Store::new(s3);
    let mut b = Batcher::new(store, job_id, cfg, on_task);
    let mut token: Option<String> = None;
    let mut stalls = 0;
    loop {
        if cancel.is_cancelled() {
            return Ok(ScanOutcome::Stopped(b.stats));
        }
        let page = rt
            .block_on(client.list_page(prefix, last_key.as_deref(), token.as_deref(), page_size))
            .map_err(|e| ScanError::List(e.to_string()))?;
        let n = page.objects.len();
        let mut progressed = false;
        for o in page.objects {
            if last_key.as_deref().is_some_and(|l| o.key.as_str() <= l) {
                b.stats.suspicious_pages += 1;
                continue;
            }
            last_key = Some(o.key.clone());
            progressed = true;
            let cp =
                serde_json::to_string(&o.key).map_err(|e| ScanError::Checkpoint(e.to_string()))?;
            let Some(rel) = o.key.strip_prefix(prefix) else {
                continue;
            };
            if rel.is_empty() || (o.key.ends_with('/') && o.size == 0) {
                b.stats.dir_markers += 1;
                continue;
            }
            if cfg.import_since > 0 && o.mtime <= cfg.import_since {
                b.stats.older_than_import_since += 1;
                continue;
            }
            if !cfg.filter.accepts(rel) {
                b.stats.filtered_out += 1;
                continue;
            }
            let obj = NewObject {
                rel_path: rel.to_owned(),
                size: o.size,
                mtime: o.mtime,
                src_ref: Some(o.etag),
                failure: None,
            };
            b.push(obj, &cp)?;
        }
        stalls = if progressed { 0 } else { stalls + 1 };
        if stalls > 3 {
            return Err(ScanError::List(format!(
                "the server keeps returning pages without new keys after {:?}",
                last_key.unwrap_or_default()
            )));
        }
        if page.truncated {
            // Without a token, continue after the last key seen.
            token = page.next_token;
        } else if n as u32 >= page_size && progressed {
            // A full page claiming to be the last: ask once more.
            b.stats.suspicious_pages += 1;
            token = None;
        } else {
            break;
        }
    }
    let cp = serde_json::to_string(&last_key.unwrap_or_default())
        .map_err(|e| ScanError::Checkpoint(e.to_string()))?;
    b.flush(&cp)?;
    store.finish_scan(job_id)?;
    Ok(ScanOutcome::Finished(b.stats))
}

/// One URL of an HTTP list: `(url, relative path)`, or why the line is bad.
pub fn parse_http_line(
    line: &str,
    prefix_column: usize,
    rel_column: usize,
) -> Result<Option<(String, String)>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let cols: Vec<&str> = line.split_whitespace().collect();
    let need = prefix_column.max(rel_column);
    if cols.len() < need {
        return Err(format!(
            "expected at least {need} whitespace-separated columns (httpPrefixColumn={prefix_column}, relativePathColumn={rel_column}), found {}",
            cols.len()
        ));
    }
    let prefix = cols[prefix_column - 1];
    let rel = cols[rel_column - 1].trim_start_matches('/');
    if rel.is_empty() {
        return Err("the relative path column is empty".into());
    }
    let mut url = format!("{prefix}{rel}");
    if !url.contains("://") {
        url = format!("http://{url}");
    }
    Ok(Some((url, rel.to_owned())))
}

/// The host part of a URL, to group consecutive lines by domain.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// Checks every line of an HTTP list before the job starts; the error names
/// the file and line.
pub fn validate_http_list(
    list: &std::path::Path,
    prefix_column: usize,
    rel_column: usize,
) -> Result<u64, String> {
    use std::io::BufRead;
    let f = std::fs::File::open(list).map_err(|e| format!("{}: {e}", list.display()))?;
    let mut n = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: {e}", list.display(), i + 1))?;
        match parse_http_line(&line, prefix_column, rel_column) {
            Ok(Some(_)) => n += 1,
            Ok(None) => {}
            Err(e) => return Err(format!("{}:{}: {e}", list.display(), i + 1)),
        }
    }
    Ok(n)
}

/// Reads an HTTP URL list (the original's format; CRLF accepted). Object
/// sizes are not known until download (as in the original, the byte limit
/// of a task does not apply); a change of domain between consecutive lines
/// starts a new task.
#[allow(clippy::too_many_arguments)]
fn scan_http(
    store: &Store,
    job_id: i64,
    cfg: &ScanConfig,
    list: &std::path::Path,
    prefix_column: usize,
    rel_column: usize,
    cancel: &CancellationToken,
    on_task: impl FnMut(i64, &[NewObject]),
) -> Result<ScanOutcome, ScanError> {
    use std::io::BufRead;
    let (done, checkpoint) = store.scan_checkpoint(job_id)?;
    if done {
        return Ok(ScanOutcome::Finished(ScanStats::default()));
    }
    let after: u64 = match checkpoint {
        Some(s) => s
            .parse()
            .map_err(|e: std::num::ParseIntError| ScanError::Checkpoint(e.to_string()))?,
        None => 0,
    };
    let f = std::fs::File::open(list)
        .map_err(|e| ScanError::HttpList(format!("{}: {e}", list.display())))?;
    let mut b = Batcher::new(store, job_id, cfg, on_task);
    let mut host = String::new();
    let mut line_no = 0u64;
    for line in std::io::BufReader::new(f).lines() {
        line_no += 1;
        if cancel.is_cancelled() {
            return Ok(ScanOutcome::Stopped(b.stats));
        }
        let line =
            line.map_err(|e| ScanError::HttpList(format!("{}:{line_no}: {e}", list.display())))?;
        if line_no <= after {
            continue;
        }
        let Some((url, rel)) = parse_http_line(&line, prefix_column, rel_column)
            .map_err(|e| ScanError::HttpList(format!("{}:{line_no}: {e}", list.display())))?
        else {
            continue;
        };
        if !cfg.filter.accepts(&rel) {
            b.stats.filtered_out += 1;
            continue;
        }
        let h = url_host(&url).to_owned();
        if h != host && !host.is_empty() {
            b.flush(&(line_no - 1).to_string())?;
        }
        host = h;
        b.push(
            NewObject {
                rel_path: rel,
                size: 0,
                mtime: 0,
                src_ref: Some(url),
                failure: None,
            },
            &line_no.to_string(),
        )?;
    }
    b.flush(&line_no.to_string())?;
    store.finish_scan(job_id)?;
    Ok(ScanOutcome::Finished(b.stats))
}

/// A failed object standing for an entry that could not be examined.
fn list_error(components: &Components, message: String) -> NewObject {
    NewObject {
        rel_path: rel_path(components),
        size: 0,
        mtime: 0,
        src_ref: None,
        failure: Some(("LIST_ERROR".into(), message)),
    }
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
