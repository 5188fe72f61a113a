//! Fixtures every crate's tests share: real servers on 127.0.0.1 ([`s3`],
//! [`net`]), the workspace's binaries, source trees, polling and the rule
//! for tests that need root.
//!
//! Dev-only: no production crate depends on it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

pub mod azure;
pub mod net;
pub mod s3;

/// The S3 test servers' keys.
pub const AK: &str = "testkey";
/// The S3 test servers' fixed secret key, which must never cross the wire
/// to an agent or appear in a log.
pub const SK: &str = "testsecret";

/// The workspace root (`OSSIMPORT_REPO_ROOT`, set by `scripts/test.sh`).
pub fn repo_root() -> PathBuf {
    match std::env::var_os("OSSIMPORT_REPO_ROOT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

/// A binary of the workspace (`ossimportd`, `ossimport-agent`,
/// `ossimportctl`) from the target directory the running test was built
/// into. Tests never build: `cargo nextest run --workspace` (what
/// `scripts/test.sh` runs) builds every binary first, because every
/// package with one has integration tests. A missing binary is a panic
/// that says so.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo nextest run --workspace` (scripts/test.sh), which builds every binary",
        path.display()
    );
    path
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// For a test that needs root (`why` says for what): true when we are
/// root. Otherwise the test is skipped with a visible reason, unless
/// `OSSIMPORT_TEST_ROOT=1` says the run must include it (CI as root), in
/// which case it fails, so a run that claims root tests cannot pass
/// without them.
pub fn root_or_skip(why: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("OSSIMPORT_TEST_ROOT").is_none_or(|v| v != "1"),
        "OSSIMPORT_TEST_ROOT=1 but not root: cannot run a test that needs root ({why})"
    );
    eprintln!("skipped: not root; {why} needs root (set OSSIMPORT_TEST_ROOT=1 to fail instead)");
    false
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

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Collapses runs of whitespace, so assertions do not depend on column widths.
pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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
