//! The same object, not only the same bytes: a bucket's objects arrive with
//! their Content-Type, Content-Encoding, Content-Disposition,
//! Content-Language, Cache-Control, Expires and user metadata, a single PUT
//! and a multipart upload alike; metadata the destination cannot store
//! fails its object `META_INVALID` with the name of what is wrong; an
//! audit reports a destination object whose metadata was changed
//! (`META_MISMATCH`, the field and both values); `copyMetadata=false` keeps
//! the former behaviour (Content-Type from the name, nothing else);
//! `copyTags` carries tags and `destStorageClass` sets the class; a URL
//! list's files keep what the web server says of them. (The bucket jobs
//! stream, `serverSideCopy=never`: this is about the metadata a GET
//! carries; `server_side` tests the copies made within the store.)

use aws_sdk_s3::primitives::DateTime;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buckets_objects_arrive_with_their_metadata() {
    let s3 = MotoServer::start();
    s3.create_bucket("site").await;
    s3.create_bucket("copy").await;
    let c = s3.client();
    let expires = DateTime::from_secs(1_800_000_000);
    // A compressed page: served as is, the browser inflates it.
    let page = bytes(1, 3000);
    c.put_object()
        .bucket("site")
        .key("www/index.html")
        .body(page.clone().into())
        .content_type("text/html; charset=utf-8")
        .content_encoding("gzip")
        .content_disposition("inline")
        .content_language("en")
        .cache_control("max-age=60")
        .expires(expires)
        .metadata("owner", "web team")
        .metadata("build", "42")
        .metadata("Camel-Case", "Up")
        .metadata("Title", "Größe – 日本")
        .send()
        .await
        .unwrap();
    // Its type is not its name's.
    c.put_object()
        .bucket("site")
        .key("data/blob.bin")
        .body(bytes(2, 100).into())
        .content_type("image/png")
        .send()
        .await
        .unwrap();
    // Above the multipart threshold.
    let video = bytes(3, 12 << 20);
    c.put_object()
        .bucket("site")
        .key("media/clip.bin")
        .body(video.clone().into())
        .content_type("video/mp4")
        .metadata("owner", "media")
        .send()
        .await
        .unwrap();
    // More user metadata than S3 takes (moto keeps it).
    c.put_object()
        .bucket("site")
        .key("odd/big-meta.txt")
        .body(bytes(4, 10).into())
        .metadata("notes", "n".repeat(2100))
        .send()
        .await
        .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let job = |name: &str, extra: &str| {
        let cfg = tmp.path().join(format!("{name}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "jobName={name}\nsrcType=s3\nsrcDomain={e}\nsrcBucket=site\nsrcPrefix=\n\
                 srcAccessKey={AK}\nsrcSecretKey={SK}\ndestDomain={e}\ndestBucket=copy\n\
                 destAccessKey={AK}\ndestSecretKey={SK}\ndestPrefix={name}/\n\
                 multipartUploadThreshold=8m\nmultipartUploadPartSize=5m\nserverSideCopy=never\n{extra}\n",
                e = s3.endpoint
            ),
        )
        .unwrap();
        cfg
    };
    let cfg = job("kept", "");
    let work = tmp.path().join("kept");
    let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = objects(&tmp.path().join("kept"));
    let failed: Vec<_> = rows
        .iter()
        .filter(|o| o.state != ObjectState::Verified)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].rel_path, "odd/big-meta.txt");
    assert_eq!(failed[0].error_code.as_deref(), Some("META_INVALID"));
    let why = failed[0].error.as_deref().unwrap_or_default();
    assert!(
        why.contains("over the destination's limit of 2048") && why.contains("notes"),
        "{why}"
    );

    // The manifests: the copy's `metadata` column (what was written) and
    // the audit's (the source's now) agree where nothing changed.
    let manifest = |name: &str, work: &str| {
        let (cfg, work) = (
            tmp.path().join(format!("{name}.cfg")),
            tmp.path().join(work),
        );
        let path = tmp
            .path()
            .join(format!("{name}-{}.csv", work.display().to_string().len()));
        let out = ctl()
            .arg("run")
            .arg(&cfg)
            .arg("--work-dir")
            .arg(&work)
            .arg("--manifest")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let mut r = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_path(&path)
            .unwrap();
        let col = r
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "metadata")
            .unwrap();
        r.records()
            .map(Result::unwrap)
            .map(|x| (x[0].to_string(), x[col].to_string()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let copied = manifest("kept", "kept");

    let head = |key: &str| {
        let c = c.clone();
        let key = key.to_string();
        async move {
            c.head_object()
                .bucket("copy")
                .key(key)
                .send()
                .await
                .unwrap()
        }
    };
    let h = head("kept/www/index.html").await;
    assert_eq!(h.content_type(), Some("text/html; charset=utf-8"));
    assert_eq!(h.content_encoding(), Some("gzip"));
    assert_eq!(h.content_disposition(), Some("inline"));
    assert_eq!(h.content_language(), Some("en"));
    assert_eq!(h.cache_control(), Some("max-age=60"));
    assert_eq!(
        h.expires_string(),
        Some(
            expires
                .fmt(aws_sdk_s3::primitives::DateTimeFormat::HttpDate)
                .unwrap()
                .as_str()
        )
    );
    let m = h.metadata().unwrap();
    assert_eq!(m.get("owner").map(String::as_str), Some("web team"));
    assert_eq!(m.get("build").map(String::as_str), Some("42"));
    // Names as the store keeps them: lower case.
    assert_eq!(m.get("camel-case").map(String::as_str), Some("Up"));
    // Not ASCII: sent as an RFC 2047 encoded word, as S3 itself answers it.
    let title = m.get("title").map(String::as_str).unwrap_or_default();
    eprintln!("title at the destination: {title}");
    assert_eq!(title, "=?UTF-8?B?R3LDtsOfZSDigJMg5pel5pys?=");
    // The bytes as they were: not inflated on the way.
    assert_eq!(get(&c, "copy", "kept/www/index.html").await, page);
    assert_eq!(
        head("kept/data/blob.bin").await.content_type(),
        Some("image/png")
    );
    let h = head("kept/media/clip.bin").await;
    assert_eq!(h.content_type(), Some("video/mp4"));
    assert_eq!(
        h.metadata().unwrap().get("owner").map(String::as_str),
        Some("media")
    );
    assert!(h.e_tag().unwrap_or_default().contains('-'), "not multipart");
    assert_eq!(get(&c, "copy", "kept/media/clip.bin").await, video);

    // An audit compares the metadata too: one destination object's
    // Content-Type changed behind our back is reported alone.
    c.copy_object()
        .bucket("copy")
        .key("kept/data/blob.bin")
        .copy_source("copy/kept/data/blob.bin")
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type("text/plain")
        .send()
        .await
        .unwrap();
    let cfg = job("kept", "jobType=audit");
    let work = tmp.path().join("audit");
    let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = objects(&tmp.path().join("audit"));
    let mismatched: Vec<_> = rows
        .iter()
        .filter(|o| o.error_code.as_deref() == Some("META_MISMATCH"))
        .collect();
    assert_eq!(mismatched.len(), 1, "{rows:?}");
    assert_eq!(mismatched[0].rel_path, "data/blob.bin");
    let why = mismatched[0].error.as_deref().unwrap_or_default();
    eprintln!("audit: {why}");
    assert!(
        why.contains("Content-Type: sent \"image/png\", the destination holds \"text/plain\""),
        "{why}"
    );
    assert_eq!(
        rows.iter()
            .filter(|o| o.state == ObjectState::Verified)
            .count(),
        2,
        "{rows:?}"
    );

    let audited = manifest("kept", "audit");
    eprintln!("{copied:?}\n{audited:?}");
    let digest = &copied["kept/www/index.html"];
    assert_eq!(digest.len(), 64);
    assert_eq!(&audited["kept/www/index.html"], digest);
    assert_ne!(&copied["kept/media/clip.bin"], digest);

    // copyMetadata=false: as before.
    let cfg = job("plain", "copyMetadata=false");
    let work = tmp.path().join("plain");
    let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let h = head("plain/www/index.html").await;
    assert_eq!(h.content_type(), Some("text/html"));
    assert_eq!(h.content_encoding(), None);
    assert_eq!(h.cache_control(), None);
    assert!(h.metadata().unwrap().get("owner").is_none());
    assert_eq!(
        head("plain/data/blob.bin").await.content_type(),
        Some("application/octet-stream")
    );

    // copyTags and destStorageClass: the tags of a single PUT and of a
    // multipart upload, and the class asked for (never the source's).
    for key in ["www/index.html", "media/clip.bin"] {
        c.put_object_tagging()
            .bucket("site")
            .key(key)
            .tagging(
                aws_sdk_s3::types::Tagging::builder()
                    .tag_set(
                        aws_sdk_s3::types::Tag::builder()
                            .key("team")
                            .value("web + media: a/b=c")
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    let cfg = job("tagged", "copyTags=true\ndestStorageClass=STANDARD_IA");
    let work = tmp.path().join("tagged");
    let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    for key in ["tagged/www/index.html", "tagged/media/clip.bin"] {
        let tags = c
            .get_object_tagging()
            .bucket("copy")
            .key(key)
            .send()
            .await
            .unwrap();
        let tags: Vec<_> = tags
            .tag_set()
            .iter()
            .map(|t| (t.key(), t.value()))
            .collect();
        assert_eq!(tags, [("team", "web + media: a/b=c")], "{key}");
        assert_eq!(
            head(key).await.storage_class(),
            Some(&aws_sdk_s3::types::StorageClass::StandardIa),
            "{key}"
        );
    }
    let untagged = c
        .get_object_tagging()
        .bucket("copy")
        .key("tagged/data/blob.bin")
        .send()
        .await
        .unwrap();
    assert!(untagged.tag_set().is_empty());

    // A URL list: what the web server says of the file (its type, encoding,
    // disposition, caching), not its Expires (about its caches).
    let css = bytes(5, 900);
    let server =
        testkit::net::FileServer::start([("/gz/site.css".to_string(), css.clone())].into()).await;
    let list = tmp.path().join("urls.list");
    std::fs::write(&list, format!("{}/gz/ site.css\n", server.base)).unwrap();
    let cfg = tmp.path().join("urls.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=urls\nsrcType=http\nhttpListFilePath={}\nhttpPrefixColumn=1\n\
             relativePathColumn=2\ndestDomain={}\ndestBucket=copy\ndestPrefix=urls/\n\
             destAccessKey={AK}\ndestSecretKey={SK}\n",
            list.display(),
            s3.endpoint
        ),
    )
    .unwrap();
    let work = tmp.path().join("urls");
    let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let h = head("urls/site.css").await;
    assert_eq!(h.content_type(), Some("text/css"));
    assert_eq!(h.content_encoding(), Some("gzip"));
    assert_eq!(h.cache_control(), Some("public, max-age=300"));
    assert_eq!(h.content_disposition(), Some("inline"));
    assert_eq!(h.expires_string(), None);
    // Its Last-Modified is its mtime.
    assert_eq!(
        h.metadata()
            .unwrap()
            .get("ossimport-mtime")
            .map(String::as_str),
        Some("1445412480")
    );
    assert_eq!(get(&c, "copy", "urls/site.css").await, css);

    // Into a directory: a URL's Last-Modified and a bucket object's
    // LastModified become the files' mtimes.
    let dir = tmp.path().join("files");
    std::fs::create_dir(&dir).unwrap();
    let text = std::fs::read_to_string(tmp.path().join("urls.cfg")).unwrap();
    let to_dir = |from: &str| {
        from.lines()
            .filter(|l| !l.starts_with("dest"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + &format!("destType=local\ndestDir={}\ndestPrefix=\n", dir.display())
    };
    let cfg = tmp.path().join("urls-local.cfg");
    std::fs::write(
        &cfg,
        to_dir(&text).replace("jobName=urls", "jobName=urls_local"),
    )
    .unwrap();
    let work = tmp.path().join("urls-local");
    let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mtime = |p: &str| {
        std::fs::metadata(dir.join(p))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    assert_eq!(mtime("site.css"), 1_445_412_480);
    let text = std::fs::read_to_string(job("bucket_local", "")).unwrap();
    let cfg = tmp.path().join("bucket-local.cfg");
    std::fs::write(
        &cfg,
        to_dir(&text).replace("srcPrefix=\n", "srcPrefix=www/\n"),
    )
    .unwrap();
    let work = tmp.path().join("bucket-local");
    let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed = c
        .head_object()
        .bucket("site")
        .key("www/index.html")
        .send()
        .await
        .unwrap();
    assert_eq!(mtime("index.html"), listed.last_modified().unwrap().secs());
    assert_eq!(std::fs::read(dir.join("index.html")).unwrap(), page);
}

/// `preserveFileAttrs=true`: a local file's mtime (nanoseconds), atime,
/// mode, uid and gid travel as user metadata under rclone's names (here
/// into SeaweedFS); into a local directory the file gets its exact mode
/// (past the umask). Without it, none of them is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_files_attributes_with_preserve_file_attrs() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s3 = S3Server::start();
    s3.create_bucket("attrs").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("report.txt");
    std::fs::write(&file, b"quarterly").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o604)).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_times(
            std::fs::FileTimes::new()
                .set_modified(when)
                .set_accessed(when),
        )
        .unwrap();
    let md = std::fs::metadata(&file).unwrap();

    for (name, extra) in [("kept", "preserveFileAttrs=true"), ("plain", "")] {
        let cfg = job_cfg(
            tmp.path(),
            name,
            &src,
            &s3.endpoint,
            "attrs",
            &format!("destPrefix={name}/\n{extra}"),
        );
        let work = tmp.path().join(format!("{name}.work"));
        let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work))
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let c = s3.client();
    let meta = |key: &'static str| {
        let c = c.clone();
        async move {
            c.head_object()
                .bucket("attrs")
                .key(key)
                .send()
                .await
                .unwrap()
                .metadata()
                .cloned()
                .unwrap_or_default()
        }
    };
    let m = meta("kept/report.txt").await;
    eprintln!("{m:?}");
    let want = [
        ("mtime", "1700000000.123456789".to_string()),
        ("atime", "2023-11-14T22:13:20.123456789Z".to_string()),
        ("mode", "100604".to_string()),
        ("uid", md.uid().to_string()),
        ("gid", md.gid().to_string()),
    ];
    for (k, v) in &want {
        assert_eq!(m.get(*k), Some(v), "{k}: {m:?}");
    }
    let plain = meta("plain/report.txt").await;
    for (k, _) in &want {
        assert!(!plain.contains_key(*k), "{k}: {plain:?}");
    }

    // Into a local directory: the exact mode, whatever the umask.
    let dest = tmp.path().join("dest");
    let cfg = tmp.path().join("local.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=local_attrs\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n\
             preserveFileAttrs=true\n",
            src.display(),
            dest.display()
        ),
    )
    .unwrap();
    let work = tmp.path().join("local.work");
    // A umask that would take the other-read bit away.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 077; exec \"$@\"")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_ossimportctl"))
            .arg("run")
            .arg(&cfg)
            .arg("--work-dir")
            .arg(&work)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = std::fs::metadata(dest.join("report.txt")).unwrap();
    assert_eq!(got.mode() & 0o7777, 0o604);
    assert_eq!(
        (got.mtime(), got.mtime_nsec()),
        (1_700_000_000, 123_456_789)
    );
}

