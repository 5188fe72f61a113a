//! Sources other than local disk, and the transfer options around them:
//! bucket to bucket with a forced small page size and a kill during the
//! listing, an HTTP URL list with broken URLs, a fault-injecting proxy, and
//! skip-existing reruns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;

use crate::support::*;
use testkit::net::{FaultProxy, Faults, FileServer};

async fn fill_bucket(s3: &S3Server, bucket: &str, keys: &[String]) {
    let client = s3.client();
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for (i, key) in keys.iter().enumerate() {
        let (client, key, bucket, sem) =
            (client.clone(), key.clone(), bucket.to_owned(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let body = bytes(i as u64, i % 3000);
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap();
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// Waits until the run in `work` has listed at least `n` objects, and
/// fails if its listing ended first (the kill must land mid-listing).
async fn listed_before_the_end(work: &std::path::Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = work
            .join("ossimport.db")
            .exists()
            .then(|| {
                // The store exists a moment before the job's row does.
                Store::open_read_only(&work.join("ossimport.db"))
                    .and_then(|s| Ok((s.objects()?.len(), s.jobs()?.first().map(|j| j.scan_done))))
                    .ok()
                    .and_then(|(n, done)| Some((n, done?)))
            })
            .flatten();
        if let Some((got, done)) = listed {
            assert!(!done, "the listing finished before the kill; slow it down");
            if got >= n {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the listing did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn s3_source_cfg(
    dir: &std::path::Path,
    name: &str,
    src_ep: &str,
    dst_ep: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.cfg"));
    let text = JobFile::new(name)
        .bucket_source(src_ep, "source", "")
        .bucket_dest(dst_ep, "target")
        .text();
    std::fs::write(&path, format!("{text}{extra}\n")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_to_bucket_resumes_listing_after_a_kill() {
    let s3 = S3Server::start();
    s3.create_bucket("source").await;
    s3.create_bucket("target").await;
    let keys: Vec<String> = (0..1100)
        .map(|i| match i % 4 {
            0 => format!("photos/{i:05}.jpg"),
            1 => format!("docs/deep/dir/{i:05} ü.txt"),
            2 => format!("logs/{i:05}.log"),
            _ => format!("top {i:05}"),
        })
        .collect();
    fill_bucket(&s3, "source", &keys).await;
    // Listing goes through a proxy that slows every page down, so the kill
    // lands in the middle of it; 1100 keys at 7 per page is 158 pages.
    let proxy = FaultProxy::start(
        &s3.endpoint,
        Faults {
            list_delay: Duration::from_millis(25),
            ..Faults::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let cfg = s3_source_cfg(
        tmp.path(),
        "b2b_job",
        &proxy.endpoint,
        &s3.endpoint,
        "srcListPageSize=7\ntaskObjectCountLimit=20",
    );

    let mut child = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--work-dir")
        .arg(&work)
        .spawn()
        .unwrap();
    listed_before_the_end(&work, 200).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let before = objects(&work).len();
    assert!(before < 1100, "{before}");

    let out = tokio::task::spawn_blocking(move || run_job(&cfg, &work).status.code())
        .await
        .unwrap();
    assert_eq!(out, Some(0));
    let all = objects(&tmp.path().join("work"));
    let distinct = all
        .iter()
        .map(|o| &o.rel_path)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let verified = all
        .iter()
        .filter(|o| o.state == ObjectState::Verified)
        .count();
    let max_attempts = all.iter().map(|o| o.attempts).max().unwrap_or(0);
    let n = all.len();
    assert_eq!(
        (n, distinct, verified, max_attempts),
        (1100, 1100, 1100, 1),
        "every object listed and verified exactly once"
    );
    let client = s3.client();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(list_keys(&client, "target", "").await, want);
    for (i, key) in keys.iter().enumerate().step_by(37) {
        assert_eq!(
            get(&client, "target", key).await,
            bytes(i as u64, i % 3000),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_list_with_broken_urls() {
    let s3 = S3Server::start();
    s3.create_bucket("target").await;
    let mut files = HashMap::new();
    let mut lines = String::new();
    for i in 0..40 {
        let data = bytes(i, (i as usize * 997) % 20_000);
        files.insert(format!("/site/img {i}.png").replace(' ', "%20"), data);
        // CRLF endings and an extra third column, as Windows-made lists have.
        lines.push_str(&format!("{{BASE}}/site/  img%20{i}.png  extra\r\n"));
    }
    let large = bytes(99, 12 << 20);
    files.insert("/site/large.bin".into(), large.clone());
    lines.push_str("{BASE}/site/ large.bin\r\n");
    lines.push_str("{BASE}/gone/ missing.png\r\n");
    lines.push_str("{BASE}/drop/ cut.png\r\n");
    lines.push_str("http://127.0.0.1:9/ refused.png\r\n");
    let server = FileServer::start(files).await;
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("http.list");
    std::fs::write(&list, lines.replace("{BASE}", &server.base)).unwrap();
    let cfg = tmp.path().join("http_job.cfg");
    JobFile::new("http_job")
        .url_list(&list)
        .bucket_dest(&s3.endpoint, "target")
        .set("destPrefix", "web/")
        .set("multipartUploadThreshold", "8m")
        .set("multipartUploadPartSize", "5m")
        .write_to(&cfg);
    let work = tmp.path().join("work");
    let out = tokio::task::spawn_blocking({
        let (cfg, work) = (cfg.clone(), work.clone());
        move || run_job(&cfg, &work)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(squash(&text).contains("verified 41 of 44"), "{text}");
    assert!(
        text.contains("SOURCE_DELETED  missing.png: GET ") && text.contains("HTTP 404"),
        "{text}"
    );
    assert!(
        text.contains("SOURCE_UNREADABLE  cut.png: gave up after 5 attempts"),
        "{text}"
    );
    assert!(
        text.contains("SOURCE_UNREADABLE  refused.png: gave up after 5 attempts"),
        "{text}"
    );
    let client = s3.client();
    assert_eq!(
        get(&client, "target", "web/img%2010.png").await,
        bytes(10, 9970)
    );
    assert!(
        get(&client, "target", "web/large.bin").await == large,
        "large HTTP object differs"
    );
    let etag = object(&work, "large.bin").etag.unwrap();
    assert!(
        etag.ends_with("-3"),
        "12 MiB above an 8 MiB threshold goes multipart in 5 MiB parts: {etag}"
    );

    // A malformed line is refused before anything runs, naming the line.
    std::fs::write(
        &list,
        format!("{}/site/ ok.png\nonly-one-column\n", server.base),
    )
    .unwrap();
    let out = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--work-dir")
        .arg(tmp.path().join("w2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{}:2: expected at least 2", list.display())),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_and_counted() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let proxy = FaultProxy::start(
        &s3.endpoint,
        Faults {
            every_500: 7,
            every_503: 11,
            every_drop: 13,
            ..Faults::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = small_tree(&src, 300);
    big_file(&src.join("big.bin"), 24);
    let work = tmp.path().join("work");
    let cfg = job_cfg(
        tmp.path(),
        "faulty",
        &src,
        &proxy.endpoint,
        "bkt",
        "multipartUploadThreshold=8m\nmultipartUploadPartSize=5m\nrequestAttempts=12",
    );
    let out = tokio::task::spawn_blocking({
        let (cfg, work) = (cfg.clone(), work.clone());
        move || run_job(&cfg, &work)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(squash(&stdout(&out)).contains("verified 301 of 301"));
    let injected = proxy
        .stats
        .injected
        .load(std::sync::atomic::Ordering::Relaxed);
    let retries: u64 = objects(&work).iter().map(|o| u64::from(o.retries)).sum();
    assert!(injected > 30, "only {injected} faults injected");
    assert!(retries > 0, "retries were not counted");
    // Every fault cost a retry somewhere; preflight requests and the
    // executor's endpoint probes (one-key listings: the source is local)
    // are not counted.
    let on_probes = proxy
        .stats
        .injected_on_listings
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        retries + 2 + on_probes >= injected,
        "{retries} retries recorded for {injected} injected faults ({on_probes} on probes)"
    );
    let client = s3.client();
    for rel in rels.iter().step_by(29) {
        assert_eq!(
            get(&client, "bkt", rel).await,
            std::fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
    }
}

#[tokio::test]
async fn skip_existing_copies_only_what_changed() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = small_tree(&src, 80);
    let work = tmp.path().join("work");
    let cfg = job_cfg(
        tmp.path(),
        "skipper",
        &src,
        &s3.endpoint,
        "bkt",
        "isSkipExistFile=true",
    );
    assert_eq!(run_job(&cfg, &work).status.code(), Some(0));
    let rerun = || {
        ctl()
            .arg("run")
            .arg(&cfg)
            .arg("--work-dir")
            .arg(&work)
            .arg("--clean")
            .output()
            .unwrap()
    };

    let out = rerun();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        squash(&stdout(&out)).contains("copied 0 objects"),
        "{}",
        stdout(&out)
    );
    assert!(
        squash(&stdout(&out)).contains("skipped 80 objects"),
        "{}",
        stdout(&out)
    );

    // Touch one file: same size, new mtime.
    let touched = src.join(&rels[5]);
    let f = std::fs::File::options().write(true).open(&touched).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let out = rerun();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        squash(&stdout(&out)).contains("copied 1 objects"),
        "{}",
        stdout(&out)
    );
    assert!(
        squash(&stdout(&out)).contains("skipped 79 objects"),
        "{}",
        stdout(&out)
    );
    assert_eq!(object(&work, &rels[5]).state, ObjectState::Verified);
}

/// `srcType=youpai` through Upyun's S3-compatible path, with the original's
/// keys (`srcDomain` here names the local S3 server in Upyun's place): every
/// object under the prefix copied and verified; wrong credentials are
/// refused before anything starts, with what Upyun's S3 endpoint expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upyun_source_through_its_s3_endpoint() {
    let s3 = S3Server::start();
    s3.create_bucket("upyun-svc").await;
    s3.create_bucket("target").await;
    let keys: Vec<String> = (0..50)
        .map(|i| format!("docs/{}/{i:03}.txt", i % 3))
        .chain(["other/not-this.txt".to_string()])
        .collect();
    fill_bucket(&s3, "upyun-svc", &keys).await;
    let tmp = tempfile::tempdir().unwrap();
    let job = |name: &str, secret: &str| {
        JobFile::new(name)
            .bucket_source(&s3.endpoint, "upyun-svc", "docs/")
            .set("srcType", "youpai")
            .set("srcSecretKey", secret)
            .bucket_dest(&s3.endpoint, "target")
            .set("destPrefix", "from-upyun/")
            .set("taskObjectCountLimit", 1)
            .write(tmp.path())
    };

    let bad = job("upyun_bad", "the-operator-password");
    let work = tmp.path().join("w1");
    let out = tokio::task::spawn_blocking(move || run_job(&bad, &work))
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("source bucket upyun-svc")
            && err.contains("an operator's S3 access key and secret"),
        "{err}"
    );

    let good = job("upyun_job", SK);
    let work = tmp.path().join("w2");
    let w = work.clone();
    let out = tokio::task::spawn_blocking(move || run_job(&good, &w))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        squash(&stdout(&out)).contains("verified 50 of 50"),
        "{}",
        stdout(&out)
    );
    let client = s3.client();
    let listed = list_keys(&client, "target", "from-upyun/").await;
    assert_eq!(listed.len(), 50);
    for (i, key) in keys.iter().enumerate().take(50).step_by(7) {
        let rel = key.strip_prefix("docs/").unwrap();
        assert_eq!(
            get(&client, "target", &format!("from-upyun/{rel}")).await,
            bytes(i as u64, i % 3000),
            "{key}"
        );
    }
    assert!(
        objects(&work)
            .iter()
            .all(|o| o.state == ObjectState::Verified)
    );
}

/// `isDownloadFromCdn`: the bucket is listed, every object downloaded from
/// a CDN in front of it (here an HTTP server holding a snapshot of the
/// bucket's objects) and held to the listing: a CDN copy that went stale
/// with the same size (MD5 against the listed ETag), one with another size,
/// and one the CDN does not have are failures, never "verified".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_download_is_held_to_the_listing() {
    let s3 = S3Server::start();
    s3.create_bucket("origin").await;
    s3.create_bucket("target").await;
    let mut keys: Vec<String> = (0..36)
        .map(|i| format!("media/{}/{i:03}.jpg", i % 4))
        .collect();
    keys.extend(
        [
            "media/with space.txt",
            "media/stale-same-size",
            "media/stale-grown",
            "media/missing",
        ]
        .map(String::from),
    );
    keys.push("elsewhere/not-listed".into());
    fill_bucket(&s3, "origin", &keys).await;
    let client = s3.client();
    // The CDN's copy of every object, at its URL path.
    let mut cdn = HashMap::new();
    for k in &keys {
        if k == "media/missing" {
            continue;
        }
        cdn.insert(
            format!("/{}", k.replace(' ', "%20")),
            get(&client, "origin", k).await,
        );
    }
    let cdn = FileServer::start(cdn).await;
    // The bucket moves on after the CDN cached it.
    let old = get(&client, "origin", "media/stale-same-size").await;
    let newer: Vec<u8> = old.iter().map(|b| b ^ 0x5a).collect();
    for (key, body) in [
        ("media/stale-same-size", newer.clone()),
        ("media/stale-grown", b"a newer, longer version".repeat(40)),
    ] {
        client
            .put_object()
            .bucket("origin")
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }

    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cdn.cfg");
    JobFile::new("cdn_job")
        .bucket_source(&s3.endpoint, "origin", "media/")
        .set("isDownloadFromCdn", true)
        .set("cdnDomain", &cdn.base)
        .bucket_dest(&s3.endpoint, "target")
        .set("requestAttempts", 2)
        .write_to(&cfg);
    let work = tmp.path().join("work");
    let (c, w) = (cfg.clone(), work.clone());
    let out = tokio::task::spawn_blocking(move || run_job(&c, &w))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("via CDN http://127.0.0.1:"),
        "{}",
        stderr(&out)
    );

    let rows: HashMap<String, ObjectRow> = objects(&work)
        .into_iter()
        .map(|o| (o.rel_path.clone(), o))
        .collect();
    assert_eq!(rows.len(), 40, "{:?}", rows.keys());
    let code = |rel: &str| rows[rel].error_code.clone().unwrap_or_default();
    assert_eq!(code("stale-grown"), "SOURCE_CHANGED");
    assert_eq!(code("missing"), "SOURCE_DELETED");
    assert_eq!(rows["stale-same-size"].state, ObjectState::Failed);
    assert!(
        rows["stale-same-size"]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("MD5"),
        "{:?}",
        rows["stale-same-size"].error
    );
    let verified: Vec<&String> = rows
        .iter()
        .filter(|(_, o)| o.state == ObjectState::Verified)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(verified.len(), 37);
    for rel in verified {
        assert_eq!(
            get(&client, "target", rel).await,
            get(&client, "origin", &format!("media/{rel}")).await,
            "{rel}"
        );
    }
    // Nothing of a failed object reached the destination.
    let landed = list_keys(&client, "target", "").await;
    for bad in ["stale-same-size", "stale-grown", "missing"] {
        assert!(!landed.contains(&bad.to_string()), "{bad} was written");
    }
}

/// `srcType=azure` against Azurite, with the original's keys (account name,
/// account key, endpoint, container): 1,100 blobs under prefixes and one
/// above the multipart threshold (with properties and metadata, which arrive
/// with it), the run killed mid-listing (pages of 50,
/// slowed by a proxy) and resumed from its checkpoint: every blob once,
/// byte-identical at the destination. A SAS token works in place of the
/// key; a wrong key is refused before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_container_killed_mid_listing_resumes_byte_identical() {
    use object_store::ObjectStoreExt;
    use testkit::azure::{ACCOUNT, Azurite, KEY};
    let az = Azurite::start();
    az.create_container("media");
    let store = std::sync::Arc::new(az.store("media"));
    let mut keys: Vec<String> = (0..1100)
        .map(|i| match i % 3 {
            0 => format!("photos/{i:05}.jpg"),
            1 => format!("docs/deep/dir/{i:05} ü.txt"),
            _ => format!("top-{i:05}"),
        })
        .collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for (i, key) in keys.iter().enumerate() {
        let (store, key, sem) = (store.clone(), key.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await.unwrap();
            store
                .put(
                    &object_store::path::Path::parse(&key).unwrap(),
                    bytes(i as u64, i % 3000).into(),
                )
                .await
                .unwrap();
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let big = bytes(7, 13 << 20);
    // With its properties and metadata, which travel with it.
    use object_store::{Attribute, Attributes, ObjectStore, PutOptions};
    let attributes = Attributes::from_iter([
        (Attribute::ContentType, "video/mp4"),
        (Attribute::CacheControl, "max-age=9"),
        (Attribute::Metadata("owner".into()), "media"),
    ]);
    store
        .put_opts(
            &object_store::path::Path::from("video/big.bin"),
            big.clone().into(),
            PutOptions {
                attributes,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    keys.push("video/big.bin".into());

    let s3 = S3Server::start();
    s3.create_bucket("target").await;
    let proxy = FaultProxy::start(
        &format!("http://127.0.0.1:{}", az.port),
        Faults {
            list_delay: Duration::from_millis(100),
            ..Faults::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let job = |name: &str, secret: &str, prefix: &str| {
        JobFile::new(name)
            .set("srcType", "azure")
            .set("srcDomain", format!("{}/{ACCOUNT}", proxy.endpoint))
            .set("srcAccessKey", ACCOUNT)
            .set("srcSecretKey", secret)
            .set("srcBucket", "media")
            .set("srcPrefix", prefix)
            .set("srcListPageSize", 50)
            .bucket_dest(&s3.endpoint, "target")
            .set("destPrefix", format!("{name}/"))
            .set("taskObjectCountLimit", 20)
            .set("multipartUploadThreshold", "6m")
            .set("multipartUploadPartSize", "5m")
            .write(tmp.path())
    };

    // A wrong key: refused before the job starts.
    let bad = job("az_bad", "bm90IHRoZSBrZXk=", "");
    let w = tmp.path().join("w0");
    let out = tokio::task::spawn_blocking(move || run_job(&bad, &w))
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("source container media"),
        "{}",
        stderr(&out)
    );

    // Killed mid-listing, then resumed.
    let cfg = job("az_job", KEY, "");
    let work = tmp.path().join("work");
    let mut child = spawn_quiet_run(&cfg, &work);
    listed_before_the_end(&work, 200).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(objects(&work).len() < keys.len());
    let (c, w) = (cfg.clone(), work.clone());
    let out = tokio::task::spawn_blocking(move || run_job(&c, &w))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = objects(&work);
    let distinct: std::collections::BTreeSet<&String> = rows.iter().map(|o| &o.rel_path).collect();
    assert_eq!((rows.len(), distinct.len()), (keys.len(), keys.len()));
    assert!(rows.iter().all(|o| o.state == ObjectState::Verified));
    let client = s3.client();
    let mut want: Vec<String> = keys.iter().map(|k| format!("az_job/{k}")).collect();
    want.sort();
    assert_eq!(list_keys(&client, "target", "az_job/").await, want);
    for (i, key) in keys.iter().enumerate().take(1100) {
        assert_eq!(
            get(&client, "target", &format!("az_job/{key}")).await,
            bytes(i as u64, i % 3000),
            "{key}"
        );
    }
    assert!(get(&client, "target", "az_job/video/big.bin").await == big);
    let h = client
        .head_object()
        .bucket("target")
        .key("az_job/video/big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(h.content_type(), Some("video/mp4"));
    assert_eq!(h.cache_control(), Some("max-age=9"));
    assert_eq!(
        h.metadata().unwrap().get("owner").map(String::as_str),
        Some("media")
    );

    // A read-and-list SAS in place of the key.
    let sas = job("az_sas", &az.sas("rl"), "docs/");
    let w = tmp.path().join("w2");
    let out = tokio::task::spawn_blocking(move || run_job(&sas, &w))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        squash(&stdout(&out)).contains("verified 367 of 367"),
        "{}",
        stdout(&out)
    );

    // A blob whose stored Content-MD5 does not match its bytes is never
    // verified; the rest of its prefix is.
    az.set_content_md5("media", "photos/00003.jpg", "AAAAAAAAAAAAAAAAAAAAAA==");
    let md5 = job("az_md5", KEY, "photos/");
    let w = tmp.path().join("w3");
    let w2 = w.clone();
    let out = tokio::task::spawn_blocking(move || run_job(&md5, &w2))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = objects(&w);
    let bad: Vec<&ObjectRow> = rows
        .iter()
        .filter(|o| o.state != ObjectState::Verified)
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].rel_path, "00003.jpg");
    assert!(
        bad[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("Content-MD5"),
        "{:?}",
        bad[0].error
    );
    assert!(
        !list_keys(&client, "target", "az_md5/")
            .await
            .contains(&"az_md5/00003.jpg".to_string())
    );
}

/// A URL list whose web origin takes at most 40 requests a second and
/// answers the rest 429 (a CDN's rate limit): the run's governor for that
/// origin finds the limit and holds the GETs near it, few are refused, and
/// every file is verified, none failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_origin_refusing_above_its_rate_is_met_at_that_rate() {
    const N: f64 = 40.0;
    const FILES: u64 = 800;
    let s3 = S3Server::start();
    s3.create_bucket("target").await;
    let mut files = HashMap::new();
    let mut lines = String::new();
    for i in 0..FILES {
        files.insert(format!("/f/{i}.bin"), bytes(i, 700));
        lines.push_str(&format!("{{BASE}}/f/ {i}.bin\n"));
    }
    let server = FileServer::start_limited(files, N).await;
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("limited.list");
    std::fs::write(&list, lines.replace("{BASE}", &server.base)).unwrap();
    let cfg = tmp.path().join("limited.cfg");
    JobFile::new("limited_origin")
        .url_list(&list)
        .bucket_dest(&s3.endpoint, "target")
        .write_to(&cfg);
    std::fs::write(
        tmp.path().join("sys.properties"),
        "workerTaskThreadNum=16\n",
    )
    .unwrap();
    let work = tmp.path().join("work");
    let out = tokio::task::spawn_blocking({
        let (cfg, work) = (cfg.clone(), work.clone());
        move || run_job(&cfg, &work)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        squash(&stdout(&out)).contains(&format!("verified {FILES} of {FILES}")),
        "{}",
        stdout(&out)
    );
    let seconds = server.seconds.lock().unwrap().clone();
    let busy: Vec<usize> = (0..seconds.len())
        .filter(|&i| seconds[i].0 + seconds[i].1 > 0)
        .collect();
    let (first, last) = (busy[0], *busy.last().unwrap());
    let (ok, refused): (u64, u64) = seconds.iter().fold((0, 0), |(a, r), s| (a + s.0, r + s.1));
    let settled = &seconds[first + 6..last.saturating_sub(1)];
    let rate = settled.iter().map(|s| s.0 as f64).sum::<f64>() / settled.len() as f64;
    let share = refused as f64 / (ok + refused) as f64;
    eprintln!(
        "origin limit {N}/s: {ok} answered, {refused} refused ({:.2}%), {rate:.1}/s settled over {} s",
        share * 100.0,
        settled.len()
    );
    assert!(share < 0.05, "{:.2}% of GETs refused", share * 100.0);
    assert!(rate >= 0.8 * N, "settled at {rate:.1} GETs/s against {N}/s");
}
