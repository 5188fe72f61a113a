//! `incrementalMode=watch`: the source tree of a local job is watched
//! (inotify through `notify`) while the job runs. A changed path is queued
//! once it has settled (closed after writing, or untouched for the settle
//! time), and the scheduler starts a pass that lists only the settled
//! changes ([`crate::scanner::scan_scope`]). Whenever events may have been
//! lost (the process started, the event queue overflowed, a watch could not
//! be added, the tree is on a network file system) the next pass lists
//! everything: a reconcile pass, as a rescan pass is.
//!
//! A path still being written is held: neither a scoped nor a whole
//! listing queues it until it settles, so nothing half-written is copied
//! as verified.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tracing::{info, warn};

use crate::scanner::ScopeDir;

/// Path components below the root, as raw bytes.
type Components = Vec<Vec<u8>>;

/// A watched job's tree: what changed and has not been listed yet, and
/// whether the next pass must list everything.
pub struct Watch {
    root: PathBuf,
    settle: Duration,
    inner: Arc<Mutex<Inner>>,
    /// What delivers the events, kept for as long as the watch; `None` when
    /// nothing could be set up.
    _backend: Option<Backend>,
}

/// Where events come from.
enum Backend {
    /// One inotify watch per directory (`notify`).
    Inotify { _watcher: RecommendedWatcher },
    /// One fanotify mark on the whole file system of the root (root only,
    /// Linux 5.9 or later): no watch per directory.
    Fanotify { _reader: fan::FanWatch },
}

/// Which backend a watch uses: `OSSIMPORT_WATCH=inotify|fanotify` in the
/// environment of `run` or the daemon; by default fanotify where it can be
/// set up (as root), else inotify.
fn wanted_backend() -> &'static str {
    match std::env::var("OSSIMPORT_WATCH").as_deref() {
        Ok("inotify") => "inotify",
        Ok("fanotify") => "fanotify",
        _ => "auto",
    }
}

/// What the scheduler's next pass of a watched job lists.
#[derive(Debug, PartialEq, Eq)]
pub enum Planned {
    /// Everything (a reconcile pass).
    Whole,
    /// The settled changes (paths below the root), to be turned into the
    /// directories to list ([`Watch::scope`]) on the listing's thread.
    Changes(Vec<Vec<Vec<u8>>>),
}

/// Changes queued at most: past it the queue is dropped and the next pass
/// lists everything (memory stays bounded whatever the burst).
const MAX_PENDING: usize = 1_000_000;

#[derive(Default)]
struct Inner {
    /// Changed paths not yet handed to a pass, by relative path.
    dirty: HashMap<String, Dirty>,
    /// Why the next pass lists everything, if it must, and its place in
    /// the order of changes (a `sync` waits for it as for a change).
    reconcile: Option<(String, u64)>,
    /// What the next scan of the job lists (set when its pass begins).
    planned: Option<Planned>,
    /// The changes handed to the running pass: when the oldest happened
    /// (`None`: only a whole listing, no change seen), and the lowest
    /// sequence number among them.
    applying: Option<(Option<SystemTime>, u64)>,
    /// Changed paths queued and handed to passes, since the process started.
    queued: u64,
    applied: u64,
    /// When the last reconcile pass started (unix seconds).
    last_reconcile: Option<i64>,
    /// The settled changes handed to the running pass: known whole.
    taken: std::collections::HashSet<String>,
    /// What delivers the events (for `stat`).
    backend: String,
    /// When the last `sync` was asked for (nanoseconds since the epoch):
    /// the writers had stopped, so nothing changed before it is held back.
    synced_ns: i64,
    /// Why events alone cannot be trusted (no watch, a network file
    /// system): the job then also relies on its reconcile passes.
    problem: Option<String>,
}

struct Dirty {
    components: Components,
    /// Its number in the order changes were queued (`Inner::queued`).
    seq: u64,
    /// The first change not yet listed.
    since: SystemTime,
    /// The latest event.
    last: Instant,
    /// Closed after writing (or renamed or removed): nothing more to wait for.
    closed: bool,
}

