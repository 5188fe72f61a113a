//! Objects from a local directory: opened once beneath the source root
//! without following symlinks, checked against what the scan listed,
//! hashed as they are read, and watched while a long read lasts, so a file
//! rewritten, truncated or swapped mid-copy is never reported verified.
//!
//! Small files are read into memory once and PUT with `Content-MD5`;
//! larger single-PUT files are hashed in a first pass and streamed; files
//! over the multipart threshold go part by part, resumable from the parts
//! an earlier run recorded.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use proto::job::{
    ErrorCode, Event, Evidence, MultipartResume, ObjectSpec, PartRecord, Proof, SkipMode,
    VerifyMode,
};
use storage::beneath::{Identity, SourceFile};
use storage::checksum::{self, Digest};
use storage::s3::{ErrorKind, META_IDENT, META_MD5, META_MTIME, ObjectInfo, S3Store};
use storage::watch::{Change, FileWatch};
use tokio::sync::{SemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use crate::dest::{
    PartBody, complete_parts, confirm_s3, dest_err, dest_name, needs_md5, open_dest, part_size_for,
    parts_sent, recorded_nvme, send_missing_parts,
};
use crate::step::{Done, Fail, Skipped, Step, blocking};
use crate::verify::{Answer, Checks, Sent, Verified};
use crate::worker::{Dest, Executor, Source};

/// Files up to this size are read into memory once and PUT from there;
/// larger single-PUT files are hashed in a first pass and streamed.
const IN_MEMORY_MAX: u64 = 8 << 20;

fn source_path(ex: &Executor, rel: &str) -> PathBuf {
    ex.source_root.join(rel)
}

fn source_err(e: std::io::Error) -> Fail {
    if storage::beneath::is_not_plain_file(&e) {
        return Fail(
            ErrorCode::SourceChanged,
            format!(
                "source is no longer a regular file reached without symbolic links (replaced by a symlink, directory or device since it was listed): {e}"
            ),
        );
    }
    match e.kind() {
        std::io::ErrorKind::NotFound => Fail(
            ErrorCode::SourceDeleted,
            "source file no longer exists".into(),
        ),
        std::io::ErrorKind::UnexpectedEof => Fail(
            ErrorCode::SizeNotMatch,
            "source file became shorter while it was read".into(),
        ),
        _ => Fail(
            ErrorCode::SourceUnreadable,
            format!("cannot read source file: {e}"),
        ),
    }
}

/// Opens exactly the scanned file (see `storage::beneath`) and checks it is
/// the one the scan recorded: same size, mtime and identity tag (nanosecond
/// mtime, ctime, inode), else `SOURCE_CHANGED`.
/// Every later read goes through the returned descriptor.
async fn open_source(ex: &Executor, obj: &ObjectSpec) -> Step<Arc<SourceFile>> {
    let open = opener(ex)?;
    let rel = obj.rel_path.clone();
    let (sf, refused) = blocking(move || open(&rel)).await.map_err(source_err)?;
    checked(obj, sf, refused)
}

/// A small file opened, read whole, re-statted and hashed in one trip to
/// the blocking pool (each trip is two thread wake-ups, which for a file
/// of a few KiB cost more than the read): what [`open_source`] checks, and
/// then what [`single_put`] would have read.
async fn open_and_read(
    ex: &Executor,
    obj: &ObjectSpec,
    md5: bool,
) -> Step<(Arc<SourceFile>, Read)> {
    let open = opener(ex)?;
    let (rel, size) = (obj.rel_path.clone(), obj.size);
    let (sf, refused, read) = blocking(move || {
        let (sf, refused) = open(&rel)?;
        // Never more than was listed: a file grown since fails the check
        // below, and is not read whole first.
        let read = match refused {
            None if sf.size() == size => Some(read_whole(&sf, size, md5)?),
            _ => None,
        };
        Ok((sf, refused, read))
    })
    .await
    .map_err(source_err)?;
    let sf = checked(obj, sf, refused)?;
    // The checks passing mean it was read (same size, not refused).
    let read = read.ok_or_else(|| {
        Fail(
            ErrorCode::SourceChanged,
            "source file changed while it was opened".into(),
        )
    })?;
    Ok((sf, read))
}

/// The memory a file read whole takes, from the executor's budget.
async fn memory_for(ex: &Executor, size: u64) -> Step<SemaphorePermit<'_>> {
    let mib = (size.div_ceil(1 << 20) as u32).clamp(1, ex.memory_mib);
    ex.memory
        .acquire_many(mib)
        .await
        .map_err(|_| Fail(ErrorCode::DestError, "shutting down".into()))
}

