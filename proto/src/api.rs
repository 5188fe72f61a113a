//! Request and response bodies of the two HTTP APIs: the agent API (daemon
//! <-> agents, TCP, signed) and the control API (ctl -> daemon, Unix socket).
//!
//! Both are versioned by the `/v1/` path prefix; a change that an older peer
//! cannot read gets a new prefix.

use serde::{Deserialize, Serialize};

use crate::job::{Event, JobSpec, TaskSpec};

/// Version of both APIs, reported by `GET /v1/version`.
pub const API_VERSION: u32 = 1;

/// One failed object as a line of an errors file and of `ossimportctl
/// errors`: `code<TAB>path<TAB>reason`, the path and the reason with
/// control characters escaped ([`crate::net::printable`]).
pub fn failure_line(code: &str, path: &str, reason: &str) -> String {
    format!(
        "{code}\t{}\t{}",
        crate::net::printable(path),
        crate::net::printable(reason)
    )
}

/// Every error answer: a stable code for scripts and a sentence for people.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// The codes of error answers on the control socket, the agent port and
/// the status port, on the wire in upper case (`"NOT_FOUND"`). Each has
/// one HTTP status ([`ErrorCode::http_status`]); a code this version does
/// not know reads as [`ErrorCode::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request or the job it carries is wrong (400).
    Invalid,
    /// The caller's key is not enrolled, or not the daemon's (401).
    Unauthorized,
    /// The caller may not do this (403).
    Forbidden,
    /// No such job, agent or endpoint (404).
    NotFound,
    /// The status port is read-only (405).
    MethodNotAllowed,
    /// The request took too long to arrive (408).
    Timeout,
    /// The job is not in a state that allows it, or the name is taken (409).
    Conflict,
    /// The request body is too large (413).
    TooLarge,
    /// A Host header that is not this machine's (421).
    Misdirected,
    /// An agent cannot run a job: a path outside its allowed roots (422).
    PathNotAllowed,
    /// An agent has no credentials for a job's keys (422).
    NoCredentials,
    /// A plain-HTTP peer where TLS is required (426).
    TlsRequired,
    /// The job store could not be read (500).
    Store,
    /// Anything else on the answering side (500).
    Internal,
    /// A code this version does not know, or an answer without one.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status an answer with this code has.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Invalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Timeout => 408,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::Misdirected => 421,
            ErrorCode::PathNotAllowed | ErrorCode::NoCredentials => 422,
            ErrorCode::TlsRequired => 426,
            ErrorCode::Store | ErrorCode::Internal | ErrorCode::Unknown => 500,
        }
    }
}

// ---- agent API -------------------------------------------------------------

/// Agent paths.
pub mod agent_path {
    /// Daemon -> agent: run these tasks.
    pub const TASKS: &str = "/v1/tasks";
    /// Agent -> daemon: alive, this is what I run.
    pub const HEARTBEAT: &str = "/v1/agent/heartbeat";
    /// Agent -> daemon: what happened.
    pub const EVENTS: &str = "/v1/agent/events";
    /// Agent -> daemon: shutting down cleanly.
    pub const BYE: &str = "/v1/agent/bye";
}

/// Tasks of one job for one agent. The job's secret fields are empty: agents
/// take credentials from their own secrets file (see ARCHITECTURE.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskBatch {
    pub job: JobSpec,
    pub tasks: Vec<TaskSpec>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BatchAccepted {
    pub accepted: Vec<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Human name of the agent (defaults to its host name).
    pub name: String,
    /// Where the daemon reaches the agent's API, `host:port`.
    pub addr: String,
    /// Tasks the agent runs at once.
    pub capacity: u32,
    /// Tasks it is running, or whose results it has not delivered yet.
    pub running: Vec<i64>,
    /// The agent's fingerprint, which the daemon names as audience.
    pub fingerprint: String,
    /// Source bytes read since the agent started (throughput in `workers`).
    #[serde(default)]
    pub bytes: u64,
    /// The agent's version (`CARGO_PKG_VERSION`), shown by `workers` and
    /// by `deploy`.
    #[serde(default)]
    pub version: String,
    /// Objects being copied now, and their sizes summed.
    #[serde(default)]
    pub objects_in_flight: u64,
    #[serde(default)]
    pub bytes_in_flight: u64,
    /// Throttling answers (HTTP 503, 429) received since the agent started.
    #[serde(default)]
    pub throttled: u64,
    /// The health of each endpoint its executors talk to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointHealth>,
}

