//! `ossimportd` entry point: flags, logging, config, bind, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use daemon::cli::{Args, LocalWorker};
use daemon::config::sys::SysConfig;
use daemon::server::{self, Listeners};
use daemon::state::{self, Config};

fn main() -> ExitCode {
    proto::secret::no_core_dumps();
    storage::limit_malloc_arenas();
    let args = Args::parse();
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ossimportd: {e:#}");
            tracing::error!(error = %format!("{e:#}"), "Daemon failed.");
            ExitCode::from(1)
        }
    }
}

/// `ossimportd`'s start-up in the order it happens: arguments, settings,
/// workers, the local worker, logging, keys, detaching, then the server.
fn real_main(mut args: Args) -> anyhow::Result<()> {
    if args.confined_worker {
        let work_dir = args.work_dir.clone().unwrap_or_default();
        init_logging(false);
        return daemon::engine::confined::child_main(work_dir);
    }
    // Every path is made absolute now: `--daemon` changes into the work
    // directory, and saved jobs are planned again with `--sys` at every
    // start.
    for p in [
        &mut args.sys,
        &mut args.workers,
        &mut args.work_dir,
        &mut args.socket,
        &mut args.key,
        &mut args.agent_keys,
        &mut args.pid_file,
        &mut args.log_file,
    ]
    .into_iter()
    .flatten()
    {
        *p = std::path::absolute(&*p).with_context(|| format!("{}", p.display()))?;
    }
    let sys = match &args.sys {
        Some(p) => Some(SysConfig::load(p).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let work_dir = args
        .work_dir
        .clone()
        .or_else(|| sys.as_ref().map(|s| s.working_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("."));
    let work_dir = std::path::absolute(&work_dir).unwrap_or(work_dir);
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating work directory {}", work_dir.display()))?;
    let mut config = Config::new(&work_dir, args.sys.clone());
    if let Some(k) = args.key {
        config.key_file = k;
    }
    if args.init {
        let signer = proto::auth::Signer::load_or_generate(&config.key_file, "ossimportd")?;
        println!("{}", signer.public_key_openssh());
        return Ok(());
    }
    if let Some(k) = args.agent_keys {
        config.agent_keys = k;
    }
    let workers = args.workers.clone().or_else(|| {
        args.sys
            .as_ref()
            .and_then(|s| s.parent().map(|d| d.join("workers")))
            .filter(|p| p.is_file())
    });
    if let Some(w) = &workers {
        config.workers =
            daemon::config::sys::load_workers(w).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.workers_file = Some(w.clone());
    }
    let local = match args.local_worker {
        LocalWorker::On => true,
        LocalWorker::Off => false,
        LocalWorker::Auto => {
            config.workers.is_empty()
                || config
                    .workers
                    .iter()
                    .any(|w| daemon::config::sys::is_this_machine(w))
        }
    };
    if local {
        // The master's own line is the local worker, not an absent agent.
        config
            .workers
            .retain(|w| !daemon::config::sys::is_this_machine(w));
        config.local_worker = Some(args.local_tasks.max(1));
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // The running binary itself, even if a package upgrade has
            // replaced the file since.
            config.confine_exe = Some(PathBuf::from("/proc/self/exe"));
        }
    }
    config.lease = Duration::from_secs(args.lease_secs.max(1));
    config.agent_timeout = Duration::from_millis(args.agent_timeout_ms.max(100));
    config.socket_gid = match &args.socket_group {
        Some(g) => Some(group_id(g)?),
        None => None,
    };
    config.admin_gid = match &args.admin_group {
        Some(g) => Some(group_id(g)?),
        None => None,
    };
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| work_dir.join(state::SOCKET_FILE));

    // Bind before detaching so errors reach the terminal.
    let ctl = server::bind_socket(&socket, config.socket_gid.or(config.admin_gid))?;
    let (agents, listen, listen_note) = bind_agents(
        args.listen.as_deref(),
        sys.as_ref().and_then(|s| s.daemon_address.as_deref()),
    )?;
    let metrics = match &args.metrics_listen {
        Some(a) => Some(
            std::net::TcpListener::bind(a)
                .with_context(|| format!("binding /metrics and the status page on {a}"))?,
        ),
        None => None,
    };
    if args.daemon {
        let pid = args
            .pid_file
            .clone()
            .unwrap_or_else(|| work_dir.join("ossimportd.pid"));
        let log = args
            .log_file
            .clone()
            .unwrap_or_else(|| work_dir.join("ossimportd.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening log file {}", log.display()))?;
        let err = out.try_clone()?;
        daemonize::Daemonize::new()
            .pid_file(&pid)
            .working_directory(&work_dir)
            .stdout(out)
            .stderr(err)
            .start()
            .with_context(|| format!("detaching (pid file {})", pid.display()))?;
    }
    init_logging(args.log_json);
    tracing::info!(socket = %socket.display(), agents = %listen, work_dir = %work_dir.display(), "Starting ossimportd.");
    match listen_note {
        ListenNote::Given | ListenNote::DaemonAddress => {}
        ListenNote::NotHere(addr) => tracing::warn!(
            daemon_address = %addr,
            agents = %listen,
            "daemonAddress is not an address of this machine (NAT or a proxy?); the agent API listens on every interface at its port."
        ),
        ListenNote::Default => tracing::info!(
            agents = %listen,
            "No daemonAddress in sys.properties and no --listen: the agent API is on loopback only; agents on other hosts need daemonAddress=HOST:PORT."
        ),
    }
    let rt = proto::runtime::build()?;
    rt.block_on(async move {
        agents.set_nonblocking(true)?;
        let metrics = match metrics {
            Some(m) => {
                m.set_nonblocking(true)?;
                Some(tokio::net::TcpListener::from_std(m)?)
            }
            None => None,
        };
        let listeners = Listeners {
            ctl: tokio::net::UnixListener::from_std(ctl)?,
            agents: tokio::net::TcpListener::from_std(agents)?,
            metrics,
        };
        let r = server::run(config, listeners, proto::net::shutdown_signal()).await;
        let _ = std::fs::remove_file(&socket);
        r
    })
}

/// Where the agent API's address came from.
enum ListenNote {
    /// `--listen` / `OSSIMPORT_LISTEN`.
    Given,
    /// `daemonAddress`, an address of this machine.
    DaemonAddress,
    /// `daemonAddress` names an address this machine does not have: every
    /// interface, at its port.
    NotHere(String),
    /// Nothing said where: loopback.
    Default,
}

/// The agent API's default when nothing says where: loopback only, so a
/// daemon that no agent needs to reach is not open to the network.
const DEFAULT_LISTEN: &str = "127.0.0.1:7600";

/// Binds the agent API: `--listen`, else `daemonAddress` (the address the
/// deployed agents are told to reach), else [`DEFAULT_LISTEN`].
fn bind_agents(
    given: Option<&str>,
    daemon_address: Option<&str>,
) -> anyhow::Result<(std::net::TcpListener, String, ListenNote)> {
    let bind = |a: &str| {
        std::net::TcpListener::bind(a).with_context(|| format!("binding the agent API on {a}"))
    };
    if let Some(a) = given {
        return Ok((bind(a)?, a.to_string(), ListenNote::Given));
    }
    let Some(addr) = daemon_address else {
        return Ok((
            bind(DEFAULT_LISTEN)?,
            DEFAULT_LISTEN.into(),
            ListenNote::Default,
        ));
    };
    // sys.properties checked it is host:port with a port.
    let port = addr.rsplit_once(':').map_or("7600", |(_, p)| p);
    match std::net::TcpListener::bind(addr) {
        Ok(l) => Ok((l, addr.to_string(), ListenNote::DaemonAddress)),
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrNotAvailable
                || e.kind() == std::io::ErrorKind::InvalidInput
                || e.raw_os_error().is_none() =>
        {
            // Not an address of this machine (or a name that does not
            // resolve here): the workers reach us through NAT or a proxy.
            let all = format!("0.0.0.0:{port}");
            Ok((bind(&all)?, all, ListenNote::NotHere(addr.to_string())))
        }
        Err(e) => Err(e).with_context(|| {
            format!("binding the agent API on {addr} (daemonAddress of sys.properties)")
        }),
    }
}

fn init_logging(json: bool) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_from_env("OSSIMPORT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a log file gets plain text.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(move || proto::net::OneLine::new(std::io::stderr(), ansi));
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}

/// A group name or number to its id, by the system's group database (so
/// LDAP and other NSS sources count, not only `/etc/group`).
fn group_id(g: &str) -> anyhow::Result<u32> {
    if let Ok(n) = g.parse() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(g).with_context(|| format!("group {g:?}"))?;
    let mut len = 16 << 10;
    loop {
        let mut buf = vec![0 as libc::c_char; len];
        // SAFETY: getgrnam_r writes only into `grp` and `buf`, which we own
        // and which outlive the call; `found` is read only on success.
        let (rc, gid) = unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut found: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(name.as_ptr(), &mut grp, buf.as_mut_ptr(), len, &mut found);
            (rc, (!found.is_null()).then_some(grp.gr_gid))
        };
        match (rc, gid) {
            (0, Some(gid)) => return Ok(gid),
            (0, None) => anyhow::bail!("no group named {g} on this system"),
            (libc::ERANGE, _) if len < 1 << 24 => len *= 4,
            (e, _) => {
                return Err(std::io::Error::from_raw_os_error(e))
                    .with_context(|| format!("looking up group {g}"));
            }
        }
    }
}

