//! `ossimportctl deploy`, `workers add|remove`, and the agents' half of
//! `start`/`stop`: the original's `console.sh deploy`, over SSH (russh).
//!
//! For every host of `workers`, in parallel: connect and check its host
//! key, log in (key or password, as `sys.properties` says), install the
//! agent binary (checked by SHA-256) or a package, create the agent's key
//! there and enrol its public key with the daemon, write the daemon's
//! public key and the secrets of the job files (over the channel, mode
//! 0600), start the agent (systemd unit, or detached with a pid file) and
//! wait for its first heartbeat. What is already in place is left alone,
//! so a second run changes nothing. One host's failure is one line in its
//! row; the others go on.

pub mod remote;
pub mod ssh;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use job::config::sys::{SysConfig, WorkerHost};
use proto::api::{EnrolRequest, Enrolled, Revoked, WorkerList};
use proto::control::Endpoint;
use serde::Serialize;

use crate::cli::{DaemonArgs, DeployArgs};
use crate::conn::{Conn, Fail};
use crate::exit;
use ssh::{Login, Session, SshError, Target};

type Result<T> = std::result::Result<T, Fail>;

/// What to do on each host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Install or update everything, start, wait for the heartbeat.
    Deploy,
    /// Only the secrets file (and a restart when it changed).
    SecretsOnly,
    /// Start the agent where it is deployed and not running.
    Start,
    /// Stop the agent.
    Stop,
}

/// Everything resolved once, before any host is touched.
struct Plan {
    sys_path: PathBuf,
    sys: SysConfig,
    known_hosts: PathBuf,
    accept_new: bool,
    login: Login,
    /// Only for [`Mode::Deploy`]: `start`/`stop` install nothing (and the
    /// master may have no agent binary at all).
    agent: Option<AgentFile>,
    secrets: Vec<u8>,
    secrets_sha: String,
    secret_keys: usize,
    /// The local directories the agents may use (`--allow-root` each):
    /// the jobs' local source and destination directories and `--allow-root`.
    allow_roots: Vec<String>,
    /// Whom a root login runs the agent as (`--agent-user`).
    agent_user: String,
    daemon_address: String,
    timeout: Duration,
    conn: Conn,
}

/// What gets installed: our own agent binary, or a package of it.
struct AgentFile {
    path: PathBuf,
    sha256: String,
    size: u64,
    /// `deb` or `rpm` for `--package`.
    package: Option<&'static str>,
}

/// One host's line of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub host: String,
    /// `deployed`, `updated`, `unchanged`, `started`, `running`, `stopped`,
    /// or `failed`.
    pub state: String,
    pub version: Option<String>,
    pub seconds: f64,
    /// What changed, or why it failed.
    pub note: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// `--sys`, else `$OSSIMPORT_SYS_PROPERTIES` (clap), else `conf/sys.properties`.
fn sys_path(d: &DaemonArgs) -> PathBuf {
    d.sys
        .clone()
        .unwrap_or_else(|| PathBuf::from("conf/sys.properties"))
}

/// The `workers` file: `--workers`, else next to `sys.properties`.
fn workers_path(workers: Option<&Path>, sys: &Path) -> PathBuf {
    workers.map(Path::to_path_buf).unwrap_or_else(|| {
        sys.parent()
            .unwrap_or_else(|| Path::new("."))
            .join("workers")
    })
}

fn read_hosts(path: &Path) -> Result<Vec<WorkerHost>> {
    let hosts =
        job::config::sys::load_workers(path).map_err(|e| Fail(exit::USAGE, e.to_string()))?;
    Ok(hosts
        .iter()
        .map(|h| WorkerHost::parse(h).expect("load_workers checked every line"))
        .collect())
}

fn load_sys(path: &Path) -> Result<SysConfig> {
    if !path.is_file() {
        return Err(Fail(
            exit::USAGE,
            format!(
                "{}: no such file (deploy reads the SSH settings and daemonAddress from sys.properties; give --sys)",
                path.display()
            ),
        ));
    }
    SysConfig::load(path).map_err(|e| Fail(exit::USAGE, e.to_string()))
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let bytes =
        std::fs::read(path).map_err(|e| Fail(exit::USAGE, format!("{}: {e}", path.display())))?;
    Ok((proto::auth::sha256_hex(&bytes), bytes.len() as u64))
}

