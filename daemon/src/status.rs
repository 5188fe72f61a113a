//! The read-only observation port: Prometheus `/metrics` (OpenMetrics text,
//! by `prometheus-client`) and a live status page at `/`, served together
//! on their own address (off unless asked for; loopback by default).
//!
//! Both are drawn from one [`Snapshot`] taken per request: the store's counts
//! (so the values equal `stat --json` and survive a restart), the agent table
//! and the engine's own counters ([`crate::metrics::Metrics`]). The page is
//! server-rendered HTML with an inline SVG chart and a few lines of script
//! that fetch it again every few seconds; nothing is loaded from elsewhere.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use proto::api::{ErrorCode, JobState, JobStatus};
use proto::job::{JobMode, Limits};
use proto::server::{Body, Handler, Req, error};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::agents::{Liveness, liveness};
use crate::engine::{self, Engine};
use crate::state::{blocking, unix_now};
use crate::store::{FailedObject, StoreError};

/// How often the throughput chart gets a point.
pub const SAMPLE: Duration = Duration::from_secs(5);
/// Failures shown per job on the page.
const RECENT_FAILURES: usize = 8;

/// Everything one scrape or one page shows.
#[derive(Debug)]
pub struct Snapshot {
    pub jobs: Vec<JobSnap>,
    pub agents: Vec<AgentSnap>,
}

#[derive(Debug)]
pub struct JobSnap {
    pub status: JobStatus,
    pub mode: Option<JobMode>,
    /// Limits in force (with any `set` applied), when the job is loaded.
    pub limits: Option<(Limits, u32)>,
    /// Failed objects by error code.
    pub failed_by_code: Vec<(String, u64)>,
    pub recent_failures: Vec<FailedObject>,
}

#[derive(Debug)]
pub struct AgentSnap {
    pub name: String,
    pub fingerprint: String,
    pub state: Liveness,
    pub heartbeat_age: Option<f64>,
    pub capacity: u32,
    pub leased: u64,
    pub bytes: u64,
    pub bytes_per_sec: u64,
    pub objects_in_flight: u64,
    pub bytes_in_flight: u64,
    pub throttled: u64,
    /// The endpoints its executors talk to, as its last heartbeat said.
    pub endpoints: Vec<proto::api::EndpointHealth>,
}

/// Takes a snapshot: every job's status and failures from the store, the
/// agent table, the loaded jobs' limits.
pub async fn snapshot(eng: &Arc<Engine>, failures: bool) -> Result<Snapshot, StoreError> {
    let state = &eng.state;
    let names: HashMap<String, String> = state
        .agents()
        .iter()
        .map(|(fp, a)| (fp.clone(), a.name.clone()))
        .collect();
    let loaded: HashMap<i64, (JobMode, Limits, u32)> = eng
        .jobs()
        .iter()
        .map(|(id, rt)| {
            (
                *id,
                (
                    rt.spec.mode,
                    rt.spec.limits.clone(),
                    rt.spec.object_concurrency,
                ),
            )
        })
        .collect();
    let (jobs, leased) = blocking(&state.store, move |s| {
        let mut out = Vec::new();
        for job in s.jobs()? {
            let id = job.id;
            let mut status = engine::status_in(s, job, |fp| names.get(fp).cloned())?;
            // The page has no login: who did what stays on the socket.
            status.control.clear();
            status.owner = None;
            let failed_by_code = s
                .failures_by_code(id)?
                .into_iter()
                .map(|(code, n, _)| (code, n))
                .collect();
            let recent_failures = if failures {
                s.recent_failures(id, RECENT_FAILURES)?
            } else {
                Vec::new()
            };
            let l = loaded.get(&id);
            out.push(JobSnap {
                status,
                mode: l.map(|l| l.0),
                limits: l.map(|l| (l.1.clone(), l.2)),
                failed_by_code,
                recent_failures,
            });
        }
        Ok((out, s.leases_by_agent()?))
    })
    .await?;
    let now = Instant::now();
    let timeout = state.config.agent_timeout;
    let mut agents: Vec<AgentSnap> = state
        .agents()
        .values()
        .map(|a| AgentSnap {
            name: a.name.clone(),
            fingerprint: a.fingerprint.clone(),
            state: liveness(a, now, timeout),
            heartbeat_age: a
                .last_seen
                .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            capacity: a.capacity,
            leased: leased.get(&a.fingerprint).copied().unwrap_or(0),
            bytes: a.bytes,
            bytes_per_sec: a.bytes_per_sec,
            objects_in_flight: a.objects_in_flight,
            bytes_in_flight: a.bytes_in_flight,
            throttled: a.throttled,
            endpoints: a.endpoints.clone(),
        })
        .collect();
    agents.sort_by(|a, b| (&a.name, &a.fingerprint).cmp(&(&b.name, &b.fingerprint)));
    Ok(Snapshot { jobs, agents })
}

