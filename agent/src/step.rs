//! How the copy of one object ends, whatever the source and destination:
//! a [`Step`] is either the next value or a [`Fail`] with the error code
//! and reason that become the object's result; [`Done`] is a good end.

pub(crate) use crate::fail::Fail;
use crate::verify::Verified;

pub(crate) type Step<T> = Result<T, Fail>;

/// How an object ended well: copied and verified, or left alone because
/// the destination already holds it (by the job's skip rule).
pub(crate) enum Done {
    Verified(Verified),
    Skipped(Skipped),
}

/// An object the skip rule found already at the destination; not a claim
/// that it was verified, only what the rule compared.
pub(crate) struct Skipped {
    pub(crate) etag: Option<String>,
    pub(crate) by: proto::job::Evidence,
}

impl From<Verified> for Done {
    fn from(v: Verified) -> Done {
        Done::Verified(v)
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}
