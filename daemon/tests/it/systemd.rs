//! When the tests run as root: the packages on a host where systemd is PID 1.
//! A Debian root file system (made once by `scripts/setup-test-deps.sh` with
//! debootstrap into `.tools/debian-rootfs`) boots as a container
//! (`systemd-nspawn --boot`, an ephemeral copy, in a network namespace of
//! this test). There the .deb is installed, `systemctl enable --now
//! ossimportd` runs a job through the unit, an upgrade restarts the unit,
//! `ossimportctl deploy` logs in as root over SSH and starts the agent as a
//! systemd unit, and `dpkg -r` stops the daemon before removing it: the
//! maintainer scripts' systemd branches and deploy's systemd path, run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::deploy::{keygen, row};
use crate::netns::Net;
use crate::packages::build_debs;
use crate::support::*;

/// A booted container, stopped (and its ephemeral copy removed by nspawn)
/// when dropped.
struct Container {
    nspawn: Child,
    /// The container's systemd, as seen from here.
    init: u32,
}

impl Container {
    fn boot(root: &Path, netns: &str, pkgs: &Path, log: &Path) -> Container {
        let nspawn = Command::new("systemd-nspawn")
            .arg("--quiet")
            .arg("--ephemeral")
            .arg("--directory")
            .arg(root)
            // No machined here: the container is this test's child.
            .args([
                "--register=no",
                "--keep-unit",
                "--console=passive",
                "--boot",
            ])
            .arg(format!("--network-namespace-path=/run/netns/{netns}"))
            .arg(format!("--bind-ro={}:/pkgs", pkgs.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("systemd-nspawn");
        let mut c = Container { nspawn, init: 0 };
        let pid = c.nspawn.id();
        wait_for("the container's systemd", 60, || {
            c.init = children(pid)
                .into_iter()
                .flat_map(|p| std::iter::once(p).chain(children(p)))
                .find(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "systemd")
                })
                .unwrap_or(0);
            c.init != 0
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let state = stdout(&c.run("systemctl is-system-running || true"));
            match state.trim() {
                "running" => break,
                "degraded" => panic!(
                    "the container booted degraded:\n{}",
                    stdout(&c.run("systemctl --failed --no-pager"))
                ),
                _ if Instant::now() > deadline => panic!("the container did not boot: {state}"),
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
        }
        c
    }

    /// `script` run by sh inside the container, as root.
    fn run(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "-r", "-w"])
            .args(["/bin/sh", "-c", script])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// As [`Container::run`], failing the test when `script` fails.
    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        eprintln!("[container] $ {script}\n{}{}", stdout(&out), stderr(&out));
        assert!(
            out.status.success(),
            "in the container: {script}\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM asks nspawn to halt the container; then no waiting.
        let _ = Command::new("kill")
            .args(["-TERM", &self.nspawn.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn packages_and_deploy_on_a_host_where_systemd_is_pid_1() {
    if !root_or_skip("booting a container with systemd-nspawn and a network namespace") {
        return;
    }
    let strict = std::env::var_os("OSSIMPORT_TEST_ROOT").is_some_and(|v| v == "1");
    let repo = repo_root();
    let rootfs = repo.join(".tools/debian-rootfs");
    for (what, ok) in [
        (
            "systemd-nspawn (Debian's systemd-container)",
            Path::new("/usr/bin/systemd-nspawn").exists(),
        ),
        (
            ".tools/debian-rootfs (scripts/setup-test-deps.sh makes it as root)",
            rootfs.join("usr/lib/systemd/systemd").exists(),
        ),
    ] {
        if !ok {
            assert!(!strict, "OSSIMPORT_TEST_ROOT=1 but {what} is missing");
            eprintln!("skipped: {what} is missing");
            return;
        }
    }
    let net = Net::create(1).expect("a network namespace for the container");
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let pkgs = t.join("pkgs");
    let bin_dir = bin("ossimportd").parent().unwrap().to_path_buf();
    let v1 = build_debs(&repo, &bin_dir, "0.1.0-1", &pkgs.join("v1"));
    let v2 = build_debs(&repo, &bin_dir, "0.1.0-2", &pkgs.join("v2"));
    let in_ct = |p: &PathBuf| format!("/pkgs/{}", p.strip_prefix(&pkgs).unwrap().display());
    let daemon_deb = |debs: &[PathBuf]| {
        in_ct(
            debs.iter()
                .find(|d| !d.file_name().unwrap().to_str().unwrap().contains("agent"))
                .unwrap(),
        )
    };
    let ct = Container::boot(&rootfs, &net.names[0], &pkgs, &t.join("nspawn.log"));
    assert_eq!(ct.ok("cat /proc/1/comm").trim(), "systemd");

    // Install, enable, start: the unit as packaged.
    ct.ok(&format!("dpkg -i {}", daemon_deb(&v1)));
    ct.ok("systemctl enable --now ossimportd");
    ct.ok("systemctl is-active ossimportd");
    // A job through the unit, driven as an admin would: no flags, the
    // packaged sys.properties finds the socket.
    ct.ok(
        "set -e; mkdir -p /srv/src/a /srv/dest; chown ossimport: /srv/dest; \
         for i in 1 2 3 4 5; do head -c $((i * 1000)) /dev/urandom > /srv/src/a/f$i; done; \
         printf 'jobName=unitjob\\nsrcType=local\\nsrcPrefix=/srv/src/\\ndestType=local\\ndestDir=/srv/dest/\\n' > /root/job.cfg; \
         cd /root && ossimportctl submit job.cfg",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = stdout(&ct.run("ossimportctl stat --legacy unitjob"));
        if st.contains("JobState:Succeed") {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not finish:\n{st}");
        std::thread::sleep(Duration::from_millis(500));
    }
    ct.ok("for i in 1 2 3 4 5; do cmp /srv/src/a/f$i /srv/dest/a/f$i; done");

    // Upgrade: the running unit is restarted on the new binary.
    let main_pid = |ct: &Container| ct.ok("systemctl show -p MainPID --value ossimportd");
    let before = main_pid(&ct);
    ct.ok(&format!("dpkg -i {}", daemon_deb(&v2)));
    ct.ok("systemctl is-active ossimportd");
    let after = main_pid(&ct);
    eprintln!(
        "MainPID before the upgrade {}, after {}",
        before.trim(),
        after.trim()
    );
    assert_ne!(before.trim(), after.trim(), "not restarted on upgrade");
    assert_ne!(after.trim(), "0");
    assert!(stdout(&ct.run("ossimportctl stat --legacy unitjob")).contains("JobState:Succeed"));

    // deploy's systemd path: a root login, the agent as a unit.
    let key = t.join("deploy_ed25519");
    let public = keygen(&key);
    ct.ok(&format!(
        "set -e; mkdir -p -m 700 /root/.ssh; printf '%s' '{}' > /root/.ssh/authorized_keys; \
         chmod 600 /root/.ssh/authorized_keys; systemctl start ssh; systemctl is-active ssh",
        public.trim()
    ));
    let work = t.join("work");
    std::fs::create_dir_all(&work).unwrap();
    Daemon::init(&work);
    let daemon_addr = format!("{}.254:{}", net.subnet, free_port());
    let conf = t.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let host = format!("root@{}", net.addr(0));
    std::fs::write(conf.join("workers"), format!("{host}\n")).unwrap();
    let daemon = Daemon::start_with(
        &work,
        &daemon_addr,
        &["--workers", conf.join("workers").to_str().unwrap()],
    );
    std::fs::write(
        conf.join("sys.properties"),
        format!(
            "workingDir={}\nprivateKeyFile={}\ndaemonAddress={daemon_addr}\nknownHostsFile={}\n",
            work.display(),
            key.display(),
            t.join("known_hosts").display()
        ),
    )
    .unwrap();
    let out = Command::new(bin("ossimportctl"))
        .args([
            "deploy",
            "--accept-new-host-keys",
            "--timeout",
            "60",
            "--sys",
        ])
        .arg(conf.join("sys.properties"))
        .env_remove("OSSIMPORT_SOCKET")
        .output()
        .unwrap();
    let table = format!("{}{}", stdout(&out), stderr(&out));
    eprintln!("$ ossimportctl deploy --accept-new-host-keys ...\n{table}");
    assert_eq!(out.status.code(), Some(0), "{table}");
    let r = row(&table, &host);
    assert!(r.contains("deployed") && r.contains("systemd"), "{table}");
    ct.ok("systemctl is-active ossimport-agent");
    // Not as root: as the agent's own user, from a directory it can reach.
    assert!(r.contains("as ossimport"), "{table}");
    let uid = ct.ok(
        "p=$(systemctl show -p MainPID --value ossimport-agent); awk '/^Uid:/{print $2}' /proc/$p/status",
    );
    assert_eq!(
        uid.trim(),
        ct.ok("id -u ossimport").trim(),
        "the agent's uid"
    );
    assert_ne!(uid.trim(), "0");
    assert!(
        ct.ok("stat -c %U /var/lib/ossimport-agent/secrets")
            .trim()
            .ends_with("ossimport")
    );
    assert!(
        daemon
            .workers()
            .workers
            .iter()
            .any(|w| w.name == host && w.state == "up"),
        "{:?}",
        daemon.workers()
    );

    // Removal stops the daemon first: nothing of it runs afterwards.
    ct.ok("dpkg -r ossimport");
    assert!(!ct.run("systemctl is-active ossimportd").status.success());
    assert!(
        !ct.run("pgrep -x ossimportd").status.success(),
        "ossimportd still runs after dpkg -r:\n{}",
        stdout(&ct.run("ps -ef"))
    );

    drop(ct);
    drop(daemon);
    drop(net);
}
