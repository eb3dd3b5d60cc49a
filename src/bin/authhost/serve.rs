//! `authhost serve`: the service of contract §8 (and the HTTP front of §10) on one or more
//! listeners, with its signals: SIGHUP reopens the decision log (log rotation) and reloads
//! the plugins; SIGTERM and SIGINT stop every listener taking requests, answer those in
//! flight, and exit 0.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use authhost::decision_log::{DecisionLog, DigestKey};
use authhost::serve::{ListenAddr, ServeOptions, Server};
use authhost::Host;
use clap::Args;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Options of `authhost serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Where to listen: stdio, unix:PATH, tcp:HOST:PORT or http:HOST:PORT (port 0: any free
    /// port). Repeatable: one process serves every listener given. TCP and HTTP are
    /// untrusted: `reload` is refused there.
    #[arg(long, default_value = "stdio")]
    listen: Vec<ListenAddr>,
    /// Allow tcp: and http: on an address beyond loopback (127.0.0.0/8, ::1, localhost):
    /// anyone who reaches the port can then ask for decisions.
    #[arg(long)]
    expose: bool,
    /// The Unix socket's permission bits, in octal (connecting takes write permission).
    #[arg(long = "socket-mode", value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
    socket_mode: u32,
    /// The Unix socket's group (a name or a gid), for --socket-mode to let in.
    #[arg(long = "socket-group", value_name = "GROUP", value_parser = parse_group)]
    socket_group: Option<u32>,
    /// Do not watch the plugins for changes (SIGHUP and the `reload` method still reload).
    #[arg(long = "no-watch")]
    no_watch: bool,
    /// Append one JSON line per decision to this file (mode 0600; keyed argument digests,
    /// never arguments). SIGHUP reopens it.
    #[arg(long = "decision-log", value_name = "PATH")]
    decision_log: Option<PathBuf>,
    /// The decision log's key file (created, mode 0600, when missing) [default: the log's
    /// path with `.key` appended].
    #[arg(
        long = "decision-log-key",
        value_name = "PATH",
        requires = "decision_log"
    )]
    decision_log_key: Option<PathBuf>,
    /// Answers one connection may have pending before its requests stop being read.
    #[arg(long = "max-pending", default_value_t = 1024)]
    max_pending: usize,
    /// Socket connections served at once; more are sent an error and closed.
    #[arg(long = "max-connections", default_value_t = 1024)]
    max_connections: usize,
    /// HTTP: milliseconds a connection may take to send a request's headers (counted from
    /// when it opens or goes idle); slower clients and idle keep-alive connections are closed.
    #[arg(long = "http-header-timeout-ms", default_value_t = 10_000)]
    http_header_timeout_ms: u64,
    /// HTTP: milliseconds after which a WebSocket that receives nothing is closed.
    #[arg(long = "ws-idle-timeout-ms", default_value_t = 300_000)]
    ws_idle_timeout_ms: u64,
}

/// Permission bits in octal: `0660`, `660`, `0o660`.
fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "{text:?} is not a file mode: octal permission bits, 0000 to 0777"
        )),
    }
}

fn parse_group(text: &str) -> Result<u32, String> {
    authhost::serve::group_id(text).map_err(|e| e.to_string())
}

/// The usage error in `args`, if any, checked before anything loads (exit 2).
pub fn usage_error(args: &ServeArgs) -> Option<String> {
    if let Some(exposed) = args.listen.iter().find(|addr| addr.is_exposed()) {
        if !args.expose {
            return Some(format!(
                "--listen {exposed} is reachable beyond loopback: add --expose to serve it \
                 anyway (anyone who reaches the port can then ask for decisions), or listen \
                 on 127.0.0.1 or a unix: socket"
            ));
        }
    }
    let socket_options_given = args.socket_group.is_some() || args.socket_mode != 0o600;
    if socket_options_given && !args.listen.iter().any(|a| matches!(a, ListenAddr::Unix(_))) {
        return Some(
            "--socket-mode and --socket-group apply to a unix: listener, and none is given"
                .to_string(),
        );
    }
    let stdio = args
        .listen
        .iter()
        .filter(|a| **a == ListenAddr::Stdio)
        .count();
    if stdio > 1 {
        return Some("--listen stdio can be given once".to_string());
    }
    None
}

/// Serves until SIGTERM/SIGINT (or, on stdio, the end of input), then drains and returns.
pub fn run(host: &Host, args: &ServeArgs) -> anyhow::Result<()> {
    let log = match &args.decision_log {
        Some(path) => {
            let key_path = args.decision_log_key.clone().unwrap_or_else(|| {
                let mut key_path = path.clone().into_os_string();
                key_path.push(".key");
                PathBuf::from(key_path)
            });
            let key = DigestKey::load_or_create(&key_path)
                .context("cannot use the decision log's key")?;
            Some(
                DecisionLog::create(path, key)
                    .with_context(|| format!("cannot open the decision log {}", path.display()))?,
            )
        }
        None => None,
    };
    let mut options = ServeOptions::default()
        .max_pending(args.max_pending)
        .max_connections(args.max_connections)
        .http_header_timeout(Duration::from_millis(args.http_header_timeout_ms.max(1)))
        .ws_idle_timeout(Duration::from_millis(args.ws_idle_timeout_ms.max(1)))
        .expose(args.expose)
        .socket_mode(args.socket_mode);
    if let Some(gid) = args.socket_group {
        options = options.socket_group(gid);
    }
    if let Some(log) = &log {
        options = options.decision_log(log.recorder());
    }
    // Every listener is bound before any serves: a bad one stops the start-up.
    let mut servers = Vec::new();
    for addr in &args.listen {
        let server = Server::bind(host, addr, options.clone())
            .with_context(|| format!("cannot listen on {addr}"))?;
        servers.push(server);
    }
    let stoppers: Vec<_> = servers.iter().map(Server::stopper).collect();

    // Registered before announcing the addresses, so that a client that sees one can signal.
    let mut signals =
        Signals::new([SIGHUP, SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    let reloading = host.clone();
    let stop_all = stoppers.clone();
    let reopening = log.as_ref().map(DecisionLog::recorder);
    std::thread::Builder::new()
        .name("authhost-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    // The log first: a decision asked after the reload is written to the
                    // new file.
                    if let Some(log) = &reopening {
                        log.reopen();
                    }
                    log::info!("SIGHUP: reloading the plugins");
                    // A failure is logged by the host, which keeps the running set.
                    let _ = reloading.reload();
                } else {
                    log::info!("signal {signal}: stopping");
                    stop_all.iter().for_each(|stopper| stopper.stop());
                }
            }
        })
        .context("cannot start the signal thread")?;

    if !args.no_watch {
        host.watch_plugins()
            .context("cannot watch the plugins for hot reload (use --no-watch to serve without)")?;
    }

    for server in &servers {
        if server.local_addr().is_exposed() {
            log::warn!(
                "--expose: {} is reachable beyond loopback; anyone who reaches it can ask for \
                 decisions (user_login checks passwords for them) and read status; reload is \
                 refused there (use a unix: listener or SIGHUP)",
                server.local_addr()
            );
        }
        log::info!(
            "listening on {} (generation {})",
            server.local_addr(),
            host.status().generation
        );
    }
    // Each listener on its own thread; when one ends (stdio's input, say) the others stop
    // too, and every one drains before the process exits.
    let (ended, first_end) = crossbeam_channel::unbounded();
    let mut running = Vec::new();
    for server in servers {
        let ended = ended.clone();
        let addr = server.local_addr();
        let thread = std::thread::Builder::new()
            .name("authhost-listener".into())
            .spawn(move || {
                let result = server.run();
                let _ = ended.send(());
                result
            })
            .with_context(|| format!("cannot start serving {addr}"))?;
        running.push((addr, thread));
    }
    let _ = first_end.recv();
    stoppers.iter().for_each(|stopper| stopper.stop());
    for (addr, thread) in running {
        match thread.join() {
            Ok(result) => result.with_context(|| format!("the service on {addr} failed"))?,
            Err(_) => anyhow::bail!("the service on {addr} panicked"),
        }
    }
    host.shutdown();
    if let Some(log) = log {
        let dropped = log.dropped();
        log.close();
        if dropped > 0 {
            log::warn!("the decision log dropped {dropped} entries (it could not keep up)");
        }
    }
    log::info!("stopped");
    Ok(())
}
