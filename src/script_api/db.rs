//! `authhost.db`: the application database as policies see it, in language-neutral form.
//!
//! Each worker thread has its own SQLite connection to [`Config::db`], opened on first use
//! and kept for the thread's life, across plugin-set generations; reads run in parallel and
//! writers wait for each other (WAL mode, a busy wait bounded by the request's deadline)
//! instead of failing. Connections never cross threads: a [`Database`] is a cheap, `!Send`
//! handle to the calling thread's connection. Engines bind it to their language's idioms.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use authhost::script_api::db::{Database, RequestScope, Value};
//!
//! let mut config = authhost::Config::default();
//! config.db = ":memory:".into();
//! let db = Database::for_config(&config);
//! let _request = RequestScope::enter(&db, Instant::now() + Duration::from_secs(2));
//! db.exec("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT UNIQUE)", &[])?;
//! db.transaction(|| {
//!     db.exec("INSERT INTO users(name) VALUES (?)", &[Value::from("alice")])?;
//!     Ok::<_, authhost::script_api::db::DbError>(())
//! })?;
//! let rows = db.query("SELECT id, name FROM users WHERE name = ?", &[Value::from("alice")])?;
//! assert_eq!(rows.columns, ["id", "name"]);
//! assert_eq!(rows.rows, [vec![Value::Integer(1), Value::from("alice")]]);
//! # Ok::<(), authhost::script_api::db::DbError>(())
//! ```
//!
//! # Transactions
//!
//! [`Database::begin`] opens `BEGIN IMMEDIATE` (the write lock is taken up front, so a
//! read-then-write transaction never fails half-way on a lock) and, inside a transaction,
//! a savepoint: nesting is allowed and an inner rollback undoes only the inner part. A
//! transaction still open when a request ends (the callback failed, or forgot to commit) is
//! rolled back by [`RequestScope`] before the worker's next request.
//!
//! # Deadlines
//!
//! While a [`RequestScope`] is entered, SQLite's progress handler interrupts any statement
//! that runs past the request's deadline, and the busy handler stops waiting for a lock at
//! the deadline, so a slow query or a held lock cannot outlive its request
//! ([`DbError::Timeout`]).
//!
//! # `:memory:`
//!
//! `:memory:` is one in-memory database shared by every worker of a host (SQLite's `memdb`
//! VFS, which shares a database named `/…` between the connections of one process), not one
//! per connection. It lives as long as the host's [`Config`] (and its clones).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, ToSql};

use crate::host::Config;

mod snapshot;

use snapshot::{Ended, Reader, Statement};

/// SQLite VM instructions between two deadline checks of the progress handler: a check reads
/// the clock, so this keeps its cost negligible while stopping a query within microseconds.
const PROGRESS_OPS: i32 = 1000;

/// How long a lock is waited for outside of any request (no deadline), as SQLite's default.
const IDLE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection: policies run the same few statements again and
/// again, and preparing costs more than running an indexed lookup.
const STATEMENT_CACHE: usize = 64;

/// A SQL value: what a column holds or a parameter binds.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `NULL` (`nil` in Lua, `None` in Python).
    Null,
    /// `INTEGER`.
    Integer(i64),
    /// `REAL`.
    Real(f64),
    /// `TEXT` (UTF-8).
    Text(String),
    /// `BLOB`.
    Blob(Vec<u8>),
}

impl Value {
    /// A script's byte string as a parameter: `TEXT` when it is UTF-8, `BLOB` otherwise.
    pub fn from_bytes(bytes: &[u8]) -> Value {
        match std::str::from_utf8(bytes) {
            Ok(text) => Value::Text(text.to_string()),
            Err(_) => Value::Blob(bytes.to_vec()),
        }
    }

    fn from_ref(value: ValueRef<'_>) -> Value {
        match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Integer(n),
            ValueRef::Real(x) => Value::Real(x),
            // SQLite does not check that TEXT is UTF-8; a stray byte must not fail the read.
            ValueRef::Text(bytes) => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
            ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.to_string())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Integer(n)
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(n) => ValueRef::Integer(*n),
            Value::Real(x) => ValueRef::Real(*x),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// One row of a query, as [`Database::query_each`] hands it out: values borrowed from SQLite.
pub struct Row<'a> {
    row: &'a rusqlite::Row<'a>,
    count: usize,
    sql: &'a str,
}

