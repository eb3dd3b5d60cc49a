//! Transactions and savepoints on a thread's connection, and the rollback of whatever a
//! request left open.

use super::error::{sql_error, DbError};
use super::request::without_deadline;
use super::snapshot::Statement;
use super::Database;

impl Database {
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
    #[cfg(test)]
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
    pub(super) fn end_request(&self, keep_snapshot: bool) {
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
}

/// One level of [`Database::begin`]: 1 is the transaction, more are savepoints inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransactionLevel(pub(super) u32);
