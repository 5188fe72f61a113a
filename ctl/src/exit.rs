//! Exit codes of `ossimportctl`, documented in docs/operating.md and the man page.

/// What `ossimportctl` exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Every object verified (or skipped as already present).
    Ok = 0,
    /// The job ended with failed objects; `run` again retries them. Also:
    /// `deploy` could not bring up every host.
    JobFailed = 1,
    /// Bad command line or configuration; nothing was copied.
    Usage = 2,
    /// The daemon is not running or its socket is unreachable.
    DaemonUnreachable = 3,
    /// A runtime error stopped the job (job store, source root, destination).
    Runtime = 4,
    /// The daemon refused us: no permission on its socket.
    NoPermission = 6,
    /// Interrupted (Ctrl-C, SIGTERM); running the same command resumes.
    Interrupted = 130,
}

impl From<Code> for std::process::ExitCode {
    fn from(c: Code) -> std::process::ExitCode {
        std::process::ExitCode::from(c as u8)
    }
}

pub const OK: Code = Code::Ok;
pub const JOB_FAILED: Code = Code::JobFailed;
pub const USAGE: Code = Code::Usage;
pub const DAEMON_UNREACHABLE: Code = Code::DaemonUnreachable;
pub const RUNTIME: Code = Code::Runtime;
pub const NO_PERMISSION: Code = Code::NoPermission;
pub const INTERRUPTED: Code = Code::Interrupted;

use proto::api::JobState;

/// The exit code of `run` and `report` for a job in `state`: 0 only for a
/// job that succeeded. The state itself is decided in one place,
/// [`proto::api::JobCounts::outcome`] (or a failed listing), when the job
/// ends; nothing here counts objects again.
pub fn of_finished(state: JobState) -> Code {
    if state == JobState::Succeed {
        OK
    } else {
        JOB_FAILED
    }
}

/// The exit code of `stat JOB`: 1 for a job that failed, 0 while it runs,
/// is paused or succeeded.
pub fn of_state(state: JobState) -> Code {
    if state == JobState::Failed {
        JOB_FAILED
    } else {
        OK
    }
}