/// The local directories of the jobs (`srcPrefix`, `destDir`), sorted.
fn local_dirs_of(jobs: &[PathBuf], sys: &Path) -> Result<BTreeSet<String>> {
    let mut dirs = BTreeSet::new();
    for job in jobs {
        let plan = job::plan::load(job, Some(sys))
            .map_err(|e| Fail(exit::USAGE, format!("{}: {e}", job.display())))?;
        if let proto::job::SourceSpec::Local { root, .. } = &plan.spec.source {
            dirs.insert(root.trim_end_matches('/').to_string());
        }
        if let proto::job::DestSpec::Local { dir, .. } = &plan.spec.dest {
            dirs.insert(dir.trim_end_matches('/').to_string());
        }
    }
    Ok(dirs)
}

/// The `accessKeyId=secretKey` lines of the jobs' stores, sorted.
fn secrets_of(jobs: &[PathBuf], sys: &Path) -> Result<(Vec<u8>, usize)> {
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for job in jobs {
        let mut plan = job::plan::load(job, Some(sys))
            .map_err(|e| Fail(exit::USAGE, format!("{}: {e}", job.display())))?;
        for b in plan.spec.buckets_mut() {
            if b.access_key.is_empty() || b.secret_key.is_empty() {
                continue;
            }
            if b.access_key.contains(['=', '\n', '\r']) {
                return Err(Fail(
                    exit::USAGE,
                    format!("{}: an access key holds '=' or a line break", job.display()),
                ));
            }
            keys.insert(b.access_key.clone(), b.secret_key.expose().to_string());
        }
    }
    let mut text = String::from("# Written by ossimportctl deploy: accessKeyId=secretKey\n");
    for (k, v) in &keys {
        text.push_str(&format!("{k}={v}\n"));
    }
    Ok((text.into_bytes(), keys.len()))
}

fn default_known_hosts() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".ssh/known_hosts")
}

/// The agent binary next to this `ossimportctl`.
fn sibling_agent() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ossimport-agent")))
        .unwrap_or_else(|| PathBuf::from("/usr/bin/ossimport-agent"))
}

fn plan(a: &DeployArgs, mode: Mode) -> Result<Plan> {
    let sys_path = sys_path(&a.d);
    let sys = load_sys(&sys_path)?;
    let daemon_address = match (&sys.daemon_address, mode) {
        (Some(addr), _) => addr.clone(),
        (None, Mode::Stop | Mode::Start) => String::new(),
        (None, _) => {
            return Err(Fail(
                exit::USAGE,
                format!(
                    "{}: daemonAddress: not set: deploy needs the master's address that the workers reach the daemon at (host:port of ossimportd --listen, e.g. daemonAddress=10.0.0.1:7600)",
                    sys_path.display()
                ),
            ));
        }
    };
    let login = Login {
        key: sys.private_key_file.as_ref().map(|k| {
            if k.is_relative() {
                sys_path.parent().unwrap_or(Path::new(".")).join(k)
            } else {
                k.clone()
            }
        }),
        password: (!sys.worker_password.is_empty()).then(|| sys.worker_password.clone()),
    };
    if login.key.is_none() && login.password.is_none() && mode != Mode::Stop {
        return Err(Fail(
            exit::USAGE,
            format!(
                "{}: neither privateKeyFile nor workerPassword is set: deploy cannot log in to the workers",
                sys_path.display()
            ),
        ));
    }
    let agent = match &a.package {
        _ if mode != Mode::Deploy => None,
        Some(p) => {
            let kind = match p.extension().and_then(|e| e.to_str()) {
                Some("deb") => "deb",
                Some("rpm") => "rpm",
                _ => {
                    return Err(Fail(
                        exit::USAGE,
                        format!("{}: --package takes a .deb or an .rpm", p.display()),
                    ));
                }
            };
            let (sha256, size) = sha256_file(p)?;
            Some(AgentFile {
                path: p.clone(),
                sha256,
                size,
                package: Some(kind),
            })
        }
        None => {
            let p = a.agent_bin.clone().unwrap_or_else(sibling_agent);
            let (sha256, size) = sha256_file(&p).map_err(|Fail(c, m)| {
                Fail(
                    c,
                    format!("{m} (the agent binary to install; give --agent-bin)"),
                )
            })?;
            Some(AgentFile {
                path: p,
                sha256,
                size,
                package: None,
            })
        }
    };
    let jobs = if a.job.is_empty() {
        let default = sys_path.parent().unwrap_or(Path::new(".")).join("job.cfg");
        if default.is_file() {
            vec![default]
        } else {
            vec![]
        }
    } else {
        a.job.clone()
    };
    let (secrets, secret_keys) = if matches!(mode, Mode::Deploy | Mode::SecretsOnly) {
        secrets_of(&jobs, &sys_path)?
    } else {
        (Vec::new(), 0)
    };
    let mut allow_roots = if matches!(mode, Mode::Deploy) {
        local_dirs_of(&jobs, &sys_path)?
    } else {
        BTreeSet::new()
    };
    for d in &a.allow_root {
        if !d.is_absolute() {
            return Err(Fail(
                exit::USAGE,
                format!("--allow-root {}: give an absolute path", d.display()),
            ));
        }
        allow_roots.insert(d.display().to_string());
    }
    let user_ok = a.agent_user.len() <= 32
        && a.agent_user
            .starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && a.agent_user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !user_ok {
        return Err(Fail(
            exit::USAGE,
            format!("--agent-user {:?}: not a user name", a.agent_user),
        ));
    }
    let known_hosts = a
        .known_hosts
        .clone()
        .or_else(|| sys.known_hosts_file.clone())
        .unwrap_or_else(default_known_hosts);
    Ok(Plan {
        secrets_sha: proto::auth::sha256_hex(&secrets),
        secrets,
        secret_keys,
        allow_roots: allow_roots.into_iter().collect(),
        agent_user: a.agent_user.clone(),
        sys_path,
        known_hosts,
        accept_new: a.accept_new_host_keys,
        login,
        agent,
        daemon_address,
        timeout: Duration::from_secs(a.timeout),
        conn: Conn::new(&a.d),
        sys,
    })
}

