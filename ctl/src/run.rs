//! `ossimportctl run job.cfg`: a standalone run. The daemon core (store,
//! scanner, recorder) and the agent executor in one process, with a live
//! progress display, a summary, and resume on the next run.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use daemon::standalone::{self, Ending, Finished, PassEvent, RunReport, Standalone};
use job::plan;
use proto::net::printable;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::exit;
use crate::progress::{self, human_bytes};

/// An error with the exit code it maps to.
struct Exit(exit::Code, anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Exit {
    fn from(e: E) -> Exit {
        Exit(exit::RUNTIME, e.into())
    }
}

pub fn main(args: RunArgs) -> ExitCode {
    let rt = match proto::runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ossimportctl: cannot start the runtime: {e}");
            return std::process::ExitCode::from(exit::RUNTIME);
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(Exit(code, e)) => {
            eprintln!("ossimportctl: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn usage(e: impl std::fmt::Display) -> Exit {
    Exit(exit::USAGE, anyhow::anyhow!("{e}"))
}

/// `run` as the user sees it: plan, work directory, start, progress, the
/// end and its summary. Long because it is the order of what is printed.
async fn run(args: RunArgs) -> Result<exit::Code, Exit> {
    let plan = plan::load(&args.job_cfg, args.sys.as_deref()).map_err(usage)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    if args.dry_run {
        return crate::dry_run::dry_run(&plan, args.sample, args.json)
            .await
            .map_err(|e| Exit(exit::RUNTIME, e));
    }
    let work_dir = match args.work_dir.clone().or_else(|| plan.work_dir.clone()) {
        Some(w) => w,
        None => {
            let w = standalone::default_work_dir(&plan.name).map_err(run_error)?;
            if w.found_here && !args.quiet {
                eprintln!(
                    "note: using the job store of {} in the current directory ({}); new jobs go to the \
                     per-user state directory unless --work-dir or workingDir says otherwise",
                    plan.name,
                    w.path.join(proto::control::STORE_FILE).display()
                );
            }
            w.path
        }
    };
    let metrics = match &args.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding /metrics and the status page on {addr}"))
                .map_err(|e| Exit(exit::USAGE, e))?,
        ),
        None => None,
    };
    let job = Standalone::start(&plan, &work_dir, args.clean)
        .await
        .map_err(run_error)?;
    if !args.quiet {
        eprintln!(
            "job {}: {} -> {} (state in {})",
            plan.name,
            plan.source_label,
            plan.dest_label,
            job.store_path().display()
        );
    }
    crate::signals::on_interrupt(job.cancel_token());
    if let Some(l) = metrics {
        if !args.quiet {
            eprintln!(
                "metrics and status page: http://{}/",
                l.local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| args.metrics.clone().unwrap_or_default())
            );
        }
        job.serve_status(l);
    }

    let r = job.resumed().clone();
    let start = &r.start;
    if start.objects > 0 && !args.quiet {
        eprintln!(
            "resuming: {} objects known, {} verified, {} skipped, {} to do{}",
            start.objects,
            start.verified,
            start.skipped,
            start.pending,
            match (r.retried, r.unfixable) {
                (0, 0) => String::new(),
                (0, k) =>
                    format!(" ({k} failed before and cannot be retried: see the errors file)"),
                (n, 0) => format!(" ({n} failed before, retrying)"),
                (n, k) => format!(" ({n} failed before, retrying; {k} cannot be retried)"),
            }
        );
    }
    if let (Some((last, at, in_secs)), false) = (r.last_pass, args.quiet) {
        eprintln!(
            "incremental: pass {last} ended earlier; next pass {} at {} (in {in_secs} s)",
            last + 1,
            progress::clock(at),
        );
    }

    let stop_display = CancellationToken::new();
    let sources = progress::Sources {
        live: job.live(),
        bytes: job.progress(),
        base_objects: start.pending,
        base_bytes: start
            .bytes
            .saturating_sub(start.verified_bytes + start.skipped_bytes),
    };
    let display = (!args.quiet).then(|| {
        tokio::spawn(progress::display(
            sources,
            stop_display.clone(),
            Duration::from_secs(args.progress_interval.max(1)),
        ))
    });

    // An incremental job never finishes: its passes go on until Ctrl-C,
    // each told as it begins and ends.
    let quiet = args.quiet;
    let shown = if args.json {
        JSON_FAILURES
    } else {
        SHOWN_FAILURES
    };
    let finished = job
        .finish(
            |ev| {
                if !quiet {
                    eprintln!("{}", pass_event_line(&ev));
                }
            },
            shown,
        )
        .await
        .map_err(run_error)?;
    let report = &finished.report;
    stop_display.cancel();
    if let Some(display) = display {
        let _ = display.await;
    }

    let c = &report.counts;
    if report.ending == Ending::Interrupted {
        eprintln!(
            "interrupted: {} of {} objects done so far; run the same command again to resume",
            c.verified + c.skipped,
            c.objects
        );
        return Ok(exit::INTERRUPTED);
    }
    if let Some(Err(e)) = &report.scan {
        return Err(Exit(
            exit::RUNTIME,
            anyhow::anyhow!("scanning {}: {e}", plan.source_label),
        ));
    }
    let audit = plan.spec.mode == proto::job::JobMode::Audit;
    if args.json {
        println!("{:#}", summary_json(&plan.name, report));
    } else {
        print!("{}", summary(&plan.name, audit, report));
    }
    if let Some(path) = &args.manifest {
        write_manifest(&finished, path)?;
    }
    Ok(exit::of_finished(
        report.state().unwrap_or(proto::api::JobState::Failed),
    ))
}

