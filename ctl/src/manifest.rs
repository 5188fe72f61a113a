//! Verification manifests (`report JOB --manifest FILE`, `run ...
//! --manifest FILE`): one line per object (CSV, or JSON Lines for `.jsonl`
//! and `.json`): destination key, source, size, source mtime, MD5, CRC64,
//! destination ETag, what was compared, time, outcome and error. Rows
//! arrive a page at a time, so memory is bounded by the page whatever the
//! job's size. The last line is a summary with the SHA-256 of every byte
//! before it, so the file can be kept as proof and checked later
//! (`head -n -1 FILE | sha256sum`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use proto::api::ManifestRow;
use proto::auth::Sha256Stream;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// JSON Lines for `.jsonl`/`.json`, CSV otherwise.
    pub(crate) fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json") => {
                Format::Jsonl
            }
            _ => Format::Csv,
        }
    }
}

/// Writes what goes through it and hashes it.
struct Hashed<W: Write> {
    inner: W,
    hash: Sha256Stream,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum Sink {
    Csv(Box<csv::Writer<Hashed<BufWriter<File>>>>),
    Jsonl(Hashed<BufWriter<File>>),
}

/// Counts the summary line gives.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Totals {
    pub objects: u64,
    pub bytes: u64,
    pub verified: u64,
    pub skipped: u64,
    pub failed: u64,
    pub pending: u64,
}

pub(crate) struct Manifest {
    path: PathBuf,
    sink: Sink,
    pub totals: Totals,
}

const HEADER: [&str; 13] = [
    "key",
    "source",
    "size",
    "source_mtime",
    "md5",
    "crc64",
    "dest_etag",
    "verified_by",
    "time",
    "outcome",
    "error_code",
    "error",
    "metadata",
];

impl Manifest {
    pub(crate) fn create(path: &Path) -> anyhow::Result<Manifest> {
        let file =
            File::create(path).map_err(|e| anyhow::anyhow!("manifest {}: {e}", path.display()))?;
        let hashed = Hashed {
            inner: BufWriter::new(file),
            hash: Sha256Stream::default(),
        };
        let sink = match Format::of(path) {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(hashed);
                w.write_record(HEADER)?;
                Sink::Csv(Box::new(w))
            }
            Format::Jsonl => Sink::Jsonl(hashed),
        };
        Ok(Manifest {
            path: path.to_path_buf(),
            sink,
            totals: Totals::default(),
        })
    }

    pub(crate) fn row(&mut self, r: &ManifestRow) -> anyhow::Result<()> {
        let t = &mut self.totals;
        t.objects += 1;
        t.bytes += r.size;
        match r.outcome.as_str() {
            "verified" => t.verified += 1,
            "skipped" => t.skipped += 1,
            "failed" => t.failed += 1,
            _ => t.pending += 1,
        }
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        match &mut self.sink {
            Sink::Csv(w) => w.write_record([
                r.key.clone(),
                r.source.clone(),
                r.size.to_string(),
                r.source_mtime.to_string(),
                opt(&r.md5),
                opt(&r.crc64),
                opt(&r.dest_etag),
                opt(&r.verified_by),
                r.time.map(|t| t.to_string()).unwrap_or_default(),
                r.outcome.clone(),
                opt(&r.error_code),
                opt(&r.error),
                opt(&r.metadata),
            ])?,
            Sink::Jsonl(w) => {
                let mut v = serde_json::to_value(r)?;
                if let Some(m) = v.as_object_mut() {
                    m.remove("id");
                }
                serde_json::to_writer(&mut *w, &v)?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// Writes the summary line (not part of the hashed body) and closes the
    /// file. Returns the body's SHA-256.
    pub(crate) fn finish(self) -> anyhow::Result<String> {
        let mut hashed = match self.sink {
            Sink::Csv(w) => w
                .into_inner()
                .map_err(|e| anyhow::anyhow!("manifest {}: {}", self.path.display(), e.error()))?,
            Sink::Jsonl(w) => w,
        };
        hashed.flush()?;
        let sha = hashed.hash.clone().finish_hex();
        let t = &self.totals;
        let line = match Format::of(&self.path) {
            Format::Csv => format!(
                "# summary: objects={} bytes={} verified={} skipped={} failed={} pending={} sha256={sha}\n",
                t.objects, t.bytes, t.verified, t.skipped, t.failed, t.pending
            ),
            Format::Jsonl => format!("{}\n", serde_json::json!({"summary": t, "sha256": sha})),
        };
        let mut inner = hashed.inner;
        inner.write_all(line.as_bytes())?;
        inner.flush()?;
        Ok(sha)
    }
}
