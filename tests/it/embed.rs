//! Embedding: the Rust API end to end, and the SQL functions on a rusqlite connection.
//!
//! Policies live in `tests/policies/embed/`. Deadlines are generous: these tests assert
//! decisions, never speed.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use authhost::{Callback, ErrorKind, Host, NodeDecision, UserDecision};
use rusqlite::Connection;
use serde_json::Value;

/// A test policy file by name.
fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies/embed")
        .join(name)
}

/// A host on `node.lua` with an in-memory database.
fn node_host(workers: usize, timeout: Duration) -> Host {
    Host::builder()
        .plugins(policy("node.lua"))
        .db(":memory:")
        .workers(workers)
        .timeout(timeout)
        .build()
        .expect("node.lua loads")
}

const PRIMARY: &str = r#"{"public_key":"pk-primary","address":"10.0.0.1"}"#;
const UNKNOWN_NODE: &str = r#"{"public_key":"pk-stranger"}"#;

fn login(name: &str) -> String {
    format!(r#"{{"name":"{name}","password":"pw"}}"#)
}

fn error_kind(decision: Option<&UserDecision>) -> Option<ErrorKind> {
    match decision {
        Some(UserDecision::Error(e)) => Some(e.kind),
        _ => None,
    }
}

mod rust_api {
    use super::*;

    #[test]
    fn blocking_calls_answer_each_callback() {
        let host = node_host(2, Duration::from_secs(10));
        let outcome = host.user_login(login("alice"), PRIMARY);
        assert_eq!(outcome.user(), Some(&UserDecision::UserId(1)));
        assert!(outcome.plugin.as_deref().unwrap().ends_with("node.lua"));
        assert_eq!(outcome.generation, Some(1));
        assert_eq!(
            host.user_login(login("alice"), UNKNOWN_NODE).user(),
            Some(&UserDecision::NotAuthorized)
        );
        assert_eq!(
            host.user_login(login("newcomer"), PRIMARY).user(),
            Some(&UserDecision::NewUser)
        );
        assert_eq!(
            host.user_signup(login("carol"), PRIMARY).user(),
            Some(&UserDecision::NewUser)
        );
        assert_eq!(
            host.user_signup(login("bob"), PRIMARY).user(),
            Some(&UserDecision::NotAuthorized)
        );
        assert_eq!(host.new_node(PRIMARY).node(), Some(&NodeDecision::Primary));
        assert_eq!(
            host.new_node(r#"{"public_key":"pk-async"}"#).node(),
            Some(&NodeDecision::Async)
        );
        assert_eq!(
            host.new_node(UNKNOWN_NODE).node(),
            Some(&NodeDecision::Unauthorized)
        );
        let raised = host.user_login(login("raises"), PRIMARY);
        assert_eq!(error_kind(raised.user()), Some(ErrorKind::Raised));
        let json = raised.to_json();
        assert_eq!(json["code"], -3);
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("the policy raised on purpose"),
            "{json}"
        );
    }

    #[test]
    fn async_calls_complete_on_a_worker_thread() {
        let host = node_host(2, Duration::from_secs(10));
        let (tx, rx) = mpsc::channel();
        let names = ["alice", "bob", "mallory", "newcomer"];
        for name in names {
            let tx = tx.clone();
            host.user_login_async(login(name), PRIMARY, move |outcome| {
                let thread = std::thread::current().name().unwrap_or("").to_string();
                tx.send((name, outcome, thread)).unwrap();
            });
        }
        let tx_node = tx.clone();
        host.new_node_async(r#"{"public_key":"pk-secondary"}"#, move |outcome| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            tx_node.send(("node", outcome, thread)).unwrap();
        });
        host.user_signup_async(login("dave"), PRIMARY, move |outcome| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            tx.send(("signup", outcome, thread)).unwrap();
        });
        let mut answers = std::collections::HashMap::new();
        for _ in 0..names.len() + 2 {
            let (name, outcome, thread) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("every call completes");
            assert!(
                thread.starts_with("authhost-worker"),
                "{name} completed on {thread:?}"
            );
            answers.insert(name, outcome);
        }
        assert_eq!(answers["alice"].user(), Some(&UserDecision::UserId(1)));
        assert_eq!(answers["bob"].user(), Some(&UserDecision::UserId(2)));
        assert_eq!(
            answers["mallory"].user(),
            Some(&UserDecision::NotAuthorized)
        );
        assert_eq!(answers["newcomer"].user(), Some(&UserDecision::NewUser));
        assert_eq!(answers["signup"].user(), Some(&UserDecision::NewUser));
        assert_eq!(answers["node"].node(), Some(&NodeDecision::Secondary));
    }

    #[test]
    fn a_script_past_its_deadline_is_an_error_and_the_worker_serves_on() {
        // The contract's default timeout: long enough that alice's answer never misses it.
        let host = node_host(1, Duration::from_secs(2));
        let spun = host.user_login(login("spins"), PRIMARY);
        assert_eq!(error_kind(spun.user()), Some(ErrorKind::Timeout));
        assert_eq!(
            host.user_login(login("alice"), PRIMARY).user(),
            Some(&UserDecision::UserId(1))
        );
    }

    #[test]
    fn status_shows_the_set_and_counts_requests() {
        let host = node_host(2, Duration::from_secs(10));
        host.user_login(login("alice"), PRIMARY);
        host.user_login(login("mallory"), PRIMARY);
        host.new_node(PRIMARY);
        let status = host.status().to_json();
        assert_eq!(status["ready"], true);
        assert_eq!(status["generation"], 1);
        assert_eq!(status["workers"], 2);
        assert_eq!(status["last_error"], Value::Null);
        let plugins = status["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 1);
        assert_eq!(plugins[0]["language"], "lua");
        assert_eq!(
            plugins[0]["callbacks"],
            serde_json::json!(["on_user_signup", "on_user_login", "on_new_node"])
        );
        assert_eq!(status["counters"]["requests"]["user_login"], 2);
        assert_eq!(status["counters"]["requests"]["new_node"], 1);
        assert_eq!(status["counters"]["decisions"]["user_id"], 1);
        assert_eq!(status["counters"]["decisions"]["not_authorized"], 1);
        assert_eq!(status["counters"]["decisions"]["primary"], 1);
    }

    #[test]
    fn reload_swaps_in_a_good_set_and_keeps_it_when_the_next_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("policy.lua");
        std::fs::copy(policy("reload/v1.lua"), &live).unwrap();
        let host = Host::builder()
            .plugins(dir.path())
            .db(":memory:")
            .workers(2)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        assert_eq!(
            host.user_login("{}", "{}").user(),
            Some(&UserDecision::UserId(1))
        );
        assert_eq!(
            error_kind_node(host.new_node("{}").node()),
            Some(ErrorKind::MissingCallback)
        );

        std::fs::copy(policy("reload/v2.lua"), &live).unwrap();
        let status = host.reload().expect("v2 loads");
        assert_eq!(status.generation, 2);
        let outcome = host.user_login("{}", "{}");
        assert_eq!(outcome.user(), Some(&UserDecision::UserId(2)));
        assert_eq!(outcome.generation, Some(2));
        assert_eq!(host.new_node("{}").node(), Some(&NodeDecision::Secondary));

        std::fs::copy(policy("reload/broken.lua"), &live).unwrap();
        let error = host.reload().expect_err("broken.lua does not compile");
        assert!(error.to_string().contains("policy.lua:4"), "{error}");
        let status = host.status();
        assert_eq!(status.generation, 2);
        assert!(status
            .last_error
            .as_deref()
            .unwrap()
            .contains("policy.lua:4"));
        assert_eq!(
            host.user_login("{}", "{}").user(),
            Some(&UserDecision::UserId(2))
        );
    }

    fn error_kind_node(decision: Option<&NodeDecision>) -> Option<ErrorKind> {
        match decision {
            Some(NodeDecision::Error(e)) => Some(e.kind),
            _ => None,
        }
    }

    /// The host's pool threads in this process: `authhost-worker-N` and `authhost-watchdog`
    /// (Linux keeps the first 15 bytes of a name). Engines may keep process-wide threads of
    /// their own (Python's interrupter), which outlive any one host.
    fn authhost_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| {
                name.starts_with("authhost-worker") || name.starts_with("authhost-watchd")
            })
            .count()
    }

    const CHILD: &str = "AUTHHOST_EMBED_DROP_CHILD";

    /// Dropping the last clone of a host joins its workers and watchdog. Other tests of this
    /// binary run hosts at the same time, so the counting runs in a child process that runs
    /// only this test.
    #[test]
    fn dropping_the_last_host_joins_its_threads() {
        if std::env::var_os(CHILD).is_none() {
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "embed::rust_api::dropping_the_last_host_joins_its_threads",
                    "--nocapture",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                stdout.contains("threads before drop: 4, after: 0"),
                "{stdout}"
            );
            return;
        }
        let host = node_host(3, Duration::from_secs(10));
        let clone = host.clone();
        assert_eq!(
            clone.user_login(login("bob"), PRIMARY).user(),
            Some(&UserDecision::UserId(2))
        );
        let (tx, rx) = mpsc::channel();
        host.call_async(
            Callback::UserLogin,
            [login("alice"), PRIMARY.into()],
            move |o| tx.send(o).unwrap(),
        );
        assert_eq!(rx.recv().unwrap().user(), Some(&UserDecision::UserId(1)));
        // A thread takes its name once it first runs: give an idle one time to start.
        let started = std::time::Instant::now();
        while authhost_threads() < 4 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let before = authhost_threads();
        drop(host);
        assert_eq!(authhost_threads(), before, "a clone keeps the workers");
        drop(clone);
        println!(
            "threads before drop: {before}, after: {}",
            authhost_threads()
        );
    }

    #[test]
    fn after_shutdown_calls_are_refused_with_an_error() {
        let host = node_host(1, Duration::from_secs(10));
        host.shutdown();
        let outcome = host.user_login(login("alice"), PRIMARY);
        assert_eq!(error_kind(outcome.user()), Some(ErrorKind::ShuttingDown));
        assert_eq!(host.status().to_json()["ready"], false);
    }
}

