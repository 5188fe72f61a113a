//! Benchmark helper (bench/ W3): scans a local directory into tasks in a
//! fresh SQLite store, with nothing copied, and prints one JSON line with
//! the rate and the process's peak RSS.
//!
//!   cargo run --release -p daemon --example scan_only -- SRC_DIR DB_PATH [TASK_OBJECT_LIMIT]
//!
//! DB_PATH must not exist yet (the scan would otherwise resume from its
//! checkpoint). The task size limit is effectively unlimited so tasks are
//! cut by object count only, like the default job.cfg.

use std::path::PathBuf;
use std::time::Instant;

use daemon::scanner::{ScanConfig, scan};
use daemon::store::Store;
use proto::job::SourceSpec;
use tokio_util::sync::CancellationToken;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(src), Some(db)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: scan_only SRC_DIR DB_PATH [TASK_OBJECT_LIMIT]");
    };
    let limit: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let db = PathBuf::from(db);
    anyhow::ensure!(!db.exists(), "{} exists; give a fresh path", db.display());

    let start = Instant::now();
    let store = Store::open(&db)?;
    let job = store.create_job("scan-bench", "{}", "bench")?;
    let cfg = ScanConfig {
        metadata_changes: false,
        source: SourceSpec::Local {
            root: src.clone(),
            follow_symlinks: false,
        },
        http_list: None,
        page_size: 1000,
        attempts: 3,
        filter: Default::default(),
        task_count_limit: limit,
        task_size_limit: u64::MAX,
        import_since: 0,
        max_task_age: None,
        incremental: None,
        watch: None,
        threads: 1,
        split_depth: 1,
        dest_dir: None,
        dest_case: Default::default(),
    };
    let scanned = scan(&store, job, &cfg, &CancellationToken::new(), |_, _| {})?;
    let (done, stats) = (scanned.finished(), scanned.stats().clone());
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(done, "scan did not finish");
    let counts = store.counts(job)?;
    anyhow::ensure!(
        counts.objects == stats.files,
        "store holds {} objects, scan saw {}",
        counts.objects,
        stats.files
    );
    println!(
        "{{\"files\":{},\"bytes\":{},\"tasks\":{},\"seconds\":{:.3},\"objects_per_s\":{:.0},\"peak_rss_kib\":{}}}",
        stats.files,
        stats.bytes,
        stats.tasks,
        secs,
        stats.files as f64 / secs,
        peak_rss_kib()
    );
    Ok(())
}
