//! The Lua engine: Lua 5.4 through mlua, one sandboxed interpreter per worker.
//!
//! Each plugin runs in its own environment table (its globals do not leak into another
//! plugin's), is compiled once per interpreter, and its callbacks are kept as function
//! handles. A count hook checks the request's deadline every few thousand instructions, so a
//! runaway loop stops on time and the interpreter stays usable.

mod api;
mod db;
mod http;
mod json;
mod pattern;
mod sandbox;
mod sessions;
mod strings;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use mlua::chunk::ChunkMode;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::config::Config;
use crate::decision::timeout_message;
use crate::decision::{Callback, DecisionError, ErrorKind, ScriptValue};
use crate::engine::{
    refuse_misnamed, Call, Engine, Instance, Language, Misnamed, PluginSource, Prepared,
};
use crate::error::Error;
use crate::script_api::db::{Database, RequestScope};

/// How many VM instructions run between two deadline checks. A check reads the clock
/// (~20 ns), so this keeps the hook's cost far below 1% while stopping a loop within
/// microseconds of its deadline.
const INSTRUCTIONS_PER_CHECK: u32 = 4096;

/// Runs `.lua` plugins.
pub struct LuaEngine;

impl Engine for LuaEngine {
    fn language(&self) -> Language {
        Language::Lua
    }

    fn prepare(
        &self,
        plugins: Vec<PluginSource>,
        config: &Config,
    ) -> Result<Arc<dyn Prepared>, Error> {
        // Validate in a throwaway interpreter: every file compiles and runs, and setup() is
        // run here, once per load, before any worker sees the set.
        let probe = LuaInstance::new(&plugins, config, true)?;
        let callbacks = probe.defined_callbacks();
        Ok(Arc::new(PreparedLua { plugins, callbacks }))
    }
}

struct PreparedLua {
    plugins: Vec<PluginSource>,
    callbacks: Vec<Vec<Callback>>,
}

impl Prepared for PreparedLua {
    fn callbacks(&self) -> Vec<Vec<Callback>> {
        self.callbacks.clone()
    }

    fn instantiate(&self, config: &Config) -> Result<Box<dyn Instance>, Error> {
        Ok(Box::new(LuaInstance::new(&self.plugins, config, false)?))
    }
}

/// The deadline the count hook enforces, shared by the instance and its hook.
pub(crate) struct Clock {
    deadline: Cell<Instant>,
    /// Set by the hook once the deadline passed; the sandbox's `pcall` re-raises while it is
    /// set, so a script cannot swallow its own timeout.
    expired: Cell<bool>,
}

impl Clock {
    fn arm(&self, deadline: Instant) {
        self.deadline.set(deadline);
        self.expired.set(false);
    }

    pub(crate) fn expired(&self) -> bool {
        self.expired.get()
    }

    /// Fails with "timeout" once the deadline has passed (and from then on until re-armed).
    /// The instruction hook asks every few thousand instructions; C-speed work in Rust (the
    /// pattern matcher) asks as it goes.
    pub(crate) fn check(&self) -> mlua::Result<()> {
        if self.expired.get() || Instant::now() >= self.deadline.get() {
            self.expired.set(true);
            return Err(mlua::Error::runtime("timeout"));
        }
        Ok(())
    }
}

/// The memory limit to keep to while Rust code builds Lua values with the limit lifted (see
/// [`with_lifted_limit`]).
#[derive(Clone, Copy)]
pub(crate) struct MemoryBudget {
    limit: usize,
}

impl MemoryBudget {
    /// Fails with a memory error if allocating `more` bytes would pass the limit.
    pub(crate) fn check(self, lua: &Lua, more: usize) -> mlua::Result<()> {
        let fits = || self.limit == 0 || lua.used_memory().saturating_add(more) <= self.limit;
        if fits() {
            return Ok(());
        }
        // Garbage counts too: collect first, as Lua itself does before failing an allocation.
        lua.gc_collect()?;
        if fits() {
            return Ok(());
        }
        Err(mlua::Error::MemoryError("not enough memory".into()))
    }
}

