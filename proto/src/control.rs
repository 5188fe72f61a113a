//! The control API (`ossimportctl` -> `ossimportd`, on the Unix socket) as
//! types: every request is an [`Endpoint`] with its method and path, and
//! [`Endpoint::parse`] is the inverse the daemon routes with, so the two
//! sides cannot drift. [`Client`] makes typed calls over the socket; the
//! presentation (words, exit codes) stays with the caller.

use std::path::PathBuf;
use std::time::Duration;

/// Name of the daemon's job store inside its work directory (and of
/// `ossimportctl run`'s).
pub const STORE_FILE: &str = "ossimport.db";
/// Name of the control socket inside the daemon's work directory.
pub const SOCKET_FILE: &str = "ossimportd.sock";

use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::{ErrorBody, Page, decode_segment, encode_segment};
use crate::client::{self, ClientError, Target};

/// How long [`Endpoint::WaitEnd`] holds its answer while the job runs: well
/// under the client's timeout, so a wait is a series of calls.
pub const WAIT_END_BOUND: Duration = Duration::from_secs(30);

/// Every control request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Version,
    Submit,
    ListJobs,
    Job(String),
    /// The job's status once it has ended (finished, no task still leased),
    /// or after at most [`WAIT_END_BOUND`], whichever is first; at once for
    /// an incremental job, which never ends (`submit --wait`).
    WaitEnd(String),
    Clean(String),
    Retry(String),
    RetryAll,
    Pause(String),
    Resume(String),
    /// Takes a [`Page`] as its query.
    Errors(String),
    /// Takes a [`Page`] as its query.
    Report(String),
    /// The verification manifest a page at a time: takes a [`Page`] whose
    /// `after` is the last object id seen; answers a
    /// [`crate::api::ManifestPage`].
    Manifest(String),
    /// Takes a [`crate::api::SetLimits`]: change a running job's limits;
    /// answers a [`crate::api::JobLimits`].
    SetLimits(String),
    Workers,
    /// Takes an [`crate::api::EnrolRequest`]: trust an agent key now.
    Enrol,
    /// Revoke the agent of this name (or fingerprint) at once.
    Revoke(String),
    Shutdown,
    /// An incremental job's pass now (a cut-over): answers a
    /// [`crate::api::SyncTicket`] to wait on.
    Sync(String),
}

impl Endpoint {
    pub fn method(&self) -> Method {
        match self {
            Endpoint::Version
            | Endpoint::ListJobs
            | Endpoint::Job(_)
            | Endpoint::WaitEnd(_)
            | Endpoint::Errors(_)
            | Endpoint::Report(_)
            | Endpoint::Manifest(_)
            | Endpoint::Workers => Method::GET,
            Endpoint::Clean(_) | Endpoint::Revoke(_) => Method::DELETE,
            Endpoint::Submit
            | Endpoint::Retry(_)
            | Endpoint::RetryAll
            | Endpoint::Pause(_)
            | Endpoint::Resume(_)
            | Endpoint::SetLimits(_)
            | Endpoint::Enrol
            | Endpoint::Sync(_)
            | Endpoint::Shutdown => Method::POST,
        }
    }

    /// The path, job names percent-encoded as one segment.
    pub fn path(&self) -> String {
        let job = |n: &str, rest: &str| format!("/v1/jobs/{}{rest}", encode_segment(n));
        match self {
            Endpoint::Version => "/v1/version".into(),
            Endpoint::Submit | Endpoint::ListJobs => "/v1/jobs".into(),
            Endpoint::Job(n) | Endpoint::Clean(n) => job(n, ""),
            Endpoint::WaitEnd(n) => job(n, "/end"),
            Endpoint::Retry(n) => job(n, "/retry"),
            Endpoint::Pause(n) => job(n, "/pause"),
            Endpoint::Resume(n) => job(n, "/resume"),
            Endpoint::Errors(n) => job(n, "/errors"),
            Endpoint::Report(n) => job(n, "/report"),
            Endpoint::Manifest(n) => job(n, "/manifest"),
            Endpoint::SetLimits(n) => job(n, "/limits"),
            Endpoint::Sync(n) => job(n, "/sync"),
            Endpoint::RetryAll => "/v1/retry".into(),
            Endpoint::Workers => "/v1/workers".into(),
            Endpoint::Enrol => "/v1/agents".into(),
            Endpoint::Revoke(n) => format!("/v1/agents/{}", encode_segment(n)),
            Endpoint::Shutdown => "/v1/shutdown".into(),
        }
    }

