//! `authhost bench`: a load generator for one callback of the loaded set.
//!
//! Pipelined mode (the default) keeps `--concurrency` requests in flight from one submitting
//! thread through the non-blocking API; `--blocking` runs `--concurrency` threads that each
//! make blocking calls. Latency is submission to decision (pipelined) or the whole blocking
//! call as its caller sees it (blocking).
//!
//! With `--listen ADDR`, it loads a running `authhost serve` instead: see [`remote`].

mod cpu;
pub mod remote;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use authhost::{Callback, Decision, Host, Outcome};
use clap::Args;
use serde_json::json;

/// Options of `authhost bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// user_signup, user_login or new_node (or on_user_login …).
    #[arg(long, default_value = "user_login")]
    callback: String,
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
    /// Load a running `authhost serve` at this address (unix:PATH or tcp:HOST:PORT) over one
    /// connection, instead of an in-process host.
    #[arg(long, value_name = "ADDR")]
    listen: Option<authhost::serve::ListenAddr>,
    /// With --listen: send this many requests per second on a fixed schedule (0: pipelined,
    /// --concurrency in flight).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

impl BenchArgs {
    /// Whether to load a running service rather than an in-process host.
    pub fn is_remote(&self) -> bool {
        self.listen.is_some()
    }
}

/// Every request's answer, one word each: the decision's index in [`Decision::NAMES`]
/// (plus one, so that 0 is "unanswered") in the top byte, the latency in nanoseconds below.
/// One plain store per answer: counters shared by the workers would bounce between their
/// cores on every answer and measure the harness rather than the host.
struct Tally {
    answers: Vec<AtomicU64>,
    first_error: std::sync::Mutex<Option<String>>,
}

/// Bits of an answer word that hold the latency (about 2.3 years in nanoseconds).
const LATENCY_BITS: u32 = 56;

impl Tally {
    /// Records the answer to request `index`, which took `latency` to reach its caller.
    fn record(&self, index: u64, outcome: &Outcome, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos())
            .unwrap_or(u64::MAX)
            .min((1 << LATENCY_BITS) - 1);
        let decision = outcome.decision.name_index() as u64 + 1;
        self.answers[index as usize].store(decision << LATENCY_BITS | ns, Ordering::Relaxed);
        if let Some(error) = outcome.decision.error_cause() {
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| error.message.clone());
        }
    }

    /// Whether request `index` has its answer.
    fn is_answered(&self, index: u64) -> bool {
        self.answers[index as usize].load(Ordering::SeqCst) != 0
    }

    /// The latencies in nanoseconds, sorted, and the count of each decision (by index in
    /// [`Decision::NAMES`]).
    fn summary(&self) -> (Vec<u64>, [u64; Decision::NAMES.len()]) {
        let mut decisions = [0; Decision::NAMES.len()];
        let mut latencies: Vec<u64> = self
            .answers
            .iter()
            .map(|answer| answer.load(Ordering::Relaxed))
            .filter(|&answer| answer != 0)
            .map(|answer| {
                decisions[(answer >> LATENCY_BITS) as usize - 1] += 1;
                answer & ((1 << LATENCY_BITS) - 1)
            })
            .collect();
        latencies.sort_unstable();
        (latencies, decisions)
    }
}

/// Runs the benchmark and prints one JSON object.
pub fn run(host: &Host, args: &BenchArgs) -> anyhow::Result<()> {
    let callback = Callback::from_name(&args.callback)
        .ok_or_else(|| anyhow::anyhow!("unknown callback {:?}", args.callback))?;
    let call_args = arguments(callback, &args.args)?;
    let concurrency = args.concurrency.max(1);
    // Leaked for the run: completions then hold a plain reference, with no reference count
    // bouncing between the submitting thread and the workers on every request.
    let tally: &'static Tally = Box::leak(Box::new(Tally {
        answers: (0..args.requests).map(|_| AtomicU64::new(0)).collect(),
        first_error: Default::default(),
    }));
    let started = Instant::now();
    let submitter_before = cpu::this_thread();
    let workers_before = cpu::workers();
    if args.blocking {
        blocking(
            host,
            callback,
            &call_args,
            args.requests,
            concurrency,
            tally,
        );
    } else {
        pipelined(
            host,
            callback,
            &call_args,
            args.requests,
            concurrency,
            tally,
        );
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
        // What a request costs the workers, and the load generator's share of the cores it
        // shares with them.
        "workers_cpu_ns_per_request": workers_cpu,
        "submitter_cpu_ns_per_request": submitter_cpu.filter(|_| !args.blocking),
        "generation": host.status().generation,
        "reloads": host.status().reloads,
        "reload_failures": host.status().reload_failures,
    });
    println!("{report}");
    Ok(())
}

