//! `authhost`: check, call, benchmark and (later) serve a plugin set from the command line.
//!
//! Results go to stdout, logs and errors to stderr. Exit status: 0 success, 1 the plugin set
//! does not load (or a check or test fails), 2 usage.

// Every write goes through `output`, which never panics on a closed or full stream.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod output;
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
    /// The application's SQLite database (`:memory:` for an in-memory one) [default:
    /// authhost.db; for `authhost test`, a fresh in-memory database].
    // No clap default: `test` has its own, and must tell a given `--db` from none.
    #[arg(long, global = true)]
    db: Option<PathBuf>,
    /// Worker threads, 1 to 256 (default: the machine's cores).
    #[arg(long, global = true, value_parser = workers_in_range())]
    workers: Option<usize>,
    /// Time from submission to decision, in milliseconds (at least 1).
    #[arg(long = "timeout-ms", global = true, default_value_t = 2000,
          value_parser = at_least_one)]
    timeout_ms: u64,
    /// A session's inactivity timeout, in seconds (sessions: `auth`, `auth_token`).
    #[arg(long = "session-idle", global = true, default_value_t = 300,
          value_parser = at_least_one)]
    session_idle: u64,
    /// A session's absolute lifetime, in seconds (default 12 h).
    #[arg(long = "session-max", global = true, default_value_t = 43_200,
          value_parser = at_least_one)]
    session_max: u64,
    /// A URL prefix `authhost.http` may reach (repeatable). Lua policies reach nothing else;
    /// Python policies are held to the list once one is given.
    #[arg(long = "upstream", global = true, value_name = "PREFIX")]
    upstream: Vec<String>,
    /// A PEM file of CA certificates `authhost.http` trusts instead of the web roots.
    #[arg(long = "upstream-ca", global = true, value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Confine Python policies' SQL as Lua's always is (no ATTACH, VACUUM, extension loading
    /// or file-touching pragmas).
    #[arg(long = "confine-python-sql", global = true)]
    confine_python_sql: bool,
    /// error, warn, info, debug or trace.
    #[arg(long = "log-level", global = true, default_value = "info")]
    log_level: log::LevelFilter,
}

/// `--workers`: from 1 to the library's bound, so that a number the host cannot run is a
/// usage error (exit 2) rather than a failure to start.
fn workers_in_range() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=authhost::MAX_WORKERS as u64)
}

/// A count of milliseconds or seconds that must not be 0.
fn at_least_one(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl HostOptions {
    /// A builder with these options; `default_db` when `--db` was not given.
    fn builder(&self, default_workers: Option<usize>, default_db: &str) -> HostBuilder {
        let mut builder = Host::builder()
            .plugins(&self.plugins)
            .db(self.db.as_deref().unwrap_or(default_db.as_ref()))
            .timeout(Duration::from_millis(self.timeout_ms))
            .session_idle(Duration::from_secs(self.session_idle))
            .session_max(Duration::from_secs(self.session_max))
            .confine_python_sql(self.confine_python_sql);
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
        #[arg(value_parser = callback_named)]
        callback: Callback,
        /// SIGNUP_INFO NODE_INFO, LOGIN_INFO NODE_INFO, or NODE_INFO (after `--` if one
        /// begins with `-`).
        args: Vec<String>,
    },
    /// Load-test a callback and print throughput and latency percentiles as JSON.
    Bench(bench::BenchArgs),
    /// Serve JSON-RPC 2.0 requests (one per line) on stdio, a Unix socket or TCP.
    Serve(serve::ServeArgs),
    /// Run policy test cases (a JSON file) and print PASS/FAIL per case and a summary.
    ///
    /// The cases run against a fresh in-memory database (`:memory:`) unless `--db` is given.
    /// Exit status: 0 all pass, 1 any fails, 2 usage (a cases file that cannot be read or
    /// parsed).
    Test(test_cases::TestArgs),
}

/// The database when `--db` is not given (contract §7).
const DEFAULT_DB: &str = "authhost.db";

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(cli.options.log_level)
        .target(env_logger::Target::Stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            output::error_line(format_args!("authhost: {e:#}"));
            ExitCode::from(1)
        }
    }
}

