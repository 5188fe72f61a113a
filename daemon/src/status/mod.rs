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

mod openmetrics;
mod page;
mod snapshot;
pub use openmetrics::render_metrics;
pub use page::{CHART_COLOUR, render_page};
pub use snapshot::{AgentSnap, JobSnap, SAMPLE, Snapshot, snapshot};

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
    use super::page::{chart, esc, human_bytes, human_secs};
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
