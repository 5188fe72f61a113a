//! `jobType=audit` compares an existing copy with the source and writes nothing.

use aws_sdk_s3::primitives::ByteStream;

use crate::support::*;

#[tokio::test]
async fn audit_reports_an_altered_and_a_missing_object() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src, 60);
    big_file(&src.join("big.bin"), 12);
    let work = tmp.path().join("work");
    let common = "multipartUploadThreshold=8m\nmultipartUploadPartSize=5m";
    let import = job_cfg(tmp.path(), "import_job", &src, &s3.endpoint, "bkt", common);
    assert_eq!(run_job(&import, &work).status.code(), Some(0));

    // Unchanged copy: the audit verifies everything, multipart included.
    let audit = job_cfg(
        tmp.path(),
        "audit_job",
        &src,
        &s3.endpoint,
        "bkt",
        &format!("jobType=audit\n{common}"),
    );
    let out = run_job(&audit, &work);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        squash(&stdout(&out)).contains("verified 61 of 61"),
        "{}",
        stdout(&out)
    );

    // Same size, different bytes: only a checksum can tell.
    let client = s3.client();
    let victim = "d1/sub 1/naïve café 1.txt";
    let mut data = get(&client, "bkt", victim).await;
    data[0] ^= 0xff;
    client
        .put_object()
        .bucket("bkt")
        .key(victim)
        .body(ByteStream::from(data))
        .send()
        .await
        .unwrap();
    client
        .delete_object()
        .bucket("bkt")
        .key("d6/empty 20.txt")
        .send()
        .await
        .unwrap();

    let audit2 = job_cfg(
        tmp.path(),
        "audit_job2",
        &src,
        &s3.endpoint,
        "bkt",
        &format!("jobType=audit\n{common}"),
    );
    let out = run_job(&audit2, &work);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("CHECKSUM_MISMATCH  {victim}:")),
        "{text}"
    );
    assert!(
        squash(&text).contains("DEST_MISSING d6/empty 20.txt:"),
        "{text}"
    );
    assert!(squash(&text).contains("failed 2 objects"), "{text}");
    // The audit wrote nothing: the altered object is still altered.
    let after = get(&client, "bkt", victim).await;
    assert_ne!(after, std::fs::read(src.join(victim)).unwrap());
}
