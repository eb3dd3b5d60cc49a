//! Helpers for the tests that drive the HTTP front with real programs (`nginx`, `prometheus`,
//! `chromium`, `websocket`): an `authhost serve --listen http:…` child, the programs that
//! `scripts/setup` installs, and the Python venv it makes.
//!
//! A program that is missing fails its test with a message naming `scripts/setup`: these
//! tests are never skipped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any single wait may take before the test is declared hung; never a judge of
/// speed.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A test policy file or directory under `tests/policies/http/`.
pub fn policy(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies/http")
        .join(relative)
}

/// A helper script under `tests/http/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/http")
        .join(name)
}

/// The path of a program that `scripts/setup` installs; fails the test when it is missing.
pub fn program(path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup, which installs it",
        path.display()
    );
    path
}

/// The venv's Python, with `prometheus_client` and `websockets`; fails the test when
/// `scripts/setup` has not made it.
pub fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/http-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup, which makes the venv with prometheus_client and websockets",
        python.display()
    );
    python
}

/// A TCP port on loopback that was free a moment ago (for programs that cannot report the
/// port they took, like nginx).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free loopback port")
        .port()
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An `authhost serve --listen http:127.0.0.1:0` child on an in-memory database with two
/// workers; killed if the test ends without stopping it.
pub struct HttpService {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The port it listens on.
    pub port: u16,
}

impl HttpService {
    /// Starts the service on `plugins` without watching them; `extra` adds options
    /// (`--timeout-ms` replaces the default of 30 s).
    pub fn start(plugins: &Path, extra: &[&str]) -> HttpService {
        HttpService::spawn(plugins, &[&["--no-watch"], extra].concat())
    }

    /// Starts the service on `plugins`, watching them for changes.
    pub fn start_watching(plugins: &Path, extra: &[&str]) -> HttpService {
        HttpService::spawn(plugins, extra)
    }

    fn spawn(plugins: &Path, extra: &[&str]) -> HttpService {
        let mut command = Command::new(env!("CARGO_BIN_EXE_authhost"));
        command
            .arg("serve")
            .args(["--listen", "http:127.0.0.1:0", "--db", ":memory:"])
            .args(["--workers", "2", "--log-level", "info"])
            .arg("--plugins")
            .arg(plugins)
            .args(extra);
        if !extra.contains(&"--timeout-ms") {
            command.args(["--timeout-ms", "30000"]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting authhost serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (announced, listening) = channel();
        {
            let lines = stderr.clone();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    // "listening on http:127.0.0.1:PORT (…)", or with http://.
                    if let Some((_, addr)) = line.split_once("listening on http:") {
                        let addr = addr.trim_start_matches("//");
                        let end = addr.find([' ', '/', ')', ',']).unwrap_or(addr.len());
                        let _ = announced.send(addr[..end].to_string());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let Ok(host_port) = listening.recv_timeout(PATIENCE) else {
            let _ = child.kill();
            panic!(
                "the HTTP service did not announce its address: {:?}",
                stderr.lock().unwrap()
            );
        };
        let port = host_port
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in the announced address {host_port:?}"));
        HttpService {
            child,
            stderr,
            base: format!("http://{host_port}"),
            port,
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = self.get_with(path, &[]);
        (status, body)
    }

    /// `GET path` with `headers`: the status, the content type and the body.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        let mut request = agent().get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request
            .call()
            .unwrap_or_else(|e| panic!("{path}: no HTTP answer: {e}"));
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let body = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{path}: reading the body: {e}"));
        (response.status().as_u16(), content_type, body)
    }

    /// `POST path` with a JSON body: the status and the body.
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, String) {
        answer(
            agent()
                .post(self.url(path))
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            path,
        )
    }

    /// `GET /status`, as JSON.
    pub fn status(&self) -> Value {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "GET /status: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
    }

    /// Everything the service logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Stops the service at once (a backend that went away).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HttpService {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client that reports statuses rather than failing on them.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(PATIENCE))
        .build()
        .into()
}

fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    path: &str,
) -> (u16, String) {
    let mut response = response.unwrap_or_else(|e| panic!("{path}: no HTTP answer: {e}"));
    let body = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("{path}: reading the body: {e}"));
    (response.status().as_u16(), body)
}

/// Polls `condition` until it holds; fails with `what` after [`PATIENCE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
