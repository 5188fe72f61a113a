//! Objects that cannot be copied fail alone, each with its reason; the job
//! goes on and everything else is verified.

use std::process::Command;

use crate::support::*;

#[tokio::test]
async fn bad_objects_fail_with_reasons_and_the_rest_is_verified() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src, 30);
    // A key over 1023 bytes: five nested directories of 250 bytes each.
    let long_dir: std::path::PathBuf = (0..5).map(|i| format!("{i}{}", "x".repeat(249))).collect();
    std::fs::create_dir_all(src.join(&long_dir)).unwrap();
    std::fs::write(src.join(&long_dir).join("f.txt"), b"long").unwrap();
    // A name with a line feed.
    std::fs::write(src.join("line\nfeed.txt"), b"lf").unwrap();
    // An unreadable file (the run drops to nobody when we are root).
    let secret = src.join("unreadable.txt");
    std::fs::write(&secret, b"no").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();

    let work = tmp.path().join("work");
    let cfg = job_cfg(tmp.path(), "bad_objects", &src, &s3.endpoint, "bkt", "");
    let out = if is_root() {
        // Let nobody traverse the temp tree and write the work dir.
        for p in [tmp.path().to_path_buf(), src.clone()] {
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        std::fs::create_dir_all(&work).unwrap();
        std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let bin = env!("CARGO_BIN_EXE_ossimportctl");
        // The binary lives under target/; make sure nobody can execute it.
        let o = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                bin,
                "run",
            ])
            .arg(&cfg)
            .arg("--work-dir")
            .arg(&work)
            .output()
            .expect("setpriv");
        eprintln!("{}\n{}", stdout(&o), stderr(&o));
        o
    } else {
        run_job(&cfg, &work)
    };
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(squash(&text).contains("failed 3 objects"), "{text}");
    assert!(squash(&text).contains("verified 30 of 33"), "{text}");
    assert!(
        text.contains("INVALID_KEY") && text.contains("bytes long, the limit is 1023"),
        "{text}"
    );
    assert!(
        squash(&text).contains("INVALID_KEY line\\nfeed.txt: object key contains a CR or LF"),
        "{text}"
    );
    assert!(
        squash(&text).contains("SOURCE_UNREADABLE unreadable.txt: cannot read source file"),
        "{text}"
    );
    let keys = list_keys(&s3.client(), "bkt", "").await;
    assert_eq!(keys.len(), 30);
}

/// `run` of five small files and `big.bin` (20 MiB) into SeaweedFS, with
/// `extra` in the job and a bandwidth cap of 2 MiB/s, which stretches the
/// big file's upload over about ten seconds.
struct CappedRun {
    s3: S3Server,
    _tmp: tempfile::TempDir,
    big: std::path::PathBuf,
    work: std::path::PathBuf,
    child: std::process::Child,
}

async fn capped_run(name: &str, extra: &str) -> CappedRun {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src, 5);
    let big = src.join("big.bin");
    big_file(&big, 20);
    let work = tmp.path().join("work");
    let cfg = job_cfg(tmp.path(), name, &src, &s3.endpoint, "bkt", extra);
    std::fs::write(
        tmp.path().join("sys.properties"),
        "workerMaxThroughput(KB/s)=2048\n",
    )
    .unwrap();
    let child = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--work-dir")
        .arg(&work)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    CappedRun {
        s3,
        _tmp: tmp,
        big,
        work,
        child,
    }
}

#[tokio::test]
async fn a_file_rewritten_mid_upload_is_caught_even_with_its_mtime_restored() {
    use std::io::{Seek, SeekFrom, Write};
    let CappedRun {
        s3,
        _tmp,
        big,
        work,
        child,
    } = capped_run(
        "rewrite",
        "multipartUploadThreshold=8m\nmultipartUploadPartSize=5m\nuploadThreadNumPerLargeFile=1",
    )
    .await;
    let mtime = std::fs::metadata(&big).unwrap().modified().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let parts = work
            .join("ossimport.db")
            .exists()
            .then(|| {
                Store::open_read_only(&work.join("ossimport.db"))
                    .and_then(|s| s.recorded_parts())
                    .ok()
            })
            .flatten()
            .unwrap_or(0);
        if parts >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "upload did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Rewrite bytes in the middle, then put the mtime back: size and mtime
    // look untouched, only the watcher can tell.
    let mut f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    f.seek(SeekFrom::Start(12 << 20)).unwrap();
    f.write_all(b"changed under the uploader").unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "SOURCE_CHANGED  big.bin: source file was modified while it was being uploaded"
        ),
        "{text}"
    );
    assert!(squash(&text).contains("verified 5 of 6"), "{text}");
    // The upload was aborted before completion: no object was left behind.
    assert!(
        !list_keys(&s3.client(), "bkt", "")
            .await
            .contains(&"big.bin".to_string())
    );
}

/// Whether process `pid` holds `path` open.
fn holds_open(pid: u32, path: &std::path::Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
        })
        .unwrap_or(false)
}

/// A file hashed for a streamed PUT, then cut short before its bytes are
/// sent: the PUT's body ends early. That is the source's doing, so the
/// object fails naming the file and what happened to it, and the
/// destination is not taken to be down (its circuit breaker counts only
/// requests the store left unanswered).
#[tokio::test]
async fn a_file_that_shrinks_while_it_streams_fails_naming_it_and_the_store_stays_up() {
    // One streamed PUT (over the 8 MiB read whole, under the threshold):
    // the file is hashed at once, then its PUT waits about ten seconds for
    // its share of the bandwidth before any byte is read again.
    let CappedRun {
        s3,
        _tmp,
        big,
        child,
        ..
    } = capped_run("shrink", "multipartUploadThreshold=64m").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !holds_open(child.id(), &big) {
        assert!(std::time::Instant::now() < deadline, "big.bin never opened");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Hashing 20 MiB takes milliseconds; the wait for bandwidth, seconds.
    std::thread::sleep(std::time::Duration::from_secs(2));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (text, log) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}\n{log}");
    assert!(
        squash(&text).contains(
            "SIZE_NOT_MATCH big.bin: source file size changed from 20971520 to 1048576 bytes while it was copied"
        ),
        "{text}\n{log}"
    );
    assert!(squash(&text).contains("verified 5 of 6"), "{text}");
    assert!(!text.contains("unreachable"), "{text}\n{log}");
    assert!(!log.contains("/proc/self/fd"), "{log}");
    assert!(
        !list_keys(&s3.client(), "bkt", "")
            .await
            .contains(&"big.bin".to_string())
    );
}
