//! `overwriteMode=ours` (SeaweedFS, which honours conditional writes): a copy
//! replaces only what this job wrote and the destination still holds. A key
//! another client wrote before the job, or rewrote after it, is a
//! `DEST_CONFLICT` naming both ETags, and the other client's bytes stay; the
//! rest is copied. A destination that ignores the conditions is refused at
//! the start, not trusted.

use std::path::Path;

use daemon::store::ObjectState;

use crate::incremental::{interrupt, spawn_run};
use crate::support::*;

fn latest(work: &Path, rel: &str) -> Vec<daemon::store::ObjectRow> {
    objects(work)
        .into_iter()
        .filter(|o| o.rel_path == rel)
        .collect()
}

async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &'static [u8]) -> String {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

#[test]
fn ours_never_overwrites_what_another_client_wrote() {
    let s3 = S3Server::start();
    let c = s3.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(s3.create_bucket("ours"));
    let theirs_before = rt.block_on(put(
        &c,
        "ours",
        "d.txt",
        b"another client's, before the job",
    ));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for f in ["a.txt", "b.txt", "c.txt", "d.txt"] {
        std::fs::write(src.join(f), format!("source {f}")).unwrap();
    }
    // Above the multipart threshold: its condition rides on
    // CompleteMultipartUpload.
    std::fs::write(src.join("big.bin"), vec![1u8; 6 << 20]).unwrap();
    let work = tmp.path().join("work");
    let cfg = job_cfg(
        tmp.path(),
        "oursjob",
        &src,
        &s3.endpoint,
        "ours",
        "isIncremental=true\nincrementalModeInterval=3600\nincrementalMode=watch\nwatchSettleSeconds=1\noverwriteMode=ours\nmultipartUploadThreshold=5m\nmultipartUploadPartSize=5m",
    );
    let log = tmp.path().join("run.log");
    let child = spawn_run(&cfg, &work, &log);
    // Files this new are held by the first listing until they settle, and
    // copied by the pass after it.
    wait_for_store(&work, "every file final", |s| {
        let rows = s.objects().unwrap_or_default();
        ["a.txt", "b.txt", "c.txt", "d.txt", "big.bin"]
            .iter()
            .all(|f| {
                rows.iter()
                    .any(|o| o.rel_path == *f && o.state != ObjectState::Pending)
            })
    });

    // The key another client wrote first is not overwritten.
    let d = latest(&work, "d.txt");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].state, ObjectState::Failed, "{d:?}");
    assert_eq!(d[0].error_code.as_deref(), Some("DEST_CONFLICT"));
    let why = d[0].error.clone().unwrap();
    assert!(
        why.contains("did not write") && why.contains(&theirs_before),
        "{why}"
    );
    assert_eq!(
        rt.block_on(get(&c, "ours", "d.txt")),
        b"another client's, before the job"
    );
    for f in ["a.txt", "b.txt", "c.txt", "big.bin"] {
        assert_eq!(latest(&work, f)[0].state, ObjectState::Verified, "{f}");
    }
    let ours_a = latest(&work, "a.txt")[0].etag.clone().unwrap();

    // Another client rewrites a.txt at the destination; then a.txt and b.txt
    // change at the source.
    let theirs_a = rt.block_on(put(&c, "ours", "a.txt", b"the application's new write"));
    rt.block_on(put(&c, "ours", "big.bin", b"the application's, small"));
    std::fs::write(src.join("big.bin"), vec![2u8; 6 << 20]).unwrap();
    std::fs::write(src.join("a.txt"), b"source a, changed").unwrap();
    std::fs::write(src.join("b.txt"), b"source b, changed").unwrap();
    wait_for("b.txt copied again", 60, || {
        latest(&work, "b.txt")
            .iter()
            .any(|o| o.state == ObjectState::Verified && o.size == 17)
    });
    wait_for("a.txt refused", 60, || {
        latest(&work, "a.txt")
            .iter()
            .any(|o| o.error_code.as_deref() == Some("DEST_CONFLICT"))
    });
    wait_for("big.bin refused", 60, || {
        latest(&work, "big.bin")
            .iter()
            .any(|o| o.error_code.as_deref() == Some("DEST_CONFLICT"))
    });
    interrupt(child);
    assert_eq!(
        rt.block_on(get(&c, "ours", "big.bin")),
        b"the application's, small"
    );
    let a = latest(&work, "a.txt");
    let why = a[0].error.clone().unwrap();
    assert!(
        why.contains("changed since this job wrote it")
            && why.contains(&ours_a)
            && why.contains(&theirs_a),
        "both ETags named: {why}"
    );
    assert_eq!(
        rt.block_on(get(&c, "ours", "a.txt")),
        b"the application's new write"
    );
    assert_eq!(rt.block_on(get(&c, "ours", "b.txt")), b"source b, changed");
}

/// A store that takes a write whatever its condition says is refused for
/// `overwriteMode=ours` before anything is copied: moto, which checks
/// `If-Match` on PUT but not on CompleteMultipartUpload, and moto behind a
/// proxy that drops `If-Match` and `If-None-Match`.
#[test]
fn a_destination_that_ignores_conditions_is_refused_for_ours() {
    let moto = MotoServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(moto.create_bucket("cond"));
    let proxy = rt.block_on(testkit::net::FaultProxy::start(
        &moto.endpoint,
        testkit::net::Faults {
            strip_if_match: true,
            strip_if_none_match: true,
            ..Default::default()
        },
    ));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 3, 10);
    for (endpoint, what) in [
        (
            &moto.endpoint,
            "a CompleteMultipartUpload with If-Match on another ETag",
        ),
        (&proxy.endpoint, "a PUT with If-None-Match: *"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let cfg = job_cfg(
            work.path(),
            "condjob",
            &src,
            endpoint,
            "cond",
            "overwriteMode=ours",
        );
        let out = run_job(&cfg, &work.path().join("work"));
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(4), "{said}");
        assert!(
            said.contains(&format!(
                "ignores conditional writes ({what} overwrote an existing object)"
            )) && said.contains("overwriteMode=always"),
            "{said}"
        );
    }
    // Nothing was copied, and the probe object is gone.
    let keys = rt.block_on(list_keys(&moto.client(), "cond", ""));
    assert!(keys.is_empty(), "{keys:?}");
    drop(proxy);
}
