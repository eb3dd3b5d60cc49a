//! [`Config`]: a host's settings, read by every layer below the host (the pool, the plugin
//! loader, the engines). It sits below them all, so that none of them imports the host.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::script_api::db::{DatabaseScope, Location};
use crate::sessions::{Store, StoreError};

/// The default quiet time after the last file event before a watched reload starts.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);

/// The most worker threads a host runs. Each worker takes 1024 queue places and, per
/// language, an interpreter of its own; past a few hundred, more workers only cost memory
/// (1024 workers took 765 MB before their first request) and thread start-up.
pub const MAX_WORKERS: usize = 256;

/// The longest timeout a host takes: far past any policy's need, and short enough that a
/// deadline, and the grace periods added to it, always fit a clock reading (adding a
/// `Duration` near `Duration::MAX` to an `Instant` panics).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A host's settings. [`HostBuilder`](crate::HostBuilder) fills it; engines and workers
/// read it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// A plugin file, or a directory of them.
    pub plugins: PathBuf,
    /// The application's SQLite database; `:memory:` is one in-memory database shared by the
    /// whole process.
    pub db: PathBuf,
    /// How many worker threads answer requests.
    pub workers: usize,
    /// Time from submission to decision, queue wait included.
    pub timeout: Duration,
    /// Queue places per worker; past them requests are refused as overloaded.
    pub queue_per_worker: usize,
    /// Memory limit of each Lua interpreter, in bytes.
    pub lua_memory_limit: usize,
    /// Whether to watch the plugins path and reload on changes (see [`crate::Host::watch_plugins`]).
    pub watch: bool,
    /// Quiet time after the last file change before a watched reload starts.
    pub watch_debounce: Duration,
    /// Names this configuration's `:memory:` database and keeps it alive; clones share it.
    pub db_scope: DatabaseScope,
    /// A session's default inactivity timeout (`--session-idle`, see [`crate::sessions`]).
    pub session_idle: Duration,
    /// A session's absolute lifetime (`--session-max`).
    pub session_max: Duration,
    /// This host's session counters, for `status`; clones share them.
    pub session_counters: Arc<crate::sessions::Counters>,
    /// What `authhost.http` may reach, and its counters.
    pub upstream: crate::script_api::http::UpstreamSettings,
    /// Whether Python policies' SQL is confined like Lua's (no ATTACH, VACUUM, extensions or
    /// file-touching pragmas); off by default, Python policies being trusted code.
    pub confine_python_sql: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            plugins: PathBuf::from("plugins"),
            db: PathBuf::from("authhost.db"),
            workers: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_WORKERS),
            timeout: Duration::from_millis(2000),
            queue_per_worker: 1024,
            lua_memory_limit: 64 << 20,
            watch: false,
            watch_debounce: DEFAULT_DEBOUNCE,
            db_scope: Default::default(),
            session_idle: crate::sessions::DEFAULT_IDLE,
            session_max: crate::sessions::DEFAULT_MAX,
            session_counters: Default::default(),
            upstream: Default::default(),
            confine_python_sql: false,
        }
    }
}

impl Config {
    /// Where the database layer finds this configuration's database.
    pub fn db_location(&self) -> Location {
        Location::new(self.db.clone(), self.db_scope.clone())
    }

    /// The sessions, limits and state store of this configuration's database, with its
    /// session settings and counters.
    ///
    /// # Failure
    ///
    /// The database cannot be named (a `:memory:` database that cannot be kept alive).
    pub fn session_store(&self) -> Result<Store, StoreError> {
        Store::new(
            &self.db_location(),
            self.session_idle,
            self.session_max,
            self.session_counters.clone(),
        )
    }
}
