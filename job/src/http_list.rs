//! The lines of an HTTP URL list (`httpListFilePath`): a URL prefix and a
//! relative path in whitespace-separated columns.

use std::io::BufRead;
use std::path::Path;

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
