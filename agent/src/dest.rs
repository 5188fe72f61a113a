//! Destination operations: the key an object gets, PUTs of parts and their
//! completion, and the HEAD / read-back that finish an object's checks in a
//! bucket; the local-directory destination's name rules and lookups.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use proto::job::{ErrorCode, Event, PartRecord, VerifyMode};
use storage::beneath::SourceFile;
use storage::checksum::{self, Digest};
use storage::s3::proof::Proof;
use storage::s3::{ErrorKind, PutAnswer, S3Error, S3Store};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::step::{Fail, Step, blocking};
use crate::verify::{Checks, Sent, Verified};
use crate::worker::{Dest, Executor};

/// S3 and OSS allow at most this many parts.
const MAX_PARTS: u64 = 10_000;

/// Starts a multipart upload at `key` for `object_id` (`part_size`
/// parts, with CRC-64/NVME when `nvme`) and records it, so a run stopped
/// half-way continues or aborts it before anything else: its id.
pub(crate) async fn start_upload(
    store: &S3Store,
    key: &str,
    (meta, headers): (&[(&str, String)], Option<&storage::meta::ObjectHeaders>),
    (object_id, part_size, nvme): (i64, u64, bool),
    events: &mpsc::Sender<Event>,
) -> Result<String, S3Error> {
    let upload_id = store.create_multipart(key, meta, headers, nvme).await?;
    let _ = events
        .send(Event::UploadStarted {
            object_id,
            upload_id: upload_id.clone(),
            part_size,
        })
        .await;
    Ok(upload_id)
}

pub(crate) fn dest_err(e: S3Error) -> Fail {
    match e.kind {
        ErrorKind::BadDigest => Fail(
            ErrorCode::SourceChanged,
            format!(
                "the destination computed a different checksum than was read from the source (changed while uploading?): {e}"
            ),
        ),
        // Only a conditional write (`overwriteMode`) is refused so.
        ErrorKind::PreconditionFailed => Fail(
            ErrorCode::DestConflict,
            format!("the destination key holds an object this job may not overwrite: {e}"),
        ),
        // Our side: the file the body streams from failed under the
        // request. A local source is looked at again, which names the
        // change when there was one (`local::explained`).
        ErrorKind::SourceRead => Fail(
            ErrorCode::SourceUnreadable,
            format!("cannot read source file while sending it: {e}"),
        ),
        _ => Fail(ErrorCode::DestError, e.to_string()),
    }
}

fn dest_key(prefix: &str, rel: &str) -> Step<String> {
    let key = format!("{prefix}{rel}");
    storage::key::validate_key(&key).map_err(|e| Fail(ErrorCode::InvalidKey, e))?;
    Ok(key)
}

/// Whether this job's objects are hashed with MD5: where the destination
/// confirms no CRC (learned once per job, [`storage::s3::proof`]), or where
/// the job records it (`workerRecordMd5`).
pub(crate) async fn needs_md5(ex: &Executor, store: &S3Store) -> bool {
    let prefix = match &ex.dest {
        Dest::S3 { prefix, .. } => prefix.as_str(),
        Dest::Local { .. } => return true,
    };
    let proof = store.learn_proof(prefix).await;
    ex.spec.record_md5 || proof == storage::s3::proof::Proof::Md5
}

/// Whether the parts recorded for an upload agree on being sent with a
/// CRC-64/NVME (an upload started with `ChecksumType=FULL_OBJECT`):
/// `None` when there are none or they disagree, so the upload's kind is
/// unknown and it is not continued.
pub(crate) fn recorded_nvme(parts: &[PartRecord]) -> Option<bool> {
    let first = parts.first()?.nvme.is_some();
    parts
        .iter()
        .all(|p| p.nvme.is_some() == first)
        .then_some(first)
}

