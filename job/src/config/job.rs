//! `job.cfg` / `local_job.cfg`: one migration job, validated into a typed [`JobConfig`].
//!
//! Every key of the original ossimport 2.x is accepted (the table is
//! [`super::keys::JOB`]); a key left out or left empty takes its documented default. Keys
//! added by this implementation are marked there and documented on their [`JobConfig`] fields. Secrets may also come
//! from `*File` keys or environment variables; they are held as [`Secret`] and never
//! serialized.

use std::path::{Path, PathBuf};

use proto::Secret;
pub use proto::job::{JobMode, OverwriteMode, SkipMode, VerifyMode};
use serde::Serialize;

use super::properties::PropertiesFile;
use super::{
    ConfigError, Env, Fields, is_absolute_slash_path, parse_choice, parse_size, process_env,
    read_decoded,
};

/// Overrides `srcAccessKey`.
pub const ENV_SRC_ACCESS_KEY: &str = "OSSIMPORT_SRC_ACCESS_KEY";
/// Overrides `srcSecretKey` and `srcSecretKeyFile`.
pub const ENV_SRC_SECRET_KEY: &str = "OSSIMPORT_SRC_SECRET_KEY";
/// Overrides `destAccessKey`.
pub const ENV_DEST_ACCESS_KEY: &str = "OSSIMPORT_DEST_ACCESS_KEY";
/// Overrides `destSecretKey` and `destSecretKeyFile`.
pub const ENV_DEST_SECRET_KEY: &str = "OSSIMPORT_DEST_SECRET_KEY";

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Where the data comes from (`srcType`, case-sensitive as in the original).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SrcType {
    Local,
    Oss,
    Qiniu,
    Bos,
    Ks3,
    S3,
    Youpai,
    Http,
    Cos,
    Azure,
}

impl SrcType {
    const ALL: [(&'static str, SrcType); 10] = [
        ("local", SrcType::Local),
        ("oss", SrcType::Oss),
        ("qiniu", SrcType::Qiniu),
        ("bos", SrcType::Bos),
        ("ks3", SrcType::Ks3),
        ("s3", SrcType::S3),
        ("youpai", SrcType::Youpai),
        ("http", SrcType::Http),
        ("cos", SrcType::Cos),
        ("azure", SrcType::Azure),
    ];

    /// The spelling used in `job.cfg`.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("local", |(name, _)| name)
    }
}

impl std::fmt::Display for SrcType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an incremental job finds what changed (`incrementalMode`, ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncrementalMode {
    /// Each pass lists the whole source (the original's way).
    Rescan,
    /// Local sources: the tree is watched and each settled change is copied
    /// by a pass that lists only what changed; the whole source is listed
    /// at `incrementalModeInterval` and whenever events may have been lost.
    Watch,
}

/// Where the data goes (`destType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DestType {
    /// Alibaba Cloud OSS (virtual-hosted requests, CRC64 checksums).
    Oss,
    /// Any S3-compatible object store.
    S3,
    /// A local directory, `destDir`.
    Local,
}

/// URL style for S3-compatible requests, resolved from `addressingStyle` at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressingStyle {
    /// `http://endpoint/bucket/key`.
    Path,
    /// `http://bucket.endpoint/key`.
    Virtual,
}

/// The original's `auditMode`; superseded by `verifyMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    Simple,
    General,
    Detailed,
}

/// The original's `getObjectMetaMode` (Qiniu sources only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GetObjectMetaMode {
    Stat,
    Head,
}

