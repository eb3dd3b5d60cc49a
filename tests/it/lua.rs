//! The Lua engine: errors and their messages, arguments, the sandbox, `authhost.json`,
//! loading rules.

use crate::common;

use authhost::{Error, ErrorKind, Host, NodeDecision, UserDecision};
use common::{builder, error_of, host, long_directory, policy};

#[test]
fn a_raised_error_names_file_line_and_message() {
    let host = host("lua/errors.lua");
    let error = error_of(&host.user_login("raise", "{}"));
    assert_eq!(error.kind, ErrorKind::Raised);
    assert!(
        error
            .message
            .ends_with("lua/errors.lua:9: boom: the user store is down"),
        "{}",
        error.message
    );
    assert!(
        !error.message.contains("stack traceback"),
        "{}",
        error.message
    );
}

#[test]
fn a_runtime_error_names_where_it_happened() {
    let host = host("lua/errors.lua");
    let error = error_of(&host.user_login("index_nil", "{}"));
    assert!(
        error
            .message
            .contains("lua/errors.lua:4: attempt to index a nil value"),
        "{}",
        error.message
    );
}

#[test]
fn an_error_from_an_authhost_function_points_at_the_calling_line() {
    let host = host("lua/errors.lua");
    let error = error_of(&host.user_login("bad_json", "{}"));
    assert!(
        error.message.contains("lua/errors.lua:15:"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("authhost.json.decode"),
        "{}",
        error.message
    );
}

#[test]
fn an_error_value_that_is_not_a_string_is_still_an_error() {
    let host = host("lua/errors.lua");
    assert_eq!(
        error_of(&host.user_login("raise_table", "{}")).kind,
        ErrorKind::Raised
    );
    // The same interpreter still answers.
    assert_eq!(
        host.user_login("fine", "{}").user(),
        Some(&UserDecision::UserId(1))
    );
}

#[test]
fn a_callback_no_plugin_defines_fails_closed() {
    let host = host("lua/only_node.lua");
    for outcome in [host.user_login("{}", "{}"), host.user_signup("{}", "{}")] {
        let error = error_of(&outcome);
        assert_eq!(error.kind, ErrorKind::MissingCallback);
        assert!(
            error.message.starts_with("no plugin defines on_user_"),
            "{}",
            error.message
        );
    }
    assert_eq!(host.new_node("{}").node(), Some(&NodeDecision::Secondary));
}

#[test]
fn arguments_arrive_exactly_as_sent() {
    let host = host("lua/echo.lua");
    let unicode = "héllo ✓ 🦀 \u{0} nul and\nnewline";
    let big = "x".repeat(100 * 1024);
    for (arg, length) in [
        ("", 0),
        ("a", 1),
        (unicode, unicode.len()),
        (big.as_str(), big.len()),
    ] {
        let outcome = host.user_login(arg, arg);
        let expected = if length == 0 {
            UserDecision::NewUser
        } else {
            UserDecision::UserId(length as i64)
        };
        assert_eq!(
            outcome.user(),
            Some(&expected),
            "argument of {length} bytes"
        );
    }
    // Different arguments are told apart.
    assert_eq!(
        host.user_login("a", "b").user(),
        Some(&UserDecision::NotAuthorized)
    );
}

#[test]
fn the_sandbox_refuses_what_the_contract_leaves_out() {
    let host = host("lua/sandbox.lua");
    let refused = [
        ("io", "global 'io'"),
        ("os_execute", "field 'execute'"),
        ("os_getenv", "field 'getenv'"),
        ("os_remove", "field 'remove'"),
        ("os_exit", "field 'exit'"),
        ("debug", "global 'debug'"),
        ("require", "global 'require'"),
        ("dofile", "global 'dofile'"),
        ("loadfile", "global 'loadfile'"),
        ("string_dump", "field 'dump'"),
        ("bytecode", "attempt to load a binary chunk"),
        ("package", "global 'package'"),
        ("collectgarbage", "global 'collectgarbage'"),
    ];
    for (probe, says) in refused {
        let error = error_of(&host.user_login(probe, "{}"));
        assert_eq!(error.kind, ErrorKind::Raised, "{probe}");
        assert!(error.message.contains(says), "{probe}: {}", error.message);
    }
    assert_eq!(
        host.user_login("allowed", "{}").user(),
        Some(&UserDecision::UserId(8))
    );
}

#[test]
fn json_decodes_and_encodes() {
    let host = host("lua/json_roundtrip.lua");
    let login = r#"{"name":"alice","id":77,"tags":["a","b"],"nested":{"n":1.5},"none":null}"#;
    assert_eq!(
        host.user_login(login, "{}").user(),
        Some(&UserDecision::UserId(77))
    );
    let host = common::host("lua/echo.lua");
    assert_eq!(
        host.new_node(r#"{"role":"async"}"#).node(),
        Some(&NodeDecision::Async)
    );
    assert_eq!(error_of(&host.new_node("not json")).kind, ErrorKind::Raised);
}

#[test]
fn a_syntax_error_is_a_load_error_with_file_and_line() {
    let err = builder("sets/syntax")
        .build()
        .err()
        .expect("the set must not load");
    match &err {
        Error::Load {
            file,
            line,
            message,
        } => {
            assert!(file.ends_with("sets/syntax/broken.lua"));
            assert_eq!(*line, Some(3));
            assert!(message.contains("unexpected symbol"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("sets/syntax/broken.lua:3: "),
        "{err}"
    );
}

#[test]
fn errors_at_load_time_name_file_and_line() {
    let top = builder("lua/top_level_error.lua").build().err().unwrap();
    assert!(
        top.to_string()
            .contains("top_level_error.lua:3: attempt to index a nil value"),
        "{top}"
    );
    let setup = builder("lua/setup_fails.lua").build().err().unwrap();
    assert!(
        setup
            .to_string()
            .contains("setup_fails.lua:3: cannot create the users table"),
        "{setup}"
    );
    let not_function = builder("lua/not_a_function.lua").build().err().unwrap();
    assert!(
        not_function
            .to_string()
            .contains("on_user_login must be a function, got a value of type integer"),
        "{not_function}"
    );
}

#[test]
fn two_plugins_defining_one_callback_is_a_load_error_naming_both() {
    let err = builder("sets/duplicate").build().err().unwrap();
    assert!(matches!(err, Error::DuplicateCallback { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("duplicate/a.lua") && message.contains("duplicate/b.lua"),
        "{message}"
    );
    assert!(message.contains("on_user_login"), "{message}");
}

#[test]
fn hidden_private_and_leftover_files_are_not_plugins() {
    let host = host("sets/mixed_ignored");
    let status = host.status();
    let files: Vec<String> = status
        .plugins
        .iter()
        .map(|p| p.file.display().to_string())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with("nodes.lua"));
    assert_eq!(host.new_node("{}").node(), Some(&NodeDecision::Primary));
}

#[test]
fn a_missing_plugins_path_is_a_clear_error() {
    let err = Host::builder()
        .plugins(policy("no/such/dir"))
        .build()
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("no/such/dir: cannot read plugins"),
        "{err}"
    );
}

#[test]
fn status_lists_plugins_and_callbacks() {
    let host = host("lua/returns.lua");
    let json = host.status().to_json();
    assert_eq!(json["generation"], 1);
    assert_eq!(json["workers"], 2);
    assert_eq!(json["last_error"], serde_json::Value::Null);
    let plugin = &json["plugins"][0];
    assert_eq!(plugin["language"], "lua");
    assert_eq!(
        plugin["callbacks"],
        serde_json::json!(["on_user_signup", "on_user_login", "on_new_node"])
    );
    host.user_login("int42", "{}");
    host.new_node("primary");
    let counters = &host.status().to_json()["counters"];
    assert_eq!(counters["requests"]["user_login"], 1);
    assert_eq!(counters["decisions"]["user_id"], 1);
    assert_eq!(counters["decisions"]["primary"], 1);
}

#[test]
fn errors_name_the_whole_path_however_long() {
    let root = tempfile::tempdir().unwrap();
    let dir = long_directory(root.path());
    let broken = dir.join("broken.lua");
    std::fs::copy(policy("sets/syntax/broken.lua"), &broken).unwrap();
    let err = Host::builder()
        .plugins(&broken)
        .db(":memory:")
        .workers(1)
        .build()
        .err()
        .expect("the plugin must not load");
    assert!(
        err.to_string()
            .contains(&format!("{}:3: ", broken.display())),
        "{err}"
    );
    assert!(matches!(err, Error::Load { line: Some(3), .. }), "{err:?}");

    let errors = dir.join("errors.lua");
    std::fs::copy(policy("lua/errors.lua"), &errors).unwrap();
    let host = Host::builder()
        .plugins(&errors)
        .db(":memory:")
        .workers(1)
        .build()
        .unwrap();
    let error = error_of(&host.user_login("index_nil", "{}"));
    assert!(
        error.message.contains(&format!(
            "{}:4: attempt to index a nil value",
            errors.display()
        )),
        "{}",
        error.message
    );
    // error() adds its own position; an error from a Rust function takes the script's frame
    // from Lua's traceback.
    let error = error_of(&host.user_login("raise", "{}"));
    assert_eq!(
        error.message,
        format!("{}:9: boom: the user store is down", errors.display())
    );
    let error = error_of(&host.user_login("bad_json", "{}"));
    assert!(
        error
            .message
            .starts_with(&format!("{}:15: ", errors.display())),
        "{}",
        error.message
    );
}

/// A callback that returns a string, here the message of an error it caught: the error
/// names the plugin's whole path and the callback, and the message inside the string names
/// the file too, however long its path. Failed on the code before this test:
/// `returned a string "@0@:5: …"`, with neither the file nor the callback.
#[test]
fn a_returned_string_is_an_error_naming_the_file_and_the_callback() {
    let root = tempfile::tempdir().unwrap();
    let short = root.path().join("r.lua");
    let long = long_directory(root.path()).join("returns_caught.lua");
    for path in [short, long] {
        std::fs::copy(policy("lua/returns_caught.lua"), &path).unwrap();
        let host = Host::builder()
            .plugins(&path)
            .db(":memory:")
            .workers(1)
            .build()
            .unwrap();
        let file = path.display().to_string();
        let error = error_of(&host.user_login("{}", "{}"));
        assert_eq!(error.kind, ErrorKind::BadReturn);
        assert_eq!(
            error.message,
            format!(
                "{file}: on_user_login returned a string \"{file}:5: the user store is down\", \
                 expected an integer user id (≥ 1), 0, -1 or -3"
            )
        );
        let error = error_of(&host.new_node("{}"));
        assert!(
            error.message.starts_with(&format!(
                "{file}: on_new_node returned a string \"{file}:5: the user store is down\", \
                 expected \"primary\""
            )),
            "{}",
            error.message
        );
    }
}
