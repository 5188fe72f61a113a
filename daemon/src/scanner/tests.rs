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
        metadata_changes: false,
        source: SourceSpec::Local {
            root: root.display().to_string(),
            follow_symlinks: false,
        },
        http_list: None,
        page_size: 1000,
        attempts: 3,
        filter: Default::default(),
        task_count_limit: count,
        task_size_limit: u64::MAX,
        import_since: 0,
        max_task_age: None,
        incremental: None,
        watch: None,
        threads: 1,
        split_depth: 1,
        dest_dir: None,
        dest_case: Default::default(),
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
    c.source = SourceSpec::Local {
        root: src.path().display().to_string(),
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

/// Leases every pending task to `t` and records each object as the
/// executor would: verified with its size, or failed when `fail` says so.
fn execute(store: &Store, job: i64, fail: impl Fn(&str) -> bool) {
    use proto::job::{Event, ObjectError, ObjectResult, Outcome};
    for t in store.lease_tasks(job, 1000, "t", i64::MAX).unwrap() {
        let mut events: Vec<Event> = t
            .objects
            .iter()
            .map(|o| {
                let bad = fail(&o.rel_path);
                Event::ObjectDone(ObjectResult {
                    object_id: o.object_id,
                    task_id: t.task_id,
                    outcome: if bad {
                        Outcome::Failed
                    } else {
                        Outcome::Verified
                    },
                    size: o.size,
                    crc64: None,
                    md5: None,
                    etag: None,
                    verified_by: "size+md5".into(),
                    error: bad.then(|| ObjectError {
                        code: proto::job::ErrorCode::SourceUnreadable,
                        message: "refused".into(),
                    }),
                    retries: 0,
                    parts_resumed: 0,
                    source_ident: None,
                    metadata: None,
                })
            })
            .collect();
        events.push(Event::TaskDone { task_id: t.task_id });
        store.record(&[("t", &events)]).unwrap();
    }
}

fn write(root: &std::path::Path, rel: &str, body: &[u8], mtime: i64) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime as u64))
        .unwrap();
}

