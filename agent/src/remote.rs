//! Objects from remote sources (an S3-compatible bucket, an Azure Blob
//! container, HTTP URLs, a CDN in front of a bucket),
//! streamed to the destination without a temporary copy on disk.
//!
//! An object up to the multipart threshold is received whole into memory
//! (bounded by the executor's memory budget) and sent with `Content-MD5`;
//! a larger one is cut into parts as it arrives, each part uploaded while
//! the next is received. Either way the MD5 and CRC64 of the whole object
//! are computed on the way, compared with the source's own ETag where it is
//! a plain MD5, and then with what the destination reports (see
//! [`crate::verify`]). A transfer cut off mid-way is retried from the start
//! (with backoff), a source that changed since listing (`If-Match` fails)
//! is `SOURCE_CHANGED`.
//!
//! A multipart upload from a bucket that an earlier run left half done is
//! continued part by part: the parts the destination confirms are kept,
//! the others are fetched with ranged GETs carrying the listed ETag in
//! `If-Match`, so every part, old or new, comes from the same version of
//! the source object.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proto::job::{
    ErrorCode, Event, Evidence, MultipartResume, ObjectSpec, PartRecord, Proof, SkipMode,
    VerifyMode,
};
use storage::checksum::{self, Digest, Hasher};
use storage::meta::ObjectHeaders;
use storage::remote::{RemoteBody, SourceError, SourceErrorKind};
use storage::s3::{ErrorKind, META_MD5, META_MTIME, S3Store};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dest::{
    PartBody, complete_parts, confirm_s3, dest_err, dest_name, needs_md5, part_md5s, part_size_for,
    parts_sent, recorded_nvme, send_missing_parts, send_part,
};
use crate::step::{Done, Fail, Skipped, Step, blocking};
use crate::verify::{Answer, Checks, Sent, Verified};
use crate::worker::{Dest, Executor, Source};

/// How one attempt ended when it did not succeed.
enum Attempt {
    /// Give up with this result.
    Fail(Fail),
    /// Worth another try (a cut connection, a 5xx from the source).
    Retry(String),
}

impl From<Fail> for Attempt {
    fn from(f: Fail) -> Attempt {
        Attempt::Fail(f)
    }
}

fn source_fail(e: SourceError) -> Attempt {
    match e.kind {
        SourceErrorKind::Transient => Attempt::Retry(e.message),
        SourceErrorKind::NotFound => Attempt::Fail(Fail(ErrorCode::SourceDeleted, e.message)),
        SourceErrorKind::Changed => Attempt::Fail(Fail(
            ErrorCode::SourceChanged,
            format!(
                "the source object changed after it was listed: {}",
                e.message
            ),
        )),
        _ => Attempt::Fail(Fail(ErrorCode::SourceUnreadable, e.message)),
    }
}

async fn open(ex: &Executor, obj: &ObjectSpec) -> Result<RemoteBody, Attempt> {
    match &ex.source {
        Source::S3 { store, prefix } => store
            .open_read(&format!("{prefix}{}", obj.rel_path), obj.src_ref.as_deref())
            .await
            .map_err(source_fail),
        Source::Http { client } => {
            let client = (**client)
                .as_ref()
                .map_err(|e| Fail(ErrorCode::SourceUnreadable, e.clone()))?;
            let url = obj.src_ref.as_deref().unwrap_or_default();
            client.get(url).await.map_err(source_fail)
        }
        Source::Azure { store, prefix } => {
            let store = (**store)
                .as_ref()
                .map_err(|e| Fail(ErrorCode::SourceUnreadable, e.clone()))?;
            store
                .open_read(&format!("{prefix}{}", obj.rel_path), obj.src_ref.as_deref())
                .await
                .map_err(source_fail)
        }
        Source::Cdn {
            client,
            domain,
            prefix,
        } => {
            let client = (**client)
                .as_ref()
                .map_err(|e| Fail(ErrorCode::SourceUnreadable, e.clone()))?;
            let url = cdn_url(domain, &format!("{prefix}{}", obj.rel_path));
            let mut body = client.get(&url).await.map_err(source_fail)?;
            if let Some(n) = body.expected_len
                && n != obj.size
            {
                // A CDN copy of another version (stale, or newer than the
                // listing): never taken for the listed object.
                return Err(Attempt::Fail(Fail(
                    ErrorCode::SourceChanged,
                    format!(
                        "{url}: the CDN answers {n} bytes, the bucket listed {} (a stale or newer copy)",
                        obj.size
                    ),
                )));
            }
            body.expected_len = Some(obj.size);
            body.etag_is_md5 = obj.src_ref.as_deref().is_some_and(plain_md5);
            Ok(body)
        }
        Source::Local { .. } => Err(Attempt::Fail(Fail(
            ErrorCode::SourceUnreadable,
            "not a remote source".into(),
        ))),
    }
}

/// `domain/key`, the key percent-encoded as a URL path.
fn cdn_url(domain: &str, key: &str) -> String {
    format!("{domain}/{}", storage::key::url_path(key))
}

