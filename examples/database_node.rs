//! A small primary database node that authorizes through authhost's SQL functions.
//!
//! It opens its own SQLite database, registers `user_signup`, `user_login` and `new_node` on
//! the connection, and serves a stream of (simulated) secondary-node requests by running
//! `SELECT user_login(?, ?)` and friends, the way OctoDB's primaries call their registered
//! functions. When a policy answers `0` (new user), the node chooses the id itself: the rowid
//! of a new row in its `users` table.
//!
//! ```sh
//! cargo run --example database_node -- [PLUGINS] [NODE_DB]
//! ```
//!
//! PLUGINS defaults to `plugins` (the bundled example policy), NODE_DB to an in-memory
//! database.

use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, Connection};

/// What a secondary node can send the primary.
enum Request {
    NewNode {
        node_info: &'static str,
    },
    Signup {
        name: &'static str,
        node_info: &'static str,
    },
    Login {
        name: &'static str,
        password: &'static str,
        node_info: &'static str,
    },
}

const OFFICE: &str = r#"{"public_key":"pk-office","address":"10.0.0.7"}"#;
const LAPTOP: &str = r#"{"public_key":"pk-laptop","address":"10.0.0.23"}"#;
const STRANGER: &str = r#"{"public_key":"pk-unknown","address":"203.0.113.9"}"#;

/// The simulated traffic: devices join, users sign up and log in.
const TRAFFIC: &[Request] = &[
    Request::NewNode { node_info: OFFICE },
    Request::NewNode { node_info: LAPTOP },
    Request::NewNode {
        node_info: STRANGER,
    },
    // alice's password (seeded by the bundled policy's setup()), then a wrong one.
    Request::Login {
        name: "alice",
        password: "wonderland",
        node_info: OFFICE,
    },
    Request::Login {
        name: "alice",
        password: "guess",
        node_info: OFFICE,
    },
    Request::Login {
        name: "alice",
        password: "wonderland",
        node_info: STRANGER,
    },
    Request::Signup {
        name: "carol",
        node_info: LAPTOP,
    },
    Request::Signup {
        name: "bad name!",
        node_info: LAPTOP,
    },
    Request::Login {
        name: "mallory",
        password: "guess",
        node_info: OFFICE,
    },
    Request::Login {
        name: "bob",
        password: "guess",
        node_info: LAPTOP,
    },
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let plugins = args.next().unwrap_or_else(|| "plugins".into());
    let node_db = args.next().unwrap_or_else(|| ":memory:".into());

    // The node's own database, and the host its functions ask. The host keeps its own
    // authhost.db for the policies (in memory here, so the example leaves nothing behind).
    let conn = Connection::open(&node_db)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
         CREATE TABLE IF NOT EXISTS nodes (public_key TEXT PRIMARY KEY, role TEXT NOT NULL);
         -- The user the example policy already knows (its setup() seeds alice as user 1);
         -- the policy numbers new users from its own table, so the node keeps no others.
         INSERT OR IGNORE INTO users (id, name) VALUES (1, 'alice');",
    )?;
    let host = authhost::Host::builder()
        .plugins(&plugins)
        .db(":memory:")
        .workers(2)
        .timeout(Duration::from_secs(2))
        .build()?;
    authhost::sqlite::register_functions(&conn, &host)?;

    for request in TRAFFIC {
        let answer = serve(&conn, request)?;
        println!("{answer}");
    }
    let status: String = conn.query_row("SELECT authhost_status()", [], |row| row.get(0))?;
    println!("status: {status}");
    Ok(())
}

/// Serves one request from a secondary node and says what the node did.
fn serve(conn: &Connection, request: &Request) -> rusqlite::Result<String> {
    Ok(match *request {
        Request::NewNode { node_info } => {
            let role: Value = conn
                .prepare_cached("SELECT new_node(?)")?
                .query_row([node_info], |row| row.get(0))?;
            match role {
                Value::Text(role) => {
                    let key = public_key(node_info);
                    conn.execute(
                        "INSERT OR REPLACE INTO nodes (public_key, role) VALUES (?, ?)",
                        params![key, role],
                    )?;
                    format!("node {key} joins as {role}")
                }
                Value::Integer(-1) => format!("node {} refused", public_key(node_info)),
                other => format!("node {}: policy error ({other:?})", public_key(node_info)),
            }
        }
        Request::Signup { name, node_info } => {
            let info = serde_json::json!({ "name": name, "password": "correct horse" }).to_string();
            let code: i64 = conn
                .prepare_cached("SELECT user_signup(?, ?)")?
                .query_row([info.as_str(), node_info], |row| row.get(0))?;
            match code {
                // The policy lets the node choose the id: the next rowid of its users table.
                0 => {
                    conn.execute("INSERT INTO users (name) VALUES (?)", [name])?;
                    format!("{name} signed up as user {}", conn.last_insert_rowid())
                }
                id if id > 0 => {
                    conn.execute(
                        "INSERT INTO users (id, name) VALUES (?, ?)",
                        params![id, name],
                    )?;
                    format!("{name} signed up as user {id}")
                }
                -1 => format!("{name}: signup not authorized"),
                _ => format!("{name}: signup failed (policy error)"),
            }
        }
        Request::Login {
            name,
            password,
            node_info,
        } => {
            // The password goes to the policy only; what is printed is the outcome.
            let info = serde_json::json!({ "name": name, "password": password }).to_string();
            let code: i64 = conn
                .prepare_cached("SELECT user_login(?, ?)")?
                .query_row([info.as_str(), node_info], |row| row.get(0))?;
            match code {
                id if id > 0 => format!("{name} logs in as user {id}"),
                0 => format!("{name} logs in as a new user"),
                -1 => format!("{name}: login not authorized"),
                _ => format!("{name}: login failed (policy error)"),
            }
        }
    })
}

fn public_key(node_info: &str) -> String {
    serde_json::from_str::<serde_json::Value>(node_info)
        .ok()
        .and_then(|v| v["public_key"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
