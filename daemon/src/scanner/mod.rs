//! The scanners: streaming, resumable listings of a job's source that close
//! tasks at a count or byte limit.
//!
//! Each source has a [`Lister`] that walks it in one total order and names
//! the position of every entry; [`scan`] drives any of them through one
//! [`Tasks`] sink, which applies the job's rules (`importSince`, the
//! include/exclude globs), closes tasks and commits each with the position
//! it reached, in the same transaction. A restarted scan hands the lister
//! the last committed position, and it carries on after it, with no gap and
//! no duplicate. Nothing holds the whole listing in memory.
//!
//! - [`local`]: a depth-first walk with each directory's entries sorted by
//!   raw name bytes; the position is the last path, and whole subtrees
//!   before it are skipped at once.
//! - [`bucket`]: ListObjectsV2 pages in key order; the position is the last
//!   key, resumed with `StartAfter` (continuation tokens may expire).
//! - [`http`]: the URL list's lines in order; the position is the line
//!   number.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::store::{Change, NewObject, ObjectState, Prior, Store, StoreError};

mod azure;
mod bucket;
mod http;
mod local;
mod parallel;
mod scope;

pub use scope::{ScopeDir, normalize as normalize_scope, scan_scope};

pub use job::http_list::{parse_http_line, validate_http_list};
pub use job::scan::{DestCase, HttpList, ScanConfig};
use proto::job::SourceSpec;
use storage::s3::S3Config;

/// The folded keys a pass has listed (for a case-insensitive `destDir`),
/// with the first relative path of each, shared by the branches of a
/// parallel listing.
type Folded = Arc<Mutex<HashMap<String, String>>>;

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
    /// Later passes: found as recorded, not copied again.
    pub unchanged: u64,
    /// Entries whose destination key another source has (`DUPLICATE_KEY`).
    pub duplicate_keys: u64,
    /// Files left for a later pass: a watched tree's, still being written.
    pub held: u64,
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
    #[error("destDir: {0}")]
    Overlap(String),
    /// The job's owner may no longer use a path of it (checked each pass).
    #[error("{0}")]
    Denied(String),
    #[error("scan checkpoint of this job is unreadable: {0}")]
    Checkpoint(String),
    #[error("listing the source bucket: {0}")]
    List(String),
    #[error("{0}")]
    HttpList(String),
    /// A plan that asks to list a CDN (it lists the bucket behind it).
    #[error("a CDN source is listed through the bucket behind it, not the CDN")]
    Cdn,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A source listed in one total order, resumable after any position it
/// named.
trait Lister {
    /// Lists every entry after `after` (a position this lister produced
    /// before; `None`: from the start) into `out`. Returns the position of
    /// the end of the listing, or `None` when `out` was cancelled.
    fn list(
        &mut self,
        after: Option<&str>,
        out: &mut Tasks<'_>,
    ) -> Result<Option<String>, ScanError>;
}

/// Lists the job's source into tasks, resuming from the stored checkpoint.
/// Blocking (run it on a blocking thread; bucket listings need a tokio
/// runtime handle). When cancelled it returns `Stopped`; the uncommitted
/// tail is listed again next time. `on_task` is told about every committed
/// task.
pub fn scan(
    store: &Store,
    job_id: i64,
    cfg: &ScanConfig,
    cancel: &CancellationToken,
    on_task: impl FnMut(i64, &[NewObject]) + Send,
) -> Result<ScanOutcome, ScanError> {
    scan_with(store, job_id, cfg, None, cancel, on_task)
}

/// Paths a listing leaves for a later pass (a watched tree's files still
/// being written), asked with the path and, for a local file, when its
/// status last changed (nanoseconds): an earlier row of one is kept as
/// seen, a new one is not queued.
pub type Held<'a> = Option<&'a (dyn Fn(&str, Option<i64>) -> bool + Sync)>;

/// Whether the job's next listing starts from the beginning (and so finds
/// every change made before it starts).
pub fn lists_from_start(store: &Store, job_id: i64) -> Result<bool, StoreError> {
    let cp = store.scan_checkpoint(job_id)?;
    let fresh = matches!(cp.position.as_deref(), None | Some(scope::SCOPED));
    Ok(!cp.done
        && fresh
        && !store
            .branches(job_id)?
            .iter()
            .any(|b| b.done || b.checkpoint.is_some()))
}

