//! The `authhost` table each Lua plugin sees (contract §5).

use mlua::{Lua, MultiValue, Table, Value};

use crate::script_api::log::{self, Level};

/// The parts of `authhost` every plugin of an interpreter shares.
pub(super) fn shared(lua: &Lua) -> mlua::Result<Table> {
    let api = lua.create_table()?;
    api.raw_set("json", super::json::module(lua)?)?;
    Ok(api)
}

/// The `authhost` table of the plugin at `path`: the shared parts plus its own tagged log.
pub(super) fn for_plugin(lua: &Lua, shared: &Table, path: &str) -> mlua::Result<Table> {
    let api = lua.create_table()?;
    for pair in shared.pairs::<Value, Value>() {
        let (key, value) = pair?;
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
            log::write(level, &tag, &joined(&message));
            Ok(())
        })?;
        log_table.raw_set(name, write)?;
    }
    api.raw_set("log", log_table)?;
    Ok(api)
}

/// `print` for the plugin at `path`: to the host's log, never to stdout.
pub(super) fn print_for(lua: &Lua, path: &str) -> mlua::Result<mlua::Function> {
    let tag = path.to_string();
    lua.create_function(move |_, values: MultiValue| {
        log::write(Level::Info, &tag, &joined(&values));
        Ok(())
    })
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
