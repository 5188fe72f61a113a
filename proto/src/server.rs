//! The one HTTP/1 serving path shared by the daemon (agent API on TCP,
//! control API on a Unix socket) and the agent (task API on TCP).
//!
//! A request body is read whole, up to a limit, before the handler sees it:
//! signatures cover the body digest, so nothing can be acted on before the
//! whole body is there anyway.

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

use crate::api::ErrorBody;

pub type Body = Full<Bytes>;

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub enum Peer {
    Tcp(SocketAddr),
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

/// Limits of one server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_body: usize,
    pub max_connections: usize,
    /// How long open connections get to finish after shutdown starts.
    pub drain: Duration,
}

/// Accepts connections until `cancel` fires, then drains them (bounded by
/// `limits.drain`).
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    handler: Handler,
    limits: Limits,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
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
        let _ = stream.set_nodelay(true);
        let (h, c) = (Arc::clone(&handler), cancel.clone());
        conns.spawn(async move {
            let _permit = permit;
            connection(TokioIo::new(stream), Peer::Tcp(addr), h, limits, c).await;
        });
        while conns.try_join_next().is_some() {}
    }
    drain(conns, limits.drain).await;
}

/// Like [`serve_tcp`] for a Unix socket.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    handler: Handler,
    limits: Limits,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
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
        let (h, c) = (Arc::clone(&handler), cancel.clone());
        conns.spawn(async move {
            let _permit = permit;
            connection(TokioIo::new(stream), peer, h, limits, c).await;
        });
        while conns.try_join_next().is_some() {}
    }
    drain(conns, limits.drain).await;
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
    limits: Limits,
    cancel: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (handler, peer) = (Arc::clone(&handler), peer.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = match Limited::new(body, limits.max_body).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return Ok::<_, Infallible>(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "TOO_LARGE",
                        "request body is too large or was cut off",
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
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            code: code.to_string(),
            message: message.to_string(),
        },
    )
}
