//! `authhost bench --listen ADDR`: a load generator for a running `authhost serve`, over one
//! Unix socket or TCP connection.
//!
//! Two modes. Pipelined (default): keeps `--concurrency` requests in flight, for the most
//! requests per second one connection gets. Paced (`--rate N`): sends N requests per second
//! on a fixed schedule whatever the answers do, and measures each latency from the time the
//! request was due, so a stall counts for every request it delays.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use authhost::serve::ListenAddr;
use authhost::Callback;
use serde_json::{json, Value};

use super::BenchArgs;

/// How long to wait for the last answers before reporting them lost.
const PATIENCE: Duration = Duration::from_secs(60);

/// Requests written per write call at most.
const BATCH: u64 = 128;

/// What each request asks: the callback, and the JSON-RPC method and params that carry it
/// (`--method`/`--params`, or the callback's method with the positional arguments).
pub(super) struct Call {
    pub callback: Callback,
    pub method: String,
    pub params: Value,
}

impl Call {
    /// The call that `args` describe.
    pub fn of(args: &BenchArgs) -> anyhow::Result<Call> {
        let callback = args.callback;
        let call_args = args.call_args().map_err(anyhow::Error::msg)?;
        let params = match callback {
            Callback::NewNode => json!([call_args.first()]),
            _ => json!(call_args.get()),
        };
        let (method, params) = match &args.method {
            Some(method) => {
                let params: Value = serde_json::from_str(args.params.as_deref().unwrap_or("{}"))
                    .context("--params is not JSON")?;
                (method.clone(), params)
            }
            None => (callback.method_name().to_string(), params),
        };
        Ok(Call {
            callback,
            method,
            params,
        })
    }
}

/// The latency percentiles of a run, in microseconds to a tenth, from latencies in
/// nanoseconds (sorted here).
pub(super) fn latency_us(latencies: &mut [u64]) -> Value {
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        (latencies[i] as f64 / 100.0).round() / 10.0
    };
    json!({
        "p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99),
        "p999": percentile(0.999), "max": percentile(1.0),
    })
}

/// Runs the benchmark against the service at `addr` and prints one JSON object.
pub fn run(args: &BenchArgs, addr: &ListenAddr) -> anyhow::Result<()> {
    let Call {
        callback,
        method,
        params,
    } = Call::of(args)?;
    let (reader, writer) = connect(addr)?;
    let suffix = format!(r#","method":{},"params":{params}}}"#, json!(method));
    let requests = args.requests;
    let window = args.concurrency.max(1) as u64;
    let rate = args.rate;

    let start = Instant::now();
    // Send times (ns after start), by request id, for latencies in pipelined mode.
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..requests).map(|_| AtomicU64::new(0)).collect());
    let received = Arc::new(AtomicU64::new(0));
    let sender = {
        let sent_at = sent_at.clone();
        let received = received.clone();
        let reader_thread = std::thread::current();
        std::thread::Builder::new()
            .name("bench-sender".into())
            .spawn(move || {
                let sent = send(
                    writer, &suffix, requests, window, rate, start, &sent_at, &received,
                );
                reader_thread.unpark();
                sent
            })?
    };
    let tally = receive(reader, requests, rate, start, &sent_at, &received, &sender)?;
    let seconds = start.elapsed().as_secs_f64();
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;

    let mut latencies = tally.latencies_ns;
    let answered = latencies.len() as u64;
    let report = json!({
        "target": addr.to_string(),
        "callback": callback.function_name(),
        "method": method,
        "mode": if rate > 0 { "paced" } else { "pipelined" },
        "rate_per_s": if rate > 0 { Value::from(rate) } else { Value::Null },
        "concurrency": if rate > 0 { Value::Null } else { Value::from(window) },
        "requests": requests,
        "sent": sent,
        "answered": answered,
        "lost": requests - answered,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "throughput_per_s": (answered as f64 / seconds).round(),
        "latency_us": latency_us(&mut latencies),
        "decisions": tally.decisions,
        "rpc_errors": tally.rpc_errors,
        "first_error": tally.first_error,
    });
    crate::output::line(report)
}

type Reader = Box<dyn Read + Send>;
type Writer = Box<dyn Write + Send>;

fn connect(addr: &ListenAddr) -> anyhow::Result<(Reader, Writer)> {
    match addr {
        ListenAddr::Unix(path) => {
            let stream = UnixStream::connect(path)
                .with_context(|| format!("cannot connect to {}", path.display()))?;
            stream.set_read_timeout(Some(PATIENCE))?;
            Ok((Box::new(stream.try_clone()?), Box::new(stream)))
        }
        ListenAddr::Tcp(host_port) => {
            let stream = TcpStream::connect(host_port.as_str())
                .with_context(|| format!("cannot connect to {host_port}"))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(PATIENCE))?;
            Ok((Box::new(stream.try_clone()?), Box::new(stream)))
        }
        ListenAddr::Stdio | ListenAddr::Http(_) => {
            bail!("bench --listen needs unix:PATH or tcp:HOST:PORT")
        }
    }
}