/// As [`scan`], leaving the paths `held` says for a later pass.
pub fn scan_with(
    store: &Store,
    job_id: i64,
    cfg: &ScanConfig,
    held: Held<'_>,
    cancel: &CancellationToken,
    mut on_task: impl FnMut(i64, &[NewObject]) + Send,
) -> Result<ScanOutcome, ScanError> {
    let crate::store::Checkpoint {
        done,
        position: mut checkpoint,
    } = store.scan_checkpoint(job_id)?;
    if checkpoint.as_deref() == Some(scope::SCOPED) {
        // A watched pass stopped inside its scope: listed again whole.
        checkpoint = None;
    }
    if done {
        return Ok(ScanOutcome::Finished(ScanStats::default()));
    }
    if let (Some(root), Some(dest)) = (cfg.local_root(), &cfg.dest_dir)
        && let Some(why) = crate::config::job::local_overlap(root, dest)
    {
        return Err(ScanError::Overlap(why));
    }
    let pass = store.current_pass(job_id)?;
    let folded = folded_keys(store, job_id, pass, cfg)?;
    // Keys compared without case are listed in one walk, in one order every
    // pass, so the same one of two names wins each time.
    if cfg.threads > 1
        && folded.is_none()
        && matches!(cfg.source, SourceSpec::Local { .. } | SourceSpec::S3(_))
    {
        return parallel::scan(store, job_id, pass, cfg, cancel, on_task, (folded, held));
    }
    let mut lister: Box<dyn Lister> = match &cfg.source {
        SourceSpec::Local {
            root,
            follow_symlinks,
        } => Box::new(local::LocalLister::whole(Path::new(root), *follow_symlinks)),
        SourceSpec::S3(b) => Box::new(bucket::BucketLister::new(
            &S3Config::new(b.clone(), cfg.attempts),
            cfg.page_size,
        )),
        SourceSpec::Azure(container) => Box::new(azure::AzureLister::new(
            container,
            cfg.page_size,
            cfg.attempts,
        )?),
        SourceSpec::Http => {
            let l = http_list(cfg)?;
            Box::new(http::HttpLister {
                list: l.path.clone(),
                prefix_column: l.prefix_column,
                rel_column: l.rel_column,
            })
        }
        SourceSpec::Cdn { .. } => return Err(ScanError::Cdn),
    };
    let mut out = Tasks::new(store, job_id, pass, cfg, cancel, &mut on_task, None);
    out.folded = folded;
    out.held = held;
    if let Some(HttpList { path: list, .. }) = &cfg.http_list {
        let mut f = KeyFilter::for_list(list);
        for rel in store.keys_in_pass(job_id, pass)? {
            f.insert(&rel);
        }
        out.listed = Some(f);
    }
    match lister.list(checkpoint.as_deref(), &mut out)? {
        None => Ok(ScanOutcome::Stopped(out.stats)),
        Some(end) => {
            out.flush(&end)?;
            store.finish_scan(job_id)?;
            Ok(ScanOutcome::Finished(out.stats))
        }
    }
}

/// The URL list of an HTTP source.
fn http_list(cfg: &ScanConfig) -> Result<&HttpList, ScanError> {
    cfg.http_list
        .as_ref()
        .ok_or_else(|| ScanError::HttpList("srcType=http without httpListFilePath".into()))
}

/// For a destination that does not tell case apart: the folded keys this
/// pass has already committed (a resumed listing goes on from them).
fn folded_keys(
    store: &Store,
    job_id: i64,
    pass: u32,
    cfg: &ScanConfig,
) -> Result<Option<Folded>, ScanError> {
    let fold = match cfg.dest_case {
        DestCase::Exact => false,
        DestCase::Fold => true,
        DestCase::Probe | DestCase::ProbeReadOnly => cfg.dest_dir.as_deref().is_some_and(|d| {
            storage::beneath::case_insensitive(d, cfg.dest_case == DestCase::Probe)
                .ok()
                .flatten()
                .unwrap_or(false)
        }),
    };
    if !fold {
        return Ok(None);
    }
    let mut map = HashMap::new();
    for rel in store.keys_in_pass(job_id, pass)? {
        map.entry(rel.to_lowercase()).or_insert(rel);
    }
    Ok(Some(Arc::new(Mutex::new(map))))
}