/// What `stat` and `/metrics` show of a watched job.
pub use proto::api::WatchStatus;

impl Watch {
    /// Starts watching `root` (recursively, never through a symlink). A
    /// watch that cannot be set up is logged with what to raise, and the
    /// job runs on reconcile passes alone. Blocking: adding a watch per
    /// directory of a large tree takes a while.
    pub fn start(job: &str, root: &Path, settle: Duration) -> Watch {
        let mut first = Inner::default();
        first.due_whole("the watch started (changes made before it are found by listing)");
        let inner = Arc::new(Mutex::new(first));
        let mut watcher = None;
        if wanted_backend() != "inotify" && crate::access::daemon_is_root() {
            match fan::FanWatch::start(job, root, Arc::clone(&inner)) {
                Ok(f) => {
                    lock(&inner).backend = "fanotify (one mark on the file system)".into();
                    watcher = Some(Backend::Fanotify { _reader: f });
                }
                Err(e) => {
                    info!(job, root = %root.display(), error = %e, "fanotify cannot watch the tree; using inotify.")
                }
            }
        }
        if watcher.is_none() {
            let sink = Arc::clone(&inner);
            let base = root.to_path_buf();
            let job_name = job.to_string();
            let made = notify::RecommendedWatcher::new(
                move |res: notify::Result<notify::Event>| on_event(&job_name, &base, &sink, res),
                notify::Config::default().with_follow_symlinks(false),
            );
            match made.and_then(|mut w| w.watch(root, RecursiveMode::Recursive).map(|()| w)) {
                Ok(w) => {
                    lock(&inner).backend = "inotify (one watch per directory)".into();
                    watcher = Some(Backend::Inotify { _watcher: w });
                }
                Err(e) => {
                    let why = cannot_watch(&e);
                    warn!(job, root = %root.display(), error = %why, "The source tree cannot be watched; changes are found by reconcile passes only.");
                    lock(&inner).problem = Some(why);
                }
            }
        }
        if watcher.is_some()
            && let Some(fs) = network_fs(root)
        {
            let why = format!(
                "srcPrefix is on {fs}, which does not report other clients' writes; those are found by the reconcile passes (incrementalModeInterval)"
            );
            warn!(job, root = %root.display(), "{why}");
            lock(&inner).problem = Some(why);
        }
        if watcher.is_some() {
            let backend = lock(&inner).backend.clone();
            info!(job, root = %root.display(), settle_secs = settle.as_secs(), backend, "Watching the source tree.");
        }
        Watch {
            root: root.to_path_buf(),
            settle,
            inner,
            _backend: watcher,
        }
    }

    /// Whether the job's next pass should start now; if so, what it lists
    /// is planned ([`Watch::take_planned`]): everything when `interval_due`
    /// or events may have been lost, else the changes that have settled.
    pub fn next_pass(&self, interval_due: bool) -> bool {
        let mut i = lock(&self.inner);
        let now = Instant::now();
        let settle = self.settle;
        let whole = interval_due || i.reconcile.is_some();
        let settled: Vec<String> = i
            .dirty
            .iter()
            .filter(|(_, d)| d.closed || now.duration_since(d.last) >= settle)
            .map(|(k, _)| k.clone())
            .collect();
        // A plan no scanner took (the pass was not begun: the job paused
        // meanwhile, or the store failed) is kept and added to: its changes
        // left the queue when it was made.
        if !whole && settled.is_empty() && i.planned.is_none() {
            return false;
        }
        let unstarted = i.planned.take();
        let mut oldest = match unstarted {
            Some(_) => i.applying,
            None => None,
        };
        let mut taken = Vec::with_capacity(settled.len());
        for k in settled {
            if let Some(d) = i.dirty.remove(&k) {
                i.taken.insert(k);
                oldest = Some(oldest.map_or((Some(d.since), d.seq), |(t, q)| {
                    (t.min(Some(d.since)).or(Some(d.since)), q.min(d.seq))
                }));
                taken.push(d.components);
            }
        }
        i.applied += taken.len() as u64;
        i.applying = oldest;
        let was_whole = matches!(unstarted, Some(Planned::Whole));
        if let Some(Planned::Changes(before)) = unstarted {
            taken.extend(before);
        }
        if whole || was_whole {
            let reason = match i.reconcile.take() {
                Some(r) => Some(r),
                // Its reason and place in the order are in `applying`.
                None if was_whole => None,
                None => {
                    i.queued += 1;
                    Some(("incrementalModeInterval has passed".into(), i.queued))
                }
            };
            if let Some((why, seq)) = reason {
                info!(root = %self.root.display(), why, "Reconcile pass: listing everything.");
                i.applying = Some(match i.applying {
                    Some((t, q)) => (t, q.min(seq)),
                    None => (None, seq),
                });
                i.last_reconcile = Some(unix_now());
            }
            i.planned = Some(Planned::Whole);
        } else {
            i.planned = Some(Planned::Changes(taken));
        }
        true
    }