/// Parses a callback's name (`user_login` or `on_user_login` …) for clap, so that a
/// misspelt one is a usage error (exit 2) before any host starts.
fn callback_named(name: &str) -> Result<Callback, String> {
    Callback::from_name(name).ok_or_else(|| {
        format!("unknown callback {name:?}: expected user_signup, user_login or new_node")
    })
}

/// Prints a usage error about `authhost COMMAND`, as clap prints its own (the message, the
/// command's usage line, a pointer to `--help`), and returns exit status 2 (contract §7).
fn usage_error(command: &str, message: impl std::fmt::Display) -> ExitCode {
    let mut cli = <Cli as clap::CommandFactory>::command();
    cli.build();
    let command = cli
        .find_subcommand_mut(command)
        .expect("usage errors name one of the binary's commands");
    let _ = command
        .error(clap::error::ErrorKind::ValueValidation, message)
        .print();
    ExitCode::from(2)
}

/// Builds the host, saying whether the plugin set does not load or the host around it
/// cannot start.
fn start_host(builder: HostBuilder) -> anyhow::Result<Host> {
    builder.build().map_err(|e| {
        let context = if e.is_load_error() {
            "the plugin set does not load"
        } else {
            "cannot start the host"
        };
        anyhow::Error::new(e).context(context)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let options = cli.options;
    match cli.command {
        Command::Serve(args) => {
            if let Some(usage) = serve::usage_error(&args) {
                output::error_line(format_args!("authhost: {usage}"));
                return Ok(ExitCode::from(2));
            }
            let host = start_host(options.builder(None, DEFAULT_DB))?;
            serve::run(&host, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test(args) => test_cases::run(&options, &args),
        Command::Check => check(&options),
        Command::Call { callback, args } => {
            if args.len() != callback.arity() {
                let usage = match callback {
                    Callback::UserSignup => "user_signup SIGNUP_INFO NODE_INFO",
                    Callback::UserLogin => "user_login LOGIN_INFO NODE_INFO",
                    Callback::NewNode => "new_node NODE_INFO",
                };
                return Ok(usage_error(
                    "call",
                    format!("expected authhost call {usage}"),
                ));
            }
            let host = start_host(options.builder(Some(1), DEFAULT_DB))?;
            let mut args = args.into_iter();
            let first = args.next().unwrap_or_default();
            let second = args.next().unwrap_or_default();
            let outcome = host.call(callback, [first, second]);
            output::line(outcome.to_json())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            // Checked before a host starts: a wrong count is a usage error, not a failure.
            let call_args = match args.call_args() {
                Ok(call_args) => call_args,
                Err(e) => return Ok(usage_error("bench", e)),
            };
            if args.is_remote() {
                bench::run_remote(&args)?;
            } else {
                let host = start_host(options.builder(None, DEFAULT_DB).watch(args.watch))?;
                bench::run(&host, &args, &call_args)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(options: &HostOptions) -> anyhow::Result<ExitCode> {
    let config = options.builder(Some(1), DEFAULT_DB).config().clone();
    match PluginSet::check(&config) {
        Ok(set) => {
            for plugin in set.plugins() {
                let callbacks: Vec<&str> =
                    plugin.callbacks.iter().map(|c| c.function_name()).collect();
                output::line(format_args!(
                    "{}\t{}\t{}",
                    plugin.file.display(),
                    plugin.language,
                    if callbacks.is_empty() {
                        "(no callbacks)".to_string()
                    } else {
                        callbacks.join(", ")
                    }
                ))?;
            }
            // A set that loads but answers nothing is a mistake `check` is there to catch.
            if let Some(why) = set.answers_nothing() {
                output::line(why)?;
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            output::line(e)?;
            Ok(ExitCode::from(1))
        }
    }
}
