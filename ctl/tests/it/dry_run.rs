//! `run --dry-run` and `submit --dry-run`: what a run would copy, leave out
//! and fail, the largest objects and the time at the bandwidth cap, with
//! nothing written anywhere; the numbers are those of the real run that
//! follows.

use std::os::unix::ffi::OsStrExt;

use crate::support::*;

#[test]
fn a_dry_run_writes_nothing_and_matches_the_real_run() {
    let s3 = S3Server::start();
    let rt = rt();
    rt.block_on(s3.create_bucket("dry"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = tree(&src, 30, 4000);
    std::fs::write(src.join("scratch.tmp"), b"left out").unwrap();
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"bad-\xff.txt")), b"x").unwrap();
    std::os::unix::fs::symlink(src.join(&rels[0]), src.join("link")).unwrap();
    std::fs::write(src.join("big.bin"), vec![7u8; 300_000]).unwrap();
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let work = tmp.path().join("work");
    std::fs::write(
        conf.join("sys.properties"),
        format!(
            "workingDir={}\nworkerMaxThroughput(KB/s)=100\n",
            work.display()
        ),
    )
    .unwrap();
    let cfg = job_cfg(
        &conf,
        "dryjob",
        &src,
        &s3.endpoint,
        "dry",
        "excludeGlobs=*.tmp\ntaskObjectCountLimit=5",
    );
    let bytes: u64 = rels
        .iter()
        .map(|r| std::fs::metadata(src.join(r)).unwrap().len())
        .sum::<u64>()
        + 300_000;

    let out = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = squash(&stdout(&out));
    for want in [
        "dry run of job dryjob:",
        "(nothing is written)",
        "would copy 31 objects",
        "1 left out by includeGlobs/excludeGlobs",
        "1 symlinks not followed",
        "would fail 1 objects (INVALID_KEY 1)",
        "largest: 293.0 KiB big.bin",
        "estimated duration at workerMaxThroughput 100.0 KiB/s: 0:00:0",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{}", stdout(&out));
    }
    // Nothing written: no job store, no work directory, an empty bucket.
    assert!(!work.exists(), "the dry run made {}", work.display());
    let keys = rt.block_on(list_keys(&s3.client(), "dry", ""));
    assert!(keys.is_empty(), "{keys:?}");

    // The same as JSON, and through submit without a daemon.
    let out = ctl()
        .arg("run")
        .arg(&cfg)
        .args(["--dry-run", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["copy"]["objects"], 31);
    assert_eq!(v["copy"]["bytes"], bytes);
    assert_eq!(v["fail"][0]["code"], "INVALID_KEY");
    let out = ctl()
        .arg("submit")
        .arg(&cfg)
        .args(["--dry-run", "--socket"])
        .arg(tmp.path().join("no-daemon.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(squash(&stdout(&out)).contains("would copy 31 objects"));

    // A sample stops the listing early.
    let out = ctl()
        .arg("run")
        .arg(&cfg)
        .args(["--dry-run", "--sample", "10"])
        .output()
        .unwrap();
    let text = squash(&stdout(&out));
    assert!(
        text.contains("sampled: the listing stopped after the first 10 objects"),
        "{text}"
    );
    assert!(!text.contains("would copy 31 objects"), "{text}");

    // The real run: the same numbers.
    let out = ctl().arg("run").arg(&cfg).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["counts"]["verified"], 31);
    assert_eq!(v["counts"]["verified_bytes"], bytes);
    assert_eq!(v["counts"]["failed"], 1);
    assert_eq!(v["failed"][0]["code"], "INVALID_KEY");
}
