//! The Lua sandbox of contract §5: `string`, `table`, `math`, `utf8`, the safe base
//! functions and `os.time`/`os.clock`/`os.date`; no `io`, no `debug`, no file or C-module
//! loading, no bytecode.
//!
//! Nothing in it may keep a worker past the deadline: the pattern functions are the
//! deadline-aware ones of [`super::strings`], and `setmetatable` refuses a `__gc`
//! metamethod, because Lua runs finalizers with the instruction hook off, whenever the
//! collector gets to them, possibly during another request.

use std::rc::Rc;

use mlua::{Function, Lua, Table, Value};

use super::Clock;

/// Base functions that reach outside the interpreter or around its limits.
const REMOVED_GLOBALS: [&str; 6] = [
    "dofile",
    "loadfile",
    "require",
    "collectgarbage",
    "load",
    "warn",
];

/// `os` functions a policy may use: they read the clock and nothing else.
const KEPT_OS_FUNCTIONS: [&str; 3] = ["time", "clock", "date"];

/// Wraps `pcall`/`xpcall` so that a timeout cannot be caught, `load` so that it takes
/// only text, and `setmetatable` so that it refuses `__gc`. Runs once per interpreter with the
/// real functions as its arguments.
const WRAPPERS: &str = r#"
local raw_pcall, raw_xpcall, raw_load, expired, error, type, raw_setmetatable, rawget = ...
local function rethrow_timeout(ok, ...)
  if not ok and expired() then error("timeout", 0) end
  return ok, ...
end
pcall = function(f, ...) return rethrow_timeout(raw_pcall(f, ...)) end
-- Lua calls the message handler for the hook's own timeout error from inside the hook, with
-- the hook off: past the deadline the handler must not run, or a looping one never stops.
xpcall = function(f, handler, ...)
  if type(handler) ~= "function" then return raw_xpcall(f, handler, ...) end
  local function guarded(e)
    if expired() then return e end
    return handler(e)
  end
  return rethrow_timeout(raw_xpcall(f, guarded, ...))
end
load = function(chunk, name, mode, env)
  if type(chunk) ~= "string" then
    error("load: only source text can be loaded in the sandbox", 2)
  end
  return raw_load(chunk, name, "t", env)
end
setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not allowed in policies (a finalizer runs "
      .. "outside any request's deadline)", 2)
  end
  return raw_setmetatable(t, mt)
end
"#;

/// Makes `lua`'s globals the sandbox. `clock` tells the `pcall` wrappers and the pattern
/// functions when time is up; `memory_limit` bounds what `gsub` builds.
pub(super) fn apply(lua: &Lua, clock: Rc<Clock>, memory_limit: usize) -> mlua::Result<()> {
    let globals = lua.globals();
    let raw_load: Function = globals.raw_get("load")?;
    for name in REMOVED_GLOBALS {
        globals.raw_set(name, Value::Nil)?;
    }
    let os: Table = globals.raw_get("os")?;
    let safe_os = lua.create_table()?;
    for name in KEPT_OS_FUNCTIONS {
        safe_os.raw_set(name, os.raw_get::<Value>(name)?)?;
    }
    globals.raw_set("os", safe_os)?;
    let string: Table = globals.raw_get("string")?;
    // string.dump makes bytecode; nothing in a policy needs it.
    string.raw_set("dump", Value::Nil)?;
    super::strings::install(lua, &string, clock.clone(), memory_limit)?;

    // `getmetatable("")` would hand out the string metatable, shared by every plugin of the
    // interpreter, whose `__index` is the real `string` table: lock it.
    let string_meta: Table = lua
        .load("return getmetatable('')")
        .set_name("=authhost sandbox")
        .call(())?;
    string_meta.raw_set("__metatable", false)?;

    let expired = lua.create_function(move |_, ()| Ok(clock.expired()))?;
    lua.load(WRAPPERS)
        .set_name("=authhost sandbox")
        .call::<()>((
            globals.raw_get::<Function>("pcall")?,
            globals.raw_get::<Function>("xpcall")?,
            raw_load,
            expired,
            globals.raw_get::<Function>("error")?,
            globals.raw_get::<Function>("type")?,
            globals.raw_get::<Function>("setmetatable")?,
            globals.raw_get::<Function>("rawget")?,
        ))
}

/// A new table with `table`'s entries (not its metatable).
pub(super) fn shallow_copy(lua: &Lua, table: &Table) -> mlua::Result<Table> {
    let copy = lua.create_table()?;
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair?;
        copy.raw_set(key, value)?;
    }
    Ok(copy)
}

/// Gives `load` the environment `env` unless the caller names one.
const LOAD_IN_ENV: &str = r#"
local shared_load, env = ...
return function(chunk, name, mode, chunk_env)
  if chunk_env == nil then chunk_env = env end
  return shared_load(chunk, name, mode, chunk_env)
end
"#;

/// A plugin's environment: the sandbox's globals (after [`apply`]), each library table
/// (`string`, `table`, `math`, `utf8`, `os`) copied, `_G` the environment itself, and `load`
/// loading into it by default. Built once per plugin per interpreter; lookups are plain
/// reads of the environment, with no metatable in between.
pub(super) fn isolated_env(lua: &Lua) -> mlua::Result<Table> {
    let globals = lua.globals();
    let env = lua.create_table()?;
    for pair in globals.pairs::<Value, Value>() {
        let (key, value) = pair?;
        let value = match value {
            Value::Table(table) if table != globals => Value::Table(shallow_copy(lua, &table)?),
            Value::Table(_) => continue,
            other => other,
        };
        env.raw_set(key, value)?;
    }
    env.raw_set("_G", env.clone())?;
    let load: Function = lua
        .load(LOAD_IN_ENV)
        .set_name("=authhost sandbox")
        .call((globals.raw_get::<Function>("load")?, env.clone()))?;
    env.raw_set("load", load)?;
    Ok(env)
}
