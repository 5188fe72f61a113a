//! The HTTP source: plain GETs of the URLs in an `httpListFilePath` list,
//! over HTTP or HTTPS (system trust roots).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::health::{Health, Registry, Sign};
use crate::remote::{RemoteBody, SourceError, SourceErrorKind};

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A pooled HTTP(S) client for source downloads.
#[derive(Clone, Debug)]
pub struct HttpSource {
    client: Client<Connector, Empty<bytes::Bytes>>,
    /// Time to wait for the response head.
    timeout: Duration,
    /// One breaker per origin (`scheme://host:port`) when set (see
    /// [`HttpSource::with_health`]).
    health: Option<Arc<Registry>>,
}

impl HttpSource {
    pub fn new() -> Result<HttpSource, SourceError> {
        HttpSource::with_timeout(Duration::from_secs(60))
    }

    /// A client that waits at most `timeout` for an answer's head.
    pub fn with_timeout(timeout: Duration) -> Result<HttpSource, SourceError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| SourceError::new(SourceErrorKind::Permanent, format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(HttpSource {
            client,
            timeout,
            health: None,
        })
    }

    /// Tells a breaker per origin, in `registry`, what each GET said
    /// ([`crate::health`]); an origin is probed with a HEAD of `/`. Only an
    /// origin that answered before can be taken to be down.
    pub fn with_health(mut self, registry: Arc<Registry>) -> HttpSource {
        self.health = Some(registry);
        self
    }

    /// The breaker of `url`'s origin, when this source keeps them.
    pub fn health_of(&self, url: &str) -> Option<Arc<Health>> {
        let registry = self.health.as_ref()?;
        let uri: hyper::Uri = url.parse().ok()?;
        let origin = format!("{}://{}", uri.scheme_str()?, uri.authority()?);
        let (h, new) = registry.get("source", &origin);
        if new {
            h.only_after_an_answer();
            let (client, timeout, root) = (self.client.clone(), self.timeout, format!("{origin}/"));
            h.set_probe(Arc::new(move || {
                let (client, root) = (client.clone(), root.clone());
                Box::pin(async move {
                    let req = hyper::Request::head(root.as_str())
                        .header(
                            hyper::header::USER_AGENT,
                            concat!("ossimport/", env!("CARGO_PKG_VERSION")),
                        )
                        .body(Empty::new())
                        .map_err(|e| e.to_string())?;
                    match tokio::time::timeout(timeout, client.request(req)).await {
                        Err(_) => Err(proto::net::timed_out(Some(timeout))),
                        Ok(Err(e)) => Err(proto::net::no_answer(&e, Some(CONNECT_TIMEOUT))),
                        Ok(Ok(r)) if r.status().as_u16() >= 500 => {
                            Err(format!("HTTP {}", r.status().as_u16()))
                        }
                        Ok(Ok(_)) => Ok(()),
                    }
                })
            }));
        }
        Some(h)
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
        let health = self.health_of(url);
        if let Some(h) = &health {
            // The rate the origin is held to while it says it is overloaded.
            h.governor().acquire().await;
        }
        let asked = tokio::time::timeout(self.timeout, self.client.request(req)).await;
        if let Some(h) = &health {
            h.note(match &asked {
                Ok(Ok(r)) if r.status().as_u16() < 500 => Sign::Answered,
                _ => Sign::NoAnswer,
            });
            if let Ok(Ok(r)) = &asked {
                if matches!(r.status().as_u16(), 429 | 503) {
                    h.governor().slow_down();
                } else {
                    h.governor().answered();
                }
            }
        }
        let resp = match asked {
            Err(_) => {
                return Err(SourceError::new(
                    SourceErrorKind::Transient,
                    format!(
                        "GET {url}: no response: {}",
                        proto::net::timed_out(Some(self.timeout))
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err(SourceError::new(
                    SourceErrorKind::Transient,
                    format!(
                        "GET {url}: {}",
                        proto::net::no_answer(&e, Some(CONNECT_TIMEOUT))
                    ),
                ));
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if matches!(status, 429 | 503) {
            crate::s3::THROTTLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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
        // What a web server says of the file itself; its Expires and the
        // like are about its caches, not the object.
        let all = crate::meta::ObjectHeaders::from_http(resp.headers());
        let headers = crate::meta::ObjectHeaders {
            content_type: all.content_type,
            content_encoding: all.content_encoding,
            content_disposition: all.content_disposition,
            cache_control: all.cache_control,
            ..Default::default()
        };
        let last_modified = resp
            .headers()
            .get(hyper::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                aws_smithy_types::DateTime::from_str(
                    v,
                    aws_smithy_types::date_time::Format::HttpDate,
                )
                .ok()
            })
            .map(|d| d.secs());
        let mut body = RemoteBody::http(resp.into_body(), len, format!("GET {url}"), self.timeout);
        body.headers = Some(headers);
        body.last_modified = last_modified;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_net::{assert_one_line, refused_port, server, stall};

    #[tokio::test]
    async fn errors_without_an_answer_are_one_line_a_person_can_act_on() {
        let refused = refused_port();
        let denied = server(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        let not_tls = server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        let silent = server(b"");
        let cut = server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
        let stalled = stall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
        let cases = [
            (
                format!("http://127.0.0.1:{refused}/a"),
                "connection refused",
            ),
            (
                "http://no-such-host.invalid/a".to_string(),
                "name not found",
            ),
            (format!("https://127.0.0.1:{not_tls}/a"), "TLS failed"),
            (format!("http://127.0.0.1:{denied}/a"), "HTTP 403"),
            (
                format!("http://127.0.0.1:{silent}/a"),
                "timed out after 2 s",
            ),
            (format!("http://127.0.0.1:{cut}/a"), "connection was cut"),
            (
                format!("http://127.0.0.1:{stalled}/a"),
                "body stopped after 9 bytes: timed out after 2 s",
            ),
        ];
        let client = HttpSource::with_timeout(Duration::from_secs(2)).unwrap();
        for (url, want) in cases {
            let line = match client.get(&url).await {
                Err(e) => e.to_string(),
                Ok(mut body) => loop {
                    match body.next().await {
                        Err(e) => break e.to_string(),
                        Ok(Some(_)) => continue,
                        Ok(None) => panic!("{url}: no error"),
                    }
                },
            };
            assert_one_line(&line, &format!("GET {url}: "), want);
        }
    }
}
