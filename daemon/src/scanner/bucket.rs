//! The bucket lister: ListObjectsV2 pages in key order; the position is
//! the last key, resumed with `StartAfter` (continuation tokens may
//! expire). Pages are not taken at their word: keys must increase (repeats
//! are dropped), a page that says "truncated" without a token is continued
//! with `StartAfter`, and a full page that says "last" is checked with one
//! more request, because some servers end listings early.

use storage::s3::{S3Config, S3Store};

use super::{Lister, ScanError, Tasks, checkpoint_err};
use crate::store::NewObject;

pub(super) struct BucketLister {
    client: S3Store,
    /// `srcPrefix`; relative paths are keys with it removed.
    prefix: String,
    /// Keys per page (`srcListPageSize`).
    page_size: u32,
    /// What is listed: `prefix`, or a branch below it.
    list_prefix: String,
    /// Only the keys directly under `list_prefix` (delimiter `/`).
    flat: bool,
}

impl BucketLister {
    pub(super) fn new(s3: &S3Config, page_size: u32) -> BucketLister {
        BucketLister {
            client: S3Store::new(s3),
            prefix: s3.bucket.prefix.clone(),
            page_size,
            list_prefix: s3.bucket.prefix.clone(),
            flat: false,
        }
    }

    /// Points the lister at one branch of a parallel listing (`at`: the
    /// branch's prefix below `srcPrefix`).
    pub(super) fn set_branch(&mut self, at: &str, deep: bool) {
        self.list_prefix = format!("{}{at}", self.prefix);
        self.flat = !deep;
    }
}

/// Splits the bucket for a parallel listing by common prefix (delimiter
/// `/`): every prefix above `depth` is a flat branch (the keys directly in
/// it), every prefix at `depth` a deep one (all keys below it). Returns
/// `(deep, at)` with `at` relative to `srcPrefix`.
pub(super) fn partition(
    s3: &S3Config,
    page_size: u32,
    depth: usize,
) -> Result<Vec<(bool, String)>, ScanError> {
    let client = S3Store::new(s3);
    let prefix = s3.bucket.prefix.as_str();
    let rt = tokio::runtime::Handle::current();
    let mut out = Vec::new();
    let mut level = vec![String::new()];
    for _ in 0..depth.max(1) {
        let mut next = Vec::new();
        for at in level {
            out.push((false, at.clone()));
            let mut token: Option<String> = None;
            loop {
                let page = rt
                    .block_on(client.list_page_in(
                        &format!("{prefix}{at}"),
                        true,
                        None,
                        token.as_deref(),
                        page_size,
                    ))
                    .map_err(|e| ScanError::List(e.to_string()))?;
                for p in page.prefixes {
                    if let Some(rel) = p.strip_prefix(prefix)
                        && rel.len() > at.len()
                    {
                        next.push(rel.to_owned());
                    }
                }
                match page.next_token {
                    Some(t) if page.truncated => token = Some(t),
                    _ => break,
                }
            }
        }
        next.sort();
        next.dedup();
        level = next;
    }
    out.extend(level.into_iter().map(|at| (true, at)));
    Ok(out)
}

pub(super) fn position(key: &str) -> Result<String, ScanError> {
    serde_json::to_string(key).map_err(checkpoint_err)
}

/// One listed key (of a bucket or a container) into the tasks: its path
/// below `prefix`, directory markers counted and left out, the job's rules
/// applied; the key is its position.
pub(super) fn push_listed(
    out: &mut Tasks<'_>,
    prefix: &str,
    o: storage::s3::ListedObject,
) -> Result<(), ScanError> {
    let Some(rel) = o.key.strip_prefix(prefix) else {
        return Ok(());
    };
    if rel.is_empty() || (o.key.ends_with('/') && o.size == 0) {
        out.stats.dir_markers += 1;
        return Ok(());
    }
    if !out.wanted(rel, Some(o.mtime)) {
        return Ok(());
    }
    let obj = NewObject {
        rel_path: rel.to_owned(),
        size: o.size,
        mtime: o.mtime,
        ident: None,
        src_ref: Some(o.etag),
        failure: None,
    };
    out.push(obj, || position(&o.key))
}

impl Lister for BucketLister {
    fn list(
        &mut self,
        after: Option<&str>,
        out: &mut Tasks<'_>,
    ) -> Result<Option<String>, ScanError> {
        let (prefix, page_size) = (self.prefix.as_str(), self.page_size);
        let (list_prefix, flat) = (self.list_prefix.as_str(), self.flat);
        let mut last_key: Option<String> = match after {
            Some(s) => Some(serde_json::from_str(s).map_err(checkpoint_err)?),
            None => None,
        };
        let rt = tokio::runtime::Handle::current();
        let mut token: Option<String> = None;
        let mut stalls = 0;
        loop {
            if out.cancelled() {
                return Ok(None);
            }
            let page = rt
                .block_on(self.client.list_page_in(
                    list_prefix,
                    flat,
                    last_key.as_deref(),
                    token.as_deref(),
                    page_size,
                ))
                .map_err(|e| ScanError::List(e.to_string()))?;
            // With a delimiter a page may hold only prefixes (other
            // branches): they count toward the page, not as objects.
            let n = page.objects.len() + page.prefixes.len();
            let only_prefixes = !page.prefixes.is_empty();
            let mut progressed = false;
            for o in page.objects {
                if last_key.as_deref().is_some_and(|l| o.key.as_str() <= l) {
                    out.stats.suspicious_pages += 1;
                    continue;
                }
                last_key = Some(o.key.clone());
                progressed = true;
                push_listed(out, prefix, o)?;
            }
            stalls = if progressed || only_prefixes {
                0
            } else {
                stalls + 1
            };
            if stalls > 3 {
                return Err(ScanError::List(format!(
                    "the server keeps returning pages without new keys after {:?}",
                    last_key.unwrap_or_default()
                )));
            }
            if page.truncated {
                // Without a token, continue after the last key seen.
                token = page.next_token;
            } else if n as u32 >= page_size && progressed {
                // A full page claiming to be the last: ask once more.
                out.stats.suspicious_pages += 1;
                token = None;
            } else {
                break;
            }
        }
        position(&last_key.unwrap_or_default()).map(Some)
    }
}
