//! Object key rules shared by OSS and S3: 1-1023 UTF-8 bytes, not starting
//! with `/` or `\`, no CR or LF.

/// A key as a URL path: every byte outside RFC 3986's unreserved set and
/// `/` percent-encoded (a CDN URL, an `x-amz-copy-source`).
pub fn url_path(key: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    utf8_percent_encode(key, KEEP).to_string()
}

/// Checks a destination key; the error is a sentence naming the problem.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("object key is empty".into());
    }
    if key.len() > 1023 {
        return Err(format!(
            "object key is {} bytes long, the limit is 1023",
            key.len()
        ));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err("object key starts with '/' or '\\'".into());
    }
    if key.contains('\r') || key.contains('\n') {
        return Err("object key contains a CR or LF character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn rules() {
        assert!(validate_key("a/b c/日本.txt").is_ok());
        assert!(validate_key(&"x".repeat(1023)).is_ok());
        assert!(
            validate_key(&"x".repeat(1024))
                .unwrap_err()
                .contains("1024 bytes")
        );
        assert!(validate_key("").is_err());
        assert!(validate_key("/a").is_err());
        assert!(validate_key("\\a").is_err());
        assert!(validate_key("a\nb").unwrap_err().contains("CR or LF"));
    }
}
