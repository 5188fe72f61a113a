//! `ossimportctl` against a daemon: the original's `stat` block for a running
//! and a finished job, the other verbs, and the errors when the daemon is
//! not running or the socket is not ours.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use proto::api::{BatchAccepted, TaskBatch, agent_path};
use proto::auth::Signer;
use tokio_util::sync::CancellationToken;

use crate::support::{ctl, stderr, stdout};

/// An in-process `ossimportd` on a temp work directory.
struct Daemon {
    rt: tokio::runtime::Runtime,
    stop: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    work: PathBuf,
    socket: PathBuf,
    agents_addr: String,
}

impl Daemon {
    fn start(work: &Path) -> Daemon {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let socket = work.join("ossimportd.sock");
        let mut config = daemon::state::Config::new(work, None);
        config.lease = Duration::from_secs(2);
        config.tick = Duration::from_millis(100);
        let stop = CancellationToken::new();
        let (handle, agents_addr) = rt.block_on(async {
            let ctl = tokio::net::UnixListener::from_std(
                daemon::server::bind_socket(&socket, None).unwrap(),
            )
            .unwrap();
            let agents = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = agents.local_addr().unwrap().to_string();
            let listeners = daemon::server::Listeners {
                ctl,
                agents,
                metrics: None,
            };
            let h = tokio::spawn(daemon::server::run(
                config,
                listeners,
                stop.clone().cancelled_owned(),
            ));
            (h, addr)
        });
        let d = Daemon {
            rt,
            stop,
            handle: Some(handle),
            work: work.to_path_buf(),
            socket,
            agents_addr,
        };
        poll("the daemon", || {
            d.ctl(&["version"]).0.contains("ossimportd 0")
        });
        d
    }

    /// Runs `ossimportctl <args> --socket S`: (stdout, stderr, exit code).
    fn ctl(&self, args: &[&str]) -> (String, String, i32) {
        let out = ctl()
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .unwrap();
        (stdout(&out), stderr(&out), out.status.code().unwrap_or(-1))
    }

    fn daemon_key(&self) -> proto::auth::PublicKey {
        let text = std::fs::read_to_string(self.work.join("daemon_ed25519.pub")).unwrap();
        proto::auth::parse_public_keys(&text).unwrap().remove(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            let _ = self.rt.block_on(h);
        }
    }
}

fn poll(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_daemon_that_is_not_running_gets_one_line_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    // (`submit` is not among them: without a daemon it queues the job.)
    for verb in [&["stat"][..], &["workers"], &["clean", "x"]] {
        let out = ctl()
            .args(verb)
            .arg("--socket")
            .arg(tmp.path().join("none.sock"))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{verb:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("ossimportd is not running"), "{err}");
        assert!(err.contains("ossimportctl start"), "{err}");
    }
    // `submit --wait` queues the job, then says there is nothing to wait
    // for yet: exit 3, as the verbs above.
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = ctl()
        .args(["submit", "--wait"])
        .arg(local_job(tmp.path()))
        .arg("--socket")
        .arg(work.join("ossimportd.sock"))
        .output()
        .unwrap();
    let (out_text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(3), "{out_text}{err}");
    assert!(
        out_text.contains("the job is queued in the job store"),
        "{out_text}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("job legacy is queued, but no daemon runs it yet"),
        "{err}"
    );
}

/// Writes a local-to-local job of four files in two tasks.
fn local_job(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        std::fs::write(src.join(format!("f{i}")), vec![b'x'; 1000 + i]).unwrap();
    }
    let cfg = dir.join("job.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=legacy\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\ntaskObjectCountLimit=2\n",
            src.display(),
            dir.join("dest").display()
        ),
    )
    .unwrap();
    cfg
}

/// A stand-in agent with the key `key` that accepts every batch from the
/// daemon `daemon` and runs nothing, so a task stays dispatched for as
/// long as the test heartbeats for it.
fn idle_agent(
    rt: &tokio::runtime::Runtime,
    key: &Signer,
    daemon: &proto::auth::PublicKey,
) -> (String, CancellationToken) {
    let daemon_fp = proto::auth::fingerprint(daemon);
    let tls = proto::tls::server_config(key, Arc::new(move |k: &str| k == daemon_fp)).unwrap();
    let stop = CancellationToken::new();
    let addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let handler: proto::server::Handler = Arc::new(|req| {
            Box::pin(async move {
                let b: TaskBatch = serde_json::from_slice(&req.body).unwrap();
                proto::server::json(
                    StatusCode::OK,
                    &BatchAccepted {
                        accepted: b.tasks.iter().map(|t| t.task_id).take(1).collect(),
                    },
                )
            })
        });
        tokio::spawn(proto::server::serve_tcp(
            l,
            handler,
            proto::server::Limits {
                max_body: 1 << 20,
                max_connections: 4,
                max_per_peer: 4,
                request_deadline: Duration::from_secs(10),
                drain: Duration::from_secs(1),
                gate: None,
                tls: Some(tls),
            },
            stop.clone(),
        ));
        addr
    });
    (addr, stop)
}

