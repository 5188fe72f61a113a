//! The body of a part, or of a single PUT, streamed from a file, in one
//! buffer.
//!
//! The SDK's file stream reads through tokio's `File`, which keeps a buffer
//! of its own and copies each chunk out of it, and hyper takes a body's next
//! chunk whenever its write queue holds less than about 400 KiB: a part
//! streamed in 256 KiB chunks held about 1 MiB, 16 MiB for W2's 16 parts in
//! flight, all of it full whenever the store is the slower side (a new
//! bucket's first writes, or simply a busy store). Here a part has one
//! buffer of [`PART_STREAM_BUFFER`](super::PART_STREAM_BUFFER): it is read
//! into (on the blocking pool), lent to hyper, and read into again once hyper
//! has written it to the socket and dropped it. The socket's own buffer keeps
//! the store busy meanwhile.

use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

/// `len` bytes of `file` (opened at `path`) from `offset`, read in chunks of
/// `chunk` bytes; every attempt (the SDK's retries) reads the range from its
/// start.
pub(crate) fn file_range(
    file: std::fs::File,
    path: &Path,
    offset: u64,
    len: u64,
    chunk: usize,
) -> SdkBody {
    let (file, path): (Arc<std::fs::File>, Arc<Path>) = (Arc::new(file), path.into());
    SdkBody::retryable(move || {
        SdkBody::from_body_1_x(FileRange {
            path: path.clone(),
            offset,
            left: len,
            chunk: chunk.max(1),
            file: file.clone(),
            reading: None,
            slot: Arc::new(Mutex::new(Slot {
                buf: Some(Vec::new()),
                waiting: None,
            })),
        })
    })
}

type Read = io::Result<Vec<u8>>;

/// A body that could not be read from its file: the request failed on our
/// side, not the store's (see [`source_read_error`]).
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub(crate) struct SourceReadError {
    pub(crate) path: String,
    #[source]
    pub(crate) source: io::Error,
}

/// The [`SourceReadError`] in `err`'s chain of causes, if a request failed
/// because its body could not be read.
pub(crate) fn source_read_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a SourceReadError> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(r) = e.downcast_ref::<SourceReadError>() {
            return Some(r);
        }
        cause = e.source();
    }
    None
}

struct FileRange {
    path: Arc<Path>,
    /// The next byte to read, and how many are left.
    offset: u64,
    left: u64,
    chunk: usize,
    file: Arc<std::fs::File>,
    reading: Option<JoinHandle<Read>>,
    /// The buffer, when it is not being read into or lent to hyper.
    slot: Arc<Mutex<Slot>>,
}

struct Slot {
    buf: Option<Vec<u8>>,
    /// The body, waiting for its buffer to come back.
    waiting: Option<Waker>,
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// The buffer as lent to hyper: dropped, it goes back to its body.
struct Lent {
    buf: Vec<u8>,
    slot: Arc<Mutex<Slot>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut slot = lock(&self.slot);
        slot.buf = Some(std::mem::take(&mut self.buf));
        if let Some(w) = slot.waiting.take() {
            drop(slot);
            w.wake();
        }
    }
}

fn read(file: &std::fs::File, mut buf: Vec<u8>, at: u64, n: usize) -> Read {
    // Zeroed once per part: later chunks reuse the same length.
    buf.resize(n, 0);
    file.read_exact_at(&mut buf, at).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(e.kind(), "the file ended before the body did (it shrank?)")
        } else {
            e
        }
    })?;
    Ok(buf)
}

impl FileRange {
    fn failed(&self, source: io::Error) -> aws_smithy_types::body::Error {
        Box::new(SourceReadError {
            path: self.path.display().to_string(),
            source,
        })
    }
}

impl Body for FileRange {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(reading) = &mut this.reading {
                let done = std::task::ready!(Pin::new(reading).poll(cx));
                this.reading = None;
                let buf = match done {
                    Ok(Ok(read)) => read,
                    Ok(Err(e)) => return Poll::Ready(Some(Err(this.failed(e)))),
                    Err(e) => return Poll::Ready(Some(Err(this.failed(io::Error::other(e))))),
                };
                this.offset += buf.len() as u64;
                this.left -= buf.len() as u64;
                let lent = Lent {
                    buf,
                    slot: this.slot.clone(),
                };
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_owner(lent)))));
            }
            if this.left == 0 {
                return Poll::Ready(None);
            }
            let buf = {
                let mut slot = lock(&this.slot);
                match slot.buf.take() {
                    Some(buf) => buf,
                    None => {
                        slot.waiting = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                }
            };
            let n = this.left.min(this.chunk as u64) as usize;
            let (file, at) = (this.file.clone(), this.offset);
            this.reading = Some(tokio::task::spawn_blocking(move || read(&file, buf, at, n)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.reading.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// What hyper does: each chunk is written and dropped before the next.
    async fn drain(mut body: SdkBody) -> Result<Vec<u8>, String> {
        let mut all = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.map_err(|e| e.to_string())?.into_data().unwrap();
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }

    #[tokio::test]
    async fn a_range_is_read_in_chunks_and_again_for_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let all = data(10_000);
        std::fs::write(&path, &all).unwrap();
        let body = file_range(
            std::fs::File::open(&path).unwrap(),
            &path,
            1_000,
            7_001,
            3_000,
        );
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(7_001));
        let again = body.try_clone().expect("retryable");
        for b in [body, again] {
            assert_eq!(drain(b).await.unwrap(), &all[1_000..8_001]);
        }
    }

    #[tokio::test]
    async fn the_next_chunk_is_read_only_once_the_last_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data(9)).unwrap();
        let mut body = file_range(std::fs::File::open(&path).unwrap(), &path, 0, 9, 4);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], &data(4)[..]);
        // A slice of it still holds the buffer.
        let part = first.slice(1..);
        drop(first);
        let next = tokio::time::timeout(std::time::Duration::from_millis(200), body.frame()).await;
        assert!(next.is_err(), "a second chunk while the first is held");
        drop(part);
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&second[..], &data(9)[4..8]);
        drop(second);
        let third = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&third[..], &data(9)[8..]);
        drop(third);
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data(100)).unwrap();
        let body = file_range(std::fs::File::open(&path).unwrap(), &path, 0, 100, 64);
        std::fs::write(&path, data(80)).unwrap();
        let mut body = body;
        let e = loop {
            match body.frame().await.expect("an error before the end") {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        let found = source_read_error(&*e).expect("a source read error");
        assert_eq!(found.source.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("ended before the body did"), "{e}");
    }
}
