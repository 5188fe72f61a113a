//! The agent's side of the conversation with the daemon: heartbeats (which
//! renew the leases of the tasks it runs) and event reports.
//!
//! Events are delivered in order and at least once: a batch is retried with
//! backoff until the daemon acknowledges it (after committing it), so work
//! finished while the daemon was down is reported when it is back. The
//! daemon applies events idempotently, so a batch delivered twice counts
//! once. A task stays in the heartbeat's `running` list until its last
//! events are acknowledged, so its lease cannot expire in between. While the
//! daemon is away, the agent goes on copying what it has leased and holds
//! the results (at most [`MAX_HELD`] events in memory; past that the copy
//! waits); the daemon keeps those leases while it hears from no agent at
//! all (`daemon::engine::schedule`), and takes the results when it is back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use proto::api::{EventBatch, Heartbeat, HeartbeatReply, agent_path};
use proto::auth::Signer;
use proto::client;
use proto::job::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// What task runners send to the reporter.
#[derive(Debug)]
pub enum Msg {
    Event(Event),
    /// Every event of this task is before this message.
    Finished(i64),
}

/// Most events per report.
const MAX_BATCH: usize = 1000;
/// Most events held while the daemon does not take them (a few hundred
/// bytes each); past this, task runners wait for the daemon.
const MAX_HELD: usize = 100_000;
/// Longest wait for more events before a report is sent.
const GATHER: Duration = Duration::from_millis(100);

/// The daemon as this agent reaches it: where, with which keys, and how
/// patiently.
pub(crate) struct Link {
    pub(crate) signer: Signer,
    /// Kept mutual-TLS connections to the daemon (our key, and the
    /// daemon's pinned).
    pub(crate) daemon: client::Channel,
    pub(crate) request_timeout: Duration,
    pub(crate) heartbeat: Duration,
    /// How long undelivered events are retried at shutdown.
    pub(crate) drain: Duration,
}

impl Link {
    /// Sends one request to the daemon and parses the answer.
    pub(crate) async fn call<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<R, String> {
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let (status, answer) = self
            .daemon
            .send(Method::POST, path, body, self.request_timeout)
            .await
            .map_err(|e| e.to_string())?;
        if status != StatusCode::OK {
            let msg = serde_json::from_slice::<proto::api::ErrorBody>(&answer)
                .map(|e| e.message)
                .unwrap_or_default();
            return Err(format!("daemon answered {status}: {msg}"));
        }
        serde_json::from_slice(&answer).map_err(|e| e.to_string())
    }
}

/// What heartbeats and the reporter need from the running agent.
pub(crate) trait Running: Send + Sync + 'static {
    fn link(&self) -> &Link;
    /// The heartbeat to send now (names the tasks we hold).
    fn heartbeat(&self) -> Heartbeat;
    /// The daemon no longer leases this task to us.
    fn cancel_task(&self, id: i64);
    /// Every event of this task was delivered.
    fn forget_task(&self, id: i64);
    /// A job's limits as the daemon has them now.
    fn set_limits(&self, limits: &proto::job::LiveLimits);
}

