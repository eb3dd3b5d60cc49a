//! `authhost`: check, call, benchmark and (later) serve a plugin set from the command line.
//!
//! Results go to stdout, logs and errors to stderr. Exit status: 0 success, 1 the plugin set
//! does not load (or a check or test fails), 2 usage.

mod bench;
mod serve;
mod test_cases;

/// The binary's allocator. Requests are allocated on the thread that receives them and freed
/// on the worker that answers them; glibc's malloc sends each such free back through the
/// allocating arena's lock, mimalloc through a lock-free list. The library leaves the
/// allocator to the program that embeds it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use authhost::{Callback, Host, HostBuilder, PluginSet};
use clap::{Args, Parser, Subcommand};

/// Runs Lua and Python authorization policies for a replicated database.
#[derive(Parser)]
#[command(name = "authhost", version)]
struct Cli {
    #[command(flatten)]
    options: HostOptions,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes (contract §7).
#[derive(Args, Clone)]
struct HostOptions {
    /// A plugin file (.lua, .py) or a directory of them.
    #[arg(long, global = true, default_value = "plugins")]
    plugins: PathBuf,
    /// The application's SQLite database (`:memory:` for an in-memory one).
    #[arg(long, global = true, default_value = "authhost.db")]
    db: PathBuf,
    /// Worker threads (default: the machine's cores).
    #[arg(long, global = true)]
    workers: Option<usize>,
    /// Time from submission to decision, in milliseconds.
    #[arg(long = "timeout-ms", global = true, default_value_t = 2000)]
    timeout_ms: u64,
    /// A session's inactivity timeout, in seconds (sessions: `auth`, `auth_token`).
    #[arg(long = "session-idle", global = true, default_value_t = 300)]
    session_idle: u64,
    /// A session's absolute lifetime, in seconds (default 12 h).
    #[arg(long = "session-max", global = true, default_value_t = 43_200)]
    session_max: u64,
    /// A URL prefix `authhost.http` may reach (repeatable). Lua policies reach nothing else;
    /// Python policies are held to the list once one is given.
    #[arg(long = "upstream", global = true, value_name = "PREFIX")]
    upstream: Vec<String>,
    /// A PEM file of CA certificates `authhost.http` trusts instead of the web roots.
    #[arg(long = "upstream-ca", global = true, value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// error, warn, info, debug or trace.
    #[arg(long = "log-level", global = true, default_value = "info")]
    log_level: log::LevelFilter,
}

impl HostOptions {
    fn builder(&self, default_workers: Option<usize>) -> HostBuilder {
        let mut builder = Host::builder()
            .plugins(&self.plugins)
            .db(&self.db)
            .timeout(Duration::from_millis(self.timeout_ms))
            .session_idle(Duration::from_secs(self.session_idle))
            .session_max(Duration::from_secs(self.session_max));
        if let Some(workers) = self.workers.or(default_workers) {
            builder = builder.workers(workers);
        }
        for prefix in &self.upstream {
            builder = builder.upstream(prefix);
        }
        if let Some(ca) = &self.upstream_ca {
            builder = builder.upstream_ca(ca);
        }
        builder
    }
}

#[derive(Subcommand)]
enum Command {
    /// Load the plugin set and print each plugin, its language and its callbacks.
    Check,
    /// Ask one callback and print the decision as one JSON line.
    Call {
        /// user_signup, user_login or new_node.
        callback: String,
        /// SIGNUP_INFO NODE_INFO, LOGIN_INFO NODE_INFO, or NODE_INFO (after `--` if one
        /// begins with `-`).
        args: Vec<String>,
    },
    /// Load-test a callback and print throughput and latency percentiles as JSON.
    Bench(bench::BenchArgs),
    /// Serve JSON-RPC 2.0 requests (one per line) on stdio, a Unix socket or TCP.
    Serve(serve::ServeArgs),
    /// Run policy test cases (a JSON file) and print PASS/FAIL per case and a summary.
    Test(test_cases::TestArgs),
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // `authhost test` uses a fresh in-memory database unless one is named.
    let db_given = matches.value_source("db") == Some(clap::parser::ValueSource::CommandLine);
    DB_GIVEN.get_or_init(|| db_given);
    env_logger::Builder::new()
        .filter_level(cli.options.log_level)
        .target(env_logger::Target::Stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authhost: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Whether `--db` was given on the command line.
static DB_GIVEN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let options = cli.options;
    match cli.command {
        Command::Serve(args) => {
            if let Some(usage) = serve::usage_error(&args) {
                eprintln!("authhost: {usage}");
                return Ok(ExitCode::from(2));
            }
            let host = options
                .builder(None)
                .build()
                .context("the plugin set does not load")?;
            serve::run(&host, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test(args) => test_cases::run(&options, DB_GIVEN.get() == Some(&true), &args),
        Command::Bench(args) if args.is_remote() => {
            bench::run_remote(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => Ok(check(&options)),
        Command::Call { callback, args } => {
            let Some(callback) = Callback::from_name(&callback) else {
                eprintln!("authhost: unknown callback {callback:?}: expected user_signup, user_login or new_node");
                return Ok(ExitCode::from(2));
            };
            if args.len() != callback.arity() {
                let usage = match callback {
                    Callback::UserSignup => "user_signup SIGNUP_INFO NODE_INFO",
                    Callback::UserLogin => "user_login LOGIN_INFO NODE_INFO",
                    Callback::NewNode => "new_node NODE_INFO",
                };
                eprintln!("authhost: usage: authhost call {usage}");
                return Ok(ExitCode::from(2));
            }
            let host = options
                .builder(Some(1))
                .build()
                .context("the plugin set does not load")?;
            let mut args = args.into_iter();
            let first = args.next().unwrap_or_default();
            let second = args.next().unwrap_or_default();
            let outcome = host.call(callback, [first, second]);
            println!("{}", outcome.to_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let host = options
                .builder(None)
                .watch(args.watch)
                .build()
                .context("the plugin set does not load")?;
            bench::run(&host, &args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(options: &HostOptions) -> ExitCode {
    let config = options.builder(Some(1)).config().clone();
    match PluginSet::check(&config) {
        Ok(set) => {
            for plugin in set.plugins() {
                let callbacks: Vec<&str> =
                    plugin.callbacks.iter().map(|c| c.function_name()).collect();
                println!(
                    "{}\t{}\t{}",
                    plugin.file.display(),
                    plugin.language,
                    if callbacks.is_empty() {
                        "(no callbacks)".to_string()
                    } else {
                        callbacks.join(", ")
                    }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            ExitCode::from(1)
        }
    }
}
