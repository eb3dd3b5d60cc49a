//! Python policies: the decision mapping, exceptions, deadlines, output, helper modules,
//! mixed Lua + Python sets and concurrent calls, with real `.py` files under
//! `tests/policies/python/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use authhost::{Callback, Error, ErrorKind, Host, Language, NodeDecision, Outcome, UserDecision};

/// A generous timeout: the machine running the tests may be very busy.
const TIMEOUT: Duration = Duration::from_secs(10);

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policies/python")
}

fn policy(name: &str) -> PathBuf {
    policies().join(name)
}

fn host(plugins: impl Into<PathBuf>, workers: usize, timeout: Duration) -> Host {
    let plugins = plugins.into();
    Host::builder()
        .plugins(&plugins)
        .db(":memory:")
        .workers(workers)
        .timeout(timeout)
        .build()
        .unwrap_or_else(|e| panic!("{} does not load: {e}", plugins.display()))
}

fn load_error(plugins: impl Into<PathBuf>) -> Error {
    match Host::builder()
        .plugins(plugins.into())
        .db(":memory:")
        .workers(1)
        .timeout(Duration::from_millis(1500))
        .build()
    {
        Ok(_) => panic!("the set loaded"),
        Err(e) => e,
    }
}

fn user(outcome: &Outcome) -> &UserDecision {
    outcome.user().expect("a user decision")
}

fn node(outcome: &Outcome) -> &NodeDecision {
    outcome.node().expect("a node decision")
}

/// The error of an `error` decision, of the expected kind.
fn error_of(outcome: &Outcome, kind: ErrorKind) -> String {
    let error = outcome
        .decision
        .error_cause()
        .unwrap_or_else(|| panic!("expected an error, got {:?}", outcome.decision));
    assert_eq!(error.kind, kind, "{}", error.message);
    error.message.clone()
}

mod mapping {
    use super::*;

    fn login(host: &Host, key: &str) -> Outcome {
        host.user_login(key, "{}")
    }

    #[test]
    fn integers_and_integral_floats_are_decisions() {
        let host = host(policy("returns.py"), 1, TIMEOUT);
        assert_eq!(user(&login(&host, "42")), &UserDecision::UserId(42));
        assert_eq!(user(&login(&host, "max")), &UserDecision::UserId(i64::MAX));
        assert_eq!(user(&login(&host, "zero")), &UserDecision::NewUser);
        assert_eq!(user(&login(&host, "minus1")), &UserDecision::NotAuthorized);
        assert_eq!(user(&login(&host, "float42")), &UserDecision::UserId(42));
        assert_eq!(
            user(&login(&host, "float_minus1")),
            &UserDecision::NotAuthorized
        );
        assert_eq!(
            user(&host.user_signup("zero", "{}")),
            &UserDecision::NewUser
        );
        let minus3 = login(&host, "minus3");
        error_of(&minus3, ErrorKind::Script);
        assert_eq!(minus3.decision.code_json(), -3);
    }

    #[test]
    fn everything_else_is_an_error_that_says_what_came_back() {
        let host = host(policy("returns.py"), 1, TIMEOUT);
        // Named in Python's words, not Lua's (`None`, not `nil`).
        for (key, said) in [
            ("true", "a bool True"),
            ("false", "a bool False"),
            ("float42.5", "a float 42.5"),
            ("nan", "a float nan"),
            ("inf", "a float inf"),
            (
                "2**63",
                "the int 9223372036854775808 (outside the 64-bit range)",
            ),
            (
                "-2**63-1",
                "the int -9223372036854775809 (outside the 64-bit range)",
            ),
            ("minus2", "the int -2"),
            ("minus4", "the int -4"),
            ("str42", "a str '42'"),
            ("bytes1", "a value of type bytes"),
            ("none", "None"),
            ("dict", "a value of type dict"),
            ("tuple", "a value of type tuple"),
            ("list", "a value of type list"),
        ] {
            let outcome = login(&host, key);
            let message = error_of(&outcome, ErrorKind::BadReturn);
            assert!(
                message.ends_with(&format!(
                    "returns.py: on_user_login returned {said}, expected an integer user id (≥ 1), 0, -1 or -3"
                )),
                "{key}: {message}"
            );
            assert_eq!(outcome.decision.code_json(), -3, "{key}");
        }
    }

