//! The service (contract §8): JSON-RPC 2.0 over stdio, a Unix socket or TCP, and the HTTP
//! front (contract §10, feature `http`), in front of a [`Host`].
//!
//! Each connection has a reader, which parses requests and hands them to the host's workers
//! as soon as they arrive, and a writer thread, which writes answers as they complete, in
//! any order (clients match them by `id`). A line is one request or a batch of up to
//! [`protocol::MAX_BATCH`]. Bad input is answered with its JSON-RPC error and the connection
//! goes on; a client that goes away only loses its own answers.
//!
//! stdio and Unix socket connections are trusted with control methods (`reload`); TCP ones
//! are not, and TCP beyond loopback is bound only with [`ServeOptions::expose`].
//!
//! [`Server::run`] serves until [`Stopper::stop`] (SIGTERM, in the binary) or, on stdio, the
//! end of input; then it stops reading requests, waits for the answers of those in flight
//! (each bounded by the host's timeout), and returns.
//!
//! ```no_run
//! use authhost::serve::{ListenAddr, ServeOptions, Server};
//!
//! let host = authhost::Host::builder().plugins("plugins").build()?;
//! let addr: ListenAddr = "unix:/run/authhost.sock".parse()?;
//! let server = Server::bind(&host, &addr, ServeOptions::default())?;
//! let stopper = server.stopper(); // call stopper.stop() from another thread to drain and stop
//! server.run()?;
//! host.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod connection;
#[cfg(feature = "http")]
mod http;
mod lines;
mod listen;
pub mod protocol;
mod rpc;

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::decision_log::DecisionRecorder;
use crate::host::Host;
use crate::lock::lock;
pub use listen::{group_id, ListenAddr, ListenAddrError};
use listen::{Listener, SocketAccess};
use rpc::Context;

/// How a [`Server`] serves.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Answers one connection may have pending (dispatched, not yet written) before the
    /// server stops reading its requests (default 1024). Capped by the host's queue, so that
    /// one client alone cannot overload it.
    pub max_pending: usize,
    /// Where to record every decision, if anywhere.
    pub decision_log: Option<DecisionRecorder>,
    /// Socket connections served at once (default 1024); one more is sent a −32001 error
    /// and closed. Each connection costs two threads. On an HTTP listener: connections and
    /// WebSockets open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// HTTP: how long a connection may take to send a request's headers, counted from when
    /// it opens or goes idle after a response (default 10 s). A client slower than that, or a
    /// keep-alive connection idle that long, is closed.
    pub http_header_timeout: Duration,
    /// HTTP: a WebSocket that receives nothing and has nothing pending this long is closed
    /// (default 300 s, the sessions' default inactivity timeout).
    pub ws_idle_timeout: Duration,
    /// Whether TCP may be bound beyond loopback (default `false`: [`Server::bind`] refuses
    /// such an address; see [`ListenAddr::is_exposed`]).
    pub expose: bool,
    /// A Unix socket's permission bits (default `0o600`: only the owner may connect).
    pub socket_mode: u32,
    /// A Unix socket's group (a gid; see [`group_id`]), for `socket_mode` to let in.
    pub socket_group: Option<u32>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_pending: 1024,
            decision_log: None,
            max_connections: 1024,
            http_header_timeout: Duration::from_secs(10),
            ws_idle_timeout: Duration::from_secs(300),
            expose: false,
            socket_mode: 0o600,
            socket_group: None,
        }
    }
}

impl ServeOptions {
    /// Sets [`ServeOptions::max_pending`].
    pub fn max_pending(mut self, places: usize) -> Self {
        self.max_pending = places;
        self
    }

    /// Sets [`ServeOptions::max_connections`].
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets [`ServeOptions::http_header_timeout`].
    pub fn http_header_timeout(mut self, timeout: Duration) -> Self {
        self.http_header_timeout = timeout;
        self
    }

    /// Sets [`ServeOptions::ws_idle_timeout`].
    pub fn ws_idle_timeout(mut self, timeout: Duration) -> Self {
        self.ws_idle_timeout = timeout;
        self
    }

    /// Sets [`ServeOptions::expose`].
    pub fn expose(mut self, expose: bool) -> Self {
        self.expose = expose;
        self
    }

    /// Sets [`ServeOptions::socket_mode`] (permission bits only; others are ignored).
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode & 0o777;
        self
    }

    /// Sets [`ServeOptions::socket_group`].
    pub fn socket_group(mut self, gid: u32) -> Self {
        self.socket_group = Some(gid);
        self
    }

    /// Records every decision into `log`.
    pub fn decision_log(mut self, log: DecisionRecorder) -> Self {
        self.decision_log = Some(log);
        self
    }
}

