//! Where a host's database is: a file, or `:memory:` shared by every worker of one host.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::error::DbError;
use crate::lock::lock;

/// What the database layer needs to open a host's database: its path and its scope.
#[derive(Clone, Debug)]
pub struct Location {
    /// The database file; `:memory:` for one in-memory database shared by the scope.
    pub path: PathBuf,
    /// Names the `:memory:` database and keeps it alive; clones share it.
    pub scope: DatabaseScope,
}

impl Location {
    /// A location at `path` in `scope`.
    pub fn new(path: impl Into<PathBuf>, scope: DatabaseScope) -> Location {
        Location {
            path: path.into(),
            scope,
        }
    }

    /// Whether both name the same database.
    pub(super) fn same_as(&self, other: &Location) -> bool {
        Arc::ptr_eq(&self.scope.inner, &other.scope.inner) && self.path == other.path
    }
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
    pub(super) fn target(&self, path: &Path) -> Target {
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

    /// The name SQLite opens for `path` (see [`DatabaseScope::target`]), keeping a
    /// `:memory:` database alive: for modules that keep connections of their own.
    pub(crate) fn sqlite_target(&self, path: &Path) -> Result<String, DbError> {
        let target = self.target(path);
        if target.memory {
            self.keep_alive(&target)?;
        }
        Ok(target.open)
    }

    pub(super) fn keep_alive(&self, target: &Target) -> Result<(), DbError> {
        let mut keeper = lock(&self.inner.keeper);
        if keeper.is_none() {
            *keeper = Some(Connection::open(&target.open).map_err(|e| DbError::Open {
                path: ":memory:".into(),
                message: e.to_string(),
            })?);
        }
        Ok(())
    }
}

pub(super) struct Target {
    /// The name or URI given to SQLite.
    pub(super) open: String,
    pub(super) memory: bool,
}