    #[test]
    fn node_roles_must_be_exact() {
        let host = host(policy("returns.py"), 1, TIMEOUT);
        assert_eq!(node(&host.new_node("primary")), &NodeDecision::Primary);
        assert_eq!(node(&host.new_node("secondary")), &NodeDecision::Secondary);
        assert_eq!(node(&host.new_node("async")), &NodeDecision::Async);
        assert_eq!(
            node(&host.new_node("unauthorized")),
            &NodeDecision::Unauthorized
        );
        assert_eq!(node(&host.new_node("minus1")), &NodeDecision::Unauthorized);
        error_of(&host.new_node("minus3"), ErrorKind::Script);
        for (key, said) in [
            ("Primary", "a str 'Primary'"),
            ("admin", "a str 'admin'"),
            ("none", "None"),
            ("one", "the int 1"),
            ("true", "a bool True"),
            ("bytes", "a value of type bytes"),
        ] {
            let message = error_of(&host.new_node(key), ErrorKind::BadReturn);
            assert!(
                message.contains(&format!(
                    "returns.py: on_new_node returned {said}, expected \"primary\""
                )),
                "{key}: {message}"
            );
        }
    }
}

mod exceptions {
    use super::*;

    #[test]
    fn an_exception_is_an_error_with_its_type_message_and_place() {
        let host = host(policy("raises.py"), 1, TIMEOUT);
        let file = policy("raises.py").display().to_string();

        let message = error_of(&host.user_signup("{}", "{}"), ErrorKind::Raised);
        assert_eq!(
            message,
            format!("{file}:25: ValueError: signups are closed")
        );

        let message = error_of(
            &host.user_login(r#"{"name":"mallory"}"#, "{}"),
            ErrorKind::Raised,
        );
        assert!(
            message.starts_with(&format!("{file}:15: PolicyError: mallory is not welcome")),
            "{message}"
        );
        // The last frames, innermost last.
        assert!(
            message.ends_with(&format!(
                "(traceback: {file}:21 in on_user_login > {file}:15 in check)"
            )),
            "{message}"
        );
    }

    #[test]
    fn the_place_is_in_the_policy_even_when_the_library_raised() {
        let host = host(policy("raises.py"), 1, TIMEOUT);
        let file = policy("raises.py").display().to_string();
        let message = error_of(&host.user_login("not json", "{}"), ErrorKind::Raised);
        assert!(
            message.starts_with(&format!(
                "{file}:10: json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
            )),
            "{message}"
        );
        assert!(message.contains("json/decoder.py:"), "{message}");
        let missing = error_of(&host.user_login("{}", "{}"), ErrorKind::Raised);
        assert!(
            missing.starts_with(&format!("{file}:16: KeyError: 'id'")),
            "{missing}"
        );
    }

    /// At a path of 150+ characters, as a user's checkout may be, the place, the traceback's
    /// frames and a load error's `FILE:LINE:` name the whole path.
    #[test]
    fn places_and_tracebacks_name_the_whole_path_however_long() {
        let root = tempfile::tempdir().unwrap();
        let dir = crate::common::long_directory(root.path());
        let raises = dir.join("raises.py");
        std::fs::copy(policy("raises.py"), &raises).unwrap();
        let file = raises.display().to_string();
        let host = host(&raises, 1, TIMEOUT);
        let message = error_of(
            &host.user_login(r#"{"name":"mallory"}"#, "{}"),
            ErrorKind::Raised,
        );
        assert_eq!(
            message,
            format!(
                "{file}:15: PolicyError: mallory is not welcome \
                 (traceback: {file}:21 in on_user_login > {file}:15 in check)"
            )
        );
        let message = error_of(&host.user_login("not json", "{}"), ErrorKind::Raised);
        assert!(message.starts_with(&format!("{file}:10: ")), "{message}");

        let syntax = dir.join("syntax.py");
        std::fs::copy(policy("load_errors/syntax.py"), &syntax).unwrap();
        let error = load_error(&syntax);
        assert!(
            matches!(&error, Error::Load { file, line: Some(3), .. } if *file == syntax),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}:3: SyntaxError: ", syntax.display())),
            "{error}"
        );
    }

    #[test]
    fn system_exit_does_not_stop_the_host() {
        let host = host(policy("raises.py"), 1, TIMEOUT);
        let message = error_of(&host.new_node("{}"), ErrorKind::Raised);
        assert!(message.contains("SystemExit: 3"), "{message}");
        assert_eq!(
            user(&host.user_login(r#"{"id":5}"#, "{}")),
            &UserDecision::UserId(5)
        );
    }
}

mod deadlines {
    use super::*;
    use crate::common::each_in_own_process;

    each_in_own_process!(
        a_runaway_loop_is_stopped_and_the_worker_serves_the_next_request,
        loops_that_catch_exceptions_are_stopped_too,
        a_call_blocked_in_native_code_is_answered_at_its_deadline,
        a_call_ending_near_its_deadline_does_not_disturb_the_next_one,
        a_plugin_that_never_finishes_loading_is_a_load_error,
    );

    /// The hosts' timeout: what stops the runaways, and also the deadline of the trivial call
    /// after each, which must come within it. Short enough to keep the tests quick; long
    /// enough for a busy machine to answer a trivial call well within it, even once the
    /// runaway's worker had to be replaced: 1.5 s was not, under heavy load (the calls took
    /// 10-170 ms at a load average of 12-17 on two cores, and now and then over 1.5 s).
    const SHORT: Duration = Duration::from_millis(3000);

    fn a_runaway_loop_is_stopped_and_the_worker_serves_the_next_request() {
        let host = host(policy("runaway.py"), 1, SHORT);
        for round in 1..=3 {
            let message = error_of(&host.user_login("loop", "{}"), ErrorKind::Timeout);
            assert!(message.starts_with("timeout"), "{message}");
            // The only worker was in the loop: it is free again and answers correctly.
            assert_eq!(
                user(&host.user_login(round.to_string(), "{}")),
                &UserDecision::UserId(round)
            );
        }
    }

    fn loops_that_catch_exceptions_are_stopped_too() {
        let host = host(policy("runaway.py"), 1, SHORT);
        error_of(&host.new_node("{}"), ErrorKind::Timeout);
        assert_eq!(
            user(&host.user_login("11", "{}")),
            &UserDecision::UserId(11)
        );
        error_of(&host.user_signup("{}", "{}"), ErrorKind::Timeout);
        assert_eq!(
            user(&host.user_login("12", "{}")),
            &UserDecision::UserId(12)
        );
    }

    fn a_call_blocked_in_native_code_is_answered_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("gate");
        let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success(), "mkfifo");
        let host = host(policy("blocked.py"), 1, SHORT);
        let (sender, answers) = mpsc::channel();
        host.call_async(
            Callback::UserLogin,
            [fifo.display().to_string(), "{}".into()],
            move |outcome| sender.send(outcome).unwrap(),
        );
        // The script stays blocked until this test writes to the FIFO, which it does only
        // after the answer: only the watchdog can have given it.
        let outcome = answers.recv_timeout(TIMEOUT * 3).expect("an answer");
        let message = error_of(&outcome, ErrorKind::Timeout);
        assert!(message.starts_with("timeout"), "{message}");
        // Opening the FIFO for writing releases the script's `open`; the timeout pending
        // since the deadline is then raised before its `read`, and it may close the FIFO
        // before this write: a broken pipe means the script was released all the same.
        match std::fs::write(&fifo, "7") {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("{e}"),
            _ => {}
        }
        // The only worker, free again, serves the next calls.
        std::fs::write(dir.path().join("plain"), "8").unwrap();
        let plain = dir.path().join("plain").display().to_string();
        for _ in 0..3 {
            assert_eq!(
                user(&host.user_login(plain.as_str(), "{}")),
                &UserDecision::UserId(8)
            );
        }
    }

    fn a_call_ending_near_its_deadline_does_not_disturb_the_next_one() {
        let host = host(policy("runaway.py"), 1, SHORT);
        let short = SHORT.as_millis();
        for (i, busy) in [short - 100, short, short + 100].into_iter().enumerate() {
            let outcome = host.user_login(format!("busy:{busy}"), "{}");
            // Either answer is right for a call this close to its deadline.
            match user(&outcome) {
                UserDecision::UserId(7) => {}
                UserDecision::Error(e) => assert_eq!(e.kind, ErrorKind::Timeout),
                other => panic!("{other:?}"),
            }
            let next = 100 + i as i64;
            assert_eq!(
                user(&host.user_login(next.to_string(), "{}")),
                &UserDecision::UserId(next)
            );
        }
    }

    fn a_plugin_that_never_finishes_loading_is_a_load_error() {
        let file = policy("load_errors/top_loop.py");
        match load_error(&file) {
            Error::Load {
                file: f,
                line,
                message,
            } => {
                assert_eq!(f, file);
                assert!(message.starts_with("timeout"), "{message}");
                assert!(matches!(line, Some(2 | 3)), "{line:?}");
            }
            other => panic!("{other}"),
        }
    }
}

mod output {
    use super::*;

