//! Sessions, login limits and a small key/value store, kept in authhost's own tables of the
//! policy database (`--db`), so that every authhost process on that file acts as one.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use authhost::sessions::Store;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut config = authhost::Config::default();
//! config.db = dir.path().join("policy.db");
//! let store = config.session_store()?;
//! let deadline = Instant::now() + Duration::from_secs(2);
//! let opened = store.open(42, None, deadline)?;
//! assert_eq!(store.check(&opened.token, deadline)?.map(|live| live.user_id), Some(42));
//! assert!(store.close(&opened.token, deadline)?);
//! assert_eq!(store.check(&opened.token, deadline)?, None);
//! # Ok::<(), authhost::sessions::StoreError>(())
//! ```
//!
//! # Tokens
//!
//! A token is 32 bytes (256 bits) from the kernel's CSPRNG (`getrandom(2)`), written as
//! URL-safe base64 without padding (43 characters). Only its SHA-256 digest is stored. A
//! fast digest is enough here, unlike for passwords: a password is guessable, so its hash
//! must be slow; a 256-bit random token is not, so someone who reads the database can
//! neither guess it nor recover it from the digest (SHA-256 is preimage-resistant), and a
//! fast digest keeps `auth_token` cheap.
//!
//! # Concurrency
//!
//! Each thread keeps its own connection (WAL mode), waiting for locks at most until the
//! caller's deadline. Every operation that must be atomic across processes is one statement
//! (`DELETE … RETURNING` for [`Store::take`]) or one `BEGIN IMMEDIATE` transaction.

mod connection;
mod counters;
mod token;

use std::time::{Duration, Instant, SystemTime};

use rusqlite::{params, OptionalExtension};

pub use counters::Counters;

use std::sync::Arc;

use crate::script_api::db::Location;
use connection::with_connection;

/// The default inactivity timeout of a session (`--session-idle`): sysadm's five minutes.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);

/// The default absolute lifetime of a session (`--session-max`): 12 hours, a working day.
pub const DEFAULT_MAX: Duration = Duration::from_secs(12 * 3600);

/// A live session's last use is written again only when it is older than this: checking a
/// token stays a read most of the time, at the cost of an idle timer this coarse.
const REFRESH_GRANULARITY_MS: i64 = 1000;

/// The longest key and value the state store and the limits accept, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest value [`Store::put`] accepts, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused or failed an operation.
    #[error("session store ({path}): {message}")]
    Sql {
        /// The database.
        path: String,
        /// SQLite's message.
        message: String,
    },
    /// A lock was not had, or the operation not finished, by the deadline.
    #[error("session store: the deadline passed")]
    Timeout,
    /// The caller passed something unusable (an empty or oversized key, a zero window).
    #[error("{0}")]
    Invalid(String),
    /// The kernel's random number generator failed.
    #[error("session store: no random bytes for a token: {0}")]
    Random(String),
}

/// The store's results.
pub type Result<T> = std::result::Result<T, StoreError>;

/// A session just opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The token to hand to the client; authhost keeps only its digest.
    pub token: String,
    /// Seconds until it expires if unused.
    pub expires_in: u64,
}

/// A live session found by [`Store::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    /// The session's user.
    pub user_id: i64,
    /// Seconds until it expires if unused from now on.
    pub expires_in: u64,
}

/// A handle on one database's sessions, limits and state. Cheap to clone; usable from any
/// thread (each thread opens its own connection on first use).
#[derive(Clone, Debug)]
pub struct Store {
    target: String,
    idle: Duration,
    max: Duration,
    counters: std::sync::Arc<Counters>,
}

#[cfg(feature = "python")]
thread_local! {
    /// The store of the host whose worker runs on this thread, for bindings that cannot hold
    /// one themselves (Python's module is shared by every worker).
    static THREAD_STORE: std::cell::RefCell<Option<Store>> = const { std::cell::RefCell::new(None) };
}

/// Makes `store` this thread's store (see [`thread_store`]).
#[cfg(feature = "python")]
pub(crate) fn bind_to_thread(store: Store) {
    THREAD_STORE.with(|s| *s.borrow_mut() = Some(store));
}

/// The store last bound to this thread, if any.
#[cfg(feature = "python")]
pub(crate) fn thread_store() -> Option<Store> {
    THREAD_STORE.with(|s| s.borrow().clone())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn seconds_left(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000)
}