/// Heartbeats until `cancel`; drops tasks the daemon no longer leases to us.
///
/// A heartbeat that failed is tried again sooner than the interval, from
/// 50 ms doubling up to it: an agent started beside its daemon (the same
/// boot, the same script) joins as soon as the daemon listens, not one
/// interval later, and one whose daemon restarted rejoins as quickly.
pub(crate) async fn heartbeats<A: Running>(agent: Arc<A>, cancel: CancellationToken) {
    let mut warned = false;
    let mut failed = 0u32;
    loop {
        let hb = agent.heartbeat();
        match agent
            .link()
            .call::<_, HeartbeatReply>(agent_path::HEARTBEAT, &hb)
            .await
        {
            Ok(reply) => {
                failed = 0;
                if warned {
                    info!("Daemon reachable again.");
                    warned = false;
                }
                for id in reply.cancel {
                    agent.cancel_task(id);
                }
                for l in &reply.limits {
                    agent.set_limits(l);
                }
            }
            Err(e) => {
                if !warned {
                    warn!(error = %e, "Heartbeat failed; retrying.");
                    warned = true;
                }
                failed += 1;
            }
        }
        let every = agent.link().heartbeat;
        let wait = match failed {
            0 => every,
            n => proto::net::Backoff {
                base: Duration::from_millis(50).min(every),
                cap: every,
            }
            .delay(n - 1),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Delivers events until `stop` fires and the queue is empty (or the
/// drain deadline passes). While a report is being retried (the daemon is
/// away), events go on being taken from task runners and held, up to
/// [`MAX_HELD`]: the agent goes on copying what it has leased, and
/// delivers the results in order when the daemon is back.
pub(crate) async fn report<A: Running>(
    agent: Arc<A>,
    mut rx: mpsc::Receiver<Msg>,
    stop: CancellationToken,
) {
    let mut held: VecDeque<Msg> = VecDeque::new();
    let mut closed = false;
    let mut full_said = false;
    loop {
        if held.is_empty() {
            let first = tokio::select! {
                m = rx.recv() => m,
                _ = stop.cancelled() => rx.try_recv().ok(),
            };
            let Some(first) = first else { return };
            held.push_back(first);
            gather(&mut held, &mut rx, &stop).await;
        }
        let (mut events, mut finished) = (Vec::new(), Vec::new());
        while let Some(m) = held.front() {
            if matches!(m, Msg::Event(_)) && events.len() >= MAX_BATCH {
                break;
            }
            match held.pop_front() {
                Some(Msg::Event(e)) => events.push(e),
                Some(Msg::Finished(id)) => finished.push(id),
                None => break,
            }
        }
        let mut delivered = true;
        if !events.is_empty() {
            let send = deliver(agent.link(), events, &stop);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    d = &mut send => {
                        delivered = d;
                        break;
                    }
                    m = rx.recv(), if !closed && held.len() < MAX_HELD => match m {
                        Some(m) => {
                            held.push_back(m);
                            if held.len() == MAX_HELD && !full_said {
                                full_said = true;
                                warn!(held = MAX_HELD, "Holding as many results as allowed; copying waits until the daemon takes them.");
                            }
                        }
                        None => closed = true,
                    },
                }
            }
        }
        if delivered {
            full_said = false;
        } else if stop.is_cancelled() {
            let more = held.len() + rx.len();
            if more > 0 {
                warn!(
                    events = more,
                    "Shutting down with more undelivered events; the daemon redoes that work."
                );
            }
            return;
        }
        for id in finished {
            agent.forget_task(id);
        }
    }
}

/// Gathers a moment before a report is sent: small objects finish one at
/// a time, and each report is a signed request and a job-store commit on
/// the daemon, which cost more than the events themselves. Stops at
/// [`MAX_BATCH`] events, after [`GATHER`], or at once after a task's last
/// event (the daemon leases the agent's next task when it hears of it).
/// At shutdown, takes only what is queued already.
async fn gather(held: &mut VecDeque<Msg>, rx: &mut mpsc::Receiver<Msg>, stop: &CancellationToken) {
    let deadline = tokio::time::Instant::now() + GATHER;
    let ends_task = |m: &Msg| matches!(m, Msg::Event(Event::TaskDone { .. }));
    while held.len() < MAX_BATCH && !held.back().is_some_and(ends_task) {
        match proto::runtime::next_by(rx, deadline, stop.is_cancelled()).await {
            Some(m) => held.push_back(m),
            None => break,
        }
    }
}

/// Sends `events` until the daemon takes them (`true`), or until the drain
/// deadline once `stop` has fired (`false`).
async fn deliver(link: &Link, events: Vec<Event>, stop: &CancellationToken) -> bool {
    let body = EventBatch { events };
    let backoff = proto::net::Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
    };
    let mut attempt = 0;
    let mut warned = false;
    let give_up = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
    tokio::pin!(give_up);
    let mut stopping = false;
    loop {
        match link
            .call::<_, proto::api::Done>(agent_path::EVENTS, &body)
            .await
        {
            Ok(_) => {
                debug!(events = body.events.len(), "Reported events.");
                return true;
            }
            Err(e) => {
                if !warned {
                    warn!(error = %e, events = body.events.len(), "Reporting events failed; retrying until the daemon takes them.");
                    warned = true;
                }
            }
        }
        if !stopping && stop.is_cancelled() {
            stopping = true;
            give_up
                .as_mut()
                .reset(tokio::time::Instant::now() + link.drain);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.delay(attempt)) => {}
            _ = &mut give_up => {
                warn!(events = body.events.len(), "Shutting down with undelivered events; the daemon redoes that work.");
                return false;
            }
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(object_id: i64) -> Msg {
        Msg::Event(Event::UploadAborted { object_id })
    }

    fn ids(held: &VecDeque<Msg>) -> Vec<i64> {
        held.iter()
            .map(|m| match m {
                Msg::Event(Event::UploadAborted { object_id }) => *object_id,
                Msg::Event(Event::TaskDone { task_id }) => -task_id,
                _ => 0,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_gathers_a_moment_but_a_tasks_end_goes_at_once() {
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();

        // Events a moment apart go in one report, sent when GATHER is up.
        let t = tokio::time::Instant::now();
        let later = tx.clone();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(GATHER / 4).await;
            later.send(event(2)).await.unwrap();
        });
        let mut held = VecDeque::from([event(1)]);
        gather(&mut held, &mut rx, &stop).await;
        sender.await.unwrap();
        assert_eq!(ids(&held), [1, 2]);
        assert_eq!(t.elapsed(), GATHER);

        // A task's last event is sent at once, with what came before it;
        // what follows waits for the next report.
        let t = tokio::time::Instant::now();
        tx.send(Msg::Event(Event::TaskDone { task_id: 7 }))
            .await
            .unwrap();
        tx.send(event(4)).await.unwrap();
        let mut held = VecDeque::from([event(3)]);
        gather(&mut held, &mut rx, &stop).await;
        assert_eq!(ids(&held), [3, -7]);
        assert_eq!(t.elapsed(), Duration::ZERO);

        // Nor does a report that starts with a task's end wait.
        let mut held = VecDeque::from([Msg::Event(Event::TaskDone { task_id: 8 })]);
        gather(&mut held, &mut rx, &stop).await;
        assert_eq!(ids(&held), [-8]);
        assert_eq!(t.elapsed(), Duration::ZERO);

        // At shutdown, only what is queued already.
        stop.cancel();
        let mut held = VecDeque::from([event(5)]);
        gather(&mut held, &mut rx, &stop).await;
        assert_eq!(ids(&held), [5, 4]);
        assert_eq!(t.elapsed(), Duration::ZERO);
    }
}
