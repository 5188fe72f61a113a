//! What a local caller of the control socket may make the daemon touch.
//!
//! The daemon usually runs as a user who can read more than its callers
//! (root, or a service account with the migration's credentials). A caller
//! must not be able to use it to read what they could not read themselves:
//! the job file and a local source are checked against the caller's uid and
//! groups, a local destination must be writable by them, and no job may read
//! from or write into the daemon's own work directory (its job store, keys
//! and saved job files), whoever asks.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The caller, from the socket's peer credentials.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    /// The user and group of this process.
    pub fn current() -> Caller {
        // SAFETY: getuid/getgid have no preconditions.
        Caller {
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        }
    }

    /// The user `uid` with the primary group the password database gives
    /// (a job's owner, acted for later).
    pub fn of_uid(uid: u32) -> Caller {
        let gid = passwd(uid).map_or(u32::MAX, |(_, gid)| gid);
        Caller { uid, gid }
    }

    /// Root and the daemon's own user are not restricted (they can read
    /// everything the daemon can anyway).
    pub fn is_privileged(&self) -> bool {
        // SAFETY: geteuid has no preconditions.
        self.uid == 0 || self.uid == unsafe { libc::geteuid() }
    }

    fn groups(&self) -> Vec<u32> {
        groups_of(self.uid, self.gid)
    }

    /// Fails unless the caller could read `path` (search permission on
    /// every directory above it, read permission on it).
    pub fn may_read(&self, path: &Path) -> Result<(), String> {
        self.check(path, libc::S_IROTH, "read")
    }

    /// Fails unless the caller could create files in `dir`, or in its
    /// nearest existing ancestor when it does not exist yet.
    pub fn may_write(&self, dir: &Path) -> Result<(), String> {
        let mut d = dir.to_path_buf();
        while !d.exists() {
            match d.parent() {
                Some(p) => d = p.to_path_buf(),
                None => break,
            }
        }
        self.check(&d, libc::S_IWOTH | libc::S_IXOTH, "write into")
    }

    fn check(&self, path: &Path, want: u32, what: &str) -> Result<(), String> {
        let groups = self.groups();
        let allowed = |md: &std::fs::Metadata, bits: u32| {
            let mode = md.mode();
            let shift = if md.uid() == self.uid {
                6
            } else if groups.contains(&md.gid()) {
                3
            } else {
                0
            };
            (mode >> shift) & bits == bits
        };
        let deny = || {
            format!(
                "{}: you (uid {}) may not {what} it",
                path.display(),
                self.uid
            )
        };
        let mut dirs: Vec<PathBuf> = path.ancestors().skip(1).map(Path::to_path_buf).collect();
        dirs.reverse();
        for d in dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
            let md = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
            if !allowed(&md, libc::S_IXOTH) {
                return Err(deny());
            }
        }
        let md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !allowed(&md, want) {
            return Err(deny());
        }
        Ok(())
    }
}

/// The primary group and every supplementary group of `uid` (from the
/// group database: the peer credentials carry the primary gid only).
pub fn groups_of(uid: u32, primary: u32) -> Vec<u32> {
    let Some((name, _)) = passwd(uid) else {
        return vec![primary];
    };
    let mut n: libc::c_int = 64;
    loop {
        let want = n;
        let mut groups = vec![0 as libc::gid_t; want as usize];
        // SAFETY: `name` is NUL-terminated and `groups` holds `n` entries.
        if unsafe { libc::getgrouplist(name.as_ptr(), primary, groups.as_mut_ptr(), &mut n) } >= 0 {
            groups.truncate(n as usize);
            return groups;
        }
        n = if n > want { n } else { want * 2 };
        if n > 65536 {
            return vec![primary];
        }
    }
}

/// The user name and primary group of `uid` from the password database.
fn passwd(uid: u32) -> Option<(std::ffi::CString, u32)> {
    // SAFETY: getpwuid_r writes into buffers we own; the name is copied out
    // of `buf` before it goes.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 << 10];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) != 0
            || found.is_null()
        {
            return None;
        }
        Some((std::ffi::CStr::from_ptr(pw.pw_name).to_owned(), pw.pw_gid))
    }
}

