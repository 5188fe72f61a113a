//! A minimal HTTP/1 client over TCP, TLS or a Unix socket. [`send`] opens
//! one connection per request (ctl's few requests, tests); a [`Channel`]
//! keeps mutual-TLS connections to one peer open between requests (daemon
//! and agents exchange many small ones, and a TLS handshake per request
//! cost more than the request).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Where to send a request.
#[derive(Clone, Debug)]
pub enum Target {
    Tcp(String),
    /// TCP from a chosen local address (`bench/`'s played agents, each
    /// from its own loopback address as each agent has its own host).
    TcpFrom(String, std::net::IpAddr),
    Unix(PathBuf),
    /// Mutual TLS over TCP (daemon and agents: `crate::tls::client_config`,
    /// which pins the peer's key), from a chosen local address if given.
    Tls {
        addr: String,
        from: Option<std::net::IpAddr>,
        config: std::sync::Arc<rustls::ClientConfig>,
    },
}

/// Each shown as one line: where, what happened, and what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens there, or we may not connect.
    #[error("cannot connect to {target}: {}", crate::net::no_answer(source, None))]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("{target}: {}", crate::net::timed_out(Some(*after)))]
    Timeout { target: String, after: Duration },
    #[error("talking to {target}: {}", crate::net::no_answer(source, None))]
    Http {
        target: String,
        source: hyper::Error,
    },
    #[error("answer from {0} is too large")]
    TooLarge(String),
    /// The TLS handshake failed: why, in words (see [`tls_reason`]).
    #[error("TLS with {target}: {reason}")]
    Tls { target: String, reason: String },
    /// A kept connection failed (see [`Channel`]).
    #[error("talking to {target}: {reason}")]
    Channel { target: String, reason: String },
}

/// A failed handshake, said so that a person knows what to check.
fn tls_reason(e: &std::io::Error) -> String {
    rustls_cause(e).unwrap_or_else(|| crate::net::no_answer(e, None))
}

/// What a TLS failure somewhere in `e`'s chain means, if there is one
/// (a refusal of our key arrives after the client's side of a TLS 1.3
/// handshake, as the answer to the first request).
fn rustls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        let found = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = found {
            return Some(match r {
                rustls::Error::InvalidMessage(_) => format!(
                    "the peer does not speak TLS: it runs an older ossimport than this one ({}); upgrade it",
                    crate::VERSION
                ),
                rustls::Error::AlertReceived(a) => format!(
                    "the peer refused our key ({a:?}): is this host's key enrolled there, and the peer's key the one given here?"
                ),
                rustls::Error::InvalidCertificate(_) => {
                    "the peer's key is not the one we were given for it".to_string()
                }
                other => other.to_string(),
            });
        }
        cur = err.source();
    }
    None
}

/// Largest answer body read.
const MAX_ANSWER: usize = 256 << 20;

