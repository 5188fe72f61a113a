//! The daemon's own check of an executor's result, before it counts: an
//! enrolled key (or a compromised worker) that answers every task with
//! "verified" does not make a job succeed. A result that claims an object
//! must agree with what the listing recorded (its size where the listing
//! knows it; the identity of the local file that was read) and its
//! evidence must prove what the job's `verifyMode` asks, by the same rule
//! the executor applies (`agent::verify::proves`). A result that fails is
//! recorded as `REJECTED_RESULT` (`retry` runs it again) and counted
//! against its executor.
//!
//! What this cannot catch: an executor that reports, consistently, a copy
//! it did not make (the daemon does not read the destination itself); an
//! audit (`jobType=audit`) from another host does.

use proto::job::{ObjectResult, Outcome, SkipMode, VerifyMode};

use crate::store::Listed;

/// What a job asks of its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub verify: VerifyMode,
    /// `lastModify`: objects modified after it are checked by size only.
    pub last_modify: i64,
    pub skip: SkipMode,
    /// Whether the listing knows sizes (not a URL list's).
    pub sized: bool,
}

impl Policy {
    pub fn of(spec: &proto::job::JobSpec) -> Policy {
        Policy {
            verify: spec.verify,
            last_modify: spec.limits.last_modify,
            skip: spec.skip,
            sized: !matches!(spec.source, proto::job::SourceSpec::Http),
        }
    }
}

/// Why `r` cannot count for the object `listed`, if it cannot. Pure;
/// table-tested.
pub fn check(p: &Policy, listed: &Listed, r: &ObjectResult) -> Result<(), String> {
    match r.outcome {
        Outcome::Failed => return Ok(()),
        Outcome::Skipped if p.skip == SkipMode::None => {
            return Err(
                "reported as already at the destination, but the job skips nothing (no isSkipExistFile or skipMode)"
                    .into(),
            );
        }
        Outcome::Skipped => return Ok(()),
        Outcome::Verified => {}
    }
    if p.sized && r.size != listed.size {
        return Err(format!(
            "reported {} bytes verified; the listing recorded {}",
            r.size, listed.size
        ));
    }
    if let Some(want) = listed.ident {
        match r.source_ident {
            Some(got) if got == want => {}
            Some(_) => {
                return Err(
                    "reported reading a source file other than the one listed (its identity differs)"
                        .into(),
                );
            }
            None => return Err("reported no identity of the source file it read".into()),
        }
    }
    let mode = if p.last_modify > 0 && listed.mtime > p.last_modify {
        VerifyMode::Size
    } else {
        p.verify
    };
    if !r.verified_by.proves(mode) {
        return Err(format!(
            "its evidence ({}) does not prove what verifyMode={} asks",
            if r.verified_by.is_empty() {
                "nothing".to_owned()
            } else {
                r.verified_by.to_string()
            },
            mode_name(mode)
        ));
    }
    if mode != VerifyMode::Size && r.md5.is_none() && r.crc64.is_none() && r.etag.is_none() {
        return Err("claims a checksum comparison but reports no checksum".into());
    }
    Ok(())
}

fn mode_name(m: VerifyMode) -> &'static str {
    match m {
        VerifyMode::Size => "size",
        VerifyMode::Checksum => "checksum",
        VerifyMode::ReadBack => "readback",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(size: u64, by: &str, ident: Option<i64>) -> ObjectResult {
        ObjectResult {
            object_id: 1,
            task_id: 1,
            outcome: Outcome::Verified,
            size,
            crc64: Some(7),
            md5: Some("00".repeat(16)),
            etag: None,
            verified_by: proto::job::Evidence::parse(by),
            error: None,
            retries: 0,
            parts_resumed: 0,
            source_ident: ident,
            metadata: None,
        }
    }

    #[test]
    fn results_are_held_to_the_listing_and_the_verify_mode() {
        let listed = Listed {
            job_id: 1,
            size: 10,
            mtime: 100,
            ident: Some(5),
        };
        let p = Policy {
            verify: VerifyMode::Checksum,
            last_modify: 0,
            skip: SkipMode::None,
            sized: true,
        };
        let ok = |p: &Policy, r: &ObjectResult| check(p, &listed, r);
        assert_eq!(ok(&p, &result(10, "size+md5+crc64", Some(5))), Ok(()));
        // Wrong size, wrong or missing identity.
        assert!(
            ok(&p, &result(9, "size+md5", Some(5)))
                .unwrap_err()
                .contains("9 bytes")
        );
        assert!(
            ok(&p, &result(10, "size+md5", Some(6)))
                .unwrap_err()
                .contains("other than")
        );
        assert!(
            ok(&p, &result(10, "size+md5", None))
                .unwrap_err()
                .contains("no identity")
        );
        // Evidence that does not prove the mode.
        assert!(
            ok(&p, &result(10, "size", Some(5)))
                .unwrap_err()
                .contains("verifyMode=checksum")
        );
        assert!(ok(&p, &result(10, "agent_load", Some(5))).is_err());
        let rb = Policy {
            verify: VerifyMode::ReadBack,
            ..p
        };
        assert!(ok(&rb, &result(10, "size+md5+crc64", Some(5))).is_err());
        assert_eq!(
            ok(&rb, &result(10, "size+md5+crc64+readback", Some(5))),
            Ok(())
        );
        // Modified after lastModify: size only, as the executor does.
        let lm = Policy {
            last_modify: 50,
            ..p
        };
        assert_eq!(ok(&lm, &result(10, "size", Some(5))), Ok(()));
        // A checksum claimed with no checksum reported.
        let mut bare = result(10, "size+md5", Some(5));
        bare.md5 = None;
        bare.crc64 = None;
        assert!(ok(&p, &bare).is_err());
        // URL lists: sizes are not known at listing.
        let url = Policy { sized: false, ..p };
        let listed0 = Listed {
            size: 0,
            ident: None,
            ..listed.clone()
        };
        assert_eq!(check(&url, &listed0, &result(77, "size+md5", None)), Ok(()));
        // Skipped only where the job skips.
        let mut skipped = result(10, "size", None);
        skipped.outcome = Outcome::Skipped;
        assert!(ok(&p, &skipped).is_err());
        let skipping = Policy {
            skip: SkipMode::SizeMtime,
            ..p
        };
        assert_eq!(ok(&skipping, &skipped), Ok(()));
        // Failures are what they say.
        let mut failed = result(0, "", None);
        failed.outcome = Outcome::Failed;
        assert_eq!(ok(&p, &failed), Ok(()));
    }
}
