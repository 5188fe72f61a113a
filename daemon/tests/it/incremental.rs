//! An incremental job (`isIncremental=true`) through the daemon and an
//! agent over three passes of a changing tree: files added, rewritten,
//! touched (mtime only) and deleted beside an unchanged majority. Each pass
//! copies exactly the new and changed ones (the destination's
//! LastModified of every other object stays as pass 1 left it), the
//! deleted are reported and kept at the destination, and the daemon killed
//! between passes starts the next one on the schedule it had. A pass whose
//! listing fails ends with its error and loses nothing.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use proto::api::{JobState, PassRecord};

use crate::support::*;

const INTERVAL: i64 = 4;

fn pass(d: &Daemon, job: &str, n: u32) -> Option<PassRecord> {
    d.job(job)
        .incremental
        .and_then(|i| i.passes.into_iter().find(|p| p.number == n))
}

fn wait_pass_ended(d: &Daemon, job: &str, n: u32) -> PassRecord {
    wait_for(&format!("pass {n} of {job} to end"), 120, || {
        pass(d, job, n).is_some_and(|p| p.ended_at.is_some())
    });
    pass(d, job, n).unwrap()
}

/// Key -> LastModified of every object in the bucket.
fn last_modified(s3: &S3Server, bucket: &str) -> HashMap<String, i64> {
    rt().block_on(async {
        let out = s3
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .map(|o| {
                (
                    o.key().unwrap().to_string(),
                    o.last_modified().unwrap().secs(),
                )
            })
            .collect()
    })
}

fn get(s3: &S3Server, bucket: &str, key: &str) -> Vec<u8> {
    rt().block_on(async {
        s3.client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
            .to_vec()
    })
}

