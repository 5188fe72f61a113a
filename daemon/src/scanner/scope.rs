//! A watched pass (`incrementalMode=watch`): lists only the directories
//! where settled changes happened, with the same rules as a whole listing,
//! and marks deleted only what was recorded inside them.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::local::{self, LocalLister};
use super::{Lister, ScanConfig, ScanError, ScanOutcome, Tasks};
use crate::store::{NewObject, Store};

/// What a scoped listing commits as its position: a pass stopped inside
/// its scope is listed again whole (the scope lived in memory only).
pub(super) const SCOPED: &str = "watch";

/// A directory of a watched tree that a pass lists: all of it (`deep`) or
/// only the entries directly in it. Its path below the root as raw
/// components (empty: the root).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScopeDir {
    pub components: Vec<Vec<u8>>,
    pub deep: bool,
}

impl ScopeDir {
    /// The directory's relative path as the store writes paths.
    pub fn rel_path(&self) -> String {
        local::rel_path(&self.components)
    }

    /// Whether listing `self` lists everything `other` would.
    fn covers(&self, other: &ScopeDir) -> bool {
        self.deep
            && other.components.starts_with(&self.components)
            && (other.components.len() > self.components.len() || !other.deep || self == other)
    }
}

/// The smallest set of directories that lists everything in `dirs`:
/// nothing covered by a deep directory above it, no duplicates, in walk
/// order.
pub fn normalize(mut dirs: Vec<ScopeDir>) -> Vec<ScopeDir> {
    dirs.sort();
    dirs.dedup();
    let all = dirs.clone();
    dirs.retain(|d| !all.iter().any(|o| o != d && o.covers(d)));
    dirs
}

/// Lists `scope` of a local source into tasks of the current pass, then
/// marks deleted what earlier passes recorded inside it and this one did
/// not find. Blocking, like [`super::scan`].
pub fn scan_scope(
    store: &Store,
    job_id: i64,
    cfg: &ScanConfig,
    scope: &[ScopeDir],
    held: super::Held<'_>,
    cancel: &CancellationToken,
    mut on_task: impl FnMut(i64, &[NewObject]) + Send,
) -> Result<ScanOutcome, ScanError> {
    let Some(root) = cfg.local_root() else {
        return Err(ScanError::List(
            "a watched pass lists a local directory only".into(),
        ));
    };
    if let Some(dest) = &cfg.dest_dir
        && let Some(why) = crate::config::job::local_overlap(root, dest)
    {
        return Err(ScanError::Overlap(why));
    }
    let root: &Path = root;
    let follow = matches!(
        cfg.source,
        proto::job::SourceSpec::Local {
            follow_symlinks: true,
            ..
        }
    );
    let pass = store.current_pass(job_id)?;
    let mut out = Tasks::new(store, job_id, pass, cfg, cancel, &mut on_task, None);
    out.folded = super::folded_keys(store, job_id, pass, cfg)?;
    out.scoped = true;
    out.held = held;
    for dir in scope {
        let Some(mut lister) = LocalLister::scoped(root, follow, dir) else {
            continue; // gone, or no longer a directory: nothing in it to list
        };
        if lister.list(None, &mut out)?.is_none() {
            return Ok(ScanOutcome::Stopped(out.stats));
        }
    }
    out.flush(SCOPED)?;
    let dirs: Vec<(bool, String)> = scope.iter().map(|d| (d.deep, d.rel_path())).collect();
    store.finish_scoped_scan(job_id, &dirs)?;
    Ok(ScanOutcome::Finished(out.stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(path: &str, deep: bool) -> ScopeDir {
        ScopeDir {
            components: if path.is_empty() {
                Vec::new()
            } else {
                path.split('/').map(|c| c.as_bytes().to_vec()).collect()
            },
            deep,
        }
    }

    #[test]
    fn a_deep_directory_covers_what_lies_below_it() {
        let got = normalize(vec![
            d("a/b", false),
            d("a", true),
            d("a", false),
            d("ab", false),
            d("c/d", true),
            d("c", false),
            d("c/d/e", true),
            d("c/d", true),
        ]);
        assert_eq!(
            got,
            vec![d("a", true), d("ab", false), d("c", false), d("c/d", true)]
        );
        assert_eq!(
            normalize(vec![d("", true), d("x", false)]),
            vec![d("", true)]
        );
    }
}