/// Whether a listed ETag is a plain MD5 (32 hex digits, quoted or not;
/// not a multipart `...-N`), so the downloaded bytes can be held to it.
fn plain_md5(etag: &str) -> bool {
    let e = etag.trim_matches('"');
    e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Copies one remote object, retrying transient failures with exponential
/// backoff and jitter, up to the job's attempt count.
pub(crate) async fn import(
    ex: &Arc<Executor>,
    obj: &ObjectSpec,
    events: &mpsc::Sender<Event>,
    lease: &CancellationToken,
) -> Step<Done> {
    let key = dest_name(&ex.dest, &obj.rel_path)?;
    if let (Dest::S3 { store, .. }, Source::S3 { .. } | Source::Cdn { .. } | Source::Azure { .. }) =
        (&ex.dest, &ex.source)
        && let Some(s) = skip_s3(ex, store, &key, obj).await?
    {
        return Ok(Done::Skipped(s));
    }
    let mode = ex.verify_mode(obj.mtime);
    if let (Some(r), Dest::S3 { store, .. }) = (&obj.resume, &ex.dest)
        && let Some(checks) = resume(ex, store, &key, obj, r, events).await?
    {
        return Ok(confirm_s3(store, &key, checks, mode, None).await?.into());
    }
    if let Dest::S3 { store, .. } = &ex.dest
        && let Some(v) = metadata_in_place(ex, store, &key, obj, mode).await
    {
        return Ok(v.into());
    }
    if let Dest::S3 { store, .. } = &ex.dest
        && let Some(v) = server_side(ex, store, &key, obj, mode, events).await
    {
        return Ok(v.into());
    }
    let v = retried(ex, || async {
        match &ex.dest {
            Dest::S3 { store, .. } => {
                let (checks, sent) = copy_to_s3(ex, store, &key, obj, events).await?;
                let digest = sent.clone().unwrap_or_default().digest(&key);
                Ok(confirm_s3(store, &key, checks, mode, sent.as_ref())
                    .await?
                    .with_metadata(digest))
            }
            Dest::Local { dir, .. } => copy_to_dir(ex, dir, &key, obj, mode, lease).await,
        }
    })
    .await?;
    Ok(v.into())
}

/// Runs `attempt` until it succeeds or fails for good, at most the job's
/// attempt count, with backoff and jitter before each retry.
async fn retried<T, F, Fut>(ex: &Executor, mut attempt: F) -> Step<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Attempt>>,
{
    let attempts = ex.spec.max_attempts.max(1);
    let mut last = String::new();
    for n in 1..=attempts {
        if n > 1 {
            storage::s3::count_retry();
            tokio::time::sleep(RETRY.delay(n)).await;
        }
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Fail(f)) => return Err(f),
            Err(Attempt::Retry(m)) => last = m,
        }
    }
    Err(Fail(
        ErrorCode::SourceUnreadable,
        format!("gave up after {attempts} attempts: {last}"),
    ))
}

/// The part size of a multipart upload of `obj` (raised for objects that
/// would need more than 10,000 parts; the size is the listed one, so an
/// HTTP object of unknown size keeps the default).
fn part_size(ex: &Executor, obj: &ObjectSpec) -> u64 {
    part_size_for(ex.spec.part_size.max(5 << 20), obj.size)
}

/// Continues an upload an earlier run left, where that can be proven
/// safe: the source is a bucket object with a listed ETag (so `If-Match`
/// pins its version), the part size is the same, and the destination
/// confirms the recorded parts. Otherwise the upload is aborted and `None`
/// returned for a fresh copy.
async fn resume(
    ex: &Arc<Executor>,
    store: &S3Store,
    key: &str,
    obj: &ObjectSpec,
    r: &MultipartResume,
    events: &mpsc::Sender<Event>,
) -> Step<Option<Checks>> {
    let pinned = matches!(ex.source, Source::S3 { .. })
        && obj.src_ref.as_deref().is_some_and(|e| !e.is_empty());
    let part_size = part_size(ex, obj);
    // An upload whose kind (with CRC-64/NVME or not) its records do not
    // tell is not continued.
    let kind = recorded_nvme(&r.parts);
    let listed = if pinned && r.part_size == part_size && obj.size > 0 && kind.is_some() {
        match store.list_parts(key, &r.upload_id).await {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::warn!(key, error = %e, "Cannot confirm the recorded upload; starting a fresh one.");
                None
            }
        }
    } else {
        None
    };
    let Some(server) = listed else {
        if store.abort_multipart(key, &r.upload_id).await.is_ok() {
            let _ = events
                .send(Event::UploadAborted {
                    object_id: obj.object_id,
                })
                .await;
        }
        return Ok(None);
    };
    let n_parts = obj.size.div_ceil(part_size) as u32;
    let mut parts: Vec<Option<PartRecord>> = vec![None; n_parts as usize];
    let mut resumed = 0u32;
    for p in &r.parts {
        let len = (p.number >= 1 && p.number <= n_parts)
            .then(|| part_size.min(obj.size - (p.number as u64 - 1) * part_size));
        let on_server = server.iter().any(|(n, etag, sz)| {
            *n == p.number && etag.eq_ignore_ascii_case(&p.etag) && *sz == p.size
        });
        if len == Some(p.size) && on_server {
            ex.add_part_progress(obj.object_id, p.size);
            parts[(p.number - 1) as usize] = Some(p.clone());
            resumed += 1;
        }
    }
    // Each missing part by a ranged GET pinned by `If-Match` (retried on
    // its own on a transient failure), hashed for the upload's proof.
    let nvme = kind == Some(true);
    let md5 = needs_md5(ex, store).await || !nvme;
    let (exr, objr) = (Arc::clone(ex), Arc::new(obj.clone()));
    let read = move |offset: u64, len: u64| {
        let (ex, obj) = (Arc::clone(&exr), Arc::clone(&objr));
        async move {
            let data = fetch_range(&ex, &obj, offset, len).await?;
            let digest = checksum::digest_with(&data, md5);
            Ok((PartBody::Bytes(data), digest))
        }
    };
    let result = send_missing_parts(
        ex,
        store,
        key,
        &r.upload_id,
        obj.object_id,
        obj.size,
        part_size,
        nvme,
        parts,
        events,
        true,
        read,
    )
    .await;
    let result = match result {
        Ok(parts) => {
            async {
                let answer = complete_parts(store, key, &r.upload_id, &parts).await?;
                let mut checks =
                    Checks::new(parts_sent(&parts, obj.size)?).with_parts_resumed(resumed);
                checks.answer((&answer).into())?;
                Ok(checks)
            }
            .await
        }
        Err(f) => Err(f),
    };
    // A resumed upload that vanished after ListParts confirmed it (the
    // stopped process aborted it just before it was killed, its abort not
    // yet recorded) is given up for a fresh one: the object is then sent
    // whole and verified, as for a local source.
    let gone = matches!(&result, Err(Fail(_, m)) if m.contains("NoSuchUpload"));
    if result.is_err() && (gone || store.abort_multipart(key, &r.upload_id).await.is_ok()) {
        let _ = events
            .send(Event::UploadAborted {
                object_id: obj.object_id,
            })
            .await;
    }
    if gone {
        tracing::warn!(key, "The resumed upload is gone; starting a fresh one.");
        return Ok(None);
    }
    result.map(Some)
}

