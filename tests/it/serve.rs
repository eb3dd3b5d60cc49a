//! `authhost serve` and `authhost test`, driven through the real binary: stdio, a Unix
//! socket and TCP (loopback only), bad input, pipelining, many connections, disconnects,
//! back-pressure, SIGHUP reload, SIGTERM drain, the decision log.
//!
//! Time limits are generous: they only stop a test that hangs, they never judge speed.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

// Areas of the service with helpers of their own; they use this module's `Service` and `Conn`.
mod batches;
mod decision_log;
mod examples;
mod exposure;

pub(crate) use crate::service::PATIENCE;

fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies/serve")
        .join(name)
}

// ---------------------------------------------------------------------------------------
// A running service.

/// An `authhost serve` child process on one listener (see [`crate::service::Service`]).
struct Service {
    process: crate::service::Service,
    addr: String,
}

impl Service {
    /// Starts `authhost serve --listen LISTEN --no-watch` on `plugins` and waits until it
    /// listens.
    fn start(plugins: &Path, listen: &str, extra: &[&str]) -> Service {
        Service::start_watching(plugins, listen, &[&["--no-watch"], extra].concat())
    }

    /// Starts `authhost serve --listen LISTEN` on `plugins`, watching them unless `extra`
    /// says `--no-watch`, and waits until it listens.
    fn start_watching(plugins: &Path, listen: &str, extra: &[&str]) -> Service {
        let process = crate::service::Service::spawn(plugins, &[listen], extra);
        let addr = process.addrs[0].clone();
        Service { process, addr }
    }

    /// A connection to a socket service.
    fn connect(&self) -> Conn {
        if let Some(path) = self.addr.strip_prefix("unix:") {
            let stream = UnixStream::connect(path).expect("connecting to the unix socket");
            let closer = stream.try_clone().unwrap();
            let mut conn = Conn::new(stream.try_clone().unwrap(), stream);
            conn.hang_up = Some(Box::new(move || {
                let _ = closer.shutdown(std::net::Shutdown::Both);
            }));
            conn
        } else if let Some(host_port) = self.addr.strip_prefix("tcp:") {
            let stream = TcpStream::connect(host_port).expect("connecting over TCP");
            stream.set_nodelay(true).unwrap();
            let closer = stream.try_clone().unwrap();
            let mut conn = Conn::new(stream.try_clone().unwrap(), stream);
            conn.hang_up = Some(Box::new(move || {
                let _ = closer.shutdown(std::net::Shutdown::Both);
            }));
            conn
        } else {
            panic!("not a socket service: {}", self.addr)
        }
    }

    /// The connection of a stdio service: its stdin and stdout. Only once.
    fn stdio(&mut self) -> Conn {
        let (stdout, stdin) = self.process.take_stdio();
        Conn::new(stdout, stdin)
    }

    fn signal(&self, signal: libc::c_int) {
        self.process.signal(signal);
    }

    /// Waits for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        self.process.wait()
    }

    /// Closes a stdio service's input and returns every answer it writes until it exits
    /// (it answers all it read first). Its whole stderr is then in `stderr_text`.
    fn answers_until_exit(&mut self, mut conn: Conn) -> Vec<Value> {
        conn.close_input();
        assert!(self.wait().success(), "{}", self.stderr_text());
        let mut answers = Vec::new();
        // Ends when the service's stdout closes; the time limit only stops a hang.
        while let Ok(answer) = conn.answers.recv_timeout(PATIENCE) {
            answers.push(answer);
        }
        self.process.read_all_stderr();
        answers
    }

    fn stderr_text(&self) -> String {
        self.process.stderr_text()
    }
}

// ---------------------------------------------------------------------------------------
// A client connection.

/// One client connection: lines in, JSON values out (read by a thread, with time limits).
struct Conn {
    writer: Option<Box<dyn Write + Send>>,
    answers: Receiver<Value>,
    next_id: i64,
    /// Closes a socket connection both ways (dropping the `Conn` alone would not: its
    /// reader thread holds the socket too).
    hang_up: Option<Box<dyn FnOnce() + Send>>,
}

