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

/// Every upload started in `bucket` was completed or aborted.
async fn assert_no_upload_open(c: &aws_sdk_s3::Client, bucket: &str) {
    let open = c
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "{open:?}");
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
    // Two multipart objects: one written with a full-object CRC-64/NVME
    // (copied within the store, held to it), one without (its `…-2` ETag
    // is no MD5 and nothing else can hold a copy to it: streamed).
    for (key, crc) in [("mp/crc.bin", true), ("mp/plain.bin", false)] {
        let body = bytes(if crc { 101 } else { 102 }, (6 << 20) + 123);
        let mut create = c
            .create_multipart_upload()
            .bucket("srcbkt")
            .key(key)
            .content_type("video/mp4");
        if crc {
            create = create
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme)
                .checksum_type(aws_sdk_s3::types::ChecksumType::FullObject);
        }
        let id = create.send().await.unwrap().upload_id.unwrap();
        let mut parts = Vec::new();
        for (n, chunk) in body.chunks(5 << 20).enumerate() {
            let mut up = c
                .upload_part()
                .bucket("srcbkt")
                .key(key)
                .upload_id(&id)
                .part_number(n as i32 + 1)
                .body(chunk.to_vec().into());
            if crc {
                let nvme = storage::checksum::digest(chunk).nvme;
                up = up.checksum_crc64_nvme(storage::checksum::nvme_base64(nvme));
            }
            let etag = up.send().await.unwrap().e_tag.unwrap();
            parts.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(n as i32 + 1)
                    .e_tag(etag)
                    .build(),
            );
        }
        let mut complete = c
            .complete_multipart_upload()
            .bucket("srcbkt")
            .key(key)
            .upload_id(&id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if crc {
            let nvme = storage::checksum::digest(&body).nvme;
            complete = complete
                .checksum_crc64_nvme(storage::checksum::nvme_base64(nvme))
                .checksum_type(aws_sdk_s3::types::ChecksumType::FullObject);
        }
        complete.send().await.unwrap();
        want.push((key.to_string(), body));
    }
    // Two plain objects above the 5 MiB cut-off of the third run: one
    // written with its CRC-64/NVME (copied in parts, held to it), one
    // without (SeaweedFS then keeps none: streamed in that run).
    for (key, crc) in [("big/crc.bin", true), ("big/plain.bin", false)] {
        let body = bytes(if crc { 103 } else { 104 }, (6 << 20) + 7);
        let mut put = c
            .put_object()
            .bucket("srcbkt")
            .key(key)
            .body(body.clone().into())
            .content_type("image/png")
            .metadata("owner", "team");
        if crc {
            let nvme = storage::checksum::digest(&body).nvme;
            put = put.checksum_crc64_nvme(storage::checksum::nvme_base64(nvme));
        }
        put.send().await.unwrap();
        want.push((key.to_string(), body));
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
        let by = match o.rel_path.as_str() {
            "mp/crc.bin" => "size+crc64nvme+server-side",
            "mp/plain.bin" => "size+crc64nvme",
            _ => "size+md5+server-side",
        };
        assert_eq!(o.verified_by.as_deref(), Some(by), "{o:?}");
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        front.stats.object_gets.load(Relaxed),
        1,
        "an object other than mp/plain.bin was read through ossimport"
    );
    assert_eq!(front.stats.copies.load(Relaxed), want.len() as u64 - 1);
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
        let ty = if key.starts_with("mp/") {
            "video/mp4"
        } else {
            "image/png"
        };
        assert_eq!(h.content_type(), Some(ty), "{key}");
        if !key.starts_with("mp/") {
            assert_eq!(
                h.metadata()
                    .and_then(|m| m.get("owner"))
                    .map(String::as_str),
                Some("team"),
                "{key}"
            );
        }
    }

    // Objects above serverSideCopyCutoff are copied in parts
    // (UploadPartCopy, 5 MiB each) and held to the source's CRC-64/NVME,
    // metadata kept; above it without a CRC they are streamed.
    let (gets, part_copies) = (
        front.stats.object_gets.load(Relaxed),
        front.stats.part_copies.load(Relaxed),
    );
    let cfg = job(
        tmp.path(),
        "parts",
        &front.endpoint,
        "serverSideCopyCutoff=5m\nmultipartUploadPartSize=5m",
    );
    let work = tmp.path().join("parts");
    let out = tokio::task::block_in_place(|| run_job(&cfg, &work));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for o in objects(&work) {
        let by = o.verified_by.as_deref().unwrap_or("");
        match o.rel_path.as_str() {
            "mp/crc.bin" | "big/crc.bin" => assert_eq!(by, "size+crc64nvme+server-side", "{o:?}"),
            "mp/plain.bin" | "big/plain.bin" => assert!(!by.contains("server-side"), "{o:?}"),
            _ => assert_eq!(by, "size+md5+server-side", "{o:?}"),
        }
    }
    assert_eq!(front.stats.part_copies.load(Relaxed) - part_copies, 4);
    assert_eq!(front.stats.object_gets.load(Relaxed) - gets, 2);
    for (key, body) in &want {
        assert_eq!(
            &get(&c, "dstbkt", &format!("parts/{key}")).await,
            body,
            "{key}"
        );
    }
    let h = c
        .head_object()
        .bucket("dstbkt")
        .key("parts/big/crc.bin")
        .send()
        .await
        .unwrap();
    assert!(h.e_tag().is_some_and(|e| e.ends_with("-2\"")), "{h:?}");
    assert_eq!(h.content_type(), Some("image/png"));
    assert_eq!(
        h.metadata()
            .and_then(|m| m.get("owner"))
            .map(String::as_str),
        Some("team")
    );
    assert_no_upload_open(&c, "dstbkt").await;

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

