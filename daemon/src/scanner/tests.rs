//! Scanner: task splitting, walk order, symlinks, and resume from a checkpoint.

use super::*;

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for p in ["a/1", "a/2", "a.txt", "b/c/d", "b/e", "z", "sp ace/ü.txt"] {
        let path = r.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, p.as_bytes()).unwrap();
    }
    std::fs::create_dir_all(r.join("empty")).unwrap();
    std::os::unix::fs::symlink(r.join("z"), r.join("link")).unwrap();
    dir
}

fn cfg(root: &std::path::Path, count: u64) -> ScanConfig {
    ScanConfig {
        source: ScanSource::Local {
            root: root.to_path_buf(),
            follow_symlinks: false,
        },
        filter: Default::default(),
        task_count_limit: count,
        task_size_limit: u64::MAX,
        import_since: 0,
        max_task_age: None,
    }
}

fn listed(store: &Store, job: i64) -> Vec<String> {
    let tasks = store.lease_tasks(job, 1000, "t", 0).unwrap();
    tasks
        .iter()
        .flat_map(|t| t.objects.iter().map(|o| o.rel_path.clone()))
        .collect()
}

#[test]
fn walks_in_order_and_splits() {
    let src = tree();
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("s.db")).unwrap();
    let job = store.create_job("scan", "{}", "").unwrap();
    let scanned = scan(
        &store,
        job,
        &cfg(src.path(), 3),
        &CancellationToken::new(),
        |_, _| {},
    )
    .unwrap();
    let ScanOutcome::Finished(stats) = scanned else {
        panic!("not finished: {scanned:?}")
    };
    assert_eq!(stats.files, 7);
    assert_eq!(stats.tasks, 3);
    assert_eq!(stats.symlinks_skipped, 1);
    assert_eq!(
        listed(&store, job),
        ["a/1", "a/2", "a.txt", "b/c/d", "b/e", "sp ace/ü.txt", "z"]
    );
}

#[test]
fn follows_file_symlinks_when_allowed() {
    let src = tree();
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("s.db")).unwrap();
    let job = store.create_job("scan", "{}", "").unwrap();
    let mut c = cfg(src.path(), 100);
    c.source = ScanSource::Local {
        root: src.path().to_path_buf(),
        follow_symlinks: true,
    };
    let scanned = scan(&store, job, &c, &CancellationToken::new(), |_, _| {}).unwrap();
    let stats = scanned.stats();
    assert_eq!(stats.files, 8);
    assert!(listed(&store, job).contains(&"link".to_string()));
}

#[test]
fn resumes_after_interruption_without_gaps_or_duplicates() {
    let src = tree();
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("s.db")).unwrap();
    let job = store.create_job("scan", "{}", "").unwrap();
    // Stop after the second committed task, as a kill would.
    let cancel = CancellationToken::new();
    let mut n = 0;
    let scanned = scan(&store, job, &cfg(src.path(), 2), &cancel, |_, _| {
        n += 1;
        if n == 2 {
            cancel.cancel();
        }
    })
    .unwrap();
    assert!(matches!(scanned, ScanOutcome::Stopped(_)), "{scanned:?}");
    let scanned = scan(
        &store,
        job,
        &cfg(src.path(), 2),
        &CancellationToken::new(),
        |_, _| {},
    )
    .unwrap();
    assert!(scanned.finished());
    assert_eq!(
        listed(&store, job),
        ["a/1", "a/2", "a.txt", "b/c/d", "b/e", "sp ace/ü.txt", "z"]
    );
}

#[test]
fn import_since_and_size_limit() {
    let src = tree();
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("s.db")).unwrap();
    let job = store.create_job("scan", "{}", "").unwrap();
    let mut c = cfg(src.path(), 100);
    c.task_size_limit = 4; // every file is >= 1 byte; "a/1" is 3 bytes
    let scanned = scan(&store, job, &c, &CancellationToken::new(), |_, _| {}).unwrap();
    let stats = scanned.stats();
    assert!(stats.tasks >= 4, "{stats:?}");

    let job2 = store.create_job("scan2", "{}", "").unwrap();
    let mut c = cfg(src.path(), 100);
    c.import_since = i64::MAX - 1;
    let scanned = scan(&store, job2, &c, &CancellationToken::new(), |_, _| {}).unwrap();
    let stats = scanned.stats();
    assert_eq!((stats.files, stats.older_than_import_since), (0, 7));
}

#[test]
fn filters_apply_to_relative_paths() {
    let src = tree();
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("s.db")).unwrap();
    let job = store.create_job("scan", "{}", "").unwrap();
    let mut c = cfg(src.path(), 100);
    c.filter =
        crate::filter::Filter::new(&["b/**".into(), "*.txt".into()], &["b/e".into()]).unwrap();
    let scanned = scan(&store, job, &c, &CancellationToken::new(), |_, _| {}).unwrap();
    let stats = scanned.stats();
    assert_eq!(listed(&store, job), ["a.txt", "b/c/d", "sp ace/ü.txt"]);
    assert_eq!(stats.filtered_out, 4);
}

#[test]
fn http_lines() {
    assert_eq!(
        parse_http_line("127.0.0.1/aa/  bb.jpg\r", 1, 2).unwrap(),
        Some(("http://127.0.0.1/aa/bb.jpg".into(), "bb.jpg".into()))
    );
    assert_eq!(
        parse_http_line("https://h/  aa/bb.jpg x y", 1, 2).unwrap(),
        Some(("https://h/aa/bb.jpg".into(), "aa/bb.jpg".into()))
    );
    assert_eq!(parse_http_line("   ", 1, 2).unwrap(), None);
    assert!(
        parse_http_line("onlyone", 1, 2)
            .unwrap_err()
            .contains("at least 2")
    );
}