impl ScanStats {
    /// Adds another lister's counts (parallel listing).
    fn add(&mut self, o: &ScanStats) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.tasks += o.tasks;
        self.symlinks_skipped += o.symlinks_skipped;
        self.special_skipped += o.special_skipped;
        self.older_than_import_since += o.older_than_import_since;
        self.filtered_out += o.filtered_out;
        self.dir_markers += o.dir_markers;
        self.list_errors += o.list_errors;
        self.suspicious_pages += o.suspicious_pages;
        self.unchanged += o.unchanged;
        self.duplicate_keys += o.duplicate_keys;
        self.held += o.held;
    }
}

/// What makes a listed object "changed" next to the row an earlier pass
/// recorded for its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compare {
    /// Local files: size, mtime or identity tag (nanosecond mtime, ctime,
    /// inode: `storage::beneath::Identity`).
    SizeMtime,
    /// Bucket objects: size or ETag.
    SizeEtag,
    /// Bucket objects whose metadata is copied: size, ETag or LastModified
    /// (a metadata-only change keeps the ETag).
    SizeEtagMtime,
    /// URL lists: the URL (sizes are known only once downloaded).
    Url,
}

/// What a later pass does with a listed object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listed {
    /// Copy it (again).
    Copy(Change),
    /// Recorded as it is now (or still being worked on): only mark it seen
    /// (and give a row listed before identity tags the one it has now).
    Seen(i64, Option<i64>),
}

/// Decides a listed object of a later pass against the latest row of its
/// path. Pure; table-tested.
fn classify(obj: &NewObject, prior: Option<&Prior>, compare: Compare) -> Listed {
    let Some(p) = prior else {
        return Listed::Copy(Change::New);
    };
    // A row recorded before identity tags existed is compared by size and
    // whole-second mtime once, and takes the tag it is found with.
    let fill = if p.ident.is_none() { obj.ident } else { None };
    if p.state == ObjectState::Pending {
        return Listed::Seen(p.id, fill);
    }
    let same = match compare {
        Compare::SizeMtime => {
            p.size == obj.size
                && p.mtime == obj.mtime
                && (p.ident.is_none() || p.ident == obj.ident)
        }
        Compare::SizeEtag => p.size == obj.size && p.src_ref == obj.src_ref,
        Compare::SizeEtagMtime => {
            p.size == obj.size && p.src_ref == obj.src_ref && p.mtime == obj.mtime
        }
        Compare::Url => p.src_ref == obj.src_ref,
    };
    if !same {
        let metadata_only = compare == Compare::SizeEtagMtime
            && p.state == ObjectState::Verified
            && p.size == obj.size
            && p.src_ref == obj.src_ref;
        return Listed::Copy(if metadata_only {
            Change::Metadata
        } else {
            Change::Changed
        });
    }
    match p.state {
        ObjectState::Failed => {
            // A failure the listing itself sees again (a name the store
            // refuses) is not retried every pass.
            let again = obj.failure.as_ref().map(|(code, _)| code.as_str());
            if again.is_some() && again == p.error_code.as_deref() {
                Listed::Seen(p.id, fill)
            } else {
                Listed::Copy(Change::Retried)
            }
        }
        _ => Listed::Seen(p.id, fill),
    }
}

/// A Bloom filter of the destination keys a pass has listed: a key it has
/// not seen is known new without a store lookup (which cut the planning of
/// a URL list of 1M lines from 86k to 31k lines/s); a hit is checked in the
/// store, so a false positive costs one query, never a wrong answer. Sized
/// from the list file (about 10 bits per line of 40 bytes, at most 32 MiB).
struct KeyFilter {
    bits: Vec<u64>,
    mask: u64,
}

impl KeyFilter {
    const HASHES: u64 = 5;

