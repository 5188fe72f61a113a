//! The trail of state-changing control calls (`submit`, `clean`, `set`,
//! `pause`, `resume`, `retry`, `enrol`, `revoke`, `stop`): when, who (uid
//! and user name) and what. Kept after `clean` (it names the job), shown
//! by `report` and `stat --json`.

use rusqlite::params;

use super::{Store, StoreError};

use proto::api::ControlCall;

/// Calls shown per job at most (the latest).
const SHOWN: i64 = 200;

impl Store {
    pub fn log_control(&self, call: &ControlCall) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO control_log (job, at, uid, user, verb, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                call.job,
                call.at,
                call.uid,
                call.user,
                call.verb,
                call.detail
            ],
        )?;
        Ok(())
    }

    /// The latest calls on the job named `job` (also before a `clean` of
    /// an earlier job of that name), oldest first.
    pub fn control_log(&self, job: &str) -> Result<Vec<ControlCall>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT at, uid, user, verb, job, detail FROM control_log
             WHERE job = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let mut v = q
            .query_map(params![job, SHOWN], |r| {
                Ok(ControlCall {
                    at: r.get(0)?,
                    uid: r.get(1)?,
                    user: r.get(2)?,
                    verb: r.get(3)?,
                    job: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        v.reverse();
        Ok(v)
    }
}