/// A small file's bytes, its identity after they were read, their digest.
type Read = (Vec<u8>, Identity, Digest);

fn read_whole(s: &SourceFile, size: u64, md5: bool) -> std::io::Result<Read> {
    let data = storage::local::read_range(&s.file, 0, size as usize)?;
    let after = s.restat()?;
    let digest = checksum::digest_with(&data, md5);
    Ok((data, after, digest))
}

/// What opens a listed path beneath the job's root, in the blocking pool:
/// the file, and why the job may not read it, if it may not.
type Opener = Box<dyn FnOnce(&str) -> std::io::Result<(SourceFile, Option<String>)> + Send>;

fn opener(ex: &Executor) -> Step<Opener> {
    let Source::Local {
        root,
        follow_symlinks,
    } = &ex.source
    else {
        return Err(Fail(
            ErrorCode::SourceUnreadable,
            "not a local source".into(),
        ));
    };
    let (root, follow) = (root.clone(), *follow_symlinks);
    let confine = ex.confine.clone();
    Ok(Box::new(move |rel: &str| {
        let sf = storage::beneath::open_source(&root, rel, follow)?;
        let refused = confine.and_then(|c| c(&root.join(rel), &sf).err());
        Ok((sf, refused))
    }))
}

fn checked(obj: &ObjectSpec, sf: SourceFile, refused: Option<String>) -> Step<Arc<SourceFile>> {
    if let Some(why) = refused {
        return Err(Fail(
            ErrorCode::SourceUnreadable,
            format!("not read for this job: {why}"),
        ));
    }
    if sf.size() != obj.size || sf.mtime() != obj.mtime {
        return Err(Fail(
            ErrorCode::SourceChanged,
            format!(
                "source file changed since it was listed ({} bytes, mtime {} then; {} bytes, mtime {} now); the job copies what it listed, so clean and submit it again to copy the new version",
                obj.size,
                obj.mtime,
                sf.size(),
                sf.mtime()
            ),
        ));
    }
    if obj.ident.is_some_and(|t| t != sf.ident.tag()) {
        return Err(Fail(
            ErrorCode::SourceChanged,
            format!(
                "source file changed since it was listed: same size and mtime second, but its nanoseconds, ctime or inode differ (now {}); the job copies what it listed, so a later pass or a new job copies the new version",
                sf.ident.describe()
            ),
        ));
    }
    Ok(Arc::new(sf))
}

/// Fails unless the open source still has the identity (size, nanosecond
/// mtime and ctime) it had before we started reading it.
async fn check_unchanged(src: &Arc<SourceFile>, before: Identity) -> Step<()> {
    let s = Arc::clone(src);
    let after = blocking(move || s.restat()).await.map_err(source_err)?;
    unchanged(before, after)
}

fn unchanged(before: Identity, after: Identity) -> Step<()> {
    if after.size != before.size {
        return Err(Fail(
            ErrorCode::SizeNotMatch,
            format!(
                "source file size changed from {} to {} bytes while it was copied",
                before.size, after.size
            ),
        ));
    }
    if after != before {
        return Err(Fail(
            ErrorCode::SourceChanged,
            format!(
                "source file was modified while it was copied ({} before, {} after)",
                before.describe(),
                after.describe()
            ),
        ));
    }
    Ok(())
}

