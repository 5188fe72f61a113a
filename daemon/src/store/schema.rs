//! The job store's schema, version by version, and the migration of an
//! older store forward at open (each step in its own transaction).

use super::*;

/// Schema version this build writes; older databases are migrated forward.
/// 2: job, task and object ids are AUTOINCREMENT, so an id is never given
/// twice, not even after `clean` emptied a table (a late result for a
/// cleaned job can then never land on a new job's object).
/// 3: listing passes (incremental jobs): `jobs.pass`, `jobs.next_pass_at`,
/// the pass each object was listed in and last seen in, the pass that
/// found it gone, and one `passes` row per pass; and the branches of a
/// parallel listing (`scan_branches`), each with its own checkpoint.
pub(super) const SCHEMA_VERSION: i64 = 11;

/// What schema 5 adds: each job's object counts by state, kept by triggers
/// on every insert, update and delete of an object, so `stat` reads a few
/// rows instead of grouping a job of millions. The triggers see every
/// path that writes objects (scan, results, retries, passes, deletion), and
/// the migration fills the table from the objects already there. Stored
/// values that would read as `store/compact.rs`'s markers are escaped.
/// `objects_job_state` goes: `objects_job_state_path` starts with the same
/// columns, and each index costs bytes per object.
pub(super) const SCHEMA_V5: &str = "
CREATE TABLE object_counts (
    job_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    PRIMARY KEY (job_id, state)
) WITHOUT ROWID;
CREATE TRIGGER object_counts_insert AFTER INSERT ON objects BEGIN
    INSERT INTO object_counts (job_id, state, n, bytes, retries)
    VALUES (NEW.job_id, NEW.state, 1, NEW.size, NEW.retries)
    ON CONFLICT (job_id, state) DO UPDATE SET
        n = n + 1, bytes = bytes + excluded.bytes, retries = retries + excluded.retries;
END;
CREATE TRIGGER object_counts_delete AFTER DELETE ON objects BEGIN
    UPDATE object_counts SET n = n - 1, bytes = bytes - OLD.size, retries = retries - OLD.retries
    WHERE job_id = OLD.job_id AND state = OLD.state;
END;
CREATE TRIGGER object_counts_update AFTER UPDATE OF job_id, state, size, retries ON objects BEGIN
    UPDATE object_counts SET n = n - 1, bytes = bytes - OLD.size, retries = retries - OLD.retries
    WHERE job_id = OLD.job_id AND state = OLD.state;
    INSERT INTO object_counts (job_id, state, n, bytes, retries)
    VALUES (NEW.job_id, NEW.state, 1, NEW.size, NEW.retries)
    ON CONFLICT (job_id, state) DO UPDATE SET
        n = n + 1, bytes = bytes + excluded.bytes, retries = retries + excluded.retries;
END;
CREATE TRIGGER object_counts_job_delete AFTER DELETE ON jobs BEGIN
    DELETE FROM object_counts WHERE job_id = OLD.id;
END;
INSERT INTO object_counts (job_id, state, n, bytes, retries)
    SELECT job_id, state, count(*), coalesce(sum(size), 0), coalesce(sum(retries), 0)
    FROM objects GROUP BY job_id, state;
UPDATE objects SET etag = '\\' || etag WHERE substr(etag, 1, 1) IN ('=', '^', '\\');
UPDATE objects SET src_ref = '\\' || src_ref WHERE substr(src_ref, 1, 1) IN ('+', '\\');
DROP INDEX IF EXISTS objects_job_state;
CREATE INDEX IF NOT EXISTS objects_job_state_path ON objects(job_id, state, rel_path);
";

/// What schema 6 adds: a local source's identity tag beside size and
/// whole-second mtime (`storage::beneath::Identity::tag`; NULL for other
/// sources and for rows listed before it existed, which a later pass
/// compares by size and mtime once and then fills in).
///
/// And who submitted each job (NULL for jobs submitted before: only
/// administrators may act on those), and the trail of every
/// state-changing control call, kept after `clean` (it names the job).
pub(super) const SCHEMA_V6: &str = "
ALTER TABLE objects ADD COLUMN ident INTEGER;
ALTER TABLE jobs ADD COLUMN owner_uid INTEGER;
ALTER TABLE jobs ADD COLUMN owner_name TEXT;
CREATE TABLE control_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT,
    at INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    user TEXT NOT NULL,
    verb TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX control_log_job ON control_log(job, id);
";

/// The digest of an object's metadata (`ObjectResult::metadata`), for the
/// manifest's `metadata` column.
pub(super) const SCHEMA_V7: &str = "
ALTER TABLE objects ADD COLUMN meta_sha256 TEXT;
";

/// A part's CRC-64/NVME, where it was sent with one (an upload whose
/// Complete carries the full object's), so a resumed upload completes
/// with it.
pub(super) const SCHEMA_V8: &str = "
ALTER TABLE parts ADD COLUMN nvme TEXT;
";

