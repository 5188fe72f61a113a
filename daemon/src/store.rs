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

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolls back on drop), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
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
        // The first and last id of the task's objects.
        let mut span: Option<(i64, i64)> = None;
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
            // What this job verified at the key before: the latest row's
            // ETag if it was verified or skipped, else (a failed copy) what
            // that row carried.
            let mut before = tx.prepare_cached(
                "SELECT state, etag, md5, prior_etag FROM objects
                 WHERE job_id = ?1 AND rel_path = ?2 AND id < ?3 AND state IN (?4, ?5, ?6)
                 ORDER BY id DESC LIMIT 1",
            )?;
            let mut keep_before =
                tx.prepare_cached("UPDATE objects SET prior_etag = ?2 WHERE id = ?1")?;
            let t = now();
            let mut prefixes = compact::Prefixes::new();
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
                    compact::store_src_ref(
                        &tx,
                        &mut prefixes,
                        compact::src_ref(o.src_ref.as_deref(), &o.rel_path)
                    )?,
                    pass,
                    o.ident
                ])?;
                let id = tx.last_insert_rowid();
                span = Some((span.map_or(id, |s| s.0), id));
                match *c {
                    Change::New => new += 1,
                    Change::Changed | Change::Retried | Change::Metadata => {
                        let prior: Option<String> = before
                            .query_row(
                                params![
                                    job_id,
                                    o.rel_path,
                                    id,
                                    ObjectState::Verified,
                                    ObjectState::Skipped,
                                    ObjectState::Failed
                                ],
                                |r| {
                                    Ok(match r.get::<_, ObjectState>(0)? {
                                        ObjectState::Failed => r.get(3)?,
                                        _ => compact::read_etag(r.get_ref(1)?, r.get_ref(2)?)?,
                                    })
                                },
                            )
                            .optional()?
                            .flatten();
                        if prior.is_some() {
                            keep_before.execute(params![id, prior])?;
                        }
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
        // The task's objects, by their ids: consecutive, inserted above.
        tx.execute(
            "UPDATE tasks SET first_object = ?2, last_object = ?3 WHERE id = ?1",
            params![task_id, span.map(|s| s.0), span.map(|s| s.1)],
        )?;
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
             WHERE job_id = ?1 AND state = 'failed' AND error_code NOT IN ('LIST_ERROR', 'INVALID_KEY', 'DUPLICATE_KEY')",
            params![job_id, ObjectState::Pending],
        )?;
        tx.execute(
            "UPDATE tasks SET state = ?2 WHERE job_id = ?1 AND state IN (?3, ?4)
             AND EXISTS (SELECT 1 FROM objects o
                         WHERE o.id BETWEEN tasks.first_object AND tasks.last_object
                           AND o.task_id = tasks.id AND o.state = ?5)",
            params![
                job_id,
                TaskState::Pending,
                TaskState::Failed,
                TaskState::Done,
                ObjectState::Pending
            ],
        )?;
        let unfixable: i64 = tx.query_row(
            "SELECT COUNT(*) FROM objects WHERE job_id = ?1 AND state = 'failed'",
            params![job_id],
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
                    "SELECT id, rel_path, size, mtime, upload_id, part_size, src_ref, ident, etag, md5, prior_etag,
                            (SELECT prefix FROM url_prefixes WHERE ref = src_ref)
                     FROM objects
                     WHERE id BETWEEN (SELECT first_object FROM tasks WHERE id = ?1)
                                  AND (SELECT last_object FROM tasks WHERE id = ?1)
                       AND task_id = ?1 AND state = ?2 ORDER BY id",
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
                    let rel_path: String = r.get(1)?;
                    let src_ref = compact::read_src_ref(r.get_ref(6)?, r.get(11)?, &rel_path)?;
                    Ok((
                        r.get::<_, i64>(0)?,
                        rel_path,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        src_ref,
                        r.get::<_, Option<i64>>(7)?,
                        (written, r.get::<_, Option<String>>(10)?),
                    ))
                })?;
                for row in rows {
                    objects.push(row?);
                }
            }
            let mut specs = Vec::with_capacity(objects.len());
            for (
                object_id,
                rel_path,
                size,
                mtime,
                upload_id,
                part_size,
                src_ref,
                ident,
                (written, dest_etag),
            ) in objects
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
                    src_ref,
                    rel_path,
                    size: size as u64,
                    mtime,
                    ident,
                    resume,
                    written,
                    dest_etag,
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
}

mod compact;
mod control;
mod jobs;
mod reads;
mod record;
mod schema;
pub use jobs::{Checkpoint, JobRow};
use jobs::{JOB_COLUMNS, job_row};
pub use record::{Final, Listed, Recorded};
use schema::SCHEMA_VERSION;
pub mod leases;
pub use leases::TaskStates;
mod limits;
pub use limits::Setting;
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
