//! Tests of the config module: the properties reader, typed validation and defaults,
//! secrets, the original's templates, and one broken file per error we promise to explain.

use std::path::{Path, PathBuf};

use super::ConfigError;
use super::job::{
    AddressingStyle, AuditMode, DestType, GetObjectMetaMode, IncrementalMode, JobConfig, JobMode,
    OverwriteMode, SkipMode, SrcType, VerifyMode,
};
use super::parse_size;
use super::properties::{Entry, PropertiesFile};
use super::sys::{SysConfig, parse_workers};

const MIB: u64 = 1024 * 1024;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(rel)
}

fn read_fixture(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).expect("fixture is readable")
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<JobConfig, ConfigError> {
    JobConfig::parse_with_env("job.cfg", text, &no_env)
}

/// A valid local-to-OSS job; tests append the key under test.
const BASE: &str = "srcPrefix=/data/photos/\n\
                    destDomain=http://oss-cn-hangzhou.aliyuncs.com\n\
                    destBucket=mybucket\n";

fn parse_ok(extra: &str) -> JobConfig {
    parse(&format!("{BASE}{extra}")).expect("config is valid")
}

/// Asserts the full error message, and that it is the promised single line.
fn check_message(err: ConfigError, expect: &str) {
    let message = err.to_string();
    assert_eq!(message, expect);
    assert!(!message.contains('\n'), "{message}");
    assert!(!message.ends_with('.'), "{message}");
}

fn check(text: &str, expect: &str) {
    check_message(parse(text).expect_err("config is invalid"), expect);
}

fn check_broken(name: &str, expect: &str) {
    let text = read_fixture(&format!("broken/{name}"));
    let err = JobConfig::parse_with_env(name, &text, &no_env).expect_err("fixture is invalid");
    check_message(err, expect);
}

fn entries(text: &str) -> Vec<(String, String, usize)> {
    PropertiesFile::parse("t.properties", text)
        .expect("parses")
        .entries
        .into_iter()
        .map(|Entry { key, value, line }| (key, value, line))
        .collect()
}

fn e(key: &str, value: &str, line: usize) -> (String, String, usize) {
    (key.to_string(), value.to_string(), line)
}

// ---- properties reader ----

#[test]
fn properties_comments_separators_and_odd_keys() {
    let text = "# comment\n! also a comment\n\n   \na=1\nb : 2\nc 3\n  d =  4  \ne=\nf\n\
                workerMaxThroughput(KB/s)=100000000\n\
                destDomain=http://oss-cn-hangzhou.aliyuncs.com\nsrcPrefix=c:/x/\n\
                g=x=y\n";
    assert_eq!(
        entries(text),
        vec![
            e("a", "1", 5),
            e("b", "2", 6),
            e("c", "3", 7),
            e("d", "4", 8),
            e("e", "", 9),
            e("f", "", 10),
            e("workerMaxThroughput(KB/s)", "100000000", 11),
            e("destDomain", "http://oss-cn-hangzhou.aliyuncs.com", 12),
            e("srcPrefix", "c:/x/", 13),
            e("g", "x=y", 14),
        ]
    );
}

#[test]
fn properties_continuations_and_escapes() {
    let text = "long=one,\\\n    two,\\\n\tthree\n\
                path=c:\\\\x\\\\\n\
                x\\=y=1\n\
                esc=\\t\\u0041\\:\\=\\n\n\
                space=a\\ \n\
                key\\ with\\ spaces = v\n";
    assert_eq!(
        entries(text),
        vec![
            e("long", "one,two,three", 1),
            e("path", "c:\\x\\", 4),
            e("x=y", "1", 5),
            e("esc", "\tA:=\n", 6),
            e("space", "a ", 7),
            e("key with spaces", "v", 8),
        ]
    );
}

#[test]
fn properties_accepts_crlf_and_bom() {
    let text = "\u{feff}# c\r\na=1\r\nb=two \r\n";
    assert_eq!(entries(text), vec![e("a", "1", 2), e("b", "two", 3)]);
}

#[test]
fn properties_duplicate_key_names_both_lines() {
    let err = PropertiesFile::parse("job.cfg", "a=1\nb=2\na=3\n").expect_err("duplicate");
    check_message(err, "job.cfg:3: a: duplicate key, first set on line 1");
}

#[test]
fn properties_bad_unicode_escape() {
    let err = PropertiesFile::parse("job.cfg", "\nk=\\u12\n").expect_err("bad escape");
    check_message(err, "job.cfg:2: k: invalid \\u escape \\u12");
}

// ---- values ----

#[test]
fn sizes_accept_units() {
    for (text, bytes) in [
        ("100000", 100_000),
        ("500k", 500 * 1024),
        ("50m", 50 * MIB),
        ("1024m", 1024 * MIB),
        ("5g", 5 * 1024 * MIB),
        ("2G", 2 * 1024 * MIB),
        ("10MB", 10 * MIB),
        ("64kb", 64 * 1024),
        ("1t", 1024 * 1024 * MIB),
        ("7b", 7),
    ] {
        assert_eq!(parse_size(text), Ok(bytes), "{text}");
    }
    for text in ["150x", "m", "-1", "1.5g", "5 gigabytes", "99999999999t"] {
        assert!(parse_size(text).is_err(), "{text}");
    }
}

#[test]
fn unknown_key_suggests_the_closest() {
    check(
        &format!("{BASE}multipartUploadTreshold=50m\n"),
        "job.cfg:4: multipartUploadTreshold: unknown key (did you mean multipartUploadThreshold?)",
    );
    check(
        &format!("{BASE}destbucket=x\n"),
        "job.cfg:4: destbucket: unknown key (did you mean destBucket?)",
    );
    check(
        &format!("{BASE}colour=blue\n"),
        "job.cfg:4: colour: unknown key",
    );
}

// ---- job.cfg: defaults and additions ----

