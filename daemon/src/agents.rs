//! Agents as the daemon knows them: enrolment (the `agent_keys` file, read
//! again when an unknown key knocks), liveness from heartbeats, and the
//! table `ossimportctl workers` shows.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use proto::api::Heartbeat;
use proto::auth::Verifier;
use tokio::time::Instant;
use tracing::warn;

/// What the daemon knows about one enrolled agent.
#[derive(Clone, Debug)]
pub struct AgentEntry {
    /// From the heartbeat, else the key's comment.
    pub name: String,
    /// SHA256 fingerprint of its key: the identity leases are recorded under.
    pub fingerprint: String,
    /// `host:port` of its task API, from its last heartbeat.
    pub addr: Option<String>,
    pub capacity: u32,
    pub last_seen: Option<Instant>,
    /// It said goodbye and has not been heard from since.
    pub left: bool,
    /// Why the last push to it failed, cleared by the next success.
    pub error: Option<String>,
    /// A batch is on its way to it; at most one at a time.
    pub pushing: bool,
    /// No push before this instant (after a failed one).
    pub retry_after: Option<Instant>,
    /// Byte counter of its last heartbeat, and the rate since the one before.
    pub bytes: u64,
    pub bytes_per_sec: u64,
    /// The version its last heartbeat gave.
    pub version: Option<String>,
    /// From its last heartbeat: objects (and their bytes) being copied, and
    /// throttling answers since it started.
    pub objects_in_flight: u64,
    pub bytes_in_flight: u64,
    pub throttled: u64,
    /// Results of it the daemon refused (`evidence::check`); from
    /// [`SUSPECT_AFTER`] on it is shown `suspect`.
    pub rejected: u64,
    /// From its last heartbeat: the endpoints its executors talk to.
    pub endpoints: Vec<proto::api::EndpointHealth>,
    /// The in-process local worker, not an agent over the network.
    pub in_process: bool,
}

impl AgentEntry {
    pub fn enrolled(name: &str, fingerprint: &str) -> AgentEntry {
        AgentEntry {
            name: name.to_string(),
            fingerprint: fingerprint.to_string(),
            addr: None,
            capacity: 0,
            last_seen: None,
            left: false,
            error: None,
            pushing: false,
            retry_after: None,
            bytes: 0,
            bytes_per_sec: 0,
            version: None,
            objects_in_flight: 0,
            bytes_in_flight: 0,
            throttled: 0,
            rejected: 0,
            endpoints: Vec::new(),
            in_process: false,
        }
    }
}

/// Rejected results after which an executor is shown `suspect`.
pub const SUSPECT_AFTER: u64 = 3;

/// Tasks an agent may hold at once, whatever its heartbeat claims (each
/// job bounds its share further: `schedule::job_share`).
pub const MAX_CLAIMED_CAPACITY: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Up,
    /// No heartbeat within the timeout.
    Down,
    Left,
    /// Enrolled, never heard from.
    Never,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Up => "up",
            Liveness::Down => "down",
            Liveness::Left => "left",
            Liveness::Never => "never",
        }
    }
}

pub fn liveness(a: &AgentEntry, now: Instant, timeout: Duration) -> Liveness {
    match a.last_seen {
        _ if a.left => Liveness::Left,
        None => Liveness::Never,
        Some(t) if now.saturating_duration_since(t) > timeout => Liveness::Down,
        Some(_) => Liveness::Up,
    }
}

/// The enrolled agents, by fingerprint, and the file they are enrolled in.
pub struct Agents {
    /// A std mutex: never held across an await.
    table: Mutex<HashMap<String, AgentEntry>>,
    /// `ssh-ed25519 AAAA... name` lines.
    keys_file: PathBuf,
    /// Last read of `keys_file` (rate limit). Also held while the file is
    /// rewritten by [`Agents::enrol`] or [`Agents::revoke`], so a reload
    /// never trusts again a key that was revoked while it read.
    keys_loaded: Mutex<Option<std::time::Instant>>,
}

/// Why an enrolment or a revocation was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("not an agent public key: {0}")]
    BadKey(String),
    #[error("no enrolled agent is named {0}")]
    NotFound(String),
    #[error(
        "an agent named {name} is enrolled with another key ({fingerprint}); revoke it first (`ossimportctl workers remove {name}`), or re-deploy the host, which replaces it"
    )]
    NameTaken { name: String, fingerprint: String },
    #[error("cannot update {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

