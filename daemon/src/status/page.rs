//! `/`: a snapshot as a server-rendered HTML page with an inline SVG chart.

use super::*;

/// Escapes text for HTML element content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

pub(super) fn human_bytes(n: f64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", U[i])
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub(super) fn human_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The chart's stroke colour; the screenshot test looks for it.
pub const CHART_COLOUR: &str = "#1d4ed8";

/// An SVG line chart of bytes per second, `points` oldest first.
pub(super) fn chart(points: &[(i64, f64)], now: i64) -> String {
    let (w, h, pad) = (900.0, 220.0, 84.0);
    let start = points.first().map(|p| p.0).unwrap_or(now).min(now - 60);
    let span = (now - start).max(60) as f64;
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let x = |t: i64| pad + (t - start) as f64 / span * (w - pad - 10.0);
    let y = |v: f64| h - 25.0 - v / top * (h - 35.0);
    let mut s = format!(
        r##"<svg id="chart" data-points="{}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="throughput"><rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>"##,
        points.len()
    );
    for i in 0..=4 {
        let v = top / 4.0 * f64::from(i);
        let _ = write!(
            s,
            r##"<line x1="{pad}" x2="{x2}" y1="{yv:.1}" y2="{yv:.1}" stroke="#e5e7eb"/><text x="{tx}" y="{ty:.1}" font-size="11" fill="#6b7280" text-anchor="end">{label}/s</text>"##,
            x2 = w - 10.0,
            yv = y(v),
            tx = pad - 4.0,
            ty = y(v) + 4.0,
            label = human_bytes(v)
        );
    }
    let _ = write!(
        s,
        r##"<text x="{pad}" y="{}" font-size="11" fill="#6b7280">{}</text><text x="{}" y="{}" font-size="11" fill="#6b7280" text-anchor="end">now</text>"##,
        h - 8.0,
        esc(&format!("{} ago", human_secs(span))),
        w - 10.0,
        h - 8.0
    );
    if points.len() >= 2 {
        let line: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="{CHART_COLOUR}" stroke-width="3" shape-rendering="crispEdges"/>"##,
            line.join(" ")
        );
    } else {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="13" fill="#6b7280" text-anchor="middle">collecting samples (one every {} s)</text>"##,
            w / 2.0,
            h / 2.0,
            SAMPLE.as_secs()
        );
    }
    s.push_str("</svg>");
    s
}

