//! The example policies (`plugins/`, `examples/plugins/`) are policies one could deploy: each
//! runs in the real `authhost serve`, logging at debug level, with passwords in every
//! request; no password reaches its log or its output, and a wrong password is refused.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// Passwords sent to the examples; none may be written anywhere.
const SECRETS: [&str; 3] = ["Sekrit-signup-7f3a", "Sekrit-wrong-91c2", "wonderland"];

fn example(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// What a run of `authhost serve` on stdio gave: the answers by id, and its whole stdout and
/// stderr (the log).
struct Run {
    answers: Vec<Value>,
    output: String,
}

impl Run {
    fn answer(&self, id: &str) -> &Value {
        let answer = self
            .answers
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {}", self.output));
        &answer["result"]
    }
}

/// Serves `requests` (id, method, params) with `plugins` on stdio until they are answered.
fn serve(plugins: &Path, extra: &[&str], requests: &[(&str, &str, Value)]) -> Run {
    let db = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_authhost"))
        .arg("serve")
        .arg("--plugins")
        .arg(plugins)
        .arg("--db")
        .arg(db.path().join("app.db"))
        .args(["--workers", "1", "--no-watch", "--log-level", "debug"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting authhost serve");
    let mut input = String::new();
    for (id, method, params) in requests {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        input.push_str(&request.to_string());
        input.push('\n');
    }
    // One at a time would be the same: the worker answers them in order anyway.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let answers = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    Run {
        answers,
        output: format!("{stdout}\n{stderr}"),
    }
}

fn no_secret_in(plugins: &str, run: &Run) {
    for secret in SECRETS {
        assert!(
            !run.output.contains(secret),
            "{plugins} let the password {secret:?} reach its output or log:\n{}",
            run.output
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
            run.output.contains("upstream unavailable"),
            "{plugins}: the fallback is logged: {}",
            run.output
        );
        no_secret_in(plugins, &run);
    }
}
