//! `report`, `errors` and manifests: what the job holds and how it was
//! verified, its failures a page at a time.

use super::*;

pub(super) async fn report(
    job: String,
    page: PageArgs,
    manifest: Option<PathBuf>,
    d: DaemonArgs,
) -> Result<exit::Code> {
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
        print!("{}", render_report(&r, &job));
    }
    Ok(exit::of_finished(r.state))
}

/// The agents' rows of `start`/`stop`: on stdout, or on stderr beside
/// `--json` output. They do not change the exit code of the daemon's half.
/// `report`'s text: the job's counts by how they were verified, its
/// failures, passes, deletions and control calls.
pub(crate) fn render_report(r: &Report, job: &str) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let c = &r.counts;
    let _ = writeln!(o, "job {} ({})", r.job, r.state);
    let _ = writeln!(
        o,
        "  objects   {:>10}  {:>12}",
        c.objects,
        human_bytes(c.bytes)
    );
    for m in &r.methods {
        let _ = writeln!(
            o,
            "  {:<28} {:>10}  {:>12}",
            m.verified_by,
            m.objects,
            human_bytes(m.bytes)
        );
    }
    let _ = writeln!(o, "  failed    {:>10}", c.failed);
    let _ = writeln!(o, "  pending   {:>10}", c.pending);
    for f in &r.failed {
        let _ = writeln!(
            o,
            "  {}  {}: {}",
            f.code,
            proto::net::printable(&f.path),
            proto::net::printable(&f.message)
        );
    }
    if r.passes.len() > 1 {
        for p in &r.passes {
            let _ = writeln!(o, "  {}", crate::progress::pass_line(p));
        }
    } else if let Some(e) = r.passes.first().and_then(|p| p.error.as_deref()) {
        let _ = writeln!(o, "  listing failed: {}", proto::net::printable(e));
    }
    let gone: u64 = r.passes.iter().map(|p| p.deleted).sum();
    if gone > 0 {
        let _ = writeln!(
            o,
            "  gone from the source (kept at the destination): {gone}"
        );
        for d in &r.deleted {
            let _ = writeln!(
                o,
                "  DELETED  {} ({}, pass {})",
                d.rel_path.escape_debug(),
                human_bytes(d.size),
                d.pass
            );
        }
    }
    if let Some(next) = &r.next {
        let _ = writeln!(
            o,
            "  more: ossimportctl errors {job} --after {}",
            shell_word(next)
        );
    }
    if !r.control.is_empty() {
        let _ = writeln!(o, "  control calls:");
        for c in &r.control {
            let _ = writeln!(
                o,
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
    o
}

/// `errors`: one page with `--limit`, otherwise every failure, fetched
/// and printed a page at a time (memory stays bounded in daemon and ctl;
/// `--json` still prints one JSON document).
pub(super) async fn errors(job: &str, args: &PageArgs, d: &DaemonArgs) -> Result<exit::Code> {
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
                print!("{}", errors_text(std::slice::from_ref(f), first));
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

/// Failed objects as `errors` prints them: a header line first, then one
/// line each (the errors file's format, [`proto::api::failure_line`]).
pub(crate) fn errors_text(failed: &[proto::api::FailedEntry], header: bool) -> String {
    let mut o = String::new();
    if header && !failed.is_empty() {
        o.push_str("code\tpath\treason\n");
    }
    for f in failed {
        o.push_str(&proto::api::failure_line(&f.code, &f.path, &f.message));
        o.push('\n');
    }
    o
}

/// Fetches a job's manifest from the daemon a page at a time and writes it.
pub(super) async fn write_manifest(job: &str, path: &Path, d: &DaemonArgs) -> Result<()> {
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
