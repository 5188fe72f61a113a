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
        // SeaweedFS checks the CRC-64/NVME each PUT carries: no MD5 needed.
        assert_eq!(v["verified_by"], "size+crc64nvme", "{v}");
        assert!(v["md5"].is_null(), "{v}");
        assert!(!v["crc64"].is_null(), "{v}");
    }
}

/// Adds `n` verified objects to job `job_id` of a store no daemon holds,
/// through the store's own paths: tasks committed as a scan does, leased,
/// and every object reported verified by an executor.
fn fill_verified(store: &daemon::store::Store, job_id: i64, n: usize) {
    use proto::job::{Event, ObjectResult, Outcome};
    const CHUNK: usize = 10_000;
    for c in 0..n.div_ceil(CHUNK) {
        let objs: Vec<daemon::store::NewObject> = (0..CHUNK.min(n - c * CHUNK))
            .map(|i| daemon::store::NewObject {
                rel_path: format!("bulk/{:03}/{:07}.dat", c, c * CHUNK + i),
                size: 4096 + i as u64,
                mtime: 1_700_000_000,
                ident: None,
                src_ref: None,
                failure: None,
            })
            .collect();
        store
            .commit_task(job_id, &objs, &format!("bulk-{c}"))
            .unwrap();
        for t in store
            .lease_tasks(job_id, 100, "filler", i64::MAX / 2)
            .unwrap()
        {
            let mut events: Vec<Event> = t
                .objects
                .iter()
                .map(|o| {
                    Event::ObjectDone(ObjectResult {
                        object_id: o.object_id,
                        task_id: t.task_id,
                        outcome: Outcome::Verified,
                        size: o.size,
                        crc64: Some(o.object_id as u64 * 7919),
                        md5: Some(format!("{:032x}", o.object_id)),
                        etag: Some(format!("{:032x}", o.object_id)),
                        verified_by: "size+md5+crc64".into(),
                        error: None,
                        retries: 0,
                        parts_resumed: 0,
                        source_ident: None,
                        metadata: None,
                    })
                })
                .collect();
            events.push(Event::TaskDone { task_id: t.task_id });
            let r = store.record(&[("filler", events.as_slice())]).unwrap();
            assert_eq!(r.dropped, 0);
        }
    }
}

/// Peak resident memory of a process (`VmHWM`), bytes.
fn peak_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

#[test]
fn a_million_object_manifest_keeps_the_daemons_memory_flat() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    Daemon::init(&work);
    let addr = format!("127.0.0.1:{}", free_port());
    // Two real jobs of one file each, copied by the worker on the master.
    let mut d = Daemon::start_with(&work, &addr, &["--local-worker", "on"]);
    for job in ["small-job", "large-job"] {
        let src = tmp.path().join(job);
        tree(&src, 1, 100);
        let dest = tmp.path().join(format!("{job}-dest"));
        std::fs::create_dir_all(&dest).unwrap();
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
        assert_eq!(d.wait_job(job, 60).state, JobState::Succeed);
    }
    d.kill();
    // 100,000 and 1,000,000 more verified objects in the two jobs.
    {
        let store = daemon::store::Store::open(&work.join(daemon::state::STORE_FILE)).unwrap();
        for (job, n) in [("small-job", 100_000), ("large-job", 1_000_000)] {
            let id = store.find_job(job).unwrap().unwrap().id;
            fill_verified(&store, id, n);
        }
    }
    // Each manifest written by a fresh daemon; its peak RSS read after.
    let mut peaks = Vec::new();
    for (job, n) in [("small-job", 100_001), ("large-job", 1_000_001)] {
        let d = Daemon::start_with(&work, &addr, &["--local-worker", "on"]);
        let at_start = peak_rss(d.child.id());
        let path = tmp.path().join(format!("{job}.csv"));
        let out = std::process::Command::new(bin("ossimportctl"))
            .args(["report", job, "--manifest"])
            .arg(&path)
            .arg("--socket")
            .arg(&d.socket)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let peak = peak_rss(d.child.id());
        let lines =
            std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&path).unwrap()))
                .count();
        // The header, a row per object, the summary.
        assert_eq!(lines, n + 2, "{job}");
        eprintln!(
            "{job}: {n} objects, daemon peak RSS {} KiB ({} KiB before the manifest)",
            peak / 1024,
            at_start / 1024
        );
        peaks.push(peak);
        drop(d);
    }
    // Flat: a cost per object would make it ~10x. Measured 1.12-1.16x
    // alone and up to 1.26x while the whole suite runs beside it on two
    // cores (allocator arenas and SQLite's caches vary with load).
    let ratio = peaks[1] as f64 / peaks[0] as f64;
    assert!(
        ratio <= 1.35,
        "daemon peak RSS {} KiB at 1M objects vs {} KiB at 100k ({ratio:.2}x)",
        peaks[1] / 1024,
        peaks[0] / 1024
    );
}