/// The status page, top to bottom as it shows (jobs, chart, agents,
/// failures); long because it is one HTML document.
pub fn render_page(eng: &Engine, snap: &Snapshot, mode: &str) -> String {
    let now = unix_now();
    let m = &eng.metrics;
    let mut b = String::new();
    let _ = write!(
        b,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ossimport status</title><link rel="icon" href="data:,"><meta name="viewport" content="width=device-width, initial-scale=1"><style>
body{{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#111827;background:#f9fafb}}
h1{{font-size:20px;margin:0 0 4px}} h2{{font-size:16px;margin:22px 0 8px}}
table{{border-collapse:collapse;background:#fff;min-width:600px}} td,th{{border:1px solid #e5e7eb;padding:4px 8px;text-align:left}}
th{{background:#f3f4f6}} .num{{text-align:right;font-variant-numeric:tabular-nums}}
.bar{{width:160px;height:10px;background:#e5e7eb;display:inline-block;vertical-align:middle}}
.bar i{{display:block;height:10px;background:#16a34a}} .muted{{color:#6b7280}}
.s-failed{{color:#b91c1c}} .s-succeed{{color:#15803d}} .s-paused{{color:#92400e}}
</style></head><body><main id="main">
<h1>ossimport {}</h1><div class="muted">{} · page refreshes every 5 s · <a href="/metrics">/metrics</a></div>
<h2>Throughput (bytes verified or skipped per second)</h2>"##,
        esc(mode),
        esc(&format!(
            "{} job(s), {} agent(s)",
            snap.jobs.len(),
            snap.agents.len()
        ))
    );
    b.push_str(&chart(&m.throughput(), now));
    b.push_str(
        r#"<h2>Jobs</h2><table id="jobs"><tr><th>Job</th><th>State</th><th>Progress</th><th class="num">Objects</th><th class="num">Bytes</th><th class="num">Failed</th><th class="num">Rate</th><th>ETA</th><th>Limits</th></tr>"#,
    );
    if snap.jobs.is_empty() {
        b.push_str(r#"<tr><td colspan="9" class="muted">no jobs</td></tr>"#);
    }
    for j in &snap.jobs {
        let c = &j.status.counts;
        let done_b = c.verified_bytes + c.skipped_bytes;
        let frac = if c.bytes > 0 {
            done_b as f64 / c.bytes as f64
        } else if c.objects > 0 {
            (c.verified + c.skipped) as f64 / c.objects as f64
        } else {
            0.0
        };
        let rate = m.job_rate(&j.status.name, 60);
        let left = c.bytes.saturating_sub(done_b) as f64;
        let eta = match (j.status.state, rate) {
            (JobState::Running, Some(r)) if r > 0.0 && left > 0.0 => {
                let t = human_secs(left / r);
                if j.status.scan_done {
                    t
                } else {
                    format!("≥ {t} (listing)")
                }
            }
            (JobState::Running, _) if !j.status.scan_done => "listing".into(),
            (JobState::Running, _) => "—".into(),
            (s, _) => s.as_str().into(),
        };
        // A watched tree: how far behind its changes the destination is.
        let watch = j.status.incremental.as_ref().and_then(|i| i.watch.as_ref());
        let eta = match watch {
            Some(w) if j.status.state == JobState::Running => format!(
                "{eta} · watching, lag {}",
                w.lag_ms
                    .map_or("none".into(), |ms| human_secs(ms as f64 / 1000.0))
            ),
            _ => eta,
        };
        let limits = match &j.limits {
            Some((l, n)) => format!(
                "{} · {} objects · {}",
                if l.bytes_per_second > 0 {
                    format!("{}/s", human_bytes(l.bytes_per_second as f64))
                } else {
                    "no bandwidth cap".into()
                },
                n,
                if l.requests_per_second > 0 {
                    format!("{} req/s", l.requests_per_second)
                } else {
                    "no request cap".into()
                }
            ),
            None => "—".into(),
        };
        let _ = write!(
            b,
            r#"<tr class="job"><td>{}</td><td class="s-{}">{}</td><td><span class="bar"><i style="width:{:.1}%"></i></span> {:.1}%</td><td class="num">{} / {}</td><td class="num">{} / {}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&j.status.name),
            j.status.state.as_str(),
            j.status.state.as_str(),
            frac * 100.0,
            frac * 100.0,
            c.verified + c.skipped,
            c.objects,
            human_bytes(done_b as f64),
            human_bytes(c.bytes as f64),
            c.failed,
            rate.map(|r| format!("{}/s", human_bytes(r)))
                .unwrap_or_else(|| "—".into()),
            esc(&eta),
            esc(&limits)
        );
    }
    b.push_str("</table>");
    // Endpoints an executor is waiting for: objects wait, none fail.
    let downs: Vec<String> = snap
        .agents
        .iter()
        .flat_map(|a| {
            a.endpoints
                .iter()
                .filter_map(move |ep| Some(format!("{} (seen by {})", ep.line()?, a.name)))
        })
        .collect();
    if !downs.is_empty() {
        b.push_str(r#"<h2>Waiting for</h2><ul id="outages">"#);
        for d in &downs {
            let _ = write!(b, "<li>{}</li>", esc(d));
        }
        b.push_str("</ul>");
    }
    b.push_str(
        r#"<h2>Agents</h2><table id="agents"><tr><th>Agent</th><th>State</th><th class="num">Tasks</th><th class="num">In flight</th><th class="num">Rate</th><th class="num">Last heartbeat</th><th class="num">Throttled</th></tr>"#,
    );
    if snap.agents.is_empty() {
        b.push_str(r#"<tr><td colspan="7" class="muted">no agents</td></tr>"#);
    }
    for a in &snap.agents {
        let _ = write!(
            b,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{} / {}</td><td class="num">{} ({})</td><td class="num">{}/s</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(&a.name),
            a.state.as_str(),
            a.leased,
            a.capacity,
            a.objects_in_flight,
            human_bytes(a.bytes_in_flight as f64),
            human_bytes(a.bytes_per_sec as f64),
            a.heartbeat_age
                .map(|s| format!("{} ago", human_secs(s)))
                .unwrap_or_else(|| "never".into()),
            a.throttled
        );
    }
    b.push_str("</table>");
    b.push_str(
        r#"<h2>Recent failures</h2><table id="failures"><tr><th>Job</th><th>Object</th><th>Code</th><th>Reason</th></tr>"#,
    );
    let mut any = false;
    for j in &snap.jobs {
        for f in &j.recent_failures {
            any = true;
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&j.status.name),
                esc(&f.rel_path),
                esc(&f.code),
                esc(&f.message)
            );
        }
    }
    if !any {
        b.push_str(r#"<tr><td colspan="4" class="muted">none</td></tr>"#);
    }
    b.push_str("</table></main>");
    // Fetch the page again and swap its content: no reload flicker, and
    // nothing but this address is ever asked.
    b.push_str(
        r#"<script>
setInterval(async () => {
  try {
    const r = await fetch(location.pathname, {cache: "no-store"});
    if (!r.ok) return;
    const d = new DOMParser().parseFromString(await r.text(), "text/html");
    const m = d.getElementById("main");
    if (m) document.getElementById("main").replaceWith(m);
  } catch (e) {}
}, 5000);
</script></body></html>"#,
    );
    b
}
