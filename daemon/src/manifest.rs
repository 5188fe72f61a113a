//! Where a manifest row's object came from and went to, from the job's
//! spec: the store keeps relative paths only.

use proto::api::ManifestRow;
use proto::job::{DestSpec, JobSpec, SourceSpec};

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
