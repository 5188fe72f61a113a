//! The local directories an agent may read and write for jobs
//! (`--allow-root DIR`, repeatable).
//!
//! A batch comes from the daemon's key, but a key can leak: whoever holds
//! it must not be able to make every agent read or write anywhere (a local
//! destination in `/root/.ssh`). A job's local source directory and local
//! destination directory must each be one of the roots or lie inside one
//! (real paths: symlinks resolved in what exists, checked at every batch
//! that makes a new executor); with `isAllowSymbolicLink`, every source
//! file's real path too. No root given: no local source or destination.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::job::{DestSpec, JobSpec, SourceSpec};

/// The allowed roots, as given (absolute; they may not exist yet: a
/// destination directory is made by the first copy).
#[derive(Clone, Debug, Default)]
pub struct Roots(Vec<PathBuf>);

/// `p` with the symlinks of its existing part resolved and the rest kept
/// as written; `None` when the rest climbs with `..` (or `p` is relative).
fn resolve(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() {
        return None;
    }
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(real) => {
                let mut out = real;
                for c in rest.iter().rev() {
                    out.push(c);
                }
                return Some(out);
            }
            Err(_) => {
                let name = existing.file_name()?.to_os_string();
                if name == ".." {
                    return None;
                }
                rest.push(name);
                existing = existing.parent()?.to_path_buf();
            }
        }
    }
}

impl Roots {
    /// Each must be an absolute path.
    pub fn new(dirs: &[PathBuf]) -> Result<Roots, String> {
        for d in dirs {
            if !d.is_absolute() {
                return Err(format!(
                    "--allow-root {}: give an absolute path",
                    d.display()
                ));
            }
        }
        Ok(Roots(dirs.to_vec()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err(why)` unless `dir` is a root or lies inside one, both with the
    /// symlinks of what exists of them resolved now.
    fn check(&self, key: &str, dir: &Path) -> Result<(), String> {
        let inside = resolve(dir).is_some_and(|d| {
            self.0
                .iter()
                .filter_map(|r| resolve(r))
                .any(|r| d.starts_with(&r))
        });
        if inside {
            return Ok(());
        }
        let allowed = if self.0.is_empty() {
            "none (this agent takes no local source or destination)".to_string()
        } else {
            self.0
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(format!(
            "{key} {} is outside the directories this agent may use (--allow-root: {allowed})",
            proto::net::printable(&dir.display().to_string())
        ))
    }

    /// `Err(why)` unless every local directory of `spec` is allowed.
    pub fn check_job(&self, spec: &JobSpec) -> Result<(), String> {
        if let SourceSpec::Local { root, .. } = &spec.source {
            self.check("srcPrefix", Path::new(root))?;
        }
        if let DestSpec::Local { dir, .. } = &spec.dest {
            self.check("destDir", Path::new(dir))?;
        }
        Ok(())
    }

    /// For a source that follows symlinks: each opened file's real path
    /// must be inside a root.
    pub fn file_rule(&self) -> crate::worker::Confine {
        let roots = self.0.clone();
        Arc::new(move |path: &Path, opened: &storage::beneath::SourceFile| {
            use std::os::unix::fs::MetadataExt;
            let real =
                std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
            // The real path must still be the file that was opened: a
            // symlink swapped in between would otherwise pass the check.
            let md = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
            if (md.dev(), md.ino()) != (opened.dev, opened.ident.ino) {
                return Err(format!(
                    "{} changed while it was checked",
                    proto::net::printable(&path.display().to_string())
                ));
            }
            if roots
                .iter()
                .filter_map(|r| resolve(r))
                .any(|r| real.starts_with(r))
            {
                Ok(())
            } else {
                Err(format!(
                    "{} leads to {}, outside the directories this agent may use (--allow-root)",
                    proto::net::printable(&path.display().to_string()),
                    proto::net::printable(&real.display().to_string())
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_inside_a_root_are_taken() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir_all(data.join("in")).unwrap();
        std::fs::create_dir_all(d.path().join("other")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&data)).unwrap();
        roots.check("srcPrefix", &data).unwrap();
        roots.check("srcPrefix", &data.join("in")).unwrap();
        roots.check("destDir", &data.join("not/yet")).unwrap();
        let e = roots.check("destDir", &d.path().join("other")).unwrap_err();
        assert!(e.contains("destDir") && e.contains("--allow-root"), "{e}");
        // A symlink inside the root to a directory outside is outside.
        std::os::unix::fs::symlink(d.path().join("other"), data.join("link")).unwrap();
        assert!(roots.check("srcPrefix", &data.join("link")).is_err());
        assert!(
            roots
                .check("srcPrefix", &data.join("in/../../other"))
                .is_err()
        );
        let none = Roots::default();
        let e = none.check("srcPrefix", &data).unwrap_err();
        assert!(e.contains("none"), "{e}");
        // A root not made yet counts from when it is.
        let later = Roots::new(&[d.path().join("later")]).unwrap();
        later.check("destDir", &d.path().join("later/sub")).unwrap();
        assert!(later.check("destDir", &d.path().join("other")).is_err());
        assert!(
            later
                .check("destDir", &d.path().join("later/../other"))
                .is_err()
        );
        assert!(Roots::new(&[PathBuf::from("rel")]).is_err());
    }
}
