//! Configuration: ossimport's `job.cfg`/`local_job.cfg`, `sys.properties` and
//! `workers` files, read unchanged and validated once, at the edge.
//!
//! Reading happens in two stages, as in ripgrep's flags:
//! - [`properties`] turns the text into raw key/value entries that remember their line;
//! - [`job`] and [`sys`] check every key against the list of known keys and turn the
//!   values into typed [`job::JobConfig`] / [`sys::SysConfig`] structs.
//!
//! Every problem is a [`ConfigError`] whose message is one line, `FILE:LINE: KEY: reason`,
//! so that a user can fix the file without reading a stack trace (the original threw a
//! `NullPointerException` for a missing key).

pub mod job;
pub mod keys;
pub mod properties;
pub mod schedule;
pub mod sys;

use std::ops::RangeInclusive;

use properties::{Entry, PropertiesFile};

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key or value is wrong; the file must be edited. `line` is `None` only when the
    /// problem is a key that is absent from the file altogether.
    #[error("{}: {key}: {reason}", location(.file, .line))]
    Invalid {
        file: String,
        line: Option<usize>,
        key: String,
        reason: String,
    },
    /// The file itself could not be read.
    #[error("{file}: cannot read file: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

fn location(file: &str, line: &Option<usize>) -> String {
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    }
}

/// Looks up an environment variable. Injected so that tests do not depend on (or
/// mutate) the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`Env`] parameters.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads a configuration file in any of the original's encodings (see
/// [`decode`]); decoding notes are logged.
fn read_file(path: &std::path::Path) -> Result<String, ConfigError> {
    let (text, notes) = read_decoded(path)?;
    for n in notes {
        tracing::warn!("{n}");
    }
    Ok(text)
}

/// As [`read_file`], returning the decoding notes.
fn read_decoded(path: &std::path::Path) -> Result<(String, Vec<String>), ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        file: path.display().to_string(),
        source,
    })?;
    decode(&path.display().to_string(), &bytes)
}

/// The text of a configuration file as the original's users save them:
/// UTF-8 with or without a BOM, or GBK/GB18030 from a Chinese Windows
/// editor, with LF, CRLF or CR line ends (returned with LF). Comment lines
/// may be in any encoding (their text is dropped where it is not UTF-8,
/// Latin-1 included); a line with a key that is not UTF-8 is read as
/// GB18030, with a note naming the file and lines; a line that is neither
/// is an error naming `FILE:LINE` and the key.
pub fn decode(file: &str, bytes: &[u8]) -> Result<(String, Vec<String>), ConfigError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = String::with_capacity(bytes.len());
    let mut gb_lines = Vec::new();
    let mut rest = bytes;
    let mut line_no = 0usize;
    while !rest.is_empty() {
        line_no += 1;
        let end = rest
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
            .unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = match rest.get(end..end + 2) {
            Some(b"\r\n") => 2,
            _ if end < rest.len() => 1,
            _ => 0,
        };
        rest = &rest[end + skip..];
        match std::str::from_utf8(line) {
            Ok(s) => out.push_str(s),
            Err(_) => {
                let first = line.iter().position(|b| !b" \t\x0c".contains(b));
                let comment = first.is_some_and(|p| line[p] == b'#' || line[p] == b'!');
                if comment {
                    out.push('#');
                } else {
                    match encoding_rs::GB18030
                        .decode_without_bom_handling_and_without_replacement(line)
                    {
                        Some(s) => {
                            out.push_str(&s);
                            gb_lines.push(line_no);
                        }
                        None => {
                            let key = line
                                .split(|b| *b == b'=' || *b == b':')
                                .next()
                                .map(|k| String::from_utf8_lossy(k).trim().to_string())
                                .unwrap_or_default();
                            return Err(ConfigError::Invalid {
                                file: file.to_string(),
                                line: Some(line_no),
                                key,
                                reason: "not valid text (save the file as UTF-8)".into(),
                            });
                        }
                    }
                }
            }
        }
        out.push('\n');
    }
    let mut notes = Vec::new();
    if !gb_lines.is_empty() {
        let lines: Vec<String> = gb_lines.iter().map(usize::to_string).collect();
        notes.push(format!(
            "{file}: line {} not UTF-8, read as GB18030 (save the file as UTF-8 to be sure)",
            lines.join(", ")
        ));
    }
    Ok((out, notes))
}

/// Typed access to a [`PropertiesFile`]: every lookup that fails produces an error
/// pointing at the entry's line.
struct Fields<'a> {
    props: &'a PropertiesFile,
}

impl<'a> Fields<'a> {
    fn new(props: &'a PropertiesFile) -> Fields<'a> {
        Fields { props }
    }

    /// Refuses the first key (in file order) that is not in `known`.
    fn check_known(&self, known: &[&str]) -> Result<(), ConfigError> {
        for entry in &self.props.entries {
            if known.contains(&entry.key.as_str()) {
                continue;
            }
            let reason = match suggest(&entry.key, known) {
                Some(near) => format!("unknown key (did you mean {near}?)"),
                None => "unknown key".to_string(),
            };
            return Err(self.err(entry, reason));
        }
        Ok(())
    }

    /// The entry for the first of `keys` (a key and its aliases) that is present,
    /// empty or not. Two spellings of the same setting are refused: which one wins
    /// would otherwise depend on an order the user cannot see.
    fn entry_any(&self, keys: &[&str]) -> Result<Option<&'a Entry>, ConfigError> {
        let mut found: Option<&'a Entry> = None;
        for entry in &self.props.entries {
            if !keys.contains(&entry.key.as_str()) {
                continue;
            }
            if let Some(first) = found {
                return Err(self.err(
                    entry,
                    format!(
                        "same setting as {} on line {}; keep only one",
                        first.key, first.line
                    ),
                ));
            }
            found = Some(entry);
        }
        Ok(found)
    }

