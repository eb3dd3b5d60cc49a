//! `authhost.sessions`, `authhost.limits` and `authhost.state` for Lua: the session store
//! ([`crate::sessions`]), every call bounded by the request's deadline.

use std::rc::Rc;
use std::time::Duration;

use mlua::{Lua, Table, Value};

use super::Clock;
use crate::sessions::{Store, StoreError};

/// Adds the three tables to `api`.
pub(super) fn install(lua: &Lua, api: &Table, store: Store, clock: Rc<Clock>) -> mlua::Result<()> {
    let sessions = lua.create_table()?;
    let limits = lua.create_table()?;
    let state = lua.create_table()?;

    let (s, c) = (store.clone(), clock.clone());
    sessions.raw_set(
        "open",
        lua.create_function(move |_, (user_id, idle): (Value, Value)| {
            let user_id = match user_id {
                Value::Integer(id) if id >= 1 => id,
                other => {
                    return Err(bad(
                        "sessions.open",
                        "the user id",
                        "an integer >= 1",
                        &other,
                    ))
                }
            };
            let idle = optional_seconds(&idle, "sessions.open", "the idle timeout")?;
            let opened = s
                .open(user_id, idle, c.deadline.get())
                .map_err(|e| raise(&c, e))?;
            Ok(opened.token)
        })?,
    )?;
    let (s, c) = (store.clone(), clock.clone());
    sessions.raw_set(
        "check",
        lua.create_function(move |_, token: Value| {
            let token = text(&token, "sessions.check", "the token")?;
            let live = s
                .check(&token, c.deadline.get())
                .map_err(|e| raise(&c, e))?;
            Ok(live.map(|live| live.user_id))
        })?,
    )?;
    let (s, c) = (store.clone(), clock.clone());
    sessions.raw_set(
        "close",
        lua.create_function(move |_, token: Value| {
            let token = text(&token, "sessions.close", "the token")?;
            s.close(&token, c.deadline.get()).map_err(|e| raise(&c, e))
        })?,
    )?;

    let (s, c) = (store.clone(), clock.clone());
    limits.raw_set(
        "hit",
        lua.create_function(move |_, (key, max, window): (Value, Value, Value)| {
            let key = text(&key, "limits.hit", "the key")?;
            let max = match max {
                Value::Integer(n) if (0..=i64::from(u32::MAX)).contains(&n) => n as u32,
                other => return Err(bad("limits.hit", "max", "an integer >= 0", &other)),
            };
            let window =
                optional_seconds(&window, "limits.hit", "the window")?.ok_or_else(|| {
                    mlua::Error::runtime("authhost.limits.hit: the window is missing")
                })?;
            s.hit(&key, max, window, c.deadline.get())
                .map_err(|e| raise(&c, e))
        })?,
    )?;
    let (s, c) = (store.clone(), clock.clone());
    limits.raw_set(
        "reset",
        lua.create_function(move |_, key: Value| {
            let key = text(&key, "limits.reset", "the key")?;
            s.reset(&key, c.deadline.get()).map_err(|e| raise(&c, e))
        })?,
    )?;

    let (s, c) = (store.clone(), clock.clone());
    state.raw_set(
        "put",
        lua.create_function(move |_, (key, value, ttl): (Value, Value, Value)| {
            let key = text(&key, "state.put", "the key")?;
            let value = text(&value, "state.put", "the value")?;
            let ttl = optional_seconds(&ttl, "state.put", "the ttl")?
                .ok_or_else(|| mlua::Error::runtime("authhost.state.put: the ttl is missing"))?;
            s.put(&key, &value, ttl, c.deadline.get())
                .map_err(|e| raise(&c, e))
        })?,
    )?;
    let (s, c) = (store.clone(), clock.clone());
    state.raw_set(
        "get",
        lua.create_function(move |_, key: Value| {
            let key = text(&key, "state.get", "the key")?;
            s.get(&key, c.deadline.get()).map_err(|e| raise(&c, e))
        })?,
    )?;
    let (s, c) = (store, clock);
    state.raw_set(
        "take",
        lua.create_function(move |_, key: Value| {
            let key = text(&key, "state.take", "the key")?;
            s.take(&key, c.deadline.get()).map_err(|e| raise(&c, e))
        })?,
    )?;

    api.raw_set("sessions", sessions)?;
    api.raw_set("limits", limits)?;
    api.raw_set("state", state)?;
    Ok(())
}

fn bad(function: &str, what: &str, expected: &str, got: &Value) -> mlua::Error {
    mlua::Error::runtime(format!(
        "authhost.{function}: {what} must be {expected}, got {}",
        match got {
            Value::Integer(n) => n.to_string(),
            other => other.type_name().to_string(),
        }
    ))
}

/// A UTF-8 string argument (keys, values and tokens are text).
fn text(value: &Value, function: &str, what: &str) -> mlua::Result<String> {
    match value {
        Value::String(s) => s
            .to_str()
            .map(|s| s.to_string())
            .map_err(|_| mlua::Error::runtime(format!("authhost.{function}: {what} is not UTF-8"))),
        other => Err(bad(function, what, "a string", other)),
    }
}

/// Seconds as a positive number (integer or float), or nil.
fn optional_seconds(value: &Value, function: &str, what: &str) -> mlua::Result<Option<Duration>> {
    let seconds = match value {
        Value::Nil => return Ok(None),
        Value::Integer(n) => *n as f64,
        Value::Number(x) => *x,
        other => return Err(bad(function, what, "a number of seconds", other)),
    };
    if !(seconds > 0.0 && seconds <= 1e9) {
        return Err(mlua::Error::runtime(format!(
            "authhost.{function}: {what} must be more than 0 s (and at most 1e9), got {seconds}"
        )));
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

/// The error a script sees; a store stopped at the deadline is the request's timeout, which
/// the script cannot catch.
fn raise(clock: &Clock, error: StoreError) -> mlua::Error {
    if matches!(error, StoreError::Timeout) {
        clock.expired.set(true);
        return mlua::Error::runtime("timeout");
    }
    match error {
        StoreError::Invalid(message) => mlua::Error::runtime(format!("authhost.{message}")),
        other => mlua::Error::runtime(format!("authhost: {other}")),
    }
}
