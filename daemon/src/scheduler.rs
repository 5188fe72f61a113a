//! Which agent gets how many tasks, and the loop that acts on it.
//!
//! The decisions ([`liveness`], [`plan`]) are pure functions of the agent
//! table, the lease counts and the clock, so they are unit-tested with
//! paused tokio time. The loop ([`run`]) wakes on a tick or when something
//! changes (a heartbeat, a committed task, a finished push), expires leases,
//! closes finished jobs, and pushes batches to agents with free capacity.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use proto::api::{BatchAccepted, ErrorBody, TaskBatch, agent_path};
use proto::client::{self, Target};
use proto::job::{DestSpec, JobSpec, SourceSpec, TaskSpec};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::server::{State, blocking, unix_now};
use crate::store::JobState;

/// What the daemon knows about one enrolled agent.
#[derive(Clone, Debug)]
pub struct AgentEntry {
    /// From the heartbeat, else the key's comment.
    pub name: String,
    /// SHA256 fingerprint of its key: the identity leases are recorded under.
    pub fingerprint: String,
    /// `host:port` of its task API, from its last heartbeat.
    pub addr: Option<String>,
    pub capacity: u32,
    pub last_seen: Option<Instant>,
    /// It said goodbye and has not been heard from since.
    pub left: bool,
    /// Why the last push to it failed, cleared by the next success.
    pub error: Option<String>,
    /// A batch is on its way to it; at most one at a time.
    pub pushing: bool,
    /// No push before this instant (after a failed one).
    pub retry_after: Option<Instant>,
    /// Byte counter of its last heartbeat, and the rate since the one before.
    pub bytes: u64,
    pub bytes_per_sec: u64,
}

impl AgentEntry {
    pub fn enrolled(name: &str, fingerprint: &str) -> AgentEntry {
        AgentEntry {
            name: name.to_string(),
            fingerprint: fingerprint.to_string(),
            addr: None,
            capacity: 0,
            last_seen: None,
            left: false,
            error: None,
            pushing: false,
            retry_after: None,
            bytes: 0,
            bytes_per_sec: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Up,
    /// No heartbeat within the timeout.
    Down,
    Left,
    /// Enrolled, never heard from.
    Never,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Up => "up",
            Liveness::Down => "down",
            Liveness::Left => "left",
            Liveness::Never => "never",
        }
    }
}

pub fn liveness(a: &AgentEntry, now: Instant, timeout: Duration) -> Liveness {
    match a.last_seen {
        _ if a.left => Liveness::Left,
        None => Liveness::Never,
        Some(t) if now.saturating_duration_since(t) > timeout => Liveness::Down,
        Some(_) => Liveness::Up,
    }
}

/// How many tasks to push to which agent now: every live agent with no
/// batch in flight gets up to its free capacity, at most `batch_max`.
pub fn plan(
    agents: &[AgentEntry],
    leased: &HashMap<String, u64>,
    now: Instant,
    timeout: Duration,
    batch_max: usize,
) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for a in agents {
        if liveness(a, now, timeout) != Liveness::Up
            || a.pushing
            || a.addr.is_none()
            || a.retry_after.is_some_and(|t| now < t)
        {
            continue;
        }
        let held = leased.get(&a.fingerprint).copied().unwrap_or(0);
        let free = u64::from(a.capacity).saturating_sub(held) as usize;
        if free > 0 {
            out.push((a.fingerprint.clone(), free.min(batch_max)));
        }
    }
    out
}

/// The job as an agent sees it: every credential blanked. Agents take
/// credentials from their own secrets file, so none crosses the network.
pub fn for_agent(spec: &JobSpec) -> JobSpec {
    let mut spec = spec.clone();
    match &mut spec.source {
        SourceSpec::S3 { secret_key, .. } => *secret_key = proto::Secret::default(),
        SourceSpec::Local { .. } | SourceSpec::Http => {}
    }
    match &mut spec.dest {
        DestSpec::S3 { secret_key, .. } => *secret_key = proto::Secret::default(),
        DestSpec::Local { .. } => {}
    }
    spec
}

