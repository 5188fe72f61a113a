//! The destination contract, run unchanged against every backend we write
//! to: `S3Store` on SeaweedFS, `S3Store` on moto (a second S3
//! implementation whose answers differ in places), and the local-directory
//! destination (`beneath::create_beneath` + `local::copy_into`). What the
//! agent's verification relies on is what is checked: the size and bytes
//! read back are what was written, an overwrite replaces, a missing object
//! is told apart from a failure, awkward but valid keys round-trip, and a
//! key that would leave the destination is refused, never written.
//!
//! Bucket-only operations (multipart, listing order) follow on the two S3
//! servers.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use proto::job::Bucket;
use storage::checksum::{self, Digest};
use storage::s3::proof::Proof;
use storage::s3::{ErrorKind, S3Config, S3Store, Upload};
use testkit::s3::{MotoServer, S3Server};
use testkit::{AK, SK, bytes};

/// What every destination must do, in the terms the agent uses.
trait Destination {
    fn name(&self) -> &'static str;
    /// Stores `data` under `key`, replacing what is there.
    async fn put(&self, key: &str, data: &[u8]) -> Result<(), String>;
    /// The stored size, `None` when nothing is stored under `key`.
    async fn size(&self, key: &str) -> Result<Option<u64>, String>;
    /// The digest of the stored bytes, read back in full.
    async fn read_back(&self, key: &str) -> Result<Option<Digest>, String>;
}

struct Bucketed(S3Store);

