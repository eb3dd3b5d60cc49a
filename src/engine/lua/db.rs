//! `authhost.db` for Lua: the worker's database connection ([`crate::script_api::db`]) with
//! Lua's idioms: parameters as extra arguments, rows as tables keyed by column name,
//! `transaction(fn)` that commits when `fn` returns and rolls back when it raises.
//!
//! Values: NULL ↔ `nil`, INTEGER ↔ integer, REAL ↔ float, TEXT ↔ string, BLOB ↔ string.
//! A Lua string parameter binds as TEXT when it is UTF-8 and as BLOB otherwise; a boolean
//! binds as 1 or 0 (SQLite has no boolean type).

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{Function, Lua, LuaString, MultiValue, Table, Value, Variadic};
use rusqlite::types::ValueRef;

use super::{with_lifted_limit, Clock, MemoryBudget};
use crate::script_api::db::{Confined, Database, DbError, Value as SqlValue};

/// Builds the `authhost.db` table over `db`. `clock` is marked expired when SQLite stops a
/// statement at the deadline, so that the script cannot catch its own timeout.
pub(super) fn module(lua: &Lua, db: Database, clock: Rc<Clock>) -> mlua::Result<Table> {
    let table = lua.create_table()?;

    let (query_db, query_clock) = (db.clone(), clock.clone());
    let query = lua.create_function(move |lua, (sql, params): (Value, Variadic<Value>)| {
        let _confined = Confined::enter("Lua");
        let sql = sql_text(&sql, "query")?;
        let params = sql_params(&params, "query")?;
        let mut failure = None;
        let rows = with_lifted_limit(lua, |budget| {
            query_rows(lua, budget, &query_db, &sql, &params).map_err(|e| match e {
                LuaDbError::Lua(e) => e,
                // Kept aside: a database error is raised once the limit is back.
                LuaDbError::Db(e) => {
                    failure = Some(e);
                    mlua::Error::runtime("")
                }
            })
        });
        match (rows, failure) {
            (_, Some(e)) => Err(raise(&query_clock, LuaDbError::Db(e))),
            (rows, None) => rows,
        }
    })?;
    table.raw_set("query", query)?;

    let (exec_db, exec_clock) = (db.clone(), clock.clone());
    let exec = lua.create_function(move |_, (sql, params): (Value, Variadic<Value>)| {
        let _confined = Confined::enter("Lua");
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
    budget: MemoryBudget,
    db: &Database,
    sql: &str,
    params: &[SqlValue],
) -> Result<Table, LuaDbError> {
    let rows = lua.create_table()?;
    // Column names become Lua strings once per query, not once per row.
    let names: RefCell<mlua::Result<Vec<LuaString>>> = RefCell::new(Ok(Vec::new()));
    let mut count = 0;
    db.query_each(
        sql,
        params,
        |columns| {
            *names.borrow_mut() = columns.iter().map(|c| lua.create_string(c)).collect();
        },
        |row| {
            let names = names.borrow();
            let names = names.as_ref().map_err(|e| LuaDbError::Lua(e.clone()))?;
            // A row's table and values, roughly: the limit holds to within one row.
            let mut size = 64;
            for index in 0..row.len() {
                size += 40 + value_size(row.get(index)?);
            }
            budget.check(lua, size)?;
            let table = lua.create_table_with_capacity(0, row.len())?;
            for (index, name) in names.iter().enumerate() {
                table.raw_set(name, lua_value(lua, row.get(index)?)?)?;
            }
            count += 1;
            rows.raw_set(count, table)?;
            Ok::<(), LuaDbError>(())
        },
    )?;
    Ok(rows)
}

fn value_size(value: ValueRef<'_>) -> usize {
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes.len(),
        _ => 0,
    }
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
