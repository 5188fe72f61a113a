//! When the tests run as root: the .deb packages, built by
//! `scripts/package.sh --profile dev` from the binaries this suite runs,
//! installed on this machine with `dpkg -i`. The daemon runs exactly as its
//! installed unit's `ExecStart=` (with its `User=`, `Group=` and
//! `Environment=`), is driven by `/usr/bin/ossimportctl` as a throwaway member
//! of group `ossimport`, survives an upgrade to a rebuilt package with its
//! config and job store, and `dpkg -r` / `dpkg -P` keep and remove what the
//! README says. Everything created (packages, users, /etc/ossimport,
//! /var/lib/ossimport) is removed at the end, also when the test fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const STATE: &str = "/var/lib/ossimport";
const CONF: &str = "/etc/ossimport";
const UNIT: &str = "/usr/lib/systemd/system/ossimportd.service";
const AGENT_UNIT: &str = "/usr/lib/systemd/system/ossimport-agent.service";
const SOCKET: &str = "/var/lib/ossimport/ossimportd.sock";
const PACKAGES: [&str; 2] = ["ossimport", "ossimport-agent"];

/// Runs `cmd`; the output when it succeeds, `Err` with its stderr otherwise.
fn try_run(cmd: &mut Command) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what}: {}\nstdout: {}\nstderr: {}",
            out.status,
            stdout(&out),
            stderr(&out)
        ))
    }
}

fn run(cmd: &mut Command) -> Output {
    try_run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

fn sh(program: &str, args: &[&str]) -> Output {
    run(Command::new(program).args(args))
}

pub fn exists(name: &str, db: &str) -> bool {
    Command::new("getent")
        .args([db, name])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn package_known(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn package_status(name: &str) -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status} ${Version}", name])
        .output()
        .expect("dpkg-query");
    stdout(&out)
}

fn uid_of(user: &str) -> u32 {
    stdout(&sh("id", &["-u", user])).trim().parse().unwrap()
}

fn gid_of(group: &str) -> u32 {
    let line = stdout(&sh("getent", &["group", group]));
    line.split(':').nth(2).unwrap().trim().parse().unwrap()
}

/// What of the unit matters to run it by hand: `User=`, `Group=`,
/// `Environment=` and `ExecStart=` (no quoting in our units).
struct Unit {
    user: String,
    group: String,
    env: Vec<(String, String)>,
    exec: Vec<String>,
}

impl Unit {
    fn parse(text: &str) -> Unit {
        let mut unit = Unit {
            user: String::new(),
            group: String::new(),
            env: Vec::new(),
            exec: Vec::new(),
        };
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("User=") {
                unit.user = v.to_string();
            } else if let Some(v) = line.strip_prefix("Group=") {
                unit.group = v.to_string();
            } else if let Some(v) = line.strip_prefix("Environment=") {
                let v = v.trim_matches('"');
                let (k, v) = v.split_once('=').expect("Environment=KEY=VALUE");
                unit.env.push((k.to_string(), v.to_string()));
            } else if let Some(v) = line.strip_prefix("ExecStart=") {
                unit.exec = v.split_whitespace().map(str::to_string).collect();
            }
        }
        assert!(
            !unit.user.is_empty() && !unit.exec.is_empty(),
            "unit without User= or ExecStart=:\n{text}"
        );
        if unit.group.is_empty() {
            unit.group = unit.user.clone();
        }
        unit
    }
}

/// This machine as the test found it, and what it has done to it; `Drop`
/// puts it back.
struct Machine {
    tmp: tempfile::TempDir,
    had_user: bool,
    had_group: bool,
    /// The throwaway member of group `ossimport` that drives the daemon.
    client: String,
    client_made: bool,
    daemon: Option<Child>,
}

impl Machine {
    fn log(&self) -> PathBuf {
        self.tmp.path().join("ossimportd.log")
    }

