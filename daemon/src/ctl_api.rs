//! The control API served on the Unix socket: what `ossimportctl` calls.
//!
//! Each request is parsed into a closed [`Endpoint`], then dispatched with
//! one `match`. Access is the socket file's mode (0600, or 0660 with a
//! group) and, from the peer's credentials checked again here (so a socket
//! file with loosened permissions does not open the daemon to everyone), a
//! [`Role`]: root, the daemon's own user and members of `--admin-group`
//! are administrators; members of `--socket-group` are operators, who
//! submit jobs and act on their own ([`need`] says what each call needs).
//! Every state-changing call is kept in the store's control trail.

use std::sync::Arc;

use hyper::{Response, StatusCode};
use proto::api::{
    Done, EnrolRequest, Enrolled, ErrorCode, JobList, JobStatus, Page, Revoked, SubmitRequest,
    VersionInfo, WorkerList, WorkerStatus,
};
use proto::server::{Body, Handler, Peer, Req, error, json};
use tokio::time::Instant;
use tracing::{error, info};

use crate::agents::liveness;
use crate::engine::Engine;
use crate::engine::{self as jobs, JobError};
use crate::state::blocking;
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
    let Some(who) = who(&state.config, &req.peer) else {
        return error(ErrorCode::Forbidden, "this user may not control the daemon");
    };
    let Some(ep) = Endpoint::parse(&req.method, &req.path) else {
        return error(
            ErrorCode::NotFound,
            &format!("no endpoint {} {}", req.method, req.path),
        );
    };
    if let Err(why) = permitted(&eng, &who, &ep).await {
        return error(ErrorCode::Forbidden, &why);
    }
    match dispatch(&eng, ep, &req, &who).await {
        Ok(r) => r,
        Err(e) => {
            let code = e.code();
            if code == ErrorCode::Internal {
                error!(path = %req.path, error = %e, "Control request failed.");
                return error(code, "internal error; see the daemon log");
            }
            error(code, &e.to_string())
        }
    }
}

/// What a caller of the control socket may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Submits jobs; acts on its own; sees every job's name, state and counts.
    Operator,
    /// Everything: agents, the daemon, every job.
    Administrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Administrator => "administrator",
        }
    }
}

/// A caller let in, from the socket's peer credentials.
#[derive(Clone, Debug)]
pub struct Who {
    pub uid: u32,
    pub gid: Option<u32>,
    pub role: Role,
}

impl Who {
    fn caller(&self) -> crate::access::Caller {
        crate::access::Caller {
            uid: self.uid,
            gid: self.gid.unwrap_or(u32::MAX),
        }
    }

    /// Whether this caller may act on a job submitted by `owner`.
    fn owns(&self, owner: Option<&(u32, String)>) -> bool {
        self.role == Role::Administrator || owner.is_some_and(|(uid, _)| *uid == self.uid)
    }
}

/// The caller's role, or `None` when it may not use the socket at all.
fn who(config: &crate::state::Config, peer: &Peer) -> Option<Who> {
    let Peer::Unix {
        uid: Some(uid),
        gid,
    } = *peer
    else {
        // Without credentials the caller is refused: the socket's mode
        // alone is not trusted.
        return None;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let member = |g: Option<u32>| g.is_some_and(|g| in_group(uid, gid, g));
    let role = if uid == 0 || uid == me || member(config.admin_gid) {
        Role::Administrator
    } else if member(config.socket_gid) {
        Role::Operator
    } else {
        return None;
    };
    Some(Who { uid, gid, role })
}

/// What a control call needs beyond being let in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any caller (reads every job's name, state and counts; submits).
    Anyone,
    /// The job's owner or an administrator.
    OwnerOf(String),
    Administrator,
}