/// `ossimportctl deploy` (every host of `workers`), or `workers add HOST`.
pub(crate) async fn deploy(a: &DeployArgs, only: Option<&str>) -> Result<exit::Code> {
    let mode = if a.secrets_only {
        Mode::SecretsOnly
    } else {
        Mode::Deploy
    };
    let plan = plan(a, mode)?;
    let workers = workers_path(a.workers.as_deref(), &plan.sys_path);
    let hosts = match only {
        Some(line) => {
            let h = WorkerHost::parse(line).map_err(|e| Fail(exit::USAGE, e))?;
            add_line(&workers, line)?;
            vec![h]
        }
        None => {
            let hosts = read_hosts(&workers)?;
            if hosts.is_empty() {
                return Err(Fail(
                    exit::USAGE,
                    format!(
                        "{}: no hosts: list one worker a line (user@host:port accepted)",
                        workers.display()
                    ),
                ));
            }
            hosts
        }
    };
    // The daemon must answer before anything is installed: it enrols the
    // keys, which only an administrator may have it do.
    plan.conn
        .call::<WorkerList>(&Endpoint::Workers, None, None)
        .await?;
    let (v, _): (proto::api::VersionInfo, _) =
        plan.conn.call(&Endpoint::Version, None, None).await?;
    if v.role.as_deref() == Some("operator") {
        return Err(Fail(
            exit::NO_PERMISSION,
            "deploy needs the administrator role (root, the daemon's user, or a member of its --admin-group); you are an operator".into(),
        ));
    }
    eprintln!(
        "deploy: {} host(s) from {}; agents will reach the daemon at {}",
        hosts.len(),
        workers.display(),
        plan.daemon_address
    );
    // The original's first line is the master itself: its worker is the
    // daemon's own (`ossimportd --local-worker`), not an agent over SSH.
    let (here, remote): (Vec<WorkerHost>, Vec<WorkerHost>) = hosts
        .into_iter()
        .partition(|h| job::config::sys::is_this_machine(&h.line));
    let mut rows = fan_out(Arc::new(plan), remote, mode).await;
    rows.extend(here.into_iter().map(|h| Row {
        host: h.line,
        state: "skipped".into(),
        version: None,
        seconds: 0.0,
        note:
            "this machine: the daemon's own worker copies here (ossimportd --local-worker)".into(),
        fingerprint: None,
    }));
    Ok(print_rows(&rows, a.d.json))
}

