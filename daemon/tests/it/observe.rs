//! The observation port of a real daemon during a real cluster job:
//! `/metrics` scraped over and over (each scrape parsed by the official
//! Prometheus client's strict OpenMetrics parser), and the status page
//! loaded in headless Chromium (screenshot, DOM and network log).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use testkit::net::http_get;

/// Parses OpenMetrics texts with `prometheus_client.openmetrics.parser`
/// (strict: a malformed exposition raises) and prints, per text, every
/// sample as `name{k="v",...}` -> value, with each family's type.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for path in sys.argv[1:]:
    samples = {}
    for fam in text_string_to_metric_families(open(path).read()):
        for s in fam.samples:
            key = s.name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}"
            samples[key] = [fam.type, s.value]
    out.append(samples)
print(json.dumps(out))
"#;

type Scrape = BTreeMap<String, (String, f64)>;

fn parse_all(dir: &Path, texts: &[String]) -> Vec<Scrape> {
    let mut files = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let p = dir.join(format!("scrape-{i}.txt"));
        std::fs::write(&p, t).unwrap();
        files.push(p);
    }
    let out = Command::new(repo_root().join(".venv/bin/python"))
        .arg("-c")
        .arg(PARSE)
        .args(&files)
        .output()
        .expect("run the OpenMetrics parser (scripts/setup-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "parser refused a scrape: {}",
        stderr(&out)
    );
    let raw: Vec<BTreeMap<String, (String, f64)>> = serde_json::from_slice(&out.stdout).unwrap();
    raw
}

fn value(s: &Scrape, key: &str) -> f64 {
    s.get(key)
        .unwrap_or_else(|| {
            panic!(
                "{key} missing from the scrape: {:?}",
                s.keys().collect::<Vec<_>>()
            )
        })
        .1
}

/// The observed job: 400 files of 16 KiB (and one deleted once listed),
/// capped at 600 KiB/s (about 11 s).
fn start() -> OneAgentJob {
    let s = OneAgentJob::start(
        400,
        16 << 10,
        b"workerMaxThroughput(KB/s)=600\nworkerTaskThreadNum=8\n",
        "observed-job",
    );
    std::fs::write(s.src.join("zz-deleted-after-listing"), b"gone soon").unwrap();
    s.submit();
    s
}

