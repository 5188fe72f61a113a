//! Store behaviour: task commit with checkpoint, leasing, idempotent results,
//! resume of multipart parts, and surviving a reopen.

use proto::job::{Event, ObjectResult, Outcome, PartRecord};

use super::schema::{
    SCHEMA_V1, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8, SCHEMA_V9,
    SCHEMA_V10,
};
use super::*;

fn obj(p: &str, size: u64) -> NewObject {
    NewObject {
        rel_path: p.into(),
        size,
        mtime: 1,
        ident: None,
        src_ref: None,
        failure: None,
    }
}

fn verified(object_id: i64, task_id: i64) -> Event {
    Event::ObjectDone(ObjectResult {
        object_id,
        task_id,
        outcome: Outcome::Verified,
        size: 1,
        crc64: Some(7),
        md5: Some("00".into()),
        etag: Some("00".into()),
        verified_by: "size+md5".into(),
        error: None,
        retries: 0,
        parts_resumed: 0,
        source_ident: None,
        metadata: None,
    })
}

#[test]
fn lease_record_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let job = store.create_job("job1", "{}", "fp").unwrap();
    let t1 = store
        .commit_task(job, &[obj("a", 1), obj("b", 2)], "[\"b\"]")
        .unwrap();
    store
        .commit_task(
            job,
            &[NewObject {
                rel_path: "bad".into(),
                size: 0,
                mtime: 0,
                ident: None,
                src_ref: None,
                failure: Some(("LIST_ERROR".into(), "x".into())),
            }],
            "[\"bad\"]",
        )
        .unwrap();
    assert_eq!(
        store.scan_checkpoint(job).unwrap(),
        Checkpoint {
            done: false,
            position: Some("[\"bad\"]".into())
        }
    );

    let leased = store.lease_tasks(job, 10, "A", 0).unwrap();
    assert_eq!(leased.len(), 2);
    assert_eq!(leased[0].objects.len(), 2);
    assert!(
        leased[1].objects.is_empty(),
        "objects failed at listing are not dispatched"
    );
    let a = leased[0].objects[0].object_id;
    let b = leased[0].objects[1].object_id;

    // The same result twice counts once.
    let r = store
        .record(&[("A", &[verified(a, t1), verified(a, t1)])])
        .unwrap();
    assert_eq!(r.objects.len(), 1, "one object became final");
    let c = store.counts(job).unwrap();
    assert_eq!((c.objects, c.verified, c.pending, c.failed), (3, 1, 1, 1));
    // Another executor does not speak for A's task.
    let r = store.record(&[("B", &[verified(b, t1)])]).unwrap();
    assert_eq!((r.dropped, r.objects.len()), (1, 0));

    // A killed process: reopen, requeue, and only the unfinished object comes back.
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.requeue_dispatched(job).unwrap(), 2);
    let leased = store.lease_tasks(job, 10, "B", 0).unwrap();
    let ids: Vec<i64> = leased
        .iter()
        .flat_map(|t| t.objects.iter().map(|o| o.object_id))
        .collect();
    assert_eq!(ids, vec![b]);
    // A's late report of the task now leased to B is dropped.
    let r = store
        .record(&[("A", &[verified(b, t1), Event::TaskDone { task_id: t1 }])])
        .unwrap();
    assert_eq!((r.dropped, r.tasks_done), (2, 0));
    let r = store
        .record(&[("B", &[verified(b, t1), Event::TaskDone { task_id: t1 }])])
        .unwrap();
    assert_eq!((r.dropped, r.tasks_done, r.objects[0].job_id), (0, 1, job));
    let c = store.counts(job).unwrap();
    assert_eq!((c.verified, c.pending, c.tasks_done), (2, 0, 1));
}

