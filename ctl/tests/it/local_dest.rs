//! `destType=local`: a directory as destination, and skip-existing reruns.

use crate::support::*;

#[test]
fn copies_into_a_directory_and_skips_existing_on_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = small_tree(&src, 120);
    let dest = tmp.path().join("dest");
    let cfg = tmp.path().join("local.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=local_dest\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}\ndestPrefix=copy/\nisSkipExistFile=true\n",
            src.display(),
            dest.display()
        ),
    )
    .unwrap();
    let work = tmp.path().join("work");
    let out = run_job(&cfg, &work);
    assert_eq!(out.status.code(), Some(0));
    for rel in &rels {
        let a = std::fs::read(src.join(rel)).unwrap();
        let b = std::fs::read(dest.join("copy").join(rel)).unwrap();
        assert!(a == b, "{rel} differs");
        let ma = std::fs::metadata(src.join(rel))
            .unwrap()
            .modified()
            .unwrap();
        let mb = std::fs::metadata(dest.join("copy").join(rel))
            .unwrap()
            .modified()
            .unwrap();
        let secs =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(ma), secs(mb), "{rel}: mtime not kept");
    }
    // A fresh job over the same destination skips everything.
    let out = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--work-dir")
        .arg(tmp.path().join("work2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        squash(&stdout(&out)).contains("skipped 120 objects"),
        "{}",
        stdout(&out)
    );
}
