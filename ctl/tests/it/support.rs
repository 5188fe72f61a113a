//! Fixtures of `ossimportctl run`'s tests: job files, running the binary
//! (also as an unprivileged user) and reading back what it wrote; the
//! servers, trees and polling come from the shared `testkit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use daemon::store::{ObjectRow, ObjectState, Store};
pub use testkit::s3::*;
pub use testkit::*;

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

/// A job file as the tests write them: a name, one source, one
/// destination and any other keys, in the order given; setting a key again
/// replaces it.
pub struct JobFile {
    keys: Vec<(String, String)>,
}

impl JobFile {
    pub fn new(name: &str) -> JobFile {
        JobFile {
            keys: vec![("jobName".into(), name.into())],
        }
    }

    pub fn set(mut self, key: &str, value: impl std::fmt::Display) -> JobFile {
        let value = value.to_string();
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => self.keys.push((key.into(), value)),
        }
        self
    }

    /// `srcType=local` below `dir`.
    pub fn local_source(self, dir: &Path) -> JobFile {
        self.set("srcType", "local")
            .set("srcPrefix", format!("{}/", dir.display()))
    }

    /// `srcType=http` from a list of `prefix relative-path` lines.
    pub fn url_list(self, list: &Path) -> JobFile {
        self.set("srcType", "http")
            .set("httpListFilePath", list.display())
            .set("httpPrefixColumn", 1)
            .set("relativePathColumn", 2)
    }

    /// `srcType=s3`: `prefix` of `bucket` at `endpoint`, the test keys.
    pub fn bucket_source(self, endpoint: &str, bucket: &str, prefix: &str) -> JobFile {
        self.set("srcType", "s3")
            .set("srcDomain", endpoint)
            .set("srcBucket", bucket)
            .set("srcPrefix", prefix)
            .set("srcAccessKey", AK)
            .set("srcSecretKey", SK)
    }

    /// Into `bucket` at `endpoint`, the test keys.
    pub fn bucket_dest(self, endpoint: &str, bucket: &str) -> JobFile {
        self.set("destDomain", endpoint)
            .set("destBucket", bucket)
            .set("destAccessKey", AK)
            .set("destSecretKey", SK)
    }

    /// `destType=local` into `dir`.
    pub fn local_dest(self, dir: &Path) -> JobFile {
        self.set("destType", "local").set("destDir", dir.display())
    }

    /// The file's text.
    pub fn text(&self) -> String {
        self.keys
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    /// Writes it to `path`.
    pub fn write_to(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.text()).unwrap();
        path.to_path_buf()
    }

    /// Writes it to `dir/<jobName>.cfg`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        self.write_to(&dir.join(format!("{}.cfg", self.keys[0].1)))
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
    let text = JobFile::new(name)
        .local_source(src)
        .bucket_dest(endpoint, bucket)
        .text();
    std::fs::write(&path, format!("{text}{extra}\n")).unwrap();
    path
}

pub fn ctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ossimportctl"));
    c.env_remove("OSSIMPORT_SYS_PROPERTIES")
        .env_remove("OSSIMPORT_WORK_DIR");
    c
}

/// Starts `ossimportctl run` in the background, its output discarded (for
/// tests that kill it part-way).
pub fn spawn_quiet_run(cfg: &Path, work: &Path) -> std::process::Child {
    ctl()
        .arg("run")
        .arg(cfg)
        .arg("--work-dir")
        .arg(work)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ossimportctl run")
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

/// The job store a run left in `work`, read through `daemon::store` (the
/// run may still be writing it).
pub fn store(work: &Path) -> Store {
    Store::open_read_only(&work.join(daemon::state::STORE_FILE)).expect("open store")
}

/// Every object the store in `work` holds.
pub fn objects(work: &Path) -> Vec<ObjectRow> {
    store(work).objects().expect("read objects")
}

/// The object at `rel`.
pub fn object(work: &Path, rel: &str) -> ObjectRow {
    objects(work)
        .into_iter()
        .find(|o| o.rel_path == rel)
        .unwrap_or_else(|| panic!("{rel} is not in the job store"))
}

/// Waits (up to 120 s) until `holds` is true of the job store in `work`.
pub fn wait_for_store(work: &Path, what: &str, mut holds: impl FnMut(&Store) -> bool) {
    wait_for(what, 120, || {
        work.join(daemon::state::STORE_FILE).exists()
            && Store::open_read_only(&work.join(daemon::state::STORE_FILE)).is_ok_and(|s| holds(&s))
    });
}

/// Waits until the store in `work` has recorded at least `n` parts.
pub fn wait_for_parts(work: &Path, n: u64) {
    wait_for_store(work, "recorded parts", |s| {
        s.recorded_parts().is_ok_and(|p| p >= n)
    });
}
