//! A standalone migration of a realistic tree: every object arrives
//! byte-identical and is reported verified.

use std::sync::Arc;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_with_a_large_file_arrives_byte_identical() {
    let s3 = S3Server::start();
    s3.create_bucket("dest").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut rels = small_tree(&src, 2000);
    big_file(&src.join("big/large file ü.bin"), 210);
    rels.push("big/large file ü.bin".into());
    let work = tmp.path().join("work");
    let cfg = job_cfg(
        tmp.path(),
        "migrate_tree",
        &src,
        &s3.endpoint,
        "dest",
        "destPrefix=migrated/\ntaskObjectCountLimit=300\nmultipartUploadThreshold=64m\nmultipartUploadPartSize=16m",
    );

    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(summary.contains("job migrate_tree succeeded"), "{summary}");
    assert!(
        squash(&summary).contains("verified 2001 of 2001 objects"),
        "{summary}"
    );
    assert!(squash(&summary).contains("failed 0"), "{summary}");

    // Every object present and byte-identical.
    let client = s3.client();
    let keys = list_keys(&client, "dest", "migrated/").await;
    let mut expected: Vec<String> = rels.iter().map(|r| format!("migrated/{r}")).collect();
    expected.sort();
    assert_eq!(keys, expected);
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for rel in rels {
        let (client, src, sem) = (client.clone(), src.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let got = get(&client, "dest", &format!("migrated/{rel}")).await;
            let want = std::fs::read(src.join(&rel)).unwrap();
            assert!(
                got == want,
                "{rel}: {} bytes at the destination, {} in the source",
                got.len(),
                want.len()
            );
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }

    // The store holds a checksum for every object, and the large one went multipart.
    let all = objects(&work);
    let verified: Vec<&ObjectRow> = all
        .iter()
        .filter(|o| o.state == ObjectState::Verified)
        .collect();
    let with_crc = verified.iter().filter(|o| o.checksum.is_some()).count();
    assert_eq!((verified.len(), with_crc), (2001, 2001));
    let etag = all
        .iter()
        .find(|o| o.rel_path.starts_with("big/"))
        .and_then(|o| o.etag.clone())
        .unwrap();
    assert!(
        etag.ends_with("-14"),
        "210 MiB in 16 MiB parts is 14 parts: {etag}"
    );

    // Running again copies nothing.
    let again = run_job(&cfg, &work);
    assert_eq!(again.status.code(), Some(0));
    let attempts = objects(&work).iter().map(|o| o.attempts).max().unwrap();
    assert_eq!(attempts, 1, "a verified object was copied again");
}
