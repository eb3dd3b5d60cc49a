//! [`Host`]: the embedding API. Build one with [`Host::builder`], then ask it questions.
//!
//! ```no_run
//! use authhost::{Host, UserDecision};
//!
//! let host = Host::builder().plugins("plugins").workers(2).build()?;
//! let outcome = host.user_login(r#"{"name":"alice"}"#, r#"{"public_key":"k"}"#);
//! match outcome.user() {
//!     Some(UserDecision::UserId(id)) => println!("alice is user {id}"),
//!     Some(other) => println!("refused: {other:?}"),
//!     None => unreachable!("a user callback gets a user decision"),
//! }
//! # Ok::<(), authhost::Error>(())
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::args::Args;
use crate::completion::{Completion, Done, Waiter};
use crate::config::{Config, MAX_TIMEOUT, MAX_WORKERS};
use crate::decision::{Callback, Outcome};
use crate::engine::{builtin_engines, Engine};
use crate::error::{Error, Result};
use crate::lock::lock;
use crate::plugins::{PluginInfo, PluginSet};
use crate::pool::{Job, Pool};
use crate::reload::{Next, PluginWatcher};

mod sessions;

pub use sessions::{token_json, Authenticated, TokenRefused};

/// Builds a [`Host`]: `Host::builder().plugins(…).workers(…).build()`.
#[derive(Clone, Debug, Default)]
pub struct HostBuilder {
    config: Config,
}

impl HostBuilder {
    /// The plugin file or directory (default `plugins`).
    pub fn plugins(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.plugins = path.into();
        self
    }

    /// The SQLite database file (default `authhost.db`; `:memory:` for an in-memory one).
    pub fn db(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.db = path.into();
        self
    }

    /// The number of workers (default: the machine's cores).
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers;
        self
    }

    /// The timeout from submission to decision (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Allows `authhost.http` to reach URLs under `prefix` (repeatable; Lua policies reach
    /// nothing else, Python policies are confined to these once one is given).
    pub fn upstream(mut self, prefix: impl Into<String>) -> Self {
        self.config.upstream.allow.push(prefix.into());
        self
    }

    /// Confines Python policies' SQL as Lua's always is: `ATTACH`/`DETACH`, `VACUUM`,
    /// `load_extension()` and all but a few read-only pragmas are refused with an error
    /// naming the refusal (off by default: Python policies are trusted code).
    pub fn confine_python_sql(mut self, confine: bool) -> Self {
        self.config.confine_python_sql = confine;
        self
    }

    /// A PEM file of CA certificates `authhost.http` trusts instead of the built-in web roots.
    pub fn upstream_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.upstream.ca_file = Some(path.into());
        self
    }

    /// Queue places per worker (default 1024).
    pub fn queue_per_worker(mut self, places: usize) -> Self {
        self.config.queue_per_worker = places;
        self
    }

    /// Memory limit of each Lua interpreter in bytes (default 64 MiB).
    pub fn lua_memory_limit(mut self, bytes: usize) -> Self {
        self.config.lua_memory_limit = bytes;
        self
    }

    /// Whether to watch the plugins path and reload the set when a plugin or helper module
    /// changes (default off for the library; `authhost serve` turns it on unless
    /// `--no-watch`). See [`Host::watch_plugins`].
    pub fn watch(mut self, watch: bool) -> Self {
        self.config.watch = watch;
        self
    }

    /// Quiet time after the last file change before a watched reload starts (default 50 ms).
    pub fn watch_debounce(mut self, debounce: Duration) -> Self {
        self.config.watch_debounce = debounce;
        self
    }

    /// A session's default inactivity timeout (default 300 s).
    pub fn session_idle(mut self, idle: Duration) -> Self {
        self.config.session_idle = idle;
        self
    }

    /// A session's absolute lifetime (default 12 h).
    pub fn session_max(mut self, max: Duration) -> Self {
        self.config.session_max = max;
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Loads the plugin set and starts the workers.
    ///
    /// # Failure
    ///
    /// A configuration that cannot work (no workers or more than [`MAX_WORKERS`], a zero
    /// timeout or one over [`MAX_TIMEOUT`]), a plugin set that does not load, a thread the system will not start
    /// ([`Error::Thread`]), or (with [`HostBuilder::watch`]) a plugins path that cannot be watched.
    pub fn build(self) -> Result<Host> {
        let config = self.config;
        if !(1..=MAX_WORKERS).contains(&config.workers) {
            return Err(Error::Config(format!(
                "workers must be between 1 and {MAX_WORKERS}, not {}",
                config.workers
            )));
        }
        if config.timeout.is_zero() {
            return Err(Error::Config("the timeout must be more than 0 ms".into()));
        }
        if config.timeout > MAX_TIMEOUT {
            return Err(Error::Config(format!(
                "the timeout must be at most {} days, not {} ms",
                MAX_TIMEOUT.as_secs() / 86_400,
                config.timeout.as_millis()
            )));
        }
        config
            .upstream
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        if config.session_idle.is_zero() || config.session_max.is_zero() {
            return Err(Error::Config(
                "--session-idle and --session-max must be more than 0 s".into(),
            ));
        }
        let sessions = config
            .session_store()
            .map_err(|e| Error::Config(e.to_string()))?;
        let engines = builtin_engines();
        let set = Arc::new(load_set(&engines, &config, 1)?);
        let pool = Pool::start(config.clone(), engines.clone(), set)?;
        let watch = config.watch;
        let host = Host {
            inner: Arc::new(Inner {
                config,
                engines,
                pool,
                watcher: Mutex::new(None),
                _purge: sessions::start_purge(sessions.clone()),
                sessions,
            }),
        };
        if watch {
            host.watch_plugins()?;
        }
        Ok(host)
    }
}