/// One endpoint as an executor sees it (`storage::health`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointHealth {
    /// `destination` or `source`.
    pub role: String,
    /// `endpoint/bucket`.
    pub endpoint: String,
    /// Set while it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<EndpointDown>,
    /// Confirmed outages so far, and their seconds (ended ones).
    #[serde(default)]
    pub outages: u64,
    #[serde(default)]
    pub outage_secs: f64,
    /// The request rate the endpoint is held to because it said it was
    /// overloaded (requests per second; 0: none).
    #[serde(default)]
    pub rate_limit: f64,
    /// Signs of overload it gave (HTTP 503, 429, `x-oss-qos-delay-time`).
    #[serde(default)]
    pub throttled: u64,
}

/// A confirmed outage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDown {
    /// Unix seconds of its first sign.
    pub since: i64,
    pub retry_every_secs: u64,
    /// What the last probe got.
    pub why: String,
}

impl EndpointHealth {
    /// `destination http://... unreachable since 10:42:07 UTC (retrying
    /// every 4 s): why`, while it is down.
    pub fn line(&self) -> Option<String> {
        let d = self.down.as_ref()?;
        let s = d.since.max(0) % 86_400;
        Some(format!(
            "{} {} unreachable since {:02}:{:02}:{:02} UTC (retrying every {} s): {}",
            // From an executor's heartbeat: shown as text, never as
            // terminal controls.
            crate::net::printable(&self.role),
            crate::net::printable(&self.endpoint),
            s / 3600,
            s / 60 % 60,
            s % 60,
            d.retry_every_secs.max(1),
            crate::net::printable(&d.why)
        ))
    }

    /// `destination http://... overloaded: held to 48 requests/s (37
    /// throttling answers)`, while a rate is held.
    pub fn throttle_line(&self) -> Option<String> {
        (self.rate_limit > 0.0).then(|| {
            format!(
                "{} {} overloaded: held to {:.0} requests/s ({} throttling answers)",
                crate::net::printable(&self.role),
                crate::net::printable(&self.endpoint),
                self.rate_limit,
                self.throttled
            )
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Tasks the agent should drop: their lease went elsewhere or the job
    /// was paused or cleaned.
    pub cancel: Vec<i64>,
    /// The limits of every running job now (`ossimportctl set`, a bandwidth
    /// schedule): applied to the executors the agent has for them.
    #[serde(default)]
    pub limits: Vec<crate::job::LiveLimits>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventBatch {
    pub events: Vec<Event>,
}

// ---- control API -----------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// Absolute path of the job file: names it in messages, and relative
    /// secret files are looked up next to it. The daemon does not read it.
    pub job_cfg: String,
    /// The job file's bytes, base64, as the caller read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The `sys.properties` next to the job file, base64, when there is one
    /// (used where the daemon has none of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_properties: Option<String>,
}

impl SubmitRequest {
    pub fn new(job_cfg: String, content: &[u8], sys_properties: Option<&[u8]>) -> SubmitRequest {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        SubmitRequest {
            job_cfg,
            content: Some(b64.encode(content)),
            sys_properties: sys_properties.map(|b| b64.encode(b)),
        }
    }

    /// The job file's bytes; `None` from an ossimportctl that sent only the path.
    pub fn content_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        decode(self.content.as_deref(), "content")
    }

    pub fn sys_properties_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        decode(self.sys_properties.as_deref(), "sys_properties")
    }
}

fn decode(field: Option<&str>, name: &str) -> Result<Option<Vec<u8>>, String> {
    use base64::Engine;
    field
        .map(|t| {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|e| format!("{name}: not base64: {e}"))
        })
        .transpose()
}

