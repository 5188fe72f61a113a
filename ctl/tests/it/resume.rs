//! Interrupted runs: SIGKILL and Ctrl-C in the middle, then the same command
//! again. Nothing verified is uploaded again and finished parts of the large
//! file are not resent.

use crate::support::*;

#[tokio::test]
async fn sigkill_mid_run_then_resume() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src, 400);
    big_file(&src.join("a big/file.bin"), 200);
    let work = tmp.path().join("work");
    let cfg = job_cfg(
        tmp.path(),
        "kill_job",
        &src,
        &s3.endpoint,
        "bkt",
        "taskObjectCountLimit=50\nmultipartUploadThreshold=16m\nmultipartUploadPartSize=8m\nuploadThreadNumPerLargeFile=2",
    );

    let mut child = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--work-dir")
        .arg(&work)
        .spawn()
        .unwrap();
    // Kill once some parts of the large file and some small objects are done.
    wait_for_query(&work, "recorded parts", "SELECT count(*) FROM parts", 4);
    wait_for_query(
        &work,
        "verified objects",
        "SELECT count(*) FROM objects WHERE state = 'verified'",
        1,
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let db = store(&work);
    let parts_before: i64 = db
        .query_row("SELECT count(*) FROM parts", [], |r| r.get(0))
        .unwrap();
    let verified_before: Vec<String> = db
        .prepare("SELECT rel_path FROM objects WHERE state = 'verified'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(parts_before >= 4 && !verified_before.is_empty());
    let big_state: String = db
        .query_row(
            "SELECT state FROM objects WHERE rel_path = 'a big/file.bin'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        big_state, "pending",
        "the kill came too late to test part resume"
    );

    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        squash(&stdout(&out)).contains("verified 401 of 401"),
        "{}",
        stdout(&out)
    );

    // Verified objects were not uploaded again.
    for rel in &verified_before {
        let attempts: i64 = db
            .query_row(
                "SELECT attempts FROM objects WHERE rel_path = ?1",
                [rel],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(attempts, 1, "{rel} was uploaded again");
    }
    // The large file's recorded parts were taken over, not resent.
    let (resumed, attempts): (i64, i64) = db
        .query_row(
            "SELECT parts_resumed, attempts FROM objects WHERE rel_path = 'a big/file.bin'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(attempts, 1);
    assert!(
        resumed >= parts_before - 2 && resumed >= 1,
        "resumed {resumed} of {parts_before} recorded parts"
    );
    // And the object is intact.
    let got = get(&s3.client(), "bkt", "a big/file.bin").await;
    assert!(
        got == std::fs::read(src.join("a big/file.bin")).unwrap(),
        "large file differs after resume"
    );
}

#[tokio::test]
async fn ctrl_c_stops_cleanly_and_the_next_run_finishes() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src, 300);
    big_file(&src.join("big.bin"), 64);
    let work = tmp.path().join("work");
    let cfg = job_cfg(
        tmp.path(),
        "int_job",
        &src,
        &s3.endpoint,
        "bkt",
        "taskObjectCountLimit=20\nmultipartUploadThreshold=8m\nmultipartUploadPartSize=5m\nuploadThreadNumPerLargeFile=1",
    );
    let child = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--work-dir")
        .arg(&work)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_query(&work, "recorded parts", "SELECT count(*) FROM parts", 1);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run the same command again to resume"),
        "{}",
        stderr(&out)
    );

    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        squash(&stdout(&out)).contains("verified 301 of 301"),
        "{}",
        stdout(&out)
    );
}
