//! `authhost bench --listen http://HOST:PORT`: a load generator for the HTTP front of a
//! running `authhost serve` (or for any HTTP server in front of it, with `--get`).
//!
//! `--concurrency` threads each hold one keep-alive connection (a ureq agent of their own)
//! and send one request at a time on it, as HTTP/1.1 clients do. Pipelined (default): every
//! thread sends its next request as soon as it has the answer, so `--concurrency` requests
//! are in flight. Paced (`--rate N`): request *i* is due at *i*/N seconds; a free thread
//! sends it when it is due, and its latency counts from then, so a stall counts for every
//! request it delays (up to `--concurrency` in flight).
//!
//! What each request is: `POST /v1/<callback>` with the arguments as named params (the
//! default), `POST /rpc` with a JSON-RPC request for `--method`, or `GET --get PATH`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use authhost::Callback;
use serde_json::{json, Value};

use super::remote::{latency_us, Call};
use super::BenchArgs;

/// How long one request may take before it counts as failed.
const PATIENCE: Duration = Duration::from_secs(60);

/// One request, the same every time.
struct Request {
    /// `POST` with this body, or `GET` (`None`).
    body: Option<String>,
    url: String,
    headers: Vec<(String, String)>,
}

/// What the threads saw, merged at the end.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    /// Decisions found in the answers' bodies (`/v1/…`, `/rpc`, `/auth`).
    decisions: BTreeMap<String, u64>,
    /// HTTP statuses of the answers.
    statuses: BTreeMap<u16, u64>,
    /// JSON-RPC error answers (`/rpc`).
    rpc_errors: u64,
    /// Requests that got no HTTP answer at all (connection refused or reset, timeout).
    transport_errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_ns.extend(other.latencies_ns);
        for (decision, n) in other.decisions {
            *self.decisions.entry(decision).or_default() += n;
        }
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.rpc_errors += other.rpc_errors;
        self.transport_errors += other.transport_errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Counts one answer: its status, and the decision or JSON-RPC error in its body.
    fn answer(&mut self, status: u16, body: &str) {
        *self.statuses.entry(status).or_default() += 1;
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        // A `/v1/…` or `/auth` answer is the decision itself; a `/rpc` one carries it as
        // `result`, or carries an `error` instead.
        let decision = parsed.as_ref().and_then(|v| {
            v.get("decision")
                .or_else(|| v.get("result").and_then(|r| r.get("decision")))
                .and_then(Value::as_str)
        });
        if let Some(decision) = decision {
            *self.decisions.entry(decision.to_string()).or_default() += 1;
            if decision == "error" {
                self.first_error.get_or_insert_with(|| body.to_string());
            }
        } else if parsed.as_ref().is_some_and(|v| v.get("error").is_some()) {
            self.rpc_errors += 1;
            self.first_error.get_or_insert_with(|| body.to_string());
        }
        if status >= 500 {
            self.first_error
                .get_or_insert_with(|| format!("HTTP {status}: {body}"));
        }
    }
}

/// Runs the benchmark against the HTTP front at `base` (`http://HOST:PORT`) and prints one
/// JSON object.
pub fn run(args: &BenchArgs, base: &str) -> anyhow::Result<()> {
    let call = Call::of(args)?;
    let request = request(args, base, &call)?;
    let threads = args.concurrency.max(1);
    let requests = args.requests;
    let rate = args.rate;
    let interval_ns = if rate > 0 { 1e9 / rate as f64 } else { 0.0 };
    let next = AtomicU64::new(0);
    let start = Instant::now();
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::Builder::new()
                    .name("bench-http".into())
                    .spawn_scoped(scope, || {
                        client(&request, requests, interval_ns, start, &next, threads)
                    })
            })
            .collect::<Result<_, _>>()?;
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a bench-http thread panicked"))
            })
            .collect::<anyhow::Result<_>>()
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let mut tally = Tally::default();
    for t in tallies {
        tally.merge(t);
    }
    let answered = tally.latencies_ns.len() as u64;
    let statuses: serde_json::Map<String, Value> = tally
        .statuses
        .iter()
        .map(|(status, n)| (status.to_string(), Value::from(*n)))
        .collect();
    let report = json!({
        "target": base,
        "http": format!(
            "{} {}",
            if request.body.is_some() { "POST" } else { "GET" },
            request.url.strip_prefix(base).unwrap_or(&request.url)
        ),
        "callback": (args.get.is_none() && args.method.is_none())
            .then(|| call.callback.function_name()),
        "method": args.method,
        "mode": if rate > 0 { "paced" } else { "pipelined" },
        "rate_per_s": if rate > 0 { Value::from(rate) } else { Value::Null },
        "concurrency": threads,
        "requests": requests,
        "sent": next.load(Ordering::Relaxed).min(requests),
        "answered": answered,
        "lost": requests - answered,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "throughput_per_s": (answered as f64 / seconds).round(),
        "latency_us": latency_us(&mut tally.latencies_ns),
        "statuses": statuses,
        "decisions": tally.decisions,
        "rpc_errors": tally.rpc_errors,
        "transport_errors": tally.transport_errors,
        "first_error": tally.first_error,
    });
    println!("{report}");
    Ok(())
}

