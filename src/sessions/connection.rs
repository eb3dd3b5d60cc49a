//! Each thread's own connection to a store's database, with authhost's tables.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::StoreError;

thread_local! {
    /// By SQLite name: a thread may serve more than one host.
    static CONNECTIONS: RefCell<HashMap<String, Connection>> = RefCell::new(HashMap::new());
}

/// authhost's own tables, prefixed so they never clash with a policy's.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS authhost_sessions (
  digest       BLOB PRIMARY KEY,
  user_id      INTEGER NOT NULL,
  created_ms   INTEGER NOT NULL,
  last_used_ms INTEGER NOT NULL,
  idle_ms      INTEGER NOT NULL,
  max_ms       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS authhost_limit_hits (
  key   TEXT NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS authhost_limit_hits_by_key ON authhost_limit_hits (key, at_ms);
CREATE TABLE IF NOT EXISTS authhost_state (
  key        TEXT PRIMARY KEY,
  value      TEXT NOT NULL,
  expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

fn open(target: &str) -> rusqlite::Result<Connection> {
    let connection = Connection::open(target)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    if !target.contains("vfs=memdb") {
        let _mode: String =
            connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        // WAL with NORMAL loses at most the last commits on power loss, never consistency.
        connection.execute_batch("PRAGMA synchronous = NORMAL")?;
    }
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

/// Runs `f` on this thread's connection to `target`, waiting for locks until `deadline`.
pub(super) fn with_connection<T>(
    target: &str,
    deadline: Instant,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(StoreError::Timeout);
    }
    let sql_error = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Timeout
        }
        _ => StoreError::Sql {
            path: target.to_string(),
            message: e.to_string(),
        },
    };
    CONNECTIONS.with(|connections| {
        let mut connections = connections
            .try_borrow_mut()
            .map_err(|_| StoreError::Invalid("session store used re-entrantly".into()))?;
        if !connections.contains_key(target) {
            let connection = open(target).map_err(sql_error)?;
            connections.insert(target.to_string(), connection);
        }
        let connection = connections.get_mut(target).expect("inserted above");
        connection.busy_timeout(left).map_err(sql_error)?;
        let result = f(connection).map_err(sql_error);
        if result.is_err() && !connection.is_autocommit() {
            // A failed transaction must not stay open for the next caller.
            let _ = connection.execute_batch("ROLLBACK");
        }
        result
    })
}
