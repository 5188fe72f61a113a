//! Jobs spread over several agents: sharing, an agent killed, the daemon
//! killed and restarted, and what crosses the wire.

use crate::support::*;
use proto::api::JobState;

struct Cluster {
    tmp: tempfile::TempDir,
    s3: S3Server,
    daemon: Daemon,
    daemon_pub: std::path::PathBuf,
    port: u16,
    agents: Vec<Agent>,
}

impl Cluster {
    /// A daemon and `n` agents with `tasks` slots each; every agent talks
    /// through `via` when given (a relay in front of the daemon).
    fn start(n: usize, tasks: u32, relays: bool) -> (Cluster, Vec<Relay>) {
        let s3 = S3Server::start();
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let daemon_pub = Daemon::init(&work);
        let port = free_port();
        let daemon = Daemon::start(&work, port);
        let mut recorded = Vec::new();
        let daemon_addr = if relays {
            let r = Relay::start(daemon.addr.clone());
            let a = r.addr.clone();
            recorded.push(r);
            a
        } else {
            daemon.addr.clone()
        };
        let mut agents = Vec::new();
        for i in 0..n {
            let name = format!("a{}", i + 1);
            Agent::enrol(tmp.path(), &name, &work);
            let listen = format!("127.0.0.1:{}", free_port());
            let advertise = relays.then(|| {
                let r = Relay::start(listen.clone());
                let a = r.addr.clone();
                recorded.push(r);
                a
            });
            agents.push(Agent::start(AgentOpts {
                name: &name,
                dir: tmp.path(),
                daemon_addr: &daemon_addr,
                daemon_pub: &daemon_pub,
                listen,
                advertise,
                tasks,
                wrap: Vec::new(),
            }));
        }
        let c = Cluster {
            tmp,
            s3,
            daemon,
            daemon_pub,
            port,
            agents,
        };
        c.wait_up(n);
        (c, recorded)
    }

    fn wait_up(&self, n: usize) {
        wait_for("agents to check in", 60, || {
            self.daemon
                .workers()
                .workers
                .iter()
                .filter(|w| w.state == "up")
                .count()
                == n
        });
    }

    fn job(&self, name: &str, files: usize, len: usize, per_task: u32) -> Vec<String> {
        let src = self.tmp.path().join(format!("src-{name}"));
        let rels = tree(&src, files, len);
        rt().block_on(create_bucket(&self.s3.client(), name));
        let cfg = job_cfg(
            self.tmp.path(),
            name,
            &src,
            &self.s3.endpoint,
            name,
            per_task,
        );
        self.daemon.submit(&cfg);
        rels
    }

