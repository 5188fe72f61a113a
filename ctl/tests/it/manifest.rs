//! `run --manifest FILE`: one CSV line per object with what proved it, and
//! a last line whose SHA-256 covers every byte above it.

use std::os::unix::ffi::OsStrExt;

use crate::support::*;

#[test]
fn run_writes_a_manifest_that_proves_itself() {
    let s3 = S3Server::start();
    let rt = rt();
    rt.block_on(s3.create_bucket("man"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rels = tree(&src, 20, 3000);
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"bad-\xff")), b"x").unwrap();
    std::fs::write(src.join("with,comma \"quoted\".txt"), b"csv").unwrap();
    let cfg = job_cfg(
        tmp.path(),
        "manjob",
        &src,
        &s3.endpoint,
        "man",
        "destPrefix=in/",
    );
    let work = tmp.path().join("work");
    let path = tmp.path().join("proof.csv");
    let out = ctl()
        .arg("run")
        .arg(&cfg)
        .arg("--work-dir")
        .arg(&work)
        .arg("--manifest")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("manifest: 22 objects written to"),
        "{}",
        stderr(&out)
    );

    let text = std::fs::read_to_string(&path).unwrap();
    let (body, last) = text.trim_end_matches('\n').rsplit_once('\n').unwrap();
    let body = format!("{body}\n");
    assert!(
        last.starts_with("# summary: objects=22 ")
            && last.contains(" verified=21 ")
            && last.contains(" failed=1 ")
            && last.ends_with(&format!(
                "sha256={}",
                proto::auth::sha256_hex(body.as_bytes())
            )),
        "{last}"
    );
    let mut r = csv::Reader::from_reader(body.as_bytes());
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        [
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
            "metadata"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 22);
    let verified: Vec<&csv::StringRecord> = rows.iter().filter(|x| &x[9] == "verified").collect();
    assert_eq!(verified.len(), 21);
    for v in &verified {
        assert!(v[0].starts_with("in/"), "{v:?}");
        let rel = &v[0]["in/".len()..];
        assert_eq!(&v[1], format!("{}/{rel}", src.display()), "{v:?}");
        assert_eq!(
            v[2].parse::<u64>().unwrap(),
            std::fs::metadata(src.join(rel)).unwrap().len()
        );
        // SeaweedFS checks the CRC-64/NVME each PUT carries: the proof, so
        // no MD5 is computed (its column is empty).
        assert_eq!((&v[4], &v[7]), ("", "size+crc64nvme"), "{v:?}");
        assert!(
            !v[5].is_empty() && !v[6].is_empty() && !v[7].is_empty(),
            "{v:?}"
        );
        // The digest of what was written besides the bytes.
        assert_eq!(v[12].len(), 64, "metadata {v:?}");
    }
    assert!(
        rels.iter()
            .all(|rel| verified.iter().any(|v| &v[0][3..] == rel.as_str()))
    );
    assert!(
        verified
            .iter()
            .any(|v| &v[0] == "in/with,comma \"quoted\".txt")
    );
    let failed: Vec<&csv::StringRecord> = rows.iter().filter(|x| &x[9] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(&failed[0][10], "INVALID_KEY");
    assert_eq!(&failed[0][12], "", "{:?}", failed[0]);
    assert!(failed[0][11].contains("not valid UTF-8"), "{:?}", failed[0]);
}
