//! The daemon checks what executors report before it counts: played
//! agents (the project's `agent_load`, real keys and signed requests) that
//! report a size other than the listing's, another source file's identity,
//! or evidence that does not prove `verifyMode=checksum` get every result
//! `REJECTED_RESULT`; the job fails instead of succeeding with nothing
//! copied, and the agent shows `suspect` in `workers` and on `/metrics`. An
//! honest report of the same shape counts. Before, the store set
//! `verified` from whatever the report said.

use std::process::Command;

use crate::support::*;
use testkit::net::http_get;

#[test]
fn results_that_disagree_with_the_listing_or_prove_nothing_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let daemon_pub = Daemon::init(&work);
    std::fs::write(work.join("agent_keys"), "").unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(
        &work,
        &format!("127.0.0.1:{}", free_port()),
        &["--metrics-listen", &metrics],
    );
    let src = tmp.path().join("src");
    small_tree(&src, 6);
    let play = |job: &str, lie: Option<&str>| {
        let dest = tmp.path().join(format!("dest-{job}"));
        let cfg = tmp.path().join(format!("{job}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "jobName={job}\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}/\n",
                src.display(),
                dest.display()
            ),
        )
        .unwrap();
        d.submit(&cfg);
        let mut c = Command::new(bin("examples/agent_load"));
        c.arg("--daemon")
            .arg(&d.addr)
            .arg("--daemon-key")
            .arg(&daemon_pub)
            .arg("--agent-keys")
            .arg(work.join("agent_keys"))
            .args([
                "--agents",
                "1",
                "--tasks",
                "1",
                "--expect",
                "6",
                "--timeout",
                "60",
            ]);
        if let Some(l) = lie {
            c.args(["--lie", l]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        d.wait_job(job, 60)
    };

    for (lie, why) in [
        ("size", "bytes verified; the listing recorded"),
        ("ident", "a source file other than the one listed"),
        ("evidence", "does not prove what verifyMode=checksum asks"),
    ] {
        let job = format!("lie-{lie}");
        let st = play(&job, Some(lie));
        assert_eq!(st.state, proto::api::JobState::Failed, "{st:?}");
        assert_eq!((st.counts.verified, st.counts.failed), (0, 6), "{st:?}");
        let errs: proto::api::ErrorList = api(
            &d.socket,
            proto::control::Endpoint::Errors(job.clone()),
            None,
        );
        for f in &errs.failed {
            assert_eq!(f.code, "REJECTED_RESULT", "{f:?}");
            assert!(
                f.message.contains("the daemon rejected the result of") && f.message.contains(why),
                "{f:?}"
            );
        }
    }
    // The same reports, honest about what the listing says: counted.
    let st = play("honest", None);
    assert_eq!(st.state, proto::api::JobState::Succeed, "{st:?}");
    assert_eq!(st.counts.verified, 6);

    let workers = d.workers().workers;
    let suspects = workers.iter().filter(|w| w.state == "suspect").count();
    assert_eq!(suspects, 3, "{workers:?}");
    assert!(
        workers.iter().filter(|w| w.state == "suspect").all(|w| w
            .error
            .as_deref()
            .is_some_and(|e| e.contains("6 results rejected"))),
        "{workers:?}"
    );
    let (_, m) = http_get(&metrics, "/metrics").unwrap();
    let rejected: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("ossimport_results_rejected_total{"))
        .collect();
    eprintln!("{}", rejected.join("\n"));
    // The played agents of the three runs share one name (`load00`): the
    // counter is by name, 6 results of each.
    let total: f64 = rejected
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, 18.0, "{rejected:?}");
}
