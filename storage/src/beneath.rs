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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// The mode of a directory to create, given the path of its directories
/// from the root (`["a", "b"]` for `root/a/b`); the umask still applies.
pub type DirMode<'a> = &'a dyn Fn(&[&str]) -> u32;

/// Walks the directories of `parts[..len-1]` below `root` without following
/// symlinks; with `create`, missing directories are made with the mode
/// `create` gives for them.
fn walk_dirs(root: File, dirs: &[&str], create: Option<DirMode<'_>>) -> io::Result<File> {
    let mut dir = root;
    for (i, d) in dirs.iter().enumerate() {
        let name = cstr(d)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        dir = match (openat(&dir, &name, flags, 0), create) {
            (Err(e), Some(mode)) if e.kind() == io::ErrorKind::NotFound => {
                let mode = mode(&dirs[..=i]) & 0o7777;
                // SAFETY: valid descriptor and NUL-terminated name.
                let r =
                    unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(e);
                    }
                }
                openat(&dir, &name, flags, 0)?
            }
            (r, _) => r?,
        };
    }
    Ok(dir)
}

/// What says a local file is still the one that was listed: its size,
/// its mtime and ctime with nanoseconds, and its inode. Any difference is
/// a change: a rewrite inside one second moves the nanoseconds, a rewrite
/// whose mtime was put back (`touch -d`, `cp -p`, a restore) moves the
/// ctime, and another file renamed over the name has another inode (and a
/// new ctime).
///
/// The device number is not part of it: it is per host and per boot (NFS
/// and device-mapper numbers are handed out at mount time), so it would
/// make every file on a share "changed" after a reboot or between the
/// scanner's host and an agent's. A file moved to another file system gets
/// a new inode and ctime there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub size: u64,
    /// Nanoseconds since the epoch (negative before 1970).
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl Identity {
    pub fn of(md: &std::fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Identity {
            size: md.len(),
            mtime_ns: ns(md.mtime(), md.mtime_nsec()),
            ctime_ns: ns(md.ctime(), md.ctime_nsec()),
            ino: md.ino(),
        }
    }

    /// Whole seconds of the mtime (what `importSince`, `lastModify` and
    /// the manifest use).
    pub fn mtime_secs(&self) -> i64 {
        self.mtime_ns.div_euclid(1_000_000_000)
    }

    /// Nanoseconds past the whole second of the mtime.
    pub fn mtime_subsec(&self) -> u32 {
        self.mtime_ns.rem_euclid(1_000_000_000) as u32
    }

    /// What the store keeps beside size and whole-second mtime: a 64-bit
    /// CRC-64/XZ of the nanosecond mtime, the ctime and the inode, so a row
    /// grows by one integer. Stable across versions and hosts (it is
    /// compared by agents against the scanner's).
    pub fn tag(&self) -> i64 {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.mtime_ns.to_le_bytes());
        b[8..16].copy_from_slice(&self.ctime_ns.to_le_bytes());
        b[16..].copy_from_slice(&self.ino.to_le_bytes());
        crate::checksum::crc64(&b) as i64
    }

    /// The `ossimport-mtime` value: unix seconds, with nine digits of
    /// nanoseconds when there are any (`1700000000.123456789`); a file
    /// with a whole-second mtime gets the form earlier versions wrote.
    pub fn mtime_meta(&self) -> String {
        match self.mtime_subsec() {
            0 => self.mtime_secs().to_string(),
            n => format!("{}.{n:09}", self.mtime_secs()),
        }
    }

    /// Whether a recorded `ossimport-mtime` (see [`Identity::mtime_meta`],
    /// parsed by [`parse_mtime_meta`]) is this mtime. One without nanoseconds (written by an earlier
    /// version, or by one whose source had none) matches only a source
    /// mtime without nanoseconds either: a sub-second rewrite is never
    /// hidden by the older, coarser record (it is copied again instead).
    pub fn mtime_matches(&self, meta_ns: Option<i64>) -> bool {
        meta_ns == Some(self.mtime_ns)
    }

    /// Describes it for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} bytes, mtime {}, ctime {}.{:09}, inode {}",
            self.size,
            self.mtime_meta(),
            self.ctime_ns.div_euclid(1_000_000_000),
            self.ctime_ns.rem_euclid(1_000_000_000),
            self.ino
        )
    }
}

/// Parses an `ossimport-mtime` value into nanoseconds: `SECS` or
/// `SECS.NNNNNNNNN` (exactly nine digits).
pub fn parse_mtime_meta(meta: &str) -> Option<i64> {
    let (secs, frac) = match meta.split_once('.') {
        Some((s, f)) if f.len() == 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            (s, f.parse::<i64>().ok()?)
        }
        Some(_) => return None,
        None => (meta, 0),
    };
    secs.parse::<i64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(frac)
}

