//! Java-properties reader: turns the text of `job.cfg` or `sys.properties` into
//! key/value entries that remember their line, with no knowledge of what the keys mean.
//!
//! It follows `java.util.Properties.load`, which is what the original used, so that
//! existing files read the same: `#`/`!` comment lines, the key ends at the first
//! unescaped `=`, `:` or whitespace, a line ending in an odd number of backslashes
//! continues on the next line, and `\t \n \r \f \uXXXX` plus `\<any>` escapes. Two
//! deliberate differences: trailing unescaped whitespace is dropped from values (the
//! shipped templates contain `isAuditAfterImport=true `, which Java's
//! `Boolean.parseBoolean` silently read as `false`), and a key given twice is an error
//! instead of "last one wins".

use std::collections::HashMap;

use super::ConfigError;

/// One `key=value` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key with escapes decoded, e.g. `workerMaxThroughput(KB/s)`.
    pub key: String,
    /// The value with escapes decoded and surrounding whitespace removed.
    pub value: String,
    /// 1-based line on which the entry starts (a continued entry spans more lines).
    pub line: usize,
}

/// The entries of one file, in file order, each key at most once.
#[derive(Debug, Clone)]
pub struct PropertiesFile {
    /// How the file is named in error messages (a path or a label such as `job.cfg`).
    pub file: String,
    pub entries: Vec<Entry>,
}

impl PropertiesFile {
    /// Reads `text`. `file` only names the file in error messages.
    pub fn parse(file: &str, text: &str) -> Result<PropertiesFile, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // `split('\n')` plus stripping `\r` accepts both LF and CRLF files.
        let lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut i = 0;
        while i < lines.len() {
            let line_no = i + 1;
            let first = lines[i].trim_start_matches(is_blank);
            i += 1;
            if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
                continue;
            }
            let mut logical = first.to_string();
            while ends_in_continuation(&logical) {
                logical.pop();
                // A continuation line's leading whitespace is not part of the value.
                match lines.get(i) {
                    Some(next) => logical.push_str(next.trim_start_matches(is_blank)),
                    None => break,
                }
                i += 1;
            }
            let entry =
                split_entry(&logical, line_no).map_err(|(key, reason)| ConfigError::Invalid {
                    file: file.to_string(),
                    line: Some(line_no),
                    key,
                    reason,
                })?;
            if let Some(first_line) = seen.get(&entry.key) {
                return Err(ConfigError::Invalid {
                    file: file.to_string(),
                    line: Some(line_no),
                    key: entry.key,
                    reason: format!("duplicate key, first set on line {first_line}"),
                });
            }
            seen.insert(entry.key.clone(), line_no);
            entries.push(entry);
        }
        Ok(PropertiesFile {
            file: file.to_string(),
            entries,
        })
    }

    /// The entry for `key`, if present (its value may be empty).
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// Whitespace as `java.util.Properties` defines it.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// An odd number of trailing backslashes means the last one escapes the newline.
fn ends_in_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Splits one logical line into key and value. On error returns `(key, reason)`.
fn split_entry(logical: &str, line: usize) -> Result<Entry, (String, String)> {
    let chars: Vec<char> = logical.chars().collect();
    // The key ends at the first unescaped separator or whitespace.
    let mut key_end = chars.len();
    let mut j = 0;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 2,
            '=' | ':' => {
                key_end = j;
                break;
            }
            c if is_blank(c) => {
                key_end = j;
                break;
            }
            _ => j += 1,
        }
    }
    let key_end = key_end.min(chars.len());
    // Skip whitespace, at most one separator, and whitespace again, as Java does:
    // `key = = v` has the value `= v`.
    let mut v = key_end;
    let mut has_sep = false;
    while v < chars.len() {
        match chars[v] {
            c if is_blank(c) => v += 1,
            '=' | ':' if !has_sep => {
                has_sep = true;
                v += 1;
            }
            _ => break,
        }
    }
    let raw_key: String = chars[..key_end].iter().collect();
    let key = unescape(&chars[..key_end]).map_err(|reason| (raw_key.clone(), reason))?;
    if key.is_empty() {
        return Err((logical.to_string(), "line has no key".to_string()));
    }
    let value = unescape(&chars[v..]).map_err(|reason| (key.clone(), reason))?;
    Ok(Entry { key, value, line })
}

/// Decodes escapes and drops trailing whitespace that was not written as an escape.
fn unescape(chars: &[char]) -> Result<String, String> {
    let mut out = String::with_capacity(chars.len());
    // Length of `out` up to the last character that must be kept.
    let mut keep = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' {
            out.push(c);
            if !is_blank(c) {
                keep = out.len();
            }
            continue;
        }
        let Some(&e) = chars.get(i) else {
            // A lone backslash at the very end of the file: Java drops it.
            break;
        };
        i += 1;
        let decoded = match e {
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\x0c',
            'u' => {
                let hex: String = chars[i..(i + 4).min(chars.len())].iter().collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("invalid \\u escape \\u{hex}"))?;
                i += 4;
                code
            }
            other => other,
        };
        out.push(decoded);
        keep = out.len();
    }
    out.truncate(keep);
    Ok(out)
}
