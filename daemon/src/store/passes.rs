//! Listing passes. Every job lists its source at least once (pass 1); an
//! incremental job lists it again every interval, and each later pass
//! copies only what is new or changed since the one before. What a pass
//! saw is recorded per object (`pass`: the pass that listed the row,
//! `seen_pass`: the last pass that found it, `deleted_pass`: the pass that
//! found it gone) and summed up in one `passes` row per pass.
//!
//! Every counter is written in the transaction that makes it true (a task
//! with its new and changed objects, the end of a listing, the end of a
//! pass), so a killed scan resumed from its checkpoint counts nothing
//! twice.

use rusqlite::{OptionalExtension, params};

use super::{ObjectState, Store, StoreError, now};

/// One branch of a parallel listing ([`Store::branches`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchRow {
    pub ord: i64,
    /// Everything below `at`; otherwise only what is directly in it.
    pub deep: bool,
    /// Where it lists, in its lister's own terms.
    pub at: String,
    pub checkpoint: Option<String>,
    pub done: bool,
}

/// The latest row recorded under a path ([`Store::prior`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prior {
    pub id: i64,
    pub size: u64,
    pub mtime: i64,
    pub ident: Option<i64>,
    pub src_ref: Option<String>,
    pub state: ObjectState,
    pub error_code: Option<String>,
}

pub use proto::api::PassRecord;

pub use proto::api::DeletedObject;

