//! SQL functions: ask a [`Host`] from SQL on any rusqlite connection.
//!
//! A database node registers the functions once per connection, then asks its questions in
//! SQL, on whatever thread runs the statement:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let policy = dir.path().join("policy.lua");
//! # std::fs::write(&policy, "function on_user_login(login, node) return 42 end")?;
//! let host = authhost::Host::builder().plugins(&policy).db(":memory:").workers(1).build()?;
//! let conn = rusqlite::Connection::open_in_memory()?;
//! authhost::sqlite::register_functions(&conn, &host)?;
//!
//! let code: i64 = conn.query_row(
//!     "SELECT user_login(?, ?)",
//!     [r#"{"name":"alice"}"#, r#"{"public_key":"k"}"#],
//!     |row| row.get(0),
//! )?;
//! assert_eq!(code, 42);
//! # Ok(()) }
//! ```
//!
//! | function | returns |
//! | --- | --- |
//! | `user_signup(signup_info, node_info)` | INTEGER: the user id, `0` (new user), `-1` (not authorized) or `-3` (error) |
//! | `user_login(login_info, node_info)` | the same |
//! | `new_node(node_info)` | TEXT `primary`, `secondary` or `async`; INTEGER `-1` (unauthorized) or `-3` (error) |
//! | `authhost_status()` | TEXT: the host's status as JSON (contract §8) |
//!
//! Each call blocks the statement until the decision comes, at most the host's timeout. An
//! `error` decision is the code `-3`, like any other answer; its message goes to the log
//! (target `authhost::sqlite`), since an integer cannot carry it.
//!
//! # Failure
//!
//! Arguments must be TEXT. NULL, INTEGER, REAL and BLOB arguments are a caller's mistake, not a
//! policy's answer: the statement fails with an SQL error that names the function, the
//! argument and the type it got (`user_login(): argument 1 (login_info) must be TEXT, got
//! NULL`), and no policy is asked. The wrong number of arguments is SQLite's own error.
//!
//! The functions are registered as non-deterministic (a policy may answer differently each
//! time) and `SQLITE_DIRECTONLY`: they have side effects (a signup may write to the database),
//! so SQLite refuses them inside triggers, views and schema defaults, where a database file
//! from elsewhere could call them behind the application's back.

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use crate::decision::{Callback, NodeCode, Outcome};
use crate::error::panic_message;
use crate::host::Host;

/// The log target of `error` decisions answered through SQL.
pub const LOG_TARGET: &str = "authhost::sqlite";

/// Registers `user_signup`, `user_login`, `new_node` and `authhost_status` on `conn`, each
/// asking `host` (which the functions keep alive as long as the connection has them).
///
/// # Failure
///
/// SQLite's error if a function cannot be registered (the connection is busy running a
/// statement, say).
pub fn register_functions(conn: &Connection, host: &Host) -> rusqlite::Result<()> {
    let host = host.clone();
    register_functions_with(conn, move || Ok(host.clone()))
}

/// [`register_functions`] for a host found at each call: `host()` returns it, or why there
/// is none (the SQLite extension starts its process-wide host at the first call, from the
/// environment). When `host()` fails, the call fails with that message as its SQL error.
///
/// # Failure
///
/// As for [`register_functions`].
pub fn register_functions_with<F>(conn: &Connection, host: F) -> rusqlite::Result<()>
where
    F: Fn() -> Result<Host, String> + Send + Sync + 'static,
{
    let host = std::sync::Arc::new(host);
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    for callback in Callback::ALL {
        let host = host.clone();
        conn.create_scalar_function(
            callback.method_name(),
            callback.arity() as i32,
            flags,
            move |ctx| {
                guard(callback.method_name(), || {
                    let args = text_args(ctx, callback)?;
                    let host = host().map_err(user_error)?;
                    let outcome = host.call(callback, args);
                    if let Some(error) = outcome.decision.error_cause() {
                        log::warn!(
                            target: LOG_TARGET,
                            "{}(): error: {}",
                            callback.method_name(),
                            error.message
                        );
                    }
                    Ok(sql_code(&outcome))
                })
            },
        )?;
    }
    conn.create_scalar_function("authhost_status", 0, flags, move |_| {
        guard("authhost_status", || {
            let host = host().map_err(user_error)?;
            Ok(host.status().to_json().to_string())
        })
    })?;
    Ok(())
}

