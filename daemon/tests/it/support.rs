//! Fixtures of the distributed tests: the real `ossimportd` and
//! `ossimport-agent` processes with their keys, and control calls through
//! the typed client; servers, relays, trees and polling come from the shared
//! `testkit`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use proto::control::Endpoint;
use serde::de::DeserializeOwned;
pub use testkit::net::Relay;
pub use testkit::s3::*;
pub use testkit::*;

/// The real `ossimportd`, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub work: PathBuf,
    pub socket: PathBuf,
    pub addr: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Creates the daemon key in `work` and returns its public key file.
    pub fn init(work: &Path) -> PathBuf {
        let out = Command::new(bin("ossimportd"))
            .arg("--init")
            .arg("--work-dir")
            .arg(work)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        work.join("daemon_ed25519.pub")
    }

    pub fn start(work: &Path, port: u16) -> Daemon {
        Daemon::start_at(work, &format!("127.0.0.1:{port}"))
    }

    /// Starts it with the agent API on `listen` (`ip:port`).
    pub fn start_at(work: &Path, listen: &str) -> Daemon {
        Daemon::start_with(work, listen, &[])
    }

    /// Like [`Daemon::start_at`] with extra flags.
    pub fn start_with(work: &Path, listen: &str, extra: &[&str]) -> Daemon {
        Daemon::start_env(work, listen, extra, &[])
    }

    /// Like [`Daemon::start_with`] with extra environment variables.
    pub fn start_env(work: &Path, listen: &str, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let socket = work.join("ossimportd.sock");
        let log = work.join(format!("daemon-{}.log", unique()));
        let child = Command::new(bin("ossimportd"))
            .arg("--work-dir")
            .arg(work)
            .arg("--socket")
            .arg(&socket)
            .arg("--listen")
            .arg(listen)
            // Short leases and timeouts unless the test gives its own.
            .args(
                (!extra.contains(&"--lease-secs"))
                    .then_some(["--lease-secs", "2"])
                    .into_iter()
                    .flatten(),
            )
            .args(
                (!extra.contains(&"--agent-timeout-ms"))
                    .then_some(["--agent-timeout-ms", "1500"])
                    .into_iter()
                    .flatten(),
            )
            // These tests are about agents: no worker on the master unless
            // a test asks for one.
            .args(
                (!extra.contains(&"--local-worker"))
                    .then_some(["--local-worker", "off"])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
            .envs(env.iter().copied())
            .env("OSSIMPORT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn ossimportd");
        let d = Daemon {
            child,
            work: work.to_path_buf(),
            socket,
            addr: listen.to_string(),
            log,
        };
        wait_for("the daemon's socket", 30, || {
            api_try::<serde_json::Value>(&d.socket, Endpoint::Version, None).is_ok()
        });
        d
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn submit(&self, job_cfg: &Path) -> serde_json::Value {
        api(
            &self.socket,
            Endpoint::Submit,
            Some(
                serde_json::to_value(proto::api::SubmitRequest::new(
                    job_cfg.display().to_string(),
                    &std::fs::read(job_cfg).unwrap(),
                    None,
                ))
                .unwrap(),
            ),
        )
    }

    pub fn job(&self, name: &str) -> proto::api::JobStatus {
        api(&self.socket, Endpoint::Job(name.to_string()), None)
    }

    pub fn workers(&self) -> proto::api::WorkerList {
        api(&self.socket, Endpoint::Workers, None)
    }

    /// Polls until the job is succeed or failed.
    pub fn wait_job(&self, name: &str, secs: u64) -> proto::api::JobStatus {
        let mut last = None;
        wait_for(&format!("job {name} to finish"), secs, || {
            let s = self.job(name);
            let done = s.state.is_finished();
            last = Some(s);
            done
        });
        last.unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The real `ossimport-agent`, killed when dropped.
pub struct Agent {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

pub struct AgentOpts<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub daemon_addr: &'a str,
    pub daemon_pub: &'a Path,
    pub listen: String,
    /// Defaults to `listen`.
    pub advertise: Option<String>,
    pub tasks: u32,
    /// Prefix of the command (e.g. `ip netns exec h1`).
    pub wrap: Vec<String>,
}

impl Agent {
    /// Creates the agent key and enrols it in the daemon's work directory.
    pub fn enrol(dir: &Path, name: &str, work: &Path) -> PathBuf {
        let key = dir.join(format!("{name}_ed25519"));
        let out = Command::new(bin("ossimport-agent"))
            .arg("--init")
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(work.join("agent_keys"))
            .unwrap();
        let pubkey: Vec<&str> = line.split_whitespace().take(2).collect();
        writeln!(f, "{} {name}", pubkey.join(" ")).unwrap();
        key
    }

    pub fn start(o: AgentOpts<'_>) -> Agent {
        Agent::start_beating(o, 200)
    }

    /// Like [`Agent::start`], with a heartbeat every `heartbeat_ms`.
    pub fn start_beating(o: AgentOpts<'_>, heartbeat_ms: u64) -> Agent {
        let key = o.dir.join(format!("{}_ed25519", o.name));
        let secrets = o.dir.join(format!("{}_secrets", o.name));
        proto::auth::write_private(&secrets, format!("{AK}={SK}\n").as_bytes()).unwrap();
        let log = o.dir.join(format!("{}-{}.log", o.name, unique()));
        let mut cmd = match o.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin("ossimport-agent"));
                c
            }
            None => Command::new(bin("ossimport-agent")),
        };
        cmd.arg("--key")
            .arg(&key)
            .arg("--daemon")
            .arg(o.daemon_addr)
            .arg("--daemon-key")
            .arg(o.daemon_pub)
            .arg("--listen")
            .arg(&o.listen)
            .arg("--advertise")
            .arg(o.advertise.unwrap_or_else(|| o.listen.clone()))
            .arg("--name")
            .arg(o.name)
            .arg("--tasks")
            .arg(o.tasks.to_string())
            .arg("--secrets")
            .arg(&secrets)
            .arg("--heartbeat-ms")
            .arg(heartbeat_ms.to_string())
            .arg("--allow-root")
            .arg(o.dir)
            .env("OSSIMPORT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("spawn ossimport-agent");
        Agent {
            child,
            name: o.name.to_string(),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One control call through the typed client ctl uses.
pub fn api_try<T: DeserializeOwned>(
    socket: &Path,
    ep: Endpoint,
    body: Option<serde_json::Value>,
) -> Result<T, String> {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    let mut client = proto::control::Client::new(socket);
    client.timeout = Duration::from_secs(60);
    rt().block_on(client.call::<T>(&ep, None, body))
        .map(|(t, _)| t)
        .map_err(|e| e.to_string())
}

pub fn api<T: DeserializeOwned>(socket: &Path, ep: Endpoint, body: Option<serde_json::Value>) -> T {
    api_try(socket, ep.clone(), body)
        .unwrap_or_else(|e| panic!("{} {}: {e}", ep.method(), ep.path()))
}

/// A job file for a local source into an S3 bucket, tasks of `per_task`
/// objects.
pub fn job_cfg(
    dir: &Path,
    name: &str,
    src: &Path,
    endpoint: &str,
    bucket: &str,
    per_task: u32,
) -> PathBuf {
    let path = dir.join(format!("{name}.cfg"));
    let text = format!(
        "jobName={name}\nsrcType=local\nsrcPrefix={}/\ndestDomain={endpoint}\ndestBucket={bucket}\n\
         destAccessKey={AK}\ndestSecretKey={SK}\ntaskObjectCountLimit={per_task}\n",
        src.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Opens the job store read-only (the daemon may be running: WAL allows it).
pub fn store(work: &Path) -> daemon::store::Store {
    daemon::store::Store::open_read_only(&work.join(daemon::state::STORE_FILE)).expect("open store")
}

/// A daemon with its observation port (`--metrics-listen`), one agent with
/// two task slots, and a job of `files` files of `size` bytes from a local
/// tree into a local directory (tasks of 20), planned with `sys`.
pub struct OneAgentJob {
    pub tmp: tempfile::TempDir,
    pub daemon: Daemon,
    pub agent: Agent,
    /// `host:port` of `/metrics` and the status page.
    pub metrics: String,
    pub job: &'static str,
    pub src: PathBuf,
    pub cfg: PathBuf,
    pub sys: Vec<u8>,
}

impl OneAgentJob {
    pub fn start(files: usize, size: usize, sys: &[u8], job: &'static str) -> OneAgentJob {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let daemon_pub = Daemon::init(&work);
        let metrics = format!("127.0.0.1:{}", free_port());
        let daemon = Daemon::start_with(
            &work,
            &format!("127.0.0.1:{}", free_port()),
            &["--metrics-listen", &metrics],
        );
        Agent::enrol(tmp.path(), "a1", &work);
        let agent = Agent::start(AgentOpts {
            name: "a1",
            dir: tmp.path(),
            daemon_addr: &daemon.addr,
            daemon_pub: &daemon_pub,
            listen: format!("127.0.0.1:{}", free_port()),
            advertise: None,
            tasks: 2,
            wrap: Vec::new(),
        });
        let src = tmp.path().join("src");
        tree(&src, files, size);
        let dest = tmp.path().join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        let cfg = tmp.path().join("job.cfg");
        std::fs::write(
            &cfg,
            format!(
                "jobName={job}\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\ntaskObjectCountLimit=20\n",
                src.display(),
                dest.display()
            ),
        )
        .unwrap();
        OneAgentJob {
            tmp,
            daemon,
            agent,
            metrics,
            job,
            src,
            cfg,
            sys: sys.to_vec(),
        }
    }

    /// Submits the job with its `sys.properties`.
    pub fn submit(&self) {
        let _: serde_json::Value = api(
            &self.daemon.socket,
            Endpoint::Submit,
            Some(
                serde_json::to_value(proto::api::SubmitRequest::new(
                    self.cfg.display().to_string(),
                    &std::fs::read(&self.cfg).unwrap(),
                    Some(&self.sys),
                ))
                .unwrap(),
            ),
        );
    }
}
