//! An `authhost serve` process for the tests: started on any listeners, its log collected,
//! signalled, waited for, killed if a test ends without stopping it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single wait may take before the test is declared hung (never a judgement
/// of speed).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// An `authhost serve` child process, killed if the test ends without stopping it.
pub struct Service {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The thread that reads stderr into `stderr`; done once the process has exited.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    /// The addresses it announced, in the order of the `--listen`s (real ports for `:0`).
    pub addrs: Vec<String>,
}

impl Service {
    /// Starts `authhost serve` on `plugins` with one `--listen` per entry of `listens`
    /// (`--db :memory:`, two workers, a 30 s timeout unless `extra` names one, `--no-watch`,
    /// then `extra`), and waits until every listener is announced.
    pub fn start(plugins: &Path, listens: &[&str], extra: &[&str]) -> Service {
        Service::spawn(plugins, listens, &[&["--no-watch"], extra].concat())
    }

    /// Starts `authhost serve` on `plugins` with one `--listen` per entry of `listens`
    /// (`--db :memory:`, two workers, a 30 s timeout unless `extra` names one, then `extra`:
    /// it watches the plugins unless `extra` says `--no-watch`), its stdin and stdout piped (see
    /// [`Service::take_stdio`]), and waits until every listener is announced.
    pub fn spawn(plugins: &Path, listens: &[&str], extra: &[&str]) -> Service {
        let mut command = Command::new(env!("CARGO_BIN_EXE_authhost"));
        command.arg("serve");
        for listen in listens {
            command.args(["--listen", listen]);
        }
        // The command line takes --timeout-ms once: a test's own replaces the default.
        if !extra.contains(&"--timeout-ms") {
            command.args(["--timeout-ms", "30000"]);
        }
        let mut child = command
            .args(["--db", ":memory:", "--workers", "2"])
            .arg("--plugins")
            .arg(plugins)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting authhost serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (announced, listening) = channel();
        let stderr_reader = {
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
            })
        };
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
            stderr_reader: Some(stderr_reader),
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

    /// Its stdout and stdin (a stdio listener's connection). Only once.
    pub fn take_stdio(&mut self) -> (ChildStdout, ChildStdin) {
        let stdout = self.child.stdout.take().expect("stdio taken once");
        (stdout, self.child.stdin.take().unwrap())
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) takes plain integers; the pid is our own child's.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let stderr = self.stderr.clone();
        wait_for_exit(&mut self.child, move || {
            format!("the service did not exit: {:?}", stderr.lock().unwrap())
        })
    }

    /// Once the process has exited: waits until its whole stderr is read.
    pub fn read_all_stderr(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
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

/// Runs `authhost serve` on `plugins` with `args` (`--db :memory:`, one worker,
/// `--no-watch`), expecting it to exit by itself: its status code and stderr.
pub fn serve_exit(plugins: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authhost"))
        .arg("serve")
        .arg("--plugins")
        .arg(plugins)
        .args(["--db", ":memory:", "--workers", "1", "--no-watch"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting authhost serve");
    wait_for_exit(&mut child, || {
        format!("authhost serve {args:?} kept serving")
    });
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits for `child` to exit; past [`PATIENCE`], kills it and panics with `hung()`.
pub fn wait_for_exit(child: &mut Child, hung: impl Fn() -> String) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}", hung());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
