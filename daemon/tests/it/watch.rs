//! `incrementalMode=watch` under `ossimportd` (against moto, through
//! inotify; `ctl/tests/it/watch.rs` runs fanotify as root): files written
//! after the first pass reach the destination within seconds through passes
//! that list only what changed; `stat` shows the watch; the daemon
//! SIGKILLed with changes pending, more written while it is down, and
//! started again misses nothing.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use proto::api::PassRecord;

use crate::support::*;

fn passes(d: &Daemon, job: &str) -> Vec<PassRecord> {
    d.job(job).incremental.map(|i| i.passes).unwrap_or_default()
}

#[test]
fn the_daemon_copies_watched_changes_within_seconds_and_misses_none_across_a_kill() {
    let moto = MotoServer::start();
    rt().block_on(moto.create_bucket("dwatch"));
    let client = moto.client();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src.join("still"), 500, 64);
    // Older than the settle time, as a tree being migrated is: a listing
    // holds back files changed within it (they may be being written).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    Daemon::init(&work);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut d = Daemon::start_env(
        &work,
        &addr,
        &["--local-worker", "on"],
        &[("OSSIMPORT_WATCH", "inotify")],
    );
    let cfg = job_cfg(tmp.path(), "dwatchjob", &src, &moto.endpoint, "dwatch", 50);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "isIncremental=true\nincrementalModeInterval=3600\nincrementalMode=watch\nwatchSettleSeconds=1\n",
    );
    std::fs::write(&cfg, text).unwrap();
    d.submit(&cfg);
    wait_for("pass 1 to end", 120, || {
        passes(&d, "dwatchjob")
            .first()
            .is_some_and(|p| p.ended_at.is_some())
    });

    // Written at intervals; each key's arrival at the destination timed.
    std::fs::create_dir_all(src.join("new")).unwrap();
    // Written by a thread while this one lists the bucket.
    let written = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let writer = {
        let (written, src) = (std::sync::Arc::clone(&written), src.clone());
        std::thread::spawn(move || {
            for i in 0..200u64 {
                let rel = format!("new/f{i:03}");
                // Noted just before the write, so the lister never sees a
                // key it does not know yet.
                written.lock().unwrap().insert(rel.clone(), Instant::now());
                std::fs::write(src.join(&rel), format!("file {i}")).unwrap();
                std::thread::sleep(Duration::from_millis((i * 37) % 60));
            }
        })
    };
    let mut delays = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while delays.len() < 200 {
        assert!(
            Instant::now() < deadline,
            "never arrived: {} of 200",
            200 - delays.len()
        );
        let keys = rt().block_on(list_keys(&client, "dwatch", "new/"));
        let mut w = written.lock().unwrap();
        for k in keys {
            if let Some(at) = w.remove(&k) {
                delays.push(at.elapsed());
            }
        }
        drop(w);
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.join().unwrap();
    delays.sort();
    eprintln!(
        "ossimportd watch latency from write to arrival (polled every 50 ms), {} files: p50 {:?}, p95 {:?}",
        delays.len(),
        delays[delays.len() / 2],
        delays[delays.len() * 95 / 100]
    );
    wait_for("the 200 new files verified", 60, || {
        d.job("dwatchjob").counts.verified == 700
    });
    let ps = passes(&d, "dwatchjob");
    assert!(ps.len() >= 2, "{ps:?}");
    for p in &ps[1..] {
        assert!(p.found < 500, "pass {} listed everything: {p:?}", p.number);
    }

    // `stat` shows the watch.
    std::fs::write(src.join("new/settling"), b"x").unwrap();
    let out = Command::new(bin("ossimportctl"))
        .args(["stat", "dwatchjob", "--socket"])
        .arg(&d.socket)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("  watch (inotify (one watch per directory)): "),
        "{said}"
    );
    assert!(
        said.contains("queued") && said.contains("last reconcile"),
        "{said}"
    );

    // The cut-over: the last writes, then `sync --wait`; when it returns
    // every one of them is at the destination.
    for i in 0..20 {
        std::fs::write(
            src.join(format!("last/l{i:02}"))
                .parent()
                .map(|p| {
                    std::fs::create_dir_all(p).unwrap();
                    src.join(format!("last/l{i:02}"))
                })
                .unwrap(),
            b"last",
        )
        .unwrap();
    }
    let out = Command::new(bin("ossimportctl"))
        .args([
            "sync",
            "dwatchjob",
            "--wait",
            "--timeout",
            "120",
            "--socket",
        ])
        .arg(&d.socket)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("job dwatchjob synced: closed a lag of"),
        "{said}"
    );
    assert!(said.contains("0 pending, 0 failed"), "{said}");
    let keys = rt().block_on(list_keys(&client, "dwatch", "last/"));
    assert_eq!(
        keys.len(),
        20,
        "sync returned before the last writes arrived: {keys:?}"
    );

    // SIGKILLed with changes pending; more written while it is down.
    for i in 0..10 {
        std::fs::write(src.join(format!("pending{i}")), b"pending").unwrap();
    }
    d.kill();
    for i in 0..5 {
        std::fs::write(src.join(format!("while_down{i}")), b"down").unwrap();
    }
    let d = Daemon::start_env(
        &work,
        &addr,
        &["--local-worker", "on"],
        &[("OSSIMPORT_WATCH", "inotify")],
    );
    wait_for("every change made around the kill verified", 120, || {
        d.job("dwatchjob").counts.verified == 700 + 1 + 20 + 10 + 5
    });
    let keys = rt().block_on(list_keys(&client, "dwatch", ""));
    for i in 0..10 {
        assert!(keys.contains(&format!("pending{i}")), "{keys:?}");
    }
    for i in 0..5 {
        assert!(keys.contains(&format!("while_down{i}")), "{keys:?}");
    }
    let log = d.log_text();
    // The first pass after the restart listed everything (but the 15 files
    // written around the kill: too new, held for the passes after it).
    assert!(log.contains("Reconcile pass"), "{log}");
    let ps = passes(&d, "dwatchjob");
    assert!(ps.iter().any(|p| p.found >= 715), "{ps:?}");
}
