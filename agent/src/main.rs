//! `ossimport-agent` entry point: flags, logging, keys, bind, run.

// The executor's task future nests deeply enough to pass the default
// query depth when the release profile lays it out.
#![recursion_limit = "256"]

use std::process::ExitCode;
use std::time::Duration;

use agent::cli::Args;
use anyhow::Context;
use clap::Parser;
use proto::auth::Signer;

fn main() -> ExitCode {
    proto::secret::no_core_dumps();
    storage::limit_malloc_arenas();
    let args = Args::parse();
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ossimport-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main(args: Args) -> anyhow::Result<()> {
    let host = hostname();
    if args.init {
        let signer = Signer::load_or_generate(&args.key, &format!("ossimport-agent@{host}"))?;
        println!("{}", signer.public_key_openssh());
        return Ok(());
    }
    let signer = Signer::load(&args.key)?;
    let daemon_key_text = std::fs::read_to_string(&args.daemon_key)
        .with_context(|| format!("reading the daemon key {}", args.daemon_key.display()))?;
    let daemon_key = proto::auth::parse_public_keys(&daemon_key_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.daemon_key.display()))?
        .into_iter()
        .next()
        .with_context(|| format!("{}: no key in it", args.daemon_key.display()))?;
    let secrets = match &args.secrets {
        Some(p) => agent::secrets::Secrets::load(p).map_err(anyhow::Error::msg)?,
        None => agent::secrets::Secrets::default(),
    };
    let allow_roots = agent::roots::Roots::new(&args.allow_root).map_err(anyhow::Error::msg)?;
    // Everything that can fail on a bad setting fails here, on the
    // terminal (or in deploy's output), before detaching.
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let advertise = match args.advertise {
        Some(a) => a,
        None if local.ip().is_unspecified() => {
            anyhow::bail!("--advertise is required when listening on {local}")
        }
        None => local.to_string(),
    };
    if args.detach
        && let (Some(pid), Some(log)) = (&args.pid_file, &args.log_file)
    {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log file {}", log.display()))?;
        let err = out.try_clone()?;
        daemonize::Daemonize::new()
            .pid_file(pid)
            .working_directory("/")
            .umask(0o077)
            .stdout(out)
            .stderr(err)
            .start()
            .with_context(|| format!("detaching (pid file {})", pid.display()))?;
    }
    init_logging(args.log_json);
    let rt = proto::runtime::build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let config = agent::server::Config {
            name: args.name.unwrap_or(host),
            daemon_addr: args.daemon.unwrap_or_default(),
            daemon_key,
            advertise,
            capacity: args.tasks.max(1),
            heartbeat: Duration::from_millis(args.heartbeat_ms.max(50)),
            request_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(10),
            secrets,
            allow_roots,
        };
        agent::server::run(config, signer, listener, proto::net::shutdown_signal()).await
    })
}

fn init_logging(json: bool) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_from_env("OSSIMPORT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a detached agent's agent.log gets plain text.
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "agent".into())
}