/// A job's objects and tasks by state, with byte totals: what `stat
/// --json`, `report --json` and `run --json` print, field for field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    pub objects: u64,
    pub bytes: u64,
    pub pending: u64,
    pub verified: u64,
    pub verified_bytes: u64,
    pub skipped: u64,
    pub skipped_bytes: u64,
    pub failed: u64,
    pub tasks: u64,
    pub tasks_pending: u64,
    pub tasks_dispatched: u64,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    /// Request retries spent, over all objects.
    #[serde(default)]
    pub retries: u64,
}

impl JobCounts {
    /// How a job ends once nothing is left to list or hand out; the one
    /// place that decides it, for `run` and the daemon alike. A job
    /// succeeds only when every object found is verified or skipped.
    pub fn outcome(&self) -> JobState {
        if self.failed == 0 && self.pending == 0 && self.verified + self.skipped == self.objects {
            JobState::Succeed
        } else {
            JobState::Failed
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskProgress {
    pub task_id: i64,
    pub agent: Option<String>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
}

/// A job's state: on the wire, in the job store and in `stat --json` as
/// the lower-case word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Listing or copying, or waiting for an executor.
    Running,
    /// Stopped by `pause`; nothing is handed out until `resume`.
    Paused,
    /// Every object found is verified or skipped.
    Succeed,
    /// Finished with failed objects, or its listing failed.
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Running,
        JobState::Paused,
        JobState::Succeed,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Succeed => "succeed",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// Succeed or Failed: nothing more happens unless it is retried.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Succeed | JobState::Failed)
    }

    /// The original's `JobState:` word (`stat --legacy`), which knew no
    /// pause.
    pub fn legacy(self) -> &'static str {
        match self {
            JobState::Succeed => "Succeed",
            JobState::Failed => "Failed",
            JobState::Running | JobState::Paused => "Running",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub state: JobState,
    pub scan_done: bool,
    pub counts: JobCounts,
    pub running_tasks: Vec<TaskProgress>,
    /// Set for an incremental job (`isIncremental=true`).
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// The limits in force and how they were changed (the daemon's answer;
    /// `None` where the job's plan is not loaded).
    #[serde(default)]
    pub limits: Option<JobLimits>,
    /// Who submitted it: uid and user name (`None`: submitted before
    /// owners were recorded; administrators only).
    #[serde(default)]
    pub owner: Option<JobOwner>,
    /// State-changing control calls on it, oldest first (to its owner and
    /// administrators; empty for other operators).
    #[serde(default)]
    pub control: Vec<ControlCall>,
    /// The job's endpoints that executors see down now, one line each
    /// (`destination ... unreachable since ... (retrying every N s), seen by
    /// agent1: why`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<String>,
    /// The job's endpoints that told executors they were overloaded, with
    /// the rate each is held to, one line each (`destination ...
    /// overloaded: held to 48 requests/s (37 throttling answers) (seen by
    /// agent1)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttled: Vec<String>,
    /// Why its listing failed, when it did (a job that is not incremental;
    /// an incremental job's passes say it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing_error: Option<String>,
}

impl JobStatus {
    /// Whether the job has ended: its state is final and no task is still
    /// leased, so every result is in (what `submit --wait` waits for).
    pub fn has_ended(&self) -> bool {
        self.state.is_finished() && self.counts.tasks_dispatched == 0
    }
}

/// Who submitted a job.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobOwner {
    pub uid: u32,
    pub user: String,
}

/// One state-changing control call, as the daemon keeps it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControlCall {
    /// Unix seconds.
    pub at: i64,
    pub uid: u32,
    pub user: String,
    /// `submit`, `clean`, `set`, `pause`, `resume`, `retry`, `enrol`,
    /// `revoke`, `stop`.
    pub verb: String,
    /// The job it was about, if any.
    #[serde(default)]
    pub job: Option<String>,
    /// What was asked (`set`'s settings, the agent's name).
    #[serde(default)]
    pub detail: String,
}

