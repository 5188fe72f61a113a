//! Crash-and-change torture: a standalone run is killed with SIGKILL at a
//! random moment, round after round, while source files that are not yet
//! verified are rewritten (some with size and mtime put back, some with an
//! mtime in the same whole second), appended, truncated or deleted between
//! rounds, into a bucket and (fewer rounds) into a local directory, where
//! a kill can land between the copy and its rename. A final run then finishes the job,
//! and every object is checked: reported verified means the destination
//! holds exactly the file as it is at the end (downloaded and compared);
//! anything else carries an error code and a reason.
//!
//! Files already verified are left alone: once the destination holds a
//! verified copy, a later edit that keeps size and mtime is invisible to any
//! tool short of hashing the source again, which is the audit's job, not the
//! copy's.
//!
//! Rounds and seed: `OSSIMPORT_TORTURE_ROUNDS` (default 20) and
//! `OSSIMPORT_TORTURE_SEED` (default from the clock, printed), so a failure
//! can be replayed and a longer soak run (see CONTRIBUTING.md).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn states(work: &Path) -> Vec<(String, String, Option<String>, Option<String>)> {
    if !work.join("ossimport.db").exists() {
        return Vec::new();
    }
    objects(work)
        .into_iter()
        .map(|o| {
            (
                o.rel_path,
                o.state.as_str().to_owned(),
                o.error_code,
                o.error,
            )
        })
        .collect()
}

/// One edit of a file; returns what was done.
fn mutate(rng: &mut Rng, path: &Path) -> &'static str {
    use std::io::{Seek, SeekFrom, Write};
    let Ok(md) = std::fs::metadata(path) else {
        return "gone";
    };
    let len = md.len();
    match rng.below(6) {
        5 => {
            // Same size, new bytes, and an mtime in the same whole second
            // with other nanoseconds: only the nanoseconds (and the
            // ctime) tell.
            use std::os::unix::fs::MetadataExt;
            let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.write_all(&bytes(rng.next(), len.clamp(1, 4096) as usize))
                .unwrap();
            f.set_len(len).unwrap();
            let ns = (md.mtime_nsec() as u32 + 1 + rng.below(999_999) as u32) % 1_000_000_000;
            f.set_modified(std::time::UNIX_EPOCH + Duration::new(md.mtime() as u64, ns))
                .unwrap();
            "rewritten inside the same second"
        }
        0 | 1 => {
            // Same size, new bytes at a random place; mtime put back half the time.
            let at = rng.below(len.max(1));
            let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.seek(SeekFrom::Start(at)).unwrap();
            let n = (len - at).clamp(1, 4096) as usize;
            f.write_all(&bytes(rng.next(), n)).unwrap();
            if rng.below(2) == 0 {
                f.set_modified(md.modified().unwrap()).unwrap();
                "rewritten, mtime restored"
            } else {
                "rewritten"
            }
        }
        2 => {
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            f.write_all(&bytes(rng.next(), 1000)).unwrap();
            "appended"
        }
        3 => {
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.set_len(len / 2).unwrap();
            "truncated"
        }
        _ => {
            std::fs::remove_file(path).unwrap();
            "deleted"
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_changed_round_after_round_then_every_verified_object_is_exact() {
    torture(false, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_a_local_directory_killed_and_changed_then_every_verified_file_is_exact() {
    torture(true, 8).await;
}

/// The rounds, into a bucket or (`local`) into a directory.
async fn torture(local: bool, default_rounds: u32) {
    let rounds: u32 = std::env::var("OSSIMPORT_TORTURE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_rounds);
    let seed: u64 = std::env::var("OSSIMPORT_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("torture: {rounds} rounds, OSSIMPORT_TORTURE_SEED={seed}");
    let mut rng = Rng(seed);

    let s3 = S3Server::start();
    s3.create_bucket("bkt").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut rels = Vec::new();
    for i in 0..40 {
        let rel = format!("d{}/f{i:02}.bin", i % 5);
        let p = src.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes(i, 1 + (i as usize * 7919) % 60_000)).unwrap();
        rels.push(rel);
    }
    for i in 0..3 {
        let rel = format!("big/b{i}.bin");
        big_file(&src.join(&rel), 11 + i * 2);
        rels.push(rel);
    }
    let work = tmp.path().join("work");
    let dest = tmp.path().join("dest");
    let cfg = job_cfg(
        tmp.path(),
        "torture",
        &src,
        &s3.endpoint,
        "bkt",
        "taskObjectCountLimit=5\nmultipartUploadThreshold=8m\nmultipartUploadPartSize=5m\nuploadThreadNumPerLargeFile=2",
    );
    if local {
        JobFile::new("torture")
            .local_source(&src)
            .local_dest(&dest)
            .set("taskObjectCountLimit", 5)
            .write_to(&cfg);
    }
    // Slow enough (8 MiB/s) that a kill lands mid-way through the job.
    let sys = tmp.path().join("sys.properties");
    std::fs::write(
        &sys,
        "workerMaxThroughput(KB/s)=8192\nworkerTaskThreadNum=4\n",
    )
    .unwrap();

    let started = Instant::now();
    let mut edits = 0;
    for round in 0..rounds {
        let mut child = spawn_quiet_run(&cfg, &work);
        std::thread::sleep(Duration::from_millis(150 + rng.below(1200)));
        let _ = child.kill(); // SIGKILL; it may have finished already
        child.wait().unwrap();
        // Change some files the job has not finished with.
        let open: Vec<String> = {
            let st = states(&work);
            rels.iter()
                .filter(|r| {
                    !st.iter()
                        .any(|(p, s, _, _)| p == *r && (s == "verified" || s == "failed"))
                })
                .cloned()
                .collect()
        };
        for rel in &open {
            if rng.below(8) == 0 {
                let what = mutate(&mut rng, &src.join(rel));
                edits += 1;
                eprintln!("round {round}: {rel} {what}");
            }
        }
    }
    std::fs::remove_file(&sys).unwrap();
    let out = run_job(&cfg, &work);
    let text = stdout(&out);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "final run: {:?}\n{text}\n{}",
        out.status.code(),
        stderr(&out)
    );

    let client = s3.client();
    let st = states(&work);
    assert_eq!(st.len(), rels.len(), "every file is an object");
    let (mut verified, mut failed) = (0, 0);
    for (rel, state, code, error) in &st {
        match state.as_str() {
            "verified" => {
                let now = std::fs::read(src.join(rel))
                    .unwrap_or_else(|e| panic!("{rel} is verified but the source is gone: {e}"));
                let got = if local {
                    std::fs::read(dest.join(rel)).unwrap()
                } else {
                    get(&client, "bkt", rel).await
                };
                assert!(
                    got == now,
                    "{rel} is reported verified but the destination differs from the source (seed {seed})"
                );
                verified += 1;
            }
            "failed" => {
                assert!(
                    code.is_some() && error.as_deref().is_some_and(|e| !e.is_empty()),
                    "{rel} failed without a reason"
                );
                assert!(
                    text.contains(rel.as_str()),
                    "{rel} failed but the summary does not list it"
                );
                failed += 1;
            }
            other => panic!("{rel} is still {other} after the final run"),
        }
    }
    assert!(
        squash(&text).contains(&format!("verified {verified} of {}", rels.len())),
        "{text}"
    );
    eprintln!(
        "torture: {rounds} rounds, {edits} edits, {verified} verified, {failed} failed, {:?}",
        started.elapsed()
    );
    assert!(verified > 0);
}
