//! The decision log keeps passwords out of reach: keyed argument digests (HMAC-SHA256 under
//! a per-deployment key file), files only authhost's user can read, and a reopen on SIGHUP
//! so that logrotate can move it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{login, policy, result, Conn, Service, PATIENCE};

/// The digest the log used to carry: SHA-256 over each argument's length (u64 LE) and bytes.
fn unkeyed_sha256(args: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for arg in args {
        hasher.update((arg.len() as u64).to_le_bytes());
        hasher.update(arg.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn entries(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// One login with `password` through a stdio service logging to `dir`; the log's last entry.
fn log_one_login(dir: &Path, password: &str, node: &str) -> Value {
    let log = dir.join("decisions.jsonl");
    let mut service = Service::start(
        &policy("echo.lua"),
        "stdio",
        &["--decision-log", log.to_str().unwrap()],
    );
    let mut conn = service.stdio();
    let login_info = json!({"id": 31, "name": "alice", "password": password}).to_string();
    let answer = conn.call("user_login", json!([login_info, node]));
    assert_eq!(result(&answer)["code"], 31);
    conn.close_input();
    assert!(service.wait().success());
    entries(&log).pop().expect("the login is logged")
}

#[test]
fn a_word_list_does_not_find_the_password_in_the_log() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = r#"{"public_key":"pk-office"}"#;
    let password = "wonderland";
    let entry = log_one_login(one.path(), password, node);
    let line = entry.to_string();
    assert!(!line.contains(password));
    // The attack the issue describes: hash each guess with the guessable rest of the
    // arguments and look for it in the log. The true password is in the list.
    for guess in ["123456", "password", "alice", "wonderland", "hunter2"] {
        let login_info = json!({"id": 31, "name": "alice", "password": guess}).to_string();
        let guessed = unkeyed_sha256(&[&login_info, node]);
        assert!(
            !line.contains(&guessed),
            "{guess} is found by an unkeyed digest"
        );
    }
    assert!(entry.get("args_sha256").is_none(), "{line}");
    let digest = entry["args_hmac"].as_str().expect("a keyed digest");
    // Another deployment (its own key) digests the same request differently.
    let other = log_one_login(two.path(), password, node);
    assert_ne!(other["args_hmac"].as_str().unwrap(), digest);
    // Both files only for authhost's user.
    for dir in [one.path(), two.path()] {
        assert_eq!(mode(&dir.join("decisions.jsonl")), 0o600);
        assert_eq!(mode(&dir.join("decisions.jsonl.key")), 0o600);
    }
    // The same key gives the same digest: repeated requests stay recognizable.
    let again = log_one_login(one.path(), password, node);
    assert_eq!(again["args_hmac"].as_str().unwrap(), digest);
}

#[test]
fn the_key_file_can_be_named_and_one_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let key = dir.path().join("keys").join("decision-log.key");
    std::fs::create_dir(key.parent().unwrap()).unwrap();
    let args = [
        "--decision-log",
        log.to_str().unwrap(),
        "--decision-log-key",
        key.to_str().unwrap(),
    ];
    let mut service = Service::start(&policy("echo.lua"), "stdio", &args);
    let mut conn = service.stdio();
    assert_eq!(result(&conn.call("user_login", login(5)))["code"], 5);
    conn.close_input();
    assert!(service.wait().success());
    assert_eq!(mode(&key), 0o600);
    assert!(!dir.path().join("decisions.jsonl.key").exists());
    let digest = authhost::decision_log::DigestKey::load_or_create(&key)
        .unwrap()
        .digest(&[
            login(5)["login_info"].to_string(),
            "{\"public_key\":\"k\"}".into(),
        ]);
    assert_eq!(entries(&log)[0]["args_hmac"], digest.to_hex());

    // A key others may read protects nothing: serve refuses to start on it.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_authhost"))
        .arg("serve")
        .arg("--plugins")
        .arg(policy("echo.lua"))
        .args(["--db", ":memory:", "--no-watch"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

/// Asks for `status` until the generation is `generation` (a SIGHUP's reload is done).
fn await_generation(conn: &mut Conn, generation: u64) {
    let deadline = Instant::now() + PATIENCE;
    while result(&conn.call("status", Value::Null))["generation"] != generation {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn sighup_reopens_the_log_after_logrotate_renamed_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let rotated = dir.path().join("decisions.jsonl.1");
    let socket = dir.path().join("authhost.sock");
    let mut service = Service::start(
        &policy("echo.lua"),
        &format!("unix:{}", socket.display()),
        &["--decision-log", log.to_str().unwrap()],
    );
    let mut conn = service.connect();
    assert_eq!(result(&conn.call("user_login", login(1)))["code"], 1);
    std::fs::rename(&log, &rotated).unwrap();
    // SIGHUP reopens the log, then reloads: once the reload shows, the reopen is queued
    // ahead of any later entry.
    service.signal(libc::SIGHUP);
    await_generation(&mut conn, 2);
    assert_eq!(result(&conn.call("user_login", login(2)))["code"], 2);
    service.signal(libc::SIGTERM);
    assert!(service.wait().success(), "{}", service.stderr_text());
    let before = entries(&rotated);
    let after = entries(&log);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["code"], 1);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["code"], 2);
    assert_eq!(after[0]["generation"], 2);
    assert_eq!(mode(&log), 0o600);
}
