//! Live limits: `ossimportctl set JOB KEY=VALUE...` and the bandwidth
//! schedule (`workerMaxThroughputSchedule`). A change lands in the job's
//! loaded spec (so every batch carries it), in the local worker's executor
//! at once, and in every agent's at its next heartbeat (the reply lists the
//! limits of every job); it is stored with the job, who asked and when, and
//! applied again to the plan when the engine restarts.

use std::sync::Arc;

use proto::api::{JobLimits, LimitChange};
use proto::job::JobSpec;
use tracing::{info, warn};

use super::{Engine, JobError, JobRt, find};
use crate::config::keys;
use crate::config::schedule::Schedule;
use crate::state::blocking;
pub use crate::store::Setting;

/// The keys `set` takes, as `job.cfg` / `sys.properties` spell them.
pub const KEYS: &[&str] = &[
    "workerMaxThroughput",
    "workerTaskThreadNum",
    "maxRequestsPerSecond",
    "workerMaxThroughputSchedule",
];

/// The parts of a loaded job that limits change.
#[derive(Clone, Debug, Default)]
pub struct Tuning {
    /// `workerMaxThroughput` as planned or set, bytes per second (0: none);
    /// what holds when there is no schedule.
    pub flat_bandwidth: u64,
    pub schedule: Option<Schedule>,
}

impl Tuning {
    /// From a fresh plan (whose `bytes_per_second` is the flat cap).
    pub fn of(spec: &JobSpec) -> Tuning {
        Tuning {
            flat_bandwidth: spec.limits.bytes_per_second,
            schedule: spec
                .limits
                .bandwidth_schedule
                .as_deref()
                .and_then(|t| Schedule::parse(t).ok()),
        }
    }

    /// The bandwidth in force now.
    pub fn bandwidth_now(&self) -> u64 {
        match &self.schedule {
            Some(s) => s.now(),
            None => self.flat_bandwidth,
        }
    }
}

/// Why a setting of `set` was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    #[error("{0:?}: expected KEY=VALUE")]
    NotKeyValue(String),
    #[error("{key}={value}: expected a whole number from 0 to {max}")]
    NotANumber {
        key: String,
        value: String,
        max: u64,
    },
    #[error("{key}={value}: at least {min}")]
    TooSmall {
        key: String,
        value: String,
        min: u64,
    },
    #[error("{key}: {why}")]
    BadSchedule { key: String, why: String },
    #[error("{key}: not a limit that can change while a job runs (one of: {})", KEYS.join(", "))]
    NotLive { key: String },
}

/// Applies `key=value` to a spec and its tuning.
fn apply(spec: &mut JobSpec, tuning: &mut Tuning, setting: &str) -> Result<Setting, SetError> {
    let (key, value) = setting
        .split_once('=')
        .ok_or_else(|| SetError::NotKeyValue(setting.into()))?;
    let (key, value) = (key.trim(), value.trim());
    // Ranges as the key table gives them (`job::config::keys`), as when
    // the job file was read.
    let number = |table: &'static [keys::Key], name: &str, cap: u64| -> Result<u64, SetError> {
        let range = keys::find(table, name).range();
        let (min, max) = (*range.start(), (*range.end()).min(cap));
        let n = value
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| SetError::NotANumber {
                key: key.into(),
                value: value.into(),
                max,
            })?;
        if n < min {
            return Err(SetError::TooSmall {
                key: key.into(),
                value: value.into(),
                min,
            });
        }
        Ok(n)
    };
    Ok(match key {
        "workerMaxThroughput" | "workerMaxThroughput(KB/s)" => {
            // KB/s, kept in bytes per second.
            let kbps = number(keys::SYS, "workerMaxThroughput(KB/s)", u64::MAX / 1024)?;
            let old = tuning.flat_bandwidth / 1024;
            tuning.flat_bandwidth = kbps * 1024;
            Setting::new("workerMaxThroughput", old, kbps)
        }
        "workerTaskThreadNum" => {
            let n = number(keys::SYS, key, u64::MAX)?;
            let old = spec.object_concurrency;
            spec.object_concurrency = u32::try_from(n).unwrap_or(u32::MAX);
            Setting::new(key, old, n)
        }
        "maxRequestsPerSecond" => {
            let n = u32::try_from(number(keys::JOB, key, u64::MAX)?).unwrap_or(u32::MAX);
            let old = spec.limits.requests_per_second;
            spec.limits.requests_per_second = n;
            Setting::new(key, old, n)
        }
        "workerMaxThroughputSchedule" => {
            let old = spec.limits.bandwidth_schedule.clone().unwrap_or_default();
            if value.is_empty() || value.eq_ignore_ascii_case("none") {
                tuning.schedule = None;
                spec.limits.bandwidth_schedule = None;
            } else {
                tuning.schedule =
                    Some(Schedule::parse(value).map_err(|e| SetError::BadSchedule {
                        key: key.into(),
                        why: e.to_string(),
                    })?);
                spec.limits.bandwidth_schedule = Some(value.to_string());
            }
            Setting::new(key, old, value)
        }
        _ => return Err(SetError::NotLive { key: key.into() }),
    })
}

