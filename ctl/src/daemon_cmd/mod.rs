//! The verbs that drive `ossimportd` over its control socket: `submit`,
//! `start`, `stop`, `stat`, `retry`, `clean`, `version`, `workers`,
//! `errors`, `report`, `pause`, `resume`, `sync`.
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

pub(crate) mod report;
mod service;
pub(crate) mod stat;
mod submit;
mod sync;
mod workers;
use report::errors;
use service::{administrator_only, report_agents, start, stop, version};
use stat::{limits_line, stat};

pub fn main(cmd: Command) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ossimportctl: cannot start the runtime: {e}");
            return std::process::ExitCode::from(exit::RUNTIME);
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
        | Command::Sync { d, .. }
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

async fn dispatch(mut cmd: Command) -> Result<exit::Code> {
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
            wait,
            d,
        } => submit::submit(job_cfg, dry_run, sample, wait, d).await,
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
        Command::Sync {
            job,
            wait,
            timeout,
            d,
        } => sync::sync(&job, wait, timeout, &d).await,
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
        Command::Workers { action: None, d } => workers::workers(d).await,
        Command::Errors { job, page, d } => errors(&job, &page, &d).await,
        Command::Report {
            job,
            page,
            manifest,
            d,
        } => report::report(job, page, manifest, d).await,
        Command::Deploy(a) => crate::deploy::deploy(&a, None).await,
    }
}

async fn done(d: &DaemonArgs, ep: Endpoint) -> Result<exit::Code> {
    let (r, v): (Done, _) = Conn::new(d).call(&ep, None, None).await?;
    if d.json {
        print_json(&v);
    } else {
        println!("{}", r.message);
    }
    Ok(exit::OK)
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

fn local_error(e: RunError) -> Fail {
    match e {
        RunError::Usage(m) => Fail(exit::USAGE, m),
        RunError::Runtime(m) => Fail(exit::RUNTIME, m),
        other => Fail(exit::RUNTIME, other.to_string()),
    }
}

/// `clean` with no daemon running, as the original's worked: the job's
/// rows and saved files deleted from the store the daemon reads at start.
fn clean_offline(d: &DaemonArgs, job: &str, why: Fail) -> Result<exit::Code> {
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

/// A word the shell reads back as `s` (single-quoted where needed).
pub(crate) fn shell_word(s: &str) -> String {
    use std::fmt::Write;
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+".contains(&b))
    {
        return s.to_owned();
    }
    if !s.chars().any(char::is_control) {
        return format!("'{}'", s.replace('\'', "'\\''"));
    }
    // A name with control characters (a listing's, so hostile) is written
    // as bash's $'...' with every one of them escaped: copied back it is
    // the same name, and nothing reaches the terminal raw.
    let mut o = String::from("$'");
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\'' => o.push_str("\\'"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if c.is_control() && (c as u32) < 0x80 => {
                let _ = write!(o, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('\'');
    o
}

fn print_json(v: &serde_json::Value) {
    println!("{v:#}");
}
