//! `authhost bench`: a load generator for one callback of the loaded set.
//!
//! Pipelined mode (the default) keeps `--concurrency` requests in flight from one submitting
//! thread through the non-blocking API; `--blocking` runs `--concurrency` threads that each
//! make blocking calls. Latency is submission to decision (pipelined) or the whole blocking
//! call as its caller sees it (blocking).
//!
//! With `--listen ADDR`, it loads a running `authhost serve` instead: its JSON-RPC listeners
//! (see [`remote`]) or its HTTP front (`--listen http://HOST:PORT`, see [`http`]).

mod cpu;
#[cfg(feature = "http")]
mod http;
mod remote;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use authhost::{Args, Callback, Decision, Host, Outcome};
use crossbeam_utils::CachePadded;
use serde_json::json;

/// Options of `authhost bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// user_signup, user_login or new_node (or on_user_login …).
    #[arg(long, default_value = "user_login", value_parser = crate::callback_named)]
    callback: Callback,
    /// How many requests in all.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Requests in flight at once (pipelined), or calling threads (--blocking).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Call from --concurrency threads with blocking calls instead of pipelining.
    #[arg(long)]
    blocking: bool,
    /// Reload the plugin set when a plugin changes during the run (hot reload under load).
    #[arg(long)]
    pub watch: bool,
    /// The callback's arguments (default: a sample login and node).
    args: Vec<String>,
    /// Load a running `authhost serve` at this address instead of an in-process host:
    /// unix:PATH or tcp:HOST:PORT over one connection, or http://HOST:PORT (its HTTP front)
    /// over --concurrency keep-alive connections.
    #[arg(long, value_name = "ADDR")]
    listen: Option<Target>,
    /// With --listen: send this many requests per second on a fixed schedule (0: pipelined,
    /// --concurrency in flight).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// With --listen: call this JSON-RPC method (`auth_token`, `auth`, `status` …) instead of
    /// --callback (over HTTP: `POST /rpc`).
    #[arg(long, requires = "listen")]
    method: Option<String>,
    /// With --method: its params as JSON, e.g. '{"token":"…"}' (default `{}`).
    #[arg(long, requires = "method")]
    params: Option<String>,
    /// With --listen http://…: `GET` this path (`/auth/request`, `/auth?login=…`, `/healthz`,
    /// or any URL path of a proxy in front) instead of `POST /v1/<callback>`.
    #[arg(
        long,
        value_name = "PATH",
        requires = "listen",
        conflicts_with = "method"
    )]
    get: Option<String>,
    /// With --listen http://…: a header sent with every request, `Name: value` (repeatable),
    /// e.g. 'Authorization: Basic YWxpY2U6d29uZGVybGFuZA=='.
    #[arg(long = "header", value_name = "HEADER", requires = "listen")]
    headers: Vec<String>,
}

impl BenchArgs {
    /// Whether to load a running service rather than an in-process host.
    pub fn is_remote(&self) -> bool {
        self.listen.is_some()
    }

    /// The arguments each request passes: the given ones, or a sample for the callback; a
    /// count the callback does not take is the usage error returned.
    pub fn call_args(&self) -> Result<Args, String> {
        let defaults = match self.callback {
            Callback::NewNode => [r#"{"public_key":"k"}"#, ""],
            _ => [
                r#"{"name":"alice","password":"pw"}"#,
                r#"{"public_key":"k"}"#,
            ],
        };
        let given = &self.args;
        match given.len() {
            0 => Ok(Args::from(defaults)),
            n if n == self.callback.arity() => Ok(Args::new(
                &given[0],
                given.get(1).map_or("", String::as_str),
            )),
            n => Err(format!(
                "{} takes {} argument(s), {n} given",
                self.callback,
                self.callback.arity()
            )),
        }
    }
}

/// What `bench --listen` loads: a JSON-RPC listener, or an HTTP front.
#[derive(Clone, Debug)]
pub enum Target {
    /// A JSON-RPC listener of `authhost serve` (`unix:PATH`, `tcp:HOST:PORT`).
    Service(authhost::serve::ListenAddr),
    /// An HTTP front, as its base URL without a trailing slash (`http://127.0.0.1:8080`).
    Http(String),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `http://HOST:PORT` as a client names it, or `http:HOST:PORT` as `serve --listen`
        // does, so that one address can be pasted from one command into the other.
        if let Some(rest) = s.strip_prefix("http:") {
            let host_port = rest
                .strip_prefix("//")
                .unwrap_or(rest)
                .trim_end_matches('/');
            if host_port.is_empty() || host_port.contains('/') {
                return Err(format!(
                    "invalid HTTP address {s:?}: expected http://HOST:PORT"
                ));
            }
            return Ok(Target::Http(format!("http://{host_port}")));
        }
        s.parse()
            .map(Target::Service)
            .map_err(|e| format!("{e}; or http://HOST:PORT for an HTTP front"))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Service(addr) => addr.fmt(f),
            Target::Http(url) => f.write_str(url),
        }
    }
}