impl Row<'_> {
    /// The number of columns.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the row has no columns (never, for a query that returns rows).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The value of column `index` (0-based), borrowed from SQLite.
    ///
    /// # Failure
    ///
    /// An index past the last column.
    pub fn get(&self, index: usize) -> Result<ValueRef<'_>, DbError> {
        self.row.get_ref(index).map_err(|e| sql_error(e, self.sql))
    }
}

/// What a query returned: column names, then each row's values in column order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// The result's column names (`AS` aliases where given).
    pub columns: Vec<String>,
    /// The rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

/// Why a database call failed. Scripts see it as an error raised with this message.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// The database could not be opened or prepared (WAL, pragmas).
    #[error("cannot open database {path}: {message}")]
    Open {
        /// The database as configured.
        path: String,
        /// What SQLite said.
        message: String,
    },
    /// SQLite refused or failed the statement: a syntax error, a missing table, a
    /// constraint, a wrong number of parameters …
    #[error("SQL error: {message} (in {sql})")]
    Sql {
        /// What SQLite said (`no such table: users`, `UNIQUE constraint failed: users.name`).
        message: String,
        /// The start of the statement, to find it in the script.
        sql: String,
    },
    /// The statement was still running, or still waiting for a lock, at the request's
    /// deadline, and was stopped.
    #[error("timeout: the SQL statement was stopped at the request's deadline (in {sql})")]
    Timeout {
        /// The start of the statement.
        sql: String,
    },
    /// Another connection held the database locked for longer than the idle busy timeout.
    #[error("database is locked: another connection held it for {} s (in {sql})", IDLE_BUSY_TIMEOUT.as_secs())]
    Busy {
        /// The start of the statement.
        sql: String,
    },
    /// A commit or rollback that does not match the open transaction.
    #[error("transaction error: {0}")]
    Transaction(String),
}

/// Identifies one host configuration's database: its `:memory:` database, if it uses one,
/// lives as long as this (and its clones) does.
#[derive(Clone)]
pub struct DatabaseScope {
    inner: Arc<ScopeInner>,
}

struct ScopeInner {
    id: u64,
    /// For `:memory:`, one connection held open for the scope's life: a `memdb` database
    /// disappears when its last connection closes.
    keeper: Mutex<Option<Connection>>,
}

impl Default for DatabaseScope {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        DatabaseScope {
            inner: Arc::new(ScopeInner {
                id: NEXT.fetch_add(1, Ordering::Relaxed),
                keeper: Mutex::new(None),
            }),
        }
    }
}

impl fmt::Debug for DatabaseScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseScope({})", self.inner.id)
    }
}

impl DatabaseScope {
    /// What SQLite opens for `path`: the path itself, or for `:memory:` a `memdb` name that
    /// every connection of this scope shares.
    fn target(&self, path: &Path) -> Target {
        if path.as_os_str() == ":memory:" {
            Target {
                open: format!(
                    "file:/authhost-{}-{}?vfs=memdb",
                    std::process::id(),
                    self.inner.id
                ),
                memory: true,
            }
        } else {
            Target {
                open: path.to_string_lossy().into_owned(),
                memory: false,
            }
        }
    }

    fn keep_alive(&self, target: &Target) -> Result<(), DbError> {
        let mut keeper = self.inner.keeper.lock().unwrap_or_else(|e| e.into_inner());
        if keeper.is_none() {
            *keeper = Some(Connection::open(&target.open).map_err(|e| DbError::Open {
                path: ":memory:".into(),
                message: e.to_string(),
            })?);
        }
        Ok(())
    }
}

struct Target {
    /// The name or URI given to SQLite.
    open: String,
    memory: bool,
}

/// This thread's handle to a host's database. Cheap to clone; never leaves its thread.
#[derive(Clone)]
pub struct Database {
    handle: Rc<Handle>,
}

struct Handle {
    scope: DatabaseScope,
    path: PathBuf,
    connection: RefCell<Option<Connection>>,
    /// Open [`Database::begin`] levels: 0 none, 1 the transaction, more are savepoints.
    depth: Cell<u32>,
    /// The read snapshot kept between a worker's requests (see [`snapshot`]).
    reader: RefCell<Reader>,
}

