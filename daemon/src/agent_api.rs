//! The daemon's side of the agent API (TCP): heartbeats, event reports and
//! goodbyes from enrolled agents.
//!
//! Every request is verified before its body is parsed; a request that is
//! unsigned, stale, replayed or signed by an unknown key gets 401 and
//! changes nothing. A key not yet known triggers one re-read of the
//! enrolment file, so an agent enrolled while the daemon runs is accepted
//! without a restart.

use std::sync::Arc;

use hyper::{Response, StatusCode};
use proto::api::{EventBatch, Heartbeat, HeartbeatReply, agent_path};
use proto::auth::{AuthError, Verified};
use proto::job::Event;
use proto::server::{Body, Gate, Handler, Peer, Req, error, json};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::server::{State, blocking, unix_now};

/// Body limits of the agent API's endpoints: a heartbeat lists the tasks an
/// agent runs, an event batch carries at most a few thousand results.
const HEARTBEAT_MAX: usize = 256 << 10;
const EVENTS_MAX: usize = 16 << 20;
const BYE_MAX: usize = 4 << 10;

/// Runs before a byte of the body is read: an unsigned, stale, replayed or
/// unknown-signer request is answered 401 from its headers, and a signed one
/// may send only as much as its endpoint needs.
pub fn gate(state: Arc<State>) -> Gate {
    Arc::new(move |_method, path, headers| {
        let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
        let check = || state.verifier.precheck(header);
        let r = match check() {
            Err(AuthError::UnknownKey(_)) if state.reload_agent_keys(false) => check(),
            r => r,
        };
        if let Err(e) = r {
            warn!(path = %path, reason = %e, "Refused unauthenticated agent request before its body.");
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                &e.to_string(),
            )));
        }
        Ok(match path {
            agent_path::HEARTBEAT => HEARTBEAT_MAX,
            agent_path::EVENTS => EVENTS_MAX,
            agent_path::BYE => BYE_MAX,
            _ => 0,
        })
    })
}

pub fn handler(state: Arc<State>) -> Handler {
    Arc::new(move |req| {
        let state = Arc::clone(&state);
        Box::pin(async move { handle(state, req).await })
    })
}

fn verify(state: &State, req: &Req) -> Result<Verified, AuthError> {
    let check = || {
        state
            .verifier
            .verify(req.method.as_str(), &req.path, &req.body, |h| req.header(h))
    };
    match check() {
        Err(AuthError::UnknownKey(_)) if state.reload_agent_keys(false) => check(),
        r => r,
    }
}

async fn handle(state: Arc<State>, req: Req) -> Response<Body> {
    let who = match verify(&state, &req) {
        Ok(v) => v,
        Err(e) => {
            let from = match &req.peer {
                Peer::Tcp(a) => a.to_string(),
                Peer::Unix { .. } => "unix".into(),
            };
            warn!(peer = %from, path = %req.path, reason = %e, "Refused unauthenticated agent request.");
            return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", &e.to_string());
        }
    };
    let r = match req.path.as_str() {
        agent_path::HEARTBEAT => heartbeat(&state, &who, &req).await,
        agent_path::EVENTS => events(&state, &who, &req).await,
        agent_path::BYE => bye(&state, &who).await,
        _ => Err((StatusCode::NOT_FOUND, "no such endpoint".to_string())),
    };
    match r {
        Ok(resp) => resp,
        Err((status, msg)) => error(status, "ERROR", &msg),
    }
}

type Answer = Result<Response<Body>, (StatusCode, String)>;

fn bad(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, e.to_string())
}

fn internal(e: impl std::fmt::Display) -> (StatusCode, String) {
    warn!(error = %e, "Agent request failed.");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
}