// ---- /metrics -----------------------------------------------------------------

/// The OpenMetrics text of a snapshot and the engine's counters.
pub fn render_metrics(eng: &Engine, snap: Snapshot) -> String {
    let m = &eng.metrics;
    let mut reg = Registry::with_prefix("ossimport");
    reg.register(
        "leases_granted",
        "Tasks leased to an executor",
        m.leases_granted.clone(),
    );
    reg.register(
        "leases_expired",
        "Task leases that ran out without a heartbeat",
        m.leases_expired.clone(),
    );
    reg.register(
        "tasks_requeued",
        "Leased tasks taken back before they ended, by reason",
        m.tasks_requeued.clone(),
    );
    reg.register_with_unit(
        "store_commit",
        "Job-store commits of executor events",
        Unit::Seconds,
        m.commit_seconds.clone(),
    );
    reg.register(
        "events_recorded",
        "Executor events committed to the job store",
        m.events_recorded.clone(),
    );
    reg.register(
        "results_rejected",
        "Executor results the daemon refused (REJECTED_RESULT), by executor",
        m.results_rejected.clone(),
    );
    reg.register_collector(Box::new(SnapCollector(snap)));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

#[derive(Debug)]
struct SnapCollector(Snapshot);

type Labels = Vec<(&'static str, String)>;

/// One metric family: its descriptor, then a sample per label set (none
/// at all is valid: a dashboard still finds the family).
fn family(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    kind: MetricType,
    rows: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let help = format!("{help}.");
    let mut m = enc.encode_descriptor(name, &help, unit.as_ref(), kind)?;
    for (labels, v) in rows {
        let e = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => {
                if v.fract() == 0.0 && v >= 0.0 {
                    ConstCounter::new(v as u64).encode(e)?
                } else {
                    ConstCounter::new(v).encode(e)?
                }
            }
            _ => ConstGauge::new(v).encode(e)?,
        }
    }
    Ok(())
}

impl Collector for SnapCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let jobs = &self.0.jobs;
        let job = |j: &JobSnap| -> Labels { vec![("job", j.status.name.clone())] };
        let per_job = |f: &dyn Fn(&JobSnap) -> f64| -> Vec<(Labels, f64)> {
            jobs.iter().map(|j| (job(j), f(j))).collect()
        };
        fn c(j: &JobSnap) -> &proto::api::JobCounts {
            &j.status.counts
        }
        let copied = |j: &JobSnap| j.mode != Some(JobMode::Audit);
        let e = &mut enc;
        family(
            e,
            "objects_found",
            "Objects the listing found",
            None,
            Counter,
            per_job(&|j| c(j).objects as f64),
        )?;
        family(
            e,
            "found",
            "Bytes of the objects the listing found",
            Some(Unit::Bytes),
            Counter,
            per_job(&|j| c(j).bytes as f64),
        )?;
        family(
            e,
            "objects_copied",
            "Objects copied and verified (import jobs)",
            None,
            Counter,
            per_job(&|j| if copied(j) { c(j).verified as f64 } else { 0.0 }),
        )?;
        family(
            e,
            "copied",
            "Bytes copied and verified (import jobs)",
            Some(Unit::Bytes),
            Counter,
            per_job(&|j| {
                if copied(j) {
                    c(j).verified_bytes as f64
                } else {
                    0.0
                }
            }),
        )?;
        family(
            e,
            "objects_verified",
            "Objects verified at the destination",
            None,
            Counter,
            per_job(&|j| c(j).verified as f64),
        )?;
        family(
            e,
            "verified",
            "Bytes verified at the destination",
            Some(Unit::Bytes),
            Counter,
            per_job(&|j| c(j).verified_bytes as f64),
        )?;
        family(
            e,
            "objects_skipped",
            "Objects already at the destination by the skip rule",
            None,
            Counter,
            per_job(&|j| c(j).skipped as f64),
        )?;
        family(
            e,
            "skipped",
            "Bytes of the skipped objects",
            Some(Unit::Bytes),
            Counter,
            per_job(&|j| c(j).skipped_bytes as f64),
        )?;
        family(
            e,
            "retries",
            "Request retries spent on the job's objects",
            None,
            Counter,
            per_job(&|j| c(j).retries as f64),
        )?;
        let failed: Vec<(Labels, f64)> = jobs
            .iter()
            .flat_map(|j| {
                j.failed_by_code.iter().map(move |(code, n)| {
                    (
                        vec![("job", j.status.name.clone()), ("code", code.clone())],
                        *n as f64,
                    )
                })
            })
            .collect();
        family(
            e,
            "objects_failed",
            "Objects failed now, by error code (a retry lowers it)",
            None,
            Gauge,
            failed,
        )?;
        family(
            e,
            "objects_pending",
            "Objects listed and not final yet",
            None,
            Gauge,
            per_job(&|j| c(j).pending as f64),
        )?;
        family(
            e,
            "listing_done",
            "1 once the job's (current pass's) listing has ended",
            None,
            Gauge,
            per_job(&|j| f64::from(u8::from(j.status.scan_done))),
        )?;
        let states: Vec<(Labels, f64)> = jobs
            .iter()
            .flat_map(|j| {
                JobState::ALL.iter().map(move |s| {
                    (
                        vec![
                            ("job", j.status.name.clone()),
                            ("state", s.as_str().to_string()),
                        ],
                        f64::from(u8::from(j.status.state == *s)),
                    )
                })
            })
            .collect();
        family(
            e,
            "job_state",
            "1 for the state the job is in",
            None,
            Gauge,
            states,
        )?;
        let tasks: Vec<(Labels, f64)> = jobs
            .iter()
            .flat_map(|j| {
                let t = c(j);
                [
                    ("pending", t.tasks_pending),
                    ("dispatched", t.tasks_dispatched),
                    ("done", t.tasks_done),
                    ("failed", t.tasks_failed),
                ]
                .into_iter()
                .map(move |(s, n)| {
                    (
                        vec![("job", j.status.name.clone()), ("state", s.to_string())],
                        n as f64,
                    )
                })
            })
            .collect();
        family(e, "tasks", "Tasks by state", None, Gauge, tasks)?;
        let limited = |f: &dyn Fn(&Limits, u32) -> f64| -> Vec<(Labels, f64)> {
            jobs.iter()
                .filter_map(|j| j.limits.as_ref().map(|(l, n)| (job(j), f(l, *n))))
                .collect()
        };
        family(
            e,
            "limit_bandwidth",
            "Bandwidth cap per executor, 0 for none",
            Some(Unit::Other("bytes_per_second".into())),
            Gauge,
            limited(&|l, _| l.bytes_per_second as f64),
        )?;
        family(
            e,
            "limit_requests",
            "Request-rate cap per executor, 0 for none",
            Some(Unit::Other("per_second".into())),
            Gauge,
            limited(&|l, _| f64::from(l.requests_per_second)),
        )?;
        family(
            e,
            "limit_objects_in_flight",
            "Objects in flight per executor (workerTaskThreadNum)",
            None,
            Gauge,
            limited(&|_, n| f64::from(n)),
        )?;

        let agents = &self.0.agents;
        let agent = |a: &AgentSnap| -> Labels {
            vec![
                ("agent", a.name.clone()),
                ("fingerprint", a.fingerprint.clone()),
            ]
        };
        let per_agent = |f: &dyn Fn(&AgentSnap) -> f64| -> Vec<(Labels, f64)> {
            agents.iter().map(|a| (agent(a), f(a))).collect()
        };
        family(
            e,
            "agent_up",
            "1 while the agent's heartbeats arrive",
            None,
            Gauge,
            per_agent(&|a| f64::from(u8::from(a.state == Liveness::Up))),
        )?;
        family(
            e,
            "agent_heartbeat_age",
            "Time since the agent's last heartbeat",
            Some(Unit::Seconds),
            Gauge,
            agents
                .iter()
                .filter_map(|a| a.heartbeat_age.map(|s| (agent(a), s)))
                .collect(),
        )?;
        family(
            e,
            "agent_task_slots",
            "Tasks the agent runs at once",
            None,
            Gauge,
            per_agent(&|a| f64::from(a.capacity)),
        )?;
        family(
            e,
            "agent_leased_tasks",
            "Tasks leased to the agent now",
            None,
            Gauge,
            per_agent(&|a| a.leased as f64),
        )?;
        family(
            e,
            "agent_read",
            "Source bytes the agent read since it started",
            Some(Unit::Bytes),
            Counter,
            per_agent(&|a| a.bytes as f64),
        )?;
        family(
            e,
            "agent_objects_in_flight",
            "Objects the agent is copying now",
            None,
            Gauge,
            per_agent(&|a| a.objects_in_flight as f64),
        )?;
        family(
            e,
            "agent_in_flight",
            "Bytes of the objects the agent is copying now",
            Some(Unit::Bytes),
            Gauge,
            per_agent(&|a| a.bytes_in_flight as f64),
        )?;
        family(
            e,
            "agent_throttled",
            "Throttling answers (HTTP 503, 429) the agent received",
            None,
            Counter,
            per_agent(&|a| a.throttled as f64),
        )?;
        let per_endpoint = |f: &dyn Fn(&proto::api::EndpointHealth) -> f64| -> Vec<(Labels, f64)> {
            agents
                .iter()
                .flat_map(|a| {
                    a.endpoints.iter().map(move |ep| {
                        let mut l = agent(a);
                        l.push(("role", ep.role.clone()));
                        l.push(("endpoint", ep.endpoint.clone()));
                        (l, f(ep))
                    })
                })
                .collect()
        };
        family(
            e,
            "endpoint_up",
            "Whether the endpoint answers, as the agent sees it (0 while a confirmed outage lasts)",
            None,
            Gauge,
            per_endpoint(&|ep| f64::from(u8::from(ep.down.is_none()))),
        )?;
        family(
            e,
            "endpoint_outages",
            "Confirmed outages of the endpoint the agent rode out or is in",
            None,
            Counter,
            per_endpoint(&|ep| ep.outages as f64),
        )?;
        family(
            e,
            "endpoint_outage",
            "Time the endpoint was down, as the agent saw it (ended outages)",
            Some(Unit::Seconds),
            Counter,
            per_endpoint(&|ep| ep.outage_secs),
        )?;
        Ok(())
    }
}

