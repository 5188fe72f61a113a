//! The S3-compatible client: OSS through its S3 API, AWS S3, and the other
//! clouds' S3 endpoints.
//!
//! The SDK's default flexible checksums (CRC32 headers, aws-chunked bodies)
//! are turned off: OSS and many S3-compatible stores reject them. Our own
//! integrity check is the cheapest proof the store gives ([`proof`]): a
//! CRC-64/NVME sent with every PUT and part where the store checks it
//! (and answers it), OSS's own `x-oss-hash-crc64ecma`, or else
//! `Content-MD5` on every PUT and part (the server refuses bytes that do not
//! match what we hashed while reading the source) and the ETag.

mod file_body;
pub mod proof;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_smithy_runtime::client::retries::RetryPartition;
use aws_smithy_runtime::client::retries::TokenBucket;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use bytes::Bytes;
use proto::job::{Bucket, WriteIf};

use crate::checksum::{Digest, Hasher, normalize_etag};
use crate::limit::RateLimiter;
use crate::meta::ObjectHeaders;
pub use crate::meta::content_type;
use crate::remote::{RemoteBody, SourceError, SourceErrorKind};

/// User-metadata key holding the source mtime (unix seconds, with nine
/// digits of nanoseconds when there are any: see
/// `beneath::Identity::mtime_meta`), so later runs and audits can compare
/// it (`x-amz-meta-ossimport-mtime`).
pub const META_MTIME: &str = "ossimport-mtime";
/// User-metadata key holding a local source's identity tag (decimal, see
/// `beneath::Identity::tag`: nanosecond mtime, ctime and inode), so a
/// rerun with `isSkipExistFile` sees a rewrite whose mtime was put back.
pub const META_IDENT: &str = "ossimport-ident";
/// User-metadata key for the source MD5 (`workerRecordMd5`); the original
/// wrote `x-oss-meta-md5`.
pub const META_MD5: &str = "md5";
/// OSS's whole-object CRC64 header.
pub const OSS_CRC64_HEADER: &str = "x-oss-hash-crc64ecma";
/// OSS's answer header saying its flow control delayed the request.
pub const OSS_QOS_DELAY: &str = "x-oss-qos-delay-time";

/// The bucket to reach (the job's one endpoint shape, taken as it is) and
/// how to talk to it.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Endpoint, region, bucket name and credentials. The key prefix in it
    /// is the caller's business: the store works on whole keys.
    pub bucket: Bucket,
    /// Attempts per request, including the first, for retryable failures.
    pub max_attempts: u32,
    pub server_side_encryption: bool,
    /// The storage class objects are written in (`None`: the bucket's).
    pub storage_class: Option<String>,
    /// Shared cap on requests per second (`maxRequestsPerSecond`).
    pub request_limiter: Option<Arc<RateLimiter>>,
    /// Told what every request attempt says about the endpoint, and given
    /// a probe (a one-key listing) to check it answers: the executor's
    /// breaker for this endpoint (see [`crate::health`]).
    pub health: Option<Arc<crate::health::Health>>,
}

impl S3Config {
    /// `bucket` with retries and nothing else: no encryption, no rate cap.
    pub fn new(bucket: Bucket, max_attempts: u32) -> S3Config {
        S3Config {
            bucket,
            max_attempts,
            server_side_encryption: false,
            storage_class: None,
            request_limiter: None,
            health: None,
        }
    }
}

/// What the caller can do about a failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    NotFound,
    NoSuchUpload,
    /// The server computed a different MD5 than the `Content-MD5` we sent.
    BadDigest,
    Denied,
    NoSuchBucket,
    /// An `If-Match` precondition failed: the object changed.
    PreconditionFailed,
    /// 5xx, throttling, timeouts, resets: worth retrying later.
    Transient,
    /// A success status whose body could not be read as the S3 answer it
    /// should be (a server that differs from S3 here).
    BadAnswer,
    /// The request's body could not be read from its file (it shrank, or
    /// the disk failed): our side's failure, not the store's, and not worth
    /// the same request again.
    SourceRead,
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct S3Error {
    pub kind: ErrorKind,
    pub message: String,
}

/// What a HEAD reports about a stored object.
#[derive(Clone, Debug, Default)]
pub struct ObjectInfo {
    pub size: u64,
    /// Normalised (unquoted, lower-case).
    pub etag: String,
    pub crc64: Option<u64>,
    /// The full-object CRC-64/NVME the store keeps, asked for only from a
    /// store known to check the value it is sent ([`proof`]).
    pub nvme: Option<u64>,
    /// `ossimport-mtime` in nanoseconds.
    pub mtime_meta: Option<i64>,
    /// `ossimport-ident`, for local sources.
    pub ident_meta: Option<i64>,
    /// False when the store says the ETag is not the data's MD5 (SSE-KMS,
    /// SSE-C).
    pub etag_is_md5: bool,
    /// Its headers and user metadata.
    pub headers: ObjectHeaders,
}

/// Whether `endpoint` is `http://` to a host that is not loopback.
pub fn plain_http_off_host(endpoint: &str) -> bool {
    let Some(rest) = endpoint
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &endpoint[7..])
    else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// The total length in a `Content-Range: bytes a-b/TOTAL` answer.
fn range_total(v: &str) -> Option<u64> {
    v.rsplit_once('/')?.1.trim().parse().ok()
}

/// With SSE-KMS and SSE-C the ETag is not the MD5 of the data (AWS
/// documents it; OSS with KMS likewise).
fn etag_is_md5(sse: Option<&ServerSideEncryption>, sse_c: Option<&str>) -> bool {
    !matches!(
        sse,
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    ) && sse_c.is_none()
}

