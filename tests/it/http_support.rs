//! Helpers for the tests of the HTTP front: an `authhost serve` process on any listeners, and
//! a real HTTP client (ureq) that returns every status instead of failing on 4xx/5xx.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any single wait may take before the test is declared hung (never a judgement
/// of speed).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// An `authhost serve` child process, killed if the test ends without stopping it.
pub struct Service {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The addresses it announced, in the order of the `--listen`s (real ports for `:0`).
    pub addrs: Vec<String>,
}

impl Service {
    /// Starts `authhost serve` on `plugins` with one `--listen` per entry of `listens`
    /// (`--db :memory:`, two workers, a 30 s timeout, `--no-watch`, then `extra`), and waits
    /// until every listener is announced.
    pub fn start(plugins: &Path, listens: &[&str], extra: &[&str]) -> Service {
        let mut command = Command::new(env!("CARGO_BIN_EXE_authhost"));
        command.arg("serve");
        for listen in listens {
            command.args(["--listen", listen]);
        }
        let mut child = command
            .args([
                "--db",
                ":memory:",
                "--workers",
                "2",
                "--timeout-ms",
                "30000",
            ])
            .arg("--no-watch")
            .arg("--plugins")
            .arg(plugins)
            .args(extra)
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
                    if let Some((_, addr)) = line.split_once("listening on ") {
                        let addr = addr.split(" (").next().unwrap_or(addr).to_string();
                        let _ = announced.send(addr);
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut addrs = Vec::new();
        while addrs.len() < listens.len() {
            match listening.recv_timeout(PATIENCE) {
                Ok(addr) => addrs.push(addr),
                Err(_) => {
                    let _ = child.kill();
                    panic!("the service did not start: {:?}", stderr.lock().unwrap());
                }
            }
        }
        Service {
            child,
            stderr,
            addrs,
        }
    }

    /// `http://HOST:PORT` of the first HTTP listener.
    pub fn http(&self) -> String {
        let host_port = self
            .addrs
            .iter()
            .find_map(|a| a.strip_prefix("http:"))
            .expect("an http: listener");
        format!("http://{host_port}")
    }

    /// `HOST:PORT` of the first HTTP listener.
    pub fn http_host_port(&self) -> String {
        self.http().trim_start_matches("http://").to_string()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) takes plain integers; the pid is our own child's.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it logged so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP answer: status, headers (lowercase names) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The value of header `name`, if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }
}

/// A keep-alive HTTP client that hands back 4xx and 5xx answers like any other.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("an HTTP answer");
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Answer {
        status: response.status().as_u16(),
        headers,
        body: response
            .body_mut()
            .read_to_string()
            .expect("reading the body"),
    }
}

/// `GET url` with `headers`.
pub fn get(client: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.call())
}

/// `POST url` with `body` of `content_type`.
pub fn post(client: &ureq::Agent, url: &str, content_type: &str, body: &[u8]) -> Answer {
    answer(
        client
            .post(url)
            .header("content-type", content_type)
            .send(body),
    )
}

/// `POST url` with a JSON body.
pub fn post_json(client: &ureq::Agent, url: &str, body: &Value) -> Answer {
    post(client, url, "application/json", body.to_string().as_bytes())
}