/// The agents' half of `start`/`stop`: every host of `workers` that has a
/// deployed agent. Hosts without one, or unreachable, are reported and do
/// not change the exit code of the daemon's half.
pub(crate) async fn agents(d: &DaemonArgs, workers: Option<&Path>, mode: Mode) -> Result<Vec<Row>> {
    let a = DeployArgs::for_agents(d.clone(), workers.map(Path::to_path_buf));
    let sys_path = sys_path(d);
    let path = workers_path(workers, &sys_path);
    if !sys_path.is_file() || !path.is_file() {
        return Ok(Vec::new());
    }
    let sys = load_sys(&sys_path)?;
    if sys.private_key_file.is_none() && sys.worker_password.is_empty() {
        return Ok(Vec::new());
    }
    let hosts: Vec<WorkerHost> = read_hosts(&path)?
        .into_iter()
        .filter(|h| !job::config::sys::is_this_machine(&h.line))
        .collect();
    if hosts.is_empty() {
        return Ok(Vec::new());
    }
    let plan = plan(&a, mode)?;
    Ok(fan_out(Arc::new(plan), hosts, mode).await)
}

async fn fan_out(plan: Arc<Plan>, hosts: Vec<WorkerHost>, mode: Mode) -> Vec<Row> {
    let mut set = tokio::task::JoinSet::new();
    for (i, h) in hosts.into_iter().enumerate() {
        let plan = Arc::clone(&plan);
        set.spawn(async move {
            let t0 = Instant::now();
            let mut row = Row {
                host: h.line.clone(),
                state: String::new(),
                version: None,
                seconds: 0.0,
                note: String::new(),
                fingerprint: None,
            };
            match one_host(&plan, &h, mode, &mut row).await {
                Ok(()) => {}
                Err(why) => {
                    row.state = "failed".into();
                    row.note = why;
                }
            }
            row.seconds = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;
            eprintln!("{}: {} {}", row.host, row.state, row.note);
            (i, row)
        });
    }
    let mut rows: Vec<(usize, Row)> = set.join_all().await;
    rows.sort_by_key(|(i, _)| *i);
    rows.into_iter().map(|(_, r)| r).collect()
}

fn target(plan: &Plan, h: &WorkerHost) -> Target {
    Target {
        host: h.host.clone(),
        port: h.port.unwrap_or(plan.sys.ssh_port),
        user: h.user.clone().unwrap_or_else(|| {
            if plan.sys.worker_user_name.is_empty() {
                "root".into()
            } else {
                plan.sys.worker_user_name.clone()
            }
        }),
        login: plan.login.clone(),
        known_hosts: plan.known_hosts.clone(),
        accept_new: plan.accept_new,
        connect_timeout: Duration::from_secs(10),
    }
}

fn progress(h: &WorkerHost, what: &str) {
    eprintln!("{}: {what}", h.line);
}

/// What the probe found on a host.
struct Probe {
    dir: String,
    arch: String,
    uid: String,
    systemd: bool,
    avail_kb: u64,
    running: bool,
    sha: BTreeMap<String, String>,
}

fn parse_probe(text: &str) -> std::result::Result<Probe, String> {
    let mut p = Probe {
        dir: String::new(),
        arch: String::new(),
        uid: String::new(),
        systemd: false,
        avail_kb: u64::MAX,
        running: false,
        sha: BTreeMap::new(),
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "dir" => p.dir = v.to_string(),
            "arch" => p.arch = v.to_string(),
            "uid" => p.uid = v.to_string(),
            "systemd" => p.systemd = v == "1",
            "avail_kb" => p.avail_kb = v.parse().unwrap_or(u64::MAX),
            "running" => p.running = v == "1",
            _ => {
                if let Some(f) = k.strip_prefix("sha:") {
                    p.sha.insert(f.to_string(), v.to_string());
                }
            }
        }
    }
    if !p.dir.starts_with('/') {
        return Err(format!(
            "the host did not answer the probe as expected: {text:?}"
        ));
    }
    Ok(p)
}

const STEP: Duration = Duration::from_secs(120);

async fn run(
    s: &Session,
    cmd: &str,
    input: Option<&[u8]>,
) -> std::result::Result<ssh::Output, String> {
    let out = s.run(cmd, input, STEP).await.map_err(|e| e.to_string())?;
    if out.status != 0 {
        return Err(out.reason());
    }
    Ok(out)
}

