//! `authhost.db`: the application database as policies see it, in language-neutral form.
//!
//! Each worker thread has its own SQLite connection to its [`Location`], opened on first use
//! and kept for the thread's life, across plugin-set generations; reads run in parallel and
//! writers wait for each other (WAL mode, a busy wait bounded by the request's deadline)
//! instead of failing. Connections never cross threads: a [`Database`] is a cheap, `!Send`
//! handle to the calling thread's connection. Engines bind it to their language's idioms.
//!
//! (Not run as a doctest: the module is internal. The unit tests below do the same.)
//!
//! ```ignore
//! use std::time::{Duration, Instant};
//! use authhost::script_api::db::{Database, DatabaseScope, Location, RequestScope, Value};
//!
//! config.db = ":memory:".into();
//! let db = Database::at(&location);
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
//! per connection. It lives as long as its [`DatabaseScope`] (and its clones).

// A build without Python (the SQLite extension's Lua-only build, say) leaves out the binding
// that uses some of this API (whole-result queries, transaction levels, the current handle).
#![cfg_attr(not(feature = "python"), allow(dead_code, unused_imports))]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use rusqlite::Connection;

mod confine;
mod error;
mod location;
mod request;
mod snapshot;
mod transaction;
mod value;

pub use confine::Confined;
pub use error::DbError;
pub use location::{DatabaseScope, Location};
/// The deadline of the request (or `setup()`) running on this thread, if any: the one every
/// blocking call a script makes must end by (SQL statements here, `authhost.http`, the
/// session store).
pub(crate) use request::deadline as request_deadline;
pub use request::RequestScope;
pub use transaction::TransactionLevel;
pub use value::{Row, Rows, Value};

use error::{check_parameter_count, sql_error};
use request::{past_deadline, wait_for_lock, PROGRESS_OPS};
use snapshot::{Ended, Reader, Statement};

/// Prepared statements kept per connection: policies run the same few statements again and
/// again, and preparing costs more than running an indexed lookup.
const STATEMENT_CACHE: usize = 64;

/// This thread's handle to a host's database. Cheap to clone; never leaves its thread.
#[derive(Clone)]
pub struct Database {
    handle: Rc<Handle>,
}

struct Handle {
    location: Location,
    connection: RefCell<Option<Connection>>,
    /// Open [`Database::begin`] levels: 0 none, 1 the transaction, more are savepoints.
    depth: Cell<u32>,
    /// The read snapshot kept between a worker's requests (see [`snapshot`]).
    reader: RefCell<Reader>,
    /// Whether the statement cache may hold statements prepared without confinement.
    cache_unconfined: Cell<bool>,
}

thread_local! {
    /// The handles alive on this thread, so that every engine instance of a worker shares one
    /// connection. Weak: a handle lives as long as its users (the worker, a probe instance).
    static HANDLES: RefCell<Vec<std::rc::Weak<Handle>>> = const { RefCell::new(Vec::new()) };
    /// The running request's database, for bindings that cannot hold a handle themselves.
    static CURRENT: RefCell<Option<Database>> = const { RefCell::new(None) };
}

impl Database {
    /// This thread's handle to the database at `location`: the one already alive on this
    /// thread, or a new one. The connection opens on first use.
    pub fn at(location: &Location) -> Database {
        HANDLES.with(|handles| {
            let mut handles = handles.borrow_mut();
            handles.retain(|h| h.strong_count() > 0);
            let found = handles
                .iter()
                .filter_map(|h| h.upgrade())
                .find(|h| h.location.same_as(location));
            let handle = found.unwrap_or_else(|| {
                let handle = Rc::new(Handle {
                    location: location.clone(),
                    connection: RefCell::new(None),
                    depth: Cell::new(0),
                    reader: RefCell::new(Reader::default()),
                    cache_unconfined: Cell::new(false),
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
            let mut statement = self.prepare_policy(connection, sql)?;
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
                confine::preparing(|| connection.execute_batch(sql))
                    .map_err(|e| sql_error(e, sql))?;
            } else {
                let mut statement = self.prepare_policy(connection, sql)?;
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

    /// Prepares a policy's statement (from the cache when it can), checked by the
    /// authorizer when the thread is confined. A statement prepared unconfined is never
    /// reused confined: the first confined preparation after one empties the cache.
    fn prepare_policy<'c>(
        &self,
        connection: &'c Connection,
        sql: &str,
    ) -> Result<rusqlite::CachedStatement<'c>, DbError> {
        let confined = confine::is_confined();
        if confined && self.handle.cache_unconfined.replace(false) {
            connection.flush_prepared_statement_cache();
        } else if !confined {
            self.handle.cache_unconfined.set(true);
        }
        confine::preparing(|| connection.prepare_cached(sql)).map_err(|e| sql_error(e, sql))
    }

    fn open(&self) -> Result<Connection, DbError> {
        let handle = &self.handle;
        let target = handle.location.scope.target(&handle.location.path);
        let open_error = |e: rusqlite::Error| DbError::Open {
            path: handle.location.path.display().to_string(),
            message: e.to_string(),
        };
        if target.memory {
            handle.location.scope.keep_alive(&target)?;
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
            .authorizer(Some(confine::authorize))
            .map_err(open_error)?;
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
                    handle.location.path.display()
                );
            }
        }
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn memory_location() -> Location {
        Location::new(":memory:", DatabaseScope::default())
    }

    fn in_request<T>(db: &Database, f: impl FnOnce() -> T) -> T {
        let _scope = RequestScope::enter(db, Instant::now() + Duration::from_secs(30));
        f()
    }

    #[test]
    fn values_round_trip_with_their_types() {
        let db = Database::at(&memory_location());
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
        let db = Database::at(&memory_location());
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
        let db = Database::at(&memory_location());
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
        let db = Database::at(&memory_location());
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
        let db = Database::at(&memory_location());
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
        let db = Database::at(&memory_location());
        let _scope = RequestScope::enter(&db, Instant::now() + Duration::from_millis(50));
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        let e = db.query(endless, &[]).unwrap_err();
        assert!(matches!(e, DbError::Timeout { .. }), "{e}");
    }

    #[test]
    fn memory_databases_are_shared_across_threads_of_one_config_only() {
        let location = memory_location();
        let db = Database::at(&location);
        in_request(&db, || {
            db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (42)", &[])
                .unwrap();
        });
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                let db = Database::at(&location);
                in_request(&db, || db.query("SELECT x FROM t", &[]).unwrap())
            })
            .join()
            .unwrap()
        });
        assert_eq!(seen.rows, [vec![Value::Integer(42)]]);
        let other = Database::at(&memory_location());
        let e = in_request(&other, || other.query("SELECT x FROM t", &[]).unwrap_err());
        assert!(e.to_string().contains("no such table"), "{e}");
    }

    #[test]
    fn handles_on_one_thread_share_a_connection() {
        let location = memory_location();
        let a = Database::at(&location);
        let b = Database::at(&location);
        assert!(Rc::ptr_eq(&a.handle, &b.handle));
    }
}