thread_local! {
    /// The handles alive on this thread, so that every engine instance of a worker shares one
    /// connection. Weak: a handle lives as long as its users (the worker, a probe instance).
    static HANDLES: RefCell<Vec<std::rc::Weak<Handle>>> = const { RefCell::new(Vec::new()) };
    /// The running request's deadline, read by the busy and progress handlers.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The running request's database, for bindings that cannot hold a handle themselves.
    static CURRENT: RefCell<Option<Database>> = const { RefCell::new(None) };
}

impl Database {
    /// This thread's handle to `config`'s database: the one already alive on this thread, or
    /// a new one. The connection opens on first use.
    pub fn for_config(config: &Config) -> Database {
        HANDLES.with(|handles| {
            let mut handles = handles.borrow_mut();
            handles.retain(|h| h.strong_count() > 0);
            let found = handles.iter().filter_map(|h| h.upgrade()).find(|h| {
                Arc::ptr_eq(&h.scope.inner, &config.db_scope.inner) && h.path == config.db
            });
            let handle = found.unwrap_or_else(|| {
                let handle = Rc::new(Handle {
                    scope: config.db_scope.clone(),
                    path: config.db.clone(),
                    connection: RefCell::new(None),
                    depth: Cell::new(0),
                    reader: RefCell::new(Reader::default()),
                });
                handles.push(Rc::downgrade(&handle));
                handle
            });
            Database { handle }
        })
    }

    /// The database of the request (or `setup()`) running on this thread, if any: see
    /// [`RequestScope`].
    pub fn current() -> Option<Database> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// Whether `sql` is a plain `SELECT` on a connection known to be in WAL mode: it only
    /// reads and (but for WAL recovery) waits for no lock, so a binding may run it without
    /// letting other threads in first. Python keeps the GIL for it: handing the GIL to
    /// another worker and back costs more than an indexed lookup.
    pub fn reads_without_waiting(&self, sql: &str) -> bool {
        Statement::of(sql) == Statement::PlainSelect
            && self
                .handle
                .reader
                .try_borrow()
                .is_ok_and(|reader| reader.in_wal_mode())
    }

