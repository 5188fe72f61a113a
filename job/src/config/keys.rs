//! Every key of `job.cfg` and `sys.properties`, in the original's order, with
//! its aliases, default, the values it takes and one line of documentation.
//! This is the one table the unknown-key check, the parsers (every switch,
//! number and size takes its default and range from here), `ossimportctl
//! set`, `ossimportctl template`, the man pages ossimport-job.cfg(5) and
//! ossimport-sys.properties(5) and the key tables of docs/configuration.md
//! (checked by a test) read; the parsers in [`super::job`] and
//! [`super::sys`] hold the rules between keys.

/// One key of a configuration file.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    /// Other spellings accepted for it (the original's documentation used
    /// some).
    pub aliases: &'static [&'static str],
    /// The value a file without the key gets, as it would be written; empty
    /// when there is none (the key is optional or required).
    pub default: &'static str,
    /// What it does, one or two sentences.
    pub doc: &'static str,
    /// Added by this implementation (the original did not have it).
    pub ours: bool,
    /// The values it takes.
    pub kind: Kind,
}

/// The values a key takes, as the parser checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text with a rule of its own in the parser: a name, a path, an
    /// endpoint, a list, one of some words.
    Text,
    /// `true` or `false`.
    Bool,
    /// A whole number from `min` to `max`.
    Number { min: u64, max: u64 },
    /// A byte size: `100000`, `500k`, `50m`, `5g`.
    Size,
    /// A secret: never shown back (the dry run's settings say `***`).
    Secret,
}

const fn key(name: &'static str, default: &'static str, doc: &'static str) -> Key {
    Key {
        name,
        aliases: &[],
        default,
        doc,
        ours: false,
        kind: Kind::Text,
    }
}

const fn ours(name: &'static str, default: &'static str, doc: &'static str) -> Key {
    Key {
        name,
        aliases: &[],
        default,
        doc,
        ours: true,
        kind: Kind::Text,
    }
}

impl Key {
    const fn switch(mut self) -> Key {
        self.kind = Kind::Bool;
        self
    }

    const fn number(mut self, min: u64, max: u64) -> Key {
        self.kind = Kind::Number { min, max };
        self
    }

    const fn size(mut self) -> Key {
        self.kind = Kind::Size;
        self
    }

    const fn secret(mut self) -> Key {
        self.kind = Kind::Secret;
        self
    }

    /// The key and its aliases, as a file may spell it.
    pub fn spellings(&self) -> Vec<&'static str> {
        std::iter::once(self.name)
            .chain(self.aliases.iter().copied())
            .collect()
    }

    /// The range of a number key (the whole `u64` for any other).
    pub fn range(&self) -> std::ops::RangeInclusive<u64> {
        match self.kind {
            Kind::Number { min, max } => min..=max,
            _ => 0..=u64::MAX,
        }
    }

    /// The values it takes, in words (the docs' tables).
    pub fn values(&self) -> String {
        match self.kind {
            Kind::Text | Kind::Secret => String::new(),
            Kind::Bool => "`true`, `false`".into(),
            Kind::Number { min, max } if max >= u64::from(u32::MAX) => format!("{min} or more"),
            Kind::Number { min, max } => format!("{min} to {max}"),
            Kind::Size => "a size: `500k`, `50m`, `5g`".into(),
        }
    }
}

/// The key named `name` of `keys` (the parsers' look-up: a name that is not
/// in the table is a bug, caught by every parse in the tests).
pub fn find(keys: &'static [Key], name: &str) -> &'static Key {
    keys.iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the key table"))
}

/// A key a file sets to something else than its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    pub key: &'static str,
    /// As written; `***` for a secret.
    pub value: String,
    /// The table's default (empty: none).
    pub default: &'static str,
}