/// Runs `build`, Rust code that only creates Lua values (decoded JSON, query rows, call
/// arguments), with the interpreter's memory limit lifted, then puts it back and checks it.
///
/// Why: while a limit is set, mlua guards every single allocation with a protected call
/// (~100 ns each), and one query row or decoded object takes a dozen. `build` runs no script
/// code, so what it allocates is what it builds (and what the collector's finalizers, if a
/// script set any, allocate meanwhile); it calls [`MemoryBudget::check`] as it grows, so the
/// limit still holds to within one row or one JSON value.
pub(crate) fn with_lifted_limit<R>(
    lua: &Lua,
    build: impl FnOnce(MemoryBudget) -> mlua::Result<R>,
) -> mlua::Result<R> {
    let limit = lua.set_memory_limit(0)?;
    let built = build(MemoryBudget { limit });
    lua.set_memory_limit(limit)?;
    let built = built?;
    MemoryBudget { limit }.check(lua, 0)?;
    Ok(built)
}

/// One worker's Lua interpreter with every Lua plugin of a set loaded.
struct LuaInstance {
    lua: Lua,
    /// Per plugin, its callback functions by [`Callback::index`].
    functions: Vec<[Option<Function>; 3]>,
    clock: Rc<Clock>,
    /// Per plugin, the path its messages name (its chunk is loaded under [`chunk_name`]).
    paths: Vec<String>,
    memory_limit: usize,
    timeout: std::time::Duration,
}

impl LuaInstance {
    fn new(plugins: &[PluginSource], config: &Config, run_setup: bool) -> Result<Self, Error> {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::OS,
            LuaOptions::new(),
        )
        .map_err(|e| Error::Config(format!("cannot start a Lua interpreter: {e}")))?;
        let setup_error =
            |e: mlua::Error| Error::Config(format!("cannot prepare the Lua sandbox: {e}"));
        lua.set_memory_limit(config.lua_memory_limit)
            .map_err(setup_error)?;
        let clock = Rc::new(Clock {
            deadline: Cell::new(Instant::now() + config.timeout),
            expired: Cell::new(false),
        });
        let hook_clock = clock.clone();
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(INSTRUCTIONS_PER_CHECK),
            move |_, _| {
                hook_clock.check()?;
                Ok(VmState::Continue)
            },
        )
        .map_err(setup_error)?;
        sandbox::apply(&lua, clock.clone(), config.lua_memory_limit).map_err(setup_error)?;
        // The worker's connection when built on a worker; a probe's own one in `prepare`.
        let db = Database::at(&config.db_location());
        let http = crate::script_api::http::Client::confined(&config.upstream)
            .map_err(|e| Error::Config(e.to_string()))?;
        let shared_api = api::shared(&lua, db.clone(), http, clock.clone()).map_err(setup_error)?;
        let store = config
            .session_store()
            .map_err(|e| Error::Config(e.to_string()))?;
        sessions::install(&lua, &shared_api, store, clock.clone()).map_err(setup_error)?;

        let mut functions = Vec::with_capacity(plugins.len());
        let mut paths: Vec<String> = Vec::with_capacity(plugins.len());
        for plugin in plugins {
            let path = plugin.display_path();
            paths.push(path.to_string());
            let load_error = |e: mlua::Error| Error::load(&plugin.path, &describe(&e));
            let env = plugin_env(&lua, &shared_api, &path, paths.len() - 1).map_err(setup_error)?;
            clock.arm(Instant::now() + config.timeout);
            let loading = RequestScope::enter(&db, Instant::now() + config.timeout);
            lua.load(plugin.text.as_str())
                // Lua cuts chunk names to LUA_IDSIZE (60 bytes); a short name, mapped back
                // to the real path in every message, keeps `FILE:LINE:` whole (contract §7).
                .set_name(chunk_name(paths.len() - 1))
                .set_mode(ChunkMode::Text)
                .set_environment(env.clone())
                .exec()
                .map_err(|e| load_failure(&plugin.path, &e, &clock, config, &paths))?;
            drop(loading);
            if run_setup {
                refuse_misnamed_callbacks(&env, &plugin.path).map_err(load_error)??;
            }
            let mut found: [Option<Function>; 3] = [None, None, None];
            for callback in Callback::ALL {
                found[callback.index()] = match env
                    .raw_get::<Value>(callback.function_name())
                    .map_err(load_error)?
                {
                    Value::Function(f) => Some(f),
                    Value::Nil => None,
                    other => {
                        return Err(Error::load(
                            &plugin.path,
                            &format!(
                                "{callback} must be a function, got a value of type {}",
                                other.type_name()
                            ),
                        ))
                    }
                };
            }
            if run_setup {
                match env.raw_get::<Value>("setup").map_err(load_error)? {
                    Value::Function(setup) => {
                        clock.arm(Instant::now() + config.timeout);
                        // setup() may use authhost.db (to create its tables), within the
                        // timeout; a transaction it leaves open is rolled back.
                        let _setup = RequestScope::enter(&db, Instant::now() + config.timeout);
                        setup
                            .call::<()>(())
                            .map_err(|e| load_failure(&plugin.path, &e, &clock, config, &paths))?;
                    }
                    Value::Nil => {}
                    other => {
                        return Err(Error::load(
                            &plugin.path,
                            &format!(
                                "setup must be a function, got a value of type {}",
                                other.type_name()
                            ),
                        ))
                    }
                }
            }
            functions.push(found);
        }
        Ok(LuaInstance {
            lua,
            functions,
            paths,
            clock,
            memory_limit: config.lua_memory_limit,
            timeout: config.timeout,
        })
    }

    fn defined_callbacks(&self) -> Vec<Vec<Callback>> {
        self.functions
            .iter()
            .map(|found| {
                Callback::ALL
                    .into_iter()
                    .filter(|c| found[c.index()].is_some())
                    .collect()
            })
            .collect()
    }

    fn call_error(&self, error: &mlua::Error) -> DecisionError {
        if self.clock.expired() {
            return DecisionError::new(ErrorKind::Timeout, timeout_message(self.timeout));
        }
        if is_memory_error(error) {
            // Free what the script left behind so the next request starts clean.
            let _ = self.lua.gc_collect();
            return DecisionError::new(
                ErrorKind::Memory,
                format!(
                    "out of memory: the script passed the Lua memory limit of {} MiB",
                    self.memory_limit >> 20
                ),
            );
        }
        DecisionError::new(
            ErrorKind::Raised,
            restore_chunk_names(&self.paths, &describe(error)),
        )
    }
}

