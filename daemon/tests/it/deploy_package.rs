//! When the tests run as root: `ossimportctl deploy --package` through a
//! real OpenSSH server in a network namespace. One login is root: the agent
//! arrives as the .deb built from this suite's binaries, is installed with
//! dpkg, runs from `/usr/bin/ossimport-agent` and copies a job; deploying
//! again changes nothing; `workers remove` stops it and removes the package.
//! The other login's home is a 1 MiB file system: its row says "no disk"
//! and nothing is installed there. Runs in the nextest group `dpkg` with
//! the package test (both install on this machine).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proto::api::JobState;

use crate::deploy::{Ctl, Sshds, Users, keygen, row, sh};
use crate::netns::Net;
use crate::packages::{build_debs, exists, package_known, package_status, preconditions};
use crate::support::*;

/// A root login's `agentDir` (relative) is below /var/lib: the agent runs
/// as its own user, who could not reach root's home.
const ROOT_AGENT_DIR: &str = "/var/lib/ossimport-agent";

/// What the test did to this machine outside its temporary directory;
/// `Drop` undoes it, also when the test fails.
struct Undo {
    mounted: Option<PathBuf>,
    had_user: bool,
    had_group: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(Path::new(ROOT_AGENT_DIR).join("agent.pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        if package_known("ossimport-agent") {
            let _ = Command::new("dpkg")
                .args(["-P", "ossimport-agent"])
                .stdin(Stdio::null())
                .output();
        }
        let _ = std::fs::remove_dir_all(ROOT_AGENT_DIR);
        let _ = std::fs::remove_dir_all("/etc/ossimport");
        let _ = std::fs::remove_dir_all("/var/lib/ossimport");
        if !self.had_user && exists("ossimport", "passwd") {
            let _ = Command::new("userdel").arg("ossimport").output();
        }
        if !self.had_group && exists("ossimport", "group") {
            let _ = Command::new("groupdel").arg("ossimport").output();
        }
        if let Some(m) = &self.mounted {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

#[test]
fn deploy_package_as_root_and_refuse_a_full_disk() {
    if !root_or_skip("network namespaces, sshd with a root login and dpkg -i") {
        return;
    }
    let strict = std::env::var_os("OSSIMPORT_TEST_ROOT").is_some_and(|v| v == "1");
    let repo = repo_root();
    let why = if !Path::new("/usr/sbin/sshd").exists() {
        Some("/usr/sbin/sshd missing (scripts/setup-test-deps.sh installs it)".to_string())
    } else if Path::new(ROOT_AGENT_DIR).exists() {
        Some(format!("{ROOT_AGENT_DIR} exists already; not touching it"))
    } else {
        preconditions(&repo).err()
    };
    if let Some(why) = why {
        assert!(!strict, "OSSIMPORT_TEST_ROOT=1 but: {why}");
        eprintln!("skipped: {why}");
        return;
    }
    let net = match Net::create(1) {
        Ok(n) => n,
        Err(e) => {
            assert!(
                !strict,
                "OSSIMPORT_TEST_ROOT=1 but no network namespace: {e}"
            );
            eprintln!("skipped: cannot create network namespaces here: {e}");
            return;
        }
    };
    let mut undo = Undo {
        mounted: None,
        had_user: exists("ossimport", "passwd"),
        had_group: exists("ossimport", "group"),
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o755)).unwrap();

    // The agent package, as scripts/package.sh builds it from these binaries.
    let bin_dir = bin("ossimport-agent").parent().unwrap().to_path_buf();
    for b in ["ossimportd", "ossimportctl"] {
        bin(b);
    }
    let version = format!("{}-1", env!("CARGO_PKG_VERSION"));
    let debs = build_debs(&repo, &bin_dir, &version, &t.join("debs"));
    let agent_deb = debs
        .iter()
        .find(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ossimport-agent_"))
        })
        .unwrap_or_else(|| panic!("no ossimport-agent .deb in {debs:?}"))
        .display()
        .to_string();

    // A login whose home is a 1 MiB file system.
    let tag = std::process::id() % 100_000;
    let full = format!("oid{tag}");
    let home = t.join(format!("home-{full}"));
    std::fs::create_dir_all(&home).unwrap();
    let users = Users(vec![full.clone()]);
    sh(&format!(
        "useradd -M -d {} -s /bin/sh {full} && usermod -p '*' {full}",
        home.display()
    ));
    sh(&format!(
        "mount -t tmpfs -o size=1m,mode=755 tmpfs {}",
        home.display()
    ));
    undo.mounted = Some(home.clone());
    sh(&format!("chown {full}: {}", home.display()));

    // One sshd: root by key (authorized keys kept in the test's directory,
    // not in /root, hence StrictModes off: it lies below the sticky /tmp),
    // and the full-disk login.
    let client_key = t.join("deploy_ed25519");
    let client_pub = keygen(&client_key);
    let keys = t.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for u in ["root", full.as_str()] {
        std::fs::write(keys.join(u), &client_pub).unwrap();
    }
    std::fs::create_dir_all("/run/sshd").unwrap();
    let hk = t.join("hostkey");
    keygen(&hk);
    let cfg = t.join("sshd.conf");
    std::fs::write(
        &cfg,
        format!(
            "Port 22\nListenAddress {addr}\nHostKey {hk}\nPidFile {t}/sshd.pid\nUsePAM no\n\
             PasswordAuthentication no\nPubkeyAuthentication yes\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nAllowUsers root {full}\nStrictModes no\n\
             AuthorizedKeysFile {keys}/%u\n",
            addr = net.addr(0),
            hk = hk.display(),
            t = t.display(),
            keys = keys.display()
        ),
    )
    .unwrap();
    sh(&format!("/usr/sbin/sshd -t -f {}", cfg.display()));
    let sshd_log = t.join("sshd.log");
    let sshds = Sshds(vec![
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.names[0],
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&sshd_log).unwrap())
            .spawn()
            .unwrap(),
    ]);

    // The daemon on the bridge, the S3 server through a relay there.
    let s3 = S3Server::start();
    let relay = Relay::start_on(
        &format!("{}.254:0", net.subnet),
        s3.endpoint.trim_start_matches("http://").to_string(),
    );
    rt().block_on(async {
        s3.client()
            .create_bucket()
            .bucket("pkg")
            .send()
            .await
            .unwrap();
    });
    let work = t.join("work");
    let conf = t.join("conf");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&conf).unwrap();
    Daemon::init(&work);
    let daemon_addr = format!("{}.254:{}", net.subnet, free_port());
    let (h_root, h_full) = (
        format!("root@{}", net.addr(0)),
        format!("{full}@{}", net.addr(0)),
    );
    let workers = conf.join("workers");
    std::fs::write(&workers, format!("{h_root}\n{h_full}\n")).unwrap();
    let daemon = Daemon::start_with(
        &work,
        &daemon_addr,
        &[
            "--workers",
            workers.to_str().unwrap(),
            "--agent-timeout-ms",
            "10000",
        ],
    );
    let known = t.join("known_hosts");
    let sys = conf.join("sys.properties");
    std::fs::write(
        &sys,
        format!(
            "workingDir={}\nprivateKeyFile={}\ndaemonAddress={daemon_addr}\nknownHostsFile={}\n",
            work.display(),
            client_key.display(),
            known.display()
        ),
    )
    .unwrap();
    let src = t.join("src");
    let rels = tree(&src, 12, 64 << 10);
    let job = conf.join("job.cfg");
    std::fs::write(
        &job,
        format!(
            "jobName=pkgjob\nsrcType=local\nsrcPrefix={}/\ndestDomain=http://{}\ndestBucket=pkg\n\
             destAccessKey={AK}\ndestSecretKey={SK}\ntaskObjectCountLimit=3\n",
            src.display(),
            relay.addr
        ),
    )
    .unwrap();
    let mut ctl = Ctl {
        sys,
        job: job.clone(),
        known,
        out: Vec::new(),
    };

    // 1. The package goes to root's host; the full disk is refused.
    let (code, out) = ctl.deploy(&["--package", &agent_deb, "--accept-new-host-keys"]);
    let sshd_text = || std::fs::read_to_string(&sshd_log).unwrap_or_default();
    assert_eq!(code, 1, "{out}\nsshd:\n{}", sshd_text());
    let r = row(&out, &h_root);
    assert!(r.contains("deployed"), "{out}\nsshd:\n{}", sshd_text());
    assert!(r.contains(env!("CARGO_PKG_VERSION")), "{r}");
    let r = row(&out, &h_full);
    assert!(r.contains("failed") && r.contains("no disk"), "{out}");
    assert!(
        !home.join("ossimport-agent/package.deb").exists(),
        "a package was sent to the full disk"
    );
    assert!(
        package_status("ossimport-agent").starts_with(&format!("install ok installed {version}")),
        "{}",
        package_status("ossimport-agent")
    );
    let pid = std::fs::read_to_string(Path::new(ROOT_AGENT_DIR).join("agent.pid")).unwrap();
    let exe = std::fs::read_link(format!("/proc/{}/exe", pid.trim())).unwrap();
    assert_eq!(exe, Path::new("/usr/bin/ossimport-agent"));
    // A root login, but the agent runs as the package's user, not root.
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .to_string();
    let ossimport_uid = String::from_utf8(
        Command::new("id")
            .args(["-u", "ossimport"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(uid, ossimport_uid.trim(), "the agent's uid");
    assert_ne!(uid, "0");
    assert!(row(&out, &h_root).contains("as ossimport"), "{out}");
    assert!(
        !Path::new(ROOT_AGENT_DIR)
            .join("bin/ossimport-agent")
            .exists()
    );
    let up: Vec<String> = daemon
        .workers()
        .workers
        .into_iter()
        .filter(|w| w.state == "up")
        .map(|w| w.name)
        .collect();
    assert_eq!(up, vec![h_root.clone()]);

    // 2. The packaged agent copies a job, every object verified.
    daemon.submit(&job);
    let st = daemon.wait_job("pkgjob", 120);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");
    assert_eq!(st.counts.verified, rels.len() as u64);

    // 3. Again: the same package, nothing changes, nothing restarts.
    let (code, out) = ctl.deploy(&["--package", &agent_deb]);
    assert_eq!(code, 1, "{out}");
    assert!(row(&out, &h_root).contains("unchanged"), "{out}");
    assert!(row(&out, &h_full).contains("no disk"), "{out}");
    assert_eq!(
        std::fs::read_to_string(Path::new(ROOT_AGENT_DIR).join("agent.pid")).unwrap(),
        pid
    );

    // 4. workers remove stops it and removes the package and its files.
    let (code, out) = ctl.run(&["workers", "remove", &h_root]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("agent stopped and removed"), "{out}");
    assert!(
        !package_status("ossimport-agent").contains("ok installed"),
        "still installed: {}",
        package_status("ossimport-agent")
    );
    assert!(!Path::new(ROOT_AGENT_DIR).exists());
    assert!(
        std::fs::read_link(format!("/proc/{}/exe", pid.trim())).is_err(),
        "the agent still runs"
    );

    drop(daemon);
    drop(sshds);
    drop(users);
    drop(undo);
    drop(net);
}
