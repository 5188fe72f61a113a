//! `stat`: the jobs as a table, the original's `--legacy` block or JSON;
//! from the store while no daemon runs.

use super::*;

pub(super) async fn stat(
    d: &DaemonArgs,
    job: Option<&str>,
    watch: bool,
    legacy: bool,
    interval: u64,
) -> Result<exit::Code> {
    let conn = Conn::new(d);
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let asked = match job {
            Some(j) => conn
                .call::<JobStatus>(&Endpoint::Job(j.to_string()), None, None)
                .await
                .map(|(s, v)| (vec![s], v)),
            None => conn
                .call::<JobList>(&Endpoint::ListJobs, None, None)
                .await
                .map(|(l, v)| (l.jobs, v)),
        };
        let (jobs, v) = match asked {
            Ok(got) => got,
            // As the original's `stat` did with the service stopped: what
            // the store last recorded, and still exit 3 (not running).
            Err(Fail(exit::DAEMON_UNREACHABLE, why)) if !watch => {
                let jobs =
                    stat_offline(d, job)?.ok_or(Fail(exit::DAEMON_UNREACHABLE, why.clone()))?;
                let v = match job {
                    Some(_) => serde_json::to_value(&jobs[0]),
                    None => serde_json::to_value(JobList { jobs: jobs.clone() }),
                }
                .unwrap_or_default();
                print!("{}", render(&jobs, &v, d.json, legacy, false));
                return Err(Fail(
                    exit::DAEMON_UNREACHABLE,
                    format!(
                        "{why} (the jobs above are as it last recorded them in {})",
                        daemon_work_dir(d)?
                            .join(proto::control::STORE_FILE)
                            .display()
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        let finished = jobs.iter().all(|j| j.state.is_finished());
        let out = render(&jobs, &v, d.json, legacy, watch);
        if watch && tty && !d.json {
            // Redraw in place.
            print!("\x1b[H\x1b[2J");
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
        if !watch || finished {
            // `stat JOB` tells of that job; the list of all jobs exits 0.
            return Ok(match (job, jobs.first()) {
                (Some(_), Some(j)) => exit::of_state(j.state),
                _ => exit::OK,
            });
        }
        tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
    }
}

pub(crate) fn render(
    jobs: &[JobStatus],
    v: &serde_json::Value,
    json: bool,
    legacy: bool,
    bars: bool,
) -> String {
    let mut out = String::new();
    if json {
        out = format!("{v:#}\n");
    } else if legacy {
        out = legacy_block(jobs);
    } else {
        table(jobs, bars, &mut out);
    }
    out
}

pub(super) fn table(jobs: &[JobStatus], bars: bool, out: &mut String) {
    use std::fmt::Write;
    if jobs.is_empty() {
        out.push_str("no jobs; submit one with `ossimportctl submit job.cfg`\n");
        return;
    }
    let _ = writeln!(
        out,
        "{:<20} {:<8} {:>9} {:>9} {:>8} {:>7} {:>8} {:>11}  TASKS p/r/d/f",
        "JOB", "STATE", "OBJECTS", "VERIFIED", "SKIPPED", "FAILED", "PENDING", "BYTES"
    );
    for j in jobs {
        let c = &j.counts;
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:>9} {:>9} {:>8} {:>7} {:>8} {:>11}  {}/{}/{}/{}{}",
            j.name,
            j.state,
            c.objects,
            c.verified,
            c.skipped,
            c.failed,
            c.pending,
            human_bytes(c.bytes),
            c.tasks_pending,
            c.tasks_dispatched,
            c.tasks_done,
            c.tasks_failed,
            if j.scan_done || j.state != proto::api::JobState::Running {
                ""
            } else {
                " (scanning)"
            }
        );
        if let Some(inc) = &j.incremental {
            let _ = writeln!(out, "  {}", crate::progress::incremental_line(inc));
            if let Some(w) = &inc.watch {
                let _ = writeln!(out, "  {}", crate::progress::watch_line(w));
            }
        }
        if let Some(l) = &j.limits {
            let _ = writeln!(out, "  limits: {}", limits_line(l));
        }
        for o in &j.outages {
            let _ = writeln!(out, "  waiting: {o}");
        }
        for o in &j.throttled {
            let _ = writeln!(out, "  throttled: {o}");
        }
        if let Some(e) = &j.listing_error {
            let _ = writeln!(out, "  listing failed: {}", proto::net::printable(e));
        }
        if bars {
            let done = c.verified_bytes + c.skipped_bytes;
            let frac = if c.bytes == 0 {
                if j.scan_done { 1.0 } else { 0.0 }
            } else {
                done as f64 / c.bytes as f64
            };
            let width = 40;
            let filled = ((frac * width as f64) as usize).min(width);
            let _ = writeln!(
                out,
                "  [{}{}] {:>5.1}%  {} / {}",
                "#".repeat(filled),
                "-".repeat(width - filled),
                frac * 100.0,
                human_bytes(done),
                human_bytes(c.bytes)
            );
        }
    }
}

/// A job's limits in force, and the last change made with `set`.
pub(super) fn limits_line(l: &proto::api::JobLimits) -> String {
    let bw = match l.bytes_per_second {
        0 => "no bandwidth cap".to_string(),
        b => format!("{}/s", human_bytes(b)),
    };
    let mut s = format!(
        "{bw} per executor{}, {} objects in flight, {}",
        match &l.schedule {
            Some(t) => format!(" (schedule {t})"),
            None => String::new(),
        },
        l.objects_in_flight,
        match l.requests_per_second {
            0 => "no request cap".to_string(),
            n => format!("{n} requests/s"),
        }
    );
    if let Some(c) = l.changes.last() {
        s.push_str(&format!(
            "; last set: {} {} -> {} by {} at {}",
            c.key,
            if c.old.is_empty() { "-" } else { &c.old },
            if c.new.is_empty() { "-" } else { &c.new },
            c.by,
            httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.at.max(0) as u64)
            )
        ));
    }
    s
}

/// The original's `stat detail` block, field for field, so scripts that
/// grep `JobState:Succeed` keep working.
pub(crate) fn legacy_block(jobs: &[JobStatus]) -> String {
    use std::fmt::Write;
    if jobs.is_empty() {
        return "no jobs is running or finished.\n".into();
    }
    let mut out = String::from("-------------- job stats ---------------\n");
    for j in jobs {
        let c = &j.counts;
        let state = j.state.legacy();
        let _ = write!(
            out,
            "---------------- job stat ------------------\n\
             JobName:{}\n\
             JobState:{state}\n\
             PendingTasks:{}\n\
             DispatchedTasks:{}\n\
             RunningTasks:{}\n\
             SucceedTasks:{}\n\
             FailedTasks:{}\n\
             ScanFinished:{}\n\
             RunningTasks Progress:\n",
            j.name,
            c.tasks_pending,
            c.tasks_dispatched,
            c.tasks_dispatched,
            c.tasks_done,
            c.tasks_failed,
            // As the original: an incremental job's listing never finishes.
            j.scan_done && j.incremental.is_none()
        );
        for t in &j.running_tasks {
            let _ = writeln!(
                out,
                "{}:{}/{} {}/{}",
                t.task_id, t.bytes_done, t.bytes_total, t.files_done, t.files_total
            );
        }
        // Ours, after the original's lines (its scripts read only those).
        for o in &j.outages {
            let _ = writeln!(out, "EndpointDown:{o}");
        }
        out.push_str("----------------------------------------\n");
    }
    out
}

/// `stat` with no daemon running: the jobs as last recorded in the store.
/// `None` when there is no store, or a daemon holds it.
pub(super) fn stat_offline(d: &DaemonArgs, job: Option<&str>) -> Result<Option<Vec<JobStatus>>> {
    match Offline::open(&daemon_work_dir(d)?, false).map_err(local_error)? {
        Some(store) => store.stat(job).map(Some).map_err(local_error),
        None => Ok(None),
    }
}