/// Sends one request; every step is bounded by `timeout`.
pub async fn send(
    target: &Target,
    method: Method,
    path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ClientError> {
    let label = match target {
        Target::Tcp(a) | Target::TcpFrom(a, _) | Target::Tls { addr: a, .. } => a.clone(),
        Target::Unix(p) => p.display().to_string(),
    };
    let fut = async {
        let connect_err = |source| ClientError::Connect {
            target: label.clone(),
            source,
        };
        let http_err = |source| ClientError::Http {
            target: label.clone(),
            source,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "ossimport")
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| connect_err(std::io::Error::other(e)))?;
        let resp = match target {
            Target::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(connect_err)?;
                let _ = stream.set_nodelay(true);
                roundtrip(TokioIo::new(stream), req)
                    .await
                    .map_err(http_err)?
            }
            Target::TcpFrom(addr, from) => {
                let stream = connect_from(addr, *from).await.map_err(connect_err)?;
                roundtrip(TokioIo::new(stream), req)
                    .await
                    .map_err(http_err)?
            }
            Target::Tls { addr, from, config } => {
                // A peer that refuses our key says so in an alert that
                // arrives after our side of the handshake, and hyper may
                // report only that the connection closed: the stream
                // remembers what TLS said.
                let seen = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
                let http_err = |source: hyper::Error| {
                    let heard = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
                    match rustls_cause(&source).or(heard) {
                        Some(reason) => ClientError::Tls {
                            target: label.clone(),
                            reason,
                        },
                        None => http_err(source),
                    }
                };
                let stream = match from {
                    Some(f) => connect_from(addr, *f).await,
                    None => tokio::net::TcpStream::connect(addr).await,
                }
                .map_err(connect_err)?;
                let _ = stream.set_nodelay(true);
                let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config))
                    .connect(crate::tls::server_name(), stream)
                    .await
                    .map_err(|e| ClientError::Tls {
                        target: label.clone(),
                        reason: tls_reason(&e),
                    })?;
                let watched = Watched {
                    inner: tls,
                    seen: std::sync::Arc::clone(&seen),
                };
                roundtrip(TokioIo::new(watched), req)
                    .await
                    .map_err(http_err)?
            }
            Target::Unix(p) => {
                let stream = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(connect_err)?;
                roundtrip(TokioIo::new(stream), req)
                    .await
                    .map_err(http_err)?
            }
        };
        answer(resp, &label).await
    };
    within(timeout, &label, fut).await
}

/// The status and body (at most [`MAX_ANSWER`]) of `resp`.
async fn answer(
    resp: hyper::Response<hyper::body::Incoming>,
    label: &str,
) -> Result<(StatusCode, Bytes), ClientError> {
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|_| ClientError::TooLarge(label.to_string()))?
        .to_bytes();
    Ok((status, body))
}

/// `fut`, or [`ClientError::Timeout`] once `timeout` has passed.
async fn within<T>(
    timeout: Duration,
    label: &str,
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ClientError::Timeout {
            target: label.to_string(),
            after: timeout,
        })?
}

/// Kept mutual-TLS connections to one peer (an agent, or the daemon):
/// hyper-util's pooling client over a connector that pins the peer's key.
/// Idle connections are closed after [`Channel::IDLE`], well before the
/// server's 30 s wait for a request head, so a kept connection is not
/// closed under a request; a request the peer never received (its kept
/// connection had closed) is sent again on a new one.
///
/// The peer re-checks our key on every request it reads, so a key it
/// removed stops working on open connections too.
pub struct Channel {
    label: String,
    seen: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    client: hyper_util::client::legacy::Client<TlsConnect, Full<Bytes>>,
}

impl Channel {
    /// Longest a connection is kept unused.
    pub const IDLE: Duration = Duration::from_secs(10);

    /// A channel to `addr` (from the local address `from` if given).
    pub fn tls(
        addr: String,
        from: Option<std::net::IpAddr>,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Channel {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let connect = TlsConnect {
            addr: addr.clone(),
            from,
            config,
            seen: std::sync::Arc::clone(&seen),
        };
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_idle_timeout(Self::IDLE)
                .pool_max_idle_per_host(8)
                .build(connect);
        Channel {
            label: addr,
            seen,
            client,
        }
    }

    /// Where this channel goes.
    pub fn addr(&self) -> &str {
        &self.label
    }

    /// Sends one request on a kept connection or a new one; every step is
    /// bounded by `timeout`. Errors read as [`send`]'s do.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let label = &self.label;
        let fut = async {
            let req = Request::builder()
                .method(method)
                .uri(format!("http://ossimport{path}"))
                .header("host", "ossimport")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| ClientError::Connect {
                    target: label.clone(),
                    source: std::io::Error::other(e),
                })?;
            let resp = self.client.request(req).await.map_err(|e| self.failed(e))?;
            answer(resp, label).await
        };
        within(timeout, label, fut).await
    }

    /// A pooling client's error, as [`send`] would have said it.
    fn failed(&self, e: hyper_util::client::legacy::Error) -> ClientError {
        let heard = self.seen.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(reason) = rustls_cause(&e).or(heard) {
            return ClientError::Tls {
                target: self.label.clone(),
                reason,
            };
        }
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut io_kind = None;
        while let Some(err) = cur {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                io_kind.get_or_insert(io.kind());
            }
            cur = err.source();
        }
        if e.is_connect() {
            // `Connect` carries an io::Error (ctl tells "not running" by its
            // kind): the kind and the deepest cause's words.
            return ClientError::Connect {
                target: self.label.clone(),
                source: std::io::Error::new(
                    io_kind.unwrap_or(std::io::ErrorKind::Other),
                    root_cause(&e).unwrap_or_else(|| e.to_string()),
                ),
            };
        }
        ClientError::Channel {
            target: self.label.clone(),
            reason: crate::net::no_answer(&e, None),
        }
    }
}

