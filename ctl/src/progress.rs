//! The live progress display of `ossimportctl run`: on a terminal, a bar
//! for the bytes (with objects, rate and ETA) and one bar per large file
//! while it uploads; plain periodic lines otherwise (logs, CI, pipes).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agent::worker::{FileProgress, Progress};
use daemon::standalone::Live;
use tokio_util::sync::CancellationToken;

/// What the display reads.
pub(crate) struct Sources {
    pub(crate) live: Arc<Live>,
    pub(crate) bytes: Arc<Progress>,
    /// Objects and bytes still to do when the run started (resumed jobs).
    pub(crate) base_objects: u64,
    pub(crate) base_bytes: u64,
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

impl Sources {
    /// Objects finished, objects known, and bytes known in all.
    fn totals(&self) -> (u64, u64, u64) {
        let l = &self.live;
        (
            Live::get(&l.verified) + Live::get(&l.skipped) + Live::get(&l.failed),
            Live::get(&l.scanned_objects) + self.base_objects,
            Live::get(&l.scanned_bytes) + self.base_bytes,
        )
    }

    /// The objects part of the bar's message.
    fn objects(&self) -> String {
        let l = &self.live;
        let (done, scanned, _) = self.totals();
        format!(
            "objects {done}/{scanned}{} (verified {}, skipped {}, failed {})",
            if self.live.scan_ended.load(Ordering::Relaxed) {
                ""
            } else {
                "+ (scanning)"
            },
            Live::get(&l.verified),
            Live::get(&l.skipped),
            Live::get(&l.failed),
        )
    }

    fn line(&self, elapsed: Duration, rate: f64) -> String {
        let l = &self.live;
        let scanned = Live::get(&l.scanned_objects) + self.base_objects;
        let total_bytes = Live::get(&l.scanned_bytes) + self.base_bytes;
        let done = Live::get(&l.verified) + Live::get(&l.skipped) + Live::get(&l.failed);
        let bytes = self.bytes.bytes.load(Ordering::Relaxed);
        let scan_done = self.live.scan_ended.load(Ordering::Relaxed);
        let eta = if scan_done && rate > 0.0 {
            let left = total_bytes.saturating_sub(bytes) as f64 / rate;
            format!("ETA {}", human_duration(left as u64))
        } else {
            "ETA --".to_string()
        };
        let line = format!(
            "objects {done}/{scanned}{} (verified {}, skipped {}, failed {}) | {} / {} | {}/s | {} | elapsed {}",
            if scan_done { "" } else { "+ (scanning)" },
            Live::get(&l.verified),
            Live::get(&l.skipped),
            Live::get(&l.failed),
            human_bytes(bytes),
            human_bytes(total_bytes),
            human_bytes(rate as u64),
            eta,
            human_duration(elapsed.as_secs()),
        );
        self.with_outages(line)
    }

    /// `line`, then each endpoint down now: `| destination http://...
    /// unreachable since 10:42:07 UTC (retrying every 4 s): why`, and each
    /// held to a rate: `| destination http://... overloaded: held to 48
    /// requests/s (37 throttling answers)`.
    fn with_outages(&self, mut line: String) -> String {
        for o in self.bytes.outages() {
            line.push_str(" | ");
            line.push_str(&o.line());
        }
        for t in self.bytes.throttles() {
            line.push_str(" | ");
            line.push_str(&t);
        }
        line
    }
}

/// Draws progress until `stop` is cancelled: bars on a terminal (see
/// [`bars`]), otherwise a line on stderr every `interval`. The last line is
/// drawn as soon as `stop` fires, not at the next quarter second: a run
/// ends when its job does.
pub(crate) async fn display(src: Sources, stop: CancellationToken, interval: Duration) {
    if std::io::stderr().is_terminal() {
        return bars(src, stop).await;
    }
    let start = Instant::now();
    // Rate over a sliding window of recent samples, so it follows changes.
    let mut samples: std::collections::VecDeque<(Instant, u64)> = std::collections::VecDeque::new();
    let mut last_print = Instant::now();
    loop {
        tick(&stop).await;
        let now = Instant::now();
        let bytes = src.bytes.bytes.load(Ordering::Relaxed);
        samples.push_back((now, bytes));
        while samples.len() > 2 && now.duration_since(samples[0].0) > Duration::from_secs(10) {
            samples.pop_front();
        }
        let rate = match (samples.front(), samples.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                (b.1 - a.1) as f64 / b.0.duration_since(a.0).as_secs_f64()
            }
            _ => 0.0,
        };
        let stopping = stop.is_cancelled();
        if stopping || now.duration_since(last_print) >= interval {
            last_print = now;
            eprintln!("progress: {}", src.line(start.elapsed(), rate));
        }
        if stopping {
            return;
        }
    }
}

/// A quarter second, or less when `stop` fires meanwhile.
async fn tick(stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        _ = stop.cancelled() => {}
    }
}

/// Most large-file bars shown at once; the rest are counted in a line.
const MAX_FILE_BARS: usize = 6;

