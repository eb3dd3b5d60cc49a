//! `authhost.json`: JSON text to Lua values and back.
//!
//! Objects become tables keyed by string, arrays become sequences, `null` becomes `nil`.
//! Encoding writes a table as an array when its keys are exactly 1..n, otherwise as an object
//! (so an empty table is `{}`).

use mlua::{Lua, Table, Value};
use serde_json::Value as Json;

/// Deeper nesting than this is refused rather than risking the stack (or a cycle).
const MAX_DEPTH: usize = 128;

/// The `authhost.json` table: `decode(text)` and `encode(value)`.
pub(super) fn module(lua: &Lua) -> mlua::Result<Table> {
    let json = lua.create_table()?;
    json.raw_set(
        "decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            let parsed: Json = serde_json::from_slice(&text.as_bytes())
                .map_err(|e| mlua::Error::runtime(format!("authhost.json.decode: {e}")))?;
            to_lua(lua, &parsed, 0)
        })?,
    )?;
    json.raw_set(
        "encode",
        lua.create_function(|_, value: Value| {
            let json = from_lua(&value, 0)
                .map_err(|e| mlua::Error::runtime(format!("authhost.json.encode: {e}")))?;
            Ok(json.to_string())
        })?,
    )?;
    Ok(json)
}

fn to_lua(lua: &Lua, json: &Json, depth: usize) -> mlua::Result<Value> {
    if depth > MAX_DEPTH {
        return Err(mlua::Error::runtime(
            "authhost.json.decode: nested too deeply",
        ));
    }
    Ok(match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item, depth + 1)?)?;
            }
            Value::Table(table)
        }
        Json::Object(fields) => {
            let table = lua.create_table_with_capacity(0, fields.len())?;
            for (key, item) in fields {
                table.raw_set(key.as_str(), to_lua(lua, item, depth + 1)?)?;
            }
            Value::Table(table)
        }
    })
}

fn from_lua(value: &Value, depth: usize) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deeply (or a table that contains itself)".into());
    }
    Ok(match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(n) => Json::from(*n),
        Value::Number(x) => serde_json::Number::from_f64(*x)
            .map(Json::Number)
            .ok_or_else(|| format!("cannot encode the number {x}"))?,
        Value::String(s) => Json::String(
            s.to_str()
                .map_err(|_| "cannot encode a string that is not UTF-8".to_string())?
                .to_string(),
        ),
        Value::Table(table) => table_to_json(table, depth)?,
        other => return Err(format!("cannot encode a {}", other.type_name())),
    })
}

fn table_to_json(table: &Table, depth: usize) -> Result<Json, String> {
    let length = table.raw_len();
    let mut count = 0usize;
    let mut object = serde_json::Map::new();
    for pair in table.pairs::<Value, Value>() {
        let (key, item) = pair.map_err(|e| e.to_string())?;
        count += 1;
        let key = match key {
            Value::String(s) => s
                .to_str()
                .map_err(|_| "cannot encode a key that is not UTF-8".to_string())?
                .to_string(),
            Value::Integer(n) => n.to_string(),
            other => {
                return Err(format!(
                    "cannot encode a table key of type {}",
                    other.type_name()
                ))
            }
        };
        object.insert(key, from_lua(&item, depth + 1)?);
    }
    if length > 0 && count == length {
        let items = (1..=length)
            .map(|i| {
                let item: Value = table.raw_get(i).map_err(|e| e.to_string())?;
                from_lua(&item, depth + 1)
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Json::Array(items));
    }
    Ok(Json::Object(object))
}