async fn send_file(
    s: &Session,
    dir: &str,
    rel: &str,
    mode: &str,
    path: &Path,
    sha: &str,
) -> std::result::Result<(), String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let out = s
        .run(
            &remote::put_file(dir, rel, mode, sha),
            Some(file),
            Duration::from_secs(1800),
        )
        .await
        .map_err(|e| e.to_string())?;
    if out.status != 0 {
        return Err(out.reason());
    }
    Ok(())
}

async fn one_host(
    plan: &Plan,
    h: &WorkerHost,
    mode: Mode,
    row: &mut Row,
) -> std::result::Result<(), String> {
    let t = target(plan, h);
    let s = Session::connect(&t)
        .await
        .map_err(|e: SshError| e.to_string())?;
    let r = on_host(plan, h, mode, row, &s).await;
    s.close().await;
    r
}

/// One host's deploy, its steps in the order they run (probe, binary, keys,
/// settings, unit, start, enrol), each recorded on the host's row; kept in
/// one function so every failure names its step the same way.
async fn on_host(
    plan: &Plan,
    h: &WorkerHost,
    mode: Mode,
    row: &mut Row,
    s: &Session,
) -> std::result::Result<(), String> {
    let dir = plan.sys.agent_dir.as_str();
    match mode {
        Mode::Stop => {
            run(s, &remote::stop(dir), None).await?;
            row.state = "stopped".into();
            return Ok(());
        }
        Mode::Start => {
            let out = run(s, &remote::start_if_stopped(dir), None).await?;
            row.state = out.stdout_text().trim().to_string();
            return Ok(());
        }
        Mode::Deploy | Mode::SecretsOnly => {}
    }
    let probe = parse_probe(&run(s, &remote::probe(dir), None).await?.stdout_text())?;
    let fresh = !probe.sha.contains_key("agent.args");
    if mode == Mode::SecretsOnly && fresh {
        return Err("no agent deployed here yet: run deploy without --secrets-only".into());
    }
    let mut changed: Vec<&str> = Vec::new();
    let packaged = match &plan.agent {
        Some(a) => a.package.is_some(),
        None => probe.sha.contains_key("package.sha256"),
    };
    let bin = if packaged {
        "/usr/bin/ossimport-agent".to_string()
    } else {
        format!("{}/bin/ossimport-agent", probe.dir)
    };
    if mode == Mode::Deploy {
        let agent = plan
            .agent
            .as_ref()
            .ok_or_else(|| "no agent binary to install".to_string())?;
        if probe.arch != std::env::consts::ARCH {
            return Err(format!(
                "the host is {} and this agent binary is built for {}",
                probe.arch,
                std::env::consts::ARCH
            ));
        }
        let have = match agent.package {
            Some(_) => probe.sha.get("package.sha256"),
            None => probe.sha.get("bin/ossimport-agent"),
        };
        let want = match agent.package {
            // The file holds the package's SHA-256 and a newline.
            Some(_) => proto::auth::sha256_hex(format!("{}\n", agent.sha256).as_bytes()),
            None => agent.sha256.clone(),
        };
        if have != Some(&want) {
            let need_kb = agent.size / 1024 + 16 * 1024;
            if probe.avail_kb < need_kb {
                return Err(format!(
                    "no disk: {} MiB free in {}, the agent needs {} MiB",
                    probe.avail_kb / 1024,
                    probe.dir,
                    need_kb / 1024
                ));
            }
            progress(
                h,
                &format!(
                    "installing {} ({:.1} MiB)",
                    agent.path.display(),
                    agent.size as f64 / 1048576.0
                ),
            );
            match agent.package {
                Some(ext) => {
                    let rel = format!("package.{ext}");
                    send_file(s, dir, &rel, "600", &agent.path, &agent.sha256).await?;
                    run(s, &remote::install_package(dir, ext), None).await?;
                    let mark = format!("{}\n", agent.sha256);
                    let sha = proto::auth::sha256_hex(mark.as_bytes());
                    run(
                        s,
                        &remote::put_file(dir, "package.sha256", "600", &sha),
                        Some(mark.as_bytes()),
                    )
                    .await?;
                }
                None => {
                    send_file(
                        s,
                        dir,
                        "bin/ossimport-agent",
                        "700",
                        &agent.path,
                        &agent.sha256,
                    )
                    .await?;
                }
            }
            changed.push("agent");
        }
        let key_cmd = if agent.package.is_some() {
            remote::init_key(dir, &bin)
        } else {
            remote::init_key(dir, "$D/bin/ossimport-agent")
        };
        let public = run(s, &key_cmd, None).await?.stdout_text();
        let public = public.trim();
        // A host deployed again with a new key (reinstalled) replaces its
        // old one: deploy is an administrator's act on a listed host.
        let body = serde_json::to_vec(&EnrolRequest {
            public_key: public.to_string(),
            name: h.line.clone(),
            replace: true,
        })
        .map_err(|e| e.to_string())?;
        let (enrolled, _): (Enrolled, _) = plan
            .conn
            .call(&Endpoint::Enrol, None, Some(body))
            .await
            .map_err(|Fail(_, m)| format!("enrolling its key: {m}"))?;
        if enrolled.changed {
            changed.push("key enrolled");
        }
        row.fingerprint = Some(enrolled.fingerprint.clone());
        let dk = format!("{}\n", enrolled.daemon_key.trim());
        let dk_sha = proto::auth::sha256_hex(dk.as_bytes());
        if probe.sha.get("daemon_ed25519.pub") != Some(&dk_sha) {
            run(
                s,
                &remote::put_file(dir, "daemon_ed25519.pub", "644", &dk_sha),
                Some(dk.as_bytes()),
            )
            .await?;
            changed.push("daemon key");
        }
    }
    if probe.sha.get("secrets") != Some(&plan.secrets_sha) {
        run(
            s,
            &remote::put_file(dir, "secrets", "600", &plan.secrets_sha),
            Some(&plan.secrets),
        )
        .await?;
        changed.push("secrets");
    }
    let args = agent_args(plan, h, &probe.dir, &bin);
    let args_text: String = args.iter().map(|a| format!("{a}\n")).collect();
    let args_sha = proto::auth::sha256_hex(args_text.as_bytes());
    if probe.sha.get("agent.args") != Some(&args_sha) {
        run(
            s,
            &remote::put_file(dir, "agent.args", "600", &args_sha),
            Some(args_text.as_bytes()),
        )
        .await?;
        changed.push("settings");
    }
    // A root login runs the agent as its own user (`--agent-user`): the
    // files it reads become that user's whenever any changed.
    let root_login = probe.uid == "0";
    if root_login {
        let want = proto::auth::sha256_hex(format!("{}\n", plan.agent_user).as_bytes());
        if probe.sha.get("agent.user") != Some(&want) {
            changed.push("user");
        }
        if !changed.is_empty() {
            run(s, &remote::hand_to(dir, &plan.agent_user), None).await?;
        }
    }
    let use_systemd = probe.systemd && root_login;
    let restart = !changed.is_empty() || !probe.running;
    let started = Instant::now();
    if restart {
        progress(h, "starting the agent");
        if use_systemd {
            let unit = remote::unit(&args, &plan.agent_user);
            run(
                s,
                &remote::start_systemd(probe.running),
                Some(unit.as_bytes()),
            )
            .await?;
        } else {
            run(s, &remote::start_detached(dir), None).await?;
        }
    }
    let fp = match &row.fingerprint {
        Some(f) => f.clone(),
        None => String::new(),
    };
    let version = wait_heartbeat(plan, h, &fp, if restart { Some(started) } else { None }).await?;
    row.version = version;
    row.state = if fresh {
        "deployed"
    } else if changed.is_empty() && !restart {
        "unchanged"
    } else {
        "updated"
    }
    .into();
    let how = match (use_systemd, root_login && plan.agent_user != "root") {
        (true, true) => format!("systemd unit, as {}", plan.agent_user),
        (true, false) => "systemd unit".to_string(),
        (false, true) => format!("detached, pid file, as {}", plan.agent_user),
        (false, false) => "detached, pid file".to_string(),
    };
    row.note = if changed.is_empty() && !restart {
        format!("nothing to change; running ({how})")
    } else if changed.is_empty() {
        format!("was not running: started ({how})")
    } else {
        let secrets = if changed.contains(&"secrets") {
            format!(", {} store key(s) in secrets", plan.secret_keys)
        } else {
            String::new()
        };
        format!("{}{secrets}; started ({how})", changed.join(", "))
    };
    Ok(())
}