impl Agents {
    pub fn new(keys_file: PathBuf) -> Agents {
        Agents {
            table: Mutex::new(HashMap::new()),
            keys_file,
            keys_loaded: Mutex::new(None),
        }
    }

    pub fn table(&self) -> MutexGuard<'_, HashMap<String, AgentEntry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a heartbeat in the agent's entry; returns whether the agent
    /// (re)joined: first heartbeat, back after a goodbye, or a new address.
    pub fn heard_from(&self, fingerprint: &str, hb: &Heartbeat) -> bool {
        let mut agents = self.table();
        let a = agents
            .entry(fingerprint.to_string())
            .or_insert_with(|| AgentEntry::enrolled(&hb.name, fingerprint));
        // What an agent says of itself is shown in logs, `workers` and the
        // status page: one line each, whatever it sent.
        let (name, addr) = (
            proto::net::printable(&hb.name),
            proto::net::printable(&hb.addr),
        );
        let fresh = a.last_seen.is_none() || a.left || a.addr.as_deref() != Some(&addr);
        a.name = name;
        a.addr = Some(addr);
        a.capacity = hb.capacity.min(MAX_CLAIMED_CAPACITY);
        let now = Instant::now();
        a.bytes_per_sec = match a.last_seen {
            Some(t) if hb.bytes >= a.bytes && now > t => {
                ((hb.bytes - a.bytes) as f64 / now.duration_since(t).as_secs_f64()) as u64
            }
            _ => 0,
        };
        a.bytes = hb.bytes;
        (a.objects_in_flight, a.bytes_in_flight, a.throttled) =
            (hb.objects_in_flight, hb.bytes_in_flight, hb.throttled);
        a.version = (!hb.version.is_empty()).then(|| hb.version.clone());
        // Bounded: an agent names at most a few endpoints per job.
        a.endpoints = hb.endpoints.iter().take(256).cloned().collect();
        a.last_seen = Some(now);
        a.left = false;
        fresh
    }

