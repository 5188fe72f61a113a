//! The live progress display of `ossimportctl run`: one redrawn line on a
//! terminal, plain periodic lines otherwise (logs, CI, pipes).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent::worker::Progress;
use daemon::coordinator::Live;

/// What the display reads.
pub(crate) struct Sources {
    pub(crate) live: Arc<Live>,
    pub(crate) bytes: Arc<Progress>,
    pub(crate) scan_done: Arc<AtomicBool>,
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
    fn line(&self, elapsed: Duration, rate: f64) -> String {
        let l = &self.live;
        let scanned = Live::get(&l.scanned_objects) + self.base_objects;
        let total_bytes = Live::get(&l.scanned_bytes) + self.base_bytes;
        let done = Live::get(&l.verified) + Live::get(&l.skipped) + Live::get(&l.failed);
        let bytes = self.bytes.bytes.load(Ordering::Relaxed);
        let scan_done = self.scan_done.load(Ordering::Relaxed);
        let eta = if scan_done && rate > 0.0 {
            let left = total_bytes.saturating_sub(bytes) as f64 / rate;
            format!("ETA {}", human_duration(left as u64))
        } else {
            "ETA --".to_string()
        };
        format!(
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
        )
    }
}

/// Draws progress until `stop` is set. On a terminal the line is redrawn
/// every 250 ms on stderr; otherwise a line is printed every `interval`.
pub(crate) async fn display(src: Sources, stop: Arc<AtomicBool>, interval: Duration) {
    let tty = std::io::stderr().is_terminal();
    let tick = if tty {
        Duration::from_millis(250)
    } else {
        interval
    };
    let start = Instant::now();
    // Rate over a sliding window of recent samples, so it follows changes.
    let mut samples: std::collections::VecDeque<(Instant, u64)> = std::collections::VecDeque::new();
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(if tty {
            tick
        } else {
            Duration::from_millis(250)
        })
        .await;
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
        let stopping = stop.load(Ordering::Relaxed);
        if tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{}", src.line(start.elapsed(), rate));
            if stopping {
                let _ = writeln!(err);
            }
            let _ = err.flush();
        } else if stopping || now.duration_since(last_print) >= tick {
            last_print = now;
            eprintln!("progress: {}", src.line(start.elapsed(), rate));
        }
        if stopping {
            return;
        }
    }
}