/// The destination name of `rel`: its key, and for a local destination
/// also a path that stays beneath `destDir` (no `..`, `.` or empty
/// segment, no NUL), since `a//b`, `a/./b` and `a/../b` would otherwise
/// land on another object's file or outside the directory.
pub(crate) fn dest_name(dest: &Dest, rel: &str) -> Step<String> {
    match dest {
        Dest::S3 { prefix, .. } => dest_key(prefix, rel),
        Dest::Local { prefix, .. } => {
            let key = dest_key(prefix, rel)?;
            storage::beneath::check_rel_path(&key).map_err(|e| {
                Fail(
                    ErrorCode::InvalidKey,
                    format!("cannot be stored under destDir: {e}"),
                )
            })?;
            Ok(key)
        }
    }
}

/// Opens an existing file of a local destination without following
/// symlinks; a name that is not a plain file there counts as absent.
pub(crate) async fn open_dest(dir: &Path, key: &str) -> Result<Arc<SourceFile>, std::io::Error> {
    let (root, name) = (dir.to_path_buf(), key.to_owned());
    blocking(move || storage::beneath::open_dest(&root, &name))
        .await
        .map(Arc::new)
}

/// The configured part size, raised (to whole MiB) where an object of
/// `size` bytes would need more than the 10,000 parts S3 and OSS allow.
pub(crate) fn part_size_for(configured: u64, size: u64) -> u64 {
    let part = configured.max(1);
    if size.div_ceil(part) > MAX_PARTS {
        size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20
    } else {
        part
    }
}

/// A part's bytes, as a reader hands them to [`send_missing_parts`]: in
/// memory (remote sources), or a range of a file to stream from (local
/// sources: memory bounded by a buffer, not by the part size).
pub(crate) enum PartBody {
    Bytes(Bytes),
    File {
        /// `/proc/self/fd/N` of the descriptor the scan's file was opened
        /// by: every attempt reads that same file, never a path again.
        path: std::path::PathBuf,
        offset: u64,
        /// Keeps the descriptor open while the part is sent.
        _open: Arc<dyn std::any::Any + Send + Sync>,
    },
}

/// Sends every part missing from `parts` (one slot per part, in order),
/// at most `partConcurrency` at once, while `read(offset, len)` produces
/// each part's body and digest; returns every part in order. Local files
/// and bucket sources differ only in `read`. A part read into memory
/// (`in_memory`) holds its share of the executor's memory budget while it
/// exists; a part streamed from a file holds 1 MiB of it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_missing_parts<R, F>(
    ex: &Arc<Executor>,
    store: &S3Store,
    key: &str,
    upload_id: &str,
    object_id: i64,
    size: u64,
    part_size: u64,
    nvme: bool,
    mut parts: Vec<Option<PartRecord>>,
    events: &mpsc::Sender<Event>,
    in_memory: bool,
    read: R,
) -> Step<Vec<PartRecord>>
where
    R: Fn(u64, u64) -> F,
    F: std::future::Future<Output = Step<(PartBody, Digest)>> + Send + 'static,
{
    let inflight = Arc::new(Semaphore::new(ex.spec.part_concurrency.max(1) as usize));
    let mut set: JoinSet<Step<PartRecord>> = JoinSet::new();
    let retries = storage::s3::RETRIES
        .try_with(Arc::clone)
        .unwrap_or_default();
    for number in 1..=parts.len() as u32 {
        if parts[(number - 1) as usize].is_some() {
            continue;
        }
        let permit = inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Fail(ErrorCode::DestError, "shutting down".into()))?;
        let offset = (number as u64 - 1) * part_size;
        let len = part_size.min(size - offset);
        let reading = read(offset, len);
        let (ex, store, key, upload_id, events) = (
            Arc::clone(ex),
            store.clone(),
            key.to_owned(),
            upload_id.to_owned(),
            events.clone(),
        );
        set.spawn(storage::s3::RETRIES.scope(retries.clone(), async move {
            let _permit = permit;
            let mib = if in_memory {
                (len.div_ceil(1 << 20) as u32).clamp(1, ex.memory_mib)
            } else {
                1
            };
            let _mem = ex
                .memory
                .acquire_many(mib)
                .await
                .map_err(|_| Fail(ErrorCode::DestError, "shutting down".into()))?;
            let (body, digest) = reading.await?;
            send_part(
                &store, &key, &upload_id, number, body, &digest, nvme, object_id, &events,
            )
            .await
        }));
        while let Some(r) = set.try_join_next() {
            let p = joined(r)?;
            let i = (p.number - 1) as usize;
            parts[i] = Some(p);
        }
    }
    while let Some(r) = set.join_next().await {
        let p = joined(r)?;
        let i = (p.number - 1) as usize;
        parts[i] = Some(p);
    }
    let n = parts.len();
    let parts: Vec<PartRecord> = parts.into_iter().flatten().collect();
    if parts.len() != n {
        return Err(Fail(
            ErrorCode::DestError,
            "internal error: a part is missing".into(),
        ));
    }
    Ok(parts)
}

