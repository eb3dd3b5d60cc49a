//! The example policies (`plugins/`, `examples/plugins/`) are policies one could deploy: each
//! runs in the real `authhost serve`, logging at debug level, with passwords in every
//! request; no password reaches its log or its output, and a wrong password is refused.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::Service;

/// Passwords sent to the examples; none may be written anywhere.
const SECRETS: [&str; 3] = ["Sekrit-signup-7f3a", "Sekrit-wrong-91c2", "wonderland"];

fn example(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// What a run of `authhost serve` on stdio gave: the answers, and its log.
struct Run {
    answers: Vec<Value>,
    log: String,
}

impl Run {
    fn answer(&self, id: &str) -> &Value {
        let answer = self
            .answers
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {}", self.log));
        &answer["result"]
    }
}

/// Serves `requests` (id, method, params) with `plugins` on stdio, logging at debug level,
/// until they are answered.
fn serve(plugins: &Path, extra: &[&str], requests: &[(&str, &str, Value)]) -> Run {
    let mut service = Service::start(
        plugins,
        "stdio",
        &[&["--log-level", "debug"], extra].concat(),
    );
    let mut conn = service.stdio();
    for (id, method, params) in requests {
        conn.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
    }
    let answers = service.answers_until_exit(conn);
    Run {
        answers,
        log: service.stderr_text(),
    }
}

fn no_secret_in(plugins: &str, run: &Run) {
    // The answers are the service's whole output; the log is its stderr.
    let output = format!("{:?}\n{}", run.answers, run.log);
    for secret in SECRETS {
        assert!(
            !output.contains(secret),
            "{plugins} let the password {secret:?} reach its output or log:\n{output}"
        );
    }
}

fn login(name: &str, password: &str, node: &str) -> Value {
    json!([
        {"name": name, "password": password},
        {"public_key": node}
    ])
}

/// The examples that keep users with argon2id hashes: alice's password is "wonderland".
fn a_user_policy_verifies_passwords_and_logs_none(plugins: &str) {
    let run = serve(
        &example(plugins),
        &[],
        &[
            ("node", "new_node", json!([{"public_key": "pk-office"}])),
            (
                "signup",
                "user_signup",
                login("carol", SECRETS[0], "pk-office"),
            ),
            (
                "right",
                "user_login",
                login("alice", "wonderland", "pk-office"),
            ),
            (
                "wrong",
                "user_login",
                login("alice", SECRETS[1], "pk-office"),
            ),
            (
                "unknown",
                "user_login",
                login("nobody", SECRETS[1], "pk-office"),
            ),
            (
                "stranger",
                "user_login",
                login("alice", "wonderland", "pk-unknown"),
            ),
        ],
    );
    assert_eq!(run.answer("node")["decision"], "primary", "{plugins}");
    assert_eq!(run.answer("right")["decision"], "user_id", "{plugins}");
    assert_eq!(run.answer("right")["code"], 1, "{plugins}");
    for refused in ["wrong", "unknown", "stranger"] {
        assert_eq!(
            run.answer(refused)["decision"],
            "not_authorized",
            "{plugins}: {refused}"
        );
    }
    // Sign-ups: a new user (plugins/policy.lua, python_db) or closed (octodb_style); never an
    // error.
    let signup = run.answer("signup")["decision"].clone();
    assert!(
        signup == "user_id" || signup == "not_authorized",
        "{plugins}: {signup}"
    );
    no_secret_in(plugins, &run);
}

#[test]
fn the_bundled_lua_policy_verifies_passwords_and_logs_none() {
    a_user_policy_verifies_passwords_and_logs_none("plugins/policy.lua");
}

#[cfg(feature = "python")]
#[test]
fn the_python_database_example_verifies_passwords_and_logs_none() {
    a_user_policy_verifies_passwords_and_logs_none("examples/plugins/python_db");
}

#[cfg(feature = "python")]
#[test]
fn the_octodb_style_example_verifies_passwords_and_logs_none() {
    a_user_policy_verifies_passwords_and_logs_none("examples/plugins/octodb_style.py");
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn the_upstream_examples_log_no_password_when_the_backend_is_down() {
    let upstream = format!("http://127.0.0.1:{}/auth", closed_port());
    let mut examples = vec!["examples/plugins/upstream/upstream.lua"];
    if cfg!(feature = "python") {
        examples.push("examples/plugins/upstream/upstream.py");
    }
    for plugins in examples {
        // The backend is unreachable: the examples fall back to their (empty) cache, and
        // say why in the log.
        let run = serve(
            &example(plugins),
            &["--upstream", &upstream],
            &[
                (
                    "first",
                    "user_login",
                    login("alice", SECRETS[1], "pk-office"),
                ),
                (
                    "again",
                    "user_login",
                    login("alice", "wonderland", "pk-office"),
                ),
            ],
        );
        for id in ["first", "again"] {
            assert_eq!(
                run.answer(id)["decision"],
                "not_authorized",
                "{plugins}: {id}"
            );
        }
        assert!(
            run.log.contains("upstream unavailable"),
            "{plugins}: the fallback is logged: {}",
            run.log
        );
        no_secret_in(plugins, &run);
    }
}
