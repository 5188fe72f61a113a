//! An object's metadata besides its bytes: the HTTP headers a store keeps
//! with it (Content-Type, -Encoding, -Disposition, -Language,
//! Cache-Control, Expires) and its user metadata, as read from a remote
//! source's GET and written with the destination's PUT (`copyMetadata`).
//!
//! Nothing is dropped silently: metadata the destination cannot take (user
//! metadata over [`USER_LIMIT`] bytes, a name or value that is not
//! printable ASCII, an `Expires` that is not an HTTP date) is refused with
//! the name of what is wrong, and the object fails `META_INVALID`.

/// The most user metadata (names and values together, in bytes) written:
/// S3's limit (OSS allows 8 KiB; held to the smaller so a job behaves the
/// same on every S3-compatible store).
pub const USER_LIMIT: usize = 2048;

/// What a destination object is created with besides its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// As the source said it (an HTTP date).
    pub expires: Option<String>,
    /// User metadata (`x-amz-meta-NAME` / `x-oss-meta-NAME`), names in lower
    /// case, sorted.
    pub user: Vec<(String, String)>,
    /// Object tags (`copyTags`), sorted.
    pub tags: Vec<(String, String)>,
}

/// A local file's attributes as user metadata under the names rclone uses
/// (`preserveFileAttrs`), so `rclone` reads them back: `mtime` (seconds
/// since the epoch with nanoseconds, as rclone's S3 backend writes it;
/// `mtime` is that string), `atime` (RFC 3339, nanoseconds), `mode` (the
/// whole `st_mode` in octal, `100644`), `uid` and `gid` (decimal).
pub fn file_attrs(md: &std::fs::Metadata, mtime: String) -> Vec<(&'static str, String)> {
    use std::os::unix::fs::MetadataExt;
    let atime =
        chrono::DateTime::from_timestamp(md.atime(), md.atime_nsec().clamp(0, 999_999_999) as u32)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default();
    vec![
        ("mtime", mtime),
        ("atime", atime),
        ("mode", format!("{:o}", md.mode())),
        ("uid", md.uid().to_string()),
        ("gid", md.gid().to_string()),
    ]
}

