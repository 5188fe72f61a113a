//! Opening and creating files strictly beneath a root directory.
//!
//! Names come from listings, URL lists and file systems that may be hostile
//! or may change between the scan and the copy. Every path here is walked
//! one component at a time with `openat(O_NOFOLLOW)` from a descriptor of
//! the root, so no symlink is followed at any component (a symlink swapped
//! in for a directory or for the file itself is refused with `ELOOP` or
//! `ENOTDIR`), and no `..` can climb out: relative paths are checked first
//! and `.`, `..`, empty segments and NUL are refused with a reason.
//!
//! The source side returns the open file, so every later read (hash, PUT,
//! parts, re-reads on resume) is of the very inode that was checked; the
//! destination side creates a temporary file with `O_EXCL` and a random
//! name in the final directory and renames it into place within that
//! directory's descriptor.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why a relative path cannot be used under a root; a sentence.
pub fn check_rel_path(rel: &str) -> Result<Vec<&str>, String> {
    if rel.is_empty() {
        return Err("the path is empty".into());
    }
    if rel.contains('\0') {
        return Err(format!("{rel:?} contains a NUL byte"));
    }
    if rel.starts_with('/') {
        return Err(format!("{rel:?} is absolute"));
    }
    let parts: Vec<&str> = rel.split('/').collect();
    for p in &parts {
        match *p {
            "" => {
                return Err(format!(
                    "{rel:?} has an empty path segment ('//' or a trailing '/')"
                ));
            }
            "." => return Err(format!("{rel:?} has a '.' segment")),
            ".." => {
                return Err(format!(
                    "{rel:?} has a '..' segment, which would leave the directory"
                ));
            }
            _ => {}
        }
    }
    Ok(parts)
}

fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn openat(
    dir: &impl AsRawFd,
    name: &CString,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string and `dir` a live descriptor.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by no one else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Opens a directory the caller named itself (`srcPrefix`, `destDir`):
/// symlinks in it are the user's choice and are followed.
pub fn open_root(root: &Path) -> io::Result<File> {
    let c = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as in `openat`.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Walks the directories of `parts[..len-1]` below `root` without following
/// symlinks; with `create`, missing directories are made (mode 0755 minus
/// the umask).
fn walk_dirs(root: File, dirs: &[&str], create: bool) -> io::Result<File> {
    let mut dir = root;
    for d in dirs {
        let name = cstr(d)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        dir = match openat(&dir, &name, flags, 0) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                // SAFETY: valid descriptor and NUL-terminated name.
                let r = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(e);
                    }
                }
                openat(&dir, &name, flags, 0)?
            }
            r => r?,
        };
    }
    Ok(dir)
}

/// What `open_source` found.
#[derive(Debug)]
pub struct SourceFile {
    pub file: File,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
    pub dev: u64,
    pub ino: u64,
    /// Permission bits (no set-id or sticky bits).
    pub mode: u32,
}

impl SourceFile {
    /// Size and mtime of the open file now.
    pub fn restat(&self) -> io::Result<(u64, i64)> {
        let md = self.file.metadata()?;
        Ok((md.len(), mtime_secs(&md)))
    }

    /// A path that reopens this very inode whatever happens to its name
    /// (`/proc/self/fd/N`), for APIs that want a path and may reopen it on
    /// a retry. Valid while `self` lives.
    pub fn proc_path(&self) -> std::path::PathBuf {
        format!("/proc/self/fd/{}", self.file.as_raw_fd()).into()
    }
}

/// An error `open_source` gives when the entry is not (or no longer) a
/// regular file reached without symlinks.
pub fn is_not_plain_file(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP | libc::ENOTDIR | libc::ENXIO)
    ) || e.kind() == io::ErrorKind::InvalidData
}

/// Opens `root/rel` for reading without following a symlink at any
/// component below `root` (the last one may be a symlink to a file when
/// `follow_last`, i.e. `isAllowSymbolicLink=true`). Refuses anything that
/// is not a regular file with `InvalidData`. Opened non-blocking so that a
/// FIFO swapped in cannot hang the copy.
pub fn open_source(root: &Path, rel: &str, follow_last: bool) -> io::Result<SourceFile> {
    let parts = check_rel_path(rel).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (last, dirs) = parts
        .split_last()
        .expect("check_rel_path gives at least one part");
    let dir = walk_dirs(open_root(root)?, dirs, false)?;
    let mut flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
    if !follow_last {
        flags |= libc::O_NOFOLLOW;
    }
    let file = openat(&dir, &cstr(last)?, flags, 0)?;
    let md = file.metadata()?;
    if !md.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    use std::os::unix::fs::MetadataExt;
    Ok(SourceFile {
        size: md.len(),
        mtime: mtime_secs(&md),
        dev: md.dev(),
        ino: md.ino(),
        mode: md.mode() & 0o777,
        file,
    })
}