/// `ossimportctl set JOB KEY=VALUE...`: limits of a running job to change.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SetLimits {
    /// `KEY=VALUE` in the original's key names (`workerMaxThroughput`,
    /// `workerTaskThreadNum`, `maxRequestsPerSecond`,
    /// `workerMaxThroughputSchedule`).
    pub settings: Vec<String>,
}

/// A job's limits now, per executor, and every change made to them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLimits {
    /// Bytes per second in force now (the schedule's, when there is one),
    /// 0 for none.
    pub bytes_per_second: u64,
    /// `workerMaxThroughput` as set, bytes per second (what applies when
    /// there is no schedule).
    pub flat_bytes_per_second: u64,
    pub requests_per_second: u32,
    pub objects_in_flight: u32,
    /// `workerMaxThroughputSchedule`, as given.
    pub schedule: Option<String>,
    /// Changes made with `set`, oldest first.
    pub changes: Vec<LimitChange>,
}

/// One `set` of one key: the audit trail kept with the job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitChange {
    /// Unix seconds.
    pub at: i64,
    /// Who asked (`uid 1000`).
    pub by: String,
    pub key: String,
    pub old: String,
    pub new: String,
}

/// An incremental job's schedule and its passes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incremental {
    /// `incrementalModeInterval`, seconds.
    pub interval_secs: u64,
    /// The pass it is in (or has just ended).
    pub pass: u32,
    /// When the next pass starts (unix seconds); `None` while one runs.
    pub next_pass_at: Option<i64>,
    /// Every pass, first to last.
    pub passes: Vec<PassRecord>,
    /// `incrementalMode=watch`: the watch of the source tree (`None`:
    /// rescan passes, or not watched in this process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchStatus>,
}

/// What `ossimportctl sync JOB` is answered: what to wait for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncTicket {
    /// A watched job: done once `WatchStatus::done_seq` reaches this.
    pub watch_seq: Option<u64>,
    /// A rescan job: done once this pass (the first to start after the
    /// call) has ended.
    pub pass: Option<u32>,
    /// Milliseconds since the oldest change not yet copied, at the call.
    pub lag_ms: Option<u64>,
}

/// The watch of an `incrementalMode=watch` job's source tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchStatus {
    /// Changed paths not yet listed (settling, or waiting for the pass
    /// running now to end).
    pub pending: u64,
    /// Changed paths queued, and handed to passes, since the watch started.
    pub queued: u64,
    pub applied: u64,
    /// Milliseconds since the oldest change not yet copied (pending, or in
    /// the pass running now); `None`: none.
    pub lag_ms: Option<u64>,
    /// Every change queued up to this number (of `queued`) has been listed
    /// and the pass that listed it has ended: what `sync --wait` waits for.
    pub done_seq: u64,
    /// When the last reconcile pass (a whole listing) started, unix seconds.
    pub last_reconcile: Option<i64>,
    /// Why the next pass lists everything, if it will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_due: Option<String>,
    /// Why events alone are not trusted (no watch could be set up, a
    /// network file system): changes are also found by reconcile passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// What delivers the events: inotify (a watch per directory) or
    /// fanotify (one mark on the file system).
    #[serde(default)]
    pub backend: String,
}

/// One listing pass of a job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassRecord {
    pub number: u32,
    /// Unix seconds.
    pub started_at: i64,
    /// When its last object became final; `None` while it runs.
    pub ended_at: Option<i64>,
    /// Objects the listing found (new, changed, retried and unchanged).
    pub found: u64,
    pub new: u64,
    pub changed: u64,
    /// Found unchanged after failing in an earlier pass: copied again.
    pub retried: u64,
    /// Recorded by an earlier pass and gone from the source now (never
    /// deleted at the destination).
    pub deleted: u64,
    /// Objects of this pass verified, and failed, when it ended.
    pub copied: u64,
    pub failed: u64,
    /// Why its listing failed, if it did.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    pub fingerprint: String,
    pub addr: Option<String>,
    /// `up`, `down` (no heartbeat lately), `left` (said goodbye), `never`
    /// (enrolled, never seen), `absent` (a host of the `workers` file no
    /// agent has checked in from).
    pub state: String,
    pub capacity: u32,
    /// Tasks leased to it now.
    pub running: u64,
    pub last_heartbeat_secs_ago: Option<u64>,
    /// Problem with the last batch sent to it, if any.
    pub error: Option<String>,
    /// Source bytes per second between its last two heartbeats.
    #[serde(default)]
    pub bytes_per_sec: u64,
    /// The version its last heartbeat gave.
    #[serde(default)]
    pub version: Option<String>,
}

