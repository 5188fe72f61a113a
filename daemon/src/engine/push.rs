//! HTTP-push dispatch: a leased batch sent to an agent's task API over
//! mutual TLS pinned to the agent's enrolled key, without credentials.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use proto::api::{BatchAccepted, ErrorBody, TaskBatch, agent_path};
use proto::job::{JobSpec, TaskSpec};
use tokio::time::Instant;
use tracing::{info, warn};

use super::Engine;
use crate::state::blocking;

/// The job as an agent sees it: every credential blanked. Agents take
/// credentials from their own secrets file, so none crosses the network.
pub fn for_agent(spec: &JobSpec) -> JobSpec {
    let mut spec = spec.clone();
    for b in spec.buckets_mut() {
        b.secret_key = proto::Secret::default();
    }
    spec
}

/// Sends one batch; whatever the agent does not accept goes back to
/// pending at once.
pub(crate) async fn push(eng: Arc<Engine>, fp: String, batch: TaskBatch) {
    let state = &eng.state;
    let ids: Vec<i64> = batch.tasks.iter().map(|t: &TaskSpec| t.task_id).collect();
    let (addr, name) = match state.agents().get(&fp) {
        Some(a) => (a.addr.clone(), a.name.clone()),
        None => (None, fp.clone()),
    };
    let channel = addr
        .as_deref()
        .and_then(|addr| state.channel_to_agent(&fp, addr));
    let result = match (addr, serde_json::to_vec(&batch), channel) {
        (Some(_), Ok(body), Some(channel)) => channel
            .send(
                Method::POST,
                agent_path::TASKS,
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
            }),
        (None, _, _) => Err("no address known".to_string()),
        (_, Err(e), _) => Err(e.to_string()),
        (_, _, None) => Err("its key is no longer enrolled".to_string()),
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