mod sql_functions {
    use super::*;

    fn connection(host: &Host) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        authhost::sqlite::register_functions(&conn, host).unwrap();
        conn
    }

    /// `SELECT expr` with parameters, as (typeof, value as text).
    fn select(
        conn: &Connection,
        expr: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> rusqlite::Result<(String, String)> {
        conn.query_row(
            &format!("SELECT typeof(x), CAST(x AS TEXT) FROM (SELECT {expr} AS x)"),
            params,
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
    }

    fn integer(code: i64) -> (String, String) {
        ("integer".into(), code.to_string())
    }

    fn text(value: &str) -> (String, String) {
        ("text".into(), value.into())
    }

    #[test]
    fn user_functions_return_the_integer_code() {
        let host = node_host(2, Duration::from_secs(10));
        let conn = connection(&host);
        let alice = login("alice");
        assert_eq!(
            select(&conn, "user_login(?, ?)", &[&alice, &PRIMARY]).unwrap(),
            integer(1)
        );
        assert_eq!(
            select(&conn, "user_login(?, ?)", &[&alice, &UNKNOWN_NODE]).unwrap(),
            integer(-1)
        );
        assert_eq!(
            select(&conn, "user_login(?, ?)", &[&login("newcomer"), &PRIMARY]).unwrap(),
            integer(0)
        );
        assert_eq!(
            select(&conn, "user_login(?, ?)", &[&login("raises"), &PRIMARY]).unwrap(),
            integer(-3)
        );
        assert_eq!(
            select(&conn, "user_login('not json', ?)", &[&PRIMARY]).unwrap(),
            integer(-3)
        );
        assert_eq!(
            select(&conn, "user_signup(?, ?)", &[&login("erin"), &PRIMARY]).unwrap(),
            integer(0)
        );
        assert_eq!(
            select(&conn, "user_signup(?, ?)", &[&login("bob"), &PRIMARY]).unwrap(),
            integer(-1)
        );
        let wants = r#"{"name":"frank","wants_id":9000000000}"#;
        assert_eq!(
            select(&conn, "user_signup(?, ?)", &[&wants, &PRIMARY]).unwrap(),
            integer(9_000_000_000)
        );
    }

    #[test]
    fn new_node_returns_a_role_as_text_or_a_negative_integer() {
        let host = node_host(1, Duration::from_secs(10));
        let conn = connection(&host);
        assert_eq!(
            select(&conn, "new_node(?)", &[&PRIMARY]).unwrap(),
            text("primary")
        );
        let secondary = r#"{"public_key":"pk-secondary"}"#;
        assert_eq!(
            select(&conn, "new_node(?)", &[&secondary]).unwrap(),
            text("secondary")
        );
        let asynchronous = r#"{"public_key":"pk-async"}"#;
        assert_eq!(
            select(&conn, "new_node(?)", &[&asynchronous]).unwrap(),
            text("async")
        );
        assert_eq!(
            select(&conn, "new_node(?)", &[&UNKNOWN_NODE]).unwrap(),
            integer(-1)
        );
        let bad = r#"{"public_key":"pk-bad-return"}"#;
        assert_eq!(select(&conn, "new_node(?)", &[&bad]).unwrap(), integer(-3));
    }

    #[test]
    fn a_timeout_is_minus_three() {
        let host = node_host(1, Duration::from_secs(2));
        let conn = connection(&host);
        assert_eq!(
            select(&conn, "user_login(?, ?)", &[&login("spins"), &PRIMARY]).unwrap(),
            integer(-3)
        );
    }

    #[test]
    fn non_text_arguments_are_an_sql_error_naming_the_argument() {
        let host = node_host(1, Duration::from_secs(10));
        let conn = connection(&host);
        let cases: [(&str, &str); 6] = [
            (
                "user_login(NULL, '{}')",
                "user_login(): argument 1 (login_info) must be TEXT, got NULL",
            ),
            (
                "user_login('{}', 42)",
                "user_login(): argument 2 (node_info) must be TEXT, got an INTEGER",
            ),
            (
                "user_signup(x'7b7d', '{}')",
                "user_signup(): argument 1 (signup_info) must be TEXT, got a BLOB",
            ),
            (
                "user_signup('{}', 1.5)",
                "user_signup(): argument 2 (node_info) must be TEXT, got a REAL",
            ),
            (
                "new_node(NULL)",
                "new_node(): argument 1 (node_info) must be TEXT, got NULL",
            ),
            (
                "new_node(7)",
                "new_node(): argument 1 (node_info) must be TEXT, got an INTEGER",
            ),
        ];
        for (expr, expected) in cases {
            let error = select(&conn, expr, &[]).expect_err(expr);
            assert!(error.to_string().contains(expected), "{expr}: {error}");
        }
        let error = select(&conn, "user_login('{}')", &[]).expect_err("wrong arity");
        assert!(
            error.to_string().contains("wrong number of arguments"),
            "{error}"
        );
        // No policy was asked.
        assert_eq!(
            host.status().to_json()["counters"]["requests"]["user_login"],
            0
        );
    }

    #[test]
    fn the_functions_are_refused_inside_views_and_triggers() {
        let host = node_host(1, Duration::from_secs(10));
        let conn = connection(&host);
        conn.execute_batch(
            "CREATE VIEW sneaky AS SELECT user_login('{\"name\":\"alice\"}', '{}') AS code",
        )
        .unwrap();
        let error = conn
            .query_row("SELECT code FROM sneaky", [], |row| row.get::<_, i64>(0))
            .expect_err("direct-only");
        assert!(
            error.to_string().contains("unsafe use of user_login()"),
            "{error}"
        );
    }

    #[test]
    fn authhost_status_is_the_status_json() {
        let host = node_host(2, Duration::from_secs(10));
        let conn = connection(&host);
        let alice = login("alice");
        select(&conn, "user_login(?, ?)", &[&alice, &PRIMARY]).unwrap();
        let (kind, json) = select(&conn, "authhost_status()", &[]).unwrap();
        assert_eq!(kind, "text");
        let status: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(status["ready"], true);
        assert_eq!(status["workers"], 2);
        assert_eq!(status["generation"], 1);
        assert_eq!(status["counters"]["decisions"]["user_id"], 1);
    }

    #[test]
    fn several_connections_on_several_threads_share_one_host() {
        let host = node_host(2, Duration::from_secs(20));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let host = host.clone();
                std::thread::spawn(move || {
                    let conn = connection(&host);
                    let mut statement = conn.prepare("SELECT user_login(?, ?)").unwrap();
                    let mut codes = Vec::new();
                    for name in ["alice", "bob", "mallory"].iter().cycle().take(30) {
                        codes.push(
                            statement
                                .query_row([login(name).as_str(), PRIMARY], |row| {
                                    row.get::<_, i64>(0)
                                })
                                .unwrap(),
                        );
                    }
                    codes
                })
            })
            .collect();
        for thread in threads {
            let codes = thread.join().unwrap();
            let expected: Vec<i64> = [1, 2, -1].iter().copied().cycle().take(30).collect();
            assert_eq!(codes, expected);
        }
        assert_eq!(
            host.status().to_json()["counters"]["requests"]["user_login"],
            120
        );
    }
}

