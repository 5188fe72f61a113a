//! The control API served on the Unix socket: what `ossimportctl` calls.
//!
//! Each request is parsed into a closed [`Endpoint`], then dispatched with
//! one `match`. Access control is the socket file's mode (0600, or 0660
//! with a group); the peer's credentials are checked again here so a socket
//! file with loosened permissions does not open the daemon to everyone.

use std::sync::Arc;

use hyper::{Response, StatusCode};
use proto::api::{
    Done, EnrolRequest, Enrolled, ErrorList, FailedEntry, JobList, Page, Report, Revoked,
    SubmitRequest, VerifyMethod, VersionInfo, WorkerList, WorkerStatus,
};
use proto::server::{Body, Handler, Peer, Req, error, json};
use tokio::time::Instant;
use tracing::{error, info};

use crate::agents::liveness;
use crate::engine::Engine;
use crate::engine::{self as jobs, JobError};
use crate::state::{State, blocking};
use crate::store::Retried;

pub use proto::control::Endpoint;

pub fn handler(eng: Arc<Engine>) -> Handler {
    Arc::new(move |req| {
        let eng = Arc::clone(&eng);
        Box::pin(async move { handle(eng, req).await })
    })
}

async fn handle(eng: Arc<Engine>, req: Req) -> Response<Body> {
    let state = &eng.state;
    if !allowed(state, &req.peer) {
        return error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "this user may not control the daemon",
        );
    }
    let Some(ep) = Endpoint::parse(&req.method, &req.path) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("no endpoint {} {}", req.method, req.path),
        );
    };
    match dispatch(&eng, ep, &req).await {
        Ok(r) => r,
        Err(e) => {
            let (status, code) = match &e {
                JobError::Invalid(_) => (StatusCode::BAD_REQUEST, "INVALID"),
                JobError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
                JobError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
                JobError::Store(_) | JobError::Other(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
                }
            };
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                error!(path = %req.path, error = %e, "Control request failed.");
                return error(status, code, "internal error; see the daemon log");
            }
            error(status, code, &e.to_string())
        }
    }
}

