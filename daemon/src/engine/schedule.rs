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

use proto::api::TaskBatch;
use proto::job::JobSpec;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Engine;
use crate::agents::{AgentEntry, Liveness, liveness};
use crate::state::{blocking, unix_now};
use crate::store::JobState;

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

/// How many of `free` task slots an executor gets from one job: no more
/// than the job lets one executor work on at once (`workerTaskThreadNum`
/// objects, so as many tasks at most) minus what it holds of the job
/// already. What an agent claims as its capacity is its own word; this
/// bounds what a claim of a million takes from a job.
pub fn job_share(free: usize, object_concurrency: u32, held_of_job: u64) -> usize {
    let cap = u64::from(object_concurrency.max(1));
    free.min(cap.saturating_sub(held_of_job) as usize)
}

/// How many of `n` tasks an agent gets of a job whose listing is done and
/// which has no more tasks left than agents: one, and only while it holds
/// none of the job's. Otherwise the agent that frees its slots first takes
/// every remaining task while the others finish theirs and then idle, and
/// the job's end waits on one agent working through the tail alone (an
/// agent runs one task with all its concurrency). While tasks are still
/// being listed, or with one agent, no limit.
pub fn tail_share(n: usize, pending: u64, agents_up: usize, listed: bool, held: u64) -> usize {
    if !listed || agents_up < 2 || pending > agents_up as u64 {
        return n;
    }
    if held > 0 { 0 } else { n.min(1) }
}

/// Runs until the daemon shuts down.
pub async fn run(eng: Arc<Engine>) {
    let state = &eng.state;
    let cancel = state.cancel.child_token();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.config.tick) => {}
            _ = state.wake.notified() => {}
            _ = cancel.cancelled() => break,
        }
        if let Err(e) = tick(&eng).await {
            warn!(error = %format!("{e:#}"), "Scheduler pass failed; retrying.");
        }
    }
}

/// How leased tasks reach an executor: the one place standalone and
/// distributed differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// In memory to the worker on the master ([`super::local`]).
    InProcess,
    /// Signed HTTP to an agent's task API, credentials blanked
    /// ([`super::push`]).
    HttpPush,
}

impl Dispatch {
    pub fn of(executor: &AgentEntry) -> Dispatch {
        if executor.in_process {
            Dispatch::InProcess
        } else {
            Dispatch::HttpPush
        }
    }

    /// The job as this executor receives it.
    fn job(self, spec: &JobSpec) -> JobSpec {
        match self {
            Dispatch::InProcess => spec.clone(),
            Dispatch::HttpPush => super::push::for_agent(spec),
        }
    }

    fn send(self, eng: &Arc<Engine>, fp: String, batch: TaskBatch) {
        let state = &eng.state;
        match self {
            Dispatch::InProcess => {
                info!(
                    job_id = batch.job.job_id,
                    tasks = batch.tasks.len(),
                    "Dispatched batch to the local worker."
                );
                super::local::start(eng, batch);
                if let Some(a) = state.agents().get_mut(&fp) {
                    a.pushing = false;
                }
            }
            Dispatch::HttpPush => {
                let eng = Arc::clone(eng);
                state
                    .tracker
                    .spawn(async move { super::push::push(eng, fp, batch).await });
            }
        }
    }
}

/// Longest the daemon keeps leases while every agent is silent.
pub const LINK_GRACE: Duration = Duration::from_secs(600);

