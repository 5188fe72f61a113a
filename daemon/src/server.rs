//! `ossimportd`: start-up and shutdown; everything it starts lives elsewhere
//! ([`crate::state`], [`crate::engine`], [`crate::ctl_api`], [`crate::agent_api`]).
//!
//! [`run`] takes already-bound listeners (the agent API on TCP, the control
//! API on a Unix socket) and a shutdown future, so tests run the daemon
//! in-process on `127.0.0.1:0` and the binary only adds flags, logging and
//! binding. Start-up is linear: open the store, load the keys, reload every
//! job, give dispatched tasks a fresh lease, then serve.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use proto::auth::Signer;
use proto::server::{self, Limits};
use tokio::net::{TcpListener, UnixListener};
use tracing::info;

use crate::state::{Config, STORE_FILE, State, restrict};
use crate::store::Store;

/// The listeners the daemon serves.
pub struct Listeners {
    pub ctl: UnixListener,
    pub agents: TcpListener,
    /// `/metrics` and the status page (read-only, unauthenticated), when
    /// asked for.
    pub metrics: Option<TcpListener>,
}

/// Runs the daemon until `shutdown` completes, then shuts down in order:
/// stop accepting, cancel, drain HTTP, let scanners and pushes finish their
/// current step, close the store.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("creating work directory {}", config.work_dir.display()))?;
    let store_path = config.work_dir.join(STORE_FILE);
    let store = Arc::new(Store::open(&store_path)?);
    restrict(&store_path);
    info!(path = %store_path.display(), "Opened job store.");

    let signer = Signer::load_or_generate(&config.key_file, "ossimportd")
        .context("loading the daemon key")?;
    info!(fingerprint = %signer.fingerprint(), "Loaded daemon key.");
    let state = State::new(config, store, signer);
    state.reload_agent_keys(true);
    info!(agents = state.agents().len(), "Loaded enrolled agent keys.");
    let engine = crate::engine::start(&state).await?;

    // The control socket's callers are local users the kernel named
    // (checked per request); job files travel in its bodies.
    let ctl_limits = Limits {
        max_body: 16 << 20,
        max_connections: 64,
        max_per_peer: 64,
        request_deadline: Duration::from_secs(60),
        drain: Duration::from_secs(10),
        gate: None,
        tls: None,
    };
    // The agent port is open to the network: only a peer with an enrolled
    // key completes the TLS handshake, and then sends only as much as the
    // endpoint needs (see `agent_api::gate`).
    let trust = {
        let state = Arc::clone(&state);
        Arc::new(move |fp: &str| state.agent_trusted(fp))
    };
    let agent_limits = Limits {
        max_body: 0,
        max_connections: 256,
        max_per_peer: 16,
        request_deadline: Duration::from_secs(60),
        drain: Duration::from_secs(10),
        gate: Some(crate::agent_api::gate()),
        tls: Some(proto::tls::server_config(&state.signer, trust).context("agent API TLS")?),
    };
    let http_cancel = state.cancel.child_token();
    let ctl_server = tokio::spawn(server::serve_unix(
        listeners.ctl,
        crate::ctl_api::handler(Arc::clone(&engine)),
        ctl_limits,
        http_cancel.clone(),
    ));
    let agent_server = tokio::spawn(server::serve_tcp(
        listeners.agents,
        crate::agent_api::handler(Arc::clone(&engine)),
        agent_limits,
        http_cancel.clone(),
    ));
    if let Some(l) = listeners.metrics {
        crate::status::serve(&engine, l, "daemon".into());
    }
    info!("Daemon ready.");

    tokio::select! {
        _ = shutdown => info!("Shutdown requested."),
        _ = state.cancel.cancelled() => info!("Shutdown requested over the control socket."),
    }
    state.cancel.cancel();
    let _ = ctl_server.await;
    let _ = agent_server.await;
    info!("Stopped serving.");
    engine.stop().await;
    info!("Daemon stopped; job store closed.");
    Ok(())
}

/// Binds the control socket: refuses to start while another daemon answers
/// on it, removes a stale file, and sets mode 0600 (0660 with a group).
pub fn bind_socket(
    path: &Path,
    gid: Option<u32>,
) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another ossimportd is already listening on {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating socket directory {}", dir.display()))?;
    }
    // Created with no access at all, then opened up, so no other user can
    // connect in between.
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above; restores the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("giving {} to group {gid}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    listener
        .set_nonblocking(true)
        .context("socket to non-blocking")?;
    Ok(listener)
}