#[test]
fn minimal_job_takes_documented_defaults() {
    let c = parse_ok("");
    assert_eq!(c.job_name, "local_test");
    assert_eq!(c.job_type, JobMode::Import);
    assert!(!c.is_incremental);
    assert_eq!(c.incremental_mode_interval, 86_400);
    assert_eq!((c.import_since, c.last_modify), (0, 0));
    assert!(!c.is_skip_exist_file);
    assert_eq!(c.src_type, SrcType::Local);
    assert_eq!(c.src_prefix, "/data/photos/");
    assert_eq!(c.dest_prefix, "");
    assert_eq!(c.task_object_count_limit, 10_000);
    assert_eq!(c.task_object_size_limit, 1_000_000_000);
    assert_eq!(c.scan_thread_count, 1);
    assert_eq!(c.max_multi_thread_scan_depth, 1);
    assert_eq!(c.multipart_upload_threshold, 150 * MIB);
    assert_eq!(c.multipart_upload_part_size, 50 * MIB);
    assert_eq!(c.upload_thread_num_per_large_file, 3);
    assert!(!c.is_server_side_encryption && !c.is_allow_symbolic_link);
    assert_eq!(c.get_object_meta_mode, GetObjectMetaMode::Stat);
    assert!(c.is_audit_after_import);
    assert_eq!(c.audit_mode, AuditMode::General);
    assert_eq!(c.app_id, 0);
    assert_eq!((c.http_prefix_column, c.relative_path_column), (1, 2));
    assert_eq!(c.http_list_file_path, None);
    assert!(!c.is_use_express_tunnel && !c.is_download_from_cdn);
    assert_eq!(c.dest_type, DestType::Oss);
    assert_eq!(c.dest_addressing_style, AddressingStyle::Virtual);
    assert_eq!(
        (c.dest_region.as_str(), c.src_region.as_str()),
        ("us-east-1", "us-east-1")
    );
    assert_eq!(c.verify_mode, VerifyMode::Checksum);
    assert_eq!(c.skip_mode, SkipMode::None);
    assert!(c.include_globs.is_empty() && c.exclude_globs.is_empty());
    assert_eq!(c.max_requests_per_second, 0);
    assert!(c.src_secret_key.is_empty() && c.dest_secret_key.is_empty());
    assert!(c.warnings.is_empty());
    assert!(c.unsupported().is_empty(), "{:?}", c.unsupported());
}

#[test]
fn empty_values_mean_default() {
    let c = parse_ok("scanThreadCount=\nmultipartUploadPartSize=\nisAuditAfterImport=\njobName=\n");
    assert_eq!(c.scan_thread_count, 1);
    assert_eq!(c.multipart_upload_part_size, 50 * MIB);
    assert!(c.is_audit_after_import);
    assert_eq!(c.job_name, "local_test");
}

#[test]
fn typed_values_and_case_insensitive_words() {
    let c = parse_ok(
        "jobType=AUDIT\nisSkipExistFile=TRUE\nmultipartUploadThreshold=1g\n\
         multipartUploadPartSize=100k\ntaskObjectSizeLimit=2g\nauditMode=detailed\n\
         getObjectMetaMode=head\nverifyMode=ReadBack\nincludeGlobs=*.jpg, raw/**,\n\
         excludeGlobs=tmp/*\nmaxRequestsPerSecond=500\nimportSince=1500000000\n",
    );
    assert_eq!(c.job_type, JobMode::Audit);
    assert!(c.is_skip_exist_file);
    assert_eq!(c.skip_mode, SkipMode::SizeMtime);
    assert_eq!(c.multipart_upload_threshold, 1024 * MIB);
    assert_eq!(c.multipart_upload_part_size, 100 * 1024);
    assert_eq!(c.task_object_size_limit, 2048 * MIB);
    assert_eq!(c.audit_mode, AuditMode::Detailed);
    assert_eq!(c.get_object_meta_mode, GetObjectMetaMode::Head);
    assert_eq!(c.verify_mode, VerifyMode::ReadBack);
    assert_eq!(c.include_globs, vec!["*.jpg", "raw/**"]);
    assert_eq!(c.exclude_globs, vec!["tmp/*"]);
    assert_eq!(c.max_requests_per_second, 500);
    assert_eq!(c.import_since, 1_500_000_000);
}

#[test]
fn skip_mode_follows_is_skip_exist_file_unless_set() {
    assert_eq!(
        parse_ok("isSkipExistFile=false\n").skip_mode,
        SkipMode::None
    );
    assert_eq!(
        parse_ok("isSkipExistFile=true\n").skip_mode,
        SkipMode::SizeMtime
    );
    let c = parse_ok("isSkipExistFile=true\nskipMode=checksum\n");
    assert_eq!(c.skip_mode, SkipMode::Checksum);
    assert_eq!(
        parse_ok("skipMode=sizemtime\n").skip_mode,
        SkipMode::SizeMtime
    );
}

