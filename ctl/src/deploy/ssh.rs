//! One SSH connection to a worker, by russh: the host key checked against
//! `known_hosts` before anything is sent, login by key or password, and
//! commands run with their input fed over the channel (which is how files
//! and secrets reach the host: never in a command line).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use tokio::io::AsyncRead;

/// How to log in: the key first (as the original preferred
/// `privateKeyFile`), then the password where the key is refused (as
/// OpenSSH's client does), so one `sys.properties` serves hosts of both kinds.
#[derive(Clone)]
pub struct Login {
    pub key: Option<PathBuf>,
    /// The original's `workerPassword`.
    pub password: Option<proto::Secret>,
}

/// What the connection needs to know.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub login: Login,
    pub known_hosts: PathBuf,
    /// Record the key of a host seen for the first time (`--accept-new-host-keys`).
    pub accept_new: bool,
    pub connect_timeout: Duration,
}

/// Why a host could not be reached or logged into: each is the one line of
/// its row in deploy's table.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error(
        "unknown host key {fingerprint}: refused (check it, then run again with --accept-new-host-keys to record it in {file})"
    )]
    UnknownHostKey { fingerprint: String, file: String },
    #[error(
        "HOST KEY CHANGED: the host now shows {fingerprint}, {file} line {line} holds another key; refused (if the host was reinstalled, remove that line)"
    )]
    HostKeyChanged {
        fingerprint: String,
        file: String,
        line: usize,
    },
    #[error("{0}")]
    KnownHosts(String),
    #[error("login as {user} refused (tried {method})")]
    AuthRefused { user: String, method: String },
    #[error("private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("ssh: {0}")]
    Protocol(String),
}

/// `known_hosts` is appended to by several connections at once.
static KNOWN_HOSTS_LOCK: Mutex<()> = Mutex::new(());

/// What the host-key check saw, for the error after a refused handshake.
#[derive(Default)]
struct Seen {
    refusal: Option<SshError>,
}

struct Checker {
    host: String,
    port: u16,
    file: PathBuf,
    accept_new: bool,
    seen: Arc<Mutex<Seen>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // A host certificate is checked as the key it certifies: we keep
        // no CA, known_hosts is the trust.
        let verdict = check_host_key(
            &self.host,
            self.port,
            &key.public_key(),
            &self.file,
            self.accept_new,
        );
        match verdict {
            Ok(()) => Ok(true),
            Err(e) => {
                self.seen.lock().unwrap_or_else(|p| p.into_inner()).refusal = Some(e);
                Ok(false)
            }
        }
    }
}

/// Appends `host`'s key to `known_hosts` as OpenSSH writes it (`host` on
/// port 22, `[host]:port` on another), one line, no blank lines: the file
/// is created 0600 (its directory 0700), and a last line without its line
/// end gets one first.
fn record_host_key(host: &str, port: u16, key: &PublicKey, file: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let mut key = key.clone();
    key.set_comment("");
    let line = key.to_openssh().map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)?;
    let mut text = String::new();
    if f.metadata()?.len() > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::End(-1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(&format!("{name} {}\n", line.trim_end()));
    f.write_all(text.as_bytes())
}

/// What `known_hosts` says of a host's key.
#[derive(Debug, PartialEq, Eq)]
enum Recorded {
    /// One of the host's recorded keys.
    Known,
    /// The host has recorded keys and this is none of them (whatever its
    /// algorithm): line of the first.
    Other { line: usize },
    /// Listed `@revoked` (line).
    Revoked { line: usize },
    /// Nothing recorded for the host.
    Unknown,
}