    /// The endpoint a request is for (its path without the query).
    pub fn parse(method: &Method, path: &str) -> Option<Endpoint> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let name = |s: &str| decode_segment(s);
        Some(match (method, segs.as_slice()) {
            (&Method::GET, ["v1", "version"]) => Endpoint::Version,
            (&Method::POST, ["v1", "jobs"]) => Endpoint::Submit,
            (&Method::GET, ["v1", "jobs"]) => Endpoint::ListJobs,
            (&Method::GET, ["v1", "jobs", n]) => Endpoint::Job(name(n)?),
            (&Method::DELETE, ["v1", "jobs", n]) => Endpoint::Clean(name(n)?),
            (&Method::GET, ["v1", "jobs", n, "end"]) => Endpoint::WaitEnd(name(n)?),
            (&Method::POST, ["v1", "jobs", n, "retry"]) => Endpoint::Retry(name(n)?),
            (&Method::POST, ["v1", "jobs", n, "pause"]) => Endpoint::Pause(name(n)?),
            (&Method::POST, ["v1", "jobs", n, "resume"]) => Endpoint::Resume(name(n)?),
            (&Method::GET, ["v1", "jobs", n, "errors"]) => Endpoint::Errors(name(n)?),
            (&Method::GET, ["v1", "jobs", n, "report"]) => Endpoint::Report(name(n)?),
            (&Method::GET, ["v1", "jobs", n, "manifest"]) => Endpoint::Manifest(name(n)?),
            (&Method::POST, ["v1", "jobs", n, "limits"]) => Endpoint::SetLimits(name(n)?),
            (&Method::POST, ["v1", "jobs", n, "sync"]) => Endpoint::Sync(name(n)?),
            (&Method::POST, ["v1", "retry"]) => Endpoint::RetryAll,
            (&Method::GET, ["v1", "workers"]) => Endpoint::Workers,
            (&Method::POST, ["v1", "agents"]) => Endpoint::Enrol,
            (&Method::DELETE, ["v1", "agents", n]) => Endpoint::Revoke(name(n)?),
            (&Method::POST, ["v1", "shutdown"]) => Endpoint::Shutdown,
            _ => return None,
        })
    }
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No answer: nothing listens, no permission, timed out, cut.
    #[error(transparent)]
    Unreachable(#[from] ClientError),
    /// The daemon answered with an error.
    #[error("{message}")]
    Refused {
        status: StatusCode,
        code: crate::api::ErrorCode,
        message: String,
    },
    /// The answer was not what this version expects.
    #[error("bad answer from the daemon: {0}")]
    BadAnswer(String),
}

/// Calls to a daemon's control socket: an [`Endpoint`] in, the answer as
/// the caller's type (`proto::api`'s `JobStatus`, `WorkerList`, ...) out.
#[derive(Clone, Debug)]
pub struct Client {
    pub socket: PathBuf,
    pub timeout: Duration,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            timeout: Duration::from_secs(120),
        }
    }

    /// One call: the typed answer and the same answer as JSON (for
    /// `--json` output that keeps fields this version does not know).
    pub async fn call<R: DeserializeOwned>(
        &self,
        ep: &Endpoint,
        page: Option<&Page>,
        body: Option<Vec<u8>>,
    ) -> Result<(R, serde_json::Value), ControlError> {
        let mut path = ep.path();
        if let Some(p) = page {
            let q = p.to_query();
            if !q.is_empty() {
                path = format!("{path}?{q}");
            }
        }
        let (status, bytes) = client::send(
            &Target::Unix(self.socket.clone()),
            ep.method(),
            &path,
            &[],
            body.unwrap_or_default(),
            self.timeout,
        )
        .await?;
        if status != StatusCode::OK {
            let e: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
                code: crate::api::ErrorCode::Unknown,
                message: format!("daemon answered {status}"),
            });
            return Err(ControlError::Refused {
                status,
                code: e.code,
                message: e.message,
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ControlError::BadAnswer(e.to_string()))?;
        let typed = serde_json::from_value(value.clone())
            .map_err(|e| ControlError::BadAnswer(e.to_string()))?;
        Ok((typed, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_round_trips_through_its_method_and_path() {
        let names = ["job1", "a b/c", "名字", "..", "%2F", "x?y#z"];
        let mut all = vec![
            Endpoint::Version,
            Endpoint::Submit,
            Endpoint::ListJobs,
            Endpoint::RetryAll,
            Endpoint::Workers,
            Endpoint::Enrol,
            Endpoint::Shutdown,
        ];
        for n in names {
            let n = n.to_string();
            all.extend([
                Endpoint::Job(n.clone()),
                Endpoint::WaitEnd(n.clone()),
                Endpoint::Clean(n.clone()),
                Endpoint::Retry(n.clone()),
                Endpoint::Pause(n.clone()),
                Endpoint::Resume(n.clone()),
                Endpoint::Errors(n.clone()),
                Endpoint::Revoke(n.clone()),
                Endpoint::Manifest(n.clone()),
                Endpoint::SetLimits(n.clone()),
                Endpoint::Sync(n.clone()),
                Endpoint::Report(n),
            ]);
        }
        for ep in all {
            let (m, p) = (ep.method(), ep.path());
            assert_eq!(Endpoint::parse(&m, &p).as_ref(), Some(&ep), "{m} {p}");
            assert_eq!(p.matches('/').count(), p.split('/').count() - 1);
        }
        assert_eq!(
            Endpoint::parse(&Method::GET, "/v1/jobs/a%20b"),
            Some(Endpoint::Job("a b".into()))
        );
        assert_eq!(Endpoint::parse(&Method::GET, "/v1/jobs/x/delete"), None);
        assert_eq!(Endpoint::parse(&Method::PUT, "/v1/jobs"), None);
        assert_eq!(Endpoint::parse(&Method::GET, "/v1/jobs/a/b"), None);
        assert_eq!(Endpoint::parse(&Method::GET, "/v2/version"), None);
    }
}
