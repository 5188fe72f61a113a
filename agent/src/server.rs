//! `ossimport-agent`: a small HTTP server (mutual TLS with the daemon's
//! pinned key) that takes task batches from the daemon and runs them with the [`Executor`], reporting back
//! through [`crate::daemon_client`].
//!
//! Bounded everywhere: at most `capacity` tasks at once (a batch beyond that
//! is partly refused and the rest stays pending at the daemon), each
//! executor bounds objects in flight and memory, and the event queue is a
//! bounded channel, so a daemon that stops listening slows the copy down
//! instead of growing memory. The agent keeps no durable state: everything
//! it knows is either in the daemon's store or redone after a restart.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use hyper::{Response, StatusCode};
use proto::api::{BatchAccepted, ErrorCode, Heartbeat, TaskBatch, agent_path};
use proto::auth::Signer;
use proto::job::Event;
use proto::server::{self, Body, Limits, Req, error, json};
use ssh_key::PublicKey;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::daemon_client::{self, Link, Msg, Running};
use crate::secrets::Secrets;
use crate::worker::{Executor, Executors, Progress};

/// How the agent runs; built once by `main` (or a test).
pub struct Config {
    /// Shown in `ossimportctl workers`.
    pub name: String,
    /// `host:port` of the daemon's agent API.
    pub daemon_addr: String,
    /// The only key whose requests the agent obeys.
    pub daemon_key: PublicKey,
    /// `host:port` the daemon reaches this agent at.
    pub advertise: String,
    /// Tasks run at once.
    pub capacity: u32,
    pub heartbeat: Duration,
    pub request_timeout: Duration,
    /// How long undelivered events are retried at shutdown.
    pub drain: Duration,
    pub secrets: Secrets,
    /// The local directories jobs may read and write (`--allow-root`).
    pub allow_roots: crate::roots::Roots,
}

/// A task the agent holds.
struct Slot {
    cancel: CancellationToken,
    /// Still copying. Only these count against `capacity`: a task whose
    /// last events are on their way no longer uses a slot, so the daemon's
    /// next batch (sent as soon as it records `TaskDone`) is not refused.
    executing: bool,
}

/// Shared state of a running agent.
pub struct Agent {
    pub(crate) config: Config,
    link: Link,
    /// The only key whose requests it runs.
    daemon_fp: String,
    /// Tasks running or with undelivered events.
    running: Mutex<HashMap<i64, Slot>>,
    /// One executor per job, rebuilt when the job's spec changes.
    executors: Executors,
    progress: Arc<Progress>,
    events: mpsc::Sender<Msg>,
    /// Parent of every task's token.
    tasks_cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Agent {
    fn running(&self) -> MutexGuard<'_, HashMap<i64, Slot>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn done_executing(&self, id: i64) {
        if let Some(t) = self.running().get_mut(&id) {
            t.executing = false;
        }
    }

    /// The job's executor, or why the job is refused here: `(code, why)`.
    fn executor(&self, spec: proto::job::JobSpec) -> Result<Arc<Executor>, (ErrorCode, String)> {
        self.config
            .allow_roots
            .check_job(&spec)
            .map_err(|e| (ErrorCode::PathNotAllowed, e))?;
        let follows = matches!(
            spec.source,
            proto::job::SourceSpec::Local {
                follow_symlinks: true,
                ..
            }
        );
        let spec = self
            .config
            .secrets
            .fill(spec)
            .map_err(|e| (ErrorCode::NoCredentials, e))?;
        // A batch can carry a `set` before the heartbeat's reply does.
        let (e, changed) = self.executors.get(&spec, || {
            let e = Executor::new(spec.clone(), Arc::clone(&self.progress));
            if follows {
                e.with_confine(self.config.allow_roots.file_rule())
            } else {
                e
            }
        });
        if changed {
            limits_changed(&spec.live_limits());
        }
        Ok(e)
    }
}

impl Running for Agent {
    fn link(&self) -> &Link {
        &self.link
    }

