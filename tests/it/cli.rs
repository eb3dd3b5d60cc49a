//! The `authhost` binary: `check`, `call` and `bench`, their output and exit codes (§7).

use crate::common;

use std::process::{Command, Output};

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
