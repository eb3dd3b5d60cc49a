//! `authhost.json`: JSON text to Lua values and back.
//!
//! Objects become tables keyed by string, arrays become sequences, `null` becomes `nil`.
//! Encoding writes a table as an array when its keys are exactly 1..n, otherwise as an object
//! (so an empty table is `{}`).

use mlua::{Lua, Table, Value};

use super::MemoryBudget;
use serde_json::Value as Json;

/// Slots a decoded table starts with (JSON does not say how many fields follow): enough for
/// the usual small objects without a rehash per key.
const SIZE_GUESS: usize = 4;

/// Deeper nesting than this is refused rather than risking the stack (or a cycle).
const MAX_DEPTH: usize = 128;

/// The `authhost.json` table: `decode(text)` and `encode(value)`.
pub(super) fn module(lua: &Lua) -> mlua::Result<Table> {
    let json = lua.create_table()?;
    json.raw_set(
        "decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            let text = text.as_bytes();
            super::with_lifted_limit(lua, |budget| decode(lua, budget, &text))
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

/// Parses JSON text straight into Lua values, with no intermediate tree: policies decode
/// their arguments on every request.
fn decode(lua: &Lua, budget: MemoryBudget, text: &[u8]) -> mlua::Result<Value> {
    let failure = std::cell::RefCell::new(None);
    let seed = LuaSeed {
        lua,
        budget,
        depth: 0,
        failure: &failure,
    };
    let mut parser = serde_json::Deserializer::from_slice(text);
    let parsed = serde::de::DeserializeSeed::deserialize(seed, &mut parser).and_then(|value| {
        parser.end()?;
        Ok(value)
    });
    parsed.map_err(|e| match failure.take() {
        // A Lua failure (out of memory, say) keeps its own kind.
        Some(lua_error) => lua_error,
        None => mlua::Error::runtime(format!("authhost.json.decode: {e}")),
    })
}

/// Builds one JSON value (and what it contains) as a Lua value.
#[derive(Clone, Copy)]
struct LuaSeed<'a> {
    lua: &'a Lua,
    budget: MemoryBudget,
    depth: usize,
    /// Where a Lua error is kept while serde unwinds with a plain message.
    failure: &'a std::cell::RefCell<Option<mlua::Error>>,
}

impl LuaSeed<'_> {
    fn lua_error<E: serde::de::Error>(&self, error: mlua::Error) -> E {
        let message = error.to_string();
        *self.failure.borrow_mut() = Some(error);
        E::custom(message)
    }

    fn string<E: serde::de::Error>(&self, text: &str) -> Result<Value, E> {
        self.grow(text.len())?;
        self.lua
            .create_string(text)
            .map(Value::String)
            .map_err(|e| self.lua_error(e))
    }

    /// Checks the memory limit before allocating about `bytes` more.
    fn grow<E: serde::de::Error>(&self, bytes: usize) -> Result<(), E> {
        self.budget
            .check(self.lua, bytes + 32)
            .map_err(|e| self.lua_error(e))
    }

    fn nested(self) -> Self {
        LuaSeed {
            depth: self.depth + 1,
            ..self
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for LuaSeed<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for LuaSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Boolean(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Integer(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        // Past i64, as a float, like any other number Lua cannot hold as an integer.
        Ok(i64::try_from(n).map_or(Value::Number(n as f64), Value::Integer))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Value::Number(x))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Value, E> {
        self.string(text)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(serde::de::Error::custom("nested too deeply"));
        }
        self.grow(64)?;
        let table = self
            .lua
            .create_table_with_capacity(items.size_hint().unwrap_or(SIZE_GUESS), 0)
            .map_err(|e| self.lua_error(e))?;
        let mut index = 0;
        while let Some(item) = items.next_element_seed(self.nested())? {
            index += 1;
            self.grow(16)?;
            table.raw_set(index, item).map_err(|e| self.lua_error(e))?;
        }
        Ok(Value::Table(table))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut fields: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(serde::de::Error::custom("nested too deeply"));
        }
        self.grow(64)?;
        let table = self
            .lua
            .create_table_with_capacity(0, fields.size_hint().unwrap_or(SIZE_GUESS))
            .map_err(|e| self.lua_error(e))?;
        while let Some(key) = fields.next_key_seed(self.nested())? {
            let item = fields.next_value_seed(self.nested())?;
            self.grow(40)?;
            table.raw_set(key, item).map_err(|e| self.lua_error(e))?;
        }
        Ok(Value::Table(table))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const UNLIMITED: MemoryBudget = MemoryBudget { limit: 0 };

    fn round_trip(lua: &Lua, text: &str) -> String {
        let value = decode(lua, UNLIMITED, text.as_bytes()).unwrap();
        from_lua(&value, 0).unwrap().to_string()
    }

    #[test]
    fn decode_builds_lua_values() {
        let lua = Lua::new();
        let value = decode(
            &lua,
            UNLIMITED,
            br#"{"name":"al\"ice","id":7,"big":18446744073709551615,
            "x":1.5,"ok":true,"none":null,"list":[1,"two",[3]]}"#,
        )
        .unwrap();
        let Value::Table(table) = value else {
            panic!("{value:?}")
        };
        assert_eq!(table.get::<String>("name").unwrap(), "al\"ice");
        assert_eq!(table.get::<Value>("id").unwrap(), Value::Integer(7));
        assert_eq!(
            table.get::<Value>("big").unwrap(),
            Value::Number(18446744073709551615.0)
        );
        assert_eq!(table.get::<Value>("x").unwrap(), Value::Number(1.5));
        assert_eq!(table.get::<Value>("ok").unwrap(), Value::Boolean(true));
        assert_eq!(table.get::<Value>("none").unwrap(), Value::Nil);
        let list: Table = table.get("list").unwrap();
        assert_eq!(list.raw_len(), 3);
        assert_eq!(list.get::<String>(2).unwrap(), "two");
        assert_eq!(round_trip(&lua, "[1,[2,{}],3]"), "[1,[2,{}],3]");
        assert_eq!(decode(&lua, UNLIMITED, b"null").unwrap(), Value::Nil);
    }

    #[test]
    fn decode_refuses_bad_or_too_deep_text() {
        let lua = Lua::new();
        for text in ["{", "[1,]", "{} x", "", "'a'"] {
            let e = decode(&lua, UNLIMITED, text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains("authhost.json.decode: "), "{text}: {e}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let e = decode(&lua, UNLIMITED, deep.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nested too deeply") || e.contains("recursion limit"),
            "{e}"
        );
        let fine = "[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1);
        assert!(decode(&lua, UNLIMITED, fine.as_bytes()).is_ok());
    }
}
