//! What the destination's answers prove about an object: pure comparisons
//! of what was read from the source with what the store reported, no IO.
//!
//! This module is the only code that can make a [`Verified`]: every copy
//! path (local files, buckets, HTTP lists, audits, the local-directory
//! destination) collects the store's answers in a [`Checks`] and asks
//! [`Checks::finish`], which refuses unless the answers prove what the
//! verification mode asks for. Table tests below cover every kind of
//! answer stores give.

use crate::fail::Fail;
use proto::job::{ErrorCode, Evidence, Proof, VerifyMode};
use storage::checksum::{self, Digest};

fn mismatch(what: String) -> Fail {
    Fail(ErrorCode::ChecksumMismatch, what)
}

/// What was read from the source.
#[derive(Clone, Debug)]
pub(crate) struct Sent {
    len: u64,
    /// `None` where it was not computed: the destination confirms a CRC
    /// (`storage::proof`), a multipart upload whose parts were read
    /// concurrently or reused from an earlier run, a size-only audit.
    md5: Option<[u8; 16]>,
    /// CRC-64/XZ; `None` where nothing was read.
    crc64: Option<u64>,
    /// CRC-64/NVME; `None` where nothing was read, or a multipart upload
    /// whose parts were not all sent with one.
    nvme: Option<u64>,
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
            len: digest.len,
            md5: digest.md5,
            crc64: Some(digest.crc64),
            nvme: Some(digest.nvme),
            part_md5s,
        }
    }

    /// A multipart upload: its length, combined CRCs and part MD5s, with
    /// no whole-object MD5.
    pub(crate) fn parts(len: u64, crc64: u64, nvme: Option<u64>, part_md5s: Vec<[u8; 16]>) -> Sent {
        Sent {
            len,
            md5: None,
            crc64: Some(crc64),
            nvme,
            part_md5s,
        }
    }

    /// Bytes not read now: their length and the MD5 recorded when an
    /// earlier pass verified them.
    pub(crate) fn recorded(len: u64, md5: [u8; 16]) -> Sent {
        Sent {
            len,
            md5: Some(md5),
            crc64: None,
            nvme: None,
            part_md5s: Vec::new(),
        }
    }

    /// Bytes not read now: their length and the full-object CRC-64/NVME
    /// the store keeps for them (a server-side copy of a multipart
    /// object).
    pub(crate) fn stored_nvme(len: u64, nvme: u64) -> Sent {
        Sent {
            len,
            md5: None,
            crc64: None,
            nvme: Some(nvme),
            part_md5s: Vec::new(),
        }
    }

    /// Only the length (nothing was read).
    pub(crate) fn length(len: u64) -> Sent {
        Sent {
            len,
            md5: None,
            crc64: None,
            nvme: None,
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
    /// CRC-64/XZ the store computed (OSS's `x-oss-hash-crc64ecma`).
    pub(crate) crc64: Option<u64>,
    /// CRC-64/NVME the store answered: taken only from a store known to
    /// check the value it is sent, or one that computed it unasked
    /// (`storage::proof`).
    pub(crate) nvme: Option<u64>,
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
            nvme: None,
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
            nvme: a.nvme,
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
            nvme: i.nvme,
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

/// Checks what a store answered for one uploaded part against the part's
/// digest: its ETag against the MD5 (where both are one), its CRC-64/XZ
/// and CRC-64/NVME where it answered them. A part answer that proves
/// nothing is accepted; the object's checks come later.
pub(crate) fn check_part(number: u32, sent: &Digest, answer: Answer<'_>) -> Result<(), Fail> {
    let etag = unquote(answer.etag);
    if let Some(md5) = sent.md5_hex()
        && answer.etag_is_md5
        && is_md5_hex(etag)
        && !etag.eq_ignore_ascii_case(&md5)
    {
        return Err(mismatch(format!(
            "part {number}: destination ETag {etag} differs from source MD5 {md5}"
        )));
    }
    if let Some(crc) = answer.crc64
        && crc != sent.crc64
    {
        return Err(mismatch(format!(
            "part {number}: destination CRC-64/XZ {crc} differs from the source's {}",
            sent.crc64
        )));
    }
    if let Some(crc) = answer.nvme
        && crc != sent.nvme
    {
        return Err(mismatch(format!(
            "part {number}: destination CRC-64/NVME {crc:016x} differs from the source's {:016x}",
            sent.nvme
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
    if etag_is_md5
        && is_md5_hex(etag)
        && let Some(md5) = got.md5_hex()
        && !etag.eq_ignore_ascii_case(&md5)
    {
        return Err(format!(
            "received bytes have MD5 {md5} but the source ETag is {etag}"
        ));
    }
    Ok(())
}

/// The answers collected for one object so far.
#[derive(Debug)]
pub(crate) struct Checks {
    sent: Sent,
    /// What was compared and agreed.
    by: Evidence,
    /// The first ETag the destination gave; later answers must agree.
    etag: Option<String>,
    parts_resumed: u32,
}

impl Checks {
    pub(crate) fn new(sent: Sent) -> Checks {
        Checks {
            sent,
            by: Evidence::default(),
            etag: None,
            parts_resumed: 0,
        }
    }

    /// Multipart parts reused from an earlier attempt (reported, not proof).
    pub(crate) fn with_parts_resumed(mut self, n: u32) -> Checks {
        self.parts_resumed = n;
        self
    }

    fn agreed(&mut self, what: Proof) {
        self.by = self.by.with(what);
    }

    /// Takes one answer from the destination: its size, ETag (a plain MD5
    /// or a multipart `…-N`), CRC-64/XZ and CRC-64/NVME are compared with
    /// what was sent, wherever the answer has them and they mean something.
    pub(crate) fn answer(&mut self, a: Answer<'_>) -> Result<(), Fail> {
        let sent = &self.sent;
        if let Some(size) = a.size {
            if size != sent.len {
                return Err(Fail(
                    ErrorCode::SizeNotMatch,
                    format!("destination has {size} bytes, source has {}", sent.len),
                ));
            }
            self.agreed(Proof::Size);
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
        let sent = &self.sent;
        if a.etag_is_md5 {
            if is_md5_hex(etag) {
                if let Some(md5) = sent.md5 {
                    let md5 = checksum::hex(&md5);
                    if !etag.eq_ignore_ascii_case(&md5) {
                        return Err(mismatch(format!(
                            "destination ETag {etag} differs from source MD5 {md5}"
                        )));
                    }
                    self.agreed(Proof::Md5);
                }
            } else if let Some((_, n)) = etag.split_once('-')
                && n.parse::<usize>().ok() == Some(sent.part_md5s.len())
                && !sent.part_md5s.is_empty()
            {
                let expected = checksum::multipart_etag(sent.part_md5s.iter());
                if !etag.eq_ignore_ascii_case(&expected) {
                    return Err(mismatch(format!(
                        "destination ETag {etag} differs from the ETag of the source's parts {expected}"
                    )));
                }
                self.agreed(Proof::Etag);
            }
        }
        let sent = &self.sent;
        if let (Some(crc), Some(ours)) = (a.crc64, sent.crc64) {
            if crc != ours {
                return Err(mismatch(format!(
                    "destination CRC-64/XZ {crc} differs from the source's {ours}"
                )));
            }
            self.agreed(Proof::Crc64Xz);
        }
        let sent = &self.sent;
        if let (Some(crc), Some(ours)) = (a.nvme, sent.nvme) {
            if crc != ours {
                return Err(mismatch(format!(
                    "destination CRC-64/NVME {crc:016x} differs from the source's {ours:016x}"
                )));
            }
            self.agreed(Proof::Crc64Nvme);
        }
        Ok(())
    }

    /// Takes the digest of the object as read back from the destination.
    pub(crate) fn read_back(&mut self, back: &Digest) -> Result<(), Fail> {
        let sent = &mut self.sent;
        let Some(crc64) = sent.crc64 else {
            return Err(mismatch(
                "nothing was read from the source to compare".into(),
            ));
        };
        if back.len != sent.len {
            return Err(Fail(
                ErrorCode::SizeNotMatch,
                format!(
                    "destination has {} bytes, source has {}",
                    back.len, sent.len
                ),
            ));
        }
        let md5_differs = matches!((sent.md5, back.md5), (Some(a), Some(b)) if a != b);
        if back.crc64 != crc64 || md5_differs {
            return Err(mismatch(
                "the object read back from the destination differs from the source".into(),
            ));
        }
        if sent.md5.is_none() {
            // Same length and CRC64 as every byte sent: record its MD5.
            sent.md5 = back.md5;
        }
        for what in [Proof::Size, Proof::Md5, Proof::Crc64Xz, Proof::ReadBack] {
            self.agreed(what);
        }
        Ok(())
    }

    /// Whether the answers so far prove what `mode` asks for: the size
    /// (an MD5 or a read-back covers it), plus for `checksum` a content
    /// checksum, plus for `readback` the bytes themselves.
    pub(crate) fn proven(&self, mode: VerifyMode) -> bool {
        self.by.proves(mode)
    }

    /// The verified result, or why the answers do not prove it.
    pub(crate) fn finish(mut self, mode: VerifyMode) -> Result<Verified, Fail> {
        if !self.proven(mode) {
            return Err(mismatch(format!(
                "the destination gave nothing that proves the copy (ETag {}, compared: {})",
                self.etag.as_deref().unwrap_or("none"),
                if self.by.is_empty() {
                    "nothing".to_owned()
                } else {
                    self.by.to_string()
                }
            )));
        }
        // Implied by the MD5, a CRC or the read-back.
        self.by = self.by.with(Proof::Size);
        Ok(Verified {
            sent: self.sent,
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
    sent: Sent,
    etag: Option<String>,
    by: Evidence,
    parts_resumed: u32,
    source_ident: Option<i64>,
    metadata: Option<String>,
}

impl Verified {
    /// Marks a copy whose bytes stayed at the destination (verified by an
    /// earlier pass) and whose metadata was rewritten in place: `in-place`
    /// in its evidence, so reports tell it from a copy of the bytes.
    pub(crate) fn in_place(mut self) -> Verified {
        self.by = self.by.with(Proof::InPlace);
        self
    }

    /// Marks a copy made within the store (`server-side` in its evidence):
    /// its MD5 is the source's listed ETag, which the copy's answer
    /// matched; no byte was read by us.
    pub(crate) fn server_side(mut self) -> Verified {
        self.by = self.by.with(Proof::ServerSide);
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
        self.sent.len
    }
    pub(crate) fn crc64(&self) -> Option<u64> {
        self.sent.crc64
    }
    pub(crate) fn md5_hex(&self) -> Option<String> {
        self.sent.md5.map(|m| checksum::hex(&m))
    }
    pub(crate) fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
    pub(crate) fn by(&self) -> Evidence {
        self.by
    }
    pub(crate) fn parts_resumed(&self) -> u32 {
        self.parts_resumed
    }
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
            nvme: None,
            etag_is_md5,
        }
    }

    fn with_nvme(a: Answer<'_>, nvme: u64) -> Answer<'_> {
        Answer {
            nvme: Some(nvme),
            ..a
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
        c.finish(mode).map(|v| v.by().to_string()).map_err(|m| m.0)
    }

    #[test]
    fn single_put_answers() {
        let d = checksum::digest(b"hello");
        let sent = Sent::whole(d);
        let md5 = d.md5_hex().unwrap();
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
                    Ok("size+md5+crc64xz"),
                    Ok("size+md5+crc64xz"),
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
            // A CRC-64 the store computed over what it stored covers the
            // length as an MD5 does.
            (
                answer(None, other, Some(d.crc64), false),
                [
                    Ok("size+crc64xz"),
                    Ok("size+crc64xz"),
                    Err(ErrorCode::ChecksumMismatch),
                ],
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
            Ok("size+crc64xz".into())
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
            Ok("size+md5+crc64xz+readback".into())
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
        let md5 = d.md5_hex().unwrap();
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
            Ok("size+md5".into())
        );
    }

    #[test]
    fn multipart_answers() {
        let p1 = checksum::digest(b"hello ");
        let p2 = checksum::digest(b"world");
        let whole = checksum::digest(b"hello world");
        let etag = checksum::multipart_etag([p1.md5.unwrap(), p2.md5.unwrap()].iter());
        let sent = Sent::parts(
            11,
            whole.crc64,
            None,
            vec![p1.md5.unwrap(), p2.md5.unwrap()],
        );
        let complete = answer(None, &etag, None, true);
        let head = answer(Some(11), &etag, None, true);
        assert_eq!(
            run(&sent, &[complete, head], None, VerifyMode::Checksum),
            Ok("size+etag".into())
        );
        // Complete alone has no size: not proven.
        assert_eq!(
            run(&sent, &[complete], None, VerifyMode::Checksum),
            Err(ErrorCode::ChecksumMismatch)
        );
        // Another part list, or another count: a mismatch, or nothing.
        let wrong = checksum::multipart_etag([p2.md5.unwrap(), p1.md5.unwrap()].iter());
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
            Ok("size+crc64xz".into())
        );
        // The read-back fills in the whole-object MD5 that was not computed.
        let mut c = Checks::new(sent.clone());
        c.answer(head).unwrap();
        c.read_back(&whole).unwrap();
        let v = c.finish(VerifyMode::ReadBack).unwrap();
        assert_eq!(v.md5_hex(), whole.md5_hex());
        assert_eq!(v.by().to_string(), "size+etag+md5+crc64xz+readback");
        // A plain-MD5 ETag for a multipart upload with no whole MD5 known
        // proves nothing (some stores answer so).
        assert_eq!(
            run(
                &sent,
                &[answer(Some(11), &whole.md5_hex().unwrap(), None, true)],
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
            Ok("size+md5+crc64xz+readback".into())
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
                &[answer(Some(5), &d.md5_hex().unwrap(), Some(d.crc64), true)],
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
        let md5 = d.md5_hex().unwrap();
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

    /// Hashed for a store that confirms a CRC: no MD5 computed. The CRC it
    /// answers proves the copy; its ETag (an MD5 we did not compute) proves
    /// nothing and is no mismatch either.
    #[test]
    fn crc_proofs_without_md5() {
        let d = checksum::digest_with(b"hello", false);
        let md5 = checksum::digest(b"hello").md5_hex().unwrap();
        let sent = Sent::whole(d);
        let upper = md5.to_ascii_uppercase();
        let cases: Vec<(Answer<'_>, [Result<&str, ErrorCode>; 3])> = vec![
            // S3 / SeaweedFS: the CRC-64/NVME we sent, checked and answered.
            (
                with_nvme(answer(None, &md5, None, true), d.nvme),
                [
                    Ok("size+crc64nvme"),
                    Ok("size+crc64nvme"),
                    Err(ErrorCode::ChecksumMismatch),
                ],
            ),
            // OSS: its own CRC-64/XZ, an upper-case ETag.
            (
                answer(None, &upper, Some(d.crc64), true),
                [
                    Ok("size+crc64xz"),
                    Ok("size+crc64xz"),
                    Err(ErrorCode::ChecksumMismatch),
                ],
            ),
            // Another CRC is a mismatch in every mode.
            (
                with_nvme(answer(None, &md5, None, true), d.nvme ^ 1),
                [Err(ErrorCode::ChecksumMismatch); 3],
            ),
            (
                answer(None, &md5, Some(d.crc64 ^ 1), true),
                [Err(ErrorCode::ChecksumMismatch); 3],
            ),
            // A front that drops the checksum: the ETag alone proves
            // nothing without our MD5 (a HEAD and a read-back follow).
            (
                answer(None, &md5, None, true),
                [Err(ErrorCode::ChecksumMismatch); 3],
            ),
        ];
        for (i, (a, want)) in cases.iter().enumerate() {
            for (mode, want) in MODES.iter().zip(want) {
                let got = run(&sent, &[*a], None, *mode);
                assert_eq!(got, want.map(str::to_owned), "case {i} {mode:?}");
            }
        }
        // The read-back then proves it, and records the MD5.
        let back = checksum::digest(b"hello");
        let mut c = Checks::new(sent.clone());
        c.answer(answer(Some(5), &md5, None, true)).unwrap();
        c.read_back(&back).unwrap();
        let v = c.finish(VerifyMode::Checksum).unwrap();
        assert_eq!(v.md5_hex().as_deref(), Some(md5.as_str()));
        assert_eq!(v.by().to_string(), "size+md5+crc64xz+readback");
    }

    /// A multipart upload with `ChecksumType=FULL_OBJECT`: the full
    /// object's CRC-64/NVME on Complete proves it whatever the part size;
    /// each part's answer is held to the part's own.
    #[test]
    fn full_object_crc_on_complete() {
        let p1 = checksum::digest_with(b"hello ", false);
        let p2 = checksum::digest_with(b"world", false);
        let whole = checksum::digest_with(b"hello world", false);
        let nvme = checksum::nvme_of_parts([(p1.nvme, 6), (p2.nvme, 5)]);
        assert_eq!(nvme, whole.nvme);
        let sent = Sent::parts(11, whole.crc64, Some(nvme), Vec::new());
        let complete = with_nvme(
            answer(None, "0123456789abcdef0123456789abcdef-2", None, true),
            nvme,
        );
        assert_eq!(
            run(&sent, &[complete], None, VerifyMode::Checksum),
            Ok("size+crc64nvme".into())
        );
        let wrong = with_nvme(complete, nvme ^ 1);
        assert_eq!(
            run(&sent, &[wrong], None, VerifyMode::Size),
            Err(ErrorCode::ChecksumMismatch)
        );
        // No part MD5s and no full-object value: nothing proven.
        let bare = answer(None, "0123456789abcdef0123456789abcdef-2", None, true);
        assert_eq!(
            run(&sent, &[bare], None, VerifyMode::Checksum),
            Err(ErrorCode::ChecksumMismatch)
        );
        assert!(check_part(1, &p1, with_nvme(bare, p1.nvme)).is_ok());
        assert_eq!(
            check_part(1, &p1, with_nvme(bare, p2.nvme)).map_err(|m| m.0),
            Err(ErrorCode::ChecksumMismatch)
        );
        assert_eq!(
            check_part(1, &p1, answer(None, "x", Some(p1.crc64 ^ 1), true)).map_err(|m| m.0),
            Err(ErrorCode::ChecksumMismatch)
        );
        // The daemon's rule agrees, and still reads the former name.
        let proves = |by: &str, mode| Evidence::parse(by).proves(mode);
        assert!(proves("size+crc64nvme", VerifyMode::Checksum));
        assert!(proves("crc64xz", VerifyMode::Checksum));
        assert!(proves("size+md5+crc64", VerifyMode::Checksum));
        assert!(!proves("crc64nvme", VerifyMode::ReadBack));
    }
}