/// One local file to its destination: opened once beneath the root, then
/// for a bucket the skip rule and a single PUT or a multipart upload, for a
/// directory a verified copy. Long because every path shares that open file
/// and its identity, which must not be reopened.
pub(crate) async fn import(
    ex: &Arc<Executor>,
    obj: &ObjectSpec,
    events: &mpsc::Sender<Event>,
    lease: &CancellationToken,
) -> Step<Done> {
    let key = dest_name(&ex.dest, &obj.rel_path)?;
    let path = source_path(ex, &obj.rel_path);
    let (src, pre) = match &ex.dest {
        // A small file for a single PUT, with nothing to look up first, is
        // opened and read in one trip. Not when its attributes are kept:
        // they are taken before the read, which moves the atime.
        Dest::S3 { store, .. }
            if ex.spec.skip == SkipMode::None
                && !ex.spec.preserve_file_attrs
                && obj.size <= IN_MEMORY_MAX
                && obj.size <= ex.spec.multipart_threshold =>
        {
            let mem = memory_for(ex, obj.size).await?;
            let md5 = needs_md5(ex, store).await;
            let (src, read) = open_and_read(ex, obj, md5).await?;
            (src, Some((read, mem)))
        }
        _ => (open_source(ex, obj).await?, None),
    };
    let before = src.ident;
    let size = before.size;
    let mode = ex.verify_mode(src.mtime());
    match &ex.dest {
        Dest::S3 { store, .. } => {
            if let Some(skip) = check_skip_s3(ex, store, &key, &src).await? {
                return Ok(Done::Skipped(skip));
            }
            let mut meta = vec![
                (META_MTIME, before.mtime_meta()),
                (META_IDENT, before.tag().to_string()),
            ];
            if ex.spec.preserve_file_attrs {
                let md = src.file.metadata().map_err(source_err)?;
                meta.extend(storage::meta::file_attrs(&md, before.mtime_meta()));
            }
            let is_multipart = size > ex.spec.multipart_threshold;
            // Files read more than once or over a long time are watched, so
            // a rewrite that leaves size and mtime as they were is caught:
            // every multipart upload, and single PUTs streamed from disk.
            let watch = (is_multipart || size > IN_MEMORY_MAX)
                .then(|| FileWatch::new(&path).ok())
                .flatten();
            let sent = if is_multipart {
                multipart(ex, store, &key, &src, obj, &meta, events, watch.as_ref()).await
            } else {
                single_put(ex, store, &key, &src, &mut meta, before, pre).await
            };
            let checks = match sent {
                Ok(checks) => checks,
                Err(f) => {
                    let f = explained(&src, before, watch.as_ref(), f).await;
                    return Err(f.naming(&path));
                }
            };
            watched(
                watch.as_ref(),
                " (the destination holds what was read; run again to copy the new version)",
            )?;
            if is_multipart || size > IN_MEMORY_MAX {
                // Small files were re-checked inside the read itself.
                check_unchanged(&src, before).await?;
            }
            // A single PUT whose ETag equals the MD5 we computed and sent as
            // Content-MD5 is proven by its answer: the store hashed what it
            // stored, and the MD5 covers every byte. Anything less gets a
            // HEAD, and a read-back where even that proves nothing.
            let v = confirm_s3(store, &key, checks, mode, None).await?;
            // What was written besides the bytes: the Content-Type from the
            // name, and the file's attributes when they are kept.
            let written = storage::meta::ObjectHeaders {
                user: meta
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                ..Default::default()
            };
            Ok(v.read_from(before.tag())
                .with_metadata(written.digest(&key))
                .into())
        }
        Dest::Local { dir, .. } => {
            if ex.spec.skip != SkipMode::None
                && let Ok(existing) = open_dest(dir, &key).await
            {
                let same = match ex.spec.skip {
                    SkipMode::Size => existing.size() == size,
                    SkipMode::SizeMtime => {
                        existing.size() == size && existing.ident.mtime_ns == before.mtime_ns
                    }
                    _ => {
                        existing.size() == size
                            && hash_open(&existing).await? == hash_open(&src).await?
                    }
                };
                if same {
                    return Ok(Done::Skipped(Skipped {
                        etag: None,
                        by: Evidence::of(&[Proof::Size]),
                    }));
                }
            }
            // Never more permissive than the source file; directories as
            // the source's (the umask applies to both).
            let (root, name, s, mode_bits) = (dir.clone(), key.clone(), Arc::clone(&src), src.mode);
            let src_root = ex.source_root.clone();
            let dest_fail = |e: std::io::Error| {
                Fail(
                    ErrorCode::DestError,
                    format!("writing {key} under {}: {e}", dir.display()),
                )
            };
            let src_dirs = source_dirs(&obj.rel_path, &key);
            let out = blocking(move || {
                let dir_mode = |made: &[&str]| source_dir_mode(&src_root, &src_dirs, made.len());
                storage::beneath::create_beneath(&root, &name, mode_bits, &dir_mode)
            })
            .await
            .map_err(dest_fail)?;
            let out = Arc::new(out);
            let (o, bw) = (Arc::clone(&out), Arc::clone(&ex.bandwidth));
            let digest = blocking(move || {
                storage::local::copy_into(&s.file, &o, before.mtime_ns, Some(&*bw))
            })
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => source_err(e),
                _ => dest_fail(e),
            })?;
            ex.add_progress(digest.len);
            if digest.len != size {
                return Err(Fail(
                    ErrorCode::SizeNotMatch,
                    format!(
                        "listed with {size} bytes but {} bytes were read",
                        digest.len
                    ),
                ));
            }
            check_unchanged(&src, before).await?;
            if ex.spec.preserve_file_attrs {
                let (o, s) = (Arc::clone(&out), Arc::clone(&src));
                blocking(move || storage::local::keep_attrs(&s.file, s.mode, &o.file))
                    .await
                    .map_err(dest_fail)?;
            }
            // The temporary is checked before it replaces anything.
            let mut checks = Checks::new(Sent::whole(digest));
            let dsize = out.file.metadata().map_err(dest_fail)?.len();
            checks.answer(Answer::size_only(dsize))?;
            if mode != VerifyMode::Size {
                let o = Arc::clone(&out);
                let back = blocking(move || storage::local::hash_open(&o.file))
                    .await
                    .map_err(dest_fail)?;
                checks.read_back(&back)?;
            }
            let verified = checks.finish(mode)?;
            let out = Arc::into_inner(out).expect("the blocking copies are done");
            commit_local(out, lease, Some((&src, before)))
                .await
                .map_err(|e| match e {
                    Commit::Io(e) => dest_fail(e),
                    Commit::Fail(f) => f,
                })?;
            Ok(verified.read_from(before.tag()).into())
        }
    }
}