/// `len` bytes of a bucket source object from `offset`, only from the
/// version listed (`If-Match`), retried with backoff on transient errors.
async fn fetch_range(ex: &Executor, obj: &ObjectSpec, offset: u64, len: u64) -> Step<Bytes> {
    let Source::S3 { store, prefix } = &ex.source else {
        return Err(Fail(
            ErrorCode::SourceUnreadable,
            "not a bucket source".into(),
        ));
    };
    let key = format!("{prefix}{}", obj.rel_path);
    retried(ex, || async {
        let mut body = store
            .open_range(
                &key,
                obj.src_ref.as_deref(),
                Some((offset, len)),
                Some(obj.size),
            )
            .await
            .map_err(source_fail)?;
        let mut buf = BytesMut::with_capacity(len as usize);
        let mut pending = None;
        fill(
            ex,
            obj.object_id,
            &mut body,
            &mut buf,
            len as usize,
            &mut pending,
        )
        .await?;
        if buf.len() as u64 != len
            || pending.is_some()
            || body.next().await.map_err(source_fail)?.is_some()
        {
            return Err(Attempt::Retry(format!(
                "GetObject {key}: expected {len} bytes from {offset}, got {}",
                buf.len()
            )));
        }
        Ok(buf.freeze())
    })
    .await
}

/// Between attempts of one object: 200 ms doubling, capped at 20 s.
const RETRY: proto::net::Backoff = proto::net::Backoff {
    base: Duration::from_millis(200),
    cap: Duration::from_secs(20),
};

async fn skip_s3(
    ex: &Executor,
    store: &S3Store,
    key: &str,
    obj: &ObjectSpec,
) -> Step<Option<Skipped>> {
    if ex.spec.skip == SkipMode::None {
        return Ok(None);
    }
    let info = match store.head(key).await {
        Ok(i) => i,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(dest_err(e)),
    };
    let src_etag = obj.src_ref.clone().unwrap_or_default();
    let (same, by) = match ex.spec.skip {
        SkipMode::None => (false, Evidence::of(&[Proof::Size])),
        SkipMode::Size => (true, Evidence::of(&[Proof::Size])),
        SkipMode::SizeMtime => (
            info.mtime_meta == obj.mtime.checked_mul(1_000_000_000),
            Evidence::of(&[Proof::Size, Proof::Mtime]),
        ),
        SkipMode::Checksum => (
            !src_etag.is_empty() && src_etag.eq_ignore_ascii_case(&info.etag),
            Evidence::of(&[Proof::Size, Proof::Etag]),
        ),
    };
    Ok((same && info.size == obj.size).then_some(Skipped {
        etag: Some(info.etag),
        by,
    }))
}

/// Reads up to `limit` bytes into `buf`, hashing them into `whole` and
/// `part`, paced by the bandwidth cap. Returns false at the end of the body.
async fn fill(
    ex: &Executor,
    object_id: i64,
    body: &mut RemoteBody,
    buf: &mut BytesMut,
    limit: usize,
    pending: &mut Option<Bytes>,
) -> Result<bool, Attempt> {
    while buf.len() < limit {
        let chunk = match pending.take() {
            Some(c) => c,
            None => match body.next().await.map_err(source_fail)? {
                Some(c) => c,
                None => return Ok(false),
            },
        };
        let room = limit - buf.len();
        let (now, later) = if chunk.len() > room {
            (chunk.slice(..room), Some(chunk.slice(room..)))
        } else {
            (chunk, None)
        };
        storage::limit::throttle(Some(&*ex.bandwidth), now.len() as u64).await;
        ex.add_part_progress(object_id, now.len() as u64);
        buf.extend_from_slice(&now);
        *pending = later;
    }
    Ok(true)
}

