//! The checks before a job starts: the source and the destination are
//! reachable (a typo fails in a second with a clear message, not as
//! thousands of failed objects). The plan itself ([`job::plan`]) touches
//! no network; this is the daemon's part.

use std::time::Duration;

use job::plan::Plan;
use proto::job::SourceSpec;
use proto::job::{Bucket, DestSpec};
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
    }
    Ok(())
}
