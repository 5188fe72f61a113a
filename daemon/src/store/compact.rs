//! How an object's result columns are stored, small: at ten million
//! objects every byte of a row is ten megabytes of job store.
//!
//! - `checksum`: the CRC-64/XZ as 8 bytes, big-endian (a blob; the column's
//!   text affinity leaves blobs alone). `checksum_algo` stays NULL: there is
//!   one algorithm.
//! - `md5`: 32 lower-case hex digits as their 16 bytes; anything else as
//!   sent.
//! - `etag`: `=` when it is the MD5 as sent, `^` when it is the MD5 in
//!   upper case (OSS), else as sent; one that starts with `=`, `^` or `\`
//!   is stored behind a `\`, so no answer from a store reads back as
//!   another value.
//! - `verified_by`: the evidence as its bits in decimal digits
//!   (`proto::job::Evidence::bits`: `13`, not `size+md5+crc64`); rows
//!   written before schema 10 keep its words, which read the same (a word
//!   never starts with a digit).
//! - `src_ref`: a URL that ends with the object's relative path (an HTTP
//!   list's `prefix + path`) as `+prefix`; one that starts with `+` or `\`
//!   behind a `\`; else (an ETag) as listed.
//!
//! Rows written before schema 5 hold text in all of them, and read as
//! before: the migration escaped the few that started with a marker.

use rusqlite::types::{FromSqlError, ValueRef};

/// The MD5 as it is stored.
pub(super) fn md5(md5: &str) -> rusqlite::types::Value {
    let lower_hex = md5.len() == 32 && md5.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if lower_hex {
        let bytes = (0..16)
            .map(|i| u8::from_str_radix(&md5[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        rusqlite::types::Value::Blob(bytes)
    } else {
        rusqlite::types::Value::Text(md5.to_owned())
    }
}

/// The ETag as it is stored, next to `md5`.
pub(super) fn etag(etag: Option<&str>, md5: Option<&str>) -> Option<String> {
    let etag = etag?;
    Some(match md5 {
        Some(m) if m == etag => "=".into(),
        Some(m) if m.to_ascii_uppercase() == etag => "^".into(),
        _ if etag.starts_with(['=', '^', '\\']) => format!("\\{etag}"),
        _ => etag.to_owned(),
    })
}

/// The listed reference as it is stored, next to the object's path.
pub(super) fn src_ref(src_ref: Option<&str>, rel_path: &str) -> Option<String> {
    let s = src_ref?;
    Some(match s.strip_suffix(rel_path) {
        Some(prefix) if !rel_path.is_empty() => format!("+{prefix}"),
        _ if s.starts_with(['+', '\\']) => format!("\\{s}"),
        _ => s.to_owned(),
    })
}

pub(super) fn read_src_ref(stored: Option<String>, rel_path: &str) -> Option<String> {
    let s = stored?;
    Some(if let Some(prefix) = s.strip_prefix('+') {
        format!("{prefix}{rel_path}")
    } else if let Some(kept) = s.strip_prefix('\\') {
        kept.to_owned()
    } else {
        s
    })
}

fn text(v: ValueRef<'_>) -> rusqlite::Result<Option<String>> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
        ValueRef::Integer(i) => Ok(Some(i.to_string())),
        _ => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            v.data_type(),
            Box::new(FromSqlError::InvalidType),
        )),
    }
}

/// `verified_by` as its words (`size+md5`), from the bits or the words.
pub(super) fn read_verified_by(v: ValueRef<'_>) -> rusqlite::Result<Option<String>> {
    let words = |bits: u16| proto::job::Evidence::from_bits(bits).to_string();
    Ok(match v {
        ValueRef::Integer(bits) => Some(words(bits as u16)),
        ValueRef::Text(t) if t.first().is_some_and(u8::is_ascii_digit) => {
            let bits = std::str::from_utf8(t).ok().and_then(|s| s.parse().ok());
            Some(words(bits.unwrap_or(0)))
        }
        _ => text(v)?,
    })
}

pub(super) fn read_md5(v: ValueRef<'_>) -> rusqlite::Result<Option<String>> {
    match v {
        ValueRef::Blob(b) => Ok(Some(b.iter().map(|x| format!("{x:02x}")).collect())),
        v => text(v),
    }
}

