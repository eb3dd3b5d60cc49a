//! Sessions, limits and the state store (issue 15) through the real binary: `authhost serve`
//! on a Unix socket and a real database file, one or two processes on it.
//!
//! Time limits are generous: they only stop a test that hangs, they never judge speed.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(120);

fn policy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies/sessions")
        .join(file)
}

// Each scenario runs once with the Lua policy and once with its Python twin.
use crate::common::in_both_languages;

in_both_languages!(
    auth_then_token_then_clear_then_refused,
    idle_timeout_and_absolute_lifetime_expire_tokens,
    two_processes_share_tokens_and_limits,
    throttling_stops_password_checks_and_is_counted,
    tokens_are_never_stored_or_logged_in_clear,
    concurrent_auth_calls_never_share_a_token,
    a_nonce_is_taken_exactly_once_by_workers_of_two_processes,
    a_policy_opens_checks_and_closes_a_session,
);

/// An `authhost serve` on a Unix socket in `dir`, on the database `db`; killed on drop.
struct Service {
    child: Child,
    socket: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Service {
    fn start(policy: &Path, dir: &Path, name: &str, db: &Path, extra: &[&str]) -> Service {
        let socket = dir.join(name);
        let mut child = Command::new(env!("CARGO_BIN_EXE_authhost"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--db")
            .arg(db)
            .args(["--workers", "2", "--timeout-ms", "30000", "--no-watch"])
            .args(["--log-level", "debug"])
            .arg("--plugins")
            .arg(policy)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting authhost serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (listening, started) = channel();
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on ") {
                    let _ = listening.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        if started.recv_timeout(PATIENCE).is_err() {
            let _ = child.kill();
            panic!("the service did not start: {:?}", stderr.lock().unwrap());
        }
        Service {
            child,
            socket,
            stderr,
        }
    }

    fn connect(&self) -> Conn {
        let stream = UnixStream::connect(&self.socket).expect("connecting");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            next_id: 1,
        }
    }

    fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Conn {
    /// Calls `method` with `params` and returns the result (panics on a JSON-RPC error).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(self.writer, "{request}").unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a response");
        let response: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(response["id"], id, "{response}");
        response
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("an error: {response}"))
    }

    fn auth(&mut self, name: &str, password: &str) -> Value {
        let login = json!({"name": name, "password": password}).to_string();
        self.call("auth", json!({"login_info": login, "node_info": "{}"}))
    }

    fn token(&mut self, token: &str) -> Value {
        self.call("auth_token", json!({ "token": token }))
    }

    fn clear(&mut self, token: &str) -> Value {
        self.call("auth_clear", json!({ "token": token }))
    }
}

fn token_of(result: &Value) -> String {
    result["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {result}"))
        .to_string()
}

fn assert_refused(result: &Value) {
    assert_eq!(result["decision"], "not_authorized", "{result}");
    assert_eq!(result["code"], -1, "{result}");
    assert!(result.get("token").is_none(), "{result}");
}

fn password_checks(db: &Path) -> i64 {
    let connection = rusqlite::Connection::open(db).unwrap();
    connection
        .query_row("SELECT n FROM checks", [], |r| r.get(0))
        .unwrap()
}