mod c_abi {
    use super::*;
    use std::process::Command;

    fn manifest_dir() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// Where cargo put the `libauthhost.so` built for this test run: beside this test binary,
    /// in `target/debug/deps` (`cargo test` does not copy it up to `target/debug`).
    fn library_dir() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().to_path_buf()
    }

    fn generated_header() -> String {
        let config = cbindgen::Config::from_file(manifest_dir().join("cbindgen.toml")).unwrap();
        let mut header = Vec::new();
        cbindgen::Builder::new()
            .with_src(manifest_dir().join("src/ffi.rs"))
            .with_config(config)
            .generate()
            .expect("cbindgen reads src/ffi.rs")
            .write(&mut header);
        String::from_utf8(header).unwrap()
    }

    /// The committed header is what cbindgen makes of the code. `AUTHHOST_BLESS=1` rewrites
    /// it after a change to `src/ffi.rs`.
    #[test]
    fn the_committed_header_matches_the_code() {
        let path = manifest_dir().join("include/authhost.h");
        let generated = generated_header();
        if std::env::var_os("AUTHHOST_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "include/authhost.h is stale: run `AUTHHOST_BLESS=1 cargo test --test embed c_abi` \
             and commit it"
        );
    }

    /// `scripts/install --prefix DIR`, an option where the prefix goes, is a usage error at
    /// once (exit 2): the script checked the prefix only after `cargo build --release`, a
    /// cold build of many minutes that then took `DIR` for a cargo option.
    #[test]
    fn scripts_install_refuses_an_option_for_a_prefix_before_building() {
        let output = Command::new(manifest_dir().join("scripts/install"))
            .args(["--prefix", "/tmp/authhost-prefix"])
            // Without cargo on the PATH, a build started before the check fails instead.
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("scripts/install runs");
        let log = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{log}");
        assert!(
            log.starts_with("usage: scripts/install PREFIX [CARGO BUILD OPTIONS...]\n"),
            "{log}"
        );
    }

    /// The library as `scripts/install` lays it out (SONAME, header, `authhost.pc`), under
    /// `target/c-prefix`: installed once per test run from the `libauthhost.so` cargo built
    /// for it. Returns the prefix's `lib/pkgconfig`, for `PKG_CONFIG_PATH`.
    fn installed() -> &'static Path {
        static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        INSTALLED.get_or_init(|| {
            let library = library_dir().join("libauthhost.so");
            assert!(library.exists(), "no {}", library.display());
            // target/debug/deps → target
            let prefix = library_dir().ancestors().nth(2).unwrap().join("c-prefix");
            let output = Command::new(manifest_dir().join("scripts/install"))
                .arg("--library")
                .arg(&library)
                .arg(&prefix)
                .output()
                .expect("scripts/install runs");
            assert!(
                output.status.success(),
                "scripts/install failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            prefix.join("lib/pkgconfig")
        })
    }

    /// Runs a shell command line in `dir` with the installed library on `PKG_CONFIG_PATH`,
    /// as the README's commands run; returns its output, after asserting it succeeded.
    fn shell(dir: &Path, command_line: &str) -> std::process::Output {
        let output = Command::new("sh")
            .arg("-c")
            .arg(command_line)
            .current_dir(dir)
            .env("PKG_CONFIG_PATH", installed())
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .expect("sh runs");
        assert!(
            output.status.success(),
            "`{command_line}` failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The README's C example, built and run as the README says: `cc` with `pkg-config`
    /// against the installed prefix, then `./node` beside the bundled policy, with no
    /// LD_LIBRARY_PATH. Failed on the code before this test: there was no install step, and a
    /// program linked to target/release could not find `libauthhost.so` at run time.
    #[test]
    fn the_readme_c_program_builds_with_pkg_config_and_runs_from_the_installed_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["tests/c/node.c", "plugins/policy.lua"] {
            let to = dir.path().join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(manifest_dir().join(file), to).unwrap();
        }
        shell(
            dir.path(),
            "cc -o node tests/c/node.c $(pkg-config --cflags --libs authhost)",
        );
        let needed = shell(dir.path(), "readelf -d node");
        assert!(
            String::from_utf8_lossy(&needed.stdout).contains("Shared library: [libauthhost.so.0]"),
            "node must ask for the SONAME"
        );
        let run = shell(dir.path(), "./node");
        assert_eq!(
            String::from_utf8_lossy(&run.stdout)
                .lines()
                .collect::<Vec<_>>(),
            [
                "alice: 1",
                "alice, wrong password: -1",
                "pk-office: primary",
                "alice (async): 1",
                "status: {\"ready\":true,…",
            ],
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }

    /// A C program built against the installed library asks every callback, blocking and
    /// async, from several threads, and feeds the boundary bad input.
    #[test]
    fn a_c_program_gets_every_decision_and_survives_bad_input() {
        let out = tempfile::tempdir().unwrap();
        let source = manifest_dir().join("tests/c/c_abi_test.c");
        shell(
            out.path(),
            &format!(
                "cc -std=c11 -Wall -Wextra -Werror -pthread -o c_abi_test '{}' \
                 $(pkg-config --cflags --libs authhost)",
                source.display()
            ),
        );
        let run = Command::new(out.path().join("c_abi_test"))
            .arg(policy("node.lua"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            run.status.success(),
            "the C program failed:\n{stdout}\n{stderr}"
        );
        // 4 threads × 25 rounds × (6 logins + 1 signup + 1 node) asynchronous decisions.
        assert!(
            stdout.contains("ALL OK: 800 async decisions checked"),
            "{stdout}\n{stderr}"
        );
    }
}

mod loadable_extension {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;

    /// The extension, built once per test run with cargo into `target/sqlite-ext` (its own
    /// cargo run: see build.rs for why), as the path SQLite is given: without its `.so`.
    fn extension() -> &'static Path {
        static BUILT: OnceLock<PathBuf> = OnceLock::new();
        BUILT.get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/debug/deps/embed-… → target
            let target = exe.ancestors().nth(3).unwrap();
            let target_dir = target.join("sqlite-ext");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut command = Command::new(cargo);
            command
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["build", "--package", "authhost-sqlite", "--target-dir"])
                .arg(&target_dir);
            // The same languages as the authhost under test.
            if cfg!(feature = "python") {
                command.args(["--features", "python"]);
            }
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy().into_owned();
                if name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_") {
                    command.env_remove(name);
                }
            }
            let output = command.output().expect("cargo runs");
            assert!(
                output.status.success(),
                "building the extension failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            target_dir.join("debug/libauthhost_sqlite")
        })
    }

    /// Runs the `sqlite3` shell on an in-memory database with `script` on stdin and the
    /// given environment; returns (stdout, stderr).
    fn sqlite3_shell(script: &str, env: &[(&str, &str)]) -> (String, String) {
        sqlite3_shell_in(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            ":memory:",
            script,
            env,
        )
    }

    /// Runs `sqlite3 DATABASE` in `dir` with `script` on stdin and the given environment;
    /// returns (stdout, stderr).
    fn sqlite3_shell_in(
        dir: &Path,
        database: &str,
        script: &str,
        env: &[(&str, &str)],
    ) -> (String, String) {
        let mut child = Command::new("sqlite3")
            .arg(database)
            .current_dir(dir)
            .envs(env.iter().copied())
            .env_remove("AUTHHOST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the sqlite3 shell is installed (scripts/setup)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn node_env() -> Vec<(&'static str, String)> {
        vec![
            ("AUTHHOST_PLUGINS", policy("node.lua").display().to_string()),
            ("AUTHHOST_DB", ":memory:".into()),
            ("AUTHHOST_WORKERS", "2".into()),
            ("AUTHHOST_TIMEOUT_MS", "20000".into()),
        ]
    }

    fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn the_sqlite3_shell_loads_it_without_an_entry_point_and_asks_a_lua_policy() {
        let script = format!(
            ".load {}\n\
             SELECT user_login('{{\"name\":\"alice\"}}', '{{\"public_key\":\"pk-primary\"}}');\n\
             SELECT user_login('{{\"name\":\"bob\"}}', '{{\"public_key\":\"pk-stranger\"}}');\n\
             SELECT user_login('{{\"name\":\"raises\"}}', '{{\"public_key\":\"pk-primary\"}}');\n\
             SELECT user_signup('{{\"name\":\"carol\"}}', '{{}}');\n\
             SELECT new_node('{{\"public_key\":\"pk-secondary\"}}'), typeof(new_node('{{}}')), new_node('{{}}');\n\
             SELECT user_login(NULL, '{{}}');\n\
             SELECT json_extract(authhost_status(), '$.workers'), json_extract(authhost_status(), '$.counters.requests.user_login');\n",
            extension().display()
        );
        let env = node_env();
        let (stdout, stderr) = sqlite3_shell(&script, &borrowed(&env));
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            ["1", "-1", "-3", "0", "secondary|integer|-1", "2|3"],
            "stderr: {stderr}"
        );
        assert!(
            stderr.contains("user_login(): argument 1 (login_info) must be TEXT, got NULL"),
            "{stderr}"
        );
    }

    #[test]
    fn authhost_configure_starts_the_host_once_per_process() {
        let script = format!(
            ".load {}\n\
             SELECT json_extract(authhost_configure('{{\"plugins\":\"{}\",\"db\":\":memory:\",\"workers\":3,\"timeout_ms\":20000}}'), '$.workers');\n\
             SELECT user_login('{{\"name\":\"bob\"}}', '{{\"public_key\":\"pk-async\"}}');\n\
             SELECT json_extract(authhost_configure('{{\"plugins\":\"{}\",\"db\":\":memory:\",\"workers\":3,\"timeout_ms\":20000}}'), '$.workers');\n\
             SELECT authhost_configure('{{\"workers\":1}}');\n\
             SELECT authhost_configure('{{\"worker\":1}}');\n",
            extension().display(),
            policy("node.lua").display(),
            policy("node.lua").display(),
        );
        // The environment names no plugins: authhost_configure is what starts the host.
        let (stdout, stderr) = sqlite3_shell(&script, &[("AUTHHOST_PLUGINS", "/no/such/plugins")]);
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            ["3", "2", "3"],
            "stderr: {stderr}"
        );
        assert!(
            stderr.contains("authhost is already running with other settings"),
            "{stderr}"
        );
        assert!(stderr.contains("unknown field `worker`"), "{stderr}");
    }

    #[test]
    fn a_host_that_cannot_start_is_an_sql_error_that_says_why() {
        let script = format!(
            ".load {}\nSELECT user_login('{{}}', '{{}}');\nSELECT new_node('{{}}');\n",
            extension().display()
        );
        let (stdout, stderr) = sqlite3_shell(&script, &[("AUTHHOST_PLUGINS", "/no/such/plugins")]);
        assert_eq!(stdout, "", "{stderr}");
        assert_eq!(
            stderr.matches("authhost could not start (settings from the environment): /no/such/plugins: cannot read plugins").count(),
            2,
            "{stderr}"
        );
        let (_, stderr) = sqlite3_shell(&script, &[("AUTHHOST_WORKERS", "many")]);
        assert!(
            stderr.contains(r#"AUTHHOST_WORKERS="many" is not a positive integer"#),
            "{stderr}"
        );
    }

    #[test]
    fn python_sqlite3_loads_it_into_several_connections_and_threads() {
        let program = r#"
import json, sqlite3, sys, threading
path = sys.argv[1]

def connect():
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.enable_load_extension(True)
    conn.load_extension(path)
    return conn

first = connect()
print(first.execute("SELECT user_login(?, ?)", ('{"name":"alice"}', '{"public_key":"pk-primary"}')).fetchone()[0])
print(first.execute("SELECT new_node(?)", ('{"public_key":"pk-async"}',)).fetchone()[0])
print(first.execute("SELECT new_node(?)", ('{"public_key":"pk-stranger"}',)).fetchone()[0])
try:
    first.execute("SELECT user_signup(?, ?)", (42, "{}"))
except sqlite3.OperationalError as e:
    print("error:", e)

results, lock = [], threading.Lock()
def worker(name, expected):
    conn = connect()
    for _ in range(20):
        code = conn.execute("SELECT user_login(?, ?)", (json.dumps({"name": name}), '{"public_key":"pk-secondary"}')).fetchone()[0]
        with lock:
            results.append(code == expected)
threads = [threading.Thread(target=worker, args=(n, e)) for n, e in [("alice", 1), ("bob", 2), ("mallory", -1), ("newcomer", 0)]]
for t in threads: t.start()
for t in threads: t.join()
print(len(results), all(results))
status = json.loads(first.execute("SELECT authhost_status()").fetchone()[0])
print(status["workers"], status["counters"]["requests"]["user_login"])
"#;
        let env = node_env();
        let output = Command::new("/usr/bin/python3.11")
            .arg("-c")
            .arg(program)
            .arg(extension())
            .envs(borrowed(&env))
            .output()
            .expect("Debian's python3.11 is installed (scripts/setup)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            [
                "1",
                "async",
                "-1",
                "error: user_signup(): argument 1 (signup_info) must be TEXT, got an INTEGER",
                "80 True",
                "2 81",
            ],
            "{stderr}"
        );
    }

    /// Python policies inside the extension: on the loading program's interpreter when it
    /// has one, else on one the extension starts.
    #[cfg(feature = "python")]
    mod python_policies {
        use super::*;

        fn mixed_env() -> Vec<(&'static str, String)> {
            vec![
                ("AUTHHOST_PLUGINS", policy("mixed").display().to_string()),
                ("AUTHHOST_DB", ":memory:".into()),
                ("AUTHHOST_WORKERS", "2".into()),
                ("AUTHHOST_TIMEOUT_MS", "20000".into()),
            ]
        }

        #[test]
        fn the_sqlite3_shell_gets_an_interpreter_of_its_own() {
            let script = format!(
                ".load {}\n\
                 SELECT user_login('{{}}', '{{}}');\n\
                 SELECT new_node('{{\"public_key\":\"pk-primary\"}}');\n",
                extension().display()
            );
            let env = mixed_env();
            let (stdout, stderr) = sqlite3_shell(&script, &borrowed(&env));
            assert_eq!(
                stdout.lines().collect::<Vec<_>>(),
                ["2", "primary"],
                "{stderr}"
            );
        }

        /// Debian's python3.11 links libpython statically: the policy must still run on that
        /// interpreter (it sees the caller's `builtins.HOST_MARK`), not on a second one.
        #[test]
        fn python_sqlite3_runs_policies_on_its_own_interpreter() {
            let program = r#"
import builtins, sqlite3, sys, threading
builtins.HOST_MARK = "set-by-the-caller"
def connect():
    conn = sqlite3.connect(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(sys.argv[1])
    return conn
conn = connect()
print(conn.execute("SELECT user_login('{}', '{}')").fetchone()[0])
print(conn.execute("SELECT new_node(?)", ('{"public_key":"pk-primary"}',)).fetchone()[0])
answers = []
def worker():
    own = connect()  # one connection per thread: see the README
    for _ in range(25):
        answers.append(own.execute("SELECT user_login('{}', '{}')").fetchone()[0])
threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(len(answers), sorted(set(answers)))
"#;
            let env = mixed_env();
            let output = Command::new("/usr/bin/python3.11")
                .arg("-c")
                .arg(program)
                .arg(extension())
                .envs(borrowed(&env))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{stdout}\n{stderr}");
            assert_eq!(
                stdout.lines().collect::<Vec<_>>(),
                ["1", "primary", "100 [1]"],
                "{stderr}"
            );
        }
    }

    /// What the README shows, run as a user would after `cargo build --release`: the bundled
    /// `plugins/policy.lua`, whose `setup()` and callbacks use `authhost.db`, asked from the
    /// system `sqlite3` shell (3.40) and Debian's `python3.11`, in a directory of their own.
    mod with_the_policy_database {
        use super::*;

        /// A directory with a copy of the bundled `plugins/policy.lua` in `plugins/`, as
        /// a fresh clone has it.
        fn node_dir() -> tempfile::TempDir {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("plugins")).unwrap();
            std::fs::copy(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/policy.lua"),
                dir.path().join("plugins/policy.lua"),
            )
            .unwrap();
            dir
        }

        /// No AUTHHOST_* settings from the test's own environment: the README's defaults.
        const UNSET: [&str; 5] = [
            "AUTHHOST_PLUGINS",
            "AUTHHOST_DB",
            "AUTHHOST_WORKERS",
            "AUTHHOST_TIMEOUT_MS",
            "AUTHHOST_LOG",
        ];

        /// Runs `program` with Debian's `python3.11` in `dir`, the extension's path as its
        /// first argument; returns the lines it printed and its stderr, once it succeeded.
        fn python3_11(dir: &Path, program: &str, env: &[(&str, &str)]) -> (Vec<String>, String) {
            let mut command = Command::new("/usr/bin/python3.11");
            command
                .current_dir(dir)
                .arg("-c")
                .arg(program)
                .arg(extension());
            for name in UNSET {
                command.env_remove(name);
            }
            let output = command
                .envs(env.iter().copied())
                .output()
                .expect("Debian's python3.11 is installed (scripts/setup)");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(output.status.success(), "{stdout}\n{stderr}");
            (stdout.lines().map(str::to_string).collect(), stderr)
        }

        /// The names in the policy database's `users` table, by id.
        fn users(database: &Path) -> Vec<String> {
            let conn = Connection::open(database).unwrap();
            let mut statement = conn.prepare("SELECT name FROM users ORDER BY id").unwrap();
            let names = statement.query_map([], |row| row.get(0)).unwrap();
            names.collect::<Result<_, _>>().unwrap()
        }

        /// Failed on the code before this test: `setup()`'s first `db.exec` panicked inside
        /// rusqlite (`sqlite3_set_clientdata`, which SQLite 3.40 does not have) and every
        /// call was "unwinding panic".
        #[test]
        fn the_sqlite3_shell_runs_the_bundled_policy_as_the_readme_shows() {
            let dir = node_dir();
            let script = format!(
                ".load {}\n\
                 SELECT json_extract(authhost_configure('{{\"plugins\":\"plugins\",\"db\":\"authhost.db\",\"workers\":4}}'), '$.ready');\n\
                 SELECT user_login('{{\"name\":\"alice\",\"password\":\"wonderland\"}}', '{{\"public_key\":\"pk-office\"}}');\n\
                 SELECT user_login('{{\"name\":\"alice\",\"password\":\"looking-glass\"}}', '{{\"public_key\":\"pk-office\"}}');\n\
                 SELECT user_signup('{{\"name\":\"bob\",\"password\":\"builder-bob\"}}', '{{\"public_key\":\"pk-laptop\"}}');\n\
                 SELECT user_login('{{\"name\":\"bob\",\"password\":\"builder-bob\"}}', '{{\"public_key\":\"pk-laptop\"}}');\n\
                 SELECT new_node('{{\"public_key\":\"pk-backup\"}}'), new_node('{{\"public_key\":\"pk-stranger\"}}');\n",
                extension().display()
            );
            // authhost_configure names every setting the environment could.
            let (stdout, stderr) = sqlite3_shell_in(dir.path(), "node.db", &script, &[]);
            assert_eq!(
                stdout.lines().collect::<Vec<_>>(),
                ["1", "1", "-1", "2", "2", "async|-1"],
                "stderr: {stderr}"
            );
            assert_eq!(users(&dir.path().join("authhost.db")), ["alice", "bob"]);
        }

        /// The README's Python example, verbatim but for the extension's path, with the
        /// policy's defaults (`plugins`, `authhost.db`) taken from the working directory.
        /// Failed on the code before this test as the shell's did.
        #[test]
        fn python_sqlite3_runs_the_bundled_policy_as_the_readme_shows() {
            let dir = node_dir();
            let program = r#"
import sqlite3, sys
conn = sqlite3.connect("node.db")
conn.enable_load_extension(True)
conn.load_extension(sys.argv[1])
print(conn.execute("SELECT new_node(?)", ('{"public_key":"pk-office"}',)).fetchone())
print(conn.execute("SELECT user_login(?, ?)", ('{"name":"alice","password":"wonderland"}', '{"public_key":"pk-office"}')).fetchone())
print(conn.execute("SELECT user_signup(?, ?)", ('{"name":"carol","password":"carol-pass"}', '{"public_key":"pk-office"}')).fetchone())
print(conn.execute("SELECT user_signup(?, ?)", ('{"name":"carol","password":"other-pass"}', '{"public_key":"pk-office"}')).fetchone())
"#;
            let (lines, stderr) = python3_11(dir.path(), program, &[]);
            assert_eq!(lines, ["('primary',)", "(1,)", "(2,)", "(-1,)"], "{stderr}");
            assert_eq!(users(&dir.path().join("authhost.db")), ["alice", "carol"]);
        }

        /// Once `authhost_configure` was called, later calls start from its settings and say
        /// why they fail. The code before this test fell back to the environment (here a
        /// policy that would have answered 1) and blamed it for any failure.
        #[test]
        fn after_a_failed_authhost_configure_every_call_reports_its_cause() {
            let dir = node_dir();
            let script = format!(
                ".load {}\n\
                 SELECT authhost_configure('{{\"plugins\":\"no-such-plugins\",\"db\":\"authhost.db\"}}');\n\
                 SELECT user_login('{{\"name\":\"alice\"}}', '{{\"public_key\":\"pk-primary\"}}');\n\
                 SELECT new_node('{{\"public_key\":\"pk-primary\"}}');\n\
                 SELECT authhost_configure('{{\"plugin\":\"plugins\"}}');\n\
                 SELECT user_login('{{\"name\":\"alice\"}}', '{{\"public_key\":\"pk-primary\"}}');\n",
                extension().display()
            );
            let env = node_env();
            let (stdout, stderr) =
                sqlite3_shell_in(dir.path(), "node.db", &script, &borrowed(&env));
            assert_eq!(stdout, "", "no call may answer: {stderr}");
            let cause = "authhost could not start (settings from authhost_configure()): \
                         no-such-plugins: cannot read plugins";
            assert_eq!(stderr.matches(cause).count(), 3, "{stderr}");
            assert_eq!(
                stderr.matches("unknown field `plugin`").count(),
                2,
                "{stderr}"
            );
            assert!(!stderr.contains("environment"), "{stderr}");
        }

        /// A Python policy on the policy database, in a program without Python (the shell
        /// starts an interpreter of its own) and in `python3.11` (its own interpreter).
        #[cfg(feature = "python")]
        #[test]
        fn a_python_policy_uses_the_policy_database_in_both_programs() {
            let dir = tempfile::tempdir().unwrap();
            let plugins = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/policies/python_db/users")
                .display()
                .to_string();
            let env = [
                ("AUTHHOST_PLUGINS", plugins.as_str()),
                ("AUTHHOST_DB", "authhost.db"),
                ("AUTHHOST_TIMEOUT_MS", "20000"),
            ];
            let script = format!(
                ".load {}\n\
                 SELECT user_signup('{{\"name\":\"dave\",\"password\":\"pw-dave\"}}', '{{\"public_key\":\"pk-1\"}}');\n\
                 SELECT user_login('{{\"name\":\"dave\",\"password\":\"pw-dave\"}}', '{{}}');\n\
                 SELECT user_login('{{\"name\":\"dave\",\"password\":\"wrong\"}}', '{{}}');\n",
                extension().display()
            );
            let (stdout, stderr) = sqlite3_shell_in(dir.path(), "node.db", &script, &env);
            assert_eq!(
                stdout.lines().collect::<Vec<_>>(),
                ["1", "1", "-1"],
                "stderr: {stderr}"
            );
            let program = r#"
import sqlite3, sys
conn = sqlite3.connect("node.db")
conn.enable_load_extension(True)
conn.load_extension(sys.argv[1])
print(conn.execute("SELECT user_signup(?, ?)", ('{"name":"erin","password":"pw-erin"}', '{"public_key":"pk-2"}')).fetchone()[0])
print(conn.execute("SELECT user_login(?, ?)", ('{"name":"dave","password":"pw-dave"}', '{}')).fetchone()[0])
print(conn.execute("SELECT user_login(?, ?)", ('{"name":"erin","password":"pw-erin"}', '{}')).fetchone()[0])
"#;
            let (lines, stderr) = python3_11(dir.path(), program, &env);
            assert_eq!(lines, ["2", "1", "2"], "{stderr}");
            assert_eq!(users(&dir.path().join("authhost.db")), ["dave", "erin"]);
        }
    }
}

/// A timeout no clock reading can be added to is a configuration error, not a panic in the
/// load. Failed on the code before this test: `Instant + Duration::MAX` panicked in `build`.
#[test]
fn a_timeout_too_long_to_count_is_a_configuration_error() {
    let built = Host::builder()
        .plugins(policy("trivial.lua"))
        .db(":memory:")
        .workers(1)
        .timeout(Duration::MAX)
        .build();
    match built {
        Err(authhost::Error::Config(message)) => {
            assert!(
                message.contains("the timeout must be at most 365 days"),
                "{message}"
            )
        }
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("a host started with a timeout of Duration::MAX"),
    }
}
