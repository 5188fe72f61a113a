//! The HTTP URL-list lister: the list file's lines in order (the
//! original's format; CRLF accepted); the position is the line number.
//! Object sizes are not known until download (as in the original, the byte
//! limit of a task does not apply); a change of domain between consecutive
//! lines starts a new task.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::{Lister, ScanError, Tasks, checkpoint_err};
use crate::store::NewObject;

pub(super) struct HttpLister {
    /// `httpListFilePath`.
    pub(super) list: PathBuf,
    /// 1-based columns (`httpPrefixColumn`, `relativePathColumn`).
    pub(super) prefix_column: usize,
    pub(super) rel_column: usize,
}

impl Lister for HttpLister {
    fn list(
        &mut self,
        after: Option<&str>,
        out: &mut Tasks<'_>,
    ) -> Result<Option<String>, ScanError> {
        let list = &self.list;
        let after: u64 = match after {
            Some(s) => s.parse().map_err(checkpoint_err)?,
            None => 0,
        };
        let f = std::fs::File::open(list)
            .map_err(|e| ScanError::HttpList(format!("{}: {e}", list.display())))?;
        let mut host = String::new();
        let mut line_no = 0u64;
        for line in std::io::BufReader::new(f).lines() {
            line_no += 1;
            if out.cancelled() {
                return Ok(None);
            }
            let line = line
                .map_err(|e| ScanError::HttpList(format!("{}:{line_no}: {e}", list.display())))?;
            if line_no <= after {
                continue;
            }
            let Some((url, rel)) = parse_http_line(&line, self.prefix_column, self.rel_column)
                .map_err(|e| ScanError::HttpList(format!("{}:{line_no}: {e}", list.display())))?
            else {
                continue;
            };
            if !out.wanted(&rel, None) {
                continue;
            }
            let h = url_host(&url).to_owned();
            if h != host && !host.is_empty() {
                out.flush(&(line_no - 1).to_string())?;
            }
            host = h;
            out.push(
                NewObject {
                    rel_path: rel,
                    size: 0,
                    mtime: 0,
                    ident: None,
                    src_ref: Some(url),
                    failure: None,
                },
                || Ok(line_no.to_string()),
            )?;
        }
        Ok(Some(line_no.to_string()))
    }
}

/// One URL of an HTTP list: `(url, relative path)`, or why the line is bad.
pub fn parse_http_line(
    line: &str,
    prefix_column: usize,
    rel_column: usize,
) -> Result<Option<(String, String)>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let cols: Vec<&str> = line.split_whitespace().collect();
    let need = prefix_column.max(rel_column);
    if cols.len() < need {
        return Err(format!(
            "expected at least {need} whitespace-separated columns (httpPrefixColumn={prefix_column}, relativePathColumn={rel_column}), found {}",
            cols.len()
        ));
    }
    let prefix = cols[prefix_column - 1];
    let rel = cols[rel_column - 1].trim_start_matches('/');
    if rel.is_empty() {
        return Err("the relative path column is empty".into());
    }
    let mut url = format!("{prefix}{rel}");
    if !url.contains("://") {
        url = format!("http://{url}");
    }
    Ok(Some((url, rel.to_owned())))
}

/// The host part of a URL, to group consecutive lines by domain.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// Checks every line of an HTTP list before the job starts; the error names
/// the file and line.
pub fn validate_http_list(
    list: &Path,
    prefix_column: usize,
    rel_column: usize,
) -> Result<u64, String> {
    let f = std::fs::File::open(list).map_err(|e| format!("{}: {e}", list.display()))?;
    let mut n = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: {e}", list.display(), i + 1))?;
        match parse_http_line(&line, prefix_column, rel_column) {
            Ok(Some(_)) => n += 1,
            Ok(None) => {}
            Err(e) => return Err(format!("{}:{}: {e}", list.display(), i + 1)),
        }
    }
    Ok(n)
}
