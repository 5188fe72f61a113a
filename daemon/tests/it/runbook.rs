//! The original's standalone runbook, unchanged: an `OSS_IMPORT_HOME` with
//! `console.sh`, `conf/local_job.cfg` and `conf/sys.properties` saved by a
//! Chinese Windows editor (GBK comments, CRLF), then `console.sh submit`
//! (before the service runs), `start`, `stat` until `JobState:Succeed`,
//! `stop`. No agent is set up: the master copies, as the original's did.

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn gbk_crlf(text: &str) -> Vec<u8> {
    encoding_rs::GBK
        .encode(&text.replace('\n', "\r\n"))
        .0
        .into_owned()
}

fn console(home: &Path, verb: &str, listen: &str) -> (String, String, Option<i32>) {
    let out = Command::new("bash")
        .arg(home.join("console.sh"))
        .arg(verb)
        .env("OSS_IMPORT_HOME", home)
        .env("OSSIMPORTCTL", bin("ossimportctl"))
        .env("OSSIMPORT_LISTEN", listen)
        .env_remove("OSSIMPORT_WORK_DIR")
        .env_remove("OSSIMPORT_SYS_PROPERTIES")
        .env_remove("OSSIMPORT_SOCKET")
        .current_dir(home)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn the_standalone_runbook_with_gbk_files_submit_before_start() {
    let rt = rt();
    let s3 = S3Server::start();
    rt.block_on(create_bucket(&s3.client(), "runbook"));
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("ossimport");
    std::fs::create_dir_all(home.join("conf")).unwrap();
    std::fs::copy(
        repo_root().join("packaging/console.sh"),
        home.join("console.sh"),
    )
    .unwrap();
    let src = tmp.path().join("数据");
    let mut rels = tree(&src, 30, 3000);
    std::fs::write(src.join("大文件.bin"), bytes(9, 12 << 20)).unwrap();
    rels.push("大文件.bin".into());
    let work = tmp.path().join("workdir");
    std::fs::write(
        home.join("conf/sys.properties"),
        gbk_crlf(&format!(
            "#工作目录\nworkingDir={}\n#每个任务的线程数\nworkerTaskThreadNum=8\nworkerMaxThroughput(KB/s)=0\n",
            work.display()
        )),
    )
    .unwrap();
    std::fs::write(
        home.join("conf/local_job.cfg"),
        gbk_crlf(&format!(
            "#任务名称\njobName=local_test\n#任务类型（import/audit）\njobType=import\n\
             #源类型\nsrcType=local\n#源目录，以/结尾\nsrcPrefix={}/\n\
             #目的端\ndestAccessKey={AK}\ndestSecretKey={SK}\ndestDomain={}\ndestBucket=runbook\n\
             destPrefix=\n#大文件分片\nmultipartUploadThreshold=8m\nmultipartUploadPartSize=5m\n",
            src.display(),
            s3.endpoint
        )),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());

    // submit before start: queued in the job store.
    let (out, err, code) = console(&home, "submit", &listen);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("submit job:local_test success!"), "{out}{err}");
    assert!(out.contains("runs when it starts"), "{out}");
    assert!(out.contains("local_job.cfg"), "{out}");

    let (out, err, code) = console(&home, "start", &listen);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Start import service completed.\n");
    let mut last = String::new();
    wait_for("JobState:Succeed", 180, || {
        last = console(&home, "stat", &listen).0;
        assert!(!last.contains("JobState:Failed"), "{last}");
        last.contains("JobState:Succeed")
    });
    assert!(last.contains("JobName:local_test"), "{last}");
    assert!(last.contains("FailedTasks:0"), "{last}");

    let c = s3.client();
    for rel in &rels {
        let got = rt.block_on(async {
            c.get_object()
                .bucket("runbook")
                .key(rel)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
        });
        assert!(
            got.as_ref() == std::fs::read(src.join(rel)).unwrap().as_slice(),
            "{rel}"
        );
    }
    // The copies were made by the worker on the master.
    let (out, _, _) = Command::new(bin("ossimportctl"))
        .args(["workers", "--socket"])
        .arg(work.join("ossimportd.sock"))
        .output()
        .map(|o| {
            (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                (),
                o.status.code(),
            )
        })
        .unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with("local ") && l.contains(" up ")),
        "{out}"
    );
    let (out, err, code) = console(&home, "stop", &listen);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Stop import service completed.\n");
}