/// Tags as the `x-amz-tagging` header carries them: `k=v&k2=v2`,
/// URL-encoded.
pub fn tagging(tags: &[(String, String)]) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    tags.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn some(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// User metadata as an SDK answer has it, names in lower case, sorted.
fn user_of(m: Option<&std::collections::HashMap<String, String>>) -> Vec<(String, String)> {
    let mut user: Vec<(String, String)> = m
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    user.sort();
    user
}

impl ObjectHeaders {
    /// From an HTTP response's headers: the standard ones, and user
    /// metadata under `x-amz-meta-` or `x-oss-meta-` (the same name either
    /// way).
    pub fn from_http(h: &hyper::HeaderMap) -> ObjectHeaders {
        let get = |n: &str| some(h.get(n).and_then(|v| v.to_str().ok()));
        let mut user: Vec<(String, String)> = h
            .iter()
            .filter_map(|(k, v)| {
                let name = k.as_str();
                let n = name
                    .strip_prefix("x-amz-meta-")
                    .or_else(|| name.strip_prefix("x-oss-meta-"))?;
                // Bytes that are not ASCII are kept (and refused or
                // encoded later), never dropped.
                Some((
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                ))
            })
            .collect();
        user.sort();
        user.dedup_by(|a, b| a.0 == b.0);
        ObjectHeaders {
            content_type: get("content-type"),
            content_encoding: get("content-encoding"),
            content_disposition: get("content-disposition"),
            content_language: get("content-language"),
            cache_control: get("cache-control"),
            expires: get("expires"),
            user,
            tags: Vec::new(),
        }
    }

    /// From a GetObject answer.
    pub fn from_get(out: &aws_sdk_s3::operation::get_object::GetObjectOutput) -> ObjectHeaders {
        ObjectHeaders {
            content_type: some(out.content_type()),
            content_encoding: some(out.content_encoding()),
            content_disposition: some(out.content_disposition()),
            content_language: some(out.content_language()),
            cache_control: some(out.cache_control()),
            expires: some(out.expires_string()),
            user: user_of(out.metadata()),
            tags: Vec::new(),
        }
    }

    /// From a HeadObject answer.
    pub fn from_head(out: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> ObjectHeaders {
        ObjectHeaders {
            content_type: some(out.content_type()),
            content_encoding: some(out.content_encoding()),
            content_disposition: some(out.content_disposition()),
            content_language: some(out.content_language()),
            cache_control: some(out.cache_control()),
            expires: some(out.expires_string()),
            user: user_of(out.metadata()),
            tags: Vec::new(),
        }
    }

    /// The first difference between what was sent for `key` (`self`; with
    /// no Content-Type, the one guessed from the name) and what the
    /// destination holds: `Content-Type: sent "a", held "b"`. User metadata
    /// named `ossimport-*` is ours and not compared.
    pub fn difference(&self, held: &ObjectHeaders, key: &str) -> Option<String> {
        let guessed = content_type(key).to_string();
        let sent_type = self.content_type.clone().or(Some(guessed));
        let date = |h: &ObjectHeaders| h.expires_date().ok().flatten();
        let show = |v: &Option<String>| match v {
            Some(v) => format!("{v:?}"),
            None => "nothing".into(),
        };
        for (name, a, b) in [
            ("Content-Type", &sent_type, &held.content_type),
            (
                "Content-Encoding",
                &self.content_encoding,
                &held.content_encoding,
            ),
            (
                "Content-Disposition",
                &self.content_disposition,
                &held.content_disposition,
            ),
            (
                "Content-Language",
                &self.content_language,
                &held.content_language,
            ),
            ("Cache-Control", &self.cache_control, &held.cache_control),
        ] {
            if a != b {
                return Some(format!(
                    "{name}: sent {}, the destination holds {}",
                    show(a),
                    show(b)
                ));
            }
        }
        if date(self) != date(held) {
            return Some(format!(
                "Expires: sent {}, the destination holds {}",
                show(&self.expires),
                show(&held.expires)
            ));
        }
        let theirs = |h: &ObjectHeaders| -> Vec<(String, String)> {
            h.user
                .iter()
                .filter(|(k, _)| !k.starts_with("ossimport-"))
                .cloned()
                .collect()
        };
        let (a, b) = (theirs(self), theirs(held));
        if a != b {
            let names = |v: &[(String, String)]| {
                v.iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let differs = a
                .iter()
                .find(|x| !b.contains(x))
                .or_else(|| b.iter().find(|x| !a.contains(x)))
                .map(|(k, _)| k.as_str())
                .unwrap_or_default();
            return Some(format!(
                "user metadata {differs}: sent [{}], the destination holds [{}]",
                names(&a),
                names(&b)
            ));
        }
        None
    }

    /// User metadata values that are not ASCII, as S3 itself answers them:
    /// RFC 2047 encoded words (`=?UTF-8?B?...?=`). Returns the names
    /// encoded.
    pub fn encode_user_values(&mut self) -> Vec<String> {
        use base64::Engine;
        let mut encoded = Vec::new();
        for (k, v) in &mut self.user {
            if !v.is_ascii() {
                *v = format!(
                    "=?UTF-8?B?{}?=",
                    base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
                );
                encoded.push(k.clone());
            }
        }
        encoded
    }

    /// SHA-256 (hex) of the metadata as written for `key`, in a canonical
    /// form: one `name:value` line per standard header present
    /// (Content-Type guessed from the name where none was given), then
    /// `meta-NAME:value` per user metadata in name order, ours
    /// (`ossimport-*`) left out. What [`ObjectHeaders::difference`]
    /// compares, so equal digests mean equal metadata; the manifest's
    /// `metadata` column.
    pub fn digest(&self, key: &str) -> String {
        let mut text = String::new();
        let sent_type = self
            .content_type
            .clone()
            .unwrap_or_else(|| content_type(key).to_string());
        for (name, v) in [
            ("content-type", Some(&sent_type)),
            ("content-encoding", self.content_encoding.as_ref()),
            ("content-disposition", self.content_disposition.as_ref()),
            ("content-language", self.content_language.as_ref()),
            ("cache-control", self.cache_control.as_ref()),
            ("expires", self.expires.as_ref()),
        ] {
            if let Some(v) = v {
                text.push_str(&format!("{name}:{v}\n"));
            }
        }
        let mut user: Vec<_> = self
            .user
            .iter()
            .filter(|(k, _)| !k.starts_with("ossimport-"))
            .collect();
        user.sort();
        for (k, v) in user {
            text.push_str(&format!("meta-{k}:{v}\n"));
        }
        let mut h = proto::auth::Sha256Stream::default();
        h.update(text.as_bytes());
        h.finish_hex()
    }

    /// `Expires` as the SDK takes it.
    pub fn expires_date(&self) -> Result<Option<aws_smithy_types::DateTime>, String> {
        match &self.expires {
            None => Ok(None),
            Some(e) => aws_smithy_types::DateTime::from_str(
                e,
                aws_smithy_types::date_time::Format::HttpDate,
            )
            .map(Some)
            .map_err(|_| format!("Expires {e:?} is not an HTTP date")),
        }
    }

    /// Whether the destination can store all of it besides `ours` bytes of
    /// ossimport's own user metadata (`ossimport-mtime` and the like, which
    /// count towards the same limit): `Err` names what it cannot (see the
    /// module's rule).
    pub fn check(&self, ours: usize) -> Result<(), String> {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        let printable = |s: &str| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        for (name, v) in [
            ("Content-Type", &self.content_type),
            ("Content-Encoding", &self.content_encoding),
            ("Content-Disposition", &self.content_disposition),
            ("Content-Language", &self.content_language),
            ("Cache-Control", &self.cache_control),
            ("Expires", &self.expires),
        ] {
            if let Some(v) = v
                && !printable(v)
            {
                return Err(format!(
                    "{name} {v:?} is not printable ASCII, which the destination cannot store"
                ));
            }
        }
        self.expires_date()?;
        let mut total = 0;
        for (k, v) in &self.user {
            if !token(k) {
                return Err(format!(
                    "user metadata name {k:?} is not one an HTTP header can carry"
                ));
            }
            if !printable(v) {
                return Err(format!(
                    "user metadata {k} has a value that is not printable ASCII ({v:?}), which the destination cannot store"
                ));
            }
            total += k.len() + v.len();
        }
        if self.tags.len() > 10 {
            return Err(format!(
                "{} tags, over the destination's limit of 10",
                self.tags.len()
            ));
        }
        if let Some((k, _)) = self
            .tags
            .iter()
            .find(|(k, v)| k.chars().count() > 128 || v.chars().count() > 256)
        {
            return Err(format!(
                "tag {k:?} is longer than the destination takes (128 characters for a name, 256 for a value)"
            ));
        }
        if total + ours > USER_LIMIT {
            let (k, v) = self
                .user
                .iter()
                .max_by_key(|(k, v)| k.len() + v.len())
                .map(|(k, v)| (k.as_str(), v.len()))
                .unwrap_or_default();
            return Err(format!(
                "user metadata of {total} bytes (and {ours} of ossimport's own) is over the destination's limit of {USER_LIMIT} (the largest: {k}, {v} bytes)"
            ));
        }
        Ok(())
    }
}

/// Content-Type from the file name's extension, so browsers and CDNs serve
/// migrated objects as the originals were served.
pub fn content_type(key: &str) -> &'static str {
    let ext = key
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "application/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "txt" | "log" | "md" => "text/plain",
        "csv" => "text/csv",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_destination_cannot_store_is_named() {
        let ok = ObjectHeaders {
            content_type: Some("image/png".into()),
            content_encoding: Some("gzip".into()),
            expires: Some("Wed, 21 Oct 2026 07:28:00 GMT".into()),
            user: vec![("owner".into(), "web team".into())],
            ..Default::default()
        };
        ok.check(0).unwrap();
        assert!(ok.expires_date().unwrap().is_some());
        let cases = [
            (
                ObjectHeaders {
                    user: vec![("big".into(), "x".repeat(USER_LIMIT))],
                    ..ok.clone()
                },
                "over the destination's limit of 2048 (the largest: big",
            ),
            (
                ObjectHeaders {
                    user: vec![("city".into(), "Zürich".into())],
                    ..ok.clone()
                },
                "user metadata city has a value that is not printable ASCII",
            ),
            (
                ObjectHeaders {
                    user: vec![("line".into(), "a\nb".into())],
                    ..ok.clone()
                },
                "user metadata line has a value that is not printable ASCII",
            ),
            (
                ObjectHeaders {
                    user: vec![("a b".into(), "1".into())],
                    ..ok.clone()
                },
                "user metadata name \"a b\"",
            ),
            (
                ObjectHeaders {
                    expires: Some("tomorrow".into()),
                    ..ok.clone()
                },
                "Expires \"tomorrow\" is not an HTTP date",
            ),
            (
                ObjectHeaders {
                    content_disposition: Some("attachment; filename=\"ä.txt\"".into()),
                    ..ok.clone()
                },
                "Content-Disposition",
            ),
        ];
        // Our own names count too.
        let near = ObjectHeaders {
            user: vec![("big".into(), "x".repeat(USER_LIMIT - 10))],
            ..ok.clone()
        };
        near.check(0).unwrap();
        let e = near.check(40).unwrap_err();
        assert!(e.contains("(and 40 of ossimport's own)"), "{e}");
        for (h, want) in cases {
            let e = h.check(0).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn the_digest_is_of_what_is_compared() {
        let a = ObjectHeaders {
            user: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
            ..Default::default()
        };
        let mut b = ObjectHeaders {
            content_type: Some("text/plain".into()),
            user: vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("ossimport-mtime".into(), "9".into()),
            ],
            ..Default::default()
        };
        // The guessed type, the order of names and our own names do not
        // change it; a value does.
        assert_eq!(a.digest("x.txt"), b.digest("x.txt"));
        assert_ne!(a.digest("x.bin"), b.digest("x.bin"));
        assert_eq!(a.digest("x.txt").len(), 64);
        b.user[0].1 = "changed".into();
        assert_ne!(a.digest("x.txt"), b.digest("x.txt"));
    }

    #[test]
    fn non_ascii_values_are_sent_as_encoded_words() {
        let mut h = ObjectHeaders {
            user: vec![("city".into(), "Zürich".into()), ("n".into(), "1".into())],
            ..Default::default()
        };
        assert_eq!(h.encode_user_values(), vec!["city".to_string()]);
        assert_eq!(h.user[0].1, "=?UTF-8?B?WsO8cmljaA==?=");
        assert_eq!(h.user[1].1, "1");
        h.check(0).unwrap();
    }

    #[test]
    fn a_difference_is_named_with_both_values() {
        let sent = ObjectHeaders {
            content_encoding: Some("gzip".into()),
            user: vec![("owner".into(), "web".into())],
            ..Default::default()
        };
        // No Content-Type sent: the one guessed from the name is expected.
        let held = ObjectHeaders {
            content_type: Some("text/html".into()),
            user: vec![
                ("ossimport-mtime".into(), "1".into()),
                ("owner".into(), "web".into()),
            ],
            ..sent.clone()
        };
        assert_eq!(sent.difference(&held, "a/index.html"), None);
        let e = sent.difference(&held, "a/blob.bin").unwrap();
        assert_eq!(
            e,
            "Content-Type: sent \"application/octet-stream\", the destination holds \"text/html\""
        );
        let other = ObjectHeaders {
            user: vec![("owner".into(), "ops".into())],
            ..held.clone()
        };
        let e = sent.difference(&other, "a/index.html").unwrap();
        assert!(e.starts_with("user metadata owner"), "{e}");
    }

    #[test]
    fn from_http_takes_both_spellings_of_user_metadata() {
        let mut h = hyper::HeaderMap::new();
        h.insert("content-type", "text/html".parse().unwrap());
        h.insert("content-encoding", "gzip".parse().unwrap());
        h.insert("x-oss-meta-owner", "ops".parse().unwrap());
        h.insert("x-amz-meta-build", "42".parse().unwrap());
        h.insert("x-other", "no".parse().unwrap());
        let m = ObjectHeaders::from_http(&h);
        assert_eq!(m.content_type.as_deref(), Some("text/html"));
        assert_eq!(m.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(
            m.user,
            vec![
                ("build".into(), "42".into()),
                ("owner".into(), "ops".into())
            ]
        );
    }
}
