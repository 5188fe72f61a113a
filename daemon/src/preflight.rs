//! The checks before a job starts: the source and the destination are
//! reachable (a typo fails in a second with a clear message, not as
//! thousands of failed objects). The plan itself ([`job::plan`]) touches
//! no network; this is the daemon's part.

use std::time::Duration;

use job::plan::Plan;
use proto::job::SourceSpec;
use proto::job::{Bucket, DestSpec, OverwriteMode, WriteIf};
use storage::s3::{S3Config, S3Store};

/// What `run`, `submit` and the dry run check first.
#[allow(async_fn_in_trait)]
pub trait Preflight {
    /// Source and destination reachable; a missing `destDir` is made.
    async fn preflight(&self) -> anyhow::Result<()>;
    /// The same, writing nothing: a missing `destDir` is reported, not made
    /// (`--dry-run`).
    async fn preflight_read_only(&self) -> anyhow::Result<()>;
}

impl Preflight for Plan {
    async fn preflight(&self) -> anyhow::Result<()> {
        check(self, true).await
    }

    async fn preflight_read_only(&self) -> anyhow::Result<()> {
        check(self, false).await
    }
}

async fn check_bucket(
    store: &S3Store,
    key: &str,
    side: &str,
    bucket: &Bucket,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(60), store.check_bucket())
        .await
        .map_err(|_| anyhow::anyhow!("{key} {}: no answer within 60 s", bucket.endpoint))?
        .map_err(|e| anyhow::anyhow!("{side} bucket {} at {}: {e}", bucket.name, bucket.endpoint))
}

async fn check(plan: &Plan, create: bool) -> anyhow::Result<()> {
    if let Some(root) = plan.scan.local_root() {
        match std::fs::metadata(root) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => anyhow::bail!("srcPrefix {} is not a directory", root.display()),
            Err(e) => anyhow::bail!("srcPrefix {}: {e}", root.display()),
        }
    }
    // The bucket that is listed (a CDN source downloads elsewhere, but
    // lists here).
    if let Some(cfg) = plan.scan.bucket() {
        let bucket = &cfg.bucket;
        let store = S3Store::new(&cfg);
        check_bucket(&store, "srcDomain", "source", bucket)
            .await
            .map_err(|e| match plan.source_hint {
                Some(h) => anyhow::anyhow!("{e:#} ({h})"),
                None => e,
            })?;
    }
    if let SourceSpec::Azure(container) = &plan.scan.source {
        let src = storage::azure::AzureSource::new(container, plan.scan.attempts)
            .map_err(|e| anyhow::anyhow!("srcDomain: {e}"))?;
        tokio::time::timeout(Duration::from_secs(60), src.check())
            .await
            .map_err(|_| anyhow::anyhow!("srcDomain {}: no answer within 60 s", container.endpoint))?
            .map_err(|e| {
                anyhow::anyhow!(
                    "source container {}: {e} (srcAccessKey is the storage account, srcSecretKey its key or a SAS token)",
                    container.name
                )
            })?;
    }
    if let Some(dir) = &plan.dest_dir {
        if create {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("destDir {}: {e}", dir.display()))?;
        } else if !dir.is_dir() {
            eprintln!(
                "note: destDir {} does not exist yet; the real run creates it",
                dir.display()
            );
        }
    }
    if let DestSpec::S3 { bucket, .. } = &plan.spec.dest {
        let store = S3Store::new(&S3Config::new(bucket.clone(), plan.spec.max_attempts));
        check_bucket(&store, "destDomain", "destination", bucket).await?;
        if plan.spec.overwrite != OverwriteMode::Always && create {
            conditional_writes(&store, bucket, plan.spec.overwrite).await?;
        }
    }
    Ok(())
}

/// `overwriteMode=ours`/`never` rest on the destination refusing a write
/// whose condition fails: a probe object is created, then written again
/// under `If-None-Match: *` and under `If-Match` on an ETag it does not
/// have. Both must be refused (412); a store that takes either ignores the
/// condition, and the mode is refused for it rather than trusted. The
/// probe is removed.
async fn conditional_writes(
    store: &S3Store,
    bucket: &Bucket,
    mode: OverwriteMode,
) -> anyhow::Result<()> {
    use storage::s3::{ErrorKind, WRITE_IF};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let key = format!(
        "{}.ossimport-probe-{}-{nanos}",
        bucket.prefix,
        std::process::id()
    );
    let body = hyper::body::Bytes::from_static(b"ossimport conditional write probe");
    let digest = storage::checksum::digest_with(&body, true);
    let put = |w: WriteIf| {
        let (key, body) = (key.clone(), body.clone());
        WRITE_IF.scope(w, async move {
            store.put_bytes(&key, body, &digest, &[], None).await
        })
    };
    let at = format!("destination bucket {} at {}", bucket.name, bucket.endpoint);
    put(WriteIf::Absent)
        .await
        .map_err(|e| anyhow::anyhow!("{at}: writing a probe object for overwriteMode: {e}"))?;
    let again = put(WriteIf::Absent).await;
    let wrong = WriteIf::Etag("00000000000000000000000000000000".into());
    let other = put(wrong.clone()).await;
    // A large object's condition rides on CompleteMultipartUpload, which a
    // store may check apart from PUT's (moto checks only `If-None-Match`
    // there).
    let completed = async {
        let id = store.create_multipart(&key, &[], None, false).await?;
        let upload = storage::s3::Upload {
            key: &key,
            id: &id,
            nvme: false,
        };
        let part = store.upload_part(&upload, 1, body.clone(), &digest).await?;
        let r = WRITE_IF
            .scope(
                wrong,
                store.complete_multipart(&key, &id, &[(1, part.etag)], None),
            )
            .await;
        if r.is_err() {
            let _ = store.abort_multipart(&key, &id).await;
        }
        r
    }
    .await;
    let _ = store
        .client()
        .delete_object()
        .bucket(store.bucket())
        .key(&key)
        .send()
        .await;
    for (what, r) in [
        ("a PUT with If-None-Match: *", again),
        ("a PUT with If-Match on another ETag", other),
        (
            "a CompleteMultipartUpload with If-Match on another ETag",
            completed,
        ),
    ] {
        match r {
            Err(e) if e.kind == ErrorKind::PreconditionFailed => {}
            Ok(_) => anyhow::bail!(
                "{at} ignores conditional writes ({what} overwrote an existing object): overwriteMode={} cannot be trusted there; use overwriteMode=always",
                mode.as_str()
            ),
            Err(e) => anyhow::bail!(
                "{at}: {what} was refused otherwise than as a failed condition ({e}): overwriteMode={} cannot be trusted there; use overwriteMode=always",
                mode.as_str()
            ),
        }
    }
    Ok(())
}