// ---- the page -------------------------------------------------------------

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
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

fn human_bytes(n: f64) -> String {
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

fn human_secs(s: f64) -> String {
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
fn chart(points: &[(i64, f64)], now: i64) -> String {
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

/// The status page.
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

// ---- serving --------------------------------------------------------------

/// Serves `/metrics` and `/` on `listener` until the engine stops, and
/// samples the throughput every [`SAMPLE`]. `mode` names what is observed
/// in the page's title (`ossimportd`, `run JOB`).
pub fn serve(eng: &Arc<Engine>, listener: TcpListener, mode: String) {
    let state = &eng.state;
    match listener.local_addr() {
        Ok(a) if !a.ip().is_loopback() => warn!(addr = %a,
            "Serving /metrics and the status page beyond loopback: plain HTTP with no login; job names and paths are readable by anyone who reaches it."),
        Ok(a) => info!(addr = %a, "Serving /metrics and the status page."),
        Err(_) => {}
    }
    let sampler = Arc::clone(eng);
    let cancel = state.cancel.child_token();
    let c2 = cancel.clone();
    state.tracker.spawn(async move {
        loop {
            take_sample(&sampler);
            tokio::select! {
                _ = tokio::time::sleep(SAMPLE) => {}
                _ = c2.cancelled() => return,
            }
        }
    });
    let limits = proto::server::Limits {
        max_body: 0,
        max_connections: 32,
        max_per_peer: 8,
        request_deadline: Duration::from_secs(30),
        drain: Duration::from_secs(2),
        gate: None,
        tls: None,
    };
    state.tracker.spawn(proto::server::serve_tcp(
        listener,
        handler(Arc::clone(eng), mode),
        limits,
        cancel,
    ));
}

/// Whether a request naming `host` (a `Host` header) is answered: an IP
/// address, `localhost`, or this machine's name (`this`), with any port.
/// Anything else is a name that resolves here by someone else's doing: a
/// web page using DNS rebinding to read the status page from a browser
/// on the network.
fn host_allowed(host: &str, this: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let this = this.to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || (!this.is_empty() && (name == this || this.split('.').next() == Some(name.as_str())))
}

/// This machine's host name.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn take_sample(eng: &Engine) {
    let done: HashMap<String, u64> = eng
        .jobs()
        .values()
        .map(|rt| {
            (
                rt.spec.job_name.clone(),
                engine::Live::get(&rt.live.verified_bytes)
                    + engine::Live::get(&rt.live.skipped_bytes),
            )
        })
        .collect();
    eng.metrics.sample(unix_now(), done);
}

fn handler(eng: Arc<Engine>, mode: String) -> Handler {
    let mode: Arc<str> = mode.into();
    Arc::new(move |req| {
        let eng = Arc::clone(&eng);
        let mode = Arc::clone(&mode);
        Box::pin(async move { handle(eng, &mode, req).await })
    })
}

async fn handle(eng: Arc<Engine>, mode: &str, req: Req) -> Response<Body> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return error(ErrorCode::MethodNotAllowed, "this port is read-only");
    }
    if let Some(host) = req.header("host")
        && !host_allowed(host, &this_host())
    {
        return error(
            ErrorCode::Misdirected,
            "this port answers to an IP address, localhost or this machine's name only",
        );
    }
    let (page, kind) = match req.path.as_str() {
        "/metrics" => (
            false,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/" | "/index.html" => (true, "text/html; charset=utf-8"),
        p => {
            return error(
                ErrorCode::NotFound,
                &format!("{p}: this port serves /metrics and / only"),
            );
        }
    };
    let snap = match snapshot(&eng, page).await {
        Ok(s) => s,
        Err(e) => {
            return error(ErrorCode::Store, &format!("reading the job store: {e}"));
        }
    };
    let body = if page {
        render_page(&eng, &snap, mode)
    } else {
        render_metrics(&eng, snap)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", kind)
        .header("cache-control", "no-store")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status page answers to addresses, localhost and this machine's
    /// name; a name pointed here by DNS rebinding gets 421.
    #[test]
    fn only_addresses_localhost_and_this_machine_are_answered() {
        for ok in [
            "127.0.0.1:9750",
            "10.1.2.3",
            "[::1]:9750",
            "localhost:9750",
            "LOCALHOST",
            "master01:9750",
            "master01.example.com",
        ] {
            assert!(host_allowed(ok, "master01.example.com"), "{ok}");
        }
        for bad in [
            "evil.example:9750",
            "rebind.attacker.net",
            "[evil]:1",
            "master02",
            "",
        ] {
            assert!(!host_allowed(bad, "master01.example.com"), "{bad}");
        }
    }

    #[test]
    fn names_are_escaped_and_the_chart_draws_only_with_points() {
        assert_eq!(
            esc("<img src=x onerror=\"a\">&'"),
            "&lt;img src=x onerror=&quot;a&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("a\u{7}b"), "a\u{fffd}b");
        assert!(!chart(&[(10, 5.0)], 20).contains("<polyline"));
        let c = chart(&[(10, 5.0), (15, 7.0)], 20);
        assert!(c.contains("<polyline") && c.contains(CHART_COLOUR), "{c}");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_secs(3725.0), "1 h 2 min");
    }
}
