//! Between the store and the executors: live counters and the recorder that
//! applies executor events to the store in batched transactions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::job::{Event, Outcome};
use tokio::sync::{Notify, mpsc};

use crate::store::{Store, StoreError};

/// Counters of a running job for progress displays; the store stays the
/// source of truth.
#[derive(Debug, Default)]
pub struct Live {
    pub scanned_objects: AtomicU64,
    pub scanned_bytes: AtomicU64,
    pub verified: AtomicU64,
    pub verified_bytes: AtomicU64,
    pub skipped: AtomicU64,
    pub skipped_bytes: AtomicU64,
    pub failed: AtomicU64,
    /// Signalled after every committed batch, so a dispatcher waiting for
    /// tasks to finish re-checks the store.
    pub committed: Notify,
}

impl Live {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }
}

/// Most events applied in one transaction.
const MAX_BATCH: usize = 2000;
/// Longest wait for more events before a batch is committed.
const GATHER: std::time::Duration = std::time::Duration::from_millis(25);

/// Applies events from `rx` to the store until every sender is gone. Events
/// that arrive together are committed in one transaction (no per-object
/// fsync); counters are updated only after the commit.
pub async fn record(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Event>,
    live: Arc<Live>,
) -> Result<(), StoreError> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(ev) = rx.recv().await {
        batch.push(ev);
        // Gather for a moment so one transaction carries many events: a
        // commit per one or two events cost more than the copying itself
        // for small files.
        let deadline = tokio::time::Instant::now() + GATHER;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev)) => batch.push(ev),
                _ => break,
            }
        }
        let events = std::mem::take(&mut batch);
        let st = Arc::clone(&store);
        let events = tokio::task::spawn_blocking(move || st.apply_events(&events).map(|()| events))
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))??;
        for ev in &events {
            if let Event::ObjectDone(r) = ev {
                match r.outcome {
                    Outcome::Verified => {
                        live.verified.fetch_add(1, Ordering::Relaxed);
                        live.verified_bytes.fetch_add(r.size, Ordering::Relaxed);
                    }
                    Outcome::Skipped => {
                        live.skipped.fetch_add(1, Ordering::Relaxed);
                        live.skipped_bytes.fetch_add(r.size, Ordering::Relaxed);
                    }
                    Outcome::Failed => {
                        live.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        batch = events;
        batch.clear();
        live.committed.notify_waiters();
    }
    Ok(())
}
