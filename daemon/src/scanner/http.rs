//! The HTTP URL-list lister: the list file's lines in order (the
//! original's format; CRLF accepted); the position is the line number.
//! Object sizes are not known until download (as in the original, the byte
//! limit of a task does not apply); a change of domain between consecutive
//! lines starts a new task.

use std::io::BufRead;
use std::path::PathBuf;

use super::{Lister, ScanError, Tasks, checkpoint_err, parse_http_line};
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

/// The host part of a URL, to group consecutive lines by domain.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}