    fn heartbeat(&self) -> Heartbeat {
        let mut running: Vec<i64> = self.running().keys().copied().collect();
        running.sort_unstable();
        Heartbeat {
            name: self.config.name.clone(),
            addr: self.config.advertise.clone(),
            capacity: self.config.capacity,
            running,
            fingerprint: self.link.signer.fingerprint().to_string(),
            bytes: self.progress.bytes.load(Ordering::Relaxed),
            version: env!("CARGO_PKG_VERSION").to_string(),
            objects_in_flight: self.progress.objects_in_flight.load(Ordering::Relaxed),
            bytes_in_flight: self.progress.bytes_in_flight.load(Ordering::Relaxed),
            throttled: storage::s3::THROTTLED.load(Ordering::Relaxed),
            endpoints: self.progress.endpoints(),
        }
    }

    fn cancel_task(&self, id: i64) {
        if let Some(t) = self.running().get(&id) {
            if t.executing {
                info!(task_id = id, "Daemon took the task back; dropping it.");
            }
            t.cancel.cancel();
        }
    }

    fn forget_task(&self, id: i64) {
        self.running().remove(&id);
    }

    fn set_limits(&self, limits: &proto::job::LiveLimits) {
        if self.executors.set_limits(limits) {
            limits_changed(limits);
        }
    }
}

fn limits_changed(limits: &proto::job::LiveLimits) {
    info!(
        job_id = limits.job_id,
        bytes_per_second = limits.bytes_per_second,
        requests_per_second = limits.requests_per_second,
        objects_in_flight = limits.object_concurrency,
        "Job limits changed."
    );
}

/// Runs the agent until `shutdown` completes: serve the task API, heartbeat,
/// report. At shutdown, running tasks are cancelled (a multipart upload
/// keeps its recorded parts for whoever runs the task next), queued events
/// are delivered within `drain`, and the daemon is told we left so it
/// re-queues our tasks at once.
pub async fn run(
    config: Config,
    signer: Signer,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls =
        proto::tls::client_config(&signer, &config.daemon_key).context("TLS to the daemon")?;
    let daemon_fp = proto::auth::fingerprint(&config.daemon_key);
    let serve_tls = {
        let daemon_fp = daemon_fp.clone();
        proto::tls::server_config(&signer, Arc::new(move |fp: &str| fp == daemon_fp))
            .context("TLS for the task API")?
    };
    let link = Link {
        daemon: proto::client::Channel::tls(config.daemon_addr.clone(), None, tls),
        request_timeout: config.request_timeout,
        heartbeat: config.heartbeat,
        drain: config.drain,
        signer,
    };
    let (tx, rx) = mpsc::channel(4096);
    let local = listener.local_addr().context("listener address")?;
    info!(name = %config.name, listen = %local, advertise = %config.advertise, daemon = %config.daemon_addr, fingerprint = %link.signer.fingerprint(), "Agent starting.");
    let agent = Arc::new(Agent {
        config,
        link,
        daemon_fp,
        running: Mutex::new(HashMap::new()),
        executors: Executors::default(),
        progress: Arc::new(Progress::default()),
        events: tx,
        tasks_cancel: CancellationToken::new(),
        tracker: TaskTracker::new(),
    });

    let http_cancel = CancellationToken::new();
    let hb_cancel = CancellationToken::new();
    let report_stop = CancellationToken::new();
    let handler: server::Handler = {
        let agent = Arc::clone(&agent);
        Arc::new(move |req| {
            let agent = Arc::clone(&agent);
            Box::pin(async move { handle(agent, req).await })
        })
    };
    let http = tokio::spawn(server::serve_tcp(
        listener,
        handler,
        Limits {
            max_body: 0,
            max_connections: 64,
            max_per_peer: 16,
            request_deadline: Duration::from_secs(60),
            drain: Duration::from_secs(5),
            gate: Some(gate()),
            tls: Some(serve_tls),
        },
        http_cancel.clone(),
    ));
    let hb = tokio::spawn(daemon_client::heartbeats(
        Arc::clone(&agent),
        hb_cancel.clone(),
    ));
    let reporter = tokio::spawn(daemon_client::report(
        Arc::clone(&agent),
        rx,
        report_stop.clone(),
    ));

    shutdown.await;
    info!("Agent stopping.");
    http_cancel.cancel();
    let _ = http.await;
    agent.tasks_cancel.cancel();
    agent.tracker.close();
    if tokio::time::timeout(agent.config.drain, agent.tracker.wait())
        .await
        .is_err()
    {
        warn!("Tasks did not stop in time.");
    }
    report_stop.cancel();
    let _ = reporter.await;
    hb_cancel.cancel();
    let _ = hb.await;
    if let Err(e) = agent
        .link
        .call::<_, proto::api::Done>(agent_path::BYE, &serde_json::json!({}))
        .await
    {
        warn!(error = %e, "Could not say goodbye; the daemon waits for our leases to expire.");
    }
    info!("Agent stopped.");
    Ok(())
}

