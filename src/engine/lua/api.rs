//! The `authhost` table each Lua plugin sees (contract §5).

use std::rc::Rc;

use mlua::{Lua, MultiValue, Table, Value};

use super::Clock;
use crate::script_api::db::Database;
use crate::script_api::http::Client;
use crate::script_api::log::{self, Level};
use crate::script_api::password;

/// The parts of `authhost` every plugin of an interpreter shares: `json`, `db` (over `db`),
/// `http` (over `http`) and the password functions.
pub(super) fn shared(
    lua: &Lua,
    db: Database,
    http: Client,
    clock: Rc<Clock>,
) -> mlua::Result<Table> {
    let api = lua.create_table()?;
    api.raw_set("json", super::json::module(lua)?)?;
    api.raw_set("http", super::http::module(lua, http, clock.clone())?)?;
    api.raw_set("db", super::db::module(lua, db, clock)?)?;
    let hash = lua.create_function(|lua, password: Value| {
        let password = string_argument(&password, "hash_password", "the password")?;
        let hash = password::hash_password(&password).map_err(mlua::Error::runtime)?;
        lua.create_string(hash)
    })?;
    api.raw_set("hash_password", hash)?;
    let verify = lua.create_function(|_, (hash, password): (Value, Value)| {
        let hash = string_argument(&hash, "verify_password", "the hash")?;
        let password = string_argument(&password, "verify_password", "the password")?;
        let hash = std::str::from_utf8(&hash).map_err(|_| {
            mlua::Error::runtime("authhost.verify_password: malformed password hash: not UTF-8")
        })?;
        password::verify_password(hash, &password)
            .map_err(|e| mlua::Error::runtime(format!("authhost.verify_password: {e}")))
    })?;
    api.raw_set("verify_password", verify)?;
    Ok(api)
}

/// A string argument's bytes; anything else (numbers included) is an error naming `what`.
fn string_argument(value: &Value, function: &str, what: &str) -> mlua::Result<Vec<u8>> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        other => Err(mlua::Error::runtime(format!(
            "authhost.{function}: {what} must be a string, got {}",
            other.type_name()
        ))),
    }
}

/// The `authhost` table of plugin number `index`, at `path`: the shared parts plus its own
/// tagged log.
pub(super) fn for_plugin(
    lua: &Lua,
    shared: &Table,
    path: &str,
    index: usize,
) -> mlua::Result<Table> {
    let api = lua.create_table()?;
    for pair in shared.pairs::<Value, Value>() {
        let (key, value) = pair?;
        // Sub-tables (`authhost.db`, `authhost.json` …) are copied too: a plugin that
        // replaces `authhost.db.query` changes only its own.
        let value = match value {
            Value::Table(table) => Value::Table(super::sandbox::shallow_copy(lua, &table)?),
            other => other,
        };
        api.raw_set(key, value)?;
    }
    let log_table = lua.create_table()?;
    for (name, level) in [
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("error", Level::Error),
    ] {
        let tag = path.to_string();
        let write = lua.create_function(move |_, message: MultiValue| {
            log::write(level, &tag, &logged(index, &tag, &message));
            Ok(())
        })?;
        log_table.raw_set(name, write)?;
    }
    api.raw_set("log", log_table)?;
    Ok(api)
}

/// `print` for plugin number `index`, at `path`: to the host's log, never to stdout.
pub(super) fn print_for(lua: &Lua, path: &str, index: usize) -> mlua::Result<mlua::Function> {
    let tag = path.to_string();
    lua.create_function(move |_, values: MultiValue| {
        log::write(Level::Info, &tag, &logged(index, &tag, &values));
        Ok(())
    })
}

/// What plugin `index` at `path` logs: its values joined, its own file named by its path
/// (an error it caught names the short chunk name it was loaded under).
fn logged(index: usize, path: &str, values: &MultiValue) -> String {
    super::restore_chunk_name(index, path, joined(values))
}

/// Values as `print` shows them: `tostring` of each, tab-separated.
fn joined(values: &MultiValue) -> String {
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.to_string_lossy(),
            Value::Nil => "nil".to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::Integer(n) => n.to_string(),
            Value::Number(x) => x.to_string(),
            other => format!("{}: {:p}", other.type_name(), other.to_pointer()),
        })
        .collect::<Vec<_>>()
        .join("\t")
}
