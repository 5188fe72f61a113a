//! Bucket to bucket on one endpoint (`serverSideCopy=auto`, the default):
//! objects are copied within the store, pinned to the listed version, and
//! proven by the copy's answer, with their metadata; no byte passes
//! through ossimport. A source rewritten between the listing and its copy
//! is refused by the store (`x-amz-copy-source-if-match`) and never
//! reported verified. `serverSideCopy=never` streams as before.

use std::time::Duration;

use crate::support::*;

fn job(dir: &std::path::Path, name: &str, endpoint: &str, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join(format!("{name}.cfg"));
    std::fs::write(
        &cfg,
        format!(
            "jobName={name}\nsrcType=s3\nsrcDomain={endpoint}\nsrcBucket=srcbkt\nsrcPrefix=\n\
             srcAccessKey={AK}\nsrcSecretKey={SK}\ndestDomain={endpoint}\ndestBucket=dstbkt\n\
             destAccessKey={AK}\ndestSecretKey={SK}\ndestPrefix={name}/\n{extra}\n"
        ),
    )
    .unwrap();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_to_bucket_on_one_endpoint_is_copied_within_the_store() {
    let s3 = S3Server::start();
    s3.create_bucket("srcbkt").await;
    s3.create_bucket("dstbkt").await;
    let c = s3.client();
    let mut want = Vec::new();
    for i in 0..20u64 {
        let key = format!("d{}/o{i}.bin", i % 3);
        let body = bytes(i, 500 + 97 * i as usize);
        c.put_object()
            .bucket("srcbkt")
            .key(&key)
            .body(body.clone().into())
            .content_type("image/png")
            .metadata("owner", "team")
            .send()
            .await
            .unwrap();
        want.push((key, body));
    }
    // Both buckets through one front that counts what passes.
    let front = testkit::net::FaultProxy::start(&s3.endpoint, Default::default()).await;
    let tmp = tempfile::tempdir().unwrap();

    let cfg = job(tmp.path(), "within", &front.endpoint, "");
    let work = tmp.path().join("within");
    let out = tokio::task::block_in_place(|| run_job(&cfg, &work));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = objects(&work);
    assert_eq!(rows.len(), want.len());
    for o in &rows {
        assert_eq!(
            o.verified_by.as_deref(),
            Some("size+md5+server-side"),
            "{o:?}"
        );
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        front.stats.object_gets.load(Relaxed),
        0,
        "an object was read through ossimport"
    );
    assert_eq!(front.stats.copies.load(Relaxed), want.len() as u64);
    for (key, body) in &want {
        let dest = format!("within/{key}");
        assert_eq!(&get(&c, "dstbkt", &dest).await, body, "{key}");
        let h = c
            .head_object()
            .bucket("dstbkt")
            .key(&dest)
            .send()
            .await
            .unwrap();
        assert_eq!(h.content_type(), Some("image/png"), "{key}");
        assert_eq!(
            h.metadata()
                .and_then(|m| m.get("owner"))
                .map(String::as_str),
            Some("team"),
            "{key}"
        );
    }

    // serverSideCopy=never: streamed through, as before.
    let gets = front.stats.object_gets.load(Relaxed);
    let cfg = job(
        tmp.path(),
        "streamed",
        &front.endpoint,
        "serverSideCopy=never",
    );
    let work = tmp.path().join("streamed");
    let out = tokio::task::block_in_place(|| run_job(&cfg, &work));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(objects(&work).iter().all(|o| {
        !o.verified_by
            .as_deref()
            .unwrap_or("")
            .contains("server-side")
    }));
    assert_eq!(
        front.stats.object_gets.load(Relaxed) - gets,
        want.len() as u64
    );
}

/// The source object is rewritten after the listing, while its copy is on
/// the way: the store refuses the copy (the ETag no longer matches), the
/// streamed fallback's GET is refused likewise, and the object fails
/// `SOURCE_CHANGED`; the destination holds neither version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_rewritten_before_its_server_side_copy_is_never_verified() {
    let s3 = S3Server::start();
    s3.create_bucket("srcbkt").await;
    s3.create_bucket("dstbkt").await;
    let c = s3.client();
    c.put_object()
        .bucket("srcbkt")
        .key("doc.txt")
        .body(b"version one".to_vec().into())
        .send()
        .await
        .unwrap();
    let front = testkit::net::FaultProxy::start(
        &s3.endpoint,
        testkit::net::Faults {
            copy_delay: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = job(tmp.path(), "raced", &front.endpoint, "");
    let work = tmp.path().join("raced");
    let mut child = spawn_quiet_run(&cfg, &work);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while front
        .stats
        .copies
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "no copy was made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.put_object()
        .bucket("srcbkt")
        .key("doc.txt")
        .body(b"version two, longer".to_vec().into())
        .send()
        .await
        .unwrap();
    let status = tokio::task::block_in_place(|| child.wait().unwrap());
    assert_eq!(status.code(), Some(1));
    let o = object(&work, "doc.txt");
    assert_eq!(o.state, ObjectState::Failed, "{o:?}");
    assert_eq!(o.error_code.as_deref(), Some("SOURCE_CHANGED"), "{o:?}");
    let held = c
        .head_object()
        .bucket("dstbkt")
        .key("raced/doc.txt")
        .send()
        .await;
    assert!(held.is_err(), "the destination holds {held:?}");
}