    #[test]
    fn print_and_standard_streams_go_to_the_log_never_to_stdout() {
        let plugin = policy("prints.py");
        let output = Command::new(env!("CARGO_BIN_EXE_authhost"))
            .args([
                "call",
                "user_login",
                "alice",
                "{}",
                "--db",
                ":memory:",
                "--plugins",
            ])
            .arg(&plugin)
            .output()
            .expect("running authhost");
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "stdout: {stdout}");
        let decision: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(decision["decision"], "user_id");
        assert_eq!(decision["code"], 42);

        let stderr = String::from_utf8(output.stderr).unwrap();
        let tag = plugin.display().to_string();
        for line in [
            "prints.py: loading",
            "login from alice",
            "no newline",
            "written to sys.stdout",
            "written to sys.stderr",
            "printed to stderr",
            "logged with authhost.log.info",
            "logged with authhost.log.warn 42",
            "logged with authhost.log.error",
        ] {
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains(&format!("{tag}: {line}"))),
                "{line:?} is not in the log, tagged with the plugin:\n{stderr}"
            );
        }
    }
}

mod loading {
    use super::*;

    fn load_message(name: &str) -> (Option<u32>, String) {
        let file = policy(name);
        match load_error(&file) {
            Error::Load {
                file: f,
                line,
                message,
            } => {
                assert_eq!(f, file);
                (line, message)
            }
            other => panic!("{name}: {other}"),
        }
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let (line, message) = load_message("load_errors/syntax.py");
        assert_eq!(line, Some(3));
        assert!(message.starts_with("SyntaxError: "), "{message}");
    }