/// Writes the requests, pipelined within `window` or paced at `rate`. Returns how many
/// were sent.
#[allow(clippy::too_many_arguments)]
fn send(
    mut writer: Writer,
    suffix: &str,
    requests: u64,
    window: u64,
    rate: u64,
    start: Instant,
    sent_at: &[AtomicU64],
    received: &AtomicU64,
) -> anyhow::Result<u64> {
    let mut buffer = String::with_capacity(64 << 10);
    let mut next = 0u64;
    let interval_ns = if rate > 0 { 1e9 / rate as f64 } else { 0.0 };
    while next < requests {
        let elapsed_ns = start.elapsed().as_nanos() as u64;
        let allowed = if rate > 0 {
            // Everything due by now.
            let due = (elapsed_ns as f64 / interval_ns) as u64 + 1;
            let due = due.min(requests);
            if due <= next {
                // Sleep rather than spin: on a small machine a spinning client would take the
                // CPU the server needs. Requests due meanwhile go out together.
                let wait_ns = ((next as f64 * interval_ns) as u64).saturating_sub(elapsed_ns);
                std::thread::sleep(Duration::from_nanos(wait_ns.max(1_000)));
                continue;
            }
            due
        } else {
            let in_flight = next - received.load(Ordering::Acquire);
            if in_flight >= window {
                std::thread::park_timeout(Duration::from_millis(1));
                continue;
            }
            (next + window - in_flight).min(requests)
        };
        let upto = allowed.min(next + BATCH);
        buffer.clear();
        for id in next..upto {
            buffer.push_str(r#"{"jsonrpc":"2.0","id":"#);
            buffer.push_str(itoa(id, &mut [0; 20]));
            buffer.push_str(suffix);
            buffer.push('\n');
            sent_at[id as usize].store(elapsed_ns, Ordering::Relaxed);
        }
        writer
            .write_all(buffer.as_bytes())
            .context("writing requests")?;
        next = upto;
    }
    writer.flush()?;
    Ok(next)
}

fn itoa(mut n: u64, digits: &mut [u8; 20]) -> &str {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[i..]).unwrap_or("0")
}

struct Tally {
    latencies_ns: Vec<u64>,
    decisions: serde_json::Map<String, Value>,
    rpc_errors: u64,
    first_error: Option<String>,
}

fn receive(
    reader: Reader,
    requests: u64,
    rate: u64,
    start: Instant,
    sent_at: &[AtomicU64],
    received: &AtomicU64,
    sender: &std::thread::JoinHandle<anyhow::Result<u64>>,
) -> anyhow::Result<Tally> {
    let mut lines = BufReader::with_capacity(256 << 10, reader);
    let mut tally = Tally {
        latencies_ns: Vec::with_capacity(requests as usize),
        decisions: serde_json::Map::new(),
        rpc_errors: 0,
        first_error: None,
    };
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    let mut seen = vec![false; requests as usize];
    let interval_ns = if rate > 0 { 1e9 / rate as f64 } else { 0.0 };
    let sender_thread = sender.thread().clone();
    let mut line = String::new();
    while (tally.latencies_ns.len() as u64) < requests {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => break, // the server closed the connection
            Ok(_) => {}
            // No answer within the read timeout: the rest are reported lost.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e).context("reading answers"),
        }
        let now_ns = start.elapsed().as_nanos() as u64;
        let Some(id) = field(&line, "\"id\":").and_then(|v| v.parse::<u64>().ok()) else {
            tally.rpc_errors += 1;
            continue;
        };
        if id >= requests || std::mem::replace(&mut seen[id as usize], true) {
            bail!("answer with an unexpected or repeated id {id}");
        }
        let due_ns = if rate > 0 {
            (id as f64 * interval_ns) as u64
        } else {
            sent_at[id as usize].load(Ordering::Relaxed)
        };
        tally.latencies_ns.push(now_ns.saturating_sub(due_ns));
        if line.contains("\"error\":{") {
            tally.rpc_errors += 1;
            tally
                .first_error
                .get_or_insert_with(|| line.trim().to_string());
        } else if let Some(decision) = field(&line, "\"decision\":\"") {
            *counts
                .entry(decision.trim_end_matches('"').to_string())
                .or_default() += 1;
            if decision.starts_with("error") {
                tally
                    .first_error
                    .get_or_insert_with(|| line.trim().to_string());
            }
        }
        received.fetch_add(1, Ordering::Release);
        sender_thread.unpark();
    }
    tally.decisions = counts
        .into_iter()
        .map(|(k, v)| (k, Value::from(v)))
        .collect();
    Ok(tally)
}

/// The text after `key` up to the next `,` or `}`: `"id":17,` gives `17`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    let rest = &line[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(&rest[..end])
}