/// What each call needs. Pure; table-tested.
pub fn need(ep: &Endpoint) -> Need {
    match ep {
        Endpoint::Version
        | Endpoint::ListJobs
        | Endpoint::Job(_)
        | Endpoint::WaitEnd(_)
        | Endpoint::Workers
        | Endpoint::Submit
        // An operator's retries only reach its own jobs.
        | Endpoint::RetryAll => Need::Anyone,
        Endpoint::Clean(n)
        | Endpoint::Retry(n)
        | Endpoint::Pause(n)
        | Endpoint::Resume(n)
        | Endpoint::Errors(n)
        | Endpoint::Report(n)
        | Endpoint::Manifest(n)
        | Endpoint::SetLimits(n)
        | Endpoint::Sync(n) => Need::OwnerOf(n.clone()),
        Endpoint::Enrol | Endpoint::Revoke(_) | Endpoint::Shutdown => Need::Administrator,
    }
}

/// The `ossimportctl` verb a call serves, for messages and the trail.
pub fn verb(ep: &Endpoint) -> &'static str {
    match ep {
        Endpoint::Version => "version",
        Endpoint::Submit => "submit",
        Endpoint::ListJobs | Endpoint::Job(_) => "stat",
        Endpoint::WaitEnd(_) => "submit --wait",
        Endpoint::Clean(_) => "clean",
        Endpoint::Retry(_) | Endpoint::RetryAll => "retry",
        Endpoint::Pause(_) => "pause",
        Endpoint::Resume(_) => "resume",
        Endpoint::Errors(_) => "errors",
        Endpoint::Report(_) => "report",
        Endpoint::Manifest(_) => "report --manifest",
        Endpoint::SetLimits(_) => "set",
        Endpoint::Sync(_) => "sync",
        Endpoint::Workers => "workers",
        Endpoint::Enrol => "deploy (enrol an agent key)",
        Endpoint::Revoke(_) => "workers remove (revoke an agent key)",
        Endpoint::Shutdown => "stop",
    }
}

/// Who the administrators are, for refusals.
fn administrators(config: &crate::state::Config) -> String {
    let group = config
        .admin_gid
        .map(|g| format!(", or a member of --admin-group (gid {g})"))
        .unwrap_or_default();
    format!("root, the daemon's user{group}")
}

/// Refuses a call the caller's role does not allow, with one line saying
/// which role it needs.
async fn permitted(eng: &Arc<Engine>, who: &Who, ep: &Endpoint) -> Result<(), String> {
    if who.role == Role::Administrator {
        return Ok(());
    }
    let admins = administrators(&eng.state.config);
    match need(ep) {
        Need::Anyone => Ok(()),
        Need::Administrator => Err(format!(
            "{} needs the administrator role ({admins}); you (uid {}) are an operator",
            verb(ep),
            who.uid
        )),
        Need::OwnerOf(name) => {
            let n = name.clone();
            let job = blocking(&eng.state.store, move |s| s.find_job(&n))
                .await
                .map_err(|e| e.to_string())?;
            match job {
                // Unknown: the call answers that itself.
                None => Ok(()),
                Some(j) if who.owns(j.owner.as_ref()) => Ok(()),
                Some(j) => Err(format!(
                    "job {name} was submitted by {}: {} on it needs its owner or the administrator role ({admins}); you (uid {}) are an operator",
                    j.owner.map_or(
                        "an administrator before owners were recorded".to_owned(),
                        |(uid, user)| format!("{user} (uid {uid})")
                    ),
                    verb(ep),
                    who.uid
                )),
            }
        }
    }
}

/// The job's status once it has ended (finished, with no task still
/// leased: the last results are in), or after
/// [`WAIT_END_BOUND`](proto::control::WAIT_END_BOUND) (the
/// caller asks again), or at once for an incremental job, which never
/// ends, or when the daemon stops. Woken by the engine's
/// [`job_changed`](crate::state::State::job_changed) watch, not by polling.
///
/// At most [`WAITERS`](crate::state::WAITERS) answers are held at once
/// (`State::waiters`). Beyond that, the status is answered at once and the
/// caller asks again after a pause.
async fn wait_end(eng: &Arc<Engine>, name: &str) -> Result<JobStatus, JobError> {
    let deadline = Instant::now() + proto::control::WAIT_END_BOUND;
    let mut changed = eng.state.job_changed.subscribe();
    let held = eng.state.waiters.try_acquire();
    loop {
        changed.mark_unchanged();
        let st = jobs::status(eng, name).await?;
        if st.has_ended() || st.incremental.is_some() || held.is_err() {
            return Ok(st);
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return Ok(st) },
            _ = tokio::time::sleep_until(deadline) => return Ok(st),
            _ = eng.state.cancel.cancelled() => return Ok(st),
        }
    }
}