fn check_key(key: &str, function: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StoreError::Invalid(format!(
            "{function}: the key must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

impl Store {
    /// The store of the database at `location`, with these session settings and counters
    /// (see [`crate::Config::session_store`]).
    ///
    /// # Failure
    ///
    /// The database cannot be named (a `:memory:` database that cannot be kept alive).
    pub(crate) fn new(
        location: &Location,
        idle: Duration,
        max: Duration,
        counters: Arc<Counters>,
    ) -> Result<Store> {
        let target = location
            .scope
            .sqlite_target(&location.path)
            .map_err(|e| StoreError::Sql {
                path: location.path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Store {
            target,
            idle,
            max,
            counters,
        })
    }

    /// This process's session counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Opens a session for `user_id`, idle for at most `idle` (default the store's) and
    /// alive for at most the store's absolute lifetime.
    ///
    /// # Failure
    ///
    /// A database error, the deadline, or no random bytes.
    pub fn open(&self, user_id: i64, idle: Option<Duration>, deadline: Instant) -> Result<Opened> {
        let idle = idle.unwrap_or(self.idle).min(self.max);
        if idle.is_zero() {
            return Err(StoreError::Invalid(
                "sessions.open: the idle timeout must be more than 0 s".into(),
            ));
        }
        let token = token::new_token()?;
        let digest = token::digest(&token);
        let now = now_ms();
        with_connection(&self.target, deadline, |c| {
            c.prepare_cached(
                "INSERT INTO authhost_sessions (digest, user_id, created_ms, last_used_ms, \
                 idle_ms, max_ms) VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
            )?
            .execute(params![
                digest,
                user_id,
                now,
                millis(idle),
                millis(self.max)
            ])?;
            Ok(())
        })?;
        self.counters.opened();
        Ok(Opened {
            token,
            expires_in: seconds_left(millis(idle)),
        })
    }

    /// The live session of `token`, whose inactivity timer starts again; `None` for a token
    /// that is unknown, expired or closed (an expired one is deleted).
    ///
    /// # Failure
    ///
    /// A database error or the deadline.
    pub fn check(&self, token: &str, deadline: Instant) -> Result<Option<Live>> {
        // Not one of ours: refused without touching the database.
        if !token::well_formed(token) {
            return Ok(None);
        }
        let digest = token::digest(token);
        let now = now_ms();
        let found = with_connection(&self.target, deadline, |c| {
            let row = c
                .prepare_cached(
                    "SELECT user_id, created_ms, last_used_ms, idle_ms, max_ms \
                     FROM authhost_sessions WHERE digest = ?1",
                )?
                .query_row(params![digest], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .optional()?;
            let Some((user_id, created, last_used, idle, max)) = row else {
                return Ok(Err(false));
            };
            let end = created.saturating_add(max);
            if now >= last_used.saturating_add(idle) || now >= end {
                let gone = c
                    .prepare_cached("DELETE FROM authhost_sessions WHERE digest = ?1")?
                    .execute(params![digest])?;
                return Ok(Err(gone > 0));
            }
            if now - last_used >= REFRESH_GRANULARITY_MS {
                // Conditional, so a session closed meanwhile by another process stays closed.
                let refreshed = c
                    .prepare_cached(
                        "UPDATE authhost_sessions SET last_used_ms = ?2 \
                         WHERE digest = ?1 AND last_used_ms < ?2",
                    )?
                    .execute(params![digest, now])?;
                if refreshed == 0 {
                    let still = c
                        .prepare_cached("SELECT 1 FROM authhost_sessions WHERE digest = ?1")?
                        .exists(params![digest])?;
                    if !still {
                        return Ok(Err(false));
                    }
                }
            }
            Ok(Ok(Live {
                user_id,
                expires_in: seconds_left(idle.min(end - now)),
            }))
        })?;
        match found {
            Ok(live) => {
                self.counters.refreshed();
                Ok(Some(live))
            }
            Err(expired) => {
                if expired {
                    self.counters.expired(1);
                }
                Ok(None)
            }
        }
    }

    /// Closes the session of `token`; whether there was one.
    ///
    /// # Failure
    ///
    /// A database error or the deadline.
    pub fn close(&self, token: &str, deadline: Instant) -> Result<bool> {
        if !token::well_formed(token) {
            return Ok(false);
        }
        let digest = token::digest(token);
        let now = now_ms();
        let closed = with_connection(&self.target, deadline, |c| {
            // An expired session is not "cleared": it was already gone.
            c.prepare_cached(
                "DELETE FROM authhost_sessions WHERE digest = ?1 \
                 RETURNING last_used_ms + idle_ms > ?2 AND created_ms + max_ms > ?2",
            )?
            .query_row(params![digest, now], |r| r.get::<_, bool>(0))
            .optional()
        })?;
        Ok(match closed {
            Some(true) => {
                self.counters.cleared();
                true
            }
            Some(false) => {
                self.counters.expired(1);
                false
            }
            None => false,
        })
    }

    /// Records a hit on `key` and says whether the key has had at most `max` hits in the
    /// last `window` (this one included). Hits past the limit are not stored, so a key
    /// keeps at most `max + 1` rows.
    ///
    /// # Failure
    ///
    /// A bad key or window, a database error, or the deadline.
    pub fn hit(&self, key: &str, max: u32, window: Duration, deadline: Instant) -> Result<bool> {
        check_key(key, "limits.hit")?;
        if window.is_zero() {
            return Err(StoreError::Invalid(
                "limits.hit: the window must be more than 0 s".into(),
            ));
        }
        let now = now_ms();
        let within = with_connection(&self.target, deadline, |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM authhost_limit_hits WHERE key = ?1 AND at_ms <= ?2")?
                .execute(params![key, now - millis(window)])?;
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM authhost_limit_hits WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))?;
            if count <= i64::from(max) {
                tx.prepare_cached("INSERT INTO authhost_limit_hits (key, at_ms) VALUES (?1, ?2)")?
                    .execute(params![key, now])?;
            }
            tx.commit()?;
            Ok(count < i64::from(max))
        })?;
        if !within {
            self.counters.throttled();
        }
        Ok(within)
    }

    /// Forgets every hit on `key`.
    ///
    /// # Failure
    ///
    /// A bad key, a database error, or the deadline.
    pub fn reset(&self, key: &str, deadline: Instant) -> Result<()> {
        check_key(key, "limits.reset")?;
        with_connection(&self.target, deadline, |c| {
            c.prepare_cached("DELETE FROM authhost_limit_hits WHERE key = ?1")?
                .execute(params![key])?;
            Ok(())
        })
    }

    /// Stores `value` under `key` for `ttl`, replacing any value there.
    ///
    /// # Failure
    ///
    /// A bad key, value or ttl, a database error, or the deadline.
    pub fn put(&self, key: &str, value: &str, ttl: Duration, deadline: Instant) -> Result<()> {
        check_key(key, "state.put")?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StoreError::Invalid(format!(
                "state.put: the value must be at most {MAX_VALUE_BYTES} bytes, got {}",
                value.len()
            )));
        }
        if ttl.is_zero() {
            return Err(StoreError::Invalid(
                "state.put: the ttl must be more than 0 s".into(),
            ));
        }
        let expires = now_ms().saturating_add(millis(ttl));
        with_connection(&self.target, deadline, |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO authhost_state (key, value, expires_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![key, value, expires])?;
            Ok(())
        })
    }

    /// The value under `key`, unless absent or expired.
    ///
    /// # Failure
    ///
    /// A bad key, a database error, or the deadline.
    pub fn get(&self, key: &str, deadline: Instant) -> Result<Option<String>> {
        check_key(key, "state.get")?;
        let now = now_ms();
        with_connection(&self.target, deadline, |c| {
            c.prepare_cached("SELECT value FROM authhost_state WHERE key = ?1 AND expires_ms > ?2")?
                .query_row(params![key, now], |r| r.get(0))
                .optional()
        })
    }

    /// Reads and deletes the value under `key` in one statement: of many callers racing in
    /// any number of processes, exactly one gets it.
    ///
    /// # Failure
    ///
    /// A bad key, a database error, or the deadline.
    pub fn take(&self, key: &str, deadline: Instant) -> Result<Option<String>> {
        check_key(key, "state.take")?;
        let now = now_ms();
        let taken: Option<(String, i64)> = with_connection(&self.target, deadline, |c| {
            c.prepare_cached(
                "DELETE FROM authhost_state WHERE key = ?1 RETURNING value, expires_ms",
            )?
            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
        })?;
        Ok(taken.and_then(|(value, expires)| (expires > now).then_some(value)))
    }

    /// Deletes expired sessions, stale limit hits and expired state; the number of sessions
    /// deleted. Limit hits older than a day are stale: no sensible window is longer.
    ///
    /// # Failure
    ///
    /// A database error or the deadline.
    pub fn purge(&self, deadline: Instant) -> Result<u64> {
        let now = now_ms();
        let sessions = with_connection(&self.target, deadline, |c| {
            let sessions = c
                .prepare_cached(
                    "DELETE FROM authhost_sessions \
                     WHERE last_used_ms + idle_ms <= ?1 OR created_ms + max_ms <= ?1",
                )?
                .execute(params![now])?;
            c.prepare_cached("DELETE FROM authhost_limit_hits WHERE at_ms <= ?1")?
                .execute(params![now - 86_400_000])?;
            c.prepare_cached("DELETE FROM authhost_state WHERE expires_ms <= ?1")?
                .execute(params![now])?;
            Ok(sessions as u64)
        })?;
        self.counters.expired(sessions);
        Ok(sessions)
    }
}