/// A bucket reachable through the S3 API.
#[derive(Clone, Debug)]
pub struct S3Store {
    pub(crate) client: Client,
    pub(crate) bucket: String,
    pub(crate) sse: bool,
    storage_class: Option<aws_sdk_s3::types::StorageClass>,
    limiter: Option<Arc<RateLimiter>>,
    /// The endpoint's breaker, whose governor every request waits for.
    health: Option<Arc<crate::health::Health>>,
    read_timeout: Duration,
    /// Plain `http://` to a host other than this one: answers are not
    /// authenticated, so an on-path box could forge them.
    unauthenticated: bool,
    /// What the store confirms, once learned ([`proof`]); shared by
    /// the clones of a job's store.
    pub(crate) proof: Arc<crate::s3::proof::Learned>,
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// With a delimiter: the common prefixes of this page.
    pub prefixes: Vec<String>,
    pub next_token: Option<String>,
    /// What the server said; see the scanner for why it is not trusted alone.
    pub truncated: bool,
}

/// A multipart upload being sent: its key, its id, and whether it was
/// started with CRC-64/NVME (`ChecksumType=FULL_OBJECT`), so that each part
/// carries its own.
#[derive(Clone, Copy, Debug)]
pub struct Upload<'a> {
    pub key: &'a str,
    pub id: &'a str,
    pub nvme: bool,
}

/// What a PUT answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutAnswer {
    /// Normalised (unquoted, lower-case).
    pub etag: String,
    /// `x-oss-hash-crc64ecma`, where the store sends it.
    pub crc64: Option<u64>,
    /// `x-amz-checksum-crc64nvme` (a full-object value on Complete), where
    /// the store answers one.
    pub nvme: Option<u64>,
    /// False when the store says the ETag is not the data's MD5 (SSE-KMS,
    /// SSE-C).
    pub etag_is_md5: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// As listed, unquoted, case kept; compare case-insensitively.
    pub etag: String,
    /// Unix seconds.
    pub mtime: i64,
}

tokio::task_local! {
    /// Retries spent by requests made inside this scope (set around each
    /// object so its result can report them).
    pub static RETRIES: Arc<AtomicU32>;
    /// The condition the writes made inside this scope (PUT, CopyObject,
    /// CompleteMultipartUpload) are made under (`overwriteMode`, set around
    /// each object): the store answers 412
    /// ([`ErrorKind::PreconditionFailed`]) instead of overwriting.
    pub static WRITE_IF: WriteIf;
}

/// The condition of a write made now (none outside a [`WRITE_IF`] scope),
/// as its `If-Match` and `If-None-Match` headers.
fn write_if() -> (Option<String>, Option<String>) {
    match WRITE_IF.try_with(Clone::clone).unwrap_or(WriteIf::Any) {
        WriteIf::Any => (None, None),
        WriteIf::Absent => (None, Some("*".to_string())),
        WriteIf::Etag(e) => (Some(quoted(&e)), None),
    }
}

/// What [`S3Store::copy_object`] copies: an object of this endpoint, as
/// long as its ETag is `if_match`; `nvme` asks for the copy's CRC-64/NVME.
#[derive(Clone, Copy, Debug)]
pub struct CopySource<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub if_match: &'a str,
    pub nvme: bool,
}

/// Read size of a part or object streamed from a file.
pub const PART_STREAM_BUFFER: usize = 256 << 10;

/// The file a streamed body reads (every retry of the request reads this
/// one, never whatever `path` names by then).
async fn open_for_body(path: &Path) -> Result<std::fs::File, S3Error> {
    let opened = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || std::fs::File::open(path)).await
    };
    opened
        .map_err(std::io::Error::other)
        .and_then(|opened| opened)
        .map_err(|e| S3Error {
            kind: ErrorKind::Other,
            message: format!("reading {}: {e}", path.display()),
        })
}

/// Throttling answers (HTTP 503 `SlowDown` and 429) received by this
/// process from any store: what `/metrics` and an agent's heartbeat show.
pub static THROTTLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Adds one to the current object's retry count, if one is being kept.
pub fn count_retry() {
    let _ = RETRIES.try_with(|c| c.fetch_add(1, Ordering::Relaxed));
}

/// Marks, per operation, that a first attempt was made.
#[derive(Debug)]
struct AttemptSeen;

impl Storable for AttemptSeen {
    type Storer = StoreReplace<Self>;
}

/// Counts retries: every attempt of an operation after its first.
#[derive(Clone, Debug, Default)]
struct CountRetries;