/// The largest task batch the daemon sends (paths and sizes of a task's
/// objects; a task holds at most tens of thousands).
const TASKS_MAX: usize = 64 << 20;

/// Each endpoint reads only as much as it needs; only the daemon's key
/// gets past the TLS handshake (`proto::tls`).
fn gate() -> server::Gate {
    Arc::new(move |_method, path, _headers| {
        Ok(if path == agent_path::TASKS {
            TASKS_MAX
        } else {
            0
        })
    })
}

async fn handle(agent: Arc<Agent>, req: Req) -> Response<Body> {
    if !matches!(&req.peer, server::Peer::Tls { key, .. } if *key == agent.daemon_fp) {
        warn!(peer = ?req.peer, path = %req.path, "Refused a request not from the daemon's key.");
        return error(ErrorCode::Unauthorized, "not the daemon's key");
    }
    if req.path != agent_path::TASKS {
        return error(ErrorCode::NotFound, "no such endpoint");
    }
    let batch: TaskBatch = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => return error(ErrorCode::Invalid, &e.to_string()),
    };
    let job_id = batch.job.job_id;
    let executor = match agent.executor(batch.job) {
        Ok(e) => e,
        Err((code, e)) => {
            warn!(job_id, error = %e, "Cannot run the job's tasks.");
            return error(code, &e);
        }
    };
    let mut accepted = Vec::new();
    let mut start = Vec::new();
    {
        let mut running = agent.running();
        for task in batch.tasks {
            if running.contains_key(&task.task_id) {
                // Pushed again (a retried push): already ours.
                accepted.push(task.task_id);
                continue;
            }
            if running.values().filter(|s| s.executing).count() >= agent.config.capacity as usize {
                continue;
            }
            let token = agent.tasks_cancel.child_token();
            running.insert(
                task.task_id,
                Slot {
                    cancel: token.clone(),
                    executing: true,
                },
            );
            accepted.push(task.task_id);
            start.push((task, token));
        }
    }
    for (task, token) in start {
        let (ex, out, me) = (
            Arc::clone(&executor),
            agent.events.clone(),
            Arc::clone(&agent),
        );
        agent.tracker.spawn(async move {
            let id = task.task_id;
            let (tx, mut rx) = mpsc::channel(256);
            let forward = async {
                while let Some(ev) = rx.recv().await {
                    if matches!(ev, Event::TaskDone { .. }) {
                        // Free the slot before the daemon can hear of it.
                        me.done_executing(id);
                    }
                    if out.send(Msg::Event(ev)).await.is_err() {
                        break;
                    }
                }
            };
            tokio::join!(ex.run_task(task, tx, token), forward);
            me.done_executing(id);
            let _ = out.send(Msg::Finished(id)).await;
        });
    }
    info!(job_id, tasks = accepted.len(), "Accepted batch.");
    json(StatusCode::OK, &BatchAccepted { accepted })
}
