//! `run --dry-run` and `submit --dry-run`: the job is checked and its
//! source listed (all of it, or the first `--sample N` objects) into a job
//! store in memory, by the same scanner and rules as the real run, and what
//! would happen is printed: objects and bytes to copy, what the listing
//! leaves out and why, the names that will fail, the largest objects and
//! how long the copy takes at the bandwidth cap. Nothing is written
//! anywhere: not the destination, not a job store, not a work directory.

use daemon::standalone;
use job::plan::Plan;

use crate::exit;
use crate::progress::human_bytes;

/// Failed names shown per code, and largest objects shown.
const SHOWN: usize = 10;

pub(crate) async fn dry_run(
    plan: &Plan,
    sample: Option<u64>,
    json: bool,
) -> anyhow::Result<exit::Code> {
    let d = standalone::dry_run(plan, sample, SHOWN * 4).await?;
    let (sampled, stats, c) = (d.sampled, &d.stats, &d.counts);
    let failures = &d.failures;
    let failed: u64 = failures.iter().map(|(_, n, _)| n).sum();
    let failed_bytes: u64 = failures.iter().map(|(_, _, b)| b).sum();
    let first_failed = &d.first_failed;
    let mut largest = d.largest.clone();
    largest.truncate(SHOWN);
    let (copy_objects, copy_bytes) = (c.objects - failed, c.bytes - failed_bytes);
    let cap = plan.spec.limits.bytes_per_second;
    let seconds = (cap > 0).then(|| copy_bytes.div_ceil(cap));
    let skip_rule = plan.spec.skip != proto::job::SkipMode::None;
    if json {
        let v = serde_json::json!({
            "job": plan.name,
            "dry_run": true,
            "sampled": sampled.then_some(sample),
            "copy": {"objects": copy_objects, "bytes": copy_bytes},
            "fail": failures.iter().map(|(code, n, b)| serde_json::json!({"code": code, "objects": n, "bytes": b})).collect::<Vec<_>>(),
            "failed": first_failed.iter().map(|f| serde_json::json!({"path": f.rel_path, "code": f.code, "reason": f.message})).collect::<Vec<_>>(),
            "not_listed": {
                "older_than_import_since": stats.older_than_import_since,
                "filtered_out": stats.filtered_out,
                "symlinks_not_followed": stats.symlinks_skipped,
                "special_files": stats.special_skipped,
                "directory_markers": stats.dir_markers,
            },
            "largest": largest.iter().map(|(p, s)| serde_json::json!({"path": p, "size": s})).collect::<Vec<_>>(),
            "bandwidth_cap_bytes_per_sec": cap,
            "estimated_seconds": seconds,
            "skip_existing_decided_at_copy_time": skip_rule,
            "settings": plan.settings.iter().map(|c| serde_json::json!({"key": c.key, "value": c.value, "default": c.default})).collect::<Vec<_>>(),
        });
        println!("{v:#}");
        return Ok(exit::OK);
    }
    print!(
        "{}",
        render(
            &Heading {
                name: &plan.name,
                source: &plan.source_label,
                dest: &plan.dest_label,
                cap,
                skip_rule,
                sample,
                settings: &plan.settings,
            },
            &d
        )
    );
    Ok(exit::OK)
}

/// What the dry run's text says about the job besides what was listed.
pub(crate) struct Heading<'a> {
    pub(crate) name: &'a str,
    pub(crate) source: &'a str,
    pub(crate) dest: &'a str,
    /// `workerMaxThroughput`, bytes per second (0: none).
    pub(crate) cap: u64,
    /// A skip rule decides at copy time.
    pub(crate) skip_rule: bool,
    pub(crate) sample: Option<u64>,
    /// The keys set away from their defaults (the key table's).
    pub(crate) settings: &'a [job::config::keys::Changed],
}

/// The dry run's text.
pub(crate) fn render(h: &Heading<'_>, d: &standalone::DryRun) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let (sampled, stats, c) = (d.sampled, &d.stats, &d.counts);
    let failures = &d.failures;
    let failed: u64 = failures.iter().map(|(_, n, _)| n).sum();
    let failed_bytes: u64 = failures.iter().map(|(_, _, b)| b).sum();
    let first_failed = &d.first_failed;
    let largest = &d.largest[..d.largest.len().min(SHOWN)];
    let (copy_objects, copy_bytes) = (c.objects - failed, c.bytes - failed_bytes);
    let (cap, skip_rule) = (h.cap, h.skip_rule);
    let seconds = (cap > 0).then(|| copy_bytes.div_ceil(cap));
    let _ = writeln!(
        o,
        "dry run of job {}: {} -> {} (nothing is written)",
        h.name, h.source, h.dest
    );
    if !h.settings.is_empty() {
        let set: Vec<String> = h
            .settings
            .iter()
            .map(|c| match c.default {
                "" => format!("{}={}", c.key, c.value.escape_debug()),
                d => format!("{}={} (default {d})", c.key, c.value.escape_debug()),
            })
            .collect();
        let _ = writeln!(o, "  settings: {}", set.join(", "));
    }
    if sampled {
        let _ = writeln!(
            o,
            "  sampled: the listing stopped after the first {} objects",
            h.sample.unwrap_or_default()
        );
    }
    let _ = writeln!(
        o,
        "  would copy  {:>10} objects  {:>12}",
        copy_objects,
        human_bytes(copy_bytes)
    );
    let mut left_out = Vec::new();
    for (n, what) in [
        (
            stats.older_than_import_since,
            "files not newer than importSince",
        ),
        (stats.filtered_out, "left out by includeGlobs/excludeGlobs"),
        (
            stats.symlinks_skipped,
            "symlinks not followed (isAllowSymbolicLink=false)",
        ),
        (
            stats.special_skipped,
            "special files (fifo, socket, device)",
        ),
        (stats.dir_markers, "directory markers"),
    ] {
        if n > 0 {
            left_out.push(format!("{n} {what}"));
        }
    }
    if !left_out.is_empty() {
        let _ = writeln!(o, "  not listed: {}", left_out.join("; "));
    }
    if skip_rule {
        let _ = writeln!(
            o,
            "  skipMode/isSkipExistFile: objects the destination already has are skipped at copy time (not counted here)"
        );
    }
    if failed > 0 {
        let by: Vec<String> = failures
            .iter()
            .map(|(c, n, _)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  would fail  {:>10} objects ({})",
            failed,
            by.join(", ")
        );
        for f in first_failed {
            let _ = writeln!(
                o,
                "    {}  {}: {}",
                f.code,
                f.rel_path.escape_debug(),
                f.message
            );
        }
    }
    if !largest.is_empty() {
        let _ = writeln!(o, "  largest:");
        for (p, s) in largest {
            let _ = writeln!(o, "    {:>12}  {}", human_bytes(*s), p.escape_debug());
        }
    }
    let _ = match seconds {
        Some(s) => writeln!(
            o,
            "  estimated duration at workerMaxThroughput {}/s: {}:{:02}:{:02} (one worker at the cap; agents share the work)",
            human_bytes(cap),
            s / 3600,
            s % 3600 / 60,
            s % 60
        ),
        None => writeln!(
            o,
            "  no bandwidth cap (workerMaxThroughput): the duration is not estimated"
        ),
    };
    o
}
