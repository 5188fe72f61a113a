//! A streamed body from a remote source (an S3-compatible GET or an HTTP
//! GET), read chunk by chunk with its length checked against what the
//! source announced.

use bytes::Bytes;
use http_body_util::BodyExt;

/// What went wrong reading a remote source, by what the caller can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// 404 / NoSuchKey: the object is gone.
    NotFound,
    /// The object changed since it was listed (ETag precondition failed).
    Changed,
    /// Timeouts, resets, 5xx, throttling: worth retrying.
    Transient,
    /// Anything that will not succeed on retry (403, 400, ...).
    Permanent,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub kind: SourceErrorKind,
    pub message: String,
}

impl SourceError {
    pub fn new(kind: SourceErrorKind, message: impl Into<String>) -> SourceError {
        SourceError {
            kind,
            message: message.into(),
        }
    }
}

enum Inner {
    S3(aws_sdk_s3::primitives::ByteStream),
    /// A body as a stream of chunks (Azure downloads).
    Stream(futures_util::stream::BoxStream<'static, Result<Bytes, String>>),
    /// With the longest wait for the next bytes.
    Http(hyper::body::Incoming, std::time::Duration),
}

/// A body being received, with the length the source announced.
pub struct RemoteBody {
    inner: Inner,
    /// Content-Length, when the source sent one.
    pub expected_len: Option<u64>,
    /// False when the source said its ETag is not the data's MD5 (an
    /// SSE-KMS or SSE-C object); HTTP bodies have no ETag we compare.
    pub etag_is_md5: bool,
    /// The MD5 (hex) the source states for the whole body besides its
    /// ETag (Azure's `Content-MD5`), to hold the received bytes to.
    pub content_md5: Option<String>,
    /// The object's metadata as the source answered it (see
    /// [`crate::meta`]); `None` where the source gives none.
    pub headers: Option<crate::meta::ObjectHeaders>,
    /// The object's Last-Modified (unix seconds) as the GET answered it:
    /// a URL's, which no listing gives, is its source mtime.
    pub last_modified: Option<i64>,
    received: u64,
    what: String,
}

impl RemoteBody {
    pub(crate) fn s3(
        body: aws_sdk_s3::primitives::ByteStream,
        len: Option<u64>,
        what: String,
    ) -> RemoteBody {
        RemoteBody {
            inner: Inner::S3(body),
            expected_len: len,
            etag_is_md5: true,
            content_md5: None,
            headers: None,
            last_modified: None,
            received: 0,
            what,
        }
    }

    pub(crate) fn stream(
        body: futures_util::stream::BoxStream<'static, Result<Bytes, String>>,
        len: Option<u64>,
        what: String,
    ) -> RemoteBody {
        RemoteBody {
            inner: Inner::Stream(body),
            expected_len: len,
            etag_is_md5: false,
            content_md5: None,
            headers: None,
            last_modified: None,
            received: 0,
            what,
        }
    }

    pub(crate) fn http(
        body: hyper::body::Incoming,
        len: Option<u64>,
        what: String,
        idle: std::time::Duration,
    ) -> RemoteBody {
        RemoteBody {
            inner: Inner::Http(body, idle),
            expected_len: len,
            etag_is_md5: true,
            content_md5: None,
            headers: None,
            last_modified: None,
            received: 0,
            what,
        }
    }

    /// The next chunk, or `None` at the end. A body that ends before its
    /// announced length, or runs past it, is an error (the connection was
    /// cut, or the source misreported the size).
    pub async fn next(&mut self) -> Result<Option<Bytes>, SourceError> {
        let chunk = match &mut self.inner {
            Inner::S3(b) => b.try_next().await.map_err(|e| {
                SourceError::new(
                    SourceErrorKind::Transient,
                    format!(
                        "{}: body cut off: {}",
                        self.what,
                        proto::net::no_answer(&e, None)
                    ),
                )
            })?,
            Inner::Stream(b) => match futures_util::StreamExt::next(b).await {
                None => None,
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    return Err(SourceError::new(
                        SourceErrorKind::Transient,
                        format!(
                            "{}: body cut off after {} bytes: {e}",
                            self.what, self.received
                        ),
                    ));
                }
            },
            Inner::Http(b, idle) => loop {
                let Ok(frame) = tokio::time::timeout(*idle, b.frame()).await else {
                    return Err(SourceError::new(
                        SourceErrorKind::Transient,
                        format!(
                            "{}: the body stopped after {} bytes: {}",
                            self.what,
                            self.received,
                            proto::net::timed_out(Some(*idle))
                        ),
                    ));
                };
                match frame {
                    None => break None,
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            break Some(data);
                        }
                    }
                    Some(Err(e)) => {
                        return Err(SourceError::new(
                            SourceErrorKind::Transient,
                            format!(
                                "{}: body cut off after {} bytes: {}",
                                self.what,
                                self.received,
                                proto::net::no_answer(&e, None)
                            ),
                        ));
                    }
                }
            },
        };
        match chunk {
            Some(c) => {
                self.received += c.len() as u64;
                if let Some(exp) = self.expected_len
                    && self.received > exp
                {
                    return Err(SourceError::new(
                        SourceErrorKind::Transient,
                        format!(
                            "{}: received more than the announced {exp} bytes",
                            self.what
                        ),
                    ));
                }
                Ok(Some(c))
            }
            None => match self.expected_len {
                Some(exp) if self.received != exp => Err(SourceError::new(
                    SourceErrorKind::Transient,
                    format!(
                        "{}: Content-Length was {exp} but {} bytes arrived",
                        self.what, self.received
                    ),
                )),
                _ => Ok(None),
            },
        }
    }
}
