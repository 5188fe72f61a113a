//! `/metrics`: a snapshot as OpenMetrics text, by `prometheus-client`.

use super::*;

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
    /// Every metric family, in the order `/metrics` shows them. Long because
    /// each family is the same few lines (name, help, type, one sample per
    /// job or agent) and they read best as one list.
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
        // Watched jobs (`incrementalMode=watch`) only.
        let watched = |f: &dyn Fn(&proto::api::WatchStatus) -> f64| -> Vec<(Labels, f64)> {
            jobs.iter()
                .filter_map(|j| {
                    let w = j.status.incremental.as_ref()?.watch.as_ref()?;
                    Some((job(j), f(w)))
                })
                .collect()
        };
        family(
            e,
            "watch_pending",
            "Changed paths of a watched tree not yet listed",
            None,
            Gauge,
            watched(&|w| w.pending as f64),
        )?;
        family(
            e,
            "watch_lag",
            "Age of the oldest change of a watched tree not yet copied (0: none)",
            Some(Unit::Seconds),
            Gauge,
            watched(&|w| w.lag_ms.unwrap_or(0) as f64 / 1000.0),
        )?;
        family(
            e,
            "watch_events_queued",
            "Changed paths of a watched tree queued since the watch started",
            None,
            Counter,
            watched(&|w| w.queued as f64),
        )?;
        family(
            e,
            "watch_events_applied",
            "Changed paths of a watched tree handed to passes since the watch started",
            None,
            Counter,
            watched(&|w| w.applied as f64),
        )?;
        family(
            e,
            "watch_last_reconcile_timestamp",
            "When the last whole listing of a watched tree started (0: none yet)",
            Some(Unit::Seconds),
            Gauge,
            watched(&|w| w.last_reconcile.unwrap_or(0) as f64),
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
        family(
            e,
            "endpoint_request_rate_limit",
            "Requests per second the agent holds the endpoint to because it said it was overloaded (0: not held)",
            None,
            Gauge,
            per_endpoint(&|ep| ep.rate_limit),
        )?;
        family(
            e,
            "endpoint_throttled",
            "Signs of overload the endpoint gave the agent (HTTP 503, 429, x-oss-qos-delay-time)",
            None,
            Counter,
            per_endpoint(&|ep| ep.throttled as f64),
        )?;
        Ok(())
    }
}
