//! Recording what executors report: the lease filter inside the
//! transaction, the daemon's check of every result, and each event applied.

use super::*;

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
                        r.verified_by.bits().to_string(),
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
                        WHEN EXISTS (SELECT 1 FROM objects WHERE id BETWEEN tasks.first_object
                            AND tasks.last_object AND task_id = ?1 AND state = ?2) THEN ?5
                        WHEN EXISTS (SELECT 1 FROM objects WHERE id BETWEEN tasks.first_object
                            AND tasks.last_object AND task_id = ?1 AND state = ?3) THEN ?6
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

impl Store {
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
                        verified_by: Default::default(),
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
}
