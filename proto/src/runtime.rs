//! The async runtime every binary runs on.
//!
//! Half the cores as worker threads (at least one), not tokio's one per
//! core: the work of an executor is mostly waiting on sockets and handing
//! file reads and hashing to the blocking pool, which has threads of its
//! own. An idle worker is woken for each new task and each file read that
//! comes back, and on a small machine those wake-ups and the stealing
//! between workers cost more than the work they share: on 2 cores, one
//! worker instead of two took 14% less CPU and 10% less time for 10,000
//! files of 16 KiB (bench/RESULTS.md, issue 30 round 4). `TOKIO_WORKER_THREADS`
//! in the environment sets the number instead.

/// The worker threads when the environment does not say: half the cores.
pub fn default_workers(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// A multi-threaded runtime with I/O and timers, sized as above.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        b.worker_threads(default_workers(cores));
    }
    b.build()
}

/// The next message of a batch being gathered: only one already queued
/// when `now` (someone waits for the batch, or the process is stopping),
/// else one that arrives before `deadline`. `None` ends the batch.
pub async fn next_by<T>(
    rx: &mut tokio::sync::mpsc::Receiver<T>,
    deadline: tokio::time::Instant,
    now: bool,
) -> Option<T> {
    if now {
        rx.try_recv().ok()
    } else {
        tokio::time::timeout_at(deadline, rx.recv())
            .await
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::default_workers;

    #[test]
    fn half_the_cores_and_never_none() {
        for (cores, workers) in [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8), (0, 1)] {
            assert_eq!(default_workers(cores), workers, "{cores} cores");
        }
    }
}