/// A validated job configuration. Field names are the snake_case of the file's keys.
///
/// `Debug` is safe to log: secrets print as `***`. `Serialize` leaves secrets out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobConfig {
    // ---- Keys of the original tool ----
    /// `jobName`: unique job id, `[a-zA-Z0-9_-]{4,128}`. Default `local_test`.
    pub job_name: String,
    /// `jobType`: `import` (default) or `audit`.
    pub job_type: JobMode,
    /// `isIncremental`: rescan every `incrementalModeInterval` seconds. Default false.
    pub is_incremental: bool,
    /// `incrementalModeInterval`: seconds between the end of one pass and
    /// the start of the next, at least 900 (see [`min_incremental_interval`]).
    /// Default 86400.
    pub incremental_mode_interval: u64,
    /// `overwriteMode` (ours): what a copy may overwrite at the destination.
    pub overwrite_mode: OverwriteMode,
    /// `incrementalMode` (ours): how an incremental job finds changes.
    pub incremental_mode: IncrementalMode,
    /// `watchSettleSeconds` (ours): with `incrementalMode=watch`, how long a
    /// file written but not closed must be untouched to be copied (1..=3600,
    /// default 2).
    pub watch_settle_seconds: u64,
    /// `importSince`: Unix seconds; only files modified later are copied. 0 (default) = all.
    pub import_since: u64,
    /// `lastModify`: Unix seconds; files modified later are not verified. 0 (default) = off.
    pub last_modify: u64,
    /// `isSkipExistFile`: skip objects whose size and mtime match. Default false. Sets
    /// the default of `skipMode`.
    pub is_skip_exist_file: bool,
    /// `srcType`: default `local`.
    pub src_type: SrcType,
    /// `srcAccessKey`, overridden by `OSSIMPORT_SRC_ACCESS_KEY`.
    pub src_access_key: String,
    /// `srcSecretKey`; see `src_secret_key_file` for where it may come from instead.
    #[serde(skip)]
    pub src_secret_key: Secret,
    /// `srcDomain`: source endpoint (for cos a region, for azure an endpoint suffix).
    pub src_domain: String,
    /// `srcBucket`: source bucket (azure: container), without `/`.
    pub src_bucket: String,
    /// `srcPrefix`: empty or ending in `/`. For `srcType=local`: required, an absolute
    /// directory written with `/` (`/data/`, `c:/data/`), without `//`.
    pub src_prefix: String,
    /// `destAccessKey`, overridden by `OSSIMPORT_DEST_ACCESS_KEY`.
    pub dest_access_key: String,
    /// `destSecretKey`; see `dest_secret_key_file`.
    #[serde(skip)]
    pub dest_secret_key: Secret,
    /// `destDomain`: the endpoint without the bucket. Required unless `destType=local`. A
    /// bare host gets `http://` in front, as the original's OSS client did.
    pub dest_domain: String,
    /// `destBucket`: required unless `destType=local`; no `/`.
    pub dest_bucket: String,
    /// `destPrefix`: prepended to every relative path; must not start with `/` or `\`.
    pub dest_prefix: String,
    /// `taskObjectCountLimit`: at most this many objects per task, 1..=50000. Default 10000.
    pub task_object_count_limit: u64,
    /// `taskObjectSizeLimit`: at most this many bytes per task. Default 1000000000.
    pub task_object_size_limit: u64,
    /// `scanThreadCount`: listing threads, 1..=32 (larger values are clamped to 32 with a
    /// warning; the original's s3 template has 10000). Default 1.
    pub scan_thread_count: u32,
    /// `maxMultiThreadScanDepth`: directory depth listed in parallel, 1..=16. Default 1.
    pub max_multi_thread_scan_depth: u32,
    /// `multipartUploadThreshold`: objects larger than this (bytes, > 1 MiB) use multipart.
    /// Default 150m.
    pub multipart_upload_threshold: u64,
    /// `multipartUploadPartSize`: part size in bytes, at least 100 KiB (the original
    /// silently used 50m for smaller values; we refuse them). Default 50m. S3 itself
    /// requires at least 5 MiB for all parts but the last.
    pub multipart_upload_part_size: u64,
    /// `uploadThreadNumPerLargeFile`: parts in flight per object, at least 1. Default 3.
    pub upload_thread_num_per_large_file: u32,
    /// `isServerSideEncryption`: default false.
    pub is_server_side_encryption: bool,
    /// `isAllowSymbolicLink`: follow file symlinks of a local source. Default false.
    pub is_allow_symbolic_link: bool,
    /// `getObjectMetaMode`: `stat` (default) or `head`; Qiniu only.
    pub get_object_meta_mode: GetObjectMetaMode,
    /// `isAuditAfterImport`: default true. Objects are always verified here.
    pub is_audit_after_import: bool,
    /// `auditMode`: `simple`, `general` (default) or `detailed`; superseded by `verify_mode`.
    pub audit_mode: AuditMode,
    /// `appId`: Tencent COS app id. Default 0.
    pub app_id: u64,
    /// `isDownloadFromCdn`: list the bucket, download each object from
    /// `cdnDomain` (the original: Upyun only; here any bucket source).
    /// Default false.
    pub is_download_from_cdn: bool,
    /// `cdnDomain`: the CDN in front of the source bucket, `http(s)://host`
    /// (a bare host gets `http://`); required with `isDownloadFromCdn`.
    pub cdn_domain: String,
    /// `httpListFilePath`: the URL list; required for `srcType=http`.
    pub http_list_file_path: Option<PathBuf>,
    /// `httpPrefixColumn`: 1-based column of the URL prefix. Default 1.
    pub http_prefix_column: u32,
    /// `relativePathColumn`: 1-based column of the relative path; differs from
    /// `httpPrefixColumn`. Default 2.
    pub relative_path_column: u32,
    /// `isUseExpressTunnel`: default false.
    pub is_use_express_tunnel: bool,
    /// `expressTunnelProxyHost`.
    pub express_tunnel_proxy_host: String,
    /// `expressTunnelProxyType`.
    pub express_tunnel_proxy_type: String,
    /// `expressTunnelProxyUser`.
    pub express_tunnel_proxy_user: String,
    /// `expressTunnelProxyDest`.
    pub express_tunnel_proxy_dest: String,
    /// `expressTunnelAuthToken`.
    #[serde(skip)]
    pub express_tunnel_auth_token: Secret,

    // ---- Keys added by this implementation ----
    /// `destType`: `oss`, `s3` or `local`. Default: `local` when `destDomain` is empty and
    /// `destDir` is set, `oss` when the `destDomain` host ends in `aliyuncs.com`, else `s3`.
    pub dest_type: DestType,
    /// `destDir`: the destination directory when `destType=local`; absolute, required then.
    pub dest_dir: Option<PathBuf>,
    /// `destRegion`: signing region of an S3 destination. Default `us-east-1`; ignored by OSS.
    pub dest_region: String,
    /// `srcRegion`: signing region of an S3 source. Default `us-east-1`; ignored by OSS.
    pub src_region: String,
    /// `addressingStyle` (`auto`, `path` or `virtual`) resolved for `destDomain`. `auto`
    /// (default) means path style for IP addresses and `localhost`, virtual-hosted
    /// otherwise (OSS refuses path style).
    pub dest_addressing_style: AddressingStyle,
    /// The same `addressingStyle` key resolved for `srcDomain`.
    pub src_addressing_style: AddressingStyle,
    /// `verifyMode`: `size`, `checksum` (default: size + ETag/MD5 + CRC64 where the endpoint
    /// reports it) or `readback` (download the object again and recompute).
    pub verify_mode: VerifyMode,
    /// `skipMode`: `none`, `sizeMtime`, `size` or `checksum`. Default `sizeMtime` when
    /// `isSkipExistFile=true`, else `none`; an explicit `skipMode` wins.
    pub skip_mode: SkipMode,
    /// `includeGlobs`: comma-separated glob patterns on the relative path; when non-empty,
    /// only matching objects are copied.
    pub include_globs: Vec<String>,
    /// `excludeGlobs`: comma-separated glob patterns on the relative path; matching objects
    /// are not copied.
    pub exclude_globs: Vec<String>,
    /// `maxRequestsPerSecond`: cap on requests per second to the source and destination.
    /// 0 (default) = unlimited.
    pub max_requests_per_second: u32,
    /// `srcListPageSize`: keys asked for per ListObjectsV2 page of an S3-compatible source
    /// (1..=1000, default 1000).
    pub src_list_page_size: u32,
    /// `objectTimeout`: seconds one object may take, retries included, before it fails
    /// (default 21600, 6 hours; 0 = no limit).
    pub object_timeout: u64,
    /// `endpointOutageLimit`: seconds an endpoint (the destination, a bucket source) may stay
    /// unreachable before the objects waiting for it fail `ENDPOINT_DOWN` (default 86400,
    /// a day; 0 = wait for ever).
    pub endpoint_outage_limit: u64,
    /// `copyMetadata`: carry a remote source's object metadata (Content-Type,
    /// Content-Encoding, Content-Disposition, Content-Language, Cache-Control, Expires,
    /// user metadata) to the destination (default true; false: Content-Type guessed from
    /// the name, as before).
    pub copy_metadata: bool,
    /// `copyTags`: carry a bucket source's object tags (one GET of its tags per object;
    /// default false).
    pub copy_tags: bool,
    /// `preserveFileAttrs`: local sources keep mtime, atime, mode, uid and gid as user
    /// metadata under rclone's names; with `destType=local` the exact mode, and the owner
    /// when running as root (default false).
    pub preserve_file_attrs: bool,
    /// `serverSideCopy`: `auto` (the default) copies bucket to bucket within the store when
    /// both are on one endpoint (the bytes never pass through us); `never` streams them.
    pub server_side_copy: bool,
    /// `serverSideCopyCutoff`: server-side copies of objects larger than this are made in
    /// parts (`UploadPartCopy`); 5 MiB to 5 GiB, the default (the most one `CopyObject`
    /// makes).
    pub server_side_copy_cutoff: u64,
    /// `destStorageClass`: the storage class objects are written in (`STANDARD_IA`,
    /// `GLACIER_IR`, OSS's `IA`...; empty, the default: the bucket's default class).
    pub dest_storage_class: String,
    /// `requestAttempts`: attempts per request, the first included, for failures worth
    /// retrying (5xx, throttling, timeouts, dropped connections); 1..=20, default 5.
    pub request_attempts: u32,
    /// `srcSecretKeyFile`: read `srcSecretKey` from this file instead (relative paths are
    /// relative to the config file; trailing newline stripped; refused if readable by
    /// every user). `OSSIMPORT_SRC_SECRET_KEY` overrides both.
    pub src_secret_key_file: Option<PathBuf>,
    /// `destSecretKeyFile`: as `srcSecretKeyFile`, for `destSecretKey`;
    /// `OSSIMPORT_DEST_SECRET_KEY` overrides both.
    pub dest_secret_key_file: Option<PathBuf>,

    /// Problems that were corrected rather than refused (e.g. a clamped value), one line
    /// each, for the caller to show. Also logged at WARN while loading.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl JobConfig {
    /// Reads and validates a job file; secrets may come from the process environment.
    pub fn load(path: &Path) -> Result<JobConfig, ConfigError> {
        JobConfig::load_with_env(path, &process_env)
    }

    /// As [`JobConfig::load`], with an injected environment.
    pub fn load_with_env(path: &Path, env: Env<'_>) -> Result<JobConfig, ConfigError> {
        let (text, notes) = read_decoded(path)?;
        let mut cfg = JobConfig::parse_at(path, &text, env)?;
        cfg.warnings.extend(notes);
        Ok(cfg)
    }

    /// Validates the text of the job file at `path` (read by someone
    /// else); relative secret files are looked up next to `path`.
    pub fn parse_at(path: &Path, text: &str, env: Env<'_>) -> Result<JobConfig, ConfigError> {
        let props = PropertiesFile::parse(&path.display().to_string(), text)?;
        from_properties(&props, path.parent(), env)
    }

    /// Validates the text of a job file; `file_label` names it in errors. Secret files
    /// with relative paths are looked up from the current directory.
    pub fn parse(file_label: &str, text: &str) -> Result<JobConfig, ConfigError> {
        JobConfig::parse_with_env(file_label, text, &process_env)
    }

    /// As [`JobConfig::parse`], with an injected environment.
    pub fn parse_with_env(
        file_label: &str,
        text: &str,
        env: Env<'_>,
    ) -> Result<JobConfig, ConfigError> {
        let props = PropertiesFile::parse(file_label, text)?;
        from_properties(&props, None, env)
    }

    /// A stable string that changes when the job would do something different: the JSON
    /// of the config without secrets, credentials and where they came from, so that
    /// rotating a key does not count as a changed job on resume.
    pub fn fingerprint(&self) -> String {
        match serde_json::to_value(self) {
            Ok(mut value) => {
                if let Some(map) = value.as_object_mut() {
                    for key in [
                        "src_access_key",
                        "dest_access_key",
                        "src_secret_key_file",
                        "dest_secret_key_file",
                    ] {
                        map.remove(key);
                    }
                }
                value.to_string()
            }
            // Unreachable in practice: every field is plain data and every path was read
            // from UTF-8 text. Debug output is still stable and secret-free.
            Err(_) => format!("{self:?}"),
        }
    }

    /// One line per setting that is accepted but not acted on yet. Edit this list as
    /// features land.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        let tunnel_keys_set = [
            &self.express_tunnel_proxy_host,
            &self.express_tunnel_proxy_type,
            &self.express_tunnel_proxy_user,
            &self.express_tunnel_proxy_dest,
        ]
        .iter()
        .any(|v| !v.is_empty())
            || !self.express_tunnel_auth_token.is_empty();
        if self.is_use_express_tunnel || tunnel_keys_set {
            out.push(format!(
                "isUseExpressTunnel={} and expressTunnel* keys: Express Connect tunnels do not apply to this build (it connects directly); values ignored",
                self.is_use_express_tunnel
            ));
        }
        if !self.is_download_from_cdn && !self.cdn_domain.is_empty() {
            out.push(
                "cdnDomain is set but isDownloadFromCdn=false: objects are read from the bucket"
                    .to_string(),
            );
        }
        if self.get_object_meta_mode != GetObjectMetaMode::Stat {
            out.push(
                "getObjectMetaMode=head: applies to qiniu sources only; value ignored".to_string(),
            );
        }
        if self.scan_thread_count > 1 && matches!(self.src_type, SrcType::Http | SrcType::Azure) {
            out.push(format!(
                "scanThreadCount={}: URL lists and Azure containers are listed in order; value ignored",
                self.scan_thread_count
            ));
        }
        if self.max_multi_thread_scan_depth > 1 && self.scan_thread_count <= 1 {
            out.push(format!(
                "maxMultiThreadScanDepth={}: applies with scanThreadCount above 1; value ignored",
                self.max_multi_thread_scan_depth
            ));
        }
        if self.audit_mode != AuditMode::General {
            out.push(format!(
                "auditMode={}: superseded by verifyMode; value ignored",
                audit_mode_name(self.audit_mode)
            ));
        }
        if !self.is_audit_after_import {
            out.push(
                "isAuditAfterImport=false: every object is verified (see verifyMode); value ignored"
                    .to_string(),
            );
        }
        if self.app_id != 0 {
            out.push(format!(
                "appId={}: not needed with the S3-compatible COS endpoint; value ignored",
                self.app_id
            ));
        }
        out
    }
}