/// The MD5 of each part, in order; empty when any part's was not computed
/// (the upload is then proven by its CRCs).
pub(crate) fn part_md5s(parts: &[PartRecord]) -> Step<Vec<[u8; 16]>> {
    if parts.iter().any(|p| p.md5.is_empty()) {
        return Ok(Vec::new());
    }
    parts
        .iter()
        .map(|p| {
            checksum::parse_md5_hex(&p.md5)
                .ok_or_else(|| Fail(ErrorCode::DestError, format!("bad part MD5 {}", p.md5)))
        })
        .collect()
}

/// The full object's CRC-64/NVME from its parts, when every part was sent
/// with one (an upload started with `ChecksumType=FULL_OBJECT`).
pub(crate) fn parts_nvme(parts: &[PartRecord]) -> Option<u64> {
    let each: Option<Vec<(u64, u64)>> = parts.iter().map(|p| Some((p.nvme?, p.size))).collect();
    each.filter(|e| !e.is_empty()).map(checksum::nvme_of_parts)
}

/// What a multipart upload sent, from its part records: the length, the
/// combined CRCs and the part MD5s (no whole-object MD5).
pub(crate) fn parts_sent(parts: &[PartRecord], size: u64) -> Step<Sent> {
    let part_md5s = part_md5s(parts)?;
    let crc64 = checksum::crc64_of_parts(parts.iter().map(|p| (p.crc64, p.size)));
    Ok(Sent::parts(size, crc64, parts_nvme(parts), part_md5s))
}

/// Sends one part (with `Content-MD5` where its MD5 was computed, with its
/// CRC-64/NVME where `nvme`: an upload started with it), checks what the
/// store answered against its digest, and reports it as done.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_part(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    number: u32,
    body: PartBody,
    digest: &Digest,
    nvme: bool,
    object_id: i64,
    events: &mpsc::Sender<Event>,
) -> Step<PartRecord> {
    let size = digest.len;
    let upload = storage::s3::Upload {
        key,
        id: upload_id,
        nvme,
    };
    let answer = match body {
        PartBody::Bytes(data) => {
            if data.len() as u64 != size {
                return Err(Fail(
                    ErrorCode::DestError,
                    format!(
                        "internal error: part {number} has {} bytes, its digest {size}",
                        data.len()
                    ),
                ));
            }
            store.upload_part(&upload, number, data, digest).await
        }
        PartBody::File {
            path,
            offset,
            _open,
        } => {
            store
                .upload_part_file(&upload, number, &path, offset, digest)
                .await
        }
    }
    .map_err(dest_err)?;
    crate::verify::check_part(number, digest, (&answer).into())?;
    let record = PartRecord {
        number,
        size,
        etag: answer.etag,
        md5: digest.md5_hex().unwrap_or_default(),
        crc64: digest.crc64,
        nvme: nvme.then_some(digest.nvme),
    };
    let _ = events
        .send(Event::PartDone {
            object_id,
            part: record.clone(),
        })
        .await;
    Ok(record)
}

