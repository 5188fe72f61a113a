//! `submit`: the job file read as the caller and sent to the daemon, or
//! recorded in its job store while no daemon runs.

use super::*;

pub(super) async fn submit(
    job_cfg: Option<PathBuf>,
    dry_run: bool,
    sample: Option<u64>,
    wait: bool,
    d: DaemonArgs,
) -> Result<exit::Code> {
    let path = job_cfg.unwrap_or_else(|| PathBuf::from("conf/job.cfg"));
    let abs = std::path::absolute(&path)
        .map_err(|e| Fail(exit::USAGE, format!("{}: {e}", path.display())))?;
    if !abs.is_file() {
        return Err(Fail(
            exit::USAGE,
            format!("{}: no such job file", abs.display()),
        ));
    }
    if dry_run {
        let plan = job::plan::load(&abs, None).map_err(|e| Fail(exit::USAGE, e.to_string()))?;
        for w in &plan.warnings {
            eprintln!("warning: {w}");
        }
        return crate::dry_run::dry_run(&plan, sample, d.json)
            .await
            .map_err(|e| Fail(exit::RUNTIME, format!("{e:#}")));
    }
    // Read here, as the caller: the daemon never opens a file on a
    // caller's behalf that the caller could not open.
    let content = std::fs::read(&abs)
        .map_err(|e| Fail(exit::USAGE, format!("{}: cannot read: {e}", abs.display())))?;
    let sys = job::plan::sibling_sys(&abs).filter(|p| p.is_file());
    let sys = match sys {
        Some(p) => Some(
            std::fs::read(&p)
                .map_err(|e| Fail(exit::USAGE, format!("{}: cannot read: {e}", p.display())))?,
        ),
        None => None,
    };
    let body = serde_json::to_vec(&SubmitRequest::new(
        abs.display().to_string(),
        &content,
        sys.as_deref(),
    ))
    .map_err(|e| Fail(exit::RUNTIME, e.to_string()))?;
    let conn = Conn::new(&d);
    let (name, v) = match conn
        .call::<JobStatus>(&Endpoint::Submit, None, Some(body.clone()))
        .await
    {
        Ok((st, v)) => (st.name, v),
        // The original's order: submit, then start. The job goes
        // into the store the daemon reads when it starts.
        Err(Fail(exit::DAEMON_UNREACHABLE, why)) => {
            // A socket file that nothing answers on: a daemon was
            // killed or hangs. Writing the job into the store
            // ourselves would hide that; say so instead.
            let socket = crate::conn::socket_path(&d);
            if std::fs::symlink_metadata(&socket).is_ok() {
                return Err(Fail(
                    exit::DAEMON_UNREACHABLE,
                    format!(
                        "nothing submitted: the socket {} (found from {}) exists but nothing answers on it, so an ossimportd was killed or hangs; end it, then `ossimportctl start` (which removes a stale socket) and submit again",
                        socket.display(),
                        d.found_by
                    ),
                ));
            }
            match submit_offline(&d, &abs, &content, sys.as_deref()).await? {
                Some(name) => {
                    let v = serde_json::json!({"name": name, "queued": true});
                    (name, v)
                }
                // A daemon holds the store: it is starting up.
                // Give it the job once it answers.
                None => {
                    let mut last = Fail(exit::DAEMON_UNREACHABLE, why);
                    let mut got = None;
                    for _ in 0..100 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        match conn
                            .call::<JobStatus>(&Endpoint::Submit, None, Some(body.clone()))
                            .await
                        {
                            Ok((st, v)) => {
                                got = Some((st.name, v));
                                break;
                            }
                            Err(e) if e.0 == exit::DAEMON_UNREACHABLE => last = e,
                            Err(e) => return Err(e),
                        }
                    }
                    got.ok_or(last)?
                }
            }
        }
        Err(e) => return Err(e),
    };
    let queued = v["queued"] == true;
    if d.json {
        // With --wait, the one document printed is the job's at its end.
        if !wait || queued {
            print_json(&v);
        }
    } else {
        println!("submit job:{}", abs.display());
        println!("submit job:{name} success!");
        if queued {
            println!(
                "ossimportd is not running (nothing answers on {}, found from {}); the job is queued in the job store {} and runs when it starts (ossimportctl start).",
                crate::conn::socket_path(&d).display(),
                d.found_by,
                daemon_work_dir(&d)?
                    .join(proto::control::STORE_FILE)
                    .display()
            );
        }
    }
    if !wait {
        return Ok(exit::OK);
    }
    if queued {
        return Err(Fail(
            exit::DAEMON_UNREACHABLE,
            format!(
                "job {name} is queued, but no daemon runs it yet: nothing to wait for (start it with `ossimportctl start`)"
            ),
        ));
    }
    wait_end(&conn, &name, d.json).await
}