/// What schema 9 adds: on a row queued again for a key the job had
/// written, the ETag it verified there (`overwriteMode=ours` writes only
/// while the destination still holds it).
pub(super) const SCHEMA_V9: &str = "
ALTER TABLE objects ADD COLUMN prior_etag TEXT;
";

/// What schema 10 changes: results write `verified_by` as the evidence's
/// bits in digits (`store/compact.rs`), which a build before it could not
/// read (it refuses the store instead: `TooNew`). And the index by job,
/// state and path becomes one by job and path, which a result never moves
/// (a result changes the state, not the path: one index entry less
/// rewritten per result, and no state in each entry), beside one of the
/// failed objects only, which the queries of failures name literally
/// (`state = 'failed'`: a partial index serves only a query whose own
/// text implies its condition). `objects_job_path_use_their_indexes` holds
/// the plans.
pub(super) const SCHEMA_V10: &str = "
DROP INDEX IF EXISTS objects_job_state_path;
CREATE INDEX IF NOT EXISTS objects_job_path ON objects(job_id, rel_path);
CREATE INDEX IF NOT EXISTS objects_job_failed ON objects(job_id, rel_path) WHERE state = 'failed';
";

/// What schema 11 changes, for the bytes each object costs (at a hundred
/// million objects, each byte is 100 MB of store):
///
/// - A task's objects are found by their id range, kept on the task
///   (`first_object`, `last_object`: a task's objects are inserted in one
///   transaction, so their ids are consecutive; every query still names
///   the task too), instead of an index by task of every object (12-14
///   bytes an object). Without that index, the foreign key from an object
///   to its task would make each deleted task a scan of every object, so
///   it goes (by [`drop_task_reference`]); a job's objects are deleted
///   with it, before its tasks (`delete_job`), as before.
/// - A URL whose object ends with its relative path keeps its prefix once
///   per store (`url_prefixes`), and the row a reference to it: a blob of
///   one byte (the first 127 prefixes) to four, which no text value ever
///   equals (`compact`).
const SCHEMA_V11: &str = "
ALTER TABLE tasks ADD COLUMN first_object INTEGER;
ALTER TABLE tasks ADD COLUMN last_object INTEGER;
UPDATE tasks SET first_object = (SELECT min(id) FROM objects WHERE task_id = tasks.id),
                 last_object = (SELECT max(id) FROM objects WHERE task_id = tasks.id);
DROP INDEX IF EXISTS objects_task;
CREATE TABLE url_prefixes (
    ref BLOB PRIMARY KEY,
    prefix TEXT NOT NULL UNIQUE
) WITHOUT ROWID;
";

/// The foreign key from `objects.task_id` to `tasks`, as every schema
/// before 11 declared it.
const TASK_REFERENCE: &str = "task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE";

/// Removes the foreign key from an object to its task from the table's
/// declaration, which changes nothing on disk: SQLite's documented way
/// (<https://www.sqlite.org/lang_altertable.html#otheralter>, "removing
/// ... FOREIGN KEY ... constraints"), in the caller's transaction, with
/// the schema's version raised so every connection reads it again.
fn drop_task_reference(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let sql: String = tx.query_row(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'objects'",
        [],
        |r| r.get(0),
    )?;
    if sql.matches(TASK_REFERENCE).count() != 1 {
        // Not the declaration any build wrote: leave it as it is.
        return Ok(());
    }
    let sql = sql.replacen(TASK_REFERENCE, "task_id INTEGER NOT NULL", 1);
    let version: i64 = tx.pragma_query_value(None, "schema_version", |r| r.get(0))?;
    tx.pragma_update(None, "writable_schema", "ON")?;
    tx.execute(
        "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = 'objects'",
        [sql],
    )?;
    tx.pragma_update(None, "schema_version", version + 1)?;
    tx.pragma_update(None, "writable_schema", "OFF")?;
    Ok(())
}

/// What schema 4 adds: the audit trail of `ossimportctl set`, which is also
/// what a restarted engine applies to the job's plan again.
pub(super) const SCHEMA_V4: &str = "
CREATE TABLE limit_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    by TEXT NOT NULL,
    key TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL
);
CREATE INDEX limit_changes_job ON limit_changes(job_id, id);
";

/// What schema 3 adds to a schema 2 store (columns with defaults, so old
/// rows read as pass 1).
pub(super) const SCHEMA_V3: &str = "
ALTER TABLE jobs ADD COLUMN pass INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN next_pass_at INTEGER;
ALTER TABLE objects ADD COLUMN pass INTEGER NOT NULL DEFAULT 1;
ALTER TABLE objects ADD COLUMN seen_pass INTEGER NOT NULL DEFAULT 1;
ALTER TABLE objects ADD COLUMN deleted_pass INTEGER;
CREATE TABLE passes (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    found INTEGER NOT NULL DEFAULT 0,
    new INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0,
    retried INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    copied INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    PRIMARY KEY (job_id, number)
);
CREATE TABLE scan_branches (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    deep INTEGER NOT NULL,
    at TEXT NOT NULL,
    checkpoint TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, ord)
);
";

