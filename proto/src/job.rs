//! What an executor needs to run tasks of a job, and what it reports back.

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Everything an executor needs to copy a job's objects. Sent once per job
/// (or with each batch) to whoever executes tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub job_id: i64,
    pub job_name: String,
    pub mode: JobMode,
    pub source: SourceSpec,
    pub dest: DestSpec,
    /// Objects strictly larger than this use multipart upload.
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// Parts of one large file in flight.
    pub part_concurrency: u32,
    /// Objects in flight (`workerTaskThreadNum`).
    pub object_concurrency: u32,
    pub verify: VerifyMode,
    pub skip: SkipMode,
    /// Store the source MD5 in `x-*-meta-md5` (`workerRecordMd5`).
    pub record_md5: bool,
    /// Attempts per request (first included) for retryable failures.
    pub max_attempts: u32,
    /// Carry a remote source's object metadata to the destination
    /// (`copyMetadata`).
    #[serde(default = "yes")]
    pub copy_metadata: bool,
    /// Carry a bucket source's object tags (`copyTags`; one more request
    /// per object).
    #[serde(default)]
    pub copy_tags: bool,
    /// Keep a local file's attributes (`preserveFileAttrs`).
    #[serde(default)]
    pub preserve_file_attrs: bool,
    /// Copy within the store when source and destination are buckets of
    /// one endpoint (`serverSideCopy=auto`, the default; `never`).
    #[serde(default = "yes")]
    pub server_side_copy: bool,
    /// Server-side copies of larger objects are made in parts
    /// (`serverSideCopyCutoff`; 5 GiB when not sent, the most one
    /// `CopyObject` makes).
    #[serde(default = "copy_cutoff")]
    pub server_side_copy_cutoff: u64,
    /// What may be overwritten at the destination (`overwriteMode`).
    #[serde(default)]
    pub overwrite: OverwriteMode,
    /// Caps and deadlines.
    #[serde(default)]
    pub limits: Limits,
}

fn yes() -> bool {
    true
}

/// The most one `CopyObject` makes (5 GiB).
fn copy_cutoff() -> u64 {
    5 << 30
}

/// What a copy may overwrite at the destination (`overwriteMode`, ours).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverwriteMode {
    /// Whatever is there (the original's way).
    #[default]
    Always,
    /// Only what this job wrote and the destination still holds
    /// (`If-Match` on the ETag it verified), or nothing (`If-None-Match: *`)
    /// for a key it never wrote: anyone else's object is a `DEST_CONFLICT`.
    Ours,
    /// Nothing: objects are only created (`If-None-Match: *`).
    Never,
}

/// The condition a write of one object is made under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteIf {
    /// None.
    Any,
    /// Only if the key holds nothing.
    Absent,
    /// Only if the key still holds this ETag.
    Etag(String),
}

impl OverwriteMode {
    /// The spelling in `job.cfg`.
    pub fn as_str(self) -> &'static str {
        match self {
            OverwriteMode::Always => "always",
            OverwriteMode::Ours => "ours",
            OverwriteMode::Never => "never",
        }
    }

    /// The condition for an object whose key this job last verified with
    /// `dest_etag` (`None`: never written by it).
    pub fn write_if(self, dest_etag: Option<&str>) -> WriteIf {
        match (self, dest_etag) {
            (OverwriteMode::Always, _) => WriteIf::Any,
            (OverwriteMode::Ours, Some(e)) => WriteIf::Etag(e.to_string()),
            (OverwriteMode::Ours, None) | (OverwriteMode::Never, _) => WriteIf::Absent,
        }
    }
}

/// Caps an executor enforces; zero means none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes per second over all transfers of the executor
    /// (`workerMaxThroughput(KB/s)` x 1024).
    pub bytes_per_second: u64,
    /// Requests per second to the source and destination stores.
    pub requests_per_second: u32,
    /// Seconds one object may take, retries included.
    pub object_timeout_secs: u64,
    /// Seconds an endpoint may stay unreachable before the objects waiting
    /// for it fail `ENDPOINT_DOWN` (0: no limit).
    #[serde(default)]
    pub endpoint_outage_secs: u64,
    /// `lastModify`: objects modified after this (unix seconds) are checked
    /// by size only, as the original did.
    pub last_modify: i64,
    /// `workerMaxThroughputSchedule`: bandwidth by time of day, evaluated
    /// by the daemon, which sets `bytes_per_second` from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_schedule: Option<String>,
}

