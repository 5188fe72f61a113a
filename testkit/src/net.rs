//! Network fixtures started by the tests themselves: a fault-injecting,
//! delaying HTTP proxy in front of the S3 server, a small HTTP file server
//! whose URLs can answer 404 or drop the connection, and a TCP relay that
//! records (and can stall or cut) what passes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the proxy does to requests.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Every n-th request (1-based count) is answered 500.
    pub every_500: u64,
    /// Every n-th request is answered 503 SlowDown.
    pub every_503: u64,
    /// Every n-th request has its connection dropped without an answer.
    pub every_drop: u64,
    /// Delay added to listing requests (ListObjectsV2, Azure List Blobs).
    pub list_delay: Duration,
    /// Drops `If-Match` from requests, as a store (or a cache in front of
    /// one) that ignores it would. Use with a server that does not check
    /// signatures (moto): the header was signed.
    pub strip_if_match: bool,
    /// Drops `If-None-Match` likewise (a store that takes every write).
    pub strip_if_none_match: bool,
    /// Requests whose path holds this text are answered 403 AccessDenied
    /// (a key the credentials may not write).
    pub deny_key: Option<String>,
    /// What becomes of the `x-amz-checksum-crc64nvme` of PutObject and
    /// HeadObject answers (UploadPart's are left alone, so a checksum
    /// probe still learns that the store checks them).
    pub crc_answers: CrcAnswers,
    /// Server-side copies (requests with `x-amz-copy-source`) are held this
    /// long before they are passed on.
    pub copy_delay: Duration,
}

/// See [`Faults::crc_answers`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrcAnswers {
    #[default]
    Kept,
    /// Removed, as a front that passes only the headers it knows would.
    Dropped,
    /// Another value than the store's.
    Wrong,
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub requests: AtomicU64,
    pub injected: AtomicU64,
    /// Of `injected`, the faults on listings (ListObjectsV2: an executor's
    /// endpoint probes, when the source is not a bucket).
    pub injected_on_listings: AtomicU64,
    /// GETs of objects (not listings): bytes read through the proxy.
    pub object_gets: AtomicU64,
    /// Server-side copies (`x-amz-copy-source`) seen.
    pub copies: AtomicU64,
    /// Of `copies`, the parts of uploads (`UploadPartCopy`).
    pub part_copies: AtomicU64,
}

/// A proxy on 127.0.0.1 forwarding to `upstream` (an `http://host:port`),
/// stopped when dropped.
pub struct FaultProxy {
    pub endpoint: String,
    pub stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str, faults: Faults) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let stats = Arc::new(ProxyStats::default());
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let upstream = upstream.trim_end_matches('/').to_owned();
        let (st, faults) = (Arc::clone(&stats), Arc::new(faults));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, upstream, st, faults) = (
                    client.clone(),
                    upstream.clone(),
                    Arc::clone(&st),
                    Arc::clone(&faults),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (client, upstream, st, faults) = (
                            client.clone(),
                            upstream.clone(),
                            Arc::clone(&st),
                            Arc::clone(&faults),
                        );
                        async move { forward(req, &client, &upstream, &st, &faults).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FaultProxy {
            endpoint,
            stats,
            task,
        }
    }
}

fn every(n: u64, count: u64) -> bool {
    n > 0 && count.is_multiple_of(n)
}