/// Runs until the daemon shuts down.
pub async fn run(state: Arc<State>) {
    let cancel = state.cancel.child_token();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.config.tick) => {}
            _ = state.wake.notified() => {}
            _ = cancel.cancelled() => break,
        }
        if let Err(e) = tick(&state).await {
            warn!(error = %format!("{e:#}"), "Scheduler pass failed; retrying.");
        }
    }
}

async fn tick(state: &Arc<State>) -> anyhow::Result<()> {
    let lease = state.config.lease.as_secs().max(1) as i64;
    let now = unix_now();
    let expired = blocking(&state.store, move |s| s.expire_leases(now)).await?;
    if expired > 0 {
        info!(tasks = expired, "Leases expired; tasks back to pending.");
    }

    // Close finished jobs and find the ones with work to hand out.
    let jobs = blocking(&state.store, |s| s.jobs()).await?;
    let mut runnable = Vec::new();
    for job in jobs {
        if job.state != JobState::Running {
            continue;
        }
        let spec = match state.jobs().get(&job.id) {
            Some(rt) => rt.spec.clone(),
            None => continue,
        };
        let id = job.id;
        let (pending, dispatched) = blocking(&state.store, move |s| s.task_states(id)).await?;
        if job.scan_done && pending == 0 && dispatched == 0 {
            let c = blocking(&state.store, move |s| s.counts(id)).await?;
            let st = c.outcome();
            blocking(&state.store, move |s| s.set_job_state(id, st)).await?;
            info!(job = %job.name, state = %st, verified = c.verified, skipped = c.skipped, failed = c.failed, "Job finished.");
            continue;
        }
        if pending > 0 {
            runnable.push((job.id, spec));
        }
    }
    if runnable.is_empty() {
        return Ok(());
    }

    let leased = blocking(&state.store, |s| s.leases_by_agent()).await?;
    let targets = {
        let mut agents = state.agents();
        let list: Vec<AgentEntry> = agents.values().cloned().collect();
        let p = plan(
            &list,
            &leased,
            Instant::now(),
            state.config.agent_timeout,
            state.config.batch_max,
        );
        for (fp, _) in &p {
            if let Some(a) = agents.get_mut(fp) {
                a.pushing = true;
            }
        }
        p
    };
    for (i, (fp, n)) in targets.into_iter().enumerate() {
        // Spread agents over jobs: each starts at a different job.
        let mut batch = None;
        for k in 0..runnable.len() {
            let (job_id, spec) = &runnable[(i + k) % runnable.len()];
            let (job_id, agent) = (*job_id, fp.clone());
            let until = unix_now() + lease;
            let tasks = blocking(&state.store, move |s| {
                s.lease_tasks(job_id, n, &agent, until)
            })
            .await?;
            if !tasks.is_empty() {
                // Agents get the job without its credentials; the local
                // worker is the daemon itself.
                let job = if fp == crate::local_worker::LOCAL {
                    spec.clone()
                } else {
                    for_agent(spec)
                };
                batch = Some(TaskBatch { job, tasks });
                break;
            }
        }
        match batch {
            Some(b) if fp == crate::local_worker::LOCAL => {
                info!(
                    job_id = b.job.job_id,
                    tasks = b.tasks.len(),
                    "Dispatched batch to the local worker."
                );
                crate::local_worker::start(state, b);
                if let Some(a) = state.agents().get_mut(&fp) {
                    a.pushing = false;
                }
            }
            Some(b) => {
                let st = Arc::clone(state);
                state.tracker.spawn(async move { push(st, fp, b).await });
            }
            None => {
                if let Some(a) = state.agents().get_mut(&fp) {
                    a.pushing = false;
                }
            }
        }
    }
    Ok(())
}