#[test]
fn dest_type_and_addressing_are_resolved_at_load() {
    let job = |dest: &str| {
        parse(&format!("srcPrefix=/data/\ndestBucket=b\n{dest}")).expect("config is valid")
    };
    let c = job("destDomain=https://oss-cn-shanghai-internal.aliyuncs.com\n");
    assert_eq!(
        (c.dest_type, c.dest_addressing_style),
        (DestType::Oss, AddressingStyle::Virtual)
    );
    let c = job("destDomain=http://127.0.0.1:9000\n");
    assert_eq!(
        (c.dest_type, c.dest_addressing_style),
        (DestType::S3, AddressingStyle::Path)
    );
    // A bare host gets https:// (the original's OSS client gave http://;
    // plain HTTP is taken only when written out).
    let c = job("destDomain=localhost:9000\n");
    assert_eq!(c.dest_domain, "https://localhost:9000");
    assert_eq!(c.dest_addressing_style, AddressingStyle::Path);
    let c = job("destDomain=http://[::1]:9000/\n");
    assert_eq!(c.dest_addressing_style, AddressingStyle::Path);
    let c = job("destDomain=https://s3.eu-west-1.amazonaws.com\ndestRegion=eu-west-1\n");
    assert_eq!(
        (c.dest_type, c.dest_addressing_style),
        (DestType::S3, AddressingStyle::Virtual)
    );
    assert_eq!(c.dest_region, "eu-west-1");
    let c = job("destDomain=http://127.0.0.1:9000\naddressingStyle=virtual\n");
    assert_eq!(c.dest_addressing_style, AddressingStyle::Virtual);
    let c = job("destDomain=https://minio.example\naddressingStyle=path\ndestType=oss\n");
    assert_eq!(
        (c.dest_type, c.dest_addressing_style),
        (DestType::Oss, AddressingStyle::Path)
    );
    // Only destDir: a local destination; destDomain and destBucket are not needed.
    let c = parse("srcPrefix=/data/\ndestDir=/backup/photos\n").expect("config is valid");
    assert_eq!(c.dest_type, DestType::Local);
    assert_eq!(c.dest_dir, Some(PathBuf::from("/backup/photos")));
}

#[test]
fn scan_thread_count_above_32_is_clamped_with_a_warning() {
    let c = parse_ok("scanThreadCount=10000\n");
    assert_eq!(c.scan_thread_count, 32);
    assert_eq!(
        c.warnings,
        vec!["job.cfg:4: scanThreadCount: 10000 is above the maximum 32; using 32"]
    );
    check(
        &format!("{BASE}scanThreadCount=0\n"),
        "job.cfg:4: scanThreadCount: must be at least 1, got 0",
    );
}

#[test]
fn required_keys_point_at_the_line_to_fill_in() {
    check(
        "destDomain=http://oss-cn-hangzhou.aliyuncs.com\ndestBucket=b\n",
        "job.cfg: srcPrefix: required for srcType=local: the absolute directory to copy, ending in /",
    );
    check(
        "srcPrefix=/data/\ndestBucket=b\n",
        "job.cfg: destDomain: required: the endpoint without the bucket, e.g. http://oss-cn-hangzhou.aliyuncs.com",
    );
    check(
        "srcPrefix=/data/\ndestDomain=http://oss-cn-hangzhou.aliyuncs.com\ndestBucket=\n",
        "job.cfg:3: destBucket: required when destType=oss",
    );
}

#[test]
fn other_value_errors() {
    check(
        "srcType=http\ndestDomain=http://oss-cn-hangzhou.aliyuncs.com\ndestBucket=b\n",
        "job.cfg:1: httpListFilePath: required when srcType=http: the absolute path of the URL list",
    );
    check(
        &format!("{BASE}srcType=ftp\n"),
        "job.cfg:4: srcType: expected one of local, oss, qiniu, bos, ks3, s3, youpai, http, cos, azure, got \"ftp\"",
    );
    check(
        "srcPrefix=data/\ndestDomain=http://oss-cn-hangzhou.aliyuncs.com\ndestBucket=b\n",
        "job.cfg:1: srcPrefix: must be an absolute directory such as /data/ or c:/data/, got \"data/\"",
    );
    check(
        "srcPrefix=c:\\\\data\\\\\ndestDomain=http://oss-cn-hangzhou.aliyuncs.com\ndestBucket=b\n",
        "job.cfg:1: srcPrefix: use / as the directory separator (e.g. c:/data/), got \"c:\\\\data\\\\\"",
    );
    check(
        "srcPrefix=/data/\ndestDomain=ftp://oss-cn-hangzhou.aliyuncs.com\ndestBucket=b\n",
        "job.cfg:2: destDomain: must be an http:// or https:// endpoint, got \"ftp://oss-cn-hangzhou.aliyuncs.com\"",
    );
    check(
        "srcPrefix=/data/\ndestType=local\ndestDir=backup/\n",
        "job.cfg:3: destDir: must be an absolute directory, got \"backup/\"",
    );
    check(
        &format!("{BASE}uploadThreadNumPerLargeFile=0\n"),
        "job.cfg:4: uploadThreadNumPerLargeFile: must be at least 1, got 0",
    );
    check(
        &format!("{BASE}taskObjectSizeLimit=0\n"),
        "job.cfg:4: taskObjectSizeLimit: must be at least 1 byte",
    );
    check(
        &format!("{BASE}httpPrefixColumn=2\n"),
        "job.cfg:4: httpPrefixColumn: must differ from relativePathColumn (both are 2)",
    );
    check(
        &format!("{BASE}importSince=yesterday\n"),
        "job.cfg:4: importSince: expected a whole number, got \"yesterday\"",
    );
    check(
        &format!("{BASE}srcType=oss\nsrcBucket=a/b\n"),
        "job.cfg:5: srcBucket: must be a bare bucket name without /",
    );
}

// ---- secrets ----

#[test]
fn env_overrides_keys_from_the_file() {
    let env = |name: &str| match name {
        "OSSIMPORT_SRC_ACCESS_KEY" => Some("env-src-ak".to_string()),
        "OSSIMPORT_SRC_SECRET_KEY" => Some("env-src-sk".to_string()),
        "OSSIMPORT_DEST_ACCESS_KEY" => Some("env-dest-ak".to_string()),
        "OSSIMPORT_DEST_SECRET_KEY" => Some("env-dest-sk".to_string()),
        _ => None,
    };
    let text =
        format!("{BASE}srcAccessKey=file-ak\nsrcSecretKey=file-sk\ndestSecretKey=file-dsk\n");
    let c = JobConfig::parse_with_env("job.cfg", &text, &env).expect("config is valid");
    assert_eq!(c.src_access_key, "env-src-ak");
    assert_eq!(c.src_secret_key.expose(), "env-src-sk");
    assert_eq!(c.dest_access_key, "env-dest-ak");
    assert_eq!(c.dest_secret_key.expose(), "env-dest-sk");

    let c = parse_ok("destAccessKey=ak\ndestSecretKey=sk\n");
    assert_eq!(
        (c.dest_access_key.as_str(), c.dest_secret_key.expose()),
        ("ak", "sk")
    );
}

