//! The shell the worker runs: every command `deploy` sends, as POSIX `sh`
//! text built here and nowhere else. Values in them are quoted with
//! [`sq`] and were validated when the configuration was read (host names,
//! `agentDir`); secrets and files never appear in them, they go over the
//! channel's standard input.

/// Single-quoted for `sh`.
pub fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Sets `D` to the agent directory: a relative `agentDir` is below `$HOME`,
/// or, for a root login, below `/var/lib` (the agent then runs as its own
/// user, who could not reach root's home).
fn dir_prelude(agent_dir: &str) -> String {
    format!(
        "set -eu; umask 077; D={}; case \"$D\" in /*) ;; *) if [ \"$(id -u)\" = 0 ]; then D=\"/var/lib/$D\"; else D=\"$HOME/$D\"; fi;; esac; ",
        sq(agent_dir)
    )
}

/// For a root login: the agent runs as `user` (made a system user when
/// missing), recorded in `$D/agent.user` for later starts. The agent's own
/// files (its key, the secrets, the daemon's key, its log and pid file)
/// become the user's; the directory is the user's (0700); the binary and
/// the command line stay root's, so the agent cannot change what runs.
/// `root` keeps the agent root's, as asked.
pub fn hand_to(agent_dir: &str, user: &str) -> String {
    let mut s = dir_prelude(agent_dir);
    s.push_str(&format!(
        "U={}; printf '%s\\n' \"$U\" > \"$D/agent.user\"; \
         if [ \"$U\" != root ]; then \
         id -u \"$U\" >/dev/null 2>&1 || useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin \"$U\" \
         || {{ echo \"cannot create the user $U to run the agent (or deploy with --agent-user root)\" >&2; exit 3; }}; \
         chown \"$U:$(id -gn \"$U\")\" \"$D\"; chmod 700 \"$D\"; chmod 755 \"$D/bin\"; \
         if [ -f \"$D/bin/ossimport-agent\" ]; then chmod 755 \"$D/bin/ossimport-agent\"; fi; \
         for f in agent_ed25519 agent_ed25519.pub daemon_ed25519.pub secrets agent.log agent.pid; do \
         if [ -e \"$D/$f\" ]; then chown \"$U:$(id -gn \"$U\")\" \"$D/$f\"; fi; done; fi",
        sq(user)
    ));
    s
}

/// Starts the agent of `$D/agent.args` detached, as the user of
/// `$D/agent.user` when root starts it.
fn exec_detached() -> String {
    "set --; while IFS= read -r a; do set -- \"$@\" \"$a\"; done < \"$D/agent.args\"; \
     U=$(cat \"$D/agent.user\" 2>/dev/null || true); \
     if [ \"$(id -u)\" = 0 ] && [ -n \"$U\" ] && [ \"$U\" != root ]; then \
     set -- setpriv --reuid=\"$U\" --regid=\"$(id -g \"$U\")\" --init-groups -- \"$@\"; fi; \
     \"$@\" --detach --pid-file \"$D/agent.pid\" --log-file \"$D/agent.log\""
        .to_string()
}

/// Files whose SHA-256 the probe reports, relative to the agent directory.
pub const TRACKED: &[&str] = &[
    "bin/ossimport-agent",
    "daemon_ed25519.pub",
    "secrets",
    "agent.args",
    "agent.user",
    "package.sha256",
];

/// Creates the agent directory and reports, as `key=value` lines, what is
/// there: `dir`, `arch`, `uid`, `systemd`, `avail_kb`, `running`, and
/// `sha:FILE=HEX` for each tracked file present.
pub fn probe(agent_dir: &str) -> String {
    let mut s = dir_prelude(agent_dir);
    s.push_str(
        "mkdir -p \"$D/bin\"; chmod 700 \"$D\"; echo \"dir=$D\"; echo \"arch=$(uname -m)\"; \
         echo \"uid=$(id -u)\"; \
         if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo systemd=1; else echo systemd=0; fi; \
         echo \"avail_kb=$(df -Pk \"$D\" | awk 'NR==2{print $4}')\"; ",
    );
    for f in TRACKED {
        s.push_str(&format!(
            "if [ -f \"$D/{f}\" ]; then echo \"sha:{f}=$(sha256sum < \"$D/{f}\" | cut -d' ' -f1)\"; fi; "
        ));
    }
    s.push_str(&format!("{}; echo \"running=$R\"", running_check()));
    s
}