/// What `open_source` found.
#[derive(Debug)]
pub struct SourceFile {
    pub file: File,
    /// Size, nanosecond mtime and ctime, inode, when it was opened.
    pub ident: Identity,
    pub dev: u64,
    /// Permission bits (no set-id or sticky bits).
    pub mode: u32,
}

impl SourceFile {
    /// Its size when it was opened.
    pub fn size(&self) -> u64 {
        self.ident.size
    }

    /// Its mtime in whole unix seconds when it was opened.
    pub fn mtime(&self) -> i64 {
        self.ident.mtime_secs()
    }

    /// The identity of the open file now (see [`Identity`]).
    pub fn restat(&self) -> io::Result<Identity> {
        Ok(Identity::of(&self.file.metadata()?))
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
    open_source_by(
        root,
        rel,
        follow_last,
        !OPENAT2_MISSING.load(Ordering::Relaxed),
    )
}

/// Set once `openat2` is found missing (Linux before 5.6) or refused (a
/// sandbox's seccomp filter): the walk one directory at a time is used.
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// `openat2(dir, rel)` resolving only beneath `dir` and following no
/// symlink at any component: one call where [`walk_dirs`] makes one per
/// directory, with the same refusals (`ELOOP` for a symlink). `None` where
/// the kernel has no `openat2`.
fn openat2_beneath(dir: &File, rel: &CString, flags: libc::c_int) -> Option<io::Result<File>> {
    // SAFETY: an all-zero `open_how` is valid (no flags, no mode).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: a live descriptor, a NUL-terminated path, and `how` with its
    // size, as openat2(2) takes them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        // No such call, or one a sandbox refuses: never a file's answer
        // (a file's permissions give EACCES).
        if matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS | libc::EPERM | libc::E2BIG)
        ) {
            OPENAT2_MISSING.store(true, Ordering::Relaxed);
            return None;
        }
        return Some(Err(e));
    }
    // SAFETY: `fd` was just returned by openat2 and is owned by no one else.
    Some(Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })))
}

fn open_source_by(
    root: &Path,
    rel: &str,
    follow_last: bool,
    with_openat2: bool,
) -> io::Result<SourceFile> {
    let parts = check_rel_path(rel).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (last, dirs) = parts
        .split_last()
        .expect("check_rel_path gives at least one part");
    let root = open_root(root)?;
    let mut flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
    if !follow_last {
        flags |= libc::O_NOFOLLOW;
    }
    // Beneath the root in one call, where a symlink may be nowhere.
    let fast = match (with_openat2 && !follow_last, cstr(rel)) {
        (true, Ok(path)) => openat2_beneath(&root, &path, flags),
        _ => None,
    };
    let file = match fast {
        Some(opened) => opened?,
        None => {
            let dir = walk_dirs(root, dirs, None)?;
            openat(&dir, &cstr(last)?, flags, 0)?
        }
    };
    let md = file.metadata()?;
    if !md.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    use std::os::unix::fs::MetadataExt;
    Ok(SourceFile {
        ident: Identity::of(&md),
        dev: md.dev(),
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
    /// What had the final name when the temporary was made.
    was: Option<Occupant>,
    committed: bool,
}

/// The file under a name, as far as replacing it goes: another file put
/// there (renamed in, or rewritten) has another inode or a later ctime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Occupant {
    ino: u64,
    ctime_ns: i64,
}

/// What is under `name` in `dir` now, without following a symlink.
fn occupant(dir: &File, name: &CString) -> io::Result<Option<Occupant>> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name and a live out-pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::NotFound {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(Occupant {
        ino: st.st_ino,
        ctime_ns: st.st_ctime.saturating_mul(1_000_000_000) + st.st_ctime_nsec,
    }))
}

/// The error [`NewFile::commit`] gives when the final name was taken or
/// replaced by someone else while the copy ran.
pub fn is_replaced_meanwhile(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AlreadyExists && e.raw_os_error().is_none()
}

fn replaced_meanwhile() -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        "another file was put under this name while the copy ran (another job or process); it is left as it is",
    )
}