/// What the worker on the master may open for a job submitted by `owner`
/// (not root, not the daemon's user): a source file only if its real path
/// (symlinks resolved) is the file that was opened, the owner could read
/// it, and it does not lie inside the daemon's work directory (compared by
/// device and inode). Checked for every file, at every pass and retry.
pub fn file_rule(
    owner: Caller,
    work_dir: PathBuf,
) -> impl Fn(&Path, &storage::beneath::SourceFile) -> Result<(), String> + Send + Sync {
    move |path, opened| {
        let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let md = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
        if (md.dev(), md.ino()) != (opened.dev, opened.ident.ino) {
            return Err(format!("{} changed while it was checked", path.display()));
        }
        let dir = real.parent().unwrap_or(Path::new("/"));
        if matches!(
            storage::beneath::dir_overlap(dir, &work_dir),
            Ok(Some(
                storage::beneath::Overlap::FirstInside | storage::beneath::Overlap::Same
            ))
        ) {
            return Err(format!(
                "{} lies inside the daemon's work directory {}",
                real.display(),
                work_dir.display()
            ));
        }
        owner.may_read(&real).map_err(|e| {
            if real == path {
                e
            } else {
                format!("{} is a link to {e}", path.display())
            }
        })
    }
}

/// Whether the daemon runs as root (it can then act as another user).
pub fn daemon_is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes the calling thread, and the threads it starts from now on, open
/// files as `who` (file-system uid and gid, and `who`'s supplementary
/// groups): the kernel then refuses what `who` could not open, root's
/// capabilities to override permissions included. For a thread that ends
/// with its work: there is no way back.
///
/// Raw system calls on purpose: glibc's `setgroups` changes every thread of
/// the process; the kernel's changes only the caller.
pub fn open_files_as(who: Caller) -> std::io::Result<()> {
    let groups = groups_of(who.uid, who.gid);
    // SAFETY: system calls on values we own; `groups` outlives the call.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::syscall(libc::SYS_setfsgid, who.gid);
        libc::syscall(libc::SYS_setfsuid, who.uid);
        // An invalid id changes nothing and returns the current one.
        let (fsuid, fsgid) = (
            libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32,
            libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32,
        );
        if (fsuid, fsgid) != (who.uid, who.gid) {
            return Err(std::io::Error::other(format!(
                "file-system ids are {fsuid}:{fsgid}, not {}:{}",
                who.uid, who.gid
            )));
        }
    }
    Ok(())
}

/// The user name of `uid`, or `uid N` when it has none.
pub fn user_name(uid: u32) -> String {
    match passwd(uid) {
        Some((name, _)) => name.to_string_lossy().into_owned(),
        None => format!("uid {uid}"),
    }
}

/// Whether two paths are the same directory or one lies inside the other
/// (compared after resolving symlinks where they exist).
pub fn overlaps(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (a, b) = (resolve(a), resolve(b));
    a.starts_with(&b) || b.starts_with(&a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("work");
        std::fs::create_dir_all(w.join("jobs")).unwrap();
        assert!(overlaps(&w, &w.join("jobs")));
        assert!(overlaps(d.path(), &w));
        assert!(overlaps(&w.join("jobs/../jobs"), &w));
        assert!(!overlaps(&d.path().join("src"), &w));
        std::os::unix::fs::symlink(&w, d.path().join("alias")).unwrap();
        assert!(overlaps(&d.path().join("alias"), &w));
    }

    #[test]
    fn permissions_of_another_user() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        // SAFETY: no preconditions.
        let me = unsafe { libc::geteuid() };
        let other = Caller {
            uid: if me == 65534 { 65533 } else { 65534 },
            gid: 65534,
        };
        assert!(other.may_read(&f).is_err());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(other.may_read(&f).is_ok());
        assert!(other.may_write(&d.path().join("new/sub")).is_err());
    }
}