/// State every connection of a server shares.
pub(crate) struct Shared {
    stopping: AtomicBool,
    /// Answers dispatched and not yet written, over all connections.
    pub outstanding: AtomicUsize,
    /// How to stop reading each live socket connection, by connection number.
    connections: Mutex<HashMap<u64, Box<dyn Fn() + Send>>>,
    next_connection: AtomicU64,
    max_connections: usize,
}

impl Shared {
    fn new(max_connections: usize) -> Shared {
        Shared {
            stopping: AtomicBool::new(false),
            outstanding: AtomicUsize::new(0),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            max_connections: max_connections.max(1),
        }
    }

    /// Whether the server has begun stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Box<dyn Fn() + Send>>> {
        lock(&self.connections)
    }
}

/// Why a server stops.
enum StopReason {
    Requested,
    InputEnded,
}

/// Stops a running [`Server`] from another thread (a signal handler's, say).
#[derive(Clone)]
pub struct Stopper {
    sender: Sender<StopReason>,
}

impl Stopper {
    /// Asks the server to stop: no new connections or requests; those in flight are answered.
    pub fn stop(&self) {
        let _ = self.sender.try_send(StopReason::Requested);
    }
}

/// A bound service, ready to [`run`](Server::run).
pub struct Server {
    context: Context,
    listener: Listener,
    options: ServeOptions,
    stop_sender: Sender<StopReason>,
    stop_receiver: Receiver<StopReason>,
}

