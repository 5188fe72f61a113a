//! When the tests run as root: the distributed runbook of the docs
//! (docs/distributed.md, linked from the README), typed as a new user would.
//! The commands are the page's own code block (read from it, run line by line from the master's directory with
//! the relative paths it writes), against two workers, each its own network
//! namespace with its own OpenSSH sshd, login user and home directory, the
//! source tree shared between them as over NFS. Each step's outcome is
//! checked; a step this test does not know fails it, so the README and the
//! behaviour cannot part.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::deploy::{Sshds, Users, keygen, sh, ssh_hosts_or_skip, start_sshd};
use crate::support::*;

/// The commands of the README's runbook block: the fenced block after the
/// `<!-- runbook: ... -->` marker, without comment lines and trailing
/// comments.
fn readme_runbook() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("docs/distributed.md")).unwrap();
    let at = readme.find("<!-- runbook:").expect(
        "docs/distributed.md has no <!-- runbook: --> marker before the distributed runbook",
    );
    let block = readme[at..]
        .split("```")
        .nth(1)
        .expect("no code block after the runbook marker");
    block
        .lines()
        .skip(1) // the info string (`sh`)
        .map(|l| l.split(" #").next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// `ssh-keygen -l`'s SHA256 fingerprint of a public key file.
fn keygen_fingerprint(pubkey: &Path) -> String {
    let out = sh(&format!("ssh-keygen -l -f {}", pubkey.display()));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn the_readme_distributed_runbook_word_for_word() {
    let steps = readme_runbook();
    assert!(
        steps.iter().all(|s| s.starts_with("ossimportctl ")),
        "the runbook holds a command that is not ossimportctl: {steps:#?}"
    );
    let Some(net) = ssh_hosts_or_skip(2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    sh(&format!("chmod 755 {}", t.display()));
    let tag = std::process::id() % 100_000;
    let users = Users(vec![format!("oia{tag}"), format!("oib{tag}")]);
    for u in &users.0 {
        sh(&format!(
            "useradd -m -d {}/home-{u} -s /bin/sh {u}",
            t.display()
        ));
        sh(&format!("usermod -p '*' {u}"));
    }

    // The master's directory: conf/ with relative paths throughout; the
    // master's own home (known_hosts) apart from root's.
    let master = t.join("master");
    let conf = master.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let master_home = t.join("master-home");
    std::fs::create_dir_all(&master_home).unwrap();
    let client_pub = keygen(&conf.join("master_ed25519"));
    for u in &users.0 {
        let ssh_dir = t.join(format!("home-{u}/.ssh"));
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::write(ssh_dir.join("authorized_keys"), &client_pub).unwrap();
        sh(&format!(
            "chown -R {u}: {d} && chmod 700 {d} && chmod 600 {d}/authorized_keys",
            d = ssh_dir.display()
        ));
    }
    let mut sshds = Sshds(Vec::new());
    let host_fps: Vec<String> = (0..net.names.len())
        .map(|i| keygen_fingerprint(&start_sshd(&mut sshds, &net, i, t, &users.0, false)))
        .collect();

    // The store, reached by the workers through a relay on the bridge.
    let s3 = S3Server::start();
    let relay = Relay::start_on(
        &format!("{}.254:0", net.subnet),
        s3.endpoint.trim_start_matches("http://").to_string(),
    );
    rt().block_on(async {
        s3.client()
            .create_bucket()
            .bucket("book")
            .send()
            .await
            .unwrap()
    });
    // The source, shared with both workers.
    let src = t.join("shared/src");
    let rels = tree(&src, 40, 64 << 10);
    sh(&format!("chmod -R a+rX {}", t.join("shared").display()));

    let work = t.join("work");
    let daemon_addr = format!("{}.254:{}", net.subnet, free_port());
    let hosts = [
        format!("{}@{}", users.0[0], net.addr(0)),
        format!("{}@{}", users.0[1], net.addr(1)),
    ];
    std::fs::write(
        conf.join("workers"),
        format!("# the workers\n{}\n{}\n", hosts[0], hosts[1]),
    )
    .unwrap();
    std::fs::write(
        conf.join("sys.properties"),
        format!(
            "workingDir={}\nprivateKeyFile=master_ed25519\ndaemonAddress={daemon_addr}\n\
             workerMaxThroughput(KB/s)=512\n",
            work.display()
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("job.cfg"),
        format!(
            "jobName=bookjob\nsrcType=local\nsrcPrefix={}/\ndestDomain=http://{}\ndestBucket=book\n\
             destAccessKey={AK}\ndestSecretKey={SK}\ntaskObjectCountLimit=2\n",
            src.display(),
            relay.addr
        ),
    )
    .unwrap();

    // Killed at the end whatever happens: the daemon by its pid file.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(self.0.join("ossimportd.pid")) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
    }
    let _cleanup = Cleanup(work.clone());

    let ctl_bin = bin("ossimportctl");
    let mut outputs = Vec::new();
    let mut run = |line: &str| -> (i32, String) {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let out = Command::new(&ctl_bin)
            .args(&words)
            .current_dir(&master)
            .env("HOME", &master_home)
            .env_remove("OSSIMPORT_SOCKET")
            .env_remove("OSSIMPORT_SYS_PROPERTIES")
            .env_remove("OSSIMPORT_WORK_DIR")
            .env_remove("OSSIMPORT_LISTEN")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("$ {line}\n{text}");
        outputs.push(text.clone());
        (out.status.code().unwrap_or(-1), text)
    };
    let row = |table: &str, host: &str| -> String {
        table
            .lines()
            .filter(|l| l.starts_with(host) && l[host.len()..].starts_with(' '))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let homes: Vec<PathBuf> = users
        .0
        .iter()
        .map(|u| t.join(format!("home-{u}")))
        .collect();
    let removed = net.addr(1);
    let mut deploys = 0;
    for step in &steps {
        let line = step.replace("WORKER", &removed);
        let (code, out) = run(&line);
        match line.as_str() {
            "ossimportctl start --sys conf/sys.properties --local-only" => {
                assert_eq!(code, 0, "{out}");
                assert!(out.contains("Start import service completed."), "{out}");
                // The agent API is where daemonAddress says.
                std::net::TcpStream::connect(&daemon_addr).unwrap_or_else(|e| {
                    panic!("nothing listens on daemonAddress {daemon_addr}: {e}")
                });
            }
            "ossimportctl deploy --sys conf/sys.properties" => {
                deploys += 1;
                assert_eq!(code, 1, "{out}");
                for (h, fp) in hosts.iter().zip(&host_fps) {
                    let r = row(&out, h);
                    assert!(r.contains(&format!("unknown host key {fp}")), "{h}: {out}");
                }
            }
            "ossimportctl deploy --sys conf/sys.properties --accept-new-host-keys" => {
                deploys += 1;
                assert_eq!(code, 0, "{out}");
                for h in &hosts {
                    assert!(row(&out, h).contains("deployed"), "{h}: {out}");
                }
                let known = std::fs::read_to_string(master_home.join(".ssh/known_hosts")).unwrap();
                assert_eq!(known.lines().count(), 2, "{known:?}");
                assert!(known.lines().all(|l| !l.trim().is_empty()), "{known:?}");
            }
            "ossimportctl submit conf/job.cfg" => {
                assert_eq!(code, 0, "{out}");
                assert!(out.contains("submit job:bookjob success!"), "{out}");
                assert!(!out.contains("not running"), "queued offline: {out}");
            }
            "ossimportctl stat" => {
                assert_eq!(code, 0, "{out}");
                assert!(out.contains("bookjob"), "{out}");
            }
            "ossimportctl workers" => {
                assert_eq!(code, 0, "{out}");
                for h in &hosts {
                    let r = row(&out, h);
                    assert_eq!(r.lines().count(), 1, "one row for {h}:\n{out}");
                    assert!(r.contains(" up "), "{h}: {out}");
                }
                assert!(!out.contains("absent"), "{out}");
            }
            "ossimportctl stat --legacy" => {
                assert_eq!(code, 0, "{out}");
                // "again, until JobState:Succeed", as the README says.
                let mut out = out;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
                while !out.contains("JobState:Succeed") {
                    assert!(!out.contains("JobState:Failed"), "{out}");
                    assert!(std::time::Instant::now() < deadline, "not done: {out}");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    out = run(&line).1;
                }
                // Shared by both agents.
                for h in &homes {
                    let log = std::fs::read_to_string(h.join("ossimport-agent/agent.log"))
                        .unwrap_or_default();
                    assert!(log.contains("Accepted batch"), "{}: {log}", h.display());
                    assert!(!log.contains('\x1b'), "colour codes in agent.log:\n{log}");
                }
            }
            l if l == format!("ossimportctl workers remove {removed}") => {
                assert_eq!(code, 0, "{out}");
                assert!(out.contains(&format!("{}: key revoked", hosts[1])), "{out}");
                assert!(out.contains("agent stopped and removed"), "{out}");
                let left = std::fs::read_to_string(conf.join("workers")).unwrap();
                assert!(
                    !left.contains(&hosts[1]) && left.contains(&hosts[0]),
                    "{left}"
                );
                let (_, table) = run("ossimportctl workers");
                assert!(row(&table, &hosts[1]).is_empty(), "{table}");
            }
            "ossimportctl stop --sys conf/sys.properties" => {
                assert_eq!(code, 0, "{out}");
                assert!(
                    out.contains(&format!("agent {}: stopped", hosts[0])),
                    "{out}"
                );
                assert!(out.contains("Stop import service completed."), "{out}");
                assert!(!work.join("ossimportd.sock").exists());
            }
            other => panic!("the README's runbook has a step this test does not check: {other}"),
        }
    }
    assert_eq!(
        deploys, 2,
        "the runbook deploys before and after accepting host keys"
    );

    // Every object byte-identical; the removed worker left nothing behind.
    let first_log = std::fs::read_to_string(homes[0].join("ossimport-agent/agent.log")).unwrap();
    assert!(first_log.contains("Accepted batch"), "{first_log}");
    assert!(
        !homes[1]
            .join("ossimport-agent/bin/ossimport-agent")
            .exists(),
        "the removed worker's agent is still installed"
    );
    let rt = rt();
    for rel in &rels {
        let got = rt.block_on(async {
            s3.client()
                .get_object()
                .bucket("book")
                .key(rel)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
        });
        assert_eq!(
            &got[..],
            &std::fs::read(src.join(rel)).unwrap()[..],
            "{rel}"
        );
    }
    // Plain logs (no colour codes off a terminal), and no secret anywhere.
    let daemon_log = std::fs::read_to_string(work.join("ossimportd.log")).unwrap();
    for (what, text) in [("agent.log", &first_log), ("ossimportd.log", &daemon_log)] {
        assert!(!text.contains('\x1b'), "colour codes in {what}:\n{text}");
        assert!(!text.contains(SK), "a secret in {what}");
    }
    assert!(
        outputs.iter().all(|o| !o.contains(SK)),
        "a secret in the output"
    );
    drop(sshds);
    drop(net);
    drop(users);
}
