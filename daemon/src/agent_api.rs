//! The daemon's side of the agent API (TCP, mutual TLS): heartbeats, event
//! reports and goodbyes from enrolled agents.
//!
//! Only an agent whose key is enrolled completes the TLS handshake
//! (`proto::tls`; an unknown key makes the enrolment file be read again, so
//! an agent enrolled while the daemon runs is let in without a restart).
//! Every request is then checked once more against the enrolled keys, so a
//! revoked agent's open connection is refused too.

use std::sync::Arc;

use hyper::{Response, StatusCode};
use proto::api::{ErrorCode, EventBatch, Heartbeat, HeartbeatReply, agent_path};
use proto::server::{Body, Gate, Handler, Peer, Req, error, json};
use tracing::{info, warn};

use crate::engine::Engine;
use crate::state::{blocking, unix_now};

/// Body limits of the agent API's endpoints: a heartbeat lists the tasks an
/// agent runs, an event batch carries at most a few thousand results.
const HEARTBEAT_MAX: usize = 256 << 10;
const EVENTS_MAX: usize = 16 << 20;
const BYE_MAX: usize = 4 << 10;

/// Runs before a byte of the body is read: each endpoint reads only as
/// much as it needs.
pub fn gate() -> Gate {
    Arc::new(move |_method, path, _headers| {
        Ok(match path {
            agent_path::HEARTBEAT => HEARTBEAT_MAX,
            agent_path::EVENTS => EVENTS_MAX,
            agent_path::BYE => BYE_MAX,
            _ => 0,
        })
    })
}

pub fn handler(eng: Arc<Engine>) -> Handler {
    Arc::new(move |req| {
        let eng = Arc::clone(&eng);
        Box::pin(async move { handle(eng, req).await })
    })
}

/// What an authenticated request tells the handlers: the agent's key.
struct Who {
    key: String,
}

async fn handle(eng: Arc<Engine>, req: Req) -> Response<Body> {
    let state = &eng.state;
    let who = match &req.peer {
        Peer::Tls { key, .. } if state.verifier.knows(key) => Who { key: key.clone() },
        peer => {
            warn!(peer = ?peer, path = %req.path, "Refused an agent request: its key is not enrolled (revoked?).");
            // A key revoked while its connection was open: the connection
            // ends with this answer, and a new one fails its handshake.
            let mut refused = error(ErrorCode::Unauthorized, "this agent's key is not enrolled");
            refused.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return refused;
        }
    };
    let r = match req.path.as_str() {
        agent_path::HEARTBEAT => heartbeat(&eng, &who, &req).await,
        agent_path::EVENTS => events(&eng, &who, &req).await,
        agent_path::BYE => bye(&eng, &who).await,
        _ => Err((ErrorCode::NotFound, "no such endpoint".to_string())),
    };
    match r {
        Ok(resp) => resp,
        Err((code, msg)) => error(code, &msg),
    }
}

type Answer = Result<Response<Body>, (ErrorCode, String)>;

fn bad(e: impl std::fmt::Display) -> (ErrorCode, String) {
    (ErrorCode::Invalid, e.to_string())
}

fn internal(e: impl std::fmt::Display) -> (ErrorCode, String) {
    warn!(error = %e, "Agent request failed.");
    (ErrorCode::Internal, "internal error".into())
}

async fn heartbeat(eng: &Arc<Engine>, who: &Who, req: &Req) -> Answer {
    let state = &eng.state;
    let hb: Heartbeat = serde_json::from_slice(&req.body).map_err(bad)?;
    let fresh = state.registry.heard_from(&who.key, &hb);
    if fresh {
        info!(
            agent = %proto::net::printable(&hb.name),
            addr = %proto::net::printable(&hb.addr),
            capacity = hb.capacity,
            "Agent joined."
        );
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
    // Every loaded job's limits: an agent applies those of the jobs it has
    // executors for, so a `set` reaches it within a heartbeat.
    let limits = eng
        .jobs()
        .values()
        .map(|rt| rt.spec.live_limits())
        .collect();
    Ok(json(StatusCode::OK, &HeartbeatReply { cancel, limits }))
}

async fn events(eng: &Arc<Engine>, who: &Who, req: &Req) -> Answer {
    let batch: EventBatch = serde_json::from_slice(&req.body).map_err(bad)?;
    let n = batch.events.len();
    // Answered once committed: an agent forgets only what the store has.
    eng.recorder
        .record(&who.key, batch.events)
        .await
        .map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &proto::api::Done {
            message: "applied".into(),
            count: n as u64,
        },
    ))
}

async fn bye(eng: &Arc<Engine>, who: &Who) -> Answer {
    let state = &eng.state;
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
    eng.metrics.requeued("agent_left", n);
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
