//! The local-directory lister: a depth-first walk with each directory's
//! entries sorted by raw name bytes, i.e. component-wise lexicographic
//! order. The position is the last path (as its components' bytes), and a
//! resumed walk skips whole subtrees before it at once.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::{Lister, ScanError, Tasks, checkpoint_err};
use crate::store::NewObject;

/// Path components as raw bytes; `Vec` ordering is exactly the walk order.
type Components = Vec<Vec<u8>>;

struct Frame {
    components: Components,
    entries: std::vec::IntoIter<OsString>,
}

pub(super) struct LocalLister {
    /// The source directory (`srcPrefix`).
    pub(super) root: PathBuf,
    /// Follow symlinks to files (`isAllowSymbolicLink`); symlinks to
    /// directories are never followed, as in the original.
    pub(super) follow_symlinks: bool,
    /// The directory below `root` this lister walks (a branch of a
    /// parallel listing; empty: all of it).
    pub(super) start: Components,
    /// Only the files directly in `start`; its directories are other
    /// branches.
    pub(super) flat: bool,
}

impl LocalLister {
    pub(super) fn whole(root: &Path, follow_symlinks: bool) -> LocalLister {
        LocalLister {
            root: root.to_path_buf(),
            follow_symlinks,
            start: Vec::new(),
            flat: false,
        }
    }

    /// The lister of one branch (`at` as [`partition`] wrote it).
    pub(super) fn branch(
        root: &Path,
        follow_symlinks: bool,
        at: &str,
        deep: bool,
    ) -> Result<LocalLister, ScanError> {
        Ok(LocalLister {
            root: root.to_path_buf(),
            follow_symlinks,
            start: serde_json::from_str(at).map_err(checkpoint_err)?,
            flat: !deep,
        })
    }

    /// The lister of one directory of a watched pass's scope, or `None`
    /// when a component of its path is not (or no longer) a directory of
    /// the tree: a symlink is never followed to one.
    pub(super) fn scoped(
        root: &Path,
        follow_symlinks: bool,
        dir: &super::ScopeDir,
    ) -> Option<LocalLister> {
        let mut at = root.to_path_buf();
        for c in &dir.components {
            at.push(OsString::from_vec(c.clone()));
            let md = std::fs::symlink_metadata(&at).ok()?;
            if !md.is_dir() {
                return None;
            }
        }
        Some(LocalLister {
            root: root.to_path_buf(),
            follow_symlinks,
            start: dir.components.clone(),
            flat: !dir.deep,
        })
    }
}

/// Splits the tree for a parallel listing: every directory above `depth`
/// is a flat branch (its own files), every directory at `depth` a deep one
/// (everything below it). Directory symlinks are not followed, as in the
/// walk; a directory that cannot be read stays a flat branch, whose lister
/// then records the error. Returns `(deep, at)` in walk order.
pub(super) fn partition(root: &Path, depth: usize) -> Result<Vec<(bool, String)>, ScanError> {
    read_sorted(root).map_err(|source| ScanError::Root {
        path: root.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    let mut level: Vec<Components> = vec![Vec::new()];
    for _ in 0..depth.max(1) {
        let mut next = Vec::new();
        for dir in level {
            out.push((false, position(&dir)?));
            let Ok(names) = read_sorted(&path_of(root, &dir)) else {
                continue;
            };
            for name in names {
                let mut c = dir.clone();
                c.push(name.as_bytes().to_vec());
                if std::fs::symlink_metadata(path_of(root, &c)).is_ok_and(|m| m.is_dir()) {
                    next.push(c);
                }
            }
        }
        level = next;
    }
    for dir in level {
        out.push((true, position(&dir)?));
    }
    Ok(out)
}

fn position(components: &Components) -> Result<String, ScanError> {
    serde_json::to_string(components).map_err(checkpoint_err)
}

impl Lister for LocalLister {
    /// One walk of the tree, depth first with an explicit stack so that
    /// any committed position can be resumed from; long because every kind
    /// of entry (file, directory, symlink, special, unreadable, a copy's own
    /// temporary) is decided here, each with its count or failure.
    fn list(
        &mut self,
        after: Option<&str>,
        out: &mut Tasks<'_>,
    ) -> Result<Option<String>, ScanError> {
        let root = self.root.as_path();
        let checkpoint: Option<Components> = match after {
            Some(s) => Some(serde_json::from_str(s).map_err(checkpoint_err)?),
            None => None,
        };
        let root_entries = match read_sorted(&path_of(root, &self.start)) {
            Ok(e) => e,
            Err(source) if self.start.is_empty() => {
                return Err(ScanError::Root {
                    path: root.display().to_string(),
                    source,
                });
            }
            // A branch gone since the split: nothing to list.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return position(&self.start).map(Some);
            }
            Err(e) => {
                if checkpoint.is_none() {
                    let rel = format!("{}/", rel_path(&self.start));
                    out.push_failed(rel, format!("cannot list directory: {e}"));
                }
                return position(&self.start).map(Some);
            }
        };
        let mut stack = vec![Frame {
            components: self.start.clone(),
            entries: root_entries.into_iter(),
        }];
        let mut last: Components = Vec::new();

        while let Some(frame) = stack.last_mut() {
            if out.cancelled() {
                return Ok(None);
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
                    out.push_failed(rel_path(&components), format!("cannot stat: {e}"));
                    last = components;
                    continue;
                }
            };
            let ft = lmd.file_type();

            if ft.is_dir() {
                if self.flat {
                    continue; // a branch of its own
                }
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
                        let rel = format!("{}/", rel_path(&components));
                        out.push_failed(rel, format!("cannot list directory: {e}"));
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
                if !self.follow_symlinks {
                    out.stats.symlinks_skipped += 1;
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
                        out.push_failed(
                            rel_path(&components),
                            format!("cannot stat the symlink's target: {e}"),
                        );
                        last = components;
                        continue;
                    }
                    // Dangling links and links to directories are not objects.
                    _ => {
                        out.stats.symlinks_skipped += 1;
                        continue;
                    }
                }
            } else if ft.is_file() {
                lmd
            } else {
                out.stats.special_skipped += 1;
                continue;
            };
            // A copy's own temporary (this job writing into a directory
            // it also lists, or another job's) is never an object.
            if components
                .last()
                .is_some_and(|n| storage::beneath::is_temp_name(n))
            {
                out.stats.special_skipped += 1;
                continue;
            }
            let ident = storage::beneath::Identity::of(&md);
            let mtime = ident.mtime_secs();
            let rel = rel_path(&components);
            if !out.wanted(&rel, Some(mtime)) {
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
            last = components;
            out.push_changed_at(
                NewObject {
                    rel_path: rel,
                    size: md.len(),
                    mtime,
                    ident: Some(ident.tag()),
                    src_ref: None,
                    failure,
                },
                Some(ident.ctime_ns),
                || position(&last),
            )?;
        }
        position(&last).map(Some)
    }
}

fn read_sorted(dir: &Path) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn path_of(root: &Path, components: &Components) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in components {
        p.push(OsString::from_vec(c.clone()));
    }
    p
}

pub(super) fn rel_path(components: &Components) -> String {
    let parts: Vec<String> = components
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    parts.join("/")
}