#[test]
fn parts_are_offered_for_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let job = store.create_job("job2", "{}", "fp").unwrap();
    store
        .commit_task(job, &[obj("big", 100)], "[\"big\"]")
        .unwrap();
    let leased = store.lease_tasks(job, 1, "A", 0).unwrap();
    let id = leased[0].objects[0].object_id;
    let part = PartRecord {
        number: 1,
        size: 50,
        etag: "e".into(),
        md5: "m".into(),
        crc64: u64::MAX,
        nvme: Some(u64::MAX - 1),
    };
    store
        .record(&[(
            "A",
            &[
                Event::UploadStarted {
                    object_id: id,
                    upload_id: "up".into(),
                    part_size: 50,
                },
                Event::PartDone {
                    object_id: id,
                    part: part.clone(),
                },
            ],
        )])
        .unwrap();
    store.requeue_dispatched(job).unwrap();
    let leased = store.lease_tasks(job, 1, "A", 0).unwrap();
    let resume = leased[0].objects[0].resume.clone().unwrap();
    assert_eq!(resume.upload_id, "up");
    assert_eq!(resume.parts, vec![part]);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Store::open(&path).err().unwrap();
    assert!(err.to_string().contains("schema 99"), "{err}");
}

#[test]
fn ids_are_never_reused_and_v1_stores_migrate_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    // A store as the previous schema wrote it, with one job, task and object.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(
            "INSERT INTO jobs (id, name, config, fingerprint, state, created_at, updated_at)
                 VALUES (7, 'old', '{}', 'fp', 'running', 0, 0);
             INSERT INTO tasks (id, job_id, state, object_count, byte_count) VALUES (9, 7, 'pending', 1, 1);
             INSERT INTO objects (id, job_id, task_id, rel_path, size, mtime, state)
                 VALUES (11, 7, 9, 'a', 1, 1, 'pending');
             INSERT INTO parts (object_id, number, size, etag, md5, crc64) VALUES (11, 1, 1, 'e', 'm', '0');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let old = store.find_job("old").unwrap().unwrap();
    assert_eq!(old.id, 7);
    let parts: i64 = store
        .lock()
        .query_row("SELECT count(*) FROM parts WHERE object_id = 11", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(parts, 1);
    // Clean it: every table is empty again, yet the next ids are new.
    store.delete_job(7).unwrap();
    let job = store.create_job("old", "{}", "fp").unwrap();
    let task = store.commit_task(job, &[obj("a", 1)], "[\"a\"]").unwrap();
    assert!(job > 7 && task > 9, "job {job}, task {task}");
    let t = store.lease_tasks(job, 1, "agent", 0).unwrap();
    assert!(t[0].objects[0].object_id > 11);
    let version: i64 = store
        .lock()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    // And once more after a reopen.
    store.delete_job(job).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert!(store.create_job("old", "{}", "fp").unwrap() > job);
}

#[test]
fn a_second_opener_is_refused_with_the_holder_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let first = Store::open(&path).unwrap();
    let err = Store::open(&path).err().unwrap().to_string();
    assert!(
        err.contains("is in use by pid") && err.contains(&std::process::id().to_string()),
        "{err}"
    );
    drop(first);
    Store::open(&path).unwrap();
}