impl Conn {
    fn new(reader: impl Read + Send + 'static, writer: impl Write + Send + 'static) -> Conn {
        let (sender, answers) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("the service wrote a line that is not JSON ({e}): {line}")
                });
                if sender.send(value).is_err() {
                    break;
                }
            }
        });
        Conn {
            writer: Some(Box::new(writer)),
            answers,
            next_id: 1,
            hang_up: None,
        }
    }

    /// Disconnects a socket connection at once, whatever is in flight.
    fn hang_up(mut self) {
        (self.hang_up.take().expect("a socket connection"))();
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let writer = self
            .writer
            .as_mut()
            .expect("the connection is open for writing");
        writer.write_all(bytes).expect("writing a request");
        writer.flush().unwrap();
    }

    fn send(&mut self, request: &Value) {
        let mut line = request.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes());
    }

    /// Sends a request with a fresh id and returns the id.
    fn ask(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            request["params"] = params;
        }
        self.send(&request);
        id
    }

    fn recv(&self) -> Value {
        match self.answers.recv_timeout(PATIENCE) {
            Ok(value) => value,
            Err(RecvTimeoutError::Timeout) => panic!("no answer within {PATIENCE:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the connection closed"),
        }
    }

    /// Asks and waits for the answer (nothing else may be pending).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.ask(method, params);
        let answer = self.recv();
        assert_eq!(
            answer["id"],
            json!(id),
            "answer to another request: {answer}"
        );
        assert_eq!(answer["jsonrpc"], "2.0");
        answer
    }

    /// Closes the writing side (EOF for the service).
    fn close_input(&mut self) {
        self.writer = None;
    }

    /// Whether the service closed the connection with no more answers.
    fn closed(&self) -> bool {
        matches!(
            self.answers.recv_timeout(PATIENCE),
            Err(RecvTimeoutError::Disconnected)
        )
    }
}

fn result(answer: &Value) -> &Value {
    assert!(answer.get("error").is_none(), "an error: {answer}");
    &answer["result"]
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error answer: {answer}"))
}

fn login(id: i64) -> Value {
    json!({"login_info": {"id": id}, "node_info": {"public_key": "k"}})
}

// ---------------------------------------------------------------------------------------
// Every method, on every transport.

fn every_method_answers(conn: &mut Conn, trusted: bool) {
    let answer = conn.call("user_login", login(42));
    assert_eq!(result(&answer)["decision"], "user_id");
    assert_eq!(result(&answer)["code"], 42);
    assert!(result(&answer)["plugin"]
        .as_str()
        .unwrap()
        .ends_with("echo.lua"));
    assert_eq!(result(&answer)["generation"], 1);
    assert!(result(&answer)["elapsed_us"].is_u64());

    // Positional params, and a param given as a string of JSON.
    let answer = conn.call("user_login", json!(["{\"id\":9}", "{}"]));
    assert_eq!(result(&answer)["code"], 9);

    let answer = conn.call(
        "user_signup",
        json!({"signup_info": {"name": "dora"}, "node_info": "{}"}),
    );
    assert_eq!(result(&answer)["decision"], "new_user");
    assert_eq!(result(&answer)["code"], 0);
    let answer = conn.call("user_signup", json!([{"name": "taken"}, {}]));
    assert_eq!(result(&answer)["decision"], "not_authorized");
    assert_eq!(result(&answer)["code"], -1);

    let answer = conn.call("new_node", json!({"node_info": {"role": "primary"}}));
    assert_eq!(result(&answer)["decision"], "primary");
    assert_eq!(result(&answer)["code"], "primary");
    let answer = conn.call("new_node", json!([{"role": "Primary"}]));
    assert_eq!(
        result(&answer)["decision"],
        "error",
        "only exact roles count"
    );
    assert_eq!(result(&answer)["code"], -3);
    assert!(result(&answer)["error"]
        .as_str()
        .unwrap()
        .contains("Primary"));

    let status = conn.call("status", Value::Null);
    let status = result(&status);
    assert_eq!(status["ready"], true);
    assert_eq!(status["generation"], 1);
    assert_eq!(status["workers"], 2);
    assert_eq!(status["last_error"], Value::Null);
    let plugins = status["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0]["language"], "lua");
    assert_eq!(
        plugins[0]["callbacks"],
        json!(["on_user_signup", "on_user_login", "on_new_node"])
    );

    // `reload` only where the connection is trusted (not TCP): exposure::… tests the refusal.
    if trusted {
        let reloaded = conn.call("reload", json!([]));
        assert_eq!(result(&reloaded)["generation"], 2);
        let answer = conn.call("user_login", login(5));
        assert_eq!(result(&answer)["code"], 5);
        assert_eq!(result(&answer)["generation"], 2);
    }
}

#[test]
fn stdio_answers_every_method_and_exits_0_at_end_of_input() {
    let mut service = Service::start(&policy("echo.lua"), "stdio", &[]);
    let mut conn = service.stdio();
    every_method_answers(&mut conn, true);
    conn.close_input();
    assert!(conn.closed());
    assert!(service.wait().success());
}

#[test]
fn a_unix_socket_answers_every_method_and_is_removed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("authhost.sock");
    let mut service = Service::start(
        &policy("echo.lua"),
        &format!("unix:{}", socket.display()),
        &[],
    );
    let mut conn = service.connect();
    every_method_answers(&mut conn, true);
    service.signal(libc::SIGTERM);
    assert!(service.wait().success(), "{}", service.stderr_text());
    assert!(!socket.exists(), "the socket file is removed on exit");
}