pub(super) fn read_crc64(v: ValueRef<'_>) -> rusqlite::Result<Option<String>> {
    match v {
        ValueRef::Blob(b) => {
            let bytes: [u8; 8] = b.try_into().map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    v.data_type(),
                    Box::new(FromSqlError::InvalidBlobSize {
                        expected_size: 8,
                        blob_size: b.len(),
                    }),
                )
            })?;
            Ok(Some(u64::from_be_bytes(bytes).to_string()))
        }
        v => text(v),
    }
}

pub(super) fn read_etag(etag: ValueRef<'_>, md5: ValueRef<'_>) -> rusqlite::Result<Option<String>> {
    match text(etag)?.as_deref() {
        Some("=") => read_md5(md5),
        Some("^") => Ok(read_md5(md5)?.map(|m| m.to_ascii_uppercase())),
        Some(e) => Ok(Some(e.strip_prefix('\\').unwrap_or(e).to_owned())),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::types::{Value, ValueRef};

    use super::*;

    fn r(v: &Value) -> ValueRef<'_> {
        ValueRef::from(v)
    }

    #[test]
    fn results_read_back_as_they_were_sent() {
        let hex = "0123456789abcdef0123456789abcdef";
        let stored = md5(hex);
        assert!(matches!(&stored, Value::Blob(b) if b.len() == 16));
        assert_eq!(read_md5(r(&stored)).unwrap().as_deref(), Some(hex));
        // Not lower-case hex: kept as sent.
        for odd in ["0123456789ABCDEF0123456789ABCDEF", "abc", ""] {
            assert_eq!(read_md5(r(&md5(odd))).unwrap().as_deref(), Some(odd));
        }
        for (e, kept) in [
            (hex.to_string(), "="),
            (hex.to_ascii_uppercase(), "^"),
            (format!("{hex}-3"), "0123456789abcdef0123456789abcdef-3"),
            // A hostile or odd ETag that looks like a marker stays itself.
            ("=".to_string(), "\\="),
            ("^".to_string(), "\\^"),
            ("\\x".to_string(), "\\\\x"),
        ] {
            let s = etag(Some(&e), Some(hex)).unwrap();
            assert_eq!(s, kept);
            assert_eq!(
                read_etag(r(&Value::Text(s)), r(&stored))
                    .unwrap()
                    .as_deref(),
                Some(e.as_str())
            );
        }
        // An ETag with no MD5 (a store that sends none) is kept whole.
        assert_eq!(etag(Some("x"), None).as_deref(), Some("x"));
        assert_eq!(etag(None, Some(hex)), None);
        for c in [0, 1, u64::MAX, 0x9e37_79b9_7f4a_7c15] {
            let v = Value::Blob(c.to_be_bytes().to_vec());
            assert_eq!(read_crc64(r(&v)).unwrap(), Some(c.to_string()));
        }
        // Rows of schema 4: text.
        let old = Value::Text("18446744073709551615".into());
        assert_eq!(
            read_crc64(r(&old)).unwrap().as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(read_md5(r(&Value::Null)).unwrap(), None);
    }

    #[test]
    fn listed_references_read_back_as_they_were_listed() {
        let path = "d0001/00012345.dat";
        for (listed, kept) in [
            (
                "http://cdn.example.com/a/d0001/00012345.dat",
                "+http://cdn.example.com/a/",
            ),
            // Not ending with the path: the URL whole.
            (
                "http://cdn.example.com/other",
                "http://cdn.example.com/other",
            ),
            // An S3 source's ETag, quoted or not.
            ("\"0123abcd\"", "\"0123abcd\""),
            ("+odd", "\\+odd"),
            ("\\odd", "\\\\odd"),
            (path, "+"),
        ] {
            let s = src_ref(Some(listed), path).unwrap();
            assert_eq!(s, kept, "{listed}");
            assert_eq!(read_src_ref(Some(s), path).as_deref(), Some(listed));
        }
        assert_eq!(src_ref(None, path), None);
        assert_eq!(read_src_ref(None, path), None);
        // An empty path keeps the reference whole.
        assert_eq!(src_ref(Some("x"), "").as_deref(), Some("x"));
    }
}
