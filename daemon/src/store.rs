//! The SQLite job store: jobs, tasks, per-object results and multipart
//! parts. The only module that contains SQL.
//!
//! Durability: the database runs in WAL mode with `synchronous=NORMAL`, so a
//! committed transaction survives the process being killed (SIGKILL) at any
//! point; a power loss may drop the last few transactions, which only means
//! a little work is redone (objects are verified against the destination
//! before they count). Every state change that must survive is one
//! transaction: a closed task together with its objects and the scan
//! checkpoint; a batch of executor events.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use proto::job::{Event, MultipartResume, ObjectSpec, Outcome, PartRecord, TaskSpec, Written};
use rusqlite::{Connection, OptionalExtension, params};

/// Schema version this build writes; older databases are migrated forward.
/// 2: job, task and object ids are AUTOINCREMENT, so an id is never given
/// twice, not even after `clean` emptied a table (a late result for a
/// cleaned job can then never land on a new job's object).
/// 3: listing passes (incremental jobs): `jobs.pass`, `jobs.next_pass_at`,
/// the pass each object was listed in and last seen in, the pass that
/// found it gone, and one `passes` row per pass; and the branches of a
/// parallel listing (`scan_branches`), each with its own checkpoint.
const SCHEMA_VERSION: i64 = 8;

/// What schema 5 adds: each job's object counts by state, kept by triggers
/// on every insert, update and delete of an object, so `stat` reads a few
/// rows instead of grouping a job of millions. The triggers see every
/// path that writes objects (scan, results, retries, passes, deletion), and
/// the migration fills the table from the objects already there. Stored
/// values that would read as `store/compact.rs`'s markers are escaped.
/// `objects_job_state` goes: `objects_job_state_path` starts with the same
/// columns, and each index costs bytes per object.
const SCHEMA_V5: &str = "
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
const SCHEMA_V6: &str = "
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
const SCHEMA_V7: &str = "
ALTER TABLE objects ADD COLUMN meta_sha256 TEXT;
";

/// A part's CRC-64/NVME, where it was sent with one (an upload whose
/// Complete carries the full object's), so a resumed upload completes
/// with it.
const SCHEMA_V8: &str = "
ALTER TABLE parts ADD COLUMN nvme TEXT;
";

/// What schema 4 adds: the audit trail of `ossimportctl set`, which is also
/// what a restarted engine applies to the job's plan again.
const SCHEMA_V4: &str = "
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
const SCHEMA_V3: &str = "
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

const SCHEMA_V1: &str = "
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

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("job store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "job store was written by a newer ossimport (schema {found}, this build knows {SCHEMA_VERSION})"
    )]
    TooNew { found: i64 },
    /// Another process has the store open (a daemon and a `run`, or two
    /// runs, would copy the same objects twice and race on their states).
    #[error("job store {path} is in use by {holder}; stop it first, or use another --work-dir")]
    InUse { path: String, holder: String },
    #[error("job store lock {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
    #[error("job {0} not found")]
    NotFound(String),
    #[error("job store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("job store worker thread failed: {0}")]
    Worker(String),
}

pub use proto::api::JobState;

/// A job state read from its column; an unknown word is an error, not a
/// guess.
fn job_state(idx: usize, text: String) -> rusqlite::Result<JobState> {
    JobState::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("unknown job state {text:?}").into(),
        )
    })
}

/// Where a task is. Stored as its word; this is the one mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for an executor (never leased, requeued, or retried).
    Pending,
    /// Leased to one executor until its lease ends.
    Dispatched,
    /// Every object final, none failed.
    Done,
    /// Every object final, some failed.
    Failed,
}

/// Where an object is. Stored as its word; this is the one mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectState {
    Pending,
    /// Copied (or audited) and proven by what the destination answered.
    Verified,
    /// Left alone by a skip rule; claims nothing about the destination.
    Skipped,
    Failed,
}

macro_rules! sql_words {
    ($t:ty { $($v:ident = $w:literal),+ $(,)? }) => {
        impl $t {
            pub const fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $w),+ }
            }
            pub fn parse(s: &str) -> Option<$t> {
                match s { $($w => Some(<$t>::$v),)+ _ => None }
            }
        }
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<$t> {
                let s = v.as_str()?;
                <$t>::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(format!("unknown state {s:?}").into())
                })
            }
        }
    };
}
sql_words!(TaskState { Pending = "pending", Dispatched = "dispatched", Done = "done", Failed = "failed" });
sql_words!(ObjectState { Pending = "pending", Verified = "verified", Skipped = "skipped", Failed = "failed" });

impl From<Outcome> for ObjectState {
    fn from(o: Outcome) -> ObjectState {
        match o {
            Outcome::Verified => ObjectState::Verified,
            Outcome::Skipped => ObjectState::Skipped,
            Outcome::Failed => ObjectState::Failed,
        }
    }
}

/// What one [`Store::record`] call changed.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// Events dropped because their task is not leased to their sender.
    pub dropped: usize,
    /// Objects that became final now (not those already final before).
    pub objects: Vec<Final>,
    /// Tasks closed now.
    pub tasks_done: usize,
    /// Results the check refused (recorded as `REJECTED_RESULT`):
    /// the executor and why.
    pub rejected: Vec<(String, String)>,
}