#[test]
fn metrics_scraped_during_a_cluster_job_are_valid_monotonic_and_end_equal_to_stat() {
    let s = start();
    let job = s.job;
    let mut texts = Vec::new();
    let mut deleted = false;
    let mut mid_job = false;
    wait_for("the job to finish while scraping", 120, || {
        let (code, body) = http_get(&s.metrics, "/metrics").unwrap();
        assert_eq!(code, 200, "{body}");
        texts.push(body);
        let st = s.daemon.job(job);
        if st.scan_done && !deleted {
            std::fs::remove_file(s.src.join("zz-deleted-after-listing")).unwrap();
            deleted = true;
        }
        let c = &st.counts;
        mid_job |= st.scan_done && c.verified > 0 && c.verified + c.failed < c.objects;
        std::thread::sleep(Duration::from_millis(400));
        st.state.is_finished()
    });
    let st = s.daemon.job(job);
    let (_, last) = http_get(&s.metrics, "/metrics").unwrap();
    texts.push(last);
    assert!(mid_job, "no scrape fell in the middle of the job");
    assert!(texts.len() >= 5, "only {} scrapes", texts.len());
    let scrapes = parse_all(s.tmp.path(), &texts);

    // Counters (and histograms' buckets, counts and sums) never go down
    // from one scrape to the next.
    for pair in scrapes.windows(2) {
        for (key, (kind, v)) in &pair[1] {
            if (kind == "counter" || kind == "histogram")
                && let Some((_, before)) = pair[0].get(key)
            {
                assert!(v >= before, "{key} went down: {before} -> {v}");
            }
        }
    }
    // Some scrape saw the job half done.
    let label = format!("{{job=\"{job}\"}}");
    let verified_key = format!("ossimport_objects_verified_total{label}");
    assert!(
        scrapes.iter().any(|x| {
            let v = x.get(&verified_key).map(|v| v.1).unwrap_or(0.0);
            v > 0.0 && v < st.counts.objects as f64 - 1.0
        }),
        "no scrape shows the job in progress"
    );

    // The last scrape equals `stat --json`.
    let f = scrapes.last().unwrap();
    let c = &st.counts;
    assert_eq!(
        value(f, &format!("ossimport_objects_found_total{label}")),
        c.objects as f64
    );
    assert_eq!(
        value(f, &format!("ossimport_found_bytes_total{label}")),
        c.bytes as f64
    );
    assert_eq!(value(f, &verified_key), c.verified as f64);
    assert_eq!(
        value(f, &format!("ossimport_verified_bytes_total{label}")),
        c.verified_bytes as f64
    );
    assert_eq!(
        value(f, &format!("ossimport_objects_copied_total{label}")),
        c.verified as f64
    );
    assert_eq!(
        value(f, &format!("ossimport_objects_skipped_total{label}")),
        c.skipped as f64
    );
    assert_eq!(value(f, &format!("ossimport_objects_pending{label}")), 0.0);
    assert_eq!(
        value(f, &format!("ossimport_retries_total{label}")),
        c.retries as f64
    );
    assert_eq!(c.objects, 401);
    assert_eq!(c.verified + c.failed, 401, "{c:?}");
    let failed_metric: f64 = f
        .iter()
        .filter(|(k, _)| {
            k.starts_with("ossimport_objects_failed{") && k.contains(&format!("job=\"{job}\""))
        })
        .map(|(_, v)| v.1)
        .sum();
    assert_eq!(failed_metric, c.failed as f64);
    if c.failed == 1 {
        // The file deleted after listing (unless it was copied before).
        value(
            f,
            &format!("ossimport_objects_failed{{code=\"SOURCE_DELETED\",job=\"{job}\"}}"),
        );
    }
    let state = if c.failed == 0 { "succeed" } else { "failed" };
    assert_eq!(
        value(
            f,
            &format!("ossimport_job_state{{job=\"{job}\",state=\"{state}\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            f,
            &format!("ossimport_tasks{{job=\"{job}\",state=\"done\"}}")
        ),
        c.tasks_done as f64
    );
    assert!(value(f, &format!("ossimport_leases_granted_total{label}")) >= c.tasks as f64);
    assert_eq!(
        value(
            f,
            &format!("ossimport_limit_bandwidth_bytes_per_second{label}")
        ),
        600.0 * 1024.0
    );
    // The agent: up, its bytes read, nothing in flight at the end.
    let agent = f
        .keys()
        .find(|k| k.starts_with("ossimport_agent_up{agent=\"a1\""))
        .expect("agent a1 in the scrape")
        .trim_start_matches("ossimport_agent_up")
        .to_string();
    assert_eq!(value(f, &format!("ossimport_agent_up{agent}")), 1.0);
    assert!(
        value(f, &format!("ossimport_agent_read_bytes_total{agent}")) >= c.verified_bytes as f64
    );
    assert_eq!(
        value(f, &format!("ossimport_agent_objects_in_flight{agent}")),
        0.0
    );
    assert!(value(f, &format!("ossimport_agent_heartbeat_age_seconds{agent}")) < 5.0);
    assert!(
        scrapes.iter().any(|x| x
            .get(&format!("ossimport_agent_objects_in_flight{agent}"))
            .is_some_and(|v| v.1 > 0.0)),
        "no scrape saw objects in flight"
    );
    assert!(value(f, "ossimport_store_commit_seconds_count{}") > 0.0);
    assert!(value(f, "ossimport_events_recorded_total{}") >= 401.0);

    // Every metric the Grafana dashboard in packaging/ plots is one the
    // daemon exposes.
    let last_text = texts.last().unwrap();
    let families: Vec<&str> = last_text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let dash =
        std::fs::read_to_string(repo_root().join("packaging/grafana/ossimport.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&dash).expect("the dashboard is JSON");
    let mut used: Vec<&str> = dash
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("ossimport_"))
        .collect();
    used.sort_unstable();
    used.dedup();
    assert!(used.len() >= 10, "{used:?}");
    for m in used {
        let base = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| m.strip_suffix(s))
            .unwrap_or(m);
        assert!(
            families.contains(&base),
            "the dashboard plots {m}, which /metrics lacks"
        );
    }

    // Read-only: nothing but GET.
    let (code, _) = http_get(&s.metrics, "/v1/jobs").unwrap();
    assert_eq!(code, 404);
}

/// Finds Chromium (Debian's package is `chromium`).
fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.to_string();
        }
    }
    panic!("no chromium on PATH: scripts/setup-test-deps.sh installs Debian's chromium package");
}

/// Headless Chromium with the browser's own background services off and
/// every host name but 127.0.0.1 unresolvable, logging the network.
fn headless(dir: &Path, net_log: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1200,1000",
        // Lets the page's refresh script run once (every 5 s) before the
        // capture.
        "--virtual-time-budget=6500",
    ])
    .arg(format!("--user-data-dir={}", dir.join("profile").display()))
    .arg(format!("--log-net-log={}", net_log.display()));
    c
}

