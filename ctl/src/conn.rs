//! The connection to the daemon's control socket as every verb uses it:
//! typed calls through `proto::control::Client`, and errors mapped once to
//! the exit codes and one-line messages of [`crate::exit`].

use std::path::PathBuf;

use hyper::StatusCode;
use proto::api::Page;
use proto::client::ClientError;
use proto::control::{Client, ControlError, Endpoint};
use serde::de::DeserializeOwned;

use crate::cli::DaemonArgs;
use crate::exit;

/// An error with the exit code it maps to.
pub(crate) struct Fail(pub(crate) u8, pub(crate) String);

type Result<T> = std::result::Result<T, Fail>;

/// Where the daemon's socket is: `--socket`, else `workingDir` of
/// `--sys`, else `./ossimportd.sock` (as `ossimportd` run from here).
pub(crate) fn socket_path(d: &DaemonArgs) -> PathBuf {
    if let Some(s) = &d.socket {
        return s.clone();
    }
    let work = d
        .sys
        .as_deref()
        .and_then(|p| daemon::config::sys::SysConfig::load(p).ok())
        .map(|s| s.working_dir)
        .unwrap_or_else(|| PathBuf::from("."));
    work.join(daemon::state::SOCKET_FILE)
}

pub(crate) struct Conn {
    pub(crate) client: Client,
}

impl Conn {
    pub(crate) fn new(d: &DaemonArgs) -> Conn {
        Conn {
            client: Client::new(socket_path(d)),
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
                    "ossimportd is not running (nothing answers on {s}); start it with `ossimportctl start` (or `systemctl start ossimportd`), or point --socket/--sys at the right one"
                ),
            ),
            other => Fail(exit::DAEMON_UNREACHABLE, other.to_string()),
        }
    }
}