#[test]
fn a_stale_socket_file_is_replaced_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap()); // left behind, dead
    assert!(socket.exists());
    let mut service = Service::start(
        &policy("echo.lua"),
        &format!("unix:{}", socket.display()),
        &[],
    );
    let answer = service.connect().call("user_login", login(3));
    assert_eq!(result(&answer)["code"], 3);
    service.signal(libc::SIGINT);
    assert!(service.wait().success());
    assert!(!socket.exists());
}

#[test]
fn tcp_answers_every_method() {
    let mut service = Service::start(&policy("echo.lua"), "tcp:127.0.0.1:0", &[]);
    let mut conn = service.connect();
    every_method_answers(&mut conn, false);
    service.signal(libc::SIGTERM);
    assert!(service.wait().success());
}

// ---------------------------------------------------------------------------------------
// Bad input.

/// Sends one bad line, checks its error answer, then checks the connection still answers.
fn expect_error(conn: &mut Conn, line: &[u8], code: i64, id: Value) {
    conn.send_raw(line);
    let answer = conn.recv();
    let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
    assert_eq!(error_code(&answer), code, "{shown}: {answer}");
    assert_eq!(answer["id"], id, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    let ok = conn.call("user_login", login(11));
    assert_eq!(result(&ok)["code"], 11);
}

fn bad_input_is_answered_and_the_connection_goes_on(conn: &mut Conn) {
    expect_error(conn, b"this is not json\n", -32700, Value::Null);
    expect_error(
        conn,
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\n",
        -32700,
        Value::Null,
    );
    expect_error(conn, b"\xff\xfe\n", -32700, Value::Null);
    // A batch of non-requests: one error each (JSON-RPC 2.0's own example).
    conn.send_raw(b"[1,2,3]\n");
    let errors = conn.recv();
    assert_eq!(errors.as_array().map(Vec::len), Some(3), "{errors}");
    for error in errors.as_array().unwrap() {
        assert_eq!(error_code(error), -32600);
        assert_eq!(error["id"], Value::Null);
    }
    expect_error(conn, b"\"a string\"\n", -32600, Value::Null);
    expect_error(
        conn,
        b"{\"jsonrpc\":\"1.0\",\"id\":\"v\",\"method\":\"status\"}\n",
        -32600,
        json!("v"),
    );
    expect_error(
        conn,
        b"{\"id\":5,\"method\":\"status\"}\n",
        -32600,
        json!(5),
    );
    expect_error(conn, b"{\"jsonrpc\":\"2.0\",\"id\":6}\n", -32600, json!(6));
    expect_error(
        conn,
        b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"drop_tables\"}\n",
        -32601,
        json!(7),
    );
    expect_error(
        conn,
        b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"user_login\"}\n",
        -32602,
        json!(8),
    );
    expect_error(
        conn,
        b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"user_login\",\"params\":{\"login_info\":\"x\"}}\n",
        -32602,
        json!(9),
    );
    expect_error(
        conn,
        b"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"new_node\",\"params\":[42]}\n",
        -32602,
        json!(10),
    );
    expect_error(
        conn,
        b"{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"user_signup\",\"params\":[\"a\",\"b\",\"c\"]}\n",
        -32602,
        json!(11),
    );
    // A line over 1 MiB: refused, and the line after it is read as usual.
    let mut huge = br#"{"jsonrpc":"2.0","id":12,"method":"user_login","params":[""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 2 << 20));
    huge.extend(b"\",\"{}\"]}\n");
    expect_error(conn, &huge, -32600, Value::Null);

    // A notification gets no answer, even a wrong one: the next answer is the status's.
    conn.send_raw(
        b"{\"jsonrpc\":\"2.0\",\"method\":\"user_login\",\"params\":[\"{\\\"id\\\":1}\",\"{}\"]}\n",
    );
    conn.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"no_such_method\"}\n");
    let status = conn.call("status", Value::Null);
    assert_eq!(result(&status)["ready"], true);
}