    /// Runs `sql` with `params` bound and returns every row.
    ///
    /// # Failure
    ///
    /// [`DbError::Sql`] for anything SQLite refuses (naming the problem), [`DbError::Timeout`]
    /// at the deadline, [`DbError::Open`] when the database cannot be opened.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let mut result = Rows::default();
        self.query_each(
            sql,
            params,
            |columns| result.columns = columns.iter().map(|c| c.to_string()).collect(),
            |row| {
                let values = (0..row.len()).map(|i| row.get(i).map(Value::from_ref));
                result.rows.push(values.collect::<Result<_, _>>()?);
                Ok::<(), DbError>(())
            },
        )?;
        Ok(result)
    }

    /// Runs `sql` with `params` bound, calls `columns` once with the column names, then
    /// `row` with each row, whose values are borrowed from SQLite (no copy). Bindings use this
    /// to build their language's rows directly.
    ///
    /// # Failure
    ///
    /// As [`Database::query`], or the first error `columns` or `row` returns (which stops the
    /// query).
    pub fn query_each<E: From<DbError>>(
        &self,
        sql: &str,
        params: &[Value],
        columns: impl FnOnce(&[&str]),
        mut row: impl FnMut(&Row<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let kind = Statement::of(sql);
        self.with_connection(kind, |connection| {
            let mut statement = connection
                .prepare_cached(sql)
                .map_err(|e| sql_error(e, sql))?;
            check_parameter_count(statement.parameter_count(), params.len(), sql)?;
            if kind == Statement::PlainSelect {
                // Checked on the prepared statement too: a SELECT that could write does not
                // share a snapshot.
                let kind = if statement.readonly() {
                    kind
                } else {
                    Statement::Other
                };
                self.handle
                    .reader
                    .borrow_mut()
                    .before_statement(connection, kind)
                    .map_err(|e| sql_error(e, sql))?;
            }
            {
                // Few columns: names on the stack, no allocation per query.
                let mut names: [&str; 8] = [""; 8];
                let count = statement.column_count();
                if count <= names.len() {
                    for (slot, name) in names.iter_mut().zip(statement.column_names()) {
                        *slot = name;
                    }
                    columns(&names[..count]);
                } else {
                    columns(&statement.column_names().collect::<Vec<_>>());
                }
            }
            let count = statement.column_count();
            let mut rows = statement
                .query(rusqlite::params_from_iter(params))
                .map_err(|e| sql_error(e, sql))?;
            while let Some(next) = rows.next().map_err(|e| sql_error(e, sql))? {
                row(&Row {
                    row: next,
                    count,
                    sql,
                })?;
            }
            Ok(())
        })
    }

    /// Runs a statement with `params` bound and returns the number of rows it inserted,
    /// updated or deleted (0 for other statements). Without parameters, `sql` may hold
    /// several statements separated by `;` (handy in `setup()`); the count is then the last
    /// changing statement's.
    ///
    /// # Failure
    ///
    /// As [`Database::query`].
    pub fn exec(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        self.with_connection(Statement::of(sql).not_shared(), |connection| {
            let before = connection.total_changes();
            if params.is_empty() {
                connection
                    .execute_batch(sql)
                    .map_err(|e| sql_error(e, sql))?;
            } else {
                let mut statement = connection
                    .prepare_cached(sql)
                    .map_err(|e| sql_error(e, sql))?;
                check_parameter_count(statement.parameter_count(), params.len(), sql)?;
                // Step through any rows (a `RETURNING` clause yields some) and drop them.
                let mut rows = statement
                    .query(rusqlite::params_from_iter(params))
                    .map_err(|e| sql_error(e, sql))?;
                while rows.next().map_err(|e| sql_error(e, sql))?.is_some() {}
            }
            // `changes()` keeps the last DML statement's count through DDL: report 0 for a
            // statement that changed nothing.
            Ok(if connection.total_changes() == before {
                0
            } else {
                connection.changes()
            })
        })
    }

    /// The rowid of the last successful `INSERT` on this thread's connection (0 if none).
    pub fn last_insert_id(&self) -> i64 {
        match self.handle.connection.try_borrow().as_deref() {
            Ok(Some(connection)) => connection.last_insert_rowid(),
            _ => 0,
        }
    }

    /// Whether a transaction is open on this thread's connection (the read snapshot a
    /// worker keeps between requests does not count: it is not the script's).
    pub fn in_transaction(&self) -> bool {
        match self.handle.connection.try_borrow().as_deref() {
            Ok(Some(connection)) => {
                !connection.is_autocommit() && !self.handle.reader.borrow().holds_snapshot()
            }
            _ => false,
        }
    }

    /// Ends the read snapshot this thread's connection keeps between a worker's requests, if
    /// any. A pool worker calls this before it waits for work, so that an idle worker never
    /// holds back a checkpoint.
    pub fn release_snapshot(&self) {
        self.settle_snapshot(false);
    }

    /// After a request: ends the snapshot, or when it may outlive the request, ends it only
    /// if it is old.
    fn settle_snapshot(&self, keep: bool) {
        let Ok(slot) = self.handle.connection.try_borrow() else {
            return;
        };
        let Some(connection) = slot.as_ref() else {
            return;
        };
        let mut reader = self.handle.reader.borrow_mut();
        let ended = if keep {
            reader.end_if_old(connection)
        } else {
            reader.end(connection, Ended::Unchanged)
        };
        if let Err(e) = ended {
            log::error!("ending a read snapshot failed: {e}; reopening the connection");
            drop((reader, slot));
            self.close_connection();
        }
    }

    /// Closes this thread's connection, which rolls back whatever it had open, and forgets
    /// what the reads kept about it; the next use opens a fresh one.
    fn close_connection(&self) {
        self.handle.connection.borrow_mut().take();
        self.handle.reader.borrow_mut().forget();
    }

    /// Opens a transaction (`BEGIN IMMEDIATE`), or inside one a savepoint. Pass the level it
    /// returns to [`Database::commit`] or [`Database::rollback`].
    ///
    /// # Failure
    ///
    /// The lock could not be had by the deadline, or the database cannot be opened.
    pub fn begin(&self) -> Result<TransactionLevel, DbError> {
        let depth = self.handle.depth.get();
        if depth > 0 && !self.in_transaction() {
            // A COMMIT/ROLLBACK statement ended our transaction behind our back.
            self.handle.depth.set(0);
            return self.begin();
        }
        let sql = match depth {
            0 => "BEGIN IMMEDIATE".to_string(),
            n => format!("SAVEPOINT authhost_{n}"),
        };
        self.with_connection(Statement::Other, |connection| {
            connection
                .execute_batch(&sql)
                .map_err(|e| sql_error(e, &sql))
        })?;
        self.handle.depth.set(depth + 1);
        Ok(TransactionLevel(depth + 1))
    }

    /// Commits the transaction (level 1) or releases the savepoint `level` opened.
    ///
    /// # Failure
    ///
    /// `level` is not the innermost open level, or the commit failed (a deferred constraint,
    /// say); the transaction is then still open, for [`Database::rollback`].
    pub fn commit(&self, level: TransactionLevel) -> Result<(), DbError> {
        self.check_level(level, "commit")?;
        let sql = match level.0 {
            1 => "COMMIT".to_string(),
            n => format!("RELEASE authhost_{}", n - 1),
        };
        self.with_connection(Statement::Other, |connection| {
            connection
                .execute_batch(&sql)
                .map_err(|e| sql_error(e, &sql))
        })?;
        self.handle.depth.set(level.0 - 1);
        Ok(())
    }

    /// Rolls back the transaction (level 1) or what was done since the savepoint `level`
    /// opened. Runs even past the deadline: undoing must not be interrupted.
    ///
    /// # Failure
    ///
    /// `level` is not the innermost open level.
    pub fn rollback(&self, level: TransactionLevel) -> Result<(), DbError> {
        self.check_level(level, "roll back")?;
        self.handle.depth.set(level.0 - 1);
        if !self.in_transaction() {
            // SQLite already rolled the whole transaction back (an interrupted write does).
            self.handle.depth.set(0);
            return Ok(());
        }
        let sql = match level.0 {
            1 => "ROLLBACK".to_string(),
            n => format!("ROLLBACK TO authhost_{0}; RELEASE authhost_{0}", n - 1),
        };
        without_deadline(|| {
            self.with_connection(Statement::Other, |connection| {
                connection
                    .execute_batch(&sql)
                    .map_err(|e| sql_error(e, &sql))
            })
        })
    }

    /// Runs `body` in a transaction (or savepoint): commits when it returns `Ok`, rolls back
    /// when it returns `Err` (or when the commit fails) and passes the error on.
    ///
    /// # Failure
    ///
    /// `body`'s error, or the database's.
    pub fn transaction<T, E: From<DbError>>(
        &self,
        body: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let level = self.begin()?;
        match body() {
            Ok(value) => match self.commit(level) {
                Ok(()) => Ok(value),
                Err(e) => {
                    let _ = self.rollback(level);
                    Err(e.into())
                }
            },
            Err(e) => {
                if let Err(rollback) = self.rollback(level) {
                    log::warn!("rolling back after an error failed: {rollback}");
                }
                Err(e)
            }
        }
    }

    /// Rolls back whatever transaction is still open, as at the end of a request, and ends
    /// the read snapshot unless the request lets it be kept (and it is not old).
    fn end_request(&self, keep_snapshot: bool) {
        let depth = self.handle.depth.replace(0);
        if !self.in_transaction() {
            self.settle_snapshot(keep_snapshot);
            return;
        }
        log::warn!("a transaction was left open by the request (depth {depth}); rolling it back");
        let rolled_back = without_deadline(|| {
            self.with_connection(Statement::Other, |connection| {
                connection
                    .execute_batch("ROLLBACK")
                    .map_err(|e| sql_error(e, "ROLLBACK"))
            })
        });
        if let Err(e) = rolled_back {
            // The connection's state is unknown: close it, which rolls back for certain, and
            // open a fresh one on next use.
            log::error!(
                "rolling back a transaction left open failed: {e}; reopening the connection"
            );
            self.close_connection();
        }
    }

    fn check_level(&self, level: TransactionLevel, what: &str) -> Result<(), DbError> {
        let depth = self.handle.depth.get();
        if depth == 0 || !self.in_transaction() {
            self.handle.depth.set(0);
            return Err(DbError::Transaction(format!(
                "cannot {what}: no transaction is open"
            )));
        }
        if level.0 != depth {
            return Err(DbError::Transaction(format!(
                "cannot {what} level {} while level {depth} is open: end the inner one first",
                level.0
            )));
        }
        Ok(())
    }

    /// Runs `f` with this thread's connection, opening it first if needed. Unless `kind` is
    /// a plain `SELECT` (which `f` settles itself, once prepared), the read snapshot ends
    /// first.
    fn with_connection<T, E: From<DbError>>(
        &self,
        kind: Statement,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        // A binding that ran script code while a statement was open could come back here.
        let mut slot = self.handle.connection.try_borrow_mut().map_err(|_| {
            DbError::Transaction(
                "the database is in use by a statement that has not finished".into(),
            )
        })?;
        if slot.is_none() {
            *slot = Some(self.open()?);
        }
        let connection = slot.as_ref().expect("opened above");
        if kind != Statement::PlainSelect {
            self.handle
                .reader
                .borrow_mut()
                .before_statement(connection, kind)
                .map_err(|e| sql_error(e, "COMMIT"))?;
        }
        f(connection)
    }

    fn open(&self) -> Result<Connection, DbError> {
        let handle = &self.handle;
        let target = handle.scope.target(&handle.path);
        let open_error = |e: rusqlite::Error| DbError::Open {
            path: handle.path.display().to_string(),
            message: e.to_string(),
        };
        if target.memory {
            handle.scope.keep_alive(&target)?;
        }
        let mut connection = Connection::open(&target.open).map_err(open_error)?;
        connection
            .busy_handler(Some(wait_for_lock))
            .map_err(open_error)?;
        connection
            .progress_handler(PROGRESS_OPS, Some(past_deadline))
            .map_err(open_error)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        connection
            .execute_batch("PRAGMA foreign_keys = ON")
            .map_err(open_error)?;
        if !target.memory {
            let mode: String = connection
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(open_error)?;
            if !mode.eq_ignore_ascii_case("wal") {
                log::warn!(
                    "database {}: WAL mode unavailable, using {mode}",
                    handle.path.display()
                );
            }
        }
        Ok(connection)
    }
}

