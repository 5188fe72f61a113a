//! Outages under the daemon: an agent's destination goes away for three
//! minutes (every connection cut, the port closed) and then the link
//! between the agent and the daemon, while the agent still has objects to
//! copy. The agent's
//! objects wait instead of failing, `stat` and `/metrics` say what is
//! waited for. While the daemon is away the agent goes on copying what it
//! has leased (thousands of objects, more results than its queues hold),
//! the daemon keeps the silent agent's leases, and every result is recorded
//! once when the link is back: nothing failed, nothing handed out twice.

use std::time::{Duration, Instant};

use testkit::net::{Switch, http_get};

use crate::support::*;

#[test]
fn an_agent_rides_out_its_destination_and_its_daemon_going_away() {
    let rt = rt();
    let s3 = S3Server::start();
    rt.block_on(s3.create_bucket("bkt"));
    let dest_link = rt.block_on(Switch::start(&s3.endpoint));
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let daemon_pub = Daemon::init(&work);
    let metrics = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(
        &work,
        &format!("127.0.0.1:{}", free_port()),
        &["--metrics-listen", &metrics],
    );
    // The agent reaches the daemon through a link that will be cut.
    let daemon_link = rt.block_on(Switch::start(&d.addr));
    Agent::enrol(tmp.path(), "a1", &work);
    let agent = Agent::start(AgentOpts {
        name: "a1",
        dir: tmp.path(),
        daemon_addr: &daemon_link.addr.to_string(),
        daemon_pub: &daemon_pub,
        listen: format!("127.0.0.1:{}", free_port()),
        advertise: None,
        tasks: 2,
        wrap: Vec::new(),
    });
    let src = tmp.path().join("src");
    const FILES: usize = 12_000;
    let files = tree(&src, FILES, 0);
    let cfg = job_cfg(
        tmp.path(),
        "outage_d",
        &src,
        &dest_link.endpoint(),
        "bkt",
        6_000,
    );
    // Two tasks of 6,000, both leased to the agent at once, copied at up to
    // 300 objects a second: the agent is still copying after both cuts.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("maxRequestsPerSecond=300\n");
    std::fs::write(&cfg, text).unwrap();
    let sys = b"workerTaskThreadNum=16\n";
    let _: serde_json::Value = api(
        &d.socket,
        Endpoint::Submit,
        Some(
            serde_json::to_value(proto::api::SubmitRequest::new(
                cfg.display().to_string(),
                &std::fs::read(&cfg).unwrap(),
                Some(sys),
            ))
            .unwrap(),
        ),
    );
    wait_for("some objects verified", 60, || {
        d.job("outage_d").counts.verified >= 10
    });

    // 1. The destination goes away: the objects wait, and `stat` and
    //    `/metrics` say for what.
    let dest_down_at = Instant::now();
    dest_link.down();
    wait_for("the outage in stat", 30, || {
        !d.job("outage_d").outages.is_empty()
    });
    let st = d.job("outage_d");
    eprintln!("stat during the outage: {:?}", st.outages);
    let want = format!("destination {}/bkt unreachable since", dest_link.endpoint());
    assert!(st.outages[0].contains(&want), "{:?}", st.outages);
    assert!(st.outages[0].contains("(seen by a1)"), "{:?}", st.outages);
    let (code, text) = http_get(&metrics, "/metrics").unwrap();
    assert_eq!(code, 200);
    let up_line = text
        .lines()
        .find(|l| l.starts_with("ossimport_endpoint_up{") && l.contains("role=\"destination\""))
        .unwrap_or_else(|| panic!("no ossimport_endpoint_up:\n{text}"));
    eprintln!("/metrics during the outage: {up_line}");
    assert!(
        up_line.ends_with(" 0.0") || up_line.ends_with(" 0"),
        "{up_line}"
    );
    assert_eq!(d.job("outage_d").counts.failed, 0);

    // 2. The destination stays away for 3 minutes (probes a minute apart).
    //    At the end of it the agent loses the daemon for 60 s; the
    //    destination comes back 10 s later, and for 50 s the agent goes on
    //    copying, holding more results than its queues take (about 4,600).
    std::thread::sleep(Duration::from_secs(170).saturating_sub(dest_down_at.elapsed()));
    assert_eq!(d.job("outage_d").counts.failed, 0);
    let link_down_at = Instant::now();
    daemon_link.down();
    let recorded = d.job("outage_d").counts.verified;
    std::thread::sleep(Duration::from_secs(180).saturating_sub(dest_down_at.elapsed()));
    rt.block_on(dest_link.up());
    let client = s3.client();
    let landed = || rt.block_on(list_keys(&client, "bkt", "")).len();
    let at_dest_up = landed();
    std::thread::sleep(Duration::from_secs(60).saturating_sub(link_down_at.elapsed()));
    let copied_away = landed() - at_dest_up;
    eprintln!("copied while the daemon was away: {copied_away} objects");
    assert!(
        copied_away > 5_500,
        "the agent stopped copying while the daemon was away: {copied_away} objects"
    );
    assert_eq!(d.job("outage_d").counts.verified, recorded);
    rt.block_on(daemon_link.up());

    let st = d.wait_job("outage_d", 180);
    assert_eq!(st.state, proto::api::JobState::Succeed, "{st:?}");
    assert_eq!((st.counts.verified, st.counts.failed), (FILES as u64, 0));
    let rows = store(&work).objects().unwrap();
    let twice: Vec<_> = rows.iter().filter(|o| o.attempts != 1).collect();
    assert!(twice.is_empty(), "handed out more than once: {twice:?}");
    let log = d.log_text();
    assert!(log.contains("leases are kept"), "{log}");
    assert!(!log.contains("Leases expired"), "{log}");
    assert!(
        agent.log_text().contains("Endpoint down"),
        "{}",
        agent.log_text()
    );
    for rel in files.iter().step_by(97) {
        assert_eq!(
            rt.block_on(get(&client, "bkt", rel)),
            std::fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
    }
}

/// An agent started before its daemon (the same boot, the same script)
/// joins as soon as the daemon listens: a failed heartbeat is tried again
/// after 50 ms, doubling, up to the interval, and not one interval later
/// (30 s here, longer than the test waits).
#[test]
fn an_agent_started_before_its_daemon_joins_as_soon_as_it_listens() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let daemon_pub = Daemon::init(&work);
    Agent::enrol(tmp.path(), "early", &work);
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = Agent::start_beating(
        AgentOpts {
            name: "early",
            dir: tmp.path(),
            daemon_addr: &addr,
            daemon_pub: &daemon_pub,
            listen: format!("127.0.0.1:{}", free_port()),
            advertise: None,
            tasks: 1,
            wrap: Vec::new(),
        },
        30_000,
    );
    // Nothing listens yet: its first heartbeat fails.
    wait_for("the agent's first heartbeat to fail", 30, || {
        agent.log_text().contains("Heartbeat failed")
    });
    let d = Daemon::start_at(&work, &addr);
    // Well inside the 30 s the next heartbeat would have waited.
    wait_for("the agent to join", 15, || {
        d.workers()
            .workers
            .iter()
            .any(|w| w.name == "early" && w.state == "up")
    });
}
