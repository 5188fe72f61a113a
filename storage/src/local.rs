//! Local files: reading ranges of a source file, and the local-directory
//! destination (`destType=local`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::checksum::{Digest, Hasher};

/// Size and mtime (unix seconds) of a file, following symlinks.
pub fn stat(path: &Path) -> io::Result<(u64, i64)> {
    let md = std::fs::metadata(path)?;
    Ok((md.len(), mtime_secs(&md)))
}

pub fn mtime_secs(md: &std::fs::Metadata) -> i64 {
    match md.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        },
        Err(_) => 0,
    }
}

/// Reads exactly `len` bytes at `offset`; a short file is an `UnexpectedEof`.
pub fn read_range(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Hashes a whole file in 1 MiB reads.
pub fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut f = File::open(path)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// Hashes a whole file and, in the same pass, the MD5 of each `part_size`
/// slice, from which a multipart ETag can be recomputed.
pub fn hash_file_parts(path: &Path, part_size: u64) -> io::Result<(Digest, Vec<[u8; 16]>)> {
    use md5::{Digest as _, Md5};
    let mut f = File::open(path)?;
    let mut whole = Hasher::new();
    let mut parts = Vec::new();
    let mut part = Md5::new();
    let mut in_part = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let want = buf.len().min((part_size - in_part) as usize);
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        part.update(&buf[..n]);
        in_part += n as u64;
        if in_part == part_size {
            parts.push(std::mem::replace(&mut part, Md5::new()).finalize().into());
            in_part = 0;
        }
    }
    if in_part > 0 {
        parts.push(part.finalize().into());
    }
    Ok((whole.finish(), parts))
}

/// Copies `src` to `dest` through a temporary file in the same directory,
/// returning the digest of what was read. The temporary is renamed into
/// place only after it has been flushed, so a crash never leaves a partial
/// file under the final name. The source mtime is kept.
pub fn copy_file(src: &Path, dest: &Path, mtime: i64) -> io::Result<Digest> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = temp_name(dest);
    let result = (|| {
        let mut input = File::open(src)?;
        let mut out = File::create(&tmp)?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        out.flush()?;
        if mtime >= 0 {
            out.set_modified(UNIX_EPOCH + Duration::from_secs(mtime as u64))?;
        }
        out.sync_data()?;
        Ok(h.finish())
    })();
    match result {
        Ok(d) => {
            std::fs::rename(&tmp, dest)?;
            Ok(d)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dest.with_file_name(format!(
        ".{name}.ossimport-{}-{nonce}.tmp",
        std::process::id()
    ))
}

/// Opens a file and seeks; used by streaming readers.
pub fn open_at(path: &Path, offset: u64) -> io::Result<File> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_keeps_bytes_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.bin");
        std::fs::write(&src, b"hello world").unwrap();
        let dest = dir.path().join("out/sub/a.bin");
        let d = copy_file(&src, &dest, 1_600_000_000).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert_eq!(d, hash_file(&dest).unwrap());
        assert_eq!(stat(&dest).unwrap(), (11, 1_600_000_000));
        let f = File::open(&src).unwrap();
        assert_eq!(read_range(&f, 6, 5).unwrap(), b"world");
        assert!(read_range(&f, 6, 6).is_err());
    }

    #[test]
    fn part_hashes_give_the_multipart_etag() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("p.bin");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let (whole, parts) = hash_file_parts(&src, 4096).unwrap();
        assert_eq!(whole, crate::checksum::digest(&data));
        let expect: Vec<[u8; 16]> = data
            .chunks(4096)
            .map(|c| crate::checksum::digest(c).md5)
            .collect();
        assert_eq!(parts, expect);
    }
}