/// Loads a plugin set, warning when it can answer no request at all (it still goes live:
/// every request is refused, as after the last plugin file is deleted).
fn load_set(engines: &[Arc<dyn Engine>], config: &Config, generation: u64) -> Result<PluginSet> {
    let set = PluginSet::load(engines, config, generation)?;
    if let Some(why) = set.answers_nothing() {
        log::warn!("{why}");
    }
    Ok(set)
}

struct Inner {
    config: Config,
    engines: Vec<Arc<dyn Engine>>,
    /// The workers, and the live set they follow.
    pool: Pool,
    /// The file watcher, while watching. It holds only a `Weak` to this `Inner`, so it does
    /// not keep the host alive; dropping `Inner` stops it.
    watcher: Mutex<Option<PluginWatcher>>,
    /// Sessions, limits and state in the policy database (see [`crate::sessions`]).
    sessions: crate::sessions::Store,
    /// Stops the background purge of expired sessions when dropped (held, never read).
    _purge: sessions::PurgeGuard,
}

/// The authorization host: a live plugin set and the workers that run it.
///
/// Cheap to clone; clones share the same workers. The workers stop when the last clone is
/// dropped (or at [`Host::shutdown`]), after the requests already queued are answered.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The host's sessions, limits and state (see [`crate::sessions`]).
    pub fn sessions(&self) -> &crate::sessions::Store {
        &self.inner.sessions
    }

    /// Asks `on_user_signup(signup_info, node_info)` and waits for the decision.
    pub fn user_signup(&self, signup_info: impl AsRef<str>, node_info: impl AsRef<str>) -> Outcome {
        self.call(
            Callback::UserSignup,
            Args::new(signup_info.as_ref(), node_info.as_ref()),
        )
    }

    /// Asks `on_user_login(login_info, node_info)` and waits for the decision.
    pub fn user_login(&self, login_info: impl AsRef<str>, node_info: impl AsRef<str>) -> Outcome {
        self.call(
            Callback::UserLogin,
            Args::new(login_info.as_ref(), node_info.as_ref()),
        )
    }

    /// Asks `on_new_node(node_info)` and waits for the decision.
    pub fn new_node(&self, node_info: impl AsRef<str>) -> Outcome {
        self.call(Callback::NewNode, Args::new(node_info.as_ref(), ""))
    }

    /// Asks `callback` with `args` (the second is ignored by `on_new_node`) and waits, at
    /// most until the timeout, for the decision.
    pub fn call(&self, callback: Callback, args: impl Into<Args>) -> Outcome {
        let args = args.into();
        let submitted = Instant::now();
        let timeout = self.inner.config.timeout;
        let (waiter, completion) = Waiter::new(callback, submitted);
        self.submit(args, completion);
        waiter.wait(submitted + timeout, timeout)
    }

    /// Asks `callback` with `args` without waiting: `done` runs with the decision on the
    /// worker thread that made it (or, for a request refused at once as overloaded or
    /// shutting down, on the calling thread; for a timeout, on the watchdog thread).
    /// `done` should be quick and must not block on this host.
    ///
    /// Nothing is allocated per request when the arguments are short (see [`Args`]) and
    /// `done` captures at most four words: both travel inside the request.
    pub fn call_async(
        &self,
        callback: Callback,
        args: impl Into<Args>,
        done: impl FnOnce(Outcome) + Send + 'static,
    ) {
        let args = args.into();
        let completion = Completion::callback_target(callback, Instant::now(), Done::new(done));
        self.submit(args, completion);
    }

    /// [`Host::user_signup`] without waiting; see [`Host::call_async`].
    pub fn user_signup_async(
        &self,
        signup_info: impl AsRef<str>,
        node_info: impl AsRef<str>,
        done: impl FnOnce(Outcome) + Send + 'static,
    ) {
        self.call_async(
            Callback::UserSignup,
            Args::new(signup_info.as_ref(), node_info.as_ref()),
            done,
        )
    }

    /// [`Host::user_login`] without waiting; see [`Host::call_async`].
    pub fn user_login_async(
        &self,
        login_info: impl AsRef<str>,
        node_info: impl AsRef<str>,
        done: impl FnOnce(Outcome) + Send + 'static,
    ) {
        self.call_async(
            Callback::UserLogin,
            Args::new(login_info.as_ref(), node_info.as_ref()),
            done,
        )
    }

    /// [`Host::new_node`] without waiting; see [`Host::call_async`].
    pub fn new_node_async(
        &self,
        node_info: impl AsRef<str>,
        done: impl FnOnce(Outcome) + Send + 'static,
    ) {
        self.call_async(Callback::NewNode, Args::new(node_info.as_ref(), ""), done)
    }

    // Inlined, like the queue's own submit, so that the job is built where it is queued
    // rather than copied from frame to frame (it carries its arguments inline).
    #[inline]
    fn submit(&self, args: Args, completion: Completion) {
        let deadline = completion.submitted() + self.inner.config.timeout;
        self.inner.pool.submit(Job {
            args,
            deadline,
            completion,
        });
    }

    /// The live plugin set.
    pub fn plugin_set(&self) -> Arc<PluginSet> {
        self.inner.pool.live().current()
    }

    /// Loads the plugins afresh, off to the side, and makes the new set live if it loads.
    /// Requests already running finish on the old set.
    ///
    /// # Failure
    ///
    /// The load error (`FILE:LINE: message`); the running set stays live, and `status`
    /// shows the error as `last_error` until a later load succeeds.
    pub fn reload(&self) -> Result<Status> {
        let Inner {
            engines, config, ..
        } = &*self.inner;
        self.inner
            .pool
            .live()
            .reload(|generation| load_set(engines, config, generation))?;
        Ok(self.status())
    }

    /// Starts watching the plugins path: after a plugin file, a helper module in the plugins
    /// directory, or the single plugin file changes (debounced by
    /// [`HostBuilder::watch_debounce`]), the set is reloaded in the background as by
    /// [`Host::reload`]. A failed load keeps the running set and shows in `status`. Does
    /// nothing if already watching. Watching stops at [`Host::shutdown`], at
    /// [`Host::stop_watching`], or when the last clone of the host is dropped.
    ///
    /// # Failure
    ///
    /// [`Error::Watch`] when the path cannot be watched.
    pub fn watch_plugins(&self) -> Result<()> {
        let mut watcher = lock(&self.inner.watcher);
        if watcher.is_some() {
            return Ok(());
        }
        let host = Arc::downgrade(&self.inner);
        *watcher = Some(PluginWatcher::start(
            &self.inner.config.plugins,
            self.inner.config.watch_debounce,
            move || match host.upgrade() {
                Some(inner) => {
                    // The error is logged and kept for `status` by `reload` itself.
                    let _ = Host { inner }.reload();
                    Next::Continue
                }
                None => Next::Stop,
            },
        )?);
        Ok(())
    }

    /// Stops watching the plugins path (see [`Host::watch_plugins`]); waits for a reload in
    /// progress to finish. Does nothing if not watching.
    pub fn stop_watching(&self) {
        // Take it out before dropping it: the watcher's reload reads `status`, which locks
        // `watcher`, and dropping joins the watcher's thread.
        let watcher = lock(&self.inner.watcher).take();
        drop(watcher);
    }

    /// Whether the host watches its plugins path for changes.
    pub fn is_watching(&self) -> bool {
        lock(&self.inner.watcher).is_some()
    }

    /// The host's state: the live set, the last load error, and counters.
    pub fn status(&self) -> Status {
        let pool = &self.inner.pool;
        let set = pool.live().current();
        let reload = pool.live().history();
        Status {
            ready: !pool.is_closing(),
            generation: set.generation(),
            loaded_at: set.loaded_at(),
            workers: self.inner.pool.workers(),
            plugins: set.plugins().to_vec(),
            last_error: reload.last_error,
            reloads: reload.reloads,
            reload_failures: reload.failures,
            last_reload_at: reload.last_reload_at,
            watching: self.is_watching(),
            queued: pool.queued(),
            counters: {
                let mut counters = pool.counters_json();
                counters["upstream"] = self.inner.config.upstream.counters.to_json();
                counters
            },
            sessions: self.inner.sessions.counters().to_json(),
        }
    }

    /// Stops taking requests, answers those queued, and stops the workers. Later requests
    /// get `error` ("the host is shutting down"). Dropping the last clone does the same.
    pub fn shutdown(&self) {
        self.stop_watching();
        self.inner.pool.shutdown();
    }
}

