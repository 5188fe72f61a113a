//! Test fixtures: an S3 server per test, job files, source trees, and
//! helpers to run the binary and read back what it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

pub const AK: &str = "testkey";
pub const SK: &str = "testsecret";

pub fn repo_root() -> PathBuf {
    match std::env::var_os("OSSIMPORT_REPO_ROOT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

/// A SeaweedFS S3 server on 127.0.0.1, stopped when dropped.
pub struct S3Server {
    dir: tempfile::TempDir,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = repo_root().join("scripts/s3-server.sh");
        let out = Command::new(&script)
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
        client_for(&self.endpoint)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        create_bucket(&self.endpoint, bucket).await
    }
}

/// A path-style client with the test keys.
pub fn client_for(endpoint: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(AK, SK, None, None, "test"))
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

pub async fn create_bucket(endpoint: &str, bucket: &str) {
    client_for(endpoint)
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
}

/// A moto S3 server (`moto_server` from the project's venv) on 127.0.0.1:
/// a second S3 implementation, written by others, whose answers differ from
/// SeaweedFS's in places. Killed when dropped.
pub struct MotoServer {
    child: std::process::Child,
    pub endpoint: String,
}

impl MotoServer {
    pub fn start() -> MotoServer {
        let bin = repo_root().join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/setup-test-deps.sh",
            bin.display()
        );
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start moto_server");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken after all; try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return MotoServer {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    };
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start");
    }

    pub fn client(&self) -> Client {
        client_for(&self.endpoint)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        create_bucket(&self.endpoint, bucket).await
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ossimportctl run` as user nobody when we are root (root reads
/// everything, so permission tests need another user); `dirs` are opened
/// up for it to traverse, and `work` to write.
pub fn run_job_unprivileged(cfg: &Path, work: &Path, dirs: &[&Path]) -> Output {
    if !is_root() {
        return run_job(cfg, work);
    }
    use std::os::unix::fs::PermissionsExt;
    for d in dirs {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir_all(work).unwrap();
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_ossimportctl"))
        .arg("run")
        .arg(cfg)
        .arg("--work-dir")
        .arg(work)
        .env_remove("OSSIMPORT_SYS_PROPERTIES")
        .env_remove("OSSIMPORT_WORK_DIR")
        .output()
        .expect("setpriv");
    eprintln!("--- as nobody\n{}\n{}", stdout(&o), stderr(&o));
    o
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let script = repo_root().join("scripts/s3-server.sh");
        let _ = Command::new(script)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// Writes a job file for a local source into an S3 bucket; `extra` lines
/// are appended (later keys must not repeat earlier ones).
pub fn job_cfg(
    dir: &Path,
    name: &str,
    src: &Path,
    endpoint: &str,
    bucket: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.cfg"));
    let text = format!(
        "jobName={name}\nsrcType=local\nsrcPrefix={}/\ndestDomain={endpoint}\ndestBucket={bucket}\n\
         destAccessKey={AK}\ndestSecretKey={SK}\n{extra}\n",
        src.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn ctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ossimportctl"));
    c.env_remove("OSSIMPORT_SYS_PROPERTIES")
        .env_remove("OSSIMPORT_WORK_DIR");
    c
}

pub fn run_job(cfg: &Path, work: &Path) -> Output {
    let out = ctl()
        .arg("run")
        .arg(cfg)
        .arg("--work-dir")
        .arg(work)
        .output()
        .expect("run ossimportctl");
    eprintln!(
        "--- ossimportctl run {} -> {:?}\n{}\n{}",
        cfg.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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

/// Writes a big file in 1 MiB chunks without holding it in memory.
pub fn big_file(path: &Path, mib: usize) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..mib {
        f.write_all(&bytes(i as u64 + 1000, 1 << 20)).unwrap();
    }
    f.flush().unwrap();
}

/// A tree of `n` small files in nested directories, with 0-byte files and
/// names with spaces and non-ASCII UTF-8. Returns relative paths.
pub fn small_tree(root: &Path, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let rel = match i % 10 {
            0 => format!("d{}/empty {i}.txt", i % 7),
            1 => format!("d{}/sub {}/naïve café {i}.txt", i % 7, i % 3),
            2 => format!("日本語/データ {i}.bin"),
            _ => format!("d{}/s{}/deep/f{i}.dat", i % 7, i % 11),
        };
        let len = if i % 10 == 0 { 0 } else { (i * 37) % 5000 + 1 };
        let p = root.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes(i as u64, len)).unwrap();
        out.push(rel);
    }
    out
}

/// Every key under `prefix` in the bucket.
pub async fn list_keys(client: &Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
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

pub async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// Opens the job store read-only.
pub fn store(work: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        work.join("ossimport.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open store")
}

/// Collapses runs of whitespace, so assertions do not depend on column widths.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `scripts/oss-front.py` before an S3 server: answers as OSS does where it
/// differs from S3 (upper-case quoted ETags, `x-oss-hash-crc64ecma`, no
/// `x-amz-checksum-*` or aws-chunked bodies, some requests 503 with
/// `x-oss-qos-delay-time`). Killed when dropped.
pub struct OssFront {
    child: std::process::Child,
    pub endpoint: String,
}

impl OssFront {
    pub fn start(upstream: &str, throttle_every: u32) -> OssFront {
        use std::io::BufRead;
        let python = repo_root().join(".venv/bin/python");
        let mut child = Command::new(python)
            .arg(repo_root().join("scripts/oss-front.py"))
            .args(["--upstream", upstream, "--port", "0"])
            .args(["--throttle-every", &throttle_every.to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start oss-front.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .trim()
            .strip_prefix("OSS_ENDPOINT=")
            .unwrap_or_else(|| panic!("oss-front.py said {line:?}"))
            .to_string();
        OssFront { child, endpoint }
    }
}

impl Drop for OssFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to 120 s) until `query` on the job store gives at least `min`.
pub fn wait_for_query(work: &Path, what: &str, query: &str, min: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if work.join("ossimport.db").exists()
            && let Ok(n) = store(work).query_row(query, [], |r| r.get::<_, i64>(0))
            && n >= min
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