    #[test]
    fn an_exception_at_the_top_level_names_its_line() {
        let (line, message) = load_message("load_errors/top_raises.py");
        assert_eq!(line, Some(4));
        assert!(
            message.starts_with("json.decoder.JSONDecodeError: "),
            "{message}"
        );
        let (line, message) = load_message("load_errors/bad_import.py");
        assert_eq!(line, Some(1));
        assert!(message.contains("ModuleNotFoundError"), "{message}");
    }

    #[test]
    fn setup_errors_are_load_errors() {
        let (line, message) = load_message("load_errors/setup_fails.py");
        assert_eq!(line, Some(2));
        assert!(
            message.starts_with("RuntimeError: the table could not be created"),
            "{message}"
        );
    }

    #[test]
    fn callbacks_must_be_functions_that_take_their_arguments() {
        let (_, message) = load_message("load_errors/not_callable.py");
        assert_eq!(message, "on_user_login is a int, expected a function");
        let (line, message) = load_message("load_errors/wrong_arity.py");
        assert_eq!(line, Some(1));
        assert!(
            message.starts_with("on_user_login cannot be called with 2 argument(s)"),
            "{message}"
        );
        let (_, message) = load_message("load_errors/async_callback.py");
        assert!(
            message.starts_with("on_new_node is an async function"),
            "{message}"
        );
    }

