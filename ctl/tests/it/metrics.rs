//! `ossimportctl run --metrics ADDR`: the run serves the daemon's `/metrics`
//! and status page while it lasts; nothing listens without the flag.

use std::time::Duration;

use crate::support::*;
use testkit::net::http_get;

#[test]
fn run_serves_metrics_and_the_status_page_while_it_lasts() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 200, 16 << 10);
    let dest = tmp.path().join("dest");
    let cfg = tmp.path().join("job.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=run-metrics\nsrcType=local\nsrcPrefix={}/\ndestType=local\ndestDir={}\n",
            src.display(),
            dest.display()
        ),
    )
    .unwrap();
    // About 5 s at 640 KB/s.
    std::fs::write(
        tmp.path().join("sys.properties"),
        "workerMaxThroughput(KB/s)=640\n",
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let child = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--work-dir")
        .arg(tmp.path().join("work"))
        .arg("--metrics")
        .arg(&addr)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen_mid = false;
    let mut last = String::new();
    wait_for("a scrape in the middle of the run", 60, || {
        if let Ok((200, m)) = http_get(&addr, "/metrics") {
            let v = m
                .lines()
                .find(|l| l.starts_with("ossimport_objects_verified_total{job=\"run-metrics\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
            seen_mid |= v.is_some_and(|v| v > 0 && v < 200);
            last = m;
        }
        std::thread::sleep(Duration::from_millis(200));
        seen_mid
    });
    assert!(
        last.contains("ossimport_agent_up{agent=\"local\",fingerprint=\"local\"} 1"),
        "{last}"
    );
    assert!(last.ends_with("# EOF\n"), "{last}");
    let (code, page) = http_get(&addr, "/").unwrap();
    assert_eq!(code, 200);
    assert!(
        page.contains("ossimport run run-metrics") && page.contains("<td>run-metrics</td>"),
        "{page}"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("metrics and status page: http://{addr}/")),
        "{}",
        stderr(&out)
    );
    // Gone with the run.
    assert!(http_get(&addr, "/metrics").is_err());
}
