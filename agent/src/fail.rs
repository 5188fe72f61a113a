//! Why one object failed: the error code and the reason that become its
//! result ([`proto::job::ObjectError`] on the wire). Every copy path and the
//! proof rules (`verify`) end a failed object with one of these.

use proto::job::{ErrorCode, ObjectError};

/// A failure on the way; becomes the object's result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fail(pub(crate) ErrorCode, pub(crate) String);

impl From<Fail> for ObjectError {
    fn from(Fail(code, message): Fail) -> ObjectError {
        ObjectError { code, message }
    }
}