impl Destination for Bucketed {
    fn name(&self) -> &'static str {
        "S3Store"
    }

    async fn put(&self, key: &str, data: &[u8]) -> Result<(), String> {
        let digest = checksum::digest(data);
        let answer = self
            .0
            .put_bytes(key, Bytes::copy_from_slice(data), &digest, &[], None)
            .await
            .map_err(|e| e.to_string())?;
        // A single PUT's ETag is the MD5 of the bytes (no SSE-KMS here).
        assert_eq!(Some(answer.etag), digest.md5_hex(), "PUT {key}: ETag");
        Ok(())
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, String> {
        match self.0.head(key).await {
            Ok(info) => Ok(Some(info.size)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn read_back(&self, key: &str) -> Result<Option<Digest>, String> {
        match self.0.read_back(key).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

struct LocalDir(PathBuf);

impl Destination for LocalDir {
    fn name(&self) -> &'static str {
        "local directory"
    }

    async fn put(&self, key: &str, data: &[u8]) -> Result<(), String> {
        let src = tempfile::tempfile().map_err(|e| e.to_string())?;
        std::os::unix::fs::FileExt::write_all_at(&src, data, 0).map_err(|e| e.to_string())?;
        let out = storage::beneath::create_beneath(&self.0, key, 0o644, &|_| 0o755)
            .map_err(|e| format!("{key}: {e}"))?;
        let digest = storage::local::copy_into(&src, &out, 1_700_000_000_000_000_000, None)
            .map_err(|e| format!("{key}: {e}"))?;
        out.commit().map_err(|e| format!("{key}: {e}"))?;
        assert_eq!(
            digest,
            checksum::digest(data),
            "{key}: digest while copying"
        );
        Ok(())
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, String> {
        match storage::beneath::open_dest(&self.0, key) {
            Ok(f) => Ok(Some(f.size())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn read_back(&self, key: &str) -> Result<Option<Digest>, String> {
        match storage::beneath::open_dest(&self.0, key) {
            Ok(f) => storage::local::hash_open(&f.file)
                .map(Some)
                .map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Keys that are valid everywhere and easy to get wrong: spaces, `+`,
/// percent signs, query and fragment characters, non-ASCII, deep nesting,
/// a 255-byte name.
fn awkward_keys() -> Vec<String> {
    vec![
        "plain.txt".into(),
        "with space/and+plus.bin".into(),
        "percent%20not-decoded.txt".into(),
        "query?and#hash&amp;.txt".into(),
        "日本語/データ naïve café.bin".into(),
        "deep/a/b/c/d/e/f/g/h/i/j/leaf".into(),
        format!("long/{}", "n".repeat(255)),
        "tilde~star*(paren)'quote'.txt".into(),
    ]
}

async fn contract(d: &impl Destination) {
    let who = d.name();
    // Round trip of every awkward key, with distinct contents.
    for (i, key) in awkward_keys().iter().enumerate() {
        let data = bytes(i as u64, 1000 + i * 777);
        d.put(key, &data)
            .await
            .unwrap_or_else(|e| panic!("{who}: put {key}: {e}"));
        assert_eq!(
            d.size(key).await.unwrap(),
            Some(data.len() as u64),
            "{who}: size of {key}"
        );
        let back = d.read_back(key).await.unwrap().unwrap();
        assert_eq!(back, checksum::digest(&data), "{who}: bytes of {key}");
    }

    // An empty object is an object.
    d.put("empty", b"").await.unwrap();
    assert_eq!(d.size("empty").await.unwrap(), Some(0), "{who}");
    assert_eq!(
        d.read_back("empty").await.unwrap(),
        Some(checksum::digest(b"")),
        "{who}"
    );

    // An overwrite replaces, also with fewer bytes.
    d.put("over", &bytes(1, 70_000)).await.unwrap();
    let shorter = bytes(2, 10);
    d.put("over", &shorter).await.unwrap();
    assert_eq!(d.size("over").await.unwrap(), Some(10), "{who}: overwrite");
    assert_eq!(
        d.read_back("over").await.unwrap(),
        Some(checksum::digest(&shorter)),
        "{who}"
    );

    // Missing is told apart from failing.
    assert_eq!(d.size("no/such/key").await.unwrap(), None, "{who}: missing");
    assert_eq!(
        d.read_back("no/such/key").await.unwrap(),
        None,
        "{who}: missing"
    );
}

/// A local destination refuses names that would land outside it or on
/// another object's file, and writes nothing for them.
#[test]
fn local_directory_refuses_names_that_leave_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("dest");
    std::fs::create_dir(&root).unwrap();
    let rt = testkit::rt();
    let d = LocalDir(root.clone());
    for key in [
        "../escape",
        "a/../../escape",
        "a//b",
        "./a",
        "a/./b",
        "a/",
        "a\0b",
    ] {
        let r = rt.block_on(d.put(key, b"x"));
        assert!(r.is_err(), "{key:?} was written");
    }
    // A symlink planted inside the destination is not followed on write.
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    assert!(rt.block_on(d.put("link/file", b"x")).is_err());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        2,
        "nothing next to dest/ but outside/"
    );
}

fn bucket_config(endpoint: &str, bucket: &str) -> S3Config {
    S3Config::new(
        Bucket {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            name: bucket.into(),
            access_key: AK.into(),
            secret_key: proto::Secret::new(SK),
            path_style: true,
            prefix: String::new(),
        },
        3,
    )
}

fn bucket_store(endpoint: &str, bucket: &str) -> S3Store {
    S3Store::new(&bucket_config(endpoint, bucket))
}

/// Multipart and listing, as the agent and the scanner use them.
async fn bucket_contract(store: &S3Store, who: &str) {
    // Three parts (5 MiB, 5 MiB, 1 byte), completed: the size, the
    // multipart ETag and the bytes are those of the parts in order.
    let parts = [bytes(10, 5 << 20), bytes(11, 5 << 20), vec![7u8]];
    let id = store
        .create_multipart("mp/big.bin", &[], None, false)
        .await
        .unwrap();
    let mut done = Vec::new();
    let mut whole = checksum::Hasher::new();
    for (i, p) in parts.iter().enumerate() {
        let digest = checksum::digest(p);
        let n = i as u32 + 1;
        let a = store
            .upload_part(
                &Upload {
                    key: "mp/big.bin",
                    id: &id,
                    nvme: false,
                },
                n,
                Bytes::copy_from_slice(p),
                &digest,
            )
            .await
            .unwrap();
        assert_eq!(
            Some(a.etag.clone()),
            digest.md5_hex(),
            "{who}: part {n} ETag"
        );
        done.push((n, a.etag));
        whole.update(p);
    }
    // ListParts is what a resumed upload is confirmed with. moto 5.2.5
    // answers it with a `ListPartsResponse` root instead of S3's
    // `ListPartsResult`: we must call that a bad answer (the agent then
    // starts the upload afresh), never read it as "no parts".
    match store.list_parts("mp/big.bin", &id).await {
        Ok(listed) => assert_eq!(listed.len(), 3, "{who}: parts listed before completion"),
        Err(e) if who == "moto" && e.kind == ErrorKind::BadAnswer => {}
        Err(e) => panic!("{who}: ListParts: {e}"),
    }
    let answer = store
        .complete_multipart("mp/big.bin", &id, &done, None)
        .await
        .unwrap();
    let md5s: Vec<[u8; 16]> = parts
        .iter()
        .filter_map(|p| checksum::digest(p).md5)
        .collect();
    assert_eq!(
        answer.etag,
        checksum::multipart_etag(md5s.iter()),
        "{who}: multipart ETag"
    );
    let info = store.head("mp/big.bin").await.unwrap();
    assert_eq!(info.size, (10 << 20) + 1, "{who}");
    assert_eq!(
        store.read_back("mp/big.bin").await.unwrap(),
        whole.finish(),
        "{who}"
    );

    // An aborted upload leaves no object.
    let id = store
        .create_multipart("mp/aborted.bin", &[], None, false)
        .await
        .unwrap();
    store.abort_multipart("mp/aborted.bin", &id).await.unwrap();
    assert_eq!(
        store.head("mp/aborted.bin").await.unwrap_err().kind,
        ErrorKind::NotFound,
        "{who}"
    );

    // Streamed from a file, in chunks of one reused buffer: a single PUT,
    // and parts at offsets of one file; a byte changed after hashing is
    // refused by the store (Content-MD5), and nothing is stored.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let data = bytes(15, (5 << 20) + 300_001);
    std::fs::write(&path, &data).unwrap();
    let small = &data[..(1 << 20) + 1];
    let small_path = dir.path().join("small");
    std::fs::write(&small_path, small).unwrap();
    let d = checksum::digest(small);
    let a = store
        .put_file("file/one", &small_path, &d, &[], None)
        .await
        .unwrap();
    assert_eq!(Some(a.etag), d.md5_hex(), "{who}: streamed PUT");
    assert_eq!(
        store.read_back("file/one").await.unwrap(),
        checksum::digest(small),
        "{who}"
    );
    let id = store
        .create_multipart("file/mp", &[], None, false)
        .await
        .unwrap();
    let upload = Upload {
        key: "file/mp",
        id: &id,
        nvme: false,
    };
    let mut done = Vec::new();
    for (n, range) in [(1, 0..5 << 20), (2, 5 << 20..data.len())] {
        let d = checksum::digest(&data[range.clone()]);
        let a = store
            .upload_part_file(&upload, n, &path, range.start as u64, &d)
            .await
            .unwrap();
        assert_eq!(Some(a.etag.clone()), d.md5_hex(), "{who}: part {n}");
        done.push((n, a.etag));
    }
    store
        .complete_multipart("file/mp", &id, &done, None)
        .await
        .unwrap();
    assert_eq!(
        store.read_back("file/mp").await.unwrap(),
        checksum::digest(&data),
        "{who}: parts from offsets"
    );
    let mut changed = small.to_vec();
    changed[700_000] ^= 1;
    std::fs::write(&small_path, &changed).unwrap();
    match store
        .put_file("file/changed", &small_path, &d, &[], None)
        .await
    {
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::BadDigest, "{who}: {e}");
            assert_eq!(
                store.head("file/changed").await.unwrap_err().kind,
                ErrorKind::NotFound,
                "{who}"
            );
        }
        // moto takes a wrong Content-MD5; its ETag then shows the change.
        Ok(a) if who == "moto" => assert_ne!(Some(a.etag), d.md5_hex(), "{who}"),
        Ok(a) => panic!("{who}: a changed file stored: {a:?}"),
    }

    // Listing: key order, StartAfter resumes strictly after, prefixes hold.
    for k in ["ls/b", "ls/a", "ls/c/d", "ls/c"] {
        store
            .put_bytes(
                k,
                Bytes::from_static(b"1"),
                &checksum::digest(b"1"),
                &[],
                None,
            )
            .await
            .unwrap();
    }
    let page = store.list_page("ls/", None, None, 1000).await.unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["ls/a", "ls/b", "ls/c", "ls/c/d"], "{who}");
    let page = store
        .list_page("ls/", Some("ls/b"), None, 1000)
        .await
        .unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["ls/c", "ls/c/d"], "{who}");
    assert!(page.objects.iter().all(|o| o.size == 1), "{who}");
}

/// What the store confirms, as the probe learns it: SeaweedFS checks a
/// CRC-64/NVME it is sent (a wrong one refused) and answers it; moto takes a
/// wrong one, so it is trusted with nothing but its ETag. The probe leaves
/// no object behind.
async fn proof_contract(store: &S3Store, who: &str, want: Proof) {
    assert_eq!(store.proof(), Proof::Md5, "{who}: before the probe");
    assert_eq!(store.learn_proof("probed/").await, want, "{who}");
    let page = store.list_page("probed/", None, None, 1000).await.unwrap();
    assert!(page.objects.is_empty(), "{who}: {:?}", page.objects);
    if want != Proof::Crc64Nvme {
        return;
    }
    // A single PUT sends it and the answer carries it.
    let data = bytes(12, 1000);
    let d = checksum::digest_with(&data, false);
    let a = store
        .put_bytes("crc/one", Bytes::from(data), &d, &[], None)
        .await
        .unwrap();
    assert_eq!(a.nvme, Some(d.nvme), "{who}: PUT");
    // A FULL_OBJECT upload: each part's value, and the whole object's on
    // Complete, whatever the part size; a HEAD answers it too.
    let parts = [bytes(13, 5 << 20), bytes(14, 3)];
    let id = store
        .create_multipart("crc/mp", &[], None, true)
        .await
        .unwrap();
    let mut done = Vec::new();
    let mut crcs = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let digest = checksum::digest_with(p, false);
        let n = i as u32 + 1;
        let a = store
            .upload_part(
                &Upload {
                    key: "crc/mp",
                    id: &id,
                    nvme: true,
                },
                n,
                Bytes::copy_from_slice(p),
                &digest,
            )
            .await
            .unwrap();
        assert_eq!(a.nvme, Some(digest.nvme), "{who}: part {n}");
        done.push((n, a.etag));
        crcs.push((digest.nvme, p.len() as u64));
    }
    let whole = checksum::nvme_of_parts(crcs);
    let a = store
        .complete_multipart("crc/mp", &id, &done, Some(whole))
        .await
        .unwrap();
    assert_eq!(a.nvme, Some(whole), "{who}: Complete");
    assert_eq!(
        store.head("crc/mp").await.unwrap().nvme,
        Some(whole),
        "{who}: HEAD"
    );
    // A wrong full-object value is refused, not stored.
    let id = store
        .create_multipart("crc/wrong", &[], None, true)
        .await
        .unwrap();
    let digest = checksum::digest_with(b"tail", false);
    let a = store
        .upload_part(
            &Upload {
                key: "crc/wrong",
                id: &id,
                nvme: true,
            },
            1,
            Bytes::from_static(b"tail"),
            &digest,
        )
        .await
        .unwrap();
    let e = store
        .complete_multipart("crc/wrong", &id, &[(1, a.etag)], Some(digest.nvme ^ 1))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadDigest, "{who}: {e}");
    // The job remembers an answer without its proof: MD5 from then on.
    store.proof_failed("crc/one", "test");
    assert_eq!(store.proof(), Proof::Md5, "{who}");
}

#[test]
fn seaweedfs_bucket() {
    let s3 = S3Server::start();
    testkit::rt().block_on(async {
        s3.create_bucket("conf").await;
        let store = bucket_store(&s3.endpoint, "conf");
        contract(&Bucketed(store.clone())).await;
        bucket_contract(&store, "SeaweedFS").await;
        proof_contract(&store, "SeaweedFS", Proof::Crc64Nvme).await;
        short_body_contract(&s3.endpoint).await;
    });
}

/// A file cut short after it was hashed: its streamed PUT or part fails as
/// a read of the source (named, not retried as if the store had failed),
/// and the endpoint's breaker is not told the store went quiet, however
/// many such requests fail in a row.
async fn short_body_contract(endpoint: &str) {
    let health = storage::health::Health::new("destination", endpoint);
    let mut cfg = bucket_config(endpoint, "conf");
    cfg.health = Some(health.clone());
    let store = S3Store::new(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shrinks");
    let data = bytes(16, 3 << 20);
    let d = checksum::digest(&data);
    std::fs::write(&path, &data[..1 << 20]).unwrap();
    let id = store
        .create_multipart("short/mp", &[], None, false)
        .await
        .unwrap();
    let upload = Upload {
        key: "short/mp",
        id: &id,
        nvme: false,
    };
    for n in 0..storage::health::TRIP + 1 {
        let e = if n % 2 == 0 {
            store.put_file("short/one", &path, &d, &[], None).await
        } else {
            store.upload_part_file(&upload, n, &path, 0, &d).await
        }
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::SourceRead, "{e}");
        assert!(
            e.message.contains(&path.display().to_string())
                && e.message.contains("ended before the body did"),
            "{e}"
        );
        assert!(!health.status().suspect, "the breaker was told: {e}");
    }
    store.abort_multipart("short/mp", &id).await.unwrap();
    assert_eq!(
        store.head("short/one").await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn moto_bucket() {
    let moto = MotoServer::start();
    testkit::rt().block_on(async {
        moto.create_bucket("conf").await;
        let store = bucket_store(&moto.endpoint, "conf");
        contract(&Bucketed(store.clone())).await;
        bucket_contract(&store, "moto").await;
        proof_contract(&store, "moto", Proof::Md5).await;
    });
}

#[test]
fn local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root: &Path = tmp.path();
    testkit::rt().block_on(contract(&LocalDir(root.to_path_buf())));
    // Nothing but the objects: no temporary file is left behind.
    let mut stray = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(".ossimport-") {
                stray.push(e.path());
            }
        }
    }
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}
