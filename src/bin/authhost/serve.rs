//! `authhost serve`: the service of contract §8, with its signals: SIGHUP reloads the
//! plugins; SIGTERM and SIGINT stop taking requests, answer those in flight, and exit 0.

use std::path::PathBuf;

use anyhow::Context;
use authhost::decision_log::DecisionLog;
use authhost::serve::{ListenAddr, ServeOptions, Server};
use authhost::Host;
use clap::Args;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Options of `authhost serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Where to listen: stdio, unix:PATH or tcp:HOST:PORT (port 0: any free port).
    #[arg(long, default_value = "stdio")]
    listen: ListenAddr,
    /// Do not watch the plugins for changes (SIGHUP and the `reload` method still reload).
    #[arg(long = "no-watch")]
    no_watch: bool,
    /// Append one JSON line per decision to this file (argument digests, never arguments).
    #[arg(long = "decision-log", value_name = "PATH")]
    decision_log: Option<PathBuf>,
    /// Answers one connection may have pending before its requests stop being read.
    #[arg(long = "max-pending", default_value_t = 1024)]
    max_pending: usize,
    /// Socket connections served at once; more are sent an error and closed.
    #[arg(long = "max-connections", default_value_t = 1024)]
    max_connections: usize,
}

/// Serves until SIGTERM/SIGINT (or, on stdio, the end of input), then drains and returns.
pub fn run(host: &Host, args: &ServeArgs) -> anyhow::Result<()> {
    let log = match &args.decision_log {
        Some(path) => Some(
            DecisionLog::create(path)
                .with_context(|| format!("cannot open the decision log {}", path.display()))?,
        ),
        None => None,
    };
    let mut options = ServeOptions::default()
        .max_pending(args.max_pending)
        .max_connections(args.max_connections);
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
    std::thread::Builder::new()
        .name("authhost-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
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