fn audit_mode_name(mode: AuditMode) -> &'static str {
    match mode {
        AuditMode::Simple => "simple",
        AuditMode::General => "general",
        AuditMode::Detailed => "detailed",
    }
}

/// `addressingStyle` before it is resolved against an endpoint.
#[derive(Clone, Copy)]
enum AddressingKey {
    Auto,
    Path,
    Virtual,
}

/// Reads every key of a job file into a [`JobConfig`]. One long function
/// on purpose: each key's rule (default, range, aliases, the error naming
/// file, line and key) sits beside the key, in the order of
/// [`super::keys::JOB`] and the templates, so one key is checked in one
/// place; the rules between keys follow at the end.
fn from_properties(
    props: &PropertiesFile,
    base_dir: Option<&Path>,
    env: Env<'_>,
) -> Result<JobConfig, ConfigError> {
    let f = Fields::new(props);
    let known = super::keys::names(super::keys::JOB);
    f.check_known(&known)?;
    let mut warnings = Vec::new();

    let job_name = f.parsed(&["jobName"], "local_test".to_string(), |v| {
        check_job_name(v).map(|()| v.to_string())
    })?;
    let job_type = f.parsed(&["jobType"], JobMode::Import, |v| {
        parse_choice(
            v,
            &[("import", JobMode::Import), ("audit", JobMode::Audit)],
            false,
        )
    })?;
    let is_incremental = f.switch(k("isIncremental"))?;
    let incremental_mode_interval = f.number_in(
        k("incrementalModeInterval"),
        min_incremental_interval()..=u64::MAX,
    )?;
    let incremental_mode = f.parsed(&["incrementalMode"], IncrementalMode::Rescan, |v| {
        parse_choice(
            v,
            &[
                ("rescan", IncrementalMode::Rescan),
                ("watch", IncrementalMode::Watch),
            ],
            false,
        )
    })?;
    let watch_settle_seconds = f.number_in(k("watchSettleSeconds"), 1..=3600)?;
    let overwrite_mode = f.parsed(&["overwriteMode"], OverwriteMode::Always, |v| {
        parse_choice(
            v,
            &[
                ("always", OverwriteMode::Always),
                ("ours", OverwriteMode::Ours),
                ("never", OverwriteMode::Never),
            ],
            false,
        )
    })?;
    let import_since = f.number(k("importSince"))?;
    let last_modify = f.number(k("lastModify"))?;
    let is_skip_exist_file = f.switch(k("isSkipExistFile"))?;

    // ---- Source ----
    let src_type = f.parsed(&["srcType"], SrcType::Local, parse_src_type)?;
    let src_access_key = env_or(env, ENV_SRC_ACCESS_KEY, f.string("srcAccessKey")?);
    let (src_secret_key, src_secret_key_file) = secret(
        &f,
        "srcSecretKey",
        "srcSecretKeyFile",
        ENV_SRC_SECRET_KEY,
        base_dir,
        env,
    )?;
    let mut src_domain = f.string("srcDomain")?;
    if src_type == SrcType::Youpai {
        // The original spoke Upyun's REST API (v0..v3.api.upyun.com, an
        // operator and its password); this build reads Upyun through its
        // S3-compatible endpoint, with an operator's S3 access key.
        let host = endpoint_host(&src_domain).to_ascii_lowercase();
        if src_domain.is_empty() || is_upyun_rest_host(&host) {
            let warning = format!(
                "{}: srcDomain: srcType=youpai is read through Upyun's S3 endpoint {UPYUN_S3}{};                  srcAccessKey/srcSecretKey must be an operator's S3 access key and secret (made in the                  Upyun console), not the operator's name and password",
                location_of(&f, "srcDomain"),
                if src_domain.is_empty() {
                    String::new()
                } else {
                    format!(" instead of the REST API {src_domain}")
                }
            );
            tracing::warn!(file = %props.file, "{warning}");
            warnings.push(warning);
            src_domain = UPYUN_S3.to_string();
        }
    }
    let src_bucket = f.string("srcBucket")?;
    if let Some(entry) = f.value_entry(&["srcBucket"])?
        && entry.value.contains('/')
    {
        return Err(f.err(entry, "must be a bare bucket name without /"));
    }
    let src_prefix = f.string("srcPrefix")?;
    if let Err(reason) = check_src_prefix(src_type, &src_prefix) {
        let line = f.line("srcPrefix").or_else(|| f.line("srcType"));
        return Err(f.err_at(line, "srcPrefix", reason));
    }

    // ---- Destination ----
    let dest_access_key = env_or(env, ENV_DEST_ACCESS_KEY, f.string("destAccessKey")?);
    let (dest_secret_key, dest_secret_key_file) = secret(
        &f,
        "destSecretKey",
        "destSecretKeyFile",
        ENV_DEST_SECRET_KEY,
        base_dir,
        env,
    )?;
    let dest_dir = f.parsed(&["destDir"], None, |v| {
        if is_absolute_slash_path(v) || Path::new(v).is_absolute() {
            Ok(Some(PathBuf::from(v)))
        } else {
            Err(format!("must be an absolute directory, got {v:?}"))
        }
    })?;
    let mut dest_domain = f.string("destDomain")?;
    let dest_type = f.parsed(&["destType"], None, |v| {
        parse_choice(
            v,
            &[
                ("oss", Some(DestType::Oss)),
                ("s3", Some(DestType::S3)),
                ("local", Some(DestType::Local)),
            ],
            false,
        )
    })?;
    let dest_type = dest_type.unwrap_or(if dest_domain.is_empty() && dest_dir.is_some() {
        DestType::Local
    } else if endpoint_host(&dest_domain)
        .to_ascii_lowercase()
        .ends_with("aliyuncs.com")
    {
        DestType::Oss
    } else {
        DestType::S3
    });
    let dest_bucket = f.string("destBucket")?;
    if let Some(entry) = f.value_entry(&["destBucket"])?
        && entry.value.contains('/')
    {
        return Err(f.err(
            entry,
            "must be a bare bucket name without /; put the path in destPrefix",
        ));
    }
    // A key that is required because of another one is reported on the line where it
    // should be filled in, or else on the line that made it required.
    let required_line = |key: &str| f.line(key).or_else(|| f.line("destType"));
    if dest_type == DestType::Local {
        if dest_dir.is_none() {
            return Err(f.err_at(
                required_line("destDir"),
                "destDir",
                "required when destType=local",
            ));
        }
    } else {
        let type_name = match dest_type {
            DestType::Oss => "oss",
            _ => "s3",
        };
        if dest_domain.is_empty() {
            return Err(f.err_at(
                required_line("destDomain"),
                "destDomain",
                "required: the endpoint without the bucket, e.g. http://oss-cn-hangzhou.aliyuncs.com",
            ));
        }
        if let Some(entry) = f.value_entry(&["destDomain"])? {
            dest_domain = normalize_endpoint(&dest_domain).map_err(|r| f.err(entry, r))?;
            if !dest_bucket.is_empty() {
                check_domain_without_bucket(&dest_domain, &dest_bucket)
                    .map_err(|r| f.err(entry, r))?;
            }
        }
        if dest_bucket.is_empty() {
            return Err(f.err_at(
                required_line("destBucket"),
                "destBucket",
                format!("required when destType={type_name}"),
            ));
        }
    }
    let dest_prefix = f.string("destPrefix")?;
    if let Some(entry) = f.value_entry(&["destPrefix"])?
        && (dest_prefix.starts_with('/') || dest_prefix.starts_with('\\'))
    {
        return Err(f.err(
            entry,
            "must not start with / or \\ (object keys cannot start with them)",
        ));
    }

    // ---- Tasks, listing and uploads ----
    let task_object_count_limit = f.number(k("taskObjectCountLimit"))?;
    let task_object_size_limit =
        f.parsed(
            &["taskObjectSizeLimit"],
            1_000_000_000,
            |v| match parse_size(v)? {
                0 => Err("must be at least 1 byte".to_string()),
                n => Ok(n),
            },
        )?;
    let mut scan_thread_count = f.number_u32(k("scanThreadCount"))?;
    if scan_thread_count > 32 {
        let warning = format!(
            "{}: scanThreadCount: {scan_thread_count} is above the maximum 32; using 32",
            location_of(&f, "scanThreadCount")
        );
        tracing::warn!(file = %props.file, "{warning}");
        warnings.push(warning);
        scan_thread_count = 32;
    }
    let max_multi_thread_scan_depth = f.number_u32(k("maxMultiThreadScanDepth"))?;
    let upload_thread_num_per_large_file = f.number_u32(k("uploadThreadNumPerLargeFile"))?;
    let multipart_upload_threshold = f.parsed(&["multipartUploadThreshold"], 150 * MIB, |v| {
        let n = parse_size(v)?;
        if n <= MIB {
            return Err(format!("must be larger than 1m (1048576 bytes), got {v}"));
        }
        Ok(n)
    })?;
    let multipart_upload_part_size = f.parsed(&["multipartUploadPartSize"], 50 * MIB, |v| {
        let n = parse_size(v)?;
        if n < 100 * KIB {
            return Err(format!(
                "must be at least 100k (102400 bytes), got {v}; the original silently used 50m instead"
            ));
        }
        Ok(n)
    })?;
    let is_server_side_encryption = f.switch(k("isServerSideEncryption"))?;
    let is_allow_symbolic_link = f.switch(k("isAllowSymbolicLink"))?;
    let get_object_meta_mode = f.parsed(&["getObjectMetaMode"], GetObjectMetaMode::Stat, |v| {
        parse_choice(
            v,
            &[
                ("stat", GetObjectMetaMode::Stat),
                ("head", GetObjectMetaMode::Head),
            ],
            false,
        )
    })?;
    let is_audit_after_import = f.switch(k("isAuditAfterImport"))?;
    let audit_mode = f.parsed(&["auditMode"], AuditMode::General, |v| {
        parse_choice(
            v,
            &[
                ("simple", AuditMode::Simple),
                ("general", AuditMode::General),
                ("detailed", AuditMode::Detailed),
            ],
            false,
        )
    })?;

    // ---- Source-specific keys ----
    let app_id = f.number(k("appId"))?;
    let is_download_from_cdn = f.switch(k("isDownloadFromCdn"))?;
    let mut cdn_domain = f.string("cdnDomain")?;
    if is_download_from_cdn {
        if matches!(src_type, SrcType::Local | SrcType::Http) {
            let line = f.line("isDownloadFromCdn");
            return Err(f.err_at(
                line,
                "isDownloadFromCdn",
                format!("needs a bucket source (srcType={src_type} has no CDN in front of it)"),
            ));
        }
        match f.value_entry(&["cdnDomain"])? {
            Some(entry) if !entry.value.trim().is_empty() => {
                cdn_domain = normalize_endpoint(entry.value.trim()).map_err(|r| f.err(entry, r))?;
            }
            _ => {
                let line = f.line("cdnDomain").or_else(|| f.line("isDownloadFromCdn"));
                return Err(f.err_at(
                    line,
                    "cdnDomain",
                    "required when isDownloadFromCdn=true: the CDN domain objects are downloaded from, e.g. http://cdn.example.com",
                ));
            }
        }
    }
    // A relative list is next to the job file, as the original read it
    // (and never relative to the daemon's working directory).
    let http_list_file_path = f
        .value_entry(&["httpListFilePath"])?
        .map(|e| match base_dir {
            Some(dir) if Path::new(&e.value).is_relative() => dir.join(&e.value),
            _ => PathBuf::from(&e.value),
        });
    if src_type == SrcType::Http && http_list_file_path.is_none() {
        let line = f.line("httpListFilePath").or_else(|| f.line("srcType"));
        return Err(f.err_at(
            line,
            "httpListFilePath",
            "required when srcType=http: the absolute path of the URL list",
        ));
    }
    let http_prefix_column = f.number_u32(k("httpPrefixColumn"))?;
    let relative_path_column = f.number_u32(k("relativePathColumn"))?;
    if http_prefix_column == relative_path_column {
        let (key, other) = match f.value_entry(&["relativePathColumn"])? {
            Some(_) => ("relativePathColumn", "httpPrefixColumn"),
            None => ("httpPrefixColumn", "relativePathColumn"),
        };
        return Err(f.err_at(
            f.line(key),
            key,
            format!("must differ from {other} (both are {http_prefix_column})"),
        ));
    }
    let is_use_express_tunnel = f.switch(k("isUseExpressTunnel"))?;
    let express_tunnel_proxy_host = f.string("expressTunnelProxyHost")?;
    let express_tunnel_proxy_type = f.string("expressTunnelProxyType")?;
    let express_tunnel_proxy_user = f.string("expressTunnelProxyUser")?;
    let express_tunnel_proxy_dest = f.string("expressTunnelProxyDest")?;
    let express_tunnel_auth_token = Secret::new(f.string("expressTunnelAuthToken")?);

    // ---- Additions ----
    let dest_region = non_empty_or(f.string("destRegion")?, "us-east-1");
    let src_region = non_empty_or(f.string("srcRegion")?, "us-east-1");
    let addressing = f.parsed(&["addressingStyle"], AddressingKey::Auto, |v| {
        parse_choice(
            v,
            &[
                ("auto", AddressingKey::Auto),
                ("path", AddressingKey::Path),
                ("virtual", AddressingKey::Virtual),
            ],
            false,
        )
    })?;
    let verify_mode = f.parsed(&["verifyMode"], VerifyMode::Checksum, |v| {
        parse_choice(
            v,
            &[
                ("size", VerifyMode::Size),
                ("checksum", VerifyMode::Checksum),
                ("readback", VerifyMode::ReadBack),
            ],
            false,
        )
    })?;
    let default_skip = if is_skip_exist_file {
        SkipMode::SizeMtime
    } else {
        SkipMode::None
    };
    let skip_mode = f.parsed(&["skipMode"], default_skip, |v| {
        parse_choice(
            v,
            &[
                ("none", SkipMode::None),
                ("sizeMtime", SkipMode::SizeMtime),
                ("size", SkipMode::Size),
                ("checksum", SkipMode::Checksum),
            ],
            false,
        )
    })?;
    // Every pattern compiled here, so a bad one is refused at submit with
    // its line.
    let globs = |key: &str| {
        f.parsed(&[key], Vec::new(), |v| {
            let list = split_globs(v);
            for p in &list {
                crate::filter::compile(p)?;
            }
            Ok(list)
        })
    };
    let include_globs = globs("includeGlobs")?;
    let exclude_globs = globs("excludeGlobs")?;
    let max_requests_per_second = f.number_u32(k("maxRequestsPerSecond"))?;
    let src_list_page_size = f.number_u32(k("srcListPageSize"))?;
    let object_timeout = f.number(k("objectTimeout"))?;
    let endpoint_outage_limit = f.number(k("endpointOutageLimit"))?;
    let request_attempts = f.number_u32(k("requestAttempts"))?;
    let copy_metadata = f.switch(k("copyMetadata"))?;
    let copy_tags = f.switch(k("copyTags"))?;
    let preserve_file_attrs = f.switch(k("preserveFileAttrs"))?;
    let server_side_copy = f.parsed(&["serverSideCopy"], true, |v| {
        parse_choice(v, &[("auto", true), ("never", false)], false)
    })?;
    let server_side_copy_cutoff = f.parsed(&["serverSideCopyCutoff"], 5 * GIB, |v| {
        let n = parse_size(v)?;
        if !(5 * MIB..=5 * GIB).contains(&n) {
            return Err(format!(
                "must be from 5m to 5g (a part of a copy is at least 5 MiB; one CopyObject makes at most 5 GiB), got {v}"
            ));
        }
        Ok(n)
    })?;
    let dest_storage_class = f.parsed(&["destStorageClass"], String::new(), |v| {
        let v = v.trim();
        if v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            Ok(v.to_string())
        } else {
            Err(format!(
                "{v:?} is not a storage class name (letters, digits, _ and -)"
            ))
        }
    })?;

    check_overlap(
        &f,
        src_type,
        (&src_domain, &src_bucket, &src_prefix),
        dest_dir.as_deref().filter(|_| dest_type == DestType::Local),
        (&dest_domain, &dest_bucket, &dest_prefix),
    )?;

    if incremental_mode == IncrementalMode::Watch {
        let line = f.line("incrementalMode");
        if !is_incremental {
            return Err(f.err_at(
                line,
                "incrementalMode",
                "watch needs isIncremental=true (a one-pass job has nothing to watch for)",
            ));
        }
        if src_type != SrcType::Local {
            return Err(f.err_at(
                line,
                "incrementalMode",
                format!(
                    "watch is for srcType=local only (srcType={src_type}: a bucket or URL list cannot be watched; its changes are found by rescan passes, incrementalMode=rescan)"
                ),
            ));
        }
    }

    if overwrite_mode != OverwriteMode::Always && dest_type == DestType::Local {
        return Err(f.err_at(
            f.line("overwriteMode"),
            "overwriteMode",
            "ours and never are for bucket destinations only (destType=local writes files in place)",
        ));
    }

    Ok(JobConfig {
        job_name,
        overwrite_mode,
        incremental_mode,
        watch_settle_seconds,
        job_type,
        is_incremental,
        incremental_mode_interval,
        import_since,
        last_modify,
        is_skip_exist_file,
        src_type,
        src_access_key,
        src_secret_key,
        src_addressing_style: resolve_addressing(addressing, &src_domain),
        src_domain,
        src_bucket,
        src_prefix,
        dest_access_key,
        dest_secret_key,
        dest_addressing_style: resolve_addressing(addressing, &dest_domain),
        dest_domain,
        dest_bucket,
        dest_prefix,
        task_object_count_limit,
        task_object_size_limit,
        scan_thread_count,
        max_multi_thread_scan_depth,
        multipart_upload_threshold,
        multipart_upload_part_size,
        upload_thread_num_per_large_file,
        is_server_side_encryption,
        is_allow_symbolic_link,
        get_object_meta_mode,
        is_audit_after_import,
        audit_mode,
        app_id,
        is_download_from_cdn,
        cdn_domain,
        http_list_file_path,
        http_prefix_column,
        relative_path_column,
        is_use_express_tunnel,
        express_tunnel_proxy_host,
        express_tunnel_proxy_type,
        express_tunnel_proxy_user,
        express_tunnel_proxy_dest,
        express_tunnel_auth_token,
        dest_type,
        dest_dir,
        dest_region,
        src_region,
        verify_mode,
        skip_mode,
        include_globs,
        exclude_globs,
        max_requests_per_second,
        src_list_page_size,
        object_timeout,
        endpoint_outage_limit,
        copy_metadata,
        copy_tags,
        preserve_file_attrs,
        server_side_copy,
        server_side_copy_cutoff,
        dest_storage_class,
        request_attempts,
        src_secret_key_file,
        dest_secret_key_file,
        warnings,
    })
}

