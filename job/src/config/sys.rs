//! `sys.properties` (per-installation settings, validated into [`SysConfig`]) and the
//! `workers` host list.
//!
//! Many of these keys steered the original's JVM and SSH plumbing; they are accepted so
//! that existing files load, and [`SysConfig::unsupported`] says which ones do nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proto::Secret;
use serde::Serialize;

use super::properties::PropertiesFile;
use super::{ConfigError, Fields, read_file};

const DEFAULT_SSH_PORT: u16 = 22;
const DEFAULT_AGENT_PORT: u16 = 7601;
/// Relative to the SSH user's home directory on each worker.
const DEFAULT_AGENT_DIR: &str = "ossimport-agent";
const DEFAULT_DISPATCHER_THREADS: u32 = 1;
const DEFAULT_JAVA_HEAP: u64 = 1024 * 1024 * 1024;

/// Validated `sys.properties`. `Debug` prints the password as `***`; `Serialize` omits it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SysConfig {
    /// `workingDir`: where job state lives. Default `.`.
    pub working_dir: PathBuf,
    /// Whether the file set `workingDir` (`ossimportctl run` has its own
    /// default otherwise).
    #[serde(skip)]
    pub working_dir_given: bool,
    /// `workerUserName` (docs: `workerUser`): SSH user for the workers.
    pub worker_user_name: String,
    /// `workerPassword`: SSH password.
    #[serde(skip)]
    pub worker_password: Secret,
    /// `privateKeyFile`: SSH private key, used instead of the password.
    pub private_key_file: Option<PathBuf>,
    /// `sshPort`: 1..=65535. Default 22.
    pub ssh_port: u16,
    /// `workerTaskThreadNum`: concurrent transfers per worker, at least 1. Default 60.
    pub worker_task_thread_num: u32,
    /// `workerMaxThroughput(KB/s)` (also accepted as `workerMaxThroughput`): bandwidth cap
    /// per worker in KB/s; 0 (default) = unlimited.
    pub worker_max_throughput_kbps: u64,
    /// `workerMaxThroughputSchedule` (ours): bandwidth by time of day
    /// ([`super::schedule::Schedule`]); when set, it replaces
    /// `workerMaxThroughput`.
    pub worker_max_throughput_schedule: Option<String>,
    /// `dispatcherThreadNum`: the original tracker's threads, at least 1. Default 1.
    pub dispatcher_thread_num: u32,
    /// `workerAbortWhenUncatchedException`: default false.
    pub worker_abort_when_uncatched_exception: bool,
    /// `workerRecordMd5`: store the MD5 in `x-oss-meta-md5`. Default false.
    pub worker_record_md5: bool,
    /// `javaHeapMaxSize`: the original's JVM `-Xmx`, in bytes. Default 1024m.
    pub java_heap_max_size: u64,
    /// `daemonAddress` (ours): `host:port` where deployed agents reach the
    /// daemon's agent API. Needed by `deploy`; no default, since only the
    /// operator knows which of the master's addresses the workers can reach.
    pub daemon_address: Option<String>,
    /// `agentDir` (ours): where `deploy` installs the agent on each worker;
    /// a relative path is below the SSH user's home. Default `ossimport-agent`.
    pub agent_dir: String,
    /// `agentPort` (ours): the port agents listen on. Default 7601.
    pub agent_port: u16,
    /// `knownHostsFile` (ours): the workers' SSH host keys; default
    /// `~/.ssh/known_hosts` of the user running `deploy`.
    pub known_hosts_file: Option<PathBuf>,
}

impl SysConfig {
    /// Reads and validates a `sys.properties` file.
    pub fn load(path: &Path) -> Result<SysConfig, ConfigError> {
        let text = read_file(path)?;
        SysConfig::parse(&path.display().to_string(), &text)
    }

    /// Validates the text of a `sys.properties` file; `file_label` names it in errors.
    pub fn parse(file_label: &str, text: &str) -> Result<SysConfig, ConfigError> {
        let props = PropertiesFile::parse(file_label, text)?;
        let f = Fields::new(&props);
        f.check_known(&super::keys::names(super::keys::SYS))?;
        let private_key_file = f
            .value_entry(&["privateKeyFile"])?
            .map(|e| PathBuf::from(&e.value));
        let ssh_port = f.number(k("sshPort"))?;
        Ok(SysConfig {
            working_dir: f
                .value_entry(&["workingDir"])?
                .map_or_else(|| PathBuf::from("."), |e| PathBuf::from(&e.value)),
            working_dir_given: f.value_entry(&["workingDir"])?.is_some(),
            worker_user_name: f
                .value_entry(&["workerUserName", "workerUser"])?
                .map(|e| e.value.clone())
                .unwrap_or_default(),
            worker_password: Secret::new(f.string("workerPassword")?),
            private_key_file,
            ssh_port: u16::try_from(ssh_port).unwrap_or(DEFAULT_SSH_PORT),
            worker_task_thread_num: f.number_u32(k("workerTaskThreadNum"))?,
            worker_max_throughput_kbps: f.number(k("workerMaxThroughput(KB/s)"))?,
            worker_max_throughput_schedule: f.parsed(
                &["workerMaxThroughputSchedule"],
                None,
                |v| super::schedule::Schedule::parse(v).map(|_| Some(v.to_string())),
            )?,
            dispatcher_thread_num: f.number_u32(k("dispatcherThreadNum"))?,
            worker_abort_when_uncatched_exception: f
                .switch(k("workerAbortWhenUncatchedException"))?,
            worker_record_md5: f.switch(k("workerRecordMd5"))?,
            java_heap_max_size: f.bytes(k("javaHeapMaxSize"))?,
            daemon_address: match f.value_entry(&["daemonAddress"])? {
                Some(e) => Some(host_port(file_label, e.line, "daemonAddress", &e.value)?),
                None => None,
            },
            agent_dir: match f.value_entry(&["agentDir"])? {
                Some(e) => safe_dir(file_label, e.line, &e.value)?,
                None => DEFAULT_AGENT_DIR.to_string(),
            },
            agent_port: u16::try_from(f.number(k("agentPort"))?).unwrap_or(DEFAULT_AGENT_PORT),
            known_hosts_file: f
                .value_entry(&["knownHostsFile"])?
                .map(|e| PathBuf::from(&e.value)),
        })
    }

