//! `authhost.db` for Lua: the worker's database connection ([`crate::script_api::db`]) with
//! Lua's idioms: parameters as extra arguments, rows as tables keyed by column name,
//! `transaction(fn)` that commits when `fn` returns and rolls back when it raises.
//!
//! Values: NULL ↔ `nil`, INTEGER ↔ integer, REAL ↔ float, TEXT ↔ string, BLOB ↔ string.
//! A Lua string parameter binds as TEXT when it is UTF-8 and as BLOB otherwise; a boolean
//! binds as 1 or 0 (SQLite has no boolean type).

use std::rc::Rc;

use mlua::{Function, Lua, LuaString, MultiValue, Table, Value, Variadic};
use rusqlite::types::ValueRef;

use super::Clock;
use crate::script_api::db::{Database, DbError, Value as SqlValue};

/// Builds the `authhost.db` table over `db`. `clock` is marked expired when SQLite stops a
/// statement at the deadline, so that the script cannot catch its own timeout.
pub(super) fn module(lua: &Lua, db: Database, clock: Rc<Clock>) -> mlua::Result<Table> {
    let table = lua.create_table()?;

    let (query_db, query_clock) = (db.clone(), clock.clone());
    let query = lua.create_function(move |lua, (sql, params): (Value, Variadic<Value>)| {
        let sql = sql_text(&sql, "query")?;
        let params = sql_params(&params, "query")?;
        query_rows(lua, &query_db, &sql, &params).map_err(|e| raise(&query_clock, e))
    })?;
    table.raw_set("query", query)?;

    let (exec_db, exec_clock) = (db.clone(), clock.clone());
    let exec = lua.create_function(move |_, (sql, params): (Value, Variadic<Value>)| {
        let sql = sql_text(&sql, "exec")?;
        let params = sql_params(&params, "exec")?;
        let changed = exec_db
            .exec(&sql, &params)
            .map_err(|e| raise(&exec_clock, LuaDbError::Db(e)))?;
        Ok(i64::try_from(changed).unwrap_or(i64::MAX))
    })?;
    table.raw_set("exec", exec)?;

    let id_db = db.clone();
    let last_insert_id = lua.create_function(move |_, ()| Ok(id_db.last_insert_id()))?;
    table.raw_set("last_insert_id", last_insert_id)?;

    let transaction = lua.create_function(move |_, body: Value| {
        let Value::Function(body) = body else {
            return Err(mlua::Error::runtime(format!(
                "authhost.db.transaction: expected a function, got {}",
                body.type_name()
            )));
        };
        run_in_transaction(&db, &clock, &body)
    })?;
    table.raw_set("transaction", transaction)?;
    Ok(table)
}

/// Calls `body` inside a transaction: commits and returns its values, or rolls back and
/// raises its error again, unchanged.
fn run_in_transaction(db: &Database, clock: &Clock, body: &Function) -> mlua::Result<MultiValue> {
    let level = db.begin().map_err(|e| raise(clock, LuaDbError::Db(e)))?;
    match body.call::<MultiValue>(()) {
        Ok(values) => match db.commit(level) {
            Ok(()) => Ok(values),
            Err(e) => {
                let _ = db.rollback(level);
                Err(raise(clock, LuaDbError::Db(e)))
            }
        },
        Err(e) => {
            if let Err(rollback) = db.rollback(level) {
                log::warn!("authhost.db.transaction: rolling back failed: {rollback}");
            }
            Err(e)
        }
    }
}

/// A failure while building rows: from SQLite, or from Lua (out of memory, say).
enum LuaDbError {
    Db(DbError),
    Lua(mlua::Error),
}

impl From<DbError> for LuaDbError {
    fn from(e: DbError) -> Self {
        LuaDbError::Db(e)
    }
}

impl From<mlua::Error> for LuaDbError {
    fn from(e: mlua::Error) -> Self {
        LuaDbError::Lua(e)
    }
}

/// The error a script sees. A statement stopped at the deadline is the request's timeout.
fn raise(clock: &Clock, error: LuaDbError) -> mlua::Error {
    match error {
        LuaDbError::Db(e) => {
            if matches!(e, DbError::Timeout { .. }) {
                clock.expired.set(true);
            }
            mlua::Error::runtime(e.to_string())
        }
        LuaDbError::Lua(e) => e,
    }
}

fn query_rows(
    lua: &Lua,
    db: &Database,
    sql: &str,
    params: &[SqlValue],
) -> Result<Table, LuaDbError> {
    let rows = lua.create_table()?;
    // Column names become Lua strings once per query, not once per row.
    let mut names: Vec<LuaString> = Vec::new();
    let mut count = 0;
    db.query_each(sql, params, |columns, values| {
        if names.is_empty() {
            names = columns
                .iter()
                .map(|c| lua.create_string(c))
                .collect::<mlua::Result<_>>()?;
        }
        let row = lua.create_table_with_capacity(0, values.len())?;
        for (name, value) in names.iter().zip(values) {
            row.raw_set(name, lua_value(lua, *value)?)?;
        }
        count += 1;
        rows.raw_set(count, row)?;
        Ok::<(), LuaDbError>(())
    })?;
    Ok(rows)
}

fn lua_value(lua: &Lua, value: ValueRef<'_>) -> mlua::Result<Value> {
    Ok(match value {
        ValueRef::Null => Value::Nil,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(x) => Value::Number(x),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Value::String(lua.create_string(bytes)?),
    })
}

fn sql_text(sql: &Value, function: &str) -> mlua::Result<String> {
    match sql {
        Value::String(s) => s.to_str().map(|s| s.to_string()).map_err(|_| {
            mlua::Error::runtime(format!(
                "authhost.db.{function}: the SQL is not valid UTF-8"
            ))
        }),
        other => Err(mlua::Error::runtime(format!(
            "authhost.db.{function}: expected the SQL as a string, got {}",
            other.type_name()
        ))),
    }
}

fn sql_params(params: &[Value], function: &str) -> mlua::Result<Vec<SqlValue>> {
    params
        .iter()
        .enumerate()
        .map(|(index, value)| {
            Ok(match value {
                Value::Nil => SqlValue::Null,
                Value::Boolean(b) => SqlValue::Integer(i64::from(*b)),
                Value::Integer(n) => SqlValue::Integer(*n),
                Value::Number(x) => SqlValue::Real(*x),
                Value::String(s) => SqlValue::from_bytes(&s.as_bytes()),
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "authhost.db.{function}: parameter {} is a {}; SQL parameters are nil, \
                         booleans, numbers and strings",
                        index + 1,
                        other.type_name()
                    )))
                }
            })
        })
        .collect()
}