/// Looks `key` up for `host:port` in the text of a `known_hosts` file, as
/// OpenSSH does: plain and hashed (`|1|`) host patterns with `*`, `?` and
/// `!` negation, `[host]:port` for another port than 22, `@revoked` lines
/// (refused whatever else the file says), `@cert-authority` lines ignored
/// (we keep no CA). Unlike russh's check, a key of another algorithm than
/// the recorded ones is a changed key, not a new one.
fn look_up(text: &str, host: &str, port: u16, key: &PublicKey) -> Result<Recorded, String> {
    use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let matches = |p: &HostPatterns| match p {
        HostPatterns::Patterns(list) => {
            let mut hit = false;
            for pat in list {
                match pat.strip_prefix('!') {
                    Some(neg) if glob_match(neg, &name) => return false,
                    Some(_) => {}
                    None => hit |= glob_match(pat, &name),
                }
            }
            hit
        }
        HostPatterns::HashedName { salt, hash } => {
            use hmac::{KeyInit, Mac};
            <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(salt)
                .map(|m| m.chain_update(name.as_bytes()).verify_slice(hash).is_ok())
                .unwrap_or(false)
        }
    };
    let same = |k: &PublicKey| k.key_data() == key.key_data();
    let mut known = false;
    let mut other = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let entry: Entry = t.parse().map_err(|e| format!("line {}: {e}", n + 1))?;
        match entry.marker() {
            Some(Marker::Revoked) if same(entry.public_key()) => {
                return Ok(Recorded::Revoked { line: n + 1 });
            }
            Some(_) => {}
            None if matches(entry.host_patterns()) => {
                if same(entry.public_key()) {
                    known = true;
                } else {
                    other.get_or_insert(n + 1);
                }
            }
            None => {}
        }
    }
    Ok(match (known, other) {
        (true, _) => Recorded::Known,
        (false, Some(line)) => Recorded::Other { line },
        (false, None) => Recorded::Unknown,
    })
}

/// `known_hosts` glob: `*` any run, `?` one character, case-insensitive;
/// everything else literal (`[host]:port` included).
fn glob_match(pattern: &str, name: &str) -> bool {
    let mut escaped = String::with_capacity(pattern.len() * 2);
    for c in pattern.chars() {
        if matches!(c, '[' | ']' | '{' | '}' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    globset::GlobBuilder::new(&escaped)
        .literal_separator(false)
        .case_insensitive(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher().is_match(name))
        .unwrap_or(false)
}

/// Accepts a host key that `file` records for this host, records a new one
/// when allowed and the host has none recorded, and refuses a changed or
/// revoked one always.
fn check_host_key(
    host: &str,
    port: u16,
    key: &PublicKey,
    file: &Path,
    accept_new: bool,
) -> Result<(), SshError> {
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let label = file.display().to_string();
    let _guard = KNOWN_HOSTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(SshError::KnownHosts(format!("{label}: {e}"))),
    };
    match look_up(&text, host, port, key)
        .map_err(|e| SshError::KnownHosts(format!("{label}: {e}")))?
    {
        Recorded::Known => Ok(()),
        Recorded::Unknown if accept_new => record_host_key(host, port, key, file).map_err(|e| {
            SshError::KnownHosts(format!("cannot record the host key in {label}: {e}"))
        }),
        Recorded::Unknown => Err(SshError::UnknownHostKey {
            fingerprint,
            file: label,
        }),
        Recorded::Other { line } => Err(SshError::HostKeyChanged {
            fingerprint,
            file: label,
            line,
        }),
        Recorded::Revoked { line } => Err(SshError::KnownHosts(format!(
            "{label}:{line}: the host's key {fingerprint} is marked @revoked; refusing to connect"
        ))),
    }
}

/// An open, logged-in connection.
pub struct Session {
    handle: Handle<Checker>,
}

/// What a remote command did.
pub struct Output {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last line of stderr (or stdout), for a one-line reason.
    pub fn reason(&self) -> String {
        let pick = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        };
        pick(&self.stderr)
            .or_else(|| pick(&self.stdout))
            .unwrap_or_else(|| format!("exit status {}", self.status))
    }
}