impl Store {
    /// The latest row recorded for `rel_path` in the job. Looked up through
    /// the index on `(job_id, state, rel_path)`, one probe per state, so a
    /// pass over a large job stays one index lookup per listed object.
    pub fn prior(&self, job_id: i64, rel_path: &str) -> Result<Option<Prior>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT id, size, mtime, src_ref, state, error_code, ident,
                    (SELECT prefix FROM url_prefixes WHERE ref = src_ref) FROM objects
             WHERE job_id = ?1 AND state IN (?3, ?4, ?5, ?6) AND rel_path = ?2
               AND error_code IS NOT 'DUPLICATE_KEY'
             ORDER BY id DESC LIMIT 1",
        )?;
        Ok(q.query_row(
            params![
                job_id,
                rel_path,
                ObjectState::Pending,
                ObjectState::Verified,
                ObjectState::Skipped,
                ObjectState::Failed
            ],
            |r| {
                Ok(Prior {
                    id: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    mtime: r.get(2)?,
                    src_ref: super::compact::read_src_ref(r.get_ref(3)?, r.get(7)?, rel_path)?,
                    state: r.get(4)?,
                    error_code: r.get(5)?,
                    ident: r.get(6)?,
                })
            },
        )
        .optional()?)
    }

    /// The source of the row this pass already listed for `rel_path`, if
    /// any (not counting `DUPLICATE_KEY` rows): what a second source of the
    /// same destination key loses to. `Some(None)`: a row without a source
    /// reference.
    pub fn listed_in_pass(
        &self,
        job_id: i64,
        rel_path: &str,
        pass: u32,
    ) -> Result<Option<Option<String>>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT src_ref, (SELECT prefix FROM url_prefixes WHERE ref = src_ref) FROM objects
             WHERE job_id = ?1 AND state IN (?4, ?5, ?6, ?7) AND rel_path = ?2
               AND seen_pass = ?3 AND error_code IS NOT 'DUPLICATE_KEY'
             ORDER BY id LIMIT 1",
        )?;
        Ok(q.query_row(
            params![
                job_id,
                rel_path,
                pass,
                ObjectState::Pending,
                ObjectState::Verified,
                ObjectState::Skipped,
                ObjectState::Failed
            ],
            |r| super::compact::read_src_ref(r.get_ref(0)?, r.get(1)?, rel_path),
        )
        .optional()?)
    }

    /// The relative path of every row this pass has listed so far (not
    /// counting `DUPLICATE_KEY` rows), for comparing keys without case.
    pub fn keys_in_pass(&self, job_id: i64, pass: u32) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT rel_path FROM objects
             WHERE job_id = ?1 AND seen_pass = ?2 AND error_code IS NOT 'DUPLICATE_KEY'
             ORDER BY id",
        )?;
        let rows = q.query_map(params![job_id, pass], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The `DUPLICATE_KEY` row an earlier pass recorded for this source of
    /// `rel_path`, found again rather than recorded twice.
    pub fn duplicate_row(
        &self,
        job_id: i64,
        rel_path: &str,
        src_ref: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT id, src_ref, (SELECT prefix FROM url_prefixes WHERE ref = src_ref) FROM objects
             WHERE job_id = ?1 AND state = 'failed' AND rel_path = ?2 AND error_code = 'DUPLICATE_KEY'",
        )?;
        let rows = q.query_map(params![job_id, rel_path], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                super::compact::read_src_ref(r.get_ref(1)?, r.get(2)?, rel_path)?,
            ))
        })?;
        for row in rows {
            let (id, src) = row?;
            if src.as_deref() == src_ref {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Records that pass `pass` found these rows unchanged (and, for one
    /// that was gone, back). Idempotent, so it needs no checkpoint: a
    /// resumed scan marks the same rows again.
    /// A row recorded before identity tags existed gets the one it was
    /// found with (`Some` beside its id).
    pub fn mark_seen(
        &self,
        job_id: i64,
        pass: u32,
        ids: &[(i64, Option<i64>)],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut q = tx.prepare_cached(
                "UPDATE objects SET seen_pass = ?3, deleted_pass = NULL, ident = coalesce(ident, ?4)
                 WHERE id = ?1 AND job_id = ?2",
            )?;
            for (id, ident) in ids {
                q.execute(params![id, job_id, pass, ident])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The job's current pass, its row made if it has none yet (the first
    /// pass of a job gets it when its listing starts).
    pub fn current_pass(&self, job_id: i64) -> Result<u32, StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO passes (job_id, number, started_at)
             SELECT id, pass, ?2 FROM jobs WHERE id = ?1",
            params![job_id, now()],
        )?;
        Ok(
            conn.query_row("SELECT pass FROM jobs WHERE id = ?1", [job_id], |r| {
                r.get(0)
            })?,
        )
    }

    /// The listing of the current pass is complete: what an earlier pass
    /// recorded and this one did not find is marked deleted (but what lies
    /// below a directory this pass could not read, which is unseen, not
    /// gone), listing errors of earlier passes give way to this listing,
    /// the pass's `found` and `deleted` are set and `scan_done`, in one
    /// transaction.
    pub fn finish_scan(&self, job_id: i64) -> Result<(), StoreError> {
        self.finish_listing(job_id, None)
    }

    /// As [`Store::finish_scan`], for a pass that listed only `scope` (a
    /// watched tree's changes: each entry a directory, `deep` for all of
    /// it, else only the entries directly in it; `""` is the root): only
    /// what an earlier pass recorded inside the scope, and this one did not
    /// find, is marked deleted. Listing errors of earlier passes stay until
    /// a whole listing.
    pub fn finish_scoped_scan(
        &self,
        job_id: i64,
        scope: &[(bool, String)],
    ) -> Result<(), StoreError> {
        self.finish_listing(job_id, Some(scope))
    }

    fn finish_listing(
        &self,
        job_id: i64,
        scope: Option<&[(bool, String)]>,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let pass: u32 = tx.query_row("SELECT pass FROM jobs WHERE id = ?1", [job_id], |r| {
            r.get(0)
        })?;
        let unreadable: Vec<String> = {
            let mut q = tx.prepare_cached(
                "SELECT rel_path FROM objects WHERE job_id = ?1 AND pass = ?2 AND state = 'failed'
                 AND error_code = 'LIST_ERROR'",
            )?;
            q.query_map(params![job_id, pass], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for dir in unreadable {
            // A directory's error is recorded as `dir/`.
            let dir = dir.trim_end_matches('/');
            tx.execute(
                "UPDATE objects SET seen_pass = ?2 WHERE job_id = ?1 AND seen_pass < ?2
                 AND (rel_path = ?3 OR substr(rel_path, 1, length(?3) + 1) = ?3 || '/')",
                params![job_id, pass, dir],
            )?;
        }
        let mut deleted = 0;
        match scope {
            None => {
                // A listing error of an earlier pass said "unseen", and this
                // pass has listed again (a new error is a new row of this pass).
                tx.execute(
                    "DELETE FROM objects WHERE job_id = ?1 AND pass < ?2 AND state = 'failed'
                     AND error_code = 'LIST_ERROR'",
                    params![job_id, pass],
                )?;
                deleted = tx.execute(
                    "UPDATE objects SET deleted_pass = ?2
                     WHERE job_id = ?1 AND seen_pass < ?2 AND deleted_pass IS NULL",
                    params![job_id, pass],
                )?;
            }
            Some(scope) => {
                for (deep, dir) in scope {
                    let under = if dir.is_empty() {
                        String::new()
                    } else {
                        format!("{dir}/")
                    };
                    // Every path under `dir/` sorts in [`dir/`, `dir0`) ('0'
                    // follows '/'), a range of the (job, path) index.
                    let end = if dir.is_empty() {
                        "\u{10FFFF}".to_string()
                    } else {
                        format!("{dir}0")
                    };
                    // Deep: everything below; flat: no `/` after the prefix.
                    deleted += tx.execute(
                        "UPDATE objects SET deleted_pass = ?2
                         WHERE job_id = ?1 AND state IN (?6, ?7, ?8, ?9)
                         AND rel_path >= ?3 AND rel_path < ?5
                         AND seen_pass < ?2 AND deleted_pass IS NULL
                         AND substr(rel_path, 1, length(?3)) = ?3
                         AND (?4 OR instr(substr(rel_path, length(?3) + 1), '/') = 0)",
                        params![
                            job_id,
                            pass,
                            under,
                            deep,
                            end,
                            ObjectState::Pending,
                            ObjectState::Verified,
                            ObjectState::Skipped,
                            ObjectState::Failed
                        ],
                    )?;
                }
            }
        }
        let found: i64 = tx.query_row(
            "SELECT count(*) FROM objects WHERE job_id = ?1 AND seen_pass = ?2",
            params![job_id, pass],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE passes SET found = ?3, deleted = ?4 WHERE job_id = ?1 AND number = ?2",
            params![job_id, pass, found, deleted as i64],
        )?;
        tx.execute(
            "UPDATE jobs SET scan_done = 1, updated_at = ?2 WHERE id = ?1",
            params![job_id, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records why the current pass's listing failed (`None`: it has not,
    /// once a listing started again finished), for `report` and `stat`;
    /// nothing else changes.
    pub fn note_scan_error(&self, job_id: i64, error: Option<&str>) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO passes (job_id, number, started_at)
             SELECT id, pass, ?2 FROM jobs WHERE id = ?1",
            params![job_id, now()],
        )?;
        conn.execute(
            "UPDATE passes SET error = ?2
             WHERE job_id = ?1 AND number = (SELECT pass FROM jobs WHERE id = ?1)",
            params![job_id, error],
        )?;
        Ok(())
    }

    /// The listing of the current pass failed as a whole: its error is
    /// recorded and the listing counts as done, so the pass can end with
    /// what it queued. Nothing is marked deleted (the listing is partial).
    pub fn fail_pass_scan(&self, job_id: i64, error: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE passes SET error = ?2,
                 found = (SELECT count(*) FROM objects o WHERE o.job_id = ?1 AND o.seen_pass = passes.number)
             WHERE job_id = ?1 AND number = (SELECT pass FROM jobs WHERE id = ?1)",
            params![job_id, error],
        )?;
        tx.execute(
            "UPDATE jobs SET scan_done = 1, updated_at = ?2 WHERE id = ?1",
            params![job_id, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Ends the current pass (every object of it is final): its `copied`
    /// and `failed` are counted, and the next pass is due at `next_at`.
    pub fn end_pass(&self, job_id: i64, next_at: i64) -> Result<PassRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let pass: u32 = tx.query_row("SELECT pass FROM jobs WHERE id = ?1", [job_id], |r| {
            r.get(0)
        })?;
        tx.execute(
            "UPDATE passes SET ended_at = ?3,
                 copied = (SELECT count(*) FROM objects WHERE job_id = ?1 AND pass = ?2 AND state = ?4),
                 failed = (SELECT count(*) FROM objects WHERE job_id = ?1 AND pass = ?2 AND state = 'failed')
             WHERE job_id = ?1 AND number = ?2",
            params![job_id, pass, now(), ObjectState::Verified],
        )?;
        tx.execute(
            "UPDATE jobs SET next_pass_at = ?2, updated_at = ?3 WHERE id = ?1",
            params![job_id, next_at, now()],
        )?;
        tx.commit()?;
        drop(conn);
        Ok(self
            .passes(job_id)?
            .into_iter()
            .find(|p| p.number == pass)
            .unwrap_or_default())
    }

    /// Starts the next pass: its row, and a listing from the beginning.
    /// Returns its number.
    pub fn begin_pass(&self, job_id: i64) -> Result<u32, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM scan_branches WHERE job_id = ?1", [job_id])?;
        tx.execute(
            "UPDATE jobs SET pass = pass + 1, scan_done = 0, scan_checkpoint = NULL,
                 next_pass_at = NULL, updated_at = ?2 WHERE id = ?1",
            params![job_id, now()],
        )?;
        let pass: u32 = tx.query_row("SELECT pass FROM jobs WHERE id = ?1", [job_id], |r| {
            r.get(0)
        })?;
        tx.execute(
            "INSERT OR IGNORE INTO passes (job_id, number, started_at) VALUES (?1, ?2, ?3)",
            params![job_id, pass, now()],
        )?;
        tx.commit()?;
        Ok(pass)
    }

    /// Every pass of a job, first to last.
    pub fn passes(&self, job_id: i64) -> Result<Vec<PassRecord>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT number, started_at, ended_at, found, new, changed, retried, deleted, copied, failed, error
             FROM passes WHERE job_id = ?1 ORDER BY number",
        )?;
        let rows = q.query_map([job_id], |r| {
            Ok(PassRecord {
                number: r.get(0)?,
                started_at: r.get(1)?,
                ended_at: r.get(2)?,
                found: r.get::<_, i64>(3)? as u64,
                new: r.get::<_, i64>(4)? as u64,
                changed: r.get::<_, i64>(5)? as u64,
                retried: r.get::<_, i64>(6)? as u64,
                deleted: r.get::<_, i64>(7)? as u64,
                copied: r.get::<_, i64>(8)? as u64,
                failed: r.get::<_, i64>(9)? as u64,
                error: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` of the objects the source no longer has, in path
    /// order after `after`.
    pub fn deleted_page(
        &self,
        job_id: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeletedObject>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT rel_path, size, deleted_pass FROM objects
             WHERE job_id = ?1 AND deleted_pass IS NOT NULL AND rel_path > ?2
             ORDER BY rel_path LIMIT ?3",
        )?;
        let rows = q.query_map(params![job_id, after.unwrap_or(""), limit as i64], |r| {
            Ok(DeletedObject {
                rel_path: r.get(0)?,
                size: r.get::<_, i64>(1)? as u64,
                pass: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The branches of the job's parallel listing, in order; empty before
    /// it is partitioned.
    pub fn branches(&self, job_id: i64) -> Result<Vec<BranchRow>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT ord, deep, at, checkpoint, done FROM scan_branches WHERE job_id = ?1 ORDER BY ord",
        )?;
        let rows = q.query_map([job_id], |r| {
            Ok(BranchRow {
                ord: r.get(0)?,
                deep: r.get::<_, i64>(1)? != 0,
                at: r.get(2)?,
                checkpoint: r.get(3)?,
                done: r.get::<_, i64>(4)? != 0,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records how the listing is split (`(deep, at)` per branch), once,
    /// in one transaction.
    pub fn set_branches(&self, job_id: i64, branches: &[(bool, String)]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut q = tx.prepare_cached(
                "INSERT INTO scan_branches (job_id, ord, deep, at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (i, (deep, at)) in branches.iter().enumerate() {
                q.execute(params![job_id, i as i64, i64::from(*deep), at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A branch is listed to its end (its last task committed before).
    pub fn finish_branch(&self, job_id: i64, ord: i64) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE scan_branches SET done = 1 WHERE job_id = ?1 AND ord = ?2",
            params![job_id, ord],
        )?;
        Ok(())
    }
}