fn location_of(f: &Fields<'_>, key: &str) -> String {
    match f.line(key) {
        Some(line) => format!("{}:{line}", f.props.file),
        None => f.props.file.clone(),
    }
}

fn check_job_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if chars_ok && (4..=128).contains(&len) {
        Ok(())
    } else {
        Err(format!(
            "must be 4 to 128 characters from a-z, A-Z, 0-9, _ and -, got {name:?}"
        ))
    }
}

fn parse_src_type(value: &str) -> Result<SrcType, String> {
    if let Ok(t) = parse_choice(value, &SrcType::ALL, true) {
        return Ok(t);
    }
    match parse_choice(value, &SrcType::ALL, false) {
        Ok(t) => Err(format!(
            "source types are case-sensitive: use {t}, not {value:?}"
        )),
        Err(reason) => Err(reason),
    }
}

/// Refuses a destination that lies inside the source or holds it: a rerun
/// would list its own copies (`backup/backup/...`). Local trees are compared
/// by device and inode (symlinks, bind mounts and `..` do not hide an
/// overlap); a bucket source and destination by endpoint, bucket and
/// prefix. Checked again by each listing pass ([`crate::scanner`]).
fn check_overlap(
    f: &Fields,
    src_type: SrcType,
    src: (&str, &str, &str),
    dest_dir: Option<&Path>,
    dest: (&str, &str, &str),
) -> Result<(), ConfigError> {
    let line = f.line("destDir").or_else(|| f.line("destPrefix"));
    if src_type == SrcType::Local
        && let Some(dir) = dest_dir
        && let Some(why) = local_overlap(Path::new(src.2), dir)
    {
        return Err(f.err_at(f.line("destDir"), "destDir", why));
    }
    let bucket_src = !matches!(src_type, SrcType::Local | SrcType::Http | SrcType::Azure);
    if bucket_src && dest_dir.is_none() {
        let host = |d: &str| endpoint_host(d).to_ascii_lowercase();
        let (sp, dp) = (src.2, dest.2);
        if !src.1.is_empty()
            && src.1 == dest.1
            && host(src.0) == host(dest.0)
            && (sp.starts_with(dp) || dp.starts_with(sp))
        {
            return Err(f.err_at(
                line,
                "destPrefix",
                format!(
                    "the destination {}/{dp} overlaps the source {}/{sp} in the same bucket: a later pass would list its own copies; use another bucket or prefixes that do not contain each other",
                    dest.1, src.1
                ),
            ));
        }
    }
    Ok(())
}