/// Applies earlier changes to a freshly planned job (engine start).
pub fn reapply(name: &str, spec: &mut JobSpec, tuning: &mut Tuning, changes: &[LimitChange]) {
    for c in changes {
        if let Err(e) = apply(spec, tuning, &format!("{}={}", c.key, c.new)) {
            warn!(job = %name, error = %e, "A stored limit change no longer applies; skipped.");
        }
    }
    spec.limits.bytes_per_second = tuning.bandwidth_now();
}

/// What `stat` shows of a loaded job's limits.
pub fn of(rt: &JobRt, changes: Vec<LimitChange>) -> JobLimits {
    JobLimits {
        bytes_per_second: rt.spec.limits.bytes_per_second,
        flat_bytes_per_second: rt.tuning.flat_bandwidth,
        requests_per_second: rt.spec.limits.requests_per_second,
        objects_in_flight: rt.spec.object_concurrency,
        schedule: rt.spec.limits.bandwidth_schedule.clone(),
        changes,
    }
}

/// `ossimportctl set`: every setting is checked before any is applied.
pub async fn set(
    eng: &Arc<Engine>,
    name: &str,
    settings: &[String],
    by: String,
) -> Result<JobLimits, JobError> {
    // One change at a time, like every other change of a job: two `set`s
    // at once would each apply to the limits before the other.
    let _one = eng.changes.lock().await;
    let job = find(eng, name).await?;
    if settings.is_empty() {
        return Err(JobError::Invalid(format!(
            "nothing to set; give KEY=VALUE with KEY one of {}",
            KEYS.join(", ")
        )));
    }
    let (spec, tuning, changes) = {
        let jobs = eng.jobs();
        let rt = jobs.get(&job.id).ok_or_else(|| {
            JobError::Conflict(format!(
                "job {name} is {} and not loaded; limits change only while it can run",
                job.state
            ))
        })?;
        let (mut spec, mut tuning) = (rt.spec.clone(), rt.tuning.clone());
        let mut changes = Vec::new();
        for s in settings {
            changes.push(
                apply(&mut spec, &mut tuning, s).map_err(|e| JobError::Invalid(e.to_string()))?,
            );
        }
        spec.limits.bytes_per_second = tuning.bandwidth_now();
        (spec, tuning, changes)
    };
    let (id, who, recorded) = (job.id, by.clone(), changes.clone());
    blocking(&eng.state.store, move |s| {
        s.record_limit_changes(id, &who, &recorded)
    })
    .await?;
    let live = spec.live_limits();
    if let Some(rt) = eng.jobs().get_mut(&job.id) {
        rt.spec = spec;
        rt.tuning = tuning;
    }
    eng.local.set_limits(&live);
    for c in &changes {
        info!(job = %name, key = %c.key, old = %c.old, new = %c.new, by = %by, "Job limit changed.");
    }
    eng.state.wake.notify_one();
    let all = blocking(&eng.state.store, move |s| s.limit_changes(id)).await?;
    let jobs = eng.jobs();
    let rt = jobs
        .get(&job.id)
        .ok_or_else(|| JobError::NotFound(name.to_string()))?;
    Ok(of(rt, all))
}

