//! What `ossimportctl` prints, as snapshots (`expect-test`): the summary
//! of `run` (and `--json`), `stat` (table and `--legacy`), `report`,
//! `errors` and the dry run. A change of wording shows here as a diff;
//! `UPDATE_EXPECT=1 cargo test -p ctl snapshots` rewrites them after a
//! deliberate one. Output that holds a wall-clock time (pass lines,
//! control calls) is left to the integration tests.

use std::path::PathBuf;

use daemon::standalone::{DryRun, Ending, FailedObject, RunReport, ScanStats};
use expect_test::expect;
use proto::api::{
    DeletedObject, FailedEntry, JobCounts, JobState, JobStatus, Report, TaskProgress, VerifyMethod,
};

const MIB: u64 = 1 << 20;

fn counts() -> JobCounts {
    JobCounts {
        objects: 1204,
        bytes: 3 * 1024 * MIB + 5 * MIB,
        verified: 1190,
        verified_bytes: 3 * 1024 * MIB,
        skipped: 10,
        skipped_bytes: 4 * MIB,
        failed: 3,
        pending: 1,
        tasks: 13,
        tasks_pending: 1,
        tasks_dispatched: 2,
        tasks_done: 9,
        tasks_failed: 1,
        retries: 7,
    }
}

fn failure(path: &str, code: &str, message: &str) -> FailedObject {
    FailedObject {
        rel_path: path.into(),
        code: code.into(),
        message: message.into(),
    }
}

fn run_report(before: JobCounts, state: JobState) -> RunReport {
    RunReport {
        ending: Ending::Finished(state),
        before,
        counts: counts(),
        scan: Some(Ok(ScanStats {
            symlinks_skipped: 2,
            special_skipped: 1,
            ..ScanStats::default()
        })),
        errors_file: Some(PathBuf::from("/var/lib/ossimport/big_job.errors.tsv")),
        first_failures: vec![
            failure(
                "a/b.bin",
                "SOURCE_CHANGED",
                "size 10 -> 12 while it was copied",
            ),
            failure(
                "c\tweird\nname",
                "CHECKSUM_MISMATCH",
                "the store answered crc64nvme 1 for 2",
            ),
            failure("d", "DEST_REFUSED", "403 AccessDenied"),
        ],
    }
}

