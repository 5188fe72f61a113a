//! The verbs that drive `ossimportd` over its control socket: `submit`,
//! `start`, `stop`, `stat`, `retry`, `clean`, `version`, `workers`,
//! `errors`, `report`, `pause`, `resume`.
//!
//! Every verb prints a table or a sentence by default and the daemon's JSON
//! with `--json`. Exit codes are in [`crate::exit`]: a daemon that is not
//! running is `DAEMON_UNREACHABLE` with a one-line fix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use proto::api::{
    Done, ErrorList, JobList, JobStatus, Page, Report, SubmitRequest, VersionInfo, WorkerList,
};
use proto::control::Endpoint;

use daemon::offline::Offline;
use daemon::standalone::RunError;

use crate::cli::{Command, DaemonArgs, PageArgs, WorkersCmd};
use crate::conn::{Conn, Fail};
use crate::exit;
use crate::progress::human_bytes;

type Result<T> = std::result::Result<T, Fail>;

pub fn main(cmd: Command) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ossimportctl: cannot start the runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    match rt.block_on(dispatch(cmd)) {
        Ok(code) => ExitCode::from(code),
        Err(Fail(code, msg)) => {
            eprintln!("ossimportctl: {msg}");
            ExitCode::from(code)
        }
    }
}

/// The daemon settings of a verb, and the job file it names (`submit`),
/// from which the daemon is found.
fn daemon_args(cmd: &mut Command) -> Option<(&mut DaemonArgs, Option<&Path>)> {
    match cmd {
        Command::Run(_) | Command::Template { .. } | Command::Generate { .. } => None,
        Command::Submit { job_cfg, d, .. } => Some((d, job_cfg.as_deref())),
        Command::Version(d)
        | Command::Start { d, .. }
        | Command::Stop { d, .. }
        | Command::Stat { d, .. }
        | Command::Retry { d, .. }
        | Command::Clean { d, .. }
        | Command::Errors { d, .. }
        | Command::Report { d, .. }
        | Command::Pause { d, .. }
        | Command::Resume { d, .. }
        | Command::Set { d, .. }
        | Command::Workers {
            action: Some(WorkersCmd::Remove { d, .. }),
            ..
        }
        | Command::Workers { action: None, d } => Some((d, None)),
        Command::Workers {
            action: Some(WorkersCmd::Add { deploy, .. }),
            ..
        }
        | Command::Deploy(deploy) => Some((&mut deploy.d, None)),
    }
}

