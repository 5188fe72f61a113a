//! Outages cost time, not failures: the destination goes away in the middle
//! of a run (every connection cut, the port closed) and comes back; the run
//! waits for it and ends with every object verified, the large file's
//! upload continued from its parts, whether the outage lasts 30 s or
//! 3 minutes. An object the destination refuses (403) still fails at once,
//! without stopping the others; past `endpointOutageLimit` the waiting
//! objects fail `ENDPOINT_DOWN`. Bucket sources (S3, Azure) and a URL
//! list's origin going away cost time too.

use std::time::{Duration, Instant};

use testkit::net::{FaultProxy, Faults, FileServer, Switch};

use crate::support::*;

/// `ossimportctl run` in the background, its stderr kept (progress lines
/// every second) for the test to read.
fn spawn_run(
    cfg: &std::path::Path,
    work: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Child {
    ctl()
        .arg("run")
        .arg(cfg)
        .arg("--work-dir")
        .arg(work)
        .arg("--progress-interval")
        .arg("1")
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start ossimportctl run")
}

/// The first progress line in `log` naming an outage, waited for up to
/// 25 s from `since`.
async fn outage_line(log: &std::path::Path, since: Instant) -> String {
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .rev()
            .find(|l| l.starts_with("progress:") && l.contains("unreachable since"))
        {
            eprintln!("during the outage: {l}");
            return l.to_string();
        }
        assert!(
            since.elapsed() < Duration::from_secs(25),
            "no outage on the progress line:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The destination behind `link`: SeaweedFS, through a proxy that refuses
/// keys under `denied/` (403).
struct Dest {
    s3: S3Server,
    _proxy: FaultProxy,
    link: Switch,
}

async fn dest() -> Dest {
    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    // ctl -> switch (the link that goes down) -> proxy -> SeaweedFS.
    let proxy = FaultProxy::start(
        &s3.endpoint,
        Faults {
            deny_key: Some("denied/".into()),
            ..Faults::default()
        },
    )
    .await;
    let link = Switch::start(&proxy.endpoint).await;
    Dest {
        s3,
        _proxy: proxy,
        link,
    }
}

/// A run of 1,000 small files and a 24 MiB one under `dir` into `d`, at
/// 2 MiB/s, 3 objects at a time, returned once the large file has sent a
/// part and small objects are still being copied.
struct BigRun {
    child: std::process::Child,
    src: std::path::PathBuf,
    small: Vec<String>,
    work: std::path::PathBuf,
    log: std::path::PathBuf,
}

fn start_big_run(dir: &std::path::Path, d: &Dest) -> BigRun {
    let src = dir.join("src");
    let small = tree(&src, 1000, 16 << 10);
    big_file(&src.join("a big/file.bin"), 24);
    std::fs::write(
        dir.join("sys.properties"),
        "workerMaxThroughput(KB/s)=2048\nworkerTaskThreadNum=3\n",
    )
    .unwrap();
    let work = dir.join("work");
    let cfg = job_cfg(
        dir,
        "outage_job",
        &src,
        &d.link.endpoint(),
        "bkt",
        "taskObjectCountLimit=50\nmultipartUploadThreshold=8m\nmultipartUploadPartSize=5m\n\
         uploadThreadNumPerLargeFile=1\nrequestAttempts=3",
    );
    let log = dir.join("run.log");
    let child = spawn_run(&cfg, &work, &log);
    wait_for_parts(&work, 1);
    let verified_before = objects(&work)
        .iter()
        .filter(|o| o.state == ObjectState::Verified)
        .count();
    assert!(
        verified_before < 1000,
        "the outage came too late: small objects were done"
    );
    BigRun {
        child,
        src,
        small,
        work,
        log,
    }
}

/// Takes `d`'s link down for `down_for`, checking the progress line and that
/// nothing failed meanwhile, then up again.
async fn outage(d: &Dest, down_for: Duration, run: &BigRun) {
    let down_at = Instant::now();
    d.link.down();
    // The run notices, and says so on its progress line.
    let line = outage_line(&run.log, down_at).await;
    assert!(
        line.contains(&format!(
            "destination {}/bkt unreachable since",
            d.link.endpoint()
        )),
        "{line}"
    );
    assert!(line.contains("retrying every"), "{line}");
    tokio::time::sleep(down_for.saturating_sub(down_at.elapsed())).await;
    let failed_during = objects(&run.work)
        .iter()
        .filter(|o| o.state == ObjectState::Failed)
        .count();
    assert_eq!(failed_during, 0, "objects failed while the link was down");
    d.link.up().await;
}

/// The end of a [`BigRun`] after an outage: exit 0, every object verified
/// on its first attempt, the large file continued from its parts, the
/// bytes identical.
async fn big_run_done(d: &Dest, run: BigRun) {
    let BigRun {
        mut child,
        src,
        small,
        work,
        log,
    } = run;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let out = std::fs::read_to_string(log.with_extension("out")).unwrap();
    assert_eq!(status.code(), Some(0), "{out}\n{text}");
    assert!(squash(&out).contains("verified 1001 of 1001"), "{out}");
    let all = objects(&work);
    assert!(
        all.iter()
            .all(|o| o.state == ObjectState::Verified && o.attempts == 1)
    );
    // The large file went on from the parts the destination kept.
    let big = object(&work, "a big/file.bin");
    assert!(big.parts_resumed >= 1, "the upload was restarted: {big:?}");
    let client = d.s3.client();
    assert_eq!(
        get(&client, "bkt", "a big/file.bin").await,
        std::fs::read(src.join("a big/file.bin")).unwrap()
    );
    for rel in small.iter().step_by(7) {
        assert_eq!(
            get(&client, "bkt", rel).await,
            std::fs::read(src.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(text.contains("Endpoint down"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_down_for_30_s_costs_time_not_failures() {
    let d = dest().await;
    let tmp = tempfile::tempdir().unwrap();
    let run = start_big_run(tmp.path(), &d);
    outage(&d, Duration::from_secs(30), &run).await;
    big_run_done(&d, run).await;

    // A 403 on one object fails that object at once; the others go on.
    let denied = tmp.path().join("src2");
    small_tree(&denied, 20);
    std::fs::create_dir_all(denied.join("denied")).unwrap();
    std::fs::write(denied.join("denied/x.txt"), b"no").unwrap();
    let cfg = job_cfg(
        tmp.path(),
        "denied_job",
        &denied,
        &d.link.endpoint(),
        "bkt",
        "destPrefix=two/",
    );
    let work2 = tmp.path().join("work2");
    let started = Instant::now();
    let out = run_job(&cfg, &work2);
    assert_eq!(out.status.code(), Some(1));
    let rows = objects(&work2);
    let failed: Vec<_> = rows
        .iter()
        .filter(|o| o.state == ObjectState::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].rel_path, "denied/x.txt");
    assert!(
        failed[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("AccessDenied"),
        "{:?}",
        failed[0]
    );
    assert_eq!(
        rows.iter()
            .filter(|o| o.state == ObjectState::Verified)
            .count(),
        20
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(!stderr(&out).contains("Endpoint down"), "{}", stderr(&out));
}

/// Three minutes down (probes back off to a minute apart): the run rides
/// it out as it did 30 s. A second run on the same link with
/// `endpointOutageLimit=20` gives up after 20 s: its waiting objects fail
/// `ENDPOINT_DOWN` with the reason, and a rerun once the link is back
/// finishes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_minutes_down_and_a_limit_of_20_s() {
    let d = dest().await;
    let tmp = tempfile::tempdir().unwrap();
    let run = start_big_run(&tmp.path().join("long"), &d);

    let p3 = tmp.path().join("limited");
    let src3 = p3.join("src");
    tree(&src3, 200, 64 << 10);
    std::fs::write(
        p3.join("sys.properties"),
        "workerMaxThroughput(KB/s)=1024\nworkerTaskThreadNum=4\n",
    )
    .unwrap();
    let cfg = job_cfg(
        &p3,
        "limit_job",
        &src3,
        &d.link.endpoint(),
        "bkt",
        "destPrefix=three/\nendpointOutageLimit=20",
    );
    let work3 = p3.join("work");
    let log3 = p3.join("run.log");
    let mut child = spawn_run(&cfg, &work3, &log3);
    wait_for_store(&work3, "verified objects", |s| {
        s.objects().is_ok_and(|o| {
            o.len() == 200
                && o.iter()
                    .filter(|o| o.state == ObjectState::Verified)
                    .count()
                    >= 10
        })
    });
    let limited = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        (status, Instant::now())
    });
    let down_at = Instant::now();
    outage(&d, Duration::from_secs(180), &run).await;

    let (status, ended) = limited.await.unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "{}",
        std::fs::read_to_string(&log3).unwrap()
    );
    let gave_up_after = ended.duration_since(down_at);
    assert!(
        gave_up_after >= Duration::from_secs(18) && gave_up_after < Duration::from_secs(60),
        "the limited run ended {gave_up_after:?} into the outage"
    );
    let rows = objects(&work3);
    let down: Vec<_> = rows
        .iter()
        .filter(|o| o.error_code.as_deref() == Some("ENDPOINT_DOWN"))
        .collect();
    assert!(!down.is_empty());
    assert!(
        rows.iter().all(|o| o.state == ObjectState::Verified
            || o.error_code.as_deref() == Some("ENDPOINT_DOWN")),
        "{rows:?}"
    );
    let why = down[0].error.as_deref().unwrap_or_default();
    eprintln!("past the limit: {why}");
    assert!(
        why.contains("unreachable since") && why.contains("endpointOutageLimit=20 s"),
        "{why}"
    );

    big_run_done(&d, run).await;
    let out = run_job(&cfg, &work3);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        objects(&work3)
            .iter()
            .all(|o| o.state == ObjectState::Verified)
    );
}

/// Bucket sources that go away mid-copy for 30 s, an S3 bucket and an
/// Azure container at the same time: the objects wait for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_sources_down_for_a_while_cost_time_not_failures() {
    use object_store::ObjectStoreExt;
    use testkit::azure::{ACCOUNT, Azurite, KEY};
    let s3 = S3Server::start();
    s3.create_bucket("source").await;
    s3.create_bucket("target").await;
    let client = s3.client();
    let keys: Vec<String> = (0..150).map(|i| format!("k/{i:03}")).collect();
    let az = Azurite::start();
    az.create_container("media");
    let blobs = az.store("media");
    for (i, k) in keys.iter().enumerate() {
        client
            .put_object()
            .bucket("source")
            .key(k)
            .body(bytes(i as u64, 32 << 10).into())
            .send()
            .await
            .unwrap();
        blobs
            .put(
                &object_store::path::Path::parse(k).unwrap(),
                bytes(i as u64 + 1000, 32 << 10).into(),
            )
            .await
            .unwrap();
    }
    let s3_link = Switch::start(&s3.endpoint).await;
    let az_link = Switch::start(&format!("http://127.0.0.1:{}", az.port)).await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("sys.properties"),
        "workerMaxThroughput(KB/s)=1024\nworkerTaskThreadNum=4\n",
    )
    .unwrap();
    let job = |name: &str, source: String| {
        let cfg = tmp.path().join(format!("{name}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "jobName={name}\n{source}\ndestDomain={}\ndestBucket=target\ndestPrefix={name}/\n\
                 destAccessKey={AK}\ndestSecretKey={SK}\nrequestAttempts=3\n",
                s3.endpoint
            ),
        )
        .unwrap();
        let (work, log) = (
            tmp.path().join(format!("{name}.work")),
            tmp.path().join(format!("{name}.log")),
        );
        (spawn_run(&cfg, &work, &log), work, log)
    };
    let runs = [
        job(
            "from_s3",
            format!(
                "srcType=s3\nsrcDomain={}\nsrcBucket=source\nsrcPrefix=\n\
                 srcAccessKey={AK}\nsrcSecretKey={SK}",
                s3_link.endpoint()
            ),
        ),
        job(
            "from_azure",
            format!(
                "srcType=azure\nsrcDomain={}/{ACCOUNT}\nsrcAccessKey={ACCOUNT}\n\
                 srcSecretKey={KEY}\nsrcBucket=media\nsrcPrefix=",
                az_link.endpoint()
            ),
        ),
    ];
    for (_, work, _) in &runs {
        wait_for_store(work, "verified objects", |s| {
            s.objects().is_ok_and(|o| {
                o.len() == 150
                    && o.iter()
                        .filter(|o| o.state == ObjectState::Verified)
                        .count()
                        >= 20
            })
        });
    }
    let down_at = Instant::now();
    s3_link.down();
    az_link.down();
    let line = outage_line(&runs[0].2, down_at).await;
    assert!(
        line.contains(&format!(
            "source {}/source unreachable since",
            s3_link.endpoint()
        )),
        "{line}"
    );
    let line = outage_line(&runs[1].2, down_at).await;
    assert!(
        line.contains(&format!(
            "source {}/{ACCOUNT}/media unreachable since",
            az_link.endpoint()
        )),
        "{line}"
    );
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_at.elapsed())).await;
    s3_link.up().await;
    az_link.up().await;
    for (n, (mut child, work, log)) in runs.into_iter().enumerate() {
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(0), "{text}");
        let all = objects(&work);
        assert_eq!(all.len(), 150);
        assert!(
            all.iter()
                .all(|o| o.state == ObjectState::Verified && o.attempts == 1),
            "{text}"
        );
        let prefix = ["from_s3", "from_azure"][n];
        for (i, k) in keys.iter().enumerate().step_by(11) {
            assert_eq!(
                get(&client, "target", &format!("{prefix}/{k}")).await,
                bytes(i as u64 + 1000 * n as u64, 32 << 10),
                "{k}"
            );
        }
    }
}

