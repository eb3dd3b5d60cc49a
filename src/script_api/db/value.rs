//! SQL values as policies see them, and the rows a query returns.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::ToSql;

use super::error::{sql_error, DbError};

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

    pub(super) fn from_ref(value: ValueRef<'_>) -> Value {
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
    pub(super) row: &'a rusqlite::Row<'a>,
    pub(super) count: usize,
    pub(super) sql: &'a str,
}

impl Row<'_> {
    /// The number of columns.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the row has no columns (never, for a query that returns rows).
    #[allow(dead_code)] // Beside `len`, as clippy asks of every public type.
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