/// Follows every schedule: a job whose scheduled bandwidth differs from the
/// one in force gets the new one (run by the scheduler's every pass).
pub fn follow_schedules(eng: &Engine) {
    let mut changed = Vec::new();
    for rt in eng.jobs().values_mut() {
        if rt.tuning.schedule.is_none() {
            continue;
        }
        let now = rt.tuning.bandwidth_now();
        if now != rt.spec.limits.bytes_per_second {
            info!(job = %rt.spec.job_name, from = rt.spec.limits.bytes_per_second, to = now,
                "Bandwidth schedule: a new rate holds.");
            rt.spec.limits.bytes_per_second = now;
            changed.push(rt.spec.live_limits());
        }
    }
    for l in &changed {
        eng.local.set_limits(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "job_id": 1, "job_name": "j", "mode": "import",
            "source": {"type": "local", "root": "/s", "follow_symlinks": false},
            "dest": {"type": "local", "dir": "/d", "prefix": ""},
            "multipart_threshold": 1, "part_size": 1, "part_concurrency": 1,
            "object_concurrency": 8, "verify": "size", "skip": "none",
            "record_md5": false, "max_attempts": 1,
            "limits": {"bytes_per_second": 2097152, "requests_per_second": 0,
                "object_timeout_secs": 0, "last_modify": 0}
        }))
        .unwrap()
    }

    #[test]
    fn settings_are_checked_and_a_schedule_replaces_the_flat_cap() {
        let (mut s, mut t) = (spec(), Tuning::default());
        t.flat_bandwidth = s.limits.bytes_per_second;
        let c = apply(&mut s, &mut t, "workerMaxThroughput=512").unwrap();
        assert_eq!(c, Setting::new("workerMaxThroughput", 2048, 512));
        assert_eq!(t.bandwidth_now(), 512 * 1024);
        apply(&mut s, &mut t, "workerTaskThreadNum = 2").unwrap();
        assert_eq!(s.object_concurrency, 2);
        apply(&mut s, &mut t, "maxRequestsPerSecond=50").unwrap();
        assert_eq!(s.live_limits().requests_per_second, 50);
        apply(&mut s, &mut t, "workerMaxThroughputSchedule=00:00,100").unwrap();
        assert_eq!(t.bandwidth_now(), 100 * 1024, "all day 100 KB/s");
        apply(&mut s, &mut t, "workerMaxThroughputSchedule=none").unwrap();
        assert_eq!(t.bandwidth_now(), 512 * 1024);
        for (bad, why) in [
            ("workerMaxThroughput", "KEY=VALUE"),
            ("workerMaxThroughput=fast", "whole number"),
            ("workerTaskThreadNum=0", "at least 1"),
            ("srcPrefix=/etc", "not a limit"),
            ("workerMaxThroughputSchedule=25:00,1", "not a time of day"),
        ] {
            let e = apply(&mut s, &mut t, bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // Changes made earlier are applied again in order on a fresh plan.
        let (mut s2, mut t2) = (spec(), Tuning::default());
        let changes = [
            ("workerMaxThroughput", "1"),
            ("workerTaskThreadNum", "3"),
            ("workerMaxThroughput", "64"),
        ]
        .map(|(k, v)| LimitChange {
            key: k.into(),
            new: v.into(),
            ..Default::default()
        });
        reapply("j", &mut s2, &mut t2, &changes);
        assert_eq!(
            (s2.limits.bytes_per_second, s2.object_concurrency),
            (64 * 1024, 3)
        );
    }
}
