//! A worker's read snapshot, kept from one request to the next while the database is unchanged.
//!
//! In WAL mode every read transaction on a file database takes and drops a read lock on the
//! `-shm` file (two `fcntl` calls, often an `fstat` too) and goes through a lock that all
//! connections of the process share. For a policy that does one indexed `SELECT` per request,
//! that is about half of the request's cost, and it is what keeps two workers from running
//! twice as fast as one.
//!
//! So a worker's reads run inside one read transaction that outlives the request, for as long
//! as it is still the latest: before each read, the wal-index header (which every commit, from
//! any process, rewrites before its `COMMIT` returns) is compared with its value from before the
//! transaction began. Equal means no commit happened since, and the transaction sees exactly
//! what a new one would; anything else ends it and the read starts a fresh one. So a request
//! never reads older data than it would have without this.
//!
//! The transaction is ended, so that checkpoints are never held back for long:
//! - before any statement other than a plain `SELECT` (writes, transactions, pragmas);
//! - when the worker runs out of work ([`super::Database::release_snapshot`]);
//! - when it is older than [`MAX_AGE`], or a checkpoint has moved on since it began;
//! - at the end of any request that is not a pool worker's (loading, `setup()`).
//!
//! It is only used where all of this can be checked: a file database in WAL mode, with
//! nothing attached.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{ffi, Connection};

/// The longest a snapshot is kept, however many requests reuse it: a reader holds back the
/// restart of the WAL from its beginning, and must let go regularly under constant load.
pub(super) const MAX_AGE: Duration = Duration::from_millis(10);

/// What the reads of one connection keep between statements.
#[derive(Default)]
pub(super) struct Reader {
    /// Whether the running request lets the snapshot outlive it (a pool worker's request).
    pub(super) keep: bool,
    /// `None` until checked: then the wal-index if snapshots can be kept on this connection.
    index: Option<Option<WalIndex>>,
    snapshot: Option<Snapshot>,
}

impl Reader {
    /// Whether the connection was last seen in WAL mode, sharing its wal-index.
    pub(super) fn in_wal_mode(&self) -> bool {
        matches!(self.index, Some(Some(_)))
    }

    /// Whether a snapshot is open: the connection is then in a read transaction of ours.
    pub(super) fn holds_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Before a statement. A plain `SELECT` reuses the snapshot when it is still the latest,
    /// or opens one when the request lets it be kept; anything else ends it first.
    pub(super) fn before_statement(
        &mut self,
        connection: &Connection,
        kind: Statement,
    ) -> rusqlite::Result<()> {
        match kind {
            Statement::PlainSelect => {}
            Statement::Other => return self.end(connection, Ended::Unchanged),
            Statement::MayReconfigure => return self.end(connection, Ended::MaybeReconfigured),
        }
        if let Some(snapshot) = &self.snapshot {
            let index = self.index.as_ref().and_then(Option::as_ref);
            if !connection.is_autocommit() && index.is_some_and(|i| snapshot.is_latest(i)) {
                return Ok(());
            }
            self.end(connection, Ended::Unchanged)?;
        }
        if !self.keep || !connection.is_autocommit() {
            return Ok(());
        }
        let index = self.index.get_or_insert_with(|| WalIndex::of(connection));
        // Read before the transaction begins: the snapshot it takes is then at least this
        // recent, and an equal header later proves that nothing newer exists.
        let Some(mark) = index.as_ref().and_then(WalIndex::mark) else {
            return Ok(());
        };
        connection.prepare_cached("BEGIN DEFERRED")?.execute([])?;
        self.snapshot = Some(Snapshot {
            mark,
            began: Instant::now(),
        });
        Ok(())
    }

    /// Ends the snapshot if one is open.
    pub(super) fn end(&mut self, connection: &Connection, why: Ended) -> rusqlite::Result<()> {
        if why == Ended::MaybeReconfigured {
            // The statement may change the journal mode or attach a database: check again
            // before the next snapshot (and do not keep a pointer into a mapping it may drop).
            self.index = None;
        }
        if self.snapshot.take().is_some() && !connection.is_autocommit() {
            connection.prepare_cached("COMMIT")?.execute([])?;
        }
        Ok(())
    }