/// The terminal display: an indicatif bar for all bytes, with objects in
/// its message, and under it a bar per large file in flight.
async fn bars(src: Sources, stop: CancellationToken) {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    let main = multi.add(ProgressBar::new(0));
    main.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30.green/dim}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} | {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let file_style = ProgressStyle::with_template(
        "  {prefix:.dim} [{bar:20.cyan/dim}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    let mut files: std::collections::HashMap<usize, (ProgressBar, Arc<FileProgress>)> =
        std::collections::HashMap::new();
    loop {
        tick(&stop).await;
        let stopping = stop.is_cancelled();
        let (_, _, total) = src.totals();
        let bytes = src.bytes.bytes.load(Ordering::Relaxed);
        main.set_length(total.max(bytes));
        main.set_position(bytes);
        // Large files: a bar each while they upload, oldest first.
        let large = if stopping {
            Vec::new()
        } else {
            src.bytes.large_files()
        };
        let shown: Vec<&Arc<FileProgress>> = large.iter().take(MAX_FILE_BARS).collect();
        let keys: Vec<usize> = shown.iter().map(|f| Arc::as_ptr(f) as usize).collect();
        files.retain(|k, (bar, _)| {
            let keep = keys.contains(k);
            if !keep {
                bar.finish_and_clear();
                multi.remove(bar);
            }
            keep
        });
        for f in shown {
            let (bar, f) = files.entry(Arc::as_ptr(f) as usize).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(f.total));
                bar.set_style(file_style.clone());
                bar.set_prefix(short_name(&f.name, 40));
                (bar, Arc::clone(f))
            });
            bar.set_position(f.done.load(Ordering::Relaxed).min(f.total));
        }
        let mut msg = src.with_outages(src.objects());
        if large.len() > MAX_FILE_BARS {
            msg.push_str(&format!(
                "; {} more large files",
                large.len() - MAX_FILE_BARS
            ));
        }
        main.set_message(msg);
        if stopping {
            main.finish();
            return;
        }
    }
}

/// `name` in at most `max` characters, keeping its end (the file name).
fn short_name(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max {
        return format!("{name:<max$}");
    }
    let tail: String = name.chars().skip(n - (max - 1)).collect();
    format!("…{tail}")
}

/// One pass: `pass 2: found 120, new 3, changed 2, retried 0, deleted 1,
/// copied 5, failed 0 (ended 21:04:05)`.
pub(crate) fn pass_line(p: &proto::api::PassRecord) -> String {
    let mut s = format!(
        "pass {}: found {}, new {}, changed {}, retried {}, deleted {}",
        p.number, p.found, p.new, p.changed, p.retried, p.deleted
    );
    match p.ended_at {
        Some(t) => s.push_str(&format!(
            ", copied {}, failed {} (ended {})",
            p.copied,
            p.failed,
            clock(t)
        )),
        None => s.push_str(&format!(" (running since {})", clock(p.started_at))),
    }
    if let Some(e) = &p.error {
        s.push_str(&format!("; listing failed: {e}"));
    }
    s
}

/// An incremental job's current pass and when the next one starts.
pub(crate) fn incremental_line(inc: &proto::api::Incremental) -> String {
    let current = inc.passes.last().map(pass_line).unwrap_or_default();
    if inc.watch.is_some() {
        // Watched: passes follow the changes; the interval is the
        // reconcile passes'.
        return format!(
            "incremental (watch), a whole listing every {} s; {current}",
            inc.interval_secs
        );
    }
    match inc.next_pass_at {
        Some(at) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            format!(
                "incremental, every {} s; {current}; next pass {} at {} (in {} s)",
                inc.interval_secs,
                inc.pass + 1,
                clock(at),
                (at - now).max(0)
            )
        }
        None => format!("incremental, every {} s; {current}", inc.interval_secs),
    }
}

/// A watched tree (`incrementalMode=watch`): `watch (inotify ...): 3 pending, lag 1.2 s;
/// 120 queued, 117 applied; last reconcile Tue, 01 Dec 2026 21:04:05 GMT`,
/// then why the next pass lists everything and why events alone are not
/// trusted, when so.
pub(crate) fn watch_line(w: &proto::api::WatchStatus) -> String {
    let lag = match w.lag_ms {
        Some(ms) => format!("lag {:.1} s", ms as f64 / 1000.0),
        None => "no lag".into(),
    };
    let by = if w.backend.is_empty() {
        String::new()
    } else {
        format!(" ({})", w.backend)
    };
    let mut s = format!(
        "watch{by}: {} pending, {lag}; {} queued, {} applied; last reconcile {}",
        w.pending,
        w.queued,
        w.applied,
        w.last_reconcile.map_or("none yet".into(), clock)
    );
    if let Some(why) = &w.reconcile_due {
        s.push_str(&format!("; next pass lists everything: {why}"));
    }
    if let Some(p) = &w.problem {
        s.push_str(&format!("; {p}"));
    }
    s
}

/// Unix seconds as an HTTP date (`Tue, 01 Dec 2026 21:04:05 GMT`).
pub(crate) fn clock(t: i64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_names_keep_their_end() {
        assert_eq!(super::short_name("a/b.bin", 9), "a/b.bin  ");
        assert_eq!(
            super::short_name("dir/very-long-name.bin", 10),
            "…-name.bin"
        );
        assert_eq!(super::short_name("数据/大文件.bin", 8), "…大文件.bin");
    }
}