    /// One line per setting that is accepted but not acted on yet. Edit this list as
    /// features land.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.dispatcher_thread_num != DEFAULT_DISPATCHER_THREADS {
            out.push(format!(
                "dispatcherThreadNum={}: there is no separate dispatcher; value ignored",
                self.dispatcher_thread_num
            ));
        }
        if self.java_heap_max_size != DEFAULT_JAVA_HEAP {
            out.push("javaHeapMaxSize: ignored: no JVM".to_string());
        }
        if self.worker_abort_when_uncatched_exception {
            out.push(
                "workerAbortWhenUncatchedException=true: not supported yet; a failed object never stops the job"
                    .to_string(),
            );
        }
        out
    }
}

/// `host:port` with a port, as `daemonAddress` needs.
fn host_port(file: &str, line: usize, key: &str, v: &str) -> Result<String, ConfigError> {
    let bad = |reason: String| ConfigError::Invalid {
        file: file.to_string(),
        line: Some(line),
        key: key.to_string(),
        reason,
    };
    let v = v.trim();
    match v.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
            if h.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
                return Err(bad(format!("{v:?} is not host:port")));
            }
            Ok(v.to_string())
        }
        _ => Err(bad(format!(
            "{v:?} is not host:port (the master's address the workers can reach, e.g. 10.0.0.1:7600)"
        ))),
    }
}

/// `agentDir` ends up in shell commands on every worker: only plain path
/// characters, no `..`.
fn safe_dir(file: &str, line: usize, v: &str) -> Result<String, ConfigError> {
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        && !v.split('/').any(|seg| seg == "..");
    if ok {
        Ok(v.trim_end_matches('/').to_string())
    } else {
        Err(ConfigError::Invalid {
            file: file.to_string(),
            line: Some(line),
            key: "agentDir".to_string(),
            reason: format!("{v:?}: use letters, digits, '/', '.', '_' and '-' only, and no '..'"),
        })
    }
}

/// One line of `workers`: `host`, `user@host`, `host:port`, `user@host:port`,
/// `[v6addr]:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerHost {
    /// The line as written: the name the agent is enrolled under.
    pub line: String,
    pub user: Option<String>,
    /// Without brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl WorkerHost {
    pub fn parse(line: &str) -> Result<WorkerHost, String> {
        let (user, rest) = match line.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, line),
        };
        if user.as_deref().is_some_and(|u| {
            u.is_empty()
                || !u
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        }) {
            return Err(format!("{line:?}: bad user name"));
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("{line:?}: '[' without ']'"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{line:?}: expected ':port' after ']'")),
            };
            (h.to_string(), port)
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address, no port.
            (rest.to_string(), None)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{line:?}: bad port {p:?}"))?,
            ),
            None => None,
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:%".contains(c))
        {
            return Err(format!("{line:?}: bad host name"));
        }
        Ok(WorkerHost {
            line: line.to_string(),
            user,
            host,
            port,
        })
    }
}

/// Whether a `workers` line (`host`, `user@host`, `host:port`) names this
/// machine: a loopback name, or an address this machine can bind.
pub fn is_this_machine(line: &str) -> bool {
    let host = line.rsplit_once('@').map_or(line, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() && !h.contains(':') => h,
        _ => host,
    };
    let host = host.trim_matches(['[', ']']);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    use std::net::ToSocketAddrs;
    match (host, 0u16).to_socket_addrs() {
        Ok(addrs) => addrs
            .into_iter()
            .any(|a| a.ip().is_loopback() || std::net::UdpSocket::bind((a.ip(), 0)).is_ok()),
        Err(_) => false,
    }
}

/// Reads a `workers` file.
pub fn load_workers(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = read_file(path)?;
    parse_workers(&path.display().to_string(), &text)
}

/// Parses a `workers` file: one host per line (the first one was the original's master),
/// blank lines and `#` comments ignored, each host at most once.
pub fn parse_workers(file_label: &str, text: &str) -> Result<Vec<String>, ConfigError> {
    let mut hosts = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let host = raw.split('#').next().unwrap_or_default().trim();
        if host.is_empty() {
            continue;
        }
        let err = |reason: String| ConfigError::Invalid {
            file: file_label.to_string(),
            line: Some(line_no),
            key: "host".to_string(),
            reason,
        };
        if host.contains(char::is_whitespace) {
            return Err(err(format!("expected one host per line, got {host:?}")));
        }
        WorkerHost::parse(host).map_err(err)?;
        if let Some(first) = seen.get(host) {
            return Err(err(format!(
                "{host} is listed twice, first on line {first}"
            )));
        }
        seen.insert(host.to_string(), line_no);
        hosts.push(host.to_string());
    }
    Ok(hosts)
}

/// The key named `name` of `sys.properties` ([`super::keys::SYS`]).
fn k(name: &str) -> &'static super::keys::Key {
    super::keys::find(super::keys::SYS, name)
}
