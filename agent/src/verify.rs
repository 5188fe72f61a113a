//! What a store's answer proves about an object: pure comparisons of what
//! was read from the source with what the destination reported, no IO.
//!
//! Every single-PUT path (local and remote sources) asks [`check_put`]; its
//! table tests cover each kind of answer stores give.

use proto::job::ErrorCode;
use storage::checksum::Digest;

/// The destination's answer to a PUT.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PutAnswer<'a> {
    /// Unquoted; compared case-insensitively (OSS sends upper case).
    pub(crate) etag: &'a str,
    pub(crate) crc64: Option<u64>,
    /// False when the store said the ETag is not an MD5 (SSE-KMS, SSE-C).
    pub(crate) etag_is_md5: bool,
}

impl<'a> From<&'a storage::s3::PutAnswer> for PutAnswer<'a> {
    fn from(a: &'a storage::s3::PutAnswer) -> Self {
        PutAnswer {
            etag: &a.etag,
            crc64: a.crc64,
            etag_is_md5: a.etag_is_md5,
        }
    }
}

/// A difference between source and destination, with its reason.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mismatch(pub(crate) ErrorCode, pub(crate) String);

/// Compares a PUT's answer with the digest of the bytes sent. Returns what
/// was compared (`md5`, `crc64`); empty when the answer proves nothing, in
/// which case the caller must HEAD or read back before calling it verified.
pub(crate) fn check_put(
    sent: &Digest,
    answer: PutAnswer<'_>,
) -> Result<Vec<&'static str>, Mismatch> {
    let mut by = Vec::new();
    let etag = answer.etag.trim_matches('"');
    let hex32 = etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit());
    if answer.etag_is_md5 && hex32 {
        if !etag.eq_ignore_ascii_case(&sent.md5_hex()) {
            return Err(Mismatch(
                ErrorCode::ChecksumMismatch,
                format!(
                    "destination ETag {etag} differs from source MD5 {}",
                    sent.md5_hex()
                ),
            ));
        }
        by.push("md5");
    }
    if let Some(crc) = answer.crc64 {
        if crc != sent.crc64 {
            return Err(Mismatch(
                ErrorCode::ChecksumMismatch,
                format!(
                    "destination CRC64 {crc} differs from source CRC64 {}",
                    sent.crc64
                ),
            ));
        }
        by.push("crc64");
    }
    Ok(by)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        etag: &str,
        crc64: Option<u64>,
        etag_is_md5: bool,
    ) -> Result<Vec<&'static str>, ErrorCode> {
        let sent = storage::checksum::digest(b"hello");
        check_put(
            &sent,
            PutAnswer {
                etag,
                crc64,
                etag_is_md5,
            },
        )
        .map_err(|m| m.0)
    }

    #[test]
    fn every_kind_of_put_answer() {
        let d = storage::checksum::digest(b"hello");
        let md5 = d.md5_hex();
        let upper = md5.to_ascii_uppercase();
        let quoted = format!("\"{upper}\"");
        let other = "0123456789abcdef0123456789abcdef";
        // Plain S3: the ETag is the MD5.
        assert_eq!(check(&md5, None, true), Ok(vec!["md5"]));
        // OSS: upper case, quoted, with CRC64.
        assert_eq!(
            check(&quoted, Some(d.crc64), true),
            Ok(vec!["md5", "crc64"])
        );
        assert_eq!(
            check(&upper, Some(d.crc64 ^ 1), true),
            Err(ErrorCode::ChecksumMismatch)
        );
        // A different MD5 is a mismatch.
        assert_eq!(check(other, None, true), Err(ErrorCode::ChecksumMismatch));
        // SSE-KMS/SSE-C: a 32-hex ETag that is not the MD5 proves nothing
        // either way; the CRC64 still counts where sent.
        assert_eq!(check(other, None, false), Ok(vec![]));
        assert_eq!(check(other, Some(d.crc64), false), Ok(vec!["crc64"]));
        // Not an MD5 at all (a multipart-style or opaque ETag): nothing.
        assert_eq!(check("abc-2", None, true), Ok(vec![]));
        assert_eq!(check("", None, true), Ok(vec![]));
        assert_eq!(
            check("zz23456789abcdef0123456789abcdef", None, true),
            Ok(vec![])
        );
    }
}