async fn dispatch(mut cmd: Command) -> Result<u8> {
    if let Some((d, job)) = daemon_args(&mut cmd) {
        let job = job.map(Path::to_path_buf);
        crate::conn::locate(d, job.as_deref())?;
    }
    match cmd {
        Command::Run(_) | Command::Template { .. } | Command::Generate { .. } => Err(Fail(
            exit::USAGE,
            "run, template and generate are not daemon commands".into(),
        )),
        Command::Version(d) => version(&d).await,
        Command::Submit {
            job_cfg,
            dry_run,
            sample,
            d,
        } => {
            let path = job_cfg.unwrap_or_else(|| PathBuf::from("conf/job.cfg"));
            let abs = std::path::absolute(&path)
                .map_err(|e| Fail(exit::USAGE, format!("{}: {e}", path.display())))?;
            if !abs.is_file() {
                return Err(Fail(
                    exit::USAGE,
                    format!("{}: no such job file", abs.display()),
                ));
            }
            if dry_run {
                let plan =
                    job::plan::load(&abs, None).map_err(|e| Fail(exit::USAGE, e.to_string()))?;
                for w in &plan.warnings {
                    eprintln!("warning: {w}");
                }
                return crate::dry_run::dry_run(&plan, sample, d.json)
                    .await
                    .map_err(|e| Fail(exit::RUNTIME, format!("{e:#}")));
            }
            // Read here, as the caller: the daemon never opens a file on a
            // caller's behalf that the caller could not open.
            let content = std::fs::read(&abs)
                .map_err(|e| Fail(exit::USAGE, format!("{}: cannot read: {e}", abs.display())))?;
            let sys = job::plan::sibling_sys(&abs).filter(|p| p.is_file());
            let sys = match sys {
                Some(p) => Some(std::fs::read(&p).map_err(|e| {
                    Fail(exit::USAGE, format!("{}: cannot read: {e}", p.display()))
                })?),
                None => None,
            };
            let body = serde_json::to_vec(&SubmitRequest::new(
                abs.display().to_string(),
                &content,
                sys.as_deref(),
            ))
            .map_err(|e| Fail(exit::RUNTIME, e.to_string()))?;
            let conn = Conn::new(&d);
            let (name, v) = match conn
                .call::<JobStatus>(&Endpoint::Submit, None, Some(body.clone()))
                .await
            {
                Ok((st, v)) => (st.name, v),
                // The original's order: submit, then start. The job goes
                // into the store the daemon reads when it starts.
                Err(Fail(exit::DAEMON_UNREACHABLE, why)) => {
                    // A socket file that nothing answers on: a daemon was
                    // killed or hangs. Writing the job into the store
                    // ourselves would hide that; say so instead.
                    let socket = crate::conn::socket_path(&d);
                    if std::fs::symlink_metadata(&socket).is_ok() {
                        return Err(Fail(
                            exit::DAEMON_UNREACHABLE,
                            format!(
                                "nothing submitted: the socket {} (found from {}) exists but nothing answers on it, so an ossimportd was killed or hangs; end it, then `ossimportctl start` (which removes a stale socket) and submit again",
                                socket.display(),
                                d.found_by
                            ),
                        ));
                    }
                    match submit_offline(&d, &abs, &content, sys.as_deref()).await? {
                        Some(name) => {
                            let v = serde_json::json!({"name": name, "queued": true});
                            (name, v)
                        }
                        // A daemon holds the store: it is starting up.
                        // Give it the job once it answers.
                        None => {
                            let mut last = Fail(exit::DAEMON_UNREACHABLE, why);
                            let mut got = None;
                            for _ in 0..100 {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                match conn
                                    .call::<JobStatus>(&Endpoint::Submit, None, Some(body.clone()))
                                    .await
                                {
                                    Ok((st, v)) => {
                                        got = Some((st.name, v));
                                        break;
                                    }
                                    Err(e) if e.0 == exit::DAEMON_UNREACHABLE => last = e,
                                    Err(e) => return Err(e),
                                }
                            }
                            got.ok_or(last)?
                        }
                    }
                }
                Err(e) => return Err(e),
            };
            if d.json {
                print_json(&v);
            } else {
                println!("submit job:{}", abs.display());
                println!("submit job:{name} success!");
                if v["queued"] == true {
                    println!(
                        "ossimportd is not running (nothing answers on {}, found from {}); the job is queued in the job store {} and runs when it starts (ossimportctl start).",
                        crate::conn::socket_path(&d).display(),
                        d.found_by,
                        daemon_work_dir(&d)?
                            .join(proto::control::STORE_FILE)
                            .display()
                    );
                }
            }
            Ok(exit::OK)
        }
        Command::Start { d, agents } => {
            let code = start(&d).await?;
            if !agents.local_only {
                let rows = crate::deploy::agents(
                    &d,
                    agents.workers.as_deref(),
                    crate::deploy::Mode::Start,
                )
                .await?;
                report_agents(&rows, d.json);
            }
            Ok(code)
        }
        Command::Stop { d, agents } => {
            administrator_only(&d, "stop").await?;
            if !agents.local_only {
                let rows =
                    crate::deploy::agents(&d, agents.workers.as_deref(), crate::deploy::Mode::Stop)
                        .await?;
                report_agents(&rows, d.json);
            }
            stop(&d).await
        }
        Command::Stat {
            job,
            watch,
            legacy,
            interval,
            d,
        } => stat(&d, job.as_deref(), watch, legacy, interval).await,
        Command::Retry { job, d } => {
            let ep = match job {
                Some(j) => Endpoint::Retry(j),
                None => Endpoint::RetryAll,
            };
            done(&d, ep).await
        }
        Command::Clean { job, d } => match done(&d, Endpoint::Clean(job.clone())).await {
            Err(Fail(exit::DAEMON_UNREACHABLE, why)) => {
                clean_offline(&d, &job, Fail(exit::DAEMON_UNREACHABLE, why))
            }
            other => other,
        },
        Command::Pause { job, d } => done(&d, Endpoint::Pause(job)).await,
        Command::Resume { job, d } => done(&d, Endpoint::Resume(job)).await,
        Command::Set { job, settings, d } => {
            let body = serde_json::to_vec(&proto::api::SetLimits { settings })
                .map_err(|e| Fail(exit::RUNTIME, e.to_string()))?;
            let (l, v): (proto::api::JobLimits, _) = Conn::new(&d)
                .call(&Endpoint::SetLimits(job.clone()), None, Some(body))
                .await?;
            if d.json {
                print_json(&v);
            } else {
                println!("job {job}: {}", limits_line(&l));
            }
            Ok(exit::OK)
        }
        Command::Workers {
            action: Some(WorkersCmd::Add { host, deploy }),
            ..
        } => crate::deploy::deploy(&deploy, Some(&host)).await,
        Command::Workers {
            action: Some(WorkersCmd::Remove { host, workers, d }),
            ..
        } => crate::deploy::remove(&d, workers.as_deref(), &host).await,
        Command::Workers { action: None, d } => {
            let (w, v): (WorkerList, _) =
                Conn::new(&d).call(&Endpoint::Workers, None, None).await?;
            if d.json {
                print_json(&v);
                return Ok(exit::OK);
            }
            if w.workers.is_empty() {
                println!(
                    "no agents enrolled; run `ossimportctl deploy` (or append each agent's public key, from `ossimport-agent --init`, to the daemon's agent_keys file)"
                );
                return Ok(exit::OK);
            }
            println!(
                "{:<16} {:<6} {:<8} {:<22} {:>8} {:>10} {:>9}  NOTE",
                "NAME", "STATE", "VERSION", "ADDRESS", "RUNNING", "RATE", "HEARTBEAT"
            );
            for a in w.workers {
                println!(
                    "{:<16} {:<6} {:<8} {:<22} {:>8} {:>10} {:>9}  {}",
                    a.name,
                    a.state,
                    a.version.as_deref().unwrap_or("-"),
                    a.addr.unwrap_or_else(|| "-".into()),
                    format!("{}/{}", a.running, a.capacity),
                    format!("{}/s", human_bytes(a.bytes_per_sec)),
                    a.last_heartbeat_secs_ago
                        .map(|s| format!("{s}s ago"))
                        .unwrap_or_else(|| "never".into()),
                    a.error.unwrap_or_default()
                );
            }
            Ok(exit::OK)
        }
        Command::Errors { job, page, d } => errors(&job, &page, &d).await,
        Command::Report {
            job,
            page,
            manifest,
            d,
        } => {
            if let Some(path) = &manifest {
                write_manifest(&job, path, &d).await?;
            }
            let page = Page {
                limit: page.limit.map(|l| l as usize),
                after: page.after,
            };
            let (r, v): (Report, _) = Conn::new(&d)
                .call(&Endpoint::Report(job.clone()), Some(&page), None)
                .await?;
            if d.json {
                print_json(&v);
            } else {
                let c = &r.counts;
                println!("job {} ({})", r.job, r.state);
                println!(
                    "  objects   {:>10}  {:>12}",
                    c.objects,
                    human_bytes(c.bytes)
                );
                for m in &r.methods {
                    println!(
                        "  {:<28} {:>10}  {:>12}",
                        m.verified_by,
                        m.objects,
                        human_bytes(m.bytes)
                    );
                }
                println!("  failed    {:>10}", c.failed);
                println!("  pending   {:>10}", c.pending);
                for f in &r.failed {
                    println!(
                        "  {}  {}: {}",
                        f.code,
                        proto::net::printable(&f.path),
                        proto::net::printable(&f.message)
                    );
                }
                if r.passes.len() > 1 {
                    for p in &r.passes {
                        println!("  {}", crate::progress::pass_line(p));
                    }
                } else if let Some(e) = r.passes.first().and_then(|p| p.error.as_deref()) {
                    println!("  listing failed: {}", proto::net::printable(e));
                }
                let gone: u64 = r.passes.iter().map(|p| p.deleted).sum();
                if gone > 0 {
                    println!("  gone from the source (kept at the destination): {gone}");
                    for d in &r.deleted {
                        println!(
                            "  DELETED  {} ({}, pass {})",
                            d.rel_path.escape_debug(),
                            human_bytes(d.size),
                            d.pass
                        );
                    }
                }
                if let Some(next) = &r.next {
                    println!(
                        "  more: ossimportctl errors {job} --after {}",
                        shell_word(next)
                    );
                }
                if !r.control.is_empty() {
                    println!("  control calls:");
                    for c in &r.control {
                        println!(
                            "  {}  {} by {} (uid {}){}",
                            crate::progress::clock(c.at),
                            c.verb,
                            c.user,
                            c.uid,
                            if c.detail.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", c.detail.escape_debug())
                            }
                        );
                    }
                }
            }
            Ok(exit::of_finished(r.state))
        }
        Command::Deploy(a) => crate::deploy::deploy(&a, None).await,
    }
}

