//! When the tests run as root: `ossimportctl deploy` against real OpenSSH
//! servers, each in its own network namespace. One host logs in by key, one
//! by password, one shows a host key other than the one known (refused, and
//! its row says why), one address answers nothing. Deploy brings the
//! reachable ones up, a job is shared by the deployed agents, `workers
//! remove` cuts one off mid-job (its next request is 401, its tasks finish
//! on the other), and deploying again changes nothing. No secret appears in
//! any process's command line or environment (sampled all along), in any
//! log or in the output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use proto::api::JobState;

use crate::netns::Net;
use crate::support::*;

/// Throw-away login users, removed (with their homes) when dropped.
pub struct Users(pub Vec<String>);

impl Drop for Users {
    fn drop(&mut self) {
        for u in &self.0 {
            let _ = Command::new("pkill").args(["-9", "-u", u]).status();
            let _ = Command::new("userdel").args(["-r", "-f", u]).output();
        }
    }
}

/// sshd processes, killed when dropped (the namespaces go with `Net`).
pub struct Sshds(pub Vec<Child>);

impl Drop for Sshds {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A detached process, killed through its pid file when dropped.
struct PidFileGuard(PathBuf);

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
    }
}

/// The hosts of the SSH tests: `n` network namespaces, when this runs as
/// root with OpenSSH's sshd installed; `None` (skipped, saying why) otherwise,
/// and a failure instead under `OSSIMPORT_TEST_ROOT=1`.
pub fn ssh_hosts_or_skip(n: usize) -> Option<Net> {
    if !root_or_skip("network namespaces, login users and sshd") {
        return None;
    }
    let strict = std::env::var_os("OSSIMPORT_TEST_ROOT").is_some_and(|v| v == "1");
    if !Path::new("/usr/sbin/sshd").exists() {
        assert!(
            !strict,
            "OSSIMPORT_TEST_ROOT=1 but /usr/sbin/sshd is missing (scripts/setup-test-deps.sh installs openssh-server)"
        );
        eprintln!("skipped: /usr/sbin/sshd missing (scripts/setup-test-deps.sh installs it)");
        return None;
    }
    match Net::create(n) {
        Ok(net) => Some(net),
        Err(e) => {
            assert!(
                !strict,
                "OSSIMPORT_TEST_ROOT=1 but network namespaces cannot be created: {e}"
            );
            eprintln!("skipped: cannot create network namespaces here: {e}");
            None
        }
    }
}

/// Starts sshd number `i` in the namespace of host `i`, with its own host
/// key, config, pid file and log (`sshd{i}.log`) in `dir`; returns the host
/// key's public half. Only `users` may log in, never root.
pub fn start_sshd(
    sshds: &mut Sshds,
    net: &Net,
    i: usize,
    dir: &Path,
    users: &[String],
    passwords: bool,
) -> PathBuf {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let hk = dir.join(format!("hostkey{i}"));
    keygen(&hk);
    let cfg = dir.join(format!("sshd{i}.conf"));
    std::fs::write(
        &cfg,
        format!(
            "Port 22\nListenAddress {addr}\nHostKey {hk}\nPidFile {d}/sshd{i}.pid\nUsePAM no\n\
             PasswordAuthentication {pw}\nPubkeyAuthentication yes\nKbdInteractiveAuthentication no\n\
             PermitRootLogin no\nAllowUsers {users}\nStrictModes yes\n",
            addr = net.addr(i),
            hk = hk.display(),
            d = dir.display(),
            pw = if passwords { "yes" } else { "no" },
            users = users.join(" "),
        ),
    )
    .unwrap();
    sh(&format!("/usr/sbin/sshd -t -f {}", cfg.display()));
    let log = std::fs::File::create(dir.join(format!("sshd{i}.log"))).unwrap();
    sshds.0.push(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.names[i],
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    hk.with_extension("pub")
}

pub fn sh(cmd: &str) -> Output {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn keygen(path: &Path) -> String {
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -C '' -f {}",
        path.display()
    ));
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

/// Everything any process shows of itself: command lines and environments.
fn sample_procs(needles: &[String], hits: &Mutex<Vec<String>>) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        for what in ["cmdline", "environ"] {
            let Ok(bytes) = std::fs::read(e.path().join(what)) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            // The S3 test server's readiness probe (scripts/s3-server.sh,
            // started by tests running beside this one) signs with the test
            // credentials, which this test's job uses too: not a leak.
            if what == "cmdline" && text.contains("--aws-sigv4\0aws:amz:us-east-1:s3\0--user\0") {
                continue;
            }
            for n in needles {
                if text.contains(n.as_str()) {
                    hits.lock()
                        .unwrap()
                        .push(format!("pid {pid} {what}: {}", text.replace('\0', " ")));
                }
            }
        }
    }
}