async fn copy_to_s3(
    ex: &Arc<Executor>,
    store: &S3Store,
    key: &str,
    obj: &ObjectSpec,
    events: &mpsc::Sender<Event>,
) -> Result<(Checks, Option<ObjectHeaders>), Attempt> {
    let mut body = open(ex, obj).await?;
    let declared = body.expected_len.or((obj.size > 0).then_some(obj.size));
    if let (Some(d), Source::S3 { .. } | Source::Cdn { .. } | Source::Azure { .. }) =
        (declared, &ex.source)
        && d != obj.size
    {
        return Err(Fail(
            ErrorCode::SizeNotMatch,
            format!("listed with {} bytes, now {d}", obj.size),
        )
        .into());
    }
    let threshold = ex.spec.multipart_threshold;
    let mut meta = vec![(META_MTIME, source_mtime(obj, &body).to_string())];
    // The source object's metadata, as it answered (`copyMetadata`);
    // refused whole if the destination cannot store all of it.
    let ours = meta_len(&meta)
        + if ex.spec.record_md5 {
            META_MD5.len() + 32
        } else {
            0
        };
    let mut headers = sendable(ex, &mut body, ours)?;
    if ex.spec.copy_tags
        && let Source::S3 { store: src, prefix } = &ex.source
    {
        let tags = src
            .tags(&format!("{prefix}{}", obj.rel_path))
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Transient => Attempt::Retry(e.message),
                ErrorKind::NotFound => Fail(ErrorCode::SourceDeleted, e.message).into(),
                _ => Fail(ErrorCode::SourceUnreadable, e.message).into(),
            })?;
        let h = headers.get_or_insert_with(Default::default);
        h.tags = tags;
        h.check(ours)
            .map_err(|e| Fail(ErrorCode::MetaInvalid, format!("the source's {e}")))?;
    }
    if declared.is_some_and(|d| d > threshold) {
        let checks = multipart(
            ex,
            store,
            key,
            obj,
            &mut body,
            &meta,
            headers.as_ref(),
            events,
        )
        .await?;
        return Ok((checks, headers));
    }
    let cap = declared.unwrap_or(threshold);
    let mib = (cap.div_ceil(1 << 20) as u32).clamp(1, ex.memory_mib);
    let _mem = ex
        .memory
        .acquire_many(mib)
        .await
        .map_err(|_| Fail(ErrorCode::DestError, "shutting down".into()))?;
    let mut buf = BytesMut::with_capacity(cap as usize);
    let mut pending = None;
    if fill(
        ex,
        obj.object_id,
        &mut body,
        &mut buf,
        threshold as usize + 1,
        &mut pending,
    )
    .await?
    {
        return Err(Fail(
            ErrorCode::SourceUnreadable,
            format!("the response has no Content-Length and is larger than multipartUploadThreshold ({threshold} bytes); not supported"),
        )
        .into());
    }
    let data = buf.freeze();
    let md5 = needs_md5(ex, store).await || source_states_md5(ex, obj, &body);
    let digest = checksum::digest_with(&data, md5);
    check_source_etag(ex, obj, &body, &digest)?;
    if ex.spec.record_md5
        && let Some(m) = digest.md5_hex()
    {
        meta.push((META_MD5, m));
    }
    let answer = store
        .put_bytes(key, data, &digest, &meta, headers.as_ref())
        .await
        .map_err(dest_err)?;
    let mut checks = Checks::new(Sent::whole(digest));
    checks.answer((&answer).into())?;
    Ok((checks, headers))
}

/// A metadata-only change at a bucket source ([`ObjectSpec::written`]):
/// the source's metadata now, written onto the destination object in
/// place (a server-side copy onto itself, made only while it still has
/// the ETag the earlier pass verified), proven by its ETag afterwards
/// being the MD5 recorded then and by its metadata being what was sent.
/// `None` wherever that cannot be shown (the source or the destination
/// object changed since, a store that refuses the copy or answers an ETag
/// that is not an MD5, `verifyMode=readback`, metadata the destination
/// cannot take): the object is then copied again as any changed object,
/// which fails or verifies it by the usual rules.
async fn metadata_in_place(
    ex: &Executor,
    store: &S3Store,
    key: &str,
    obj: &ObjectSpec,
    mode: VerifyMode,
) -> Option<Verified> {
    let written = obj.written.as_ref()?;
    let Source::S3 { store: src, prefix } = &ex.source else {
        return None;
    };
    if !ex.spec.copy_metadata || mode == VerifyMode::ReadBack {
        return None;
    }
    let md5 = storage::checksum::parse_md5_hex(&written.md5)?;
    let meta = our_meta(ex, obj, &written.md5);
    let src_key = format!("{prefix}{}", obj.rel_path);
    let now = source_now(src, &src_key, obj, false).await?;
    let headers = source_metadata(ex, src, &src_key, now, &meta).await?;
    let held = store.head(key).await.ok()?;
    let unquote = |e: &str| e.trim_matches('"').to_ascii_lowercase();
    if held.size != obj.size || unquote(&held.etag) != unquote(&written.etag) {
        return None;
    }
    store
        .rewrite_metadata(key, &held.etag, &meta, Some(&headers))
        .await
        .ok()?;
    let after = store.head(key).await.ok()?;
    let mut checks = Checks::new(Sent::recorded(obj.size, md5));
    checks.answer((&after).into()).ok()?;
    if headers.difference(&after.headers, key).is_some() {
        return None;
    }
    let v = checks.finish(mode).ok()?;
    tracing::debug!(key, "metadata written in place");
    Some(v.in_place().with_metadata(headers.digest(key)))
}

/// Our own user metadata for a copy of `obj` whose bytes have the MD5
/// `md5` (hex): its mtime, and the MD5 where the job records it.
fn our_meta(ex: &Executor, obj: &ObjectSpec, md5: &str) -> Vec<(&'static str, String)> {
    let mut meta = vec![(META_MTIME, obj.mtime.to_string())];
    if ex.spec.record_md5 {
        meta.push((META_MD5, md5.to_owned()));
    }
    meta
}