/// The limits `ossimportctl set` (or a bandwidth schedule) changes while a
/// job runs; executors apply them to transfers in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveLimits {
    pub job_id: i64,
    /// Bytes per second per executor, 0 for none.
    pub bytes_per_second: u64,
    /// Requests per second per executor, 0 for none.
    pub requests_per_second: u32,
    /// Objects in flight per executor (`workerTaskThreadNum`).
    pub object_concurrency: u32,
}

impl JobSpec {
    /// The limits of this spec that can change while the job runs.
    pub fn live_limits(&self) -> LiveLimits {
        LiveLimits {
            job_id: self.job_id,
            bytes_per_second: self.limits.bytes_per_second,
            requests_per_second: self.limits.requests_per_second,
            object_concurrency: self.object_concurrency,
        }
    }

    /// This spec without what can change while the job runs: executors
    /// keep one executor per job across limit changes by comparing these.
    pub fn identity(&self) -> JobSpec {
        let mut s = self.clone();
        s.limits.bytes_per_second = 0;
        s.limits.requests_per_second = 0;
        s.limits.bandwidth_schedule = None;
        s.object_concurrency = 0;
        s
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    /// Copy, then verify.
    Import,
    /// Verify an existing copy; write nothing.
    Audit,
}

/// A bucket of an S3-compatible store and a key prefix in it: the one shape
/// of an endpoint, for sources and destinations alike. The storage client
/// takes it as it is (`storage::s3::S3Config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// URL without the bucket, e.g. `http://127.0.0.1:9000`; a bare host
    /// means `https://`.
    pub endpoint: String,
    pub region: String,
    /// The bucket's name.
    pub name: String,
    pub access_key: String,
    pub secret_key: Secret,
    /// Path style (`endpoint/bucket/key`) for IPs and local servers;
    /// virtual-hosted (`bucket.endpoint/key`) for OSS and clouds.
    pub path_style: bool,
    /// Prepended to every relative path; empty or ending in `/`.
    pub prefix: String,
}

impl Bucket {
    /// `endpoint/NAME`: how an outage names it (`storage::health`), the
    /// same on every executor and in the daemon's `stat`.
    pub fn endpoint_label(&self) -> String {
        format!("{}/{}", self.endpoint.trim_end_matches('/'), self.name)
    }

    /// `endpoint bucket NAME/PREFIX`, for progress lines and errors.
    pub fn label(&self) -> String {
        format!("{} bucket {}/{}", self.endpoint, self.name, self.prefix)
    }
}