fn ctl(socket: &Path, args: &[&str]) -> String {
    let out = Command::new(bin("ossimportctl"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_passes_copy_only_what_changed_and_survive_a_daemon_kill() {
    let s3 = S3Server::start();
    rt().block_on(async {
        s3.client()
            .create_bucket()
            .bucket("incr")
            .send()
            .await
            .unwrap();
    });
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = tree(&src, 120, 2048);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let daemon_pub = Daemon::init(&work);
    Agent::enrol(tmp.path(), "a1", &work);
    let addr = format!("127.0.0.1:{}", free_port());
    let env = [("OSSIMPORT_MIN_INCREMENTAL_INTERVAL", "1")];
    let mut d = Daemon::start_env(&work, &addr, &[], &env);
    let _agent = Agent::start(AgentOpts {
        name: "a1",
        dir: tmp.path(),
        daemon_addr: &addr,
        daemon_pub: &daemon_pub,
        listen: format!("127.0.0.1:{}", free_port()),
        advertise: None,
        tasks: 2,
        wrap: Vec::new(),
    });
    let cfg = job_cfg(tmp.path(), "incr", &src, &s3.endpoint, "incr", 16);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "isIncremental=true\nincrementalModeInterval={INTERVAL}\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    d.submit(&cfg);

    // Pass 1: everything.
    let p1 = wait_pass_ended(&d, "incr", 1);
    assert_eq!(
        (p1.found, p1.new, p1.copied, p1.failed),
        (120, 120, 120, 0),
        "{p1:?}"
    );
    let before = last_modified(&s3, "incr");
    assert_eq!(before.len(), 120);

    // Between passes: 3 added, 2 rewritten, 2 touched, 2 deleted.
    let added = ["new/a.txt", "new/b.txt", "c.txt"];
    for a in added {
        let p = src.join(a);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, a.as_bytes()).unwrap();
    }
    let rewritten = [&rels[10], &rels[11]];
    for r in rewritten {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(src.join(r))
            .unwrap();
        std::io::Write::write_all(&mut f, b" and a tail").unwrap();
    }
    let touched = [&rels[20], &rels[21]];
    for t in touched {
        std::fs::File::options()
            .write(true)
            .open(src.join(t))
            .unwrap()
            .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
            .unwrap();
    }
    let deleted = [&rels[30], &rels[31]];
    for x in deleted {
        std::fs::remove_file(src.join(x)).unwrap();
    }

    // Pass 2: exactly those.
    let p2 = wait_pass_ended(&d, "incr", 2);
    assert!(
        p2.started_at >= p1.ended_at.unwrap() + INTERVAL - 1,
        "{p1:?} {p2:?}"
    );
    assert_eq!(
        (p2.found, p2.new, p2.changed, p2.retried, p2.deleted),
        (121, 3, 4, 0, 2),
        "{p2:?}"
    );
    assert_eq!((p2.copied, p2.failed), (7, 0), "{p2:?}");
    let after = last_modified(&s3, "incr");
    assert_eq!(after.len(), 123, "the deleted sources' objects stay");
    let copied_again: Vec<&String> = rewritten.iter().chain(touched.iter()).copied().collect();
    for (k, t) in &before {
        if copied_again.contains(&k) {
            continue;
        }
        assert_eq!(after.get(k), Some(t), "{k} was written again in pass 2");
    }
    for r in rewritten {
        assert_eq!(get(&s3, "incr", r), std::fs::read(src.join(r)).unwrap());
    }
    for a in added {
        assert_eq!(get(&s3, "incr", a), a.as_bytes());
    }

    // What the operator sees.
    let st = d.job("incr");
    assert_eq!(st.state, JobState::Running);
    let inc = st.incremental.clone().unwrap();
    assert_eq!(inc.pass, 2);
    assert!(inc.next_pass_at.is_some());
    let legacy = ctl(&d.socket, &["stat", "--legacy"]);
    assert!(legacy.contains("ScanFinished:false"), "{legacy}");
    let table = ctl(&d.socket, &["stat"]);
    assert!(
        table.contains("incremental, every 4 s; pass 2: found 121, new 3, changed 4"),
        "{table}"
    );
    assert!(table.contains("next pass 3 at"), "{table}");
    let report = ctl(&d.socket, &["report", "incr"]);
    for x in deleted {
        assert!(report.contains(&format!("DELETED  {x} ")), "{report}");
    }
    assert!(
        report.contains("gone from the source (kept at the destination): 2"),
        "{report}"
    );

    // The daemon killed between passes; one more file arrives meanwhile.
    d.kill();
    std::fs::write(src.join("late.txt"), b"after the kill").unwrap();
    let d = Daemon::start_env(&work, &addr, &[], &env);
    let p3 = wait_pass_ended(&d, "incr", 3);
    let next = inc.next_pass_at.unwrap();
    assert!(
        p3.started_at >= next,
        "pass 3 started before its time: {p3:?}, due {next}"
    );
    assert_eq!(
        (
            p3.found, p3.new, p3.changed, p3.deleted, p3.copied, p3.failed
        ),
        (122, 1, 0, 0, 1, 0),
        "{p3:?}"
    );
    assert_eq!(get(&s3, "incr", "late.txt"), b"after the kill");
    let c = d.job("incr").counts;
    assert_eq!(
        (c.objects, c.verified, c.failed, c.pending),
        (124, 124, 0, 0)
    );

    // Pass 4 cannot list at all (the source directory is gone): it ends
    // with its error and marks nothing deleted; pass 5 lists again and
    // finds everything as it was.
    let away = tmp.path().join("src.away");
    std::fs::rename(&src, &away).unwrap();
    let p4 = wait_pass_ended(&d, "incr", 4);
    assert!(
        p4.error
            .as_deref()
            .is_some_and(|e| e.contains("source directory")),
        "{p4:?}"
    );
    assert_eq!((p4.deleted, p4.copied), (0, 0), "{p4:?}");
    std::fs::rename(&away, &src).unwrap();
    let p5 = wait_pass_ended(&d, "incr", 5);
    assert_eq!(
        (
            p5.found,
            p5.new,
            p5.changed,
            p5.deleted,
            p5.copied,
            p5.error.clone()
        ),
        (122, 0, 0, 0, 0, None),
        "{p5:?}"
    );
    let c = d.job("incr").counts;
    assert_eq!((c.objects, c.verified, c.failed), (124, 124, 0));
    assert_eq!(d.job("incr").state, JobState::Running);
}