/// `ossimportctl deploy` -> daemon: trust this agent key from now on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The agent's public key, one OpenSSH line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
    /// The name the agent is enrolled under (the host of the `workers` line);
    /// it becomes the key's comment in `agent_keys`.
    pub name: String,
    /// Replace the key of an agent already enrolled under `name` (a host
    /// reinstalled; `deploy` asks so). Without it, a name in use with
    /// another key is refused, never silently revoked.
    #[serde(default)]
    pub replace: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enrolled {
    /// SHA256 fingerprint of the enrolled key.
    pub fingerprint: String,
    /// The daemon's public key, for the agent's `--daemon-key` file.
    pub daemon_key: String,
    /// False when the key was enrolled already under this name.
    pub changed: bool,
}

/// What revoking an agent did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Revoked {
    /// Fingerprints of the keys no longer trusted.
    pub fingerprints: Vec<String>,
    /// Tasks that were leased to them and went back to pending.
    pub tasks: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerList {
    pub workers: Vec<WorkerStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailedEntry {
    pub path: String,
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorList {
    pub job: String,
    pub failed: Vec<FailedEntry>,
    /// Where the next page starts (`?after=`), when there may be more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The most rows one page of `errors` or `report` holds.
pub const MAX_PAGE: usize = 10_000;

/// Which page of a list of failures: at most `limit` entries whose path
/// sorts after `after`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: Option<usize>,
    pub after: Option<String>,
}

impl Page {
    /// The query string (without `?`); empty for the first default page.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(l) = self.limit {
            q.append_pair("limit", &l.to_string());
        }
        if let Some(a) = &self.after {
            q.append_pair("after", a);
        }
        q.finish()
    }

    /// Reads `limit` and `after` from a query string; anything else, or a
    /// limit that is not a number from 1 to [`MAX_PAGE`], is refused.
    pub fn parse(query: Option<&str>) -> Result<Page, String> {
        let mut page = Page::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*k {
                "limit" => match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_PAGE).contains(&n) => page.limit = Some(n),
                    _ => {
                        return Err(format!(
                            "limit must be a number from 1 to {MAX_PAGE}, not {v:?}"
                        ));
                    }
                },
                "after" => page.after = Some(v.into_owned()),
                other => return Err(format!("unknown query parameter {other:?}")),
            }
        }
        Ok(page)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyMethod {
    pub verified_by: String,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub job: String,
    pub state: JobState,
    pub counts: JobCounts,
    pub methods: Vec<VerifyMethod>,
    /// The first page of failures (see `next` and the `errors` endpoint).
    pub failed: Vec<FailedEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Every listing pass (one, unless the job is incremental).
    #[serde(default)]
    pub passes: Vec<PassRecord>,
    /// The first page of objects gone from the source since a pass
    /// recorded them (kept at the destination), in path order.
    #[serde(default)]
    pub deleted: Vec<DeletedObject>,
    /// State-changing control calls on the job, oldest first.
    #[serde(default)]
    pub control: Vec<ControlCall>,
}