fn arguments(callback: Callback, given: &[String]) -> anyhow::Result<[String; 2]> {
    let defaults = match callback {
        Callback::NewNode => [r#"{"public_key":"k"}"#, ""],
        _ => [
            r#"{"name":"alice","password":"pw"}"#,
            r#"{"public_key":"k"}"#,
        ],
    };
    match given.len() {
        0 => Ok(defaults.map(String::from)),
        n if n == callback.arity() => {
            Ok([given[0].clone(), given.get(1).cloned().unwrap_or_default()])
        }
        n => anyhow::bail!(
            "{callback} takes {} argument(s), {n} given",
            callback.arity()
        ),
    }
}

fn pipelined(
    host: &Host,
    callback: Callback,
    args: &[String; 2],
    requests: u64,
    window: usize,
    tally: &'static Tally,
) {
    let window = window as u64;
    // When the window is full, wait for the request this far back: half a window, or for a
    // window of one, the one before.
    let drain = (window / 2).max(1);
    let flow: &'static Window = Box::leak(Box::new(Window {
        tally,
        wake_for: AtomicU64::new(NO_ONE),
        submitter: std::thread::current(),
    }));
    // Requests below `clear` are answered, or as good as: answers come in about the order of
    // the queue, and `clear` only moves to just past an answered request.
    let mut clear = 0;
    for index in 0..requests {
        if index - clear >= window {
            let back = index - drain;
            flow.wait_for(back);
            clear = back + 1;
        }
        host.call_async(callback, args.clone(), move |outcome| {
            tally.record(index, &outcome, outcome.elapsed);
            flow.answered(index);
        });
    }
    for index in clear..requests {
        flow.wait_for(index);
    }
}

/// Bounds the requests in flight with no counter that the workers share: when its window
/// is full the submitter sleeps until the request half a window back is answered, and only
/// the worker that answers that one wakes it. A shared count of answers would be
/// incremented by both workers on every answer, and the benchmark would measure that
/// counter moving between their cores rather than the host.
struct Window {
    tally: &'static Tally,
    /// The request whose answer the sleeping submitter waits for; [`NO_ONE`] when awake.
    wake_for: AtomicU64,
    submitter: std::thread::Thread,
}

/// [`Window::wake_for`] when the submitter is awake.
const NO_ONE: u64 = u64::MAX;

impl Window {
    /// Returns once request `index` is answered.
    fn wait_for(&self, index: u64) {
        if self.tally.is_answered(index) {
            return;
        }
        self.wake_for.store(index, Ordering::SeqCst);
        // The worker stores the answer and then reads `wake_for` without a barrier between,
        // so in a rare race neither side sees the other's store: the timeout bounds that
        // sleep, at a fraction of the time the half window still queued takes to drain.
        while !self.tally.is_answered(index) {
            std::thread::park_timeout(Duration::from_millis(10));
        }
        self.wake_for.store(NO_ONE, Ordering::SeqCst);
    }

    /// Wakes the submitter if it waits for request `index`, which was just answered.
    fn answered(&self, index: u64) {
        if self.wake_for.load(Ordering::SeqCst) == index {
            self.submitter.unpark();
        }
    }
}

fn blocking(
    host: &Host,
    callback: Callback,
    args: &[String; 2],
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
                tally.record(index, &outcome, started.elapsed());
            });
        }
    });
}
