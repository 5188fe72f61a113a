//! `workers`: the enrolled agents and the workers file's absent hosts.

use super::*;

pub(super) async fn workers(d: DaemonArgs) -> Result<exit::Code> {
    let (w, v): (WorkerList, _) = Conn::new(&d).call(&Endpoint::Workers, None, None).await?;
    if d.json {
        print_json(&v);
        return Ok(exit::OK);
    }
    if w.workers.is_empty() {
        println!(
            "no agents enrolled; run `ossimportctl deploy` (or append each agent's public key, from `ossimport-agent --init`, to the daemon's agent_keys file)"
        );
        return Ok(exit::OK);
    }
    println!(
        "{:<16} {:<6} {:<8} {:<22} {:>8} {:>10} {:>9}  NOTE",
        "NAME", "STATE", "VERSION", "ADDRESS", "RUNNING", "RATE", "HEARTBEAT"
    );
    for a in w.workers {
        println!(
            "{:<16} {:<6} {:<8} {:<22} {:>8} {:>10} {:>9}  {}",
            a.name,
            a.state,
            a.version.as_deref().unwrap_or("-"),
            a.addr.unwrap_or_else(|| "-".into()),
            format!("{}/{}", a.running, a.capacity),
            format!("{}/s", human_bytes(a.bytes_per_sec)),
            a.last_heartbeat_secs_ago
                .map(|s| format!("{s}s ago"))
                .unwrap_or_else(|| "never".into()),
            a.error.unwrap_or_default()
        );
    }
    Ok(exit::OK)
}