/// One object of a verification manifest: what was copied from where, what
/// the destination holds and what proved it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRow {
    /// The object's id in the job store (the page cursor).
    pub id: i64,
    /// The destination key (or path below `destDir`).
    pub key: String,
    /// Where it came from: a path, a bucket key, a URL.
    pub source: String,
    pub size: u64,
    /// Unix seconds, as listed.
    pub source_mtime: i64,
    pub md5: Option<String>,
    pub crc64: Option<String>,
    pub dest_etag: Option<String>,
    /// What was compared (`size+md5`, `size+etag+crc64`, `readback`, ...).
    pub verified_by: Option<String>,
    /// Unix seconds of the last result.
    pub time: Option<i64>,
    /// `verified`, `skipped`, `failed` or `pending`.
    pub outcome: String,
    pub error_code: Option<String>,
    pub error: Option<String>,
    /// SHA-256 of the canonical metadata written with the object (for an
    /// audit, the source's): see `storage::meta::ObjectHeaders::digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// A page of a job's manifest, in object-id order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ManifestPage {
    pub rows: Vec<ManifestRow>,
    /// The `after` of the next page; `None` at the end.
    pub next: Option<String>,
}

/// An object a later pass no longer found at the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedObject {
    #[serde(rename = "path")]
    pub rel_path: String,
    pub size: u64,
    /// The pass that found it gone.
    pub pass: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Done {
    pub message: String,
    #[serde(default)]
    pub count: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub api: u32,
    /// The source commit the daemon was built from (older daemons: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The caller's role on this daemon: `administrator` or `operator`
    /// (older daemons: none), so a verb that needs the first can say so
    /// before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Percent-encodes a job name for use as one path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode_segment`]; `None` for malformed input.
pub fn decode_segment(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::{EndpointDown, EndpointHealth, JobCounts, JobState, Page};

    /// What an executor says of an endpoint is shown as text: control
    /// characters in any of its fields never reach a terminal.
    #[test]
    fn an_outage_line_shows_no_terminal_controls() {
        let h = EndpointHealth {
            role: "destination\u{1b}[2J".into(),
            endpoint: "http://x\n/b".into(),
            down: Some(EndpointDown {
                since: 3_600 + 61,
                retry_every_secs: 4,
                why: "refused\u{7}".into(),
            }),
            ..Default::default()
        };
        let line = h.line().unwrap();
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.starts_with("destination\\u{1b}[2J http://x\\n/b unreachable since 01:01:01 UTC"),
            "{line}"
        );
    }

    #[test]
    fn a_job_succeeds_only_when_every_object_is_verified_or_skipped() {
        let c = |objects, verified, skipped, failed, pending| JobCounts {
            objects,
            verified,
            skipped,
            failed,
            pending,
            ..JobCounts::default()
        };
        let cases = [
            (c(0, 0, 0, 0, 0), JobState::Succeed),
            (c(3, 2, 1, 0, 0), JobState::Succeed),
            (c(3, 2, 0, 1, 0), JobState::Failed),
            (c(3, 2, 0, 0, 1), JobState::Failed),
            // Counted objects that are in no final state are not success.
            (c(3, 2, 0, 0, 0), JobState::Failed),
        ];
        for (counts, want) in cases {
            assert_eq!(counts.outcome(), want, "{counts:?}");
        }
    }

    #[test]
    fn job_states_have_one_spelling() {
        for st in JobState::ALL {
            assert_eq!(JobState::parse(st.as_str()), Some(st));
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{st}\""));
            assert_eq!(serde_json::from_str::<JobState>(&json).unwrap(), st);
        }
        assert_eq!(JobState::parse("Succeed"), None);
    }

    #[test]
    fn pages_round_trip_through_the_query() {
        for page in [
            Page::default(),
            Page {
                limit: Some(5),
                after: None,
            },
            Page {
                limit: Some(10_000),
                after: Some("a b/&c=d%/\u{e9}\n".into()),
            },
        ] {
            let q = page.to_query();
            assert_eq!(Page::parse(Some(&q)), Ok(page), "{q}");
        }
        assert!(Page::parse(Some("limit=0")).is_err());
        assert!(Page::parse(Some("limit=10001")).is_err());
        assert!(Page::parse(Some("limit=x")).is_err());
        assert!(Page::parse(Some("offset=3")).is_err());
        assert_eq!(Page::parse(None), Ok(Page::default()));
    }

    #[test]
    fn segments_round_trip() {
        for s in ["local_test", "a b/c%d", "名前"] {
            assert_eq!(
                super::decode_segment(&super::encode_segment(s)).as_deref(),
                Some(s)
            );
        }
    }
}