    /// Starts the daemon as the installed unit would, and waits until the
    /// client can reach its socket.
    fn start_daemon(&mut self) {
        let unit = Unit::parse(&std::fs::read_to_string(UNIT).expect("installed unit"));
        assert_eq!(unit.exec[0], "/usr/bin/ossimportd", "ExecStart= of {UNIT}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new("setpriv")
            .args([
                "--reuid",
                &unit.user,
                "--regid",
                &unit.group,
                "--init-groups",
                "--",
            ])
            .args(&unit.exec)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(unit.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("setpriv ossimportd");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(d) = self.daemon.as_mut()
                && let Ok(Some(status)) = d.try_wait()
            {
                panic!(
                    "ossimportd exited with {status}:\n{}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            if self.ctl(&["workers"]).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ossimportd not answering on {SOCKET} after 30 s:\n{}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as `systemctl stop` sends; waits for a clean exit.
    fn stop_daemon(&mut self) {
        let Some(mut d) = self.daemon.take() else {
            return;
        };
        // SAFETY: signals our own child, which has not been reaped yet.
        unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = d.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "ossimportd exited with {status} on SIGTERM:\n{}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = d.kill();
                let _ = d.wait();
                panic!("ossimportd did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/usr/bin/ossimportctl ARGS --socket SOCKET` as the client user.
    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = try_run(
            Command::new("setpriv")
                .args([
                    "--reuid",
                    &self.client,
                    "--regid",
                    "nogroup",
                    "--init-groups",
                ])
                .args(["--", "/usr/bin/ossimportctl"])
                .args(args)
                .args(["--socket", SOCKET])
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", self.tmp.path())
                .current_dir(self.tmp.path()),
        )?;
        Ok(stdout(&out))
    }

    fn dpkg(&self, args: &[&str]) -> Output {
        run(Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        for p in PACKAGES {
            if package_known(p) {
                let _ = Command::new("dpkg")
                    .args(["-P", p])
                    .stdin(Stdio::null())
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(STATE);
        let _ = std::fs::remove_dir_all(CONF);
        let quiet = |program: &str, args: &[&str]| {
            let _ = Command::new(program).args(args).output();
        };
        if self.client_made {
            quiet("userdel", &[&self.client]);
        }
        if !self.had_user && exists("ossimport", "passwd") {
            quiet("userdel", &["ossimport"]);
        }
        if !self.had_group && exists("ossimport", "group") {
            quiet("groupdel", &["ossimport"]);
        }
    }
}

/// `Err(reason)` when this machine cannot run the test: a tool missing, or
/// an ossimport installation of its own that the test must not touch.
pub fn preconditions(repo: &Path) -> Result<(), String> {
    for tool in ["cargo-deb", "cargo-generate-rpm"] {
        if !repo.join(".tools/bin").join(tool).is_file() {
            return Err(format!(
                "{tool} missing in .tools/bin (run scripts/setup-test-deps.sh)"
            ));
        }
    }
    for tool in ["dpkg", "dpkg-deb", "strip", "setpriv", "useradd", "adduser"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!(
                "{tool} missing (a Debian machine with dpkg is needed)"
            ));
        }
    }
    for p in PACKAGES {
        if package_known(p) {
            return Err(format!(
                "package {p} is already known to dpkg here ({}); not touching it",
                package_status(p)
            ));
        }
    }
    for dir in [STATE, CONF] {
        if Path::new(dir).exists() {
            return Err(format!("{dir} exists already; not touching it"));
        }
    }
    Ok(())
}

/// Builds the .debs of `version` into `out` from the suite's binaries.
pub fn build_debs(repo: &Path, bin_dir: &Path, version: &str, out: &Path) -> Vec<PathBuf> {
    let built = run(Command::new(repo.join("scripts/package.sh"))
        .args(["--profile", "dev", "--formats", "deb", "--version", version])
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(out));
    let debs: Vec<PathBuf> = stdout(&built).lines().map(PathBuf::from).collect();
    assert_eq!(debs.len(), 2, "package.sh printed {debs:?}");
    for d in &debs {
        assert!(d.is_file(), "{} not built", d.display());
    }
    debs
}

#[test]
fn deb_install_run_upgrade_remove_purge() {
    if !root_or_skip("installing .deb packages with dpkg and creating users") {
        return;
    }
    let repo = repo_root();
    if let Err(why) = preconditions(&repo) {
        assert!(
            std::env::var_os("OSSIMPORT_TEST_ROOT").is_none_or(|v| v != "1"),
            "OSSIMPORT_TEST_ROOT=1 but the package test cannot run: {why}"
        );
        eprintln!("skipped: {why} (set OSSIMPORT_TEST_ROOT=1 to fail instead)");
        return;
    }
    let bin_dir = bin("ossimportd").parent().unwrap().to_path_buf();
    for b in ["ossimportctl", "ossimport-agent"] {
        bin(b);
    }
    let started = Instant::now();

    let mut m = Machine {
        tmp: tempfile::tempdir().unwrap(),
        had_user: exists("ossimport", "passwd"),
        had_group: exists("ossimport", "group"),
        client: format!("oitest{}", std::process::id() % 1_000_000),
        client_made: false,
        daemon: None,
    };
    let tmp = m.tmp.path().to_path_buf();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();

    let v1 = format!("{}-1", env!("CARGO_PKG_VERSION"));
    let v2 = format!("{}-2", env!("CARGO_PKG_VERSION"));
    let debs1 = build_debs(&repo, &bin_dir, &v1, &tmp.join("v1"));
    let debs2 = build_debs(&repo, &bin_dir, &v2, &tmp.join("v2"));
    eprintln!("packages built in {:?}", started.elapsed());

    // Install: user, group, state directory, config, units; no key shipped.
    let mut args = vec!["-i".to_string()];
    args.extend(debs1.iter().map(|d| d.display().to_string()));
    m.dpkg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for p in PACKAGES {
        assert!(
            package_status(p).starts_with(&format!("install ok installed {v1}")),
            "{p}: {}",
            package_status(p)
        );
    }
    assert!(exists("ossimport", "passwd") && exists("ossimport", "group"));
    let (uid, gid) = (uid_of("ossimport"), gid_of("ossimport"));
    let state = std::fs::metadata(STATE).expect("/var/lib/ossimport made on install");
    assert_eq!(
        (state.uid(), state.gid(), state.mode() & 0o7777),
        (uid, gid, 0o750),
        "owner, group and mode of {STATE}"
    );
    let listed = stdout(&sh("dpkg", &["-L", "ossimport", "ossimport-agent"]));
    for path in [
        "/usr/bin/ossimportd",
        "/usr/bin/ossimportctl",
        "/usr/bin/ossimport-agent",
        "/usr/share/ossimport/console.sh",
        "/usr/share/ossimport/import.sh",
        UNIT,
        AGENT_UNIT,
        "/etc/ossimport/sys.properties",
        "/etc/ossimport/workers",
        "/etc/ossimport/agent.env",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not installed:\n{listed}"
        );
    }
    assert!(!listed.contains("ed25519"), "a key is shipped:\n{listed}");
    let conffiles = stdout(&sh(
        "dpkg-query",
        &["-W", "-f", "${Conffiles}\n", "ossimport"],
    ));
    for c in ["/etc/ossimport/sys.properties", "/etc/ossimport/workers"] {
        assert!(conffiles.contains(c), "{c} not a conffile:\n{conffiles}");
    }
    // It may hold workerPassword: the daemon's group reads it, others not.
    let props = std::fs::metadata("/etc/ossimport/sys.properties").unwrap();
    assert_eq!(
        (props.uid(), props.gid(), props.mode() & 0o777),
        (0, gid, 0o640),
        "owner, group and mode of sys.properties"
    );
    // The agent's host key is made on install, for the ossimport user only.
    let key = std::fs::metadata("/etc/ossimport/agent_ed25519").expect("agent key made");
    assert_eq!((key.uid(), key.mode() & 0o777), (uid, 0o600));
    // What the README tells the admin to run to enrol it: prints its public
    // key line and keeps the key.
    let before = std::fs::read("/etc/ossimport/agent_ed25519").unwrap();
    let line = stdout(&sh(
        "/usr/bin/ossimport-agent",
        &["--init", "--key", "/etc/ossimport/agent_ed25519"],
    ));
    assert!(line.starts_with("ssh-ed25519 "), "--init printed {line:?}");
    assert_eq!(
        std::fs::read("/etc/ossimport/agent_ed25519").unwrap(),
        before
    );
    if Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        sh("systemd-analyze", &["verify", UNIT, AGENT_UNIT]);
    }

    // The client: in group ossimport, nothing else.
    run(Command::new("useradd").args([
        "-M",
        "-N",
        "-g",
        "nogroup",
        "-G",
        "ossimport",
        "-d",
        "/nonexistent",
        "-s",
        "/usr/sbin/nologin",
        &m.client,
    ]));
    m.client_made = true;

    // Run the daemon as the unit does; it makes its key on first start.
    m.start_daemon();
    let dkey = std::fs::metadata(Path::new(STATE).join("daemon_ed25519")).expect("daemon key");
    assert_eq!((dkey.uid(), dkey.mode() & 0o077), (uid, 0));

    // A small local-to-local job, submitted and watched by the client.
    let src = tmp.join("src");
    let dest = tmp.join("dest");
    let rels = small_tree(&src, 40);
    sh("chmod", &["-R", "a+rX", src.to_str().unwrap()]);
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::chown(&dest, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o770)).unwrap();
    let job = tmp.join("job.cfg");
    std::fs::write(
        &job,
        format!(
            "jobName=pkgtest\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n",
            src.display(),
            dest.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o644)).unwrap();
    let submitted = m.ctl(&["submit", job.to_str().unwrap()]).unwrap();
    assert!(submitted.contains("pkgtest"), "submit said: {submitted}");
    let succeeded = |m: &Machine| {
        m.ctl(&["stat", "pkgtest", "--legacy"])
            .is_ok_and(|s| s.contains("JobState:Succeed"))
    };
    wait_for("job pkgtest to succeed", 60, || succeeded(&m));
    for rel in &rels {
        assert_eq!(
            std::fs::read(src.join(rel)).unwrap(),
            std::fs::read(dest.join(rel)).unwrap_or_default(),
            "{rel} copied"
        );
    }
    m.stop_daemon();

    // Upgrade: a changed conffile value and the job store survive.
    let props = Path::new(CONF).join("sys.properties");
    let text = std::fs::read_to_string(&props).unwrap();
    assert!(text.contains("workerTaskThreadNum=60"), "{text}");
    std::fs::write(
        &props,
        text.replace("workerTaskThreadNum=60", "workerTaskThreadNum=7"),
    )
    .unwrap();
    let agent_key = std::fs::read("/etc/ossimport/agent_ed25519").unwrap();
    let mut args = vec!["-i".to_string()];
    args.extend(debs2.iter().map(|d| d.display().to_string()));
    m.dpkg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for p in PACKAGES {
        assert!(
            package_status(p).starts_with(&format!("install ok installed {v2}")),
            "{p} after upgrade: {}",
            package_status(p)
        );
    }
    assert!(
        std::fs::read_to_string(&props)
            .unwrap()
            .contains("workerTaskThreadNum=7")
    );
    assert_eq!(
        std::fs::read("/etc/ossimport/agent_ed25519").unwrap(),
        agent_key
    );
    m.start_daemon();
    let stat = m.ctl(&["stat", "pkgtest", "--legacy"]).unwrap();
    assert!(
        stat.contains("JobName:pkgtest") && stat.contains("JobState:Succeed"),
        "{stat}"
    );
    m.stop_daemon();

    // Remove: binaries gone, config and state kept.
    m.dpkg(&["-r", "ossimport", "ossimport-agent"]);
    for p in [
        "/usr/bin/ossimportd",
        "/usr/bin/ossimportctl",
        "/usr/bin/ossimport-agent",
        UNIT,
    ] {
        assert!(!Path::new(p).exists(), "{p} left after dpkg -r");
    }
    assert!(
        std::fs::read_to_string(&props)
            .unwrap()
            .contains("workerTaskThreadNum=7")
    );
    assert!(Path::new(STATE).join("ossimport.db").is_file());
    assert!(package_status("ossimport").starts_with("deinstall ok config-files"));

    // Purge: config gone, the job store kept (no .purge-on-remove).
    m.dpkg(&["-P", "ossimport", "ossimport-agent"]);
    assert!(!props.exists(), "sys.properties left after dpkg -P");
    assert!(!Path::new("/etc/ossimport/agent_ed25519").exists());
    assert!(
        Path::new(STATE).join("ossimport.db").is_file(),
        "job store purged"
    );
    assert!(!package_known("ossimport") || package_status("ossimport").contains("not-installed"));

    // Purge with the switch: the state goes too.
    let daemon_deb = debs2
        .iter()
        .find(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ossimport_")
        })
        .unwrap();
    m.dpkg(&["-i", daemon_deb.to_str().unwrap()]);
    std::fs::write(Path::new(STATE).join(".purge-on-remove"), "").unwrap();
    m.dpkg(&["-P", "ossimport"]);
    assert!(
        !Path::new(STATE).exists(),
        "{STATE} left after dpkg -P with .purge-on-remove"
    );
    eprintln!("package test done in {:?}", started.elapsed());
}