#[cfg(unix)]
fn write_secret(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

#[cfg(unix)]
#[test]
fn secret_files_are_read_and_world_readable_ones_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let private = write_secret(dir.path(), "dest.key", "s3cr3t\n", 0o600);
    let open = write_secret(dir.path(), "open.key", "s3cr3t\n", 0o644);
    let empty = write_secret(dir.path(), "empty.key", "\n", 0o600);

    let c = parse_ok(&format!("destSecretKeyFile={}\n", private.display()));
    assert_eq!(c.dest_secret_key.expose(), "s3cr3t");
    assert_eq!(c.dest_secret_key_file, Some(private.clone()));

    let shown = open.display();
    check(
        &format!("{BASE}destSecretKeyFile={shown}\n"),
        &format!(
            "job.cfg:4: destSecretKeyFile: {shown} is open to other users (mode 644); run chmod 600 {shown}"
        ),
    );
    check(
        &format!("{BASE}srcSecretKeyFile={}\n", empty.display()),
        &format!("job.cfg:4: srcSecretKeyFile: {} is empty", empty.display()),
    );
    check(
        &format!(
            "{BASE}destSecretKey=inline\ndestSecretKeyFile={}\n",
            private.display()
        ),
        "job.cfg:5: destSecretKeyFile: conflicts with destSecretKey on line 4; set only one",
    );
    let missing = dir.path().join("missing.key");
    let err = parse(&format!("{BASE}destSecretKeyFile={}\n", missing.display()))
        .expect_err("missing file");
    assert!(
        err.to_string().starts_with(&format!(
            "job.cfg:4: destSecretKeyFile: cannot read {}: ",
            missing.display()
        )),
        "{err}"
    );

    // The environment wins over the file, which is then not even opened.
    let env = |name: &str| (name == "OSSIMPORT_DEST_SECRET_KEY").then(|| "from-env".to_string());
    let text = format!("{BASE}destSecretKeyFile={shown}\n");
    let c = JobConfig::parse_with_env("job.cfg", &text, &env).expect("config is valid");
    assert_eq!(c.dest_secret_key.expose(), "from-env");
}

#[cfg(unix)]
#[test]
fn relative_secret_file_is_found_next_to_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_secret(dir.path(), "dest.key", "abc\r\n", 0o600);
    let cfg = dir.path().join("job.cfg");
    std::fs::write(&cfg, format!("{BASE}destSecretKeyFile=dest.key\n")).expect("write cfg");
    let c = JobConfig::load_with_env(&cfg, &no_env).expect("config is valid");
    assert_eq!(c.dest_secret_key.expose(), "abc");
}

#[test]
fn secrets_stay_out_of_debug_and_fingerprint() {
    let c = parse_ok(
        "srcAccessKey=AKIDEXAMPLE\nsrcSecretKey=hunter2\ndestSecretKey=swordfish\n\
         expressTunnelAuthToken=tok3n\n",
    );
    let debug = format!("{c:?}");
    let fingerprint = c.fingerprint();
    for secret in ["hunter2", "swordfish", "tok3n"] {
        assert!(!debug.contains(secret), "{debug}");
        assert!(!fingerprint.contains(secret), "{fingerprint}");
    }
    assert!(!fingerprint.contains("AKIDEXAMPLE"), "{fingerprint}");
}

#[test]
fn fingerprint_changes_only_with_behaviour() {
    let a = parse_ok("destPrefix=a/\nsrcSecretKey=one\ndestAccessKey=ak1\n");
    let same = parse_ok("destPrefix=a/\nsrcSecretKey=two\ndestAccessKey=ak2\n");
    let other = parse_ok("destPrefix=b/\nsrcSecretKey=one\ndestAccessKey=ak1\n");
    assert_eq!(
        a.fingerprint(),
        parse_ok("destPrefix=a/\nsrcSecretKey=one\ndestAccessKey=ak1\n").fingerprint()
    );
    assert_eq!(a.fingerprint(), same.fingerprint());
    assert_ne!(a.fingerprint(), other.fingerprint());
    assert!(a.fingerprint().contains("\"dest_prefix\":\"a/\""));
}

#[test]
fn unsupported_names_every_ignored_setting() {
    let c = parse_ok(
        "isIncremental=true\nisUseExpressTunnel=true\ncdnDomain=cdn.example.com\n\
         getObjectMetaMode=head\nscanThreadCount=1\nmaxMultiThreadScanDepth=2\n\
         auditMode=simple\nisAuditAfterImport=false\nappId=7\nisServerSideEncryption=true\n\
         importSince=1\nlastModify=2\nexcludeGlobs=*.tmp\nmaxRequestsPerSecond=9\n",
    );
    assert_eq!(
        c.unsupported(),
        vec![
            "isUseExpressTunnel=true and expressTunnel* keys: Express Connect tunnels do not apply to this build (it connects directly); values ignored",
            "cdnDomain is set but isDownloadFromCdn=false: objects are read from the bucket",
            "getObjectMetaMode=head: applies to qiniu sources only; value ignored",
            "maxMultiThreadScanDepth=2: applies with scanThreadCount above 1; value ignored",
            "auditMode=simple: superseded by verifyMode; value ignored",
            "isAuditAfterImport=false: every object is verified (see verifyMode); value ignored",
            "appId=7: not needed with the S3-compatible COS endpoint; value ignored",
        ]
    );
}

// ---- the original's templates ----

fn template(name: &str) -> JobConfig {
    let text = read_fixture(&format!("templates/{name}"));
    JobConfig::parse_with_env(name, &text, &no_env).expect("template parses")
}