/// What the listing recorded for an object, which an executor's result is
/// held against ([`Store::record_checked`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub job_id: i64,
    pub size: u64,
    pub mtime: i64,
    pub ident: Option<i64>,
}

/// An object made final by a recorded result.
#[derive(Clone, Copy, Debug)]
pub struct Final {
    pub job_id: i64,
    pub outcome: Outcome,
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct JobRow {
    pub id: i64,
    pub name: String,
    pub config: String,
    pub fingerprint: String,
    pub state: JobState,
    pub scan_done: bool,
    pub scan_checkpoint: Option<String>,
    /// The listing pass the job is in (1 for the first; incremental jobs
    /// count up).
    pub pass: u32,
    /// When the next pass starts (unix seconds), once the current one has
    /// ended; `None` while a pass runs.
    pub next_pass_at: Option<i64>,
    /// Who submitted it (uid and user name); `None` for jobs submitted
    /// before owners were recorded.
    pub owner: Option<(u32, String)>,
}

impl JobRow {
    /// `incrementalModeInterval` of an incremental job, from its stored
    /// configuration; `None` for a job of one pass.
    pub fn incremental_interval(&self) -> Option<u64> {
        let v: serde_json::Value = serde_json::from_str(&self.config).ok()?;
        if v.get("is_incremental")?.as_bool()? {
            v.get("incremental_mode_interval")?.as_u64()
        } else {
            None
        }
    }
}

/// The columns [`job_row`] reads, in its order.
const JOB_COLUMNS: &str = "id, name, config, fingerprint, state, scan_done, scan_checkpoint, pass, next_pass_at, owner_uid, owner_name";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        name: r.get(1)?,
        config: r.get(2)?,
        fingerprint: r.get(3)?,
        state: job_state(4, r.get(4)?)?,
        scan_done: r.get::<_, i64>(5)? != 0,
        scan_checkpoint: r.get(6)?,
        pass: r.get(7)?,
        next_pass_at: r.get(8)?,
        owner: match (r.get::<_, Option<u32>>(9)?, r.get::<_, Option<String>>(10)?) {
            (Some(uid), name) => Some((uid, name.unwrap_or_default())),
            _ => None,
        },
    })
}

/// One object as the store holds it ([`Store::objects`]).
#[derive(Clone, Debug)]
pub struct ObjectRow {
    pub job_id: i64,
    pub rel_path: String,
    pub size: u64,
    pub state: ObjectState,
    /// The CRC64 recorded at verification.
    pub checksum: Option<String>,
    pub etag: Option<String>,
    /// What the verification compared (`size+etag+crc64`, `readback`, ...).
    pub verified_by: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub retries: u32,
    /// Times it was handed to an executor.
    pub attempts: u32,
    pub parts_resumed: u32,
}

/// An object found by the scanner.
#[derive(Clone, Debug)]
pub struct NewObject {
    pub rel_path: String,
    pub size: u64,
    pub mtime: i64,
    /// Local files: the identity tag (`storage::beneath::Identity::tag`).
    pub ident: Option<i64>,
    /// Source ETag (S3 sources) or URL (HTTP sources).
    pub src_ref: Option<String>,
    /// Set when the object can already be seen to fail (e.g. a name that is
    /// not UTF-8, an unreadable directory): `(code, message)`.
    pub failure: Option<(String, String)>,
}

/// How a listed object relates to what earlier passes of its job recorded
/// under the same path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing recorded yet.
    New,
    /// Recorded with another size, mtime or source ETag/URL: copied again;
    /// the older rows of its path give way to the new one.
    Changed,
    /// Recorded unchanged but failed: copied again, likewise.
    Retried,
    /// Recorded verified with the same size and source ETag, only its
    /// LastModified is new (its metadata changed; `copyMetadata`): copied
    /// again, and the new row carries what the destination held (ETag and
    /// MD5), so the executor may write the metadata in place
    /// ([`proto::job::ObjectSpec::written`]).
    Metadata,
}

/// What `retry` did: objects queued again, and failed objects left as they
/// are because retrying cannot fix them (a name the store refuses, a
/// listing error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retried {
    pub queued: u64,
    pub unfixable: u64,
    /// A failed listing starts again from its checkpoint.
    pub rescan: bool,
}

/// Object and task counts of a job by state, with byte totals.
pub use proto::api::JobCounts as Counts;

#[derive(Clone, Debug)]
pub struct FailedObject {
    pub rel_path: String,
    pub code: String,
    pub message: String,
}

/// A page of failed objects and the path to continue after, if any.
#[derive(Clone, Debug, Default)]
pub struct FailedPage {
    pub failed: Vec<FailedObject>,
    pub next: Option<String>,
}

/// Handle to the database. SQLite calls block; async callers use
/// `spawn_blocking`. A std `Mutex` suffices because no lock is held across
/// an `.await`.
pub struct Store {
    conn: Mutex<Connection>,
    /// `<store>.lock`, held with an exclusive `flock` while the store is
    /// open; released by the kernel when the process dies, so a killed
    /// process never leaves it stale. None for a read-only view.
    _lock: Option<std::fs::File>,
}

