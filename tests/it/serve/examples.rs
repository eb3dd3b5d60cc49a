//! The example policies (`plugins/`, `examples/plugins/`) are policies one could deploy: each
//! runs in the real `authhost serve`, logging at debug level, with passwords in every
//! request; no password reaches its log or its output, and a wrong password is refused.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

/// A loopback port that refuses connections for as long as the returned socket is open: a
/// TCP socket bound to it and not listening. (A port bound and let go at once, as this was,
/// is free for another test's listener, which this binary's other tests start at the same
/// time, to take before the policy connects.)
fn closed_port() -> (OwnedFd, u16) {
    // SAFETY: socket(2) takes plain integers; a non-negative result is a new descriptor,
    // owned from here on by the OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_in is plain data, valid when zeroed.
    let mut address: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    address.sin_family = libc::AF_INET as libc::sa_family_t;
    address.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let mut length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let pointer = (&raw mut address).cast::<libc::sockaddr>();
    // SAFETY: pointer and length describe `address`, which outlives both calls; port 0 lets
    // the system choose, and getsockname writes back which.
    unsafe {
        assert_eq!(libc::bind(socket.as_raw_fd(), pointer, length), 0, "bind");
        assert_eq!(
            libc::getsockname(socket.as_raw_fd(), pointer, &raw mut length),
            0,
            "getsockname"
        );
    }
    (socket, u16::from_be(address.sin_port))
}

#[test]
fn the_upstream_examples_log_no_password_when_the_backend_is_down() {
    let (_closed, port) = closed_port();
    let upstream = format!("http://127.0.0.1:{port}/auth");
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