    fn keys(&self, bucket: &str) -> Vec<String> {
        rt().block_on(list_keys(&self.s3.client(), bucket, ""))
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Three agents share a job, and every byte between daemon and agents
/// (through relays that record them) is TLS: neither key, no path, no job
/// name and no result field is in clear. Before, batches and results were
/// signed plain HTTP (and the access key, paths and checksums readable).
#[test]
fn three_agents_share_a_job_and_nothing_of_it_crosses_the_wire_in_clear() {
    let (c, relays) = Cluster::start(3, 1, true);
    let files = c.job("three", 36, 20_000, 2);
    let st = c.daemon.wait_job("three", 180);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");
    assert_eq!(st.counts.objects, 36);
    assert_eq!(st.counts.verified, 36);
    assert_eq!(st.counts.failed, 0);
    assert_eq!(c.keys("three"), sorted(files.clone()));
    for a in &c.agents {
        assert!(
            a.log_text().contains("Accepted batch"),
            "agent {} did no part of the job",
            a.name
        );
        // It holds its key and the store credentials: no core dumps.
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", a.child.id())).unwrap();
        assert!(
            limits
                .lines()
                .any(|l| l.starts_with("Max core file size")
                    && l.split_whitespace().nth(5) == Some("0")),
            "{limits}"
        );
    }
    let total: usize = relays.iter().map(Relay::bytes_seen).sum();
    assert!(total > 10_000, "the relays saw {total} bytes");
    for r in &relays {
        for clear in [SK, AK, "verified_by", "rel_path", "\"three\""] {
            assert!(
                !r.contains(clear.as_bytes()),
                "{clear:?} crossed the wire in clear"
            );
        }
        for f in &files {
            assert!(
                !r.contains(f.as_bytes()),
                "the path {f} crossed the wire in clear"
            );
        }
    }
}

#[test]
fn an_agent_killed_mid_job_loses_its_tasks_to_the_others() {
    let (mut c, _) = Cluster::start(3, 1, false);
    let files = c.job("killed", 24, 2 << 20, 2);
    wait_for("a1 to take a batch", 60, || {
        c.agents[0].log_text().contains("Accepted batch")
    });
    c.agents[0].kill();

    let st = c.daemon.wait_job("killed", 180);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");
    assert_eq!(st.counts.verified, 24);
    assert_eq!(c.keys("killed"), sorted(files));
    // Counted once: one row per object, each verified once.
    let db = store(&c.daemon.work);
    let rows = db.objects().unwrap();
    let verified = rows
        .iter()
        .filter(|o| o.state == daemon::store::ObjectState::Verified)
        .count();
    assert_eq!((rows.len(), verified), (24, 24));
    // The task a1 held was dispatched again.
    let moved = db.tasks_redispatched().unwrap();
    assert!(moved >= 1, "no task moved after a1 was killed");
    let w = c.daemon.workers();
    let a1 = w.workers.iter().find(|w| w.name == "a1").unwrap();
    assert_eq!(a1.state, "down", "{w:?}");
    assert_eq!(a1.running, 0);
}

#[test]
fn a_killed_daemon_restarts_and_finishes_without_redoing_verified_objects() {
    let (mut c, _) = Cluster::start(2, 1, false);
    let files = c.job("restart", 40, 1 << 20, 2);
    wait_for("some objects verified", 120, || {
        c.daemon.job("restart").counts.verified >= 6
    });
    c.daemon.kill();

    let done: Vec<String> = {
        let db = store(&c.daemon.work);
        db.objects()
            .unwrap()
            .into_iter()
            .filter(|o| o.state == daemon::store::ObjectState::Verified)
            .map(|o| o.rel_path)
            .collect()
    };
    assert!(
        done.len() >= 6 && done.len() < 40,
        "{} verified",
        done.len()
    );
    // Take the verified objects away: if the restarted daemon copied any of
    // them again, it would reappear.
    let client = c.s3.client();
    rt().block_on(async {
        for k in &done {
            client
                .delete_object()
                .bucket("restart")
                .key(k)
                .send()
                .await
                .unwrap();
        }
    });

    c.daemon = Daemon::start(&c.daemon.work.clone(), c.port);
    let st = c.daemon.wait_job("restart", 180);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");
    assert_eq!(st.counts.verified, 40);
    let keys = c.keys("restart");
    let expected: Vec<String> = sorted(files)
        .into_iter()
        .filter(|f| !done.contains(f))
        .collect();
    assert_eq!(keys, expected, "verified objects were copied again");
    let _ = &c.daemon_pub;
}

#[test]
fn pause_takes_tasks_back_and_resume_finishes() {
    let (c, _) = Cluster::start(1, 1, false);
    c.job("paused", 12, 1 << 20, 1);
    let _: serde_json::Value = api(&c.daemon.socket, Endpoint::Pause("paused".into()), None);
    assert_eq!(c.daemon.job("paused").state, JobState::Paused);
    wait_for("paused job to hold no task", 30, || {
        c.daemon.job("paused").counts.tasks_dispatched == 0
    });
    let _: serde_json::Value = api(&c.daemon.socket, Endpoint::Resume("paused".into()), None);
    let st = c.daemon.wait_job("paused", 120);
    assert_eq!((st.state, st.counts.verified), (JobState::Succeed, 12));
}

#[test]
fn agents_join_and_leave_while_a_job_runs() {
    let (mut c, _) = Cluster::start(1, 1, false);
    let files = c.job("joinleave", 40, 2 << 20, 2);
    wait_for("a1 to take a batch", 60, || {
        c.agents[0].log_text().contains("Accepted batch")
    });

    // Enrolled and started mid-job: no daemon restart needed.
    let work = c.daemon.work.clone();
    Agent::enrol(c.tmp.path(), "late", &work);
    let late = Agent::start(AgentOpts {
        name: "late",
        dir: c.tmp.path(),
        daemon_addr: &c.daemon.addr,
        daemon_pub: &c.daemon_pub,
        listen: format!("127.0.0.1:{}", free_port()),
        advertise: None,
        tasks: 1,
        wrap: Vec::new(),
    });
    wait_for("the late agent to take a batch", 120, || {
        late.log_text().contains("Accepted batch")
    });

    // a1 leaves cleanly: it says goodbye and its tasks go back at once.
    let st = std::process::Command::new("kill")
        .args(["-TERM", &c.agents[0].child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let exit = c.agents[0].child.wait().unwrap();
    assert!(exit.success(), "a1 exited with {exit}");
    let w = c.daemon.workers();
    let a1 = w.workers.iter().find(|w| w.name == "a1").unwrap();
    assert_eq!((a1.state.as_str(), a1.running), ("left", 0), "{w:?}");

    let st = c.daemon.wait_job("joinleave", 180);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");
    assert_eq!(st.counts.verified, 40);
    assert_eq!(c.keys("joinleave"), sorted(files));
}

/// `clean J && submit J` while an agent still works on J, with the agent's
/// reports held up on the way: its late results for the cleaned job must not
/// count for the new job's objects (before ids were AUTOINCREMENT and results
/// were checked against the lease, the new job's first objects became
/// "verified" without being copied).
#[test]
fn late_results_of_a_cleaned_job_never_count_for_the_new_one() {
    let (c, relays) = Cluster::start(1, 1, true);
    let to_daemon = &relays[0];
    let old = c.job("reuse", 12, 64 << 10, 12);
    wait_for("the agent to take the batch", 60, || {
        c.agents[0].log_text().contains("Accepted batch")
    });
    // Hold the agent's reports until it has copied everything.
    to_daemon.set_hold(true);
    wait_for("the old job's objects at the destination", 60, || {
        c.keys("reuse").len() == old.len()
    });
    let _: serde_json::Value = api(&c.daemon.socket, Endpoint::Clean("reuse".into()), None);
    // The same name again, other files, another bucket.
    let src = c.tmp.path().join("src-reuse-2");
    let new: Vec<String> = (0..12)
        .map(|i| {
            let rel = format!("new/n{i:03}.bin");
            std::fs::create_dir_all(src.join("new")).unwrap();
            std::fs::write(src.join(&rel), bytes(1000 + i, 1000 + i as usize)).unwrap();
            rel
        })
        .collect();
    rt().block_on(create_bucket(&c.s3.client(), "reuse-two"));
    let cfg = job_cfg(c.tmp.path(), "reuse", &src, &c.s3.endpoint, "reuse-two", 12);
    c.daemon.submit(&cfg);
    wait_for("the new job's objects to be planned", 60, || {
        c.daemon.job("reuse").counts.objects == 12
    });
    // Now the stale reports arrive.
    to_daemon.set_hold(false);

    let st = c.daemon.wait_job("reuse", 180);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");
    assert_eq!(st.counts.verified, 12);
    // Every object the new job calls verified is really there.
    assert_eq!(c.keys("reuse-two"), sorted(new));
    assert!(
        c.daemon
            .log_text()
            .contains("Dropped events for tasks not leased to this agent"),
        "the stale reports never arrived"
    );
}

/// A bucket source that goes away after the job was accepted: the scan
/// fails and the job with it; once the source is back, `retry` starts the
/// scan again from its checkpoint and the job finishes with every object
/// listed once. Before, `retry` put the job back to running and no scanner
/// ever started, so it hung.
#[test]
fn retry_after_a_failed_scan_lists_the_rest() {
    let (c, _) = Cluster::start(1, 2, false);
    let client = c.s3.client();
    rt().block_on(async {
        create_bucket(&client, "scan-src").await;
        create_bucket(&client, "scan-dst").await;
        for i in 0..300 {
            client
                .put_object()
                .bucket("scan-src")
                .key(format!("k{i:04}"))
                .body(aws_sdk_s3::primitives::ByteStream::from(bytes(i, 100)))
                .send()
                .await
                .unwrap();
        }
    });
    let relay = Relay::start(c.s3.endpoint.trim_start_matches("http://").to_string());
    let cfg = c.tmp.path().join("scan_retry.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=scan_retry\nsrcType=s3\nsrcDomain=http://{}\nsrcBucket=scan-src\nsrcPrefix=\n\
             srcAccessKey={AK}\nsrcSecretKey={SK}\nsrcListPageSize=5\ndestDomain={}\ndestBucket=scan-dst\n\
             destAccessKey={AK}\ndestSecretKey={SK}\ntaskObjectCountLimit=10\n",
            relay.addr, c.s3.endpoint
        ),
    )
    .unwrap();
    // The submit's check of the source bucket gets through; the scanner's
    // connections do not.
    relay.set_allow(1);
    c.daemon.submit(&cfg);
    let st = c.daemon.wait_job("scan_retry", 180);
    assert_eq!(st.state, JobState::Failed, "{st:?}");
    assert!(!st.scan_done && st.counts.objects == 0, "{st:?}");
    assert!(c.daemon.log_text().contains("Scan failed"));
    relay.set_allow(-1);
    let answer: serde_json::Value =
        api(&c.daemon.socket, Endpoint::Retry("scan_retry".into()), None);
    assert_eq!(
        answer["message"],
        "Retry has been submitted. (the listing starts again from its checkpoint; 0 failed objects)"
    );
    let st = c.daemon.wait_job("scan_retry", 180);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");
    assert_eq!((st.counts.objects, st.counts.verified), (300, 300));
    assert_eq!(c.keys("scan-dst").len(), 300);
}