#[test]
fn bad_input_over_stdio() {
    let mut service = Service::start(&policy("echo.lua"), "stdio", &[]);
    let mut conn = service.stdio();
    bad_input_is_answered_and_the_connection_goes_on(&mut conn);
    conn.close_input();
    assert!(service.wait().success());
}

#[test]
fn bad_input_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("s").display());
    let service = Service::start(&policy("echo.lua"), &listen, &[]);
    bad_input_is_answered_and_the_connection_goes_on(&mut service.connect());
}

#[test]
fn bad_input_over_tcp() {
    let service = Service::start(&policy("echo.lua"), "tcp:127.0.0.1:0", &[]);
    bad_input_is_answered_and_the_connection_goes_on(&mut service.connect());
}

// ---------------------------------------------------------------------------------------
// Load: pipelining, many connections, disconnects, slow readers.

/// Writes `count` login requests (ids and users `first..first+count`) from a thread, reads
/// the answers here, and checks each id is answered once, with its own user.
fn pipeline(conn: Conn, first: i64, count: i64) {
    let Conn {
        writer, answers, ..
    } = conn;
    let mut writer = writer.unwrap();
    let sending = std::thread::spawn(move || {
        let mut batch = String::new();
        for id in first..first + count {
            batch.push_str(&format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"user_login\",\"params\":[\"{{\\\"id\\\":{id}}}\",\"{{}}\"]}}\n"
            ));
            if batch.len() > 16 << 10 {
                writer.write_all(batch.as_bytes()).unwrap();
                batch.clear();
            }
        }
        writer.write_all(batch.as_bytes()).unwrap();
        writer.flush().unwrap();
        writer
    });
    let mut seen = HashSet::new();
    for _ in 0..count {
        let answer = answers
            .recv_timeout(PATIENCE)
            .expect("an answer for every request");
        let id = answer["id"].as_i64().unwrap_or_else(|| panic!("{answer}"));
        assert!(seen.insert(id), "id {id} answered twice");
        assert_eq!(result(&answer)["decision"], "user_id", "{answer}");
        assert_eq!(result(&answer)["code"], id, "the answer of another request");
    }
    assert_eq!(seen.len() as i64, count);
    assert!((first..first + count).all(|id| seen.contains(&id)));
    drop(sending.join().unwrap());
    // And nothing more.
    assert!(answers.recv_timeout(Duration::from_millis(300)).is_err());
}

#[test]
fn ten_thousand_pipelined_requests_are_each_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("s").display());
    let service = Service::start(&policy("echo.lua"), &listen, &[]);
    pipeline(service.connect(), 1, 10_000);
}

#[test]
fn ten_thousand_pipelined_requests_over_tcp_and_stdio() {
    let service = Service::start(&policy("echo.lua"), "tcp:127.0.0.1:0", &[]);
    pipeline(service.connect(), 1, 10_000);
    let mut stdio = Service::start(&policy("echo.lua"), "stdio", &[]);
    pipeline(stdio.stdio(), 1, 10_000);
    assert!(stdio.wait().success(), "stdin closed by the sender");
}

#[test]
fn fifty_concurrent_connections_each_get_their_own_answers() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("s").display());
    let unix = Service::start(&policy("echo.lua"), &listen, &[]);
    let tcp = Service::start(&policy("echo.lua"), "tcp:127.0.0.1:0", &[]);
    for service in [&unix, &tcp] {
        // All connected before any sends, so that they are all open at once.
        let conns: Vec<Conn> = (0..50).map(|_| service.connect()).collect();
        std::thread::scope(|scope| {
            for (n, conn) in conns.into_iter().enumerate() {
                scope.spawn(move || pipeline(conn, n as i64 * 1000 + 1, 40));
            }
        });
    }
}