    /// Ends the snapshot if it is older than [`MAX_AGE`].
    pub(super) fn end_if_old(&mut self, connection: &Connection) -> rusqlite::Result<()> {
        match &self.snapshot {
            Some(snapshot) if snapshot.began.elapsed() >= MAX_AGE => {
                self.end(connection, Ended::Unchanged)
            }
            _ => Ok(()),
        }
    }

    /// Forgets everything: the connection was closed.
    pub(super) fn forget(&mut self) {
        let keep = self.keep;
        *self = Reader {
            keep,
            ..Reader::default()
        };
    }
}

/// Why a snapshot ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The connection is as it was: only the transaction ends.
    Unchanged,
    /// A statement is about to run that might change what snapshots rely on.
    MaybeReconfigured,
}

/// What a statement is, as far as snapshots are concerned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Statement {
    /// A plain `SELECT`: it reads and cannot begin, end or change a transaction.
    PlainSelect,
    /// Anything else that cannot change the journal mode, the locking mode or the attached
    /// databases: it runs after the snapshot ends.
    Other,
    /// A pragma, `ATTACH` or `DETACH` (or SQL that mentions them): the snapshot ends, and
    /// whether one can be kept is checked again.
    MayReconfigure,
}

impl Statement {
    /// Classifies `sql` (a `SELECT` behind a comment counts as `Other`: it is run without the
    /// snapshot, which is always correct).
    pub(super) fn of(sql: &str) -> Statement {
        let start = sql.trim_start().as_bytes();
        let select = start.len() > 6
            && start[..6].eq_ignore_ascii_case(b"select")
            && !start[6].is_ascii_alphanumeric()
            && start[6] != b'_';
        // A SELECT cannot reconfigure: the pragmas it can call as table-valued functions are
        // only those without side effects.
        if select {
            return Statement::PlainSelect;
        }
        let bytes = sql.as_bytes();
        let mentions = |word: &[u8]| {
            bytes
                .windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word))
        };
        if mentions(b"pragma") || mentions(b"attach") || mentions(b"detach") {
            Statement::MayReconfigure
        } else {
            Statement::Other
        }
    }

    /// The same, for a statement run through `exec`: never in the snapshot.
    pub(super) fn not_shared(self) -> Statement {
        match self {
            Statement::PlainSelect => Statement::Other,
            other => other,
        }
    }
}

/// One read transaction of ours, and the wal-index it began on.
struct Snapshot {
    mark: Mark,
    began: Instant,
}

impl Snapshot {
    /// Whether no commit or checkpoint happened since the snapshot began. (Its age is checked
    /// between requests, by `end_if_old`, not on every statement.)
    fn is_latest(&self, index: &WalIndex) -> bool {
        index.mark() == Some(self.mark)
    }
}

/// The part of the wal-index that changes when the database does: the header (every commit
/// rewrites it; a restarted WAL gets new salts, so a value never comes back) and the count of
/// frames checkpointed.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Mark {
    header: [u64; 6],
    backfilled: u32,
}

/// The first region of a connection's wal-index, as SQLite maps it (the `-shm` file).
struct WalIndex {
    base: NonNull<u8>,
}

/// Bytes in a wal-index header; two copies of it start the wal-index.
const HEADER_BYTES: usize = 48;
/// Where the checkpoint information starts, with the count of frames backfilled first.
const CHECKPOINT_INFO: usize = 2 * HEADER_BYTES;
/// The size SQLite maps the wal-index in.
const REGION_BYTES: i32 = 32 * 1024;