fn auth_then_token_then_clear_then_refused(policy: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(policy, dir.path(), "s", &dir.path().join("p.db"), &[]);
    let mut conn = service.connect();

    let wrong = conn.auth("alice", "wrong");
    assert_refused(&wrong);

    let granted = conn.auth("alice", "right");
    assert_eq!(granted["decision"], "user_id", "{granted}");
    assert_eq!(granted["code"], 42);
    assert_eq!(granted["expires_in"], 300, "the default idle timeout");
    let token = token_of(&granted);
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    let live = conn.token(&token);
    assert_eq!(
        live,
        json!({"decision": "user_id", "code": 42, "expires_in": 300})
    );
    // A script sees the same session.
    let node = conn.call(
        "new_node",
        json!({ "node_info": json!({"token": token}).to_string() }),
    );
    assert_eq!(node["decision"], "primary", "{node}");

    assert_eq!(conn.clear(&token), json!({"cleared": true}));
    assert_refused(&conn.token(&token));
    assert_eq!(conn.clear(&token), json!({"cleared": false}));
    let node = conn.call(
        "new_node",
        json!({ "node_info": json!({"token": token}).to_string() }),
    );
    assert_eq!(node["decision"], "unauthorized", "{node}");

    // Strangers' tokens: made up, truncated, altered, of the wrong type.
    let mut altered = token.clone().into_bytes();
    altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
    for bad in [
        "",
        "x",
        &token[1..],
        std::str::from_utf8(&altered).unwrap(),
        "' OR 1=1 --",
    ] {
        assert_refused(&conn.token(bad));
        assert_eq!(conn.clear(bad), json!({"cleared": false}));
    }
    let mut raw = service.connect();
    writeln!(
        raw.writer,
        r#"{{"jsonrpc":"2.0","id":1,"method":"auth_token","params":{{"token":5}}}}"#
    )
    .unwrap();
    let mut line = String::new();
    raw.reader.read_line(&mut line).unwrap();
    let response: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(response["error"]["code"], -32602, "{response}");

    let status = conn.call("status", json!({}));
    assert_eq!(status["sessions"]["opened"], 1, "{status}");
    assert_eq!(status["sessions"]["cleared"], 1, "{status}");
    assert!(
        status["sessions"]["refreshed"].as_u64().unwrap() >= 2,
        "{status}"
    );
}

fn idle_timeout_and_absolute_lifetime_expire_tokens(policy: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    // Idle after 1 s.
    let idle = Service::start(policy, dir.path(), "idle", &db, &["--session-idle", "1"]);
    let mut conn = idle.connect();
    let token = token_of(&conn.auth("alice", "right"));
    assert_eq!(conn.token(&token)["code"], 42);
    std::thread::sleep(Duration::from_millis(1600));
    assert_refused(&conn.token(&token));
    let status = conn.call("status", json!({}));
    assert_eq!(status["sessions"]["expired"], 1, "{status}");

    // Used every 0.5 s, well within its 4 s idle timeout, it still ends at its 6 s lifetime.
    let max = Service::start(
        policy,
        dir.path(),
        "max",
        &db,
        &["--session-idle", "4", "--session-max", "6"],
    );
    let mut conn = max.connect();
    let opened = std::time::Instant::now();
    let token = token_of(&conn.auth("alice", "right"));
    let mut last_live = Duration::ZERO;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(500));
        let checked = conn.token(&token);
        if checked["decision"] != "user_id" {
            assert_refused(&checked);
            // Refreshed, it lived past its idle timeout, and it ended at its lifetime.
            assert!(last_live > Duration::from_secs(4), "{last_live:?}");
            return;
        }
        last_live = opened.elapsed();
    }
    panic!("the token outlived its absolute lifetime");
}

fn two_processes_share_tokens_and_limits(policy: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let one = Service::start(policy, dir.path(), "one", &db, &[]);
    let two = Service::start(policy, dir.path(), "two", &db, &[]);
    let (mut a, mut b) = (one.connect(), two.connect());

    let token = token_of(&a.auth("alice", "right"));
    assert_eq!(b.token(&token)["code"], 42, "issued by one, live on two");
    assert_eq!(b.clear(&token), json!({"cleared": true}));
    assert_refused(&a.token(&token));

    // Three attempts per name: two on one process, one on the other, then both refuse.
    assert_refused(&a.auth("bob", "wrong"));
    assert_refused(&b.auth("bob", "wrong"));
    assert_refused(&a.auth("bob", "wrong"));
    let before = password_checks(&db);
    assert_refused(&b.auth("bob", "right"));
    assert_refused(&a.auth("bob", "right"));
    assert_eq!(
        password_checks(&db),
        before,
        "throttled logins check no password"
    );
}