/// `counts` as schema 4 computed it: grouped over every object of the job.
fn grouped(store: &Store, job: i64) -> Vec<(String, i64, i64, i64)> {
    let conn = store.lock();
    let mut q = conn
        .prepare(
            "SELECT state, count(*), sum(size), sum(retries) FROM objects WHERE job_id = ?1
             GROUP BY state ORDER BY state",
        )
        .unwrap();
    q.query_map([job], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The counts the triggers keep, in the same shape.
fn kept(store: &Store, job: i64) -> Vec<(String, i64, i64, i64)> {
    let conn = store.lock();
    let mut q = conn
        .prepare(
            "SELECT state, n, bytes, retries FROM object_counts WHERE job_id = ?1 AND n > 0
             ORDER BY state",
        )
        .unwrap();
    q.query_map([job], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn kept_counts_equal_a_full_count_through_every_path_that_writes_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let (a, b) = (
        store.create_job("a", "{}", "fp").unwrap(),
        store.create_job("b", "{}", "fp").unwrap(),
    );
    let check = |what: &str| {
        for job in [a, b] {
            assert_eq!(kept(&store, job), grouped(&store, job), "{what}, job {job}");
        }
    };
    // Planned: two tasks, one object failed at listing.
    let mut listed: Vec<NewObject> = (0..20).map(|i| obj(&format!("f{i:02}"), i)).collect();
    listed.push(NewObject {
        failure: Some(("LIST_ERROR".into(), "unreadable".into())),
        ..obj("bad", 0)
    });
    store.commit_task(a, &listed[..10], "1").unwrap();
    store.commit_task(a, &listed[10..], "2").unwrap();
    store.commit_task(b, &listed[..5], "1").unwrap();
    check("planned");
    // Results: verified (with its size learnt at copy), failed with
    // retries, skipped; one duplicate and one from a stranger.
    let leased = store.lease_tasks(a, 10, "A", i64::MAX / 2).unwrap();
    let mut events = Vec::new();
    for (i, o) in leased.iter().flat_map(|t| &t.objects).enumerate() {
        let outcome = [Outcome::Verified, Outcome::Failed, Outcome::Skipped][i % 3];
        events.push(Event::ObjectDone(ObjectResult {
            object_id: o.object_id,
            task_id: leased[0].task_id,
            outcome,
            size: 1000 + i as u64,
            crc64: Some(1),
            md5: None,
            etag: None,
            verified_by: "size".into(),
            error: (outcome == Outcome::Failed).then(|| proto::job::ObjectError {
                code: proto::job::ErrorCode::SourceUnreadable,
                message: "reset".into(),
            }),
            retries: i as u32,
            parts_resumed: 0,
            source_ident: None,
            metadata: None,
        }));
    }
    let again = events[0].clone();
    events.push(again);
    store.record(&[("A", &events)]).unwrap();
    store.record(&[("B", &events[..3])]).unwrap();
    check("recorded");
    // Retried, then requeued after a crash.
    store.retry_failed(a).unwrap();
    check("retried");
    store.requeue_dispatched(a).unwrap();
    check("requeued");
    // A job deleted (`clean`) leaves the other's counts and no rows of its own.
    store.delete_job(b).unwrap();
    check("job b deleted");
    assert!(kept(&store, b).is_empty());
    let c = store.counts(a).unwrap();
    assert_eq!(c.objects, 21);
    assert_eq!(c.objects, c.pending + c.verified + c.skipped + c.failed);
}

#[test]
fn a_schema_4_store_gets_its_counts_on_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    {
        let store = Store::open(&path).unwrap();
        let job = store.create_job("old", "{}", "fp").unwrap();
        let objs: Vec<NewObject> = (0..50).map(|i| obj(&format!("o{i}"), i)).collect();
        store.commit_task(job, &objs, "1").unwrap();
        let leased = store.lease_tasks(job, 1, "A", i64::MAX / 2).unwrap();
        let ids: Vec<i64> = leased[0].objects.iter().map(|o| o.object_id).collect();
        let events: Vec<Event> = ids[..20]
            .iter()
            .map(|&id| verified(id, leased[0].task_id))
            .collect();
        store.record(&[("A", &events)]).unwrap();
        // Back to what schema 4 had: no kept counts, the old index.
        store
            .lock()
            .execute_batch(
                "DROP TRIGGER object_counts_insert; DROP TRIGGER object_counts_delete;
                 DROP TRIGGER object_counts_update; DROP TRIGGER object_counts_job_delete;
                 DROP TABLE object_counts;
                 CREATE INDEX objects_job_state ON objects(job_id, state);
                 ALTER TABLE objects DROP COLUMN ident;
                 ALTER TABLE objects DROP COLUMN meta_sha256;
                 ALTER TABLE objects DROP COLUMN prior_etag;
                 ALTER TABLE parts DROP COLUMN nvme;
                 ALTER TABLE jobs DROP COLUMN owner_uid;
                 ALTER TABLE jobs DROP COLUMN owner_name;
                 DROP TABLE control_log;
                 ALTER TABLE tasks DROP COLUMN first_object;
                 ALTER TABLE tasks DROP COLUMN last_object;
                 DROP TABLE url_prefixes;
                 CREATE INDEX objects_task ON objects(task_id);
                 PRAGMA user_version = 4;",
            )
            .unwrap();
        // Values schema 4 kept as listed and sent, which look like
        // schema 5's markers.
        store
            .lock()
            .execute(
                "UPDATE objects SET etag = '=odd', src_ref = '+odd' WHERE id = ?1",
                [ids[0]],
            )
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let job = store.find_job("old").unwrap().unwrap().id;
    assert_eq!(kept(&store, job), grouped(&store, job));
    let c = store.counts(job).unwrap();
    assert_eq!((c.objects, c.verified, c.pending), (50, 20, 30));
    let row = &store.manifest_page(job, 0, 1).unwrap()[0];
    assert_eq!(
        (row.source.as_str(), row.dest_etag.as_deref()),
        ("+odd", Some("=odd")),
        "values of schema 4 read back as they were"
    );
    let indexes: Vec<String> = {
        let conn = store.lock();
        let mut q = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'objects'")
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut indexes = indexes;
    indexes.sort();
    assert_eq!(
        indexes,
        ["objects_job_failed", "objects_job_path"],
        "migrated through schemas 5, 10 and 11"
    );
}

/// What schema 10's indexes are for, as SQLite plans it: a result's
/// update finds its row by id; the failures of a job come from the partial
/// index of failed objects (in path order, without a sort); a path of a
/// job (the listing's duplicate check, a pass's comparison) from the index
/// by job and path.
#[test]
fn objects_job_path_use_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let conn = store.lock();
    let plan = |sql: &str| -> String {
        let mut q = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = q.parameter_count();
        let args: Vec<i64> = vec![1; n];
        q.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .join("; ")
    };
    let failed = plan(
        "SELECT rel_path FROM objects WHERE job_id = ?1 AND state = 'failed' AND (?2 IS NULL OR rel_path > ?2)
         ORDER BY rel_path, id LIMIT ?3",
    );
    assert!(failed.contains("INDEX objects_job_failed"), "{failed}");
    assert!(!failed.contains("TEMP B-TREE FOR ORDER BY"), "{failed}");
    let count = plan("SELECT COUNT(*) FROM objects WHERE job_id = ?1 AND state = 'failed'");
    assert!(count.contains("objects_job_failed"), "{count}");
    let by_path = plan(
        "SELECT id FROM objects WHERE job_id = ?1 AND state IN (?3, ?4, ?5) AND rel_path = ?2",
    );
    assert!(
        by_path.contains("objects_job_path (job_id=? AND rel_path=?)"),
        "{by_path}"
    );
    let result = plan("UPDATE objects SET state = ?2 WHERE id = ?1 AND state = ?3");
    assert!(result.contains("INTEGER PRIMARY KEY (rowid=?)"), "{result}");
    // A task's objects (schema 11): the range of their ids, no index.
    let leased = plan(
        "SELECT id FROM objects
         WHERE id BETWEEN (SELECT first_object FROM tasks WHERE id = ?1)
                      AND (SELECT last_object FROM tasks WHERE id = ?1)
           AND task_id = ?1 AND state = ?2 ORDER BY id",
    );
    assert!(
        leased.contains("INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
        "{leased}"
    );
    let running = plan(
        "SELECT t.id, count(o.id) FROM tasks t LEFT JOIN objects o
           ON o.id BETWEEN t.first_object AND t.last_object AND o.task_id = t.id
         WHERE t.job_id = ?1 AND t.state = ?2 GROUP BY t.id",
    );
    assert!(
        running.contains("INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
        "{running}"
    );
}

#[test]
fn a_result_counts_only_for_an_object_of_the_leased_task_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let job = store.create_job("job", "{}", "fp").unwrap();
    let t1 = store.commit_task(job, &[obj("a", 1)], "1").unwrap();
    let t2 = store.commit_task(job, &[obj("b", 1)], "2").unwrap();
    let mine = store.lease_tasks(job, 1, "A", i64::MAX / 2).unwrap();
    let theirs = store.lease_tasks(job, 1, "B", i64::MAX / 2).unwrap();
    assert_eq!((mine[0].task_id, theirs[0].task_id), (t1, t2));
    let b = theirs[0].objects[0].object_id;
    // A names its own task for B's object: dropped, nothing changes.
    let r = store.record(&[("A", &[verified(b, t1)])]).unwrap();
    assert_eq!((r.dropped, r.objects.len()), (1, 0));
    assert_eq!(store.counts(job).unwrap().verified, 0);
    // After its TaskDone in the same report, A's task is no longer
    // leased: a result behind it is dropped too.
    let a = mine[0].objects[0].object_id;
    let r = store
        .record(&[("A", &[Event::TaskDone { task_id: t1 }, verified(a, t1)])])
        .unwrap();
    assert_eq!((r.tasks_done, r.dropped), (1, 1));
    // B's own result counts, and its repeat is no drop, only a no-op.
    let r = store
        .record(&[("B", &[verified(b, t2), verified(b, t2)])])
        .unwrap();
    assert_eq!((r.dropped, r.objects.len()), (0, 1));
    assert_eq!(store.counts(job).unwrap().verified, 1);
}

/// The store, its WAL and its shared-memory file are never readable by
/// others, whatever the umask (before, the WAL and SHM were created 0644
/// ahead of the daemon narrowing the database), and an older store left
/// 0644 is narrowed when it is opened.
#[test]
fn the_store_and_its_wal_are_private_from_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let mode = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::metadata(std::path::Path::new(&p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    {
        let s = Store::open(&path).unwrap();
        s.create_job("j", "{}", "fp").unwrap();
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode(suffix), 0o600, "jobs.db{suffix}");
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _s = Store::open(&path).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        assert_eq!(mode(suffix), 0o600, "jobs.db{suffix} after a reopen");
    }
}

/// `verified_by` is stored as the evidence's bits in digits (schema 10);
/// a row written before keeps its words; both read as words, and `report`'s
/// methods count them as one.
#[test]
fn evidence_is_stored_as_bits_and_older_words_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    let job = store.create_job("job1", "{}", "fp").unwrap();
    let t = store
        .commit_task(job, &[obj("a", 1), obj("b", 1), obj("c", 1)], "[\"c\"]")
        .unwrap();
    let leased = store.lease_tasks(job, 10, "A", 0).unwrap();
    let ids: Vec<i64> = leased[0].objects.iter().map(|o| o.object_id).collect();
    store
        .record(&[("A", &[verified(ids[0], t), verified(ids[1], t)])])
        .unwrap();
    {
        let conn = store.lock();
        let stored: String = conn
            .query_row(
                "SELECT verified_by FROM objects WHERE id = ?1",
                [ids[0]],
                |r| r.get(0),
            )
            .unwrap();
        let bits = proto::job::Evidence::parse("size+md5").bits();
        assert_eq!(stored, bits.to_string());
        // As a build before schema 10 wrote it.
        conn.execute(
            "UPDATE objects SET verified_by = 'size+md5' WHERE id = ?1",
            [ids[1]],
        )
        .unwrap();
        // A bit no proof has is never read as proof.
        conn.execute(
            "UPDATE objects SET state = 'verified', verified_by = '32768' WHERE id = ?1",
            [ids[2]],
        )
        .unwrap();
    }
    let by: Vec<(String, Option<String>)> = store
        .objects()
        .unwrap()
        .into_iter()
        .map(|o| (o.rel_path, o.verified_by))
        .collect();
    assert_eq!(
        by,
        [
            ("a".to_string(), Some("size+md5".to_string())),
            ("b".to_string(), Some("size+md5".to_string())),
            ("c".to_string(), Some(String::new())),
        ]
    );
    assert_eq!(
        store.verify_methods(job).unwrap(),
        [
            ("verified:".to_string(), 1, 1),
            ("verified:size+md5".to_string(), 2, 2)
        ]
    );
}

/// A store as a build of schema 10 left it: two tasks of a URL-list job
/// (rows holding `+prefix`) and their index by task, with the foreign key
/// from each object to its task. Schema 11 finds a task's objects by their
/// ids, keeps each prefix once, and drops the index and the key; every
/// row reads as before, and new rows keep a prefix's reference.
#[test]
fn a_schema_10_store_finds_tasks_by_id_range_and_keeps_prefixes_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v10.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        let v2 = SCHEMA_V1.replace(
            "id INTEGER PRIMARY KEY,",
            "id INTEGER PRIMARY KEY AUTOINCREMENT,",
        );
        for batch in [
            v2.as_str(),
            SCHEMA_V3,
            SCHEMA_V4,
            SCHEMA_V5,
            SCHEMA_V6,
            SCHEMA_V7,
            SCHEMA_V8,
            SCHEMA_V9,
            SCHEMA_V10,
        ] {
            tx.execute_batch(batch).unwrap();
        }
        tx.execute_batch(
            "INSERT INTO jobs (id, name, config, fingerprint, state, created_at, updated_at)
                 VALUES (1, 'urls', '{}', 'fp', 'running', 0, 0);
             INSERT INTO tasks (id, job_id, state, object_count, byte_count) VALUES (1, 1, 'pending', 2, 2);
             INSERT INTO tasks (id, job_id, state, object_count, byte_count) VALUES (2, 1, 'pending', 2, 2);
             INSERT INTO objects (id, job_id, task_id, rel_path, size, mtime, state, src_ref)
                 VALUES (1, 1, 1, 'a/1', 1, 1, 'pending', '+http://h/x/'),
                        (2, 1, 1, 'a/2', 1, 1, 'verified', '+http://h/x/'),
                        (3, 1, 2, 'b/1', 1, 1, 'pending', 'http://h/elsewhere'),
                        (4, 1, 2, 'b/2', 1, 1, 'failed', '\\+odd');
             PRAGMA user_version = 10;",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    {
        let conn = store.lock();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let spans: Vec<(i64, i64)> = conn
            .prepare("SELECT first_object, last_object FROM tasks ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(spans, [(1, 2), (3, 4)]);
        let keys: Vec<String> = conn
            .prepare("SELECT \"table\" FROM pragma_foreign_key_list('objects')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            keys,
            ["jobs"],
            "the key to tasks is gone, the key to jobs kept"
        );
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
    // Each task leases its own pending objects, with their sources as listed.
    let leased = store.lease_tasks(1, 2, "A", i64::MAX / 2).unwrap();
    type Leased = Vec<(i64, Vec<(String, Option<String>)>)>;
    let got: Leased = leased
        .iter()
        .map(|t| {
            let objects = t
                .objects
                .iter()
                .map(|o| (o.rel_path.clone(), o.src_ref.clone()));
            (t.task_id, objects.collect())
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, vec![("a/1".into(), Some("http://h/x/a/1".into()))]),
            (2, vec![("b/1".into(), Some("http://h/elsewhere".into()))]),
        ]
    );
    let running: Vec<(i64, u64)> = store
        .running_tasks(1)
        .unwrap()
        .iter()
        .map(|t| (t.task_id, t.files_done))
        .collect();
    assert_eq!(running, [(1, 1), (2, 1)]);
    let sources: Vec<String> = store
        .manifest_page(1, 0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.source)
        .collect();
    assert_eq!(
        sources,
        [
            "http://h/x/a/1",
            "http://h/x/a/2",
            "http://h/elsewhere",
            "+odd"
        ]
    );
    // A new task of the same job: its rows keep the prefix's reference,
    // the prefix is kept once, and its objects are its own.
    let urls = |names: &[&str]| -> Vec<NewObject> {
        names
            .iter()
            .map(|n| NewObject {
                src_ref: Some(format!("http://h/x/{n}")),
                ..obj(n, 1)
            })
            .collect()
    };
    let t3 = store
        .commit_task(1, &urls(&["c/1", "c/2", "c/3"]), "c")
        .unwrap();
    let t4 = store.commit_task(1, &urls(&["d/1"]), "d").unwrap();
    {
        let conn = store.lock();
        let stored: Vec<(String, Vec<u8>)> = conn
            .prepare("SELECT typeof(src_ref), src_ref FROM objects WHERE task_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([t3], |r| {
                Ok((r.get(0)?, r.get_ref(1)?.as_bytes().unwrap().to_vec()))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            stored.iter().all(|(t, r)| t == "blob" && r.len() == 1),
            "{stored:?}"
        );
        let prefixes: i64 = conn
            .query_row("SELECT count(*) FROM url_prefixes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(prefixes, 1);
    }
    let leased = store.lease_tasks(1, 2, "B", i64::MAX / 2).unwrap();
    let got: Vec<(i64, Vec<String>)> = leased
        .iter()
        .map(|t| {
            let urls = t
                .objects
                .iter()
                .map(|o| o.src_ref.clone().unwrap_or_default());
            (t.task_id, urls.collect())
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                t3,
                vec![
                    "http://h/x/c/1".into(),
                    "http://h/x/c/2".into(),
                    "http://h/x/c/3".into()
                ]
            ),
            (t4, vec!["http://h/x/d/1".into()]),
        ]
    );
    // A job cleaned: its tasks go without the key, and so do its objects.
    store.delete_job(1).unwrap();
    let left: i64 = store
        .lock()
        .query_row(
            "SELECT (SELECT count(*) FROM objects) + (SELECT count(*) FROM tasks)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}