impl Intercept for CountRetries {
    fn name(&self) -> &'static str {
        "CountRetries"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<AttemptSeen>().is_some() {
            count_retry();
        } else {
            cfg.interceptor_state().store_put(AttemptSeen);
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if matches!(context.response().status().as_u16(), 429 | 503) {
            THROTTLED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Tells an endpoint's [`crate::health::Health`] what each attempt said:
/// any answer below 500 that it is up; no answer (connection, timeout) or
/// a 5xx that it may not be. Its governor hears of every answer, and of
/// every sign of overload: a 503 or 429, or an answer OSS delayed
/// (`x-oss-qos-delay-time`).
#[derive(Clone, Debug)]
struct NoteHealth(Arc<crate::health::Health>);

impl Intercept for NoteHealth {
    fn name(&self) -> &'static str {
        "NoteHealth"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use crate::health::Sign;
        let sign = match (context.response(), context.output_or_error()) {
            // The store answered, asking for fewer requests: the governor's
            // business (below), never an outage.
            (Some(r), _) if asks_to_slow_down(r) => Some(Sign::Answered),
            (Some(r), _) if r.status().as_u16() >= 500 => Some(Sign::NoAnswer),
            (Some(_), _) => Some(Sign::Answered),
            // A body that failed to read from its file says nothing of the store.
            (None, Some(Err(e))) if file_body::source_read_error(e).is_some() => None,
            (None, Some(Err(e))) if e.is_connector_error() || e.is_timeout_error() => {
                Some(Sign::NoAnswer)
            }
            _ => None,
        };
        if let Some(s) = sign {
            self.0.note(s);
        }
        if let Some(r) = context.response() {
            if matches!(r.status().as_u16(), 429 | 503) || r.headers().contains_key(OSS_QOS_DELAY) {
                self.0.governor().slow_down();
            } else {
                self.0.governor().answered();
            }
        }
        Ok(())
    }
}

/// A 503 that says it is throttling: S3's `SlowDown` in its body, or OSS's
/// QoS delay header. A 503 that says nothing (a HEAD's has no body; a
/// balancer with no store behind it) may be an outage.
fn asks_to_slow_down(r: &aws_smithy_runtime_api::http::Response) -> bool {
    const CODE: &[u8] = b"<Code>SlowDown</Code>";
    r.status().as_u16() == 503
        && (r.headers().contains_key(OSS_QOS_DELAY)
            || r.body()
                .bytes()
                .is_some_and(|b| b.windows(CODE.len()).any(|w| w == CODE)))
}

/// Records OSS's CRC64 response header, which the SDK's typed outputs drop.
#[derive(Clone, Debug, Default)]
pub(crate) struct CaptureCrc64(Arc<Mutex<Option<String>>>);

impl Intercept for CaptureCrc64 {
    fn name(&self) -> &'static str {
        "CaptureCrc64"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(v) = context.response().headers().get(OSS_CRC64_HEADER)
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some(v.to_string());
        }
        Ok(())
    }
}

impl CaptureCrc64 {
    pub(crate) fn get(&self) -> Option<u64> {
        self.0
            .lock()
            .ok()
            .and_then(|s| s.as_deref().and_then(|v| v.trim().parse().ok()))
    }
}

/// Records user metadata answered as `x-oss-meta-*` (as OSS names it),
/// which the SDK's typed outputs know only as `x-amz-meta-*`.
#[derive(Clone, Debug, Default)]
struct CaptureOssMeta(Arc<Mutex<Vec<(String, String)>>>);

impl Intercept for CaptureOssMeta {
    fn name(&self) -> &'static str {
        "CaptureOssMeta"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let found: Vec<(String, String)> = context
            .response()
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                let name = k.to_ascii_lowercase();
                let n = name.strip_prefix("x-oss-meta-")?;
                Some((n.to_string(), v.to_string()))
            })
            .collect();
        if let Ok(mut slot) = self.0.lock() {
            *slot = found;
        }
        Ok(())
    }
}

impl CaptureOssMeta {
    /// Adds what was captured to `h`'s user metadata (a name also
    /// answered as `x-amz-meta-*` keeps that value).
    fn merge_into(&self, h: &mut ObjectHeaders) {
        let found = self.0.lock().map(|s| s.clone()).unwrap_or_default();
        for (k, v) in found {
            if !h.user.iter().any(|(n, _)| *n == k) {
                h.user.push((k, v));
            }
        }
        h.user.sort();
    }
}