fn run_error(e: standalone::RunError) -> Exit {
    match e {
        standalone::RunError::Usage(m) => usage(m),
        standalone::RunError::Runtime(m) => Exit(exit::RUNTIME, anyhow::anyhow!(m)),
        other => Exit(exit::RUNTIME, anyhow::anyhow!("{other}")),
    }
}

/// Writes the job's manifest, a page at a time.
fn write_manifest(finished: &Finished, path: &Path) -> anyhow::Result<()> {
    let mut m = crate::manifest::Manifest::create(path)?;
    finished
        .manifest_pages(|rows| {
            for r in rows {
                m.row(r).map_err(std::io::Error::other)?;
            }
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = m.totals.objects;
    let sha = m.finish()?;
    eprintln!(
        "manifest: {n} objects written to {} (SHA-256 of the body {sha})",
        path.display()
    );
    Ok(())
}

/// One line when a pass of an incremental job begins, one when it ends
/// with its counts and when the next one starts.
fn pass_event_line(ev: &PassEvent<'_>) -> String {
    match ev {
        PassEvent::Began { number, job } => format!("pass {number}: listing {job}"),
        PassEvent::Ended { pass, next } => {
            let next = match next {
                Some((n, at, in_secs, every)) => format!(
                    "; next pass {n} at {} (in {in_secs} s, every {} s)",
                    progress::clock(*at),
                    every.as_secs()
                ),
                None => String::new(),
            };
            let line = progress::pass_line(pass);
            let counts = line.split_once(": ").map_or(line.as_str(), |(_, c)| c);
            format!("pass {} ended: {counts}{next}", pass.number)
        }
    }
}

/// How many failures `run` prints (all of them go to the errors file).
const SHOWN_FAILURES: usize = 50;
/// How many failures `run --json` includes (all of them go to the file).
const JSON_FAILURES: usize = 1000;

/// `run --json`'s summary.
pub(crate) fn summary_json(job: &str, r: &RunReport) -> serde_json::Value {
    let (c, before) = (&r.counts, &r.before);
    let mut v = serde_json::json!({
        "job": job,
        "state": r.state(),
        "counts": c,
        "this_run": {
            "verified": c.verified.saturating_sub(before.verified),
            "verified_bytes": c.verified_bytes.saturating_sub(before.verified_bytes),
            "skipped": c.skipped.saturating_sub(before.skipped),
            "skipped_bytes": c.skipped_bytes.saturating_sub(before.skipped_bytes),
            "failed": c.failed,
        },
        "failed": r.first_failures.iter().map(|f| serde_json::json!({"path": f.rel_path, "code": f.code, "reason": f.message})).collect::<Vec<_>>(),
    });
    if let Some(p) = &r.errors_file {
        v["errors_file"] = p.display().to_string().into();
    }
    v
}

/// `run`'s summary, as printed.
pub(crate) fn summary(job: &str, audit: bool, r: &RunReport) -> String {
    use std::fmt::Write;
    let (c, before) = (&r.counts, &r.before);
    let mut o = String::new();
    // As the engine decided (`JobCounts::outcome`), as the exit code says.
    let _ = writeln!(
        o,
        "job {job} {}",
        if r.succeeded() {
            "succeeded"
        } else {
            "finished with failures"
        }
    );
    if before.verified + before.skipped > 0 {
        // A rerun: what this run did, then what the job holds.
        let _ = writeln!(
            o,
            "  this run: {} {} objects ({}), skipped {} ({}), failed {}; the job held {} verified or skipped before",
            if audit { "matched" } else { "copied" },
            c.verified.saturating_sub(before.verified),
            human_bytes(c.verified_bytes.saturating_sub(before.verified_bytes)),
            c.skipped.saturating_sub(before.skipped),
            human_bytes(c.skipped_bytes.saturating_sub(before.skipped_bytes)),
            c.failed,
            before.verified + before.skipped
        );
        let _ = writeln!(o, "  the job in total:");
    }
    let _ = writeln!(
        o,
        "  found     {:>10} objects  {:>12}",
        c.objects,
        human_bytes(c.bytes)
    );
    let _ = writeln!(
        o,
        "  {}   {:>10} objects  {:>12}",
        if audit { "matched" } else { "copied " },
        c.verified,
        human_bytes(c.verified_bytes)
    );
    let _ = writeln!(
        o,
        "  skipped   {:>10} objects  {:>12}",
        c.skipped,
        human_bytes(c.skipped_bytes)
    );
    let _ = writeln!(o, "  failed    {:>10} objects", c.failed);
    if c.retries > 0 {
        let _ = writeln!(o, "  retries   {:>10} requests retried", c.retries);
    }
    if c.pending > 0 {
        let _ = writeln!(
            o,
            "  unfinished{:>10} objects (run the same command again)",
            c.pending
        );
    }
    let _ = writeln!(
        o,
        "  verified  {:>10} of {} objects",
        c.verified + c.skipped,
        c.objects
    );
    if let Some(Ok(s)) = &r.scan {
        let mut notes = Vec::new();
        if s.symlinks_skipped > 0 {
            notes.push(format!(
                "{} symlinks not followed (isAllowSymbolicLink=false)",
                s.symlinks_skipped
            ));
        }
        if s.special_skipped > 0 {
            notes.push(format!(
                "{} special files (fifo, socket, device) ignored",
                s.special_skipped
            ));
        }
        if s.older_than_import_since > 0 {
            notes.push(format!(
                "{} files not newer than importSince",
                s.older_than_import_since
            ));
        }
        if !notes.is_empty() {
            let _ = writeln!(o, "  not listed: {}", notes.join("; "));
        }
    }
    if let Some(errors_file) = &r.errors_file {
        let _ = writeln!(o, "failed objects:");
        for f in r.first_failures.iter().take(SHOWN_FAILURES) {
            let _ = writeln!(
                o,
                "  {}  {}: {}",
                f.code,
                printable(&f.rel_path),
                printable(&f.message)
            );
        }
        if c.failed as usize > SHOWN_FAILURES {
            let _ = writeln!(o, "  ... and {} more", c.failed as usize - SHOWN_FAILURES);
        }
        let _ = writeln!(
            o,
            "all failures: {}; run the same command again to retry them",
            errors_file.display()
        );
    }
    o
}