#[test]
fn every_original_job_template_parses() {
    for (name, src_type, unsupported) in [
        ("local_job.cfg", SrcType::Local, vec![]),
        ("oss_job.cfg", SrcType::Oss, vec![]),
        ("qiniu_job.cfg", SrcType::Qiniu, vec![]),
        ("bos_job.cfg", SrcType::Bos, vec![]),
        ("s3_job.cfg", SrcType::S3, vec![]),
        ("youpai_job.cfg", SrcType::Youpai, vec![]),
        (
            "cos_job.cfg",
            SrcType::Cos,
            vec![
                "appId=1252883280: not needed with the S3-compatible COS endpoint; value ignored"
                    .to_string(),
            ],
        ),
        ("blob_job.cfg", SrcType::Azure, vec![]),
        (
            "et_job.cfg",
            SrcType::Local,
            vec![
                "isUseExpressTunnel=true and expressTunnel* keys: Express Connect tunnels do not apply to this build (it connects directly); values ignored"
                    .to_string(),
                "auditMode=simple: superseded by verifyMode; value ignored".to_string(),
            ],
        ),
    ] {
        let c = template(name);
        assert_eq!(c.src_type, src_type, "{name}");
        assert_eq!(c.unsupported(), unsupported, "{name}");
        assert_eq!(c.dest_type, DestType::Oss, "{name}");
        assert_eq!(c.dest_bucket, "mybucket", "{name}");
        // `isAuditAfterImport=true ` (with a trailing space) is true, unlike in Java.
        assert!(c.is_audit_after_import, "{name}");
    }
}

#[test]
fn template_details_come_through() {
    let s3 = template("s3_job.cfg");
    assert_eq!(
        s3.warnings,
        vec!["s3_job.cfg:106: scanThreadCount: 10000 is above the maximum 32; using 32"]
    );
    assert_eq!(s3.src_domain, "http://s3.us-east-1.amazonaws.com");
    let blob = template("blob_job.cfg");
    // The blob sample swaps threshold and part size; both values are legal.
    assert_eq!(
        (
            blob.multipart_upload_threshold,
            blob.multipart_upload_part_size
        ),
        (50 * MIB, 150 * MIB)
    );
    assert!(blob.src_secret_key.expose().ends_with("STHgjJA=="));
    assert_eq!(template("cos_job.cfg").src_prefix, "/docs/");
    assert_eq!(template("local_job.cfg").src_prefix, "D:/work/oss/data/");
    let et = template("et_job.cfg");
    assert_eq!(et.job_name, "local_test_md");
    assert_eq!(et.express_tunnel_proxy_type, "data-migration");
    assert_eq!(
        et.express_tunnel_auth_token.expose(),
        "ZDM5******kyNDIyNWUzYm******Zjli"
    );
    assert_eq!(et.task_object_count_limit, 5);
    let youpai = template("youpai_job.cfg");
    assert_eq!(youpai.task_object_count_limit, 1);
    // The REST API domain becomes the S3 endpoint, with a warning that says
    // which credentials that takes.
    assert_eq!(youpai.src_domain, "https://s3.api.upyun.com");
    assert_eq!(youpai.src_addressing_style, AddressingStyle::Virtual);
    assert_eq!(youpai.warnings.len(), 1, "{:?}", youpai.warnings);
    assert!(
        youpai.warnings[0].starts_with("youpai_job.cfg:34: srcDomain: srcType=youpai is read through Upyun's S3 endpoint https://s3.api.upyun.com instead of the REST API http://v0.api.upyun.com")
            && youpai.warnings[0].contains("an operator's S3 access key and secret"),
        "{}",
        youpai.warnings[0]
    );
    assert_eq!(
        template("local_job.cfg").http_list_file_path,
        Some(PathBuf::from("c:/example/http.list"))
    );
}

#[test]
fn standalone_template_needs_only_a_bucket() {
    // The standalone package ships with an empty destBucket for the user to fill in.
    let text = read_fixture("templates/standalone_local_job.cfg");
    let err = JobConfig::parse_with_env("standalone_local_job.cfg", &text, &no_env)
        .expect_err("destBucket is empty");
    check_message(
        err,
        "standalone_local_job.cfg:54: destBucket: required when destType=oss",
    );
    let filled = text.replace("\ndestBucket=\n", "\ndestBucket=mybucket\n");
    let c = JobConfig::parse_with_env("local_job.cfg", &filled, &no_env).expect("parses");
    assert_eq!(c.src_prefix, "d:/work/oss/data/");
    assert_eq!(c.skip_mode, SkipMode::SizeMtime);
    assert_eq!(c.task_object_count_limit, 1000);
    assert!(c.unsupported().is_empty(), "{:?}", c.unsupported());
}

#[test]
fn original_sys_properties_parses() {
    let text = read_fixture("templates/sys.properties");
    let s = SysConfig::parse("sys.properties", &text).expect("template parses");
    assert_eq!(s.working_dir, PathBuf::from("."));
    assert_eq!(s.worker_user_name, "");
    assert!(s.worker_password.is_empty());
    assert_eq!(s.private_key_file, None);
    assert_eq!(s.ssh_port, 22);
    assert_eq!(s.worker_task_thread_num, 60);
    assert_eq!(s.worker_max_throughput_kbps, 100_000_000);
    assert_eq!(s.dispatcher_thread_num, 1);
    assert!(!s.worker_abort_when_uncatched_exception);
    assert!(!s.worker_record_md5);
    assert_eq!(s.java_heap_max_size, 1024 * MIB);
    assert!(s.unsupported().is_empty(), "{:?}", s.unsupported());
}

// ---- sys.properties ----

