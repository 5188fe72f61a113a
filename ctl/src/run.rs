//! `ossimportctl run job.cfg`: a standalone run. The daemon core (store,
//! scanner, recorder) and the agent executor in one process, with a live
//! progress display, a summary, and resume on the next run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use daemon::engine;
use daemon::scanner;
use daemon::state::{Config, State};
use daemon::store::{Counts, JobRow, JobState, Store};
use proto::net::printable;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::exit;
use crate::progress::{self, human_bytes};
use daemon::plan::{self, Plan};

use daemon::state::STORE_FILE;

/// An error with the exit code it maps to.
struct Exit(u8, anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Exit {
    fn from(e: E) -> Exit {
        Exit(exit::RUNTIME, e.into())
    }
}

pub fn main(args: RunArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ossimportctl: cannot start the runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
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

async fn run(args: RunArgs) -> Result<u8, Exit> {
    let plan = plan::load(&args.job_cfg, args.sys.as_deref()).map_err(usage)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    if args.dry_run {
        return crate::dry_run::dry_run(&plan, args.sample, args.json)
            .await
            .map_err(|e| Exit(exit::RUNTIME, e));
    }
    plan.preflight().await.map_err(|e| Exit(exit::RUNTIME, e))?;

    let work_dir = match args.work_dir.clone().or_else(|| plan.work_dir.clone()) {
        Some(w) => w,
        None => default_work_dir(&plan.name, args.quiet)?,
    };
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating work directory {}", work_dir.display()))?;
    let store = Arc::new(Store::open(&work_dir.join(STORE_FILE))?);

    let job_id = open_job(&store, &plan, args.clean)?;
    let mut spec = plan.spec.clone();
    spec.job_id = job_id;
    if !args.quiet {
        eprintln!(
            "job {}: {} -> {} (state in {})",
            plan.name,
            plan.source_label,
            plan.dest_label,
            work_dir.join(STORE_FILE).display()
        );
    }

    // The daemon's engine, with the local worker as its only executor.
    let mut config = Config::new(&work_dir, None);
    config.reload_jobs = false;
    config.local_worker = Some(spec.object_concurrency.clamp(2, 16));
    let state = State::standalone(config, Arc::clone(&store));
    spawn_signal_handler(state.cancel.clone());
    let eng = engine::start(&state).await?;
    if let Some(addr) = &args.metrics {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding /metrics and the status page on {addr}"))
            .map_err(|e| Exit(exit::USAGE, e))?;
        if !args.quiet {
            eprintln!(
                "metrics and status page: http://{}/",
                l.local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| addr.clone())
            );
        }
        daemon::status::serve(&eng, l, format!("run {}", plan.name));
    }

    // Nothing else can be executing this job's tasks: the start takes back
    // what a killed run had leased and retries what failed last time.
    let before = store.counts(job_id)?;
    let mut start = before.clone();
    let row = store
        .job(job_id)?
        .ok_or_else(|| anyhow::anyhow!("job {} vanished from the store", plan.name))?;
    let (live, changed) = engine::adopt(&eng, &row, spec, plan.scan.clone(), true)
        .await
        .map_err(|e| Exit(exit::RUNTIME, e.into()))?;
    let retried = changed.retried;
    start.pending += retried.queued;
    start.failed = start.failed.saturating_sub(retried.queued);
    if start.objects > 0 && !args.quiet {
        eprintln!(
            "resuming: {} objects known, {} verified, {} skipped, {} to do{}",
            start.objects,
            start.verified,
            start.skipped,
            start.pending,
            match (retried.queued, retried.unfixable) {
                (0, 0) => String::new(),
                (0, k) =>
                    format!(" ({k} failed before and cannot be retried: see the errors file)"),
                (n, 0) => format!(" ({n} failed before, retrying)"),
                (n, k) => format!(" ({n} failed before, retrying; {k} cannot be retried)"),
            }
        );
    }

    let stop_display = Arc::new(AtomicBool::new(false));
    let sources = progress::Sources {
        live: Arc::clone(&live),
        bytes: Arc::clone(&eng.local.progress),
        base_objects: start.pending,
        base_bytes: start
            .bytes
            .saturating_sub(start.verified_bytes + start.skipped_bytes),
    };
    let display = (!args.quiet).then(|| {
        tokio::spawn(progress::display(
            sources,
            Arc::clone(&stop_display),
            Duration::from_secs(args.progress_interval.max(1)),
        ))
    });

    // The engine finishes the job; wait for that (and for tasks still
    // leased after a failed listing) or for Ctrl-C. An incremental job
    // never finishes: its passes go on until Ctrl-C, each reported.
    let incremental = plan.scan.incremental.is_some();
    let mut reported = Reported::default();
    if incremental {
        // A rerun reports only what happens from now on.
        let before = store.passes(job_id)?;
        reported.started = before.last().map_or(0, |p| p.number);
        reported.ended = before
            .iter()
            .filter(|p| p.ended_at.is_some())
            .map(|p| p.number)
            .max()
            .unwrap_or(0);
        if let (Some(last), Some(at), false) = (before.last(), row.next_pass_at, args.quiet) {
            eprintln!(
                "incremental: pass {} ended earlier; next pass {} at {} (in {} s)",
                last.number,
                last.number + 1,
                progress::clock(at),
                (at - daemon::state::unix_now()).max(0)
            );
        }
    }
    let finished = loop {
        let changed = state.job_changed.notified();
        let st = Arc::clone(&store);
        let (job, (_, leased), passes) = tokio::task::spawn_blocking(move || {
            let passes = if incremental {
                st.passes(job_id)?
            } else {
                Vec::new()
            };
            Ok::<_, daemon::store::StoreError>((st.job(job_id)?, st.task_states(job_id)?, passes))
        })
        .await??;
        match job {
            Some(j) if j.state.is_finished() && leased == 0 => break Some(j.state),
            Some(j) => {
                if incremental && !args.quiet {
                    reported.report(&j, &passes, plan.scan.incremental.unwrap_or_default());
                }
            }
            None => break None,
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = state.cancel.cancelled() => break None,
        }
    };
    let cancelled = state.cancel.is_cancelled();
    eng.stop().await;
    stop_display.store(true, Ordering::Relaxed);
    if let Some(display) = display {
        let _ = display.await;
    }

    let counts = store.counts(job_id)?;
    let scan = live.scan.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let state = match finished {
        Some(s) if !cancelled => s,
        _ => {
            eprintln!(
                "interrupted: {} of {} objects done so far; run the same command again to resume",
                counts.verified + counts.skipped,
                counts.objects
            );
            return Ok(exit::INTERRUPTED);
        }
    };
    let scan_stats = match scan {
        Some(Ok(stats)) => Some(stats),
        Some(Err(e)) => {
            return Err(Exit(
                exit::RUNTIME,
                anyhow::anyhow!("scanning {}: {e}", plan.source_label),
            ));
        }
        None => None,
    };
    print_summary(
        &plan,
        &store,
        job_id,
        (&before, &counts),
        state,
        scan_stats.as_ref(),
        &work_dir,
        args.json,
    )?;
    if let Some(path) = &args.manifest {
        write_manifest(&store, job_id, &plan, path)?;
    }
    Ok(if state == JobState::Succeed {
        exit::OK
    } else {
        exit::JOB_FAILED
    })
}

/// Where `run` keeps its job store without `--work-dir` or `workingDir`:
/// the per-user state directory (`$XDG_STATE_HOME/ossimport`, else
/// `~/.local/state/ossimport`), so the same command typed in another
/// directory finds the same job. A job store of this job in the current
/// directory (where earlier versions kept it) is used where it is, with a
/// note, rather than silently starting over.
fn default_work_dir(job: &str, quiet: bool) -> Result<PathBuf, Exit> {
    let here = Path::new(".").join(STORE_FILE);
    if here.is_file()
        && Store::open_read_only(&here)
            .and_then(|s| s.find_job(job))
            .is_ok_and(|j| j.is_some())
    {
        if !quiet {
            eprintln!(
                "note: using the job store of {job} in the current directory ({}); new jobs go to the \
                 per-user state directory unless --work-dir or workingDir says otherwise",
                here.display()
            );
        }
        return Ok(PathBuf::from("."));
    }
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    match (xdg, home) {
        (Some(x), _) => Ok(x.join("ossimport")),
        (None, Some(h)) => Ok(h.join(".local/state/ossimport")),
        (None, None) => Err(Exit(
            exit::USAGE,
            anyhow::anyhow!(
                "no state directory: neither XDG_STATE_HOME nor HOME is set; give --work-dir or workingDir"
            ),
        )),
    }
}

/// Writes the job's manifest from its store, a page at a time.
fn write_manifest(store: &Store, job_id: i64, plan: &Plan, path: &Path) -> anyhow::Result<()> {
    let mut m = crate::manifest::Manifest::create(path)?;
    let mut after = 0;
    loop {
        let mut rows = store.manifest_page(job_id, after, 10_000)?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for r in &mut rows {
            daemon::manifest::locate(&plan.spec, r);
            m.row(r)?;
        }
    }
    let n = m.totals.objects;
    let sha = m.finish()?;
    eprintln!(
        "manifest: {n} objects written to {} (SHA-256 of the body {sha})",
        path.display()
    );
    Ok(())
}

/// What `run` has said about an incremental job's passes so far.
#[derive(Default)]
struct Reported {
    started: u32,
    ended: u32,
}

impl Reported {
    /// One line when a pass starts, one when it ends with its counts and
    /// when the next one starts.
    fn report(&mut self, job: &JobRow, passes: &[proto::api::PassRecord], every: Duration) {
        for p in passes {
            if p.number > self.started {
                self.started = p.number;
                if p.ended_at.is_none() {
                    eprintln!("pass {}: listing {}", p.number, job.name);
                }
            }
            if p.ended_at.is_some() && p.number > self.ended {
                self.ended = p.number;
                let next = match job.next_pass_at {
                    Some(at) if job.pass == p.number => format!(
                        "; next pass {} at {} (in {} s, every {} s)",
                        p.number + 1,
                        progress::clock(at),
                        (at - daemon::state::unix_now()).max(0),
                        every.as_secs()
                    ),
                    _ => String::new(),
                };
                let line = progress::pass_line(p);
                let counts = line.split_once(": ").map_or(line.as_str(), |(_, c)| c);
                eprintln!("pass {} ended: {counts}{next}", p.number);
            }
        }
    }
}

/// Finds the job in the store, or creates it; refuses to resume a job whose
/// configuration changed since it was first run.
fn open_job(store: &Store, plan: &Plan, clean: bool) -> Result<i64, Exit> {
    if let Some(job) = store.find_job(&plan.name)? {
        if clean {
            store.delete_job(job.id)?;
        } else if job.fingerprint != plan.fingerprint {
            return Err(usage(format!(
                "job {} was first run with a different configuration; its recorded progress would not match. \
                 Run with --clean to discard it and start over, or give the changed job a new jobName",
                plan.name
            )));
        } else {
            return Ok(job.id);
        }
    }
    Ok(store.create_job(&plan.name, &plan.config_json, &plan.fingerprint)?)
}

fn spawn_signal_handler(cancel: CancellationToken) {
    // Detached: lives as long as the process.
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term_fut = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term_fut => {}
        }
        eprintln!("\nstopping: finishing in-flight work (press Ctrl-C again to quit at once)");
        cancel.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(exit::INTERRUPTED as i32);
    });
}