pub struct Ctl {
    pub sys: PathBuf,
    pub job: PathBuf,
    pub known: PathBuf,
    pub out: Vec<String>,
}

impl Ctl {
    pub fn run(&mut self, args: &[&str]) -> (i32, String) {
        self.run_env(args, &[])
    }

    pub fn run_env(&mut self, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let out = Command::new(bin("ossimportctl"))
            .args(args)
            .arg("--sys")
            .arg(&self.sys)
            .env_remove("OSSIMPORT_SOCKET")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.out.push(text.clone());
        (out.status.code().unwrap_or(-1), text)
    }

    pub fn deploy(&mut self, extra: &[&str]) -> (i32, String) {
        let job = self.job.display().to_string();
        let known = self.known.display().to_string();
        let mut args = vec![
            "deploy",
            "--job",
            &job,
            "--known-hosts",
            &known,
            "--timeout",
            "30",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// The row of `host` in deploy's table.
pub fn row<'a>(table: &'a str, host: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(host) && l[host.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no row for {host} in:\n{table}"))
}

#[test]
fn deploy_over_ssh_to_hosts_in_namespaces() {
    let Some(net) = ssh_hosts_or_skip(3) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // Login users must reach their homes, the agents the source files.
    sh(&format!("chmod 755 {}", t.display()));
    let tag = std::process::id() % 100_000;
    let (ukey, upw) = (format!("oik{tag}"), format!("oip{tag}"));
    let password = format!("Pw-{tag}-dont-print-me");
    let users = Users(vec![ukey.clone(), upw.clone()]);
    for u in &users.0 {
        sh(&format!(
            "useradd -m -d {}/home-{u} -s /bin/sh {u}",
            t.display()
        ));
    }
    sh(&format!("echo '{upw}:{password}' | chpasswd"));
    // No password, but not locked (sshd without PAM refuses locked accounts).
    sh(&format!("usermod -p '*' {ukey}"));
    // The key user's authorized key; the deploy side's private key.
    let client_key = t.join("deploy_ed25519");
    let client_pub = keygen(&client_key);
    let ssh_dir = t.join(format!("home-{ukey}/.ssh"));
    std::fs::create_dir_all(&ssh_dir).unwrap();
    std::fs::write(ssh_dir.join("authorized_keys"), &client_pub).unwrap();
    sh(&format!(
        "chown -R {ukey}: {d} && chmod 700 {d} && chmod 600 {d}/authorized_keys",
        d = ssh_dir.display()
    ));

    // One sshd per namespace, each with its own host key.
    let mut sshds = Sshds(Vec::new());
    for i in 0..net.names.len() {
        start_sshd(&mut sshds, &net, i, t, &users.0, true);
    }
    // What the deploying side knows: host 3 with another key than it shows.
    let known = t.join("known_hosts");
    let other = keygen(&t.join("otherkey"));
    std::fs::write(&known, format!("{} {}", net.addr(2), other)).unwrap();

    // The daemon on the bridge; the S3 server reached through a relay there.
    let s3 = S3Server::start();
    let relay = Relay::start_on(
        &format!("{}.254:0", net.subnet),
        s3.endpoint.trim_start_matches("http://").to_string(),
    );
    let endpoint = format!("http://{}", relay.addr);
    rt().block_on(async {
        s3.client()
            .create_bucket()
            .bucket("dep")
            .send()
            .await
            .unwrap();
    });
    let work = t.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let conf = t.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    Daemon::init(&work);
    let port = free_port();
    let daemon_addr = format!("{}.254:{port}", net.subnet);
    let workers = conf.join("workers");
    let (h_key, h_pw, h_changed, h_gone) = (
        format!("{ukey}@{}", net.addr(0)),
        format!("{upw}@{}", net.addr(1)),
        format!("{ukey}@{}", net.addr(2)),
        format!("{ukey}@{}.9", net.subnet),
    );
    std::fs::write(
        &workers,
        format!("# the workers\n{h_key}\n{h_pw}\n{h_changed}\n{h_gone}\n"),
    )
    .unwrap();
    let daemon = Daemon::start_with(
        &work,
        &daemon_addr,
        // Deployed agents heartbeat every 3 s.
        &[
            "--workers",
            workers.to_str().unwrap(),
            "--agent-timeout-ms",
            "10000",
            "--lease-secs",
            "15",
        ],
    );
    let sys = conf.join("sys.properties");
    std::fs::write(
        &sys,
        format!(
            "workingDir={}\nprivateKeyFile={}\nworkerPassword={password}\ndaemonAddress={daemon_addr}\n\
             workerMaxThroughput(KB/s)=1024\nknownHostsFile={}\n",
            work.display(),
            client_key.display(),
            known.display()
        ),
    )
    .unwrap();
    let src = t.join("src");
    let rels = tree(&src, 60, 256 << 10);
    let job = conf.join("job.cfg");
    std::fs::write(
        &job,
        format!(
            "jobName=deployjob\nsrcType=local\nsrcPrefix={}/\ndestDomain={endpoint}\ndestBucket=dep\n\
             destAccessKey={AK}\ndestSecretKey={SK}\ntaskObjectCountLimit=2\n",
            src.display()
        ),
    )
    .unwrap();
    let mut ctl = Ctl {
        sys: sys.clone(),
        job: job.clone(),
        known: known.clone(),
        out: Vec::new(),
    };

    // Sample every process's command line and environment from here on.
    let needles = vec![SK.to_string(), password.clone(), format!("rotated-{SK}")];
    let hits = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (hits, stop, needles) = (Arc::clone(&hits), Arc::clone(&stop), needles.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sample_procs(&needles, &hits);
                rounds += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            rounds
        })
    };

    // 1. Unknown host keys are refused with their fingerprint; the changed
    //    one is refused; the silent address fails; nothing is installed.
    let (code, out) = ctl.deploy(&[]);
    assert_eq!(code, 1, "{out}");
    for h in [&h_key, &h_pw] {
        let r = row(&out, h);
        assert!(
            r.contains("failed") && r.contains("unknown host key SHA256:"),
            "{r}"
        );
    }
    assert!(row(&out, &h_changed).contains("HOST KEY CHANGED"), "{out}");
    assert!(row(&out, &h_gone).contains("cannot connect"), "{out}");
    assert!(daemon.workers().workers.iter().all(|w| w.state != "up"));

    // 2. Accepting new host keys: key and password hosts come up; the
    //    changed key is still refused.
    let (code, out) = ctl.deploy(&["--accept-new-host-keys"]);
    assert_eq!(code, 1, "{out}");
    let sshd_logs = || {
        (0..3)
            .map(|i| std::fs::read_to_string(t.join(format!("sshd{i}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    for h in [&h_key, &h_pw] {
        let r = row(&out, h);
        assert!(r.contains("deployed"), "{out}\nsshd logs:\n{}", sshd_logs());
        assert!(r.contains(env!("CARGO_PKG_VERSION")), "{r}");
    }
    assert!(row(&out, &h_changed).contains("HOST KEY CHANGED"), "{out}");
    assert!(row(&out, &h_gone).contains("cannot connect"), "{out}");
    let up: Vec<String> = daemon
        .workers()
        .workers
        .iter()
        .filter(|w| w.state == "up")
        .map(|w| w.name.clone())
        .collect();
    assert_eq!(up, vec![h_key.clone(), h_pw.clone()]);
    // The secrets arrived, private to the login user.
    let pw_dir = t.join(format!("home-{upw}/ossimport-agent"));
    let secrets = pw_dir.join("secrets");
    let meta = std::fs::metadata(&secrets).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_ne!(meta.uid(), 0);
    assert!(
        std::fs::read_to_string(&secrets)
            .unwrap()
            .contains(&format!("{AK}={SK}"))
    );
    let pids = |dir: &Path| std::fs::read_to_string(dir.join("agent.pid")).unwrap();
    let key_dir = t.join(format!("home-{ukey}/ossimport-agent"));
    let before = (pids(&key_dir), pids(&pw_dir));

    // 3. Again: nothing changes, nothing restarts.
    let (code, out) = ctl.deploy(&["--accept-new-host-keys"]);
    assert_eq!(code, 1, "{out}");
    for h in [&h_key, &h_pw] {
        assert!(row(&out, h).contains("unchanged"), "{out}");
    }
    assert_eq!((pids(&key_dir), pids(&pw_dir)), before);

    // 4. A job shared by both; the password host is removed mid-job.
    daemon.submit(&job);
    let pw_log = pw_dir.join("agent.log");
    wait_for("the password host to take a batch", 60, || {
        std::fs::read_to_string(&pw_log)
            .unwrap_or_default()
            .contains("Accepted batch")
    });
    let pw_key = proto::auth::Signer::load(&pw_dir.join("agent_ed25519")).unwrap();
    let pw_log_text = std::fs::read_to_string(&pw_log).unwrap_or_default();
    let (code, out) = ctl.run(&["workers", "remove", &h_pw]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("key revoked"), "{out}");
    assert!(
        !out.contains(" 0 task(s) back to pending"),
        "it held no task: {out}"
    );
    assert!(out.contains("agent stopped and removed"), "{out}");
    assert!(!pw_dir.join("bin/ossimport-agent").exists());
    assert!(!std::fs::read_to_string(&workers).unwrap().contains(&h_pw));
    // Its key no longer opens the daemon: no TLS handshake completes.
    let daemon_pub = proto::auth::parse_public_keys(
        &std::fs::read_to_string(work.join("daemon_ed25519.pub")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let hb = serde_json::to_vec(&proto::api::Heartbeat {
        name: h_pw.clone(),
        addr: format!("{}:7601", net.addr(1)),
        capacity: 4,
        running: vec![],
        fingerprint: pw_key.fingerprint().into(),
        bytes: 0,
        version: String::new(),
        ..Default::default()
    })
    .unwrap();
    let path = proto::api::agent_path::HEARTBEAT;
    let refused = rt()
        .block_on(proto::client::send(
            &proto::client::Target::Tls {
                addr: daemon_addr.clone(),
                from: None,
                config: proto::tls::client_config(&pw_key, &daemon_pub).unwrap(),
            },
            Method::POST,
            path,
            &[],
            hb,
            Duration::from_secs(10),
        ))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("refused our key"), "{refused}");

    let st = daemon.wait_job("deployjob", 240);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");
    assert_eq!(st.counts.verified, rels.len() as u64);
    let listed = rt().block_on(async {
        s3.client()
            .list_objects_v2()
            .bucket("dep")
            .send()
            .await
            .unwrap()
            .key_count()
            .unwrap_or(0)
    });
    assert_eq!(listed as usize, rels.len());
    assert!(
        std::fs::read_to_string(key_dir.join("agent.log"))
            .unwrap()
            .contains("Accepted batch")
    );

    // 5. A rotated key: --secrets-only rewrites the secrets and restarts
    //    only where they changed.
    let job2 = conf.join("job2.cfg");
    std::fs::write(
        &job2,
        format!(
            "jobName=second\nsrcType=local\nsrcPrefix={}/\ndestDomain={endpoint}\ndestBucket=dep\n\
             destAccessKey=rotatedkey\ndestSecretKey=rotated-{SK}\n",
            src.display()
        ),
    )
    .unwrap();
    let old_pid = pids(&key_dir);
    let j2 = job2.display().to_string();
    let (code, out) = ctl.deploy(&["--secrets-only", "--job", &j2]);
    assert_eq!(code, 1, "{out}");
    let r = row(&out, &h_key);
    assert!(r.contains("updated") && r.contains("secrets"), "{out}");
    assert!(
        std::fs::read_to_string(key_dir.join("secrets"))
            .unwrap()
            .contains(&format!("rotatedkey=rotated-{SK}"))
    );
    assert_ne!(
        pids(&key_dir),
        old_pid,
        "not restarted after its secrets changed"
    );

    // 6. stop reaches the deployed agent, then the daemon; start brings
    //    both back (the daemon through ossimportd --daemon, as a user would).
    let (code, out) = ctl.run(&["stop"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("agent {h_key}: stopped")), "{out}");
    assert!(!key_dir.join("agent.pid").exists());
    let mut daemon = daemon;
    let _ = daemon.child.wait();
    let (code, out) = ctl.run_env(
        &["start"],
        &[
            ("OSSIMPORT_LISTEN", daemon_addr.as_str()),
            ("OSSIMPORT_AGENT_TIMEOUT_MS", "10000"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("agent {h_key}: started")), "{out}");
    // Killed by its pid file should the test fail before it stops it.
    let _restarted = PidFileGuard(work.join("ossimportd.pid"));
    let socket = work.join("ossimportd.sock");
    wait_for("the restarted agent to check in", 60, || {
        api_try::<proto::api::WorkerList>(&socket, Endpoint::Workers, None)
            .is_ok_and(|w| w.workers.iter().any(|a| a.name == h_key && a.state == "up"))
    });
    let restarted_log = std::fs::read_to_string(work.join("ossimportd.log")).unwrap_or_default();
    let (code, out) = ctl.run(&["stop", "--local-only"]);
    assert_eq!(code, 0, "{out}");

    stop.store(true, Ordering::Relaxed);
    let rounds = sampler.join().unwrap();
    assert!(rounds > 10, "the process sampler ran {rounds} times");
    let hits = hits.lock().unwrap().clone();
    assert!(hits.is_empty(), "a secret showed in a process: {hits:#?}");
    let mut logs = vec![
        daemon.log_text(),
        ctl.out.join("\n"),
        pw_log_text,
        restarted_log,
    ];
    logs.push(std::fs::read_to_string(key_dir.join("agent.log")).unwrap_or_default());
    for (i, text) in logs.iter().enumerate() {
        for n in &needles {
            assert!(!text.contains(n.as_str()), "a secret in output/log #{i}");
        }
    }
    drop(daemon);
    drop(sshds);
    drop(net);
    drop(users);
}
