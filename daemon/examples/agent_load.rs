//! Benchmark helper (bench/daemon_capacity.sh): plays N agents against a
//! running ossimportd to measure how many object results one daemon
//! records per second, and how soon it sends a freed slot its next batch.
//!
//!   agent_load --daemon HOST:PORT --daemon-key daemon_ed25519.pub \
//!              --agent-keys WORK/agent_keys --agents 20 --tasks 2 \
//!              --expect OBJECTS [--rate OBJECTS_PER_S_PER_AGENT] [--daemon-pid PID]
//!
//! Every request is the real thing: each agent has its own ed25519 key
//! (appended to the daemon's enrolment file, which the daemon re-reads on
//! an unknown key), listens on loopback for the daemon's signed task
//! batches, verifies them, heartbeats, and reports in signed event batches
//! gathered as `ossimport-agent` gathers them (up to 1,000 events or
//! 20 ms). Nothing is copied: each object is reported verified at once
//! with the evidence a real executor sends (`size+md5+crc64`, the listed
//! size and source identity; made-up checksums the daemon cannot tell from
//! real ones), or paced to `--rate`. The job's store is therefore a
//! benchmark artefact, not a migration. `--lie` reports results the
//! daemon's own check refuses (the trust tests use it).
//!
//! Prints one JSON line when `--expect` results were acknowledged: results
//! per second (first batch to last acknowledgement), dispatch latency (a
//! report carrying `TaskDone` sent, to the next batch arriving at that
//! agent: the commit, the scheduler's pass and the push), event-report
//! latency, and the daemon's RSS sampled every 0.5 s.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hyper::{Method, StatusCode};
use proto::api::{BatchAccepted, EventBatch, Heartbeat, TaskBatch, agent_path};
use proto::auth::Signer;
use proto::client;
use proto::job::{Event, ObjectResult, Outcome, TaskSpec};
use proto::server::{self, Limits, Req, error, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// The daemon's agent API, `host:port`.
    #[arg(long)]
    daemon: String,
    /// The daemon's public key (`daemon_ed25519.pub`).
    #[arg(long)]
    daemon_key: PathBuf,
    /// The daemon's enrolment file; one line per played agent is appended.
    #[arg(long)]
    agent_keys: PathBuf,
    /// Played agents, at most 250 (each on its own 127.0.1.X).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(1..=250))]
    agents: u8,
    /// Tasks each agent runs at once (its heartbeat's capacity).
    #[arg(long, default_value_t = 2)]
    tasks: u32,
    /// Object results to wait for.
    #[arg(long)]
    expect: u64,
    /// Objects per second per agent; 0: as fast as the daemon takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Sample this process's RSS (the daemon).
    #[arg(long)]
    daemon_pid: Option<u32>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// Report results that should not count, to see the daemon refuse them:
    /// `size` (one byte more than listed), `ident` (another source file),
    /// `evidence` (`size` only where checksums are asked for).
    #[arg(long, value_enum)]
    lie: Option<Lie>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Lie {
    Size,
    Ident,
    Evidence,
}

/// What every played agent adds to.
#[derive(Default)]
struct Totals {
    acked: AtomicU64,
    reports: AtomicU64,
    batches: AtomicU64,
    /// Dispatch latencies and report latencies, microseconds.
    dispatch_us: Mutex<Vec<u64>>,
    report_us: Mutex<Vec<u64>>,
    first_batch: Mutex<Option<Instant>>,
    last_ack: Mutex<Option<Instant>>,
}

struct Played {
    name: String,
    addr: String,
    signer: Signer,
    daemon_fp: String,
    /// Kept mutual-TLS connections to the daemon, as a real agent has,
    /// from a loopback address of its own as a real agent's host address is
    /// (the daemon bounds connections per peer address).
    daemon: client::Channel,
    capacity: u32,
    rate: u64,
    lie: Option<Lie>,
    /// Tasks held: executing, or with events not yet acknowledged.
    running: Mutex<HashMap<i64, bool>>,
    /// When a report with a `TaskDone` was last sent and no batch has come
    /// since.
    freed_at: Mutex<Option<Instant>>,
    events: mpsc::Sender<Event>,
    totals: Arc<Totals>,
}

impl Played {
    async fn call<T: serde::Serialize>(&self, path: &str, body: &T) -> anyhow::Result<()> {
        let body = serde_json::to_vec(body)?;
        let (status, answer) = self
            .daemon
            .send(Method::POST, path, body, Duration::from_secs(60))
            .await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "{path}: daemon answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
        Ok(())
    }

    fn heartbeat(&self) -> Heartbeat {
        let mut running: Vec<i64> = self.running.lock().unwrap().keys().copied().collect();
        running.sort_unstable();
        Heartbeat {
            name: self.name.clone(),
            addr: self.addr.clone(),
            capacity: self.capacity,
            running,
            fingerprint: self.signer.fingerprint().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Heartbeat::default()
        }
    }

    /// Reports every object of the task verified (paced to `rate`), then
    /// the task done.
    async fn run_task(self: Arc<Self>, task: TaskSpec) {
        let start = Instant::now();
        for (i, o) in task.objects.iter().enumerate() {
            if self.rate > 0 {
                let due = start + Duration::from_secs_f64(i as f64 / self.rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            // The evidence a real executor sends (nothing was copied: the
            // daemon cannot tell, which is what an audit is for), or a lie.
            let r = ObjectResult {
                object_id: o.object_id,
                task_id: task.task_id,
                outcome: Outcome::Verified,
                size: o.size + u64::from(self.lie == Some(Lie::Size)),
                crc64: Some(o.object_id as u64 ^ 0x9e37_79b9_7f4a_7c15),
                md5: Some(format!("{:032x}", o.object_id)),
                etag: Some(format!("{:032x}", o.object_id)),
                verified_by: if self.lie == Some(Lie::Evidence) {
                    "size".into()
                } else {
                    "size+md5+crc64".into()
                },
                error: None,
                retries: 0,
                parts_resumed: 0,
                source_ident: if self.lie == Some(Lie::Ident) {
                    o.ident.map(|t| t ^ 1)
                } else {
                    o.ident
                },
                metadata: None,
            };
            if self.events.send(Event::ObjectDone(r)).await.is_err() {
                return;
            }
        }
        if let Some(e) = self.running.lock().unwrap().get_mut(&task.task_id) {
            *e = false;
        }
        let _ = self
            .events
            .send(Event::TaskDone {
                task_id: task.task_id,
            })
            .await;
    }

    async fn take_batch(self: Arc<Self>, req: Req) -> hyper::Response<server::Body> {
        if !matches!(&req.peer, server::Peer::Tls { key, .. } if *key == self.daemon_fp) {
            return error(proto::api::ErrorCode::Unauthorized, "not the daemon's key");
        }
        let batch: TaskBatch = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => {
                return error(proto::api::ErrorCode::Invalid, &e.to_string());
            }
        };
        let now = Instant::now();
        self.totals.batches.fetch_add(1, Ordering::Relaxed);
        self.totals.first_batch.lock().unwrap().get_or_insert(now);
        if let Some(freed) = self.freed_at.lock().unwrap().take() {
            let us = now.duration_since(freed).as_micros() as u64;
            self.totals.dispatch_us.lock().unwrap().push(us);
        }
        let mut accepted = Vec::new();
        let mut start = Vec::new();
        {
            let mut running = self.running.lock().unwrap();
            for t in batch.tasks {
                if running.contains_key(&t.task_id) {
                    accepted.push(t.task_id);
                    continue;
                }
                if running.values().filter(|e| **e).count() >= self.capacity as usize {
                    continue;
                }
                running.insert(t.task_id, true);
                accepted.push(t.task_id);
                start.push(t);
            }
        }
        for t in start {
            tokio::spawn(Arc::clone(&self).run_task(t));
        }
        json(StatusCode::OK, &BatchAccepted { accepted })
    }

    /// Sends events in gathered batches, as `ossimport-agent` does.
    async fn report(self: Arc<Self>, mut rx: mpsc::Receiver<Event>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
            while batch.len() < 1000 {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(e)) => batch.push(e),
                    _ => break,
                }
            }
            let done: Vec<i64> = batch
                .iter()
                .filter_map(|e| match e {
                    Event::TaskDone { task_id } => Some(*task_id),
                    _ => None,
                })
                .collect();
            let objects = batch
                .iter()
                .filter(|e| matches!(e, Event::ObjectDone(_)))
                .count() as u64;
            let body = EventBatch { events: batch };
            let sent = Instant::now();
            if !done.is_empty() {
                // A slot is free from here: the daemon may push the next
                // batch before its answer to this report arrives.
                *self.freed_at.lock().unwrap() = Some(sent);
            }
            loop {
                match self.call(agent_path::EVENTS, &body).await {
                    Ok(()) => break,
                    Err(e) => {
                        eprintln!("{}: report failed, retrying: {e:#}", self.name);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            let now = Instant::now();
            self.totals
                .report_us
                .lock()
                .unwrap()
                .push(now.duration_since(sent).as_micros() as u64);
            self.totals.reports.fetch_add(1, Ordering::Relaxed);
            self.totals.acked.fetch_add(objects, Ordering::Relaxed);
            *self.totals.last_ack.lock().unwrap() = Some(now);
            let mut running = self.running.lock().unwrap();
            for id in &done {
                running.remove(id);
            }
        }
    }
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User + system CPU seconds of a process, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn percentile(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let daemon_key_text = std::fs::read_to_string(&args.daemon_key)
        .with_context(|| format!("reading {}", args.daemon_key.display()))?;
    let daemon_key = proto::auth::parse_public_keys(&daemon_key_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.daemon_key.display()))?
        .into_iter()
        .next()
        .context("no key in the daemon key file")?;
    let daemon_fp = proto::auth::fingerprint(&daemon_key);
    let totals = Arc::new(Totals::default());
    let stop = CancellationToken::new();
    let mut enrol = std::fs::OpenOptions::new()
        .append(true)
        .open(&args.agent_keys)
        .with_context(|| format!("opening {}", args.agent_keys.display()))?;
    let mut played = Vec::new();
    for i in 0..args.agents {
        let signer = Signer::random();
        let name = format!("load{i:02}");
        writeln!(enrol, "{} {name}", signer.public_key_openssh())?;
        let source = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, i + 1));
        let listener = tokio::net::TcpListener::bind((source, 0)).await?;
        let addr = listener.local_addr()?.to_string();
        let tls = proto::tls::client_config(&signer, &daemon_key)?;
        let serve_tls = {
            let fp = daemon_fp.clone();
            proto::tls::server_config(&signer, Arc::new(move |k: &str| k == fp))?
        };
        let (tx, rx) = mpsc::channel(8192);
        let a = Arc::new(Played {
            name,
            addr,
            signer,
            daemon_fp: daemon_fp.clone(),
            daemon: client::Channel::tls(args.daemon.clone(), Some(source), tls),
            capacity: args.tasks,
            rate: args.rate,
            lie: args.lie,
            running: Mutex::new(HashMap::new()),
            freed_at: Mutex::new(None),
            events: tx,
            totals: Arc::clone(&totals),
        });
        let handler: server::Handler = {
            let a = Arc::clone(&a);
            Arc::new(move |req| {
                let a = Arc::clone(&a);
                Box::pin(async move {
                    let path = req.path.clone();
                    if path != agent_path::TASKS {
                        return error(proto::api::ErrorCode::NotFound, "no such endpoint");
                    }
                    a.take_batch(req).await
                })
            })
        };
        tokio::spawn(server::serve_tcp(
            listener,
            handler,
            Limits {
                max_body: 64 << 20,
                max_connections: 64,
                max_per_peer: 16,
                request_deadline: Duration::from_secs(60),
                drain: Duration::from_secs(1),
                gate: None,
                tls: Some(serve_tls),
            },
            stop.clone(),
        ));
        tokio::spawn(Arc::clone(&a).report(rx));
        played.push(a);
    }
    drop(enrol);
    for a in &played {
        let a = Arc::clone(a);
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = a.call(agent_path::HEARTBEAT, &a.heartbeat()).await {
                    eprintln!("{}: heartbeat failed: {e:#}", a.name);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    let began = Instant::now();
    let daemon_pid = args.daemon_pid.map(|p| p.to_string());
    let cpu_at_start = (
        daemon_pid.as_deref().map(cpu_seconds).unwrap_or(0.0),
        cpu_seconds("self"),
    );
    let mut rss = Vec::new();
    let mut last_print = Instant::now();
    while totals.acked.load(Ordering::Relaxed) < args.expect {
        anyhow::ensure!(
            began.elapsed() < Duration::from_secs(args.timeout),
            "timed out with {} of {} results acknowledged",
            totals.acked.load(Ordering::Relaxed),
            args.expect
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(pid) = args.daemon_pid
            && let Some(kib) = rss_kib(pid, "VmRSS:")
        {
            rss.push(kib);
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "agent_load: {} of {} results acknowledged",
                totals.acked.load(Ordering::Relaxed),
                args.expect
            );
            last_print = Instant::now();
        }
    }
    let cpu = (
        daemon_pid.as_deref().map(cpu_seconds).unwrap_or(0.0) - cpu_at_start.0,
        cpu_seconds("self") - cpu_at_start.1,
    );
    stop.cancel();
    for a in &played {
        let _ = a.call(agent_path::BYE, &serde_json::json!({})).await;
    }
    let first = totals.first_batch.lock().unwrap().unwrap_or(began);
    let last = totals.last_ack.lock().unwrap().unwrap_or_else(Instant::now);
    let secs = last.duration_since(first).as_secs_f64();
    let acked = totals.acked.load(Ordering::Relaxed);
    let mut dispatch = std::mem::take(&mut *totals.dispatch_us.lock().unwrap());
    let mut report = std::mem::take(&mut *totals.report_us.lock().unwrap());
    // RSS over the run, in quarters: flat means the last is not above the
    // second.
    let quarter = |q: usize| {
        rss.get((rss.len().saturating_sub(1)) * q / 4)
            .copied()
            .unwrap_or(0)
    };
    let out = serde_json::json!({
        "agents": args.agents,
        "tasks_per_agent": args.tasks,
        "rate_per_agent": args.rate,
        "results": acked,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "results_per_s": (acked as f64 / secs).round(),
        "daemon_cpu_s": (cpu.0 * 100.0).round() / 100.0,
        "load_cpu_s": (cpu.1 * 100.0).round() / 100.0,
        "batches": totals.batches.load(Ordering::Relaxed),
        "reports": totals.reports.load(Ordering::Relaxed),
        "dispatch_ms": {
            "p50": percentile(&mut dispatch, 0.5),
            "p99": percentile(&mut dispatch, 0.99),
            "max": percentile(&mut dispatch, 1.0),
            "samples": dispatch.len(),
        },
        "report_ms": {
            "p50": percentile(&mut report, 0.5),
            "p99": percentile(&mut report, 0.99),
        },
        "daemon_rss_kib": {
            "q1": quarter(1), "q2": quarter(2), "q3": quarter(3), "end": quarter(4),
            "max": rss.iter().copied().max().unwrap_or(0),
            "peak_hwm": args.daemon_pid.and_then(|p| rss_kib(p, "VmHWM:")).unwrap_or(0),
        },
    });
    println!("{out}");
    Ok(())
}