/// The keys of a file that differ from their defaults, in the file's order
/// (what the dry run shows of the settings in force); unknown keys, empty
/// values (which mean the default) and `jobName` (a name, not a setting)
/// are left out.
pub fn changed(keys: &'static [Key], file: &str, text: &str) -> Vec<Changed> {
    let Ok(props) = super::properties::PropertiesFile::parse(file, text) else {
        return Vec::new();
    };
    props
        .entries
        .iter()
        .filter_map(|e| {
            let k = keys
                .iter()
                .filter(|k| k.name != "jobName")
                .find(|k| k.name == e.key || k.aliases.contains(&e.key.as_str()))?;
            (!e.value.is_empty() && e.value != k.default).then(|| Changed {
                key: k.name,
                value: if k.kind == Kind::Secret {
                    "***".into()
                } else {
                    e.value.clone()
                },
                default: k.default,
            })
        })
        .collect()
}

/// A Markdown table of `keys`: key (with its aliases), default, values and
/// what it does; `ours` marks the keys the original did not have. The key
/// tables of docs/configuration.md are this, checked by a test.
pub fn markdown(keys: &[Key]) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut o = String::from("| key | default | values | what it does |\n|---|---|---|---|\n");
    for k in keys {
        let mut name = format!("`{}`", k.name);
        for a in k.aliases {
            name.push_str(&format!(" (or `{a}`)"));
        }
        if k.ours {
            name.push_str(" *");
        }
        let default = if k.default.is_empty() {
            String::new()
        } else {
            format!("`{}`", k.default)
        };
        o.push_str(&format!(
            "| {name} | {default} | {} | {} |\n",
            k.values(),
            cell(k.doc)
        ));
    }
    o
}