/// The source objects are rewritten after the listing, while their copies
/// are on the way (one `CopyObject`, one copy in parts above
/// `serverSideCopyCutoff`): the store refuses each copy (the ETag no longer
/// matches), the streamed fallback's GET is refused likewise, and both
/// objects fail `SOURCE_CHANGED`; the destination holds neither version,
/// and no upload is left open.
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
    let big = bytes(7, (6 << 20) + 1);
    c.put_object()
        .bucket("srcbkt")
        .key("big.bin")
        .checksum_crc64_nvme(storage::checksum::nvme_base64(
            storage::checksum::digest(&big).nvme,
        ))
        .body(big.into())
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
    let cfg = job(
        tmp.path(),
        "raced",
        &front.endpoint,
        "serverSideCopyCutoff=5m\nmultipartUploadPartSize=5m",
    );
    let work = tmp.path().join("raced");
    let mut child = spawn_quiet_run(&cfg, &work);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Both copies held by the front: a CopyObject and a part.
    use std::sync::atomic::Ordering::Relaxed;
    let (copies, parts) = (&front.stats.copies, &front.stats.part_copies);
    while parts.load(Relaxed) == 0 || copies.load(Relaxed) == parts.load(Relaxed) {
        assert!(std::time::Instant::now() < deadline, "no copy was made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for key in ["doc.txt", "big.bin"] {
        c.put_object()
            .bucket("srcbkt")
            .key(key)
            .body(b"version two, longer".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let status = tokio::task::block_in_place(|| child.wait().unwrap());
    assert_eq!(status.code(), Some(1));
    for key in ["doc.txt", "big.bin"] {
        let o = object(&work, key);
        assert_eq!(o.state, ObjectState::Failed, "{o:?}");
        assert_eq!(o.error_code.as_deref(), Some("SOURCE_CHANGED"), "{o:?}");
        let held = c
            .head_object()
            .bucket("dstbkt")
            .key(format!("raced/{key}"))
            .send()
            .await;
        assert!(held.is_err(), "the destination holds {held:?}");
    }
    assert_no_upload_open(&c, "dstbkt").await;
}
