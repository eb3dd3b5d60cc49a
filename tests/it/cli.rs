//! The `authhost` binary: `check`, `call` and `bench`, their output and exit codes (§7).

use crate::common;

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};

use common::policy;

fn authhost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authhost"))
        .args(args)
        .args(["--db", ":memory:"])
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn plugins(relative: &str) -> String {
    policy(relative).display().to_string()
}

#[test]
fn check_lists_plugins_languages_and_callbacks() {
    let output = authhost(&["check", "--plugins", &plugins("lua/returns.lua")]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert!(
        text.contains("returns.lua\tlua\ton_user_signup, on_user_login, on_new_node"),
        "{text}"
    );
}

#[test]
fn check_of_a_broken_set_prints_file_line_message_and_exits_1() {
    let output = authhost(&["check", "--plugins", &plugins("sets/syntax")]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("sets/syntax/broken.lua:3: "), "{text}");
}

#[test]
fn call_prints_exactly_one_decision_line_even_when_the_policy_prints() {
    let output = authhost(&[
        "call",
        "user_login",
        "{\"name\":\"alice\"}",
        "{}",
        "--plugins",
        &plugins("lua/prints.lua"),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(json["decision"], "user_id");
    assert_eq!(json["code"], 5);
    // What the policy printed went to the log, tagged with its file.
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("prints.lua: login attempt\t{\"name\":\"alice\"}\t42\tnil\ttrue"),
        "{log}"
    );
    assert!(
        log.contains("prints.lua: top-level print while loading"),
        "{log}"
    );
    assert!(log.contains("prints.lua: warn line"), "{log}");
}

/// An error a Lua policy caught and logged names the policy's whole path, at a path of 150+
/// characters too. Failed on the code before this test: the log said `@0@:4:`, the short
/// name the chunk is loaded under (Lua cuts chunk names to 60 bytes).
#[test]
fn a_caught_error_the_policy_logs_names_its_file_however_long_the_path() {
    let root = tempfile::tempdir().unwrap();
    let file = common::long_directory(root.path()).join("caught.lua");
    std::fs::copy(policy("lua/caught.lua"), &file).unwrap();
    let file = file.display().to_string();
    let output = authhost(&["call", "user_login", "{}", "{}", "--plugins", &file]);
    assert_eq!(output.status.code(), Some(0));
    let log = String::from_utf8_lossy(&output.stderr);
    for logged in ["caught", "printed"] {
        assert!(
            log.contains(&format!(
                "{file}: {logged}: {file}:4: the user store is down"
            )),
            "{log}"
        );
    }
}

#[test]
fn call_exits_0_whatever_the_decision() {
    let output = authhost(&[
        "call",
        "new_node",
        "Primary",
        "--plugins",
        &plugins("lua/returns.lua"),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(json["decision"], "error");
    assert_eq!(json["code"], -3);
    assert!(json["error"].as_str().unwrap().contains("\"Primary\""));
}

#[test]
fn call_exits_1_when_the_set_does_not_load_and_2_on_usage_errors() {
    let broken = authhost(&[
        "call",
        "user_login",
        "{}",
        "{}",
        "--plugins",
        &plugins("sets/duplicate"),
    ]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(stdout(&broken).is_empty());
    assert!(String::from_utf8_lossy(&broken.stderr).contains("on_user_login is defined by both"));
    let wrong_arity = authhost(&[
        "call",
        "user_login",
        "{}",
        "--plugins",
        &plugins("lua/returns.lua"),
    ]);
    assert_eq!(wrong_arity.status.code(), Some(2));
    let unknown = authhost(&[
        "call",
        "user_logout",
        "{}",
        "{}",
        "--plugins",
        &plugins("lua/returns.lua"),
    ]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn bench_reports_throughput_latency_and_decisions() {
    let output = authhost(&[
        "bench",
        "--callback",
        "user_login",
        "--requests",
        "2000",
        "--concurrency",
        "16",
        "--plugins",
        &plugins("lua/returns.lua"),
        "int42",
        "{}",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(json["requests"], 2000);
    assert_eq!(json["decisions"]["user_id"], 2000);
    assert!(json["throughput_per_s"].as_f64().unwrap() > 0.0);
    let latency = &json["latency_us"];
    assert!(latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
    assert!(latency["p99"].as_f64().unwrap() <= latency["max"].as_f64().unwrap());
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn options_no_host_can_run_with_are_usage_errors_exit_2() {
    let too_many = (authhost::MAX_WORKERS + 1).to_string();
    let cases: [(&str, &[&str]); 4] = [
        ("--workers", &["--workers", "0"]),
        ("--timeout-ms", &["--timeout-ms", "0"]),
        ("--workers", &["--workers", &too_many]),
        ("--session-idle", &["--session-idle", "0"]),
    ];
    let returns = plugins("lua/returns.lua");
    for (option, bad) in cases {
        for command in [
            &["call", "user_login", "int42", "{}"][..],
            &["check"][..],
            &["serve", "--no-watch"][..],
        ] {
            let mut args = command.to_vec();
            args.extend_from_slice(&["--plugins", &returns]);
            args.extend_from_slice(bad);
            let output = authhost(&args);
            let log = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {log}");
            assert!(
                log.starts_with(&format!("error: invalid value '{}' for '{option} ", bad[1])),
                "{args:?}: {log}"
            );
            assert!(log.contains("try '--help'"), "{args:?}: {log}");
            assert!(!log.contains("does not load"), "{args:?}: {log}");
            assert!(stdout(&output).is_empty(), "{args:?}");
        }
    }
}

#[test]
fn a_thread_the_system_will_not_start_is_an_error_not_a_panic() {
    // A default stack no system can map: a thread that takes it fails to start.
    let output = Command::new(env!("CARGO_BIN_EXE_authhost"))
        .args(["call", "user_login", "int42", "{}", "--db", ":memory:"])
        .args(["--plugins", &plugins("lua/returns.lua")])
        .env("RUST_MIN_STACK", (1u64 << 60).to_string())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs");
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    // The first thread started without a stack size of its own: the watchdog (workers and
    // the load thread size theirs for scripts).
    assert!(
        log.starts_with(
            "authhost: cannot start the host: cannot start the thread authhost-watchdog: "
        ),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn a_cases_file_that_does_not_parse_is_a_usage_error_not_a_failing_case() {
    let file = plugins("cli/unfinished_cases.json");
    let output = authhost(&["test", &file, "--plugins", &plugins("lua/returns.lua")]);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.starts_with(&format!("error: {file}: not a cases file")),
        "{log}"
    );
    assert!(log.contains("\nUsage: authhost test "), "{log}");
    assert!(stdout(&output).is_empty(), "no case ran");

    let missing = plugins("cli/no_such_cases.json");
    let output = authhost(&["test", &missing, "--plugins", &plugins("lua/returns.lua")]);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.starts_with(&format!(
            "error: {missing}: No such file or directory (os error 2)\n"
        )),
        "{log}"
    );
}

#[test]
fn an_error_names_its_cause_once() {
    let missing = plugins("cli/no_such_plugins");
    let output = authhost(&["call", "user_login", "{}", "{}", "--plugins", &missing]);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert_eq!(
        log.trim_end(),
        format!(
            "authhost: the plugin set does not load: {missing}: cannot read plugins: \
             No such file or directory (os error 2)"
        )
    );
}

#[test]
fn test_help_names_the_database_the_cases_run_against() {
    let output = authhost(&["test", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    assert!(
        help.contains(
            "The cases run against a fresh in-memory database (`:memory:`) unless `--db` is given"
        ),
        "{help}"
    );
    assert!(!help.contains("[default: authhost.db]"), "{help}");
}

#[test]
fn check_refuses_a_function_named_like_a_callback_that_is_none() {
    for (set, file, said) in [
        (
            "cli/typo_lua",
            "login.lua:5",
            "on_user_logon is not a callback; did you mean on_user_login?",
        ),
        (
            "cli/typo_python",
            "nodes.py:9",
            "on_newnode is not a callback; did you mean on_new_node?",
        ),
    ] {
        let output = authhost(&["check", "--plugins", &plugins(set)]);
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{set}: {text}");
        assert!(
            text.starts_with(&format!("{}/{file}: {said}", plugins(set))),
            "{set}: {text}"
        );
        // The same load error keeps a host from starting on the set.
        let call = authhost(&["call", "user_login", "{}", "{}", "--plugins", &plugins(set)]);
        assert_eq!(call.status.code(), Some(1), "{set}");
        assert!(stderr(&call).contains(said), "{set}: {}", stderr(&call));
    }
}

#[test]
fn check_fails_on_a_set_that_answers_nothing_which_still_runs_failing_closed() {
    let empty = plugins("cli/empty");
    let output = authhost(&["check", "--plugins", &empty]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        format!("{empty}: no plugins (*.lua or *.py files): every request is refused\n")
    );

    let helpers = plugins("cli/no_callbacks");
    let output = authhost(&["check", "--plugins", &helpers]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        format!(
            "{helpers}/helpers.lua\tlua\t(no callbacks)\n{helpers}: no plugin defines a \
             callback (on_user_signup, on_user_login or on_new_node): every request is refused\n"
        )
    );

    // A host still runs such a set (as after the last plugin file is deleted), refusing
    // every request, and says why in its log.
    let call = authhost(&["call", "user_login", "{}", "{}", "--plugins", &helpers]);
    assert_eq!(call.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_str(stdout(&call).trim()).unwrap();
    assert_eq!(json["decision"], "error");
    assert_eq!(json["error"], "no plugin defines on_user_login");
    assert!(
        stderr(&call).contains("no plugin defines a callback"),
        "{}",
        stderr(&call)
    );
}

/// `authhost … | head -1`: once the reader has gone, each one-shot command stops with a
/// message and exit 1, where printing used to panic (exit 101, a backtrace on stderr).
#[test]
fn a_closed_stdout_is_an_error_not_a_panic() {
    let returns = plugins("lua/returns.lua");
    let cases = plugins("cli/two_cases.json");
    let commands: [&[&str]; 3] = [
        &["check", "--plugins", &returns],
        &["call", "new_node", "primary", "--plugins", &returns],
        &["test", &cases, "--plugins", &returns],
    ];
    for args in commands {
        // A pipe whose read end is closed before the program starts: its first write fails.
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_authhost"))
            .args(args)
            .args(["--db", ":memory:"])
            .stdout(writer)
            .output()
            .expect("the binary runs");
        let log = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {log}");
        assert_eq!(
            log.trim_end(),
            "authhost: cannot write to stdout: Broken pipe (os error 32)",
            "{args:?}"
        );
    }
}

/// A misspelt `--callback` or a wrong count of arguments to `bench` is a usage error (exit 2,
/// clap's message) before any host starts, as for `call`; it was exit 1, and with a plugins
/// directory that does not load the message blamed the plugins instead.
#[test]
fn bench_usage_mistakes_exit_2() {
    let returns = plugins("lua/returns.lua");
    let missing = plugins("cli/no_such_plugins");
    let mistakes: [(&[&str], &str); 3] = [
        (
            &["bench", "--callback", "user_logon", "--plugins", &returns],
            "error: invalid value 'user_logon' for '--callback <CALLBACK>': unknown callback \
             \"user_logon\": expected user_signup, user_login or new_node\n",
        ),
        (
            &["bench", "--callback", "user_logon", "--plugins", &missing],
            "error: invalid value 'user_logon' for '--callback <CALLBACK>'",
        ),
        (
            &[
                "bench",
                "--callback",
                "new_node",
                "a",
                "b",
                "--plugins",
                &returns,
            ],
            "error: on_new_node takes 1 argument(s), 2 given\n",
        ),
    ];
    for (args, said) in mistakes {
        let output = authhost(args);
        let log = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {log}");
        assert!(log.starts_with(said), "{args:?}: {log}");
        assert!(log.contains("try '--help'"), "{log}");
        assert!(stdout(&output).is_empty(), "{args:?}: no benchmark ran");
    }
}

/// A case whose `code` no answer with its decision can have (`"-1"` quoted, for
/// `unauthorized`) is a broken cases file (exit 2, naming the case and the code expected):
/// it used to run and FAIL as `expected unauthorized "-1", got unauthorized -1`, exit 1,
/// which reads like a policy bug.
#[test]
fn a_code_that_cannot_go_with_its_decision_is_a_broken_cases_file() {
    let file = plugins("cli/string_code_cases.json");
    let output = authhost(&["test", &file, "--plugins", &plugins("lua/returns.lua")]);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.starts_with(&format!(
            "error: {file}: case 1 (\"a refused node, its code quoted by mistake\"): code \"-1\" \
             cannot go with unauthorized: expected -1\n"
        )),
        "{log}"
    );
    assert!(stdout(&output).is_empty(), "no case ran");
}

/// A stderr that takes no write.
#[derive(Clone, Copy, Debug)]
enum Unwritable {
    /// `/dev/full`: every write fails with ENOSPC.
    Full,
    /// A pipe whose reader has gone: every write fails with EPIPE.
    NoReader,
    /// No fd 2 at all (`2>&-`).
    Closed,
}

const UNWRITABLE: [Unwritable; 3] = [Unwritable::Full, Unwritable::NoReader, Unwritable::Closed];

/// Runs the binary with `args`, its stderr `unwritable` and `stdin` as its input.
fn authhost_with_stderr(args: &[&str], unwritable: Unwritable, stdin: &str) -> Output {
    let binary = env!("CARGO_BIN_EXE_authhost");
    let mut command = match unwritable {
        Unwritable::Closed => {
            let mut sh = Command::new("sh");
            sh.args(["-c", "exec \"$0\" \"$@\" 2>&-", binary]);
            sh
        }
        _ => Command::new(binary),
    };
    command.args(args).args(["--db", ":memory:"]);
    match unwritable {
        Unwritable::Full => {
            let full = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap();
            command.stderr(full);
        }
        Unwritable::NoReader => {
            let mut ends = [0; 2];
            // SAFETY: `pipe` fills in two new descriptors, each owned once below.
            assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0);
            // SAFETY: each descriptor `pipe` returned is open and owned by nothing else.
            let [reader, writer] = ends.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
            drop(reader);
            command.stderr(writer);
        }
        Unwritable::Closed => {}
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // The command keeps the parent's copy of the pipe's writer until it is dropped.
    drop(command);
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// `authhost call user_login x {}` on `plugins`, logging everything, its stderr `unwritable`.
fn login_with_stderr(plugins: &str, unwritable: Unwritable) -> Output {
    let args = ["call", "user_login", "x", "{}", "--plugins", plugins];
    authhost_with_stderr(
        &[&args[..], &["--log-level", "trace"]].concat(),
        unwritable,
        "",
    )
}

/// A message on a stderr that cannot take it is dropped: the exit status is the one the
/// contract gives (§7), the decision is on stdout. Failed on the code before this test with
/// /dev/full and the readerless pipe: `eprintln!` panicked, exit 101 instead of 1. (A
/// closed fd 2 passed already: the Rust runtime opens /dev/null in its place.)
#[test]
fn an_unwritable_stderr_changes_no_exit_status_and_no_decision() {
    let lua = plugins("lua/prints.lua");
    for what in UNWRITABLE {
        let output = login_with_stderr("/nonexistent/plugins", what);
        assert_eq!(output.status.code(), Some(1), "stderr {what:?}");
        assert_eq!(stdout(&output), "", "stderr {what:?}");
    }
    for what in UNWRITABLE {
        // The policy prints and logs at every level: each line is written to stderr.
        let output = login_with_stderr(&lua, what);
        assert_eq!(output.status.code(), Some(0), "stderr {what:?}");
        let json: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
        assert_eq!(json["code"], 5, "stderr {what:?}");
    }
    for what in UNWRITABLE {
        // A usage error prints clap's message and exits 2.
        let output = authhost_with_stderr(&["serve", "--workers", "0"], what, "");
        assert_eq!(output.status.code(), Some(2), "stderr {what:?}");
    }
}

/// `authhost serve` on stdio with a stderr that takes nothing: the policy logs on every
/// request, the service answers each and exits 0 at the end of its input.
#[test]
fn serve_answers_and_exits_0_with_an_unwritable_stderr() {
    let lua = plugins("lua/prints.lua");
    let requests: String = (1..=3)
        .map(|id| {
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"user_login\",\"params\":[\"x\",\"{{}}\"]}}\n"
            )
        })
        .collect();
    for what in UNWRITABLE {
        let output = authhost_with_stderr(
            &[
                "serve",
                "--no-watch",
                "--plugins",
                &lua,
                "--log-level",
                "trace",
            ],
            what,
            &requests,
        );
        assert_eq!(output.status.code(), Some(0), "stderr {what:?}");
        let text = stdout(&output);
        assert_eq!(text.lines().count(), 3, "stderr {what:?}: {text}");
        for line in text.lines() {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(json["result"]["code"], 5, "stderr {what:?}: {line}");
        }
    }
}