impl JobSpec {
    /// Every bucket the job names (source first), to fill or blank their
    /// credentials in one place.
    pub fn buckets_mut(&mut self) -> impl Iterator<Item = &mut Bucket> {
        let src = match &mut self.source {
            SourceSpec::S3(b) | SourceSpec::Azure(b) => Some(b),
            SourceSpec::Local { .. } | SourceSpec::Http | SourceSpec::Cdn { .. } => None,
        };
        let dest = match &mut self.dest {
            DestSpec::S3 { bucket, .. } => Some(bucket),
            DestSpec::Local { .. } => None,
        };
        src.into_iter().chain(dest)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceSpec {
    /// A local directory; `root` ends with `/`.
    Local {
        root: String,
        /// `isAllowSymbolicLink`: the file itself may be a symlink to a
        /// file; a symlink is never followed at any other component.
        #[serde(default)]
        follow_symlinks: bool,
    },
    /// A bucket of an S3-compatible store (OSS, S3, COS, BOS, KS3, Qiniu);
    /// object keys are `prefix + rel_path`.
    S3(Bucket),
    /// URLs from an HTTP list; each object's URL is its `src_ref`.
    Http,
    /// An Azure Blob container (`srcType=azure`): the bucket's `access_key`
    /// is the storage account, `secret_key` its key or a SAS token, `name`
    /// the container, `endpoint` a blob endpoint URL or the original's
    /// endpoint suffix; blobs are `prefix + rel_path`.
    Azure(Bucket),
    /// A bucket listed by the daemon, each object downloaded from a CDN in
    /// front of it (`isDownloadFromCdn`): `domain` + `/` + the key
    /// (`prefix + rel_path`, percent-encoded), checked against the listed
    /// size and ETag (`src_ref`). Executors need no source credentials.
    Cdn { domain: String, prefix: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum DestSpec {
    /// An S3-compatible bucket (OSS, S3, ...).
    S3 {
        bucket: Bucket,
        server_side_encryption: bool,
        /// The storage class objects are written in (`destStorageClass`);
        /// `None`: the bucket's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storage_class: Option<String>,
    },
    /// A local directory.
    Local { dir: String, prefix: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Size only.
    Size,
    /// Size, ETag (MD5 or multipart ETag) and CRC64 where the store reports it.
    Checksum,
    /// Download the object and compare MD5 and CRC64 with the source.
    ReadBack,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SkipMode {
    /// Always copy.
    None,
    /// Skip when the destination has the same size and recorded mtime.
    SizeMtime,
    /// Skip when the destination has the same size.
    Size,
    /// Skip when the destination's checksum matches the source's.
    Checksum,
}

/// A batch of objects, closed by the scanner at a count or byte limit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskSpec {
    pub task_id: i64,
    pub job_id: i64,
    /// Only the objects not yet final; verified ones are never resent.
    pub objects: Vec<ObjectSpec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectSpec {
    pub object_id: i64,
    /// Path relative to the source root, `/`-separated, UTF-8.
    pub rel_path: String,
    /// Size and mtime (unix seconds) seen by the scanner.
    pub size: u64,
    pub mtime: i64,
    /// Local sources: the identity tag the scanner recorded (nanosecond
    /// mtime, ctime and inode; `storage::beneath::Identity::tag`), compared
    /// with the file's when it is opened. `None` for other sources and for
    /// rows recorded before tags existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ident: Option<i64>,
    /// A multipart upload started by an earlier attempt, to continue.
    pub resume: Option<MultipartResume>,
    /// Where to read it from when the path is not enough: the ETag seen at
    /// listing (S3 sources, so a changed object is noticed), or the URL
    /// (HTTP sources).
    #[serde(default)]
    pub src_ref: Option<String>,
    /// Set when only the source object's metadata changed since an earlier
    /// pass verified its copy (same size and ETag, a new LastModified):
    /// what the destination held then. An executor may write the new
    /// metadata in place (a server-side copy of the object onto itself)
    /// while the destination still holds that object, instead of copying
    /// the bytes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<Written>,
    /// The ETag this job verified at the key before this copy (an earlier
    /// pass's), for `overwriteMode=ours`; `None`: it never wrote the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_etag: Option<String>,
}

/// A destination object an earlier pass wrote and verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// Its ETag as the destination answered it.
    pub etag: String,
    /// The MD5 (hex) of the bytes that were verified.
    pub md5: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MultipartResume {
    pub upload_id: String,
    pub part_size: u64,
    pub parts: Vec<PartRecord>,
}

/// A part the destination acknowledged with the ETag we expected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    pub size: u64,
    pub etag: String,
    /// Hex MD5 of the part as read from the source; empty where it was not
    /// computed (the destination confirms a CRC).
    pub md5: String,
    /// CRC-64/XZ of the part.
    pub crc64: u64,
    /// CRC-64/NVME of the part, where it was sent with it (an upload whose
    /// Complete carries the full object's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvme: Option<u64>,
}

/// Reported by an executor while it works. Applying the same event twice
/// has the same effect as applying it once.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    UploadStarted {
        object_id: i64,
        upload_id: String,
        part_size: u64,
    },
    PartDone {
        object_id: i64,
        part: PartRecord,
    },
    /// The upload was aborted; its parts are gone.
    UploadAborted {
        object_id: i64,
    },
    ObjectDone(ObjectResult),
    /// Every object of the task has an `ObjectDone`.
    TaskDone {
        task_id: i64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Copied (or, for audit, found) and verified.
    Verified,
    /// Already present at the destination per the skip rule.
    Skipped,
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectResult {
    pub object_id: i64,
    pub task_id: i64,
    pub outcome: Outcome,
    /// Bytes read from the source and checksummed.
    pub size: u64,
    pub crc64: Option<u64>,
    pub md5: Option<String>,
    pub etag: Option<String>,
    /// What was compared and agreed (a verified object) or what the skip
    /// rule compared (a skipped one).
    pub verified_by: Evidence,
    pub error: Option<ObjectError>,
    /// Request retries spent on this object.
    pub retries: u32,
    /// Multipart parts taken over from an earlier attempt instead of being
    /// sent again.
    #[serde(default)]
    pub parts_resumed: u32,
    /// Local sources: the identity tag of the file that was read
    /// (`storage::beneath::Identity::tag`), which the daemon compares with
    /// the listing's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ident: Option<i64>,
    /// SHA-256 (hex) of the canonical metadata written with the object, or
    /// of the source's, for an audit (`storage::meta::ObjectHeaders::digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// One thing compared for an object and found to agree. The job store
/// keeps an [`Evidence`] as bits by each proof's place here: add new
/// proofs at the end, never reorder or remove one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proof {
    /// The size the store answered.
    Size,
    /// A multipart ETag recomputed from the parts' MD5s.
    Etag,
    /// An MD5: the ETag of a single PUT, or a `Content-MD5` the store checked.
    Md5,
    /// CRC-64/XZ under its name before `crc64xz` (reports of earlier
    /// versions).
    Crc64,
    /// OSS's CRC-64/XZ (`x-oss-hash-crc64ecma`).
    Crc64Xz,
    /// S3's full-object CRC-64/NVME (`x-amz-checksum-crc64nvme`).
    Crc64Nvme,
    /// The object read back from the destination.
    ReadBack,
    /// Skip rules: the modification time.
    Mtime,
    /// Skip rules: a checksum of the file at the destination.
    Checksum,
    /// The bytes stayed; the metadata was rewritten in place.
    InPlace,
    /// Copied within the store, no byte read by us.
    ServerSide,
}

impl Proof {
    /// Every proof, in the order a report names them.
    pub const ALL: [Proof; 11] = [
        Proof::Size,
        Proof::Etag,
        Proof::Md5,
        Proof::Crc64,
        Proof::Crc64Xz,
        Proof::Crc64Nvme,
        Proof::ReadBack,
        Proof::Mtime,
        Proof::Checksum,
        Proof::InPlace,
        Proof::ServerSide,
    ];

    /// Its word in `verified_by`.
    pub fn word(self) -> &'static str {
        match self {
            Proof::Size => "size",
            Proof::Etag => "etag",
            Proof::Md5 => "md5",
            Proof::Crc64 => "crc64",
            Proof::Crc64Xz => "crc64xz",
            Proof::Crc64Nvme => "crc64nvme",
            Proof::ReadBack => "readback",
            Proof::Mtime => "mtime",
            Proof::Checksum => "checksum",
            Proof::InPlace => "in-place",
            Proof::ServerSide => "server-side",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// What an object's result rests on: a set of [`Proof`]s, written
/// `size+md5+crc64xz` (in [`Proof::ALL`]'s order) on the wire, in the job
/// store, `report` and manifests. A word this version does not know is
/// dropped when read, so it can never count as proof.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Evidence(u16);

impl Evidence {
    pub fn of(proofs: &[Proof]) -> Evidence {
        proofs.iter().fold(Evidence::default(), |e, p| e.with(*p))
    }

    pub fn with(self, p: Proof) -> Evidence {
        Evidence(self.0 | p.bit())
    }

    pub fn has(self, p: Proof) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as bits, each [`Proof`] at its place in the enum: how the
    /// job store keeps it (so a proof is never renumbered, only added).
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The set [`Evidence::bits`] wrote; bits of no proof this version
    /// knows are dropped, so they can never count as proof.
    pub fn from_bits(bits: u16) -> Evidence {
        let known = Proof::ALL.into_iter().fold(0, |m, p| m | p.bit());
        Evidence(bits & known)
    }

    /// Reads `size+md5+...`; unknown words are dropped.
    pub fn parse(text: &str) -> Evidence {
        text.split('+')
            .filter_map(|w| Proof::ALL.into_iter().find(|p| p.word() == w))
            .fold(Evidence::default(), Evidence::with)
    }

    /// Whether it proves what `mode` asks: the size, plus for `checksum` a
    /// content checksum, plus for `readback` the bytes themselves. An MD5,
    /// a read-back or a CRC-64 the store computed over what it stored
    /// covers the size too (a body cut short or run on has another one, but
    /// with a chance of 2^-64). The one rule, for the executor that
    /// compares and for the daemon that checks its report.
    pub fn proves(self, mode: VerifyMode) -> bool {
        let crc = self.has(Proof::Crc64Xz) || self.has(Proof::Crc64Nvme);
        let size =
            self.has(Proof::Size) || self.has(Proof::Md5) || self.has(Proof::ReadBack) || crc;
        let content = self.has(Proof::Md5)
            || self.has(Proof::Etag)
            || self.has(Proof::Crc64)
            || crc
            || self.has(Proof::ReadBack);
        match mode {
            VerifyMode::Size => size,
            VerifyMode::Checksum => size && content,
            VerifyMode::ReadBack => self.has(Proof::ReadBack),
        }
    }
}

impl From<&str> for Evidence {
    fn from(text: &str) -> Evidence {
        Evidence::parse(text)
    }
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for p in Proof::ALL.into_iter().filter(|p| self.has(*p)) {
            if !first {
                f.write_str("+")?;
            }
            f.write_str(p.word())?;
            first = false;
        }
        Ok(())
    }
}

impl Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Evidence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Evidence, D::Error> {
        let text = String::deserialize(d)?;
        Ok(Evidence::parse(&text))
    }
}

/// Why an object failed: a stable code for scripts and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectError {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The source's size differs from the scan or from what was uploaded.
    SizeNotMatch,
    /// The source changed (mtime or content) while it was being copied.
    SourceChanged,
    /// The source disappeared after it was listed.
    SourceDeleted,
    /// The source could not be read (permissions, IO error).
    SourceUnreadable,
    /// The destination key breaks the key rules.
    InvalidKey,
    /// The destination's checksum differs from the source's.
    ChecksumMismatch,
    /// Audit: the object is missing at the destination.
    DestMissing,
    /// The destination refused or failed the request.
    DestError,
    /// Listing the source failed here (e.g. an unreadable directory).
    ListError,
    /// Another source of the job was listed for the same destination key
    /// first; this one is never copied.
    DuplicateKey,
    /// The daemon refused an executor's result: it disagrees with the
    /// listing or does not prove what the job's `verifyMode` asks.
    RejectedResult,
    /// The destination or the bucket source stayed unreachable longer than
    /// `endpointOutageLimit` while the object waited for it.
    EndpointDown,
    /// The source object's metadata cannot be stored at the destination
    /// (too large, not ASCII, a name no header can carry).
    MetaInvalid,
    /// The destination holds other metadata than the source's (audit, or
    /// a HEAD after the upload).
    MetaMismatch,
    /// `overwriteMode=ours`/`never`: the destination key holds an object
    /// this job did not write (or no longer the one it verified there); it
    /// was not overwritten.
    DestConflict,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SizeNotMatch => "SIZE_NOT_MATCH",
            ErrorCode::SourceChanged => "SOURCE_CHANGED",
            ErrorCode::SourceDeleted => "SOURCE_DELETED",
            ErrorCode::SourceUnreadable => "SOURCE_UNREADABLE",
            ErrorCode::InvalidKey => "INVALID_KEY",
            ErrorCode::ChecksumMismatch => "CHECKSUM_MISMATCH",
            ErrorCode::DestMissing => "DEST_MISSING",
            ErrorCode::DestError => "DEST_ERROR",
            ErrorCode::ListError => "LIST_ERROR",
            ErrorCode::DuplicateKey => "DUPLICATE_KEY",
            ErrorCode::RejectedResult => "REJECTED_RESULT",
            ErrorCode::EndpointDown => "ENDPOINT_DOWN",
            ErrorCode::MetaInvalid => "META_INVALID",
            ErrorCode::MetaMismatch => "META_MISMATCH",
            ErrorCode::DestConflict => "DEST_CONFLICT",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        Some(match s {
            "SIZE_NOT_MATCH" => ErrorCode::SizeNotMatch,
            "SOURCE_CHANGED" => ErrorCode::SourceChanged,
            "SOURCE_DELETED" => ErrorCode::SourceDeleted,
            "SOURCE_UNREADABLE" => ErrorCode::SourceUnreadable,
            "INVALID_KEY" => ErrorCode::InvalidKey,
            "CHECKSUM_MISMATCH" => ErrorCode::ChecksumMismatch,
            "DEST_MISSING" => ErrorCode::DestMissing,
            "DEST_ERROR" => ErrorCode::DestError,
            "LIST_ERROR" => ErrorCode::ListError,
            "DUPLICATE_KEY" => ErrorCode::DuplicateKey,
            "REJECTED_RESULT" => ErrorCode::RejectedResult,
            "ENDPOINT_DOWN" => ErrorCode::EndpointDown,
            "META_INVALID" => ErrorCode::MetaInvalid,
            "META_MISMATCH" => ErrorCode::MetaMismatch,
            "DEST_CONFLICT" => ErrorCode::DestConflict,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `verified_by` reads and writes in one order, drops what it does not
    /// know, and proves per mode what the table says.
    #[test]
    fn evidence_words_order_and_what_they_prove() {
        use VerifyMode::*;
        let e = Evidence::parse("crc64xz+size+md5+readback+warp-drive");
        assert_eq!(e.to_string(), "size+md5+crc64xz+readback");
        assert_eq!(Evidence::parse(&e.to_string()), e);
        assert_eq!(Evidence::parse("").to_string(), "");
        assert!(Evidence::parse("warp-drive").is_empty());
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, "\"size+md5+crc64xz+readback\"");
        assert_eq!(serde_json::from_str::<Evidence>(&json).unwrap(), e);
        for (by, size, checksum, readback) in [
            ("", false, false, false),
            ("size", true, false, false),
            ("etag", false, false, false),
            ("size+etag", true, true, false),
            ("md5", true, true, false),
            ("size+crc64", true, true, false),
            ("crc64", false, false, false),
            ("crc64xz", true, true, false),
            ("crc64nvme", true, true, false),
            ("size+md5+server-side", true, true, false),
            ("size+mtime", true, false, false),
            ("in-place", false, false, false),
            ("readback", true, true, true),
        ] {
            let e = Evidence::parse(by);
            assert_eq!(
                [e.proves(Size), e.proves(Checksum), e.proves(ReadBack)],
                [size, checksum, readback],
                "{by}"
            );
        }
    }

    #[test]
    fn overwrite_modes_condition_each_write() {
        use OverwriteMode::*;
        assert_eq!(Always.write_if(Some("e")), WriteIf::Any);
        assert_eq!(Always.write_if(None), WriteIf::Any);
        assert_eq!(Ours.write_if(Some("e")), WriteIf::Etag("e".into()));
        assert_eq!(Ours.write_if(None), WriteIf::Absent);
        assert_eq!(Never.write_if(Some("e")), WriteIf::Absent);
        assert_eq!(Never.write_if(None), WriteIf::Absent);
    }

    #[test]
    fn error_codes_round_trip() {
        for c in [
            ErrorCode::SizeNotMatch,
            ErrorCode::SourceChanged,
            ErrorCode::SourceDeleted,
            ErrorCode::SourceUnreadable,
            ErrorCode::InvalidKey,
            ErrorCode::ChecksumMismatch,
            ErrorCode::DestMissing,
            ErrorCode::DestError,
            ErrorCode::ListError,
            ErrorCode::DuplicateKey,
            ErrorCode::RejectedResult,
            ErrorCode::EndpointDown,
            ErrorCode::MetaInvalid,
            ErrorCode::MetaMismatch,
            ErrorCode::DestConflict,
        ] {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
    }

    #[test]
    fn secrets_serialize_for_the_wire_but_never_debug() {
        let d = DestSpec::Local {
            dir: "/d".into(),
            prefix: String::new(),
        };
        assert!(
            serde_json::to_string(&d)
                .unwrap()
                .contains("\"type\":\"local\"")
        );
        let s = DestSpec::S3 {
            bucket: Bucket {
                endpoint: "http://h".into(),
                region: "r".into(),
                name: "b".into(),
                access_key: "ak".into(),
                secret_key: Secret::new("sk-value"),
                path_style: true,
                prefix: String::new(),
            },
            server_side_encryption: false,
            storage_class: None,
        };
        assert!(!format!("{s:?}").contains("sk-value"));
    }
}
