//! Where `ossimportctl run` keeps its job store when no `--work-dir` or
//! `workingDir` says: the per-user state directory, so the same command
//! typed in another directory resumes the same job instead of silently
//! starting over; a store an earlier version left in the current
//! directory is still found; and a rerun's summary tells what this run did
//! apart from what the job holds.

use std::path::Path;
use std::process::Output;

use crate::support::*;

fn run_in(cfg: &Path, cwd: &Path, env: &[(&str, &Path)], extra: &[&str]) -> Output {
    std::fs::create_dir_all(cwd).unwrap();
    let out = ctl()
        .arg("run")
        .arg(cfg)
        .args(extra)
        .current_dir(cwd)
        .env_remove("XDG_STATE_HOME")
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .output()
        .unwrap();
    eprintln!("{}\n{}", stdout(&out), stderr(&out));
    out
}

#[test]
fn the_same_command_from_another_directory_resumes_the_same_job() {
    let s3 = S3Server::start();
    let rt = rt();
    rt.block_on(s3.create_bucket("state"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 12, 1000);
    let cfg = job_cfg(tmp.path(), "statejob", &src, &s3.endpoint, "state", "");
    let home = tmp.path().join("home");

    // First run from a/: the store goes to ~/.local/state/ossimport.
    let out = run_in(&cfg, &tmp.path().join("a"), &[("HOME", &home)], &[]);
    assert_eq!(out.status.code(), Some(0));
    let store = home.join(".local/state/ossimport/ossimport.db");
    assert!(store.is_file(), "no job store at {}", store.display());
    assert!(
        stderr(&out).contains(&format!("(state in {})", store.display())),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("a/ossimport.db").exists());

    // From b/: the same job, nothing copied again, and the summary says so.
    let out = run_in(&cfg, &tmp.path().join("b"), &[("HOME", &home)], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("resuming: 12 objects known"),
        "{}",
        stderr(&out)
    );
    let text = squash(&stdout(&out));
    assert!(
        text.contains("this run: copied 0 objects (0 B), skipped 0 (0 B), failed 0; the job held 12 verified or skipped before"),
        "{text}"
    );
    assert!(text.contains("verified 12 of 12"), "{text}");

    // XDG_STATE_HOME wins over HOME.
    let xdg = tmp.path().join("xdg");
    let out = run_in(
        &cfg,
        &tmp.path().join("b"),
        &[("HOME", &home), ("XDG_STATE_HOME", &xdg)],
        &["--clean"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(xdg.join("ossimport/ossimport.db").is_file());

    // A sys.properties next to the job file without workingDir changes
    // nothing.
    std::fs::write(tmp.path().join("sys.properties"), "sshPort=22\n").unwrap();
    let d = tmp.path().join("d");
    let out = run_in(&cfg, &d, &[("HOME", &home)], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("resuming: 12 objects known"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("ossimport.db").exists());

    // A store an earlier version left in the current directory is used
    // where it is.
    let c = tmp.path().join("c");
    let out = run_in(&cfg, &c, &[("HOME", &home)], &["--work-dir", "."]);
    assert_eq!(out.status.code(), Some(0));
    let out = run_in(&cfg, &c, &[("HOME", &home)], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("note: using the job store of statejob in the current directory"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("resuming: 12 objects known"),
        "{}",
        stderr(&out)
    );
}
