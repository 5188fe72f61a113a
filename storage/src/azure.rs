//! Azure Blob Storage as a source (`srcType=azure`), through `object_store`'s
//! Azure client (the Apache Arrow project's; shared key or SAS, retries,
//! signing). Listing is paged (`maxresults`) and resumable after any key;
//! a download is a stream pinned to the listed ETag (`If-Match`), so a blob
//! rewritten after it was listed fails as changed instead of being copied
//! as another version.
//!
//! The blob's `Content-MD5` (which `object_store` does not expose) is taken
//! from the GET's response headers by a thin HTTP connector around
//! `object_store`'s own reqwest client, and the bytes are held to it.
//! Names its `Path` cannot hold (an empty segment `a//b`, a `.` or `..`
//! segment, a control character) fail the listing page that holds them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, RetryConfig};
use proto::job::Bucket;

use crate::health::{Health, Sign};
use crate::remote::{RemoteBody, SourceError, SourceErrorKind};
use crate::s3::{ListPage, ListedObject};

/// A container of an Azure storage account, as a source.
#[derive(Clone)]
pub struct AzureSource {
    store: Arc<MicrosoftAzure>,
    /// `account/container`, for messages.
    what: String,
}

impl std::fmt::Debug for AzureSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSource")
            .field("what", &self.what)
            .finish()
    }
}

/// The blob endpoint of a container (a [`Bucket`] whose `access_key` is the
/// storage account, `secret_key` its key or a SAS token, `name` the
/// container): its `endpoint` when that is a URL (Azurite's
/// `http://127.0.0.1:10000/devstoreaccount1`, a private endpoint), else
/// `https://ACCOUNT.blob.SUFFIX` with `endpoint` as the suffix (the
/// original's `srcDomain`, e.g. `core.chinacloudapi.cn`; empty:
/// `core.windows.net`).
pub fn endpoint_of(c: &Bucket) -> String {
    let e = c.endpoint.trim().trim_end_matches('/');
    if e.contains("://") {
        e.to_string()
    } else {
        let suffix = if e.is_empty() { "core.windows.net" } else { e };
        format!("https://{}.blob.{suffix}", c.access_key)
    }
}

/// A SAS token's query pairs (`sv=...&sig=...`, with or without `?`).
fn sas_pairs(token: &str) -> Vec<(String, String)> {
    token
        .trim()
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether a secret is a SAS token rather than an account key.
pub fn is_sas(secret: &str) -> bool {
    let s = secret.trim().trim_start_matches('?');
    s.contains("sig=") && s.contains('=') && s.contains('&')
}

/// A blob's `Content-MD5` as its response said it (base64), carried in the
/// response's extensions to the [`object_store::GetResult`].
#[derive(Clone, Debug)]
struct ContentMd5(String);

/// `object_store`'s reqwest client, noting each response's `Content-MD5`,
/// and telling the account's breaker what each attempt got.
#[derive(Debug)]
struct Md5Service(HttpClient, Option<Arc<Health>>);

#[async_trait::async_trait]
impl HttpService for Md5Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let asked = self.0.execute(req).await;
        if let Some(h) = &self.1 {
            h.note(match &asked {
                Ok(r) if r.status().as_u16() < 500 => Sign::Answered,
                _ => Sign::NoAnswer,
            });
        }
        let mut resp = asked?;
        let md5 = resp
            .headers()
            .get("content-md5")
            .and_then(|v| v.to_str().ok())
            .map(|v| ContentMd5(v.trim().to_string()));
        if let Some(m) = md5 {
            resp.extensions_mut().insert(m);
        }
        Ok(resp)
    }
}

#[derive(Debug, Default)]
struct Md5Connector(Option<Arc<Health>>);

impl HttpConnector for Md5Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Md5Service(
            ReqwestConnector::default().connect(options)?,
            self.0.clone(),
        )))
    }
}

/// A blob's properties and metadata as [`crate::meta`] carries them.
fn blob_headers(a: &object_store::Attributes) -> crate::meta::ObjectHeaders {
    use object_store::Attribute as A;
    let mut h = crate::meta::ObjectHeaders::default();
    for (k, v) in a {
        let v = Some(v.as_ref().to_string()).filter(|v| !v.is_empty());
        match k {
            A::ContentType => h.content_type = v,
            A::ContentEncoding => h.content_encoding = v,
            A::ContentDisposition => h.content_disposition = v,
            A::ContentLanguage => h.content_language = v,
            A::CacheControl => h.cache_control = v,
            A::Metadata(name) => h
                .user
                .push((name.to_ascii_lowercase(), v.unwrap_or_default())),
            _ => {}
        }
    }
    h.user.sort();
    h
}