impl WalIndex {
    /// The wal-index of `connection`'s main database, if it has one this can read: the
    /// database is a file in WAL mode, with shared memory, and nothing else attached.
    fn of(connection: &Connection) -> Option<WalIndex> {
        let mode: String = connection
            .prepare_cached("PRAGMA main.journal_mode")
            .and_then(|mut s| s.query_row([], |row| row.get(0)))
            .ok()?;
        let attached: i64 = connection
            .prepare_cached("SELECT count(*) FROM pragma_database_list WHERE name <> 'main'")
            .and_then(|mut s| s.query_row([], |row| row.get(0)))
            .ok()?;
        let locking: String = connection
            .prepare_cached("PRAGMA main.locking_mode")
            .and_then(|mut s| s.query_row([], |row| row.get(0)))
            .ok()?;
        let shared = locking.eq_ignore_ascii_case("normal");
        if !mode.eq_ignore_ascii_case("wal") || !shared || attached != 0 {
            return None;
        }
        // SAFETY: the file pointer and its methods belong to the open connection, which is
        // only used on this thread. xShmMap with bExtend = 0 returns the region SQLite itself
        // reads the header from (mapping the shared memory now if this connection has not
        // yet), or null. The mapping lives until the WAL is closed: when the connection
        // closes or leaves WAL mode, and the latter needs a statement that drops this first
        // (`Ended::MaybeReconfigured`); `Reader::forget` drops it with the connection.
        unsafe {
            let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
            let rc = ffi::sqlite3_file_control(
                connection.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                (&raw mut file).cast::<c_void>(),
            );
            if rc != ffi::SQLITE_OK || file.is_null() || (*file).pMethods.is_null() {
                return None;
            }
            let methods = &*(*file).pMethods;
            if methods.iVersion < 2 {
                return None;
            }
            let map = methods.xShmMap?;
            let mut region: *mut c_void = std::ptr::null_mut();
            let rc = map(file, 0, REGION_BYTES, 0, (&raw mut region).cast());
            if rc != ffi::SQLITE_OK {
                return None;
            }
            Some(WalIndex {
                base: NonNull::new(region.cast::<u8>())?,
            })
        }
    }

