//! `start`, `stop` and `version`: the daemon's half, and the agents' rows.

use super::*;

pub(super) async fn version(d: &DaemonArgs) -> Result<exit::Code> {
    let ctl = env!("CARGO_PKG_VERSION");
    let daemon = Conn::new(d)
        .call::<VersionInfo>(&Endpoint::Version, None, None)
        .await
        .ok()
        .map(|(v, _)| v);
    if d.json {
        print_json(
            &serde_json::json!({"ossimportctl": ctl, "commit": proto::COMMIT, "ossimportd": daemon}),
        );
    } else {
        println!("ossimportctl {}", proto::VERSION);
        match daemon {
            Some(v) => println!(
                "ossimportd {} (commit {}, api v{})",
                v.version,
                v.commit.as_deref().unwrap_or("unknown"),
                v.api
            ),
            None => println!("ossimportd not running"),
        }
    }
    Ok(exit::OK)
}

pub(super) async fn start(d: &DaemonArgs) -> Result<exit::Code> {
    let conn = Conn::new(d);
    if conn
        .call::<VersionInfo>(&Endpoint::Version, None, None)
        .await
        .is_ok()
    {
        if d.json {
            print_json(&serde_json::json!({"running": true, "started": false}));
        } else {
            println!("ossimportd is already running.");
        }
        return Ok(exit::OK);
    }
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ossimportd")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("ossimportd"));
    let mut cmd = std::process::Command::new(&bin);
    // Absolute paths (`locate` made them so): the daemon changes into its
    // work directory, and reloads its jobs with them at every start.
    cmd.arg("--daemon").arg("--socket").arg(&conn.client.socket);
    if let Some(s) = &d.sys {
        cmd.arg("--sys").arg(s);
    }
    // Without settings, the work directory `locate` chose (the daemon
    // would take its own current directory).
    if let (None, Some(w)) = (&d.sys, &d.work_dir) {
        cmd.arg("--work-dir").arg(w);
    }
    let status = cmd
        .status()
        .map_err(|e| Fail(exit::RUNTIME, format!("starting {}: {e}", bin.display())))?;
    if !status.success() {
        return Err(Fail(
            exit::RUNTIME,
            format!("{} --daemon failed ({status})", bin.display()),
        ));
    }
    for _ in 0..150 {
        if conn
            .call::<VersionInfo>(&Endpoint::Version, None, None)
            .await
            .is_ok()
        {
            if d.json {
                print_json(&serde_json::json!({"running": true, "started": true}));
            } else {
                println!("Start import service completed.");
            }
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Fail(
        exit::RUNTIME,
        format!(
            "ossimportd did not answer on {} after starting; see its log",
            conn.client.socket.display()
        ),
    ))
}

/// Refuses an operator a verb that needs the administrator role before it
/// does anything (a daemon that cannot be reached says nothing here).
pub(super) async fn administrator_only(d: &DaemonArgs, verb: &str) -> Result<()> {
    match Conn::new(d)
        .call::<proto::api::VersionInfo>(&Endpoint::Version, None, None)
        .await
    {
        Ok((v, _)) if v.role.as_deref() == Some("operator") => Err(Fail(
            exit::NO_PERMISSION,
            format!(
                "{verb} needs the administrator role (root, the daemon's user, or a member of its --admin-group); you are an operator"
            ),
        )),
        _ => Ok(()),
    }
}

pub(super) async fn stop(d: &DaemonArgs) -> Result<exit::Code> {
    let conn = Conn::new(d);
    let (r, v): (Done, _) = conn.call(&Endpoint::Shutdown, None, None).await?;
    // The daemon removes its socket file last, once it has fully stopped.
    for _ in 0..300 {
        if !conn.client.socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if d.json {
        print_json(&v);
    } else {
        println!("{}", r.message);
    }
    Ok(exit::OK)
}

pub(super) fn report_agents(rows: &[crate::deploy::Row], json: bool) {
    for r in rows {
        let line = format!("agent {}: {} {}", r.host, r.state, r.note);
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}