impl Server {
    /// Binds `addr` for `host`. A stale Unix socket file is replaced; a new one has the
    /// options' mode and group from the start.
    ///
    /// # Failure
    ///
    /// The address cannot be bound (in use, no permission, a live server on the socket, a
    /// file that is not a socket in the way, a group the process may not give the socket),
    /// or it is TCP beyond loopback without [`ServeOptions::expose`]
    /// ([`io::ErrorKind::PermissionDenied`]).
    pub fn bind(host: &Host, addr: &ListenAddr, options: ServeOptions) -> io::Result<Server> {
        if addr.is_exposed() && !options.expose {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{addr} is reachable beyond loopback; binding it needs `expose`"),
            ));
        }
        let access = SocketAccess {
            mode: options.socket_mode,
            group: options.socket_group,
        };
        let listener = Listener::bind(addr, access)?;
        let config = host.config();
        let queue = config.workers.max(1) * config.queue_per_worker.max(1);
        let (stop_sender, stop_receiver) = crossbeam_channel::bounded(4);
        Ok(Server {
            context: Context {
                host: host.clone(),
                shared: Arc::new(Shared::new(options.max_connections)),
                log: options.decision_log.clone(),
                max_pending: options.max_pending.clamp(1, queue),
            },
            listener,
            options,
            stop_sender,
            stop_receiver,
        })
    }

    /// The address bound: for `tcp:HOST:0`, with the port the system chose.
    pub fn local_addr(&self) -> ListenAddr {
        self.listener.local_addr()
    }

    /// A handle that stops this server.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            sender: self.stop_sender.clone(),
        }
    }

    /// Serves until stopped (or, on stdio, until the input ends), then drains: stops
    /// reading requests and waits, at most the host's timeout and a little more, for the
    /// answers in flight to be written. A Unix socket file is removed on return.
    ///
    /// # Failure
    ///
    /// A thread cannot be started.
    pub fn run(self) -> io::Result<()> {
        let Server {
            context,
            listener,
            options,
            stop_sender,
            stop_receiver,
        } = self;
        let listener = match listener {
            #[cfg(feature = "http")]
            Listener::Http(socket) => return http::run(context, socket, stop_receiver, &options),
            listener => Arc::new(listener),
        };
        let _ = options;
        let accepting = match &*listener {
            Listener::Stdio => {
                let context = context.clone();
                std::thread::Builder::new()
                    .name("authhost-stdio".into())
                    .spawn(move || {
                        let stdin = io::stdin();
                        connection::serve(&context, stdin.lock(), io::stdout(), "stdio", true);
                        let _ = stop_sender.try_send(StopReason::InputEnded);
                    })?
            }
            _ => {
                let context = context.clone();
                let listener = listener.clone();
                std::thread::Builder::new()
                    .name("authhost-accept".into())
                    .spawn(move || accept(&context, &listener))?
            }
        };
        let reason = stop_receiver.recv().unwrap_or(StopReason::Requested);
        let shared = &context.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        if let StopReason::Requested = reason {
            log::info!("stopping: answering the requests in flight");
        }
        listener.wake();
        for stop_reading in shared.connections().values() {
            stop_reading();
        }
        // In-flight requests end by their deadline at the latest; writing their answers takes
        // a little more.
        let deadline = Instant::now() + context.host.config().timeout + Duration::from_secs(2);
        while shared.outstanding.load(Ordering::SeqCst) > 0 || !shared.connections().is_empty() {
            if Instant::now() >= deadline {
                log::warn!(
                    "stopping with {} answer(s) unwritten (clients not reading)",
                    shared.outstanding.load(Ordering::SeqCst)
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // The process may exit as soon as this returns: remove the socket file now rather
        // than when the last handle on the listener is dropped.
        if let Listener::Unix(socket) = &*listener {
            socket.remove_file();
        }
        // The stdio reader may be blocked on input that never comes: it is left behind. The
        // accept loop returns once woken.
        if !matches!(*listener, Listener::Stdio) {
            let woken_by = Instant::now() + Duration::from_secs(1);
            while !accepting.is_finished() && Instant::now() < woken_by {
                std::thread::sleep(Duration::from_millis(2));
            }
            if accepting.is_finished() {
                let _ = accepting.join();
            }
        }
        Ok(())
    }
}

/// Accepts connections until the server stops, each served on its own thread.
fn accept(context: &Context, listener: &Listener) {
    loop {
        let accepted = match listener {
            Listener::Unix(socket) => socket.listener.accept().and_then(|(stream, _)| {
                let stop = stream.try_clone()?;
                let writer = stream.try_clone()?;
                Ok(Accepted {
                    peer: "unix client".to_string(),
                    trusted: true,
                    stop_reading: Box::new(move || {
                        let _ = stop.shutdown(Shutdown::Read);
                    }),
                    reader: Box::new(stream),
                    writer: Box::new(writer),
                })
            }),
            Listener::Tcp(listener) => listener.accept().and_then(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                let stop = stream.try_clone()?;
                let writer = stream.try_clone()?;
                Ok(Accepted {
                    peer: peer.to_string(),
                    trusted: false,
                    stop_reading: Box::new(move || {
                        let _ = stop.shutdown(Shutdown::Read);
                    }),
                    reader: Box::new(stream),
                    writer: Box::new(writer),
                })
            }),
            Listener::Stdio | Listener::Http(_) => return,
        };
        if context.shared.is_stopping() {
            return;
        }
        match accepted {
            Ok(accepted) => spawn_connection(context, accepted),
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                log::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A socket connection just accepted.
struct Accepted {
    peer: String,
    /// Whether control methods are allowed: on a Unix socket (file permissions say who may
    /// connect), not on TCP (anyone who reaches the port).
    trusted: bool,
    stop_reading: Box<dyn Fn() + Send>,
    reader: Box<dyn io::Read + Send>,
    writer: Box<dyn io::Write + Send>,
}

fn spawn_connection(context: &Context, mut accepted: Accepted) {
    let shared = context.shared.clone();
    let number = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    {
        let mut connections = shared.connections();
        if connections.len() >= shared.max_connections {
            drop(connections);
            log::warn!(
                "{}: refused, already serving {} connections",
                accepted.peer,
                shared.max_connections
            );
            let error = protocol::RpcError::new(
                protocol::ErrorCode::TooManyConnections,
                format!(
                    "too many connections (at most {}); try again later",
                    shared.max_connections
                ),
            );
            // A fresh socket's send buffer is empty: this does not block.
            let line = protocol::error_line(&serde_json::Value::Null, &error);
            let _ = accepted.writer.write_all(line.as_bytes());
            return;
        }
        // Registered before the stop check in the reader, so a stop never misses it.
        connections.insert(number, accepted.stop_reading);
    }
    let context = context.clone();
    let (peer, trusted) = (accepted.peer, accepted.trusted);
    let (reader, writer) = (accepted.reader, accepted.writer);
    let spawned = std::thread::Builder::new()
        .name("authhost-connection".into())
        .spawn(move || {
            log::debug!("{peer}: connected");
            connection::serve(&context, reader, writer, &peer, trusted);
            context.shared.connections().remove(&number);
        });
    if let Err(e) = spawned {
        log::error!("cannot start a connection thread: {e}; closing the connection");
        shared.connections().remove(&number);
    }
}