/// Runs the benchmark against the running service that `--listen` names and prints one JSON
/// object.
pub fn run_remote(args: &BenchArgs) -> anyhow::Result<()> {
    match &args.listen {
        Some(Target::Service(addr)) => {
            anyhow::ensure!(
                args.get.is_none() && args.headers.is_empty(),
                "--get and --header are for an HTTP front (--listen http://HOST:PORT)"
            );
            remote::run(args, addr)
        }
        #[cfg(feature = "http")]
        Some(Target::Http(base)) => http::run(args, base),
        #[cfg(not(feature = "http"))]
        Some(Target::Http(_)) => {
            anyhow::bail!("this authhost is built without the `http` feature, and its HTTP client")
        }
        None => anyhow::bail!("no --listen address"),
    }
}

/// Every answer, as one word: the decision's index in [`Decision::NAMES`] in the top byte,
/// the latency in nanoseconds below. Each thread that delivers answers (a worker, mostly)
/// records them in a lane of its own, and the submitter reads the lanes' counts only when
/// its window looks full: anything the workers shared would move between their cores on
/// every answer, and the benchmark would measure the harness rather than the host.
struct Tally {
    lanes: Box<[CachePadded<Lane>]>,
    /// How many threads have taken a lane; past the last lane, threads share it.
    lanes_taken: AtomicUsize,
    first_error: Mutex<Option<String>>,
    submitter: std::thread::Thread,
}

/// One answering thread's records.
struct Lane {
    /// Answers recorded in this lane.
    answered: AtomicU64,
    /// Wake the submitter once `answered` reaches this; [`NO_ONE`] when it is awake.
    wake_at: AtomicU64,
    /// A lock only its own thread takes (but for threads past the last lane).
    records: Mutex<Vec<u64>>,
}

/// Bits of an answer word that hold the latency (about 2.3 years in nanoseconds).
const LATENCY_BITS: u32 = 56;

/// [`Lane::wake_at`] while the submitter is awake.
const NO_ONE: u64 = u64::MAX;

thread_local! {
    /// The lane of the calling thread, once it has recorded an answer.
    static LANE: Cell<Option<usize>> = const { Cell::new(None) };
}

impl Tally {
    /// A tally for up to `threads` threads with a lane each, `answering` of which are
    /// expected to share the `requests` answers.
    fn new(threads: usize, answering: usize, requests: u64) -> Tally {
        // Room for twice an even share of the answers in every lane (which thread answers
        // how many is not known beforehand), written once before the run: page faults and
        // reallocation would otherwise land on the workers during it.
        let per_lane = (requests as usize)
            .div_ceil(answering.max(1))
            .saturating_mul(2)
            .min(requests as usize)
            + 16;
        let records = || {
            let mut records = vec![u64::MAX; per_lane];
            records.clear();
            Mutex::new(records)
        };
        Tally {
            lanes: (0..threads.max(1))
                .map(|_| {
                    CachePadded::new(Lane {
                        answered: AtomicU64::new(0),
                        wake_at: AtomicU64::new(NO_ONE),
                        records: records(),
                    })
                })
                .collect(),
            lanes_taken: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            submitter: std::thread::current(),
        }
    }

    /// Records one answer, which took `latency` to reach its caller, on the calling thread's
    /// lane, and wakes the submitter if it waits for this lane.
    fn record(&self, outcome: &Outcome, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos())
            .unwrap_or(u64::MAX)
            .min((1 << LATENCY_BITS) - 1);
        let decision = outcome.decision.name_index() as u64;
        let lane = &self.lanes[self.lane_index()];
        lane.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(decision << LATENCY_BITS | ns);
        if let Some(error) = outcome.decision.error_cause() {
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| error.message.clone());
        }
        let answered = lane.answered.fetch_add(1, Ordering::SeqCst) + 1;
        if answered >= lane.wake_at.load(Ordering::SeqCst) {
            self.submitter.unpark();
        }
    }

    fn lane_index(&self) -> usize {
        LANE.with(|lane| {
            lane.get().unwrap_or_else(|| {
                let taken = self.lanes_taken.fetch_add(1, Ordering::Relaxed);
                let index = taken.min(self.lanes.len() - 1);
                lane.set(Some(index));
                index
            })
        })
    }

    /// Answers recorded so far, in all lanes.
    fn answered(&self) -> u64 {
        self.lanes
            .iter()
            .map(|lane| lane.answered.load(Ordering::SeqCst))
            .sum()
    }

    /// Waits until at least `total - slack` answers are recorded, and returns the count.
    /// While it sleeps, each lane in use is asked to wake it after its share of the answers
    /// still missing (the workers answer at about the same rate, so that is about when the
    /// total is reached); it then counts again.
    fn wait_for_total(&self, total: u64, slack: u64) -> u64 {
        let enough = total.saturating_sub(slack);
        let mut answered = self.answered();
        while answered < enough {
            let in_use = self
                .lanes_taken
                .load(Ordering::Relaxed)
                .clamp(1, self.lanes.len());
            let share = (total - answered).div_ceil(in_use as u64);
            for lane in self.lanes.iter() {
                let now = lane.answered.load(Ordering::SeqCst);
                lane.wake_at.store(now + share, Ordering::SeqCst);
            }
            // Stores and loads are SeqCst on both sides, so a lane that passes its mark after
            // this count sees the mark and wakes the submitter; the timeout is a backstop
            // for lanes that stop short of their share (a worker stuck past its deadline).
            answered = self.answered();
            if answered < enough {
                std::thread::park_timeout(Duration::from_millis(10));
                answered = self.answered();
            }
        }
        for lane in self.lanes.iter() {
            lane.wake_at.store(NO_ONE, Ordering::SeqCst);
        }
        answered
    }

    /// The latencies in nanoseconds, sorted, and the count of each decision (by index in
    /// [`Decision::NAMES`]).
    fn summary(&self) -> (Vec<u64>, [u64; Decision::NAMES.len()]) {
        let mut decisions = [0; Decision::NAMES.len()];
        let mut latencies = Vec::new();
        for lane in self.lanes.iter() {
            let records = lane.records.lock().unwrap_or_else(|e| e.into_inner());
            latencies.extend(records.iter().map(|&answer| {
                decisions[(answer >> LATENCY_BITS) as usize] += 1;
                answer & ((1 << LATENCY_BITS) - 1)
            }));
        }
        latencies.sort_unstable();
        (latencies, decisions)
    }
}

