//! The HTTP front (contract §10): `authhost serve --listen http:HOST:PORT`.
//!
//! The same host, policies and decisions as the JSON-RPC listeners, with an HTTP face: the
//! `/v1/*` calls, `/rpc`, the Flussonic backend shape (`/auth`), nginx `auth_request`
//! (`/auth/request`), health and readiness, the status JSON, Prometheus metrics, a status
//! page and a WebSocket (`/ws`). Each route is in [`routes`] and the modules beside it.
//!
//! The stack is axum on hyper 1 on a tokio runtime of its own, so a listener's threads never
//! mix with the host's workers. A handler never blocks a tokio thread on a policy: it hands
//! the call to [`Host::call_async`](crate::Host::call_async) with a completion that wakes a
//! oneshot channel, and awaits that; session token look-ups (one SQLite statement) run on
//! tokio's blocking pool.
//!
//! Limits: HTTP/1.1 with keep-alive; a request body over [`MAX_BODY`] is refused with 413; a
//! connection must deliver each request's headers within the header timeout
//! ([`ServeOptions::http_header_timeout`](super::ServeOptions), 10 s by default), counted
//! from when the connection is opened or goes idle after a response, so a client that sends
//! its headers too slowly, or a keep-alive connection idle that long, is closed. Stopping
//! (SIGTERM) closes the listener, lets each connection finish the request it is serving
//! (answered with `Connection: close`), and closes the WebSockets once their answers are
//! sent.

mod auth;
mod jsonrpc;
mod metrics;
mod page;
mod routes;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{oneshot, watch};

use super::rpc::Context;
use super::StopReason;
use crate::decision::{Callback, DecisionError, ErrorKind, Outcome};

/// The largest request body read (1 MiB, as the line listeners' longest line); a larger one
/// is answered 413.
pub const MAX_BODY: usize = super::protocol::MAX_LINE;

/// What every request of one HTTP listener shares.
pub(crate) struct Front {
    /// The host, the decision log and the server's shared state.
    pub context: Context,
    /// Becomes `true` when the server begins stopping.
    pub stopping: watch::Receiver<bool>,
    /// A WebSocket that receives nothing for this long is closed.
    pub ws_idle: Duration,
    /// Connections and WebSockets still open, so that stopping can wait for them.
    pub open: Arc<Tracker>,
}

impl Front {
    /// Asks `callback` without blocking this thread: the host's completion wakes the await.
    /// The decision log, if any, records the decision (see [`Context::decide`]).
    pub async fn decide(&self, callback: Callback, args: [String; 2]) -> Outcome {
        let (sender, receiver) = oneshot::channel();
        self.context.decide(callback, args, move |outcome| {
            let _ = sender.send(outcome);
        });
        // The host completes every request it takes; a dropped completion still fails closed.
        receiver.await.unwrap_or_else(|_| {
            Outcome::failed(
                callback,
                DecisionError::new(ErrorKind::WorkerFailed, "the request's answer was lost"),
                Duration::ZERO,
            )
        })
    }
}

/// Counts open connections and WebSockets, and the connections accepted.
#[derive(Default)]
pub(crate) struct Tracker {
    open: AtomicUsize,
    /// Every TCP connection the listener accepted, the ones refused 503 too: a count that
    /// climbs with the requests means clients (or a proxy) do not keep their connections.
    accepted: AtomicU64,
}

/// One open connection or WebSocket; counted until dropped.
pub(crate) struct Open(Arc<Tracker>);

impl Tracker {
    /// Counts one more until the returned guard is dropped.
    pub fn enter(self: &Arc<Tracker>) -> Open {
        self.open.fetch_add(1, Ordering::SeqCst);
        Open(self.clone())
    }