    /// The directories to list for planned changes. Blocking (a `stat` per
    /// change).
    pub fn scope(&self, changed: Vec<Components>) -> Vec<ScopeDir> {
        scope_of(&self.root, changed)
    }

    /// What the scan starting now lists (`None`: not a pass this watch
    /// planned, e.g. the first listing or one resumed: everything).
    pub fn take_planned(&self) -> Option<Planned> {
        lock(&self.inner).planned.take()
    }

    /// A whole listing is starting from the beginning: it finds every
    /// change made so far, so no reconcile is due for what came before.
    pub fn listing_whole(&self) {
        let mut i = lock(&self.inner);
        if let Some((_, seq)) = i.reconcile.take() {
            i.last_reconcile = Some(unix_now());
            i.applying = Some(match i.applying {
                Some((t, q)) => (t, q.min(seq)),
                None => (None, seq),
            });
        }
    }

    /// The pass ended: its changes are applied.
    pub fn pass_ended(&self) {
        let mut i = lock(&self.inner);
        i.applying = None;
        i.taken.clear();
    }

    /// Whether a listing should leave `rel` (status changed at `ctime_ns`,
    /// for a local file) for a later pass: it is still being written
    /// (changed, not settled), or it changed so recently (within the settle
    /// time) that it may be being written with its events not arrived yet,
    /// and it is not a settled change of this pass. Such a file is queued
    /// as a change here, so a later pass lists it once it has settled even
    /// if no event ever comes (a file made in a new directory before the
    /// directory's watch).
    pub fn unsettled(&self, rel: &str, ctime_ns: Option<i64>) -> bool {
        let mut i = lock(&self.inner);
        if let Some(d) = i.dirty.get(rel) {
            return !d.closed && d.last.elapsed() < self.settle;
        }
        if i.taken.contains(rel) {
            return false;
        }
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let recent = ctime_ns.is_some_and(|c| {
            now_ns.saturating_sub(c) < self.settle.as_nanos() as i64 && c > i.synced_ns
        });
        if recent {
            i.queued += 1;
            let seq = i.queued;
            let components = rel.split('/').map(|c| c.as_bytes().to_vec()).collect();
            i.dirty.insert(
                rel.to_string(),
                Dirty {
                    components,
                    seq,
                    since: SystemTime::now(),
                    last: Instant::now(),
                    closed: false,
                },
            );
        }
        recent
    }

    /// A cut-over (`sync`): every change queued so far is to be listed,
    /// settled or not (the writers have stopped). Returns the sequence
    /// number `done_seq` must reach, and the lag now.
    pub fn sync(&self) -> (u64, Option<u64>) {
        let lag = self.status().lag_ms;
        let mut i = lock(&self.inner);
        for d in i.dirty.values_mut() {
            d.closed = true;
        }
        i.synced_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        (i.queued, lag)
    }