/// How long a request may wait for the next bytes of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Sets an object's headers on a PutObject or CreateMultipartUpload
/// request: Content-Type (the source's, else guessed from `key`), the
/// source's other headers and user metadata, then ours (`meta`, which win
/// over a source's user metadata of the same name), its tags, and the
/// store's storage class.
/// An ETag as a conditional header carries it: in double quotes.
fn quoted(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

macro_rules! with_headers {
    ($self:ident, $req:ident, $key:expr, $meta:expr, $headers:expr) => {
        let h: Option<&ObjectHeaders> = $headers;
        $req = $req.set_storage_class($self.storage_class.clone());
        $req = $req.content_type(
            h.and_then(|h| h.content_type.clone())
                .unwrap_or_else(|| content_type($key).to_owned()),
        );
        if let Some(h) = h {
            $req = $req
                .set_content_encoding(h.content_encoding.clone())
                .set_content_disposition(h.content_disposition.clone())
                .set_content_language(h.content_language.clone())
                .set_cache_control(h.cache_control.clone())
                .set_expires(h.expires_date().ok().flatten());
            if !h.tags.is_empty() {
                $req = $req.tagging(crate::meta::tagging(&h.tags));
            }
            for (k, v) in &h.user {
                if !$meta.iter().any(|(m, _)| m == k) {
                    $req = $req.metadata(k, v);
                }
            }
        }
        for (k, v) in $meta {
            $req = $req.metadata(*k, v);
        }
    };
}

impl S3Store {
    pub fn new(cfg: &S3Config) -> S3Store {
        S3Store::with_read_timeout(cfg, READ_TIMEOUT)
    }

    fn with_read_timeout(cfg: &S3Config, read_timeout: Duration) -> S3Store {
        let b = &cfg.bucket;
        let endpoint = if b.endpoint.contains("://") {
            b.endpoint.clone()
        } else {
            format!("https://{}", b.endpoint)
        };
        let creds = Credentials::new(
            b.access_key.clone(),
            b.secret_key.expose().to_owned(),
            None,
            None,
            "ossimport",
        );
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new(b.region.clone()))
            .credentials_provider(creds)
            .force_path_style(b.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(cfg.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(read_timeout)
                    .build(),
            )
            // No retry quota: the SDK's default token bucket stops retrying
            // after a burst of failures, which would turn a bad minute of a
            // long migration into thousands of failed objects.
            .retry_partition(
                RetryPartition::custom("ossimport")
                    .token_bucket(TokenBucket::unlimited())
                    .build(),
            )
            .interceptor(CountRetries);
        let conf = match &cfg.health {
            Some(h) => conf.interceptor(NoteHealth(Arc::clone(h))),
            None => conf,
        }
        .build();
        let unauthenticated = plain_http_off_host(&endpoint);
        let client = Client::from_conf(conf);
        if let Some(h) = &cfg.health {
            // A one-key listing: a read that any answer below 500 (403
            // included) shows the endpoint is there.
            let (c, bucket) = (client.clone(), b.name.clone());
            h.set_probe(Arc::new(move || {
                let (c, bucket) = (c.clone(), bucket.clone());
                Box::pin(async move {
                    let once = aws_sdk_s3::config::Builder::default()
                        .retry_config(RetryConfig::disabled());
                    let asked = c
                        .list_objects_v2()
                        .bucket(bucket)
                        .max_keys(1)
                        .customize()
                        .config_override(once)
                        .send()
                        .await;
                    match asked {
                        Ok(_) => Ok(()),
                        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                            Some(s) if s < 500 => Ok(()),
                            // Throttled is there (see `asks_to_slow_down`).
                            Some(503) if e.code() == Some("SlowDown") => Ok(()),
                            Some(s) => Err(format!("HTTP {s}")),
                            None => Err(proto::net::no_answer(&e, None)),
                        },
                    }
                })
            }));
        }
        S3Store {
            client,
            bucket: b.name.clone(),
            sse: cfg.server_side_encryption,
            storage_class: cfg
                .storage_class
                .as_deref()
                .map(aws_sdk_s3::types::StorageClass::from),
            limiter: cfg.request_limiter.clone(),
            health: cfg.health.clone(),
            read_timeout,
            unauthenticated,
            proof: Arc::default(),
        }
    }

    /// Whether the endpoint is plain `http://` to another host (loopback
    /// is this host: nothing on a path to forge an answer). A single PUT's
    /// answer is then not taken as proof by itself.
    pub fn unauthenticated(&self) -> bool {
        self.unauthenticated
    }

    /// Waits for the request-rate cap, if there is one, and for the rate
    /// the endpoint is held to while it says it is overloaded.
    async fn pace(&self) {
        if let Some(l) = &self.limiter {
            l.acquire(1).await;
        }
        if let Some(h) = &self.health {
            h.governor().acquire().await;
        }
    }

    /// One page of ListObjectsV2 under `prefix`, after `start_after` or
    /// continuing `token`.
    pub async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, S3Error> {
        self.list_page_in(prefix, false, start_after, token, max_keys)
            .await
    }

    /// [`S3Store::list_page`], with `flat`: only the keys directly under
    /// `prefix` (delimiter `/`), the next level's prefixes in
    /// `ListPage::prefixes`.
    pub async fn list_page_in(
        &self,
        prefix: &str,
        flat: bool,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, S3Error> {
        self.pace().await;
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(flat.then(|| "/".to_string()))
            .max_keys(max_keys as i32)
            .set_start_after(start_after.filter(|_| token.is_none()).map(str::to_owned))
            .set_continuation_token(token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.classify("ListObjectsV2", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ListedObject {
                    key: o.key()?.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    // Kept as listed (quotes removed, case kept): it goes
                    // back to the store in `If-Match`, and OSS lists its
                    // ETags upper-case.
                    etag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                    mtime: o.last_modified().map(|t| t.secs()).unwrap_or(0),
                })
            })
            .collect();
        Ok(ListPage {
            objects,
            prefixes: out
                .common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned))
                .collect(),
            next_token: out.next_continuation_token().map(str::to_owned),
            truncated: out.is_truncated().unwrap_or(false),
        })
    }

    /// Starts a GET of a source object, only if it still has the ETag seen
    /// at listing time (when one is given).
    pub async fn open_read(
        &self,
        key: &str,
        if_match: Option<&str>,
    ) -> Result<RemoteBody, SourceError> {
        self.open_range(key, if_match, None, None).await
    }

    /// As [`S3Store::open_read`], for `len` bytes from `offset` when a range
    /// is given. A server that ignores the range is an error, not a body of
    /// the wrong bytes; an answer of another version (its ETag, or the total
    /// length in `Content-Range` against `listed_size`) is `Changed`.
    pub async fn open_range(
        &self,
        key: &str,
        if_match: Option<&str>,
        range: Option<(u64, u64)>,
        listed_size: Option<u64>,
    ) -> Result<RemoteBody, SourceError> {
        self.pace().await;
        let oss_meta = CaptureOssMeta::default();
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(
                range
                    .filter(|(_, len)| *len > 0)
                    .map(|(off, len)| format!("bytes={off}-{}", off + len - 1)),
            )
            .set_if_match(
                if_match
                    .filter(|e| !e.is_empty())
                    .map(|e| format!("\"{e}\"")),
            )
            .customize()
            .interceptor(oss_meta.clone())
            .send()
            .await
            .map_err(|e| {
                let e = self.classify("GetObject", key, e);
                let kind = match e.kind {
                    ErrorKind::NotFound => SourceErrorKind::NotFound,
                    ErrorKind::PreconditionFailed => SourceErrorKind::Changed,
                    ErrorKind::Transient => SourceErrorKind::Transient,
                    _ => SourceErrorKind::Permanent,
                };
                SourceError::new(kind, e.message)
            })?;
        let len = out.content_length().map(|l| l.max(0) as u64);
        // Pinned to the listed version even where a store (or a front)
        // ignores If-Match: the answer's ETag, and a range's total length,
        // must be the listed ones.
        if let (Some(want), Some(got)) = (if_match.filter(|e| !e.is_empty()), out.e_tag())
            && normalize_etag(got) != normalize_etag(want)
        {
            return Err(SourceError::new(
                SourceErrorKind::Changed,
                format!(
                    "GetObject {key}: the answer is of version {} but {want} was listed (the store did not honour If-Match)",
                    normalize_etag(got)
                ),
            ));
        }
        if let (Some(_), Some(listed), Some(total)) = (
            range,
            listed_size,
            out.content_range().and_then(range_total),
        ) && total != listed
        {
            return Err(SourceError::new(
                SourceErrorKind::Changed,
                format!("GetObject {key}: the object now has {total} bytes, {listed} were listed"),
            ));
        }
        if let Some((off, want)) = range
            && (len != Some(want)
                || !out
                    .content_range()
                    .is_some_and(|r| r.starts_with(&format!("bytes {off}-"))))
        {
            return Err(SourceError::new(
                SourceErrorKind::Permanent,
                format!(
                    "GetObject {key}: asked for {want} bytes from {off}, the server answered {} ({})",
                    len.map_or("no length".to_owned(), |l| format!("{l} bytes")),
                    out.content_range().unwrap_or("no Content-Range")
                ),
            ));
        }
        let md5 = etag_is_md5(out.server_side_encryption(), out.sse_customer_algorithm());
        let mut headers = crate::meta::ObjectHeaders::from_get(&out);
        oss_meta.merge_into(&mut headers);
        let last_modified = out.last_modified().map(|d| d.secs());
        let mut body = RemoteBody::s3(out.body, len, format!("GetObject {key}"));
        body.etag_is_md5 = md5;
        body.last_modified = last_modified;
        body.headers = Some(headers);
        Ok(body)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Single PUT of an in-memory body. Returns the ETag and, from OSS, the
    /// CRC64 the server computed.
    pub async fn put_bytes(
        &self,
        key: &str,
        body: Bytes,
        digest: &Digest,
        meta: &[(&str, String)],
        headers: Option<&ObjectHeaders>,
    ) -> Result<PutAnswer, S3Error> {
        let len = body.len() as u64;
        self.put(key, ByteStream::from(body), len, digest, meta, headers)
            .await
    }

    /// Single PUT streamed from a file (the digest was computed by an earlier
    /// pass; `Content-MD5` makes the server refuse the body if the file
    /// changed in between). Memory: one buffer of [`PART_STREAM_BUFFER`]
    /// ([`file_body`]).
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        digest: &Digest,
        meta: &[(&str, String)],
        headers: Option<&ObjectHeaders>,
    ) -> Result<PutAnswer, S3Error> {
        let file = open_for_body(path).await?;
        let body = ByteStream::new(file_body::file_range(
            file,
            path,
            0,
            digest.len,
            PART_STREAM_BUFFER,
        ));
        self.put(key, body, digest.len, digest, meta, headers).await
    }

    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        len: u64,
        digest: &Digest,
        meta: &[(&str, String)],
        headers: Option<&ObjectHeaders>,
    ) -> Result<PutAnswer, S3Error> {
        self.pace().await;
        let cap = CaptureCrc64::default();
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len as i64)
            .set_content_md5(digest.md5_base64())
            .body(body);
        if self.sends_nvme() {
            req = req.checksum_crc64_nvme(digest.nvme_base64());
        }
        with_headers!(self, req, key, meta, headers);
        if self.sse {
            req = req.server_side_encryption(ServerSideEncryption::Aes256);
        }
        // UNSIGNED-PAYLOAD: the body is protected by the signed Content-MD5
        // or CRC-64/NVME header (the server refuses a body that does not
        // match it), or by the CRC-64/XZ the store answers, so hashing
        // every byte again with SHA-256 for SigV4 buys nothing.
        let (if_match, if_none_match) = write_if();
        req = req.set_if_match(if_match).set_if_none_match(if_none_match);
        let out = req
            .customize()
            .disable_payload_signing()
            .interceptor(cap.clone())
            .send()
            .await
            .map_err(|e| self.classify("PutObject", key, e))?;
        Ok(PutAnswer {
            etag: normalize_etag(out.e_tag().unwrap_or_default()),
            crc64: cap.get(),
            nvme: out
                .checksum_crc64_nvme()
                .and_then(crate::checksum::parse_nvme_base64),
            etag_is_md5: etag_is_md5(out.server_side_encryption(), out.sse_customer_algorithm()),
        })
    }

    /// Writes an object's metadata in place: a server-side copy of `key`
    /// onto itself (`MetadataDirective=REPLACE`; tags replaced too when
    /// `headers` has any), made only while the object's ETag is still
    /// `if_match`. The bytes never leave the store; what it then holds is
    /// for the caller to check (a HEAD).
    pub async fn rewrite_metadata(
        &self,
        key: &str,
        if_match: &str,
        meta: &[(&str, String)],
        headers: Option<&ObjectHeaders>,
    ) -> Result<(), S3Error> {
        let src = CopySource {
            bucket: &self.bucket,
            key,
            if_match,
            nvme: false,
        };
        self.copy_object(key, src, meta, headers).await.map(|_| ())
    }

    /// A server-side copy of `src` (on this endpoint, read with this
    /// store's credentials) to `key`, made only while the source's ETag is
    /// `src.if_match` (`x-amz-copy-source-if-match`), written with `meta`
    /// and `headers` as a PUT would be (`MetadataDirective=REPLACE`; tags
    /// replaced when `headers` has any; another object's are not copied
    /// otherwise, an object's own are kept). Returns the store's answer for
    /// the caller's checks: the new object's ETag (its MD5, for a copy of a
    /// plain object) and checksums (the CRC-64/NVME when `src.nvme` asks
    /// for it).
    pub async fn copy_object(
        &self,
        key: &str,
        src: CopySource<'_>,
        meta: &[(&str, String)],
        headers: Option<&ObjectHeaders>,
    ) -> Result<PutAnswer, S3Error> {
        let CopySource {
            bucket: src_bucket,
            key: src_key,
            if_match,
            nvme,
        } = src;
        self.pace().await;
        let cap = CaptureCrc64::default();
        let mut req = self
            .client
            .copy_object()
            // The copy's full-object CRC-64/NVME, computed by the store
            // (S3 answers it; others keep the source's).
            .set_checksum_algorithm(nvme.then_some(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme))
            .bucket(&self.bucket)
            .key(key)
            .copy_source(format!("{src_bucket}/{}", crate::key::url_path(src_key)))
            .copy_source_if_match(if_match)
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace);
        // Another object's tags come only when asked for (`copyTags` puts
        // them in `headers`); an object copied onto itself keeps its own.
        let onto_itself = src_bucket == self.bucket && src_key == key;
        if headers.is_some_and(|h| !h.tags.is_empty()) || !onto_itself {
            req = req.tagging_directive(aws_sdk_s3::types::TaggingDirective::Replace);
        }
        with_headers!(self, req, key, meta, headers);
        if self.sse {
            req = req.server_side_encryption(ServerSideEncryption::Aes256);
        }
        let (if_match, if_none_match) = write_if();
        req = req.set_if_match(if_match).set_if_none_match(if_none_match);
        let out = req
            .customize()
            .interceptor(cap.clone())
            .send()
            .await
            .map_err(|e| self.classify("CopyObject", key, e))?;
        let result = out.copy_object_result();
        Ok(PutAnswer {
            etag: normalize_etag(result.and_then(|r| r.e_tag()).unwrap_or_default()),
            crc64: cap.get(),
            nvme: result
                .and_then(|r| r.checksum_crc64_nvme())
                .and_then(crate::checksum::parse_nvme_base64),
            etag_is_md5: etag_is_md5(out.server_side_encryption(), out.sse_customer_algorithm()),
        })
    }

    pub async fn head(&self, key: &str) -> Result<ObjectInfo, S3Error> {
        self.head_asking(key, self.sends_nvme()).await
    }

    /// [`S3Store::head`], asking for the object's checksum whatever the
    /// store is known to check (`ChecksumMode=ENABLED`; a store that keeps
    /// none answers without): what a server-side copy of a multipart
    /// object is held to.
    pub async fn head_with_checksum(&self, key: &str) -> Result<ObjectInfo, S3Error> {
        self.head_asking(key, true).await
    }

    async fn head_asking(&self, key: &str, checksum: bool) -> Result<ObjectInfo, S3Error> {
        self.pace().await;
        let oss_meta = CaptureOssMeta::default();
        let cap = CaptureCrc64::default();
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_checksum_mode(checksum.then_some(aws_sdk_s3::types::ChecksumMode::Enabled))
            .customize()
            .interceptor(cap.clone())
            .interceptor(oss_meta.clone())
            .send()
            .await
            .map_err(|e| self.classify("HeadObject", key, e))?;
        // User metadata as `x-amz-meta-*` or, from OSS, `x-oss-meta-*`.
        let mut headers = ObjectHeaders::from_head(&out);
        oss_meta.merge_into(&mut headers);
        let meta = |k: &str| {
            headers
                .user
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let mtime_meta = meta(META_MTIME).and_then(crate::beneath::parse_mtime_meta);
        let ident_meta = meta(META_IDENT).and_then(|v| v.parse().ok());
        Ok(ObjectInfo {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: normalize_etag(out.e_tag().unwrap_or_default()),
            crc64: cap.get(),
            nvme: out
                .checksum_crc64_nvme()
                .and_then(crate::checksum::parse_nvme_base64),
            mtime_meta,
            ident_meta,
            etag_is_md5: etag_is_md5(out.server_side_encryption(), out.sse_customer_algorithm()),
            headers,
        })
    }

    /// The object's tags, sorted.
    pub async fn tags(&self, key: &str) -> Result<Vec<(String, String)>, S3Error> {
        self.pace().await;
        let out = self
            .client
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.classify("GetObjectTagging", key, e))?;
        let mut tags: Vec<(String, String)> = out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        tags.sort();
        Ok(tags)
    }

    /// Downloads the object and hashes it, for read-back verification.
    pub async fn read_back(&self, key: &str) -> Result<Digest, S3Error> {
        self.pace().await;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.classify("GetObject", key, e))?;
        let mut body = out.body;
        let mut h = Hasher::new();
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => h.update(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return Err(S3Error {
                        kind: ErrorKind::Transient,
                        message: format!("GetObject {key}: reading body: {e}"),
                    });
                }
            }
        }
        Ok(h.finish())
    }

    /// Starts a multipart upload; with `nvme`, one whose parts carry their
    /// CRC-64/NVME and whose Complete carries the full object's
    /// (`ChecksumType=FULL_OBJECT`).
    pub async fn create_multipart(
        &self,
        key: &str,
        meta: &[(&str, String)],
        headers: Option<&ObjectHeaders>,
        nvme: bool,
    ) -> Result<String, S3Error> {
        self.pace().await;
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        if nvme {
            req = req
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme)
                .checksum_type(aws_sdk_s3::types::ChecksumType::FullObject);
        }
        with_headers!(self, req, key, meta, headers);
        if self.sse {
            req = req.server_side_encryption(ServerSideEncryption::Aes256);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.classify("CreateMultipartUpload", key, e))?;
        out.upload_id().map(str::to_owned).ok_or_else(|| S3Error {
            kind: ErrorKind::Other,
            message: format!("CreateMultipartUpload {key}: the server returned no upload id"),
        })
    }

    /// Sends one part: with `Content-MD5` where its digest has an MD5, and
    /// with its CRC-64/NVME where the upload was started with it.
    pub async fn upload_part(
        &self,
        upload: &Upload<'_>,
        number: u32,
        body: Bytes,
        digest: &Digest,
    ) -> Result<PutAnswer, S3Error> {
        self.upload_part_body(upload, number, ByteStream::from(body), digest)
            .await
    }

    /// A part streamed from `len` bytes of `path` at `offset` (the digest was
    /// computed by an earlier pass; `Content-MD5` makes the server refuse
    /// the body if the bytes changed in between). Memory: one buffer of
    /// [`PART_STREAM_BUFFER`], read into again once the sender has written it
    /// ([`file_body`]), whatever the part size; every retry reads the range
    /// again.
    pub async fn upload_part_file(
        &self,
        upload: &Upload<'_>,
        number: u32,
        path: &Path,
        offset: u64,
        digest: &Digest,
    ) -> Result<PutAnswer, S3Error> {
        let file = open_for_body(path).await?;
        let body = ByteStream::new(file_body::file_range(
            file,
            path,
            offset,
            digest.len,
            PART_STREAM_BUFFER,
        ));
        self.upload_part_body(upload, number, body, digest).await
    }

    async fn upload_part_body(
        &self,
        upload: &Upload<'_>,
        number: u32,
        body: ByteStream,
        digest: &Digest,
    ) -> Result<PutAnswer, S3Error> {
        let (key, upload_id) = (upload.key, upload.id);
        self.pace().await;
        let cap = CaptureCrc64::default();
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number as i32)
            .content_length(digest.len as i64)
            .set_content_md5(digest.md5_base64())
            .set_checksum_crc64_nvme(upload.nvme.then(|| digest.nvme_base64()))
            .body(body)
            .customize()
            .disable_payload_signing()
            .interceptor(cap.clone())
            .send()
            .await
            .map_err(|e| self.classify("UploadPart", key, e))?;
        Ok(PutAnswer {
            etag: normalize_etag(out.e_tag().unwrap_or_default()),
            crc64: cap.get(),
            nvme: out
                .checksum_crc64_nvme()
                .and_then(crate::checksum::parse_nvme_base64),
            etag_is_md5: etag_is_md5(out.server_side_encryption(), out.sse_customer_algorithm()),
        })
    }

    /// One part of an upload copied within the store: bytes `range` (start,
    /// end inclusive) of `src`, made only while the source's ETag is
    /// `src.if_match`. The answer carries the part's ETag and, for an upload
    /// started with CRC-64/NVME, the part's CRC as the store computed it.
    pub async fn upload_part_copy(
        &self,
        upload: &Upload<'_>,
        number: u32,
        src: CopySource<'_>,
        range: (u64, u64),
    ) -> Result<PutAnswer, S3Error> {
        let (key, upload_id) = (upload.key, upload.id);
        self.pace().await;
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number as i32)
            .copy_source(format!("{}/{}", src.bucket, crate::key::url_path(src.key)))
            .copy_source_if_match(src.if_match)
            .copy_source_range(format!("bytes={}-{}", range.0, range.1))
            .send()
            .await
            .map_err(|e| self.classify("UploadPartCopy", key, e))?;
        let result = out.copy_part_result();
        Ok(PutAnswer {
            etag: normalize_etag(result.and_then(|r| r.e_tag()).unwrap_or_default()),
            crc64: None,
            nvme: result
                .and_then(|r| r.checksum_crc64_nvme())
                .and_then(crate::checksum::parse_nvme_base64),
            etag_is_md5: etag_is_md5(out.server_side_encryption(), out.sse_customer_algorithm()),
        })
    }

    /// Parts the server holds for an upload: (number, etag, size).
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<(u32, String, u64)>, S3Error> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| self.classify("ListParts", key, e))?;
            for p in out.parts() {
                parts.push((
                    p.part_number().unwrap_or(0) as u32,
                    normalize_etag(p.e_tag().unwrap_or_default()),
                    p.size().unwrap_or(0).max(0) as u64,
                ));
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(m)) if Some(m) != marker.as_deref() => {
                    marker = Some(m.to_owned())
                }
                _ => break,
            }
        }
        Ok(parts)
    }

    /// Completes an upload from its parts (number, ETag); `nvme`, the full
    /// object's CRC-64/NVME, for an upload started with it.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
        nvme: Option<u64>,
    ) -> Result<PutAnswer, S3Error> {
        self.pace().await;
        let cap = CaptureCrc64::default();
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, etag)| {
                        CompletedPart::builder()
                            .part_number(*n as i32)
                            .e_tag(format!("\"{etag}\""))
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let (if_match, if_none_match) = write_if();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .set_checksum_crc64_nvme(nvme.map(crate::checksum::nvme_base64))
            .set_checksum_type(nvme.map(|_| aws_sdk_s3::types::ChecksumType::FullObject))
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .customize()
            .interceptor(cap.clone())
            .send()
            .await
            .map_err(|e| self.classify("CompleteMultipartUpload", key, e))?;
        Ok(PutAnswer {
            etag: normalize_etag(out.e_tag().unwrap_or_default()),
            crc64: cap.get(),
            nvme: out
                .checksum_crc64_nvme()
                .and_then(crate::checksum::parse_nvme_base64),
            etag_is_md5: etag_is_md5(out.server_side_encryption(), None),
        })
    }

    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.classify("AbortMultipartUpload", key, e);
                if e.kind == ErrorKind::NoSuchUpload {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Checks that the bucket exists and the credentials may use it.
    pub async fn check_bucket(&self) -> Result<(), S3Error> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut e = self.classify("HeadBucket", &self.bucket, e);
                e.message = match e.kind {
                    ErrorKind::NotFound | ErrorKind::NoSuchBucket => {
                        "the bucket does not exist".into()
                    }
                    _ => e.message,
                };
                Err(e)
            }
        }
    }

    /// Creates the bucket if it does not exist (tests and the bundled example).
    pub async fn ensure_bucket(&self) -> Result<(), S3Error> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.classify("CreateBucket", &self.bucket, e);
                if e.message.contains("BucketAlreadyOwnedByYou")
                    || e.message.contains("BucketAlreadyExists")
                {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

impl S3Store {
    /// [`classify`], naming this store's read timeout when one ran out.
    pub(crate) fn classify<E>(
        &self,
        op: &str,
        key: &str,
        err: SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> S3Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(op, key, err, self.read_timeout)
    }
}

/// Maps an SDK error to what the caller can do, with a message naming the
/// operation, the key, the server's code and its message.
fn classify<E>(
    op: &str,
    key: &str,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
    read_timeout: Duration,
) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(e) = file_body::source_read_error(&err) {
        return S3Error {
            kind: ErrorKind::SourceRead,
            message: format!("{op} {key}: the request's body failed: {e}"),
        };
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    let kind = match (&err, code.as_deref(), status) {
        (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_), _, _) => ErrorKind::Transient,
        (_, None, Some(200..=299)) => ErrorKind::BadAnswer,
        (_, Some("NoSuchUpload"), _) => ErrorKind::NoSuchUpload,
        (_, Some("NoSuchBucket"), _) => ErrorKind::NoSuchBucket,
        (_, Some("BadDigest" | "InvalidDigest"), _) => ErrorKind::BadDigest,
        (_, Some("PreconditionFailed"), _) | (_, _, Some(412)) => ErrorKind::PreconditionFailed,
        (_, Some("NoSuchKey" | "NotFound"), _) | (_, _, Some(404)) => ErrorKind::NotFound,
        (_, Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout"), _) => {
            ErrorKind::Transient
        }
        (_, _, Some(403)) => ErrorKind::Denied,
        (_, _, Some(s)) if s >= 500 || s == 429 => ErrorKind::Transient,
        (SdkError::ResponseError(_), _, _) => ErrorKind::Transient,
        _ => ErrorKind::Other,
    };
    let detail = match (code, err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ if kind == ErrorKind::BadAnswer => {
            // The SDK's own text ends in a dump of the whole response; the
            // first reason is what a person can act on.
            let mut why = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(c) = cause {
                why = c.to_string();
                cause = c.source();
            }
            let why: String = why.chars().take(200).collect();
            format!(
                "the server answered HTTP {} with a body that is not the S3 answer expected ({why})",
                status.unwrap_or_default()
            )
        }
        _ => match status {
            Some(403) => {
                "HTTP 403 access denied (check the access key, secret and bucket policy)".into()
            }
            Some(s) => format!("HTTP {s}"),
            None => proto::net::no_answer(&err, Some(read_timeout)),
        },
    };
    S3Error {
        kind,
        message: format!("{op} {key}: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_to_another_host_is_unauthenticated() {
        for (e, want) in [
            ("http://10.0.0.5:9000", true),
            ("HTTP://oss-cn-hangzhou.aliyuncs.com", true),
            ("http://127.0.0.1:9000", false),
            ("http://localhost:9000/", false),
            ("http://[::1]:9000", false),
            ("http://[fd00::1]:9000", true),
            ("https://10.0.0.5:9000", false),
        ] {
            assert_eq!(plain_http_off_host(e), want, "{e}");
        }
        assert_eq!(range_total("bytes 0-9/100"), Some(100));
        assert_eq!(range_total("bytes 0-9/*"), None);
    }
    use crate::test_net::{assert_one_line, refused_port, server};

    /// Bucket `bkt` at `endpoint`, one attempt a request.
    fn one_attempt(endpoint: &str) -> S3Config {
        S3Config::new(
            Bucket {
                endpoint: endpoint.into(),
                region: "us-east-1".into(),
                name: "bkt".into(),
                access_key: "ak".into(),
                secret_key: proto::Secret::new("sk".to_string()),
                path_style: true,
                prefix: String::new(),
            },
            1,
        )
    }

    async fn head_bucket(endpoint: &str) -> String {
        let store = S3Store::with_read_timeout(&one_attempt(endpoint), Duration::from_secs(2));
        store.check_bucket().await.unwrap_err().to_string()
    }

    /// A store asking for fewer requests (503 `SlowDown`) answered: its
    /// breaker is not told it may be down, however many come in a row.
    /// A bare 503 (a balancer with nothing behind it) may be an outage.
    #[tokio::test]
    async fn a_store_asking_to_slow_down_is_not_taken_for_down() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        let slow_down: &'static [u8] = format!(
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{xml}",
            xml.len()
        )
        .into_bytes()
        .leak();
        let cases = [
            (server(slow_down), false),
            (
                server(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"),
                true,
            ),
        ];
        for (port, told) in cases {
            let endpoint = format!("http://127.0.0.1:{port}");
            let health = crate::health::Health::new("destination", &endpoint);
            let mut cfg = one_attempt(&endpoint);
            cfg.health = Some(health.clone());
            let store = S3Store::new(&cfg);
            for _ in 0..crate::health::TRIP {
                let e = store.list_page("", None, None, 1).await.unwrap_err();
                assert_eq!(e.kind, ErrorKind::Transient, "{e}");
            }
            assert_eq!(health.status().suspect, told, "{endpoint}");
        }
    }

    #[tokio::test]
    async fn errors_without_an_answer_are_one_line_a_person_can_act_on() {
        let refused = refused_port();
        let denied = server(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        let not_tls = server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        let silent = server(b"");
        let cases = [
            (format!("http://127.0.0.1:{refused}"), "connection refused"),
            (
                "http://no-such-host.invalid:9000".to_string(),
                "name not found",
            ),
            (format!("https://127.0.0.1:{not_tls}"), "TLS failed"),
            (format!("http://127.0.0.1:{denied}"), "access denied"),
            (format!("http://127.0.0.1:{silent}"), "timed out after 2 s"),
        ];
        for (endpoint, want) in cases {
            assert_one_line(&head_bucket(&endpoint).await, "HeadBucket bkt: ", want);
        }
    }
}