/// The keys of `job.cfg` / `local_job.cfg`: the original's in the order of
/// its templates, then ours.
pub const JOB: &[Key] = &[
    key(
        "jobName",
        "local_test",
        "Unique name of the job: 4 to 128 of a-z, A-Z, 0-9, _ and -.",
    ),
    key(
        "isIncremental",
        "false",
        "List the source again every incrementalModeInterval seconds and copy what is new or changed.",
    ).switch(),
    key(
        "incrementalModeInterval",
        "86400",
        "Seconds between the end of one incremental pass and the start of the next; at least 900.",
    ).number(900, u64::MAX),
    key(
        "srcType",
        "local",
        "Where the data comes from: local, oss, qiniu, bos, ks3, s3, youpai, http, cos or azure (case-sensitive).",
    ),
    key(
        "srcAccessKey",
        "",
        "Access key id of the source (youpai: the operator; azure: the storage account). OSSIMPORT_SRC_ACCESS_KEY overrides it.",
    ),
    key(
        "srcSecretKey",
        "",
        "Secret of the source (youpai: the operator's password; azure: the account key or a SAS token). OSSIMPORT_SRC_SECRET_KEY overrides it.",
    ).secret(),
    key(
        "srcDomain",
        "",
        "Endpoint of the source without the bucket (cos: the region; azure: the endpoint suffix, e.g. core.windows.net).",
    ),
    key(
        "srcBucket",
        "",
        "Bucket of the source, without / (azure: the container).",
    ),
    key(
        "srcPrefix",
        "",
        "local: the absolute directory to copy, written with / and ending in / (/data/, c:/data/). Buckets: the key prefix, empty or ending in /.",
    ),
    key(
        "destAccessKey",
        "",
        "Access key id of the destination. OSSIMPORT_DEST_ACCESS_KEY overrides it.",
    ),
    key(
        "destSecretKey",
        "",
        "Secret of the destination. OSSIMPORT_DEST_SECRET_KEY overrides it.",
    ).secret(),
    key(
        "destDomain",
        "",
        "Endpoint of the destination without the bucket, e.g. https://oss-cn-hangzhou.aliyuncs.com; required unless destType=local.",
    ),
    key(
        "destBucket",
        "",
        "Bucket of the destination, without /; required unless destType=local.",
    ),
    key(
        "destPrefix",
        "",
        "Prepended to every relative path; must not start with / or \\; end it with / for a folder.",
    ),
    key("appId", "0", "Tencent COS app id (srcType=cos).").number(0, u64::MAX),
    key(
        "isDownloadFromCdn",
        "false",
        "List the source bucket but download each object from cdnDomain.",
    ).switch(),
    key(
        "cdnDomain",
        "",
        "The CDN in front of the source bucket, http(s)://host; required with isDownloadFromCdn=true.",
    ),
    key(
        "httpListFilePath",
        "",
        "The URL list of srcType=http (a relative path is read next to the job file): one object a line, columns split by whitespace.",
    ),
    key(
        "httpPrefixColumn",
        "1",
        "1-based column of the URL list that holds the URL prefix.",
    ).number(1, u32::MAX as u64),
    key(
        "relativePathColumn",
        "2",
        "1-based column of the URL list that holds the relative path, which becomes the key after destPrefix.",
    ).number(1, u32::MAX as u64),
    key(
        "jobType",
        "import",
        "import copies and verifies; audit only compares the source with the destination.",
    ),
    key(
        "importSince",
        "0",
        "Unix seconds: only files modified later are copied (0: all).",
    ).number(0, u64::MAX),
    key(
        "lastModify",
        "0",
        "Unix seconds: files modified later are not verified (0: off).",
    ).number(0, u64::MAX),
    key(
        "isSkipExistFile",
        "false",
        "Skip an object the destination already has with the same size and modification time (sets the default of skipMode).",
    ).switch(),
    key(
        "taskObjectCountLimit",
        "10000",
        "At most this many objects per task (1 to 50000).",
    ).number(1, 50_000),
    key(
        "taskObjectSizeLimit",
        "1000000000",
        "At most this many bytes per task.",
    ),
    key(
        "scanThreadCount",
        "1",
        "Threads that list the source (1 to 32).",
    ).number(1, u32::MAX as u64),
    key(
        "maxMultiThreadScanDepth",
        "1",
        "Directory depth listed in parallel (1 to 16).",
    ).number(1, 16),
    key(
        "uploadThreadNumPerLargeFile",
        "3",
        "Parts in flight per multipart object.",
    ).number(1, u32::MAX as u64),
    key(
        "multipartUploadThreshold",
        "150m",
        "Objects larger than this go multipart (more than 1 MiB; k, m, g suffixes).",
    ),
    key(
        "multipartUploadPartSize",
        "50m",
        "Part size of multipart uploads (at least 100 KiB; S3 needs 5 MiB).",
    ),
    key(
        "isServerSideEncryption",
        "false",
        "Ask the destination to encrypt objects at rest.",
    ).switch(),
    key(
        "isAllowSymbolicLink",
        "false",
        "Follow symbolic links to files in a local source (never links to directories).",
    ).switch(),
    key(
        "getObjectMetaMode",
        "stat",
        "Qiniu sources: read object metadata by stat or head.",
    ),
    key(
        "isAuditAfterImport",
        "true",
        "Verify each object after copying it (always done here; false is warned about).",
    ).switch(),
    key(
        "auditMode",
        "general",
        "The original's verification level (simple, general, detailed); superseded by verifyMode.",
    ),
    key(
        "isUseExpressTunnel",
        "false",
        "The original's Express Connect tunnel; not supported (refused when true).",
    ).switch(),
    key(
        "expressTunnelProxyHost",
        "",
        "Express Connect: the tunnel service URL.",
    ),
    key(
        "expressTunnelProxyType",
        "",
        "Express Connect: the tunnel type.",
    ),
    key(
        "expressTunnelProxyUser",
        "",
        "Express Connect: the tunnel user.",
    ),
    key(
        "expressTunnelProxyDest",
        "",
        "Express Connect: the destination region.",
    ),
    key(
        "expressTunnelAuthToken",
        "",
        "Express Connect: the authentication token.",
    ).secret(),
    ours(
        "destType",
        "",
        "oss, s3 or local. Default: local when destDomain is empty and destDir is set, oss for an aliyuncs.com endpoint, else s3.",
    ),
    ours(
        "destDir",
        "",
        "The absolute destination directory of destType=local.",
    ),
    ours(
        "destRegion",
        "us-east-1",
        "Signing region of an S3 destination (OSS ignores it).",
    ),
    ours(
        "srcRegion",
        "us-east-1",
        "Signing region of an S3 source (OSS ignores it).",
    ),
    ours(
        "addressingStyle",
        "auto",
        "auto, path or virtual: path style for IP addresses and localhost with auto, virtual-hosted otherwise.",
    ),
    ours(
        "verifyMode",
        "checksum",
        "size, checksum (size and the checksums the store confirms) or readback (download again and compare).",
    ),
    ours(
        "skipMode",
        "",
        "none, sizeMtime, size or checksum: when an object the destination has is skipped. Default sizeMtime with isSkipExistFile=true, else none.",
    ),
    ours(
        "includeGlobs",
        "",
        "Comma-separated globs on the relative path: when set, only matching objects are copied.",
    ),
    ours(
        "excludeGlobs",
        "",
        "Comma-separated globs on the relative path: matching objects are not copied.",
    ),
    ours(
        "maxRequestsPerSecond",
        "0",
        "Requests per second to the source and destination (0: no cap).",
    ).number(0, u32::MAX as u64),
    ours(
        "srcListPageSize",
        "1000",
        "Keys asked for per listing page of a bucket source (1 to 1000).",
    ).number(1, 1000),
    ours(
        "objectTimeout",
        "21600",
        "Seconds one object may take, retries included, before it fails (0: no limit).",
    ).number(0, u64::MAX),
    ours(
        "endpointOutageLimit",
        "86400",
        "Seconds the destination or a bucket source may stay unreachable before waiting objects fail ENDPOINT_DOWN (0: wait for ever).",
    ).number(0, u64::MAX),
    ours(
        "copyMetadata",
        "true",
        "Copy a bucket's or URL's object metadata (Content-Type, -Encoding, -Disposition, -Language, Cache-Control, Expires, user metadata) to the destination; false: Content-Type from the name, nothing else.",
    ).switch(),
    ours(
        "preserveFileAttrs",
        "false",
        "Local sources: keep each file's mtime, atime, mode, uid and gid as user metadata under rclone's names (mtime, atime, mode, uid, gid); with destType=local, its exact mode, and its owner when running as root.",
    ).switch(),
    ours(
        "serverSideCopy",
        "auto",
        "auto: bucket to bucket on one endpoint is copied within the store (CopyObject pinned to the listed ETag; the bytes never pass through ossimport); never: always streamed through.",
    ),
    ours(
        "serverSideCopyCutoff",
        "5g",
        "Server-side copies of larger objects are made in parts (UploadPartCopy, multipartUploadPartSize each, pinned to the listed ETag, held to the source's full-object CRC-64/NVME); 5m to 5g (the most one CopyObject makes).",
    ).size(),
    ours(
        "copyTags",
        "false",
        "Copy a bucket source's object tags too (one more request per object).",
    ).switch(),
    ours(
        "destStorageClass",
        "",
        "Storage class objects are written in (e.g. STANDARD_IA, GLACIER_IR, OSS's IA); empty: the bucket's default. Never copied from the source.",
    ),
    ours(
        "requestAttempts",
        "5",
        "Attempts per request, the first included, for failures worth retrying (1 to 20).",
    ).number(1, 20),
    ours(
        "srcSecretKeyFile",
        "",
        "Read srcSecretKey from this file (relative to the job file; refused if every user may read it).",
    ),
    ours(
        "destSecretKeyFile",
        "",
        "Read destSecretKey from this file (relative to the job file; refused if every user may read it).",
    ),
    ours(
        "overwriteMode",
        "always",
        "always: a copy overwrites whatever the destination key holds; ours: only what this job wrote there and the key still holds (else DEST_CONFLICT), never: only creates keys. ours and never need a destination that honours conditional writes (checked at submit).",
    ),
    ours(
        "incrementalMode",
        "rescan",
        "With isIncremental=true: rescan lists the whole source every incrementalModeInterval seconds; watch (local sources) copies each change within seconds of its settling, and lists everything at the interval and whenever events may have been lost.",
    ),
    ours(
        "watchSettleSeconds",
        "2",
        "incrementalMode=watch: a changed file is copied once closed after writing, or untouched this many seconds (1 to 3600).",
    ).number(1, 3600),
];