pub(super) const SCHEMA_V1: &str = "
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    scan_done INTEGER NOT NULL DEFAULT 0,
    scan_checkpoint TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    object_count INTEGER NOT NULL,
    byte_count INTEGER NOT NULL,
    agent TEXT,
    lease_until INTEGER,
    dispatch_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_job_state ON tasks(job_id, state);
CREATE TABLE objects (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    rel_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    src_ref TEXT,
    state TEXT NOT NULL,
    checksum_algo TEXT,
    checksum TEXT,
    md5 TEXT,
    etag TEXT,
    verified_by TEXT,
    error_code TEXT,
    error TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    upload_id TEXT,
    part_size INTEGER,
    parts_resumed INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER
);
CREATE INDEX objects_task ON objects(task_id);
CREATE INDEX objects_job_state ON objects(job_id, state);
CREATE TABLE parts (
    object_id INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    md5 TEXT NOT NULL,
    crc64 TEXT NOT NULL,
    PRIMARY KEY (object_id, number)
);
";

impl Store {
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { found: version });
        }
        let v2 = SCHEMA_V1.replace(
            "id INTEGER PRIMARY KEY,",
            "id INTEGER PRIMARY KEY AUTOINCREMENT,",
        );
        if version < 1 {
            let tx = conn.transaction()?;
            tx.execute_batch(&v2)?;
            tx.execute_batch(SCHEMA_V3)?;
            tx.execute_batch(SCHEMA_V4)?;
            tx.execute_batch(SCHEMA_V5)?;
            tx.execute_batch(SCHEMA_V6)?;
            tx.execute_batch(SCHEMA_V7)?;
            tx.execute_batch(SCHEMA_V8)?;
            tx.execute_batch(SCHEMA_V9)?;
            tx.execute_batch(SCHEMA_V10)?;
            tx.execute_batch(SCHEMA_V11)?;
            drop_task_reference(&tx)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        } else if version == 1 {
            // Rebuild the tables with AUTOINCREMENT ids, keeping every row
            // and id. Foreign keys are off while the tables are swapped
            // (renaming a table rewrites the references to it).
            conn.pragma_update(None, "foreign_keys", "OFF")?;
            let tx = conn.transaction()?;
            tx.execute_batch(
                "DROP INDEX tasks_job_state; DROP INDEX objects_task; DROP INDEX objects_job_state;
                 ALTER TABLE parts RENAME TO parts_v1;
                 ALTER TABLE objects RENAME TO objects_v1;
                 ALTER TABLE tasks RENAME TO tasks_v1;
                 ALTER TABLE jobs RENAME TO jobs_v1;",
            )?;
            tx.execute_batch(&v2)?;
            tx.execute_batch(
                "INSERT INTO jobs SELECT * FROM jobs_v1;
                 INSERT INTO tasks SELECT * FROM tasks_v1;
                 INSERT INTO objects SELECT * FROM objects_v1;
                 INSERT INTO parts SELECT * FROM parts_v1;
                 DROP TABLE parts_v1; DROP TABLE objects_v1; DROP TABLE tasks_v1; DROP TABLE jobs_v1;",
            )?;
            tx.pragma_update(None, "user_version", 2)?;
            tx.commit()?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
        }
        if (1..3).contains(&version) {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V3)?;
            tx.pragma_update(None, "user_version", 3)?;
            tx.commit()?;
        }
        if (1..4).contains(&version) {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V4)?;
            tx.pragma_update(None, "user_version", 4)?;
            tx.commit()?;
        }
        if (1..5).contains(&version) {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V5)?;
            tx.pragma_update(None, "user_version", 5)?;
            tx.commit()?;
        }
        if (1..6).contains(&version) {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V6)?;
            tx.pragma_update(None, "user_version", 6)?;
            tx.commit()?;
        }
        if (1..7).contains(&version) {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V7)?;
            tx.pragma_update(None, "user_version", 7)?;
            tx.commit()?;
        }
        if (1..8).contains(&version) {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V8)?;
            tx.pragma_update(None, "user_version", 8)?;
            tx.commit()?;
        }
        if (1..9).contains(&version) {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V9)?;
            tx.pragma_update(None, "user_version", 9)?;
            tx.commit()?;
        }
        if (1..10).contains(&version) {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V10)?;
            tx.pragma_update(None, "user_version", 10)?;
            tx.commit()?;
        }
        if (1..11).contains(&version) {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V11)?;
            drop_task_reference(&tx)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        }
        Ok(())
    }
}