/// A snapshot of a host's state, for `status`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Status {
    /// Whether the host takes requests.
    pub ready: bool,
    /// The live set's generation.
    pub generation: u64,
    /// When the live set was loaded.
    pub loaded_at: SystemTime,
    /// The number of workers.
    pub workers: usize,
    /// The live set's plugins.
    pub plugins: Vec<PluginInfo>,
    /// The last load error, until a later load succeeds.
    pub last_error: Option<String>,
    /// Reloads that made a new set live.
    pub reloads: u64,
    /// Reloads that failed and left the old set live.
    pub reload_failures: u64,
    /// When the last reload (good or failed) finished; `None` before the first.
    pub last_reload_at: Option<SystemTime>,
    /// Whether the host watches its plugins path for changes.
    pub watching: bool,
    /// Requests waiting in the queue.
    pub queued: usize,
    /// Requests per callback, decisions per kind, timeouts, refusals.
    pub counters: Value,
    /// Sessions opened, refreshed, expired and cleared, and throttled requests.
    pub sessions: Value,
}

impl Status {
    /// The status as the JSON of contract §8.
    pub fn to_json(&self) -> Value {
        let unix_ms = |at: SystemTime| {
            at.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        let loaded_at = unix_ms(self.loaded_at);
        let plugins: Vec<Value> = self
            .plugins
            .iter()
            .map(|p| {
                json!({
                    "file": p.file.display().to_string(),
                    "language": p.language.name(),
                    "callbacks": p.callbacks.iter().map(|c| c.function_name()).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "ready": self.ready,
            "generation": self.generation,
            "loaded_at_ms": loaded_at,
            "workers": self.workers,
            "plugins": plugins,
            "last_error": self.last_error,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "last_reload_at_ms": self.last_reload_at.map(unix_ms),
            "watching": self.watching,
            "queued": self.queued,
            "counters": self.counters,
            "sessions": self.sessions,
        })
    }
}