#[test]
fn a_client_that_disconnects_mid_stream_affects_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("s").display());
    let service = Service::start(&policy("slow.lua"), &listen, &[]);
    let mut steady = service.connect();
    let mut leaving = service.connect();
    for id in 0..40 {
        leaving.ask(
            "user_login",
            json!({"login_info": {"id": id + 1, "ms": 5}, "node_info": "{}"}),
        );
    }
    // Half a request, then gone, with answers in flight.
    leaving.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":99,\"meth");
    leaving.hang_up();
    for id in 0..20 {
        let answer = steady.call(
            "user_login",
            json!({"login_info": {"id": 500 + id}, "node_info": "{}"}),
        );
        assert_eq!(result(&answer)["code"], 500 + id);
    }
    let mut fresh = service.connect();
    let answer = fresh.call(
        "user_login",
        json!({"login_info": {"id": 77}, "node_info": "{}"}),
    );
    assert_eq!(result(&answer)["code"], 77);
    assert_eq!(result(&fresh.call("status", Value::Null))["ready"], true);
}

#[test]
fn a_client_that_does_not_read_is_not_read_from_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("s").display());
    let service = Service::start(&policy("echo.lua"), &listen, &["--max-pending", "256"]);
    let path = dir.path().join("s");
    let stream = UnixStream::connect(&path).unwrap();
    let mut writer = stream.try_clone().unwrap();
    const COUNT: i64 = 100_000;
    let mut requests = Vec::new();
    for id in 1..=COUNT {
        requests.extend(
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"user_login\",\"params\":[\"{{\\\"id\\\":{id}}}\",\"{{}}\"]}}\n"
            )
            .bytes(),
        );
    }
    let total = requests.len();
    let written = Arc::new(AtomicUsize::new(0));
    let sending = {
        let written = written.clone();
        std::thread::spawn(move || {
            for chunk in requests.chunks(16 << 10) {
                writer.write_all(chunk).unwrap();
                written.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        })
    };
    // Not reading: the service must stop reading too, long before it has taken everything.
    std::thread::sleep(Duration::from_secs(3));
    let stalled_at = written.load(Ordering::SeqCst);
    assert!(
        stalled_at < total,
        "the service read all {total} bytes while its answers were not read"
    );
    // Now read: every answer comes, once.
    let mut reader = BufReader::new(stream);
    reader.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    let mut seen = vec![false; COUNT as usize + 1];
    let mut line = String::new();
    for _ in 0..COUNT {
        line.clear();
        reader.read_line(&mut line).expect("an answer");
        let answer: Value = serde_json::from_str(&line).unwrap();
        let id = answer["id"].as_i64().unwrap();
        assert!(
            !std::mem::replace(&mut seen[id as usize], true),
            "id {id} twice"
        );
        assert_eq!(answer["result"]["code"], id);
    }
    sending.join().unwrap();
    drop(service);
}

