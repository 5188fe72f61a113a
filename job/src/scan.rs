//! What a listing reads and how it cuts tasks: the source, the filters, the
//! task limits and the destination's case rule, as the plan makes them
//! from the job's files. The scanner (`daemon::scanner`) carries them out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use storage::s3::S3Config;

use crate::filter::Filter;
use proto::job::SourceSpec;

/// The URL list of an HTTP source: read by the listing alone (executors
/// get each object's URL as its `src_ref`).
#[derive(Clone, Debug)]
pub struct HttpList {
    /// `httpListFilePath`.
    pub path: PathBuf,
    /// 1-based columns (`httpPrefixColumn`, `relativePathColumn`).
    pub prefix_column: usize,
    pub rel_column: usize,
}

/// How to list a source and cut it into tasks.
#[derive(Clone, Debug)]
pub struct ScanConfig {
    /// What the listing reads: the job's source as its executors get it
    /// (`JobSpec::source`), but for a job that downloads through a CDN the
    /// bucket or container behind the CDN: `SourceSpec::Cdn` is never
    /// listed. The source is modelled once, in `proto`; this adds only
    /// what a listing needs besides.
    pub source: SourceSpec,
    /// The URL list, for `SourceSpec::Http` (required there).
    pub http_list: Option<HttpList>,
    /// Keys or blobs per listing page (`srcListPageSize`).
    pub page_size: u32,
    /// Attempts per listing request, including the first.
    pub attempts: u32,
    /// Include/exclude globs on the relative path.
    pub filter: Filter,
    pub task_count_limit: u64,
    pub task_size_limit: u64,
    /// Only files with an mtime later than this (unix seconds; 0 = all).
    pub import_since: i64,
    /// Closes a task that has been open this long even if it is not full,
    /// so copying starts while a slow listing is still filling a task.
    pub max_task_age: Option<Duration>,
    /// Incremental jobs: the time from the end of one pass to the start of
    /// the next (`incrementalModeInterval`); `None`: one pass.
    pub incremental: Option<Duration>,
    /// `incrementalMode=watch` (local sources): between passes the tree is
    /// watched, and a pass lists only what changed once it has settled
    /// (closed after writing, or untouched this long); `None`: rescan.
    pub watch: Option<Duration>,
    /// Listers at once (`scanThreadCount`; 1: one walk in order). URL
    /// lists are always read in order.
    pub threads: usize,
    /// How deep the listing is split into branches listed at once
    /// (`maxMultiThreadScanDepth`, 1: the top-level directories/prefixes).
    pub split_depth: usize,
    /// The local destination directory (`destDir`), if any: with a local
    /// source, each pass first checks the two trees still do not overlap (a
    /// symlink or mount changed since submit would make it list its own
    /// copies); and `dest_case` may look at it.
    pub dest_dir: Option<PathBuf>,
    /// Whether destination keys that differ only in case are one key.
    pub dest_case: DestCase,
    /// A bucket object whose LastModified changed with its ETag and size
    /// the same (its metadata was replaced) is a change for a later pass
    /// (`copyMetadata=true`).
    pub metadata_changes: bool,
}

impl ScanConfig {
    /// The directory a local source lists.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.source {
            SourceSpec::Local { root, .. } => Some(Path::new(root)),
            _ => None,
        }
    }

    /// How to reach the bucket an S3-compatible source lists.
    pub fn bucket(&self) -> Option<S3Config> {
        match &self.source {
            SourceSpec::S3(b) => Some(S3Config::new(b.clone(), self.attempts)),
            _ => None,
        }
    }
}

/// How destination keys are compared for `DUPLICATE_KEY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DestCase {
    /// As they are (buckets).
    #[default]
    Exact,
    /// Probed at the start of each pass: without case where `destDir`'s
    /// file system does not tell case apart (a probe file may be made and
    /// removed at once when `destDir` is empty).
    Probe,
    /// Probed from what is in `destDir` only, writing nothing (dry runs).
    ProbeReadOnly,
    /// Without case, whatever the file system says.
    Fold,
}
