//! Task leases for distributed mode, and the read queries behind `stat`,
//! `workers` and `report`.
//!
//! A dispatched task belongs to one agent (its key fingerprint) until
//! `lease_until` (unix seconds). Heartbeats move the deadline forward; a
//! lease that passes its deadline returns the task to pending. Results stay
//! idempotent whoever reports them (see `Store::record`).

use std::collections::HashMap;

use rusqlite::params;

use super::{JobRow, ObjectState, Store, StoreError, TaskState};

/// A dispatched task with how far it got.
#[derive(Clone, Debug)]
pub struct RunningTask {
    pub task_id: i64,
    pub agent: Option<String>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
}

/// A job's tasks not yet final.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskStates {
    pub pending: u64,
    /// Leased to an executor.
    pub dispatched: u64,
}

impl TaskStates {
    /// No task is pending or leased: with the listing done, the job (or
    /// the pass) is drained.
    pub fn none_left(self) -> bool {
        self.pending == 0 && self.dispatched == 0
    }
}

impl Store {
    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(&format!(
            "SELECT {} FROM jobs ORDER BY id",
            super::JOB_COLUMNS
        ))?;
        let rows = q.query_map([], super::job_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Returns tasks whose lease ended before `now` to pending.
    pub fn expire_leases(&self, now: i64) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "UPDATE tasks SET state = ?2, agent = NULL, lease_until = NULL
             WHERE state = ?3 AND lease_until < ?1",
            params![now, TaskState::Pending, TaskState::Dispatched],
        )?)
    }

    /// Gives every dispatched task a lease until at least `until`: after a
    /// daemon restart, agents that are still working get one lease period
    /// to check in before their tasks go to someone else.
    pub fn extend_leases(&self, until: i64) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "UPDATE tasks SET lease_until = ?1 WHERE state = ?2 AND lease_until < ?1",
            params![until, TaskState::Dispatched],
        )?)
    }

    /// Renews the leases `agent` holds among `task_ids` until `until`, and
    /// returns the ids it does not hold (any more): the agent should drop
    /// them.
    pub fn renew_leases(
        &self,
        agent: &str,
        task_ids: &[i64],
        until: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut lost = Vec::new();
        {
            let mut renew = tx.prepare_cached(
                "UPDATE tasks SET lease_until = ?3 WHERE id = ?1 AND agent = ?2 AND state = ?4",
            )?;
            for id in task_ids {
                if renew.execute(params![id, agent, until, TaskState::Dispatched])? == 0 {
                    lost.push(*id);
                }
            }
        }
        tx.commit()?;
        Ok(lost)
    }

    /// Returns tasks leased to `agent` to pending (a batch it refused or
    /// never received).
    pub fn release_tasks(&self, agent: &str, task_ids: &[i64]) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut n = 0;
        {
            let mut q = tx.prepare_cached(
                "UPDATE tasks SET state = ?3, agent = NULL, lease_until = NULL
                 WHERE id = ?1 AND agent = ?2 AND state = ?4",
            )?;
            for id in task_ids {
                n += q.execute(params![
                    id,
                    agent,
                    TaskState::Pending,
                    TaskState::Dispatched
                ])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Returns every task leased to `agent` to pending (it said goodbye).
    pub fn release_agent(&self, agent: &str) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "UPDATE tasks SET state = ?2, agent = NULL, lease_until = NULL
             WHERE agent = ?1 AND state = ?3",
            params![agent, TaskState::Pending, TaskState::Dispatched],
        )?)
    }

    /// A job's pending and dispatched task counts: cheap enough for every
    /// scheduler pass, unlike the object counts.
    pub fn task_states(&self, job_id: i64) -> Result<TaskStates, StoreError> {
        Ok(self.lock().query_row(
            "SELECT count(CASE WHEN state = ?2 THEN 1 END),
                    count(CASE WHEN state = ?3 THEN 1 END)
             FROM tasks WHERE job_id = ?1",
            params![job_id, TaskState::Pending, TaskState::Dispatched],
            |r| {
                Ok(TaskStates {
                    pending: r.get::<_, i64>(0)? as u64,
                    dispatched: r.get::<_, i64>(1)? as u64,
                })
            },
        )?)
    }

    /// Dispatched tasks per agent fingerprint.
    pub fn leases_by_agent(&self) -> Result<HashMap<String, u64>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT agent, count(*) FROM tasks WHERE state = ?1 AND agent IS NOT NULL GROUP BY agent",
        )?;
        let rows = q.query_map([TaskState::Dispatched], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Tasks leased now, by agent and job.
    pub fn leases_by_agent_job(&self) -> Result<HashMap<(String, i64), u64>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT agent, job_id, count(*) FROM tasks WHERE state = ?1 AND agent IS NOT NULL GROUP BY agent, job_id",
        )?;
        let rows = q.query_map([TaskState::Dispatched], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, i64>(1)?),
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Dispatched tasks of a job with bytes and files final so far.
    pub fn running_tasks(&self, job_id: i64) -> Result<Vec<RunningTask>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT t.id, t.agent, t.byte_count, t.object_count,
                    coalesce(sum(CASE WHEN o.state != ?2 THEN o.size END), 0),
                    count(CASE WHEN o.state != ?2 THEN 1 END)
             FROM tasks t LEFT JOIN objects o
               ON o.id BETWEEN t.first_object AND t.last_object AND o.task_id = t.id
             WHERE t.job_id = ?1 AND t.state = ?3
             GROUP BY t.id ORDER BY t.id",
        )?;
        let rows = q.query_map(
            params![job_id, ObjectState::Pending, TaskState::Dispatched],
            |r| {
                Ok(RunningTask {
                    task_id: r.get(0)?,
                    agent: r.get(1)?,
                    bytes_total: r.get::<_, i64>(2)? as u64,
                    files_total: r.get::<_, i64>(3)? as u64,
                    bytes_done: r.get::<_, i64>(4)? as u64,
                    files_done: r.get::<_, i64>(5)? as u64,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Verified and skipped objects of a job by how they were verified:
    /// `(verified_by, objects, bytes)`.
    pub fn verify_methods(&self, job_id: i64) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let conn = self.lock();
        let mut q = conn.prepare_cached(
            "SELECT state, verified_by, count(*), coalesce(sum(size), 0) FROM objects
             WHERE job_id = ?1 AND state IN (?2, ?3) GROUP BY 1, 2",
        )?;
        let rows = q.query_map(
            params![job_id, ObjectState::Verified, ObjectState::Skipped],
            |r| {
                let by = super::compact::read_verified_by(r.get_ref(1)?)?.unwrap_or_default();
                Ok((
                    format!("{}:{by}", r.get::<_, String>(0)?),
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                ))
            },
        )?;
        // One line per evidence, however each row keeps it (bits, or the
        // words of rows written before schema 10), in order.
        let mut methods = std::collections::BTreeMap::<String, (u64, u64)>::new();
        for row in rows {
            let (by, n, bytes) = row?;
            let m = methods.entry(by).or_default();
            m.0 += n;
            m.1 += bytes;
        }
        Ok(methods.into_iter().map(|(by, (n, b))| (by, n, b)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NewObject, Store};

    fn obj(p: &str) -> NewObject {
        NewObject {
            rel_path: p.into(),
            size: 10,
            mtime: 1,
            ident: None,
            src_ref: None,
            failure: None,
        }
    }

    #[test]
    fn leases_expire_renew_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let job = s.create_job("j", "{}", "f").unwrap();
        let t1 = s.commit_task(job, &[obj("a")], "a").unwrap();
        let t2 = s.commit_task(job, &[obj("b")], "b").unwrap();
        assert_eq!(s.lease_tasks(job, 1, "A", 100).unwrap()[0].task_id, t1);
        assert_eq!(s.lease_tasks(job, 1, "B", 100).unwrap()[0].task_id, t2);
        let owner = |t: i64| {
            s.running_tasks(job)
                .unwrap()
                .into_iter()
                .find(|r| r.task_id == t)
                .and_then(|r| r.agent)
        };
        assert_eq!(owner(t1).as_deref(), Some("A"));
        assert_eq!(s.leases_by_agent().unwrap()["B"], 1);

        // A renews its own task; B's task is not A's to renew.
        assert_eq!(s.renew_leases("A", &[t1, t2], 200).unwrap(), vec![t2]);
        // At 150 only B's lease (until 100) has run out.
        assert_eq!(s.expire_leases(150).unwrap(), 1);
        assert_eq!(owner(t2), None);
        assert_eq!(s.counts(job).unwrap().tasks_pending, 1);

        // A refused batch goes back at once; only its holder can release it.
        assert_eq!(s.release_tasks("B", &[t1]).unwrap(), 0);
        assert_eq!(s.release_tasks("A", &[t1]).unwrap(), 1);
        assert_eq!(s.counts(job).unwrap().tasks_pending, 2);
        assert_eq!(s.running_tasks(job).unwrap().len(), 0);
    }
}