/// Creates the directories of `root/rel` (without following symlinks; each
/// missing one with the mode `dir_mode` gives) and a new temporary file
/// next to where `rel` will be, with `O_EXCL` and the given permission bits
/// (the umask still applies).
pub fn create_beneath(
    root: &Path,
    rel: &str,
    mode: u32,
    dir_mode: DirMode<'_>,
) -> io::Result<NewFile> {
    let parts = check_rel_path(rel).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (last, dirs) = parts
        .split_last()
        .expect("check_rel_path gives at least one part");
    let dir = walk_dirs(open_root(root)?, dirs, Some(dir_mode))?;
    let name = cstr(last)?;
    let was = occupant(&dir, &name)?;
    for _ in 0..8 {
        let mut rnd = [0u8; 12];
        getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
        let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        // Short enough for any name limit: the final name can be 255 bytes.
        let tmp = cstr(&format!("{TEMP_PREFIX}{hex}{TEMP_SUFFIX}"))?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        match openat(&dir, &tmp, flags, (mode & 0o777) as libc::mode_t) {
            Ok(file) => {
                return Ok(NewFile {
                    file,
                    dir,
                    tmp,
                    name,
                    was,
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

/// Temporary files are named `.ossimport-<24 hex digits>.tmp`; listings
/// never take such a name for an object (see [`is_temp_name`]).
pub const TEMP_PREFIX: &str = ".ossimport-";
pub const TEMP_SUFFIX: &str = ".tmp";

/// Whether a file name is one of our temporaries (a copy in flight, or
/// left by a killed one): never listed as a source object.
pub fn is_temp_name(name: &[u8]) -> bool {
    name.len() == TEMP_PREFIX.len() + 24 + TEMP_SUFFIX.len()
        && name.starts_with(TEMP_PREFIX.as_bytes())
        && name.ends_with(TEMP_SUFFIX.as_bytes())
        && name[TEMP_PREFIX.len()..TEMP_PREFIX.len() + 24]
            .iter()
            .all(u8::is_ascii_hexdigit)
}

impl NewFile {
    /// Renames the temporary into its final name (replacing a file there,
    /// never following a symlink: rename replaces the link itself), but
    /// only if the name still holds what it held when the temporary was
    /// made: a copy overtaken by another (a later job's, after `clean` and
    /// `submit`) never replaces it. Where nothing was, the rename refuses
    /// to replace (`RENAME_NOREPLACE`); otherwise the occupant is compared
    /// just before the rename. Returns the file, open for reading back the
    /// inode that now has that name.
    pub fn commit(mut self) -> io::Result<File> {
        let rename = |flags: libc::c_uint| {
            // SAFETY: valid descriptors and NUL-terminated names.
            let r = unsafe {
                libc::renameat2(
                    self.dir.as_raw_fd(),
                    self.tmp.as_ptr(),
                    self.dir.as_raw_fd(),
                    self.name.as_ptr(),
                    flags,
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        let noreplace = match self.was {
            None => match rename(libc::RENAME_NOREPLACE) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(replaced_meanwhile());
                }
                // File systems without the flag (some network ones): the
                // same check as for a replacement, then a plain rename.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
                Err(e) => return Err(e),
            },
            Some(_) => false,
        };
        if !noreplace {
            if occupant(&self.dir, &self.name)? != self.was {
                return Err(replaced_meanwhile());
            }
            rename(0)?;
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

/// How two directory trees overlap, judged by device and inode (so bind
/// mounts, symlinks and `..` in the names do not hide it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    Same,
    /// The first lies inside the second.
    FirstInside,
    /// The second lies inside the first.
    SecondInside,
}

/// The device and inode of `p` and of every directory above it, from `p`
/// (or, when `p` does not exist yet, its nearest existing ancestor) up to
/// `/`, walked with `..` from the opened directory. The flag says whether
/// `p` itself exists.
fn ancestry(p: &Path) -> io::Result<(Vec<(u64, u64)>, bool)> {
    use std::os::unix::fs::MetadataExt;
    let mut at = p;
    let mut exists = true;
    let mut dir = loop {
        match open_root(at) {
            Ok(f) => break f,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound) => {
                exists = false;
                at = match at.parent() {
                    Some(up) => up,
                    None => return Err(e),
                };
            }
            Err(e) => return Err(e),
        }
    };
    let dotdot = cstr("..")?;
    let mut chain = Vec::new();
    loop {
        let md = dir.metadata()?;
        let id = (md.dev(), md.ino());
        if chain.last() == Some(&id) || chain.len() > 4096 {
            break;
        }
        chain.push(id);
        dir = openat(&dir, &dotdot, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    }
    Ok((chain, exists))
}

/// Whether directory trees `a` and `b` overlap (one is the other, or lies
/// inside it). A directory that does not exist yet is placed where its
/// nearest existing ancestor is.
pub fn dir_overlap(a: &Path, b: &Path) -> io::Result<Option<Overlap>> {
    let (ca, a_exists) = ancestry(a)?;
    let (cb, b_exists) = ancestry(b)?;
    if a_exists && b_exists && ca[0] == cb[0] {
        return Ok(Some(Overlap::Same));
    }
    if b_exists && ca.contains(&cb[0]) {
        return Ok(Some(Overlap::FirstInside));
    }
    if a_exists && cb.contains(&ca[0]) {
        return Ok(Some(Overlap::SecondInside));
    }
    Ok(None)
}

/// Whether the file system at `dir` (or its nearest existing ancestor)
/// tells names apart that differ only in case: `Some(true)` when it does
/// not (vfat, exFAT, SMB shares, ext4/tmpfs `casefold` directories).
/// Judged from an entry already there (its name with the case of its
/// letters swapped leads to the same inode, or to nothing); where there is
/// none, by creating one of our temporaries and removing it at once, if
/// `may_write`, else `None` (not known).
pub fn case_insensitive(dir: &Path, may_write: bool) -> io::Result<Option<bool>> {
    use std::os::unix::fs::MetadataExt;
    let mut at = dir;
    while !at.exists() {
        at = match at.parent() {
            Some(up) => up,
            None => return Ok(None),
        };
    }
    let swapped = |n: &str| -> String {
        n.chars()
            .map(|c| {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let same = |a: &Path, b: &Path| -> io::Result<bool> {
        let ma = std::fs::symlink_metadata(a)?;
        match std::fs::symlink_metadata(b) {
            Ok(mb) => Ok(ma.dev() == mb.dev() && ma.ino() == mb.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    };
    for entry in std::fs::read_dir(at)?.take(64) {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let other = swapped(name);
        if other != name {
            return Ok(Some(same(&at.join(name), &at.join(other))?));
        }
    }
    if !may_write {
        return Ok(None);
    }
    let probe = create_beneath(at, "probe", 0o600, &|_| 0o700)?;
    let tmp = String::from_utf8_lossy(probe.tmp.to_bytes()).into_owned();
    let answer = same(&at.join(&tmp), &at.join(swapped(&tmp)));
    drop(probe);
    answer.map(Some)
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
        // With openat2 (this kernel's, where it has one) and with the walk
        // a directory at a time (older kernels, sandboxes).
        for fast in [true, false] {
            not_followed(|root, rel, follow| open_source_by(root, rel, follow, fast));
        }
    }

    fn not_followed(open_source: impl Fn(&Path, &str, bool) -> io::Result<SourceFile>) {
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
        // A symlink deeper down, to a directory inside the root.
        std::fs::create_dir_all(root.join("sub/deep")).unwrap();
        std::fs::write(root.join("sub/deep/g"), b"g").unwrap();
        std::os::unix::fs::symlink(root.join("sub/deep"), root.join("sub/alias")).unwrap();
        assert!(open_source(&root, "sub/deep/g", false).is_ok());
        let e = open_source(&root, "sub/alias/g", false).unwrap_err();
        assert!(is_not_plain_file(&e), "{e}");
        let e = open_source(&root, "sub/missing", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
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
        let dirs = |_: &[&str]| 0o700;
        assert!(create_beneath(&root, "evil/x.txt", 0o600, &dirs).is_err());
        assert!(create_beneath(&root, "../x.txt", 0o600, &dirs).is_err());

        let mut f = create_beneath(&root, "a/b/c.txt", 0o640, &dirs).unwrap();
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
        drop(create_beneath(&root, "a/b/d.txt", 0o600, &dirs).unwrap());
        let names: Vec<_> = std::fs::read_dir(root.join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("c.txt")]);
    }

    #[test]
    fn a_copy_overtaken_by_another_never_replaces_it() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let dirs = |_: &[&str]| 0o700;
        // Nothing there when the slow copy starts; another writer lands first.
        let slow = create_beneath(root, "x", 0o600, &dirs).unwrap();
        let mut fast = create_beneath(root, "x", 0o600, &dirs).unwrap();
        fast.file.write_all(b"new").unwrap();
        fast.commit().unwrap();
        let e = slow.commit().unwrap_err();
        assert!(is_replaced_meanwhile(&e), "{e}");
        assert_eq!(std::fs::read(root.join("x")).unwrap(), b"new");
        // Replacing what was there when it started is fine; a file renamed
        // over it meanwhile is not replaced.
        let mut again = create_beneath(root, "x", 0o600, &dirs).unwrap();
        again.file.write_all(b"again").unwrap();
        again.commit().unwrap();
        let slow = create_beneath(root, "x", 0o600, &dirs).unwrap();
        std::fs::write(root.join("other"), b"other").unwrap();
        std::fs::rename(root.join("other"), root.join("x")).unwrap();
        let e = slow.commit().unwrap_err();
        assert!(is_replaced_meanwhile(&e), "{e}");
        assert_eq!(std::fs::read(root.join("x")).unwrap(), b"other");
        // No temporaries are left behind.
        let mut names: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, [std::ffi::OsString::from("x")]);
    }

    #[test]
    fn directories_get_the_mode_asked_for_and_temporaries_are_known() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let modes = |dirs: &[&str]| if dirs.len() == 1 { 0o700 } else { 0o750 };
        let f = create_beneath(d.path(), "private/pub/f", 0o600, &modes).unwrap();
        let tmp = f.tmp.to_bytes().to_vec();
        assert!(is_temp_name(&tmp), "{tmp:?}");
        f.commit().unwrap();
        let mode = |p: &str| {
            std::fs::metadata(d.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("private"), 0o700);
        // The umask applies (0o022 or stricter in tests).
        assert_eq!(mode("private/pub") & !0o750, 0);
        assert!(!is_temp_name(b".ossimport-zz.tmp"));
        assert!(!is_temp_name(b"report.tmp"));
    }

    #[test]
    fn overlapping_trees_are_found_through_symlinks_and_missing_dirs() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::create_dir_all(d.path().join("other")).unwrap();
        std::os::unix::fs::symlink(&src, d.path().join("alias")).unwrap();
        let o = |a: &Path, b: &Path| dir_overlap(a, b).unwrap();
        assert_eq!(o(&src, &src.join("sub")), Some(Overlap::SecondInside));
        assert_eq!(o(&src.join("sub"), &src), Some(Overlap::FirstInside));
        // Through a symlink, and into a directory not made yet.
        assert_eq!(
            o(&src, &d.path().join("alias/backup/new")),
            Some(Overlap::SecondInside)
        );
        assert_eq!(o(&src, &d.path().join("alias")), Some(Overlap::Same));
        assert_eq!(o(&src, &d.path().join("other/x")), None);
        assert_eq!(o(&src, &d.path().join("srcx")), None);
    }

    #[test]
    fn case_sensitivity_is_probed_without_leaving_anything() {
        let d = tempfile::tempdir().unwrap();
        // Empty: not known without writing; with a probe, this file system
        // (the tests' tmpfs or ext4) tells case apart.
        assert_eq!(case_insensitive(d.path(), false).unwrap(), None);
        assert_eq!(case_insensitive(d.path(), true).unwrap(), Some(false));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        std::fs::write(d.path().join("Photo.JPG"), b"x").unwrap();
        assert_eq!(case_insensitive(d.path(), false).unwrap(), Some(false));
        // A directory not made yet is judged by its nearest ancestor.
        assert_eq!(
            case_insensitive(&d.path().join("a/b"), false).unwrap(),
            Some(false)
        );
    }

    #[test]
    fn identity_sees_nanoseconds_and_the_ctime() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        f.set_modified(t).unwrap();
        let a = Identity::of(&std::fs::metadata(&p).unwrap());
        assert_eq!((a.mtime_secs(), a.mtime_subsec()), (1_700_000_000, 5));
        assert_eq!(a.mtime_meta(), "1700000000.000000005");
        assert!(a.mtime_matches(parse_mtime_meta("1700000000.000000005")));
        // A whole-second record (earlier versions) does not match nanoseconds.
        assert!(!a.mtime_matches(parse_mtime_meta("1700000000")));
        f.set_modified(t + std::time::Duration::from_nanos(1))
            .unwrap();
        let b = Identity::of(&std::fs::metadata(&p).unwrap());
        assert_ne!(a.tag(), b.tag());
        // Put back: same mtime, but the ctime moved.
        std::thread::sleep(std::time::Duration::from_millis(20));
        f.set_modified(t).unwrap();
        let c = Identity::of(&std::fs::metadata(&p).unwrap());
        assert_eq!(c.mtime_ns, a.mtime_ns);
        assert_ne!(c.ctime_ns, a.ctime_ns);
        assert_ne!(c.tag(), a.tag());
        assert_eq!(
            parse_mtime_meta("1700000000"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_mtime_meta("-1"), Some(-1_000_000_000));
        for bad in ["", "1.5", "x", "1.0000000001", "1.00000000a"] {
            assert_eq!(parse_mtime_meta(bad), None, "{bad}");
        }
    }
}