#[test]
fn run_summary_of_a_first_run_with_failures() {
    let out = crate::run::summary(
        "big_job",
        false,
        &run_report(JobCounts::default(), JobState::Failed),
    );
    expect![[r#"
        job big_job finished with failures
          found           1204 objects       3.0 GiB
          copied          1190 objects       3.0 GiB
          skipped           10 objects       4.0 MiB
          failed             3 objects
          retries            7 requests retried
          unfinished         1 objects (run the same command again)
          verified        1200 of 1204 objects
          not listed: 2 symlinks not followed (isAllowSymbolicLink=false); 1 special files (fifo, socket, device) ignored
        failed objects:
          SOURCE_CHANGED  a/b.bin: size 10 -> 12 while it was copied
          CHECKSUM_MISMATCH  c\tweird\nname: the store answered crc64nvme 1 for 2
          DEST_REFUSED  d: 403 AccessDenied
        all failures: /var/lib/ossimport/big_job.errors.tsv; run the same command again to retry them
    "#]].assert_eq(&out);
}

#[test]
fn run_summary_of_a_rerun_that_succeeded_and_of_an_audit() {
    let mut r = run_report(
        JobCounts {
            verified: 1000,
            verified_bytes: 2 * 1024 * MIB,
            ..JobCounts::default()
        },
        JobState::Succeed,
    );
    r.counts.failed = 0;
    r.counts.pending = 0;
    r.counts.retries = 0;
    r.errors_file = None;
    r.first_failures.clear();
    r.scan = None;
    expect![[r#"
        job big_job succeeded
          this run: copied 190 objects (1.0 GiB), skipped 10 (4.0 MiB), failed 0; the job held 1000 verified or skipped before
          the job in total:
          found           1204 objects       3.0 GiB
          copied          1190 objects       3.0 GiB
          skipped           10 objects       4.0 MiB
          failed             0 objects
          verified        1200 of 1204 objects
    "#]].assert_eq(&crate::run::summary("big_job", false, &r));
    expect![[r#"
        job big_job succeeded
          this run: matched 190 objects (1.0 GiB), skipped 10 (4.0 MiB), failed 0; the job held 1000 verified or skipped before
          the job in total:
          found           1204 objects       3.0 GiB
          matched         1190 objects       3.0 GiB
          skipped           10 objects       4.0 MiB
          failed             0 objects
          verified        1200 of 1204 objects
    "#]].assert_eq(&crate::run::summary("big_job", true, &r));
}

#[test]
fn run_summary_as_json() {
    let r = run_report(JobCounts::default(), JobState::Failed);
    let out = format!("{:#}", crate::run::summary_json("big_job", &r));
    expect![[r#"
        {
          "counts": {
            "bytes": 3226468352,
            "failed": 3,
            "objects": 1204,
            "pending": 1,
            "retries": 7,
            "skipped": 10,
            "skipped_bytes": 4194304,
            "tasks": 13,
            "tasks_dispatched": 2,
            "tasks_done": 9,
            "tasks_failed": 1,
            "tasks_pending": 1,
            "verified": 1190,
            "verified_bytes": 3221225472
          },
          "errors_file": "/var/lib/ossimport/big_job.errors.tsv",
          "failed": [
            {
              "code": "SOURCE_CHANGED",
              "path": "a/b.bin",
              "reason": "size 10 -> 12 while it was copied"
            },
            {
              "code": "CHECKSUM_MISMATCH",
              "path": "c\tweird\nname",
              "reason": "the store answered crc64nvme 1 for 2"
            },
            {
              "code": "DEST_REFUSED",
              "path": "d",
              "reason": "403 AccessDenied"
            }
          ],
          "job": "big_job",
          "state": "failed",
          "this_run": {
            "failed": 3,
            "skipped": 10,
            "skipped_bytes": 4194304,
            "verified": 1190,
            "verified_bytes": 3221225472
          }
        }"#]]
    .assert_eq(&out);
}

fn status(name: &str, state: JobState, scan_done: bool) -> JobStatus {
    JobStatus {
        name: name.into(),
        state,
        scan_done,
        counts: counts(),
        running_tasks: vec![TaskProgress {
            task_id: 42,
            agent: Some("worker1".into()),
            bytes_done: 5 * MIB,
            bytes_total: 64 * MIB,
            files_done: 3,
            files_total: 100,
        }],
        incremental: None,
        limits: None,
        owner: None,
        control: Vec::new(),
        outages: Vec::new(),
        throttled: Vec::new(),
        listing_error: None,
    }
}

#[test]
fn stat_table_and_legacy_block() {
    let mut failed = status("listing_gone", JobState::Failed, false);
    failed.listing_error = Some("source bucket source: NoSuchBucket".into());
    let mut waiting = status("big_job", JobState::Running, false);
    waiting.outages = vec!["destination http://10.0.0.5:9000 unreachable since 10:00:00".into()];
    waiting.throttled = vec![
        "source http://10.0.0.6:9000/src overloaded: held to 48 requests/s (37 throttling answers) (seen by worker1)".into(),
    ];
    let jobs = [waiting, failed];
    let v = serde_json::Value::Null;
    let table = crate::daemon_cmd::stat::render(&jobs, &v, false, false, true);
    expect![[r#"
        JOB                  STATE      OBJECTS  VERIFIED  SKIPPED  FAILED  PENDING       BYTES  TASKS p/r/d/f
        big_job              running      1204      1190       10       3        1     3.0 GiB  1/2/9/1 (scanning)
          waiting: destination http://10.0.0.5:9000 unreachable since 10:00:00
          throttled: source http://10.0.0.6:9000/src overloaded: held to 48 requests/s (37 throttling answers) (seen by worker1)
          [#######################################-] 100.0%  3.0 GiB / 3.0 GiB
        listing_gone         failed      1204      1190       10       3        1     3.0 GiB  1/2/9/1
          listing failed: source bucket source: NoSuchBucket
          [#######################################-] 100.0%  3.0 GiB / 3.0 GiB
    "#]].assert_eq(&table);
    let legacy = crate::daemon_cmd::stat::render(&jobs, &v, false, true, false);
    expect![[r#"
        -------------- job stats ---------------
        ---------------- job stat ------------------
        JobName:big_job
        JobState:Running
        PendingTasks:1
        DispatchedTasks:2
        RunningTasks:2
        SucceedTasks:9
        FailedTasks:1
        ScanFinished:false
        RunningTasks Progress:
        42:5242880/67108864 3/100
        EndpointDown:destination http://10.0.0.5:9000 unreachable since 10:00:00
        ----------------------------------------
        ---------------- job stat ------------------
        JobName:listing_gone
        JobState:Failed
        PendingTasks:1
        DispatchedTasks:2
        RunningTasks:2
        SucceedTasks:9
        FailedTasks:1
        ScanFinished:false
        RunningTasks Progress:
        42:5242880/67108864 3/100
        ----------------------------------------
    "#]]
    .assert_eq(&legacy);
    expect![[r#"
        no jobs; submit one with `ossimportctl submit job.cfg`
    "#]]
    .assert_eq(&crate::daemon_cmd::stat::render(
        &[],
        &v,
        false,
        false,
        false,
    ));
}

#[test]
fn report_and_errors() {
    let failed = vec![
        FailedEntry {
            path: "a/b.bin".into(),
            code: "SOURCE_CHANGED".into(),
            message: "size 10 -> 12 while it was copied".into(),
        },
        FailedEntry {
            path: "c\tweird\nname".into(),
            code: "CHECKSUM_MISMATCH".into(),
            message: "the store answered crc64nvme 1 for 2".into(),
        },
    ];
    let r = Report {
        job: "big_job".into(),
        state: JobState::Failed,
        counts: counts(),
        methods: vec![
            VerifyMethod {
                verified_by: "size+crc64nvme".into(),
                objects: 1100,
                bytes: 3 * 1024 * MIB - 100 * MIB,
            },
            VerifyMethod {
                verified_by: "size+md5+server-side".into(),
                objects: 90,
                bytes: 100 * MIB,
            },
        ],
        failed: failed.clone(),
        next: Some("c\tweird\nname".into()),
        passes: Vec::new(),
        deleted: vec![DeletedObject {
            rel_path: "old/gone.txt".into(),
            size: 1234,
            pass: 2,
        }],
        control: Vec::new(),
    };
    expect![[r#"
        job big_job (failed)
          objects         1204       3.0 GiB
          size+crc64nvme                     1100       2.9 GiB
          size+md5+server-side                 90     100.0 MiB
          failed             3
          pending            1
          SOURCE_CHANGED  a/b.bin: size 10 -> 12 while it was copied
          CHECKSUM_MISMATCH  c\tweird\nname: the store answered crc64nvme 1 for 2
          more: ossimportctl errors big_job --after $'c\tweird\nname'
    "#]]
    .assert_eq(&crate::daemon_cmd::report::render_report(&r, "big_job"));
    expect![[r#"
        code	path	reason
        SOURCE_CHANGED	a/b.bin	size 10 -> 12 while it was copied
        CHECKSUM_MISMATCH	c\tweird\nname	the store answered crc64nvme 1 for 2
    "#]]
    .assert_eq(&crate::daemon_cmd::report::errors_text(&failed, true));
}

#[test]
fn dry_run_text() {
    let d = DryRun {
        sampled: true,
        stats: ScanStats {
            older_than_import_since: 4,
            filtered_out: 12,
            dir_markers: 1,
            ..ScanStats::default()
        },
        counts: JobCounts {
            objects: 1000,
            bytes: 10 * 1024 * MIB,
            ..JobCounts::default()
        },
        failures: vec![("DUPLICATE_KEY".into(), 2, 2 * MIB)],
        first_failed: vec![
            failure(
                "A.txt",
                "DUPLICATE_KEY",
                "a.txt already holds this key (destDir does not tell case apart)",
            ),
            failure(
                "a.txt",
                "DUPLICATE_KEY",
                "A.txt already holds this key (destDir does not tell case apart)",
            ),
        ],
        largest: vec![
            ("big/one.iso".into(), 4 * 1024 * MIB),
            ("big/two.iso".into(), 2 * 1024 * MIB),
        ],
    };
    let h = crate::dry_run::Heading {
        name: "big_job",
        source: "/data/src",
        dest: "s3://target/big_job/ at http://127.0.0.1:9000",
        cap: 100 * MIB,
        skip_rule: true,
        sample: Some(1000),
        settings: &job::config::keys::changed(
            job::config::keys::JOB,
            "job.cfg",
            "jobName=big_job\ndestSecretKey=s3cr3t\ntaskObjectCountLimit=500\nworkerMaxThroughput=\n",
        ),
    };
    expect![[r#"
        dry run of job big_job: /data/src -> s3://target/big_job/ at http://127.0.0.1:9000 (nothing is written)
          settings: destSecretKey=***, taskObjectCountLimit=500 (default 10000)
          sampled: the listing stopped after the first 1000 objects
          would copy         998 objects      10.0 GiB
          not listed: 4 files not newer than importSince; 12 left out by includeGlobs/excludeGlobs; 1 directory markers
          skipMode/isSkipExistFile: objects the destination already has are skipped at copy time (not counted here)
          would fail           2 objects (DUPLICATE_KEY 2)
            DUPLICATE_KEY  A.txt: a.txt already holds this key (destDir does not tell case apart)
            DUPLICATE_KEY  a.txt: A.txt already holds this key (destDir does not tell case apart)
          largest:
                 4.0 GiB  big/one.iso
                 2.0 GiB  big/two.iso
          estimated duration at workerMaxThroughput 100.0 MiB/s: 0:01:43 (one worker at the cap; agents share the work)
    "#]].assert_eq(&crate::dry_run::render(&h, &d));
}

/// A name from a listing, pasted back from `more: ... --after NAME`, is the
/// same name to bash, and none of its control characters reach the
/// terminal raw.
#[test]
fn a_hostile_name_is_quoted_for_the_shell_and_reads_back_the_same() {
    for name in [
        "plain/name.txt",
        "it's here",
        "c\tweird\nname",
        "esc\u{1b}[31mred\u{7}",
        "c1\u{85}next\\back'quote",
    ] {
        let word = crate::daemon_cmd::shell_word(name);
        assert!(!word.chars().any(char::is_control), "{word:?}");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {word}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), name, "{word}");
    }
    expect![[r#"$'esc\x1b[31mred\x07'"#]]
        .assert_eq(&crate::daemon_cmd::shell_word("esc\u{1b}[31mred\u{7}"));
}
