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
