//! Azurite (the Azure Storage emulator, npm package `azurite`, installed
//! pinned by `scripts/setup-test-deps.sh` into `.tools/azurite`): its blob
//! service on a free port of 127.0.0.1 with telemetry off, stopped when
//! dropped; account SAS tokens signed with the well-known emulator key.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};

use crate::repo_root;

/// The emulator's account and key (public, the same in every Azurite).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT/devstoreaccount1`: the account's blob endpoint.
    pub endpoint: String,
    pub port: u16,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Azurite {
    pub fn start() -> Azurite {
        let bin = repo_root().join(".tools/azurite/node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "{} missing: run scripts/setup-test-deps.sh",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--location"])
            .arg(dir.path())
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite-blob");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut port = None;
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            if let Some(rest) = line.split("listens on http://127.0.0.1:").nth(1) {
                port = rest.trim().parse::<u16>().ok();
                break;
            }
        }
        let port = port.expect("azurite-blob did not say where it listens");
        // Keep reading so the emulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Azurite {
            child,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
            port,
        }
    }

    /// An account SAS for the blob service with `permissions` (`rl`:
    /// read and list; `rwlc`: also write and create), valid until 2099.
    pub fn sas(&self, permissions: &str) -> String {
        let (version, expiry) = ("2021-08-06", "2099-01-01T00:00:00Z");
        let to_sign = format!("{ACCOUNT}\n{permissions}\nb\nsco\n\n{expiry}\n\n\n{version}\n\n");
        let key = STANDARD.decode(KEY).unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        let sig: String = sig
            .bytes()
            .map(|b| match b {
                b'+' => "%2B".to_string(),
                b'/' => "%2F".to_string(),
                b'=' => "%3D".to_string(),
                b => (b as char).to_string(),
            })
            .collect();
        format!("sv={version}&ss=b&srt=sco&sp={permissions}&se={expiry}&sig={sig}")
    }

    /// A PUT with a SAS that may write and create, and `headers` (each
    /// ending in CRLF); asserts the answer's status.
    fn put(&self, path_query: &str, headers: &str, status: u16, what: &str) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "PUT /{ACCOUNT}/{path_query}&{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             x-ms-version: 2021-08-06\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.sas("rwlc"),
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {}",
            answer.lines().next().unwrap_or_default()
        );
    }

    /// Creates a container.
    pub fn create_container(&self, name: &str) {
        self.put(
            &format!("{name}?restype=container"),
            "",
            201,
            &format!("creating container {name}"),
        );
    }

    /// Sets a blob's stored `Content-MD5` (base64), as a client that
    /// uploaded it with a wrong one would have (Set Blob Properties; the
    /// content type is set again, as the call clears what it omits).
    pub fn set_content_md5(&self, container: &str, blob: &str, md5_b64: &str) {
        self.put(
            &format!("{container}/{blob}?comp=properties"),
            &format!(
                "x-ms-blob-content-md5: {md5_b64}\r\nx-ms-blob-content-type: application/octet-stream\r\n"
            ),
            200,
            &format!("setting Content-MD5 of {blob}"),
        );
    }

    /// An `object_store` client of a container, by the account key.
    pub fn store(&self, container: &str) -> MicrosoftAzure {
        MicrosoftAzureBuilder::new()
            .with_account(ACCOUNT)
            .with_access_key(KEY)
            .with_container_name(container)
            .with_endpoint(self.endpoint.clone())
            .with_allow_http(true)
            .build()
            .unwrap()
    }
}
