//! Checksums computed while bytes pass through: CRC-64/XZ (what OSS reports
//! as `x-oss-hash-crc64ecma`), CRC-64/NVME (what S3 takes and answers as
//! `x-amz-checksum-crc64nvme`) and, where a store confirms nothing better,
//! MD5 (what S3 and OSS put in the ETag).
//!
//! OSS calls its checksum "CRC64-ECMA" but it is the reflected variant with
//! all-ones init and xorout, i.e. CRC-64/XZ (check value 0x995dc9bbdf1939fa),
//! not CRC-64/ECMA-182. Every digest is updated from the same buffer in one
//! pass. The two CRCs cost tens of GB/s per core and are always computed;
//! MD5 (about 0.6 GB/s) only when asked for ([`Hasher::with_md5`]).

use md5::{Digest as _, Md5};

const CRC64: crc_fast::CrcAlgorithm = crc_fast::CrcAlgorithm::Crc64Xz;
const NVME: crc_fast::CrcAlgorithm = crc_fast::CrcAlgorithm::Crc64Nvme;

/// The checksums of a byte sequence: its CRC-64/XZ and CRC-64/NVME, and its
/// MD5 where it was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    pub md5: Option<[u8; 16]>,
    pub crc64: u64,
    pub nvme: u64,
    pub len: u64,
}

impl Digest {
    pub fn md5_hex(&self) -> Option<String> {
        self.md5.as_ref().map(|m| hex(m))
    }

    /// The base64 form S3 expects in `Content-MD5`.
    pub fn md5_base64(&self) -> Option<String> {
        self.md5.map(aws_smithy_types::base64::encode)
    }

    /// The base64 form of the CRC-64/NVME S3 expects in
    /// `x-amz-checksum-crc64nvme`.
    pub fn nvme_base64(&self) -> String {
        nvme_base64(self.nvme)
    }
}

/// `x-amz-checksum-crc64nvme`'s form: the 8 bytes, big-endian, in base64.
pub fn nvme_base64(crc: u64) -> String {
    aws_smithy_types::base64::encode(crc.to_be_bytes())
}

/// Reads an `x-amz-checksum-crc64nvme` value.
pub fn parse_nvme_base64(s: &str) -> Option<u64> {
    let bytes = aws_smithy_types::base64::decode(s.trim()).ok()?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// CRC-64/XZ of a byte sequence (no MD5).
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(CRC64, data)
}

/// Incremental CRC-64/XZ, CRC-64/NVME and (where asked for) MD5.
pub struct Hasher {
    md5: Option<Md5>,
    crc: crc_fast::Digest,
    nvme: crc_fast::Digest,
    len: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Hasher {
    /// With MD5.
    pub fn new() -> Hasher {
        Hasher::with_md5(true)
    }

    pub fn with_md5(md5: bool) -> Hasher {
        Hasher {
            md5: md5.then(Md5::new),
            crc: crc_fast::Digest::new(CRC64),
            nvme: crc_fast::Digest::new(NVME),
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(m) = &mut self.md5 {
            m.update(data);
        }
        self.crc.update(data);
        self.nvme.update(data);
        self.len += data.len() as u64;
    }

    pub fn finish(self) -> Digest {
        Digest {
            md5: self.md5.map(|m| m.finalize().into()),
            crc64: self.crc.finalize(),
            nvme: self.nvme.finalize(),
            len: self.len,
        }
    }
}

/// Digest of one buffer, with MD5.
pub fn digest(data: &[u8]) -> Digest {
    digest_with(data, true)
}

/// Digest of one buffer, with MD5 where `md5`.
pub fn digest_with(data: &[u8], md5: bool) -> Digest {
    let mut h = Hasher::with_md5(md5);
    h.update(data);
    h.finish()
}

/// CRC64 of the concatenation `a || b`, given `b`'s length.
pub fn crc64_combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    crc_fast::checksum_combine(CRC64, crc_a, crc_b, len_b)
}

/// CRC64 of an object from the CRC64s and lengths of its parts, in order.
pub fn crc64_of_parts(parts: impl IntoIterator<Item = (u64, u64)>) -> u64 {
    let mut acc: Option<u64> = None;
    for (crc, len) in parts {
        acc = Some(match acc {
            None => crc,
            Some(a) => crc64_combine(a, crc, len),
        });
    }
    // CRC-64/XZ of the empty string is 0.
    acc.unwrap_or(0)
}

/// CRC-64/NVME of an object from the CRC-64/NVMEs and lengths of its
/// parts, in order: the full-object checksum of a multipart upload.
pub fn nvme_of_parts(parts: impl IntoIterator<Item = (u64, u64)>) -> u64 {
    let mut acc: Option<u64> = None;
    for (crc, len) in parts {
        acc = Some(match acc {
            None => crc,
            Some(a) => crc_fast::checksum_combine(NVME, a, crc, len),
        });
    }
    // CRC-64/NVME of the empty string is 0 too.
    acc.unwrap_or(0)
}

/// The ETag S3 and OSS give a multipart object: MD5 of the concatenated part
/// MD5s, a dash, and the part count.
pub fn multipart_etag<'a>(part_md5s: impl IntoIterator<Item = &'a [u8; 16]>) -> String {
    let mut h = Md5::new();
    let mut n = 0;
    for m in part_md5s {
        h.update(m);
        n += 1;
    }
    let d: [u8; 16] = h.finalize().into();
    format!("{}-{}", hex(&d), n)
}

/// Strips the quotes S3 puts around ETags and lower-cases them.
pub fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_ascii_lowercase()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses a 32-digit hex MD5.
pub fn parse_md5_hex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        let d = digest(b"123456789");
        assert_eq!(d.crc64, 0x995d_c9bb_df19_39fa, "CRC-64/XZ check value");
        assert_eq!(d.nvme, 0xae8b_1486_0a79_9888, "CRC-64/NVME check value");
        assert_eq!(
            d.md5_hex().as_deref(),
            Some("25f9e794323b453885f5181f1b624d0b")
        );
        assert_eq!(d.len, 9);
        assert_eq!(digest(b"").crc64, 0);
        assert_eq!(digest(b"").nvme, 0);
        // Without MD5: the same CRCs, no MD5.
        let c = digest_with(b"123456789", false);
        assert_eq!((c.md5, c.crc64, c.nvme), (None, d.crc64, d.nvme));
        assert_eq!(parse_nvme_base64(&d.nvme_base64()), Some(d.nvme));
        assert_eq!(parse_nvme_base64("not base64"), None);
    }

    #[test]
    fn combine_matches_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let parts: Vec<(u64, u64)> = data
            .chunks(30_000)
            .map(|c| (digest(c).crc64, c.len() as u64))
            .collect();
        assert_eq!(crc64_of_parts(parts), digest(&data).crc64);
        let parts: Vec<(u64, u64)> = data
            .chunks(30_000)
            .map(|c| (digest(c).nvme, c.len() as u64))
            .collect();
        assert_eq!(nvme_of_parts(parts), digest(&data).nvme);
    }

    #[test]
    fn multipart_etag_format() {
        let a = digest(b"a").md5.unwrap();
        let b = digest(b"b").md5.unwrap();
        let etag = multipart_etag([&a, &b]);
        assert!(etag.ends_with("-2"));
        let mut cat = Vec::new();
        cat.extend_from_slice(&a);
        cat.extend_from_slice(&b);
        assert_eq!(etag, format!("{}-2", digest(&cat).md5_hex().unwrap()));
        assert_eq!(parse_md5_hex(&hex(&a)), Some(a));
        assert_eq!(normalize_etag("\"ABC\""), "abc");
    }
}