    /// The entry for `key` when it has a non-empty value. The original's docs tell users
    /// to leave a value empty rather than delete the line, so empty means "default".
    fn value_entry(&self, keys: &[&str]) -> Result<Option<&'a Entry>, ConfigError> {
        Ok(self.entry_any(keys)?.filter(|e| !e.value.is_empty()))
    }

    /// Line of `key` if it appears in the file at all.
    fn line(&self, key: &str) -> Option<usize> {
        self.props.get(key).map(|e| e.line)
    }

    fn string(&self, key: &str) -> Result<String, ConfigError> {
        Ok(self
            .value_entry(&[key])?
            .map(|e| e.value.clone())
            .unwrap_or_default())
    }

    /// Parses the value of `keys` with `parse`, or returns `default` when absent or empty.
    fn parsed<T>(
        &self,
        keys: &[&str],
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.value_entry(keys)? {
            Some(entry) => parse(&entry.value).map_err(|reason| self.err(entry, reason)),
            None => Ok(default),
        }
    }

    /// A switch, its spellings and default from the key table.
    fn switch(&self, key: &keys::Key) -> Result<bool, ConfigError> {
        let default = parse_bool(key.default).unwrap_or(false);
        self.parsed(&key.spellings(), default, parse_bool)
    }

    /// A whole number, its spellings, default and range from the key table.
    fn number(&self, key: &keys::Key) -> Result<u64, ConfigError> {
        self.number_in(key, key.range())
    }

    /// [`Fields::number`] within `range` instead of the table's (a minimum
    /// lowered for tests).
    fn number_in(&self, key: &keys::Key, range: RangeInclusive<u64>) -> Result<u64, ConfigError> {
        let default = parse_u64(key.default).unwrap_or(0);
        self.uint(&key.spellings(), default, range)
    }

    /// [`Fields::number`] for a key whose range fits a `u32`.
    fn number_u32(&self, key: &keys::Key) -> Result<u32, ConfigError> {
        // The table's range keeps it within u32.
        Ok(u32::try_from(self.number(key)?).unwrap_or(u32::MAX))
    }

    /// A byte size, its spellings and default from the key table.
    fn bytes(&self, key: &keys::Key) -> Result<u64, ConfigError> {
        let default = parse_size(key.default).unwrap_or(0);
        self.parsed(&key.spellings(), default, parse_size)
    }

    /// A whole number within `range`.
    fn uint(
        &self,
        keys: &[&str],
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        self.parsed(keys, default, |v| {
            let n = parse_u64(v)?;
            check_range(n, &range)?;
            Ok(n)
        })
    }

    fn err(&self, entry: &Entry, reason: impl Into<String>) -> ConfigError {
        self.err_at(entry.line, &entry.key, reason)
    }

    fn err_at(
        &self,
        line: impl Into<Option<usize>>,
        key: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.props.file.clone(),
            line: line.into(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

fn check_range(n: u64, range: &RangeInclusive<u64>) -> Result<(), String> {
    if range.contains(&n) {
        return Ok(());
    }
    // An upper bound that only reflects the integer type is not worth mentioning.
    let open_ended = *range.end() >= u64::from(u32::MAX);
    Err(if open_ended && n < *range.start() {
        format!("must be at least {}, got {n}", range.start())
    } else if open_ended {
        format!("must be at most {}, got {n}", range.end())
    } else {
        format!(
            "must be between {} and {}, got {n}",
            range.start(),
            range.end()
        )
    })
}

fn parse_bool(value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!("expected true or false, got {value:?}"))
    }
}

fn parse_u64(value: &str) -> Result<u64, String> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number, got {value:?}"));
    }
    value
        .parse()
        .map_err(|_| format!("number too large: {value}"))
}

/// Parses a byte size as the original did: plain bytes, or a number followed by
/// `k`, `m`, `g` or `t` (1024-based, any case, optionally followed by `b`).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let bad = || format!("expected a size such as 100000, 500k, 50m or 5g, got {value:?}");
    let lower = value.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad());
    }
    let unit = unit.trim_start();
    let shift = match unit.strip_suffix('b').unwrap_or(unit) {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("size too large: {value}"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size too large: {value}"))
}

/// Parses one of a fixed set of words. `names` pairs each accepted spelling with its
/// value; matching ignores ASCII case unless `case_sensitive`.
fn parse_choice<T: Copy>(
    value: &str,
    names: &[(&str, T)],
    case_sensitive: bool,
) -> Result<T, String> {
    let hit = names.iter().find(|(name, _)| {
        if case_sensitive {
            *name == value
        } else {
            name.eq_ignore_ascii_case(value)
        }
    });
    match hit {
        Some((_, v)) => Ok(*v),
        None => {
            let list: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            Err(format!(
                "expected one of {}, got {value:?}",
                list.join(", ")
            ))
        }
    }
}

/// `true` for an absolute path written with `/` separators: `/data/` or `c:/data/`.
fn is_absolute_slash_path(path: &str) -> bool {
    let b = path.as_bytes();
    path.starts_with('/')
        || (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'/')
}

/// The known key closest to `key` by edit distance, if it is close enough to be a typo.
fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    let (best, distance) = known
        .iter()
        .map(|k| (*k, edit_distance(&lower, &k.to_ascii_lowercase())))
        .min_by_key(|(_, d)| *d)?;
    // A third of the key's length tolerates a couple of typos in long camelCase keys
    // without suggesting something unrelated for short ones.
    let limit = (key.chars().count() / 3).max(2);
    (distance <= limit).then_some(best)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
