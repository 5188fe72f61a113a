//! `ossimportctl sync JOB [--wait]`: the cut-over of an incremental job.
//! The daemon runs a pass now (a watched job lists every change it has seen,
//! settled or not: the writers have stopped); with `--wait` this returns
//! once every change seen before the call is listed and its pass has ended,
//! and exits 0 only when nothing of the job is pending or failed.

use std::time::{Duration, Instant};

use proto::api::{JobState, JobStatus, SyncTicket};
use proto::control::Endpoint;

use super::{Result, print_json};
use crate::cli::DaemonArgs;
use crate::conn::{Conn, Fail};
use crate::exit;

/// How often the job is asked whether the sync is done.
const POLL: Duration = Duration::from_millis(250);
/// How often a line says what is still waited for.
const SAY_EVERY: Duration = Duration::from_secs(10);

pub(super) async fn sync(
    job: &str,
    wait: bool,
    timeout: u64,
    d: &DaemonArgs,
) -> Result<exit::Code> {
    let conn = Conn::new(d);
    let (ticket, v): (SyncTicket, _) = conn.call(&Endpoint::Sync(job.into()), None, None).await?;
    if !wait {
        if d.json {
            print_json(&v);
        } else {
            println!("job {job}: {}", requested(&ticket));
        }
        return Ok(exit::OK);
    }
    let started = Instant::now();
    let mut said = Instant::now();
    let st = loop {
        let (st, _): (JobStatus, _) = conn.call(&Endpoint::Job(job.into()), None, None).await?;
        if done(&ticket, &st) {
            break st;
        }
        if st.state != JobState::Running {
            return Err(Fail(
                exit::JOB_FAILED,
                format!(
                    "job {job} is {} now: the sync cannot complete (ossimportctl stat {job})",
                    st.state.as_str()
                ),
            ));
        }
        if timeout > 0 && started.elapsed() >= Duration::from_secs(timeout) {
            return Err(Fail(
                exit::JOB_FAILED,
                format!("job {job}: not synced after {timeout} s: {}", waiting(&st)),
            ));
        }
        if !d.json && said.elapsed() >= SAY_EVERY {
            eprintln!("job {job}: waiting: {}", waiting(&st));
            said = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    };
    let c = &st.counts;
    let clean = c.pending == 0 && c.failed == 0;
    if d.json {
        print_json(&serde_json::json!({
            "job": job,
            "ticket": ticket,
            "seconds": started.elapsed().as_secs_f64(),
            "pending": c.pending,
            "failed": c.failed,
            "synced": clean,
        }));
    } else {
        let lag = match ticket.lag_ms {
            Some(ms) => format!("closed a lag of {:.1} s", ms as f64 / 1000.0),
            None => "no change was waiting".into(),
        };
        println!(
            "job {job} synced: {lag} in {:.1} s; {} pending, {} failed{}",
            started.elapsed().as_secs_f64(),
            c.pending,
            c.failed,
            if c.failed > 0 {
                format!(" (ossimportctl errors {job})")
            } else {
                String::new()
            }
        );
    }
    Ok(if clean { exit::OK } else { exit::JOB_FAILED })
}

/// What the daemon agreed to do.
fn requested(t: &SyncTicket) -> String {
    match (t.watch_seq, t.pass) {
        (Some(_), _) => {
            "every change seen so far is being listed (ossimportctl sync --wait waits for it)"
                .into()
        }
        (None, Some(p)) => format!("pass {p} starts as soon as none runs"),
        (None, None) => "nothing to do".into(),
    }
}

/// Whether everything the ticket names has been listed and its pass ended.
fn done(t: &SyncTicket, st: &JobStatus) -> bool {
    let Some(inc) = &st.incremental else {
        return true;
    };
    let watch_done = match t.watch_seq {
        Some(seq) => inc.watch.as_ref().is_some_and(|w| w.done_seq >= seq),
        None => true,
    };
    let pass_done = match t.pass {
        Some(p) => inc
            .passes
            .iter()
            .any(|r| r.number >= p && r.ended_at.is_some()),
        None => true,
    };
    watch_done && pass_done
}

/// What is still waited for.
fn waiting(st: &JobStatus) -> String {
    let c = &st.counts;
    let mut s = format!("{} objects pending", c.pending);
    if let Some(w) = st.incremental.as_ref().and_then(|i| i.watch.as_ref()) {
        s.push_str(&format!(", {}", crate::progress::watch_line(w)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::api::{Incremental, PassRecord, WatchStatus};

    fn status(done_seq: u64, passes: &[(u32, bool)]) -> JobStatus {
        let mut st: JobStatus = serde_json::from_value(serde_json::json!({
            "name": "j", "state": "running", "scan_done": true,
            "counts": proto::api::JobCounts::default(), "running_tasks": []
        }))
        .unwrap();
        st.incremental = Some(Incremental {
            interval_secs: 900,
            pass: 1,
            next_pass_at: None,
            passes: passes
                .iter()
                .map(|&(number, ended)| PassRecord {
                    number,
                    ended_at: ended.then_some(1),
                    ..PassRecord::default()
                })
                .collect(),
            watch: Some(WatchStatus {
                done_seq,
                ..WatchStatus::default()
            }),
        });
        st
    }

    #[test]
    fn a_sync_is_done_when_its_changes_or_its_pass_are() {
        let watched = SyncTicket {
            watch_seq: Some(7),
            pass: None,
            lag_ms: Some(1200),
        };
        assert!(!done(&watched, &status(6, &[(1, true)])));
        assert!(done(&watched, &status(7, &[(1, true)])));
        let rescan = SyncTicket {
            watch_seq: None,
            pass: Some(3),
            lag_ms: None,
        };
        assert!(!done(&rescan, &status(0, &[(2, true), (3, false)])));
        assert!(done(&rescan, &status(0, &[(2, true), (3, true)])));
    }
}