/// Completes an upload from its parts (in order; with the full object's
/// CRC-64/NVME when every part was sent with one) and returns the store's
/// answer, for the caller's [`Checks`].
pub(crate) async fn complete_parts(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    parts: &[PartRecord],
) -> Step<PutAnswer> {
    let list: Vec<(u32, String)> = parts.iter().map(|p| (p.number, p.etag.clone())).collect();
    match store
        .complete_multipart(key, upload_id, &list, parts_nvme(parts))
        .await
    {
        Ok(answer) => Ok(answer),
        // A retried Complete whose first attempt succeeded: the object
        // exists, and its HEAD is checked in the same way.
        Err(e) if e.kind == ErrorKind::NoSuchUpload => {
            let info = store.head(key).await.map_err(dest_err)?;
            Ok(PutAnswer {
                etag: info.etag,
                crc64: info.crc64,
                nvme: info.nvme,
                etag_is_md5: info.etag_is_md5,
            })
        }
        Err(e) => Err(dest_err(e)),
    }
}

pub(crate) fn joined(r: Result<Step<PartRecord>, tokio::task::JoinError>) -> Step<PartRecord> {
    match r {
        Ok(step) => step,
        Err(e) => Err(Fail(
            ErrorCode::DestError,
            format!("part upload crashed: {e}"),
        )),
    }
}

/// Finishes the checks of an object stored in a bucket: a HEAD where the
/// answers so far do not prove what `mode` asks, then a read-back where
/// even that does not (an SSE-KMS object without CRC64, an ETag that
/// cannot be recomputed) or the mode asks for the bytes themselves.
pub(crate) async fn confirm_s3(
    store: &S3Store,
    key: &str,
    mut checks: Checks,
    mode: VerifyMode,
    sent: Option<&storage::meta::ObjectHeaders>,
) -> Step<Verified> {
    // The store was learned to confirm a CRC and this answer did not: it
    // is not trusted with the job's later objects ([`storage::s3::proof`]).
    if !checks.proven(mode) && mode != VerifyMode::ReadBack && store.proof() != Proof::Md5 {
        store.proof_failed(key, "an answer without the checksum it was learned to give");
    }
    // Over plain HTTP to another host a PUT's answer could be forged on
    // the way: a HEAD is asked as well.
    if !checks.proven(mode) || store.unauthenticated() {
        let info = store.head(key).await.map_err(|e| {
            if e.kind == ErrorKind::NotFound {
                Fail(
                    ErrorCode::DestMissing,
                    format!("{key} is missing at the destination right after upload"),
                )
            } else {
                dest_err(e)
            }
        })?;
        checks.answer((&info).into())?;
        // The metadata sent, held against what the store keeps, since it
        // was asked anyway.
        if let Some(d) = sent.and_then(|s| s.difference(&info.headers, key)) {
            return Err(Fail(ErrorCode::MetaMismatch, d));
        }
    }
    if !checks.proven(mode) {
        let back = store.read_back(key).await.map_err(dest_err)?;
        checks.read_back(&back)?;
    }
    checks.finish(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_ten_thousand() {
        const MIB: u64 = 1 << 20;
        assert_eq!(part_size_for(8 * MIB, 100 * MIB), 8 * MIB);
        assert_eq!(part_size_for(8 * MIB, 10_000 * 8 * MIB), 8 * MIB);
        // 500 GiB in 50 MiB parts would be 10,240 parts: raised to 52 MiB.
        let big = 500 << 30;
        let p = part_size_for(50 * MIB, big);
        assert!(
            big.div_ceil(p) <= MAX_PARTS && p.is_multiple_of(MIB) && p >= 50 * MIB,
            "{p}"
        );
        assert_eq!(part_size_for(0, 10), 1);
    }
}
