//! Real nginx (Debian's, started here with `tests/http/nginx.conf` as the current user, on
//! free loopback ports) in front of an application, asking authhost's `/auth/request`
//! (`auth_request`) who may reach `/private/`; curl is the client.
//!
//! nginx lets a client in only on authhost's 200, passes the user id on to the application
//! (`auth_request_set`), and refuses with 401 on `not_authorized` and with 500 whenever
//! authhost answers `error` or does not answer at all: fail closed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::http_programs::{
    free_port, gate, http_get, http_service, port_of, program, script, status_of, wait_for_port,
    Answer, PATIENCE,
};

use crate::common::in_both_languages;

/// The area's policies, for `in_both_languages`.
fn policy(file: &str) -> PathBuf {
    gate(file)
}

in_both_languages!(
    alice_gets_through_and_the_application_learns_her_user_id,
    a_wrong_password_or_none_is_refused_with_401,
    an_error_from_the_policy_keeps_the_client_out,
);

#[test]
fn a_backend_that_is_down_keeps_the_client_out() {
    let mut authhost = http_service(&gate("login.lua"), &[]);
    let nginx = Nginx::start(port_of(&authhost));
    assert_eq!(
        nginx.curl("/private/", Some("alice:wonderland")).status,
        200
    );
    authhost.signal(libc::SIGKILL);
    authhost.wait();
    let answer = nginx.curl("/private/", Some("alice:wonderland"));
    assert_eq!(answer.status, 500, "{answer:?}");
    assert!(!answer.body.contains("app:"), "{answer:?}");
}

/// nginx's `auth_request` closes its connection to the backend after an answer with a body
/// (it never reads one): `/auth/request` answers with headers only, so that nginx's
/// `keepalive` connections to authhost are kept, and each check costs no TCP connection.
#[test]
fn nginx_keeps_its_connection_to_authhost_from_check_to_check() {
    let authhost = http_service(&gate("login.lua"), &[]);
    let nginx = Nginx::start(port_of(&authhost));
    let before = connections_accepted(&authhost);
    for _ in 0..20 {
        let answer = nginx.curl("/private/", Some("alice:wonderland"));
        assert_eq!(answer.body, "app: user=7 uri=/private/\n", "{answer:?}");
    }
    for _ in 0..5 {
        let answer = nginx.curl("/private/", Some("alice:wrong"));
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    // nginx's one connection, and this scrape's own.
    let opened = connections_accepted(&authhost) - before;
    assert!(
        opened <= 2,
        "{opened} connections for 25 checks: nginx did not keep its connection"
    );
}

/// `authhost_http_connections_total`, from authhost's `/metrics`.
fn connections_accepted(authhost: &crate::service::Service) -> u64 {
    let metrics = http_get(authhost, "/metrics", &[]).body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("authhost_http_connections_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no authhost_http_connections_total in {metrics}"))
}

fn alice_gets_through_and_the_application_learns_her_user_id(policy: &Path) {
    let authhost = http_service(policy, &[]);
    let nginx = Nginx::start(port_of(&authhost));
    let answer = nginx.curl("/private/report?year=2026", Some("alice:wonderland"));
    assert_eq!(answer.status, 200, "{answer:?}");
    // Through auth_request_set and a header, as far as the application.
    assert_eq!(answer.body, "app: user=7 uri=/private/report?year=2026\n");
    // Keep-alive to authhost: the next check goes through as well.
    let again = nginx.curl("/private/", Some("alice:wonderland"));
    assert_eq!(again.body, "app: user=7 uri=/private/\n");
    // The policy sees the URI nginx was asked for (X-Original-URI), and keeps her out of
    // the attic.
    let attic = nginx.curl("/private/attic/boxes", Some("alice:wonderland"));
    assert_eq!(attic.status, 401, "{attic:?}");
    assert!(!attic.body.contains("app:"), "{attic:?}");
}

