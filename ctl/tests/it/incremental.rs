//! `ossimportctl run` on an incremental job (`isIncremental=true`): it keeps
//! listing, one pass every interval, until Ctrl-C; each pass copies only
//! what is new or changed, and a later run continues the schedule and the
//! pass count where the stopped one left them. Bucket sources and URL lists
//! get their own rule of "changed" (ETag or size; new lines).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::*;

pub(crate) fn spawn_run(cfg: &Path, work: &Path, log: &Path) -> Child {
    ctl()
        .arg("run")
        .arg(cfg)
        .arg("--work-dir")
        .arg(work)
        .env("OSSIMPORT_MIN_INCREMENTAL_INTERVAL", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Ctrl-C, as a user would: a clean stop, exit code 130.
pub(crate) fn interrupt(mut child: Child) {
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

/// The passes the store in `work` holds for `job`.
fn passes(work: &Path, job: &str) -> Vec<proto::api::PassRecord> {
    let s = store(work);
    match s.find_job(job) {
        Ok(Some(j)) => s.passes(j.id).unwrap_or_default(),
        _ => Vec::new(),
    }
}

pub(crate) fn wait_pass_ended(work: &Path, job: &str, n: u32) -> proto::api::PassRecord {
    wait_for_store(work, &format!("pass {n} to end"), |_| {
        passes(work, job)
            .iter()
            .any(|p| p.number == n && p.ended_at.is_some())
    });
    passes(work, job).remove(n as usize - 1)
}

fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn run_keeps_passing_until_ctrl_c_and_a_rerun_continues_the_schedule() {
    let s3 = S3Server::start();
    let c = s3.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { c.create_bucket().bucket("inc").send().await.unwrap() });
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = tree(&src, 30, 4096);
    let work = tmp.path().join("work");
    let cfg = job_cfg(
        tmp.path(),
        "incjob",
        &src,
        &s3.endpoint,
        "inc",
        "isIncremental=true\nincrementalModeInterval=3\ntaskObjectCountLimit=8",
    );
    let log = tmp.path().join("run1.log");

    // Pass 1 copies everything; then the world changes under the running
    // command and pass 2 copies exactly what changed.
    let child = spawn_run(&cfg, &work, &log);
    let p1 = wait_pass_ended(&work, "incjob", 1);
    assert_eq!(
        (p1.found, p1.new, p1.copied, p1.failed),
        (30, 30, 30, 0),
        "{p1:?}"
    );
    std::fs::write(src.join("added.txt"), b"new in pass 2").unwrap();
    std::fs::write(
        src.join(&rels[3]),
        b"grown: longer than before, much longer",
    )
    .unwrap();
    let p2 = wait_pass_ended(&work, "incjob", 2);
    assert_eq!(
        (
            p2.found, p2.new, p2.changed, p2.deleted, p2.copied, p2.failed
        ),
        (31, 1, 1, 0, 2, 0),
        "{p2:?}"
    );
    interrupt(child);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("pass 1 ended: found 30, new 30"), "{said}");
    // The last progress line (printed at Ctrl-C) and every other one: done
    // never above the total. Before, pass 2 reset the totals and the last
    // line read `objects 32/2 ... 120.5 KiB / 44 B`.
    let progress: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert!(!progress.is_empty(), "{said}");
    for line in &progress {
        let objects = line["progress: objects ".len()..]
            .split(' ')
            .next()
            .unwrap();
        let (done, listed) = objects.split_once('/').unwrap();
        let listed = listed.trim_end_matches('+');
        let (done, listed): (u64, u64) = (done.parse().unwrap(), listed.parse().unwrap());
        assert!(done <= listed, "{line}");
    }
    assert!(
        progress
            .last()
            .unwrap()
            .starts_with("progress: objects 32/"),
        "{said}"
    );
    assert!(said.contains("next pass 2 at"), "{said}");
    assert!(said.contains("pass 2: listing incjob"), "{said}");
    assert!(
        said.contains("run the same command again to resume"),
        "{said}"
    );

    // Stopped between passes, the world changes again: one deleted, one
    // touched (mtime only). A new run resumes at pass 3.
    std::fs::remove_file(src.join(&rels[5])).unwrap();
    set_mtime(&src.join(&rels[7]), 1_000_000);
    let log2 = tmp.path().join("run2.log");
    let child = spawn_run(&cfg, &work, &log2);
    let p3 = wait_pass_ended(&work, "incjob", 3);
    interrupt(child);
    assert_eq!(
        (
            p3.found, p3.new, p3.changed, p3.deleted, p3.copied, p3.failed
        ),
        (30, 0, 1, 1, 1, 0),
        "{p3:?}"
    );
    let said = std::fs::read_to_string(&log2).unwrap();
    assert!(said.contains("pass 3 ended:"), "{said}");
    assert!(
        !said.contains("pass 1 ended"),
        "the rerun ran pass 1 again: {said}"
    );

    // The destination: every object, the deleted one kept, the grown one
    // with its new bytes.
    rt.block_on(async {
        let listed = c.list_objects_v2().bucket("inc").send().await.unwrap();
        assert_eq!(listed.key_count(), Some(31));
        let got = c
            .get_object()
            .bucket("inc")
            .key(&rels[3])
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert_eq!(&got[..], b"grown: longer than before, much longer");
        assert!(
            c.head_object()
                .bucket("inc")
                .key(&rels[5])
                .send()
                .await
                .is_ok(),
            "the deleted source's object was removed at the destination"
        );
    });
}

/// The other sources' idea of "changed": a URL list gains lines (only
/// those are fetched), a bucket gets an object rewritten (new ETag), one
/// whose metadata alone was replaced (same ETag, new LastModified: its new
/// Content-Type arrives, written in place; or, where the destination
/// object changed since, copied again) and one added (only those are copied); each in
/// its second pass.
#[test]
fn url_lists_and_buckets_copy_only_their_new_and_changed_entries() {
    let s3 = S3Server::start();
    let c = s3.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for b in ["incsrc", "incdst"] {
            c.create_bucket().bucket(b).send().await.unwrap();
        }
        for i in 0..20 {
            c.put_object()
                .bucket("incsrc")
                .key(format!("obj/{i:02}"))
                .body(bytes(i, 1000 + i as usize).into())
                .send()
                .await
                .unwrap();
        }
    });
    let tmp = tempfile::tempdir().unwrap();

    // A bucket source.
    let cfg = tmp.path().join("bucket.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=incbucket\nsrcType=s3\nsrcDomain={ep}\nsrcBucket=incsrc\nsrcPrefix=obj/\n\
             srcAccessKey={AK}\nsrcSecretKey={SK}\ndestDomain={ep}\ndestBucket=incdst\n\
             destPrefix=b/\ndestAccessKey={AK}\ndestSecretKey={SK}\nisIncremental=true\n\
             incrementalModeInterval=3\n",
            ep = s3.endpoint
        ),
    )
    .unwrap();
    let work = tmp.path().join("wb");
    let child = spawn_run(&cfg, &work, &tmp.path().join("b.log"));
    let p1 = wait_pass_ended(&work, "incbucket", 1);
    assert_eq!((p1.new, p1.copied), (20, 20), "{p1:?}");
    // LastModified has a resolution of a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    rt.block_on(async {
        // Only their metadata replaced: the same ETag and size.
        for n in ["07", "08"] {
            c.copy_object()
                .bucket("incsrc")
                .key(format!("obj/{n}"))
                .copy_source(format!("incsrc/obj/{n}"))
                .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
                .content_type("image/webp")
                .send()
                .await
                .unwrap();
        }
        // Someone else wrote 08 at the destination since: it is not the
        // object the first pass verified, so its bytes are copied again.
        c.put_object()
            .bucket("incdst")
            .key("b/08")
            .body(b"someone else's".to_vec().into())
            .send()
            .await
            .unwrap();
        for (key, body) in [
            ("obj/05", b"rewritten".to_vec()),
            ("obj/new", b"added".to_vec()),
        ] {
            c.put_object()
                .bucket("incsrc")
                .key(key)
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
    });
    let p2 = wait_pass_ended(&work, "incbucket", 2);
    interrupt(child);
    assert_eq!(
        (
            p2.found, p2.new, p2.changed, p2.deleted, p2.copied, p2.failed
        ),
        (21, 1, 3, 0, 4, 0),
        "{p2:?}"
    );
    // The metadata-only change was written in place (a server-side copy
    // of the destination object onto itself), its bytes not sent again;
    // the rewritten object was copied.
    let by = |path: &str| {
        objects(&work)
            .into_iter()
            .find(|o| o.rel_path == path)
            .and_then(|o| o.verified_by)
            .unwrap_or_default()
    };
    assert_eq!(by("07"), "size+md5+in-place");
    for copied in ["05", "08"] {
        assert!(!by(copied).contains("in-place"), "{}", by(copied));
    }
    rt.block_on(async {
        let h = c
            .head_object()
            .bucket("incdst")
            .key("b/07")
            .send()
            .await
            .unwrap();
        assert_eq!(h.content_type(), Some("image/webp"));
        assert_eq!(get(&c, "incdst", "b/07").await, bytes(7, 1007));
        assert_eq!(get(&c, "incdst", "b/08").await, bytes(8, 1008));
        let h = c
            .head_object()
            .bucket("incdst")
            .key("b/08")
            .send()
            .await
            .unwrap();
        assert_eq!(h.content_type(), Some("image/webp"));
        assert_eq!(get(&c, "incdst", "b/05").await, b"rewritten");
        assert_eq!(get(&c, "incdst", "b/new").await, b"added");
    });

    // A URL list, served by a file server.
    let files: std::collections::HashMap<String, Vec<u8>> = (0..12)
        .map(|i| (format!("/f/{i}"), bytes(i, 500)))
        .collect();
    let server = rt.block_on(testkit::net::FileServer::start(files));
    let list = tmp.path().join("urls.txt");
    let line = |i: u64| format!("{}/f/ {i}\n", server.base);
    std::fs::write(&list, (0..10).map(line).collect::<String>()).unwrap();
    let cfg = tmp.path().join("http.cfg");
    std::fs::write(
        &cfg,
        format!(
            "jobName=inchttp\nsrcType=http\nhttpListFilePath={}\ndestDomain={ep}\ndestBucket=incdst\n\
             destPrefix=h/\ndestAccessKey={AK}\ndestSecretKey={SK}\nisIncremental=true\n\
             incrementalModeInterval=3\n",
            list.display(),
            ep = s3.endpoint
        ),
    )
    .unwrap();
    let work = tmp.path().join("wh");
    let child = spawn_run(&cfg, &work, &tmp.path().join("h.log"));
    let p1 = wait_pass_ended(&work, "inchttp", 1);
    assert_eq!((p1.new, p1.copied), (10, 10), "{p1:?}");
    let mut text = std::fs::read_to_string(&list).unwrap();
    text.push_str(&line(10));
    text.push_str(&line(11));
    std::fs::write(&list, text).unwrap();
    let p2 = wait_pass_ended(&work, "inchttp", 2);
    interrupt(child);
    assert_eq!(
        (p2.found, p2.new, p2.changed, p2.copied, p2.failed),
        (12, 2, 0, 2, 0),
        "{p2:?}"
    );
    rt.block_on(async {
        assert_eq!(get(&c, "incdst", "h/11").await, bytes(11, 500));
    });
}