    pub fn status(&self) -> WatchStatus {
        let i = lock(&self.inner);
        let oldest = i
            .dirty
            .values()
            .map(|d| d.since)
            .chain(i.applying.and_then(|a| a.0))
            .min();
        let first_open = i
            .dirty
            .values()
            .map(|d| d.seq)
            .chain(i.applying.map(|a| a.1))
            .chain(i.reconcile.as_ref().map(|r| r.1))
            .min();
        WatchStatus {
            done_seq: first_open.map_or(i.queued, |q| q.saturating_sub(1)),
            pending: i.dirty.len() as u64,
            queued: i.queued,
            applied: i.applied,
            lag_ms: oldest.map(|t| t.elapsed().unwrap_or_default().as_millis() as u64),
            last_reconcile: i.last_reconcile,
            reconcile_due: i.reconcile.as_ref().map(|r| r.0.clone()),
            problem: i.problem.clone(),
            backend: i.backend.clone(),
        }
    }
}

impl Inner {
    /// The next pass must list everything (the first reason given stays).
    fn due_whole(&mut self, why: &str) {
        if self.reconcile.is_none() {
            self.queued += 1;
            self.reconcile = Some((why.to_string(), self.queued));
        }
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Records one event (on notify's thread).
fn on_event(job: &str, root: &Path, inner: &Mutex<Inner>, res: notify::Result<notify::Event>) {
    let ev = match res {
        Ok(ev) => ev,
        Err(e) => {
            let why = cannot_watch(&e);
            warn!(job, error = %why, "Watch error; the next pass lists everything.");
            let mut i = lock(inner);
            if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                i.problem = Some(why.clone());
            }
            i.due_whole(&why);
            return;
        }
    };
    if ev.need_rescan() {
        let why =
            "the watch's event queue overflowed (fs.inotify.max_queued_events): events were lost"
                .to_string();
        warn!(job, "{why}; the next pass lists everything.");
        lock(inner).due_whole(&why);
        return;
    }
    let closed = match ev.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => true,
        EventKind::Create(_) | EventKind::Modify(_) => false,
        _ => return,
    };
    let gone = matches!(
        ev.kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    );
    let now = (Instant::now(), SystemTime::now());
    let mut i = lock(inner);
    for path in &ev.paths {
        note(&mut i, root, path, closed, gone, now);
    }
}

/// One changed path, from either backend: queued (or its latest event
/// noted); `closed`: nothing more to wait for; `gone`: moved or removed.
fn note(
    i: &mut Inner,
    root: &Path,
    path: &Path,
    closed: bool,
    gone: bool,
    now: (Instant, SystemTime),
) {
    let Some(components) = components_below(root, path) else {
        return;
    };
    if components.is_empty() {
        if gone {
            i.due_whole("srcPrefix itself was moved or removed");
        }
        return;
    }
    let key = crate::scanner::ScopeDir {
        components: components.clone(),
        deep: false,
    }
    .rel_path();
    if let Some(d) = i.dirty.get_mut(&key) {
        d.last = now.0;
        d.closed = closed;
        return;
    }
    if i.dirty.len() >= MAX_PENDING {
        // The whole listing stands for the changes dropped, in their place
        // in the order (a `sync` waits for it).
        let first = i.dirty.values().map(|d| d.seq).min();
        i.dirty.clear();
        i.due_whole("more changes were queued than are kept (1,000,000)");
        if let (Some(r), Some(first)) = (i.reconcile.as_mut(), first) {
            r.1 = r.1.min(first);
        }
        return;
    }
    i.queued += 1;
    let seq = i.queued;
    i.dirty.insert(
        key,
        Dirty {
            components,
            seq,
            since: now.1,
            last: now.0,
            closed,
        },
    );
}

/// `path`'s components below `root`, or `None` outside it (or with a `..`).
fn components_below(root: &Path, path: &Path) -> Option<Components> {
    let rel = path.strip_prefix(root).ok()?;
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// The directories to list for changed paths: a directory all of it (it
/// may be new, or renamed in), a file its parent's entries, a path gone
/// both (what was below it is gone too).
fn scope_of(root: &Path, changed: Vec<Components>) -> Vec<ScopeDir> {
    let mut dirs = Vec::new();
    for c in changed {
        let mut path = root.to_path_buf();
        for part in &c {
            path.push(OsString::from_vec(part.clone()));
        }
        let md = std::fs::symlink_metadata(&path);
        if md.as_ref().is_ok_and(|m| m.is_dir()) {
            dirs.push(ScopeDir {
                components: c,
                deep: true,
            });
            continue;
        }
        if md.is_err() {
            dirs.push(ScopeDir {
                components: c.clone(),
                deep: true,
            });
        }
        let mut parent = c;
        parent.pop();
        dirs.push(ScopeDir {
            components: parent,
            deep: false,
        });
    }
    crate::scanner::normalize_scope(dirs)
}

/// Whether resolving an event's directory failed because the directory is
/// gone (its handle is stale): nothing below the root to list for it.
fn dir_gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ESTALE | libc::ENOENT))
}