/// Takes the store's exclusive lock and writes who holds it (pid and
/// command) into the lock file, for the error the next process gets.
fn lock_store(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let lock_path = path.with_extension("db.lock");
    let lock_err = |source| StoreError::Lock {
        path: lock_path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(lock_err)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(lock_err(e));
        }
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => "another process".to_string(),
            h => h.to_string(),
        };
        return Err(StoreError::InUse {
            path: path.display().to_string(),
            holder,
        });
    }
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    let me = format!("pid {} ({cmd})", std::process::id());
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = f.write_all(me.as_bytes());
    Ok(f)
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One query plan per statement, whatever values are bound. Otherwise
/// SQLite (built with STAT4) re-prepares a cached statement whenever a
/// bound value it planned with changes (`LIMIT ?`, `x = ?` near 0 or 1),
/// which was a third of the daemon's CPU while recording results.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let lock = lock_store(path)?;
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        // Readable by its owner only, created so: SQLite gives the WAL and
        // shared-memory files the database's mode when it creates them, so
        // none of the three is ever wider (paths, sizes, checksums of a
        // customer's data are in them). A store from before is narrowed.
        private_file(path);
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            narrow(Path::new(&p));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // The bundled SQLite keeps temporary tables and sorts in memory; a
        // GROUP BY over a job of millions of objects (`report`'s methods)
        // then holds all of them. In files, a sort spills past the page
        // cache and the daemon's memory stays flat whatever the job's size.
        conn.pragma_update(None, "temp_store", "FILE")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(open_err)?;
        stable_plans(&conn).map_err(open_err)?;
        let store = Store {
            conn: Mutex::new(conn),
            _lock: Some(lock),
        };
        store.migrate()?;
        Ok(store)
    }

    /// A store in memory, gone when dropped (`--dry-run`: nothing is
    /// written anywhere).
    pub fn in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        stable_plans(&conn)?;
        let store = Store {
            conn: Mutex::new(conn),
            _lock: None,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Up to `limit` objects of a job after object id `after`, in id order,
    /// for its manifest: `key` is the relative path and `source` the
    /// listed reference (ETag or URL) until [`crate::manifest::locate`]
    /// makes them the destination key and the source's own name.
    pub fn manifest_page(
        &self,
        job_id: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<proto::api::ManifestRow>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT id, rel_path, size, mtime, src_ref, state, md5, checksum, etag, verified_by,
                    updated_at, error_code, error, meta_sha256
             FROM objects WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = q.query_map(params![job_id, after, limit as i64], |r| {
            let key: String = r.get(1)?;
            // A pending row's ETag and MD5 are its predecessor's
            // (`Change::Metadata`), not a result of its own.
            let done = r.get::<_, ObjectState>(5)? != ObjectState::Pending;
            Ok(proto::api::ManifestRow {
                id: r.get(0)?,
                source: compact::read_src_ref(r.get(4)?, &key).unwrap_or_default(),
                key,
                size: r.get::<_, i64>(2)? as u64,
                source_mtime: r.get(3)?,
                outcome: r.get::<_, ObjectState>(5)?.as_str().to_string(),
                md5: compact::read_md5(r.get_ref(6)?)?.filter(|_| done),
                crc64: compact::read_crc64(r.get_ref(7)?)?,
                dest_etag: compact::read_etag(r.get_ref(8)?, r.get_ref(6)?)?.filter(|_| done),
                verified_by: r.get(9)?,
                time: r.get(10)?,
                error_code: r.get(11)?,
                error: r.get(12)?,
                metadata: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The `n` largest objects of a job, largest first.
    pub fn largest(&self, job_id: i64, n: usize) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT rel_path, size FROM objects WHERE job_id = ?1 ORDER BY size DESC, rel_path LIMIT ?2",
        )?;
        let rows = q.query_map(params![job_id, n as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many objects of a job failed, and their bytes, by error code,
    /// most first.
    pub fn failures_by_code(&self, job_id: i64) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT coalesce(error_code, ''), count(*), coalesce(sum(size), 0) FROM objects
             WHERE job_id = ?1 AND state = ?2
             GROUP BY error_code ORDER BY count(*) DESC, error_code",
        )?;
        let rows = q.query_map(params![job_id, ObjectState::Failed], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Opens a store that another process (a daemon, a run) may be writing,
    /// to read it: no lock is taken and nothing is migrated or written.
    /// Tests read what a run recorded through this, never through SQL.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(Store {
            conn: Mutex::new(conn),
            _lock: None,
        })
    }

    /// Every object of every job, by job and path: what was recorded for
    /// each.
    pub fn objects(&self) -> Result<Vec<ObjectRow>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare(
            "SELECT job_id, rel_path, size, state, checksum, etag, verified_by, error_code, error,
                    retries, attempts, parts_resumed, md5
             FROM objects ORDER BY job_id, rel_path",
        )?;
        let rows = q.query_map([], |r| {
            Ok(ObjectRow {
                job_id: r.get(0)?,
                rel_path: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                state: r.get(3)?,
                checksum: compact::read_crc64(r.get_ref(4)?)?,
                etag: compact::read_etag(r.get_ref(5)?, r.get_ref(12)?)?,
                verified_by: r.get(6)?,
                error_code: r.get(7)?,
                error: r.get(8)?,
                retries: r.get(9)?,
                attempts: r.get(10)?,
                parts_resumed: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Parts of unfinished multipart uploads recorded so far.
    pub fn recorded_parts(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .lock()
            .query_row("SELECT count(*) FROM parts", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Tasks that were handed out more than once (requeued after a lease
    /// ended or an agent left).
    pub fn tasks_redispatched(&self) -> Result<u64, StoreError> {
        let n: i64 = self.lock().query_row(
            "SELECT count(*) FROM tasks WHERE dispatch_count > 1",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolls back on drop), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn migrate(&self) -> Result<(), StoreError> {
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
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// A job by id.
    pub fn job(&self, id: i64) -> Result<Option<JobRow>, StoreError> {
        self.job_where("id = ?1", id)
    }

    pub fn find_job(&self, name: &str) -> Result<Option<JobRow>, StoreError> {
        self.job_where("name = ?1", name)
    }

    fn job_where(
        &self,
        cond: &str,
        value: impl rusqlite::ToSql,
    ) -> Result<Option<JobRow>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {cond}"),
                [value],
                job_row,
            )
            .optional()?)
    }

    pub fn create_job(
        &self,
        name: &str,
        config: &str,
        fingerprint: &str,
    ) -> Result<i64, StoreError> {
        self.create_owned_job(name, config, fingerprint, None)
    }

    /// Creates a job submitted by `owner` (uid, user name).
    pub fn create_owned_job(
        &self,
        name: &str,
        config: &str,
        fingerprint: &str,
        owner: Option<(u32, &str)>,
    ) -> Result<i64, StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO jobs (name, config, fingerprint, state, created_at, updated_at, owner_uid, owner_name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
            params![
                name,
                config,
                fingerprint,
                JobState::Running.as_str(),
                now(),
                owner.map(|o| o.0),
                owner.map(|o| o.1)
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Deletes a job and everything recorded for it (`clean`).
    pub fn delete_job(&self, job_id: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM parts WHERE object_id IN (SELECT id FROM objects WHERE job_id = ?1)",
            [job_id],
        )?;
        tx.execute("DELETE FROM objects WHERE job_id = ?1", [job_id])?;
        tx.execute("DELETE FROM tasks WHERE job_id = ?1", [job_id])?;
        tx.execute("DELETE FROM passes WHERE job_id = ?1", [job_id])?;
        tx.execute("DELETE FROM scan_branches WHERE job_id = ?1", [job_id])?;
        tx.execute("DELETE FROM limit_changes WHERE job_id = ?1", [job_id])?;
        tx.execute("DELETE FROM jobs WHERE id = ?1", [job_id])?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_job_state(&self, job_id: i64, state: JobState) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE jobs SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![job_id, state.as_str(), now()],
        )?;
        Ok(())
    }

    pub fn scan_checkpoint(&self, job_id: i64) -> Result<(bool, Option<String>), StoreError> {
        Ok(self.lock().query_row(
            "SELECT scan_done, scan_checkpoint FROM jobs WHERE id = ?1",
            [job_id],
            |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?)),
        )?)
    }

    /// Stores a closed task with its objects and moves the scan checkpoint
    /// past them, in one transaction: after a crash either all of it or
    /// none of it is there, so the scan resumes without gaps or duplicates.
    /// Objects of the first pass, all new.
    pub fn commit_task(
        &self,
        job_id: i64,
        objects: &[NewObject],
        checkpoint: &str,
    ) -> Result<i64, StoreError> {
        let changes = vec![Change::New; objects.len()];
        self.commit_pass_task(job_id, 1, objects, &changes, None, checkpoint)
    }

    /// [`Store::commit_task`] for listing pass `pass`: each object with how
    /// it relates to what earlier passes recorded (`changes[i]` for
    /// `objects[i]`). The rows it replaces are deleted in the same
    /// transaction (never one still pending: an executor may hold it), and
    /// the pass's counters move with it, so they stay exact across a
    /// resumed scan. The checkpoint is the job's, or with `branch` that of
    /// one branch of a parallel listing.
    pub fn commit_pass_task(
        &self,
        job_id: i64,
        pass: u32,
        objects: &[NewObject],
        changes: &[Change],
        branch: Option<i64>,
        checkpoint: &str,
    ) -> Result<i64, StoreError> {
        assert_eq!(objects.len(), changes.len(), "one change per object");
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let bytes: u64 = objects.iter().map(|o| o.size).sum();
        tx.execute(
            "INSERT INTO tasks (job_id, state, object_count, byte_count) VALUES (?1, ?4, ?2, ?3)",
            params![
                job_id,
                objects.len() as i64,
                bytes as i64,
                TaskState::Pending
            ],
        )?;
        let task_id = tx.last_insert_rowid();
        let (mut new, mut changed, mut retried) = (0i64, 0i64, 0i64);
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO objects (job_id, task_id, rel_path, size, mtime, state, error_code, error, updated_at, src_ref, pass, seen_pass, ident)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)",
            )?;
            // Every older final row of the path gives way (a listing error
            // of an earlier pass may sit beside the row it could not see).
            let mut replace = tx.prepare_cached(
                "DELETE FROM objects WHERE job_id = ?1 AND state IN (?3, ?4, ?5) AND rel_path = ?2 AND id < ?6",
            )?;
            // What the verified row of the path says the destination holds,
            // kept on the new row of a metadata-only change.
            let mut carry = tx.prepare_cached(
                "UPDATE objects SET etag = w.etag, md5 = w.md5
                 FROM (SELECT etag, md5 FROM objects WHERE job_id = ?1 AND rel_path = ?2
                       AND state = ?3 AND id < ?4 AND etag IS NOT NULL AND md5 IS NOT NULL
                       ORDER BY id DESC LIMIT 1) AS w
                 WHERE objects.id = ?4",
            )?;
            let t = now();
            for (o, c) in objects.iter().zip(changes) {
                let (state, code, msg) = match &o.failure {
                    Some((c, m)) => (ObjectState::Failed, Some(c.as_str()), Some(m.as_str())),
                    None => (ObjectState::Pending, None, None),
                };
                ins.execute(params![
                    job_id,
                    task_id,
                    o.rel_path,
                    o.size as i64,
                    o.mtime,
                    state,
                    code,
                    msg,
                    t,
                    compact::src_ref(o.src_ref.as_deref(), &o.rel_path),
                    pass,
                    o.ident
                ])?;
                let id = tx.last_insert_rowid();
                match *c {
                    Change::New => new += 1,
                    Change::Changed | Change::Retried | Change::Metadata => {
                        if *c == Change::Metadata {
                            carry.execute(params![
                                job_id,
                                o.rel_path,
                                ObjectState::Verified,
                                id
                            ])?;
                        }
                        replace.execute(params![
                            job_id,
                            o.rel_path,
                            ObjectState::Verified,
                            ObjectState::Skipped,
                            ObjectState::Failed,
                            id
                        ])?;
                        if *c != Change::Retried {
                            changed += 1;
                        } else {
                            retried += 1;
                        }
                    }
                }
            }
        }
        tx.execute(
            "UPDATE passes SET new = new + ?3, changed = changed + ?4, retried = retried + ?5
             WHERE job_id = ?1 AND number = ?2",
            params![job_id, pass, new, changed, retried],
        )?;
        match branch {
            Some(ord) => tx.execute(
                "UPDATE scan_branches SET checkpoint = ?3 WHERE job_id = ?1 AND ord = ?2",
                params![job_id, ord, checkpoint],
            )?,
            None => tx.execute(
                "UPDATE jobs SET scan_checkpoint = ?2, updated_at = ?3 WHERE id = ?1",
                params![job_id, checkpoint, now()],
            )?,
        };
        tx.commit()?;
        Ok(task_id)
    }

    /// Returns a job's dispatched tasks to pending (`pause`, and a
    /// standalone run starting again: nothing can still be executing them).
    pub fn requeue_dispatched(&self, job_id: i64) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "UPDATE tasks SET state = ?2, agent = NULL, lease_until = NULL WHERE job_id = ?1 AND state = ?3",
            params![job_id, TaskState::Pending, TaskState::Dispatched],
        )?)
    }

    /// Queues the job's failed objects again and makes their tasks runnable
    /// (`retry`), but for those a retry cannot fix (`LIST_ERROR`,
    /// `INVALID_KEY`). Returns how many were queued and how many stay
    /// failed. The job's own state is the engine's to change.
    pub fn retry_failed(&self, job_id: i64) -> Result<Retried, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE objects SET state = ?2, error_code = NULL, error = NULL, etag = NULL, md5 = NULL
             WHERE job_id = ?1 AND state = ?3 AND error_code NOT IN ('LIST_ERROR', 'INVALID_KEY', 'DUPLICATE_KEY')",
            params![job_id, ObjectState::Pending, ObjectState::Failed],
        )?;
        tx.execute(
            "UPDATE tasks SET state = ?2 WHERE job_id = ?1 AND state IN (?3, ?4)
             AND EXISTS (SELECT 1 FROM objects o WHERE o.task_id = tasks.id AND o.state = ?5)",
            params![
                job_id,
                TaskState::Pending,
                TaskState::Failed,
                TaskState::Done,
                ObjectState::Pending
            ],
        )?;
        let unfixable: i64 = tx.query_row(
            "SELECT COUNT(*) FROM objects WHERE job_id = ?1 AND state = ?2",
            params![job_id, ObjectState::Failed],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(Retried {
            queued: n as u64,
            unfixable: unfixable as u64,
            rescan: false,
        })
    }

    /// Leases up to `max` pending tasks to `agent` until `lease_until`
    /// (unix seconds) and returns them with their not-yet-final objects and
    /// any multipart upload to resume.
    pub fn lease_tasks(
        &self,
        job_id: i64,
        max: usize,
        agent: &str,
        lease_until: i64,
    ) -> Result<Vec<TaskSpec>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let ids: Vec<i64> = {
            let mut q = tx.prepare_cached(
                "SELECT id FROM tasks WHERE job_id = ?1 AND state = ?3 ORDER BY id LIMIT ?2",
            )?;
            q.query_map(params![job_id, max as i64, TaskState::Pending], |r| {
                r.get(0)
            })?
            .collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        for task_id in ids {
            tx.execute(
                "UPDATE tasks SET state = ?4, agent = ?2, lease_until = ?3, dispatch_count = dispatch_count + 1 WHERE id = ?1",
                params![task_id, agent, lease_until, TaskState::Dispatched],
            )?;
            let mut objects = Vec::new();
            {
                let mut q = tx.prepare_cached(
                    "SELECT id, rel_path, size, mtime, upload_id, part_size, src_ref, ident, etag, md5 FROM objects
                     WHERE task_id = ?1 AND state = ?2 ORDER BY id",
                )?;
                let rows = q.query_map(params![task_id, ObjectState::Pending], |r| {
                    // A pending row holds an ETag and MD5 only when carried
                    // from its verified predecessor (`Change::Metadata`).
                    let written = match (
                        compact::read_etag(r.get_ref(8)?, r.get_ref(9)?)?,
                        compact::read_md5(r.get_ref(9)?)?,
                    ) {
                        (Some(etag), Some(md5)) => Some(Written { etag, md5 }),
                        _ => None,
                    };
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                        written,
                    ))
                })?;
                for row in rows {
                    objects.push(row?);
                }
            }
            let mut specs = Vec::with_capacity(objects.len());
            for (object_id, rel_path, size, mtime, upload_id, part_size, src_ref, ident, written) in
                objects
            {
                let resume = match (upload_id, part_size) {
                    (Some(upload_id), Some(part_size)) => {
                        let mut q = tx.prepare_cached(
                            "SELECT number, size, etag, md5, crc64, nvme FROM parts WHERE object_id = ?1 ORDER BY number",
                        )?;
                        let parts = q
                            .query_map([object_id], |r| {
                                Ok(PartRecord {
                                    number: r.get::<_, i64>(0)? as u32,
                                    size: r.get::<_, i64>(1)? as u64,
                                    etag: r.get(2)?,
                                    md5: r.get(3)?,
                                    crc64: r.get::<_, String>(4)?.parse().unwrap_or(0),
                                    nvme: r
                                        .get::<_, Option<String>>(5)?
                                        .and_then(|n| n.parse().ok()),
                                })
                            })?
                            .collect::<Result<Vec<_>, _>>()?;
                        Some(MultipartResume {
                            upload_id,
                            part_size: part_size as u64,
                            parts,
                        })
                    }
                    _ => None,
                };
                specs.push(ObjectSpec {
                    object_id,
                    src_ref: compact::read_src_ref(src_ref, &rel_path),
                    rel_path,
                    size: size as u64,
                    mtime,
                    ident,
                    resume,
                    written,
                });
            }
            out.push(TaskSpec {
                task_id,
                job_id,
                objects: specs,
            });
        }
        tx.commit()?;
        Ok(out)
    }

    /// Records what executors reported, in one transaction, with the lease
    /// filter in front: each `(executor, events)` pair speaks only for the
    /// tasks leased to that executor now (an agent's fingerprint, or the
    /// local worker). Ids are never reused, so a late report about a cleaned
    /// job, or about a task that expired and went to another executor,
    /// matches no lease and is dropped; that work is redone under the
    /// current lease, never counted from a stale one.
    ///
    /// Idempotent: an object already final keeps its first result, so a task
    /// reported twice (a retried report) is counted once.
    pub fn record(&self, reports: &[(&str, &[Event])]) -> Result<Recorded, StoreError> {
        self.record_checked(reports, &|_, _, _| Ok(()))
    }

    /// [`Store::record`], holding every result that claims an object (as
    /// verified or skipped) to `check` (its executor, what the listing
    /// recorded, the result) first: a result it refuses is recorded as a
    /// failure `REJECTED_RESULT` with the reason, never as claimed.
    pub fn record_checked(
        &self,
        reports: &[(&str, &[Event])],
        check: &dyn Fn(&str, &Listed, &proto::job::ObjectResult) -> Result<(), String>,
    ) -> Result<Recorded, StoreError> {
        let mut out = Recorded::default();
        if reports.iter().all(|(_, e)| e.is_empty()) {
            return Ok(out);
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let t = now();
        for (from, events) in reports {
            for ev in *events {
                let leased = match ev {
                    Event::TaskDone { task_id } => task_leased(&tx, *task_id, from)?,
                    Event::UploadStarted { object_id, .. }
                    | Event::PartDone { object_id, .. }
                    | Event::UploadAborted { object_id } => leased_object(&tx, *object_id, from)?,
                    Event::ObjectDone(r) => leased_object(&tx, r.object_id, from)?,
                };
                if !leased {
                    out.dropped += 1;
                    continue;
                }
                if let Event::ObjectDone(r) = ev
                    && r.outcome != Outcome::Failed
                    && let Some(listed) = listed_object(&tx, r.object_id)?
                    && let Err(why) = check(from, &listed, r)
                {
                    out.rejected.push((from.to_string(), why.clone()));
                    let refused = proto::job::ObjectResult {
                        outcome: Outcome::Failed,
                        verified_by: String::new(),
                        crc64: None,
                        md5: None,
                        etag: None,
                        size: listed.size,
                        error: Some(proto::job::ObjectError {
                            code: proto::job::ErrorCode::RejectedResult,
                            message: why,
                        }),
                        metadata: None,
                        ..r.clone()
                    };
                    apply_event(&tx, &Event::ObjectDone(refused), t, &mut out)?;
                    continue;
                }
                apply_event(&tx, ev, t, &mut out)?;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    pub fn counts(&self, job_id: i64) -> Result<Counts, StoreError> {
        let conn = self.lock();
        let mut c = Counts::default();
        // Kept by triggers (schema 5): a few rows, whatever the job's size.
        let mut q = conn.prepare_cached(
            "SELECT state, n, bytes, retries FROM object_counts WHERE job_id = ?1 AND n > 0",
        )?;
        let rows = q.query_map([job_id], |r| {
            Ok((
                r.get::<_, ObjectState>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (state, n, bytes, retries) = row?;
            let (n, bytes) = (n as u64, bytes as u64);
            c.retries += retries as u64;
            c.objects += n;
            c.bytes += bytes;
            match state {
                ObjectState::Pending => c.pending += n,
                ObjectState::Verified => {
                    c.verified += n;
                    c.verified_bytes += bytes;
                }
                ObjectState::Skipped => {
                    c.skipped += n;
                    c.skipped_bytes += bytes;
                }
                ObjectState::Failed => c.failed += n,
            }
        }
        let mut q = conn
            .prepare_cached("SELECT state, count(*) FROM tasks WHERE job_id = ?1 GROUP BY state")?;
        let rows = q.query_map([job_id], |r| {
            Ok((r.get::<_, TaskState>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            let n = n as u64;
            c.tasks += n;
            match state {
                TaskState::Pending => c.tasks_pending += n,
                TaskState::Dispatched => c.tasks_dispatched += n,
                TaskState::Done => c.tasks_done += n,
                TaskState::Failed => c.tasks_failed += n,
            }
        }
        Ok(c)
    }

    /// One page of a job's failed objects in path order, after `after`
    /// (exclusive), at most `limit` rows (more only where the last path
    /// repeats, so a page never splits objects of one name). Memory is
    /// bounded by the page, whatever the number of failures.
    pub fn failed_page(
        &self,
        job_id: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<FailedPage, StoreError> {
        let conn = self.lock();
        let row = |r: &rusqlite::Row<'_>| {
            Ok(FailedObject {
                rel_path: r.get(0)?,
                code: r.get(1)?,
                message: r.get(2)?,
            })
        };
        let limit = limit.max(1);
        let mut q = conn.prepare_cached(
            "SELECT rel_path, coalesce(error_code, ''), coalesce(error, ''), id FROM objects
             WHERE job_id = ?1 AND state = ?4 AND (?2 IS NULL OR rel_path > ?2)
             ORDER BY rel_path, id LIMIT ?3",
        )?;
        let mut last_id = 0i64;
        let mut failed = Vec::new();
        for r in q.query_map(
            params![job_id, after, limit as i64, ObjectState::Failed],
            |r| Ok((row(r)?, r.get::<_, i64>(3)?)),
        )? {
            let (f, id) = r?;
            last_id = id;
            failed.push(f);
        }
        let full = failed.len() == limit;
        if full && let Some(last) = failed.last().map(|f| f.rel_path.clone()) {
            let mut q = conn.prepare_cached(
                "SELECT rel_path, coalesce(error_code, ''), coalesce(error, '') FROM objects
                 WHERE job_id = ?1 AND state = ?4 AND rel_path = ?2 AND id > ?3 ORDER BY id",
            )?;
            for f in q.query_map(params![job_id, last, last_id, ObjectState::Failed], row)? {
                failed.push(f?);
            }
        }
        let next = if full {
            failed.last().map(|f| f.rel_path.clone())
        } else {
            None
        };
        Ok(FailedPage { failed, next })
    }

    /// The `n` failures of a job recorded last, newest first (the status
    /// page).
    pub fn recent_failures(&self, job_id: i64, n: usize) -> Result<Vec<FailedObject>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT rel_path, coalesce(error_code, ''), coalesce(error, '') FROM objects
             WHERE job_id = ?1 AND state = ?2
             ORDER BY coalesce(updated_at, 0) DESC, id DESC LIMIT ?3",
        )?;
        let rows = q.query_map(params![job_id, ObjectState::Failed, n as i64], |r| {
            Ok(FailedObject {
                rel_path: r.get(0)?,
                code: r.get(1)?,
                message: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Calls `f` for every failed object of a job in path order, a page at
    /// a time.
    pub fn for_each_failed(
        &self,
        job_id: i64,
        mut f: impl FnMut(&FailedObject) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        loop {
            let page = self.failed_page(job_id, after.as_deref(), 1000)?;
            for o in &page.failed {
                f(o)?;
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(()),
            }
        }
    }

    /// Number of attempts recorded for an object (tests and reports).
    pub fn object_attempts(
        &self,
        job_id: i64,
        rel_path: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT state, attempts FROM objects WHERE job_id = ?1 AND rel_path = ?2",
                params![job_id, rel_path],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}

/// Whether a task is now leased to `agent`.
fn task_leased(
    tx: &rusqlite::Transaction<'_>,
    task_id: i64,
    agent: &str,
) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT 1 FROM tasks WHERE id = ?1 AND state = ?2 AND agent = ?3")?
        .exists(params![task_id, TaskState::Dispatched, agent])
}

/// Whether an object belongs to a task now leased to `agent`.
fn leased_object(
    tx: &rusqlite::Transaction<'_>,
    object_id: i64,
    agent: &str,
) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT 1 FROM objects o JOIN tasks t ON t.id = o.task_id
         WHERE o.id = ?1 AND t.state = ?2 AND t.agent = ?3",
    )?
    .exists(params![object_id, TaskState::Dispatched, agent])
}

/// One event, already known to come from its task's lease holder.
fn apply_event(
    tx: &rusqlite::Transaction<'_>,
    ev: &Event,
    t: i64,
    out: &mut Recorded,
) -> rusqlite::Result<()> {
    match ev {
        Event::UploadStarted {
            object_id,
            upload_id,
            part_size,
        } => {
            tx.execute("DELETE FROM parts WHERE object_id = ?1", [object_id])?;
            tx.execute(
                "UPDATE objects SET upload_id = ?2, part_size = ?3 WHERE id = ?1 AND state = ?4",
                params![
                    object_id,
                    upload_id,
                    *part_size as i64,
                    ObjectState::Pending
                ],
            )?;
        }
        Event::PartDone { object_id, part } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO parts (object_id, number, size, etag, md5, crc64, nvme) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                object_id,
                part.number as i64,
                part.size as i64,
                part.etag,
                part.md5,
                part.crc64.to_string(),
                part.nvme.map(|n| n.to_string())
            ])?;
        }
        Event::UploadAborted { object_id } => {
            tx.execute("DELETE FROM parts WHERE object_id = ?1", [object_id])?;
            tx.execute(
                "UPDATE objects SET upload_id = NULL, part_size = NULL WHERE id = ?1",
                [object_id],
            )?;
        }
        Event::ObjectDone(r) => {
            let state = ObjectState::from(r.outcome);
            let (code, msg) = match &r.error {
                Some(e) => (Some(e.code.as_str()), Some(e.message.as_str())),
                None => (None, None),
            };
            let job: Option<i64> = tx
                .prepare_cached(
                    "UPDATE objects SET state = ?2, checksum_algo = ?3, checksum = ?4, md5 = ?5, etag = ?6,
                        size = CASE WHEN ?2 = ?14 THEN ?12 ELSE size END,
                        verified_by = ?7, error_code = ?8, error = ?9, retries = retries + ?10,
                        attempts = attempts + 1, updated_at = ?11, parts_resumed = parts_resumed + ?13,
                        meta_sha256 = ?16
                     WHERE id = ?1 AND state = ?15 RETURNING job_id",
                )?
                .query_row(
                    params![
                        r.object_id,
                        state,
                        Option::<&str>::None,
                        r.crc64.map(|c| c.to_be_bytes().to_vec()),
                        r.md5.as_deref().map(compact::md5),
                        compact::etag(r.etag.as_deref(), r.md5.as_deref()),
                        r.verified_by,
                        code,
                        msg,
                        r.retries as i64,
                        t,
                        r.size as i64,
                        r.parts_resumed as i64,
                        ObjectState::Verified,
                        ObjectState::Pending,
                        r.metadata.as_deref().filter(|d| {
                            d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())
                        })
                    ],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(job_id) = job {
                out.objects.push(Final {
                    job_id,
                    outcome: r.outcome,
                    size: r.size,
                });
            }
            // Only multipart objects (ETag `…-N`) ever had parts.
            if r.outcome == Outcome::Verified && r.etag.as_deref().is_some_and(|e| e.contains('-'))
            {
                // The parts served their purpose; keep the table small.
                tx.prepare_cached("DELETE FROM parts WHERE object_id = ?1")?
                    .execute([r.object_id])?;
            }
        }
        Event::TaskDone { task_id } => {
            out.tasks_done += tx
                .prepare_cached(
                    "UPDATE tasks SET state = CASE
                        WHEN EXISTS (SELECT 1 FROM objects WHERE task_id = ?1 AND state = ?2) THEN ?5
                        WHEN EXISTS (SELECT 1 FROM objects WHERE task_id = ?1 AND state = ?3) THEN ?6
                        ELSE ?7 END,
                      agent = NULL, lease_until = NULL
                     WHERE id = ?1 AND state = ?4",
                )?
                .execute(params![
                    task_id,
                    ObjectState::Pending,
                    ObjectState::Failed,
                    TaskState::Dispatched,
                    TaskState::Pending,
                    TaskState::Failed,
                    TaskState::Done
                ])?;
        }
    }
    Ok(())
}

/// What the listing recorded for a pending object.
fn listed_object(
    tx: &rusqlite::Transaction<'_>,
    object_id: i64,
) -> Result<Option<Listed>, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT job_id, size, mtime, ident FROM objects WHERE id = ?1 AND state = ?2",
        )?
        .query_row(params![object_id, ObjectState::Pending], |r| {
            Ok(Listed {
                job_id: r.get(0)?,
                size: r.get::<_, i64>(1)? as u64,
                mtime: r.get(2)?,
                ident: r.get(3)?,
            })
        })
        .optional()?)
}

mod compact;
mod control;
pub mod leases;
mod limits;
mod passes;
pub use passes::{BranchRow, DeletedObject, PassRecord, Prior};

#[cfg(test)]
mod tests;

/// Creates `path` empty with mode 0600 unless it exists.
fn private_file(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
}

/// Takes group and other permissions off `path`, if it exists.
fn narrow(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(md) = std::fs::metadata(path)
        && md.permissions().mode() & 0o077 != 0
    {
        let mode = md.permissions().mode() & 0o700;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
}