#[test]
fn sys_defaults_and_aliases() {
    let s = SysConfig::parse("sys.properties", "").expect("empty file is valid");
    assert_eq!(s.worker_task_thread_num, 60);
    assert_eq!(s.worker_max_throughput_kbps, 0);
    assert_eq!(s.java_heap_max_size, 1024 * MIB);
    assert!(s.unsupported().is_empty());

    let s = SysConfig::parse(
        "sys.properties",
        "workerUser=ops\nworkerMaxThroughput=2048\nsshPort=2222\njavaHeapMaxSize=4g\n\
         workerPassword=pw\nprivateKeyFile=/home/ops/.ssh/id_ed25519\ndispatcherThreadNum=5\n\
         workerAbortWhenUncatchedException=true\nworkerRecordMd5=true\n",
    )
    .expect("valid");
    assert_eq!(s.worker_user_name, "ops");
    assert_eq!(s.worker_max_throughput_kbps, 2048);
    assert_eq!(s.ssh_port, 2222);
    assert_eq!(s.java_heap_max_size, 4096 * MIB);
    assert!(!format!("{s:?}").contains("pw\""));
    assert_eq!(
        s.unsupported(),
        vec![
            "dispatcherThreadNum=5: there is no separate dispatcher; value ignored",
            "javaHeapMaxSize: ignored: no JVM",
            "workerAbortWhenUncatchedException=true: not supported yet; a failed object never stops the job",
        ]
    );
}

#[test]
fn deploy_keys_and_worker_lines() {
    let s = SysConfig::parse(
        "sys.properties",
        "daemonAddress=10.0.0.1:7600\nagentDir=/opt/oi-agent/\nagentPort=7700\nknownHostsFile=/etc/oi/known_hosts\n",
    )
    .expect("valid");
    assert_eq!(s.daemon_address.as_deref(), Some("10.0.0.1:7600"));
    assert_eq!(s.agent_dir, "/opt/oi-agent");
    assert_eq!(s.agent_port, 7700);
    let d = SysConfig::parse("sys.properties", "").unwrap();
    assert_eq!(
        (d.daemon_address, d.agent_dir.as_str(), d.agent_port),
        (None, "ossimport-agent", 7601)
    );
    for (text, expect) in [
        (
            "daemonAddress=10.0.0.1",
            "sys.properties:1: daemonAddress: \"10.0.0.1\" is not host:port",
        ),
        (
            "agentDir=../etc",
            "sys.properties:1: agentDir: \"../etc\": use letters",
        ),
        (
            "agentDir=a;rm -rf /",
            "sys.properties:1: agentDir: \"a;rm -rf /\": use letters",
        ),
    ] {
        let e = SysConfig::parse("sys.properties", text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(expect), "{text}: {e}");
    }
    use crate::config::sys::WorkerHost;
    let w = |l: &str| WorkerHost::parse(l).map(|h| (h.user, h.host, h.port));
    assert_eq!(w("10.0.0.2"), Ok((None, "10.0.0.2".into(), None)));
    assert_eq!(
        w("ops@w1:2222"),
        Ok((Some("ops".into()), "w1".into(), Some(2222)))
    );
    assert_eq!(w("[fd00::2]:22"), Ok((None, "fd00::2".into(), Some(22))));
    assert_eq!(w("fd00::2"), Ok((None, "fd00::2".into(), None)));
    for bad in [
        "w1:0",
        "w1:x",
        "@w1",
        "a b@w1",
        "w1;reboot",
        "[fd00::1",
        "$(id)@w1",
    ] {
        assert!(w(bad).is_err(), "{bad}");
    }
}

#[test]
fn sys_errors() {
    let check_sys = |text: &str, expect: &str| {
        check_message(
            SysConfig::parse("sys.properties", text).expect_err("invalid"),
            expect,
        );
    };
    check_sys(
        "workerUserName=a\nworkerUser=b\n",
        "sys.properties:2: workerUser: same setting as workerUserName on line 1; keep only one",
    );
    check_sys(
        "workerMaxThroughput(KB/s)=1\nworkerMaxThroughput=2\n",
        "sys.properties:2: workerMaxThroughput: same setting as workerMaxThroughput(KB/s) on line 1; keep only one",
    );
    check_sys(
        "sshPort=0\n",
        "sys.properties:1: sshPort: must be between 1 and 65535, got 0",
    );
    check_sys(
        "\nsshPort=70000\n",
        "sys.properties:2: sshPort: must be between 1 and 65535, got 70000",
    );
    check_sys(
        "workerTaskThreadNumber=60\n",
        "sys.properties:1: workerTaskThreadNumber: unknown key (did you mean workerTaskThreadNum?)",
    );
    check_sys(
        "workerTaskThreadNum=0\n",
        "sys.properties:1: workerTaskThreadNum: must be at least 1, got 0",
    );
    check_sys(
        "workerRecordMd5=1\n",
        "sys.properties:1: workerRecordMd5: expected true or false, got \"1\"",
    );
    check_sys(
        "javaHeapMaxSize=2 gigs\n",
        "sys.properties:1: javaHeapMaxSize: expected a size such as 100000, 500k, 50m or 5g, got \"2 gigs\"",
    );
}

#[test]
fn workers_file() {
    let text = "# master first\n10.0.0.1\n\n  10.0.0.2  # rack 2\r\nworker-3.example\n";
    assert_eq!(
        parse_workers("workers", text).expect("valid"),
        vec!["10.0.0.1", "10.0.0.2", "worker-3.example"]
    );
    check_message(
        parse_workers("workers", "a\nb\na\n").expect_err("duplicate"),
        "workers:3: host: a is listed twice, first on line 1",
    );
    check_message(
        parse_workers("workers", "a b\n").expect_err("two hosts"),
        "workers:1: host: expected one host per line, got \"a b\"",
    );
}

#[test]
fn unreadable_file_names_it() {
    let path = fixture("does/not/exist.cfg");
    let err = JobConfig::load(&path).expect_err("missing");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot read file: No such file or directory (os error 2)",
            path.display()
        )
    );
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn load_names_the_path_in_errors() {
    let path = fixture("broken/bad_boolean.cfg");
    let err = JobConfig::load_with_env(&path, &no_env).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:8: isSkipExistFile: expected true or false, got \"yes\"",
            path.display()
        )
    );
}

