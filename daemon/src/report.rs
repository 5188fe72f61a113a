//! What a job holds, told from its store: the report (counts, how objects
//! were verified, failures, passes, deletions, control calls), failures a
//! page at a time and as an errors file, and manifest pages with each row's
//! source and destination names. One module for `ossimportctl run`
//! ([`crate::standalone`]) and the control API ([`crate::ctl_api`]) alike;
//! what they print is the caller's. Memory is bounded by the page.

use std::io::Write;
use std::path::Path;

use proto::api::{
    ErrorList, FailedEntry, JobState, ManifestPage, ManifestRow, Report, VerifyMethod,
};
use proto::job::{DestSpec, JobSpec, SourceSpec};

use crate::store::{FailedObject, Store, StoreError};

/// Failures after `after` (a path), at most `limit`, in path order.
pub fn errors(
    store: &Store,
    job_id: i64,
    name: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<ErrorList, StoreError> {
    let p = store.failed_page(job_id, after, limit)?;
    Ok(ErrorList {
        job: name.to_string(),
        failed: p.failed.into_iter().map(entry).collect(),
        next: p.next,
    })
}

/// A job's report, its failures and deletions the first `limit` after
/// `after`.
pub fn report(
    store: &Store,
    job_id: i64,
    name: &str,
    state: JobState,
    after: Option<&str>,
    limit: usize,
) -> Result<Report, StoreError> {
    let p = store.failed_page(job_id, after, limit)?;
    Ok(Report {
        job: name.to_string(),
        state,
        counts: store.counts(job_id)?,
        methods: store
            .verify_methods(job_id)?
            .into_iter()
            .map(|(verified_by, objects, bytes)| VerifyMethod {
                verified_by,
                objects,
                bytes,
            })
            .collect(),
        failed: p.failed.into_iter().map(entry).collect(),
        next: p.next,
        passes: store.passes(job_id)?,
        deleted: store.deleted_page(job_id, None, limit)?,
        control: store.control_log(name)?,
    })
}

/// Manifest rows after object id `after`, at most `limit`, each located
/// with the job's spec when it is known ([`locate`]); `next` is set when
/// the page is full.
pub fn manifest(
    store: &Store,
    job_id: i64,
    spec: Option<&JobSpec>,
    after: i64,
    limit: usize,
) -> Result<ManifestPage, StoreError> {
    let mut rows = store.manifest_page(job_id, after, limit)?;
    if let Some(spec) = spec {
        for r in &mut rows {
            locate(spec, r);
        }
    }
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(ManifestPage { rows, next })
}

/// Every failure of a job into `path`, one line each
/// ([`proto::api::failure_line`]) under a header, a page at a time.
pub fn errors_file(store: &Store, job_id: i64, path: &Path) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"code\tpath\treason\n")?;
    let mut io = Ok(());
    store
        .for_each_failed(job_id, |f| {
            if io.is_ok() {
                io = writeln!(
                    out,
                    "{}",
                    proto::api::failure_line(&f.code, &f.rel_path, &f.message)
                );
            }
            Ok(())
        })
        .map_err(std::io::Error::other)?;
    io?;
    out.flush()
}

fn entry(f: FailedObject) -> FailedEntry {
    FailedEntry {
        path: f.rel_path,
        code: f.code,
        message: f.message,
    }
}

/// Rewrites a row from [`crate::store::Store::manifest_page`]: `key`
/// becomes the destination key (or the path below `destDir`), `source` the
/// source's own name for the object (a path, `bucket/key`,
/// `container/blob`, a URL).
pub fn locate(spec: &JobSpec, row: &mut ManifestRow) {
    let rel = std::mem::take(&mut row.key);
    row.source = match &spec.source {
        SourceSpec::Local { root, .. } => {
            format!("{}/{rel}", root.trim_end_matches('/'))
        }
        SourceSpec::S3(b) | SourceSpec::Azure(b) => format!("{}/{}{rel}", b.name, b.prefix),
        SourceSpec::Cdn { domain, prefix } => format!("{domain}/{prefix}{rel}"),
        // The URL is what was listed.
        SourceSpec::Http => std::mem::take(&mut row.source),
    };
    row.key = match &spec.dest {
        DestSpec::S3 { bucket, .. } => format!("{}{rel}", bucket.prefix),
        DestSpec::Local { prefix, .. } => format!("{prefix}{rel}"),
    };
}