/// Why a checked temporary was not renamed into place.
pub(crate) enum Commit {
    Io(std::io::Error),
    Fail(Fail),
}

/// Renames a checked temporary into place, if and only if, just before the
/// rename, the task is still ours (its lease not taken away by `pause`,
/// `clean`, a lost lease or a shutdown), the source (local sources) still
/// has the identity it was read with, and the destination name holds what
/// it held when the copy started (see `NewFile::commit`). Otherwise the
/// temporary is removed and nothing is replaced.
pub(crate) async fn commit_local(
    out: storage::beneath::NewFile,
    lease: &CancellationToken,
    src: Option<(&Arc<SourceFile>, Identity)>,
) -> Result<(), Commit> {
    let lease = lease.clone();
    let src = src.map(|(s, before)| (Arc::clone(s), before));
    let r = blocking(move || {
        if let Some((s, before)) = &src {
            let before = *before;
            let after = s.restat()?;
            if let Err(f) = unchanged(before, after) {
                return Ok(Err(Commit::Fail(f)));
            }
        }
        if lease.is_cancelled() {
            return Ok(Err(Commit::Fail(Fail(
                ErrorCode::DestError,
                "the task was taken away (pause, clean, lost lease or shutdown) before the copy was put in place; nothing was replaced".into(),
            ))));
        }
        match out.commit() {
            Ok(_) => Ok(Ok(())),
            Err(e) if storage::beneath::is_replaced_meanwhile(&e) => Ok(Err(Commit::Fail(Fail(
                ErrorCode::DestError,
                format!("not put in place: {e}"),
            )))),
            Err(e) => Ok(Err(Commit::Io(e))),
        }
    })
    .await;
    match r {
        Ok(r) => r,
        Err(e) => Err(Commit::Io(e)),
    }
}

/// The source directories of `rel_path` that the destination directories
/// of `key` correspond to, innermost last: `key` may have a `destPrefix`
/// in front, whose directories have no source of their own.
fn source_dirs(rel_path: &str, key: &str) -> (usize, Vec<String>) {
    let src: Vec<String> = rel_path.split('/').map(str::to_owned).collect();
    let src_dirs = src[..src.len().saturating_sub(1)].to_vec();
    let key_dirs = key.split('/').count().saturating_sub(1);
    (key_dirs.saturating_sub(src_dirs.len()), src_dirs)
}

/// The mode for the `depth`-th destination directory (1-based): that of
/// the source directory it mirrors, or 0700 for the directories of the
/// destination prefix and where the source cannot be read.
fn source_dir_mode(root: &std::path::Path, dirs: &(usize, Vec<String>), depth: usize) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let (prefix_dirs, src) = dirs;
    if depth <= *prefix_dirs {
        return 0o700;
    }
    let mut p = root.to_path_buf();
    for d in &src[..(depth - prefix_dirs).min(src.len())] {
        p.push(d);
    }
    std::fs::symlink_metadata(&p)
        .ok()
        .filter(|m| m.is_dir())
        .map_or(0o700, |m| m.permissions().mode() & 0o777)
}

