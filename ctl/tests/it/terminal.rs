//! The progress display as a person sees it: `ossimportctl run` in a real
//! terminal (tmux), with a bar for the bytes and one per large file; plain
//! lines when stderr is not a terminal; nothing with `--quiet`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-L")
        .arg(socket)
        .args(args)
        .output()
        .expect("tmux is installed by scripts/setup-test-deps.sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops the tmux server of a test however the test ends.
struct Tmux(String);

impl Drop for Tmux {
    fn drop(&mut self) {
        tmux(&self.0, &["kill-server"]);
    }
}

fn slow_job(tmp: &Path, endpoint: &str) -> std::path::PathBuf {
    let src = tmp.join("src");
    small_tree(&src, 20);
    big_file(&src.join("videos/big-one.mp4"), 24);
    big_file(&src.join("videos/big-two.mp4"), 24);
    std::fs::write(
        tmp.join("sys.properties"),
        "workerMaxThroughput(KB/s)=6144\nworkerTaskThreadNum=4\n",
    )
    .unwrap();
    job_cfg(
        tmp,
        "bars",
        &src,
        endpoint,
        "bkt",
        "multipartUploadThreshold=8m\nmultipartUploadPartSize=5m\nuploadThreadNumPerLargeFile=2",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_shows_a_bar_for_the_bytes_and_one_per_large_file() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = slow_job(tmp.path(), &s3.endpoint);
    let socket = format!("ossimport-test-{}", std::process::id());
    let _server = Tmux(socket.clone());
    let done = tmp.path().join("done");
    let cmd = format!(
        "env -u OSSIMPORT_WORK_DIR -u OSSIMPORT_SYS_PROPERTIES {} run {} --sys {} --work-dir {}; touch {}; sleep 600",
        env!("CARGO_BIN_EXE_ossimportctl"),
        cfg.display(),
        tmp.path().join("sys.properties").display(),
        tmp.path().join("work").display(),
        done.display()
    );
    tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-x",
            "150",
            "-y",
            "12",
            "-s",
            "run",
            &cmd,
        ],
    );
    // While the large files upload: the main bar and a bar for each.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut during = String::new();
    while Instant::now() < deadline && !done.exists() {
        let pane = tmux(&socket, &["capture-pane", "-p", "-t", "run"]);
        let file_bars = pane
            .lines()
            .filter(|l| l.contains("big-") && l.contains("MiB/24.00 MiB"))
            .count();
        if file_bars == 2 && pane.contains("ETA") {
            during = pane;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !during.is_empty(),
        "no large-file bars seen:\n{}",
        tmux(&socket, &["capture-pane", "-p", "-t", "run"])
    );
    eprintln!("--- during the run:\n{during}");
    let main = during
        .lines()
        .find(|l| l.contains("ETA"))
        .expect("the main bar");
    assert!(main.contains("] ") && main.contains("MiB/"), "{main}");
    assert!(
        main.contains("objects ") && main.contains("verified "),
        "{main}"
    );
    assert!(main.contains("MiB/s"), "{main}");
    for name in ["videos/big-one.mp4", "videos/big-two.mp4"] {
        let bar = during.lines().find(|l| l.contains(name)).expect(name);
        assert!(bar.contains("[") && bar.contains("/24.00 MiB"), "{bar}");
    }
    // At the end: the bars give way to the summary, no file bar is left.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !done.exists() {
        assert!(Instant::now() < deadline, "the run did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = tmux(&socket, &["capture-pane", "-p", "-t", "run"]);
    eprintln!("--- at the end:\n{after}");
    assert!(after.contains("job bars succeeded"), "{after}");
    assert!(after.contains("objects 22/22"), "{after}");
    assert!(!after.lines().any(|l| l.contains("big-one.mp4")), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_lines_and_with_quiet_nothing() {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    s3.create_bucket("bkt2").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_tree(&src, 10);
    let cfg = job_cfg(tmp.path(), "plain", &src, &s3.endpoint, "bkt", "");
    let out = run_job(&cfg, &tmp.path().join("w1"));
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("progress: objects 10/10"), "{err}");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err}");

    let cfg = job_cfg(tmp.path(), "quiet", &src, &s3.endpoint, "bkt2", "");
    let out = ctl()
        .args(["run", "--quiet", "--work-dir"])
        .arg(tmp.path().join("w2"))
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert!(stdout(&out).contains("job quiet succeeded"));
}