/// Sets `R` to 1 when the agent runs: the systemd unit is active, or the
/// pid file names a live process of our binary (not a reused pid). By its
/// `comm`, which stays readable: the agent is not dumpable, so even its own
/// user cannot read its `/proc/PID/exe`.
fn running_check() -> String {
    "R=0; if [ -d /run/systemd/system ] && [ \"$(id -u)\" = 0 ] && systemctl is-active --quiet ossimport-agent 2>/dev/null; then R=1; \
     elif [ -f \"$D/agent.pid\" ]; then p=$(cat \"$D/agent.pid\"); \
     [ \"$(cat /proc/$p/comm 2>/dev/null)\" = ossimport-agent ] && R=1; fi"
        .to_string()
}

/// Writes standard input to `rel` (below the agent directory) through a
/// temporary file, checked against `sha256` before it replaces the old one.
pub fn put_file(agent_dir: &str, rel: &str, mode: &str, sha256: &str) -> String {
    let mut s = dir_prelude(agent_dir);
    s.push_str(&format!(
        "T=\"$D/{rel}.new.$$\"; cat > \"$T\"; chmod {mode} \"$T\"; \
         if [ \"$(sha256sum < \"$T\" | cut -d' ' -f1)\" != {sha} ]; then rm -f \"$T\"; echo 'the file arrived damaged (SHA-256 differs)' >&2; exit 3; fi; \
         mv -f \"$T\" \"$D/{rel}\"",
        sha = sq(sha256)
    ));
    s
}

/// Runs the agent's `--init` (creates its key once) and prints the public key.
pub fn init_key(agent_dir: &str, bin: &str) -> String {
    let mut s = dir_prelude(agent_dir);
    s.push_str(&format!(
        "{} --init --key \"$D/agent_ed25519\"",
        bin_word(bin)
    ));
    s
}

/// The agent binary as a shell word: our copy below `$D`, or a packaged one.
fn bin_word(bin: &str) -> String {
    match bin.strip_prefix("$D/") {
        Some(rel) => format!("\"$D/{rel}\""),
        None => sq(bin),
    }
}

/// Installs a package already uploaded to `$D/package.<ext>`.
pub fn install_package(agent_dir: &str, ext: &str) -> String {
    let mut s = dir_prelude(agent_dir);
    let install = match ext {
        "deb" => "DEBIAN_FRONTEND=noninteractive dpkg -i \"$P\"",
        _ => "rpm -U --replacepkgs \"$P\"",
    };
    s.push_str(&format!(
        "[ \"$(id -u)\" = 0 ] || {{ echo 'installing a package needs root on the host (log in as root, or deploy the binary without --package)' >&2; exit 3; }}; \
         P=\"$D/package.{ext}\"; {install} >/dev/null; rm -f \"$P\""
    ));
    s
}

/// Stops the agent (the unit, or the process in the pid file, TERM then
/// KILL after 10 s).
pub fn stop(agent_dir: &str) -> String {
    let mut s = dir_prelude(agent_dir);
    s.push_str(&stop_body());
    s
}

fn stop_body() -> String {
    "if [ -d /run/systemd/system ] && [ \"$(id -u)\" = 0 ] && [ -f /etc/systemd/system/ossimport-agent.service ]; then systemctl stop ossimport-agent || true; fi; \
     if [ -f \"$D/agent.pid\" ]; then p=$(cat \"$D/agent.pid\"); \
     if [ \"$(cat /proc/$p/comm 2>/dev/null)\" = ossimport-agent ]; then kill \"$p\" 2>/dev/null || true; i=0; \
     while kill -0 \"$p\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; kill -9 \"$p\" 2>/dev/null || true; fi; \
     rm -f \"$D/agent.pid\"; fi; "
        .to_string()
}

/// (Re)starts the agent detached, with a pid file and a log file in `$D`;
/// the command line is the one in `$D/agent.args` (one argument a line).
pub fn start_detached(agent_dir: &str) -> String {
    let mut s = dir_prelude(agent_dir);
    s.push_str(&stop_body());
    s.push_str(&exec_detached());
    s
}

/// Installs the unit from standard input and (re)starts it.
pub fn start_systemd(restart: bool) -> String {
    format!(
        "set -eu; T=/etc/systemd/system/ossimport-agent.service.new; cat > \"$T\"; chmod 644 \"$T\"; \
         mv -f \"$T\" /etc/systemd/system/ossimport-agent.service; systemctl daemon-reload; \
         systemctl enable ossimport-agent >/dev/null 2>&1; systemctl {} ossimport-agent",
        if restart { "restart" } else { "start" }
    )
}