/// The URLs of every request the page caused (its network isolation key
/// names the page's site), from a Chromium net log.
fn page_requests(net_log: &Path) -> Vec<(String, String)> {
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(net_log).unwrap()).unwrap();
    let start = d["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .unwrap();
    d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start))
        .filter_map(|e| {
            let p = &e["params"];
            Some((
                p["url"].as_str()?.to_string(),
                p["network_isolation_key"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            ))
        })
        .collect()
}

/// Where the browser opened TCP connections to, or sent UDP datagrams to.
/// A UDP socket that is only connected (Chromium's probe for its own
/// address, which sends nothing) does not count.
fn remote_addresses(net_log: &Path) -> Vec<String> {
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(net_log).unwrap()).unwrap();
    let ty = |n: &str| d["constants"]["logEventTypes"][n].as_u64();
    let (tcp, udp, sent) = (
        ty("TCP_CONNECT_ATTEMPT"),
        ty("UDP_CONNECT"),
        ty("UDP_BYTES_SENT"),
    );
    let mut udp_addr = BTreeMap::new();
    let mut out = Vec::new();
    for e in d["events"].as_array().unwrap() {
        let (t, src) = (e["type"].as_u64(), e["source"]["id"].as_u64());
        let addr = e["params"]["address"].as_str().map(str::to_string);
        if t == tcp
            && let Some(a) = addr
        {
            out.push(a);
        } else if t == udp
            && let Some(a) = addr
        {
            udp_addr.insert(src, a);
        } else if t == sent
            && let Some(a) = udp_addr.get(&src)
        {
            out.push(a.clone());
        }
    }
    assert!(
        tcp.is_some() && udp.is_some() && sent.is_some(),
        "net log event names changed"
    );
    out
}

#[test]
fn the_status_page_in_headless_chromium_shows_the_job_and_a_chart_and_asks_nothing_elsewhere() {
    let s = start();
    let base = format!("http://{}/", s.metrics);
    // Two throughput points need three samples, five seconds apart.
    wait_for("two points on the chart", 60, || {
        let (_, page) = http_get(&s.metrics, "/").unwrap();
        page.contains("data-points=\"")
            && !page.contains("data-points=\"0\"")
            && !page.contains("data-points=\"1\"")
    });
    assert!(
        !s.daemon.job(s.job).state.is_finished(),
        "the job ended before the page was loaded"
    );
    let dir = s.tmp.path().join("chromium");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("status.png");
    let log1 = dir.join("net-shot.json");
    let out = headless(&dir, &log1)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&base)
        .output()
        .unwrap();
    assert!(
        out.status.success() && shot.exists(),
        "chromium: {}",
        stderr(&out)
    );
    let log2 = dir.join("net-dom.json");
    let out = headless(&dir, &log2)
        .arg("--dump-dom")
        .arg(&base)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium: {}", stderr(&out));
    let dom = stdout(&out);
    if let Ok(keep) = std::env::var("OSSIMPORT_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // The rendered page names the job and its agent, with a drawn chart.
    assert!(dom.contains(&format!("<td>{}</td>", s.job)), "{dom}");
    assert!(dom.contains("<td>a1</td>"), "{dom}");
    assert!(dom.contains("<polyline"), "no chart line in the DOM: {dom}");

    // The screenshot holds the chart's line: pixels of its exact colour
    // (drawn with crisp edges, so not blended away).
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let want = daemon::status::CHART_COLOUR.trim_start_matches('#');
    let want: Vec<u8> = (0..3)
        .map(|i| u8::from_str_radix(&want[i * 2..i * 2 + 2], 16).unwrap())
        .collect();
    let line = buf[..info.buffer_size()]
        .chunks(px)
        .filter(|p| p[..3] == want[..])
        .count();
    assert!(
        line >= 30,
        "only {line} pixels of the chart's colour in the screenshot"
    );

    // Every request the page caused went to the daemon's port: the page,
    // and its refresh fetch (so the script ran). Nothing from a CDN.
    for log in [&log1, &log2] {
        let ours: Vec<_> = page_requests(log)
            .into_iter()
            .filter(|(_, nik)| nik.starts_with("http://127.0.0.1"))
            .collect();
        assert!(ours.len() >= 2, "the page and its refresh: {ours:?}");
        for (url, _) in &ours {
            assert!(url.starts_with(&base), "the page asked for {url}");
        }
        // Nor did anything else in the browser send a byte beyond loopback
        // (every other name was unresolvable).
        for addr in remote_addresses(log) {
            assert!(addr.starts_with("127.0.0.1:"), "a connection to {addr}");
        }
    }
}