/// A real agent (in this process) with the key `agent_key` under `dir`,
/// named `a1`, running until the returned token is cancelled.
fn real_agent(
    d: &Daemon,
    dir: &Path,
) -> (
    tokio::task::JoinHandle<anyhow::Result<()>>,
    CancellationToken,
) {
    let agent_stop = CancellationToken::new();
    let daemon_key = proto::auth::parse_public_keys(
        &std::fs::read_to_string(d.work.join("daemon_ed25519.pub")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let l =
        d.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
    let config = agent::server::Config {
        name: "a1".into(),
        daemon_addr: d.agents_addr.clone(),
        daemon_key,
        advertise: l.local_addr().unwrap().to_string(),
        capacity: 2,
        heartbeat: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
        drain: Duration::from_secs(2),
        secrets: Default::default(),
        allow_roots: agent::roots::Roots::new(&[dir.to_path_buf()]).unwrap(),
    };
    let signer = Signer::load(&dir.join("agent_key")).unwrap();
    let agent = d.rt.spawn(agent::server::run(
        config,
        signer,
        l,
        agent_stop.clone().cancelled_owned(),
    ));
    (agent, agent_stop)
}

/// A daemon under `dir/work` that trusts the key `dir/agent_key` (named
/// `a1`), and that key.
fn daemon_with_agent_key(dir: &Path) -> (Daemon, Signer) {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let key = Signer::load_or_generate(&dir.join("agent_key"), "a1").unwrap();
    std::fs::write(
        work.join("agent_keys"),
        format!("{} a1\n", key.public_key_openssh()),
    )
    .unwrap();
    (Daemon::start(&work), key)
}

#[test]
fn legacy_stat_matches_the_original_for_running_and_finished_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, key) = daemon_with_agent_key(tmp.path());
    let (out, _, code) = d.ctl(&["stat", "--legacy"]);
    assert_eq!(
        (out.as_str(), code),
        ("no jobs is running or finished.\n", 0)
    );

    let cfg = local_job(tmp.path());
    let (out, err, code) = d.ctl(&["submit", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("submit job:{}\nsubmit job:legacy success!\n", cfg.display())
    );
    let (_, err, code) = d.ctl(&["submit", cfg.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");

    // One task dispatched to an agent that sits on it.
    let daemon_key = d.daemon_key();
    let (addr, idle_stop) = idle_agent(&d.rt, &key, &daemon_key);
    let tls = proto::tls::client_config(&key, &daemon_key).unwrap();
    let heartbeat = |running: Vec<i64>| {
        let body = serde_json::to_vec(&proto::api::Heartbeat {
            name: "a1".into(),
            addr: addr.clone(),
            capacity: 1,
            running,
            fingerprint: key.fingerprint().into(),
            bytes: 0,
            version: String::new(),
            ..Default::default()
        })
        .unwrap();
        let (status, _) =
            d.rt.block_on(proto::client::send(
                &proto::client::Target::Tls {
                    addr: d.agents_addr.clone(),
                    from: None,
                    config: Arc::clone(&tls),
                },
                Method::POST,
                agent_path::HEARTBEAT,
                &[],
                body,
                Duration::from_secs(10),
            ))
            .unwrap();
        assert_eq!(status, StatusCode::OK);
    };
    let mut task = 0;
    poll("a task dispatched", || {
        heartbeat(vec![]);
        let (json, _, _) = d.ctl(&["stat", "legacy", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        match v["running_tasks"][0]["task_id"].as_i64() {
            Some(t) if v["scan_done"] == true => {
                task = t;
                true
            }
            _ => false,
        }
    });
    heartbeat(vec![task]);
    let (out, _, code) = d.ctl(&["stat", "--legacy"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "-------------- job stats ---------------\n\
             ---------------- job stat ------------------\n\
             JobName:legacy\n\
             JobState:Running\n\
             PendingTasks:1\n\
             DispatchedTasks:1\n\
             RunningTasks:1\n\
             SucceedTasks:0\n\
             FailedTasks:0\n\
             ScanFinished:true\n\
             RunningTasks Progress:\n\
             {task}:0/2001 0/2\n\
             ----------------------------------------\n"
        )
    );
    let (out, _, _) = d.ctl(&["workers"]);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.lines().next().unwrap().contains("RATE"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("a1 ") && l.contains(" up ")),
        "{out}"
    );

    // The stand-in goes away; a real agent with the same key takes over
    // once the lease runs out.
    idle_stop.cancel();
    let (agent, agent_stop) = real_agent(&d, tmp.path());
    poll("the job to finish", || {
        d.ctl(&["stat", "--legacy"]).0.contains("JobState:Succeed")
    });
    let (out, _, code) = d.ctl(&["stat", "--legacy", "legacy"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "-------------- job stats ---------------\n\
         ---------------- job stat ------------------\n\
         JobName:legacy\n\
         JobState:Succeed\n\
         PendingTasks:0\n\
         DispatchedTasks:0\n\
         RunningTasks:0\n\
         SucceedTasks:2\n\
         FailedTasks:0\n\
         ScanFinished:true\n\
         RunningTasks Progress:\n\
         ----------------------------------------\n"
    );
    // A finished job: --watch draws once, with a full bar, and ends.
    let (out, _, code) = d.ctl(&["stat", "--watch", "legacy"]);
    assert_eq!(code, 0);
    assert!(out.contains("succeed"), "{out}");
    assert!(out.contains("100.0%"), "{out}");
    let (out, _, code) = d.ctl(&["report", "legacy"]);
    assert_eq!(code, 0, "{out}");
    let (out, _, code) = d.ctl(&["errors", "legacy"]);
    assert_eq!((out.as_str(), code), ("job legacy: no failed objects\n", 0));
    let (out, _, code) = d.ctl(&["clean", "legacy"]);
    assert_eq!(code, 0, "{out}");
    let (first, second) = out.split_once('\n').unwrap();
    assert!(
        first.starts_with("delete jobs dir:") && first.ends_with("/jobs/1/"),
        "{out}"
    );
    assert!(
        !Path::new(&first["delete jobs dir:".len()..]).exists(),
        "{out}"
    );
    assert_eq!(second, "Clean job:legacy completed.\n");
    let (_, err, code) = d.ctl(&["stat", "legacy"]);
    assert_eq!(code, 2, "{err}");
    agent_stop.cancel();
    let _ = d.rt.block_on(agent);
}

/// `submit --wait` returns once the job has ended, with its exit code: a
/// job that succeeds (0, its counts), one with an object that fails (1,
/// where to look), the status as JSON, and an incremental job, which never
/// ends, refused once submitted.
#[test]
fn submit_wait_returns_when_the_job_ends_with_its_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, _key) = daemon_with_agent_key(tmp.path());
    let (agent, agent_stop) = real_agent(&d, tmp.path());
    let cfg = local_job(tmp.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    // The same job under another name, into a directory of its own.
    let variant = |name: &str, extra: &str| {
        let p = tmp.path().join(format!("{name}.cfg"));
        let cfg = text
            .replace("jobName=legacy", &format!("jobName={name}"))
            .replace("/dest/", &format!("/dest-{name}/"));
        std::fs::write(&p, cfg + extra).unwrap();
        p
    };
    let (out, err, code) = d.ctl(&["submit", "--wait", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("job legacy succeed: 4 verified (3.9 KiB), 0 skipped, 0 failed in "),
        "{out}"
    );
    assert_eq!(
        d.ctl(&["stat", "--legacy", "legacy"]).0.lines().nth(3),
        Some("JobState:Succeed")
    );

    // A name no key may have (a line feed) fails its object; the others
    // are copied, and the job ends failed.
    std::fs::write(tmp.path().join("src/bad\nname"), b"x").unwrap();
    let failing = variant("failing", "");
    let (out, err, code) = d.ctl(&["submit", "--wait", failing.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}\n{err}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("job failing failed: 4 verified")
            && last.contains(", 1 failed in ")
            && last.ends_with("(ossimportctl errors failing)"),
        "{out}"
    );

    // --json: the job's status at its end, one document.
    let json = variant("as_json", "");
    let (out, err, code) = d.ctl(&["submit", "--wait", "--json", json.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "failed", "{out}");
    assert_eq!(
        (
            v["counts"]["verified"].as_u64(),
            v["counts"]["failed"].as_u64()
        ),
        (Some(4), Some(1)),
        "{out}"
    );
    assert_eq!(v["counts"]["tasks_dispatched"], 0, "{out}");

    let inc = variant(
        "increments",
        "isIncremental=true\nincrementalModeInterval=900\n",
    );
    let (out, err, code) = d.ctl(&["submit", "--wait", inc.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("submit job:increments success!"), "{out}");
    assert!(
        err.contains("job increments is incremental and never ends")
            && err.contains("ossimportctl sync increments --wait"),
        "{err}"
    );
    agent_stop.cancel();
    let _ = d.rt.block_on(agent);
}

/// The daemon holds at most 16 `submit --wait` answers at once, so waits
/// cannot take every connection of the control socket: the 17th is answered
/// at once (the caller asks again after a pause), and other verbs still
/// answer.
#[test]
fn held_waits_are_bounded_so_the_socket_stays_open() {
    use proto::control::{Client, Endpoint};
    let tmp = tempfile::tempdir().unwrap();
    let (d, _key) = daemon_with_agent_key(tmp.path());
    let cfg = local_job(tmp.path());
    let (_, err, code) = d.ctl(&["submit", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // No agent ever comes: the job runs, and does not end.
    let client = Client::new(d.socket.clone());
    let ep = Endpoint::WaitEnd("legacy".into());
    let held: Vec<_> = (0..16)
        .map(|_| {
            let (c, ep) = (client.clone(), ep.clone());
            d.rt.spawn(async move { c.call::<serde_json::Value>(&ep, None, None).await })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "a wait was answered while the job ran"
    );
    let asked = std::time::Instant::now();
    let (st, _) =
        d.rt.block_on(client.call::<proto::api::JobStatus>(&ep, None, None))
            .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the 17th wait was held for {:?}",
        asked.elapsed()
    );
    assert_eq!(st.state, proto::api::JobState::Running);
    assert_eq!(d.ctl(&["stat", "legacy"]).2, 0);
    assert!(held.iter().all(|h| !h.is_finished()));
    for h in held {
        h.abort();
    }
}

#[test]
fn the_socket_refuses_other_users() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run ossimportctl as another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // Directories anyone may traverse: only the socket's own mode guards.
    use std::os::unix::fs::PermissionsExt;
    for p in [tmp.path(), &work] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let d = Daemon::start(&work);
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A copy the other user can run wherever the build directory is.
    let exe = tmp.path().join("ossimportctl");
    std::fs::copy(env!("CARGO_BIN_EXE_ossimportctl"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["stat", "--socket"])
        .arg(&d.socket)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    // The owner still gets in.
    assert_eq!(d.ctl(&["stat"]).2, 0);
}

/// Enrols the key `agent_key` under `dir` as `a1` in a new work directory.
fn enrolled_work(dir: &Path) -> PathBuf {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let key = Signer::load_or_generate(&dir.join("agent_key"), "a1").unwrap();
    std::fs::write(
        work.join("agent_keys"),
        format!("{} a1\n", key.public_key_openssh()),
    )
    .unwrap();
    work
}

#[test]
fn errors_and_report_page_through_thousands_of_failures() {
    const BAD: usize = 2_100;
    let tmp = tempfile::tempdir().unwrap();
    let work = enrolled_work(tmp.path());
    let (src, dest) = (tmp.path().join("src"), tmp.path().join("dest"));
    // Each bad file's name is taken by a directory at the destination.
    let mut bad = Vec::new();
    for i in 0..BAD {
        let name = format!("d{}/bad {i:05}", i % 7);
        std::fs::create_dir_all(src.join(&name).parent().unwrap()).unwrap();
        std::fs::write(src.join(&name), b"x").unwrap();
        std::fs::create_dir_all(dest.join(&name)).unwrap();
        bad.push(name);
    }
    bad.sort();
    for i in 0..3 {
        std::fs::write(src.join(format!("good{i}")), b"y").unwrap();
    }
    let cfg = tmp.path().join("many.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=many\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n",
            src.display(),
            dest.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&work);
    let (_, err, code) = d.ctl(&["submit", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (agent, agent_stop) = real_agent(&d, tmp.path());
    poll("the job to end", || {
        d.ctl(&["stat", "--legacy", "many"])
            .0
            .contains("JobState:Failed")
    });

    // A reader that stops after one line (`| head -1`) ends it quietly.
    let mut child = ctl()
        .args(["errors", "many", "--socket"])
        .arg(&d.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, "code\tpath\treason\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");

    // All of them, fetched a page at a time, in path order.
    let (out, _, code) = d.ctl(&["errors", "many"]);
    assert_eq!(code, 1);
    let paths: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(paths, bad);
    assert!(
        out.lines().skip(1).all(|l| l.starts_with("DEST_ERROR\t")),
        "{out}"
    );

    // Page by page with --limit and --after, as a script would.
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["errors", "many", "--limit", "1000"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let (out, err, _) = d.ctl(&args);
        let page: Vec<String> = out
            .lines()
            .skip(1)
            .map(|l| l.split('\t').nth(1).unwrap().to_owned())
            .collect();
        assert!(page.len() <= 1000);
        got.extend(page);
        match err
            .lines()
            .find_map(|l| l.strip_prefix("more: ossimportctl errors many --after "))
        {
            Some(word) => after = Some(word.trim_matches('\'').to_owned()),
            None => break,
        }
    }
    assert_eq!(got, bad);

    // --json is one document, whatever the number of pages.
    let (out, _, _) = d.ctl(&["errors", "many", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["failed"].as_array().unwrap().len(), BAD);
    let (out, _, _) = d.ctl(&["errors", "many", "--json", "--limit", "7"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["failed"].as_array().unwrap().len(), 7);
    assert_eq!(v["next"], bad[6]);

    // The report shows the first failures and where to go on.
    let (out, _, code) = d.ctl(&["report", "many"]);
    assert_eq!(code, 1);
    assert_eq!(out.matches("DEST_ERROR").count(), 50, "{out}");
    assert!(
        out.contains("more: ossimportctl errors many --after 'd0/bad"),
        "{out}"
    );
    let (out, _, _) = d.ctl(&[
        "report", "many", "--json", "--limit", "3", "--after", &bad[0],
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["failed"][0]["path"], bad[1]);
    assert_eq!(v["counts"]["failed"], BAD as u64);
    let (_, err, code) = d.ctl(&["errors", "many", "--limit", "0"]);
    assert_eq!(code, 2, "{err}");
    agent_stop.cancel();
    let _ = d.rt.block_on(agent);
}

/// A job whose listing failed (its source bucket went away while it was
/// listed) is failed, with no object failed: `stat` says so, and `report`
/// exits 1 as `stat`'s state says, not 0 from the counts. Before, `report`
/// decided from the failed and pending counts alone and exited 0.
#[test]
fn report_exits_as_the_job_ended_when_its_listing_failed() {
    use testkit::net::{FaultProxy, Faults, Switch};
    use testkit::s3::S3Server;
    use testkit::{AK, SK};
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let d = Daemon::start(&work);
    let s3 = S3Server::start();
    d.rt.block_on(s3.create_bucket("source"));
    d.rt.block_on(s3.create_bucket("target"));
    // Listings take 2 s at the proxy, so the job's listing is in flight
    // when the link goes down.
    let (proxy, link) = d.rt.block_on(async {
        let proxy = FaultProxy::start(
            &s3.endpoint,
            Faults {
                list_delay: Duration::from_secs(2),
                ..Faults::default()
            },
        )
        .await;
        let link = Switch::start(&proxy.endpoint).await;
        (proxy, link)
    });
    let cfg = tmp.path().join("gone.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=gone\nsrcType=s3\nsrcDomain={}\nsrcBucket=source\nsrcPrefix=\n\
             srcAccessKey={AK}\nsrcSecretKey={SK}\ndestDomain={}\ndestBucket=target\n\
             destAccessKey={AK}\ndestSecretKey={SK}\nrequestAttempts=1\n",
            link.endpoint(),
            s3.endpoint
        ),
    )
    .unwrap();
    // `submit --wait` is waiting when the world changes under the job.
    let mut waiting = ctl()
        .args(["submit", "--wait", cfg.to_str().unwrap(), "--socket"])
        .arg(&d.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    poll("the job submitted", || d.ctl(&["stat", "gone"]).2 == 0);
    // Its listing is held at the proxy: the job runs, and so does the wait.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "submit --wait returned while the job ran"
    );
    link.down();
    let waited = waiting.wait_with_output().unwrap();
    let (out, err) = (stdout(&waited), stderr(&waited));
    assert_eq!(waited.status.code(), Some(1), "{out}\n{err}");
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("job gone failed: 0 verified") && last.contains("; listing failed: "),
        "{out}"
    );
    assert!(
        d.ctl(&["stat", "--legacy", "gone"])
            .0
            .contains("JobState:Failed")
    );
    let (out, err, code) = d.ctl(&["report", "gone"]);
    eprintln!("{out}");
    assert!(out.contains("job gone (failed)"), "{out}");
    assert!(out.contains("listing failed: "), "{out}");
    assert_eq!(code, 1, "{out}\n{err}");
    let (stat, _, _) = d.ctl(&["stat", "gone"]);
    eprintln!("{stat}");
    assert!(stat.contains("listing failed: "), "{stat}");
    drop(proxy);
}