#[test]
fn connections_past_the_limit_are_refused_and_the_others_go_on() {
    let service = Service::start(
        &policy("echo.lua"),
        "tcp:127.0.0.1:0",
        &["--max-connections", "2"],
    );
    let mut first = service.connect();
    let mut second = service.connect();
    // Answered: both are registered.
    result(&first.call("status", Value::Null));
    result(&second.call("status", Value::Null));
    let third = service.connect();
    let refusal = third.recv();
    assert_eq!(error_code(&refusal), -32001, "{refusal}");
    assert_eq!(refusal["id"], Value::Null);
    assert!(third.closed());
    assert_eq!(result(&first.call("user_login", login(4)))["code"], 4);
    // Once one leaves, a new connection is served.
    second.hang_up();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut next = service.connect();
        let id = next.ask("user_login", login(8));
        let answer = next.recv();
        if answer["id"] == json!(id) {
            assert_eq!(result(&answer)["code"], 8);
            break;
        }
        assert_eq!(error_code(&answer), -32001, "{answer}");
        assert!(
            Instant::now() < deadline,
            "the connection that left still counts"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Reload and stop.

#[test]
fn sighup_reloads_the_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("policy.lua");
    std::fs::copy(policy("version1.lua"), &plugin).unwrap();
    let mut service = Service::start(&plugin, "tcp:127.0.0.1:0", &[]);
    let mut conn = service.connect();
    assert_eq!(result(&conn.call("user_login", login(0)))["code"], 1);
    std::fs::copy(policy("version2.lua"), &plugin).unwrap();
    // --no-watch: only the signal can load the new file.
    service.signal(libc::SIGHUP);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = conn.call("user_login", login(0));
        if result(&answer)["code"] == 2 {
            assert_eq!(result(&answer)["generation"], 2);
            break;
        }
        assert_eq!(
            result(&answer)["code"],
            1,
            "the old set until the new one is live"
        );
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    service.signal(libc::SIGTERM);
    assert!(service.wait().success());
}

#[test]
fn serve_watches_the_plugins_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("policy.lua");
    std::fs::copy(policy("version1.lua"), &plugin).unwrap();
    let mut service = Service::start_watching(&plugin, "stdio", &[]);
    let mut conn = service.stdio();
    assert_eq!(result(&conn.call("user_login", login(0)))["code"], 1);
    // No signal and no reload request: saving the file is enough.
    std::fs::copy(policy("version2.lua"), &plugin).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while result(&conn.call("user_login", login(0)))["code"] != 2 {
        assert!(Instant::now() < deadline, "the saved file did not go live");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = conn.call("status", Value::Null);
    assert!(
        result(&status)["generation"].as_u64().unwrap() >= 2,
        "{status}"
    );
    conn.close_input();
    assert!(service.wait().success());
}

#[test]
fn a_failed_reload_is_an_error_and_the_running_set_stays() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("policy.lua");
    std::fs::copy(policy("version1.lua"), &plugin).unwrap();
    let service = Service::start(&plugin, "stdio", &[]);
    let mut service = service;
    let mut conn = service.stdio();
    std::fs::copy(policy("broken.lua"), &plugin).unwrap();
    let answer = conn.call("reload", Value::Null);
    assert_eq!(error_code(&answer), -32000, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("policy.lua:4"),
        "the load error names file and line: {message}"
    );
    assert_eq!(answer["error"]["data"]["generation"], 1);
    let answer = conn.call("user_login", login(0));
    assert_eq!(result(&answer)["code"], 1);
    assert_eq!(result(&answer)["generation"], 1);
    let status = conn.call("status", Value::Null);
    assert!(result(&status)["last_error"]
        .as_str()
        .unwrap()
        .contains("policy.lua:4"));
    // A SIGHUP with the broken file does not stop the service either.
    service.signal(libc::SIGHUP);
    assert_eq!(result(&conn.call("user_login", login(0)))["code"], 1);
    conn.close_input();
    assert!(service.wait().success());
}

/// Sends `count` slow logins (ids 1..=count), then a status, whose answer (given by the
/// reader in order) proves that every login before it was dispatched.
fn slow_logins_in_flight(conn: &mut Conn, count: i64, ms: i64) {
    for id in 1..=count {
        conn.send(&json!({"jsonrpc": "2.0", "id": id, "method": "user_login",
            "params": {"login_info": {"id": id, "ms": ms}, "node_info": "{}"}}));
    }
    conn.send(&json!({"jsonrpc": "2.0", "id": "status", "method": "status"}));
}

/// Reads answers until every slow login is answered; the status may come in between.
fn expect_slow_logins(conn: &Conn, count: i64) {
    let mut seen = HashSet::new();
    while seen.len() < count as usize {
        let answer = conn.recv();
        if answer["id"] == "status" {
            continue;
        }
        assert_eq!(result(&answer)["decision"], "user_id", "{answer}");
        assert_eq!(result(&answer)["code"], answer["id"]);
        assert!(seen.insert(answer["id"].as_i64().unwrap()));
    }
}

#[test]
fn sigterm_answers_the_requests_in_flight_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let mut service = Service::start(
        &policy("slow.lua"),
        &format!("unix:{}", socket.display()),
        &[],
    );
    let mut conn = service.connect();
    slow_logins_in_flight(&mut conn, 6, 300);
    // Once the status is answered, all six logins are dispatched; most are still running.
    let mut answered = HashSet::new();
    loop {
        let answer = conn.recv();
        if answer["id"] == "status" {
            break;
        }
        assert_eq!(result(&answer)["code"], answer["id"], "{answer}");
        answered.insert(answer["id"].as_i64().unwrap());
    }
    service.signal(libc::SIGTERM);
    while answered.len() < 6 {
        let answer = conn.recv();
        assert_eq!(result(&answer)["code"], answer["id"], "{answer}");
        assert!(answered.insert(answer["id"].as_i64().unwrap()));
    }
    assert!(conn.closed(), "the connection closes after the last answer");
    assert!(service.wait().success(), "{}", service.stderr_text());
    assert!(!socket.exists());
}