/// One level of [`Database::begin`]: 1 is the transaction, more are savepoints inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransactionLevel(u32);

impl TransactionLevel {
    /// 1 for the transaction itself, 2 and up for savepoints inside it.
    pub fn depth(self) -> u32 {
        self.0
    }
}

/// One request (or `setup()`) on this thread: sets the deadline SQLite honours and the
/// [`Database::current`] handle; when dropped, rolls back any transaction the request left
/// open, so the worker's next request starts clean.
pub struct RequestScope {
    database: Database,
    previous_deadline: Option<Instant>,
    previous_current: Option<Database>,
    keep_snapshot: bool,
    previous_keep: bool,
}

impl RequestScope {
    /// Enters a request on `database` that must end by `deadline`. Its reads run in their
    /// own transactions.
    pub fn enter(database: &Database, deadline: Instant) -> RequestScope {
        RequestScope::begin(database, deadline, false)
    }

    /// Enters a pool worker's request: as [`RequestScope::enter`], but the read snapshot its
    /// `SELECT`s run in may be kept for the worker's next requests, for as long as the
    /// database has not changed (see the `snapshot` module). The worker must call
    /// [`Database::release_snapshot`] before it waits for work.
    pub fn enter_worker(database: &Database, deadline: Instant) -> RequestScope {
        RequestScope::begin(database, deadline, true)
    }