/// How long every agent that was up has been silent, when they all went
/// silent (none heard from within the agent timeout, none left) less than
/// [`LINK_GRACE`] ago; `None` when one of them is heard or there are none.
fn every_agent_silent(state: &crate::state::State) -> Option<Duration> {
    let now = Instant::now();
    let agents = state.agents();
    let mut newest: Option<Instant> = None;
    for a in agents.values() {
        if a.in_process || a.left {
            continue;
        }
        if let Some(t) = a.last_seen {
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
    }
    let silent = now.saturating_duration_since(newest?);
    (silent > state.config.agent_timeout && silent < LINK_GRACE).then_some(silent)
}

async fn tick(eng: &Arc<Engine>) -> anyhow::Result<()> {
    let state = &eng.state;
    let lease = state.config.lease.as_secs().max(1) as i64;
    let now = unix_now();
    super::limits::follow_schedules(eng);
    let expired = if let Some(silent) = every_agent_silent(state) {
        // Every agent fell silent at once: the daemon's own network is the
        // likelier fault, and the agents go on copying and deliver their
        // results when it is back. Their leases are kept (for at most
        // `LINK_GRACE`) rather than handed to whoever answers next.
        let until = now + lease;
        blocking(&state.store, move |s| s.extend_leases(until)).await?;
        if !eng
            .all_silent
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            warn!(
                silent_secs = silent.as_secs(),
                "No agent has been heard from for a while: leases are kept (this host's network is the likelier fault) for up to {} s.",
                LINK_GRACE.as_secs()
            );
        }
        0
    } else {
        if eng
            .all_silent
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            info!("Agents heard from again; leases expire as usual.");
        }
        blocking(&state.store, move |s| s.expire_leases(now)).await?
    };
    if expired > 0 {
        eng.metrics.leases_expired.inc_by(expired as u64);
        info!(tasks = expired, "Leases expired; tasks back to pending.");
        state.jobs_changed();
    }

    // Close finished jobs and find the ones with work to hand out.
    let jobs = blocking(&state.store, |s| s.jobs()).await?;
    let mut runnable = Vec::new();
    for job in jobs {
        if job.state != JobState::Running {
            continue;
        }
        let spec = match eng.jobs().get(&job.id) {
            Some(rt) => rt.spec.clone(),
            None => continue,
        };
        let id = job.id;
        let tasks = blocking(&state.store, move |s| s.task_states(id)).await?;
        if let Some(at) = job.next_pass_at {
            // An incremental job between passes: the next starts when due,
            // or for a watched tree when changes have settled (or events
            // may have been lost).
            let (watch, sync_now) = match eng.jobs().get(&id) {
                Some(rt) => (rt.watch.clone(), Arc::clone(&rt.sync_now)),
                None => continue,
            };
            let due = match &watch {
                Some(w) => tasks.none_left() && w.next_pass(at <= now),
                None => {
                    tasks.none_left()
                        && (at <= now || sync_now.swap(false, std::sync::atomic::Ordering::SeqCst))
                }
            };
            if due {
                super::change(eng, id, super::lifecycle::Event::NextPass).await?;
            }
            if tasks.pending > 0 {
                runnable.push((job.id, spec, tasks.pending, job.scan_done));
            }
            continue;
        }
        if job.scan_done && tasks.none_left() {
            // An incremental job's pass ends here instead (its own line).
            let incremental = eng
                .jobs()
                .get(&id)
                .is_some_and(|rt| rt.scan.incremental.is_some());
            if let Some(c) = super::finish_if_drained(eng, id).await?
                && !incremental
            {
                info!(job = %job.name, state = %c.outcome(), verified = c.verified, skipped = c.skipped, failed = c.failed, "Job finished.");
            }
            continue;
        }
        if tasks.pending > 0 {
            runnable.push((job.id, spec, tasks.pending, job.scan_done));
        }
    }
    if runnable.is_empty() {
        return Ok(());
    }

    let leased = blocking(&state.store, |s| s.leases_by_agent()).await?;
    let leased_of_job = blocking(&state.store, |s| s.leases_by_agent_job()).await?;
    let agents_up;
    let targets = {
        let mut agents = state.agents();
        let list: Vec<AgentEntry> = agents.values().cloned().collect();
        let now = Instant::now();
        agents_up = list
            .iter()
            .filter(|a| {
                a.addr.is_some() && liveness(a, now, state.config.agent_timeout) == Liveness::Up
            })
            .count();
        let p = plan(
            &list,
            &leased,
            Instant::now(),
            state.config.agent_timeout,
            state.config.batch_max,
        );
        p.into_iter()
            .filter_map(|(fp, n)| {
                let a = agents.get_mut(&fp)?;
                a.pushing = true;
                let how = Dispatch::of(a);
                Some((fp, n, how))
            })
            .collect::<Vec<_>>()
    };
    for (i, (fp, n, how)) in targets.into_iter().enumerate() {
        // Spread agents over jobs: each starts at a different job.
        let mut batch = None;
        let jobs = runnable.len();
        for k in 0..jobs {
            let (job_id, spec, pending, listed) = &mut runnable[(i + k) % jobs];
            let held = leased_of_job
                .get(&(fp.clone(), *job_id))
                .copied()
                .unwrap_or(0);
            let n = job_share(n, spec.object_concurrency, held);
            let n = tail_share(n, *pending, agents_up, *listed, held);
            if n == 0 || *pending == 0 {
                continue;
            }
            let (job_id, agent) = (*job_id, fp.clone());
            let until = unix_now() + lease;
            let tasks = blocking(&state.store, move |s| {
                s.lease_tasks(job_id, n, &agent, until)
            })
            .await?;
            if !tasks.is_empty() {
                *pending = pending.saturating_sub(tasks.len() as u64);
                eng.metrics.granted(&spec.job_name, tasks.len());
                batch = Some(TaskBatch {
                    job: how.job(spec),
                    tasks,
                });
                break;
            }
        }
        match batch {
            Some(b) => how.send(eng, fp, b),
            None => {
                if let Some(a) = state.agents().get_mut(&fp) {
                    a.pushing = false;
                }
            }
        }
    }
    Ok(())
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

    #[test]
    fn a_job_gives_one_executor_no_more_than_it_can_work_on() {
        // An honest agent with room for 4 gets 4 of a job of 20 at once.
        assert_eq!(job_share(4, 20, 0), 4);
        // A claim of a million gets what the job lets one executor run.
        assert_eq!(job_share(1_000_000, 20, 0), 20);
        assert_eq!(job_share(1_000_000, 20, 15), 5);
        assert_eq!(job_share(1_000_000, 20, 20), 0);
        assert_eq!(job_share(1_000_000, 20, 25), 0);
        // workerTaskThreadNum=0 counts as 1.
        assert_eq!(job_share(8, 0, 0), 1);
    }

    #[test]
    fn a_jobs_last_tasks_are_spread_over_the_agents() {
        // Listing, or more tasks left than agents: whatever is free.
        assert_eq!(tail_share(4, 2, 2, false, 1), 4);
        assert_eq!(tail_share(2, 3, 2, true, 1), 2);
        // The last two of a job with two agents: one to an agent holding
        // none of the job's, none to one that still works on one.
        assert_eq!(tail_share(2, 2, 2, true, 0), 1);
        assert_eq!(tail_share(2, 2, 2, true, 1), 0);
        assert_eq!(tail_share(4, 1, 3, true, 0), 1);
        assert_eq!(tail_share(0, 1, 3, true, 0), 0);
        // One agent takes what it can.
        assert_eq!(tail_share(4, 1, 1, true, 2), 4);
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