/// Sends one batch; whatever the agent does not accept goes back to
/// pending at once.
async fn push(state: Arc<State>, fp: String, batch: TaskBatch) {
    let ids: Vec<i64> = batch.tasks.iter().map(|t: &TaskSpec| t.task_id).collect();
    let (addr, name) = match state.agents().get(&fp) {
        Some(a) => (a.addr.clone(), a.name.clone()),
        None => (None, fp.clone()),
    };
    let result = match (addr, serde_json::to_vec(&batch)) {
        (Some(addr), Ok(body)) => {
            let headers = state.signer.sign("POST", agent_path::TASKS, &body, &fp);
            client::send(
                &Target::Tcp(addr),
                Method::POST,
                agent_path::TASKS,
                &headers,
                body,
                state.config.push_timeout,
            )
            .await
            .map_err(|e| e.to_string())
            .and_then(|(status, body)| {
                if status == StatusCode::OK {
                    serde_json::from_slice::<BatchAccepted>(&body).map_err(|e| e.to_string())
                } else {
                    Err(serde_json::from_slice::<ErrorBody>(&body)
                        .map(|e| e.message)
                        .unwrap_or_else(|_| format!("answered {status}")))
                }
            })
        }
        (None, _) => Err("no address known".to_string()),
        (_, Err(e)) => Err(e.to_string()),
    };
    let refused: Vec<i64> = match &result {
        Ok(acc) => ids
            .iter()
            .copied()
            .filter(|id| !acc.accepted.contains(id))
            .collect(),
        Err(_) => ids.clone(),
    };
    if !refused.is_empty() {
        let agent = fp.clone();
        if let Err(e) = blocking(&state.store, move |s| s.release_tasks(&agent, &refused)).await {
            warn!(agent = %name, error = %e, "Could not release refused tasks; their leases will expire.");
        }
    }
    {
        let mut agents = state.agents();
        if let Some(a) = agents.get_mut(&fp) {
            a.pushing = false;
            match &result {
                Ok(acc) => {
                    a.error = None;
                    a.retry_after = None;
                    info!(agent = %name, job_id = batch.job.job_id, tasks = acc.accepted.len(), "Dispatched batch.");
                }
                Err(e) => {
                    warn!(agent = %name, error = %e, "Batch refused or undelivered; tasks back to pending.");
                    a.error = Some(e.clone());
                    a.retry_after = Some(Instant::now() + state.config.push_backoff);
                }
            }
        }
    }
    state.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(fp: &str, cap: u32) -> AgentEntry {
        let mut a = AgentEntry::enrolled(fp, fp);
        a.capacity = cap;
        a.addr = Some("127.0.0.1:1".into());
        a.last_seen = Some(Instant::now());
        a
    }

    #[tokio::test(start_paused = true)]
    async fn agents_without_heartbeat_go_down_and_get_nothing() {
        let timeout = Duration::from_secs(10);
        let mut agents = vec![agent("a", 4), agent("b", 2)];
        let leased = HashMap::from([("a".to_string(), 1u64)]);
        assert_eq!(
            plan(&agents, &leased, Instant::now(), timeout, 100),
            vec![("a".into(), 3), ("b".into(), 2)]
        );

        tokio::time::advance(Duration::from_secs(6)).await;
        agents[1].last_seen = Some(Instant::now());
        tokio::time::advance(Duration::from_secs(6)).await;
        let now = Instant::now();
        assert_eq!(liveness(&agents[0], now, timeout), Liveness::Down);
        assert_eq!(liveness(&agents[1], now, timeout), Liveness::Up);
        assert_eq!(
            plan(&agents, &leased, now, timeout, 1),
            vec![("b".into(), 1)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn busy_full_left_and_backing_off_agents_are_skipped() {
        let timeout = Duration::from_secs(10);
        let mut agents = vec![agent("a", 2), agent("b", 2), agent("c", 2), agent("d", 2)];
        agents[0].pushing = true;
        agents[2].left = true;
        agents[3].retry_after = Some(Instant::now() + Duration::from_secs(2));
        let leased = HashMap::from([("b".to_string(), 2u64)]);
        assert!(plan(&agents, &leased, Instant::now(), timeout, 10).is_empty());
        tokio::time::advance(Duration::from_secs(3)).await;
        agents[3].last_seen = Some(Instant::now());
        assert_eq!(
            plan(&agents, &leased, Instant::now(), timeout, 10),
            vec![("d".into(), 2)]
        );
        assert_eq!(
            liveness(&agents[2], Instant::now(), timeout),
            Liveness::Left
        );
        assert_eq!(
            liveness(&AgentEntry::enrolled("x", "x"), Instant::now(), timeout),
            Liveness::Never
        );
    }
}
