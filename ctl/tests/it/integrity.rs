//! "Verified" under a hostile or changing world: names that try to leave
//! `destDir`, a file rewritten between a killed run and its resume, a resume
//! against a second S3 implementation, a symlink swapped in after the scan,
//! and directories the scan cannot enter. Each test changes the world
//! between two steps, then checks what the job reports against what is
//! really at the destination.

use std::collections::HashMap;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;

use crate::support::*;
use testkit::net::FileServer;

fn spawn_run(cfg: &Path, work: &Path) -> std::process::Child {
    ctl()
        .arg("run")
        .arg(cfg)
        .arg("--work-dir")
        .arg(work)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_a_url_list_never_leave_dest_dir() {
    let mut files = HashMap::new();
    files.insert("/site/good.txt".to_string(), b"good".to_vec());
    files.insert("/site/sub/ok.txt".to_string(), b"ok".to_vec());
    for bad in ["sub/../../x.txt", "a//b.txt", "a/./b.txt", "../up.txt"] {
        files.insert(format!("/site/{bad}"), b"evil".to_vec());
    }
    let server = FileServer::start(files).await;
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("http.list");
    let mut lines = String::new();
    for rel in [
        "good.txt",
        "sub/ok.txt",
        "sub/../../x.txt",
        "a//b.txt",
        "a/./b.txt",
        "../up.txt",
    ] {
        lines.push_str(&format!("{}/site/ {rel}\n", server.base));
    }
    std::fs::write(&list, lines).unwrap();
    let dest = tmp.path().join("deep/dest");
    std::fs::create_dir_all(&dest).unwrap();
    let cfg = tmp.path().join("names.cfg");
    JobFile::new("names")
        .url_list(&list)
        .local_dest(&dest)
        .write_to(&cfg);
    let work = tmp.path().join("work");
    let out = tokio::task::spawn_blocking({
        let (cfg, work) = (cfg.clone(), work.clone());
        move || run_job(&cfg, &work)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = squash(&stdout(&out));
    assert!(text.contains("verified 2 of 6"), "{text}");
    for bad in ["sub/../../x.txt", "a//b.txt", "a/./b.txt", "../up.txt"] {
        assert!(
            text.contains(&format!("INVALID_KEY {bad}:")),
            "{bad}: {text}"
        );
    }
    // Nothing was written anywhere but the two good files, and no
    // temporary was left behind.
    assert_eq!(files_under(&dest), ["good.txt", "sub/ok.txt"]);
    assert_eq!(std::fs::read(dest.join("sub/ok.txt")).unwrap(), b"ok");
    assert!(!tmp.path().join("deep/x.txt").exists());
    assert!(!tmp.path().join("x.txt").exists());
    assert!(!tmp.path().join("deep/up.txt").exists());
    // Remote objects have no mode to keep: they are created 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dest.join("good.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "good.txt is {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_bucket_never_leave_dest_dir() {
    // moto keeps keys exactly as given (SeaweedFS cleans `..` out of them).
    let s3 = MotoServer::start();
    s3.create_bucket("source").await;
    let client = s3.client();
    for key in ["p/good.txt", "p/x/../../../x.txt", "p/a//b", "p/a/./b"] {
        client
            .put_object()
            .bucket("source")
            .key(key)
            .body(ByteStream::from(key.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("deep/dest");
    std::fs::create_dir_all(&dest).unwrap();
    let cfg = tmp.path().join("keys.cfg");
    JobFile::new("keys")
        .bucket_source(&s3.endpoint, "source", "p/")
        .local_dest(&dest)
        .write_to(&cfg);
    let work = tmp.path().join("work");
    let out = tokio::task::spawn_blocking({
        let (cfg, work) = (cfg.clone(), work.clone());
        move || run_job(&cfg, &work)
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = squash(&stdout(&out));
    assert!(text.contains("verified 1 of 4"), "{text}");
    for bad in ["x/../../../x.txt", "a//b", "a/./b"] {
        assert!(
            text.contains(&format!("INVALID_KEY {bad}:")),
            "{bad}: {text}"
        );
    }
    assert_eq!(files_under(&dest), ["good.txt"]);
    assert!(!tmp.path().join("x.txt").exists());
    assert!(!tmp.path().join("deep/x.txt").exists());
}

/// A job whose large file uploads slowly (2 MiB/s) in 5 MiB parts.
fn slow_multipart_job(tmp: &Path, src: &Path, endpoint: &str, name: &str) -> std::path::PathBuf {
    std::fs::write(
        tmp.join("sys.properties"),
        "workerMaxThroughput(KB/s)=2048\n",
    )
    .unwrap();
    job_cfg(
        tmp,
        name,
        src,
        endpoint,
        "bkt",
        "multipartUploadThreshold=8m\nmultipartUploadPartSize=5m\nuploadThreadNumPerLargeFile=1",
    )
}

/// Kills a run once `parts` parts of the large file are recorded.
fn kill_after_parts(cfg: &Path, work: &Path, parts: u64) {
    let mut child = spawn_run(cfg, work);
    wait_for_parts(work, parts);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let state = object(work, "big.bin").state;
    assert_eq!(state, ObjectState::Pending, "the kill came too late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_between_kill_and_resume_is_never_completed_as_a_mix() {
    use std::io::{Seek, SeekFrom, Write};
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let big = src.join("big.bin");
    big_file(&big, 30);
    let work = tmp.path().join("work");
    let cfg = slow_multipart_job(tmp.path(), &src, &s3.endpoint, "torn");
    kill_after_parts(&cfg, &work, 3);

    // Rewrite the first MiB (inside recorded part 1) and put size and mtime
    // back: the ctime tells (before the identity had it, the recorded parts'
    // MD5s did, and the resume sent part 1 again).
    let md = std::fs::metadata(&big).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&bytes(4242, 1 << 20)).unwrap();
    f.set_modified(md.modified().unwrap()).unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(&big).unwrap().len(), md.len());

    std::fs::remove_file(tmp.path().join("sys.properties")).unwrap();
    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let o = object(&work, "big.bin");
    assert_eq!(o.error_code.as_deref(), Some("SOURCE_CHANGED"), "{o:?}");
    assert!(
        o.error.as_deref().unwrap_or_default().contains("ctime"),
        "{o:?}"
    );
    // Nothing was completed at the destination, so nothing mixed.
    let at_dest = s3
        .client()
        .head_object()
        .bucket("bkt")
        .key("big.bin")
        .send()
        .await;
    assert!(at_dest.is_err(), "an object was completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_multipart_upload_resumes_on_moto_without_clean() {
    let s3 = MotoServer::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = small_tree(&src, 20);
    let big = src.join("big.bin");
    big_file(&big, 30);
    let work = tmp.path().join("work");
    let cfg = slow_multipart_job(tmp.path(), &src, &s3.endpoint, "moto_resume");
    kill_after_parts(&cfg, &work, 2);
    std::fs::remove_file(tmp.path().join("sys.properties")).unwrap();

    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        squash(&stdout(&out)).contains("verified 21 of 21"),
        "{}",
        stdout(&out)
    );
    let got = get(&s3.client(), "bkt", "big.bin").await;
    assert!(got == std::fs::read(&big).unwrap(), "big.bin differs");
    for rel in rels {
        let got = get(&s3.client(), "bkt", &rel).await;
        assert!(got == std::fs::read(src.join(&rel)).unwrap(), "{rel}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swapped_in_after_the_scan_is_not_followed() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // Copied first, slowly: time to swap the others.
    big_file(&src.join("a_first.bin"), 6);
    std::fs::write(src.join("z_file.txt"), b"public file").unwrap();
    std::fs::create_dir_all(src.join("z_dir")).unwrap();
    std::fs::write(src.join("z_dir/inner.txt"), b"public inner").unwrap();
    // And two small files changed in place, read in the same trip as they
    // are opened: one rewritten with its size and mtime put back, one grown.
    std::fs::write(src.join("z_same.txt"), b"first words").unwrap();
    std::fs::write(src.join("z_grown.txt"), b"short").unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // Same sizes as the files they stand in for, so only identity tells.
    std::fs::write(outside.join("key"), b"secret key!").unwrap();
    std::fs::write(outside.join("inner.txt"), b"secret inner").unwrap();
    let mtime_of = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(outside.join("key"))
        .unwrap()
        .set_modified(mtime_of(&src.join("z_file.txt")))
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(outside.join("inner.txt"))
        .unwrap()
        .set_modified(mtime_of(&src.join("z_dir/inner.txt")))
        .unwrap();

    std::fs::write(
        tmp.path().join("sys.properties"),
        "workerMaxThroughput(KB/s)=1024\nworkerTaskThreadNum=1\n",
    )
    .unwrap();
    let work = tmp.path().join("work");
    // One task: its objects are started in listing order, one at a time, so
    // the two z_ entries wait behind the slow first file while they are
    // swapped (with one task per object, two tasks run side by side).
    let cfg = job_cfg(
        tmp.path(),
        "swap",
        &src,
        &s3.endpoint,
        "bkt",
        "taskObjectCountLimit=10",
    );
    let child = spawn_run(&cfg, &work);
    // Once the scan has recorded the last file, swap two for symlinks and
    // change the other two.
    wait_for_store(&work, "the scan", |s| {
        s.objects()
            .is_ok_and(|o| o.iter().any(|o| o.rel_path == "z_same.txt"))
    });
    std::fs::remove_file(src.join("z_file.txt")).unwrap();
    std::os::unix::fs::symlink(outside.join("key"), src.join("z_file.txt")).unwrap();
    std::fs::rename(src.join("z_dir"), tmp.path().join("z_dir_moved")).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("z_dir")).unwrap();
    let was = mtime_of(&src.join("z_same.txt"));
    let mut same = std::fs::File::options()
        .write(true)
        .open(src.join("z_same.txt"))
        .unwrap();
    std::io::Write::write_all(&mut same, b"other words").unwrap();
    same.set_modified(was).unwrap();
    drop(same);
    std::fs::write(src.join("z_grown.txt"), b"short, and more").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = squash(&stdout(&out));
    eprintln!("{text}\n{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("verified 1 of 5"), "{text}");
    assert!(text.contains("SOURCE_CHANGED z_file.txt:"), "{text}");
    assert!(text.contains("SOURCE_CHANGED z_dir/inner.txt:"), "{text}");
    assert!(text.contains("SOURCE_CHANGED z_same.txt:"), "{text}");
    assert!(text.contains("SOURCE_CHANGED z_grown.txt:"), "{text}");
    assert_eq!(list_keys(&s3.client(), "bkt", "").await, ["a_first.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_the_scan_cannot_examine_fail_the_job() {
    use std::os::unix::fs::PermissionsExt;
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("locked")).unwrap();
    std::fs::write(src.join("visible.txt"), b"seen").unwrap();
    for name in ["a.txt", "b.txt", "c.txt"] {
        std::fs::write(src.join("locked").join(name), name).unwrap();
    }
    let work = tmp.path().join("work");
    let cfg = job_cfg(tmp.path(), "unreadable", &src, &s3.endpoint, "bkt", "");
    // Listable, not enterable: readdir gives the names, lstat fails EACCES.
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let tmp_path = tmp.path().to_path_buf();
    let out = tokio::task::spawn_blocking({
        let (cfg, work, src) = (cfg.clone(), work.clone(), src.clone());
        move || run_job_unprivileged(&cfg, &work, &[&tmp_path, &src])
    })
    .await
    .unwrap();
    std::fs::set_permissions(src.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = squash(&stdout(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("verified 1 of 4"), "{text}");
    for name in ["a.txt", "b.txt", "c.txt"] {
        assert!(
            text.contains(&format!("LIST_ERROR locked/{name}: cannot stat")),
            "{name}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_job_store_is_refused() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    big_file(&src.join("big.bin"), 12);
    let work = tmp.path().join("work");
    let cfg = slow_multipart_job(tmp.path(), &src, &s3.endpoint, "twice");
    let mut first = spawn_run(&cfg, &work);
    wait_for_store(&work, "the first run", |s| {
        s.objects().is_ok_and(|o| !o.is_empty())
    });
    let second = run_job(&cfg, &work);
    let err = stderr(&second);
    assert_ne!(second.status.code(), Some(0), "{err}");
    assert!(
        err.contains("is in use by pid") && err.contains(&first.id().to_string()),
        "{err}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock dies with its holder: the next run goes ahead.
    std::fs::remove_file(tmp.path().join("sys.properties")).unwrap();
    let third = run_job(&cfg, &work);
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
}

/// A full job, with a multipart upload killed and resumed, into a store that
/// answers as OSS does: every object is verified, by CRC64 among others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_through_an_oss_flavoured_front_is_verified_with_crc64() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let oss = OssFront::start(&s3.endpoint, 9);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = small_tree(&src, 30);
    let big = src.join("big.bin");
    big_file(&big, 24);
    let work = tmp.path().join("work");
    let cfg = slow_multipart_job(tmp.path(), &src, &oss.endpoint, "oss_front");
    kill_after_parts(&cfg, &work, 2);
    std::fs::remove_file(tmp.path().join("sys.properties")).unwrap();
    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(squash(&stdout(&out)).contains("verified 31 of 31"));
    let all = objects(&work);
    let big = all.iter().find(|o| o.rel_path == "big.bin").unwrap();
    let (resumed, by) = (
        big.parts_resumed,
        big.verified_by.clone().unwrap_or_default(),
    );
    assert!(resumed >= 1, "no part was resumed");
    // OSS answers its own CRC-64/XZ on every part and on Complete: that is
    // the proof, and no MD5 is computed for it.
    assert_eq!(by, "size+crc64xz", "big.bin");
    let without_crc = all
        .iter()
        .filter(|o| !o.verified_by.as_deref().unwrap_or("").contains("crc64"))
        .count();
    assert_eq!(without_crc, 0, "objects verified without the CRC64");
    let client = s3.client();
    for rel in rels.iter().chain(["big.bin".to_string()].iter()) {
        let got = get(&client, "bkt", rel).await;
        assert!(got == std::fs::read(src.join(rel)).unwrap(), "{rel}");
    }
}

/// A bucket-to-bucket job whose 30 MiB object uploads slowly in 5 MiB
/// parts, with the source object written first.
async fn slow_bucket_job(
    tmp: &Path,
    s3: &S3Server,
    endpoint: &str,
    name: &str,
    data: &[u8],
) -> std::path::PathBuf {
    s3.create_bucket("from").await;
    s3.create_bucket("dst").await;
    s3.client()
        .put_object()
        .bucket("from")
        .key("p/big.bin")
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap();
    std::fs::write(
        tmp.join("sys.properties"),
        "workerMaxThroughput(KB/s)=2048\n",
    )
    .unwrap();
    let cfg = tmp.join(format!("{name}.cfg"));
    JobFile::new(name)
        .bucket_source(endpoint, "from", "p/")
        .bucket_dest(endpoint, "dst")
        .set("multipartUploadThreshold", "8m")
        .set("multipartUploadPartSize", "5m")
        .set("uploadThreadNumPerLargeFile", 1)
        .set("serverSideCopy", "never")
        .write_to(&cfg);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upload_from_a_bucket_resumes_part_by_part_from_the_listed_version() {
    // Both ends through the OSS-flavoured front: upper-case ETags listed
    // and sent back in If-Match, CRC64 on Complete, some answers 503.
    let s3 = S3Server::start();
    let oss = OssFront::start(&s3.endpoint, 9);
    let tmp = tempfile::tempdir().unwrap();
    let data = bytes(77, 30 << 20);
    let cfg = slow_bucket_job(tmp.path(), &s3, &oss.endpoint, "bucket_resume", &data).await;
    let work = tmp.path().join("work");
    kill_after_parts(&cfg, &work, 2);
    std::fs::remove_file(tmp.path().join("sys.properties")).unwrap();

    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(squash(&stdout(&out)).contains("verified 1 of 1"));
    let big = object(&work, "big.bin");
    let (resumed, by) = (big.parts_resumed, big.verified_by.unwrap_or_default());
    assert!(resumed >= 2, "resumed {resumed}");
    assert_eq!(by, "size+crc64xz");
    assert!(
        get(&s3.client(), "dst", "big.bin").await == data,
        "big.bin differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_object_overwritten_before_the_resume_is_never_completed_as_a_mix() {
    let s3 = S3Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = slow_bucket_job(
        tmp.path(),
        &s3,
        &s3.endpoint,
        "bucket_changed",
        &bytes(78, 30 << 20),
    )
    .await;
    let work = tmp.path().join("work");
    kill_after_parts(&cfg, &work, 2);
    std::fs::remove_file(tmp.path().join("sys.properties")).unwrap();
    // Same key, same size, other bytes: only the ETag tells.
    s3.client()
        .put_object()
        .bucket("from")
        .key("p/big.bin")
        .body(ByteStream::from(bytes(79, 30 << 20)))
        .send()
        .await
        .unwrap();

    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = squash(&stdout(&out));
    assert!(text.contains("SOURCE_CHANGED big.bin"), "{text}");
    let head = s3
        .client()
        .head_object()
        .bucket("dst")
        .key("big.bin")
        .send()
        .await;
    assert!(head.is_err(), "a mixed object was completed");
    let uploads = s3
        .client()
        .list_multipart_uploads()
        .bucket("dst")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "the upload was left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_says_sse_kms_is_verified_without_trusting_its_etags() {
    use aws_sdk_s3::types::{
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule,
    };
    // moto answers `x-amz-server-side-encryption: aws:kms` for a bucket
    // encrypted by default with KMS: such ETags are not MD5s (on AWS), so
    // neither a PUT's nor a part's ETag may count as proof.
    let s3 = MotoServer::start();
    s3.create_bucket("kms").await;
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .build()
                .unwrap(),
        )
        .build();
    s3.client()
        .put_bucket_encryption()
        .bucket("kms")
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut rels = small_tree(&src, 12);
    big_file(&src.join("big.bin"), 12);
    rels.push("big.bin".into());
    let cfg = job_cfg(
        tmp.path(),
        "into_kms",
        &src,
        &s3.endpoint,
        "kms",
        "multipartUploadThreshold=8m\nmultipartUploadPartSize=5m",
    );
    let work = tmp.path().join("work");
    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(squash(&stdout(&out)).contains("verified 13 of 13"));
    let not_read_back = objects(&work)
        .iter()
        .filter(|o| !o.verified_by.as_deref().unwrap_or("").contains("readback"))
        .count();
    assert_eq!(not_read_back, 0, "an object counted on a KMS ETag");
    for rel in &rels {
        let got = get(&s3.client(), "kms", rel).await;
        assert!(got == std::fs::read(src.join(rel)).unwrap(), "{rel}");
    }

    // The same bucket as a source: its ETags are not compared with the
    // bytes received; the copy is checked where it lands.
    let dest = tmp.path().join("back");
    let cfg = tmp.path().join("from_kms.cfg");
    JobFile::new("from_kms")
        .bucket_source(&s3.endpoint, "kms", "")
        .local_dest(&dest)
        .write_to(&cfg);
    let out = run_job(&cfg, &tmp.path().join("work2"));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    for rel in &rels {
        assert!(
            std::fs::read(dest.join(rel)).unwrap() == std::fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
    }
}

/// The destination confirms a CRC-64/NVME (SeaweedFS checks the value each
/// PUT carries), but a front in between drops it from the answers, or
/// answers another value. Dropped: no object counts as proven by a CRC it
/// was never shown; each is read back or, once the job has fallen back,
/// held to its MD5, and all arrive intact. Another value: every object
/// fails `CHECKSUM_MISMATCH`, none is "verified". Straight to the store,
/// the same files are proven by the CRC alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_that_drops_or_falsifies_the_crc_never_yields_verified() {
    let s3 = S3Server::start();
    s3.create_bucket("crc").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = small_tree(&src, 60);
    // Two objects at a time, so the objects after the first answers are
    // surely started after the job fell back.
    std::fs::write(tmp.path().join("sys.properties"), "workerTaskThreadNum=2\n").unwrap();
    let run = |name: &str, endpoint: &str| {
        let cfg = job_cfg(
            tmp.path(),
            name,
            &src,
            endpoint,
            "crc",
            &format!("destPrefix={name}/"),
        );
        let work = tmp.path().join(name);
        (run_job(&cfg, &work), objects(&work))
    };

    let (out, rows) = tokio::task::block_in_place(|| run("direct", &s3.endpoint));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        rows.iter()
            .all(|o| o.verified_by.as_deref() == Some("size+crc64nvme")),
        "{rows:?}"
    );

    let dropping = testkit::net::FaultProxy::start(
        &s3.endpoint,
        testkit::net::Faults {
            crc_answers: testkit::net::CrcAnswers::Dropped,
            ..Default::default()
        },
    )
    .await;
    let (out, rows) = tokio::task::block_in_place(|| run("dropped", &dropping.endpoint));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(rows.len(), rels.len());
    let by: Vec<String> = rows
        .iter()
        .map(|o| o.verified_by.clone().unwrap_or_default())
        .collect();
    eprintln!("dropped: {by:?}");
    assert!(
        rows.iter().all(|o| o.state == ObjectState::Verified),
        "{rows:?}"
    );
    assert!(by.iter().all(|b| !b.contains("crc64nvme")), "{by:?}");
    assert!(
        by.iter()
            .all(|b| b.contains("readback") || b.contains("md5")),
        "{by:?}"
    );
    assert!(by.iter().any(|b| b.contains("readback")), "{by:?}");
    // The job remembers: objects started after the first such answer are
    // hashed with MD5 and proven by it, without a read-back.
    assert!(by.iter().any(|b| b == "size+md5"), "{by:?}");
    let c = s3.client();
    for rel in &rels {
        assert_eq!(
            get(&c, "crc", &format!("dropped/{rel}")).await,
            std::fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
    }

    let lying = testkit::net::FaultProxy::start(
        &s3.endpoint,
        testkit::net::Faults {
            crc_answers: testkit::net::CrcAnswers::Wrong,
            ..Default::default()
        },
    )
    .await;
    let (out, rows) = tokio::task::block_in_place(|| run("wrong", &lying.endpoint));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(rows.len(), rels.len());
    for o in &rows {
        assert_eq!(o.state, ObjectState::Failed, "{o:?}");
        assert_eq!(o.error_code.as_deref(), Some("CHECKSUM_MISMATCH"), "{o:?}");
    }
    eprintln!("wrong: {:?}", rows[0].error);
}