/// Why a local destination directory cannot be used with a local source
/// directory, if it cannot.
pub fn local_overlap(src: &Path, dest: &Path) -> Option<String> {
    use storage::beneath::{Overlap, dir_overlap};
    let how = match dir_overlap(src, dest) {
        Ok(Some(how)) => how,
        // Either cannot be opened: reported where it is used.
        _ => return None,
    };
    Some(match how {
        Overlap::Same => format!(
            "{} is the source directory srcPrefix={} itself",
            dest.display(),
            src.display()
        ),
        Overlap::SecondInside => format!(
            "{} lies inside the source directory srcPrefix={}: every pass would list its own copies (backup/backup/...); choose a directory outside the source",
            dest.display(),
            src.display()
        ),
        Overlap::FirstInside => format!(
            "{} holds the source directory srcPrefix={}: choose a directory outside the source",
            dest.display(),
            src.display()
        ),
    })
}

fn check_src_prefix(src_type: SrcType, prefix: &str) -> Result<(), String> {
    if src_type == SrcType::Local {
        if prefix.is_empty() {
            return Err(
                "required for srcType=local: the absolute directory to copy, ending in /"
                    .to_string(),
            );
        }
        if prefix.contains('\\') {
            return Err(format!(
                "use / as the directory separator (e.g. c:/data/), got {prefix:?}"
            ));
        }
        if !is_absolute_slash_path(prefix) {
            return Err(format!(
                "must be an absolute directory such as /data/ or c:/data/, got {prefix:?}"
            ));
        }
        if prefix.contains("//") {
            return Err(format!("must not contain //, got {prefix:?}"));
        }
    }
    if !prefix.is_empty() && !prefix.ends_with('/') {
        return Err(format!(
            "must end with / (it names a directory or key prefix, never a single file), got {prefix:?}"
        ));
    }
    Ok(())
}

