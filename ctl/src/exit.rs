//! Exit codes of `ossimportctl`, documented in docs/operating.md and the man page.

/// Every object verified (or skipped as already present).
pub const OK: u8 = 0;
/// The job ended with failed objects; `run` again retries them. Also:
/// `deploy` could not bring up every host.
pub const JOB_FAILED: u8 = 1;
/// Bad command line or configuration; nothing was copied.
pub const USAGE: u8 = 2;
/// The daemon is not running or its socket is unreachable.
pub const DAEMON_UNREACHABLE: u8 = 3;
/// A runtime error stopped the job (job store, source root, destination).
pub const RUNTIME: u8 = 4;
/// The daemon refused us: no permission on its socket.
pub const NO_PERMISSION: u8 = 6;
/// Interrupted (Ctrl-C, SIGTERM); running the same command resumes.
pub const INTERRUPTED: u8 = 130;

use proto::api::JobState;

/// The exit code of `run` and `report` for a job in `state`: 0 only for a
/// job that succeeded. The state itself is decided in one place,
/// [`proto::api::JobCounts::outcome`] (or a failed listing), when the job
/// ends; nothing here counts objects again.
pub fn of_finished(state: JobState) -> u8 {
    if state == JobState::Succeed {
        OK
    } else {
        JOB_FAILED
    }
}

/// The exit code of `stat JOB`: 1 for a job that failed, 0 while it runs,
/// is paused or succeeded.
pub fn of_state(state: JobState) -> u8 {
    if state == JobState::Failed {
        JOB_FAILED
    } else {
        OK
    }
}