    fn begin(database: &Database, deadline: Instant, keep_snapshot: bool) -> RequestScope {
        let previous_deadline = DEADLINE.with(|d| d.replace(Some(deadline)));
        let previous_current = CURRENT.with(|c| c.replace(Some(database.clone())));
        let previous_keep =
            std::mem::replace(&mut database.handle.reader.borrow_mut().keep, keep_snapshot);
        RequestScope {
            database: database.clone(),
            previous_deadline,
            previous_current,
            keep_snapshot,
            previous_keep,
        }
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        self.database.end_request(self.keep_snapshot);
        self.database.handle.reader.borrow_mut().keep = self.previous_keep;
        DEADLINE.with(|d| d.set(self.previous_deadline));
        let previous = self.previous_current.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Runs `f` with no deadline on this thread (for rollbacks, which must not be interrupted).
fn without_deadline<T>(f: impl FnOnce() -> T) -> T {
    let saved = DEADLINE.with(|d| d.replace(None));
    let result = f();
    DEADLINE.with(|d| d.set(saved));
    result
}

fn deadline() -> Option<Instant> {
    DEADLINE.with(|d| d.get())
}

/// The deadline of the request (or `setup()`) running on this thread, if any: the one every
/// blocking call a script makes must end by (SQL statements here, `authhost.http`).
pub fn request_deadline() -> Option<Instant> {
    deadline()
}

/// SQLite's progress handler: `true` stops the statement.
fn past_deadline() -> bool {
    deadline().is_some_and(|deadline| Instant::now() >= deadline)
}

/// SQLite's busy handler: waits a little and tries again, until the request's deadline (or,
/// outside a request, for [`IDLE_BUSY_TIMEOUT`]).
fn wait_for_lock(attempt: i32) -> bool {
    // Short sleeps first: most locks here are held for well under a millisecond.
    const STEPS_US: [u64; 8] = [50, 100, 200, 500, 1000, 2000, 5000, 10_000];
    let step = STEPS_US[usize::try_from(attempt)
        .unwrap_or(0)
        .min(STEPS_US.len() - 1)];
    let pause = Duration::from_micros(step);
    let now = Instant::now();
    match deadline() {
        Some(deadline) if now >= deadline => false,
        Some(deadline) => {
            std::thread::sleep(pause.min(deadline - now));
            true
        }
        None => {
            // Without a clock to read against, count: past the first steps each is 10 ms.
            let waited: u64 = STEPS_US
                .iter()
                .take(usize::try_from(attempt).unwrap_or(0))
                .sum::<u64>()
                + u64::try_from(attempt)
                    .unwrap_or(0)
                    .saturating_sub(STEPS_US.len() as u64)
                    * 10_000;
            if waited >= IDLE_BUSY_TIMEOUT.as_micros() as u64 {
                return false;
            }
            std::thread::sleep(pause);
            true
        }
    }
}

fn check_parameter_count(expected: usize, given: usize, sql: &str) -> Result<(), DbError> {
    if expected == given {
        return Ok(());
    }
    Err(DbError::Sql {
        message: format!("the statement takes {expected} parameter(s), {given} given"),
        sql: excerpt(sql),
    })
}

fn sql_error(error: rusqlite::Error, sql: &str) -> DbError {
    let message = match &error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        rusqlite::Error::MultipleStatement => {
            "several statements given with parameters: pass one statement at a time".into()
        }
        rusqlite::Error::Empty => "the SQL is empty".into(),
        other => other.to_string(),
    };
    let code = error.sqlite_error_code();
    match code {
        Some(ErrorCode::OperationInterrupted) => DbError::Timeout { sql: excerpt(sql) },
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            if past_deadline() {
                DbError::Timeout { sql: excerpt(sql) }
            } else {
                DbError::Busy { sql: excerpt(sql) }
            }
        }
        _ => DbError::Sql {
            message,
            sql: excerpt(sql),
        },
    }
}

