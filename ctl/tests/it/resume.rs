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
    wait_for_parts(&work, 4);
    wait_for_store(&work, "verified objects", |s| {
        s.objects()
            .is_ok_and(|o| o.iter().any(|o| o.state == ObjectState::Verified))
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let parts_before = store(&work).recorded_parts().unwrap();
    let verified_before: Vec<String> = objects(&work)
        .into_iter()
        .filter(|o| o.state == ObjectState::Verified)
        .map(|o| o.rel_path)
        .collect();
    assert!(parts_before >= 4 && !verified_before.is_empty());
    let big_state = object(&work, "a big/file.bin").state;
    assert_eq!(
        big_state,
        ObjectState::Pending,
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
        let attempts = object(&work, rel).attempts;
        assert_eq!(attempts, 1, "{rel} was uploaded again");
    }
    // The large file's recorded parts were taken over, not resent.
    let big = object(&work, "a big/file.bin");
    let (resumed, attempts) = (u64::from(big.parts_resumed), big.attempts);
    assert_eq!(attempts, 1);
    assert!(
        resumed >= parts_before - 2 && resumed >= 1,
        "resumed {resumed} of {parts_before} recorded parts"
    );
    // SeaweedFS checks CRC-64/NVME: the upload was started with it, each
    // part recorded its own, and the resumed upload completed with the
    // full object's value, which the store confirmed.
    assert_eq!(big.verified_by.as_deref(), Some("size+crc64nvme"));
    assert!(
        objects(&work)
            .iter()
            .all(|o| o.verified_by.as_deref() == Some("size+crc64nvme")),
        "every object proven by the CRC"
    );
    let head = s3
        .client()
        .head_object()
        .bucket("bkt")
        .key("a big/file.bin")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let crc =
        storage::checksum::digest_with(&std::fs::read(src.join("a big/file.bin")).unwrap(), false)
            .nvme;
    assert_eq!(
        head.checksum_crc64_nvme(),
        Some(storage::checksum::nvme_base64(crc).as_str()),
        "the full-object CRC-64/NVME the store keeps"
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
    wait_for_parts(&work, 1);
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