/// Starts the agent if it is not running (`ossimportctl start`).
pub fn start_if_stopped(agent_dir: &str) -> String {
    let mut s = dir_prelude(agent_dir);
    s.push_str(&format!(
        "[ -f \"$D/agent.args\" ] || {{ echo 'no agent deployed here (run ossimportctl deploy)' >&2; exit 3; }}; {}; \
         if [ $R = 1 ]; then echo running; exit 0; fi; \
         if [ -d /run/systemd/system ] && [ \"$(id -u)\" = 0 ] && [ -f /etc/systemd/system/ossimport-agent.service ]; then systemctl start ossimport-agent; echo started; exit 0; fi; \
         {}; echo started",
        running_check(),
        exec_detached()
    ));
    s
}

/// Stops the agent and removes what deploy put on the host (only those
/// files: an `agentDir` pointing somewhere else loses nothing else; the
/// package too when deploy installed the agent from one).
pub fn uninstall(agent_dir: &str) -> String {
    let mut s = dir_prelude(agent_dir);
    s.push_str(&stop_body());
    s.push_str(
        "if [ -d /run/systemd/system ] && [ \"$(id -u)\" = 0 ] && [ -f /etc/systemd/system/ossimport-agent.service ]; then \
         systemctl disable ossimport-agent >/dev/null 2>&1 || true; rm -f /etc/systemd/system/ossimport-agent.service; systemctl daemon-reload; fi; \
         if [ -f \"$D/package.sha256\" ] && [ \"$(id -u)\" = 0 ]; then \
         if command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W ossimport-agent >/dev/null 2>&1; then DEBIAN_FRONTEND=noninteractive dpkg -r ossimport-agent >/dev/null; \
         elif command -v rpm >/dev/null 2>&1 && rpm -q ossimport-agent >/dev/null 2>&1; then rpm -e ossimport-agent >/dev/null; fi; fi; \
         for f in bin/ossimport-agent agent_ed25519 agent_ed25519.pub daemon_ed25519.pub secrets agent.args agent.user agent.log package.sha256; do rm -f \"$D/$f\"; done; \
         rmdir \"$D/bin\" 2>/dev/null || true; rmdir \"$D\" 2>/dev/null || true; echo removed",
    );
    s
}

/// A systemd unit running `args` (the agent's command line), as `user`
/// unless that is root.
pub fn unit(args: &[String], user: &str) -> String {
    let exec: Vec<String> = args
        .iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-:=@,".contains(c))
            {
                a.clone()
            } else {
                format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
            }
        })
        .collect();
    format!(
        "# Written by ossimportctl deploy; deploy again to change it.\n\
         [Unit]\nDescription=ossimport agent (copies and verifies task batches)\n\
         After=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=simple\n{}ExecStart={}\nRestart=on-failure\nLimitNOFILE=65536\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        if user == "root" || user.is_empty() {
            String::new()
        } else {
            format!("User={user}\n")
        },
        exec.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_values() {
        assert_eq!(sq("a b"), "'a b'");
        assert_eq!(sq("it's"), r"'it'\''s'");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sq("$(id) `x` ' \" ;")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "$(id) `x` ' \" ;");
    }

    #[test]
    fn the_scripts_are_valid_sh() {
        for script in [
            probe("ossimport-agent"),
            put_file("/opt/x", "secrets", "600", "ab"),
            init_key("a", "$D/bin/ossimport-agent"),
            install_package("a", "deb"),
            stop("a"),
            start_detached("a"),
            start_systemd(true),
            start_if_stopped("a"),
            uninstall("a"),
            hand_to("a", "ossimport"),
        ] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(out.status.success(), "{script}: {:?}", out);
        }
    }

    #[test]
    fn unit_quotes_what_systemd_would_split() {
        let u = unit(
            &[
                "/usr/bin/ossimport-agent".into(),
                "--name".into(),
                "a b".into(),
            ],
            "ossimport",
        );
        assert!(
            u.contains("User=ossimport\nExecStart=/usr/bin/ossimport-agent --name \"a b\"\n"),
            "{u}"
        );
        assert!(!unit(&["x".into()], "root").contains("User="));
    }
}
