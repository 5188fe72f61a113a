//! The one HTTP/1 serving path shared by the daemon (agent API on TCP,
//! control API on a Unix socket) and the agent (task API on TCP).
//!
//! A request body is read whole, up to a limit, before the handler sees it:
//! signatures cover the body digest, so nothing can be acted on before the
//! whole body is there anyway. Before a byte of it is read, a [`Gate`]
//! looks at the method, path and headers (for the signed APIs: signer
//! enrolled, timestamp fresh, nonce unseen) and picks the body limit of
//! that endpoint, so an unauthenticated peer costs the headers and nothing
//! more. The whole body must arrive within the request deadline, and one
//! peer address holds at most `max_per_peer` connections. The agent API
//! and the agents' task API run over mutual TLS (`Limits::tls`): a peer
//! whose key is not enrolled never gets past the handshake.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api::{ErrorBody, ErrorCode};

pub type Body = Full<Bytes>;

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A TLS peer that presented a key the server's trust accepted
    /// (`crate::tls`): its fingerprint.
    Tls {
        addr: SocketAddr,
        key: String,
    },
    /// Credentials of the connecting process (`SO_PEERCRED`).
    Unix {
        uid: Option<u32>,
        gid: Option<u32>,
    },
}

/// A request read whole.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: Peer,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type BoxFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
pub type Handler = Arc<dyn Fn(Req) -> BoxFuture + Send + Sync>;

/// Decides from the request line and headers alone whether a body may be
/// read, and how much of it: `Ok(limit)` or the answer to send instead.
pub type Gate =
    Arc<dyn Fn(&Method, &str, &HeaderMap) -> Result<usize, Box<Response<Body>>> + Send + Sync>;

