//! Test fixtures for distributed mode: an S3 server, the real `ossimportd`
//! and `ossimport-agent` processes with their keys, a capturing TCP relay,
//! and polling helpers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
pub use proto::control::Endpoint;
use serde::de::DeserializeOwned;

pub const AK: &str = "testkey";
/// The S3 test server's fixed secret key, which must never cross the wire.
pub const SK: &str = "testsecret";

pub fn repo_root() -> PathBuf {
    match std::env::var_os("OSSIMPORT_REPO_ROOT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A binary of the workspace. `ossimportd` is this package's; the agent and
/// the ctl tool are other packages', which `cargo test -p daemon` does not
/// build, so the first use in a test process runs `cargo build` for them (a
/// no-op when they are up to date).
pub fn bin(name: &str) -> PathBuf {
    let daemon = PathBuf::from(env!("CARGO_BIN_EXE_ossimportd"));
    if name == "ossimportd" {
        return daemon;
    }
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "agent", "--bin", "ossimport-agent"])
            .args(["-p", "ctl", "--bin", "ossimportctl"]);
        if daemon.components().any(|c| c.as_os_str() == "release") {
            cmd.arg("--release");
        }
        let st = cmd
            .current_dir(repo_root())
            .status()
            .expect("cargo build agent and ctl");
        assert!(
            st.success(),
            "building ossimport-agent and ossimportctl failed"
        );
    });
    daemon.with_file_name(name)
}

/// A SeaweedFS S3 server on 127.0.0.1, stopped when dropped.
pub struct S3Server {
    dir: tempfile::TempDir,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(repo_root().join("scripts/s3-server.sh"))
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("run s3-server.sh");
        assert!(
            out.status.success(),
            "starting the S3 test server failed (run scripts/setup-test-deps.sh first): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let endpoint = stdout
            .lines()
            .find_map(|l| l.strip_prefix("S3_ENDPOINT="))
            .expect("S3_ENDPOINT line")
            .trim()
            .to_string();
        S3Server { dir, endpoint }
    }

    pub fn client(&self) -> Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(AK, SK, None, None, "test"))
            .force_path_style(true)
            .build();
        Client::from_conf(conf)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/s3-server.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
        let socket = work.join("ossimportd.sock");
        let log = work.join(format!("daemon-{}.log", unique()));
        let child = Command::new(bin("ossimportd"))
            .arg("--work-dir")
            .arg(work)
            .arg("--socket")
            .arg(&socket)
            .arg("--listen")
            .arg(listen)
            .arg("--lease-secs")
            .arg("2")
            .arg("--agent-timeout-ms")
            .arg("1500")
            // These tests are about agents: no worker on the master unless
            // a test asks for one.
            .args(
                (!extra.contains(&"--local-worker"))
                    .then_some(["--local-worker", "off"])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
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
            .arg("200")
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

/// Polls `f` every 50 ms until it holds; panics after `secs`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// `n` files of `len` bytes under `root`; returns their relative paths.
pub fn tree(root: &Path, n: usize, len: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let rel = format!("d{}/f{i:03}.bin", i % 4);
            let p = root.join(&rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes(i as u64, len + i)).unwrap();
            rel
        })
        .collect()
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

pub async fn create_bucket(c: &Client, bucket: &str) {
    c.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
}

pub async fn list_keys(c: &Client, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = c
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => break,
        }
    }
    keys.sort();
    keys
}

/// Opens the job store read-only (the daemon may be running: WAL allows it).
pub fn store(work: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        work.join("ossimport.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open store")
}

/// A TCP relay that records every byte passing through it in both
/// directions: what a capture of the link would see.
pub struct Relay {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<u8>>>,
    /// While set, bytes read are held instead of passed on (a link that
    /// stalls, then delivers everything late).
    pub hold: Arc<std::sync::atomic::AtomicBool>,
    /// How many more connections are let through (negative: all); past
    /// that, new connections are closed at once (a peer that went down).
    pub allow: Arc<std::sync::atomic::AtomicI64>,
}

impl Relay {
    pub fn start(target: String) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let hold = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = Arc::clone(&hold);
        let allow = Arc::new(std::sync::atomic::AtomicI64::new(-1));
        let r = Arc::clone(&allow);
        // Detached: the relay lives as long as the test process.
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                let left = r.load(std::sync::atomic::Ordering::SeqCst);
                if left == 0 {
                    drop(client);
                    continue;
                }
                if left > 0 {
                    r.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let s = Arc::clone(&s);
                    let h = Arc::clone(&h);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => {
                                    let _ = to.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    while h.load(std::sync::atomic::Ordering::SeqCst) {
                                        std::thread::sleep(std::time::Duration::from_millis(10));
                                    }
                                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            }
        });
        Relay {
            addr,
            seen,
            hold,
            allow,
        }
    }

    pub fn contains(&self, needle: &[u8]) -> bool {
        self.seen
            .lock()
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    }

    pub fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Lets `n` more connections through, then refuses (negative: all).
    pub fn set_allow(&self, n: i64) {
        self.allow.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set_hold(&self, on: bool) {
        self.hold.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
