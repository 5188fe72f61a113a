//! What `stat`, `errors`, `report`, manifests and the dry run read: counts
//! kept by triggers, pages of failures and objects, in bounded memory.

use super::*;

impl Store {
    /// Up to `limit` objects of a job after object id `after`, in id order,
    /// for its manifest: `key` is the relative path and `source` the
    /// listed reference (ETag or URL) until [`crate::report::locate`]
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
                    updated_at, error_code, error, meta_sha256,
                    (SELECT prefix FROM url_prefixes WHERE ref = src_ref)
             FROM objects WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = q.query_map(params![job_id, after, limit as i64], |r| {
            let key: String = r.get(1)?;
            // A pending row's ETag and MD5 are its predecessor's
            // (`Change::Metadata`), not a result of its own.
            let done = r.get::<_, ObjectState>(5)? != ObjectState::Pending;
            Ok(proto::api::ManifestRow {
                id: r.get(0)?,
                source: compact::read_src_ref(r.get_ref(4)?, r.get(14)?, &key)?.unwrap_or_default(),
                key,
                size: r.get::<_, i64>(2)? as u64,
                source_mtime: r.get(3)?,
                outcome: r.get::<_, ObjectState>(5)?.as_str().to_string(),
                md5: compact::read_md5(r.get_ref(6)?)?.filter(|_| done),
                crc64: compact::read_crc64(r.get_ref(7)?)?,
                dest_etag: compact::read_etag(r.get_ref(8)?, r.get_ref(6)?)?.filter(|_| done),
                verified_by: compact::read_verified_by(r.get_ref(9)?)?,
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
             WHERE job_id = ?1 AND state = 'failed'
             GROUP BY error_code ORDER BY count(*) DESC, error_code",
        )?;
        let rows = q.query_map(params![job_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
                verified_by: compact::read_verified_by(r.get_ref(6)?)?,
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
             WHERE job_id = ?1 AND state = 'failed' AND (?2 IS NULL OR rel_path > ?2)
             ORDER BY rel_path, id LIMIT ?3",
        )?;
        let mut last_id = 0i64;
        let mut failed = Vec::new();
        for r in q.query_map(params![job_id, after, limit as i64], |r| {
            Ok((row(r)?, r.get::<_, i64>(3)?))
        })? {
            let (f, id) = r?;
            last_id = id;
            failed.push(f);
        }
        let full = failed.len() == limit;
        if full && let Some(last) = failed.last().map(|f| f.rel_path.clone()) {
            let mut q = conn.prepare_cached(
                "SELECT rel_path, coalesce(error_code, ''), coalesce(error, '') FROM objects
                 WHERE job_id = ?1 AND state = 'failed' AND rel_path = ?2 AND id > ?3 ORDER BY id",
            )?;
            for f in q.query_map(params![job_id, last, last_id], row)? {
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
             WHERE job_id = ?1 AND state = 'failed'
             ORDER BY coalesce(updated_at, 0) DESC, id DESC LIMIT ?2",
        )?;
        let rows = q.query_map(params![job_id, n as i64], |r| {
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
