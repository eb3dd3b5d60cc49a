//! Why a database call failed, and how SQLite's errors become messages a policy author can act on.

use rusqlite::ErrorCode;

use super::request::{past_deadline, IDLE_BUSY_TIMEOUT};

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

pub(super) fn check_parameter_count(
    expected: usize,
    given: usize,
    sql: &str,
) -> Result<(), DbError> {
    if expected == given {
        return Ok(());
    }
    Err(DbError::Sql {
        message: format!("the statement takes {expected} parameter(s), {given} given"),
        sql: excerpt(sql),
    })
}

pub(super) fn sql_error(error: rusqlite::Error, sql: &str) -> DbError {
    let message = match &error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        rusqlite::Error::MultipleStatement => {
            "several statements given with parameters: pass one statement at a time".into()
        }
        rusqlite::Error::Empty => "the SQL is empty".into(),
        other => other.to_string(),
    };
    // The authorizer refused it (SQLite says "not authorized", with one code or another):
    // say what and why.
    if let Some((language, reason)) = super::confine::take_refusal() {
        return DbError::Sql {
            message: format!("SQL refused in a {language} policy: {reason}"),
            sql: excerpt(sql),
        };
    }
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
pub(super) fn excerpt(sql: &str) -> String {
    const SHOWN: usize = 80;
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("\"{}…\"", &flat[..end]),
        None => format!("\"{flat}\""),
    }
}
