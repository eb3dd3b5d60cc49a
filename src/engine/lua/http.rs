//! `authhost.http` for Lua: [`crate::script_api::http`] with Lua's idioms. A request is a
//! table (`{method=, url=, headers=, body=, timeout_ms=}`), and so is the answer
//! (`{status=, headers=, body=}`, header names in lower case). Lua's client is always
//! confined to the operator's `--upstream` prefixes.

use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{Lua, Table, Value};

use super::Clock;
use crate::script_api::http::{Client, HttpError, HttpRequest, HttpResponse};

/// Builds the `authhost.http` table over `client`. A timeout at the request's own deadline
/// marks `clock` expired, so the script cannot catch it; one at a shorter `timeout_ms` is an
/// ordinary error the policy may catch to fall back.
pub(super) fn module(lua: &Lua, client: Client, clock: Rc<Clock>) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    let client = Rc::new(client);

    let (c, k) = (client.clone(), clock.clone());
    let request = lua.create_function(move |lua, spec: Value| {
        let Value::Table(spec) = spec else {
            return Err(mlua::Error::runtime(format!(
                "authhost.http.request: expects a table {{method=, url=, ...}}, got {}",
                spec.type_name()
            )));
        };
        let method = optional_string(&spec, "method", "request")?.unwrap_or_else(|| "GET".into());
        send(
            lua,
            &c,
            &k,
            "request",
            request_from(&spec, method, "request")?,
        )
    })?;
    table.raw_set("request", request)?;

    for (name, method) in [("get", "GET"), ("post", "POST")] {
        let (c, k) = (client.clone(), clock.clone());
        let f = lua.create_function(move |lua, (url, options): (Value, Option<Table>)| {
            let url = match url {
                Value::String(s) => s.to_str()?.to_string(),
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "authhost.http.{name}: the URL must be a string, got {}",
                        other.type_name()
                    )))
                }
            };
            let options = match options {
                Some(options) => options,
                None => lua.create_table()?,
            };
            options.raw_set("url", url)?;
            send(
                lua,
                &c,
                &k,
                name,
                request_from(&options, method.into(), name)?,
            )
        })?;
        table.raw_set(name, f)?;
    }

    table.raw_set("allowed", lua.create_sequence_from(client.allowed())?)?;
    let c = client.clone();
    let fallback = lua.create_function(move |_, ()| {
        c.counters().record_fallback();
        Ok(())
    })?;
    table.raw_set("fallback", fallback)?;
    Ok(table)
}

fn send(
    lua: &Lua,
    client: &Client,
    clock: &Clock,
    function: &str,
    request: HttpRequest,
) -> mlua::Result<Table> {
    match client.request(&request) {
        Ok(response) => response_table(lua, response),
        Err(e) => {
            if matches!(e, HttpError::Timeout { .. }) && Instant::now() >= clock.deadline.get() {
                clock.expired.set(true);
            }
            Err(mlua::Error::runtime(format!(
                "authhost.http.{function}: {e}"
            )))
        }
    }
}

fn request_from(spec: &Table, method: String, function: &str) -> mlua::Result<HttpRequest> {
    let url = optional_string(spec, "url", function)?
        .ok_or_else(|| mlua::Error::runtime(format!("authhost.http.{function}: url is missing")))?;
    let mut headers = Vec::new();
    match spec.raw_get::<Value>("headers")? {
        Value::Nil => {}
        Value::Table(t) => {
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                match (k, v) {
                    (Value::String(k), Value::String(v)) => {
                        headers.push((k.to_str()?.to_string(), v.to_str()?.to_string()))
                    }
                    (k, v) => {
                        return Err(mlua::Error::runtime(format!(
                            "authhost.http.{function}: headers must map strings to strings, got {} = {}",
                            k.type_name(),
                            v.type_name()
                        )))
                    }
                }
            }
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "authhost.http.{function}: headers must be a table, got {}",
                other.type_name()
            )))
        }
    }
    let body = match spec.raw_get::<Value>("body")? {
        Value::Nil => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => {
            return Err(mlua::Error::runtime(format!(
                "authhost.http.{function}: body must be a string, got {}",
                other.type_name()
            )))
        }
    };
    let timeout = match spec.raw_get::<Value>("timeout_ms")? {
        Value::Nil => None,
        Value::Integer(ms) if ms > 0 => Some(Duration::from_millis(ms as u64)),
        Value::Number(ms) if ms > 0.0 && ms.is_finite() => {
            Some(Duration::from_secs_f64(ms / 1000.0))
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "authhost.http.{function}: timeout_ms must be a positive number, got {}",
                other
                    .to_string()
                    .unwrap_or_else(|_| other.type_name().to_string())
            )))
        }
    };
    Ok(HttpRequest {
        method,
        url,
        headers,
        body,
        timeout,
    })
}

fn optional_string(spec: &Table, key: &str, function: &str) -> mlua::Result<Option<String>> {
    match spec.raw_get::<Value>(key)? {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(s.to_str()?.to_string())),
        other => Err(mlua::Error::runtime(format!(
            "authhost.http.{function}: {key} must be a string, got {}",
            other.type_name()
        ))),
    }
}

fn response_table(lua: &Lua, response: HttpResponse) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.raw_set("status", response.status)?;
    let headers = lua.create_table()?;
    for (name, value) in response.headers {
        // A repeated header is joined as HTTP allows (`a, b`).
        let joined = match headers.raw_get::<Option<String>>(name.as_str())? {
            Some(old) => format!("{old}, {value}"),
            None => value,
        };
        headers.raw_set(name, joined)?;
    }
    table.raw_set("headers", headers)?;
    table.raw_set("body", lua.create_string(&response.body)?)?;
    Ok(table)
}