fn throttling_stops_password_checks_and_is_counted(policy: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let service = Service::start(policy, dir.path(), "s", &db, &[]);
    let mut conn = service.connect();
    for _ in 0..3 {
        assert_refused(&conn.auth("carol", "wrong"));
    }
    assert_eq!(password_checks(&db), 3);
    for _ in 0..5 {
        assert_refused(&conn.auth("carol", "right"));
    }
    assert_eq!(password_checks(&db), 3, "no check once throttled");
    let status = conn.call("status", json!({}));
    assert_eq!(status["sessions"]["throttled"], 5, "{status}");
    // Another name is not throttled, and a success resets its count.
    assert_eq!(conn.auth("dave", "wrong")["code"], -1);
    assert_eq!(conn.auth("dave", "wrong")["code"], -1);
    assert_eq!(conn.auth("dave", "right")["code"], 42);
    assert_eq!(conn.auth("dave", "wrong")["code"], -1);
    assert_eq!(conn.auth("dave", "right")["code"], 42);
    assert_eq!(password_checks(&db), 8);
}

fn tokens_are_never_stored_or_logged_in_clear(policy: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let service = Service::start(policy, dir.path(), "s", &db, &[]);
    let mut conn = service.connect();
    let tokens: Vec<String> = (0..20)
        .map(|_| token_of(&conn.auth("erin", "right")))
        .collect();
    for token in &tokens {
        assert_eq!(conn.token(token)["code"], 42);
    }
    // The database, its WAL and shared memory, as bytes.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("p.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    let rows: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM authhost_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 20, "the sessions are in the file");
    let logs = service.logs();
    for token in &tokens {
        let needle = token.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "a token is in the database file in clear"
        );
        assert!(!logs.contains(token.as_str()), "a token is in the logs");
    }
}

fn concurrent_auth_calls_never_share_a_token(policy: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let service = Arc::new(Service::start(policy, dir.path(), "s", &db, &[]));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let service = service.clone();
            std::thread::spawn(move || {
                let mut conn = service.connect();
                (0..50)
                    .map(|_| token_of(&conn.auth("frank", "right")))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for thread in threads {
        for token in thread.join().unwrap() {
            assert!(seen.insert(token), "a token was issued twice");
        }
    }
    assert_eq!(seen.len(), 400);
}

fn a_nonce_is_taken_exactly_once_by_workers_of_two_processes(policy: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let services = [
        Arc::new(Service::start(policy, dir.path(), "one", &db, &[])),
        Arc::new(Service::start(policy, dir.path(), "two", &db, &[])),
    ];
    for round in 0..10 {
        let nonce = format!("nonce-{round}");
        let put = services[0].connect().call(
            "user_signup",
            json!({"signup_info": json!({"put": nonce}).to_string(), "node_info": "{}"}),
        );
        assert_eq!(put["decision"], "new_user", "{put}");
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let service = services[i % 2].clone();
                let nonce = nonce.clone();
                std::thread::spawn(move || {
                    let info = json!({"take": nonce}).to_string();
                    service.connect().call(
                        "user_signup",
                        json!({"signup_info": info, "node_info": "{}"}),
                    )
                })
            })
            .collect();
        let results: Vec<Value> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let winners = results.iter().filter(|r| r["code"] == 7).count();
        let losers = results.iter().filter(|r| r["code"] == -1).count();
        assert_eq!((winners, losers), (1, 7), "{results:?}");
    }
}