/// How often `submit --wait` says what it waits for.
const SAY_EVERY: Duration = Duration::from_secs(30);

/// `submit --wait`: the daemon answers once the job has ended (or after a
/// bound, and the call is made again), so nothing polls.
async fn wait_end(conn: &Conn, name: &str, json: bool) -> Result<exit::Code> {
    let started = std::time::Instant::now();
    let mut said = std::time::Instant::now();
    let (st, v) = loop {
        let asked = std::time::Instant::now();
        let (st, v): (JobStatus, _) = conn
            .call(&Endpoint::WaitEnd(name.into()), None, None)
            .await?;
        if st.incremental.is_some() {
            return Err(Fail(
                exit::USAGE,
                format!(
                    "job {name} is incremental and never ends, so there is no end to wait for; it runs: `ossimportctl sync {name} --wait` waits for a cut-over"
                ),
            ));
        }
        if st.has_ended() {
            break (st, v);
        }
        if !json && said.elapsed() >= SAY_EVERY {
            let c = &st.counts;
            eprintln!(
                "job {name}: {}: {} of {} objects verified or skipped, {} failed",
                st.state.as_str(),
                c.verified + c.skipped,
                c.objects,
                c.failed
            );
            said = std::time::Instant::now();
        }
        // The daemon answers early while it stops, or when it holds as many
        // waits as it takes: ask again after a pause, not in a hot loop.
        if asked.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let c = &st.counts;
    let ok = st.state == proto::api::JobState::Succeed;
    if json {
        print_json(&v);
    } else {
        let mut line = format!(
            "job {name} {}: {} verified ({}), {} skipped, {} failed in {:.1} s",
            st.state.as_str(),
            c.verified,
            human_bytes(c.verified_bytes),
            c.skipped,
            c.failed,
            started.elapsed().as_secs_f64()
        );
        if let Some(e) = &st.listing_error {
            line.push_str(&format!("; listing failed: {}", proto::net::printable(e)));
        }
        if c.failed > 0 {
            line.push_str(&format!(" (ossimportctl errors {name})"));
        }
        println!("{line}");
    }
    Ok(if ok { exit::OK } else { exit::JOB_FAILED })
}

/// `submit` while no daemon answers: validates the job exactly as the
/// daemon would and records it in the job store it reads at start
/// ([`Offline`]). `None` when a daemon holds the store after all (it is
/// starting up; the caller asks it again).
pub(super) async fn submit_offline(
    d: &DaemonArgs,
    job_cfg: &std::path::Path,
    content: &[u8],
    sibling_sys: Option<&[u8]>,
) -> Result<Option<String>> {
    let bad_plan = |e: job::plan::PlanError| Fail(exit::USAGE, e.to_string());
    let work = daemon_work_dir(d)?;
    // The daemon plans with its own sys.properties when it has one (the
    // one `ossimportctl start` gives it), else the job's neighbour, which
    // is then saved with the job.
    let sys = match &d.sys {
        Some(p) => Some((p.clone(), job::plan::read_bytes(p).map_err(bad_plan)?)),
        None => sibling_sys.map(|b| {
            (
                job::plan::sibling_sys(job_cfg).unwrap_or_default(),
                b.to_vec(),
            )
        }),
    };
    // Saved with the job either way: a daemon started without settings
    // plans it again from this copy.
    let saved_sys = sys.as_ref().map(|(_, b)| b.clone());
    let plan = job::plan::from_bytes(job_cfg, content, sys).map_err(bad_plan)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let Some(store) = Offline::open(&work, true).map_err(local_error)? else {
        return Ok(None);
    };
    store
        .submit(
            &plan,
            content,
            saved_sys.as_deref(),
            &job_cfg.display().to_string(),
        )
        .await
        .map_err(local_error)?;
    Ok(Some(plan.name))
}
