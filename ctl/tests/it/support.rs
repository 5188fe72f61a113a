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