/// The keys of `sys.properties`: the original's, then ours.
pub const SYS: &[Key] = &[
    key(
        "workingDir",
        ".",
        "Where the job store, the daemon's socket, keys and logs live (a relative path is from the current directory).",
    ),
    Key {
        aliases: &["workerUser"],
        ..key(
            "workerUserName",
            "",
            "SSH user that deploy logs in to the workers as (a workers line's user@ wins; default root).",
        )
    },
    key(
        "workerPassword",
        "",
        "SSH password, tried where privateKeyFile is refused.",
    ).secret(),
    key(
        "privateKeyFile",
        "",
        "SSH private key for deploy (a relative path is next to sys.properties).",
    ),
    key("sshPort", "22", "SSH port of the workers.").number(1, 65_535),
    key(
        "workerTaskThreadNum",
        "60",
        "Objects in flight per executor (the worker on the master, each agent, run).",
    ).number(1, u32::MAX as u64),
    Key {
        aliases: &["workerMaxThroughput"],
        ..key(
            "workerMaxThroughput(KB/s)",
            "0",
            "Bandwidth cap per executor in KB/s (0: none).",
        ).number(0, u64::MAX)
    },
    ours(
        "workerMaxThroughputSchedule",
        "",
        "Bandwidth by time of day, e.g. \"08:00,512 18:00,10M 23:00,off\" (replaces workerMaxThroughput).",
    ),
    key(
        "dispatcherThreadNum",
        "1",
        "The original's dispatcher threads; accepted, no effect.",
    ).number(1, u32::MAX as u64),
    key(
        "workerAbortWhenUncatchedException",
        "false",
        "The original's abort on an unknown error; true is not supported (a failed object never stops the job).",
    ).switch(),
    key(
        "workerRecordMd5",
        "false",
        "Store each file's MD5 in the destination's x-oss-meta-md5 / x-amz-meta-md5.",
    ).switch(),
    key(
        "javaHeapMaxSize",
        "1024m",
        "The original's JVM heap; accepted, no effect.",
    ).size(),
    ours(
        "daemonAddress",
        "",
        "host:port where the workers reach the daemon; ossimportd's agent API listens there.",
    ),
    ours(
        "agentDir",
        "ossimport-agent",
        "Where deploy installs the agent on each worker (relative: below the SSH user's home).",
    ),
    ours("agentPort", "7601", "Port the deployed agents listen on.").number(1, 65_535),
    ours(
        "knownHostsFile",
        "",
        "SSH host keys of the workers (default ~/.ssh/known_hosts).",
    ),
];