#[cfg(test)]
mod group_tests {
    #[test]
    fn groups_by_name_or_number_from_the_system_database() {
        assert_eq!(super::group_id("0").unwrap(), 0);
        assert_eq!(super::group_id("root").unwrap(), 0);
        let err = super::group_id("no-such-group-ossimport").unwrap_err();
        assert!(err.to_string().contains("no group named"), "{err:#}");
    }
}

#[cfg(test)]
mod listen_tests {
    use super::{ListenNote, bind_agents};

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Before, the agent API was always on 0.0.0.0:7600 whatever
    /// `daemonAddress` said, and deploy waited for heartbeats that never came.
    #[test]
    fn the_agent_api_listens_where_daemon_address_says() {
        let port = free_port();
        let (l, _, note) = bind_agents(None, Some(&format!("127.0.0.1:{port}"))).unwrap();
        assert!(matches!(note, ListenNote::DaemonAddress));
        assert_eq!(
            l.local_addr().unwrap().to_string(),
            format!("127.0.0.1:{port}")
        );
        drop(l);
        // Not an address of this machine (TEST-NET-1): every interface, its port.
        let port = free_port();
        let (l, _, note) = bind_agents(None, Some(&format!("192.0.2.1:{port}"))).unwrap();
        assert!(matches!(note, ListenNote::NotHere(ref a) if a == &format!("192.0.2.1:{port}")));
        let at = l.local_addr().unwrap();
        assert!(at.ip().is_unspecified() && at.port() == port, "{at}");
        drop(l);
        // --listen / OSSIMPORT_LISTEN wins.
        let (l, _, note) = bind_agents(Some("127.0.0.1:0"), Some("192.0.2.1:1")).unwrap();
        assert!(matches!(note, ListenNote::Given));
        assert!(l.local_addr().unwrap().ip().is_loopback());
    }
}