/// How many failures `run` prints (all of them go to the errors file).
const SHOWN_FAILURES: usize = 50;
/// How many failures `run --json` includes (all of them go to the file).
const JSON_FAILURES: usize = 1000;

#[allow(clippy::too_many_arguments)]
fn print_summary(
    plan: &Plan,
    store: &Store,
    job_id: i64,
    (before, c): (&Counts, &Counts),
    state: JobState,
    scan: Option<&scanner::ScanStats>,
    work_dir: &Path,
    json: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    // As the engine decided (`JobCounts::outcome`), as the exit code says.
    let ok = state == JobState::Succeed;
    let audit = plan.spec.mode == proto::job::JobMode::Audit;
    let errors_file = work_dir.join(format!("{}.errors.tsv", plan.name));
    if c.failed > 0 {
        // Written a page at a time: millions of failures never sit in memory.
        let write = || -> anyhow::Result<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&errors_file)?);
            out.write_all(b"code\tpath\treason\n")?;
            let mut io = Ok(());
            store.for_each_failed(job_id, |f| {
                if io.is_ok() {
                    io = writeln!(
                        out,
                        "{}\t{}\t{}",
                        f.code,
                        printable(&f.rel_path),
                        printable(&f.message)
                    );
                }
                Ok(())
            })?;
            io?;
            out.flush()?;
            Ok(())
        };
        write().with_context(|| format!("writing {}", errors_file.display()))?;
    }
    let shown = if json { JSON_FAILURES } else { SHOWN_FAILURES };
    let first = if c.failed > 0 {
        store.failed_page(job_id, None, shown)?.failed
    } else {
        Vec::new()
    };
    if json {
        let mut v = serde_json::json!({
            "job": plan.name,
            "state": state,
            "counts": c,
            "this_run": {
                "verified": c.verified.saturating_sub(before.verified),
                "verified_bytes": c.verified_bytes.saturating_sub(before.verified_bytes),
                "skipped": c.skipped.saturating_sub(before.skipped),
                "skipped_bytes": c.skipped_bytes.saturating_sub(before.skipped_bytes),
                "failed": c.failed,
            },
            "failed": first.iter().take(shown).map(|f| serde_json::json!({"path": f.rel_path, "code": f.code, "reason": f.message})).collect::<Vec<_>>(),
        });
        if c.failed > 0 {
            v["errors_file"] = errors_file.display().to_string().into();
        }
        println!("{v:#}");
        return Ok(());
    }
    println!(
        "job {} {}",
        plan.name,
        if ok {
            "succeeded"
        } else {
            "finished with failures"
        }
    );
    if before.verified + before.skipped > 0 {
        // A rerun: what this run did, then what the job holds.
        println!(
            "  this run: {} {} objects ({}), skipped {} ({}), failed {}; the job held {} verified or skipped before",
            if audit { "matched" } else { "copied" },
            c.verified.saturating_sub(before.verified),
            human_bytes(c.verified_bytes.saturating_sub(before.verified_bytes)),
            c.skipped.saturating_sub(before.skipped),
            human_bytes(c.skipped_bytes.saturating_sub(before.skipped_bytes)),
            c.failed,
            before.verified + before.skipped
        );
        println!("  the job in total:");
    }
    println!(
        "  found     {:>10} objects  {:>12}",
        c.objects,
        human_bytes(c.bytes)
    );
    if audit {
        println!(
            "  matched   {:>10} objects  {:>12}",
            c.verified,
            human_bytes(c.verified_bytes)
        );
    } else {
        println!(
            "  copied    {:>10} objects  {:>12}",
            c.verified,
            human_bytes(c.verified_bytes)
        );
    }
    println!(
        "  skipped   {:>10} objects  {:>12}",
        c.skipped,
        human_bytes(c.skipped_bytes)
    );
    println!("  failed    {:>10} objects", c.failed);
    if c.retries > 0 {
        println!("  retries   {:>10} requests retried", c.retries);
    }
    if c.pending > 0 {
        println!(
            "  unfinished{:>10} objects (run the same command again)",
            c.pending
        );
    }
    println!(
        "  verified  {:>10} of {} objects",
        c.verified + c.skipped,
        c.objects
    );
    if let Some(s) = scan {
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
            println!("  not listed: {}", notes.join("; "));
        }
    }
    if c.failed > 0 {
        println!("failed objects:");
        for f in first.iter().take(SHOWN_FAILURES) {
            println!(
                "  {}  {}: {}",
                f.code,
                printable(&f.rel_path),
                printable(&f.message)
            );
        }
        if c.failed as usize > SHOWN_FAILURES {
            println!("  ... and {} more", c.failed as usize - SHOWN_FAILURES);
        }
        println!(
            "all failures: {}; run the same command again to retry them",
            errors_file.display()
        );
    }
    Ok(())
}
