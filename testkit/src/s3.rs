//! S3-compatible servers on 127.0.0.1, started by the test that needs them
//! and stopped when dropped: SeaweedFS, moto (a second implementation whose
//! answers differ in places) and an OSS front (OSS's own answers); and a
//! path-style client with the test keys.

use std::process::Command;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use crate::{AK, SK, repo_root};

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
        client_for(&self.endpoint)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        create_bucket(&self.client(), bucket).await
    }

    /// Copies the tree under `dir` into `bucket` (keys: `prefix` + the
    /// relative paths) straight through SeaweedFS's filer (`weed
    /// filer.copy`), many times faster than a PUT per object: for tests
    /// that need hundreds of thousands of objects to list. The objects have
    /// no MD5 ETag.
    pub fn fill_from_dir(&self, dir: &std::path::Path, bucket: &str, prefix: &str) {
        let env = std::fs::read_to_string(self.dir.path().join("s3.env")).expect("s3.env");
        let port = env
            .lines()
            .find_map(|l| l.strip_prefix("PORT_FILER="))
            .expect("PORT_FILER in s3.env")
            .trim()
            .to_string();
        let weed = repo_root().join(".venv/bin/weed");
        let target = format!("http://127.0.0.1:{port}/buckets/{bucket}/{prefix}");
        // filer.copy copies the directory itself: copy each entry of it.
        let entries: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .collect();
        let out = Command::new(weed)
            .args(["filer.copy", "-c", "16"])
            .args(&entries)
            .arg(&target)
            .output()
            .expect("weed filer.copy");
        assert!(
            out.status.success(),
            "weed filer.copy to {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

pub async fn create_bucket(client: &Client, bucket: &str) {
    client
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
        create_bucket(&self.client(), bucket).await
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        OssFront::start_with(upstream, &["--throttle-every", &throttle_every.to_string()])
    }

    /// With `scripts/oss-front.py`'s options `args`.
    pub fn start_with(upstream: &str, args: &[&str]) -> OssFront {
        use std::io::BufRead;
        let python = repo_root().join(".venv/bin/python");
        let mut child = Command::new(python)
            .arg(repo_root().join("scripts/oss-front.py"))
            .args(["--upstream", upstream, "--port", "0"])
            .args(args)
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