/// Keeps a state-changing call in the control trail (a failure to write
/// it is logged, not fatal: the call has happened).
async fn trail(eng: &Arc<Engine>, who: &Who, verb: &str, job: Option<&str>, detail: String) {
    let call = proto::api::ControlCall {
        at: crate::store::now(),
        uid: who.uid,
        user: crate::access::user_name(who.uid),
        verb: verb.to_owned(),
        job: job.map(str::to_owned),
        detail,
    };
    info!(uid = call.uid, user = %call.user, verb, job = job.unwrap_or(""), detail = %call.detail, "Control call.");
    if let Err(e) = blocking(&eng.state.store, move |s| s.log_control(&call)).await {
        error!(error = %e, "Cannot keep the control call in the trail.");
    }
}

fn keys_error(e: crate::agents::KeysError) -> Response<Body> {
    use crate::agents::KeysError;
    let code = match e {
        KeysError::BadKey(_) => ErrorCode::Invalid,
        KeysError::NotFound(_) => ErrorCode::NotFound,
        KeysError::NameTaken { .. } => ErrorCode::Conflict,
        KeysError::Io { .. } => {
            error!(error = %e, "Cannot update the enrolled agent keys.");
            ErrorCode::Internal
        }
    };
    error(code, &e.to_string())
}

/// Whether the user `uid` is a member of `group`, by primary group or by a
/// supplementary one (the peer credentials carry the primary gid only).
fn in_group(uid: u32, primary: Option<u32>, group: u32) -> bool {
    primary == Some(group)
        || crate::access::groups_of(uid, primary.unwrap_or(u32::MAX)).contains(&group)
}

