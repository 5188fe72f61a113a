//! Parallel listing at scale (`scanThreadCount`, `maxMultiThreadScanDepth`):
//! a 200,000-file tree and a 200,000-object bucket (SeaweedFS) listed by one
//! walk and by 8 threads split two levels deep, each killed once mid-scan
//! and resumed from its checkpoints: the same object set every time, no
//! path recorded twice, every task within the count limit.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use daemon::scanner::{self, ScanConfig};
use daemon::store::Store;
use proto::job::SourceSpec;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const N: usize = 200_000;
const PER_TASK: u64 = 1_000;

fn config(source: SourceSpec, threads: usize) -> ScanConfig {
    ScanConfig {
        metadata_changes: false,
        source,
        http_list: None,
        page_size: 1000,
        attempts: 3,
        filter: Default::default(),
        task_count_limit: PER_TASK,
        task_size_limit: u64::MAX,
        import_since: 0,
        max_task_age: None,
        incremental: None,
        watch: None,
        threads,
        split_depth: 2,
        dest_dir: None,
        dest_case: Default::default(),
    }
}

/// Lists into a fresh store: killed after `kill_after` tasks, then resumed
/// to the end. Returns the sorted paths.
fn list(cfg: &ScanConfig, dir: &Path, kill_after: usize) -> Vec<String> {
    let store = Store::open(&dir.join("s.db")).unwrap();
    let job = store.create_job("listing", "{}", "").unwrap();
    let stop = CancellationToken::new();
    let tasks = AtomicUsize::new(0);
    let first = scanner::scan(&store, job, cfg, &stop, |_, objs| {
        assert!(objs.len() as u64 <= PER_TASK);
        if tasks.fetch_add(1, Ordering::SeqCst) + 1 >= kill_after {
            stop.cancel();
        }
    })
    .unwrap();
    assert!(!first.finished(), "the listing ended before the kill");
    let before = store.objects().unwrap().len();
    assert!(before > 0 && before < N, "{before} listed before the kill");
    let done = scanner::scan(&store, job, cfg, &CancellationToken::new(), |_, objs| {
        assert!(objs.len() as u64 <= PER_TASK);
    })
    .unwrap();
    assert!(done.finished());
    let mut paths: Vec<String> = store
        .objects()
        .unwrap()
        .into_iter()
        .map(|o| o.rel_path)
        .collect();
    paths.sort();
    let n = paths.len();
    paths.dedup();
    assert_eq!(paths.len(), n, "a path was recorded twice");
    paths
}

fn rel(i: usize) -> String {
    // Files at depths 1 to 4, so every kind of branch has some.
    match i % 50 {
        0 => format!("root-{i:06}"),
        1..=9 => format!("d{:02}/f{i:06}", i % 17),
        _ => format!("d{:02}/s{:02}/{}/f{i:06}", i % 17, i % 13, i % 3),
    }
}

/// `N` one-byte files at the paths of [`rel`].
fn make_tree(root: &Path) {
    for i in 0..N {
        let p = root.join(rel(i));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
    }
}

#[test]
fn one_walk_and_eight_threads_list_a_200k_tree_alike_across_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let source = SourceSpec::Local {
        root: src.display().to_string(),
        follow_symlinks: false,
    };
    let (a, b) = (tmp.path().join("one"), tmp.path().join("eight"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let one = list(&config(source.clone(), 1), &a, 40);
    assert_eq!(one.len(), N);
    let eight = list(&config(source, 8), &b, 40);
    assert!(one == eight, "8 threads listed another set than one walk");
}

#[test]
fn one_walk_and_eight_threads_list_a_200k_bucket_alike_across_a_kill() {
    let s3 = S3Server::start();
    let rt = rt();
    rt.block_on(s3.create_bucket("many"));
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let t = std::time::Instant::now();
    s3.fill_from_dir(&tree, "many", "pre/");
    eprintln!("{N} objects stored in {:?}", t.elapsed());
    let bucket = proto::job::Bucket {
        endpoint: s3.endpoint.clone(),
        region: "us-east-1".into(),
        name: "many".into(),
        access_key: AK.into(),
        secret_key: proto::Secret::new(SK),
        path_style: true,
        prefix: "pre/".into(),
    };
    let source = SourceSpec::S3(bucket);
    let (a, b) = (tmp.path().join("one"), tmp.path().join("eight"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let _rt = rt.enter();
    let cfg1 = config(source.clone(), 1);
    let t = std::time::Instant::now();
    let one = rt.block_on(async {
        tokio::task::spawn_blocking(move || list(&cfg1, &a, 40))
            .await
            .unwrap()
    });
    assert_eq!(one.len(), N);
    eprintln!("one walk: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let cfg8 = config(source, 8);
    let eight = rt.block_on(async {
        tokio::task::spawn_blocking(move || list(&cfg8, &b, 40))
            .await
            .unwrap()
    });
    eprintln!("eight threads: {:?}", t.elapsed());
    assert!(one == eight, "8 threads listed another set than one walk");
}