/// Through the OSS-flavoured front, which answers user metadata as
/// `x-oss-meta-*` and refuses more than 8 KiB of it: an OSS source's
/// metadata arrives (the SDK alone sees only `x-amz-meta-*`), single PUT and
/// multipart alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_through_an_oss_front() {
    let s3 = S3Server::start();
    s3.create_bucket("osssrc").await;
    s3.create_bucket("ossdst").await;
    let oss = OssFront::start(&s3.endpoint, 0);
    let c = s3.client();
    let big = bytes(9, 12 << 20);
    for (key, body, ctype) in [
        ("table.csv", bytes(8, 700), "text/csv"),
        ("big.bin", big.clone(), "application/x-tar"),
    ] {
        c.put_object()
            .bucket("osssrc")
            .key(key)
            .body(body.into())
            .content_type(ctype)
            .metadata("owner", "oss team")
            .send()
            .await
            .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("oss.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=oss_meta\nsrcType=oss\nsrcDomain={e}\nsrcBucket=osssrc\nsrcPrefix=\n\
             srcAccessKey={AK}\nsrcSecretKey={SK}\ndestDomain={e}\ndestBucket=ossdst\n\
             destAccessKey={AK}\ndestSecretKey={SK}\nmultipartUploadThreshold=8m\n\
             multipartUploadPartSize=5m\n",
            e = oss.endpoint
        ),
    )
    .unwrap();
    let work = tmp.path().join("work");
    let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for (key, ctype) in [("table.csv", "text/csv"), ("big.bin", "application/x-tar")] {
        let h = c
            .head_object()
            .bucket("ossdst")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(h.content_type(), Some(ctype), "{key}");
        assert_eq!(
            h.metadata().unwrap().get("owner").map(String::as_str),
            Some("oss team"),
            "{key}"
        );
    }
    assert_eq!(get(&c, "ossdst", "big.bin").await, big);
}