/// `Content-MD5` (base64 of 16 bytes) as lower-case hex; `None` when it is
/// not an MD5.
fn md5_hex(b64: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (raw.len() == 16).then(|| raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// The client of container `c`, with `attempts` per request and every
/// attempt told to `health`.
fn client(
    c: &Bucket,
    attempts: u32,
    health: Option<Arc<Health>>,
) -> Result<MicrosoftAzure, String> {
    let endpoint = endpoint_of(c);
    let mut b = MicrosoftAzureBuilder::new()
        .with_account(&c.access_key)
        .with_container_name(&c.name)
        .with_endpoint(endpoint.clone())
        .with_allow_http(endpoint.starts_with("http://"))
        .with_http_connector(Md5Connector(health))
        .with_retry(RetryConfig {
            max_retries: attempts.saturating_sub(1) as usize,
            retry_timeout: Duration::from_secs(300),
            ..RetryConfig::default()
        });
    let secret = c.secret_key.expose();
    b = if is_sas(secret) {
        b.with_sas_authorization(sas_pairs(secret))
    } else {
        b.with_access_key(secret)
    };
    b.build()
        .map_err(|e| format!("Azure container {} at {endpoint}: {e}", c.name))
}

/// The label of `c`'s breaker: `ENDPOINT/CONTAINER` with the blob endpoint
/// as requests go to it.
pub fn health_label(c: &Bucket) -> String {
    format!("{}/{}", endpoint_of(c), c.name)
}

impl AzureSource {
    pub fn new(c: &Bucket, attempts: u32) -> Result<AzureSource, String> {
        Ok(AzureSource {
            store: Arc::new(client(c, attempts, None)?),
            what: format!("{}/{}", c.access_key, c.name),
        })
    }

    /// As [`AzureSource::new`], every attempt told to `health` (see
    /// [`crate::health`]), which probes the account with a one-blob
    /// listing, never retried.
    pub fn with_health(
        c: &Bucket,
        attempts: u32,
        health: Arc<Health>,
    ) -> Result<AzureSource, String> {
        let once = AzureSource {
            store: Arc::new(client(c, 1, Some(Arc::clone(&health)))?),
            what: format!("{}/{}", c.access_key, c.name),
        };
        health.set_probe(Arc::new(move || {
            let once = once.clone();
            Box::pin(async move {
                match once.list_page("", None, None, 1).await {
                    Ok(_) => Ok(()),
                    // Refused credentials, a missing container: it answered.
                    Err(e) if e.kind != SourceErrorKind::Transient => Ok(()),
                    Err(e) => Err(e.message),
                }
            })
        }));
        Ok(AzureSource {
            store: Arc::new(client(c, attempts, Some(health))?),
            what: format!("{}/{}", c.access_key, c.name),
        })
    }

    /// One page of blobs under `prefix` (raw, may end in `/`), after the
    /// key `after` or continuing `token`.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, SourceError> {
        let opts = PaginatedListOptions {
            offset: after.filter(|_| token.is_none()).map(str::to_owned),
            max_keys: Some(max_keys as usize),
            page_token: token.map(str::to_owned),
            ..Default::default()
        };
        let prefix = (!prefix.is_empty()).then_some(prefix);
        let page = self
            .store
            .list_paginated(prefix, opts)
            .await
            .map_err(|e| self.error("listing", prefix.unwrap_or(""), e))?;
        let objects = page
            .result
            .objects
            .into_iter()
            .map(|m| ListedObject {
                key: m.location.to_string(),
                size: m.size,
                etag: m.e_tag.unwrap_or_default().trim_matches('"').to_string(),
                mtime: m.last_modified.timestamp(),
            })
            .collect();
        Ok(ListPage {
            objects,
            prefixes: Vec::new(),
            truncated: page.page_token.is_some(),
            next_token: page.page_token,
        })
    }

    /// Whether the container answers a listing with these credentials.
    pub async fn check(&self) -> Result<(), String> {
        self.list_page("", None, None, 1)
            .await
            .map(|_| ())
            .map_err(|e| e.message)
    }

    /// Starts a download of `key`, only if it still has the listed ETag;
    /// the body carries the blob's `Content-MD5` when it has one.
    pub async fn open_read(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> Result<RemoteBody, SourceError> {
        let path = Path::parse(key).map_err(|e| {
            SourceError::new(
                SourceErrorKind::Permanent,
                format!("{}: {key}: {e}", self.what),
            )
        })?;
        let opts = GetOptions {
            if_match: etag.filter(|e| !e.is_empty()).map(|e| format!("\"{e}\"")),
            ..Default::default()
        };
        let got = self
            .store
            .get_opts(&path, opts)
            .await
            .map_err(|e| self.error("GET", key, e))?;
        // Pinned even where the service (or a front) ignored If-Match.
        if let (Some(want), Some(have)) = (etag.filter(|e| !e.is_empty()), &got.meta.e_tag)
            && have.trim_matches('"') != want.trim_matches('"')
        {
            return Err(SourceError::new(
                SourceErrorKind::Changed,
                format!(
                    "{}: GET {key}: the answer is of version {have} but {want} was listed (If-Match not honoured)",
                    self.what
                ),
            ));
        }
        let len = got.meta.size;
        let last_modified = got.meta.last_modified.timestamp();
        let md5 = got
            .extensions
            .get::<ContentMd5>()
            .and_then(|m| md5_hex(&m.0));
        let headers = blob_headers(&got.attributes);
        let what = format!("{}/{key}", self.what);
        let stream = got
            .into_stream()
            .map(|r| r.map_err(|e| e.to_string()))
            .boxed();
        let mut body = RemoteBody::stream(stream, Some(len), what);
        body.content_md5 = md5;
        body.headers = Some(headers);
        body.last_modified = Some(last_modified);
        Ok(body)
    }

    fn error(&self, op: &str, key: &str, e: object_store::Error) -> SourceError {
        use object_store::Error as E;
        let kind = match &e {
            E::NotFound { .. } => SourceErrorKind::NotFound,
            E::Precondition { .. } | E::NotModified { .. } => SourceErrorKind::Changed,
            E::PermissionDenied { .. } | E::Unauthenticated { .. } | E::InvalidPath { .. } => {
                SourceErrorKind::Permanent
            }
            _ => SourceErrorKind::Transient,
        };
        SourceError::new(kind, format!("Azure {op} {}/{key}: {e}", self.what))
    }
}
