//! What the engine counts as it works, for `/metrics` and the status page
//! ([`crate::status`] reads it; the engine only adds to it): leases granted,
//! expired and taken back, job-store commits and their latency, and a
//! history of bytes done for the throughput chart.
//!
//! Everything the store already knows (objects found, verified, failed by
//! code) is read from it at scrape time instead, so those values survive a
//! restart and equal `stat --json`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// A job's name as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: String,
}

/// An executor's name as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    pub agent: String,
}

/// Why leased tasks went back to pending.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// How long the chart looks back.
pub const HISTORY: Duration = Duration::from_secs(6 * 3600);

/// Counters the engine adds to; cheap to clone (every metric is an `Arc`).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Tasks leased to an executor, by job.
    pub leases_granted: Family<JobLabel, Counter>,
    /// Leases that ran out without a heartbeat.
    pub leases_expired: Counter,
    /// Leased tasks taken back before their end, by reason (`pause`,
    /// `agent_left`, `revoked`, `restart`).
    pub tasks_requeued: Family<ReasonLabel, Counter>,
    /// Seconds per job-store commit of executor events.
    pub commit_seconds: Histogram,
    /// Executor events committed to the store.
    pub events_recorded: Counter,
    /// Executor results the daemon's check refused, by executor.
    pub results_rejected: Family<AgentLabel, Counter>,
    history: std::sync::Arc<Mutex<History>>,
}

/// Every reason tasks are requeued for, shown at 0 from the start.
pub const REQUEUE_REASONS: [&str; 4] = ["pause", "agent_left", "revoked", "restart"];

impl Default for Metrics {
    fn default() -> Metrics {
        let tasks_requeued: Family<ReasonLabel, Counter> = Family::default();
        for r in REQUEUE_REASONS {
            let _ = tasks_requeued.get_or_create(&ReasonLabel { reason: r.into() });
        }
        Metrics {
            leases_granted: Family::default(),
            leases_expired: Counter::default(),
            tasks_requeued,
            // 0.5 ms .. ~4 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            events_recorded: Counter::default(),
            results_rejected: Family::default(),
            history: Default::default(),
        }
    }
}

impl Metrics {
    pub fn requeued(&self, reason: &str, n: usize) {
        if n > 0 {
            self.tasks_requeued
                .get_or_create(&ReasonLabel {
                    reason: reason.into(),
                })
                .inc_by(n as u64);
        }
    }

    pub fn rejected(&self, agent: &str) {
        self.results_rejected
            .get_or_create(&AgentLabel {
                agent: agent.into(),
            })
            .inc();
    }

    pub fn granted(&self, job: &str, n: usize) {
        if n > 0 {
            self.leases_granted
                .get_or_create(&JobLabel { job: job.into() })
                .inc_by(n as u64);
        }
    }

    /// Adds a sample of bytes done (verified or skipped) per job name at
    /// `at` (unix seconds), dropping what is older than [`HISTORY`].
    pub fn sample(&self, at: i64, done: HashMap<String, u64>) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.samples.push_back(Sample { at, done });
        while h
            .samples
            .front()
            .is_some_and(|s| s.at < at - HISTORY.as_secs() as i64)
        {
            h.samples.pop_front();
        }
    }

    /// Bytes per second over the whole daemon between consecutive samples:
    /// `(at, rate)` points, oldest first. A job that appears or disappears
    /// between two samples (submitted, cleaned) counts only where it is in
    /// both.
    pub fn throughput(&self) -> Vec<(i64, f64)> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.samples
            .iter()
            .zip(h.samples.iter().skip(1))
            .filter(|(a, b)| b.at > a.at)
            .map(|(a, b)| {
                let moved: u64 = b
                    .done
                    .iter()
                    .filter_map(|(job, n)| a.done.get(job).map(|m| n.saturating_sub(*m)))
                    .sum();
                (b.at, moved as f64 / (b.at - a.at) as f64)
            })
            .collect()
    }

    /// A job's bytes per second over the last `window` seconds of samples.
    pub fn job_rate(&self, job: &str, window: i64) -> Option<f64> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let last = h.samples.back()?;
        let first = h
            .samples
            .iter()
            .find(|s| s.at >= last.at - window && s.done.contains_key(job))?;
        let (a, b) = (first.done.get(job)?, last.done.get(job)?);
        (last.at > first.at).then(|| b.saturating_sub(*a) as f64 / (last.at - first.at) as f64)
    }
}

#[derive(Debug, Default)]
struct History {
    samples: VecDeque<Sample>,
}

#[derive(Debug)]
struct Sample {
    at: i64,
    done: HashMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(v: &[(&str, u64)]) -> HashMap<String, u64> {
        v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn throughput_counts_jobs_present_in_both_samples_and_forgets_old_ones() {
        let m = Metrics::default();
        m.sample(100, done(&[("a", 0)]));
        m.sample(110, done(&[("a", 1000), ("b", 5_000_000)]));
        m.sample(120, done(&[("a", 3000), ("b", 5_000_500)]));
        // b appeared at 110 with bytes done before: not a burst at 110.
        assert_eq!(m.throughput(), vec![(110, 100.0), (120, 250.0)]);
        assert_eq!(m.job_rate("a", 60), Some(150.0));
        assert_eq!(m.job_rate("b", 60), Some(50.0));
        assert_eq!(m.job_rate("c", 60), None);
        m.sample(100 + HISTORY.as_secs() as i64 + 20, done(&[("a", 3000)]));
        // Only the samples within HISTORY of the last one are kept.
        assert_eq!(m.throughput().len(), 1);
    }
}
