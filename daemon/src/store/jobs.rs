//! Job rows: create, find, delete, state and the scan checkpoint.

use super::*;

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
pub(super) const JOB_COLUMNS: &str = "id, name, config, fingerprint, state, scan_done, scan_checkpoint, pass, next_pass_at, owner_uid, owner_name";

pub(super) fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
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

/// Where a job's listing stands: finished, or the position of the last
/// committed task (a lister's own format) to resume after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub done: bool,
    pub position: Option<String>,
}

impl Store {
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

    /// Where a job's listing stands.
    pub fn scan_checkpoint(&self, job_id: i64) -> Result<Checkpoint, StoreError> {
        Ok(self.lock().query_row(
            "SELECT scan_done, scan_checkpoint FROM jobs WHERE id = ?1",
            [job_id],
            |r| {
                Ok(Checkpoint {
                    done: r.get::<_, i64>(0)? != 0,
                    position: r.get(1)?,
                })
            },
        )?)
    }
}