/// The start of a statement, quoted, for error messages.
fn excerpt(sql: &str) -> String {
    const SHOWN: usize = 80;
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("\"{}…\"", &flat[..end]),
        None => format!("\"{flat}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_config() -> Config {
        Config {
            db: ":memory:".into(),
            ..Config::default()
        }
    }

    fn in_request<T>(db: &Database, f: impl FnOnce() -> T) -> T {
        let _scope = RequestScope::enter(db, Instant::now() + Duration::from_secs(30));
        f()
    }

    #[test]
    fn values_round_trip_with_their_types() {
        let db = Database::for_config(&memory_config());
        in_request(&db, || {
            db.exec("CREATE TABLE t(a, b, c, d, e)", &[]).unwrap();
            let params = [
                Value::Null,
                Value::Integer(-7),
                Value::Real(1.5),
                Value::from("text"),
                Value::Blob(vec![0, 255, 1]),
            ];
            assert_eq!(
                db.exec("INSERT INTO t VALUES (?, ?, ?, ?, ?)", &params)
                    .unwrap(),
                1
            );
            let rows = db.query("SELECT * FROM t", &[]).unwrap();
            assert_eq!(rows.columns, ["a", "b", "c", "d", "e"]);
            assert_eq!(rows.rows, [params.to_vec()]);
        });
    }

    #[test]
    fn exec_counts_changed_rows_and_ddl_changes_none() {
        let db = Database::for_config(&memory_config());
        in_request(&db, || {
            db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3)", &[])
                .unwrap();
            assert_eq!(
                db.exec("UPDATE t SET x = x + 1 WHERE x > ?", &[Value::Integer(1)])
                    .unwrap(),
                2
            );
            assert_eq!(db.exec("CREATE INDEX tx ON t(x)", &[]).unwrap(), 0);
            assert_eq!(
                db.exec("INSERT INTO t VALUES (?)", &[Value::Integer(9)])
                    .unwrap(),
                1
            );
            assert_eq!(db.last_insert_id(), 4);
        });
    }

    #[test]
    fn sql_errors_name_the_problem_and_the_statement() {
        let db = Database::for_config(&memory_config());
        in_request(&db, || {
            let e = db.query("SELECT * FROM nowhere", &[]).unwrap_err();
            assert_eq!(
                e.to_string(),
                "SQL error: no such table: nowhere (in \"SELECT * FROM nowhere\")"
            );
            let e = db.query("SELECT ?", &[]).unwrap_err();
            assert!(
                e.to_string().contains("takes 1 parameter(s), 0 given"),
                "{e}"
            );
            let e = db.exec("SELEC 1", &[]).unwrap_err();
            assert!(e.to_string().contains("syntax error"), "{e}");
        });
    }

    #[test]
    fn nested_transactions_are_savepoints() {
        let db = Database::for_config(&memory_config());
        in_request(&db, || {
            db.exec("CREATE TABLE t(x)", &[]).unwrap();
            let outer = db.begin().unwrap();
            db.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
            let inner = db.begin().unwrap();
            db.exec("INSERT INTO t VALUES (2)", &[]).unwrap();
            assert!(db.commit(outer).is_err(), "the inner level must end first");
            db.rollback(inner).unwrap();
            db.commit(outer).unwrap();
            assert!(!db.in_transaction());
            let rows = db.query("SELECT x FROM t", &[]).unwrap();
            assert_eq!(rows.rows, [vec![Value::Integer(1)]]);
        });
    }

    #[test]
    fn a_transaction_left_open_is_rolled_back_when_the_request_ends() {
        let db = Database::for_config(&memory_config());
        in_request(&db, || db.exec("CREATE TABLE t(x)", &[]).unwrap());
        in_request(&db, || {
            db.begin().unwrap();
            db.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
        });
        assert!(!db.in_transaction());
        let rows = in_request(&db, || {
            db.query("SELECT count(*) AS n FROM t", &[]).unwrap()
        });
        assert_eq!(rows.rows, [vec![Value::Integer(0)]]);
    }

    #[test]
    fn a_query_past_the_deadline_is_stopped() {
        let db = Database::for_config(&memory_config());
        let _scope = RequestScope::enter(&db, Instant::now() + Duration::from_millis(50));
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        let e = db.query(endless, &[]).unwrap_err();
        assert!(matches!(e, DbError::Timeout { .. }), "{e}");
    }

    #[test]
    fn memory_databases_are_shared_across_threads_of_one_config_only() {
        let config = memory_config();
        let db = Database::for_config(&config);
        in_request(&db, || {
            db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (42)", &[])
                .unwrap();
        });
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                let db = Database::for_config(&config);
                in_request(&db, || db.query("SELECT x FROM t", &[]).unwrap())
            })
            .join()
            .unwrap()
        });
        assert_eq!(seen.rows, [vec![Value::Integer(42)]]);
        let other = Database::for_config(&memory_config());
        let e = in_request(&other, || other.query("SELECT x FROM t", &[]).unwrap_err());
        assert!(e.to_string().contains("no such table"), "{e}");
    }

    #[test]
    fn handles_on_one_thread_share_a_connection() {
        let config = memory_config();
        let a = Database::for_config(&config);
        let b = Database::for_config(&config);
        assert!(Rc::ptr_eq(&a.handle, &b.handle));
    }
}