/// The host part of an endpoint written as `[scheme://]host[:port][/path]`.
/// Upyun's S3-compatible endpoint (SigV4 or V2, path or virtual-hosted
/// style, no regions).
pub const UPYUN_S3: &str = "https://s3.api.upyun.com";

/// Upyun's REST API hosts, which the original's `srcDomain` named.
fn is_upyun_rest_host(host: &str) -> bool {
    matches!(
        host,
        "api.upyun.com"
            | "v0.api.upyun.com"
            | "v1.api.upyun.com"
            | "v2.api.upyun.com"
            | "v3.api.upyun.com"
    )
}

fn endpoint_host(domain: &str) -> &str {
    let rest = domain.split_once("://").map_or(domain, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        return authority
            .split_once(']')
            .map_or(authority, |(h, _)| &authority[..=h.len()]);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn normalize_endpoint(domain: &str) -> Result<String, String> {
    match domain.split_once("://") {
        Some((scheme, _))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            Ok(domain.to_string())
        }
        Some(_) => Err(format!(
            "must be an http:// or https:// endpoint, got {domain:?}"
        )),
        // A bare host is reached over TLS; `http://` only when written out.
        None => Ok(format!("https://{domain}")),
    }
}

/// The original's most common support case: `destDomain=http://bucket.oss-...` makes
/// OSS answer `InvalidBucketName`.
fn check_domain_without_bucket(domain: &str, bucket: &str) -> Result<(), String> {
    let host = endpoint_host(domain);
    let Some(bare_host) = host.strip_prefix(&format!("{bucket}.")) else {
        return Ok(());
    };
    let bare = domain.replacen(host, bare_host, 1);
    Err(format!(
        "must not include the bucket ({host}); use the bare endpoint {bare}"
    ))
}

fn resolve_addressing(key: AddressingKey, domain: &str) -> AddressingStyle {
    match key {
        AddressingKey::Path => AddressingStyle::Path,
        AddressingKey::Virtual => AddressingStyle::Virtual,
        AddressingKey::Auto => {
            let host = endpoint_host(domain);
            // Virtual-hosted names need DNS for `bucket.host`, which IP addresses and
            // localhost do not have.
            let is_ip = host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok();
            if is_ip || host.eq_ignore_ascii_case("localhost") {
                AddressingStyle::Path
            } else {
                AddressingStyle::Virtual
            }
        }
    }
}

fn env_or(env: Env<'_>, var: &str, value: String) -> String {
    env(var).filter(|v| !v.is_empty()).unwrap_or(value)
}

fn non_empty_or(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_string()
    } else {
        value
    }
}