#[test]
fn stdio_end_of_input_answers_the_requests_in_flight_then_exits_0() {
    let mut service = Service::start(&policy("slow.lua"), "stdio", &[]);
    let mut conn = service.stdio();
    slow_logins_in_flight(&mut conn, 4, 200);
    conn.close_input();
    expect_slow_logins(&conn, 4);
    assert!(conn.closed());
    assert!(service.wait().success());
}

// ---------------------------------------------------------------------------------------
// The decision log.

#[test]
fn the_decision_log_has_a_line_per_decision_and_no_argument() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let mut service = Service::start(
        &policy("echo.lua"),
        "stdio",
        &["--decision-log", log.to_str().unwrap()],
    );
    let mut conn = service.stdio();
    let secret = json!({"id": 12, "password": "hunter2-secret"}).to_string();
    result(&conn.call("user_login", json!([secret, "{\"public_key\":\"k\"}"])));
    result(&conn.call("new_node", json!([{"role": "async"}])));
    conn.call("status", Value::Null); // not a decision: not logged
    conn.close_input();
    assert!(service.wait().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("hunter2"), "the log holds no argument");
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{text}");
    let login = entries
        .iter()
        .find(|e| e["callback"] == "on_user_login")
        .unwrap();
    assert_eq!(login["decision"], "user_id");
    assert_eq!(login["code"], 12);
    assert_eq!(login["generation"], 1);
    assert!(login["plugin"].as_str().unwrap().ends_with("echo.lua"));
    assert!(login["elapsed_us"].is_u64());
    assert!(login["time"].as_str().unwrap().ends_with('Z'));
    // Keyed with the key the service made beside the log.
    let key =
        authhost::decision_log::DigestKey::load_or_create(dir.path().join("decisions.jsonl.key"))
            .unwrap();
    let digest = key.digest(&[secret, "{\"public_key\":\"k\"}".into()]);
    assert_eq!(login["args_hmac"], digest.to_hex());
    let node = entries
        .iter()
        .find(|e| e["callback"] == "on_new_node")
        .unwrap();
    assert_eq!(node["decision"], "async");
    let digest = key.digest(&[r#"{"role":"async"}"#.into()]);
    assert_eq!(node["args_hmac"], digest.to_hex());
}

// ---------------------------------------------------------------------------------------
// `authhost test`.

fn authhost_test(cases: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_authhost"))
        .arg("test")
        .arg(cases)
        .arg("--plugins")
        .arg(policy("echo.lua"))
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[test]
fn authhost_test_passes_when_every_case_does() {
    let (code, stdout) = authhost_test(&policy("cases_pass.json"));
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(
        lines[..4].iter().all(|l| l.starts_with("PASS ")),
        "{stdout}"
    );
    assert_eq!(lines[0], "PASS a login asks for user 7: user_id 7");
    assert_eq!(lines[4], "4 passed, 0 failed");
}

#[test]
fn authhost_test_fails_with_the_actual_decision_and_error() {
    let (code, stdout) = authhost_test(&policy("cases_fail.json"));
    assert_eq!(code, Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "PASS a login asks for user 7: user_id 7");
    assert_eq!(
        lines[1],
        "FAIL wrong code on purpose: expected user_id 8, got user_id 7"
    );
    assert!(
        lines[2].starts_with(
            "FAIL a bad role is an error, not a secondary: expected secondary, got error -3 ("
        ) && lines[2].contains("Secondary"),
        "{}",
        lines[2]
    );
    assert_eq!(lines.last(), Some(&"1 passed, 2 failed"));
}

#[test]
fn authhost_test_refuses_a_malformed_cases_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.json");
    std::fs::write(
        &cases,
        r#"[{"name":"typo","callback":"user_login","args":["a","b"],"decison":"user_id"}]"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_authhost"))
        .arg("test")
        .arg(&cases)
        .arg("--plugins")
        .arg(policy("echo.lua"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("case 1 (\"typo\")") && stderr.contains("decison"),
        "{stderr}"
    );
}
