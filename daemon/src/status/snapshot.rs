//! One snapshot of what the observation port shows: the store's counts per
//! job, the agent table and the engine's counters, taken per request.

use super::*;

/// How often the throughput chart gets a point.
pub const SAMPLE: Duration = Duration::from_secs(5);
/// Failures shown per job on the page.
const RECENT_FAILURES: usize = 8;

/// Everything one scrape or one page shows.
#[derive(Debug)]
pub struct Snapshot {
    pub jobs: Vec<JobSnap>,
    pub agents: Vec<AgentSnap>,
}

#[derive(Debug)]
pub struct JobSnap {
    pub status: JobStatus,
    pub mode: Option<JobMode>,
    /// Limits in force (with any `set` applied), when the job is loaded.
    pub limits: Option<(Limits, u32)>,
    /// Failed objects by error code.
    pub failed_by_code: Vec<(String, u64)>,
    pub recent_failures: Vec<FailedObject>,
}

#[derive(Debug)]
pub struct AgentSnap {
    pub name: String,
    pub fingerprint: String,
    pub state: Liveness,
    pub heartbeat_age: Option<f64>,
    pub capacity: u32,
    pub leased: u64,
    pub bytes: u64,
    pub bytes_per_sec: u64,
    pub objects_in_flight: u64,
    pub bytes_in_flight: u64,
    pub throttled: u64,
    /// The endpoints its executors talk to, as its last heartbeat said.
    pub endpoints: Vec<proto::api::EndpointHealth>,
}

/// Takes a snapshot: every job's status and failures from the store, the
/// agent table, the loaded jobs' limits.
pub async fn snapshot(eng: &Arc<Engine>, failures: bool) -> Result<Snapshot, StoreError> {
    let state = &eng.state;
    let names: HashMap<String, String> = state
        .agents()
        .iter()
        .map(|(fp, a)| (fp.clone(), a.name.clone()))
        .collect();
    let loaded: HashMap<i64, (JobMode, Limits, u32)> = eng
        .jobs()
        .iter()
        .map(|(id, rt)| {
            (
                *id,
                (
                    rt.spec.mode,
                    rt.spec.limits.clone(),
                    rt.spec.object_concurrency,
                ),
            )
        })
        .collect();
    let watches: HashMap<i64, proto::api::WatchStatus> = eng
        .jobs()
        .iter()
        .filter_map(|(id, rt)| rt.watch.as_ref().map(|w| (*id, w.status())))
        .collect();
    let (jobs, leased) = blocking(&state.store, move |s| {
        let mut out = Vec::new();
        for job in s.jobs()? {
            let id = job.id;
            let mut status = engine::status_in(s, job, |fp| names.get(fp).cloned())?;
            if let Some(inc) = status.incremental.as_mut() {
                inc.watch = watches.get(&id).cloned();
            }
            // The page has no login: who did what stays on the socket.
            status.control.clear();
            status.owner = None;
            let failed_by_code = s
                .failures_by_code(id)?
                .into_iter()
                .map(|(code, n, _)| (code, n))
                .collect();
            let recent_failures = if failures {
                s.recent_failures(id, RECENT_FAILURES)?
            } else {
                Vec::new()
            };
            let l = loaded.get(&id);
            out.push(JobSnap {
                status,
                mode: l.map(|l| l.0),
                limits: l.map(|l| (l.1.clone(), l.2)),
                failed_by_code,
                recent_failures,
            });
        }
        Ok((out, s.leases_by_agent()?))
    })
    .await?;
    let now = Instant::now();
    let timeout = state.config.agent_timeout;
    let mut agents: Vec<AgentSnap> = state
        .agents()
        .values()
        .map(|a| AgentSnap {
            name: a.name.clone(),
            fingerprint: a.fingerprint.clone(),
            state: liveness(a, now, timeout),
            heartbeat_age: a
                .last_seen
                .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            capacity: a.capacity,
            leased: leased.get(&a.fingerprint).copied().unwrap_or(0),
            bytes: a.bytes,
            bytes_per_sec: a.bytes_per_sec,
            objects_in_flight: a.objects_in_flight,
            bytes_in_flight: a.bytes_in_flight,
            throttled: a.throttled,
            endpoints: a.endpoints.clone(),
        })
        .collect();
    agents.sort_by(|a, b| (&a.name, &a.fingerprint).cmp(&(&b.name, &b.fingerprint)));
    Ok(Snapshot { jobs, agents })
}