/// Limits of one server.
#[derive(Clone)]
pub struct Limits {
    /// Body limit when there is no gate.
    pub max_body: usize,
    pub max_connections: usize,
    /// Connections one TCP peer address may hold at once.
    pub max_per_peer: usize,
    /// Time for the whole body to arrive once the headers are in.
    pub request_deadline: Duration,
    /// How long open connections get to finish after shutdown starts.
    pub drain: Duration,
    pub gate: Option<Gate>,
    /// Mutual TLS on every connection (`crate::tls::server_config`): a
    /// peer that does not complete the handshake sends no request. A peer
    /// that speaks plain HTTP gets one answer saying so.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Time a TLS peer has to complete its handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Accepts connections until `cancel` fires, then drains them (bounded by
/// `limits.drain`).
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    handler: Handler,
    limits: Limits,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_peer = Arc::new(PerPeer::default());
    let limits = Arc::new(limits);
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = cancel.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => break,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "Accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // One address cannot hold every slot: over its share, the new
        // connection is closed at once.
        let Some(peer_slot) = PerPeer::enter(&per_peer, addr.ip(), limits.max_per_peer) else {
            debug!(peer = %addr, "Refused a connection over the per-peer limit.");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (h, c, l) = (Arc::clone(&handler), cancel.clone(), Arc::clone(&limits));
        conns.spawn(async move {
            let _permit = permit;
            let _peer_slot = peer_slot;
            match l.tls.clone() {
                None => connection(TokioIo::new(stream), Peer::Tcp(addr), h, l, c).await,
                Some(cfg) => {
                    if let Some((key, tls)) = handshake(stream, addr, cfg).await {
                        connection(TokioIo::new(tls), Peer::Tls { addr, key }, h, l, c).await;
                    }
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    drain(conns, limits.drain).await;
}

/// Completes a server handshake, or answers a plain-HTTP peer (an older
/// agent or daemon) with one line saying which side to upgrade.
async fn handshake(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    cfg: Arc<rustls::ServerConfig>,
) -> Option<(
    String,
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
)> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_DEADLINE, stream.peek(&mut first)).await {
        Ok(Ok(1..)) => {}
        _ => return None,
    }
    if first[0].is_ascii_uppercase() {
        refuse_plain(stream, addr).await;
        return None;
    }
    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(stream);
    match tokio::time::timeout(HANDSHAKE_DEADLINE, accept).await {
        Ok(Ok(tls)) => {
            let key = crate::tls::peer_fingerprint(tls.get_ref().1)?;
            Some((key, tls))
        }
        Ok(Err(e)) => {
            warn!(peer = %addr, reason = %e, "Refused a TLS handshake (a key not enrolled here, or not TLS).");
            None
        }
        Err(_) => {
            debug!(peer = %addr, "TLS handshake timed out.");
            None
        }
    }
}

async fn refuse_plain(mut stream: tokio::net::TcpStream, addr: SocketAddr) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // The answer comes after the request's head (16 KiB at most), as from
    // any HTTP server: a client still writing its head when an answer
    // arrives may not read it.
    let _ = tokio::time::timeout(HANDSHAKE_DEADLINE, async {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while head.len() < 16 << 10 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let message = format!(
        "this end (ossimport {}) speaks TLS only: upgrade the side at {addr} to the same version",
        crate::VERSION
    );
    warn!(peer = %addr, "Refused a plain-HTTP peer: it runs an older ossimport; upgrade it.");
    let body = serde_json::to_vec(&ErrorBody {
        code: ErrorCode::TlsRequired,
        message,
    })
    .unwrap_or_default();
    let head = format!(
        "HTTP/1.1 426 Upgrade Required\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut answer = head.into_bytes();
    answer.extend_from_slice(&body);
    if tokio::time::timeout(HANDSHAKE_DEADLINE, stream.write_all(&answer))
        .await
        .is_err()
    {
        return;
    }
    // A lingering close: what the peer is still sending is read and dropped
    // for a moment (1 MiB, 1 s at most) before the connection is closed, so
    // that closing with its data unread does not reset the connection
    // before it has read the answer.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut buf = [0u8; 16 << 10];
        let mut left = 1usize << 20;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Like [`serve_tcp`] for a Unix socket.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    handler: Handler,
    limits: Limits,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let limits = Arc::new(limits);
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = cancel.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "Accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(c) => Peer::Unix {
                uid: Some(c.uid()),
                gid: Some(c.gid()),
            },
            Err(_) => Peer::Unix {
                uid: None,
                gid: None,
            },
        };
        let (h, c, l) = (Arc::clone(&handler), cancel.clone(), Arc::clone(&limits));
        conns.spawn(async move {
            let _permit = permit;
            connection(TokioIo::new(stream), peer, h, l, c).await;
        });
        while conns.try_join_next().is_some() {}
    }
    drain(conns, limits.drain).await;
}

/// Open connections per peer address.
#[derive(Default)]
struct PerPeer(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// Gives the peer's slot back when its connection ends.
struct PeerSlot(Arc<PerPeer>, std::net::IpAddr);

impl PerPeer {
    fn enter(this: &Arc<PerPeer>, ip: std::net::IpAddr, max: usize) -> Option<PeerSlot> {
        let mut m = this.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(PeerSlot(Arc::clone(this), ip))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

async fn drain(mut conns: JoinSet<()>, deadline: Duration) {
    let all = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(deadline, all).await.is_err() {
        warn!("Connections still open at the drain deadline; closing them.");
        conns.abort_all();
    }
}

async fn connection<I>(
    io: I,
    peer: Peer,
    handler: Handler,
    limits: Arc<Limits>,
    cancel: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (handler, peer, limits) = (Arc::clone(&handler), peer.clone(), Arc::clone(&limits));
        async move {
            let (parts, body) = req.into_parts();
            let max_body = match &limits.gate {
                Some(gate) => match gate(&parts.method, parts.uri.path(), &parts.headers) {
                    Ok(n) => n,
                    // The body is never read; the connection is closed so
                    // the rest of it is not either.
                    Err(refused) => {
                        let mut refused = *refused;
                        refused.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("close"),
                        );
                        return Ok::<_, Infallible>(refused);
                    }
                },
                None => limits.max_body,
            };
            let collect = Limited::new(body, max_body).collect();
            let body = match tokio::time::timeout(limits.request_deadline, collect).await {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(_)) => {
                    return Ok::<_, Infallible>(error(
                        ErrorCode::TooLarge,
                        "request body is too large or was cut off",
                    ));
                }
                Err(_) => {
                    return Ok::<_, Infallible>(error(
                        ErrorCode::Timeout,
                        "request body did not arrive in time",
                    ));
                }
            };
            let req = Req {
                method: parts.method,
                path: parts.uri.path().to_string(),
                query: parts.uri.query().map(str::to_string),
                headers: parts.headers,
                body,
                peer,
            };
            Ok::<_, Infallible>(handler(req).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(error = %e, "Connection ended with an error.");
            }
        }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(v) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
        Err(_) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::new()))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
    }
}

/// A `{code, message}` error answer.
pub fn error(code: ErrorCode, message: &str) -> Response<Body> {
    json(
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &ErrorBody {
            code,
            message: message.to_string(),
        },
    )
}
