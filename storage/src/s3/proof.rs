//! What a destination confirms about the bytes it stores, learned once per
//! job, so each object is hashed only for the proof the store will give:
//! CRC-64/NVME where the store checks the value it is sent and answers it,
//! CRC-64/XZ where it computes and answers its own (OSS's
//! `x-oss-hash-crc64ecma`), the MD5 in its ETag only where it confirms
//! nothing else. A CRC costs tens of GB/s per core, MD5 about 0.6.
//!
//! The probe sends one small part (to `.ossimport-probe-...` under the
//! job's destination prefix) in multipart uploads it never completes, so
//! no object ever appears: in one started with `ChecksumType=FULL_OBJECT`
//! the part with a deliberately wrong `x-amz-checksum-crc64nvme` (a store
//! that checks refuses it), then with the right value (answered back?);
//! where that fails, in a plain one (does the answer carry the store's
//! own CRC-64/XZ of the part?). A store that takes a wrong checksum is
//! never trusted with one: an echo of what was sent proves nothing. When an object's answer later lacks
//! the proof learned (a front that drops the header), that object falls
//! back to a HEAD and a read-back, and the job's later objects to MD5
//! ([`S3Store::proof_failed`]).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::checksum::digest;
use crate::s3::{ErrorKind, S3Store};

/// The cheapest proof a destination gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// Only the ETag: the MD5 of what it stored (single PUTs), or of the
    /// parts' MD5s (multipart).
    Md5,
    /// Its own CRC-64/XZ of what it stored, answered on PUT, UploadPart and
    /// Complete (OSS, COS).
    Crc64Xz,
    /// Checks a CRC-64/NVME sent with each PUT and part (refusing a wrong
    /// one) and answers it; a full-object value on Complete (S3,
    /// SeaweedFS).
    Crc64Nvme,
}

impl Proof {
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Md5 => "md5",
            Proof::Crc64Xz => "crc64xz",
            Proof::Crc64Nvme => "crc64nvme",
        }
    }
}

/// A job's learned proof, shared by the clones of its store.
#[derive(Debug, Default)]
pub struct Learned {
    proof: tokio::sync::OnceCell<Proof>,
    /// An object's answer lacked the learned proof: MD5 from then on.
    fell_back: AtomicBool,
}

impl S3Store {
    /// The proof this job's objects are hashed for: MD5 until
    /// [`S3Store::learn_proof`] has answered, and after a fallback.
    pub fn proof(&self) -> Proof {
        if self.proof.fell_back.load(Ordering::Relaxed) {
            return Proof::Md5;
        }
        self.proof.proof.get().copied().unwrap_or(Proof::Md5)
    }

    /// Whether PUTs and new multipart uploads carry a CRC-64/NVME.
    pub(crate) fn sends_nvme(&self) -> bool {
        self.proof() == Proof::Crc64Nvme
    }

    /// The proof the destination gives, probed once (under `prefix`, the
    /// job's destination prefix) by the first caller; the others wait.
    pub async fn learn_proof(&self, prefix: &str) -> Proof {
        self.proof.proof.get_or_init(|| self.probe(prefix)).await;
        self.proof()
    }

    /// An object's answer lacked the proof learned: the job's later objects
    /// are hashed with MD5 (said once, in the log).
    pub fn proof_failed(&self, key: &str, why: &str) {
        let learned = self.proof.proof.get().copied().unwrap_or(Proof::Md5);
        if learned != Proof::Md5 && !self.proof.fell_back.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                key,
                learned = learned.as_str(),
                why,
                "The destination did not confirm the checksum it had; this job's objects are checked by MD5 from now on."
            );
        }
    }

    async fn probe(&self, prefix: &str) -> Proof {
        let mut nonce = [0u8; 8];
        let _ = getrandom::fill(&mut nonce);
        let nonce = crate::checksum::hex(&nonce);
        let key = format!("{prefix}.ossimport-probe-{nonce}");
        let body = bytes::Bytes::from(format!("ossimport checksum probe {nonce}\n"));
        let d = digest(&body);
        let nvme = self.probe_nvme(&key, &body, &d).await;
        let proof = match nvme {
            Ok(true) => Proof::Crc64Nvme,
            Ok(false) => match self.probe_xz(&key, &body, &d).await {
                Ok(true) => Proof::Crc64Xz,
                Ok(false) => Proof::Md5,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot probe which checksums the destination confirms; objects are checked by MD5.");
                    Proof::Md5
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "Cannot probe which checksums the destination confirms; objects are checked by MD5.");
                Proof::Md5
            }
        };
        tracing::info!(
            proof = proof.as_str(),
            "Learned what the destination confirms."
        );
        proof
    }

    /// In an upload started with `ChecksumType=FULL_OBJECT` (never
    /// completed, so no object appears): a part with a wrong CRC-64/NVME
    /// must be refused, the same part with the right one answered with it.
    /// `Err` only when the store cannot be asked at all.
    async fn probe_nvme(
        &self,
        key: &str,
        body: &bytes::Bytes,
        d: &crate::checksum::Digest,
    ) -> Result<bool, crate::s3::S3Error> {
        let id = match self.create_multipart(key, &[], None, true).await {
            Ok(id) => id,
            Err(e) if e.kind == ErrorKind::Transient => return Err(e),
            // Refused (a store that takes no checksum algorithm).
            Err(_) => return Ok(false),
        };
        let no_md5 = crate::checksum::Digest { md5: None, ..*d };
        let wrong = crate::checksum::Digest {
            nvme: d.nvme ^ 0x5a5a,
            ..no_md5
        };
        let upload = crate::s3::Upload {
            key,
            id: &id,
            nvme: true,
        };
        let checks = match self.upload_part(&upload, 1, body.clone(), &wrong).await {
            Err(e) if e.kind != ErrorKind::Transient => {
                matches!(
                    self.upload_part(&upload, 1, body.clone(), &no_md5).await,
                    Ok(a) if a.nvme == Some(d.nvme)
                )
            }
            _ => false,
        };
        self.abort_probe(key, &id).await;
        Ok(checks)
    }

    /// In a plain upload (never completed): does the part's answer carry
    /// the store's own CRC-64/XZ of it?
    async fn probe_xz(
        &self,
        key: &str,
        body: &bytes::Bytes,
        d: &crate::checksum::Digest,
    ) -> Result<bool, crate::s3::S3Error> {
        let id = self.create_multipart(key, &[], None, false).await?;
        let upload = crate::s3::Upload {
            key,
            id: &id,
            nvme: false,
        };
        let answered = self.upload_part(&upload, 1, body.clone(), d).await;
        self.abort_probe(key, &id).await;
        Ok(answered?.crc64 == Some(d.crc64))
    }

    async fn abort_probe(&self, key: &str, id: &str) {
        if let Err(e) = self.abort_multipart(key, id).await {
            tracing::warn!(key, error = %e, "Cannot abort the checksum probe's upload (it holds a few bytes until the bucket's lifecycle rules remove it).");
        }
    }
}