/// The deepest cause's text.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    let mut last = None;
    while let Some(err) = cur {
        let t = err.to_string();
        if !t.is_empty() {
            last = Some(t);
        }
        cur = err.source();
    }
    last
}

/// Opens a [`Channel`]'s connections: TCP (from a chosen address), then
/// TLS with the pinned configuration.
#[derive(Clone)]
struct TlsConnect {
    addr: String,
    from: Option<std::net::IpAddr>,
    config: std::sync::Arc<rustls::ClientConfig>,
    seen: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

type TlsIo = TokioIo<Watched<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>;

impl tower_service::Service<hyper::Uri> for TlsConnect {
    type Response = TlsIo;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<TlsIo>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let stream = match this.from {
                Some(f) => connect_from(&this.addr, f).await,
                None => tokio::net::TcpStream::connect(&this.addr).await,
            }?;
            let _ = stream.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(this.config)
                .connect(crate::tls::server_name(), stream)
                .await?;
            Ok(TokioIo::new(Watched {
                inner: tls,
                seen: this.seen,
            }))
        })
    }
}

impl<S> hyper_util::client::legacy::connect::Connection for Watched<S> {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// A stream that keeps what a TLS failure meant (see [`rustls_cause`]) the
/// first time a read or write fails with one.
struct Watched<S> {
    inner: S,
    seen: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl<S> Watched<S> {
    fn note<T>(&self, r: &std::task::Poll<std::io::Result<T>>) {
        if let std::task::Poll::Ready(Err(e)) = r
            && let Some(reason) = rustls_cause(e)
        {
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(reason);
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(&r);
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&r);
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.note(&r);
        r
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP connection to `addr` from the local address `from`.
async fn connect_from(
    addr: &str,
    from: std::net::IpAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let to = tokio::net::lookup_host(addr)
        .await?
        .find(|a| a.is_ipv4() == from.is_ipv4())
        .ok_or(std::io::ErrorKind::AddrNotAvailable)?;
    let socket = if from.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    socket.bind(std::net::SocketAddr::new(from, 0))?;
    let stream = socket.connect(to).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn roundtrip<I>(
    io: I,
    req: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    // Detached: the connection task ends when the response is read and the
    // sender is dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // Until the connection task has run, hyper refuses a request as "not
    // ready": wait for it (a connection that died meanwhile fails here).
    sender.ready().await?;
    sender.send_request(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A server on 127.0.0.1 that reads each request and then holds the
    /// connection open (`hold`) or closes it, never answering.
    fn mute(hold: bool) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                if hold {
                    held.push(c);
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn channel_errors_are_one_line_a_person_can_act_on() {
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let cases = [
            (refused, "connection refused"),
            ("no-such-host.invalid:7000".to_string(), "name not found"),
            (mute(true), "timed out after 1 s"),
            (mute(false), "connection was cut"),
        ];
        for (addr, want) in cases {
            let err = send(
                &Target::Tcp(addr.clone()),
                Method::POST,
                "/v1/agent/heartbeat",
                &[],
                b"{}".to_vec(),
                Duration::from_secs(1),
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(err.contains(want), "{addr}: {err}");
            assert!(err.contains(&addr), "{addr}: {err}");
            assert!(!err.contains('{') && !err.contains('\n'), "{addr}: {err}");
        }
    }

    /// `TcpFrom` connects from the address it names: the server sees that
    /// peer, and the answer comes back whole.
    #[tokio::test]
    async fn tcp_from_sends_from_the_chosen_address() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let peer = std::thread::spawn(move || {
            let (mut c, from) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .unwrap();
            from.ip()
        });
        let from: std::net::IpAddr = "127.0.0.7".parse().unwrap();
        let (status, body) = send(
            &Target::TcpFrom(addr, from),
            Method::POST,
            "/x",
            &[],
            Vec::new(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!((status, body.as_ref()), (StatusCode::OK, b"ok".as_ref()));
        assert_eq!(peer.join().unwrap(), from);
    }

    /// A channel keeps its connection between requests (one handshake for
    /// many requests), opens more only for requests at once, and says a
    /// refused key as `send` does.
    #[tokio::test]
    async fn a_channel_keeps_its_connections_and_reports_refusals() {
        use crate::auth::Signer;
        use crate::server::{Limits, Peer, serve_tcp};
        let (server, client, stranger) = (Signer::random(), Signer::random(), Signer::random());
        let trusted = client.fingerprint().to_string();
        let tls =
            crate::tls::server_config(&server, std::sync::Arc::new(move |fp: &str| fp == trusted))
                .unwrap();
        let ports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&ports);
        let handler: crate::server::Handler = std::sync::Arc::new(move |req| {
            if let Peer::Tls { addr, .. } = req.peer {
                seen.lock().unwrap().push(addr.port());
            }
            Box::pin(async { crate::server::json(StatusCode::OK, &"ok") })
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cancel = tokio_util::sync::CancellationToken::new();
        let limits = Limits {
            max_body: 1 << 20,
            max_connections: 16,
            max_per_peer: 16,
            request_deadline: Duration::from_secs(5),
            drain: Duration::from_secs(1),
            gate: None,
            tls: Some(tls),
        };
        tokio::spawn(serve_tcp(listener, handler, limits, cancel.clone()));

        let config = crate::tls::client_config(&client, server.public_key()).unwrap();
        let channel = Channel::tls(addr.clone(), None, config);
        let t = Duration::from_secs(5);
        for _ in 0..20 {
            let (status, _) = channel
                .send(Method::POST, "/x", b"{}".to_vec(), t)
                .await
                .unwrap();
            assert_eq!(status, StatusCode::OK);
        }
        let distinct = |p: &[u16]| p.iter().collect::<std::collections::HashSet<_>>().len();
        assert_eq!(
            distinct(&ports.lock().unwrap()),
            1,
            "20 requests, one connection"
        );
        let send = || channel.send(Method::POST, "/x", Vec::new(), t);
        let (a, b, c, d) = tokio::join!(send(), send(), send(), send());
        for r in [a, b, c, d] {
            assert_eq!(r.unwrap().0, StatusCode::OK);
        }
        let n = distinct(&ports.lock().unwrap());
        assert!((2..=5).contains(&n), "{n} connections for 24 requests");

        let config = crate::tls::client_config(&stranger, server.public_key()).unwrap();
        let refused = Channel::tls(addr.clone(), None, config);
        let e = refused
            .send(Method::POST, "/x", Vec::new(), t)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("refused our key"), "{e}");
        let wrong_peer = crate::tls::client_config(&client, stranger.public_key()).unwrap();
        let e = Channel::tls(addr.clone(), None, wrong_peer)
            .send(Method::POST, "/x", Vec::new(), t)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not the one we were given"), "{e}");
        cancel.cancel();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let config = crate::tls::client_config(&client, server.public_key()).unwrap();
        let e = Channel::tls(closed.clone(), None, config)
            .send(Method::POST, "/x", Vec::new(), t)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        assert!(
            e.to_string().contains("connection refused") && e.to_string().contains(&closed),
            "{e}"
        );
    }
}
