//! The daemon as an operator runs it: detached with pid and log files, one
//! per socket, and a clean stop on SIGTERM.

use std::process::Command;

use crate::support::*;

#[test]
fn detaches_refuses_a_second_instance_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let port = free_port();
    let out = Command::new(bin("ossimportd"))
        .arg("--daemon")
        .arg("--work-dir")
        .arg(&work)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let socket = work.join("ossimportd.sock");
    wait_for("the detached daemon", 30, || {
        api_try::<serde_json::Value>(&socket, proto::control::Endpoint::Version, None).is_ok()
    });
    let pid: u32 = std::fs::read_to_string(work.join("ossimportd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let second = Command::new(bin("ossimportd"))
        .arg("--work-dir")
        .arg(&work)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another ossimportd is already listening"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_for("the daemon to exit", 30, || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(!socket.exists(), "the socket file was left behind");
    let log = std::fs::read_to_string(work.join("ossimportd.log")).unwrap();
    assert!(log.contains("Daemon ready."), "{log}");
    assert!(log.contains("Daemon stopped; job store closed."), "{log}");
}

#[test]
fn ctl_starts_and_stops_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("ossimportd.sock");
    let ctl = |verb: &str| {
        let out = Command::new(bin("ossimportctl"))
            .arg(verb)
            .arg("--socket")
            .arg(&socket)
            .current_dir(tmp.path())
            .env("OSSIMPORT_LISTEN", format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        )
    };
    assert_eq!(ctl("stat").2, Some(3));
    let (out, err, code) = ctl("start");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Start import service completed.\n");
    assert_eq!(ctl("start").0, "ossimportd is already running.\n");
    let (out, _, code) = ctl("version");
    assert_eq!(code, Some(0));
    assert!(out.contains("ossimportd 0"), "{out}");
    let (out, err, code) = ctl("stop");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "Stop import service completed.\n");
    assert!(!socket.exists());
    assert_eq!(ctl("stat").2, Some(3));
}

/// A throw-away system user and group, removed when dropped.
struct TestUser {
    user: String,
    group: String,
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // A confined worker of the user's may outlive its daemon by a moment.
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.user])
            .status();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _ = Command::new("userdel").arg(&self.user).status();
        let _ = Command::new("groupdel").arg(&self.group).status();
    }
}

