//! Benchmark helper (bench/watch.py): what watching a tree costs. Starts
//! the watch `incrementalMode=watch` uses on SRC_DIR (the backend as
//! `OSSIMPORT_WATCH` says: inotify, or fanotify as root) and prints one JSON
//! line: directories in the tree, inotify watches the process holds, the
//! time to set them up, and the process's RSS before and after (the
//! kernel's own memory per watch is not in RSS: about 1 KiB each, see
//! inotify(7)).
//!
//!   cargo run --release -p daemon --example watch_only -- SRC_DIR

use std::time::{Duration, Instant};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// inotify watches held by this process: `inotify wd:` lines in the
/// fdinfo of its inotify descriptors.
fn watches() -> usize {
    let Ok(fds) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    fds.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|s| s.lines().filter(|l| l.starts_with("inotify wd:")).count())
        .sum()
}

fn dirs(root: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        n += 1;
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    n
}

fn main() -> anyhow::Result<()> {
    let Some(src) = std::env::args().nth(1) else {
        anyhow::bail!("usage: watch_only SRC_DIR");
    };
    let root = std::path::PathBuf::from(&src);
    let n_dirs = dirs(&root);
    let before = status_kib("VmRSS:");
    let t = Instant::now();
    let w = daemon::engine::watch::Watch::start("bench", &root, Duration::from_secs(2));
    let setup = t.elapsed();
    let after = status_kib("VmRSS:");
    let status = w.status();
    println!(
        "{}",
        serde_json::json!({
            "dirs": n_dirs,
            "watches": watches(),
            "setup_secs": setup.as_secs_f64(),
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_per_watch_bytes": (after.saturating_sub(before) * 1024) as f64 / n_dirs.max(1) as f64,
            "problem": status.problem,
            "backend": status.backend,
        })
    );
    Ok(())
}