fn keys_error(e: crate::agents::KeysError) -> Response<Body> {
    use crate::agents::KeysError;
    let (status, code) = match e {
        KeysError::BadKey(_) => (StatusCode::BAD_REQUEST, "INVALID"),
        KeysError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        KeysError::Io { .. } => {
            error!(error = %e, "Cannot update the enrolled agent keys.");
            (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
        }
    };
    error(status, code, &e.to_string())
}

fn allowed(state: &State, peer: &Peer) -> bool {
    match peer {
        Peer::Unix {
            uid: Some(uid),
            gid,
        } => {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            *uid == 0
                || *uid == me
                || state
                    .config
                    .socket_gid
                    .is_some_and(|g| *gid == Some(g) || in_group(*uid, *gid, g))
        }
        // Without credentials the caller is refused: the socket's mode alone
        // is not trusted.
        Peer::Unix { uid: None, .. } => false,
        Peer::Tcp(_) => false,
    }
}

/// Whether the user `uid` is a member of `group`, by primary group or by a
/// supplementary one (the peer credentials carry the primary gid only).
fn in_group(uid: u32, primary: Option<u32>, group: u32) -> bool {
    primary == Some(group)
        || crate::access::groups_of(uid, primary.unwrap_or(u32::MAX)).contains(&group)
}

async fn dispatch(eng: &Arc<Engine>, ep: Endpoint, req: &Req) -> Result<Response<Body>, JobError> {
    let state = &eng.state;
    Ok(match ep {
        Endpoint::Version => json(
            StatusCode::OK,
            &VersionInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                commit: Some(proto::COMMIT.to_string()),
                api: proto::api::API_VERSION,
            },
        ),
        Endpoint::Submit => {
            let r: SubmitRequest = serde_json::from_slice(&req.body)
                .map_err(|e| JobError::Invalid(format!("bad submit request: {e}")))?;
            let caller = match req.peer {
                Peer::Unix {
                    uid: Some(uid),
                    gid,
                } => crate::access::Caller {
                    uid,
                    gid: gid.unwrap_or(u32::MAX),
                },
                _ => return Err(JobError::Invalid("caller has no credentials".into())),
            };
            json(StatusCode::OK, &jobs::submit(eng, &r, caller).await?)
        }
        Endpoint::ListJobs => {
            let rows = blocking(&state.store, |s| s.jobs()).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(jobs::status_of(eng, row).await?);
            }
            json(StatusCode::OK, &JobList { jobs: out })
        }
        Endpoint::Job(n) => json(StatusCode::OK, &jobs::status(eng, &n).await?),
        Endpoint::Clean(n) => {
            let dir = jobs::clean(eng, &n).await?;
            done(cleaned(&n, &dir), 0)
        }
        Endpoint::Retry(n) => {
            let r = jobs::retry(eng, &n).await?;
            done(retried(Some(&n), r), r.queued)
        }
        Endpoint::RetryAll => {
            let rows = blocking(&state.store, |s| s.jobs()).await?;
            let mut all = Retried::default();
            for row in rows {
                let r = jobs::retry(eng, &row.name).await?;
                all.queued += r.queued;
                all.unfixable += r.unfixable;
                all.rescan |= r.rescan;
            }
            done(retried(None, all), all.queued)
        }
        Endpoint::Pause(n) => {
            let c = jobs::pause(eng, &n).await?;
            done(format!("job {n} paused; {c} tasks taken back"), c)
        }
        Endpoint::Resume(n) => {
            jobs::resume(eng, &n).await?;
            done(format!("job {n} resumed"), 0)
        }
        Endpoint::SetLimits(n) => {
            let body: proto::api::SetLimits = serde_json::from_slice(&req.body)
                .map_err(|e| JobError::Invalid(format!("bad request body: {e}")))?;
            let by = match &req.peer {
                Peer::Unix { uid: Some(u), .. } => format!("uid {u}"),
                _ => "unknown".into(),
            };
            json(
                StatusCode::OK,
                &jobs::limits::set(eng, &n, &body.settings, by).await?,
            )
        }
        Endpoint::Errors(n) => {
            let page = Page::parse(req.query.as_deref()).map_err(JobError::Invalid)?;
            let job = jobs::find(eng, &n).await?;
            let id = job.id;
            let limit = page.limit.unwrap_or(1000);
            let p = blocking(&state.store, move |s| {
                s.failed_page(id, page.after.as_deref(), limit)
            })
            .await?;
            json(
                StatusCode::OK,
                &ErrorList {
                    job: n,
                    failed: p.failed.into_iter().map(entry).collect(),
                    next: p.next,
                },
            )
        }
        Endpoint::Report(n) => {
            let page = Page::parse(req.query.as_deref()).map_err(JobError::Invalid)?;
            let job = jobs::find(eng, &n).await?;
            let id = job.id;
            let limit = page.limit.unwrap_or(50);
            let (c, methods, p, passes, deleted) = blocking(&state.store, move |s| {
                Ok((
                    s.counts(id)?,
                    s.verify_methods(id)?,
                    s.failed_page(id, page.after.as_deref(), limit)?,
                    s.passes(id)?,
                    s.deleted_page(id, None, limit)?,
                ))
            })
            .await?;
            json(
                StatusCode::OK,
                &Report {
                    job: n,
                    state: job.state,
                    counts: c,
                    methods: methods
                        .into_iter()
                        .map(|(verified_by, objects, bytes)| VerifyMethod {
                            verified_by,
                            objects,
                            bytes,
                        })
                        .collect(),
                    failed: p.failed.into_iter().map(entry).collect(),
                    next: p.next,
                    passes,
                    deleted,
                },
            )
        }
        Endpoint::Manifest(n) => {
            let page = Page::parse(req.query.as_deref()).map_err(JobError::Invalid)?;
            let job = jobs::find(eng, &n).await?;
            let after = match page.after.as_deref() {
                None => 0,
                Some(a) => a.parse::<i64>().map_err(|_| {
                    JobError::Invalid(format!("manifest: after must be an object id, got {a:?}"))
                })?,
            };
            let limit = page.limit.unwrap_or(MANIFEST_PAGE).clamp(1, MANIFEST_PAGE);
            let id = job.id;
            let mut rows =
                blocking(&state.store, move |s| s.manifest_page(id, after, limit)).await?;
            let spec = eng.jobs().get(&id).map(|rt| rt.spec.clone());
            if let Some(spec) = &spec {
                for r in &mut rows {
                    crate::manifest::locate(spec, r);
                }
            }
            let next = (rows.len() == limit).then(|| rows[rows.len() - 1].id.to_string());
            json(StatusCode::OK, &proto::api::ManifestPage { rows, next })
        }
        Endpoint::Enrol => {
            let r: EnrolRequest = serde_json::from_slice(&req.body)
                .map_err(|e| JobError::Invalid(format!("bad enrol request: {e}")))?;
            let (fingerprint, changed) =
                match state
                    .registry
                    .enrol(&state.verifier, &r.public_key, &r.name)
                {
                    Ok(x) => x,
                    Err(e) => return Ok(keys_error(e)),
                };
            if changed {
                info!(agent = %r.name, fingerprint = %fingerprint, "Agent enrolled.");
            }
            json(
                StatusCode::OK,
                &Enrolled {
                    fingerprint,
                    daemon_key: state.signer.public_key_openssh(),
                    changed,
                },
            )
        }
        Endpoint::Revoke(who) => {
            let gone = match state.registry.revoke(&state.verifier, &who) {
                Ok(g) => g,
                Err(e) => return Ok(keys_error(e)),
            };
            let mut tasks = 0u64;
            for fp in &gone {
                let fp = fp.clone();
                tasks += blocking(&state.store, move |s| s.release_agent(&fp)).await? as u64;
            }
            eng.metrics.requeued("revoked", tasks as usize);
            info!(agent = %who, keys = gone.len(), tasks, "Agent revoked; its tasks go back to pending.");
            state.wake.notify_one();
            json(
                StatusCode::OK,
                &Revoked {
                    fingerprints: gone,
                    tasks,
                },
            )
        }
        Endpoint::Workers => {
            let leased = blocking(&state.store, |s| s.leases_by_agent()).await?;
            let now = Instant::now();
            let mut workers: Vec<WorkerStatus> = state
                .agents()
                .values()
                .map(|a| WorkerStatus {
                    name: a.name.clone(),
                    fingerprint: a.fingerprint.clone(),
                    addr: a.addr.clone(),
                    state: liveness(a, now, state.config.agent_timeout)
                        .as_str()
                        .to_string(),
                    capacity: a.capacity,
                    running: leased.get(&a.fingerprint).copied().unwrap_or(0),
                    last_heartbeat_secs_ago: a
                        .last_seen
                        .map(|t| now.saturating_duration_since(t).as_secs()),
                    error: a.error.clone(),
                    version: a.version.clone(),
                    bytes_per_sec: if liveness(a, now, state.config.agent_timeout)
                        == crate::agents::Liveness::Up
                    {
                        a.bytes_per_sec
                    } else {
                        0
                    },
                })
                .collect();
            workers.sort_by(|a, b| a.name.cmp(&b.name));
            // One row per host of `workers`: the agent that checked in
            // from it (deployed agents are named after the line; agents
            // installed by hand are matched by the host of their address),
            // else a row saying none has.
            for line in listed_workers(&state.config) {
                let Ok(host) = crate::config::sys::WorkerHost::parse(&line) else {
                    continue;
                };
                let seen = workers.iter().any(|w| {
                    w.name == line
                        || w.addr
                            .as_deref()
                            .and_then(|a| a.rsplit_once(':'))
                            .is_some_and(|(h, _)| h.trim_matches(['[', ']']) == host.host)
                });
                if !seen {
                    workers.push(WorkerStatus {
                        name: line.clone(),
                        fingerprint: String::new(),
                        addr: None,
                        state: "absent".into(),
                        capacity: 0,
                        running: 0,
                        last_heartbeat_secs_ago: None,
                        error: Some("listed in workers; no agent has checked in from it".into()),
                        bytes_per_sec: 0,
                        version: None,
                    });
                }
            }
            json(StatusCode::OK, &WorkerList { workers })
        }
        Endpoint::Shutdown => {
            info!("Shutdown requested by ossimportctl stop.");
            state.cancel.cancel();
            done("Stop import service completed.".into(), 0)
        }
    })
}