impl Instance for LuaInstance {
    fn call(&mut self, call: Call<'_>) -> Result<ScriptValue, DecisionError> {
        let function = self.functions[call.plugin][call.callback.index()]
            .as_ref()
            .expect("the set routes a callback only to a plugin that defines it");
        self.clock.arm(call.deadline);
        let lua = &self.lua;
        let arguments = with_lifted_limit(lua, |budget| {
            budget.check(lua, call.args.iter().map(|a| a.len() + 32).sum())?;
            // Pushed one by one into a sized MultiValue: a `collect` of Results compiles to
            // an adapter whose cost moved by 150 instructions a call with unrelated changes.
            let mut arguments = MultiValue::with_capacity(call.args.len());
            for argument in call.args {
                arguments.push_back(Value::String(lua.create_string(argument)?));
            }
            Ok(arguments)
        });
        let returned = match arguments {
            Ok(arguments) => function.call::<Value>(arguments),
            Err(e) => Err(e),
        };
        match returned {
            Ok(value) => Ok(script_value(&value)),
            Err(e) => Err(self.call_error(&e)),
        }
    }

    fn restore_names(&self, text: String) -> String {
        // A returned string may hold a chunk's short name: the message of an error the
        // script caught with `pcall` and returned.
        if text.contains('@') {
            restore_chunk_names(&self.paths, &text)
        } else {
            text
        }
    }
}

/// A plugin's own environment: every sandbox global, with the library tables copied, `_G`
/// naming the environment itself and `load` defaulting to it. Nothing a plugin writes, to
/// its globals or to a library table, is seen by another plugin (contract §5).
/// The globals of plugin number `index`, at `path`.
fn plugin_env(lua: &Lua, shared_api: &Table, path: &str, index: usize) -> mlua::Result<Table> {
    let env = sandbox::isolated_env(lua)?;
    env.raw_set("authhost", api::for_plugin(lua, shared_api, path, index)?)?;
    env.raw_set("print", api::print_for(lua, path, index)?)?;
    Ok(env)
}