/// The failure of an upload, or the source's change that explains it: a
/// body that ended early because the file shrank fails the request, and
/// the store's answer to bytes that changed under it is a refusal, but
/// what a person acts on is the file's change, named.
async fn explained(
    src: &Arc<SourceFile>,
    before: Identity,
    watch: Option<&FileWatch>,
    failed: Fail,
) -> Fail {
    // A change already named (the watcher's, or a store's refusal of the
    // bytes) stands as it is.
    if !matches!(failed.0, ErrorCode::DestError | ErrorCode::SourceUnreadable) {
        return failed;
    }
    if let Err(changed) = check_unchanged(src, before).await {
        return changed;
    }
    match watched(watch, "") {
        Err(changed) => changed,
        Ok(()) => failed,
    }
}

/// Fails if the watcher saw the source change while it was being read.
fn watched(watch: Option<&FileWatch>, note: &str) -> Step<()> {
    match watch.and_then(FileWatch::change) {
        None => Ok(()),
        Some(Change::Modified) => Err(Fail(
            ErrorCode::SourceChanged,
            format!("source file was modified while it was being uploaded{note}"),
        )),
        Some(Change::Removed) => Err(Fail(
            ErrorCode::SourceDeleted,
            format!("source file was deleted or renamed while it was being uploaded{note}"),
        )),
    }
}

async fn hash_open(src: &Arc<SourceFile>) -> Step<Digest> {
    let s = Arc::clone(src);
    blocking(move || storage::local::hash_open(&s.file))
        .await
        .map_err(source_err)
}

/// Applies the skip rule; `Some` when the destination already holds the object.
async fn check_skip_s3(
    ex: &Executor,
    store: &S3Store,
    key: &str,
    src: &Arc<SourceFile>,
) -> Step<Option<Skipped>> {
    let (size, ident) = (src.ident.size, src.ident);
    if ex.spec.skip == SkipMode::None {
        return Ok(None);
    }
    let info = match store.head(key).await {
        Ok(info) => info,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(dest_err(e)),
    };
    let (same, by) = match ex.spec.skip {
        SkipMode::None => (false, Evidence::of(&[Proof::Size])),
        SkipMode::Size => (info.size == size, Evidence::of(&[Proof::Size])),
        // The mtime to the nanosecond, and the identity tag where the
        // object has one: a rewrite with its mtime put back is copied.
        SkipMode::SizeMtime => (
            info.size == size
                && ident.mtime_matches(info.mtime_meta)
                && info.ident_meta.is_none_or(|t| t == ident.tag()),
            Evidence::of(&[Proof::Size, Proof::Mtime]),
        ),
        SkipMode::Checksum => {
            let same = info.size == size && {
                let mut checks = source_checks(ex, src, &info).await?;
                checks.answer((&info).into()).is_ok() && checks.proven(VerifyMode::Checksum)
            };
            (same, Evidence::of(&[Proof::Size, Proof::Checksum]))
        }
    };
    Ok(same.then(|| Skipped {
        etag: Some(info.etag.clone()),
        by,
    }))
}

/// Hashes a local source the way a stored object's answer can be compared:
/// whole MD5 and CRC64, and part MD5s where the stored ETag is a
/// multipart one made with the job's part size.
async fn source_checks(ex: &Executor, src: &Arc<SourceFile>, info: &ObjectInfo) -> Step<Checks> {
    let part_size = etag_part_size(info, ex.spec.part_size);
    let s = Arc::clone(src);
    let (digest, parts) =
        blocking(move || storage::local::hash_file_parts(&s.file, part_size.unwrap_or(u64::MAX)))
            .await
            .map_err(source_err)?;
    ex.add_progress(digest.len);
    let parts = if part_size.is_some() {
        parts
    } else {
        Vec::new()
    };
    Ok(Checks::new(Sent::whole_with_parts(digest, parts)))
}

/// The part size a multipart ETag `…-N` was made with, if `default` gives N parts.
fn etag_part_size(info: &ObjectInfo, default: u64) -> Option<u64> {
    let n: u64 = info.etag.split_once('-')?.1.parse().ok()?;
    (n > 0 && info.size.div_ceil(default.max(1)) == n).then_some(default)
}