/// A URL list's origin that goes away mid-copy, having answered before:
/// its objects wait for it. A host that never answered is a bad URL, not
/// an outage: its object fails as before, without holding up the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_origin_down_for_a_while_costs_time_not_failures() {
    let s3 = S3Server::start();
    s3.create_bucket("target").await;
    let mut files = std::collections::HashMap::new();
    let mut lines = String::new();
    for i in 0..120u64 {
        files.insert(format!("/site/f{i:03}.bin"), bytes(i, 32 << 10));
        lines.push_str(&format!("{{BASE}}/site/ f{i:03}.bin\n"));
    }
    lines.push_str("http://127.0.0.1:9/ refused.png\n");
    let server = FileServer::start(files).await;
    let link = Switch::start(&server.base).await;
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("http.list");
    std::fs::write(&list, lines.replace("{BASE}", &link.endpoint())).unwrap();
    std::fs::write(
        tmp.path().join("sys.properties"),
        "workerMaxThroughput(KB/s)=1024\nworkerTaskThreadNum=4\n",
    )
    .unwrap();
    let cfg = tmp.path().join("url_outage.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=url_outage\nsrcType=http\nhttpListFilePath={}\nhttpPrefixColumn=1\n\
             relativePathColumn=2\ndestDomain={}\ndestBucket=target\ndestAccessKey={AK}\n\
             destSecretKey={SK}\nrequestAttempts=3\n",
            list.display(),
            s3.endpoint
        ),
    )
    .unwrap();
    let work = tmp.path().join("work");
    let log = tmp.path().join("run.log");
    let mut child = spawn_run(&cfg, &work, &log);
    wait_for_store(&work, "verified objects", |s| {
        s.objects().is_ok_and(|o| {
            o.len() == 121
                && o.iter()
                    .filter(|o| o.state == ObjectState::Verified)
                    .count()
                    >= 20
        })
    });
    let down_at = Instant::now();
    link.down();
    let line = outage_line(&log, down_at).await;
    assert!(
        line.contains(&format!("source {} unreachable since", link.endpoint())),
        "{line}"
    );
    assert!(!line.contains("127.0.0.1:9 "), "{line}");
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(down_at.elapsed())).await;
    link.up().await;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let out = std::fs::read_to_string(log.with_extension("out")).unwrap();
    assert_eq!(status.code(), Some(1), "{out}\n{text}");
    let all = objects(&work);
    let failed: Vec<_> = all
        .iter()
        .filter(|o| o.state != ObjectState::Verified)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].rel_path, "refused.png");
    assert_eq!(failed[0].error_code.as_deref(), Some("SOURCE_UNREADABLE"));
    assert!(all.iter().all(|o| o.attempts == 1));
    let client = s3.client();
    for i in (0..120u64).step_by(9) {
        assert_eq!(
            get(&client, "target", &format!("f{i:03}.bin")).await,
            bytes(i, 32 << 10)
        );
    }
}