    /// The current mark, read as SQLite's readers read it: the first copy of the header, a
    /// barrier, the second (writers write them in the other order). `None` for a header
    /// being written right now, or not yet initialized.
    fn mark(&self) -> Option<Mark> {
        let base = self.base.as_ptr();
        // SAFETY: the region is at least REGION_BYTES long and page-aligned (see `of`), so
        // these 8- and 4-byte reads are in bounds and aligned. Other processes write it, so
        // every read is volatile.
        let (first, second, backfilled) = unsafe {
            let first = std::ptr::read_volatile(base.cast::<[u64; 6]>());
            fence(Ordering::SeqCst);
            let second = std::ptr::read_volatile(base.add(HEADER_BYTES).cast::<[u64; 6]>());
            fence(Ordering::SeqCst);
            let backfilled = std::ptr::read_volatile(base.add(CHECKPOINT_INFO).cast::<u32>());
            (first, second, backfilled)
        };
        // isInit is the byte after iVersion, unused and iChange.
        let initialized = first[1].to_ne_bytes()[4] != 0;
        (first == second && initialized).then_some(Mark {
            header: first,
            backfilled,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rusqlite::Connection;

    use super::super::{Database, DatabaseScope, Location, RequestScope, Value};
    use super::Statement;

    /// A database file with a users table holding alice, and this thread's handle to it.
    fn users_db() -> (tempfile::TempDir, Location, Database) {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::new(dir.path().join("app.db"), DatabaseScope::default());
        let db = Database::at(&location);
        in_worker_request(&db, || {
            db.exec(
                "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT UNIQUE);
                 INSERT INTO users(name) VALUES ('alice')",
                &[],
            )
            .unwrap();
        });
        (dir, location, db)
    }

    fn in_worker_request<T>(db: &Database, f: impl FnOnce() -> T) -> T {
        let _scope = RequestScope::enter_worker(db, Instant::now() + Duration::from_secs(30));
        f()
    }

    fn id_of(db: &Database, name: &str) -> Option<i64> {
        let rows = db
            .query("SELECT id FROM users WHERE name = ?", &[Value::from(name)])
            .unwrap();
        rows.rows.first().map(|row| match row[0] {
            Value::Integer(id) => id,
            ref other => panic!("id {other:?}"),
        })
    }

    fn holds_snapshot(db: &Database) -> bool {
        db.handle.reader.borrow().holds_snapshot()
    }

    /// Another connection to the same file, as another process would have.
    fn other_connection(location: &Location) -> Connection {
        let connection = Connection::open(&location.path).unwrap();
        connection.busy_timeout(Duration::ZERO).unwrap();
        connection
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)` from `other`, without waiting: whether a reader
    /// kept it from finishing.
    fn checkpoint_blocked(other: &Connection) -> bool {
        let busy: i64 = other
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .unwrap();
        busy != 0
    }

    #[test]
    fn a_kept_snapshot_sees_every_commit_made_since() {
        let (_dir, location, db) = users_db();
        assert_eq!(in_worker_request(&db, || id_of(&db, "bob")), None);
        assert!(
            holds_snapshot(&db),
            "the worker's read snapshot was not kept"
        );
        assert_eq!(in_worker_request(&db, || id_of(&db, "alice")), Some(1));
        other_connection(&location)
            .execute("INSERT INTO users(name) VALUES ('bob')", [])
            .unwrap();
        assert_eq!(in_worker_request(&db, || id_of(&db, "bob")), Some(2));
        assert!(holds_snapshot(&db));
    }

    #[test]
    fn a_commit_from_another_process_is_seen() {
        let (_dir, location, db) = users_db();
        assert_eq!(in_worker_request(&db, || id_of(&db, "bob")), None);
        assert!(holds_snapshot(&db));
        let shell = std::process::Command::new("sqlite3")
            .arg(&location.path)
            .arg("INSERT INTO users(name) VALUES ('bob')")
            .output()
            .expect("the sqlite3 shell (scripts/setup installs it)");
        assert!(shell.status.success(), "{shell:?}");
        assert_eq!(in_worker_request(&db, || id_of(&db, "bob")), Some(2));
    }

    #[test]
    fn an_idle_worker_lets_checkpoints_finish() {
        let (_dir, location, db) = users_db();
        let other = other_connection(&location);
        other
            .execute("INSERT INTO users(name) VALUES ('bob')", [])
            .unwrap();
        assert_eq!(in_worker_request(&db, || id_of(&db, "bob")), Some(2));
        assert!(
            checkpoint_blocked(&other),
            "the snapshot is not a read transaction"
        );
        db.release_snapshot();
        assert!(!holds_snapshot(&db));
        assert!(!checkpoint_blocked(&other));
    }

    #[test]
    fn writes_end_the_snapshot_and_commit_at_once() {
        let (_dir, location, db) = users_db();
        in_worker_request(&db, || {
            assert_eq!(id_of(&db, "alice"), Some(1));
            assert!(
                !db.in_transaction(),
                "the snapshot is not the script's transaction"
            );
            db.exec("INSERT INTO users(name) VALUES ('bob')", &[])
                .unwrap();
            assert_eq!(id_of(&db, "bob"), Some(2));
            db.transaction(|| db.exec("INSERT INTO users(name) VALUES ('carol')", &[]))
                .unwrap();
        });
        let other = other_connection(&location);
        let count: i64 = other
            .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 3);
    }

    #[test]
    fn requests_outside_a_worker_do_not_keep_it() {
        let (_dir, _config, db) = users_db();
        let scope = RequestScope::enter(&db, Instant::now() + Duration::from_secs(30));
        assert_eq!(id_of(&db, "alice"), Some(1));
        assert!(!holds_snapshot(&db));
        drop(scope);
        assert!(!holds_snapshot(&db));
        // Even when a worker's request left one open.
        assert_eq!(in_worker_request(&db, || id_of(&db, "alice")), Some(1));
        assert!(holds_snapshot(&db));
        drop(RequestScope::enter(
            &db,
            Instant::now() + Duration::from_secs(30),
        ));
        assert!(!holds_snapshot(&db));
    }

    #[test]
    fn no_snapshot_outside_wal_mode() {
        let (_dir, _config, db) = users_db();
        in_worker_request(&db, || {
            assert_eq!(id_of(&db, "alice"), Some(1));
            db.exec("PRAGMA journal_mode = DELETE", &[]).unwrap();
        });
        assert_eq!(in_worker_request(&db, || id_of(&db, "alice")), Some(1));
        assert!(!holds_snapshot(&db));
    }

    #[test]
    fn only_plain_selects_may_share_a_snapshot() {
        let plain = [
            "SELECT id FROM users",
            "  select\n* from t",
            "SELECT(1)",
            "SELECT * FROM pragma_table_info('t')",
        ];
        for sql in plain {
            assert_eq!(Statement::of(sql), Statement::PlainSelect, "{sql}");
        }
        let other = [
            "SELECTED",
            "select",
            "select_x()",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "VALUES (1)",
            "-- comment\nSELECT 1",
            "INSERT INTO t SELECT 1",
            "BEGIN",
        ];
        for sql in other {
            assert_eq!(Statement::of(sql), Statement::Other, "{sql}");
        }
        let reconfiguring = [
            "PRAGMA journal_mode = DELETE",
            "WITH x AS (SELECT 1) SELECT * FROM pragma_table_info('t')",
            "ATTACH 'x.db' AS x",
            "detach x",
        ];
        for sql in reconfiguring {
            assert_eq!(Statement::of(sql), Statement::MayReconfigure, "{sql}");
        }
    }
}