async fn single_put(
    ex: &Executor,
    store: &S3Store,
    key: &str,
    src: &Arc<SourceFile>,
    meta: &mut Vec<(&'static str, String)>,
    before: Identity,
    pre: Option<(Read, SemaphorePermit<'_>)>,
) -> Step<Checks> {
    let size = before.size;
    let (answer, digest) = if size <= IN_MEMORY_MAX {
        let ((data, after, digest), _mem) = match pre {
            Some(pre) => pre,
            None => {
                let mem = memory_for(ex, size).await?;
                let md5 = needs_md5(ex, store).await;
                // Read, re-stat and hash in one trip to the blocking pool.
                let s = Arc::clone(src);
                let read = blocking(move || read_whole(&s, size, md5))
                    .await
                    .map_err(source_err)?;
                (read, mem)
            }
        };
        if after != before {
            return Err(Fail(
                ErrorCode::SourceChanged,
                "source file was modified while it was copied".into(),
            ));
        }
        if data.len() as u64 != size {
            return Err(Fail(
                ErrorCode::SizeNotMatch,
                format!(
                    "listed with {size} bytes but {} bytes were read",
                    data.len()
                ),
            ));
        }
        if ex.spec.record_md5
            && let Some(m) = digest.md5_hex()
        {
            meta.push((META_MD5, m));
        }
        storage::limit::throttle(Some(&*ex.bandwidth), size).await;
        let answer = store
            .put_bytes(key, Bytes::from(data), &digest, meta, None)
            .await
            .map_err(dest_err)?;
        (answer, digest)
    } else {
        let md5 = needs_md5(ex, store).await;
        let s = Arc::clone(src);
        let digest = blocking(move || storage::local::hash_open_with(&s.file, md5))
            .await
            .map_err(source_err)?;
        if digest.len != size {
            return Err(Fail(
                ErrorCode::SizeNotMatch,
                format!(
                    "listed with {size} bytes but {} bytes were read",
                    digest.len
                ),
            ));
        }
        if ex.spec.record_md5
            && let Some(m) = digest.md5_hex()
        {
            meta.push((META_MD5, m));
        }
        storage::limit::throttle(Some(&*ex.bandwidth), size).await;
        // Through the open descriptor: a retried PUT reopens this inode,
        // never whatever the name points to by then.
        let answer = store
            .put_file(key, &src.proc_path(), &digest, meta, None)
            .await
            .map_err(dest_err)?;
        (answer, digest)
    };
    ex.add_progress(size);
    let mut checks = Checks::new(Sent::whole(digest));
    checks.answer((&answer).into())?;
    Ok(checks)
}

#[allow(clippy::too_many_arguments)]
async fn multipart(
    ex: &Arc<Executor>,
    store: &S3Store,
    key: &str,
    src: &Arc<SourceFile>,
    obj: &ObjectSpec,
    meta: &[(&'static str, String)],
    events: &mpsc::Sender<Event>,
    watch: Option<&FileWatch>,
) -> Step<Checks> {
    let size = src.size();
    let part_size = part_size_for(ex.spec.part_size, size);
    // Continue an upload an earlier attempt started, if the server still
    // has it and its parts match what we recorded.
    let mut done: Vec<PartRecord> = Vec::new();
    let mut upload_id = None;
    // A new upload carries CRC-64/NVME where the destination checks it.
    let md5 = needs_md5(ex, store).await;
    let fresh_nvme = store.proof() == storage::s3::proof::Proof::Crc64Nvme;
    let mut nvme = fresh_nvme;
    if let Some(MultipartResume {
        upload_id: id,
        part_size: ps,
        parts,
    }) = &obj.resume
    {
        // A resume that cannot be confirmed (the upload is gone, the server
        // refuses ListParts or answers something we cannot read) is dropped
        // for a fresh upload: never a permanent failure, never a guess.
        // An upload whose kind (with CRC-64/NVME or not) its records do not
        // tell is not continued either.
        let kind = recorded_nvme(parts);
        let listed = if *ps == part_size && kind.is_some() {
            match store.list_parts(key, id).await {
                Ok(server) => Some(server),
                Err(e) => {
                    tracing::warn!(key, error = %e, "Cannot confirm the recorded upload; starting a fresh one.");
                    None
                }
            }
        } else {
            None
        };
        match listed {
            Some(server) => {
                done = parts
                    .iter()
                    .filter(|p| {
                        server
                            .iter()
                            .any(|(n, etag, sz)| *n == p.number && *etag == p.etag && *sz == p.size)
                    })
                    .cloned()
                    .collect();
                upload_id = Some(id.clone());
                nvme = kind == Some(true);
            }
            None => {
                if store.abort_multipart(key, id).await.is_ok() {
                    let _ = events
                        .send(Event::UploadAborted {
                            object_id: obj.object_id,
                        })
                        .await;
                }
            }
        }
    }
    let resumed = upload_id.is_some();
    let start = || async {
        let what = (obj.object_id, part_size, fresh_nvme);
        crate::dest::start_upload(store, key, (meta, None), what, events)
            .await
            .map_err(dest_err)
    };
    let mut upload_id = match upload_id {
        Some(id) => id,
        None => {
            nvme = fresh_nvme;
            start().await?
        }
    };
    let mut result = upload_parts(
        ex,
        store,
        key,
        src,
        obj.object_id,
        size,
        (part_size, nvme, md5),
        &upload_id,
        done,
        events,
        watch,
    )
    .await;
    // A resumed upload that vanished after ListParts confirmed it (an
    // earlier process completed or aborted it just before it was stopped)
    // is started afresh, once: the object is sent whole and verified again.
    if resumed && matches!(&result, Err(Fail(_, m)) if m.contains("NoSuchUpload")) {
        tracing::warn!(key, "The resumed upload is gone; starting a fresh one.");
        upload_id = start().await?;
        result = upload_parts(
            ex,
            store,
            key,
            src,
            obj.object_id,
            size,
            (part_size, fresh_nvme, md5),
            &upload_id,
            Vec::new(),
            events,
            watch,
        )
        .await;
    }
    match result {
        Ok(v) => Ok(v),
        Err(f) => {
            // A failed upload is aborted so it does not linger (and cost
            // storage); the object is retried from scratch next time.
            if store.abort_multipart(key, &upload_id).await.is_ok() {
                let _ = events
                    .send(Event::UploadAborted {
                        object_id: obj.object_id,
                    })
                    .await;
            }
            Err(f)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn upload_parts(
    ex: &Arc<Executor>,
    store: &S3Store,
    key: &str,
    src: &Arc<SourceFile>,
    object_id: i64,
    size: u64,
    // The part size; whether the upload carries CRC-64/NVME; whether parts
    // are hashed with MD5.
    (part_size, nvme, md5): (u64, bool, bool),
    upload_id: &str,
    done: Vec<PartRecord>,
    events: &mpsc::Sender<Event>,
    watch: Option<&FileWatch>,
) -> Step<Checks> {
    // An upload started without CRC-64/NVME on a store that confirms only
    // that (resumed across the change) is proven by its parts' MD5s.
    let md5 = md5 || (!nvme && store.proof() == storage::s3::proof::Proof::Crc64Nvme);
    let n_parts = size.div_ceil(part_size) as u32;
    let mut parts: Vec<Option<PartRecord>> = vec![None; n_parts as usize];
    // A recorded part is reused only if the source still has its bytes:
    // its range is read again and its CRCs (and MD5, where recorded)
    // compared with the record (a local read is cheap next to sending it). One that differs is sent
    // again, so a file rewritten between runs never completes as a mix.
    let mut resumed = 0u32;
    for p in done {
        if p.number < 1 || p.number > n_parts {
            continue;
        }
        let offset = (p.number as u64 - 1) * part_size;
        let len = part_size.min(size - offset);
        if p.size != len {
            continue;
        }
        let s = Arc::clone(src);
        let with_md5 = !p.md5.is_empty();
        let now = blocking(move || storage::local::hash_range(&s.file, offset, len, with_md5))
            .await
            .map_err(source_err)?;
        let same = now.crc64 == p.crc64
            && p.nvme.is_none_or(|n| n == now.nvme)
            && (!with_md5 || now.md5_hex().as_deref() == Some(p.md5.as_str()));
        if !same {
            tracing::info!(
                key,
                part = p.number,
                "Recorded part differs from the source now; sending it again."
            );
            continue;
        }
        ex.add_part_progress(object_id, p.size);
        let idx = (p.number - 1) as usize;
        parts[idx] = Some(p);
        resumed += 1;
    }
    let file = Arc::clone(src);
    let bandwidth = ex.bandwidth.clone();
    let progress = Arc::clone(ex);
    // Parts are hashed in one pass and streamed from the file in a second
    // (from the page cache), through the descriptor the scan's file was
    // opened by: memory is a read buffer per part in flight, not the part.
    // Where /proc is missing, parts are read into memory as before.
    let stream = proc_fd(&src.file).is_some();
    let read = move |offset: u64, len: u64| {
        let (file, bandwidth, progress) =
            (Arc::clone(&file), bandwidth.clone(), Arc::clone(&progress));
        async move {
            // Hash on the blocking thread too: MD5 of a large part would
            // otherwise hold a runtime worker for tens of milliseconds.
            let f = Arc::clone(&file);
            let (body, digest) = blocking(move || {
                if stream && let Some(path) = proc_fd(&f.file) {
                    let digest = storage::local::hash_range(&f.file, offset, len, md5)?;
                    let open: Arc<dyn std::any::Any + Send + Sync> = f;
                    return Ok((
                        PartBody::File {
                            path,
                            offset,
                            _open: open,
                        },
                        digest,
                    ));
                }
                let data = storage::local::read_range(&f.file, offset, len as usize)?;
                let digest = checksum::digest_with(&data, md5);
                Ok((PartBody::Bytes(Bytes::from(data)), digest))
            })
            .await
            .map_err(source_err)?;
            if digest.len != len {
                return Err(Fail(
                    ErrorCode::SizeNotMatch,
                    format!("the file ended {} bytes into a part of {len}", digest.len),
                ));
            }
            storage::limit::throttle(Some(&*bandwidth), len).await;
            progress.add_part_progress(object_id, len);
            Ok((body, digest))
        }
    };
    let parts = send_missing_parts(
        ex, store, key, upload_id, object_id, size, part_size, nvme, parts, events, !stream, read,
    )
    .await?;
    // Checked before completing, so a changed file leaves no object behind.
    watched(watch, "")?;
    let answer = complete_parts(store, key, upload_id, &parts).await?;
    // The whole-object MD5 is not computed for multipart objects (parts are
    // read concurrently); the part MD5s and the combined CRC64 stand for it.
    let mut checks = Checks::new(parts_sent(&parts, size)?).with_parts_resumed(resumed);
    checks.answer((&answer).into())?;
    Ok(checks)
}

/// `/proc/self/fd/N` for an open file, when /proc shows it: opening that
/// reaches the same open file (never a path resolved again), with an
/// offset of its own.
fn proc_fd(file: &std::fs::File) -> Option<std::path::PathBuf> {
    use std::os::fd::AsRawFd;
    let p = std::path::PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    p.exists().then_some(p)
}

/// `jobType=audit`: compares an existing copy with the source, writing nothing.
pub(crate) async fn audit(ex: &Arc<Executor>, obj: &ObjectSpec) -> Step<Verified> {
    let key = dest_name(&ex.dest, &obj.rel_path)?;
    let src = open_source(ex, obj).await?;
    let size = src.size();
    let mode = ex.verify_mode(src.mtime());
    let tag = src.ident.tag();
    let checked: Step<Verified> = async {
        match &ex.dest {
            Dest::S3 { store, .. } => {
                let info = match store.head(&key).await {
                    Ok(i) => i,
                    Err(e) if e.kind == ErrorKind::NotFound => {
                        return Err(Fail(
                            ErrorCode::DestMissing,
                            format!("{key} does not exist at the destination"),
                        ));
                    }
                    Err(e) => return Err(dest_err(e)),
                };
                if mode == VerifyMode::Size {
                    let mut checks = Checks::new(Sent::length(size));
                    checks.answer(Answer::size_only(info.size))?;
                    return checks.finish(mode);
                }
                if info.size != size {
                    return Err(Fail(
                        ErrorCode::SizeNotMatch,
                        format!("destination has {} bytes, source has {size}", info.size),
                    ));
                }
                let mut checks = source_checks(ex, &src, &info).await?;
                checks.answer((&info).into())?;
                if !checks.proven(mode) {
                    let back = store.read_back(&key).await.map_err(dest_err)?;
                    checks.read_back(&back)?;
                }
                Ok(checks.finish(mode)?)
            }
            Dest::Local { dir, .. } => {
                let Ok(existing) = open_dest(dir, &key).await else {
                    return Err(Fail(
                        ErrorCode::DestMissing,
                        format!(
                            "{key} does not exist under {} as a plain file",
                            dir.display()
                        ),
                    ));
                };
                if mode == VerifyMode::Size {
                    let mut checks = Checks::new(Sent::length(size));
                    checks.answer(Answer::size_only(existing.size()))?;
                    return checks.finish(mode);
                }
                if existing.size() != size {
                    return Err(Fail(
                        ErrorCode::SizeNotMatch,
                        format!(
                            "destination has {} bytes, source has {size}",
                            existing.size()
                        ),
                    ));
                }
                let digest = hash_open(&src).await?;
                ex.add_progress(digest.len);
                let dst = hash_open(&existing)
                    .await
                    .map_err(|f| Fail(ErrorCode::DestError, f.1))?;
                let mut checks = Checks::new(Sent::whole(digest));
                checks.answer(Answer::size_only(existing.size()))?;
                checks.read_back(&dst)?;
                Ok(checks.finish(mode)?)
            }
        }
    }
    .await;
    // The file that was read, for the daemon to hold against the listing.
    checked.map(|v| v.read_from(tag))
}