    /// How many are open.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// How many TCP connections the listener accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits until nothing is open, or `deadline`; whether nothing is.
    async fn closed_by(&self, deadline: Instant) -> bool {
        while self.open.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves HTTP on `listener` until `stop` says so, then drains (see the module doc).
pub(super) fn run(
    context: Context,
    listener: std::net::TcpListener,
    stop: Receiver<StopReason>,
    options: &super::ServeOptions,
) -> io::Result<()> {
    // As many threads as cores: the handlers only parse, wait and write; the policies run on
    // the host's own workers.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("authhost-http")
        .enable_all()
        .build()?;
    let limits = Limits {
        header_timeout: options.http_header_timeout,
        ws_idle: options.ws_idle_timeout,
        max_connections: options.max_connections.max(1),
    };
    runtime.block_on(serve(context, listener, stop, limits))
}

/// An HTTP listener's limits, from its [`ServeOptions`](super::ServeOptions).
struct Limits {
    header_timeout: Duration,
    ws_idle: Duration,
    /// Connections and WebSockets open at once; one more is answered 503 and closed.
    max_connections: usize,
}

async fn serve(
    context: Context,
    listener: std::net::TcpListener,
    stop: Receiver<StopReason>,
    limits: Limits,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (stopping_sender, stopping) = watch::channel(false);
    let open = Arc::new(Tracker::default());
    let front = Arc::new(Front {
        context: context.clone(),
        stopping: stopping.clone(),
        ws_idle: limits.ws_idle,
        open: open.clone(),
    });
    let app = routes::router(front);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    // Past the limit: one answer, 503, and the connection is closed.
    let mut overflow = hyper::server::conn::http1::Builder::new();
    overflow
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false);
    let overflow = Arc::new(overflow);
    // The stop signal comes from a crossbeam channel: wait for it on the blocking pool.
    let mut stopped = tokio::task::spawn_blocking(move || stop.recv().ok());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted.inspect(|_| {
                open.accepted.fetch_add(1, Ordering::Relaxed);
            }) {
                Ok((stream, peer)) if open.count() >= limits.max_connections => {
                    log::warn!(
                        "{peer}: answered 503, already serving {} HTTP connections",
                        limits.max_connections
                    );
                    tokio::spawn(refuse_connection(overflow.clone(), stream, limits.max_connections));
                }
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = serve_connection(
                        http.clone(), app.clone(), stream, peer, stopping.clone(), open.enter(),
                    );
                    tokio::spawn(connection);
                }
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut stopped => break,
        }
    }
    drop(listener);
    context
        .shared
        .stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    log::info!("stopping: answering the HTTP requests in flight");
    let _ = stopping_sender.send(true);
    // In-flight requests end by their deadline at the latest; writing their answers takes a
    // little more.
    let deadline = Instant::now() + context.host.config().timeout + Duration::from_secs(2);
    if !open.closed_by(deadline).await {
        log::warn!("stopping with HTTP connections still open (clients not reading)");
    }
    Ok(())
}

/// Answers the one request of a connection past the limit with 503, and closes it.
async fn refuse_connection(
    http: Arc<hyper::server::conn::http1::Builder>,
    stream: tokio::net::TcpStream,
    limit: usize,
) {
    let service = hyper::service::service_fn(move |_request| {
        let refused = routes::refusal(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("too many connections (at most {limit}); try again later"),
        );
        std::future::ready(Ok::<_, std::convert::Infallible>(refused))
    });
    let _ = http.serve_connection(TokioIo::new(stream), service).await;
}

/// Returns once the server begins stopping.
pub(crate) async fn until_stopping(stopping: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped here, before any other await.
    let _ = stopping.wait_for(|stopping| *stopping).await.is_ok();
}

/// Serves one connection until it closes; when the server stops, finishes the request in
/// flight (if any) and closes.
async fn serve_connection(
    http: Arc<hyper::server::conn::http1::Builder>,
    app: axum::Router,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut stopping: watch::Receiver<bool>,
    _open: Open,
) {
    let service = hyper::service::service_fn(move |mut request| {
        request.extensions_mut().insert(routes::Peer(peer));
        tower::ServiceExt::oneshot(app.clone(), request)
    });
    let connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = until_stopping(&mut stopping) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        // A client gone, or one too slow with its headers: its own loss, logged for debugging.
        log::debug!("{peer}: HTTP connection ended: {e}");
    }
}
