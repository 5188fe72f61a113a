//! From `job.cfg` + `sys.properties` to what a job needs: the executor's
//! `JobSpec`, the scanner's `ScanConfig`, and the checks made before
//! anything is copied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::ConfigError;
use crate::config::job::{AddressingStyle, DestType, JobConfig, SrcType};
use crate::config::sys::SysConfig;
use crate::filter::Filter;
use crate::scan::{DestCase, HttpList, ScanConfig};
use proto::job::{Bucket, DestSpec, JobMode, JobSpec, Limits, SkipMode, SourceSpec};

/// Smallest part S3 accepts (all but the last part).
const S3_MIN_PART: u64 = 5 << 20;

/// Why a job cannot be planned. Every message is one line naming the file
/// (and the line and key where there is one).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A key of `job.cfg` or `sys.properties`, or the file's encoding.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The keys parse but ask for what cannot work or this build cannot
    /// do: a required key missing for the source or destination type, an
    /// unsupported `srcType`, a bad glob, a bad line in the URL list.
    #[error("{0}")]
    Job(String),
}

pub struct Plan {
    pub name: String,
    pub fingerprint: String,
    pub config_json: String,
    pub spec: JobSpec,
    pub scan: ScanConfig,
    pub warnings: Vec<String>,
    /// The keys of the job file (and sys.properties) set away from their
    /// defaults, for the dry run.
    pub settings: Vec<crate::config::keys::Changed>,
    pub work_dir: Option<PathBuf>,
    pub source_label: String,
    pub dest_label: String,
    /// Secret files the job's keys were read from (key, path).
    pub secret_files: Vec<(&'static str, PathBuf)>,
    /// The local destination directory (`destType=local`).
    pub dest_dir: Option<PathBuf>,
    /// Added to a failed source check: what the source type expects.
    pub source_hint: Option<&'static str>,
}

/// Loads and validates both files; every error is one line naming file,
/// line and key (or what else is wrong).
pub fn load(job_cfg: &Path, sys: Option<&Path>) -> Result<Plan, PlanError> {
    let bytes = read_bytes(job_cfg)?;
    let sys_path = match sys {
        Some(p) => Some(p.to_path_buf()),
        None => sibling_sys(job_cfg).filter(|p| p.is_file()),
    };
    let sys = match sys_path {
        Some(p) => {
            let b = read_bytes(&p)?;
            Some((p, b))
        }
        None => None,
    };
    from_bytes(job_cfg, &bytes, sys)
}

/// The `sys.properties` next to a job file, where the original kept it.
pub fn sibling_sys(job_cfg: &Path) -> Option<PathBuf> {
    job_cfg.parent().map(|d| d.join("sys.properties"))
}

pub fn read_bytes(path: &Path) -> Result<Vec<u8>, PlanError> {
    std::fs::read(path).map_err(|source| PlanError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// As [`load`], from files read by someone else (the daemon gets them from
/// `ossimportctl submit`): `job_cfg` names the job file in messages and is
/// where relative secret files are looked up; `sys` is a `sys.properties`
/// with its path, or the defaults. Both may be in any of the original's
/// encodings (see [`crate::config::decode`]); decoding notes become
/// warnings.
pub fn from_bytes(
    job_cfg: &Path,
    bytes: &[u8],
    sys: Option<(PathBuf, Vec<u8>)>,
) -> Result<Plan, PlanError> {
    let (text, mut notes) = crate::config::decode(&job_cfg.display().to_string(), bytes)?;
    let sys = match sys {
        Some((p, b)) => {
            let (t, n) = crate::config::decode(&p.display().to_string(), &b)?;
            notes.extend(n);
            Some((p, t))
        }
        None => None,
    };
    let mut settings = crate::config::keys::changed(
        crate::config::keys::JOB,
        &job_cfg.display().to_string(),
        &text,
    );
    if let Some((p, t)) = &sys {
        settings.extend(crate::config::keys::changed(
            crate::config::keys::SYS,
            &p.display().to_string(),
            t,
        ));
    }
    let mut plan = from_text(job_cfg, &text, sys)?;
    notes.append(&mut plan.warnings);
    plan.warnings = notes;
    plan.settings = settings;
    Ok(plan)
}

/// The plan of a parsed job: source, destination, spec and listing in that
/// order. Long because each source type maps to what its executors read
/// and what its listing reads side by side here (they differ only for a CDN
/// source, which lists the bucket behind the CDN).
fn from_text(
    job_cfg: &Path,
    text: &str,
    sys: Option<(PathBuf, String)>,
) -> Result<Plan, PlanError> {
    let cfg = JobConfig::parse_at(job_cfg, text, &crate::config::process_env)?;
    let sys_path = sys.as_ref().map(|(p, _)| p.clone());
    let sys = match &sys {
        Some((p, t)) => SysConfig::parse(&p.display().to_string(), t)?,
        None => SysConfig::parse("(defaults)", "")?,
    };
    if cfg.src_type == SrcType::Azure {
        for (key, value, what) in [
            (
                "srcAccessKey",
                cfg.src_access_key.as_str(),
                "the storage account name",
            ),
            (
                "srcSecretKey",
                cfg.src_secret_key.expose(),
                "the account key or a SAS token",
            ),
            ("srcBucket", cfg.src_bucket.as_str(), "the container"),
        ] {
            if value.trim().is_empty() {
                return Err(PlanError::Job(format!(
                    "{}: {key}: required for srcType=azure: {what}",
                    job_cfg.display()
                )));
            }
        }
    }
    let mut warnings = cfg.warnings.clone();
    warnings.extend(
        cfg.unsupported()
            .into_iter()
            .map(|w| format!("{}: {w}", job_cfg.display())),
    );
    if cfg.is_incremental && cfg.incremental_mode_interval < 900 {
        warnings.push(format!(
            "{}: incrementalModeInterval={} is below the original's minimum of 900 s, allowed by OSSIMPORT_MIN_INCREMENTAL_INTERVAL",
            job_cfg.display(),
            cfg.incremental_mode_interval
        ));
    }
    for (key, endpoint) in [
        ("destDomain", &cfg.dest_domain),
        ("srcDomain", &cfg.src_domain),
        ("cdnDomain", &cfg.cdn_domain),
    ] {
        if storage::s3::plain_http_off_host(endpoint) {
            warnings.push(format!(
                "{}: {key}={endpoint} is plain HTTP: the store's answers are not authenticated on the way, so each single PUT is confirmed by a HEAD as well; use https:// where the store has it",
                job_cfg.display()
            ));
        }
    }
    if let Some(p) = &sys_path {
        warnings.extend(
            sys.unsupported()
                .into_iter()
                .map(|w| format!("{}: {w}", p.display())),
        );
    }

    let (dest, dest_label, dest_dir) = match cfg.dest_type {
        DestType::Local => {
            let dir = cfg.dest_dir.clone().ok_or_else(|| {
                PlanError::Job(format!(
                    "{}: destDir: required for destType=local",
                    job_cfg.display()
                ))
            })?;
            let label = format!("{}/{}", dir.display(), cfg.dest_prefix);
            (
                DestSpec::Local {
                    dir: dir.display().to_string(),
                    prefix: cfg.dest_prefix.clone(),
                },
                label,
                Some(dir),
            )
        }
        DestType::Oss | DestType::S3 => {
            let bucket = Bucket {
                endpoint: cfg.dest_domain.clone(),
                region: cfg.dest_region.clone(),
                name: cfg.dest_bucket.clone(),
                access_key: cfg.dest_access_key.clone(),
                secret_key: cfg.dest_secret_key.clone(),
                path_style: cfg.dest_addressing_style == AddressingStyle::Path,
                prefix: cfg.dest_prefix.clone(),
            };
            let label = bucket.label();
            (
                DestSpec::S3 {
                    bucket,
                    server_side_encryption: cfg.is_server_side_encryption,
                    storage_class: (!cfg.dest_storage_class.is_empty())
                        .then(|| cfg.dest_storage_class.clone()),
                },
                label,
                None,
            )
        }
    };
    let mut http_list = None;
    // What the executors read, and what the listing reads.
    let (source, listed, source_label) = match cfg.src_type {
        SrcType::Local => {
            let local = SourceSpec::Local {
                root: cfg.src_prefix.clone(),
                follow_symlinks: cfg.is_allow_symbolic_link,
            };
            (local.clone(), local, cfg.src_prefix.clone())
        }
        SrcType::Http => {
            let list = cfg.http_list_file_path.clone().ok_or_else(|| {
                PlanError::Job(format!(
                    "{}: httpListFilePath: required for srcType=http",
                    job_cfg.display()
                ))
            })?;
            let (pc, rc) = (
                cfg.http_prefix_column as usize,
                cfg.relative_path_column as usize,
            );
            crate::http_list::validate_http_list(&list, pc, rc).map_err(PlanError::Job)?;
            let label = format!("URLs in {}", list.display());
            http_list = Some(HttpList {
                path: list,
                prefix_column: pc,
                rel_column: rc,
            });
            (SourceSpec::Http, SourceSpec::Http, label)
        }
        SrcType::Azure => {
            let container = Bucket {
                endpoint: cfg.src_domain.clone(),
                region: String::new(),
                name: cfg.src_bucket.clone(),
                access_key: cfg.src_access_key.clone(),
                secret_key: cfg.src_secret_key.clone(),
                path_style: false,
                prefix: cfg.src_prefix.trim_start_matches('/').to_owned(),
            };
            let label = format!(
                "{} (azure) container {}/{}",
                storage::azure::endpoint_of(&container),
                container.name,
                container.prefix
            );
            let spec = if cfg.is_download_from_cdn {
                SourceSpec::Cdn {
                    domain: cfg.cdn_domain.clone(),
                    prefix: container.prefix.clone(),
                }
            } else {
                SourceSpec::Azure(container.clone())
            };
            (spec, SourceSpec::Azure(container), label)
        }
        _ => {
            // Every other cloud through its S3-compatible endpoint. Keys do
            // not start with `/` (COS prefixes are written `/dir/`).
            let prefix = cfg.src_prefix.trim_start_matches('/').to_owned();
            let bucket = Bucket {
                endpoint: cfg.src_domain.clone(),
                region: cfg.src_region.clone(),
                name: cfg.src_bucket.clone(),
                access_key: cfg.src_access_key.clone(),
                secret_key: cfg.src_secret_key.clone(),
                path_style: cfg.src_addressing_style == AddressingStyle::Path,
                prefix,
            };
            let spec = if cfg.is_download_from_cdn {
                SourceSpec::Cdn {
                    domain: cfg.cdn_domain.clone(),
                    prefix: bucket.prefix.clone(),
                }
            } else {
                SourceSpec::S3(bucket.clone())
            };
            (
                spec,
                SourceSpec::S3(bucket),
                format!(
                    "{} ({}) bucket {}/{}{}",
                    cfg.src_domain,
                    cfg.src_type.as_str(),
                    cfg.src_bucket,
                    cfg.src_prefix.trim_start_matches('/'),
                    if cfg.is_download_from_cdn {
                        format!(" via CDN {}", cfg.cdn_domain)
                    } else {
                        String::new()
                    }
                ),
            )
        }
    };
    // S3 refuses parts under 5 MiB (except the last); OSS accepts 100 KiB.
    let mut part_size = cfg.multipart_upload_part_size;
    if cfg.dest_type == DestType::S3 && part_size < S3_MIN_PART {
        warnings.push(format!(
            "multipartUploadPartSize={part_size} is below the 5 MiB minimum of S3-compatible stores; using 5m"
        ));
        part_size = S3_MIN_PART;
    }
    let spec = JobSpec {
        job_id: 0,
        job_name: cfg.job_name.clone(),
        mode: cfg.job_type,
        source: source.clone(),
        dest,
        multipart_threshold: cfg.multipart_upload_threshold,
        part_size,
        part_concurrency: cfg.upload_thread_num_per_large_file,
        object_concurrency: sys.worker_task_thread_num,
        verify: cfg.verify_mode,
        // An audit writes nothing, so there is nothing to skip.
        skip: match cfg.job_type {
            JobMode::Audit => SkipMode::None,
            JobMode::Import => cfg.skip_mode,
        },
        record_md5: sys.worker_record_md5,
        max_attempts: cfg.request_attempts,
        copy_metadata: cfg.copy_metadata,
        copy_tags: cfg.copy_tags,
        preserve_file_attrs: cfg.preserve_file_attrs,
        server_side_copy: cfg.server_side_copy,
        server_side_copy_cutoff: cfg.server_side_copy_cutoff,
        overwrite: cfg.overwrite_mode,
        limits: Limits {
            // The flat cap; a schedule replaces it once the engine loads
            // the job (`engine::limits`).
            bytes_per_second: sys.worker_max_throughput_kbps.saturating_mul(1024),
            bandwidth_schedule: sys.worker_max_throughput_schedule.clone(),
            requests_per_second: cfg.max_requests_per_second,
            object_timeout_secs: cfg.object_timeout,
            endpoint_outage_secs: cfg.endpoint_outage_limit,
            last_modify: cfg.last_modify as i64,
        },
    };
    let scan = ScanConfig {
        metadata_changes: cfg.copy_metadata,
        source: listed,
        http_list,
        page_size: cfg.src_list_page_size,
        attempts: cfg.request_attempts,
        filter: Filter::new(&cfg.include_globs, &cfg.exclude_globs)
            .map_err(|e| PlanError::Job(format!("{}: {e}", job_cfg.display())))?,
        task_count_limit: cfg.task_object_count_limit,
        task_size_limit: cfg.task_object_size_limit,
        import_since: cfg.import_since as i64,
        max_task_age: Some(Duration::from_secs(2)),
        incremental: cfg
            .is_incremental
            .then(|| Duration::from_secs(cfg.incremental_mode_interval)),
        watch: (cfg.is_incremental
            && cfg.incremental_mode == crate::config::job::IncrementalMode::Watch)
            .then(|| Duration::from_secs(cfg.watch_settle_seconds)),
        threads: cfg.scan_thread_count as usize,
        split_depth: cfg.max_multi_thread_scan_depth as usize,
        dest_dir: cfg
            .dest_dir
            .clone()
            .filter(|_| cfg.dest_type == crate::config::job::DestType::Local),
        dest_case: if cfg.dest_type == crate::config::job::DestType::Local {
            DestCase::Probe
        } else {
            DestCase::Exact
        },
    };
    let work_dir = sys_path
        .as_ref()
        .filter(|_| sys.working_dir_given)
        .map(|_| sys.working_dir.clone());
    let secret_files = [
        ("srcSecretKeyFile", cfg.src_secret_key_file.clone()),
        ("destSecretKeyFile", cfg.dest_secret_key_file.clone()),
    ]
    .into_iter()
    .filter_map(|(k, p)| Some((k, p?)))
    .collect();
    Ok(Plan {
        secret_files,
        name: cfg.job_name.clone(),
        fingerprint: cfg.fingerprint(),
        config_json: cfg.fingerprint(),
        source_label,
        spec,
        scan,
        warnings,
        settings: Vec::new(),
        work_dir,
        dest_label,
        dest_dir,
        source_hint: (cfg.src_type == SrcType::Youpai).then_some(
            "srcType=youpai: Upyun's S3 endpoint takes an operator's S3 access key and secret \
             (made in the Upyun console), not the operator's name and password",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(lines: &str) -> Plan {
        from_bytes(Path::new("/jobs/job.cfg"), lines.as_bytes(), None).unwrap()
    }

    /// The source is described once: a listing reads what the executors
    /// read, but for a CDN job, which lists the bucket behind the CDN and
    /// gives its executors no source credentials.
    #[test]
    fn the_listing_reads_the_executors_source_but_through_a_cdn() {
        let bucket = "srcType=s3\nsrcAccessKey=ak\nsrcSecretKey=sk\nsrcDomain=http://127.0.0.1:9\nsrcBucket=b\nsrcPrefix=/p/\n\
             destType=s3\ndestAccessKey=ak\ndestSecretKey=sk\ndestDomain=http://127.0.0.1:9\ndestBucket=d\n";
        let direct = plan(bucket);
        assert_eq!(direct.scan.source, direct.spec.source);
        let SourceSpec::S3(b) = &direct.scan.source else {
            panic!("{:?}", direct.scan.source)
        };
        assert_eq!(b.prefix, "p/");
        assert!(direct.scan.http_list.is_none());

        let cdn = plan(&format!(
            "{bucket}isDownloadFromCdn=true\ncdnDomain=http://cdn.example\n"
        ));
        assert_eq!(cdn.scan.source, direct.scan.source);
        assert_eq!(
            cdn.spec.source,
            SourceSpec::Cdn {
                domain: "http://cdn.example".into(),
                prefix: "p/".into()
            }
        );

        let local = plan(
            "srcType=local\nsrcPrefix=/data/\ndestType=s3\ndestAccessKey=ak\ndestSecretKey=sk\ndestDomain=http://127.0.0.1:9\ndestBucket=d\n",
        );
        assert_eq!(local.scan.source, local.spec.source);
        assert_eq!(local.scan.local_root(), Some(Path::new("/data/")));
    }
}