/// For a copy made within the store: the source object as a HEAD answers
/// it now (with the checksum it keeps when `checksum`), `None` when it is
/// no longer the listed version (size and ETag).
async fn source_now(
    src: &S3Store,
    src_key: &str,
    obj: &ObjectSpec,
    checksum: bool,
) -> Option<storage::s3::ObjectInfo> {
    let now = match checksum {
        true => src.head_with_checksum(src_key).await.ok()?,
        false => src.head(src_key).await.ok()?,
    };
    let listed = obj.src_ref.as_deref()?.trim_matches('"');
    if now.size != obj.size || !now.etag.trim_matches('"').eq_ignore_ascii_case(listed) {
        return None;
    }
    Some(now)
}

/// The source object's metadata as a HEAD answered it now (what the GET
/// of a streamed copy would read), with its tags (`copyTags`) and its
/// values as they will be written; `None` when the destination cannot take
/// it beside `ours` (a streamed copy then names what is wrong).
async fn source_metadata(
    ex: &Executor,
    src: &S3Store,
    src_key: &str,
    now: storage::s3::ObjectInfo,
    ours: &[(&str, String)],
) -> Option<ObjectHeaders> {
    let mut headers = now.headers;
    if ex.spec.copy_tags {
        headers.tags = src.tags(src_key).await.ok()?;
    }
    headers.encode_user_values();
    headers.check(meta_len(ours)).ok()?;
    Some(headers)
}