    /// Trusts `key_line` from now on under `name`, and records it in the
    /// keys file (replacing an earlier line with the same key, or the same
    /// name: a host's agent key changes when it is deployed afresh). Returns
    /// the fingerprint, and whether anything changed.
    pub fn enrol(
        &self,
        verifier: &Verifier,
        key_line: &str,
        name: &str,
        replace: bool,
    ) -> Result<(String, bool), KeysError> {
        let keys = proto::auth::parse_public_keys(key_line).map_err(KeysError::BadKey)?;
        let [key] = keys.as_slice() else {
            return Err(KeysError::BadKey("expected exactly one key line".into()));
        };
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(KeysError::BadKey(format!("bad agent name {name:?}")));
        }
        let fp = proto::auth::fingerprint(key);
        let _guard = self.keys_loaded.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = self.read_lines()?;
        let same = |l: &KeyLine| l.fingerprint.as_deref() == Some(fp.as_str()) && l.name == name;
        if lines.iter().any(same) && verifier.knows(&fp) {
            return Ok((fp, false));
        }
        // Another key under this name is refused, unless asked to replace
        // it (the host's old agent, revoked).
        if !replace
            && let Some(other) = lines
                .iter()
                .find(|l| l.name == name && l.fingerprint.as_deref() != Some(fp.as_str()))
        {
            return Err(KeysError::NameTaken {
                name: name.to_owned(),
                fingerprint: other.fingerprint.clone().unwrap_or_default(),
            });
        }
        let mut dropped = Vec::new();
        lines.retain(|l| {
            let keep = l.name != name && l.fingerprint.as_deref() != Some(fp.as_str());
            if !keep && let Some(old) = &l.fingerprint {
                dropped.push(old.clone());
            }
            keep
        });
        let mut public = key.clone();
        public.set_comment(name);
        let text = public
            .to_openssh()
            .map_err(|e| KeysError::BadKey(e.to_string()))?;
        lines.push(KeyLine {
            text,
            fingerprint: Some(fp.clone()),
            name: name.to_string(),
        });
        self.write_lines(&lines)?;
        let mut table = self.table();
        for old in dropped.iter().filter(|o| **o != fp) {
            verifier.distrust(old);
            table.remove(old);
        }
        verifier.trust(public);
        let entry = table
            .entry(fp.clone())
            .or_insert_with(|| AgentEntry::enrolled(name, &fp));
        entry.name = name.to_string();
        Ok((fp, true))
    }

    /// Stops trusting the agents named `who` (or with that fingerprint) at
    /// once and removes their lines from the keys file. Returns their
    /// fingerprints.
    pub fn revoke(&self, verifier: &Verifier, who: &str) -> Result<Vec<String>, KeysError> {
        let _guard = self.keys_loaded.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = self.read_lines()?;
        let mut gone: Vec<String> = Vec::new();
        lines.retain(|l| {
            let hit = l.name == who || l.fingerprint.as_deref() == Some(who);
            if hit && let Some(fp) = &l.fingerprint {
                gone.push(fp.clone());
            }
            !hit
        });
        // Agents known by their heartbeat's name but enrolled under another.
        {
            let table = self.table();
            for a in table.values() {
                if (a.name == who || a.fingerprint == who) && !gone.contains(&a.fingerprint) {
                    gone.push(a.fingerprint.clone());
                }
            }
        }
        if gone.is_empty() {
            return Err(KeysError::NotFound(who.to_string()));
        }
        lines.retain(|l| l.fingerprint.as_ref().is_none_or(|f| !gone.contains(f)));
        self.write_lines(&lines)?;
        let mut table = self.table();
        for fp in &gone {
            verifier.distrust(fp);
            table.remove(fp);
        }
        Ok(gone)
    }

    fn read_lines(&self) -> Result<Vec<KeyLine>, KeysError> {
        let text = match std::fs::read_to_string(&self.keys_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(KeysError::Io {
                    file: self.keys_file.display().to_string(),
                    source,
                });
            }
        };
        Ok(text
            .lines()
            .map(|line| {
                let key = proto::auth::parse_public_keys(line)
                    .ok()
                    .and_then(|k| k.into_iter().next());
                KeyLine {
                    text: line.to_string(),
                    fingerprint: key.as_ref().map(proto::auth::fingerprint),
                    name: key.map(|k| k.comment().to_string()).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Replaces the keys file (temporary file, fsync, rename), keeping
    /// comments and lines it could not parse as they were.
    fn write_lines(&self, lines: &[KeyLine]) -> Result<(), KeysError> {
        let io = |source| KeysError::Io {
            file: self.keys_file.display().to_string(),
            source,
        };
        let mut text = String::new();
        for l in lines {
            text.push_str(&l.text);
            text.push('\n');
        }
        let tmp = self.keys_file.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.keys_file).map_err(io)
    }

    /// Reads the enrolled agent keys; new ones become trusted by
    /// `verifier`. Returns whether it read the file (at most once a
    /// second unless `force`).
    pub fn reload_keys(&self, verifier: &Verifier, force: bool) -> bool {
        let mut last = self.keys_loaded.lock().unwrap_or_else(|p| p.into_inner());
        if !force && last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        let text = match std::fs::read_to_string(&self.keys_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                warn!(file = %self.keys_file.display(), error = %e, "Cannot read enrolled agent keys.");
                return true;
            }
        };
        match proto::auth::parse_public_keys(&text) {
            Ok(keys) => {
                let mut agents = self.table();
                for key in keys {
                    let fp = proto::auth::fingerprint(&key);
                    let name = if key.comment().is_empty() {
                        fp.clone()
                    } else {
                        key.comment().to_string()
                    };
                    agents
                        .entry(fp.clone())
                        .or_insert_with(|| AgentEntry::enrolled(&name, &fp));
                    verifier.trust(key);
                }
            }
            Err(e) => {
                warn!(file = %self.keys_file.display(), error = %e, "Enrolled agent keys file is malformed.")
            }
        }
        true
    }
}

/// One line of the keys file as read: kept verbatim when rewritten.
struct KeyLine {
    text: String,
    /// `None` for comments, blank and unparsable lines.
    fingerprint: Option<String>,
    /// The key's comment: the name it is enrolled under.
    name: String,
}
