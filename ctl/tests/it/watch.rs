//! `incrementalMode=watch` under `ossimportctl run` (as root, through
//! fanotify; the overflow test and `daemon/tests/it/watch.rs` through
//! inotify): after the first pass,
//! each file written, renamed or deleted in the watched tree reaches the
//! destination (or the deleted list) within seconds, through passes that
//! list only what changed; a file still being written is never verified
//! half-written; a run killed with changes pending misses nothing when run
//! again (its first pass after the restart lists everything).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon::store::ObjectState;

use crate::incremental::{interrupt, spawn_run};
use crate::support::*;

/// Whether `rel` has a verified row of `size` bytes.
fn verified(work: &Path, rel: &str, size: u64) -> bool {
    objects(work)
        .iter()
        .any(|o| o.rel_path == rel && o.state == ObjectState::Verified && o.size == size)
}

/// The paths recorded deleted.
fn deleted(work: &Path) -> Vec<String> {
    let s = store(work);
    let job = s.find_job("watchjob").unwrap().unwrap();
    s.deleted_page(job.id, None, 10_000)
        .unwrap()
        .into_iter()
        .map(|d| d.rel_path)
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn watched_changes_arrive_within_seconds_and_nothing_half_written_or_missed() {
    let s3 = S3Server::start();
    let c = s3.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(s3.create_bucket("watch"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // Never touched: a pass that lists it listed everything.
    tree(&src.join("still"), 1000, 64);
    let moved = src.join("dir_a");
    std::fs::create_dir_all(&moved).unwrap();
    for i in 0..500 {
        std::fs::write(moved.join(format!("m{i:03}")), format!("moved {i}")).unwrap();
    }
    // Older than the settle time, as a tree being migrated is: a listing
    // holds back files changed within it (they may be being written).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let work = tmp.path().join("work");
    // An interval of an hour: every copy after the first pass is the
    // watch's doing.
    let cfg = job_cfg(
        tmp.path(),
        "watchjob",
        &src,
        &s3.endpoint,
        "watch",
        "isIncremental=true\nincrementalModeInterval=3600\nincrementalMode=watch\nwatchSettleSeconds=1",
    );
    let log = tmp.path().join("run.log");
    let child = spawn_run(&cfg, &work, &log);
    crate::incremental::wait_pass_ended(&work, "watchjob", 1);

    // Files written at random intervals: each verified, the delay from its
    // close measured.
    // Written by a thread while this one polls the store, so each delay is
    // from a file's close to the first poll that sees it verified.
    let closed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let (closed, src) = (std::sync::Arc::clone(&closed), src.clone());
        std::thread::spawn(move || {
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            std::fs::create_dir_all(src.join("new")).unwrap();
            for i in 0..200 {
                let rel = format!("new/f{i:03}.txt");
                std::fs::write(src.join(&rel), format!("file {i}")).unwrap();
                closed.lock().unwrap().push((rel, Instant::now()));
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                std::thread::sleep(Duration::from_millis(seed % 80));
            }
        })
    };
    let mut delays = Vec::new();
    let mut done = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.len() < 200 {
        if Instant::now() >= deadline {
            let missing: Vec<String> = closed
                .lock()
                .unwrap()
                .iter()
                .map(|(rel, _)| rel.clone())
                .filter(|rel| !done.contains(rel))
                .collect();
            let rows: Vec<_> = objects(&work)
                .into_iter()
                .filter(|o| missing.contains(&o.rel_path))
                .take(20)
                .map(|o| (o.rel_path, o.state, o.error_code, o.error, o.attempts))
                .collect();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            panic!(
                "never verified: {} of 200, the first {:?}\nrows of them: {rows:#?}\nrun's log, last lines first:\n{}",
                missing.len(),
                &missing[..missing.len().min(20)],
                tail.join("\n")
            );
        }
        let verified: std::collections::HashSet<String> = objects(&work)
            .into_iter()
            .filter(|o| o.state == ObjectState::Verified)
            .map(|o| o.rel_path)
            .collect();
        for (rel, at) in closed.lock().unwrap().iter() {
            if !done.contains(rel) && verified.contains(rel) {
                done.insert(rel.clone());
                delays.push(at.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.join().unwrap();
    delays.sort();
    eprintln!(
        "watch latency from close to verified (upper bound, polled every 50 ms), {} files: p50 {:?}, p95 {:?}, max {:?}",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.95),
        delays.last().unwrap()
    );

    // A file written slowly (a chunk every 200 ms for 10 s, longer than
    // the settle time in all): never verified before it is whole.
    let slow = src.join("slow.bin");
    let mut f = std::fs::File::create(&slow).unwrap();
    let chunk = vec![7u8; 4096];
    for i in 0..50 {
        if i == 5 {
            // A file beside it settles meanwhile: the pass that lists their
            // directory finds the slow one too, and must leave it.
            std::fs::write(src.join("beside_slow.txt"), b"quick").unwrap();
        }
        f.write_all(&chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let early = objects(&work)
            .into_iter()
            .filter(|o| o.rel_path == "slow.bin" && o.state == ObjectState::Verified)
            .collect::<Vec<_>>();
        assert!(early.is_empty(), "verified while being written: {early:?}");
    }
    assert!(verified(&work, "beside_slow.txt", 5));
    drop(f);
    wait_for("slow.bin verified whole", 60, || {
        verified(&work, "slow.bin", 50 * 4096)
    });

    // A directory renamed: its files arrive under the new name, the old
    // names are listed as deleted; a file removed is listed too.
    std::fs::rename(&moved, src.join("dir_b")).unwrap();
    std::fs::remove_file(src.join("new/f000.txt")).unwrap();
    wait_for("dir_b's files verified", 60, || {
        let done: std::collections::HashSet<(String, u64)> = objects(&work)
            .into_iter()
            .filter(|o| o.state == ObjectState::Verified)
            .map(|o| (o.rel_path, o.size))
            .collect();
        (0..500)
            .all(|i| done.contains(&(format!("dir_b/m{i:03}"), format!("moved {i}").len() as u64)))
    });
    wait_for("the old names listed deleted", 60, || {
        let d = deleted(&work);
        d.contains(&"new/f000.txt".to_string())
            && (0..500).all(|i| d.contains(&format!("dir_a/m{i:03}")))
    });

    // The passes after the first listed only what changed: none found the
    // 1,000 untouched files again (the rename's lists about 700).
    let passes = {
        let s = store(&work);
        let job = s.find_job("watchjob").unwrap().unwrap();
        s.passes(job.id).unwrap()
    };
    eprintln!("passes: {passes:#?}");
    assert!(passes.len() >= 3, "{passes:?}");
    for p in &passes[1..] {
        assert!(p.found < 1000, "pass {} listed everything: {p:?}", p.number);
    }

    // Killed with changes pending, more written while it is down: the
    // next run lists everything first and misses nothing.
    for i in 0..10 {
        std::fs::write(src.join(format!("pending{i}")), b"pending").unwrap();
    }
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("while_down{i}")), b"written while down").unwrap();
    }
    let log2 = tmp.path().join("run2.log");
    let child = spawn_run(&cfg, &work, &log2);
    wait_for("every change made around the kill verified", 120, || {
        (0..10).all(|i| verified(&work, &format!("pending{i}"), 7))
            && (0..5).all(|i| verified(&work, &format!("while_down{i}"), 18))
    });
    interrupt(child);
    let said = std::fs::read_to_string(&log2).unwrap();
    assert!(!said.contains("panicked"), "{said}");
    // The run after the kill began with a whole listing (the 15 files
    // written around the kill, too new, it held for the passes after it).
    let s = store(&work);
    let job = s.find_job("watchjob").unwrap().unwrap();
    let after: Vec<_> = s
        .passes(job.id)
        .unwrap()
        .into_iter()
        .skip(passes.len())
        .collect();
    assert!(after.iter().any(|p| p.found >= 1700), "{after:#?}");

    // The destination holds the whole slow file and the renamed files.
    rt.block_on(async {
        let got = get(&c, "watch", "slow.bin").await;
        assert_eq!(got.len(), 50 * 4096);
        assert!(got.iter().all(|&b| b == 7));
        c.head_object()
            .bucket("watch")
            .key("dir_b/m499")
            .send()
            .await
            .unwrap();
    });
}

/// Restores `fs.inotify.max_queued_events` when dropped.
struct QueueLimit(String);

impl Drop for QueueLimit {
    fn drop(&mut self) {
        let _ = std::fs::write(QUEUE_LIMIT, &self.0);
    }
}

const QUEUE_LIMIT: &str = "/proc/sys/fs/inotify/max_queued_events";

/// A burst of 20,000 files into a watch whose event queue holds 16: the
/// queue overflows, the events are lost, and the next pass lists
/// everything, so every file is verified all the same.
#[test]
fn a_burst_that_overflows_the_watch_queue_is_found_by_a_reconcile_pass() {
    if !is_root() {
        eprintln!(
            "skipped: needs root to lower fs.inotify.max_queued_events (the only way to make a watch queue overflow on demand)"
        );
        return;
    }
    let s3 = S3Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(s3.create_bucket("burst"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("first"), b"1").unwrap();
    let work = tmp.path().join("work");
    let cfg = job_cfg(
        tmp.path(),
        "burstjob",
        &src,
        &s3.endpoint,
        "burst",
        "isIncremental=true\nincrementalModeInterval=3600\nincrementalMode=watch\nwatchSettleSeconds=1\ntaskObjectCountLimit=1000",
    );
    // The limit is read when a watch is made: lowered for this run's only,
    // put back as soon as its first pass (which follows the watch) ends.
    let limit = QueueLimit(std::fs::read_to_string(QUEUE_LIMIT).unwrap());
    std::fs::write(QUEUE_LIMIT, "16").unwrap();
    let log = tmp.path().join("run.log");
    // inotify's queue is the one lowered (fanotify's is its own).
    let child = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--work-dir")
        .arg(&work)
        .env("OSSIMPORT_WATCH", "inotify")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    crate::incremental::wait_pass_ended(&work, "burstjob", 1);
    drop(limit);

    for d in 0..20 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for i in 0..1000 {
            std::fs::write(dir.join(format!("f{i:04}")), b"b").unwrap();
        }
    }
    wait_for("20,001 files verified", 300, || {
        objects(&work)
            .iter()
            .filter(|o| o.state == ObjectState::Verified)
            .count()
            == 20_001
    });
    interrupt(child);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("overflowed"), "{said}");
    let s = store(&work);
    let job = s.find_job("burstjob").unwrap().unwrap();
    let passes = s.passes(job.id).unwrap();
    assert!(
        passes.iter().skip(1).any(|p| p.found == 20_001),
        "no whole listing after the overflow: {passes:#?}"
    );
}

/// Unmounts when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A file system mounted below the source (a tmpfs here): the watch covers
/// it too (fanotify marks it beside the root's; inotify's watches cross
/// into it), so a file written there after the first pass is copied
/// without a reconcile pass.
#[test]
fn a_file_system_mounted_below_the_source_is_watched_too() {
    if !is_root() {
        eprintln!("skipped: needs root to mount a tmpfs below the source");
        return;
    }
    let s3 = S3Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(s3.create_bucket("mnt"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("inner")).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(src.join("inner"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs");
    let _mounted = Mounted(src.join("inner"));
    std::fs::write(src.join("top"), b"top").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let work = tmp.path().join("work");
    let cfg = job_cfg(
        tmp.path(),
        "mntjob",
        &src,
        &s3.endpoint,
        "mnt",
        "isIncremental=true\nincrementalModeInterval=3600\nincrementalMode=watch\nwatchSettleSeconds=1",
    );
    let log = tmp.path().join("run.log");
    let child = spawn_run(&cfg, &work, &log);
    crate::incremental::wait_pass_ended(&work, "mntjob", 1);
    std::fs::write(src.join("inner/on_tmpfs.txt"), b"on the tmpfs").unwrap();
    wait_for("the file on the mounted file system verified", 30, || {
        verified(&work, "inner/on_tmpfs.txt", 12)
    });
    interrupt(child);
}