/// The agent's command line: paths on the host, the address the daemon
/// pushes to (the host as `workers` names it), the name it is enrolled
/// under. No secret: they are in the secrets file.
fn agent_args(plan: &Plan, h: &WorkerHost, dir: &str, bin: &str) -> Vec<String> {
    let host = if h.host.contains(':') {
        format!("[{}]", h.host)
    } else {
        h.host.clone()
    };
    let port = plan.sys.agent_port;
    let mut args: Vec<String> = [
        bin.to_string(),
        "--key".into(),
        format!("{dir}/agent_ed25519"),
        "--daemon-key".into(),
        format!("{dir}/daemon_ed25519.pub"),
        "--secrets".into(),
        format!("{dir}/secrets"),
        "--daemon".into(),
        plan.daemon_address.clone(),
        "--listen".into(),
        format!("0.0.0.0:{port}"),
        "--advertise".into(),
        format!("{host}:{port}"),
        "--name".into(),
        h.line.clone(),
    ]
    .into();
    for r in &plan.allow_roots {
        args.push("--allow-root".into());
        args.push(r.clone());
    }
    args
}

/// Waits until the daemon has a heartbeat from the agent (one sent after
/// `since`, when it was just started). Returns its version.
async fn wait_heartbeat(
    plan: &Plan,
    h: &WorkerHost,
    fingerprint: &str,
    since: Option<Instant>,
) -> std::result::Result<Option<String>, String> {
    let deadline = Instant::now() + plan.timeout;
    loop {
        let (list, _): (WorkerList, _) = plan
            .conn
            .call(&Endpoint::Workers, None, None)
            .await
            .map_err(|Fail(_, m)| m)?;
        let me = list.workers.iter().find(|w| {
            (!fingerprint.is_empty() && w.fingerprint == fingerprint)
                || (fingerprint.is_empty() && w.name == h.line && !w.fingerprint.is_empty())
        });
        if let Some(w) = me
            && w.state == "up"
            && since.is_none_or(|t| {
                w.last_heartbeat_secs_ago
                    .is_some_and(|ago| ago <= t.elapsed().as_secs())
            })
        {
            return Ok(w.version.clone());
        }
        if Instant::now() > deadline {
            let why = me
                .and_then(|w| w.error.clone())
                .unwrap_or_else(|| "no heartbeat".into());
            return Err(format!(
                "started, but no heartbeat reached the daemon within {} s ({why}); check that the host reaches daemonAddress={} and the agent log in {}/agent.log",
                plan.timeout.as_secs(),
                plan.daemon_address,
                plan.sys.agent_dir
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Prints the table (or JSON); returns the exit code: 1 when a host failed.
pub fn print_rows(rows: &[Row], json: bool) -> exit::Code {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "hosts": rows })).unwrap_or_default()
        );
    } else {
        let w = rows.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4);
        println!(
            "{:<w$}  {:<9}  {:<8}  {:>7}  NOTE",
            "HOST", "STATE", "VERSION", "SECONDS"
        );
        for r in rows {
            println!(
                "{:<w$}  {:<9}  {:<8}  {:>7.1}  {}",
                r.host,
                r.state,
                r.version.as_deref().unwrap_or("-"),
                r.seconds,
                r.note
            );
        }
    }
    if rows.iter().any(|r| r.state == "failed") {
        exit::JOB_FAILED
    } else {
        exit::OK
    }
}

