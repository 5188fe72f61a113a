//! A minimal HTTP/1 client over TCP or a Unix socket, one connection per
//! request: the daemon, agents and ctl exchange few, small requests, and a
//! fresh connection per request keeps failure handling simple.

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
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens there, or we may not connect.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    #[error("{0} did not answer in time")]
    Timeout(String),
    #[error("talking to {target}: {source}")]
    Http {
        target: String,
        source: hyper::Error,
    },
    #[error("answer from {0} is too large")]
    TooLarge(String),
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
        Target::Tcp(a) => a.clone(),
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
            Target::Unix(p) => {
                let stream = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(connect_err)?;
                roundtrip(TokioIo::new(stream), req)
                    .await
                    .map_err(http_err)?
            }
        };
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| ClientError::TooLarge(label.clone()))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ClientError::Timeout(label.clone()))?
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
    sender.send_request(req).await
}