async fn forward(
    req: Request<Incoming>,
    client: &Client<HttpConnector, Full<Bytes>>,
    upstream: &str,
    st: &ProxyStats,
    faults: &Faults,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let n = st.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let (parts, body) = req.into_parts();
    let is_listing = parts
        .uri
        .query()
        .is_some_and(|q| q.contains("list-type=2") || q.contains("comp=list"));
    let injected = || {
        st.injected.fetch_add(1, Ordering::Relaxed);
        if is_listing {
            st.injected_on_listings.fetch_add(1, Ordering::Relaxed);
        }
    };
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    if every(faults.every_drop, n) {
        injected();
        // Returning an error makes hyper close the connection unanswered.
        return Err(std::io::Error::other("injected connection drop"));
    }
    if every(faults.every_500, n) {
        injected();
        return Ok(xml_error(500, "InternalError", "injected failure"));
    }
    if every(faults.every_503, n) {
        injected();
        return Ok(xml_error(
            503,
            "SlowDown",
            "Please reduce your request rate.",
        ));
    }
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if let Some(k) = &faults.deny_key
        && parts.uri.path().contains(k.as_str())
    {
        st.injected.fetch_add(1, Ordering::Relaxed);
        return Ok(xml_error(403, "AccessDenied", "Access Denied"));
    }
    // ListObjectsV2, or Azure's List Blobs.
    let listing = pq.contains("list-type=2") || pq.contains("comp=list");
    if parts.method == hyper::Method::GET && !listing && !pq.contains("uploadId=") {
        st.object_gets.fetch_add(1, Ordering::Relaxed);
    }
    if parts.headers.contains_key("x-amz-copy-source") {
        st.copies.fetch_add(1, Ordering::Relaxed);
        if pq.contains("uploadId=") {
            st.part_copies.fetch_add(1, Ordering::Relaxed);
        }
        if !faults.copy_delay.is_zero() {
            tokio::time::sleep(faults.copy_delay).await;
        }
    }
    if listing && !faults.list_delay.is_zero() {
        tokio::time::sleep(faults.list_delay).await;
    }
    let object_answer = (parts.method == hyper::Method::PUT
        && !pq.contains("uploadId=")
        && !parts.headers.contains_key("x-amz-copy-source"))
        || parts.method == hyper::Method::HEAD;
    let mut up = Request::builder()
        .method(parts.method)
        .uri(format!("{upstream}{pq}"));
    for (k, v) in &parts.headers {
        if (faults.strip_if_match && k == hyper::header::IF_MATCH)
            || (faults.strip_if_none_match && k == hyper::header::IF_NONE_MATCH)
        {
            continue;
        }
        up = up.header(k, v);
    }
    let up = up.body(Full::new(body)).map_err(std::io::Error::other)?;
    let resp = client.request(up).await.map_err(std::io::Error::other)?;
    let (mut rp, rb) = resp.into_parts();
    const CRC: &str = "x-amz-checksum-crc64nvme";
    if object_answer && rp.headers.contains_key(CRC) {
        match faults.crc_answers {
            CrcAnswers::Kept => {}
            CrcAnswers::Dropped => {
                rp.headers.remove(CRC);
                st.injected.fetch_add(1, Ordering::Relaxed);
            }
            CrcAnswers::Wrong => {
                rp.headers
                    .insert(CRC, hyper::header::HeaderValue::from_static("AAAAAAAAAAE="));
                st.injected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let rb = rb
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(Response::from_parts(rp, Full::new(rb)))
}

fn xml_error(status: u16, code: &str, msg: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{msg}</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// An HTTP file server on 127.0.0.1: `files` by path; `/gone/...` answers
/// 404, `/drop/...` closes the connection without answering; files under
/// `/gz/` are served as a web server serves precompressed CSS
/// (`Content-Type: text/css`, `Content-Encoding: gzip`, `Cache-Control`,
/// `Content-Disposition`, `Expires`, `Last-Modified` 2015-10-21 07:28:00 UTC).
pub struct FileServer {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
    /// Requests answered and refused (429) in each second since the start
    /// ([`FileServer::start_limited`]).
    pub seconds: Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    pub async fn start(files: HashMap<String, Vec<u8>>) -> FileServer {
        FileServer::start_limited(files, 0.0).await
    }

    /// [`FileServer::start`], taking at most `max_rps` requests a second
    /// (a token bucket holding a tenth of a second's worth, at least one;
    /// 0: no limit) and answering the rest 429 Too Many Requests, as a web
    /// origin or CDN with a rate limit does.
    pub async fn start_limited(files: HashMap<String, Vec<u8>>, max_rps: f64) -> FileServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files = Arc::new(files);
        let seconds: Arc<std::sync::Mutex<Vec<(u64, u64)>>> = Arc::default();
        let start = std::time::Instant::now();
        let bucket = Arc::new(std::sync::Mutex::new((0.0f64, start)));
        let counts = Arc::clone(&seconds);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let files = Arc::clone(&files);
                let (bucket, counts) = (Arc::clone(&bucket), Arc::clone(&counts));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let files = Arc::clone(&files);
                        let (bucket, counts) = (Arc::clone(&bucket), Arc::clone(&counts));
                        async move {
                            let now = std::time::Instant::now();
                            let taken = max_rps <= 0.0 || {
                                let mut b = bucket.lock().unwrap();
                                let cap = (max_rps / 10.0).max(1.0);
                                b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * max_rps)
                                    .min(cap);
                                b.1 = now;
                                let ok = b.0 >= 1.0;
                                if ok {
                                    b.0 -= 1.0;
                                }
                                ok
                            };
                            {
                                let sec = now.duration_since(start).as_secs() as usize;
                                let mut c = counts.lock().unwrap();
                                if c.len() <= sec {
                                    c.resize(sec + 1, (0, 0));
                                }
                                if taken {
                                    c[sec].0 += 1;
                                } else {
                                    c[sec].1 += 1;
                                }
                            }
                            if !taken {
                                return Ok(Response::builder()
                                    .status(429)
                                    .header("retry-after", "1")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap());
                            }
                            let path = req.uri().path().to_owned();
                            if path.starts_with("/drop/") {
                                return Err(std::io::Error::other("dropped"));
                            }
                            Ok::<_, std::io::Error>(match files.get(&path) {
                                Some(data) if path.starts_with("/gz/") => Response::builder()
                                    .header("content-type", "text/css")
                                    .header("content-encoding", "gzip")
                                    .header("cache-control", "public, max-age=300")
                                    .header("content-disposition", "inline")
                                    .header("expires", "Thu, 01 Jan 2099 00:00:00 GMT")
                                    .header("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT")
                                    .body(Full::new(Bytes::from(data.clone())))
                                    .unwrap(),
                                Some(data) => Response::new(Full::new(Bytes::from(data.clone()))),
                                None => Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            })
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FileServer {
            base,
            task,
            seconds,
        }
    }
}

/// A TCP relay that records every byte passing through it in both
/// directions: what a capture of the link would see.
pub struct Relay {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<u8>>>,
    /// While set, bytes read are held instead of passed on (a link that
    /// stalls, then delivers everything late).
    pub hold: Arc<std::sync::atomic::AtomicBool>,
    /// How many more connections are let through (negative: all); past
    /// that, new connections are closed at once (a peer that went down).
    pub allow: Arc<std::sync::atomic::AtomicI64>,
}

impl Relay {
    pub fn start(target: String) -> Relay {
        Relay::start_on("127.0.0.1:0", target)
    }

    /// As [`Relay::start`], listening on `bind` (an address of a test
    /// network, for peers in namespaces).
    pub fn start_on(bind: &str, target: String) -> Relay {
        let l = TcpListener::bind(bind).unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let hold = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = Arc::clone(&hold);
        let allow = Arc::new(std::sync::atomic::AtomicI64::new(-1));
        let r = Arc::clone(&allow);
        // Detached: the relay lives as long as the test process.
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                let left = r.load(std::sync::atomic::Ordering::SeqCst);
                if left == 0 {
                    drop(client);
                    continue;
                }
                if left > 0 {
                    r.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let s = Arc::clone(&s);
                    let h = Arc::clone(&h);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => {
                                    let _ = to.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    while h.load(std::sync::atomic::Ordering::SeqCst) {
                                        std::thread::sleep(std::time::Duration::from_millis(10));
                                    }
                                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            }
        });
        Relay {
            addr,
            seen,
            hold,
            allow,
        }
    }

    pub fn contains(&self, needle: &[u8]) -> bool {
        self.seen
            .lock()
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    }

    /// Bytes seen in both directions so far.
    pub fn bytes_seen(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Lets `n` more connections through, then refuses (negative: all).
    pub fn set_allow(&self, n: i64) {
        self.allow.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set_hold(&self, on: bool) {
        self.hold.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A plain HTTP/1.1 GET to `addr` (`host:port`): the status code and body.
/// For the daemon's read-only observation port.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// A TCP relay on 127.0.0.1 to `target` that can be switched off like an
/// endpoint going down: [`Switch::down`] cuts every open connection and
/// closes the port (new connections are refused), [`Switch::up`] listens
/// on the same port again.
pub struct Switch {
    pub addr: std::net::SocketAddr,
    target: String,
    inner: Arc<Mutex<SwitchState>>,
}

#[derive(Default)]
struct SwitchState {
    accept: Option<tokio::task::JoinHandle<()>>,
    conns: Vec<tokio::task::AbortHandle>,
    /// Connections accepted so far.
    accepted: u64,
}

impl Switch {
    pub async fn start(target: &str) -> Switch {
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let s = Switch {
            addr,
            target,
            inner: Arc::new(Mutex::new(SwitchState::default())),
        };
        s.serve(l);
        s
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.inner.lock().unwrap().accepted
    }

    fn serve(&self, l: tokio::net::TcpListener) {
        let (inner, target) = (Arc::clone(&self.inner), self.target.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = l.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut st = inner.lock().unwrap();
                st.accepted += 1;
                st.conns.retain(|c| !c.is_finished());
                st.conns.push(conn.abort_handle());
            }
        });
        self.inner.lock().unwrap().accept = Some(task);
    }

    /// Cuts every open connection and refuses new ones.
    pub fn down(&self) {
        let mut st = self.inner.lock().unwrap();
        if let Some(t) = st.accept.take() {
            t.abort();
        }
        for c in st.conns.drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let l = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(l);
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.down();
    }
}