// ---- broken files: the exact message for each ----

#[test]
fn broken_unknown_key() {
    check_broken(
        "unknown_key.cfg",
        "unknown_key.cfg:7: destBuckt: unknown key (did you mean destBucket?)",
    );
}

#[test]
fn broken_job_name() {
    check_broken(
        "bad_job_name.cfg",
        "bad_job_name.cfg:2: jobName: must be 4 to 128 characters from a-z, A-Z, 0-9, _ and -, got \"nightly backup\"",
    );
}

#[test]
fn broken_size_unit() {
    check_broken(
        "bad_size_unit.cfg",
        "bad_size_unit.cfg:8: multipartUploadThreshold: expected a size such as 100000, 500k, 50m or 5g, got \"150x\"",
    );
}

#[test]
fn broken_src_prefix_without_slash() {
    check_broken(
        "src_prefix_no_slash.cfg",
        "src_prefix_no_slash.cfg:4: srcPrefix: must end with / (it names a directory or key prefix, never a single file), got \"/data/photos\"",
    );
}

#[test]
fn broken_src_prefix_double_slash() {
    check_broken(
        "src_prefix_double_slash.cfg",
        "src_prefix_double_slash.cfg:4: srcPrefix: must not contain //, got \"/data//photos/\"",
    );
}

#[test]
fn broken_dest_prefix_leading_slash() {
    check_broken(
        "dest_prefix_leading_slash.cfg",
        "dest_prefix_leading_slash.cfg:7: destPrefix: must not start with / or \\ (object keys cannot start with them)",
    );
}

#[test]
fn broken_threshold_too_small() {
    check_broken(
        "threshold_too_small.cfg",
        "threshold_too_small.cfg:8: multipartUploadThreshold: must be larger than 1m (1048576 bytes), got 1m",
    );
}

#[test]
fn broken_part_size_too_small() {
    check_broken(
        "part_size_too_small.cfg",
        "part_size_too_small.cfg:8: multipartUploadPartSize: must be at least 100k (102400 bytes), got 64k; the original silently used 50m instead",
    );
}

#[test]
fn broken_boolean() {
    check_broken(
        "bad_boolean.cfg",
        "bad_boolean.cfg:8: isSkipExistFile: expected true or false, got \"yes\"",
    );
}

#[test]
fn broken_src_type_case() {
    check_broken(
        "bad_src_type_case.cfg",
        "bad_src_type_case.cfg:3: srcType: source types are case-sensitive: use s3, not \"S3\"",
    );
}

#[test]
fn broken_duplicate_key() {
    check_broken(
        "duplicate_key.cfg",
        "duplicate_key.cfg:8: destBucket: duplicate key, first set on line 6",
    );
}

#[test]
fn broken_original_oss_template_revision() {
    // aliyun/ossimport conf/oss/job.cfg at 330c961 set destPrefix where srcPrefix was meant.
    check_broken(
        "oss_job_330c961.cfg",
        "oss_job_330c961.cfg:59: destPrefix: duplicate key, first set on line 40",
    );
}

#[test]
fn broken_interval_too_small() {
    check_broken(
        "interval_too_small.cfg",
        "interval_too_small.cfg:9: incrementalModeInterval: must be at least 900, got 600",
    );
}

#[test]
fn broken_dest_domain_with_bucket() {
    check_broken(
        "dest_domain_with_bucket.cfg",
        "dest_domain_with_bucket.cfg:5: destDomain: must not include the bucket (mybucket.oss-cn-hangzhou.aliyuncs.com); use the bare endpoint http://oss-cn-hangzhou.aliyuncs.com",
    );
}

#[test]
fn broken_dest_bucket_with_slash() {
    check_broken(
        "dest_bucket_with_slash.cfg",
        "dest_bucket_with_slash.cfg:6: destBucket: must be a bare bucket name without /; put the path in destPrefix",
    );
}

#[test]
fn broken_missing_dest_dir() {
    check_broken(
        "missing_dest_dir.cfg",
        "missing_dest_dir.cfg:6: destDir: required when destType=local",
    );
}

#[test]
fn broken_verify_mode() {
    check_broken(
        "bad_verify_mode.cfg",
        "bad_verify_mode.cfg:8: verifyMode: expected one of size, checksum, readback, got \"md5\"",
    );
}

#[test]
fn broken_task_count_too_large() {
    check_broken(
        "task_count_too_large.cfg",
        "task_count_too_large.cfg:8: taskObjectCountLimit: must be between 1 and 50000, got 60000",
    );
}

#[test]
fn broken_same_columns() {
    check_broken(
        "same_columns.cfg",
        "same_columns.cfg:9: relativePathColumn: must differ from httpPrefixColumn (both are 1)",
    );
}

#[test]
fn broken_scan_depth_zero() {
    check_broken(
        "scan_depth_zero.cfg",
        "scan_depth_zero.cfg:8: maxMultiThreadScanDepth: must be between 1 and 16, got 0",
    );
}

