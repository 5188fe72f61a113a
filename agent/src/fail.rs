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

impl Fail {
    /// The same failure with every `/proc/self/fd/N` in its reason replaced
    /// by `path`: a local file is read through the descriptor it was opened
    /// as (never its path again), and that is what the storage layer's
    /// errors name, but a person acts on the file's own path.
    pub(crate) fn naming(self, path: &std::path::Path) -> Fail {
        const FD: &str = "/proc/self/fd/";
        let Fail(code, reason) = self;
        let mut out = String::with_capacity(reason.len());
        let mut rest = reason.as_str();
        while let Some(at) = rest.find(FD) {
            let after = &rest[at + FD.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            out.push_str(&rest[..at]);
            if digits == 0 {
                out.push_str(FD);
            } else {
                out.push_str(&path.display().to_string());
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
        Fail(code, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_reason_names_the_file_not_its_descriptor() {
        let f = Fail(
            ErrorCode::SourceUnreadable,
            "cannot read source file while sending it: PUT a/b.bin: the request's body failed: \
             reading /proc/self/fd/17: Input/output error (os error 5)"
                .into(),
        );
        assert_eq!(
            f.naming(Path::new("/data/a/b.bin")).1,
            "cannot read source file while sending it: PUT a/b.bin: the request's body failed: \
             reading /data/a/b.bin: Input/output error (os error 5)"
        );
        // Every occurrence; a bare prefix without a number, and a reason
        // without one, stay as they are.
        let f = Fail(
            ErrorCode::DestError,
            "/proc/self/fd/3 then /proc/self/fd/ then /proc/self/fd/42x".into(),
        );
        assert_eq!(
            f.naming(Path::new("/s")),
            Fail(
                ErrorCode::DestError,
                "/s then /proc/self/fd/ then /sx".into()
            )
        );
        let f = Fail(ErrorCode::SourceChanged, "size changed".into());
        assert_eq!(f.naming(Path::new("/s")).1, "size changed");
    }
}
