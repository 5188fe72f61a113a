//! When the tests run as root: the three-agent job with each agent in its
//! own network namespace (its own address), and one agent cut off by taking
//! its link down: its tasks move to the others. Only namespaces, links and
//! addresses this test creates are touched, and all are removed at the end.

use std::path::Path;
use std::process::Command;

use crate::support::*;
use proto::api::JobState;

/// Three namespaces on one bridge; removed when dropped.
pub struct Net {
    tag: String,
    pub subnet: String,
    pub names: Vec<String>,
}

pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Net {
    pub fn create(n: usize) -> Result<Net, String> {
        let pid = std::process::id();
        let tag = format!("{}", pid % 100_000);
        // Tests run side by side, each in a process of its own: the subnet
        // is one no interface has yet, chosen and taken (the bridge's
        // address) under a lock they all share. Two bridges on one subnet
        // would send one test's connections to the other's hosts.
        let lock = std::fs::File::create(std::env::temp_dir().join("ossimport-netns.lock"))
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|e| format!("the lock of the tests' subnets: {e}"))?;
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map_err(|e| e.to_string())?;
        let used = String::from_utf8_lossy(&used.stdout);
        let third = (0..250)
            .map(|k| (pid as usize + k) % 250)
            .find(|x| !used.contains(&format!(" 10.213.{x}.")))
            .ok_or("every 10.213.x subnet is in use")?;
        let net = Net {
            subnet: format!("10.213.{third}"),
            names: (1..=n).map(|i| format!("oi{tag}n{i}")).collect(),
            tag,
        };
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["link", "set", &bridge, "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &bridge,
        ])?;
        drop(lock);
        for (i, ns) in net.names.iter().enumerate() {
            let veth = net.veth(i);
            ip(&["netns", "add", ns])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("b{}", self.tag)
    }

    pub fn veth(&self, i: usize) -> String {
        format!("v{}n{}", self.tag, i + 1)
    }

    pub fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.names.len() {
            // Deleting our end removes the pair at once; namespace teardown
            // alone can leave it behind for a while.
            let _ = ip(&["link", "del", &self.veth(i)]);
        }
        for ns in &self.names {
            // Processes still in the namespace would keep it alive.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

fn files_equal(a: &Path, b: &Path, rels: &[String]) -> bool {
    rels.iter()
        .all(|r| std::fs::read(a.join(r)).ok() == std::fs::read(b.join(r)).ok())
}

#[test]
fn agents_in_their_own_namespaces_and_one_cut_off() {
    if !root_or_skip("creating network namespaces") {
        return;
    }
    let net = match Net::create(3) {
        Ok(n) => n,
        Err(e) => {
            assert!(
                std::env::var_os("OSSIMPORT_TEST_ROOT").is_none_or(|v| v != "1"),
                "OSSIMPORT_TEST_ROOT=1 but network namespaces cannot be created: {e}"
            );
            eprintln!("skipped: cannot create network namespaces here: {e}");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let daemon_pub = Daemon::init(&work);
    let port = free_port();
    // The workers file lists the three hosts and one that never shows up.
    let workers = tmp.path().join("workers");
    let hosts: Vec<String> = (0..4).map(|i| net.addr(i)).collect();
    std::fs::write(&workers, hosts.join("\n")).unwrap();
    let daemon = Daemon::start_with(
        &work,
        &format!("{}.254:{port}", net.subnet),
        &["--workers", workers.to_str().unwrap()],
    );
    let mut agents = Vec::new();
    for (i, ns) in net.names.iter().enumerate() {
        let name = format!("n{}", i + 1);
        Agent::enrol(tmp.path(), &name, &work);
        agents.push(Agent::start(AgentOpts {
            name: &name,
            dir: tmp.path(),
            daemon_addr: &daemon.addr,
            daemon_pub: &daemon_pub,
            listen: format!("{}:7601", net.addr(i)),
            advertise: None,
            tasks: 1,
            wrap: vec!["ip".into(), "netns".into(), "exec".into(), ns.clone()],
        }));
    }
    wait_for("agents in namespaces to check in", 60, || {
        daemon
            .workers()
            .workers
            .iter()
            .filter(|w| w.state == "up")
            .count()
            == 3
    });
    let w = daemon.workers();
    for (i, a) in w.workers.iter().take(3).enumerate() {
        assert_eq!(
            a.addr.as_deref(),
            Some(format!("{}:7601", net.addr(i)).as_str())
        );
    }
    let absent: Vec<&str> = w
        .workers
        .iter()
        .filter(|a| a.state == "absent")
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(absent, vec![net.addr(3).as_str()], "{w:?}");

    let src = tmp.path().join("src");
    let dest = tmp.path().join("dest");
    let rels = tree(&src, 30, 1 << 20);
    let cfg = tmp.path().join("ns.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=nsjob\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\ntaskObjectCountLimit=2\n",
            src.display(),
            dest.display()
        ),
    )
    .unwrap();
    daemon.submit(&cfg);
    wait_for("n2 to take a batch", 60, || {
        agents[1].log_text().contains("Accepted batch")
    });
    ip(&["link", "set", &net.veth(1), "down"]).unwrap();

    let st = daemon.wait_job("nsjob", 180);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");
    assert_eq!(st.counts.verified, 30);
    assert!(files_equal(&src, &dest, &rels));
    let db = store(&work);
    let moved = db.tasks_redispatched().unwrap();
    assert!(moved >= 1, "no task moved off the cut-off agent");
    wait_for("n2 shown down", 30, || {
        daemon
            .workers()
            .workers
            .iter()
            .any(|w| w.name == "n2" && w.state == "down")
    });
    for a in [&agents[0], &agents[2]] {
        assert!(
            a.log_text().contains("Accepted batch"),
            "{} did nothing",
            a.name
        );
    }
    drop(agents);
    drop(net);
}
