//! The daemon's manifest, a page at a time: pages follow each other by
//! object id with every object once, and `ossimportctl report JOB
//! --manifest FILE.jsonl` writes them all with a summary line whose
//! SHA-256 covers the body.

use proto::api::{JobState, ManifestPage, Page};

use crate::support::*;

#[test]
fn report_writes_the_daemons_manifest_page_by_page() {
    let s3 = S3Server::start();
    rt().block_on(s3.create_bucket("dman"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = tree(&src, 40, 500);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    Daemon::init(&work);
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(&work, &addr, &["--local-worker", "on"]);
    let cfg = job_cfg(tmp.path(), "dmanjob", &src, &s3.endpoint, "dman", 8);
    d.submit(&cfg);
    let st = d.wait_job("dmanjob", 120);
    assert_eq!(st.state, JobState::Succeed, "{st:?}");

    // Pages of 7, chained by `next`: every object once, in id order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let q = Page {
            limit: Some(7),
            after: after.clone(),
        };
        let mut client = proto::control::Client::new(&d.socket);
        client.timeout = std::time::Duration::from_secs(30);
        let (p, _): (ManifestPage, _) = rt()
            .block_on(client.call(&Endpoint::Manifest("dmanjob".into()), Some(&q), None))
            .unwrap();
        assert!(p.rows.len() <= 7);
        seen.extend(
            p.rows
                .iter()
                .map(|r| (r.id, r.key.clone(), r.outcome.clone())),
        );
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), rels.len());
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "ids not increasing"
    );
    assert!(seen.iter().all(|(_, _, o)| o == "verified"));
    let mut keys: Vec<&str> = seen.iter().map(|(_, k, _)| k.as_str()).collect();
    keys.sort();
    let mut want: Vec<&str> = rels.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(keys, want);

    // The whole file through ossimportctl.
    let path = tmp.path().join("proof.jsonl");
    let out = std::process::Command::new(bin("ossimportctl"))
        .args(["report", "dmanjob", "--manifest"])
        .arg(&path)
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let (body, last) = text.trim_end_matches('\n').rsplit_once('\n').unwrap();
    let body = format!("{body}\n");
    let summary: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(summary["summary"]["objects"], 40);
    assert_eq!(summary["summary"]["verified"], 40);
    assert_eq!(summary["sha256"], proto::auth::sha256_hex(body.as_bytes()));
    for line in body.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["outcome"], "verified");
        assert!(
            v["source"]
                .as_str()
                .unwrap()
                .starts_with(&src.display().to_string())
        );
        assert_eq!(v["md5"].as_str().unwrap().len(), 32);
    }
}