/// Runs the body of the SQL function `function`, a panic inside it becoming the call's SQL
/// error (`user_login(): authhost failed: …`, naming the panic's message) instead of
/// rusqlite's bare "unwinding panic". Every function registered here runs inside it; the
/// SQLite extension's `authhost_configure` too.
///
/// # Failure
///
/// `call`'s own error, or the panic as [`rusqlite::Error::UserFunctionError`].
pub fn guard<T>(function: &str, call: impl FnOnce() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|panic| {
        Err(user_error(format!(
            "{function}(): authhost failed: {}",
            panic_message(&*panic)
        )))
    })
}

fn user_error(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into())
}

/// An outcome as the SQL functions return it: the user callbacks' integer code, or
/// `new_node`'s role (TEXT) or negative code (INTEGER).
pub fn sql_code(outcome: &Outcome) -> Value {
    if let Some(user) = outcome.user() {
        return Value::Integer(user.code());
    }
    match outcome.node().map(|node| node.code()) {
        Some(NodeCode::Role(role)) => Value::Text(role.to_string()),
        Some(NodeCode::Int(code)) => Value::Integer(code),
        None => Value::Integer(-3),
    }
}

/// The names of each callback's arguments, for error messages.
fn arg_names(callback: Callback) -> [&'static str; 2] {
    match callback {
        Callback::UserSignup => ["signup_info", "node_info"],
        Callback::UserLogin => ["login_info", "node_info"],
        Callback::NewNode => ["node_info", ""],
    }
}

/// The call's arguments as strings, or the SQL error for the first one that is not TEXT.
fn text_args(ctx: &Context<'_>, callback: Callback) -> rusqlite::Result<[String; 2]> {
    let mut args = [String::new(), String::new()];
    for (index, arg) in args.iter_mut().enumerate().take(ctx.len()) {
        let problem = match ctx.get_raw(index) {
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => {
                    *arg = text.to_string();
                    continue;
                }
                Err(_) => "TEXT that is not valid UTF-8".to_string(),
            },
            ValueRef::Null => "NULL".to_string(),
            ValueRef::Integer(_) => "an INTEGER".to_string(),
            ValueRef::Real(_) => "a REAL".to_string(),
            ValueRef::Blob(_) => "a BLOB".to_string(),
        };
        let message = format!(
            "{}(): argument {} ({}) must be TEXT, got {problem}",
            callback.method_name(),
            index + 1,
            arg_names(callback)[index],
        );
        return Err(user_error(message));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic inside a function's body is that call's SQL error, quoting the panic, and the
    /// connection goes on (rusqlite alone would say only "unwinding panic").
    #[test]
    fn a_panic_is_the_calls_sql_error() {
        let conn = Connection::open_in_memory().unwrap();
        conn.create_scalar_function("explode", 1, FunctionFlags::SQLITE_UTF8, |ctx| {
            guard("explode", || {
                let fuse: i64 = ctx.get(0)?;
                if fuse > 0 {
                    panic!("lit fuse {fuse}");
                }
                Ok(fuse)
            })
        })
        .unwrap();
        let error = conn
            .query_row("SELECT explode(3)", [], |row| row.get::<_, i64>(0))
            .unwrap_err();
        assert_eq!(error.to_string(), "explode(): authhost failed: lit fuse 3");
        let after: i64 = conn
            .query_row("SELECT explode(0)", [], |row| row.get(0))
            .unwrap();
        assert_eq!(after, 0);
    }
}