    fn for_list(list: &std::path::Path) -> KeyFilter {
        let bytes = std::fs::metadata(list).map_or(0, |m| m.len());
        let n = (bytes / 4).clamp(1 << 16, 1 << 28).next_power_of_two();
        KeyFilter {
            bits: vec![0; (n / 64) as usize],
            mask: n - 1,
        }
    }

    fn positions(&self, key: &str) -> impl Iterator<Item = u64> + use<> {
        use std::hash::{Hash, Hasher};
        let mut a = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut a);
        let h1 = a.finish();
        let mut b = std::collections::hash_map::DefaultHasher::new();
        (0x9e37_79b9_7f4a_7c15u64, key).hash(&mut b);
        let h2 = b.finish() | 1;
        let mask = self.mask;
        (0..Self::HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & mask)
    }

    fn insert(&mut self, key: &str) {
        for p in self.positions(key) {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    fn may_contain(&self, key: &str) -> bool {
        self.positions(key)
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

/// Rows found unchanged are marked seen in batches of this many.
const SEEN_BATCH: usize = 1024;

impl<'a> Tasks<'a> {
    fn new(
        store: &'a Store,
        job_id: i64,
        pass: u32,
        cfg: &'a ScanConfig,
        cancel: &'a CancellationToken,
        on_task: &'a mut dyn FnMut(i64, &[NewObject]),
        branch: Option<i64>,
    ) -> Tasks<'a> {
        Tasks {
            store,
            job_id,
            cfg,
            cancel,
            on_task,
            pass,
            compare: match &cfg.source {
                SourceSpec::Local { .. } => Compare::SizeMtime,
                SourceSpec::S3(_) | SourceSpec::Azure(_) | SourceSpec::Cdn { .. }
                    if cfg.metadata_changes =>
                {
                    Compare::SizeEtagMtime
                }
                SourceSpec::S3(_) | SourceSpec::Azure(_) | SourceSpec::Cdn { .. } => {
                    Compare::SizeEtag
                }
                SourceSpec::Http => Compare::Url,
            },
            branch,
            // A URL list may name one destination key twice; a listing of
            // a directory, bucket or container cannot.
            may_collide: matches!(cfg.source, SourceSpec::Http),
            folded: None,
            scoped: false,
            held: None,
            listed: None,
            batch_keys: HashMap::new(),
            seen_keys: HashMap::new(),
            batch: Vec::new(),
            changes: Vec::new(),
            seen: Vec::new(),
            bytes: 0,
            started: Instant::now(),
            stats: ScanStats::default(),
        }
    }
}

/// Where listers put what they find: applies the job's rules, collects
/// objects into tasks and commits each closed task with the listing
/// position it reached. In a later pass of an incremental job, only what
/// is new or changed goes into tasks; the rest is marked seen.
struct Tasks<'a> {
    store: &'a Store,
    job_id: i64,
    cfg: &'a ScanConfig,
    cancel: &'a CancellationToken,
    on_task: &'a mut dyn FnMut(i64, &[NewObject]),
    /// The listing pass (1: the first, where everything is new).
    pass: u32,
    compare: Compare,
    /// The branch of a parallel listing whose checkpoint moves.
    branch: Option<i64>,
    batch: Vec<NewObject>,
    /// How each object of `batch` relates to earlier passes.
    changes: Vec<Change>,
    /// Rows found unchanged, not yet marked.
    seen: Vec<(i64, Option<i64>)>,
    /// Whether two entries of the listing can map to one destination key;
    /// if so, each is checked against what this pass listed before it.
    may_collide: bool,
    /// Keys compared without case, when `destDir` does not tell it apart.
    folded: Option<Folded>,
    /// Where entries may collide: every key this pass has listed, so most
    /// need no store lookup to be known new.
    listed: Option<KeyFilter>,
    /// Keys (and their sources) listed in this pass but not yet in the
    /// store: in `batch`, and among `seen`.
    batch_keys: HashMap<String, Option<String>>,
    seen_keys: HashMap<String, Option<String>>,
    bytes: u64,
    started: Instant,
    /// Paths left for a later pass (see [`Held`]).
    held: Held<'a>,
    /// A watched pass listing only its scope: its position is
    /// [`scope::SCOPED`], never resumed from.
    scoped: bool,
    /// Listers count what only they can see (symlinks, directory markers,
    /// suspicious pages) here too.
    stats: ScanStats,
}

impl Tasks<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Whether the job wants an object at `rel` modified at `mtime` (`None`:
    /// not known before download), by `importSince` and the globs; what it
    /// does not want is counted.
    fn wanted(&mut self, rel: &str, mtime: Option<i64>) -> bool {
        if let Some(mtime) = mtime
            && self.cfg.import_since > 0
            && mtime <= self.cfg.import_since
        {
            self.stats.older_than_import_since += 1;
            return false;
        }
        if !self.cfg.filter.accepts(rel) {
            self.stats.filtered_out += 1;
            return false;
        }
        true
    }

    /// Adds an object; commits the task when it is full (or has been open
    /// `max_task_age`), with `checkpoint()` as the position everything up
    /// to and including it was listed at (made only when needed).
    fn push(
        &mut self,
        obj: NewObject,
        checkpoint: impl FnOnce() -> Result<String, ScanError>,
    ) -> Result<(), ScanError> {
        self.push_changed_at(obj, None, checkpoint)
    }

    /// [`Tasks::push`] for an entry whose status last changed at `ctime_ns`
    /// (local files), which a watched listing may hold back (see [`Held`]).
    fn push_changed_at(
        &mut self,
        obj: NewObject,
        ctime_ns: Option<i64>,
        checkpoint: impl FnOnce() -> Result<String, ScanError>,
    ) -> Result<(), ScanError> {
        if let Some(folded) = &self.folded {
            let key = obj.rel_path.to_lowercase();
            let first = {
                let mut m = folded.lock().unwrap_or_else(|p| p.into_inner());
                match m.get(&key) {
                    Some(first) if *first != obj.rel_path => Some(first.clone()),
                    Some(_) => None,
                    None => {
                        m.insert(key, obj.rel_path.clone());
                        None
                    }
                }
            };
            if let Some(first) = first {
                let this = obj.rel_path.clone();
                return self.duplicate(
                    obj,
                    &this,
                    &first,
                    " (destDir does not tell upper from lower case)",
                );
            }
        }
        if self.may_collide {
            match self.listed_before(&obj)? {
                None => {}
                // The same source named twice for the same key: one copy.
                Some(first) if first == obj.src_ref => return Ok(()),
                Some(first) => {
                    let this = obj.src_ref.clone().unwrap_or_else(|| obj.rel_path.clone());
                    let first = first.unwrap_or_else(|| obj.rel_path.clone());
                    return self.duplicate(obj, &this, &first, "");
                }
            }
        }
        if self.held.is_some_and(|h| h(&obj.rel_path, ctime_ns)) {
            // Still being written: a later pass lists it once settled.
            self.stats.held += 1;
            if self.pass > 1
                && let Some(p) = self.store.prior(self.job_id, &obj.rel_path)?
            {
                return self.mark_seen(p.id, None, &obj);
            }
            return Ok(());
        }
        self.stats.files += 1;
        self.stats.bytes += obj.size;
        let change = if self.pass > 1 {
            let prior = self.store.prior(self.job_id, &obj.rel_path)?;
            match classify(&obj, prior.as_ref(), self.compare) {
                Listed::Copy(c) => c,
                Listed::Seen(id, fill) => {
                    self.stats.unchanged += 1;
                    return self.mark_seen(id, fill, &obj);
                }
            }
        } else {
            Change::New
        };
        self.bytes += obj.size;
        if self.may_collide {
            if let Some(f) = &mut self.listed {
                f.insert(&obj.rel_path);
            }
            self.batch_keys
                .insert(obj.rel_path.clone(), obj.src_ref.clone());
        }
        self.batch.push(obj);
        self.changes.push(change);
        let aged = self
            .cfg
            .max_task_age
            .is_some_and(|age| self.started.elapsed() >= age);
        if self.batch.len() as u64 >= self.cfg.task_count_limit
            || self.bytes >= self.cfg.task_size_limit
            || aged
        {
            self.flush(&checkpoint()?)?;
        }
        Ok(())
    }

    /// Records `obj` (source `this`) as a `DUPLICATE_KEY` failure: `first`
    /// was listed for its destination key before it in this pass. A row
    /// an earlier pass recorded for the same source is found again rather
    /// than recorded twice.
    fn duplicate(
        &mut self,
        mut obj: NewObject,
        this: &str,
        first: &str,
        note: &str,
    ) -> Result<(), ScanError> {
        obj.failure = Some((
            "DUPLICATE_KEY".into(),
            format!(
                "{} maps to the destination key {:?}, which this job already has from {} (listed first){note}; not copied: a key holds one source",
                this.escape_debug(),
                obj.rel_path,
                first.escape_debug()
            ),
        ));
        self.stats.duplicate_keys += 1;
        if let Some(id) =
            self.store
                .duplicate_row(self.job_id, &obj.rel_path, obj.src_ref.as_deref())?
        {
            return self.mark_seen(id, None, &obj);
        }
        self.batch.push(obj);
        self.changes.push(Change::New);
        Ok(())
    }

    /// Marks a recorded row as found by this pass (in batches).
    fn mark_seen(&mut self, id: i64, fill: Option<i64>, obj: &NewObject) -> Result<(), ScanError> {
        self.seen.push((id, fill));
        if self.may_collide && obj.failure.is_none() {
            if let Some(f) = &mut self.listed {
                f.insert(&obj.rel_path);
            }
            self.seen_keys
                .insert(obj.rel_path.clone(), obj.src_ref.clone());
        }
        if self.seen.len() >= SEEN_BATCH {
            self.store.mark_seen(self.job_id, self.pass, &self.seen)?;
            self.seen.clear();
            self.seen_keys.clear();
        }
        Ok(())
    }

    /// The source listed before `obj` in this pass for the same
    /// destination key, if any (`Some(None)`: one without a source
    /// reference). Objects of one job map to destination keys one to one
    /// by their relative path (the leading `/` of a URL list's path is
    /// already gone), so the relative path is the key compared.
    fn listed_before(&self, obj: &NewObject) -> Result<Option<Option<String>>, ScanError> {
        let rel = &obj.rel_path;
        if let Some(src) = self.batch_keys.get(rel).or_else(|| self.seen_keys.get(rel)) {
            return Ok(Some(src.clone()));
        }
        if self.listed.as_ref().is_some_and(|f| !f.may_contain(rel)) {
            return Ok(None);
        }
        Ok(self.store.listed_in_pass(self.job_id, rel, self.pass)?)
    }

    /// Adds an entry that could not be examined, as a failed object, so
    /// the job cannot succeed without it.
    fn push_failed(&mut self, rel_path: String, message: String) {
        self.stats.list_errors += 1;
        self.batch.push(NewObject {
            rel_path,
            size: 0,
            mtime: 0,
            ident: None,
            src_ref: None,
            failure: Some(("LIST_ERROR".into(), message)),
        });
        // Beside what earlier passes recorded: what lies below it counts
        // as unseen, not gone (see `Store::finish_scan`).
        self.changes.push(Change::New);
    }

    /// Commits the open task, if any, at `checkpoint`.
    fn flush(&mut self, checkpoint: &str) -> Result<(), ScanError> {
        let checkpoint = if self.scoped {
            scope::SCOPED
        } else {
            checkpoint
        };
        self.store.mark_seen(self.job_id, self.pass, &self.seen)?;
        self.seen.clear();
        self.seen_keys.clear();
        if !self.batch.is_empty() {
            let task_id = self.store.commit_pass_task(
                self.job_id,
                self.pass,
                &self.batch,
                &self.changes,
                self.branch,
                checkpoint,
            )?;
            self.stats.tasks += 1;
            (self.on_task)(task_id, &self.batch);
            self.batch.clear();
            self.batch_keys.clear();
            self.changes.clear();
        }
        self.bytes = 0;
        self.started = Instant::now();
        Ok(())
    }
}

fn checkpoint_err(e: impl std::fmt::Display) -> ScanError {
    ScanError::Checkpoint(e.to_string())
}

#[cfg(test)]
mod tests;