/// `--socket-group`: a user who is in the group only as a supplementary
/// group (the socket's peer credentials carry the primary gid alone) is let
/// in; a user outside it is not. Before, only the primary gid was compared
/// and the member got 403.
#[test]
fn socket_group_members_by_supplementary_group_are_let_in() {
    if !root_or_skip("creating a user and a group") {
        return;
    }
    let u = test_user(&format!("{:x}", std::process::id()));
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in [tmp.path(), work.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Daemon::init(&work);
    let d = Daemon::start_with(
        &work,
        &format!("127.0.0.1:{}", free_port()),
        &["--socket-group", &u.group],
    );
    let ask = |user: &str| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={user}"),
                "--regid=nogroup",
                "--init-groups",
            ])
            .arg(bin("ossimportctl"))
            .arg("workers")
            .arg("--socket")
            .arg(&d.socket)
            .output()
            .unwrap()
    };
    let member = ask(&u.user);
    assert!(
        member.status.success(),
        "{}",
        String::from_utf8_lossy(&member.stderr)
    );
    // What the member may make the daemon read: not its work directory,
    // not a file they cannot read themselves.
    let submit = |cfg: &std::path::Path| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={}", u.user),
                "--regid=nogroup",
                "--init-groups",
            ])
            .arg(bin("ossimportctl"))
            .arg("submit")
            .arg(cfg)
            .arg("--socket")
            .arg(&d.socket)
            .output()
            .unwrap()
    };
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o777)).unwrap();
    let steal = tmp.path().join("steal.cfg");
    std::fs::write(
        &steal,
        format!(
            "jobName=steal\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n",
            work.display(),
            dest.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&steal, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = submit(&steal);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("overlaps the daemon's work directory"),
        "{err}"
    );
    // A job file they cannot read: ctl reads it as them, and fails.
    std::fs::set_permissions(&steal, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = submit(&steal);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("cannot read: Permission denied"), "{err}");
    // A job file they can read that names a secret file they cannot: the
    // daemon (root) could read it, and refuses to use it for them.
    let secret = tmp.path().join("root-secret");
    std::fs::write(&secret, "s3cr3t\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let borrow = tmp.path().join("borrow.cfg");
    std::fs::write(
        &borrow,
        format!(
            "jobName=borrow\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\ndestSecretKeyFile={}\n",
            src.display(),
            dest.display(),
            secret.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&borrow, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = submit(&borrow);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("destSecretKeyFile: "), "{err}");
    assert!(err.contains("may not read it"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    assert!(
        api::<proto::api::JobList>(&d.socket, proto::control::Endpoint::ListJobs, None)
            .jobs
            .is_empty()
    );

    let outsider = ask("nobody");
    assert_eq!(
        outsider.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&outsider.stderr)
    );
}

/// The README's commands with the relative paths it writes, typed in the
/// master's directory (no agents: the daemon copies itself). Before:
/// `start --sys conf/sys.properties` handed the daemon a relative path it
/// then read from its work directory, so `submit ... --sys` exited 2 and
/// saved jobs did not reload; `submit conf/job.cfg` without `--sys` queued
/// the job in a second store in the current directory and said success;
/// the agent API ignored `daemonAddress`. And a socket file that nothing
/// answers on makes `submit` refuse instead of writing behind its back.
#[test]
fn relative_paths_from_the_masters_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (master, work) = (t.join("master"), t.join("work"));
    let conf = master.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let rels = tree(&t.join("src"), 6, 1000);
    let port = free_port();
    std::fs::write(
        conf.join("sys.properties"),
        format!(
            "workingDir={}\ndaemonAddress=127.0.0.1:{port}\n",
            work.display()
        ),
    )
    .unwrap();
    for name in ["rel1", "rel2", "rel3"] {
        std::fs::write(
            conf.join(format!("{name}.cfg")),
            format!(
                "jobName={name}\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n",
                t.join("src").display(),
                t.join(name).display()
            ),
        )
        .unwrap();
    }
    // Should the test fail with the daemon up: killed by its pid file.
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(self.0.join("ossimportd.pid")) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
    }
    let _cleanup = Cleanup(work.clone());
    let ctl = |args: &[&str]| {
        let out = Command::new(bin("ossimportctl"))
            .args(args)
            .current_dir(&master)
            .env_remove("OSSIMPORT_SOCKET")
            .env_remove("OSSIMPORT_SYS_PROPERTIES")
            .env_remove("OSSIMPORT_WORK_DIR")
            .env_remove("OSSIMPORT_LISTEN")
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        eprintln!("$ ossimportctl {}\n{text}", args.join(" "));
        (out.status.code().unwrap_or(-1), text)
    };
    let (code, out) = ctl(&["start", "--sys", "conf/sys.properties", "--local-only"]);
    assert_eq!(code, 0, "{out}");
    std::net::TcpStream::connect(("127.0.0.1", port))
        .expect("the agent API listens on daemonAddress");
    let (code, out) = ctl(&["submit", "conf/rel1.cfg", "--sys", "conf/sys.properties"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = ctl(&["submit", "conf/rel2.cfg"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("not running"), "queued offline: {out}");
    assert!(!master.join("ossimport.db").exists() && !conf.join("ossimport.db").exists());
    for job in ["rel1", "rel2"] {
        wait_for(job, 60, || {
            ctl(&["stat", "--legacy", job])
                .1
                .contains("JobState:Succeed")
        });
        for r in &rels {
            assert_eq!(
                std::fs::read(t.join("src").join(r)).unwrap(),
                std::fs::read(t.join(job).join(r)).unwrap(),
                "{job}: {r}"
            );
        }
    }
    // Stopped and started again: both saved jobs reload.
    assert_eq!(
        ctl(&["stop", "--sys", "conf/sys.properties", "--local-only"]).0,
        0
    );
    assert_eq!(
        ctl(&["start", "--sys", "conf/sys.properties", "--local-only"]).0,
        0
    );
    let (code, out) = ctl(&["stat"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rel1") && out.contains("rel2"), "{out}");
    assert_eq!(ctl(&["stop", "--local-only"]).0, 0);
    let log = std::fs::read_to_string(work.join("ossimportd.log")).unwrap();
    assert_eq!(log.matches("Reloaded job.").count(), 2, "{log}");
    assert!(!log.contains("Cannot reload"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour codes in the log file:\n{log}"
    );

    // A socket file with no daemon behind it (killed): submit refuses, says
    // which socket, and writes nothing.
    let socket = work.join("ossimportd.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let (code, out) = ctl(&["submit", "conf/rel3.cfg"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(&socket.display().to_string()), "{out}");
    assert!(
        out.contains("conf/sys.properties next to the job file"),
        "{out}"
    );
    assert!(store(&work).find_job("rel3").unwrap().is_none());
    // Without it, submit queues the job and names the store it wrote.
    std::fs::remove_file(&socket).unwrap();
    let (code, out) = ctl(&["submit", "conf/rel3.cfg"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&work.join("ossimport.db").display().to_string()),
        "{out}"
    );
}

/// A slow copy into a local directory whose job is cleaned, the source
/// rewritten and the job submitted again: the new copy lands and is
/// verified; the old one, still reading when its task was taken away,
/// never replaces it (its temporary is removed, nothing renamed). Before,
/// the rename happened inside the blocking copy, after its future was
/// dropped. (On that code the bandwidth was taken before the copy began,
/// so a cancelled copy stopped early and this exact run did not show it;
/// `storage::beneath`'s unit test `a_copy_overtaken_by_another_never_
/// replaces_it` shows the rename rule itself.)
#[test]
fn a_slow_local_copy_overtaken_by_clean_and_submit_never_replaces_the_new_file() {
    let s = OneAgentJob::start(1, 24 << 20, b"workerMaxThroughput(KB/s)=3072\n", "slowcopy");
    let dest = s.tmp.path().join("dest");
    let temps = || -> Vec<String> {
        let mut v = Vec::new();
        for e in walk(&dest) {
            let n = e.file_name().unwrap().to_string_lossy().into_owned();
            if n.starts_with(".ossimport-") {
                v.push(n);
            }
        }
        v
    };
    s.submit();
    wait_for("the slow copy to be under way", 30, || !temps().is_empty());
    std::thread::sleep(std::time::Duration::from_secs(1));
    let _: serde_json::Value = api(
        &s.daemon.socket,
        proto::control::Endpoint::Clean(s.job.to_owned()),
        None,
    );
    // The source changes; the job is submitted again, without the limit.
    let rel = walk(&s.src)
        .into_iter()
        .find(|p| p.is_file())
        .unwrap()
        .strip_prefix(&s.src)
        .unwrap()
        .to_path_buf();
    let new = bytes(77, 24 << 20);
    std::fs::write(s.src.join(&rel), &new).unwrap();
    let _: serde_json::Value = api(
        &s.daemon.socket,
        proto::control::Endpoint::Submit,
        Some(
            serde_json::to_value(proto::api::SubmitRequest::new(
                s.cfg.display().to_string(),
                &std::fs::read(&s.cfg).unwrap(),
                None,
            ))
            .unwrap(),
        ),
    );
    let st = s.daemon.wait_job(s.job, 60);
    assert_eq!(st.counts.verified, 1, "{st:?}");
    assert!(std::fs::read(dest.join(&rel)).unwrap() == new);
    // Long enough for the old copy (24 MiB at 3 MiB/s) to have ended.
    std::thread::sleep(std::time::Duration::from_secs(9));
    assert!(
        std::fs::read(dest.join(&rel)).unwrap() == new,
        "the old copy replaced the verified new file"
    );
    assert_eq!(temps(), Vec::<String>::new());
}

/// Every path below `dir` (files and directories).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// A system user in a new group, both removed when dropped.
fn test_user(tag: &str) -> TestUser {
    let u = TestUser {
        user: format!("ossimp-u{tag}"),
        group: format!("ossimp-g{tag}"),
    };
    assert!(
        Command::new("groupadd")
            .args(["--system", &u.group])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("useradd")
            .args([
                "--system", "-M", "-N", "-g", "nogroup", "-G", &u.group, &u.user
            ])
            .status()
            .unwrap()
            .success()
    );
    u
}

/// Roles: a member of `--socket-group` (by a supplementary group) is an
/// operator. It submits and manages its own job, sees root's job's state
/// and counts, and is refused, exit 6 with the role named, `set`, `pause`,
/// `clean`, `errors` and `report` on root's job, `stop`, `workers remove`
/// and enrolling an agent key. Every state-changing call is in the
/// control trail, which `report` shows. An agent name in use is not taken
/// over by enrolling another key under it. Before, every member of the
/// socket group was an administrator and an enrolment revoked the agent
/// of that name.
#[test]
fn operators_manage_their_own_jobs_and_are_refused_the_rest() {
    if !root_or_skip("creating a user and a group, and acting as that user") {
        return;
    }
    let u = test_user(&format!("r{:x}", std::process::id()));
    // An administrator by --admin-group, who reaches the socket through
    // the socket's group.
    let a = test_user(&format!("a{:x}", std::process::id()));
    assert!(
        Command::new("usermod")
            .args(["-a", "-G", &u.group, &a.user])
            .status()
            .unwrap()
            .success()
    );
    let tmp = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    Daemon::init(&work);
    let d = Daemon::start_with(
        &work,
        &format!("127.0.0.1:{}", free_port()),
        &["--socket-group", &u.group, "--admin-group", &a.group],
    );
    let src = tmp.path().join("src");
    small_tree(&src, 5);
    let job_file = |name: &str| {
        let dest = tmp.path().join(format!("dest-{name}"));
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cfg = tmp.path().join(format!("{name}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "jobName={name}\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n",
                src.display(),
                dest.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
        cfg
    };
    d.submit(&job_file("rootjob"));
    let as_who = |user: &str, args: &[&str]| {
        let o = Command::new("setpriv")
            .args([
                &format!("--reuid={user}"),
                "--regid=nogroup",
                "--init-groups",
            ])
            .arg(bin("ossimportctl"))
            .args(args)
            .arg("--socket")
            .arg(&d.socket)
            .output()
            .unwrap();
        eprintln!(
            "--- as {user}: {args:?} -> {:?}\n{}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let as_user = |args: &[&str]| as_who(&u.user, args);
    let mine = job_file("opjob");
    let o = as_user(&["submit", mine.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));

    // Its own job: every verb.
    for args in [
        &["pause", "opjob"][..],
        &["resume", "opjob"],
        &["set", "opjob", "workerTaskThreadNum=2"],
        &["errors", "opjob"],
        &["stat", "opjob"],
    ] {
        assert_eq!(as_user(args).status.code(), Some(0), "{args:?}");
    }
    assert_ne!(as_user(&["report", "opjob"]).status.code(), Some(6));
    // Root's job: state and counts only.
    assert_eq!(as_user(&["stat", "rootjob"]).status.code(), Some(0));
    let seen: serde_json::Value =
        serde_json::from_slice(&as_user(&["stat", "rootjob", "--json"]).stdout).unwrap();
    assert_eq!(seen["control"], serde_json::json!([]), "{seen}");
    for args in [
        &["set", "rootjob", "workerTaskThreadNum=1"][..],
        &["pause", "rootjob"],
        &["clean", "rootjob"],
        &["errors", "rootjob"],
        &["report", "rootjob"],
        &["retry", "rootjob"],
    ] {
        let o = as_user(args);
        assert_eq!(o.status.code(), Some(6), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("job rootjob was submitted by root (uid 0)")
                && err.contains("needs its owner or the administrator role"),
            "{err}"
        );
    }
    // The daemon and its agents: administrators only.
    for args in [&["stop", "--local-only"][..], &["workers", "remove", "h1"]] {
        let o = as_user(args);
        assert_eq!(o.status.code(), Some(6), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("needs the administrator role"),
            "{args:?}"
        );
    }
    let key = |name: &str| {
        let p = tmp.path().join(name);
        assert!(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&p)
                .status()
                .unwrap()
                .success()
        );
        std::fs::read_to_string(p.with_extension("pub")).unwrap()
    };
    let enrol = |k: &str| serde_json::json!({"public_key": k.trim(), "name": "h1"}).to_string();
    let (k1, k2) = (key("k1"), key("k2"));
    let raw = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nb=sys.argv[2].encode()\n\
         s.sendall(b'POST /v1/agents HTTP/1.1\\r\\nHost: d\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\nContent-Length: '+str(len(b)).encode()+b'\\r\\n\\r\\n'+b)\n\
         print(s.recv(65536).decode())\n";
    let o = Command::new("setpriv")
        .args([
            &format!("--reuid={}", u.user),
            "--regid=nogroup",
            "--init-groups",
            "python3",
            "-c",
            raw,
        ])
        .arg(&d.socket)
        .arg(enrol(&k1))
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&o.stdout);
    assert!(
        answer.starts_with("HTTP/1.1 403") && answer.contains("needs the administrator role"),
        "{answer}"
    );
    assert!(
        !std::fs::read_to_string(work.join("agent_keys"))
            .unwrap_or_default()
            .contains(k1.split_whitespace().nth(1).unwrap())
    );
    // Root enrols h1; another key under the same name is refused.
    let call = |body: String| {
        api_try::<serde_json::Value>(
            &d.socket,
            proto::control::Endpoint::Enrol,
            Some(serde_json::from_str(&body).unwrap()),
        )
    };
    call(enrol(&k1)).unwrap();
    let e = call(enrol(&k2)).unwrap_err();
    assert!(e.contains("enrolled with another key"), "{e}");
    let keys = std::fs::read_to_string(work.join("agent_keys")).unwrap();
    assert!(
        keys.contains(k1.split_whitespace().nth(1).unwrap()),
        "{keys}"
    );

    // The trail: who did what on the operator's job.
    let r = Command::new(bin("ossimportctl"))
        .args(["report", "opjob", "--socket"])
        .arg(&d.socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&r.stdout);
    for verb in ["submit", "pause", "resume", "set"] {
        assert!(
            text.contains(&format!("{verb} by {} (uid", u.user)),
            "{verb}: {text}"
        );
    }
    assert!(text.contains("workerTaskThreadNum=2"), "{text}");
    // A member of --admin-group acts on root's job.
    assert_eq!(
        as_who(&a.user, &["pause", "rootjob"]).status.code(),
        Some(0)
    );
    assert_eq!(
        as_who(&a.user, &["resume", "rootjob"]).status.code(),
        Some(0)
    );
    // And the operator may clean its own job.
    assert_eq!(as_user(&["clean", "opjob"]).status.code(), Some(0));
    let r = Command::new(bin("ossimportctl"))
        .args(["stat", "rootjob", "--json", "--socket"])
        .arg(&d.socket)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["owner"]["uid"], 0, "{v}");
    assert_eq!(v["control"][0]["verb"], "submit", "{v}");
}

/// What the daemon (root) reads for a member's job is held to what the
/// member could read, by the kernel: the worker on the master runs the
/// job's tasks in a child under the member's uid and groups (the file it
/// writes is the member's), and the listing runs with the member's
/// file-system ids. With `isAllowSymbolicLink=true`, a symlink in their
/// tree to a root-only file and one to the daemon's own key are not copied
/// (each object fails with the reason), a root-only directory in their
/// tree is not listed (its names appear nowhere), and when the source
/// directory is swapped for a symlink into the daemon's work directory
/// between two passes, the next pass is refused and copies nothing.
/// Before, both files were copied and the job succeeded, pass 2 copied the
/// daemon's key, and the root-only directory's names were listed.
#[test]
fn a_members_job_reads_only_what_the_member_could_read() {
    if !root_or_skip("creating a user and acting as that user") {
        return;
    }
    let u = test_user(&format!("c{:x}", std::process::id()));
    let tmp = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(tmp.path(), 0o755);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    Daemon::init(&work);
    let d = Daemon::start_env(
        &work,
        &format!("127.0.0.1:{}", free_port()),
        &["--socket-group", &u.group, "--local-worker", "on"],
        &[("OSSIMPORT_MIN_INCREMENTAL_INTERVAL", "1")],
    );
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    mode(&src, 0o755);
    std::fs::write(src.join("ok.txt"), b"mine").unwrap();
    mode(&src.join("ok.txt"), 0o644);
    let secret = tmp.path().join("root-only");
    std::fs::write(&secret, b"TOPSECRET").unwrap();
    mode(&secret, 0o600);
    std::os::unix::fs::symlink(&secret, src.join("leak")).unwrap();
    std::os::unix::fs::symlink(work.join("daemon_ed25519"), src.join("key")).unwrap();
    let private = src.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("hidden-name.txt"), b"x").unwrap();
    mode(&private, 0o700);
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    mode(&dest, 0o777);
    let cfg = tmp.path().join("conf.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=conf\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n\
             isAllowSymbolicLink=true\nisIncremental=true\nincrementalModeInterval=2\n",
            src.display(),
            dest.display()
        ),
    )
    .unwrap();
    mode(&cfg, 0o644);
    let o = Command::new("setpriv")
        .args([
            &format!("--reuid={}", u.user),
            "--regid=nogroup",
            "--init-groups",
        ])
        .arg(bin("ossimportctl"))
        .arg("submit")
        .arg(&cfg)
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let passes = || {
        d.job("conf")
            .incremental
            .map(|i| i.passes)
            .unwrap_or_default()
    };
    wait_for("pass 1 to end", 60, || {
        passes().first().is_some_and(|p| p.ended_at.is_some())
    });
    let st = d.job("conf");
    assert_eq!((st.counts.verified, st.counts.failed), (1, 3), "{st:?}");
    assert_eq!(std::fs::read(dest.join("ok.txt")).unwrap(), b"mine");
    // Written by the member's worker, not by root.
    use std::os::unix::fs::MetadataExt;
    let member_uid = Command::new("id").args(["-u", &u.user]).output().unwrap();
    let member_uid: u32 = String::from_utf8_lossy(&member_uid.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        std::fs::metadata(dest.join("ok.txt")).unwrap().uid(),
        member_uid
    );
    assert!(!dest.join("leak").exists() && !dest.join("key").exists());
    let errs: proto::api::ErrorList = api(
        &d.socket,
        proto::control::Endpoint::Errors("conf".into()),
        None,
    );
    assert_eq!(errs.failed.len(), 3, "{errs:?}");
    let of = |path: &str| {
        errs.failed
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("{path} not in {errs:?}"))
    };
    for link in ["leak", "key"] {
        let f = of(link);
        assert_eq!(f.code, "SOURCE_UNREADABLE", "{f:?}");
        assert!(f.message.contains("Permission denied"), "{f:?}");
    }
    let f = of("private/");
    assert_eq!(f.code, "LIST_ERROR", "{f:?}");
    assert!(f.message.contains("Permission denied"), "{f:?}");
    assert!(!format!("{errs:?}").contains("hidden-name"), "{errs:?}");

    // The member's worker is killed in the middle of a copy: its task goes
    // back to pending, a new worker (the member's again) copies it, and
    // nothing is counted twice or lost.
    let src2 = tmp.path().join("src2");
    std::fs::create_dir_all(&src2).unwrap();
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(src2.join("big.bin"), &big).unwrap();
    for p in [&src2, &src2.join("big.bin")] {
        mode(p, 0o755);
    }
    let dest2 = tmp.path().join("dest2");
    std::fs::create_dir_all(&dest2).unwrap();
    mode(&dest2, 0o777);
    // The sys.properties next to the job file slows its copies.
    let conf2 = tmp.path().join("slowjob");
    std::fs::create_dir_all(&conf2).unwrap();
    mode(&conf2, 0o755);
    let sys2 = conf2.join("sys.properties");
    std::fs::write(&sys2, "workerMaxThroughput(KB/s)=768\n").unwrap();
    mode(&sys2, 0o644);
    let cfg2 = conf2.join("job.cfg");
    std::fs::write(
        &cfg2,
        format!(
            "jobName=slow\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n",
            src2.display(),
            dest2.display()
        ),
    )
    .unwrap();
    mode(&cfg2, 0o644);
    let o = Command::new("setpriv")
        .args([
            &format!("--reuid={}", u.user),
            "--regid=nogroup",
            "--init-groups",
        ])
        .arg(bin("ossimportctl"))
        .arg("submit")
        .arg(&cfg2)
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let worker_pid = || {
        let o = Command::new("pgrep")
            .args(["-u", &u.user, "-f", "--", "--confined-worker"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    wait_for("the member's worker to copy", 30, || {
        !worker_pid().is_empty() && std::fs::read_dir(&dest2).unwrap().next().is_some()
    });
    let first = worker_pid();
    assert!(
        Command::new("kill")
            .args(["-KILL", &first])
            .status()
            .unwrap()
            .success()
    );
    let st = d.wait_job("slow", 60);
    assert_eq!(st.state, proto::api::JobState::Succeed, "{st:?}");
    assert_eq!((st.counts.verified, st.counts.failed), (1, 0), "{st:?}");
    assert_eq!(std::fs::read(dest2.join("big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::metadata(dest2.join("big.bin")).unwrap().uid(),
        member_uid
    );
    let again = worker_pid();
    assert!(!again.is_empty() && again != first, "{first} then {again}");

    // The source directory becomes a symlink into the daemon's work
    // directory: the next pass is refused and reads nothing there.
    std::fs::rename(&src, tmp.path().join("src.old")).unwrap();
    std::os::unix::fs::symlink(&work, &src).unwrap();
    wait_for("a later pass to be refused", 60, || {
        passes().iter().any(|p| p.number >= 2 && p.error.is_some())
    });
    let refused = passes()
        .into_iter()
        .find(|p| p.number >= 2 && p.error.is_some())
        .unwrap();
    let why = refused.error.unwrap();
    assert!(
        why.contains("srcPrefix") && why.contains("overlaps the daemon's work directory"),
        "{why}"
    );
    assert!(!dest.join("daemon_ed25519").exists());
    assert!(!dest.join("agent_keys").exists());
}
