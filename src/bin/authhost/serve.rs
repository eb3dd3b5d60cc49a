//! `authhost serve`: the service of contract §8, with its signals: SIGHUP reopens the
//! decision log (log rotation) and reloads the plugins; SIGTERM and SIGINT stop taking
//! requests, answer those in flight, and exit 0.

use std::path::PathBuf;

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
    /// Where to listen: stdio, unix:PATH or tcp:HOST:PORT (port 0: any free port). TCP is
    /// untrusted: `reload` is refused there.
    #[arg(long, default_value = "stdio")]
    listen: ListenAddr,
    /// Allow tcp: on an address beyond loopback (127.0.0.0/8, ::1, localhost): anyone who
    /// reaches the port can then ask for decisions.
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
    if args.listen.is_exposed() && !args.expose {
        return Some(format!(
            "--listen {} is reachable beyond loopback: add --expose to serve it anyway \
             (anyone who reaches the port can then ask for decisions), or listen on \
             127.0.0.1 or a unix: socket",
            args.listen
        ));
    }
    let socket_options_given = args.socket_group.is_some() || args.socket_mode != 0o600;
    if socket_options_given && !matches!(args.listen, ListenAddr::Unix(_)) {
        return Some(format!(
            "--socket-mode and --socket-group apply to a unix: listener, not {}",
            args.listen
        ));
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
        .expose(args.expose)
        .socket_mode(args.socket_mode);
    if let Some(gid) = args.socket_group {
        options = options.socket_group(gid);
    }
    if let Some(log) = &log {
        options = options.decision_log(log.recorder());
    }
    let server = Server::bind(host, &args.listen, options)
        .with_context(|| format!("cannot listen on {}", args.listen))?;

    // Registered before announcing the address, so that a client that sees it can signal.
    let mut signals =
        Signals::new([SIGHUP, SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    let stopper = server.stopper();
    let reloading = host.clone();
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
                    stopper.stop();
                }
            }
        })
        .context("cannot start the signal thread")?;

    if !args.no_watch {
        host.watch_plugins()
            .context("cannot watch the plugins for hot reload (use --no-watch to serve without)")?;
    }

    if args.listen.is_exposed() {
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
    server.run().context("the service failed")?;
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
