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
//!   list's `prefix + path`) as a reference to its prefix, kept once per
//!   store in `url_prefixes` (schema 11): a blob of one byte (the first 127
//!   prefixes) to four (268 million), which no text value equals, so
//!   nothing listed reads back as one; one that starts with `+` or `\`
//!   behind a `\`; else (an ETag) as listed.
//!   Rows of schemas 5 to 10 hold `+prefix` for the same, and read the same.
//!
//! Rows written before schema 5 hold text in all of them, and read as
//! before: the migration escaped the few that started with a marker.

use rusqlite::OptionalExtension;
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
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SrcRef<'a> {
    /// A URL that is this prefix and then the object's path.
    Prefix(&'a str),
    Kept(String),
}

pub(super) fn src_ref<'a>(src_ref: Option<&'a str>, rel_path: &str) -> Option<SrcRef<'a>> {
    let s = src_ref?;
    Some(match s.strip_suffix(rel_path) {
        Some(prefix) if !rel_path.is_empty() => SrcRef::Prefix(prefix),
        _ if s.starts_with(['+', '\\']) => SrcRef::Kept(format!("\\{s}")),
        _ => SrcRef::Kept(s.to_owned()),
    })
}

/// The URL prefixes a transaction has looked up or added, by text.
pub(super) type Prefixes = std::collections::HashMap<String, Vec<u8>>;

/// The stored value of a listed reference: a prefix's reference (added to
/// `url_prefixes` the first time the store sees the prefix), or the text.
pub(super) fn store_src_ref(
    tx: &rusqlite::Transaction<'_>,
    known: &mut Prefixes,
    s: Option<SrcRef<'_>>,
) -> rusqlite::Result<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let prefix = match s {
        None => return Ok(Value::Null),
        Some(SrcRef::Kept(s)) => return Ok(Value::Text(s)),
        Some(SrcRef::Prefix(p)) => p,
    };
    if let Some(r) = known.get(prefix) {
        return Ok(Value::Blob(r.clone()));
    }
    let found: Option<Vec<u8>> = tx
        .prepare_cached("SELECT ref FROM url_prefixes WHERE prefix = ?1")?
        .query_row([prefix], |r| r.get(0))
        .optional()?;
    let r = match found {
        Some(r) => r,
        None => {
            // The next number after the highest reference (references sort
            // as their numbers, so this is one probe of the key's index,
            // however many prefixes a list has).
            let last: Option<Vec<u8>> =
                tx.query_row("SELECT max(ref) FROM url_prefixes", [], |r| r.get(0))?;
            let n = last.as_deref().and_then(prefix_number).unwrap_or(0) + 1;
            let r = prefix_ref(n);
            tx.prepare_cached("INSERT INTO url_prefixes (ref, prefix) VALUES (?1, ?2)")?
                .execute(rusqlite::params![r, prefix])?;
            r
        }
    };
    known.insert(prefix.to_owned(), r.clone());
    Ok(Value::Blob(r))
}

/// The `n`th prefix's reference (`n` from 1), in as few bytes as hold it,
/// sorting (as bytes) as the numbers do: the first byte says how many
/// follow, by its top bits (`0xxxxxxx` none: up to 127; `10xxxxxx` one: up
/// to 2^14 - 1; `110xxxxx` two: 2^21 - 1; `1110xxxx` three: 2^28 - 1;
/// `11110000` eight).
fn prefix_ref(n: u64) -> Vec<u8> {
    let b = n.to_be_bytes();
    match n {
        0..0x80 => vec![b[7]],
        0x80..0x4000 => vec![0x80 | b[6], b[7]],
        0x4000..0x20_0000 => vec![0xc0 | b[5], b[6], b[7]],
        0x20_0000..0x1000_0000 => vec![0xe0 | b[4], b[5], b[6], b[7]],
        _ => [&[0xf0][..], &b[..]].concat(),
    }
}

/// The number a reference of [`prefix_ref`] stands for.
fn prefix_number(r: &[u8]) -> Option<u64> {
    let (&first, rest) = r.split_first()?;
    let (mask, len) = match first {
        0..0x80 => (0x7f, 0),
        0x80..0xc0 => (0x3f, 1),
        0xc0..0xe0 => (0x1f, 2),
        0xe0..0xf0 => (0x0f, 3),
        0xf0 => (0, 8),
        _ => return None,
    };
    if rest.len() != len {
        return None;
    }
    Some(
        rest.iter()
            .fold(u64::from(first & mask), |n, &b| (n << 8) | u64::from(b)),
    )
}

