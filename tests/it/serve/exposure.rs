//! Who may reach the service and what they may do: `reload` only on trusted (stdio, unix:)
//! connections, TCP beyond loopback only with `--expose`, a Unix socket's mode and group.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use serde_json::{json, Value};

use super::{error_code, login, policy, result, Service};

#[test]
fn reload_is_refused_over_tcp_and_allowed_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("authhost.sock");
    let unix = Service::start(
        &policy("echo.lua"),
        &format!("unix:{}", socket.display()),
        &[],
    );
    let tcp = Service::start(&policy("echo.lua"), "tcp:127.0.0.1:0", &[]);

    let mut conn = tcp.connect();
    let refused = conn.call("reload", Value::Null);
    assert_eq!(error_code(&refused), -32003, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("unix:") && message.contains("SIGHUP"),
        "{message}"
    );
    // Inside a batch too, and nothing was reloaded.
    conn.send(&json!([
        {"jsonrpc": "2.0", "id": "r", "method": "reload"},
        {"jsonrpc": "2.0", "id": "s", "method": "status"},
    ]));
    let answers = conn.recv();
    let answers = answers.as_array().unwrap();
    let reload = answers.iter().find(|a| a["id"] == "r").unwrap();
    assert_eq!(error_code(reload), -32003);
    let status = answers.iter().find(|a| a["id"] == "s").unwrap();
    assert_eq!(result(status)["generation"], 1, "no reload happened");
    // Decisions and status stay available over TCP.
    assert_eq!(result(&conn.call("user_login", login(4)))["code"], 4);

    let mut conn = unix.connect();
    let reloaded = conn.call("reload", Value::Null);
    assert_eq!(result(&reloaded)["generation"], 2, "{reloaded}");
}

/// Runs `authhost serve` on the echo policy with `args`, expecting it to exit by itself.
fn serve_exit(args: &[&str]) -> (Option<i32>, String) {
    crate::service::serve_exit(&policy("echo.lua"), args)
}

#[test]
fn tcp_beyond_loopback_needs_expose() {
    for listen in ["tcp:0.0.0.0:0", "tcp:[::]:0"] {
        let (code, stderr) = serve_exit(&["--listen", listen]);
        assert_eq!(code, Some(2), "{listen}: {stderr}");
        assert!(stderr.contains("--expose"), "{listen}: {stderr}");
    }
    // With the flag it serves, and says loudly what that means.
    let mut service = Service::start(&policy("echo.lua"), "tcp:0.0.0.0:0", &["--expose"]);
    let stderr = service.stderr_text();
    let warning = stderr
        .lines()
        .find(|line| line.contains("WARN") && line.contains("--expose"))
        .unwrap_or_else(|| panic!("no warning naming --expose: {stderr}"));
    assert!(warning.contains("beyond loopback"), "{warning}");
    assert!(service.addr.starts_with("tcp:0.0.0.0:"), "{}", service.addr);
    let mut conn = service.connect();
    assert_eq!(result(&conn.call("user_login", login(6)))["code"], 6);
    service.signal(libc::SIGTERM);
    assert!(service.wait().success());
}

#[test]
fn a_unix_socket_gets_its_mode_and_group() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("authhost.sock");
    let listen = format!("unix:{}", socket.display());
    let nogroup = authhost::serve::group_id("nogroup").expect("Debian's nogroup");
    for (args, mode, gid) in [
        (vec![], 0o600, std::fs::metadata(dir.path()).unwrap().gid()),
        (
            vec!["--socket-mode", "0660", "--socket-group", "nogroup"],
            0o660,
            nogroup,
        ),
        (
            vec!["--socket-mode", "666", "--socket-group", "1"],
            0o666,
            1,
        ),
    ] {
        let mut service = Service::start(&policy("echo.lua"), &listen, &args);
        let meta = std::fs::symlink_metadata(&socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, mode, "{args:?}: {:o}", meta.mode());
        assert_eq!(meta.gid(), gid, "{args:?}");
        assert_eq!(
            result(&service.connect().call("user_login", login(3)))["code"],
            3
        );
        service.signal(libc::SIGTERM);
        assert!(service.wait().success());
    }
}

#[test]
fn bad_socket_options_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("s.sock").display());
    for (args, needle) in [
        (vec!["--listen", &listen, "--socket-mode", "0999"], "octal"),
        (vec!["--listen", &listen, "--socket-mode", "01777"], "0777"),
        (
            vec![
                "--listen",
                &listen,
                "--socket-group",
                "no-such-group-authhost",
            ],
            "no-such-group-authhost",
        ),
        (
            vec!["--listen", "tcp:127.0.0.1:0", "--socket-mode", "0660"],
            "unix:",
        ),
    ] {
        let (code, stderr) = serve_exit(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