fn a_policy_opens_checks_and_closes_a_session(policy: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(policy, dir.path(), "s", &dir.path().join("p.db"), &[]);
    let result = service.connect().call(
        "user_signup",
        json!({"signup_info": r#"{"cycle":true}"#, "node_info": "{}"}),
    );
    assert_eq!(result["code"], 9, "{result}");
}

// ---------------------------------------------------------------------------------------
// The store itself, as an embedder uses it, on a real file.

fn store_on(db: &Path, idle: Duration) -> authhost::sessions::Store {
    let config = authhost::Host::builder()
        .db(db)
        .session_idle(idle)
        .config()
        .clone();
    config.session_store().unwrap()
}

fn soon() -> std::time::Instant {
    std::time::Instant::now() + PATIENCE
}

#[test]
fn the_sliding_window_admits_max_hits_then_refuses_until_old_hits_leave() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_on(&dir.path().join("p.db"), Duration::from_secs(300));
    let window = Duration::from_millis(1500);
    let hits: Vec<bool> = (0..5)
        .map(|_| store.hit("k", 3, window, soon()).unwrap())
        .collect();
    assert_eq!(hits, [true, true, true, false, false]);
    assert!(
        store.hit("other", 3, window, soon()).unwrap(),
        "keys are apart"
    );
    std::thread::sleep(Duration::from_millis(1700));
    assert!(
        store.hit("k", 3, window, soon()).unwrap(),
        "the old hits left"
    );
    store.reset("k", soon()).unwrap();
    assert_eq!(
        (0..4)
            .map(|_| store.hit("k", 3, window, soon()).unwrap())
            .collect::<Vec<_>>(),
        [true, true, true, false]
    );
    // Bad input is an error naming the cause, never a silent pass.
    let error = store.hit("", 3, window, soon()).unwrap_err().to_string();
    assert!(error.contains("limits.hit: the key"), "{error}");
    let error = store
        .hit("k", 3, Duration::ZERO, soon())
        .unwrap_err()
        .to_string();
    assert!(error.contains("window"), "{error}");
}

#[test]
fn the_purge_deletes_expired_sessions_and_state_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let store = store_on(&db, Duration::from_secs(300));
    let short = store
        .open(1, Some(Duration::from_millis(200)), soon())
        .unwrap();
    let long = store.open(2, None, soon()).unwrap();
    store
        .put("gone", "v", Duration::from_millis(200), soon())
        .unwrap();
    store
        .put("kept", "v", Duration::from_secs(60), soon())
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(store.purge(soon()).unwrap(), 1);
    let rows: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM authhost_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(store.check(&short.token, soon()).unwrap(), None);
    assert_eq!(
        store.check(&long.token, soon()).unwrap().unwrap().user_id,
        2
    );
    assert_eq!(store.get("gone", soon()).unwrap(), None);
    assert_eq!(store.take("kept", soon()).unwrap().as_deref(), Some("v"));
    assert_eq!(store.take("kept", soon()).unwrap(), None, "taken once");
}

#[test]
fn the_host_api_gives_typed_session_results() {
    let dir = tempfile::tempdir().unwrap();
    let host = authhost::Host::builder()
        .plugins(policy("login.lua"))
        .db(dir.path().join("p.db"))
        .workers(2)
        .session_idle(Duration::from_secs(60))
        .build()
        .unwrap();
    let node = "{}";
    let refused = host.auth(r#"{"name":"gina","password":"wrong"}"#, node);
    assert_eq!(refused.session, None);
    assert_eq!(
        refused.outcome.user(),
        Some(&authhost::UserDecision::NotAuthorized)
    );
    assert!(refused.to_json().get("token").is_none());

    let granted = host.auth(r#"{"name":"gina","password":"right"}"#, node);
    assert_eq!(
        granted.outcome.user(),
        Some(&authhost::UserDecision::UserId(42))
    );
    let session = granted.session.clone().expect("a session for user_id");
    assert_eq!(session.expires_in, 60);
    assert_eq!(granted.to_json()["token"], session.token.as_str());

    let live = host.auth_token(&session.token).unwrap();
    assert_eq!((live.user_id, live.expires_in), (42, 60));
    assert!(host.auth_clear(&session.token).unwrap());
    assert_eq!(
        host.auth_token(&session.token),
        Err(authhost::TokenRefused::NotAuthorized)
    );
    assert!(!host.auth_clear(&session.token).unwrap());
    assert_eq!(host.status().sessions["opened"], 1);
}