/// One arm per control endpoint ([`Endpoint`]), each calling the engine and
/// shaping its answer; who may call it was decided before ([`need`]). Long
/// because there are many endpoints, each short.
async fn dispatch(
    eng: &Arc<Engine>,
    ep: Endpoint,
    req: &Req,
    who: &Who,
) -> Result<Response<Body>, JobError> {
    let state = &eng.state;
    Ok(match ep {
        Endpoint::Version => json(
            StatusCode::OK,
            &VersionInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                commit: Some(proto::COMMIT.to_string()),
                api: proto::api::API_VERSION,
                role: Some(who.role.as_str().to_owned()),
            },
        ),
        Endpoint::Submit => {
            let r: SubmitRequest = serde_json::from_slice(&req.body)
                .map_err(|e| JobError::Invalid(format!("bad submit request: {e}")))?;
            let st = jobs::submit(eng, &r, who.caller()).await?;
            trail(eng, who, "submit", Some(&st.name), r.job_cfg.clone()).await;
            json(StatusCode::OK, &st)
        }
        Endpoint::ListJobs => {
            let rows = blocking(&state.store, |s| s.jobs()).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let owned = who.owns(row.owner.as_ref());
                let mut st = jobs::status_of(eng, row).await?;
                if !owned {
                    st.control.clear();
                }
                out.push(st);
            }
            json(StatusCode::OK, &JobList { jobs: out })
        }
        Endpoint::Job(n) => {
            let mut st = jobs::status(eng, &n).await?;
            let owner = st.owner.as_ref().map(|o| (o.uid, o.user.clone()));
            if !who.owns(owner.as_ref()) {
                st.control.clear();
            }
            json(StatusCode::OK, &st)
        }
        Endpoint::WaitEnd(n) => {
            let mut st = wait_end(eng, &n).await?;
            let owner = st.owner.as_ref().map(|o| (o.uid, o.user.clone()));
            if !who.owns(owner.as_ref()) {
                st.control.clear();
            }
            json(StatusCode::OK, &st)
        }
        Endpoint::Clean(n) => {
            let dir = jobs::clean(eng, &n).await?;
            trail(eng, who, "clean", Some(&n), String::new()).await;
            done(cleaned(&n, &dir), 0)
        }
        Endpoint::Sync(n) => {
            let t = jobs::sync(eng, &n).await?;
            trail(eng, who, "sync", Some(&n), String::new()).await;
            json(StatusCode::OK, &t)
        }
        Endpoint::Retry(n) => {
            let r = jobs::retry(eng, &n).await?;
            trail(eng, who, "retry", Some(&n), format!("{} queued", r.queued)).await;
            done(retried(Some(&n), r), r.queued)
        }
        Endpoint::RetryAll => {
            let rows = blocking(&state.store, |s| s.jobs()).await?;
            let mut all = Retried::default();
            for row in rows.into_iter().filter(|r| who.owns(r.owner.as_ref())) {
                let r = jobs::retry(eng, &row.name).await?;
                trail(
                    eng,
                    who,
                    "retry",
                    Some(&row.name),
                    format!("{} queued", r.queued),
                )
                .await;
                all.queued += r.queued;
                all.unfixable += r.unfixable;
                all.rescan |= r.rescan;
            }
            done(retried(None, all), all.queued)
        }
        Endpoint::Pause(n) => {
            let c = jobs::pause(eng, &n).await?;
            trail(eng, who, "pause", Some(&n), String::new()).await;
            done(format!("job {n} paused; {c} tasks taken back"), c)
        }
        Endpoint::Resume(n) => {
            jobs::resume(eng, &n).await?;
            trail(eng, who, "resume", Some(&n), String::new()).await;
            done(format!("job {n} resumed"), 0)
        }
        Endpoint::SetLimits(n) => {
            let body: proto::api::SetLimits = serde_json::from_slice(&req.body)
                .map_err(|e| JobError::Invalid(format!("bad request body: {e}")))?;
            let by = format!("uid {}", who.uid);
            let answer = jobs::limits::set(eng, &n, &body.settings, by).await?;
            trail(eng, who, "set", Some(&n), body.settings.join(" ")).await;
            json(StatusCode::OK, &answer)
        }
        Endpoint::Errors(n) => {
            let page = Page::parse(req.query.as_deref()).map_err(JobError::Invalid)?;
            let job = jobs::find(eng, &n).await?;
            let limit = page.limit.unwrap_or(1000);
            let list = blocking(&state.store, move |s| {
                crate::report::errors(s, job.id, &n, page.after.as_deref(), limit)
            })
            .await?;
            json(StatusCode::OK, &list)
        }
        Endpoint::Report(n) => {
            let page = Page::parse(req.query.as_deref()).map_err(JobError::Invalid)?;
            let job = jobs::find(eng, &n).await?;
            let limit = page.limit.unwrap_or(50);
            let r = blocking(&state.store, move |s| {
                crate::report::report(s, job.id, &n, job.state, page.after.as_deref(), limit)
            })
            .await?;
            json(StatusCode::OK, &r)
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
            let spec = eng.jobs().get(&id).map(|rt| rt.spec.clone());
            let page = blocking(&state.store, move |s| {
                crate::report::manifest(s, id, spec.as_ref(), after, limit)
            })
            .await?;
            json(StatusCode::OK, &page)
        }
        Endpoint::Enrol => {
            let r: EnrolRequest = serde_json::from_slice(&req.body)
                .map_err(|e| JobError::Invalid(format!("bad enrol request: {e}")))?;
            let (fingerprint, changed) =
                match state
                    .registry
                    .enrol(&state.verifier, &r.public_key, &r.name, r.replace)
                {
                    Ok(x) => x,
                    Err(e) => return Ok(keys_error(e)),
                };
            if changed {
                info!(agent = %r.name, fingerprint = %fingerprint, "Agent enrolled.");
                trail(eng, who, "enrol", None, format!("{} {fingerprint}", r.name)).await;
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
        Endpoint::Revoke(agent) => {
            let gone = match state.registry.revoke(&state.verifier, &agent) {
                Ok(g) => g,
                Err(e) => return Ok(keys_error(e)),
            };
            let mut tasks = 0u64;
            for fp in &gone {
                let fp = fp.clone();
                tasks += blocking(&state.store, move |s| s.release_agent(&fp)).await? as u64;
            }
            eng.metrics.requeued("revoked", tasks as usize);
            trail(
                eng,
                who,
                "revoke",
                None,
                format!(
                    "{agent} ({} keys, {tasks} tasks back to pending)",
                    gone.len()
                ),
            )
            .await;
            info!(agent = %agent, keys = gone.len(), tasks, "Agent revoked; its tasks go back to pending.");
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
                    state: if a.rejected >= crate::agents::SUSPECT_AFTER {
                        "suspect".to_string()
                    } else {
                        liveness(a, now, state.config.agent_timeout)
                            .as_str()
                            .to_string()
                    },
                    capacity: a.capacity,
                    running: leased.get(&a.fingerprint).copied().unwrap_or(0),
                    last_heartbeat_secs_ago: a
                        .last_seen
                        .map(|t| now.saturating_duration_since(t).as_secs()),
                    error: if a.rejected > 0 {
                        Some(format!(
                            "{} results rejected by the daemon (REJECTED_RESULT; see the daemon log){}",
                            a.rejected,
                            a.error
                                .as_deref()
                                .map(|e| format!("; {e}"))
                                .unwrap_or_default()
                        ))
                    } else {
                        a.error.clone()
                    },
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
            trail(eng, who, "stop", None, String::new()).await;
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

#[cfg(test)]
mod tests {
    use super::{Endpoint, Need, Retried, Role, Who, need, retried};

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

    #[test]
    fn what_each_call_needs() {
        let j = || "j".to_string();
        for (ep, want) in [
            (Endpoint::Version, Need::Anyone),
            (Endpoint::ListJobs, Need::Anyone),
            (Endpoint::Job(j()), Need::Anyone),
            (Endpoint::WaitEnd(j()), Need::Anyone),
            (Endpoint::Workers, Need::Anyone),
            (Endpoint::Submit, Need::Anyone),
            (Endpoint::RetryAll, Need::Anyone),
            (Endpoint::Clean(j()), Need::OwnerOf(j())),
            (Endpoint::Retry(j()), Need::OwnerOf(j())),
            (Endpoint::Pause(j()), Need::OwnerOf(j())),
            (Endpoint::Resume(j()), Need::OwnerOf(j())),
            (Endpoint::Errors(j()), Need::OwnerOf(j())),
            (Endpoint::Report(j()), Need::OwnerOf(j())),
            (Endpoint::Manifest(j()), Need::OwnerOf(j())),
            (Endpoint::SetLimits(j()), Need::OwnerOf(j())),
            (Endpoint::Enrol, Need::Administrator),
            (Endpoint::Revoke(j()), Need::Administrator),
            (Endpoint::Shutdown, Need::Administrator),
        ] {
            assert_eq!(need(&ep), want, "{ep:?}");
        }
        let op = Who {
            uid: 1000,
            gid: None,
            role: Role::Operator,
        };
        assert!(op.owns(Some(&(1000, "me".into()))));
        assert!(!op.owns(Some(&(0, "root".into()))));
        // Jobs from before owners were recorded: administrators only.
        assert!(!op.owns(None));
        let admin = Who {
            role: Role::Administrator,
            ..op
        };
        assert!(admin.owns(None) && admin.owns(Some(&(0, "root".into()))));
    }
}