/// What a watch error means for an administrator.
fn cannot_watch(e: &notify::Error) -> String {
    match e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            format!(
                "the inotify watch limit is reached (fs.inotify.max_user_watches={limit}; one watch per directory): raise it, e.g. sysctl fs.inotify.max_user_watches=1048576"
            )
        }
        _ => format!("cannot watch the source tree: {e}"),
    }
}

/// The kind of network file system `root` is on, if it is one whose
/// server does not report other clients' writes to inotify.
fn network_fs(root: &Path) -> Option<&'static str> {
    let c = std::ffi::CString::new(root.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    match st.f_type as i64 {
        0x6969 => Some("NFS"),
        0x517B => Some("SMB"),
        0xFF53_4D42 => Some("CIFS"),
        0xFE53_4D42 => Some("SMB2"),
        0x6573_5546 => Some("a FUSE file system"),
        0x0BD0_0BD0 => Some("Lustre"),
        0x0102_1997 => Some("9p"),
        _ => None,
    }
}

/// The fanotify backend.
mod fan {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant, SystemTime};

    use fanotify_fid::prelude::*;
    use tracing::warn;

    use super::{Inner, lock, note};

    /// What is reported: every change to an entry of a directory, and to
    /// a directory itself.
    const MASK: u64 = FAN_CREATE
        | FAN_DELETE
        | FAN_MOVED_FROM
        | FAN_MOVED_TO
        | FAN_MODIFY
        | FAN_ATTRIB
        | FAN_CLOSE_WRITE
        | FAN_DELETE_SELF
        | FAN_MOVE_SELF
        | FAN_ONDIR;

    /// A reading thread, stopped (within a quarter second) when dropped.
    pub(super) struct FanWatch {
        stop: Arc<AtomicBool>,
    }

    impl Drop for FanWatch {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    impl FanWatch {
        /// Marks the file system of `root` (events name a directory by
        /// handle and the entry by name; each is resolved to a path with
        /// `open_by_handle_at`, and what lies outside `root` is dropped).
        pub(super) fn start(
            job: &str,
            root: &Path,
            inner: Arc<Mutex<Inner>>,
        ) -> std::result::Result<FanWatch, String> {
            // Paths come back from the kernel without symlinks.
            let root = std::fs::canonicalize(root).map_err(|e| e.to_string())?;
            let fan = Fanotify::init(
                FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME | FAN_CLOEXEC | FAN_NONBLOCK,
                libc::O_RDONLY as u32,
            )
            .map_err(|e| e.to_string())?;
            // The root's file system, and every one mounted below it (a mark
            // covers one file system; inotify's watches would cross into
            // them). Each gives a descriptor to resolve its handles with.
            let mut mounts = Mounts::new();
            for dir in std::iter::once(root.clone()).chain(mounted_below(&root)) {
                fan.mark(FAN_MARK_ADD | FAN_MARK_FILESYSTEM, MASK, dir.as_os_str())
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                let fd =
                    std::fs::File::open(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                mounts.add(fd).map_err(|e| e.to_string())?;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let (flag, job) = (Arc::clone(&stop), job.to_string());
            std::thread::Builder::new()
                .name("fanotify".into())
                .spawn(move || read(&job, &fan, &mounts, &root, &inner, &flag))
                .map_err(|e| e.to_string())?;
            Ok(FanWatch { stop })
        }
    }

    /// Mount points strictly below `root` (from `/proc/self/mounts`, whose
    /// octal escapes are undone).
    fn mounted_below(root: &Path) -> Vec<PathBuf> {
        let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
            return Vec::new();
        };
        let unescape = |s: &str| -> PathBuf {
            let b = s.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut k = 0;
            while k < b.len() {
                let octal = b
                    .get(k + 1..k + 4)
                    .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
                match (b[k], octal) {
                    (b'\\', Some(d)) => {
                        let v = u32::from(d[0] - b'0') * 64
                            + u32::from(d[1] - b'0') * 8
                            + u32::from(d[2] - b'0');
                        out.push(v as u8);
                        k += 4;
                    }
                    (c, _) => {
                        out.push(c);
                        k += 1;
                    }
                }
            }
            PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
        };
        text.lines()
            .filter_map(|l| l.split(' ').nth(1))
            .map(unescape)
            .filter(|m| m != root && m.starts_with(root))
            .collect()
    }

    fn read(
        job: &str,
        fan: &Fanotify,
        mounts: &Mounts,
        root: &Path,
        inner: &Mutex<Inner>,
        stop: &AtomicBool,
    ) {
        // No cache of handle to path: a rename would make it lie.
        let resolver = PathResolver::new(&NoCache, mounts);
        let mut buf = Vec::with_capacity(1 << 16);
        while !stop.load(Ordering::Relaxed) {
            match fan.wait_readable(Some(Duration::from_millis(250))) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    warn!(job, error = %e, "fanotify wait failed; the next pass lists everything.");
                    lock(inner).due_whole("the fanotify watch failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            let events = match fan.read_events(&mut buf) {
                Ok(e) => e,
                Err(e) if e.is_would_block() => continue,
                Err(e) => {
                    warn!(job, error = %e, "fanotify read failed; the next pass lists everything.");
                    lock(inner).due_whole("the fanotify watch failed");
                    continue;
                }
            };
            let mut seen: Vec<(PathBuf, bool, bool)> = Vec::with_capacity(events.len());
            let mut overflow = false;
            let mut unresolved = None;
            for ev in &events {
                if ev.is_overflow() {
                    overflow = true;
                    continue;
                }
                let (Some(fsid), Some(handle)) = (ev.fsid(), ev.dfid_name_handle()) else {
                    continue;
                };
                // A directory gone by now resolves to nothing or to
                // "... (deleted)": not below the root either way (its own
                // removal is an event of its parent's). Any other failure
                // (out of descriptors or memory) may hide a change below
                // the root: the next pass lists everything.
                let path = match resolver.resolve_dir(fsid, handle, ev.dfid_name_raw()) {
                    Ok(p) => p,
                    Err(e) if super::dir_gone(&e) => continue,
                    Err(e) => {
                        unresolved.get_or_insert(e);
                        continue;
                    }
                };
                if !path.starts_with(root) {
                    continue;
                }
                let m = ev.mask();
                let closed = m
                    & (FAN_CLOSE_WRITE
                        | FAN_DELETE
                        | FAN_MOVED_FROM
                        | FAN_MOVED_TO
                        | FAN_DELETE_SELF
                        | FAN_MOVE_SELF)
                    != 0;
                let gone = m & (FAN_DELETE | FAN_MOVED_FROM | FAN_DELETE_SELF | FAN_MOVE_SELF) != 0;
                seen.push((path, closed, gone));
            }
            let now = (Instant::now(), SystemTime::now());
            let mut i = lock(inner);
            if overflow {
                warn!(
                    job,
                    "The fanotify event queue overflowed; the next pass lists everything."
                );
                i.due_whole(
                    "the watch's event queue overflowed (fanotify, 16384 events): events were lost",
                );
            }
            if let Some(e) = unresolved {
                warn!(job, error = %e, "A fanotify event's directory could not be found; the next pass lists everything.");
                i.due_whole(&format!(
                    "a watched change's directory could not be found ({e}): events may have been lost"
                ));
            }
            for (path, closed, gone) in &seen {
                note(&mut i, root, path, *closed, *gone, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str) -> Components {
        p.split('/').map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn changed_paths_become_the_directories_to_list() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("a/new")).unwrap();
        std::fs::write(r.join("a/f"), b"x").unwrap();
        std::fs::write(r.join("top"), b"x").unwrap();
        std::os::unix::fs::symlink(r.join("a"), r.join("link")).unwrap();
        let got = scope_of(
            r,
            vec![c("a/f"), c("a/new"), c("top"), c("gone/dir"), c("link")],
        );
        let d = |p: &str, deep| ScopeDir {
            components: if p.is_empty() { Vec::new() } else { c(p) },
            deep,
        };
        assert_eq!(
            got,
            vec![
                d("", false),
                d("a", false),
                d("a/new", true),
                d("gone", false),
                d("gone/dir", true),
            ]
        );
    }

    /// A watch on `root` with no backend: changes are noted by hand.
    fn bare(root: &Path) -> Watch {
        Watch {
            root: root.to_path_buf(),
            settle: Duration::from_secs(1),
            inner: Arc::new(Mutex::new(Inner::default())),
            _backend: None,
        }
    }

    fn changed(w: &Watch, rel: &str) {
        let now = (Instant::now(), SystemTime::now());
        note(
            &mut lock(&w.inner),
            &w.root,
            &w.root.join(rel),
            true,
            false,
            now,
        );
    }

    #[test]
    fn a_plan_no_pass_took_is_kept_and_added_to() {
        let w = bare(Path::new("/src"));
        changed(&w, "a/f1");
        assert!(w.next_pass(false));
        // No pass began (the job was paused as it was due): the next plan
        // still holds a/f1, with b/f2.
        changed(&w, "b/f2");
        assert!(w.next_pass(false));
        let Some(Planned::Changes(mut got)) = w.take_planned() else {
            panic!("a plan of changes")
        };
        got.sort();
        assert_eq!(got, vec![c("a/f1"), c("b/f2")]);
        assert_eq!(w.status().done_seq, 0, "neither change is applied yet");

        // Nothing new: a pass is still due for the plan not taken.
        changed(&w, "c/f3");
        assert!(w.next_pass(false));
        assert!(w.next_pass(false), "the plan not taken is due again");
        assert_eq!(w.take_planned(), Some(Planned::Changes(vec![c("c/f3")])));
        assert!(!w.next_pass(false), "taken: nothing due");

        // A whole listing not taken stays whole, with the changes since.
        lock(&w.inner).due_whole("test");
        assert!(w.next_pass(false));
        changed(&w, "d/f4");
        assert!(w.next_pass(false));
        assert_eq!(w.take_planned(), Some(Planned::Whole));
        w.pass_ended();
        assert_eq!(w.status().done_seq, lock(&w.inner).queued);
    }

    #[test]
    fn only_a_stale_directory_is_taken_for_gone() {
        let e = std::io::Error::from_raw_os_error;
        assert!(dir_gone(&e(libc::ESTALE)));
        assert!(dir_gone(&e(libc::ENOENT)));
        // Out of descriptors or memory: the change may be below the root.
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::EXDEV,
            libc::EACCES,
        ] {
            assert!(!dir_gone(&e(errno)), "{errno}");
        }
    }

    #[test]
    fn paths_outside_the_root_are_not_changes() {
        let root = Path::new("/src/data");
        assert_eq!(
            components_below(root, Path::new("/src/data/a/b")),
            Some(c("a/b"))
        );
        assert_eq!(components_below(root, Path::new("/src/other")), None);
        assert_eq!(components_below(root, Path::new("/src/data/../x")), None);
        assert_eq!(components_below(root, root), Some(Vec::new()));
    }
}
