//! `authhost.http` and the example upstream policy (examples/plugins/upstream/) against a
//! real HTTP backend: tests/upstream_backend.py run by /usr/bin/python3.11 on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authhost::{Host, HostBuilder, UserDecision};

use crate::common::{error_of, policy};

/// The seed-style backend, killed when dropped.
struct Backend {
    child: Child,
    port: u16,
    https: bool,
}

impl Backend {
    fn start() -> Backend {
        Backend::spawn(&[])
    }

    fn start_https(cert: &Path, key: &Path) -> Backend {
        let mut backend = Backend::spawn(&[
            "--cert".as_ref(),
            cert.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ]);
        backend.https = true;
        backend
    }

    fn spawn(args: &[&std::ffi::OsStr]) -> Backend {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstream_backend.py");
        let mut child = Command::new("/usr/bin/python3.11")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3.11 runs the test backend");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the backend prints its port");
        Backend {
            child,
            port,
            https: false,
        }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// Calls a control endpoint (plain HTTP only).
    fn control(&self, path_and_query: &str) {
        let response = ureq::get(&self.url(path_and_query)).call().unwrap();
        assert_eq!(response.status(), 200);
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

const LANGUAGES: [&str; 2] = ["upstream.lua", "upstream.py"];

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/plugins/upstream")
        .join(file)
}

fn builder(file: &str, backend: &Backend, db: &Path) -> HostBuilder {
    Host::builder()
        .plugins(example(file))
        .db(db)
        .workers(1)
        .timeout(Duration::from_secs(8))
        .upstream(backend.url("/auth"))
}

fn login(host: &Host, name: &str, password: &str) -> UserDecision {
    let info = serde_json::json!({"name": name, "password": password}).to_string();
    host.user_login(info, "{}").user().unwrap().clone()
}

fn upstream_counter(host: &Host, name: &str) -> u64 {
    host.status().counters["upstream"][name].as_u64().unwrap()
}

fn user_id(decision: &UserDecision) -> i64 {
    match decision {
        UserDecision::UserId(id) => *id,
        other => panic!("expected a user id, got {other:?}"),
    }
}

#[test]
fn the_upstream_allows_refuses_and_does_not_know() {
    for file in LANGUAGES {
        let backend = Backend::start();
        let dir = tempfile::tempdir().unwrap();
        let host = builder(file, &backend, &dir.path().join("a.db"))
            .build()
            .unwrap();
        let first = user_id(&login(&host, "user0", "letmein"));
        assert!(first >= 1, "{file}");
        assert_ne!(user_id(&login(&host, "user1", "letmein")), first, "{file}");
        assert_eq!(
            login(&host, "user0", "wrong"),
            UserDecision::NotAuthorized,
            "{file}"
        );
        assert_eq!(
            login(&host, "nobody", "letmein"),
            UserDecision::NotAuthorized,
            "{file}"
        );
        assert_eq!(upstream_counter(&host, "ok"), 2, "{file}");
        assert_eq!(upstream_counter(&host, "refused"), 2, "{file}");
        assert_eq!(upstream_counter(&host, "fallbacks"), 0, "{file}");
    }
}

#[test]
fn with_the_backend_stopped_the_cache_answers() {
    for file in LANGUAGES {
        let mut backend = Backend::start();
        let dir = tempfile::tempdir().unwrap();
        let host = builder(file, &backend, &dir.path().join("a.db"))
            .build()
            .unwrap();
        let id = user_id(&login(&host, "user0", "letmein"));
        backend.stop();
        assert_eq!(
            login(&host, "user0", "letmein"),
            UserDecision::UserId(id),
            "{file}"
        );
        assert_eq!(
            login(&host, "user0", "wrong"),
            UserDecision::NotAuthorized,
            "{file}"
        );
        // Never seen by a reachable backend: not in the cache.
        assert_eq!(
            login(&host, "user1", "letmein"),
            UserDecision::NotAuthorized,
            "{file}"
        );
        assert_eq!(upstream_counter(&host, "unreachable"), 3, "{file}");
        assert_eq!(upstream_counter(&host, "fallbacks"), 3, "{file}");
    }
}

#[test]
fn a_backend_slower_than_the_budget_falls_back_within_the_deadline() {
    for file in LANGUAGES {
        let backend = Backend::start();
        let dir = tempfile::tempdir().unwrap();
        let host = builder(file, &backend, &dir.path().join("a.db"))
            .build()
            .unwrap();
        let id = user_id(&login(&host, "user0", "letmein"));
        // Far past the policy's 1 s budget, and past the request's 8 s deadline.
        backend.control("/control/slow?ms=30000");
        // One worker: each answer below needs the worker back from the slow call.
        for _ in 0..2 {
            assert_eq!(
                login(&host, "user0", "letmein"),
                UserDecision::UserId(id),
                "{file}"
            );
        }
        assert_eq!(
            login(&host, "user0", "wrong"),
            UserDecision::NotAuthorized,
            "{file}"
        );
        assert_eq!(upstream_counter(&host, "timeout"), 3, "{file}");
        assert_eq!(upstream_counter(&host, "fallbacks"), 3, "{file}");
    }
}

#[test]
fn a_password_changed_at_the_backend_replaces_the_cache() {
    for file in LANGUAGES {
        let mut backend = Backend::start();
        let dir = tempfile::tempdir().unwrap();
        let host = builder(file, &backend, &dir.path().join("a.db"))
            .build()
            .unwrap();
        let id = user_id(&login(&host, "user0", "letmein"));
        backend.control("/control/password?login=user0&password=fresh");
        assert_eq!(
            login(&host, "user0", "fresh"),
            UserDecision::UserId(id),
            "{file}"
        );
        backend.stop();
        assert_eq!(
            login(&host, "user0", "fresh"),
            UserDecision::UserId(id),
            "{file}"
        );
        assert_eq!(
            login(&host, "user0", "letmein"),
            UserDecision::NotAuthorized,
            "{file}"
        );
    }
}

#[test]
fn a_user_refused_by_a_reachable_backend_is_not_let_in_by_the_cache() {
    for file in LANGUAGES {
        let mut backend = Backend::start();
        let dir = tempfile::tempdir().unwrap();
        let host = builder(file, &backend, &dir.path().join("a.db"))
            .build()
            .unwrap();
        user_id(&login(&host, "user0", "letmein"));
        backend.control("/control/password?login=user0&password=fresh");
        // The cached hash would take "letmein"; the backend says no, and that wins.
        assert_eq!(
            login(&host, "user0", "letmein"),
            UserDecision::NotAuthorized,
            "{file}"
        );
        backend.stop();
        assert_eq!(
            login(&host, "user0", "letmein"),
            UserDecision::NotAuthorized,
            "{file}"
        );
    }
}

fn outside_host(file: &str, prefixes: &[String]) -> Host {
    let mut builder = Host::builder()
        .plugins(policy(&format!("upstream/{file}")))
        .db(":memory:")
        .workers(1)
        .timeout(Duration::from_secs(8));
    for prefix in prefixes {
        builder = builder.upstream(prefix);
    }
    builder.build().unwrap()
}

fn ask(host: &Host, url: &str) -> authhost::Outcome {
    host.user_login(serde_json::json!({ "url": url }).to_string(), "{}")
}

#[test]
fn urls_outside_the_upstream_prefixes_are_refused_redirects_included() {
    for file in ["outside.lua", "outside.py"] {
        let backend = Backend::start();
        let host = outside_host(file, &[backend.url("/auth"), backend.url("/redirect")]);
        let allowed = backend.url("/auth?login=user0&password=letmein");
        assert_eq!(ask(&host, &allowed).user(), Some(&UserDecision::UserId(1)));
        // A redirect that stays inside is followed.
        let inside = backend.url("/redirect?to=/auth%3Flogin%3Duser0%26password%3Dletmein");
        assert_eq!(ask(&host, &inside).user(), Some(&UserDecision::UserId(1)));
        let control = backend.url("/control/password?login=user0&password=stolen");
        for url in [
            control.clone(),
            backend.url("/auth/../control/password?login=user0&password=stolen"),
            format!("http://127.0.0.1:{}/control/slow?ms=1", backend.port + 1),
        ] {
            let error = error_of(&ask(&host, &url));
            assert!(error.message.contains("refused URL"), "{file}: {error:?}");
            assert!(error.message.contains("/control/"), "{file}: {error:?}");
        }
        // A redirect that leads outside is refused, naming where it led.
        let out = backend.url("/redirect?to=/control/password%3Flogin%3Duser0%26password%3Dstolen");
        let error = error_of(&ask(&host, &out));
        assert!(error.message.contains("refused URL"), "{file}: {error:?}");
        assert!(error.message.contains(&control), "{file}: {error:?}");
        // None of them reached the backend: the password is still letmein.
        assert_eq!(ask(&host, &allowed).user(), Some(&UserDecision::UserId(1)));
        assert_eq!(host.status().counters["upstream"]["blocked"], 4, "{file}");
    }
}

#[test]
fn lua_without_upstream_prefixes_reaches_nothing() {
    let backend = Backend::start();
    let lua = outside_host("outside.lua", &[]);
    let error = error_of(&ask(
        &lua,
        &backend.url("/auth?login=user0&password=letmein"),
    ));
    assert!(error.message.contains("refused URL"), "{error:?}");
    // Python policies are trusted: with no list they may ask anything.
    #[cfg(feature = "python")]
    {
        let python = outside_host("outside.py", &[]);
        let allowed = backend.url("/auth?login=user0&password=letmein");
        assert_eq!(
            ask(&python, &allowed).user(),
            Some(&UserDecision::UserId(1))
        );
    }
}

#[test]
fn https_to_a_backend_with_a_test_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let backend = Backend::start_https(&cert, &key);
    for file in LANGUAGES {
        let db = dir.path().join(format!("{file}.db"));
        let host = builder(file, &backend, &db)
            .upstream_ca(&cert)
            .build()
            .unwrap();
        assert!(user_id(&login(&host, "user0", "letmein")) >= 1, "{file}");
        assert_eq!(
            login(&host, "user0", "wrong"),
            UserDecision::NotAuthorized,
            "{file}"
        );
        // Without the test CA the certificate is not trusted: the call fails, and with
        // nothing cached the policy refuses.
        let untrusting = builder(file, &backend, &dir.path().join(format!("{file}.2.db")))
            .build()
            .unwrap();
        assert_eq!(
            login(&untrusting, "user0", "letmein"),
            UserDecision::NotAuthorized,
            "{file}"
        );
        assert_eq!(upstream_counter(&untrusting, "unreachable"), 1, "{file}");
    }
}