fn a_wrong_password_or_none_is_refused_with_401(policy: &Path) {
    let authhost = http_service(policy, &[]);
    let nginx = Nginx::start(port_of(&authhost));
    // The application itself answers anyone: the 401s below are auth_request's doing.
    assert_eq!(
        nginx.curl("/public/", None).body,
        "app: user= uri=/public/\n"
    );
    for credentials in [Some("alice:wonderland!"), Some("bob:wonderland"), None] {
        let answer = nginx.curl("/private/", credentials);
        assert_eq!(answer.status, 401, "{credentials:?}: {answer:?}");
        assert!(!answer.body.contains("app:"), "{answer:?}");
        // nginx passes authhost's challenge on, so a browser asks for a password.
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"Basic realm="authhost""#),
            "{answer:?}"
        );
    }
}

fn an_error_from_the_policy_keeps_the_client_out(policy: &Path) {
    // A short timeout for `sloth`, whose policy never returns.
    let authhost = http_service(policy, &["--timeout-ms", "1000"]);
    let nginx = Nginx::start(port_of(&authhost));
    for who in ["mallory:wonderland", "sloth:wonderland"] {
        let answer = nginx.curl("/private/", Some(who));
        assert_eq!(answer.status, 500, "{who}: {answer:?}");
        assert!(!answer.body.contains("app:"), "{who}: {answer:?}");
    }
    // authhost answered both, with `error` (one a timeout): nginx did not merely fail to
    // reach it.
    let counters = &status_of(&authhost)["counters"];
    assert_eq!(counters["decisions"]["error"], 2, "{counters}");
    assert_eq!(counters["timeouts"], 1, "{counters}");
}

// ---------------------------------------------------------------------------------------

/// nginx, run in the foreground as the current user with a config and directory of its own;
/// stopped when dropped.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx with `tests/http/nginx.conf`, in front of authhost's HTTP front on
    /// `authhost_port`.
    fn start(authhost_port: u16) -> Nginx {
        let nginx = program("/usr/sbin/nginx");
        let dir = tempfile::tempdir().unwrap();
        let (port, app_port) = (free_port(), free_port());
        let template = std::fs::read_to_string(script("nginx.conf")).unwrap();
        let config = template
            .replace("@DIR@", &dir.path().display().to_string())
            .replace("@PORT@", &port.to_string())
            .replace("@APP_PORT@", &app_port.to_string())
            .replace("@AUTHHOST@", &format!("127.0.0.1:{authhost_port}"));
        let config_file = dir.path().join("nginx.conf");
        std::fs::write(&config_file, config).unwrap();
        // -e: the error log from the start, before the config names it (the default one,
        // /var/log/nginx/error.log, may not be writable by this user).
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nginx");
        let mut nginx = Nginx { child, port, dir };
        if let Ok(Some(status)) = nginx.child.try_wait() {
            panic!("nginx exited at once ({status}): {}", nginx.error_log());
        }
        wait_for_port(port, "nginx");
        wait_for_port(app_port, "nginx's application server");
        nginx
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// `GET path` with curl, with `user:password` as Basic credentials if given.
    fn curl(&self, path: &str, credentials: Option<&str>) -> Answer {
        let mut command = Command::new(program("/usr/bin/curl"));
        command
            .args(["--silent", "--show-error", "--include", "--max-time"])
            .arg(PATIENCE.as_secs().to_string());
        if let Some(credentials) = credentials {
            command.args(["--user", credentials]);
        }
        let output = command
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("running curl");
        assert!(
            output.status.success(),
            "curl {path}: {}\nnginx's log: {}",
            String::from_utf8_lossy(&output.stderr),
            self.error_log()
        );
        curl_answer(&String::from_utf8_lossy(&output.stdout))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's fast shutdown, which stops its worker too.
        // SAFETY: kill(2) takes plain integers; the pid is our own child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// What `curl --include` printed: the status, the headers and the body.
fn curl_answer(text: &str) -> Answer {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("curl printed no header block: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}
