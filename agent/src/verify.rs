//! What the destination's answers prove about an object: pure comparisons
//! of what was read from the source with what the store reported, no IO.
//!
//! This module is the only code that can make a [`Verified`]: every copy
//! path (local files, buckets, HTTP lists, audits, the local-directory
//! destination) collects the store's answers in a [`Checks`] and asks
//! [`Checks::finish`], which refuses unless the answers prove what the
//! verification mode asks for. Table tests below cover every kind of
//! answer stores give.

use proto::job::{ErrorCode, VerifyMode};
use storage::checksum::{self, Digest};

/// A difference between source and destination, or a missing proof, with
/// its reason.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mismatch(pub(crate) ErrorCode, pub(crate) String);

fn mismatch(what: String) -> Mismatch {
    Mismatch(ErrorCode::ChecksumMismatch, what)
}

/// What was read from the source.
#[derive(Clone, Debug)]
pub(crate) struct Sent {
    /// The length always; the CRC64 where `hashed`, the MD5 where
    /// `md5_known`.
    digest: Digest,
    /// False when only the length is known (a size-only audit).
    hashed: bool,
    /// False for a multipart upload whose parts were read concurrently (or
    /// reused from an earlier run): no whole-object MD5 was computed.
    md5_known: bool,
    /// MD5 of each part in order, where the object was (or is compared as)
    /// a multipart upload: recomputes an `…-N` ETag. Empty when unknown.
    part_md5s: Vec<[u8; 16]>,
}

impl Sent {
    /// A whole object read in one pass.
    pub(crate) fn whole(digest: Digest) -> Sent {
        Sent::whole_with_parts(digest, Vec::new())
    }

    /// A whole object read in one pass, with the MD5 of each part as a
    /// multipart upload would have cut it.
    pub(crate) fn whole_with_parts(digest: Digest, part_md5s: Vec<[u8; 16]>) -> Sent {
        Sent {
            digest,
            hashed: true,
            md5_known: true,
            part_md5s,
        }
    }

    /// A multipart upload: its length, combined CRC64 and part MD5s, with
    /// no whole-object MD5.
    pub(crate) fn parts(len: u64, crc64: u64, part_md5s: Vec<[u8; 16]>) -> Sent {
        Sent {
            digest: Digest {
                md5: [0; 16],
                crc64,
                len,
            },
            hashed: true,
            md5_known: false,
            part_md5s,
        }
    }

    /// Bytes not read now: their length and the MD5 recorded when an
    /// earlier pass verified them.
    pub(crate) fn recorded(len: u64, md5: [u8; 16]) -> Sent {
        Sent {
            digest: Digest { md5, crc64: 0, len },
            hashed: false,
            md5_known: true,
            part_md5s: Vec::new(),
        }
    }

    /// Only the length (nothing was read).
    pub(crate) fn length(len: u64) -> Sent {
        Sent {
            digest: Digest {
                md5: [0; 16],
                crc64: 0,
                len,
            },
            hashed: false,
            md5_known: false,
            part_md5s: Vec::new(),
        }
    }
}

/// One answer from the destination: a PUT, a completed multipart upload,
/// a HEAD, or the size of a file written to a local directory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answer<'a> {
    /// What the store says it holds; `None` when the answer has no size
    /// (PUT and Complete answers).
    pub(crate) size: Option<u64>,
    /// Quoted or not, any case (OSS sends upper case); empty when none.
    pub(crate) etag: &'a str,
    pub(crate) crc64: Option<u64>,
    /// False when the store said the ETag is not an MD5 (SSE-KMS, SSE-C).
    pub(crate) etag_is_md5: bool,
}

impl Answer<'static> {
    /// An answer with only a size: a file in a local directory, or a
    /// stored object compared by size alone.
    pub(crate) fn size_only(size: u64) -> Answer<'static> {
        Answer {
            size: Some(size),
            etag: "",
            crc64: None,
            etag_is_md5: false,
        }
    }
}

impl<'a> From<&'a storage::s3::PutAnswer> for Answer<'a> {
    fn from(a: &'a storage::s3::PutAnswer) -> Self {
        Answer {
            size: None,
            etag: &a.etag,
            crc64: a.crc64,
            etag_is_md5: a.etag_is_md5,
        }
    }
}