/// Bytes of user metadata, names and values, as the 2 KiB limit counts them.
fn meta_len(meta: &[(&str, String)]) -> usize {
    meta.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The largest object one `CopyObject` makes; larger ones are copied in
/// parts (`UploadPartCopy`), as are those above `serverSideCopyCutoff`.
const MAX_SERVER_SIDE: u64 = 5 << 30;

/// Bucket to bucket on one endpoint (`serverSideCopy=auto`): the object
/// copied within the store (`CopyObject` with `x-amz-copy-source-if-match`
/// on the listed ETag, so only the listed version is copied), written with
/// the source's metadata now (a HEAD of the source, as the GET of a
/// streamed copy would read it) and ours, and proven by what the store
/// holds for the copy: its ETag equal to the listed ETag when that is a
/// plain MD5 (`size+md5+server-side`); otherwise (a multipart source) its
/// full-object CRC-64/NVME equal to the one the store keeps for the source
/// as listed, asked with the copy and answered by it or by a HEAD of the
/// copy (`size+crc64nvme+server-side`). An object above
/// `serverSideCopyCutoff` (at most 5 GiB) is copied in parts
/// ([`copy_in_parts`]) and always held to the source's CRC-64/NVME: the
/// ETag of a copy in parts is no MD5 of the whole. `None` wherever that
/// cannot be shown (a multipart, SSE-KMS or cut-off source without a
/// CRC-64/NVME, or with `workerRecordMd5`; `verifyMode=readback`; a store
/// that refuses the copy or answers another ETag or CRC): the object is
/// then streamed through as any other, which fails or verifies it by the
/// usual rules. A refusal of access (the destination's keys may not read
/// the source) stops server-side copies for the rest of the job.
async fn server_side(
    ex: &Executor,
    store: &S3Store,
    key: &str,
    obj: &ObjectSpec,
    mode: VerifyMode,
    events: &mpsc::Sender<Event>,
) -> Option<Verified> {
    use std::sync::atomic::Ordering;
    let Source::S3 { store: src, prefix } = &ex.source else {
        return None;
    };
    if !ex.server_side.load(Ordering::Relaxed)
        || mode == VerifyMode::ReadBack
        || store.unauthenticated()
    {
        return None;
    }
    let in_parts = obj.size > ex.spec.server_side_copy_cutoff.min(MAX_SERVER_SIDE);
    let listed = obj.src_ref.as_deref()?.trim_matches('"');
    let md5 = Some(listed)
        .filter(|e| plain_md5(e))
        .and_then(|e| storage::checksum::parse_md5_hex(&e.to_ascii_lowercase()));
    if md5.is_none() && ex.spec.record_md5 {
        return None;
    }
    // The proof: the listed MD5 for one CopyObject of a plain object; the
    // source's full-object CRC-64/NVME otherwise.
    let by_crc = md5.is_none() || in_parts;
    let src_key = format!("{prefix}{}", obj.rel_path);
    let now = match (by_crc, ex.spec.copy_metadata) {
        (false, false) => None,
        _ => Some(source_now(src, &src_key, obj, by_crc).await?),
    };
    let nvme = now.as_ref().and_then(|n| n.nvme);
    let sent = match (md5.filter(|_| !by_crc), nvme) {
        (Some(m), _) => Sent::recorded(obj.size, m),
        (None, Some(crc)) => Sent::stored_nvme(obj.size, crc),
        (None, None) => return None,
    };
    let meta = our_meta(ex, obj, &md5.map(|m| checksum::hex(&m)).unwrap_or_default());
    let headers = match (ex.spec.copy_metadata, now) {
        (true, Some(now)) => Some(source_metadata(ex, src, &src_key, now, &meta).await?),
        _ => None,
    };
    let from = storage::s3::CopySource {
        bucket: src.bucket(),
        key: &src_key,
        if_match: listed,
        nvme: by_crc,
    };
    let copied = match nvme.filter(|_| in_parts) {
        Some(crc) => {
            let what = (&meta[..], headers.as_ref());
            copy_in_parts(ex, store, key, obj, from, crc, what, events).await
        }
        None => store.copy_object(key, from, &meta, headers.as_ref()).await,
    };
    let answer = match copied {
        Ok(a) => a,
        Err(e) => {
            if e.kind == ErrorKind::Denied && ex.server_side.swap(false, Ordering::Relaxed) {
                tracing::warn!(key, error = %e, "The destination may not read the source: objects are streamed through from now on.");
            } else {
                tracing::debug!(key, error = %e, "Server-side copy not made; streaming the object.");
            }
            return None;
        }
    };
    if !in_parts {
        ex.add_progress(obj.size);
    }
    let mut checks = Checks::new(sent);
    checks.answer((&answer).into()).ok()?;
    if by_crc {
        // The copy's CRC: from its answer (S3 computes it), else as the
        // store now keeps it for the copy, with its size.
        let copy = store.head_with_checksum(key).await.ok()?;
        checks.answer((&copy).into()).ok()?;
    }
    let v = checks.finish(mode).ok()?;
    let digest = headers.unwrap_or_default().digest(key);
    Some(v.server_side().with_metadata(digest))
}

/// A server-side copy in parts: an upload started with CRC-64/NVME
/// (recorded, so a run stopped half-way aborts it before anything else),
/// each part (`multipartUploadPartSize`, `uploadThreadNumPerLargeFile` at
/// once) copied by `UploadPartCopy` from its byte range of the source while
/// the source's ETag is the listed one, completed with `nvme`, the
/// source's full-object CRC-64/NVME, which the store refuses if the copy's
/// differs. A failed copy is aborted, and its abort recorded.
#[allow(clippy::too_many_arguments)]
async fn copy_in_parts(
    ex: &Executor,
    store: &S3Store,
    key: &str,
    obj: &ObjectSpec,
    from: storage::s3::CopySource<'_>,
    nvme: u64,
    (meta, headers): (&[(&'static str, String)], Option<&ObjectHeaders>),
    events: &mpsc::Sender<Event>,
) -> Result<storage::s3::PutAnswer, storage::s3::S3Error> {
    use futures_util::{StreamExt, TryStreamExt};
    let part_size = part_size(ex, obj);
    let what = (obj.object_id, part_size, true);
    let id = crate::dest::start_upload(store, key, (meta, headers), what, events).await?;
    let upload = storage::s3::Upload {
        key,
        id: &id,
        nvme: true,
    };
    let ranges = (0..obj.size.div_ceil(part_size)).map(|i| {
        let start = i * part_size;
        (i as u32 + 1, (start, (start + part_size).min(obj.size) - 1))
    });
    let copied = futures_util::stream::iter(ranges)
        .map(|(n, range)| {
            let upload = &upload;
            async move {
                let a = store.upload_part_copy(upload, n, from, range).await?;
                ex.add_part_progress(obj.object_id, range.1 + 1 - range.0);
                Ok::<_, storage::s3::S3Error>((n, a.etag))
            }
        })
        .buffered(ex.spec.part_concurrency.max(1) as usize)
        .try_collect::<Vec<_>>()
        .await;
    let done = match copied {
        Ok(parts) => store.complete_multipart(key, &id, &parts, Some(nvme)).await,
        Err(e) => Err(e),
    };
    if done.is_err() && store.abort_multipart(key, &id).await.is_ok() {
        let _ = events
            .send(Event::UploadAborted {
                object_id: obj.object_id,
            })
            .await;
    }
    done
}

/// The object's mtime (unix seconds): as listed, else (a URL, which no
/// listing dates) the Last-Modified its GET answered; 0 when neither says.
fn source_mtime(obj: &ObjectSpec, body: &RemoteBody) -> i64 {
    match obj.mtime {
        0 => body.last_modified.unwrap_or(0),
        t => t,
    }
}

/// The source object's metadata as it will be written (`copyMetadata`):
/// user metadata values that are not ASCII as RFC 2047 encoded words, the
/// rest as the source said; refused whole if the destination cannot store
/// all of it besides `ours` bytes of our own user metadata
/// (`META_INVALID`, naming what).
fn sendable(
    ex: &Executor,
    body: &mut RemoteBody,
    ours: usize,
) -> Result<Option<ObjectHeaders>, Attempt> {
    let Some(mut h) = body.headers.take().filter(|_| ex.spec.copy_metadata) else {
        return Ok(None);
    };
    h.encode_user_values();
    h.check(ours)
        .map_err(|e| Fail(ErrorCode::MetaInvalid, format!("the source's {e}")))?;
    Ok(Some(h))
}

/// Compares what was received with the source's own ETag when it is a
/// plain MD5 the source vouches for, and with its `Content-MD5` when it
/// states one: a mismatch means the bytes were damaged on the way (retry).
fn check_source_etag(
    ex: &Executor,
    obj: &ObjectSpec,
    body: &RemoteBody,
    digest: &Digest,
) -> Result<(), Attempt> {
    if let (Source::S3 { .. } | Source::Cdn { .. }, Some(etag)) = (&ex.source, &obj.src_ref) {
        crate::verify::check_source(etag, body.etag_is_md5, digest).map_err(Attempt::Retry)?;
    }
    if let Some(md5) = &body.content_md5 {
        let got = digest.md5_hex().unwrap_or_else(|| "(not computed)".into());
        if !md5.eq_ignore_ascii_case(&got) {
            return Err(Attempt::Retry(format!(
                "received bytes have MD5 {got} but the source's Content-MD5 is {md5}"
            )));
        }
    }
    Ok(())
}

/// Whether the source states an MD5 the received bytes can be held to (a
/// bucket's plain-MD5 ETag, an Azure blob's Content-MD5): they are then
/// hashed with MD5 whatever the destination confirms.
fn source_states_md5(ex: &Executor, obj: &ObjectSpec, body: &RemoteBody) -> bool {
    body.content_md5.is_some()
        || (matches!(ex.source, Source::S3 { .. } | Source::Cdn { .. })
            && body.etag_is_md5
            && obj.src_ref.as_deref().is_some_and(plain_md5))
}

#[allow(clippy::too_many_arguments)]
async fn multipart(
    ex: &Arc<Executor>,
    store: &S3Store,
    key: &str,
    obj: &ObjectSpec,
    body: &mut RemoteBody,
    meta: &[(&'static str, String)],
    headers: Option<&storage::meta::ObjectHeaders>,
    events: &mpsc::Sender<Event>,
) -> Result<Checks, Attempt> {
    let part_size = part_size(ex, obj);
    let nvme = store.proof() == storage::s3::proof::Proof::Crc64Nvme;
    let what = (obj.object_id, part_size, nvme);
    let upload_id = crate::dest::start_upload(store, key, (meta, headers), what, events)
        .await
        .map_err(dest_err)?;
    let r = stream_parts(
        ex,
        store,
        key,
        obj,
        body,
        (part_size, nvme),
        &upload_id,
        events,
    )
    .await;
    if r.is_err() && store.abort_multipart(key, &upload_id).await.is_ok() {
        let _ = events
            .send(Event::UploadAborted {
                object_id: obj.object_id,
            })
            .await;
    }
    r
}

#[allow(clippy::too_many_arguments)]
async fn stream_parts(
    ex: &Arc<Executor>,
    store: &S3Store,
    key: &str,
    obj: &ObjectSpec,
    body: &mut RemoteBody,
    // The part size, and whether the upload carries CRC-64/NVME.
    (part_size, nvme): (u64, bool),
    upload_id: &str,
    events: &mpsc::Sender<Event>,
) -> Result<Checks, Attempt> {
    // Parts with MD5 where the destination confirms nothing else; the whole
    // object where the source states an MD5 to hold it to.
    let md5 = needs_md5(ex, store).await;
    let mut whole = Hasher::with_md5(md5 || source_states_md5(ex, obj, body));
    let inflight = Arc::new(Semaphore::new(ex.spec.part_concurrency.max(1) as usize));
    let mut set: JoinSet<Step<PartRecord>> = JoinSet::new();
    let mut parts: Vec<PartRecord> = Vec::new();
    let mut pending = None;
    let mut number = 0u32;
    let retries = storage::s3::RETRIES
        .try_with(Arc::clone)
        .unwrap_or_default();
    loop {
        let permit = inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Fail(ErrorCode::DestError, "shutting down".into()))?;
        let mib = (part_size.div_ceil(1 << 20) as u32).clamp(1, ex.memory_mib);
        let mem = ex
            .memory
            .clone()
            .acquire_many_owned(mib)
            .await
            .map_err(|_| Fail(ErrorCode::DestError, "shutting down".into()))?;
        let mut buf = BytesMut::with_capacity(part_size as usize);
        let more = fill(
            ex,
            obj.object_id,
            body,
            &mut buf,
            part_size as usize,
            &mut pending,
        )
        .await?;
        if buf.is_empty() {
            break;
        }
        whole.update(&buf);
        number += 1;
        let data = buf.freeze();
        let (store, key, upload_id, events, object_id, retries) = (
            store.clone(),
            key.to_owned(),
            upload_id.to_owned(),
            events.clone(),
            obj.object_id,
            retries.clone(),
        );
        let fut = async move {
            let _permit = permit;
            let _mem = mem;
            let digest = checksum::digest_with(&data, md5);
            send_part(
                &store,
                &key,
                &upload_id,
                number,
                PartBody::Bytes(data),
                &digest,
                nvme,
                object_id,
                &events,
            )
            .await
        };
        set.spawn(storage::s3::RETRIES.scope(retries, fut));
        while let Some(r) = set.try_join_next() {
            parts.push(joined(r)?);
        }
        if !more {
            break;
        }
    }
    while let Some(r) = set.join_next().await {
        parts.push(joined(r)?);
    }
    parts.sort_by_key(|p| p.number);
    let digest = whole.finish();
    check_source_etag(ex, obj, body, &digest)?;
    // The source's own multipart ETag is not compared: its part size is
    // unknown, so a different ETag proves nothing.
    let answer = complete_parts(store, key, upload_id, &parts).await?;
    let mut checks = Checks::new(Sent::whole_with_parts(digest, part_md5s(&parts)?));
    checks.answer((&answer).into())?;
    Ok(checks)
}

fn joined(r: Result<Step<PartRecord>, tokio::task::JoinError>) -> Result<PartRecord, Attempt> {
    match r {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(f)) => Err(f.into()),
        Err(e) => Err(Fail(ErrorCode::DestError, format!("part upload crashed: {e}")).into()),
    }
}

/// Remote source into a local directory: streamed into a new temporary
/// file beneath `dir` (mode 0600: a remote object has no permissions to
/// keep, and the directory may be readable by others), renamed into place,
/// then read back and compared.
async fn copy_to_dir(
    ex: &Executor,
    dir: &std::path::Path,
    key: &str,
    obj: &ObjectSpec,
    mode: VerifyMode,
    lease: &CancellationToken,
) -> Result<Verified, Attempt> {
    use tokio::io::AsyncWriteExt;
    let mut body = open(ex, obj).await?;
    let derr = |e: std::io::Error| {
        Attempt::Fail(Fail(
            ErrorCode::DestError,
            format!("writing {key} under {}: {e}", dir.display()),
        ))
    };
    let (root, name) = (dir.to_path_buf(), key.to_owned());
    // Directories as private as the file: a remote object has no modes.
    let out = blocking(move || storage::beneath::create_beneath(&root, &name, 0o600, &|_| 0o700))
        .await
        .map_err(derr)?;
    let mut f = tokio::fs::File::from_std(out.file.try_clone().map_err(derr)?);
    let mut h = Hasher::new();
    let result = async {
        while let Some(chunk) = body.next().await.map_err(source_fail)? {
            storage::limit::throttle(Some(&*ex.bandwidth), chunk.len() as u64).await;
            ex.add_progress(chunk.len() as u64);
            h.update(&chunk);
            f.write_all(&chunk).await.map_err(derr)?;
        }
        f.flush().await.map_err(derr)?;
        f.sync_data().await.map_err(derr)?;
        Ok::<(), Attempt>(())
    }
    .await;
    drop(f);
    // On failure `out` is dropped, which removes the temporary.
    result?;
    let digest = h.finish();
    check_source_etag(ex, obj, &body, &digest)?;
    // Listed sources declare their size; a URL list's is known only now.
    if !matches!(ex.source, Source::Http { .. }) && digest.len != obj.size {
        return Err(Attempt::Fail(Fail(
            ErrorCode::SizeNotMatch,
            format!(
                "listed with {} bytes but {} bytes were received",
                obj.size, digest.len
            ),
        )));
    }
    // The temporary is checked before it replaces anything.
    let mut checks = Checks::new(Sent::whole(digest));
    checks.answer(Answer::size_only(out.file.metadata().map_err(derr)?.len()))?;
    let out = if mode != VerifyMode::Size {
        let (back, out) = blocking(move || Ok((storage::local::hash_open(&out.file)?, out)))
            .await
            .map_err(derr)?;
        checks.read_back(&back)?;
        out
    } else {
        out
    };
    let verified = checks.finish(mode)?;
    // The object's time, as a local source's file keeps its own.
    let mtime = source_mtime(obj, &body);
    if mtime > 0 {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64);
        out.file.set_modified(when).map_err(derr)?;
    }
    crate::local::commit_local(out, lease, None)
        .await
        .map_err(|e| match e {
            crate::local::Commit::Io(e) => derr(e),
            crate::local::Commit::Fail(f) => Attempt::Fail(f),
        })?;
    Ok(verified)
}

/// `jobType=audit` for a remote source: streams the source, hashing it,
/// and compares with the destination.
pub(crate) async fn audit(ex: &Arc<Executor>, obj: &ObjectSpec) -> Step<Verified> {
    retried(ex, || audit_once(ex, obj)).await
}

async fn audit_once(ex: &Arc<Executor>, obj: &ObjectSpec) -> Result<Verified, Attempt> {
    let key = dest_name(&ex.dest, &obj.rel_path)?;
    let mut body = open(ex, obj).await?;
    let mut whole = Hasher::new();
    let part_size = ex.spec.part_size.max(1);
    let mut part = Hasher::new();
    let mut in_part = 0u64;
    let mut md5s = Vec::new();
    while let Some(chunk) = body.next().await.map_err(source_fail)? {
        storage::limit::throttle(Some(&*ex.bandwidth), chunk.len() as u64).await;
        ex.add_progress(chunk.len() as u64);
        whole.update(&chunk);
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let n = rest.len().min((part_size - in_part) as usize);
            part.update(&rest[..n]);
            in_part += n as u64;
            rest = &rest[n..];
            if in_part == part_size {
                md5s.extend(std::mem::take(&mut part).finish().md5);
                in_part = 0;
            }
        }
    }
    if in_part > 0 {
        md5s.extend(part.finish().md5);
    }
    let src = whole.finish();
    let mode = ex.verify_mode(obj.mtime);
    let mut checks = Checks::new(Sent::whole_with_parts(src, md5s));
    let sent = sendable(ex, &mut body, 0)?;
    // The source's metadata now, as a copy would write it.
    let digest = sent.clone().unwrap_or_default().digest(&key);
    match &ex.dest {
        Dest::S3 { store, .. } => {
            let info = match store.head(&key).await {
                Ok(i) => i,
                Err(e) if e.kind == ErrorKind::NotFound => {
                    return Err(Fail(
                        ErrorCode::DestMissing,
                        format!("{key} does not exist at the destination"),
                    )
                    .into());
                }
                Err(e) => return Err(dest_err(e).into()),
            };
            checks.answer((&info).into())?;
            if !checks.proven(mode) {
                let back = store.read_back(&key).await.map_err(dest_err)?;
                checks.read_back(&back)?;
            }
            if let Some(d) = sent.and_then(|s| s.difference(&info.headers, &key)) {
                return Err(Fail(ErrorCode::MetaMismatch, d).into());
            }
        }
        Dest::Local { dir, .. } => {
            let (root, name) = (dir.clone(), key.clone());
            let hashed = blocking(move || {
                let f = storage::beneath::open_dest(&root, &name)?;
                storage::local::hash_open(&f.file)
            })
            .await;
            let Ok(d) = hashed else {
                return Err(Fail(
                    ErrorCode::DestMissing,
                    format!("{key} does not exist at the destination"),
                )
                .into());
            };
            checks.answer(Answer::size_only(d.len))?;
            checks.read_back(&d)?;
        }
    }
    let v = checks.finish(mode)?;
    Ok(match ex.dest {
        Dest::S3 { .. } => v.with_metadata(digest),
        Dest::Local { .. } => v,
    })
}