/// A file being written under a root: a temporary with a random name in
/// the final directory, renamed into place by [`NewFile::commit`], removed
/// if dropped before that.
#[derive(Debug)]
pub struct NewFile {
    pub file: File,
    dir: File,
    tmp: CString,
    name: CString,
    committed: bool,
}

/// Creates the directories of `root/rel` (without following symlinks) and a
/// new temporary file next to where `rel` will be, with `O_EXCL` and the
/// given permission bits (the umask still applies).
pub fn create_beneath(root: &Path, rel: &str, mode: u32) -> io::Result<NewFile> {
    let parts = check_rel_path(rel).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (last, dirs) = parts
        .split_last()
        .expect("check_rel_path gives at least one part");
    let dir = walk_dirs(open_root(root)?, dirs, true)?;
    let name = cstr(last)?;
    for _ in 0..8 {
        let mut rnd = [0u8; 12];
        getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
        let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        // Short enough for any name limit: the final name can be 255 bytes.
        let tmp = cstr(&format!(".ossimport-{hex}.tmp"))?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        match openat(&dir, &tmp, flags, (mode & 0o777) as libc::mode_t) {
            Ok(file) => {
                return Ok(NewFile {
                    file,
                    dir,
                    tmp,
                    name,
                    committed: false,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "could not pick an unused temporary name",
    ))
}

impl NewFile {
    /// Renames the temporary into its final name (replacing a file there,
    /// never following a symlink: rename replaces the link itself). Returns
    /// the file, open for reading back the inode that now has that name.
    pub fn commit(mut self) -> io::Result<File> {
        // SAFETY: valid descriptor and NUL-terminated names.
        let r = unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                self.tmp.as_ptr(),
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.committed = true;
        self.file.try_clone()
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.committed {
            // SAFETY: valid descriptor and NUL-terminated name.
            unsafe {
                libc::unlinkat(self.dir.as_raw_fd(), self.tmp.as_ptr(), 0);
            }
        }
    }
}

/// Opens `root/rel` for reading as an existing destination file (skip
/// rules, audits), with the same rules as [`open_source`] and no symlink
/// followed at all.
pub fn open_dest(root: &Path, rel: &str) -> io::Result<SourceFile> {
    open_source(root, rel, false)
}

/// Modification time in unix seconds (negative before 1970).
pub fn mtime_secs(md: &std::fs::Metadata) -> i64 {
    match md.modified() {
        Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        },
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn bad_relative_paths_are_refused() {
        for bad in [
            "",
            "/a",
            "a//b",
            "a/./b",
            "a/../b",
            "..",
            ".",
            "a/",
            "x\0y",
            "p/x/../../../x.txt",
        ] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_rel_path("a/b c/日本.txt").unwrap(),
            ["a", "b c", "日本.txt"]
        );
        assert!(check_rel_path("a/..b/c..").is_ok());
    }

    #[test]
    fn symlinks_are_not_followed_at_any_component() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), b"ok").unwrap();
        std::fs::write(d.path().join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("up")).unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("link")).unwrap();

        let mut s = String::new();
        open_source(&root, "sub/f", false)
            .unwrap()
            .file
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "ok");
        let e = open_source(&root, "up/secret", false).unwrap_err();
        assert!(is_not_plain_file(&e), "{e}");
        let e = open_source(&root, "link", false).unwrap_err();
        assert!(is_not_plain_file(&e), "{e}");
        // Allowed only for the last component, and only when asked.
        assert!(open_source(&root, "link", true).is_ok());
        assert!(open_source(&root, "up/secret", true).is_err());
        // A directory is not a file.
        assert!(is_not_plain_file(
            &open_source(&root, "sub", false).unwrap_err()
        ));
    }

    #[test]
    fn new_files_stay_beneath_and_replace_atomically() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("dest");
        std::fs::create_dir_all(&root).unwrap();
        // A symlink planted where a directory would be created is refused.
        std::os::unix::fs::symlink(d.path(), root.join("evil")).unwrap();
        assert!(create_beneath(&root, "evil/x.txt", 0o600).is_err());
        assert!(create_beneath(&root, "../x.txt", 0o600).is_err());

        let mut f = create_beneath(&root, "a/b/c.txt", 0o640).unwrap();
        f.file.write_all(b"hello").unwrap();
        // Nothing under the final name until the commit.
        assert!(!root.join("a/b/c.txt").exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(root.join("a/b/c.txt")).unwrap(), b"hello");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("a/b/c.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077 & !0o040, 0, "mode {mode:o}");

        // A dropped temporary leaves nothing behind.
        drop(create_beneath(&root, "a/b/d.txt", 0o600).unwrap());
        let names: Vec<_> = std::fs::read_dir(root.join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("c.txt")]);
    }
}