/// The request that `args` describe.
fn request(args: &BenchArgs, base: &str, call: &Call) -> anyhow::Result<Request> {
    let headers = args
        .headers
        .iter()
        .map(|header| {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("--header {header:?} is not `Name: value`"))?;
            Ok((name.trim().to_string(), value.trim().to_string()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(path) = &args.get {
        anyhow::ensure!(path.starts_with('/'), "--get {path:?} must start with /");
        return Ok(Request {
            body: None,
            url: format!("{base}{path}"),
            headers,
        });
    }
    let (path, body) = if args.method.is_some() {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": call.method, "params": call.params});
        ("/rpc".to_string(), body)
    } else {
        // /v1/<callback> takes the callback's params by name (contract §10).
        let names: &[&str] = match call.callback {
            Callback::UserSignup => &["signup_info", "node_info"],
            Callback::UserLogin => &["login_info", "node_info"],
            Callback::NewNode => &["node_info"],
        };
        let values = call.params.as_array().cloned().unwrap_or_default();
        let body: serde_json::Map<String, Value> = names
            .iter()
            .zip(values)
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        (
            format!("/v1/{}", call.callback.method_name()),
            Value::Object(body),
        )
    };
    Ok(Request {
        body: Some(body.to_string()),
        url: format!("{base}{path}"),
        headers,
    })
}

/// One client thread: one keep-alive connection, one request at a time, until every request
/// is taken.
fn client(
    request: &Request,
    requests: u64,
    interval_ns: f64,
    start: Instant,
    next: &AtomicU64,
    threads: usize,
) -> Tally {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // Statuses are what is measured, not errors.
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(PATIENCE))
        .build()
        .into();
    let mut tally = Tally {
        latencies_ns: Vec::with_capacity((requests as usize).div_ceil(threads) * 2),
        ..Tally::default()
    };
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= requests {
            return tally;
        }
        let sent = if interval_ns > 0.0 {
            // Paced: wait until this request is due, and count its latency from then.
            let due = start + Duration::from_nanos((index as f64 * interval_ns) as u64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            due
        } else {
            Instant::now()
        };
        let answer = match &request.body {
            Some(body) => {
                let mut builder = agent
                    .post(&request.url)
                    .header("Content-Type", "application/json");
                for (name, value) in &request.headers {
                    builder = builder.header(name, value);
                }
                builder.send(body.as_str())
            }
            None => {
                let mut builder = agent.get(&request.url);
                for (name, value) in &request.headers {
                    builder = builder.header(name, value);
                }
                builder.call()
            }
        }
        // Reading the whole body is what lets the agent reuse the connection.
        .and_then(|mut response| {
            let body = response.body_mut().read_to_string()?;
            Ok((response.status().as_u16(), body))
        });
        match answer {
            Ok((status, body)) => {
                tally.latencies_ns.push(sent.elapsed().as_nanos() as u64);
                tally.answer(status, &body);
            }
            Err(e) => {
                tally.transport_errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("{}: {e}", request.url));
            }
        }
    }
}