    #[test]
    fn a_callback_defined_in_lua_and_python_is_a_load_error_naming_both() {
        match load_error(policy("load_errors/duplicate")) {
            Error::DuplicateCallback {
                callback,
                first,
                second,
            } => {
                assert_eq!(callback, Callback::NewNode);
                let mut names =
                    [first, second].map(|p| p.file_name().unwrap().to_string_lossy().into_owned());
                names.sort();
                assert_eq!(names, ["duplicate.lua", "duplicate.py"]);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn setup_runs_once_per_load_whatever_the_workers() {
        let host = host(policy("setup_once.py"), 4, TIMEOUT);
        let first = match user(&host.user_login("", "{}")) {
            UserDecision::UserId(n) => *n,
            other => panic!("{other:?}"),
        };
        // Every worker sees the same module, set up once.
        for _ in 0..20 {
            assert_eq!(
                user(&host.user_login("", "{}")),
                &UserDecision::UserId(first)
            );
        }
        host.reload().unwrap();
        assert_eq!(
            user(&host.user_login("", "{}")),
            &UserDecision::UserId(first + 1)
        );
    }
}

mod helpers {
    use super::*;

    #[test]
    fn plugins_import_helper_modules_and_packages_from_their_directory() {
        let host = host(policies().join("helpers"), 2, TIMEOUT);
        let plugins = host.status().plugins;
        // `_names.py` is a helper, not a plugin; `rules/` is a package.
        assert_eq!(plugins.len(), 1, "{plugins:?}");
        assert_eq!(
            user(&host.user_login("bob", "{}")),
            &UserDecision::UserId(2)
        );
        assert_eq!(
            user(&host.user_login("eve", "{}")),
            &UserDecision::NotAuthorized
        );
        assert_eq!(
            node(&host.new_node(r#"{"public_key":"pk-office"}"#)),
            &NodeDecision::Primary
        );
        assert_eq!(
            node(&host.new_node(r#"{"public_key":"pk-x"}"#)),
            &NodeDecision::Unauthorized
        );
    }

    #[test]
    fn a_changed_helper_takes_effect_at_the_reload() {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&policies().join("helpers"), dir.path());
        let host = host(dir.path(), 2, TIMEOUT);
        assert_eq!(
            user(&host.user_login("alice", "{}")),
            &UserDecision::UserId(1)
        );
        std::fs::write(dir.path().join("_names.py"), "USERS = {\"alice\": 100}\n").unwrap();
        std::fs::write(
            dir.path().join("rules/roles.py"),
            "ROLES = {\"pk-office\": \"async\"}\n",
        )
        .unwrap();
        host.reload().unwrap();
        assert_eq!(
            user(&host.user_login("alice", "{}")),
            &UserDecision::UserId(100)
        );
        assert_eq!(
            node(&host.new_node(r#"{"public_key":"pk-office"}"#)),
            &NodeDecision::Async
        );
        // Nothing was written into the plugins directory (no __pycache__).
        assert!(!dir.path().join("__pycache__").exists());
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                if entry.file_name() != "__pycache__" {
                    copy_dir(&entry.path(), &target);
                }
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
}

mod mixed {
    use super::*;

    #[test]
    fn lua_and_python_plugins_answer_their_own_callbacks() {
        let host = host(policies().join("mixed"), 2, TIMEOUT);
        let languages: Vec<(String, Language)> = host
            .status()
            .plugins
            .iter()
            .map(|p| {
                (
                    p.file.file_name().unwrap().to_string_lossy().into_owned(),
                    p.language,
                )
            })
            .collect();
        assert_eq!(
            languages,
            [
                ("nodes.lua".to_string(), Language::Lua),
                ("users.py".to_string(), Language::Python)
            ]
        );
        let office = host.new_node(r#"{"public_key":"pk-office"}"#);
        assert_eq!(node(&office), &NodeDecision::Primary);
        assert!(office.plugin.as_deref().unwrap().ends_with("nodes.lua"));
        let alice = host.user_login(r#"{"name":"alice"}"#, "{}");
        assert_eq!(user(&alice), &UserDecision::UserId(1));
        assert!(alice.plugin.as_deref().unwrap().ends_with("users.py"));
        assert_eq!(
            user(&host.user_signup(r#"{"name":"carol"}"#, "{}")),
            &UserDecision::NewUser
        );
    }
}

mod concurrency {
    use super::*;

    #[test]
    fn many_threads_calling_python_each_get_their_own_answer() {
        let host = host(policy("concurrent/echo.py"), 4, TIMEOUT);
        std::thread::scope(|scope| {
            for thread in 0..8i64 {
                let host = &host;
                scope.spawn(move || {
                    for i in 0..200i64 {
                        let n = thread * 1000 + i + 1;
                        let outcome = host.user_login(format!(r#"{{"n":{n}}}"#), "{}");
                        assert_eq!(user(&outcome), &UserDecision::UserId(n));
                        let role = host.new_node(format!(r#"{{"n":{n}}}"#));
                        let expected = if n % 2 == 1 {
                            NodeDecision::Secondary
                        } else {
                            NodeDecision::Async
                        };
                        assert_eq!(node(&role), &expected);
                    }
                });
            }
        });
    }

    #[test]
    fn pipelined_calls_each_get_their_own_answer() {
        let host = host(policy("concurrent/echo.py"), 3, TIMEOUT);
        let (sender, answers) = mpsc::channel();
        for n in 1..=2000i64 {
            let sender = sender.clone();
            host.call_async(
                Callback::UserLogin,
                [format!(r#"{{"n":{n}}}"#), "{}".into()],
                move |outcome| {
                    let _ = sender.send((n, outcome));
                },
            );
        }
        drop(sender);
        let mut seen = 0;
        for (n, outcome) in answers.iter() {
            assert_eq!(user(&outcome), &UserDecision::UserId(n));
            seen += 1;
        }
        assert_eq!(seen, 2000);
    }
}

mod octodb_style {
    use super::*;

    fn example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/octodb_style.py")
    }

    #[test]
    fn the_octodb_style_example_works_unchanged() {
        let host = host(example(), 2, TIMEOUT);
        let office = r#"{"public_key":"pk-office","address":"10.0.0.7"}"#;
        let stranger = r#"{"public_key":"pk-unknown"}"#;
        assert_eq!(node(&host.new_node(office)), &NodeDecision::Primary);
        assert_eq!(
            node(&host.new_node(r#"{"public_key":"pk-backup"}"#)),
            &NodeDecision::Async
        );
        assert_eq!(node(&host.new_node(stranger)), &NodeDecision::Unauthorized);
        let bob = r#"{"name":"bob","password":"builder of bridges"}"#;
        assert_eq!(
            user(&host.user_login(bob, office)),
            &UserDecision::UserId(2)
        );
        assert_eq!(
            user(&host.user_login(r#"{"name":"bob","password":"builder"}"#, office)),
            &UserDecision::NotAuthorized,
            "the password is checked"
        );
        assert_eq!(
            user(&host.user_login(r#"{"name":"bob"}"#, office)),
            &UserDecision::NotAuthorized
        );
        assert_eq!(
            user(&host.user_login(bob, stranger)),
            &UserDecision::NotAuthorized
        );
        assert_eq!(
            user(&host.user_login(r#"{"name":"mallory","password":"x"}"#, office)),
            &UserDecision::NotAuthorized
        );
        // Sign-ups are closed in this example.
        assert_eq!(
            user(&host.user_signup(r#"{"name":"carol","password":"correct horse"}"#, office)),
            &UserDecision::NotAuthorized
        );
        error_of(&host.user_signup("not json", office), ErrorKind::Script);
        // node_info that is not JSON: the policy answers -3.
        error_of(&host.new_node("not json"), ErrorKind::Script);
    }
}

mod late_start {
    use super::*;
    use crate::common::{alone, run_alone};

    const FRESH: &str = "python::late_start::in_a_fresh_process";

    #[test]
    fn workers_started_before_python_take_a_thread_state_when_a_reload_brings_it() {
        // Python starts once per process; only a fresh process shows a host whose first set
        // has no Python plugin.
        run_alone(FRESH);
    }

    #[test]
    #[ignore = "run in its own process by the test above"]
    fn in_a_fresh_process() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            policies().join("mixed/nodes.lua"),
            dir.path().join("nodes.lua"),
        )
        .unwrap();
        let host = host(dir.path(), 2, TIMEOUT);
        assert_eq!(
            node(&host.new_node(r#"{"public_key":"pk-office"}"#)),
            &NodeDecision::Primary
        );
        if alone(FRESH) {
            // SAFETY: Py_IsInitialized may be called at any time, before initialization too.
            let initialized = unsafe { pyo3::ffi::Py_IsInitialized() };
            assert_eq!(initialized, 0, "a Lua set started Python");
        }
        std::fs::copy(
            policies().join("mixed/users.py"),
            dir.path().join("users.py"),
        )
        .unwrap();
        host.reload().unwrap();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        let bob = host.user_login(r#"{"name":"bob"}"#, "{}");
                        assert_eq!(user(&bob), &UserDecision::UserId(2));
                    }
                });
            }
        });
        assert_eq!(
            node(&host.new_node(r#"{"public_key":"pk-office"}"#)),
            &NodeDecision::Primary
        );
    }
}

/// When the system will not start the thread that interrupts Python past its deadline, the
/// host does not start and says why, exit 1. A stack larger than the address space makes
/// every thread spawned without a size of its own fail (`RUST_MIN_STACK`, which the
/// enforcer thread takes; the workers, which size their stacks, would not be reached). Failed
/// on the code before this test: `.expect` panicked, exit 101.
#[test]
fn a_thread_the_system_will_not_start_is_an_error_that_names_it_not_a_panic() {
    let output = Command::new(env!("CARGO_BIN_EXE_authhost"))
        .args([
            "call",
            "user_login",
            "42",
            "{}",
            "--db",
            ":memory:",
            "--plugins",
        ])
        .arg(policy("returns.py"))
        .env("RUST_MIN_STACK", (1u64 << 50).to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr.contains("cannot start the thread authhost-python-enforcer: "),
        "{stderr}"
    );
}
