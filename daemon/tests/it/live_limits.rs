//! `ossimportctl set` on a running cluster job: the agent's measured rate
//! follows a lowered bandwidth cap, fewer objects stay in flight, the
//! change is kept with the job (and holds after a daemon restart), and a
//! bad setting changes nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use testkit::net::http_get;

/// Bytes verified per second over `secs`, by the daemon's own counts.
fn rate(s: &OneAgentJob, secs: u64) -> f64 {
    let (t0, b0) = (Instant::now(), s.daemon.job(s.job).counts.verified_bytes);
    std::thread::sleep(Duration::from_secs(secs));
    let (t1, b1) = (Instant::now(), s.daemon.job(s.job).counts.verified_bytes);
    (b1 - b0) as f64 / (t1 - t0).as_secs_f64()
}

fn set(s: &OneAgentJob, args: &[&str]) -> std::process::Output {
    Command::new(bin("ossimportctl"))
        .arg("set")
        .arg(s.job)
        .args(args)
        .arg("--socket")
        .arg(&s.daemon.socket)
        .output()
        .unwrap()
}

fn in_flight(s: &OneAgentJob) -> f64 {
    let (_, m) = http_get(&s.metrics, "/metrics").unwrap();
    m.lines()
        .find(|l| l.starts_with("ossimport_agent_objects_in_flight{agent=\"a1\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no in-flight gauge for a1 in {m}"))
}

#[test]
fn set_lowers_a_running_jobs_bandwidth_and_concurrency_and_the_change_is_kept() {
    // 900 files of 64 KiB at 2 MiB/s: far more than the test watches.
    let mut s = OneAgentJob::start(
        900,
        64 << 10,
        b"workerMaxThroughput(KB/s)=2048\nworkerTaskThreadNum=8\n",
        "limited-job",
    );
    s.submit();
    wait_for("the copy to start", 60, || {
        s.daemon.job(s.job).counts.verified >= 16
    });

    let before = rate(&s, 6);
    let want = 2048.0 * 1024.0;
    assert!(
        (before - want).abs() <= want * 0.1,
        "before: {before:.0} B/s, expected 2 MiB/s within 10%"
    );

    let out = set(&s, &["workerMaxThroughput=512"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("512.0 KiB/s per executor"),
        "{}",
        stdout(&out)
    );
    // One heartbeat (200 ms here) carries it; the executor's bucket is cut
    // at once. Give it a moment, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let after = rate(&s, 8);
    let want = 512.0 * 1024.0;
    assert!(
        (after - want).abs() <= want * 0.1,
        "after set: {after:.0} B/s, expected 512 KiB/s within 10% (before {before:.0})"
    );
    eprintln!("measured: {before:.0} B/s at 2048 KB/s, {after:.0} B/s after set to 512 KB/s");
    assert!(
        s.agent.log_text().contains("Job limits changed."),
        "{}",
        s.agent.log_text()
    );

    // Fewer objects in flight: the agent's own count, from its heartbeats.
    assert!(in_flight(&s) > 2.0, "8 in flight before");
    let out = set(&s, &["workerTaskThreadNum=2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..10 {
        let n = in_flight(&s);
        assert!(
            n <= 2.0,
            "{n} objects in flight after workerTaskThreadNum=2"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A bad setting is refused whole, naming the key; nothing changes.
    let out = set(&s, &["maxRequestsPerSecond=10", "srcPrefix=/etc"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("srcPrefix: not a limit that can change"),
        "{}",
        stderr(&out)
    );
    let l = s.daemon.job(s.job).limits.expect("limits in stat");
    assert_eq!(
        (
            l.bytes_per_second,
            l.objects_in_flight,
            l.requests_per_second
        ),
        (512 * 1024, 2, 0)
    );
    // The audit trail: who, what, from and to.
    let keys: Vec<_> = l
        .changes
        .iter()
        .map(|c| (c.key.as_str(), c.old.as_str(), c.new.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("workerMaxThroughput", "2048", "512"),
            ("workerTaskThreadNum", "8", "2")
        ]
    );
    let uid = unsafe { libc::geteuid() };
    assert!(
        l.changes
            .iter()
            .all(|c| c.by == format!("uid {uid}") && c.at > 0),
        "{:?}",
        l.changes
    );

    // A schedule replaces the flat cap while it is set.
    let out = set(&s, &["workerMaxThroughputSchedule=00:00,256"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let l = s.daemon.job(s.job).limits.unwrap();
    assert_eq!(
        (l.bytes_per_second, l.flat_bytes_per_second),
        (256 * 1024, 512 * 1024)
    );
    let out = set(&s, &["workerMaxThroughputSchedule=none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.daemon.job(s.job).limits.unwrap().bytes_per_second,
        512 * 1024
    );

    // `stat` shows them; a restarted daemon applies them again.
    let out = Command::new(bin("ossimportctl"))
        .args(["stat", s.job, "--socket"])
        .arg(&s.daemon.socket)
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("limits: 512.0 KiB/s per executor, 2 objects in flight"),
        "{}",
        stdout(&out)
    );
    let (listen, work) = (s.daemon.addr.clone(), s.daemon.work.clone());
    s.daemon.kill();
    s.daemon = Daemon::start_with(&work, &listen, &["--metrics-listen", &s.metrics]);
    let l = s
        .daemon
        .job(s.job)
        .limits
        .expect("limits after the restart");
    assert_eq!((l.bytes_per_second, l.objects_in_flight), (512 * 1024, 2));
    assert_eq!(l.changes.len(), 4);
}