/// The hosts of the `workers` file as it is now (the lines `ossimportd`
/// read at start when it cannot be read), less this machine's own line when
/// the daemon copies here itself.
fn listed_workers(config: &crate::state::Config) -> Vec<String> {
    let Some(path) = &config.workers_file else {
        return config.workers.clone();
    };
    match crate::config::sys::load_workers(path) {
        Ok(hosts) => hosts
            .into_iter()
            .filter(|h| config.local_worker.is_none() || !crate::config::sys::is_this_machine(h))
            .collect(),
        Err(_) => config.workers.clone(),
    }
}

/// Manifest rows per page at most: bounds the daemon's memory whatever the
/// job's size.
const MANIFEST_PAGE: usize = 10_000;

fn done(message: String, count: u64) -> Response<Body> {
    json(StatusCode::OK, &Done { message, count })
}

/// The original's words, with the count of objects queued again and of
/// those a retry cannot fix.
fn retried(job: Option<&str>, r: Retried) -> String {
    let of = job.map(|j| format!(" for job:{j}")).unwrap_or_default();
    let errors = job.unwrap_or("JOB");
    let left = || {
        format!(
            "{} failed objects cannot be retried: their names are refused by the destination or their listing failed (see `ossimportctl errors {errors}`)",
            r.unfixable
        )
    };
    let listing = if r.rescan {
        "the listing starts again from its checkpoint; "
    } else {
        ""
    };
    match (r.queued, r.unfixable) {
        (0, _) if r.rescan => format!("Retry has been submitted. ({listing}0 failed objects)"),
        (0, 0) => format!("None failed tasks{of}."),
        (0, _) => format!("None failed tasks a retry can fix{of}; {}.", left()),
        (n, 0) => format!("Retry has been submitted. ({listing}{n} failed objects queued again)"),
        (n, _) => format!(
            "Retry has been submitted. ({listing}{n} failed objects queued again; {})",
            left()
        ),
    }
}