#[test]
fn files_in_the_originals_encodings_are_read() {
    use crate::config::decode;
    let gbk = |s: &str| encoding_rs::GBK.encode(s).0.into_owned();
    // UTF-8, with and without BOM, LF / CRLF / CR line ends.
    for bytes in [
        b"#c\njobName=a\n".to_vec(),
        b"\xEF\xBB\xBF#c\r\njobName=a\r\n".to_vec(),
        b"#c\rjobName=a\r".to_vec(),
    ] {
        let (text, notes) = decode("job.cfg", &bytes).unwrap();
        assert_eq!(text, "#c\njobName=a\n", "{bytes:?}");
        assert!(notes.is_empty());
    }
    // A Chinese Windows editor: GBK comments, CRLF; an ASCII value.
    let mut bytes = gbk("#任务名称\r\njobName=local_test\r\n#源目录\r\n");
    bytes.extend(b"srcPrefix=/data/\r\n");
    let (text, notes) = decode("job.cfg", &bytes).unwrap();
    // (Some GBK byte pairs are also valid UTF-8: such a comment is kept as
    // mojibake, which is harmless in a comment.)
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#");
    assert_eq!(lines[1], "jobName=local_test");
    assert!(lines[2].starts_with('#'));
    assert_eq!(lines[3], "srcPrefix=/data/");
    assert!(notes.is_empty(), "{notes:?}");
    let props = PropertiesFile::parse("job.cfg", &text).unwrap();
    let keys: Vec<&str> = props.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["jobName", "srcPrefix"]);
    // A GBK value: read as GB18030, with a note naming file and line.
    let bytes = gbk("#说明\njobName=迁移任务\n");
    let (text, notes) = decode("conf/job.cfg", &bytes).unwrap();
    assert_eq!(text, "#\njobName=迁移任务\n");
    assert_eq!(
        notes,
        ["conf/job.cfg: line 2 not UTF-8, read as GB18030 (save the file as UTF-8 to be sure)"]
    );
    // Latin-1 in a comment is fine; in a value it is neither.
    let (text, _) = decode("sys.properties", b"# caf\xe9\nworkingDir=/w\n").unwrap();
    assert_eq!(text, "#\nworkingDir=/w\n");
    let err = decode("sys.properties", b"# ok\nworkingDir=/caf\xe9/w\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "sys.properties:2: workingDir: not valid text (save the file as UTF-8)"
    );
}

#[test]
fn bad_glob_patterns_are_refused_with_their_line() {
    let text = format!("{BASE}includeGlobs=*.jpg, [a-\n");
    let err = parse(&text).expect_err("config is invalid").to_string();
    assert!(
        err.starts_with("job.cfg:4: includeGlobs: bad glob pattern \"[a-\": "),
        "{err}"
    );
    let c = parse_ok("includeGlobs=*.{jpg,png}, raw/**\n");
    assert_eq!(c.include_globs, vec!["*.{jpg,png}", "raw/**"]);
    let text = format!("{BASE}excludeGlobs={{tmp,cache\n");
    let err = parse(&text).expect_err("config is invalid").to_string();
    assert!(
        err.starts_with("job.cfg:4: excludeGlobs: bad glob pattern"),
        "{err}"
    );
}

#[test]
fn cdn_download_needs_a_bucket_source_and_a_domain() {
    check(
        &format!("{BASE}isDownloadFromCdn=true\ncdnDomain=cdn.example.com\n"),
        "job.cfg:4: isDownloadFromCdn: needs a bucket source (srcType=local has no CDN in front of it)",
    );
    let bucket = "srcType=s3\nsrcDomain=http://127.0.0.1:9000\nsrcBucket=b\nsrcPrefix=p/\n\
                  destDomain=http://oss-cn-hangzhou.aliyuncs.com\ndestBucket=mybucket\n";
    check(
        &format!("{bucket}isDownloadFromCdn=true\n"),
        "job.cfg:7: cdnDomain: required when isDownloadFromCdn=true: the CDN domain objects are downloaded from, e.g. http://cdn.example.com",
    );
    check(
        &format!("{bucket}isDownloadFromCdn=true\ncdnDomain=ftp://cdn\n"),
        "job.cfg:8: cdnDomain: must be an http:// or https:// endpoint, got \"ftp://cdn\"",
    );
    let c = parse(&format!(
        "{bucket}isDownloadFromCdn=true\ncdnDomain=cdn.example.com\n"
    ))
    .unwrap();
    assert_eq!(c.cdn_domain, "https://cdn.example.com");
    assert!(c.unsupported().is_empty(), "{:?}", c.unsupported());
}

#[test]
fn watch_mode_needs_an_incremental_job_of_a_local_source() {
    let c = parse_ok("isIncremental=true\nincrementalMode=watch\n");
    assert_eq!(c.incremental_mode, IncrementalMode::Watch);
    assert_eq!(c.watch_settle_seconds, 2);
    assert_eq!(
        parse_ok("").incremental_mode,
        IncrementalMode::Rescan,
        "the default is the original's"
    );
    check(
        &format!("{BASE}incrementalMode=watch\n"),
        "job.cfg:4: incrementalMode: watch needs isIncremental=true (a one-pass job has nothing to watch for)",
    );
    check(
        "srcType=s3\nsrcDomain=http://127.0.0.1:9000\nsrcBucket=b\nsrcPrefix=p/\n\
         destDomain=http://oss-cn-hangzhou.aliyuncs.com\ndestBucket=mybucket\n\
         isIncremental=true\nincrementalMode=watch\n",
        "job.cfg:8: incrementalMode: watch is for srcType=local only (srcType=s3: a bucket or URL list cannot be watched; its changes are found by rescan passes, incrementalMode=rescan)",
    );
    check(
        &format!("{BASE}isIncremental=true\nincrementalMode=watch\nwatchSettleSeconds=0\n"),
        "job.cfg:6: watchSettleSeconds: must be between 1 and 3600, got 0",
    );
}

#[test]
fn overwrite_modes_are_for_bucket_destinations() {
    assert_eq!(parse_ok("").overwrite_mode, OverwriteMode::Always);
    assert_eq!(
        parse_ok("overwriteMode=ours\n").overwrite_mode,
        OverwriteMode::Ours
    );
    assert_eq!(
        parse_ok("overwriteMode=Never\n").overwrite_mode,
        OverwriteMode::Never
    );
    check(
        "srcPrefix=/data/\ndestType=local\ndestDir=/backup/\noverwriteMode=ours\n",
        "job.cfg:4: overwriteMode: ours and never are for bucket destinations only (destType=local writes files in place)",
    );
}
