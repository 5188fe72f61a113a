//! Watching a local source file while it is uploaded (inotify on Linux,
//! through `notify`), so a file rewritten or deleted mid-upload is caught
//! even when its size and mtime end up as they were.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

const MODIFIED: u8 = 1;
const REMOVED: u8 = 2;

/// What happened to a watched file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Modified,
    Removed,
}

/// Watches one file until dropped.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
    seen: Arc<AtomicU8>,
}

impl FileWatch {
    /// Starts watching; fails if the platform cannot watch (e.g. the
    /// inotify watch limit is reached), in which case the caller relies on
    /// its before/after size and mtime check alone.
    pub fn new(path: &Path) -> notify::Result<FileWatch> {
        let seen = Arc::new(AtomicU8::new(0));
        let flag = Arc::clone(&seen);
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let Ok(ev) = res else { return };
                let what = match ev.kind {
                    EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => MODIFIED,
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => MODIFIED,
                    EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => REMOVED,
                    _ => return,
                };
                flag.fetch_max(what, Ordering::Relaxed);
            })?;
        watcher.watch(path, RecursiveMode::NonRecursive)?;
        Ok(FileWatch {
            _watcher: watcher,
            seen,
        })
    }

    /// The most serious change seen so far, if any.
    pub fn change(&self) -> Option<Change> {
        match self.seen.load(Ordering::Relaxed) {
            0 => None,
            MODIFIED => Some(Change::Modified),
            _ => Some(Change::Removed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::time::{Duration, Instant};

    fn wait_for(w: &FileWatch, want: Change) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.change() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "no {want:?} event; saw {:?}",
                w.change()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn sees_rewrites_and_deletes_but_not_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let w = FileWatch::new(&p).unwrap();
        let _ = std::fs::read(&p).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(w.change(), None, "reading is not a change");
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.seek(SeekFrom::Start(3)).unwrap();
        f.write_all(b"x").unwrap();
        drop(f);
        wait_for(&w, Change::Modified);
        std::fs::remove_file(&p).unwrap();
        wait_for(&w, Change::Removed);
    }
}