impl Session {
    pub async fn connect(t: &Target) -> Result<Session, SshError> {
        let addr = if t.host.contains(':') {
            format!("[{}]:{}", t.host, t.port)
        } else {
            format!("{}:{}", t.host, t.port)
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let checker = Checker {
            host: t.host.clone(),
            port: t.port,
            file: t.known_hosts.clone(),
            accept_new: t.accept_new,
            seen: Arc::clone(&seen),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(120)),
            keepalive_interval: Some(Duration::from_secs(15)),
            ..Default::default()
        });
        let connect = client::connect(config, (t.host.as_str(), t.port), checker);
        let handle = match tokio::time::timeout(t.connect_timeout, connect).await {
            Err(_) => {
                return Err(SshError::Connect {
                    addr,
                    reason: format!("timed out after {} s", t.connect_timeout.as_secs()),
                });
            }
            Ok(Err(e)) => {
                if let Some(r) = seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .refusal
                    .take()
                {
                    return Err(r);
                }
                return Err(SshError::Connect {
                    addr,
                    reason: connect_reason(&e),
                });
            }
            Ok(Ok(h)) => h,
        };
        let mut s = Session { handle };
        s.login(t).await?;
        Ok(s)
    }

    async fn login(&mut self, t: &Target) -> Result<(), SshError> {
        let proto_err = |e: russh::Error| SshError::Protocol(e.to_string());
        let mut tried: Vec<&'static str> = Vec::new();
        if let Some(path) = &t.login.key {
            let key = russh::keys::load_secret_key(path, None).map_err(|e| SshError::Key {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let hash = self
                .handle
                .best_supported_rsa_hash()
                .await
                .map_err(proto_err)?
                .flatten();
            let r = self
                .handle
                .authenticate_publickey(
                    t.user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
                .map_err(proto_err)?;
            if matches!(r, AuthResult::Success) {
                return Ok(());
            }
            tried.push("public key");
        }
        if let Some(pw) = &t.login.password {
            let r = self
                .handle
                .authenticate_password(t.user.clone(), pw.expose().to_string())
                .await
                .map_err(proto_err)?;
            if matches!(r, AuthResult::Success) {
                return Ok(());
            }
            tried.push("password");
        }
        Err(SshError::AuthRefused {
            user: t.user.clone(),
            method: tried.join(", then "),
        })
    }

    /// Runs `command` (a POSIX shell command line: no secret ever goes in
    /// it) with `input` as its standard input, and waits for it to end.
    pub async fn run(
        &self,
        command: &str,
        input: Option<impl AsyncRead + Unpin>,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        let proto_err = |e: russh::Error| SshError::Protocol(e.to_string());
        let work = async {
            let mut ch = self
                .handle
                .channel_open_session()
                .await
                .map_err(proto_err)?;
            ch.exec(true, command).await.map_err(proto_err)?;
            if let Some(input) = input {
                ch.data(input).await.map_err(proto_err)?;
            }
            ch.eof().await.map_err(proto_err)?;
            let mut out = Output {
                status: u32::MAX,
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = exit_status,
                    _ => {}
                }
            }
            Ok(out)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Protocol(format!(
                "remote command did not finish within {} s",
                timeout.as_secs()
            ))),
        }
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// A connection error as one line: the OS's words where there are some.
fn connect_reason(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is sshd running, and is sshPort right?)".into()
            }
            _ => io.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_known_new_and_changed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let key = || {
            let line = proto::auth::Signer::random().public_key_openssh();
            PublicKey::from_openssh(&line).unwrap()
        };
        let (a, b) = (key(), key());
        let e = check_host_key("10.0.0.2", 22, &a, &file, false).unwrap_err();
        assert!(matches!(e, SshError::UnknownHostKey { .. }), "{e}");
        assert!(e.to_string().contains("SHA256:"), "{e}");
        check_host_key("10.0.0.2", 22, &a, &file, true).unwrap();
        check_host_key("10.0.0.2", 22, &a, &file, false).unwrap();
        // Another port is another host for known_hosts.
        assert!(check_host_key("10.0.0.2", 2222, &a, &file, false).is_err());
        for accept in [false, true] {
            let e = check_host_key("10.0.0.2", 22, &b, &file, accept).unwrap_err();
            assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e}");
        }
    }

    /// A host with any recorded key must present one of them, whatever
    /// the algorithm: an RSA key offered for a host pinned with ed25519 is
    /// a changed key, refused even with `--accept-new-host-keys`. A key
    /// listed `@revoked` is refused even where it is also recorded. Hashed
    /// names, wildcards, negations and `[host]:port` are matched as OpenSSH
    /// matches them. Before, the RSA key was recorded as new and `@revoked`
    /// lines were ignored.
    #[test]
    fn a_key_of_another_algorithm_or_revoked_is_refused() {
        const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDb7NJOmHeDnExLlqi8qhR6tu5Wix9/75u/jSRjbGakPXvc62pODtEXO7ISYxgckm0diEl19pGmmLHPH+7tEORhSFN6ZzOAmtxi55jduDirw6zFbujeoGDUfAb9UE9DXjsxDss3IwVlMZv8MG9rGKsMav0sl1B/ae+bqgcXGgZHF6+Nyp0nho11KlhU0pdqnPSycSRzEela/d4L9rBMKz+nI8QJWkRadJ4pgd3dzkm0ivQGCjMFev6piR+Tp6mYP9Gr8WK5z0GsTfiFUTm4QOUIjf29Chf9/cASXS2cnFjP5TmziZ+OEevkwAYZ41sBC61SJyw44mW9KFok1+6cTffH";
        const ED: &str =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvS5tCLnYgyKN1phgJj9e0iGGtP7BaR9AY1Y6gspBgW";
        const HASHED: &str = "|1|Um4gr6J6zeBCBPBfzgkHXznkCRU=|3OrgkeBxBKy5GDovXGSzm9TdkeA= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvS5tCLnYgyKN1phgJj9e0iGGtP7BaR9AY1Y6gspBgW";
        let (rsa, ed) = (
            PublicKey::from_openssh(RSA).unwrap(),
            PublicKey::from_openssh(ED).unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, format!("# pinned\n10.0.0.2 {ED}\n")).unwrap();
        for accept in [false, true] {
            let e = check_host_key("10.0.0.2", 22, &rsa, &file, accept).unwrap_err();
            assert!(matches!(e, SshError::HostKeyChanged { line: 2, .. }), "{e}");
        }
        check_host_key("10.0.0.2", 22, &ed, &file, false).unwrap();
        assert!(!std::fs::read_to_string(&file).unwrap().contains("ssh-rsa"));

        std::fs::write(&file, format!("10.0.0.2 {ED}\n@revoked * {ED}\n")).unwrap();
        for accept in [false, true] {
            let e = check_host_key("10.0.0.2", 22, &ed, &file, accept).unwrap_err();
            assert!(e.to_string().contains("@revoked"), "{e}");
        }
        // A revoked key elsewhere does not stop another host's own key.
        std::fs::write(&file, format!("10.0.0.2 {ED}\n@revoked * {RSA}\n")).unwrap();
        check_host_key("10.0.0.2", 22, &ed, &file, false).unwrap();

        let text = format!(
            "{HASHED}\n*.example.com,!bad.example.com {RSA}\n[127.0.0.1]:2222 {ED}\n@cert-authority * {RSA}\n"
        );
        assert_eq!(
            look_up(&text, "hashed.example", 22, &ed),
            Ok(Recorded::Known)
        );
        assert_eq!(
            look_up(&text, "hashed.example", 22, &rsa),
            Ok(Recorded::Other { line: 1 })
        );
        assert_eq!(
            look_up(&text, "a.Example.com", 22, &rsa),
            Ok(Recorded::Known)
        );
        assert_eq!(
            look_up(&text, "bad.example.com", 22, &rsa),
            Ok(Recorded::Unknown)
        );
        assert_eq!(look_up(&text, "127.0.0.1", 2222, &ed), Ok(Recorded::Known));
        assert_eq!(look_up(&text, "127.0.0.1", 22, &ed), Ok(Recorded::Unknown));
        // A CA line is no host's key.
        assert_eq!(
            look_up(&text, "other.host", 22, &rsa),
            Ok(Recorded::Unknown)
        );
        assert!(look_up("10.0.0.2 ssh-ed25519 not-base64\n", "10.0.0.2", 22, &ed).is_err());
    }

    /// russh's own writer began the file with an empty line; ours writes
    /// one line per host, ends a last line that had no line end, and is
    /// read back by `ssh-keygen -F` as OpenSSH's client would.
    #[test]
    fn recorded_host_keys_are_plain_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("new/.ssh/known_hosts");
        let key = || {
            let line = proto::auth::Signer::random().public_key_openssh();
            PublicKey::from_openssh(&line).unwrap()
        };
        let (a, b) = (key(), key());
        check_host_key("10.0.0.2", 22, &a, &file, true).unwrap();
        check_host_key("10.0.0.3", 2222, &b, &file, true).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(lines[0].starts_with("10.0.0.2 ssh-ed25519 "), "{text:?}");
        assert!(
            lines[1].starts_with("[10.0.0.3]:2222 ssh-ed25519 "),
            "{text:?}"
        );
        assert!(
            lines
                .iter()
                .all(|l| l.ends_with('\n') && l.trim() == l.trim_end()),
            "{text:?}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A hand-edited file whose last line has no line end.
        let edited = dir.path().join("edited");
        std::fs::write(&edited, "# mine").unwrap();
        check_host_key("10.0.0.2", 22, &a, &edited, true).unwrap();
        let text = std::fs::read_to_string(&edited).unwrap();
        assert!(
            text.starts_with("# mine\n10.0.0.2 ssh-ed25519 "),
            "{text:?}"
        );
        check_host_key("10.0.0.2", 22, &a, &edited, false).unwrap();
        if std::path::Path::new("/usr/bin/ssh-keygen").exists() {
            for (f, host) in [(&file, "[10.0.0.3]:2222"), (&edited, "10.0.0.2")] {
                let out = std::process::Command::new("ssh-keygen")
                    .arg("-F")
                    .arg(host)
                    .arg("-f")
                    .arg(f)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "ssh-keygen -F {host}: {out:?}");
            }
        }
    }
}
