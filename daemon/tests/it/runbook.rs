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
    script(home, "console.sh", &[verb], listen, &[])
}

/// Runs one of the shipped scripts from `home` as a user would.
fn script(
    home: &Path,
    name: &str,
    args: &[&str],
    listen: &str,
    env: &[(&str, &str)],
) -> (String, String, Option<i32>) {
    let out = Command::new("bash")
        .arg(home.join(name))
        .args(args)
        .envs(env.iter().copied())
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

/// An `OSS_IMPORT_HOME` as the original's standalone package left it:
/// the scripts, and `conf/` saved by a Chinese Windows editor (GBK, CRLF).
struct Home {
    _tmp: tempfile::TempDir,
    home: std::path::PathBuf,
    src: std::path::PathBuf,
    work: std::path::PathBuf,
    rels: Vec<String>,
    listen: String,
}

impl Home {
    fn new(s3: &S3Server, bucket: &str, files: usize) -> Home {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("ossimport");
        std::fs::create_dir_all(home.join("conf")).unwrap();
        for name in ["console.sh", "import.sh"] {
            std::fs::copy(repo_root().join("packaging").join(name), home.join(name)).unwrap();
        }
        let src = tmp.path().join("数据");
        let mut rels = tree(&src, files, 3000);
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
                 #目的端\ndestAccessKey={AK}\ndestSecretKey={SK}\ndestDomain={}\ndestBucket={bucket}\n\
                 destPrefix=\n#大文件分片\nmultipartUploadThreshold=8m\nmultipartUploadPartSize=5m\n",
                src.display(),
                s3.endpoint
            )),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        Home {
            _tmp: tmp,
            home,
            src,
            work,
            rels,
            listen,
        }
    }

    fn console(&self, verb: &str) -> (String, String, Option<i32>) {
        console(&self.home, verb, &self.listen)
    }

    fn import(&self, args: &[&str], env: &[(&str, &str)]) -> (String, String, Option<i32>) {
        script(&self.home, "import.sh", args, &self.listen, env)
    }

    /// Every source file is at the destination with the same bytes.
    fn assert_copied(&self, rt: &tokio::runtime::Runtime, s3: &S3Server, bucket: &str) {
        let c = s3.client();
        for rel in &self.rels {
            let got = rt.block_on(async {
                c.get_object()
                    .bucket(bucket)
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
                got.as_ref() == std::fs::read(self.src.join(rel)).unwrap().as_slice(),
                "{rel}"
            );
        }
    }
}

#[test]
fn the_standalone_runbook_with_gbk_files_submit_before_start() {
    let rt = rt();
    let s3 = S3Server::start();
    rt.block_on(create_bucket(&s3.client(), "runbook"));
    let h = Home::new(&s3, "runbook", 30);
    let (home, work) = (&h.home, &h.work);

    // submit before start: queued in the job store.
    let (out, err, code) = h.console("submit");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("submit job:local_test success!"), "{out}{err}");
    assert!(out.contains("runs when it starts"), "{out}");
    assert!(out.contains("local_job.cfg"), "{out}");

    let (out, err, code) = h.console("start");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Start import service completed.\n");
    let mut last = String::new();
    wait_for("JobState:Succeed", 180, || {
        last = h.console("stat").0;
        assert!(!last.contains("JobState:Failed"), "{last}");
        last.contains("JobState:Succeed")
    });
    assert!(last.contains("JobName:local_test"), "{last}");
    assert!(last.contains("FailedTasks:0"), "{last}");
    h.assert_copied(&rt, &s3, "runbook");
    // The copies were made by the worker on the master.
    let out = Command::new(bin("ossimportctl"))
        .args(["workers", "--socket"])
        .arg(work.join("ossimportd.sock"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("local ") && l.contains(" up ")),
        "{out}"
    );
    let (out, err, code) = h.console("stop");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Stop import service completed.\n");
    // With the service stopped, `stat` shows the job as last recorded (and
    // says the service is not running); `clean` works without it too.
    let (out, err, code) = h.console("stat");
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("JobState:Succeed"), "{out}");
    assert!(err.contains("ossimportd is not running"), "{err}");
    let (out, err, code) = script(home, "console.sh", &["clean", "local_test"], &h.listen, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("delete jobs dir:"), "{out}");
    assert!(out.ends_with("Clean job:local_test completed.\n"), "{out}");
    let (out, _, _) = h.console("stat");
    assert_eq!(out, "no jobs is running or finished.\n");
}

/// The original's one-click `import.sh`, unattended: a job of the same name
/// left from an earlier attempt is cleaned first (the service stopped for
/// it), then submit, start, `stat` until Succeed, stop.
#[test]
fn import_sh_yes_cleans_the_previous_job_and_runs_to_the_end() {
    let rt = rt();
    let s3 = S3Server::start();
    rt.block_on(create_bucket(&s3.client(), "oneclick"));
    let h = Home::new(&s3, "oneclick", 20);
    // An earlier attempt left the job behind (submitted, never run).
    assert_eq!(h.console("submit").2, Some(0));

    let (out, err, code) = h.import(&["--yes"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let want = [
        "already exists",
        "Clean the previous job, Yes or No: yes",
        "Clean job:local_test completed.",
        "submit job:local_test success!",
        "Start import service completed.",
        "JobState:Succeed",
        "Import to oss completed.",
        "Stop import service, Yes or No: yes",
        "Stop import service completed.",
    ];
    let mut at = 0;
    for w in want {
        let i = out[at..]
            .find(w)
            .unwrap_or_else(|| panic!("{w:?} missing (in order):\n{out}{err}"));
        at += i + w.len();
    }
    assert!(!out.contains("JobState:Failed"), "{out}");
    h.assert_copied(&rt, &s3, "oneclick");
    assert!(h.home.join("logs/job_stat.log").is_file());
    assert!(
        !h.work.join("ossimportd.sock").exists(),
        "service left running"
    );
}

/// A job that keeps failing: `--yes` retries it a bounded number of times,
/// `--no` stops at the first question; both exit 2 and leave the service
/// running for a look at the errors.
#[test]
fn import_sh_on_a_failing_job_retries_then_gives_up() {
    let rt = rt();
    let s3 = S3Server::start();
    rt.block_on(create_bucket(&s3.client(), "failing"));
    let h = Home::new(&s3, "failing", 5);
    // A name no object store accepts (a line feed in it): INVALID_KEY.
    std::fs::write(h.src.join("bad\nname.txt"), b"x").unwrap();
    let fast = [
        ("OSS_IMPORT_POLL_SECONDS", "1"),
        ("OSS_IMPORT_MAX_RETRIES", "1"),
    ];

    let (out, err, code) = h.import(&["--yes"], &fast);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(out.contains("JobState:Failed"), "{out}");
    assert!(
        out.contains("Retry the failed tasks, Yes or No: yes"),
        "{out}"
    );
    // Retrying cannot fix a name: said so, with where to look.
    assert!(
        out.contains("None failed tasks a retry can fix for job:local_test; 1 failed objects cannot be retried"),
        "{out}"
    );
    assert!(err.contains("still fails after 1 retries"), "{err}");
    assert!(err.contains("ossimportctl errors local_test"), "{err}");

    let (out, err, code) = h.import(&["--no"], &fast);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("Clean the previous job, Yes or No: no"),
        "{out}"
    );

    // The good files are there; the service still runs until stopped.
    h.assert_copied(&rt, &s3, "failing");
    assert_eq!(h.console("stop").2, Some(0));
}