/// A comma-separated list of glob patterns; a comma inside `{...}` is an
/// alternative of one pattern, not a separator.
fn split_globs(value: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0usize);
    for c in value.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Resolves a secret: the environment variable wins, then `file_key`, then `key`.
/// Setting both `key` and `file_key` in the file is refused, since one would be
/// silently ignored.
fn secret(
    f: &Fields<'_>,
    key: &str,
    file_key: &str,
    env_var: &str,
    base_dir: Option<&Path>,
    env: Env<'_>,
) -> Result<(Secret, Option<PathBuf>), ConfigError> {
    let inline = f.value_entry(&[key])?;
    let file_entry = f.value_entry(&[file_key])?;
    if let (Some(inline), Some(file_entry)) = (inline, file_entry) {
        return Err(f.err(
            file_entry,
            format!("conflicts with {key} on line {}; set only one", inline.line),
        ));
    }
    let path = file_entry.map(|e| match base_dir {
        Some(dir) if Path::new(&e.value).is_relative() => dir.join(&e.value),
        _ => PathBuf::from(&e.value),
    });
    if let Some(value) = env(env_var).filter(|v| !v.is_empty()) {
        return Ok((Secret::new(value), path));
    }
    if let (Some(entry), Some(path)) = (file_entry, path) {
        let value = read_secret_file(&path).map_err(|reason| f.err(entry, reason))?;
        return Ok((Secret::new(value), Some(path)));
    }
    let value = inline.map(|e| e.value.clone()).unwrap_or_default();
    Ok((Secret::new(value), None))
}

/// Reads a secret file under the one rule (`proto::secret::read_private`).
fn read_secret_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let mut value = proto::secret::read_private(path)?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(format!("{shown} is empty"));
    }
    Ok(value)
}

/// The shortest `incrementalModeInterval` accepted: the original's 900 s,
/// unless `OSSIMPORT_MIN_INCREMENTAL_INTERVAL` (seconds, at least 1) says
/// otherwise in the environment of the process that plans the job (the
/// daemon, or `ossimportctl run`). Meant for tests and trials; a warning
/// names it when it is in effect.
pub fn min_incremental_interval() -> u64 {
    std::env::var("OSSIMPORT_MIN_INCREMENTAL_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&v| v >= 1)
        .unwrap_or(900)
}

/// The key named `name` of `job.cfg` ([`super::keys::JOB`]).
fn k(name: &str) -> &'static super::keys::Key {
    super::keys::find(super::keys::JOB, name)
}