/// Every spelling a file may use: names and aliases.
pub fn names(keys: &[Key]) -> Vec<&'static str> {
    keys.iter()
        .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
        .collect()
}

/// The sorts of job `ossimportctl template` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// A local directory into a bucket (the original's local_job.cfg).
    Local,
    /// An S3 bucket into a bucket.
    S3,
    /// An OSS bucket into a bucket.
    Oss,
    /// The objects of an HTTP URL list into a bucket.
    Http,
    /// An Azure Blob container into a bucket.
    Azure,
    /// Compare a local directory with a bucket, copying nothing.
    Audit,
}

impl Template {
    pub const ALL: [Template; 6] = [
        Template::Local,
        Template::S3,
        Template::Oss,
        Template::Http,
        Template::Azure,
        Template::Audit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Template::Local => "local",
            Template::S3 => "s3",
            Template::Oss => "oss",
            Template::Http => "http",
            Template::Azure => "azure",
            Template::Audit => "audit",
        }
    }

    /// The keys set in this template, with the values to fill in.
    fn set(self) -> Vec<(&'static str, &'static str)> {
        let mut v = match self {
            Template::Local | Template::Audit => {
                vec![("srcType", "local"), ("srcPrefix", "/path/to/source/")]
            }
            Template::S3 => vec![
                ("srcType", "s3"),
                ("srcAccessKey", "SOURCE_ACCESS_KEY_ID"),
                ("srcSecretKey", "SOURCE_SECRET_ACCESS_KEY"),
                ("srcDomain", "https://s3.us-east-1.amazonaws.com"),
                ("srcBucket", "source-bucket"),
                ("srcRegion", "us-east-1"),
            ],
            Template::Oss => vec![
                ("srcType", "oss"),
                ("srcAccessKey", "SOURCE_ACCESS_KEY_ID"),
                ("srcSecretKey", "SOURCE_ACCESS_KEY_SECRET"),
                ("srcDomain", "https://oss-cn-shanghai.aliyuncs.com"),
                ("srcBucket", "source-bucket"),
            ],
            Template::Http => vec![
                ("srcType", "http"),
                ("httpListFilePath", "/path/to/http.list"),
            ],
            Template::Azure => vec![
                ("srcType", "azure"),
                ("srcAccessKey", "STORAGE_ACCOUNT_NAME"),
                ("srcSecretKey", "STORAGE_ACCOUNT_KEY"),
                ("srcDomain", "core.windows.net"),
                ("srcBucket", "source-container"),
            ],
        };
        v.push(("jobName", "local_test"));
        if self == Template::Audit {
            v.push(("jobType", "audit"));
        }
        v.extend([
            ("destAccessKey", "DEST_ACCESS_KEY_ID"),
            ("destSecretKey", "DEST_ACCESS_KEY_SECRET"),
            ("destDomain", "https://oss-cn-hangzhou.aliyuncs.com"),
            ("destBucket", "dest-bucket"),
        ]);
        v
    }

    /// The job file: every key in the original's order with its
    /// documentation; the keys this sort of job needs set to values to
    /// replace (upper case, `/path/to/`, `*-bucket`), the rest commented out
    /// at their defaults.
    pub fn render(self) -> String {
        let set = self.set();
        let mut out = format!(
            "# ossimport job file ({} job), written by `ossimportctl template {}`.\n\
             # Replace the values in upper case, the /path/to/ paths and the bucket\n\
             # names; a line starting with # is a comment: the key keeps its default.\n\
             # Check it with `ossimportctl run --dry-run FILE`. Keys: ossimport-job.cfg(5).\n",
            self.name(),
            self.name()
        );
        let mut ours_started = false;
        for k in JOB {
            if k.ours && !ours_started {
                ours_started = true;
                out.push_str("\n# ---- Keys of this implementation (not in the original) ----\n");
            }
            out.push('\n');
            for line in wrap(k.doc, 76) {
                out.push_str("# ");
                out.push_str(&line);
                out.push('\n');
            }
            match set.iter().find(|(n, _)| *n == k.name) {
                Some((_, v)) => out.push_str(&format!("{}={v}\n", k.name)),
                None => out.push_str(&format!("#{}={}\n", k.name, k.default)),
            }
        }
        out
    }
}

