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
        }
    }
}

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
    /// Last read of `keys_file` (rate limit).
    keys_loaded: Mutex<Option<std::time::Instant>>,
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
        let fresh = a.last_seen.is_none() || a.left || a.addr.as_deref() != Some(&hb.addr);
        a.name = hb.name.clone();
        a.addr = Some(hb.addr.clone());
        a.capacity = hb.capacity;
        let now = Instant::now();
        a.bytes_per_sec = match a.last_seen {
            Some(t) if hb.bytes >= a.bytes && now > t => {
                ((hb.bytes - a.bytes) as f64 / now.duration_since(t).as_secs_f64()) as u64
            }
            _ => 0,
        };
        a.bytes = hb.bytes;
        a.last_seen = Some(now);
        a.left = false;
        fresh
    }

    /// Reads the enrolled agent keys; new ones become trusted by
    /// `verifier`. Returns whether it read the file (at most once a
    /// second unless `force`).
    pub fn reload_keys(&self, verifier: &Verifier, force: bool) -> bool {
        {
            let mut last = self.keys_loaded.lock().unwrap_or_else(|p| p.into_inner());
            if !force && last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return false;
            }
            *last = Some(std::time::Instant::now());
        }
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