/// Three passes over a changing tree: each lists everything but queues
/// only what is new, grown, touched or failed before; what vanished is
/// counted once; an unreadable directory's files are unseen, not gone; a
/// pass killed mid-listing and resumed counts nothing twice.
#[test]
fn later_passes_queue_only_new_and_changed_and_count_the_deleted() {
    let src = tempfile::tempdir().unwrap();
    let r = src.path();
    for i in 0..40 {
        write(r, &format!("keep/{i:02}"), b"same", 1_000);
    }
    for f in ["grow", "touch", "gone", "flaky"] {
        write(r, f, b"v1", 1_000);
    }
    write(r, "locked/inside", b"x", 1_000);
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("s.db")).unwrap();
    let job = store.create_job("inc", "{}", "").unwrap();
    let every = cfg(r, 7);
    let never = CancellationToken::new();
    let queued = |store: &Store| -> Vec<String> {
        let mut v: Vec<String> = store
            .objects()
            .unwrap()
            .into_iter()
            .filter(|o| o.state == crate::store::ObjectState::Pending)
            .map(|o| o.rel_path)
            .collect();
        v.sort();
        v
    };

    // Pass 1: everything is new; one object fails.
    assert!(
        scan(&store, job, &every, &never, |_, _| {})
            .unwrap()
            .finished()
    );
    assert_eq!(queued(&store).len(), 45);
    execute(&store, job, |p| p == "flaky");
    store.end_pass(job, 0).unwrap();

    // Between passes: one new, one grown, one touched, one deleted, and a
    // directory that cannot be read (as root, chmod does not stop reads:
    // the LIST_ERROR is then absent and the test checks only the rest).
    write(r, "new", b"n", 2_000);
    write(r, "grow", b"v1 and more", 1_000);
    write(r, "touch", b"v1", 3_000);
    std::fs::remove_file(r.join("gone")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(r.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let locked = std::fs::read_dir(r.join("locked")).is_err();

    // Pass 2, killed after its first task and resumed.
    assert_eq!(store.begin_pass(job).unwrap(), 2);
    let stop = CancellationToken::new();
    let first = scan(&store, job, &cfg(r, 1), &stop, |_, _| stop.cancel()).unwrap();
    assert!(!first.finished());
    assert!(
        scan(&store, job, &cfg(r, 1), &never, |_, _| {})
            .unwrap()
            .finished()
    );
    let mut want = vec!["flaky", "grow", "new", "touch"];
    if locked {
        want.push("locked");
    }
    want.sort();
    assert_eq!(queued(&store), want);
    execute(&store, job, |_| false);
    let p2 = store.end_pass(job, 0).unwrap();
    assert_eq!(
        (p2.new, p2.changed, p2.retried, p2.deleted),
        (1 + u64::from(locked), 2, 1, 1),
        "{p2:?}"
    );
    assert_eq!(p2.failed, u64::from(locked));
    // Every path once: the replaced rows gave way.
    let rows = store.objects().unwrap();
    let mut paths: Vec<&str> = rows.iter().map(|o| o.rel_path.as_str()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), rows.len(), "a path recorded twice");
    let gone: Vec<String> = store
        .deleted_page(job, None, 10)
        .unwrap()
        .into_iter()
        .map(|d| d.rel_path)
        .collect();
    assert_eq!(gone, vec!["gone"], "locked/inside is unseen, not gone");

    // Pass 3: nothing changed; nothing is queued, nothing counted again.
    std::fs::set_permissions(r.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(store.begin_pass(job).unwrap(), 3);
    assert!(
        scan(&store, job, &every, &never, |_, _| {})
            .unwrap()
            .finished()
    );
    assert_eq!(queued(&store), Vec::<String>::new());
    execute(&store, job, |_| false);
    let p3 = store.end_pass(job, 0).unwrap();
    assert_eq!(
        (p3.new, p3.changed, p3.retried, p3.deleted),
        (0, 0, 0, 0),
        "{p3:?}"
    );
    assert_eq!(p3.found, 45);
    // The directory read again: its listing error of pass 2 is gone; the
    // deleted file stays verified (it is at the destination).
    let c = store.counts(job).unwrap();
    assert_eq!((c.objects, c.verified, c.failed, c.pending), (46, 46, 0, 0));
}

#[test]
fn classify_decides_by_source_kind() {
    use crate::store::ObjectState::*;
    let obj = |size, mtime, src: Option<&str>| NewObject {
        rel_path: "p".into(),
        size,
        mtime,
        ident: None,
        src_ref: src.map(str::to_owned),
        failure: None,
    };
    let prior = |state, size, mtime, src: Option<&str>| Prior {
        id: 9,
        size,
        mtime,
        ident: None,
        src_ref: src.map(str::to_owned),
        state,
        error_code: None,
    };
    let tagged = |mut o: NewObject, t| {
        o.ident = Some(t);
        o
    };
    let tagged_prior = |mut p: Prior, t| {
        p.ident = Some(t);
        p
    };
    use Compare::*;
    let cases = [
        (obj(1, 1, None), None, SizeMtime, Listed::Copy(Change::New)),
        (
            obj(1, 1, None),
            Some(prior(Verified, 1, 1, None)),
            SizeMtime,
            Listed::Seen(9, None),
        ),
        (
            obj(2, 1, None),
            Some(prior(Verified, 1, 1, None)),
            SizeMtime,
            Listed::Copy(Change::Changed),
        ),
        (
            obj(1, 2, None),
            Some(prior(Verified, 1, 1, None)),
            SizeMtime,
            Listed::Copy(Change::Changed),
        ),
        (
            obj(1, 1, None),
            Some(prior(Failed, 1, 1, None)),
            SizeMtime,
            Listed::Copy(Change::Retried),
        ),
        (
            obj(1, 1, None),
            Some(prior(Skipped, 1, 1, None)),
            SizeMtime,
            Listed::Seen(9, None),
        ),
        // Still being worked on (a retry in flight): left to it.
        (
            obj(5, 5, None),
            Some(prior(Pending, 1, 1, None)),
            SizeMtime,
            Listed::Seen(9, None),
        ),
        // Local files: the identity tag (nanosecond mtime, ctime, inode)
        // decides beside size and whole-second mtime.
        (
            tagged(obj(1, 1, None), 3),
            Some(tagged_prior(prior(Verified, 1, 1, None), 3)),
            SizeMtime,
            Listed::Seen(9, None),
        ),
        (
            tagged(obj(1, 1, None), 4),
            Some(tagged_prior(prior(Verified, 1, 1, None), 3)),
            SizeMtime,
            Listed::Copy(Change::Changed),
        ),
        // A row from before tags: compared without, and given the tag.
        (
            tagged(obj(1, 1, None), 4),
            Some(prior(Verified, 1, 1, None)),
            SizeMtime,
            Listed::Seen(9, Some(4)),
        ),
        // Buckets: a new LastModified with the same ETag is the same object.
        (
            obj(1, 7, Some("e1")),
            Some(prior(Verified, 1, 1, Some("e1"))),
            SizeEtag,
            Listed::Seen(9, None),
        ),
        (
            obj(1, 1, Some("e2")),
            Some(prior(Verified, 1, 1, Some("e1"))),
            SizeEtag,
            Listed::Copy(Change::Changed),
        ),
        // Metadata copied: a new LastModified alone is a metadata change
        // (the bytes may be left where they are), a new ETag a change.
        (
            obj(1, 7, Some("e1")),
            Some(prior(Verified, 1, 1, Some("e1"))),
            SizeEtagMtime,
            Listed::Copy(Change::Metadata),
        ),
        (
            obj(1, 7, Some("e1")),
            Some(prior(Failed, 1, 1, Some("e1"))),
            SizeEtagMtime,
            Listed::Copy(Change::Changed),
        ),
        (
            obj(1, 7, Some("e2")),
            Some(prior(Verified, 1, 1, Some("e1"))),
            SizeEtagMtime,
            Listed::Copy(Change::Changed),
        ),
        (
            obj(1, 1, Some("e1")),
            Some(prior(Verified, 1, 1, Some("e1"))),
            SizeEtagMtime,
            Listed::Seen(9, None),
        ),
        // URL lists: sizes are known only after download.
        (
            obj(0, 0, Some("http://h/a")),
            Some(prior(Verified, 99, 5, Some("http://h/a"))),
            Url,
            Listed::Seen(9, None),
        ),
        (
            obj(0, 0, Some("http://h/b")),
            Some(prior(Verified, 99, 5, Some("http://h/a"))),
            Url,
            Listed::Copy(Change::Changed),
        ),
    ];
    for (o, p, how, want) in cases {
        assert_eq!(
            classify(&o, p.as_ref(), how),
            want,
            "{o:?} against {p:?} by {how:?}"
        );
    }
    // A name the store refuses fails the same way each pass: not retried.
    let mut bad = obj(1, 1, None);
    bad.failure = Some(("INVALID_KEY".into(), "x".into()));
    let mut was = prior(Failed, 1, 1, None);
    was.error_code = Some("INVALID_KEY".into());
    assert_eq!(classify(&bad, Some(&was), SizeMtime), Listed::Seen(9, None));
}

/// Every relative path the store holds for the job, sorted, and whether
/// any was recorded twice.
fn recorded(store: &Store) -> (Vec<String>, bool) {
    let mut v: Vec<String> = store
        .objects()
        .unwrap()
        .into_iter()
        .map(|o| o.rel_path)
        .collect();
    v.sort();
    let n = v.len();
    let mut d = v.clone();
    d.dedup();
    (d.clone(), d.len() != n)
}

/// A tree with files at every depth, empty directories, a directory
/// symlink and names that sort around `/`.
fn deep_tree(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for i in 0..n {
        let rel = match i % 5 {
            0 => format!("top-{i}"),
            1 => format!("a/{}/f{i}", i % 7),
            2 => format!("a/{}/deeper/{}/f{i}", i % 3, i % 11),
            3 => format!("a-b/{i}"),
            _ => format!("z/{}/{}/{}/f{i}", i % 2, i % 3, i % 5),
        };
        let p = r.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }
    std::fs::create_dir_all(r.join("empty/inner")).unwrap();
    std::os::unix::fs::symlink(r.join("a"), r.join("link-to-a")).unwrap();
    dir
}

/// 1 thread and 8 threads at split depths 1..3 list the same set; a
/// parallel listing cancelled after a few tasks and resumed lists every
/// object exactly once, and tasks stay within the count limit.
#[test]
fn parallel_listing_matches_the_single_walk_and_resumes_each_branch() {
    let src = deep_tree(3_000);
    let run = |threads: usize, depth: usize, kill_after: Option<usize>| {
        let db = tempfile::tempdir().unwrap();
        let store = Store::open(&db.path().join("s.db")).unwrap();
        let job = store.create_job("par", "{}", "").unwrap();
        let mut c = cfg(src.path(), 50);
        c.threads = threads;
        c.split_depth = depth;
        if let Some(k) = kill_after {
            let stop = CancellationToken::new();
            let seen = std::sync::atomic::AtomicUsize::new(0);
            let first = scan(&store, job, &c, &stop, |_, _| {
                if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= k {
                    stop.cancel();
                }
            })
            .unwrap();
            assert!(!first.finished(), "the listing ended before the kill");
            let partial = recorded(&store);
            assert!(!partial.1, "a path recorded twice before the kill");
            assert!(partial.0.len() < 3_000);
        }
        let done = scan(&store, job, &c, &CancellationToken::new(), |_, objs| {
            assert!(objs.len() <= 50, "a task of {}", objs.len());
        })
        .unwrap();
        assert!(done.finished());
        let (paths, dup) = recorded(&store);
        assert!(
            !dup,
            "{threads} threads, depth {depth}: a path recorded twice"
        );
        paths
    };
    let want = run(1, 1, None);
    assert_eq!(want.len(), 3_000);
    for depth in 1..=3 {
        assert_eq!(run(8, depth, None), want, "8 threads, depth {depth}");
    }
    assert_eq!(run(8, 2, Some(5)), want, "killed and resumed");
    assert_eq!(run(1, 1, Some(5)), want, "single walk killed and resumed");
}

/// A destination that does not tell case apart (`DestCase::Fold`; the
/// probe decides it in a job, and the test machines have no such file
/// system): `Photo.jpg` and `photo.JPG` are one key, the second listed is
/// `DUPLICATE_KEY`; with threads asked for (the listing is then one walk,
/// so the same name wins every pass) and across a second pass the rule
/// holds and nothing is recorded twice.
#[test]
fn keys_differing_only_in_case_are_duplicates_for_a_case_insensitive_destination() {
    let src = tempfile::tempdir().unwrap();
    for p in ["a/photo.JPG", "A/Photo.jpg", "a/other", "b/X", "B/x", "c"] {
        let path = src.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, p.as_bytes()).unwrap();
    }
    for threads in [1, 4] {
        let db = tempfile::tempdir().unwrap();
        let store = Store::open(&db.path().join("s.db")).unwrap();
        let job = store.create_job("fold", "{}", "").unwrap();
        let mut c = cfg(src.path(), 2);
        c.threads = threads;
        c.dest_case = DestCase::Fold;
        for pass in 1..=2 {
            if pass == 2 {
                store.begin_pass(job).unwrap();
            }
            let out = scan(&store, job, &c, &CancellationToken::new(), |_, _| {}).unwrap();
            assert!(out.finished());
            let rows = store.objects().unwrap();
            let dups: Vec<&str> = rows
                .iter()
                .filter(|o| o.error_code.as_deref() == Some("DUPLICATE_KEY"))
                .map(|o| o.rel_path.as_str())
                .collect();
            assert_eq!(dups.len(), 2, "threads {threads}, pass {pass}: {dups:?}");
            // The second of each pair in the walk's order (raw bytes).
            assert_eq!(
                dups,
                ["a/photo.JPG", "b/X"],
                "threads {threads}, pass {pass}"
            );
            assert_eq!(rows.len(), 6, "threads {threads}, pass {pass}");
        }
        let msg = store
            .objects()
            .unwrap()
            .into_iter()
            .find_map(|o| o.error.filter(|e| e.contains("upper from lower case")));
        assert!(msg.is_some());
    }
}

#[test]
fn the_key_filter_never_misses_a_key_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("l");
    std::fs::write(&list, vec![b'x'; 4000]).unwrap();
    let mut f = KeyFilter::for_list(&list);
    let keys: Vec<String> = (0..20_000)
        .map(|i| format!("d{}/k{i}.bin", i % 97))
        .collect();
    for k in &keys[..10_000] {
        f.insert(k);
    }
    assert!(keys[..10_000].iter().all(|k| f.may_contain(k)));
    // The rest mostly known new (a hit only costs a store lookup).
    let hits = keys[10_000..].iter().filter(|k| f.may_contain(k)).count();
    assert!(hits < 500, "{hits} false positives of 10,000");
}
