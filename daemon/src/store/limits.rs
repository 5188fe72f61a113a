//! The audit trail of `ossimportctl set`: every change of a running job's
//! limits, kept with the job (and deleted with it). A restarted engine
//! applies the changes again, in order, to the job's plan.

use proto::api::LimitChange;
use rusqlite::params;

use super::{Store, StoreError, now};

/// One setting applied: the key as `job.cfg` spells it, with its old and
/// new values as `set` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub old: String,
    pub new: String,
}

impl Setting {
    pub(crate) fn new(key: &str, old: impl ToString, new: impl ToString) -> Setting {
        Setting {
            key: key.into(),
            old: old.to_string(),
            new: new.to_string(),
        }
    }
}

impl Store {
    /// Records one `set` (its keys with their old and new values) in one
    /// transaction.
    pub fn record_limit_changes(
        &self,
        job_id: i64,
        by: &str,
        changes: &[Setting],
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut q = tx.prepare_cached(
                "INSERT INTO limit_changes (job_id, at, by, key, old, new) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let at = now();
            for c in changes {
                q.execute(params![job_id, at, by, c.key, c.old, c.new])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A job's limit changes, oldest first.
    pub fn limit_changes(&self, job_id: i64) -> Result<Vec<LimitChange>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT at, by, key, old, new FROM limit_changes WHERE job_id = ?1 ORDER BY id",
        )?;
        let rows = q.query_map(params![job_id], |r| {
            Ok(LimitChange {
                at: r.get(0)?,
                by: r.get(1)?,
                key: r.get(2)?,
                old: r.get(3)?,
                new: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
