//! The connection to the daemon's control socket as every verb uses it:
//! typed calls through `proto::control::Client`, and errors mapped once to
//! the exit codes and one-line messages of [`crate::exit`].

use std::path::{Path, PathBuf};

use hyper::StatusCode;
use proto::api::Page;
use proto::client::ClientError;
use proto::control::{Client, ControlError, Endpoint};
use serde::de::DeserializeOwned;

use crate::cli::DaemonArgs;
use crate::exit;

/// An error with the exit code it maps to.
pub(crate) struct Fail(pub(crate) exit::Code, pub(crate) String);

type Result<T> = std::result::Result<T, Fail>;

/// The packaged `sys.properties` (the .deb and .rpm install it; its
/// `workingDir` is the packaged daemon's `/var/lib/ossimport`).
pub(crate) const PACKAGED_SYS: &str = "/etc/ossimport/sys.properties";

/// Finds the daemon for a verb, the same way for every verb, and records
/// the answer in `d` (absolute paths): `--socket`; else the `workingDir` of
/// `--sys` (or `OSSIMPORT_SYS_PROPERTIES`); else of the `sys.properties`
/// next to the job file (`conf/job.cfg` when the verb names none, so
/// `conf/sys.properties` below the current directory, the original's
/// layout); else of the packaged one; else the current directory, where
/// `ossimportd` run without settings keeps its socket. `OSSIMPORT_WORK_DIR`
/// (the daemon's override of `workingDir`) wins over `workingDir`. With
/// `--socket` only an explicit `--sys` is taken.
pub(crate) fn locate(d: &mut DaemonArgs, job_cfg: Option<&Path>) -> Result<()> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let env_work = std::env::var_os("OSSIMPORT_WORK_DIR")
        .filter(|w| !w.is_empty())
        .map(|w| abs(Path::new(&w)));
    let job_sys = job_cfg
        .unwrap_or(Path::new("conf/job.cfg"))
        .parent()
        .map(|dir| dir.join("sys.properties"));
    let (sys, how) = match (&d.sys, &job_sys) {
        (Some(s), _) => (Some(s.clone()), format!("--sys {}", s.display())),
        // An explicit socket is the whole answer: no settings are guessed.
        (None, _) if d.socket.is_some() => (None, String::new()),
        (None, Some(j)) if j.is_file() => (
            Some(j.clone()),
            format!("{} next to the job file", j.display()),
        ),
        (None, _) if Path::new(PACKAGED_SYS).is_file() => (
            Some(PathBuf::from(PACKAGED_SYS)),
            format!("the packaged {PACKAGED_SYS}"),
        ),
        (None, _) => (
            None,
            format!(
                "no sys.properties: none given (--sys), none at {}, none at {PACKAGED_SYS}",
                job_sys
                    .as_deref()
                    .unwrap_or(Path::new("conf/sys.properties"))
                    .display()
            ),
        ),
    };
    let sys = sys.map(|s| abs(&s));
    let sys_work = match &sys {
        Some(p) => {
            let s = job::config::sys::SysConfig::load(p)
                .map_err(|e| Fail(exit::USAGE, e.to_string()))?;
            // As `ossimportd` resolves it: from the current directory.
            Some(abs(&s.working_dir))
        }
        None => None,
    };
    let (socket, work, how) = match &d.socket {
        Some(s) => {
            let s = abs(s);
            let work = env_work
                .clone()
                .or_else(|| sys_work.clone())
                .or_else(|| s.parent().map(Path::to_path_buf));
            (s, work, "--socket".to_string())
        }
        None => {
            let (work, how) = match (env_work, sys_work) {
                (Some(w), _) => (w, "OSSIMPORT_WORK_DIR".to_string()),
                (None, Some(w)) => (w, format!("the workingDir of {how}")),
                (None, None) => (
                    abs(Path::new(".")),
                    format!("the current directory ({how})"),
                ),
            };
            (work.join(proto::control::SOCKET_FILE), Some(work), how)
        }
    };
    d.socket = Some(socket);
    d.sys = sys;
    d.work_dir = work;
    d.found_by = how;
    Ok(())
}

/// Where the daemon's socket is: found by [`locate`], else `--socket`, else
/// `./ossimportd.sock`.
pub(crate) fn socket_path(d: &DaemonArgs) -> PathBuf {
    d.socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(proto::control::SOCKET_FILE))
}

pub(crate) struct Conn {
    pub(crate) client: Client,
    /// How [`locate`] found the socket, for the message when nothing answers.
    found_by: String,
}

impl Conn {
    pub(crate) fn new(d: &DaemonArgs) -> Conn {
        Conn {
            client: Client::new(socket_path(d)),
            found_by: d.found_by.clone(),
        }
    }

    pub(crate) async fn call<R: DeserializeOwned>(
        &self,
        ep: &Endpoint,
        page: Option<&Page>,
        body: Option<Vec<u8>>,
    ) -> Result<(R, serde_json::Value)> {
        self.client.call(ep, page, body).await.map_err(|e| match e {
            ControlError::Unreachable(e) => self.unreachable(e),
            ControlError::Refused {
                status, message, ..
            } => {
                let code = match status {
                    StatusCode::FORBIDDEN => exit::NO_PERMISSION,
                    StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::CONFLICT => {
                        exit::USAGE
                    }
                    _ => exit::RUNTIME,
                };
                Fail(code, message)
            }
            e @ ControlError::BadAnswer(_) => Fail(exit::RUNTIME, e.to_string()),
        })
    }

    fn unreachable(&self, e: ClientError) -> Fail {
        let s = self.client.socket.display();
        match e {
            ClientError::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Fail(
                    exit::NO_PERMISSION,
                    format!(
                        "permission denied on {s}: run as the daemon's user, or as a member of the group given to `ossimportd --socket-group`"
                    ),
                )
            }
            ClientError::Connect { .. } => Fail(
                exit::DAEMON_UNREACHABLE,
                format!(
                    "ossimportd is not running (nothing answers on {s}{by}); start it with `ossimportctl start` (or `systemctl start ossimportd`), or point --socket/--sys at the right one",
                    by = if self.found_by.is_empty() {
                        String::new()
                    } else {
                        format!(", found from {}", self.found_by)
                    }
                ),
            ),
            other => Fail(exit::DAEMON_UNREACHABLE, other.to_string()),
        }
    }
}
