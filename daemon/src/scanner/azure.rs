//! The Azure Blob lister: List Blobs pages (`maxresults` = `srcListPageSize`)
//! in name order; the position is the last blob name, and a resumed listing
//! starts after it (`startFrom`, the next page's marker within one run).
//! Names must increase: a repeat is dropped and counted as suspicious.

use proto::job::Bucket;
use storage::azure::AzureSource;

use super::bucket::{position, push_listed};
use super::{Lister, ScanError, Tasks, checkpoint_err};

pub(super) struct AzureLister {
    pub(super) source: AzureSource,
    /// `srcPrefix`; relative paths are blob names with it removed.
    pub(super) prefix: String,
    pub(super) page_size: u32,
}

impl AzureLister {
    pub(super) fn new(c: &Bucket, page_size: u32, attempts: u32) -> Result<AzureLister, ScanError> {
        Ok(AzureLister {
            source: AzureSource::new(c, attempts).map_err(ScanError::List)?,
            prefix: c.prefix.clone(),
            page_size,
        })
    }
}

impl Lister for AzureLister {
    fn list(
        &mut self,
        after: Option<&str>,
        out: &mut Tasks<'_>,
    ) -> Result<Option<String>, ScanError> {
        let mut last_key: Option<String> = match after {
            Some(s) => Some(serde_json::from_str(s).map_err(checkpoint_err)?),
            None => None,
        };
        let rt = tokio::runtime::Handle::current();
        let mut token: Option<String> = None;
        loop {
            if out.cancelled() {
                return Ok(None);
            }
            let page = rt
                .block_on(self.source.list_page(
                    &self.prefix,
                    last_key.as_deref(),
                    token.as_deref(),
                    self.page_size,
                ))
                .map_err(|e| ScanError::List(e.message))?;
            for o in page.objects {
                if last_key.as_deref().is_some_and(|l| o.key.as_str() <= l) {
                    out.stats.suspicious_pages += 1;
                    continue;
                }
                last_key = Some(o.key.clone());
                push_listed(out, &self.prefix, o)?;
            }
            match page.next_token {
                Some(t) if page.truncated => token = Some(t),
                _ => break,
            }
        }
        position(&last_key.unwrap_or_default()).map(Some)
    }
}