/// The agents' rows of `start`/`stop`: on stdout, or on stderr beside
/// `--json` output. They do not change the exit code of the daemon's half.
fn report_agents(rows: &[crate::deploy::Row], json: bool) {
    for r in rows {
        let line = format!("agent {}: {} {}", r.host, r.state, r.note);
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

async fn done(d: &DaemonArgs, ep: Endpoint) -> Result<u8> {
    let (r, v): (Done, _) = Conn::new(d).call(&ep, None, None).await?;
    if d.json {
        print_json(&v);
    } else {
        println!("{}", r.message);
    }
    Ok(exit::OK)
}

async fn version(d: &DaemonArgs) -> Result<u8> {
    let ctl = env!("CARGO_PKG_VERSION");
    let daemon = Conn::new(d)
        .call::<VersionInfo>(&Endpoint::Version, None, None)
        .await
        .ok()
        .map(|(v, _)| v);
    if d.json {
        print_json(
            &serde_json::json!({"ossimportctl": ctl, "commit": proto::COMMIT, "ossimportd": daemon}),
        );
    } else {
        println!("ossimportctl {}", proto::VERSION);
        match daemon {
            Some(v) => println!(
                "ossimportd {} (commit {}, api v{})",
                v.version,
                v.commit.as_deref().unwrap_or("unknown"),
                v.api
            ),
            None => println!("ossimportd not running"),
        }
    }
    Ok(exit::OK)
}

async fn start(d: &DaemonArgs) -> Result<u8> {
    let conn = Conn::new(d);
    if conn
        .call::<VersionInfo>(&Endpoint::Version, None, None)
        .await
        .is_ok()
    {
        if d.json {
            print_json(&serde_json::json!({"running": true, "started": false}));
        } else {
            println!("ossimportd is already running.");
        }
        return Ok(exit::OK);
    }
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ossimportd")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("ossimportd"));
    let mut cmd = std::process::Command::new(&bin);
    // Absolute paths (`locate` made them so): the daemon changes into its
    // work directory, and reloads its jobs with them at every start.
    cmd.arg("--daemon").arg("--socket").arg(&conn.client.socket);
    if let Some(s) = &d.sys {
        cmd.arg("--sys").arg(s);
    }
    // Without settings, the work directory `locate` chose (the daemon
    // would take its own current directory).
    if let (None, Some(w)) = (&d.sys, &d.work_dir) {
        cmd.arg("--work-dir").arg(w);
    }
    let status = cmd
        .status()
        .map_err(|e| Fail(exit::RUNTIME, format!("starting {}: {e}", bin.display())))?;
    if !status.success() {
        return Err(Fail(
            exit::RUNTIME,
            format!("{} --daemon failed ({status})", bin.display()),
        ));
    }
    for _ in 0..150 {
        if conn
            .call::<VersionInfo>(&Endpoint::Version, None, None)
            .await
            .is_ok()
        {
            if d.json {
                print_json(&serde_json::json!({"running": true, "started": true}));
            } else {
                println!("Start import service completed.");
            }
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Fail(
        exit::RUNTIME,
        format!(
            "ossimportd did not answer on {} after starting; see its log",
            conn.client.socket.display()
        ),
    ))
}

/// Refuses an operator a verb that needs the administrator role before it
/// does anything (a daemon that cannot be reached says nothing here).
async fn administrator_only(d: &DaemonArgs, verb: &str) -> Result<()> {
    match Conn::new(d)
        .call::<proto::api::VersionInfo>(&Endpoint::Version, None, None)
        .await
    {
        Ok((v, _)) if v.role.as_deref() == Some("operator") => Err(Fail(
            exit::NO_PERMISSION,
            format!(
                "{verb} needs the administrator role (root, the daemon's user, or a member of its --admin-group); you are an operator"
            ),
        )),
        _ => Ok(()),
    }
}

async fn stop(d: &DaemonArgs) -> Result<u8> {
    let conn = Conn::new(d);
    let (r, v): (Done, _) = conn.call(&Endpoint::Shutdown, None, None).await?;
    // The daemon removes its socket file last, once it has fully stopped.
    for _ in 0..300 {
        if !conn.client.socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if d.json {
        print_json(&v);
    } else {
        println!("{}", r.message);
    }
    Ok(exit::OK)
}

async fn stat(
    d: &DaemonArgs,
    job: Option<&str>,
    watch: bool,
    legacy: bool,
    interval: u64,
) -> Result<u8> {
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

fn render(
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

fn table(jobs: &[JobStatus], bars: bool, out: &mut String) {
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
        }
        if let Some(l) = &j.limits {
            let _ = writeln!(out, "  limits: {}", limits_line(l));
        }
        for o in &j.outages {
            let _ = writeln!(out, "  waiting: {o}");
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
fn limits_line(l: &proto::api::JobLimits) -> String {
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

/// Fetches a job's manifest from the daemon a page at a time and writes it.
async fn write_manifest(job: &str, path: &Path, d: &DaemonArgs) -> Result<()> {
    let fail = |e: anyhow::Error| Fail(exit::RUNTIME, format!("{e:#}"));
    let mut m = crate::manifest::Manifest::create(path).map_err(fail)?;
    let conn = Conn::new(d);
    let mut after: Option<String> = None;
    loop {
        let page = Page {
            limit: None,
            after: after.clone(),
        };
        let (p, _): (proto::api::ManifestPage, _) = conn
            .call(&Endpoint::Manifest(job.to_string()), Some(&page), None)
            .await?;
        for r in &p.rows {
            m.row(r).map_err(fail)?;
        }
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let n = m.totals.objects;
    let sha = m.finish().map_err(fail)?;
    eprintln!(
        "manifest: {n} objects written to {} (SHA-256 of the body {sha})",
        path.display()
    );
    Ok(())
}

/// The original's `stat detail` block, field for field, so scripts that
/// grep `JobState:Succeed` keep working.
pub fn legacy_block(jobs: &[JobStatus]) -> String {
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

/// The daemon's work directory (its job store), as [`crate::conn::locate`]
/// found it.
fn daemon_work_dir(d: &DaemonArgs) -> Result<PathBuf> {
    d.work_dir.clone().ok_or_else(|| {
        Fail(
            exit::RUNTIME,
            "no work directory: the daemon was not located".into(),
        )
    })
}

/// `submit` while no daemon answers: validates the job exactly as the
/// daemon would and records it in the job store it reads at start
/// ([`Offline`]). `None` when a daemon holds the store after all (it is
/// starting up; the caller asks it again).
async fn submit_offline(
    d: &DaemonArgs,
    job_cfg: &std::path::Path,
    content: &[u8],
    sibling_sys: Option<&[u8]>,
) -> Result<Option<String>> {
    let bad_plan = |e: job::plan::PlanError| Fail(exit::USAGE, e.to_string());
    let work = daemon_work_dir(d)?;
    // The daemon plans with its own sys.properties when it has one (the
    // one `ossimportctl start` gives it), else the job's neighbour, which
    // is then saved with the job.
    let sys = match &d.sys {
        Some(p) => Some((p.clone(), job::plan::read_bytes(p).map_err(bad_plan)?)),
        None => sibling_sys.map(|b| {
            (
                job::plan::sibling_sys(job_cfg).unwrap_or_default(),
                b.to_vec(),
            )
        }),
    };
    // Saved with the job either way: a daemon started without settings
    // plans it again from this copy.
    let saved_sys = sys.as_ref().map(|(_, b)| b.clone());
    let plan = job::plan::from_bytes(job_cfg, content, sys).map_err(bad_plan)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let Some(store) = Offline::open(&work, true).map_err(local_error)? else {
        return Ok(None);
    };
    store
        .submit(
            &plan,
            content,
            saved_sys.as_deref(),
            &job_cfg.display().to_string(),
        )
        .await
        .map_err(local_error)?;
    Ok(Some(plan.name))
}

fn local_error(e: RunError) -> Fail {
    match e {
        RunError::Usage(m) => Fail(exit::USAGE, m),
        RunError::Runtime(m) => Fail(exit::RUNTIME, m),
    }
}

/// `clean` with no daemon running, as the original's worked: the job's
/// rows and saved files deleted from the store the daemon reads at start.
fn clean_offline(d: &DaemonArgs, job: &str, why: Fail) -> Result<u8> {
    let store = Offline::open(&daemon_work_dir(d)?, false)
        .map_err(local_error)?
        .ok_or(why)?;
    let dir = store.clean(job).map_err(local_error)?;
    eprintln!(
        "ossimportd is not running; cleaned in its job store {} ({})",
        store.store_path().display(),
        d.found_by
    );
    let message = daemon::offline::cleaned(job, &dir);
    if d.json {
        print_json(&serde_json::json!({"message": message, "count": 0}));
    } else {
        println!("{message}");
    }
    Ok(exit::OK)
}

/// `stat` with no daemon running: the jobs as last recorded in the store.
/// `None` when there is no store, or a daemon holds it.
fn stat_offline(d: &DaemonArgs, job: Option<&str>) -> Result<Option<Vec<JobStatus>>> {
    match Offline::open(&daemon_work_dir(d)?, false).map_err(local_error)? {
        Some(store) => store.stat(job).map(Some).map_err(local_error),
        None => Ok(None),
    }
}

/// `errors`: one page with `--limit`, otherwise every failure, fetched
/// and printed a page at a time (memory stays bounded in daemon and ctl;
/// `--json` still prints one JSON document).
async fn errors(job: &str, args: &PageArgs, d: &DaemonArgs) -> Result<u8> {
    let conn = Conn::new(d);
    let mut page = Page {
        limit: Some(args.limit.map_or(1000, |l| l as usize)),
        after: args.after.clone(),
    };
    let mut any = false;
    let mut first = true;
    loop {
        let (e, _): (ErrorList, _) = conn
            .call(&Endpoint::Errors(job.to_string()), Some(&page), None)
            .await?;
        for f in &e.failed {
            if d.json {
                let entry = serde_json::to_string(f).unwrap_or_default();
                if first {
                    print!(
                        "{{\"job\":{},\"failed\":[\n  {entry}",
                        serde_json::Value::from(job)
                    );
                } else {
                    print!(",\n  {entry}");
                }
            } else {
                if first {
                    println!("code\tpath\treason");
                }
                println!(
                    "{}\t{}\t{}",
                    f.code,
                    proto::net::printable(&f.path),
                    proto::net::printable(&f.message)
                );
            }
            first = false;
            any = true;
        }
        let next = e.next.clone();
        match (next, args.limit) {
            (Some(n), None) => page.after = Some(n),
            (next, _) => {
                if d.json {
                    if first {
                        print!("{{\"job\":{},\"failed\":[", serde_json::Value::from(job));
                    } else {
                        print!("\n]");
                    }
                    match &next {
                        Some(n) => println!(",\"next\":{}}}", serde_json::Value::from(n.as_str())),
                        None => println!("}}"),
                    }
                } else if !any {
                    println!("job {job}: no failed objects");
                } else if let Some(n) = &next {
                    eprintln!("more: ossimportctl errors {job} --after {}", shell_word(n));
                }
                break;
            }
        }
    }
    Ok(if any { exit::JOB_FAILED } else { exit::OK })
}

/// A word the shell reads back as `s` (single-quoted where needed).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{v:#}");
}
