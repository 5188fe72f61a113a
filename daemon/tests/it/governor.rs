//! A store that refuses requests above its limit (the OSS front refusing
//! above N requests a second with 503 SlowDown, as a bucket's QPS limit
//! does): the agent's governor finds the limit and holds the job near it,
//! with few requests refused, instead of every object backing off alone;
//! `stat` and `/metrics` show the rate it settled at, and every object is
//! verified.

use testkit::net::http_get;

use crate::support::*;

/// The front's limit, requests per second.
const N: f64 = 50.0;

#[test]
fn a_job_against_a_store_refusing_above_n_requests_a_second_settles_near_n() {
    let rt = rt();
    let s3 = S3Server::start();
    rt.block_on(s3.create_bucket("bkt"));
    let front = OssFront::start_with(&s3.endpoint, &["--max-rps", &N.to_string()]);
    // About 30 s of work at N: one PUT per object. The daemon, its agent
    // and the tree as other tests have them; the job into the front.
    const FILES: usize = 1_400;
    let mut s = OneAgentJob::start(FILES, 1024, b"workerTaskThreadNum=16\n", "governed");
    s.cfg = job_cfg(
        s.tmp.path(),
        "governed",
        &s.src,
        &front.endpoint,
        "bkt",
        700,
    );
    s.submit();
    let (d, metrics) = (&s.daemon, &s.metrics);

    // While it runs: the rate /metrics shows for the destination, every
    // second, and what stat says.
    let mut shown: Vec<f64> = Vec::new();
    let mut stat_line = None;
    let start = std::time::Instant::now();
    loop {
        let st = d.job("governed");
        if st.state.is_finished() {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 180,
            "the job did not end: {st:?}"
        );
        if let Some(l) = st.throttled.first() {
            stat_line = Some(l.clone());
        }
        let (_, text) = http_get(metrics, "/metrics").unwrap();
        if let Some(v) = text
            .lines()
            .find(|l| {
                l.starts_with("ossimport_endpoint_request_rate_limit{")
                    && l.contains("role=\"destination\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        {
            shown.push(v);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let st = d.job("governed");
    assert_eq!(st.counts.verified, FILES as u64, "{st:?}");
    assert_eq!(st.counts.failed, 0, "{st:?}");

    // What the store saw, second by second.
    let (code, body) = http_get(
        front.endpoint.trim_start_matches("http://"),
        "/__front/stats",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let per_sec = |k: &str| -> Vec<f64> {
        stats[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (accepted, refused) = (per_sec("accepted"), per_sec("refused"));
    let busy: Vec<usize> = (0..accepted.len())
        .filter(|&i| accepted[i] + refused[i] > 0.0)
        .collect();
    let (first, last) = (busy[0], *busy.last().unwrap());
    eprintln!("accepted per second: {:?}", &accepted[first..=last]);
    eprintln!("refused per second: {:?}", &refused[first..=last]);
    let all: f64 = accepted.iter().sum::<f64>() + refused.iter().sum::<f64>();
    let refused_share = refused.iter().sum::<f64>() / all;
    // Settled: from 8 s after the first request to the second before the
    // last (the job's tail has fewer objects than slots).
    let settled = &accepted[first + 8..last.saturating_sub(1)];
    let settled_rate = settled.iter().sum::<f64>() / settled.len() as f64;
    let late_shown: Vec<f64> = shown[shown.len() / 3..].to_vec();
    let shown_rate = late_shown.iter().sum::<f64>() / late_shown.len() as f64;
    eprintln!(
        "front limit {N}/s: {all} requests, {:.2}% refused; settled at {settled_rate:.1} \
         accepted/s over {} s; /metrics showed {shown_rate:.1} requests/s on average \
         (samples {late_shown:?}); stat: {stat_line:?}",
        refused_share * 100.0,
        settled.len()
    );
    assert!(
        refused_share < 0.05,
        "{:.2}% of requests refused",
        refused_share * 100.0
    );
    assert!(
        (0.8 * N..=N * 1.05).contains(&settled_rate),
        "settled at {settled_rate:.1} accepted/s against a limit of {N}/s"
    );
    assert!(
        (0.8 * N..=1.2 * N).contains(&shown_rate),
        "/metrics showed {shown_rate:.1} requests/s on average against a limit of {N}/s"
    );
    let stat_line = stat_line.expect("stat never said the destination was throttled");
    assert!(
        stat_line.contains("overloaded: held to") && stat_line.contains("(seen by a1)"),
        "{stat_line}"
    );
    // Every object is at the destination as written.
    let client = s3.client();
    let keys = rt.block_on(list_keys(&client, "bkt", ""));
    assert_eq!(keys.len(), FILES);
}