/// Appends `line` to the `workers` file unless it is there.
fn add_line(path: &Path, line: &str) -> Result<()> {
    let hosts = if path.is_file() {
        job::config::sys::load_workers(path).map_err(|e| Fail(exit::USAGE, e.to_string()))?
    } else {
        Vec::new()
    };
    if hosts.iter().any(|h| h == line) {
        return Ok(());
    }
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    std::fs::write(path, text).map_err(|e| Fail(exit::RUNTIME, format!("{}: {e}", path.display())))
}

/// Drops `line` from the `workers` file, keeping comments and the rest.
fn remove_line(path: &Path, line: &str) -> Result<bool> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(false);
    };
    let mut found = false;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let hit = l.split('#').next().unwrap_or_default().trim() == line;
            found |= hit;
            !hit
        })
        .collect();
    if found {
        let mut out = kept.join("\n");
        out.push('\n');
        std::fs::write(path, out)
            .map_err(|e| Fail(exit::RUNTIME, format!("{}: {e}", path.display())))?;
    }
    Ok(found)
}

/// The line of `workers` that `given` names: the line itself, or the one
/// line whose host is `given`'s host and whose user and port, where `given`
/// has them, are the same. `None` when no line matches; an error naming
/// the lines when several do.
fn line_of(lines: &[String], given: &str) -> std::result::Result<Option<String>, String> {
    if lines.iter().any(|l| l == given) {
        return Ok(Some(given.to_string()));
    }
    let want = WorkerHost::parse(given)?;
    let hits: Vec<&String> = lines
        .iter()
        .filter(|l| {
            WorkerHost::parse(l).is_ok_and(|h| {
                h.host.eq_ignore_ascii_case(&want.host)
                    && want
                        .user
                        .as_ref()
                        .is_none_or(|u| h.user.as_ref() == Some(u))
                    && want.port.is_none_or(|p| h.port == Some(p))
            })
        })
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.to_string())),
        many => Err(format!(
            "{given} matches several lines ({}); give the whole line",
            many.iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `workers remove HOST`: revoke at once, then stop and remove the agent
/// over SSH where the host answers.
pub(crate) async fn remove(
    d: &DaemonArgs,
    workers: Option<&Path>,
    given: &str,
) -> Result<exit::Code> {
    let sys_path = sys_path(d);
    let path = workers_path(workers, &sys_path);
    let lines = if path.is_file() {
        job::config::sys::load_workers(&path).map_err(|e| Fail(exit::USAGE, e.to_string()))?
    } else {
        Vec::new()
    };
    // The host as the README writes it, or the whole line; an agent
    // installed by hand is revoked by the name it was enrolled under.
    let line = match line_of(&lines, given) {
        Ok(Some(l)) => l,
        Ok(None) => given.to_string(),
        Err(why) => return Err(Fail(exit::USAGE, format!("{}: {why}", path.display()))),
    };
    let line = line.as_str();
    let conn = Conn::new(d);
    let (revoked, _): (Revoked, _) = conn
        .call(&Endpoint::Revoke(line.to_string()), None, None)
        .await?;
    println!(
        "{line}: key revoked ({} key(s)); {} task(s) back to pending",
        revoked.fingerprints.len(),
        revoked.tasks
    );
    if remove_line(&path, line)? {
        println!("{line}: removed from {}", path.display());
    }
    let a = DeployArgs::for_agents(d.clone(), workers.map(Path::to_path_buf));
    let host = WorkerHost::parse(line).map_err(|e| Fail(exit::USAGE, e))?;
    let plan = match plan(&a, Mode::Stop) {
        Ok(p) => p,
        Err(Fail(_, why)) => {
            println!("{line}: agent left in place: {why}");
            return Ok(exit::OK);
        }
    };
    let t = target(&plan, &host);
    match Session::connect(&t).await {
        Ok(s) => {
            let r = run(&s, &remote::uninstall(&plan.sys.agent_dir), None).await;
            s.close().await;
            match r {
                Ok(_) => println!("{line}: agent stopped and removed"),
                Err(why) => println!("{line}: agent not removed: {why}"),
            }
        }
        Err(e) => {
            println!("{line}: not reachable, agent left in place (its key no longer works): {e}")
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::line_of;

    #[test]
    fn workers_remove_takes_the_host_as_the_readme_writes_it() {
        let lines: Vec<String> = ["alice@10.0.0.1", "bob@10.0.0.2:2222", "10.0.0.3"]
            .map(String::from)
            .into();
        let of = |g: &str| line_of(&lines, g);
        assert_eq!(of("10.0.0.1").unwrap().as_deref(), Some("alice@10.0.0.1"));
        assert_eq!(
            of("alice@10.0.0.1").unwrap().as_deref(),
            Some("alice@10.0.0.1")
        );
        assert_eq!(
            of("10.0.0.2").unwrap().as_deref(),
            Some("bob@10.0.0.2:2222")
        );
        assert_eq!(
            of("bob@10.0.0.2").unwrap().as_deref(),
            Some("bob@10.0.0.2:2222")
        );
        assert_eq!(
            of("10.0.0.2:2222").unwrap().as_deref(),
            Some("bob@10.0.0.2:2222")
        );
        assert_eq!(
            of("root@10.0.0.3").unwrap(),
            None,
            "another user is another line"
        );
        assert_eq!(of("eve@10.0.0.1").unwrap(), None);
        assert_eq!(of("10.0.0.9").unwrap(), None);
        let twice: Vec<String> = ["a@h", "b@h"].map(String::from).into();
        let err = line_of(&twice, "h").unwrap_err();
        assert!(err.contains("a@h, b@h"), "{err}");
    }
}
