//! A string that must never be printed or logged, and the one rule for
//! files that hold secrets.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Permission bits a file holding a secret (a private key, an agent's
/// secrets file, a job's `*SecretKeyFile`) must not have: readable by
/// other users, or writable by anyone but its owner. Group read stays
/// allowed, so a secret can be shared with the daemon's group
/// (`root:ossimport 0640`) without opening it to everyone.
pub const FORBIDDEN_MODE: u32 = 0o026;

/// Reads a secret file under the one rule ([`FORBIDDEN_MODE`]); the error
/// names the file, its mode and the fix.
pub fn read_private(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & FORBIDDEN_MODE != 0 {
        return Err(format!(
            "{shown} is open to other users (mode {mode:o}); run chmod 600 {shown}"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))
}

/// A credential (secret key, token). `Debug` and `Display` print `***`, so a
/// config or request dumped into a log never leaks it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; call only where it is handed to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// No core dump of this process, and no ptrace by other processes of its
/// user: its memory holds keys and credentials. Every binary calls it
/// first thing.
pub fn no_core_dumps() {
    // SAFETY: prctl and setrlimit with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_files_are_read_only_when_closed_to_other_users() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "s").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, true),
            (0o644, false),
            (0o660, false),
            (0o602, false),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = super::read_private(&f);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(
                    e.contains(&format!("(mode {mode:o}); run chmod 600 ")),
                    "{e}"
                );
            }
        }
    }

    use super::Secret;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }
}
