//! Objects that cannot be copied fail alone, each with its reason; the job
//! goes on and everything else is verified.

use std::process::Command;

use crate::support::*;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

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
