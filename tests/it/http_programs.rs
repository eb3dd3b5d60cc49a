//! Helpers for the tests that drive the HTTP front with real programs (`nginx`, `prometheus`,
//! `chromium`, `websocket`): the programs that `scripts/setup` installs, the Python venv it
//! makes, their policy, and a service on an HTTP listener (`service::Service`).
//!
//! A program that is missing fails its test with a message naming `scripts/setup`: these
//! tests are never skipped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::http_support::{client, get, post_json, Answer};
pub use crate::service::{Service, PATIENCE};

/// The policy the real-program tests run, `tests/policies/gate/FILE`: `login.lua` or its
/// Python twin `login.py` (see [`crate::common::in_both_languages`]).
pub fn gate(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies/gate")
        .join(file)
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

/// `authhost serve` on `plugins` with an HTTP listener on a free loopback port (the
/// defaults of [`Service::start`], then `extra`).
pub fn http_service(plugins: &Path, extra: &[&str]) -> Service {
    Service::start(plugins, &["http:127.0.0.1:0"], extra)
}

/// The port of the service's HTTP listener.
pub fn port_of(service: &Service) -> u16 {
    let host_port = service.http_host_port();
    host_port
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {host_port:?}"))
}

/// `GET path` of the service's HTTP front.
pub fn http_get(service: &Service, path: &str, headers: &[(&str, &str)]) -> Answer {
    get(&client(), &format!("{}{path}", service.http()), headers)
}

/// `GET /status` of the service, as JSON.
pub fn status_of(service: &Service) -> Value {
    let answer = http_get(service, "/status", &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json()
}

/// Polls `condition` until it holds; fails with `what` after [`PATIENCE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