impl<'a> From<&'a storage::s3::ObjectInfo> for Answer<'a> {
    fn from(i: &'a storage::s3::ObjectInfo) -> Self {
        Answer {
            size: Some(i.size),
            etag: &i.etag,
            crc64: i.crc64,
            etag_is_md5: i.etag_is_md5,
        }
    }
}

fn unquote(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks the ETag a store gave one uploaded part against the part's MD5.
/// A part ETag that is not an MD5 (or one the store says is not) proves
/// nothing and is accepted; the object's checks come later.
pub(crate) fn check_part(number: u32, sent: &Digest, answer: Answer<'_>) -> Result<(), Mismatch> {
    let etag = unquote(answer.etag);
    if answer.etag_is_md5 && is_md5_hex(etag) && !etag.eq_ignore_ascii_case(&sent.md5_hex()) {
        return Err(mismatch(format!(
            "part {number}: destination ETag {etag} differs from source MD5 {}",
            sent.md5_hex()
        )));
    }
    Ok(())
}

/// Compares bytes received from a bucket source with the ETag the source
/// listed, where that ETag is a plain MD5 the source vouches for. `Err`
/// means the bytes were damaged on the way (worth a retry).
pub(crate) fn check_source(
    listed_etag: &str,
    etag_is_md5: bool,
    got: &Digest,
) -> Result<(), String> {
    let etag = unquote(listed_etag);
    if etag_is_md5 && is_md5_hex(etag) && !etag.eq_ignore_ascii_case(&got.md5_hex()) {
        return Err(format!(
            "received bytes have MD5 {} but the source ETag is {etag}",
            got.md5_hex()
        ));
    }
    Ok(())
}

/// The answers collected for one object so far.
#[derive(Debug)]
pub(crate) struct Checks {
    sent: Sent,
    /// What was compared and agreed, in order, without repeats.
    by: Vec<&'static str>,
    /// The first ETag the destination gave; later answers must agree.
    etag: Option<String>,
    parts_resumed: u32,
}

impl Checks {
    pub(crate) fn new(sent: Sent) -> Checks {
        Checks {
            sent,
            by: Vec::new(),
            etag: None,
            parts_resumed: 0,
        }
    }

    /// Multipart parts reused from an earlier attempt (reported, not proof).
    pub(crate) fn with_parts_resumed(mut self, n: u32) -> Checks {
        self.parts_resumed = n;
        self
    }

    fn agreed(&mut self, what: &'static str) {
        if !self.by.contains(&what) {
            self.by.push(what);
        }
    }

    /// Takes one answer from the destination: its size, ETag (a plain MD5
    /// or a multipart `…-N`) and CRC64 are compared with what was sent,
    /// wherever the answer has them and they mean something.
    pub(crate) fn answer(&mut self, a: Answer<'_>) -> Result<(), Mismatch> {
        let sent = self.sent.digest;
        if let Some(size) = a.size {
            if size != sent.len {
                return Err(Mismatch(
                    ErrorCode::SizeNotMatch,
                    format!("destination has {size} bytes, source has {}", sent.len),
                ));
            }
            self.agreed("size");
        }
        let etag = unquote(a.etag);
        if !etag.is_empty() {
            match &self.etag {
                Some(first) if !first.eq_ignore_ascii_case(etag) => {
                    return Err(mismatch(format!(
                        "destination ETag {etag} differs from the uploaded {first}"
                    )));
                }
                Some(_) => {}
                None => self.etag = Some(etag.to_owned()),
            }
        }
        if a.etag_is_md5 {
            if is_md5_hex(etag) {
                if self.sent.md5_known {
                    if !etag.eq_ignore_ascii_case(&sent.md5_hex()) {
                        return Err(mismatch(format!(
                            "destination ETag {etag} differs from source MD5 {}",
                            sent.md5_hex()
                        )));
                    }
                    self.agreed("md5");
                }
            } else if let Some((_, n)) = etag.split_once('-')
                && n.parse::<usize>().ok() == Some(self.sent.part_md5s.len())
                && !self.sent.part_md5s.is_empty()
            {
                let expected = checksum::multipart_etag(self.sent.part_md5s.iter());
                if !etag.eq_ignore_ascii_case(&expected) {
                    return Err(mismatch(format!(
                        "destination ETag {etag} differs from the ETag of the source's parts {expected}"
                    )));
                }
                self.agreed("etag");
            }
        }
        if let (Some(crc), true) = (a.crc64, self.sent.hashed) {
            if crc != sent.crc64 {
                return Err(mismatch(format!(
                    "destination CRC64 {crc} differs from source CRC64 {}",
                    sent.crc64
                )));
            }
            self.agreed("crc64");
        }
        Ok(())
    }

    /// Takes the digest of the object as read back from the destination.
    pub(crate) fn read_back(&mut self, back: &Digest) -> Result<(), Mismatch> {
        let sent = &mut self.sent;
        if !sent.hashed {
            return Err(mismatch(
                "nothing was read from the source to compare".into(),
            ));
        }
        if back.len != sent.digest.len {
            return Err(Mismatch(
                ErrorCode::SizeNotMatch,
                format!(
                    "destination has {} bytes, source has {}",
                    back.len, sent.digest.len
                ),
            ));
        }
        if back.crc64 != sent.digest.crc64 || (sent.md5_known && back.md5 != sent.digest.md5) {
            return Err(mismatch(
                "the object read back from the destination differs from the source".into(),
            ));
        }
        if !sent.md5_known {
            // Same length and CRC64 as every byte sent: record its MD5.
            sent.digest.md5 = back.md5;
            sent.md5_known = true;
        }
        for what in ["size", "md5", "crc64", "readback"] {
            self.agreed(what);
        }
        Ok(())
    }

    fn has(&self, what: &str) -> bool {
        self.by.contains(&what)
    }

    /// Whether the answers so far prove what `mode` asks for: the size
    /// (an MD5 or a read-back covers it), plus for `checksum` a content
    /// checksum, plus for `readback` the bytes themselves.
    pub(crate) fn proven(&self, mode: VerifyMode) -> bool {
        proves(&self.by, mode)
    }

    /// The verified result, or why the answers do not prove it.
    pub(crate) fn finish(mut self, mode: VerifyMode) -> Result<Verified, Mismatch> {
        if !self.proven(mode) {
            return Err(mismatch(format!(
                "the destination gave nothing that proves the copy (ETag {}, compared: {})",
                self.etag.as_deref().unwrap_or("none"),
                if self.by.is_empty() {
                    "nothing".to_owned()
                } else {
                    self.by.join("+")
                }
            )));
        }
        if !self.has("size") {
            // Implied by the MD5 or the read-back.
            self.by.insert(0, "size");
        }
        Ok(Verified {
            digest: self.sent.digest,
            hashed: self.sent.hashed,
            md5_known: self.sent.md5_known,
            etag: self.etag,
            by: self.by,
            parts_resumed: self.parts_resumed,
            source_ident: None,
            metadata: None,
        })
    }
}

/// Proof that the destination holds exactly the source's bytes, as far as
/// the verification mode asks. Only [`Checks::finish`] makes one.
#[derive(Debug)]
pub(crate) struct Verified {
    digest: Digest,
    hashed: bool,
    md5_known: bool,
    etag: Option<String>,
    by: Vec<&'static str>,
    parts_resumed: u32,
    source_ident: Option<i64>,
    metadata: Option<String>,
}

impl Verified {
    /// Marks a copy whose bytes stayed at the destination (verified by an
    /// earlier pass) and whose metadata was rewritten in place: `in-place`
    /// in its evidence, so reports tell it from a copy of the bytes.
    pub(crate) fn in_place(mut self) -> Verified {
        self.by.push("in-place");
        self
    }

    /// The digest of the metadata written (or, for an audit, the
    /// source's): `storage::meta::ObjectHeaders::digest`.
    pub(crate) fn with_metadata(mut self, digest: String) -> Verified {
        self.metadata = Some(digest);
        self
    }
    pub(crate) fn metadata(&self) -> Option<String> {
        self.metadata.clone()
    }
    /// Names the local file that was read (its identity tag), for the
    /// daemon to hold against the listing.
    pub(crate) fn read_from(mut self, ident: i64) -> Verified {
        self.source_ident = Some(ident);
        self
    }
    pub(crate) fn source_ident(&self) -> Option<i64> {
        self.source_ident
    }
    pub(crate) fn size(&self) -> u64 {
        self.digest.len
    }
    pub(crate) fn crc64(&self) -> Option<u64> {
        self.hashed.then_some(self.digest.crc64)
    }
    pub(crate) fn md5_hex(&self) -> Option<String> {
        self.md5_known.then(|| self.digest.md5_hex())
    }
    pub(crate) fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
    pub(crate) fn by(&self) -> String {
        self.by.join("+")
    }
    pub(crate) fn parts_resumed(&self) -> u32 {
        self.parts_resumed
    }
}

/// Whether agreeing on `by` (what was compared: `size`, `md5`, `etag`,
/// `crc64`, `readback`) proves what `mode` asks: the size (an MD5 or a
/// read-back covers it), plus for `checksum` a content checksum, plus for
/// `readback` the bytes themselves. The one rule, for the executor that
/// compares and for the daemon that checks its report.
pub fn proves(by: &[&str], mode: VerifyMode) -> bool {
    let has = |w: &str| by.contains(&w);
    let size = has("size") || has("md5") || has("readback");
    let content = has("md5") || has("etag") || has("crc64") || has("readback");
    match mode {
        VerifyMode::Size => size,
        VerifyMode::Checksum => size && content,
        VerifyMode::ReadBack => has("readback"),
    }
}

/// [`proves`] for a report's `verified_by` (`size+md5+crc64`).
pub fn report_proves(verified_by: &str, mode: VerifyMode) -> bool {
    let by: Vec<&str> = verified_by.split('+').collect();
    proves(&by, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [VerifyMode; 3] = [VerifyMode::Size, VerifyMode::Checksum, VerifyMode::ReadBack];

    fn answer(size: Option<u64>, etag: &str, crc64: Option<u64>, etag_is_md5: bool) -> Answer<'_> {
        Answer {
            size,
            etag,
            crc64,
            etag_is_md5,
        }
    }

    /// Feeds `answers` (and an optional read-back) and returns the outcome
    /// per mode: `Ok(by)` or the error code.
    fn run(
        sent: &Sent,
        answers: &[Answer<'_>],
        back: Option<&Digest>,
        mode: VerifyMode,
    ) -> Result<String, ErrorCode> {
        let mut c = Checks::new(sent.clone());
        for a in answers {
            c.answer(*a).map_err(|m| m.0)?;
        }
        if let Some(b) = back {
            c.read_back(b).map_err(|m| m.0)?;
        }
        c.finish(mode).map(|v| v.by()).map_err(|m| m.0)
    }

    #[test]
    fn single_put_answers() {
        let d = checksum::digest(b"hello");
        let sent = Sent::whole(d);
        let md5 = d.md5_hex();
        let upper = format!("\"{}\"", md5.to_ascii_uppercase());
        let other = "0123456789abcdef0123456789abcdef";
        let cases: Vec<(Answer<'_>, [Result<&str, ErrorCode>; 3])> = vec![
            // Plain S3: the ETag is the MD5, which covers size and content.
            (
                answer(None, &md5, None, true),
                [
                    Ok("size+md5"),
                    Ok("size+md5"),
                    Err(ErrorCode::ChecksumMismatch),
                ],
            ),
            // OSS: upper case, quoted, with CRC64.
            (
                answer(None, &upper, Some(d.crc64), true),
                [
                    Ok("size+md5+crc64"),
                    Ok("size+md5+crc64"),
                    Err(ErrorCode::ChecksumMismatch),
                ],
            ),
            // A wrong CRC64 or a different MD5 is a mismatch in every mode.
            (
                answer(None, &upper, Some(d.crc64 ^ 1), true),
                [Err(ErrorCode::ChecksumMismatch); 3],
            ),
            (
                answer(None, other, None, true),
                [Err(ErrorCode::ChecksumMismatch); 3],
            ),
            // SSE-KMS/SSE-C: a 32-hex ETag that is not the MD5 proves
            // nothing either way; without a size nothing is proven.
            (
                answer(None, other, None, false),
                [Err(ErrorCode::ChecksumMismatch); 3],
            ),
            // Only a CRC64 without a size: the content, not the length.
            (
                answer(None, other, Some(d.crc64), false),
                [Err(ErrorCode::ChecksumMismatch); 3],
            ),
            // Not an MD5 at all (opaque ETag), or none.
            (
                answer(None, "abc-2", None, true),
                [Err(ErrorCode::ChecksumMismatch); 3],
            ),
            (
                answer(None, "", None, true),
                [Err(ErrorCode::ChecksumMismatch); 3],
            ),
        ];
        for (i, (a, want)) in cases.iter().enumerate() {
            for (mode, want) in MODES.iter().zip(want) {
                let got = run(&sent, &[*a], None, *mode);
                assert_eq!(got, want.map(str::to_owned), "case {i} {mode:?}");
            }
        }
    }

    #[test]
    fn head_after_an_answer_that_proves_nothing() {
        let d = checksum::digest(b"hello");
        let sent = Sent::whole(d);
        let other = "0123456789abcdef0123456789abcdef";
        // SSE-KMS PUT, then a HEAD with the size and a CRC64 (OSS + KMS).
        let put = answer(None, other, None, false);
        let head = answer(Some(5), other, Some(d.crc64), false);
        assert_eq!(
            run(&sent, &[put, head], None, VerifyMode::Checksum),
            Ok("size+crc64".into())
        );
        // SSE-KMS on plain S3: size only; checksum mode needs the bytes.
        let head = answer(Some(5), other, None, false);
        assert_eq!(
            run(&sent, &[put, head], None, VerifyMode::Size),
            Ok("size".into())
        );
        assert_eq!(
            run(&sent, &[put, head], None, VerifyMode::Checksum),
            Err(ErrorCode::ChecksumMismatch)
        );
        assert_eq!(
            run(&sent, &[put, head], Some(&d), VerifyMode::Checksum),
            Ok("size+md5+crc64+readback".into())
        );
        // A HEAD with another size, or another ETag than the PUT gave.
        let short = answer(Some(4), other, None, false);
        assert_eq!(
            run(&sent, &[put, short], None, VerifyMode::Size),
            Err(ErrorCode::SizeNotMatch)
        );
        let moved = answer(Some(5), "ffffffffffffffffffffffffffffffff", None, false);
        assert_eq!(
            run(&sent, &[put, moved], None, VerifyMode::Size),
            Err(ErrorCode::ChecksumMismatch)
        );
        // ETags compare case-insensitively across answers.
        let md5 = d.md5_hex();
        let upper = md5.to_ascii_uppercase();
        assert_eq!(
            run(
                &sent,
                &[
                    answer(None, &md5, None, true),
                    answer(Some(5), &upper, None, true)
                ],
                None,
                VerifyMode::Checksum
            ),
            Ok("md5+size".into())
        );
    }

    #[test]
    fn multipart_answers() {
        let p1 = checksum::digest(b"hello ");
        let p2 = checksum::digest(b"world");
        let whole = checksum::digest(b"hello world");
        let etag = checksum::multipart_etag([p1.md5, p2.md5].iter());
        let sent = Sent::parts(11, whole.crc64, vec![p1.md5, p2.md5]);
        let complete = answer(None, &etag, None, true);
        let head = answer(Some(11), &etag, None, true);
        assert_eq!(
            run(&sent, &[complete, head], None, VerifyMode::Checksum),
            Ok("etag+size".into())
        );
        // Complete alone has no size: not proven.
        assert_eq!(
            run(&sent, &[complete], None, VerifyMode::Checksum),
            Err(ErrorCode::ChecksumMismatch)
        );
        // Another part list, or another count: a mismatch, or nothing.
        let wrong = checksum::multipart_etag([p2.md5, p1.md5].iter());
        assert_eq!(
            run(
                &sent,
                &[answer(None, &wrong, None, true)],
                None,
                VerifyMode::Size
            ),
            Err(ErrorCode::ChecksumMismatch)
        );
        let three = format!("{}-3", &etag[..32]);
        assert_eq!(
            run(
                &sent,
                &[answer(Some(11), &three, None, true)],
                None,
                VerifyMode::Checksum
            ),
            Err(ErrorCode::ChecksumMismatch)
        );
        assert_eq!(
            run(
                &sent,
                &[answer(Some(11), &three, None, true)],
                None,
                VerifyMode::Size
            ),
            Ok("size".into())
        );
        // SSE-KMS multipart: the ETag means nothing; the CRC64 (OSS) does.
        assert_eq!(
            run(
                &sent,
                &[answer(Some(11), "ab-2", Some(whole.crc64), false)],
                None,
                VerifyMode::Checksum
            ),
            Ok("size+crc64".into())
        );
        // The read-back fills in the whole-object MD5 that was not computed.
        let mut c = Checks::new(sent.clone());
        c.answer(head).unwrap();
        c.read_back(&whole).unwrap();
        let v = c.finish(VerifyMode::ReadBack).unwrap();
        assert_eq!(v.md5_hex(), Some(whole.md5_hex()));
        assert_eq!(v.by(), "size+etag+md5+crc64+readback");
        // A plain-MD5 ETag for a multipart upload with no whole MD5 known
        // proves nothing (some stores answer so).
        assert_eq!(
            run(
                &sent,
                &[answer(Some(11), &whole.md5_hex(), None, true)],
                None,
                VerifyMode::Checksum
            ),
            Err(ErrorCode::ChecksumMismatch)
        );
    }

    #[test]
    fn read_back_and_local_files() {
        let d = checksum::digest(b"hello");
        let sent = Sent::whole(d);
        // A local destination: the file's size, then its bytes.
        let file = answer(Some(5), "", None, false);
        assert_eq!(
            run(&sent, &[file], None, VerifyMode::Size),
            Ok("size".into())
        );
        assert_eq!(
            run(&sent, &[file], Some(&d), VerifyMode::Checksum),
            Ok("size+md5+crc64+readback".into())
        );
        let other = checksum::digest(b"jello");
        assert_eq!(
            run(&sent, &[file], Some(&other), VerifyMode::ReadBack),
            Err(ErrorCode::ChecksumMismatch)
        );
        let short = checksum::digest(b"hell");
        assert_eq!(
            run(&sent, &[], Some(&short), VerifyMode::ReadBack),
            Err(ErrorCode::SizeNotMatch)
        );
        // Read-back mode is not satisfied by checksums alone.
        assert_eq!(
            run(
                &sent,
                &[answer(Some(5), &d.md5_hex(), Some(d.crc64), true)],
                None,
                VerifyMode::ReadBack
            ),
            Err(ErrorCode::ChecksumMismatch)
        );
    }

    #[test]
    fn size_only() {
        let sent = Sent::length(5);
        let head = answer(Some(5), "0123456789abcdef0123456789abcdef", Some(7), true);
        let mut c = Checks::new(sent.clone());
        c.answer(head).unwrap();
        let v = c.finish(VerifyMode::Size).unwrap();
        assert_eq!(
            (v.by(), v.crc64(), v.md5_hex()),
            ("size".into(), None, None)
        );
        assert_eq!(
            run(&sent, &[head], None, VerifyMode::Checksum),
            Err(ErrorCode::ChecksumMismatch)
        );
        assert_eq!(
            run(&sent, &[Answer::size_only(4)], None, VerifyMode::Size),
            Err(ErrorCode::SizeNotMatch)
        );
        let d = checksum::digest(b"hello");
        assert_eq!(
            run(&sent, &[], Some(&d), VerifyMode::ReadBack),
            Err(ErrorCode::ChecksumMismatch)
        );
    }

    #[test]
    fn parts_and_sources() {
        let d = checksum::digest(b"part");
        let md5 = d.md5_hex();
        assert!(check_part(1, &d, answer(None, &md5.to_ascii_uppercase(), None, true)).is_ok());
        assert!(check_part(1, &d, answer(None, &format!("\"{md5}\""), None, true)).is_ok());
        let other = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            check_part(2, &d, answer(None, other, None, true)).map_err(|m| m.0),
            Err(ErrorCode::ChecksumMismatch)
        );
        assert!(check_part(2, &d, answer(None, other, None, false)).is_ok());
        assert!(check_part(2, &d, answer(None, "opaque", None, true)).is_ok());

        assert!(check_source(&md5.to_ascii_uppercase(), true, &d).is_ok());
        assert!(check_source(other, true, &d).is_err());
        assert!(check_source(other, false, &d).is_ok());
        assert!(check_source("abc-3", true, &d).is_ok());
        assert!(check_source("", true, &d).is_ok());
    }
}
