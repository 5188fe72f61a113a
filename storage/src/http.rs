//! The HTTP source: plain GETs of the URLs in an `httpListFilePath` list,
//! over HTTP or HTTPS (system trust roots).

use std::time::Duration;

use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::remote::{RemoteBody, SourceError, SourceErrorKind};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A pooled HTTP(S) client for source downloads.
#[derive(Clone, Debug)]
pub struct HttpSource {
    client: Client<Connector, Empty<bytes::Bytes>>,
    /// Time to wait for the response head.
    timeout: Duration,
}

impl HttpSource {
    pub fn new() -> Result<HttpSource, SourceError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| SourceError::new(SourceErrorKind::Permanent, format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(HttpSource {
            client,
            timeout: Duration::from_secs(60),
        })
    }

    /// Starts a GET; the status and headers are checked, the body is left
    /// to stream. 404/410 are `NotFound`, 5xx/429, timeouts and refused or
    /// reset connections are `Transient`, other statuses `Permanent`.
    pub async fn get(&self, url: &str) -> Result<RemoteBody, SourceError> {
        let uri: hyper::Uri = url.parse().map_err(|e| {
            SourceError::new(SourceErrorKind::Permanent, format!("bad URL {url}: {e}"))
        })?;
        let req = hyper::Request::get(uri)
            .header(
                hyper::header::USER_AGENT,
                concat!("ossimport/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| SourceError::new(SourceErrorKind::Permanent, format!("{url}: {e}")))?;
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => {
                return Err(SourceError::new(
                    SourceErrorKind::Transient,
                    format!("GET {url}: no response within {} s", self.timeout.as_secs()),
                ));
            }
            Ok(Err(e)) => {
                let mut msg = e.to_string();
                let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                return Err(SourceError::new(
                    SourceErrorKind::Transient,
                    format!("GET {url}: {msg}"),
                ));
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let kind = match status {
            200 => None,
            404 | 410 => Some(SourceErrorKind::NotFound),
            429 | 500..=599 => Some(SourceErrorKind::Transient),
            _ => Some(SourceErrorKind::Permanent),
        };
        if let Some(kind) = kind {
            return Err(SourceError::new(kind, format!("GET {url}: HTTP {status}")));
        }
        let len = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(RemoteBody::http(
            resp.into_body(),
            len,
            format!("GET {url}"),
        ))
    }
}