/// The original's words for `clean`.
pub fn cleaned(job: &str, dir: &std::path::Path) -> String {
    format!(
        "delete jobs dir:{}/\nClean job:{job} completed.",
        dir.display()
    )
}

fn entry(f: crate::store::FailedObject) -> FailedEntry {
    FailedEntry {
        path: f.rel_path,
        code: f.code,
        message: f.message,
    }
}

#[cfg(test)]
mod tests {
    use super::{Retried, retried};

    #[test]
    fn retry_answers_in_the_original_words() {
        let r = |queued, unfixable, rescan| Retried {
            queued,
            unfixable,
            rescan,
        };
        let cases = [
            (Some("j"), r(0, 0, false), "None failed tasks for job:j."),
            (None, r(0, 0, false), "None failed tasks."),
            (
                Some("j"),
                r(3, 0, false),
                "Retry has been submitted. (3 failed objects queued again)",
            ),
            (
                Some("j"),
                r(0, 2, false),
                "None failed tasks a retry can fix for job:j; 2 failed objects cannot be retried: their names are refused by the destination or their listing failed (see `ossimportctl errors j`).",
            ),
            (
                Some("j"),
                r(1, 2, true),
                "Retry has been submitted. (the listing starts again from its checkpoint; 1 failed objects queued again; 2 failed objects cannot be retried: their names are refused by the destination or their listing failed (see `ossimportctl errors j`))",
            ),
        ];
        for (job, got, want) in cases {
            assert_eq!(retried(job, got), want);
        }
    }
}