/// Runs the benchmark and prints one JSON object.
pub fn run(host: &Host, args: &BenchArgs, call_args: &Args) -> anyhow::Result<()> {
    let callback = args.callback;
    let concurrency = args.concurrency.max(1);
    // A lane for each worker, for the watchdog (timeouts), for the submitter (refusals) and,
    // with --blocking, for each calling thread.
    let workers = host.status().workers;
    let answering = if args.blocking { concurrency } else { workers };
    let lanes = workers + 2 + if args.blocking { concurrency } else { 0 };
    // Leaked for the run: completions then hold a plain reference, with no reference count
    // bouncing between the submitting thread and the workers on every request.
    let tally: &'static Tally = Box::leak(Box::new(Tally::new(lanes, answering, args.requests)));
    let started = Instant::now();
    let submitter_before = cpu::this_thread();
    let workers_before = cpu::workers();
    if args.blocking {
        blocking(host, callback, call_args, args.requests, concurrency, tally);
    } else {
        pipelined(host, callback, call_args, args.requests, concurrency, tally);
    }
    let seconds = started.elapsed().as_secs_f64();
    let per_request = |before: Option<Duration>, after: Option<Duration>| {
        let spent = after?.checked_sub(before?)?;
        Some((spent.as_nanos() as f64 / args.requests.max(1) as f64).round())
    };
    let submitter_cpu = per_request(submitter_before, cpu::this_thread());
    let workers_cpu = per_request(workers_before, cpu::workers());
    let (latencies, counts) = tally.summary();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    let decisions: serde_json::Map<String, serde_json::Value> = Decision::NAMES
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| (name.to_string(), n.into()))
        .collect();
    let report = json!({
        "callback": callback.function_name(),
        "mode": if args.blocking { "blocking" } else { "pipelined" },
        "requests": args.requests,
        "concurrency": concurrency,
        "workers": host.status().workers,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "throughput_per_s": (args.requests as f64 / seconds).round(),
        "latency_us": {
            "p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99), "max": percentile(1.0),
        },
        "decisions": decisions,
        "first_error": *tally.first_error.lock().unwrap_or_else(|e| e.into_inner()),
        // Answers that were not counted would show here (never more than `requests`).
        "answered": tally.answered(),
        // What a request costs the workers, and the load generator's share of the cores it
        // shares with them.
        "workers_cpu_ns_per_request": workers_cpu,
        "submitter_cpu_ns_per_request": submitter_cpu.filter(|_| !args.blocking),
        "generation": host.status().generation,
        "reloads": host.status().reloads,
        "reload_failures": host.status().reload_failures,
    });
    crate::output::line(report)
}

fn pipelined(
    host: &Host,
    callback: Callback,
    args: &Args,
    requests: u64,
    window: usize,
    tally: &'static Tally,
) {
    let window = window as u64;
    // When the window is full, wait until three quarters of it (or, for a window of one,
    // all of it) are answered, then submit that many again: the workers still have a
    // quarter of a window queued, and the submitter sleeps and wakes once per `drain`.
    let drain = (window * 3 / 4).max(1);
    // Answers counted when the window was last full: the lanes are read about once per
    // `drain` submissions, never per request.
    let mut answered = 0;
    for submitted in 0..requests {
        if submitted - answered >= window {
            answered = tally.wait_for_total(submitted - window + drain, drain / 4);
        }
        host.call_async(callback, args.clone(), move |outcome| {
            tally.record(&outcome, outcome.elapsed);
        });
    }
    tally.wait_for_total(requests, 0);
}

fn blocking(
    host: &Host,
    callback: Callback,
    args: &Args,
    requests: u64,
    threads: usize,
    tally: &'static Tally,
) {
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests {
                    return;
                }
                // The caller's view: from the call to having the answer in hand.
                let started = Instant::now();
                let outcome = host.call(callback, args.clone());
                tally.record(&outcome, started.elapsed());
            });
        }
    });
}
