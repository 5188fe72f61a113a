//! Bad configuration is refused before anything is copied, with one line
//! naming file, line and key.

use crate::support::*;

#[test]
fn broken_configs_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let base = format!(
        "jobName=cfg_job\nsrcType=local\nsrcPrefix={}/\ndestDomain=http://127.0.0.1:9\ndestBucket=b\n",
        src.display()
    );
    let cases = [
        (
            "destBuckt=x\n",
            6,
            "destBuckt: unknown key (did you mean destBucket?)",
        ),
        (
            "multipartUploadThreshold=12q\n",
            6,
            "multipartUploadThreshold:",
        ),
        ("isSkipExistFile=maybe\n", 6, "isSkipExistFile:"),
        ("destPrefix=/abs/\n", 6, "destPrefix:"),
        ("srcType=S3\n", 6, "srcType:"),
    ];
    for (extra, line, want) in cases {
        let cfg = tmp.path().join("job.cfg");
        std::fs::write(&cfg, format!("{base}{extra}")).unwrap();
        let out = ctl()
            .arg("run")
            .arg(&cfg)
            .arg("--work-dir")
            .arg(tmp.path().join("w"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra}");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected for {extra}: {err}");
        let prefix = format!("ossimportctl: {}:{line}: ", cfg.display());
        assert!(
            lines[0].starts_with(&prefix) && lines[0].contains(want),
            "{extra}: {err}"
        );
        assert!(
            !tmp.path().join("w").exists(),
            "nothing may be created for a bad config"
        );
    }
}

#[test]
fn azure_without_its_keys_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("job.cfg");
    let base = "jobName=azure_job\nsrcType=azure\nsrcBucket=c\nsrcPrefix=p/\ndestDomain=http://127.0.0.1:9\ndestBucket=b\n";
    for (extra, want) in [
        (
            "",
            "srcAccessKey: required for srcType=azure: the storage account name",
        ),
        (
            "srcAccessKey=acct\n",
            "srcSecretKey: required for srcType=azure: the account key or a SAS token",
        ),
    ] {
        std::fs::write(&cfg, format!("{base}{extra}")).unwrap();
        let out = ctl()
            .arg("run")
            .arg(&cfg)
            .arg("--work-dir")
            .arg(tmp.path().join("w"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
        assert!(!tmp.path().join("w").exists());
    }
}

#[tokio::test]
async fn missing_bucket_fails_fast() {
    let s3 = S3Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src, 3);
    let cfg = job_cfg(
        tmp.path(),
        "nobucket",
        &src,
        &s3.endpoint,
        "no-such-bucket",
        "",
    );
    let out = run_job(&cfg, &tmp.path().join("w"));
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("destination bucket no-such-bucket"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}
