//! `authhost bench --listen http://HOST:PORT`: a load generator for the HTTP front of a
//! running `authhost serve` (or for any HTTP server in front of it, with `--get`).
//!
//! `--concurrency` keep-alive connections (hyper's HTTP/1.1 client), all driven by one
//! thread (a single-threaded tokio runtime), so that the load generator takes at most one of
//! the cores it shares with the server; each connection has one request in flight at a
//! time, as HTTP/1.1 clients do. Pipelined (default): every connection sends its next
//! request as soon as it has the answer, so `--concurrency` requests are in flight. Paced
//! (`--rate N`): request *i* is due at *i*/N seconds; a free connection sends it when it is
//! due. An overdue request's latency counts from when it was due, so a stall counts for every
//! request it delays (up to `--concurrency` in flight); one sent on time counts from when it
//! is sent, leaving out the lateness of the client's own timer.
//!
//! What each request is: `POST /v1/<callback>` with the arguments as named params (the
//! default), `POST /rpc` with a JSON-RPC request for `--method`, or `GET --get PATH`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use authhost::Callback;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request as HttpRequest};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::remote::{latency_us, Call};
use super::BenchArgs;

/// How long one request may take before it counts as failed.
const PATIENCE: Duration = Duration::from_secs(60);

/// One request, the same every time.
struct Request {
    /// `POST` with this body, or `GET` (`None`).
    body: Option<Bytes>,
    /// `HOST:PORT`.
    authority: String,
    /// The path and query.
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
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
    let request = Arc::new(request(args, base, &call)?);
    let connections = args.concurrency.max(1);
    let requests = args.requests;
    let rate = args.rate;
    let interval_ns = if rate > 0 { 1e9 / rate as f64 } else { 0.0 };
    let next = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client's runtime")?;
    let start = Instant::now();
    let tallies = runtime.block_on(async {
        let clients: Vec<_> = (0..connections)
            .map(|_| {
                let (request, next) = (request.clone(), next.clone());
                tokio::spawn(async move {
                    client(&request, requests, interval_ns, start, &next, connections).await
                })
            })
            .collect();
        let mut tallies = Vec::with_capacity(connections);
        for client in clients {
            tallies.push(client.await.context("a client connection panicked")?);
        }
        anyhow::Ok(tallies)
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
            request.path
        ),
        "callback": (args.get.is_none() && args.method.is_none())
            .then(|| call.callback.function_name()),
        "method": args.method,
        "mode": if rate > 0 { "paced" } else { "pipelined" },
        "rate_per_s": if rate > 0 { Value::from(rate) } else { Value::Null },
        "concurrency": connections,
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
    crate::output::line(report)
}

/// The request that `args` describe.
fn request(args: &BenchArgs, base: &str, call: &Call) -> anyhow::Result<Request> {
    let authority = base.trim_start_matches("http://").to_string();
    let mut headers = args
        .headers
        .iter()
        .map(|header| {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("--header {header:?} is not `Name: value`"))?;
            Ok((
                HeaderName::from_bytes(name.trim().as_bytes())
                    .with_context(|| format!("--header {header:?}: not a header name"))?,
                HeaderValue::from_str(value.trim())
                    .with_context(|| format!("--header {header:?}: not a header value"))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    headers.push((
        hyper::header::HOST,
        HeaderValue::from_str(&authority).context("not a host")?,
    ));
    if let Some(path) = &args.get {
        anyhow::ensure!(path.starts_with('/'), "--get {path:?} must start with /");
        return Ok(Request {
            body: None,
            authority,
            path: path.clone(),
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
    headers.push((
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    Ok(Request {
        body: Some(Bytes::from(body.to_string())),
        authority,
        path,
        headers,
    })
}

/// One client connection: one request at a time on one keep-alive connection (a new one
/// after a failure), until every request is taken.
async fn client(
    request: &Request,
    requests: u64,
    interval_ns: f64,
    start: Instant,
    next: &AtomicU64,
    connections: usize,
) -> Tally {
    let mut tally = Tally {
        latencies_ns: Vec::with_capacity((requests as usize).div_ceil(connections) * 2),
        ..Tally::default()
    };
    let mut connection: Option<http1::SendRequest<Full<Bytes>>> = None;
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= requests {
            return tally;
        }
        let sent = if interval_ns > 0.0 {
            // Paced: a request that is overdue (its connection was busy with the one before)
            // counts its latency from when it was due, so that a server's stall counts for
            // every request it delays. One that is not due yet waits for its time and counts
            // from when it is sent: tokio's timer fires up to a millisecond late, and that
            // lateness is the client's, not the server's.
            let due = start + Duration::from_nanos((index as f64 * interval_ns) as u64);
            if Instant::now() < due {
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            } else {
                due
            }
        } else {
            Instant::now()
        };
        let answer = tokio::time::timeout(PATIENCE, exchange(request, &mut connection)).await;
        match answer {
            Ok(Ok((status, body))) => {
                tally.latencies_ns.push(sent.elapsed().as_nanos() as u64);
                tally.answer(status, &String::from_utf8_lossy(&body));
            }
            Ok(Err(e)) => {
                connection = None;
                tally.transport_errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("{}{}: {e:#}", request.authority, request.path));
            }
            Err(_) => {
                connection = None;
                tally.transport_errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| format!("no answer within {PATIENCE:?}"));
            }
        }
    }
}

/// Sends `request` on `connection` (opening one first if there is none) and reads the whole
/// answer, which leaves the connection ready for the next request.
async fn exchange(
    request: &Request,
    connection: &mut Option<http1::SendRequest<Full<Bytes>>>,
) -> anyhow::Result<(u16, Bytes)> {
    if connection.as_ref().is_none_or(|sender| sender.is_closed()) {
        *connection = Some(connect(&request.authority).await?);
    }
    let Some(sender) = connection.as_mut() else {
        anyhow::bail!("no connection")
    };
    sender.ready().await?;
    let mut builder = HttpRequest::builder()
        .method(if request.body.is_some() {
            Method::POST
        } else {
            Method::GET
        })
        .uri(&request.path);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let body = Full::new(request.body.clone().unwrap_or_default());
    let response = sender.send_request(builder.body(body)?).await?;
    let status = response.status().as_u16();
    // A server that ends the connection after this answer (nginx does after
    // `keepalive_requests`) says so: the next request goes on a new one.
    let closing = response
        .headers()
        .get(hyper::header::CONNECTION)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
    let body = response.into_body().collect().await?.to_bytes();
    if closing {
        *connection = None;
    }
    Ok((status, body))
}

/// A new keep-alive connection to `authority`.
async fn connect(authority: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, driver) = http1::handshake(TokioIo::new(stream)).await?;
    // The connection's own task reads and writes it; it ends when the sender goes.
    tokio::spawn(driver);
    Ok(sender)
}