/// Splits `text` into lines of at most `width` characters at spaces.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each documented default is a value the parser takes, and means what
    /// leaving the key out means.
    #[test]
    fn every_default_parses_to_the_default() {
        let base = "srcPrefix=/data/\ndestDomain=http://127.0.0.1:9000\ndestBucket=b\n";
        let plain = crate::config::job::JobConfig::parse("job.cfg", base).unwrap();
        for k in JOB.iter().filter(|k| !k.default.is_empty()) {
            let text = format!("{base}{}={}\n", k.name, k.default);
            let with = crate::config::job::JobConfig::parse("job.cfg", &text)
                .unwrap_or_else(|e| panic!("{}={}: {e}", k.name, k.default));
            assert_eq!(
                format!("{with:?}"),
                format!("{plain:?}"),
                "{}={} is not the default",
                k.name,
                k.default
            );
        }
        let plain = crate::config::sys::SysConfig::parse("sys.properties", "").unwrap();
        for k in SYS.iter().filter(|k| !k.default.is_empty()) {
            let text = format!("{}={}\n", k.name, k.default);
            let with = crate::config::sys::SysConfig::parse("sys.properties", &text)
                .unwrap_or_else(|e| panic!("{}={}: {e}", k.name, k.default));
            let (mut a, b) = (format!("{with:?}"), format!("{plain:?}"));
            // Written or not, the key says so.
            a = a.replace("working_dir_given: true", "working_dir_given: false");
            assert_eq!(a, b, "{}={} is not the default", k.name, k.default);
        }
    }

    /// The key tables of docs/configuration.md are this table's
    /// (`UPDATE_DOCS=1` rewrites them).
    #[test]
    fn the_docs_key_tables_are_the_key_table() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let mut want = doc.clone();
        for (file, keys) in [("job.cfg", JOB), ("sys.properties", SYS)] {
            let begin = format!("<!-- keys {file}: generated -->\n");
            let start = want.find(&begin).expect("the begin marker") + begin.len();
            let end = start + want[start..].find("<!-- end -->").expect("the end marker");
            want.replace_range(start..end, &markdown(keys));
        }
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        assert!(
            doc == want,
            "docs/configuration.md's key tables differ from the key table; run UPDATE_DOCS=1 cargo test -p job keys"
        );
    }

    /// Every switch, number and size key's default is a value of its kind,
    /// within its range.
    #[test]
    fn defaults_are_of_their_kind() {
        for k in JOB.iter().chain(SYS) {
            match k.kind {
                Kind::Text | Kind::Secret => {}
                Kind::Bool => assert!(["true", "false"].contains(&k.default), "{}", k.name),
                Kind::Number { .. } => {
                    let n: u64 = k.default.parse().unwrap_or_else(|_| panic!("{}", k.name));
                    assert!(k.range().contains(&n), "{}", k.name);
                }
                Kind::Size => assert!(crate::config::parse_size(k.default).is_ok(), "{}", k.name),
            }
        }
    }

    /// What the dry run shows: keys away from their defaults, in file
    /// order, by their table name, secrets hidden.
    #[test]
    fn changed_keys_are_those_away_from_their_defaults() {
        let text = "jobName=local_test\nsrcSecretKey=hunter2\ntaskObjectCountLimit=5\n\
                    isIncremental=false\nworkerMaxThroughput=\nbogus=1\n";
        let got = changed(JOB, "job.cfg", text);
        let got: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|c| (c.key, c.value.as_str(), c.default))
            .collect();
        assert_eq!(
            got,
            [
                ("srcSecretKey", "***", ""),
                ("taskObjectCountLimit", "5", "10000")
            ]
        );
        let sys = changed(
            SYS,
            "sys.properties",
            "workerMaxThroughput=100\nworkerPassword=x\n",
        );
        assert_eq!(sys[0].key, "workerMaxThroughput(KB/s)");
        assert_eq!(sys[1].value, "***");
    }

    #[test]
    fn templates_set_each_key_once_and_comment_the_rest() {
        for t in Template::ALL {
            let text = t.render();
            for k in JOB {
                let set = text
                    .lines()
                    .filter(|l| l.starts_with(&format!("{}=", k.name)));
                let off = text
                    .lines()
                    .filter(|l| l.starts_with(&format!("#{}=", k.name)));
                assert_eq!(set.count() + off.count(), 1, "{} in {}", k.name, t.name());
            }
            assert!(text.lines().all(|l| l.len() <= 80 || !l.starts_with("# ")));
        }
    }
}