async fn heartbeat(state: &Arc<State>, who: &Verified, req: &Req) -> Answer {
    let hb: Heartbeat = serde_json::from_slice(&req.body).map_err(bad)?;
    let fresh = {
        let mut agents = state.agents();
        let a = agents
            .entry(who.key.clone())
            .or_insert_with(|| crate::scheduler::AgentEntry::enrolled(&hb.name, &who.key));
        let fresh = a.last_seen.is_none() || a.left || a.addr.as_deref() != Some(&hb.addr);
        a.name = hb.name.clone();
        a.addr = Some(hb.addr.clone());
        a.capacity = hb.capacity;
        let now = Instant::now();
        a.bytes_per_sec = match a.last_seen {
            Some(t) if hb.bytes >= a.bytes && now > t => {
                ((hb.bytes - a.bytes) as f64 / now.duration_since(t).as_secs_f64()) as u64
            }
            _ => 0,
        };
        a.bytes = hb.bytes;
        a.last_seen = Some(now);
        a.left = false;
        fresh
    };
    if fresh {
        info!(agent = %hb.name, addr = %hb.addr, capacity = hb.capacity, "Agent joined.");
        state.wake.notify_one();
    }
    let (fp, until) = (
        who.key.clone(),
        unix_now() + state.config.lease.as_secs() as i64,
    );
    let running = hb.running.clone();
    let cancel = blocking(&state.store, move |s| s.renew_leases(&fp, &running, until))
        .await
        .map_err(internal)?;
    Ok(json(StatusCode::OK, &HeartbeatReply { cancel }))
}

async fn events(state: &Arc<State>, who: &Verified, req: &Req) -> Answer {
    let batch: EventBatch = serde_json::from_slice(&req.body).map_err(bad)?;
    let fp = who.key.clone();
    let n = batch.events.len();
    blocking(&state.store, move |s| apply_from(s, &fp, batch.events))
        .await
        .map_err(internal)?;
    state.wake.notify_one();
    Ok(json(
        StatusCode::OK,
        &proto::api::Done {
            message: "applied".into(),
            count: n as u64,
        },
    ))
}

/// Records events reported by the executor `fp` (an agent's fingerprint,
/// or the local worker): only the lease holder speaks for a task. Its
/// object results, parts and completion are taken from the executor the
/// task is leased to now, and from no one else. Ids are never reused, so
/// a late report about a cleaned job, or about a task that expired and
/// went to another executor, matches no lease and is dropped (that work is
/// redone under the current lease, never counted from a stale one).
/// Returns how many were dropped.
pub fn apply_from(
    s: &crate::store::Store,
    fp: &str,
    events: Vec<Event>,
) -> Result<usize, crate::store::StoreError> {
    let mut keep = Vec::with_capacity(events.len());
    let mut dropped = 0usize;
    for ev in events {
        let ok = match &ev {
            Event::TaskDone { task_id } => s.lease_owner(*task_id)?.as_deref() == Some(fp),
            Event::UploadStarted { object_id, .. }
            | Event::PartDone { object_id, .. }
            | Event::UploadAborted { object_id } => s.object_leased_to(*object_id, fp)?,
            Event::ObjectDone(r) => s.object_leased_to(r.object_id, fp)?,
        };
        if ok {
            keep.push(ev);
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        info!(agent = %fp, dropped, "Dropped events for tasks not leased to this agent.");
    }
    s.apply_events(&keep)?;
    Ok(dropped)
}

async fn bye(state: &Arc<State>, who: &Verified) -> Answer {
    let name = {
        let mut agents = state.agents();
        match agents.get_mut(&who.key) {
            Some(a) => {
                a.left = true;
                a.name.clone()
            }
            None => who.key.clone(),
        }
    };
    let fp = who.key.clone();
    let n = blocking(&state.store, move |s| s.release_agent(&fp))
        .await
        .map_err(internal)?;
    info!(agent = %name, tasks = n, "Agent left; its tasks go back to pending.");
    state.wake.notify_one();
    Ok(json(
        StatusCode::OK,
        &proto::api::Done {
            message: "bye".into(),
            count: n as u64,
        },
    ))
}