/// A load error for the first (by name) global function of the plugin's environment that
/// is named like a callback (`on_…`) and is none: a typo would otherwise leave the callback
/// undefined and every request refused without a hint.
fn refuse_misnamed_callbacks(
    env: &Table,
    file: &std::path::Path,
) -> mlua::Result<Result<(), Error>> {
    let mut misnamed: Vec<Misnamed> = Vec::new();
    for pair in env.pairs::<Value, Value>() {
        let (Value::String(name), Value::Function(function)) = pair? else {
            continue;
        };
        let name = name.to_string_lossy();
        if let Some(message) = Callback::misnamed(&name) {
            let line = function
                .info()
                .line_defined
                .and_then(|l| u32::try_from(l).ok());
            misnamed.push((name, message, line));
        }
    }
    Ok(refuse_misnamed(file, misnamed))
}

fn load_failure(
    file: &std::path::Path,
    error: &mlua::Error,
    clock: &Clock,
    config: &Config,
    paths: &[String],
) -> Error {
    if clock.expired() {
        return Error::load(
            file,
            &format!(
                "timeout: still running after {} ms",
                config.timeout.as_millis()
            ),
        );
    }
    Error::load(file, &restore_chunk_names(paths, &describe(error)))
}

/// The short chunk name plugin `index` is loaded under: `=` makes Lua print it verbatim.
fn chunk_name(index: usize) -> String {
    format!("=@{index}@")
}

/// `message` with every short chunk name replaced by its plugin's real path.
fn restore_chunk_names(paths: &[String], message: &str) -> String {
    let mut message = message.to_string();
    for (index, path) in paths.iter().enumerate() {
        message = restore_chunk_name(index, path, message);
    }
    message
}

/// `message` with plugin `index`'s short chunk name replaced by its `path`: for what a
/// script logs, such as the message of an error it caught with `pcall`.
fn restore_chunk_name(index: usize, path: &str, message: String) -> String {
    // The closing `@` keeps `@1@` from matching inside `@12@`.
    let name = &chunk_name(index)[1..];
    if message.contains(name) {
        message.replace(name, path)
    } else {
        message
    }
}

/// What a script returned, for the decision mapping.
fn script_value(value: &Value) -> ScriptValue {
    match value {
        Value::Nil => ScriptValue::Nil,
        Value::Boolean(b) => ScriptValue::Bool(*b),
        Value::Integer(n) => ScriptValue::Int(*n),
        Value::Number(x) => ScriptValue::Float(*x),
        Value::String(s) => ScriptValue::Str(s.as_bytes().to_vec()),
        other => ScriptValue::Other(other.type_name().to_string()),
    }
}

fn is_memory_error(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// An mlua error as one line a policy author can act on: `FILE:LINE: message`.
fn describe(error: &mlua::Error) -> String {
    match error {
        mlua::Error::RuntimeError(message) | mlua::Error::MemoryError(message) => {
            without_traceback(message).to_string()
        }
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::CallbackError { traceback, cause } => {
            let message = describe(cause);
            // Errors raised by Rust functions carry no position; take the script's own
            // frame from the traceback so the author can find the call.
            match script_position(traceback) {
                Some(position) if !has_script_position(&message) => format!("{position} {message}"),
                _ => message,
            }
        }
        mlua::Error::WithContext { context, cause } => format!("{context}: {}", describe(cause)),
        other => other.to_string(),
    }
}

/// Whether `message` already starts with `FILE:LINE:` (an error re-raised through a Rust
/// function such as `authhost.db.transaction` keeps its own position).
fn has_script_position(message: &str) -> bool {
    let mut parts = message.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(file), Some(line), Some(_)) => {
            !file.is_empty()
                && !file.contains(' ')
                && !line.is_empty()
                && line.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

fn without_traceback(message: &str) -> &str {
    message
        .split("\nstack traceback:")
        .next()
        .unwrap_or(message)
}

/// The first `FILE:LINE:` of a traceback that points into a script rather than into C.
fn script_position(traceback: &str) -> Option<String> {
    traceback.lines().skip(1).find_map(|line| {
        let line = line.trim();
        if line.starts_with("[C]") {
            return None;
        }
        let (file, rest) = line.split_once(':')?;
        let (number, _) = rest.split_once(':')?;
        number.parse::<u32>().ok()?;
        Some(format!("{file}:{number}:"))
    })
}