/// The listed reference from its stored value and, for a prefix's
/// reference, that prefix (`(SELECT prefix FROM url_prefixes WHERE ref =
/// src_ref)` beside it in the query).
pub(super) fn read_src_ref(
    stored: ValueRef<'_>,
    prefix: Option<String>,
    rel_path: &str,
) -> rusqlite::Result<Option<String>> {
    if let ValueRef::Blob(_) = stored {
        return match prefix {
            Some(p) => Ok(Some(format!("{p}{rel_path}"))),
            None => Err(rusqlite::Error::FromSqlConversionFailure(
                0,
                stored.data_type(),
                "a URL prefix the store does not hold".into(),
            )),
        };
    }
    Ok(text(stored)?.map(|s| {
        if let Some(prefix) = s.strip_prefix('+') {
            format!("{prefix}{rel_path}")
        } else if let Some(kept) = s.strip_prefix('\\') {
            kept.to_owned()
        } else {
            s
        }
    }))
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
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE url_prefixes (ref BLOB PRIMARY KEY, prefix TEXT NOT NULL UNIQUE) WITHOUT ROWID;
             CREATE TABLE o (src_ref TEXT);",
        )
        .unwrap();
        let mut conn = conn;
        let tx = conn.transaction().unwrap();
        let mut known = Prefixes::new();
        let path = "d0001/00012345.dat";
        // Stored, then read back through the query every reader uses.
        let mut round_trip = |listed: Option<&str>, path: &str| {
            let stored = store_src_ref(&tx, &mut known, src_ref(listed, path)).unwrap();
            tx.execute("DELETE FROM o", []).unwrap();
            tx.execute("INSERT INTO o VALUES (?1)", [&stored]).unwrap();
            let back = tx
                .query_row(
                    "SELECT src_ref, (SELECT prefix FROM url_prefixes WHERE ref = src_ref) FROM o",
                    [],
                    |r| read_src_ref(r.get_ref(0)?, r.get(1)?, path),
                )
                .unwrap();
            (stored, back)
        };
        for (listed, kept) in [
            // Not ending with the path: the URL whole.
            (
                "http://cdn.example.com/other",
                "http://cdn.example.com/other",
            ),
            // An S3 source's ETag, quoted or not.
            ("\"0123abcd\"", "\"0123abcd\""),
            ("+odd", "\\+odd"),
            ("\\odd", "\\\\odd"),
            // Text that names a prefix's reference is still text.
            ("\u{1}", "\u{1}"),
        ] {
            let (stored, back) = round_trip(Some(listed), path);
            assert_eq!(stored, Value::Text(kept.into()), "{listed}");
            assert_eq!(back.as_deref(), Some(listed));
        }
        // URLs ending with the path: their prefixes, each kept once.
        let a = "http://cdn.example.com/a/";
        for (listed, r) in [
            (format!("{a}{path}"), vec![1]),
            (format!("http://other.example.com/{path}"), vec![2]),
            (format!("{a}{path}"), vec![1]),
            (path.to_string(), vec![3]),
        ] {
            let (stored, back) = round_trip(Some(&listed), path);
            assert_eq!(stored, Value::Blob(r), "{listed}");
            assert_eq!(back.as_deref(), Some(listed.as_str()));
        }
        // Past the first 127 prefixes, references take two bytes, each
        // still the next number.
        for n in 4..=200u64 {
            let listed = format!("http://h{n}.example.com/{path}");
            let (stored, back) = round_trip(Some(&listed), path);
            assert_eq!(stored, Value::Blob(prefix_ref(n)), "{listed}");
            assert_eq!(back.as_deref(), Some(listed.as_str()));
        }
        let (stored, back) = round_trip(None, path);
        assert_eq!((stored, back), (Value::Null, None));
        // An empty path keeps the reference whole.
        assert_eq!(src_ref(Some("x"), ""), Some(SrcRef::Kept("x".into())));
        // Rows of schemas 5 to 10.
        for (old, listed) in [
            ("+http://cdn.example.com/a/", format!("{a}{path}")),
            ("\\+odd", "+odd".into()),
        ] {
            let v = Value::Text(old.into());
            assert_eq!(
                read_src_ref(r(&v), None, path).unwrap().as_deref(),
                Some(listed.as_str())
            );
        }
        // A reference to a prefix the store does not hold is an error.
        assert!(read_src_ref(r(&Value::Blob(vec![9])), None, path).is_err());
        // References sort as their numbers, across every length.
        let numbers = [
            1u64,
            2,
            0x7f,
            0x80,
            0x3fff,
            0x4000,
            0x1f_ffff,
            0x20_0000,
            0x0fff_ffff,
            0x1000_0000,
            u64::MAX,
        ];
        for (n, bytes) in [
            (1u64, vec![1u8]),
            (0x7f, vec![0x7f]),
            (0x80, vec![0x80, 0x80]),
            (0x3fff, vec![0xbf, 0xff]),
            (0x4000, vec![0xc0, 0x40, 0x00]),
        ] {
            assert_eq!(prefix_ref(n), bytes, "{n}");
        }
        for w in numbers.windows(2) {
            let (a, b) = (prefix_ref(w[0]), prefix_ref(w[1]));
            assert!(a < b, "{:x} {a:?} {:x} {b:?}", w[0], w[1]);
            assert_eq!(prefix_number(&a), Some(w[0]));
            assert_eq!(prefix_number(&b), Some(w[1]));
        }
        assert_eq!(prefix_number(&[]), None);
        assert_eq!(prefix_number(&[0x80]), None, "a byte missing");
        assert_eq!(prefix_number(&[0xf8]), None);
    }
}
