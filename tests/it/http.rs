//! The HTTP front (issue 14, contract §10) and its WebSocket (issue 15) through the real
//! binary: `authhost serve --listen http:127.0.0.1:0`, driven by a real HTTP client (ureq),
//! a real WebSocket client (tungstenite) and raw sockets where a test needs a misbehaving
//! client.
//!
//! Time limits are generous: they only stop a test that hangs, they never judge speed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::Message;

use crate::http_support::{client, get, post, post_json, Answer, Service};
use crate::service::{serve_exit, PATIENCE};

fn policy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies/http")
        .join(file)
}

// Each scenario runs once with the Lua policy and once with its Python twin.
use crate::common::in_both_languages;

in_both_languages!(
    v1_calls_answer_200_with_the_decision_whatever_it_is,
    flussonic_auth_maps_decisions_to_200_403_503,
    auth_request_maps_decisions_to_200_401_500,
    auth_token_bearer_and_clear_cycle_over_http,
    sigterm_answers_the_http_requests_in_flight_then_exits_0,
);

fn http_service(plugins: &Path, extra: &[&str]) -> Service {
    Service::start(plugins, &["http:127.0.0.1:0"], extra)
}

fn basic(login: &str, password: &str) -> String {
    let pair = format!("{login}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The JSON text a policy raised with (`show-login`, `show-node`), from an error decision.
fn raised_json(answer: &Answer) -> Value {
    // `/auth/request` answers with headers only; the others with the decision JSON.
    let message = if answer.body.is_empty() {
        assert_eq!(
            answer.header("x-authhost-decision"),
            Some("error"),
            "{answer:?}"
        );
        answer.header("x-authhost-error").unwrap().to_string()
    } else {
        let decision = answer.json();
        assert_eq!(decision["decision"], "error", "{decision}");
        decision["error"].as_str().unwrap().to_string()
    };
    let (start, end) = (message.find('{').unwrap(), message.rfind('}').unwrap());
    serde_json::from_str(&message[start..=end]).unwrap_or_else(|e| panic!("{e}: {message}"))
}

// ---------------------------------------------------------------------------------------
// POST /v1/*

fn v1_calls_answer_200_with_the_decision_whatever_it_is(plugins: &Path) {
    let service = http_service(plugins, &[]);
    let (http, url) = (client(), service.http());
    let login = |login_info: Value| {
        post_json(
            &http,
            &format!("{url}/v1/user_login"),
            &json!({"login_info": login_info, "node_info": {"public_key": "k"}}),
        )
    };
    let allowed = login(json!({"id": 42}));
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("content-type"), Some("application/json"));
    let decision = allowed.json();
    assert_eq!(decision["decision"], "user_id");
    assert_eq!(decision["code"], 42);
    assert_eq!(decision["generation"], 1);
    assert!(decision["plugin"].as_str().unwrap().contains("login."));

    let refused = login(json!({"login": "alice", "password": "wrong"}));
    assert_eq!(refused.status, 200, "a refusal is a decision, answered 200");
    assert_eq!(refused.json()["decision"], "not_authorized");
    assert_eq!(refused.json()["code"], -1);

    let failed = login(json!({"login": "boom"}));
    assert_eq!(failed.status, 200);
    assert_eq!(failed.json()["decision"], "error");
    assert_eq!(failed.json()["code"], -3);
    assert!(failed.json()["error"].as_str().unwrap().contains("boom"));

    // login_info given as a string is passed as it is.
    let as_text = post_json(
        &http,
        &format!("{url}/v1/user_login"),
        &json!({"login_info": "{\"id\":9}", "node_info": "{}"}),
    );
    assert_eq!(as_text.json()["code"], 9);

    let signup = post_json(
        &http,
        &format!("{url}/v1/user_signup"),
        &json!({"signup_info": {"name": "new"}, "node_info": {}}),
    );
    assert_eq!(signup.status, 200);
    assert_eq!(signup.json()["decision"], "new_user");
    assert_eq!(signup.json()["code"], 0);

    let node = post_json(
        &http,
        &format!("{url}/v1/new_node"),
        &json!({"node_info": {"role": "secondary"}}),
    );
    assert_eq!(node.status, 200);
    assert_eq!(node.json()["decision"], "secondary");
    assert_eq!(node.json()["code"], "secondary");
}

#[test]
fn bad_bodies_are_answered_400_and_the_server_goes_on() {
    let service = http_service(&policy("login.lua"), &[]);
    let (http, url) = (client(), service.http());
    let login_url = format!("{url}/v1/user_login");
    for (body, names) in [
        (&b"not json"[..], "not JSON"),
        (b"", "not JSON"),
        (b"[\"{}\", \"{}\"]", "JSON object"),
        (b"42", "JSON object"),
        (b"{\"login_info\": \"{}\"}", "node_info"),
        (b"{\"login_info\": 5, \"node_info\": \"{}\"}", "login_info"),
        (
            b"{\"login_info\": null, \"node_info\": \"{}\"}",
            "login_info",
        ),
        (
            b"{\"login_info\": \"{}\", \"node_info\": \"{}\", \"extra\": 1}",
            "extra",
        ),
    ] {
        let refused = post(&http, &login_url, "application/json", body);
        assert_eq!(
            refused.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(body),
            refused.body
        );
        let error = refused.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(names), "{error:?} should name {names:?}");
    }
    for (path, body) in [
        ("/v1/auth_token", &b"{\"token\": 5}"[..]),
        ("/v1/auth_clear", b"{}"),
        ("/v1/auth", b"{\"login_info\": \"{}\"}"),
        ("/v1/new_node", b"{\"signup_info\": \"{}\"}"),
    ] {
        let refused = post(&http, &format!("{url}{path}"), "application/json", body);
        assert_eq!(refused.status, 400, "{path}: {}", refused.body);
        assert!(refused.json()["error"].is_string());
    }
    // The server goes on, on the same keep-alive client.
    let after = post_json(
        &http,
        &login_url,
        &json!({"login_info": {"id": 3}, "node_info": "{}"}),
    );
    assert_eq!(after.status, 200);
    assert_eq!(after.json()["code"], 3);
}

#[test]
fn a_body_over_1_mib_is_refused_413_and_one_of_1_mib_is_read() {
    let service = http_service(&policy("login.lua"), &[]);
    let (http, url) = (client(), service.http());
    let login_url = format!("{url}/v1/user_login");
    // A JSON object padded with spaces to exactly 1 MiB.
    let object = br#"{"login_info": {"id": 5}, "node_info": "{}"}"#;
    let mut body = object.to_vec();
    body.resize(1 << 20, b' ');
    let read = post(&http, &login_url, "application/json", &body);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["code"], 5);
    body.push(b' ');
    let refused = post(&http, &login_url, "application/json", &body);
    assert_eq!(refused.status, 413);
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("1048576"));
    let after = post(&http, &login_url, "application/json", object);
    assert_eq!(after.json()["code"], 5);
}

// ---------------------------------------------------------------------------------------
// GET|POST /auth (Flussonic) and GET /auth/request (nginx)

fn flussonic_auth_maps_decisions_to_200_403_503(plugins: &Path) {
    let service = http_service(plugins, &[]);
    let (http, url) = (client(), service.http());
    let allowed = get(
        &http,
        &format!("{url}/auth?login=alice&password=wonderland"),
        &[],
    );
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.header("x-authhost-user-id"), Some("7"));
    assert_eq!(allowed.json()["decision"], "user_id");

    let new_user = get(&http, &format!("{url}/auth?login=newbie"), &[]);
    assert_eq!(new_user.status, 200);
    assert_eq!(new_user.header("x-authhost-user-id"), Some("0"));
    assert_eq!(new_user.json()["decision"], "new_user");

    let refused = get(&http, &format!("{url}/auth?login=alice&password=nope"), &[]);
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("x-authhost-user-id"), None);
    assert_eq!(refused.json()["decision"], "not_authorized");

    let failed = get(&http, &format!("{url}/auth?login=boom"), &[]);
    assert_eq!(
        failed.status, 503,
        "an error lets a caller use its fallback"
    );
    assert_eq!(failed.header("x-authhost-user-id"), None);
    assert_eq!(failed.json()["decision"], "error");

    // The form body of POST /auth, percent-encoding decoded.
    let form = post(
        &http,
        &format!("{url}/auth"),
        "application/x-www-form-urlencoded",
        b"login=alice&password=wonder%6Cand",
    );
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(form.header("x-authhost-user-id"), Some("7"));

    // login_info is the JSON object of the parameters, every value a string.
    let shown = get(
        &http,
        &format!("{url}/auth?login=show-login&password=a%20b&token=&n=5"),
        &[],
    );
    assert_eq!(shown.status, 503);
    assert_eq!(
        raised_json(&shown),
        json!({"login": "show-login", "password": "a b", "token": "", "n": "5"})
    );

    // node_info describes the client.
    let node = get(
        &http,
        &format!("{url}/auth?login=show-node"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("user-agent", "flussonic-test"),
        ],
    );
    let node = raised_json(&node);
    assert_eq!(node["address"], "127.0.0.1");
    assert_eq!(node["forwarded_for"], "203.0.113.9");
    assert_eq!(node["user_agent"], "flussonic-test");
    assert_eq!(node["host"], service.http_host_port());
    let bare = get(&http, &format!("{url}/auth?login=show-node"), &[]);
    assert!(raised_json(&bare).get("forwarded_for").is_none());

    // A parameter given twice is refused, not guessed at.
    let twice = get(&http, &format!("{url}/auth?login=alice&login=bob"), &[]);
    assert_eq!(twice.status, 400);
}

fn auth_request_maps_decisions_to_200_401_500(plugins: &Path) {
    let service = http_service(plugins, &[]);
    let (http, url) = (client(), service.http());
    let request = format!("{url}/auth/request");
    let allowed = get(
        &http,
        &request,
        &[("authorization", &basic("alice", "wonderland"))],
    );
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("x-authhost-user-id"), Some("7"));
    assert_eq!(allowed.header("x-authhost-decision"), Some("user_id"));
    assert_eq!(allowed.header("www-authenticate"), None);
    // Headers only: nginx closes its connection after an answer with a body.
    assert_eq!(allowed.body, "");
    assert_eq!(allowed.header("content-length"), Some("0"));

    for (credentials, why) in [
        (Some(basic("alice", "wrong")), "a wrong password"),
        (None, "no credentials"),
        (
            Some("Basic !!!".to_string()),
            "credentials that are not base64",
        ),
        (Some("Digest x".to_string()), "another scheme"),
    ] {
        let headers: Vec<(&str, &str)> = credentials
            .iter()
            .map(|c| ("authorization", c.as_str()))
            .collect();
        let refused = get(&http, &request, &headers);
        assert_eq!(refused.status, 401, "{why}: {refused:?}");
        assert_eq!(refused.body, "", "{why}");
        assert_eq!(
            refused.header("x-authhost-decision"),
            Some("not_authorized"),
            "{why}"
        );
        assert_eq!(
            refused.header("www-authenticate"),
            Some(r#"Basic realm="authhost""#),
            "{why}"
        );
        assert_eq!(refused.header("x-authhost-user-id"), None, "{why}");
    }

    let failed = get(&http, &request, &[("authorization", &basic("boom", "x"))]);
    assert_eq!(failed.status, 500, "nginx refuses on 500: fail closed");
    assert_eq!(failed.header("x-authhost-user-id"), None);
    assert_eq!(failed.header("x-authhost-decision"), Some("error"));
    assert!(
        failed
            .header("x-authhost-error")
            .is_some_and(|e| e.contains("boom")),
        "the error names its cause: {failed:?}"
    );
    assert_eq!(failed.body, "");

    // login_info is {"login", "password"}; node_info the client and the proxy's headers.
    let shown = get(
        &http,
        &request,
        &[("authorization", &basic("show-login", "pa:ss"))],
    );
    assert_eq!(
        raised_json(&shown),
        json!({"login": "show-login", "password": "pa:ss"})
    );
    let node = get(
        &http,
        &request,
        &[
            ("authorization", &basic("show-node", "x")),
            ("x-original-uri", "/private/page?q=1"),
            ("x-original-method", "POST"),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-real-ip", "198.51.100.7"),
        ],
    );
    assert_eq!(
        raised_json(&node),
        json!({
            "address": "127.0.0.1",
            "original_uri": "/private/page?q=1",
            "original_method": "POST",
            "forwarded_for": "198.51.100.7",
            "real_ip": "198.51.100.7",
        })
    );
}

// ---------------------------------------------------------------------------------------
// Sessions over HTTP (issue 15)

fn auth_token_bearer_and_clear_cycle_over_http(plugins: &Path) {
    let service = http_service(plugins, &[]);
    let (http, url) = (client(), service.http());
    let credentials = json!({"login_info": {"login": "alice", "password": "wonderland"},
        "node_info": {}});
    let opened = post_json(&http, &format!("{url}/v1/auth"), &credentials);
    assert_eq!(opened.status, 200);
    let opened = opened.json();
    assert_eq!(opened["decision"], "user_id");
    assert_eq!(opened["code"], 7);
    assert_eq!(opened["expires_in"], 300);
    let token = opened["token"].as_str().unwrap().to_string();

    let wrong = json!({"login_info": {"login": "alice", "password": "no"}, "node_info": {}});
    let refused = post_json(&http, &format!("{url}/v1/auth"), &wrong).json();
    assert_eq!(refused["decision"], "not_authorized");
    assert!(refused.get("token").is_none());

    let checked = post_json(
        &http,
        &format!("{url}/v1/auth_token"),
        &json!({"token": token}),
    );
    assert_eq!(checked.status, 200);
    assert_eq!(checked.json()["decision"], "user_id");
    assert_eq!(checked.json()["code"], 7);

    let bearer = format!("Bearer {token}");
    let allowed = get(
        &http,
        &format!("{url}/auth/request"),
        &[("authorization", &bearer)],
    );
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.header("x-authhost-user-id"), Some("7"));

    let cleared = post_json(
        &http,
        &format!("{url}/v1/auth_clear"),
        &json!({"token": token}),
    );
    assert_eq!(cleared.status, 200);
    assert_eq!(cleared.json(), json!({"cleared": true}));
    let again = post_json(
        &http,
        &format!("{url}/v1/auth_clear"),
        &json!({"token": token}),
    );
    assert_eq!(again.json(), json!({"cleared": false}));

    let refused = get(
        &http,
        &format!("{url}/auth/request"),
        &[("authorization", &bearer)],
    );
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("www-authenticate"),
        Some(r#"Basic realm="authhost""#)
    );
    let checked = post_json(
        &http,
        &format!("{url}/v1/auth_token"),
        &json!({"token": token}),
    );
    assert_eq!(checked.json()["decision"], "not_authorized");
    assert_eq!(checked.json()["code"], -1);
}

// ---------------------------------------------------------------------------------------
// Health, status, metrics, the page

#[test]
fn health_readiness_status_and_metrics_follow_the_requests() {
    let service = http_service(&policy("login.lua"), &[]);
    let (http, url) = (client(), service.http());
    assert_eq!(get(&http, &format!("{url}/healthz"), &[]).status, 200);
    let ready = get(&http, &format!("{url}/readyz"), &[]);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["ready"], true);
    let status = get(&http, &format!("{url}/status"), &[]).json();
    assert_eq!(status["generation"], 1);
    assert_eq!(status["plugins"][0]["language"], "lua");

    let metrics = |http: &ureq::Agent| {
        let answer = get(http, &format!("{url}/metrics"), &[]);
        assert_eq!(answer.status, 200);
        assert!(answer.header("content-type").unwrap().contains("text"));
        answer.body
    };
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    };
    let before = metrics(&http);
    assert_eq!(value(&before, "authhost_generation"), 1.0);
    assert_eq!(value(&before, "authhost_ready"), 1.0);
    assert_eq!(value(&before, "authhost_workers_replaced_total"), 0.0);
    assert_eq!(
        value(&before, r#"authhost_requests_total{callback="user_login"}"#),
        0.0
    );
    for id in 1..=3 {
        let login = json!({"login_info": {"id": id}, "node_info": "{}"});
        post_json(&http, &format!("{url}/v1/user_login"), &login);
    }
    get(&http, &format!("{url}/auth?login=alice&password=no"), &[]);
    let after = metrics(&http);
    assert_eq!(
        value(&after, r#"authhost_requests_total{callback="user_login"}"#),
        4.0
    );
    assert_eq!(
        value(&after, r#"authhost_decisions_total{decision="user_id"}"#),
        3.0
    );
    assert_eq!(
        value(
            &after,
            r#"authhost_decisions_total{decision="not_authorized"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&after, "authhost_decision_latency_seconds_count"),
        4.0
    );
    assert_eq!(
        value(
            &after,
            r#"authhost_decision_latency_seconds_bucket{le="+Inf"}"#
        ),
        4.0
    );
    for series in [
        "authhost_timeouts_total",
        "authhost_overloaded_total",
        "authhost_queue_depth",
        "authhost_reloads_total",
        "authhost_reload_failures_total",
        r#"authhost_sessions_total{event="opened"}"#,
        "authhost_throttled_total",
        r#"authhost_upstream_calls_total{outcome="timeout"}"#,
        "authhost_upstream_fallbacks_total",
    ] {
        assert_eq!(value(&after, series), 0.0, "{series}");
    }
    // A scraper that asks for OpenMetrics gets it, whole (tests/it/prometheus.rs parses both).
    let openmetrics = get(
        &http,
        &format!("{url}/metrics"),
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    );
    assert!(openmetrics.body.trim_end().ends_with("# EOF"));
}

#[test]
fn the_status_page_shows_the_set_and_a_load_error_escaped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(policy("login.lua"), dir.path().join("login.lua")).unwrap();
    let service = http_service(dir.path(), &[]);
    let (http, url) = (client(), service.http());
    let page = get(&http, &format!("{url}/"), &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains(r#"<strong id="generation">1</strong>"#));
    assert!(page.body.contains(r#"<td class="language">lua</td>"#));
    assert!(page
        .body
        .contains("on_user_signup, on_user_login, on_new_node"));
    assert!(!page.body.contains("id=\"last-error\""));
    assert!(!page.body.contains("src=") && !page.body.contains("href="));

    // A broken save: its error (which quotes the "<" it chokes on) is shown, escaped.
    std::fs::write(dir.path().join("broken.lua"), "x = <script>\n").unwrap();
    service.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + PATIENCE;
    let page = loop {
        let page = get(&http, &format!("{url}/"), &[]);
        if page.body.contains("id=\"last-error\"") {
            break page.body;
        }
        assert!(std::time::Instant::now() < deadline, "no load error shown");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(page.contains("broken.lua"), "{page}");
    assert!(page.contains("&lt;"), "{page}");
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains(r#"<strong id="generation">1</strong>"#));
}

// ---------------------------------------------------------------------------------------
// Routing, limits, misbehaving clients

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    let service = http_service(&policy("login.lua"), &[]);
    let (http, url) = (client(), service.http());
    for path in [
        "/nope",
        "/v1",
        "/v1/user_logout",
        "/auth/request/x",
        "/healthz/",
    ] {
        let answer = get(&http, &format!("{url}{path}"), &[]);
        assert_eq!(answer.status, 404, "{path}");
        assert!(answer.json()["error"].as_str().unwrap().contains(path));
    }
    for path in ["/v1/user_login", "/rpc", "/v1/auth"] {
        assert_eq!(
            get(&http, &format!("{url}{path}"), &[]).status,
            405,
            "{path}"
        );
    }
    for path in ["/healthz", "/metrics", "/auth/request", "/", "/status"] {
        let answer = post(&http, &format!("{url}{path}"), "text/plain", b"x");
        assert_eq!(answer.status, 405, "{path}");
        assert!(answer.header("allow").unwrap().contains("GET"), "{path}");
    }
}

#[test]
fn a_client_too_slow_with_its_headers_is_dropped_and_others_are_served() {
    let service = http_service(&policy("login.lua"), &["--http-header-timeout-ms", "300"]);
    let mut slow = TcpStream::connect(service.http_host_port()).unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Half a request: the server closes the connection (perhaps after a 408) instead of
    // waiting for the rest.
    let mut rest = Vec::new();
    match slow.read_to_end(&mut rest) {
        Ok(_) => {
            let text = String::from_utf8_lossy(&rest);
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{text}"
            );
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    let answer = get(&client(), &format!("{}/healthz", service.http()), &[]);
    assert_eq!(answer.status, 200);
}

#[test]
fn connections_past_the_limit_are_answered_503_and_the_others_go_on() {
    let service = http_service(&policy("login.lua"), &["--max-connections", "1"]);
    let mut held = TcpStream::connect(service.http_host_port()).unwrap();
    held.set_read_timeout(Some(PATIENCE)).unwrap();
    // One answered request proves the held connection is accepted (and counted).
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buffer = [0u8; 1024];
    let n = held.read(&mut buffer).unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
    let refused = get(&client(), &format!("{}/healthz", service.http()), &[]);
    assert_eq!(refused.status, 503);
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("too many connections"));
    // The held connection is still served; once it closes, others are.
    held.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let n = held.read(&mut buffer).unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
    drop(held);
    let deadline = std::time::Instant::now() + PATIENCE;
    while get(&client(), &format!("{}/healthz", service.http()), &[]).status != 200 {
        assert!(std::time::Instant::now() < deadline, "never served again");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let service = http_service(&policy("login.lua"), &[]);
    let mut conn = TcpStream::connect(service.http_host_port()).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    let body = r#"{"login_info":{"id":11},"node_info":"{}"}"#;
    let request = format!(
        "POST /v1/user_login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Three requests pipelined on one connection: three answers on it, in order.
    conn.write_all(request.repeat(3).as_bytes()).unwrap();
    let mut received = String::new();
    let mut buffer = [0u8; 4096];
    while received.matches("\"code\":11").count() < 3 {
        let n = conn.read(&mut buffer).unwrap();
        assert!(n > 0, "the connection closed early: {received}");
        received.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    assert_eq!(received.matches("HTTP/1.1 200 OK").count(), 3, "{received}");
}

// ---------------------------------------------------------------------------------------
// POST /rpc and GET /ws

#[test]
fn rpc_answers_as_the_line_listeners_and_refuses_reload() {
    let service = http_service(&policy("login.lua"), &[]);
    let (http, url) = (client(), service.http());
    let rpc = |body: &str| {
        post(
            &http,
            &format!("{url}/rpc"),
            "application/json",
            body.as_bytes(),
        )
    };
    let answer = rpc(
        r#"{"jsonrpc":"2.0","id":1,"method":"user_login","params":{"login_info":{"id":8},"node_info":"{}"}}"#,
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["id"], 1);
    assert_eq!(answer.json()["result"]["code"], 8);
    let status = rpc(r#"{"jsonrpc":"2.0","id":"s","method":"status"}"#).json();
    assert_eq!(status["result"]["generation"], 1);
    let reload = rpc(r#"{"jsonrpc":"2.0","id":2,"method":"reload"}"#).json();
    assert!(reload["error"]["message"]
        .as_str()
        .unwrap()
        .contains("reload"));
    assert!(reload.get("result").is_none(), "{reload}");
    assert_eq!(rpc("not json").json()["error"]["code"], -32700);
    assert_eq!(
        rpc(r#"{"jsonrpc":"2.0","id":3,"method":"nope"}"#).json()["error"]["code"],
        -32601
    );
    let notification = rpc(r#"{"jsonrpc":"2.0","method":"status"}"#);
    assert_eq!(notification.status, 204);
    assert_eq!(notification.body, "");
}

fn websocket(
    service: &Service,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let (socket, response) =
        tungstenite::connect(format!("ws://{}/ws", service.http_host_port())).expect("a WebSocket");
    assert_eq!(response.status().as_u16(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    socket
}

fn ws_call(
    socket: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    text: &str,
) -> Value {
    socket.send(Message::text(text)).unwrap();
    ws_read(socket)
}

fn ws_read(
    socket: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
) -> Value {
    loop {
        match socket.read().expect("a WebSocket message") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("not a text frame: {other:?}"),
        }
    }
}

#[test]
fn websocket_frames_are_json_rpc_messages_with_the_line_rules() {
    let service = http_service(&policy("login.lua"), &[]);
    let mut socket = websocket(&service);
    // Pipelined: a hundred logins, each answered once with its own id.
    for id in 1..=100 {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": "user_login",
            "params": [{"id": id}, "{}"]});
        socket.send(Message::text(request.to_string())).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 100 {
        let answer = ws_read(&mut socket);
        assert_eq!(answer["result"]["code"], answer["id"], "{answer}");
        assert!(seen.insert(answer["id"].as_i64().unwrap()));
    }
    // Bad input is answered and the connection goes on.
    assert_eq!(ws_call(&mut socket, "not json")["error"]["code"], -32700);
    assert_eq!(ws_call(&mut socket, "[]")["error"]["code"], -32600);
    assert_eq!(
        ws_call(
            &mut socket,
            r#"{"jsonrpc":"2.0","id":1,"method":"user_login","params":[1]}"#
        )["error"]["code"],
        -32602
    );
    socket.send(Message::binary(b"{}".to_vec())).unwrap();
    assert_eq!(ws_read(&mut socket)["error"]["code"], -32600);
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"status","x":"{}"}}"#,
        "a".repeat(1 << 20)
    );
    let refused = ws_call(&mut socket, &long);
    assert_eq!(refused["error"]["code"], -32600);
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("longer"));
    let reload = ws_call(
        &mut socket,
        r#"{"jsonrpc":"2.0","id":"r","method":"reload"}"#,
    );
    assert_eq!(reload["error"]["code"], -32003, "{reload}");
    let status = ws_call(
        &mut socket,
        r#"{"jsonrpc":"2.0","id":"s","method":"status"}"#,
    );
    assert_eq!(status["result"]["ready"], true);
}

#[test]
fn websocket_auth_token_clear_cycle() {
    let service = http_service(&policy("login.lua"), &[]);
    let mut socket = websocket(&service);
    let opened = ws_call(
        &mut socket,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "auth", "params": {
            "login_info": {"login": "alice", "password": "wonderland"}, "node_info": {}}})
        .to_string(),
    );
    let token = opened["result"]["token"]
        .as_str()
        .expect("a token")
        .to_string();
    assert_eq!(opened["result"]["code"], 7);
    let call = |socket: &mut _, method: &str| {
        ws_call(
            socket,
            &json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": {"token": token}})
                .to_string(),
        )
    };
    assert_eq!(call(&mut socket, "auth_token")["result"]["code"], 7);
    assert_eq!(
        call(&mut socket, "auth_clear")["result"],
        json!({"cleared": true})
    );
    let refused = call(&mut socket, "auth_token");
    assert_eq!(refused["result"]["decision"], "not_authorized");
}

#[test]
fn sigterm_answers_a_websocket_in_flight_then_closes_it() {
    let mut service = http_service(&policy("login.lua"), &[]);
    let mut socket = websocket(&service);
    let slow = json!({"jsonrpc": "2.0", "id": "slow", "method": "user_login",
        "params": [{"id": 5, "ms": 1000}, "{}"]});
    socket.send(Message::text(slow.to_string())).unwrap();
    // Answered at once, so after the login was dispatched: the login is in flight.
    let status = ws_call(
        &mut socket,
        r#"{"jsonrpc":"2.0","id":"s","method":"status"}"#,
    );
    assert_eq!(status["id"], "s", "{status}");
    service.signal(libc::SIGTERM);
    let answer = ws_read(&mut socket);
    assert_eq!(answer["id"], "slow");
    assert_eq!(answer["result"]["code"], 5);
    loop {
        match socket.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1001, "going away");
                break;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    assert!(service.wait().success(), "{}", service.stderr_text());
}

#[test]
fn an_idle_websocket_is_closed() {
    let service = http_service(&policy("login.lua"), &["--ws-idle-timeout-ms", "1500"]);
    let mut socket = websocket(&service);
    let status = ws_call(&mut socket, r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#);
    assert_eq!(status["result"]["generation"], 1);
    // Then nothing: the server closes it, saying why.
    loop {
        match socket.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(frame.reason.as_str(), "idle");
                break;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Several listeners, the decision log, stopping

#[test]
fn one_process_serves_a_unix_socket_and_http_together() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let unix = format!("unix:{}", socket.display());
    let service = Service::start(&policy("login.lua"), &[&unix, "http:127.0.0.1:0"], &[]);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"user_login\",\"params\":[{\"id\":21},\"{}\"]}\n")
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap()["result"]["code"],
        21
    );
    let login = json!({"login_info": {"id": 22}, "node_info": "{}"});
    let answer = post_json(
        &client(),
        &format!("{}/v1/user_login", service.http()),
        &login,
    );
    assert_eq!(answer.json()["code"], 22);
    // Both count into the one host.
    let status = get(&client(), &format!("{}/status", service.http()), &[]).json();
    assert_eq!(status["counters"]["requests"]["user_login"], 2);
}

#[test]
fn http_beyond_loopback_needs_expose_and_then_warns() {
    let (code, stderr) = serve_exit(&policy("login.lua"), &["--listen", "http:0.0.0.0:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--expose"), "{stderr}");
    let service = Service::start(&policy("login.lua"), &["http:0.0.0.0:0"], &["--expose"]);
    let stderr = service.stderr_text();
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("WARN") && line.contains("beyond loopback")),
        "{stderr}"
    );
    let port = service
        .http_host_port()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    let answer = get(&client(), &format!("http://127.0.0.1:{port}/healthz"), &[]);
    assert_eq!(answer.status, 200);
}

#[test]
fn the_decision_log_records_http_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let mut service = http_service(
        &policy("login.lua"),
        &["--decision-log", log.to_str().unwrap()],
    );
    let (http, url) = (client(), service.http());
    get(
        &http,
        &format!("{url}/auth?login=alice&password=wonderland"),
        &[],
    );
    get(
        &http,
        &format!("{url}/auth/request"),
        &[("authorization", &basic("alice", "secret-password"))],
    );
    post_json(
        &http,
        &format!("{url}/v1/new_node"),
        &json!({"node_info": {"role": "async"}}),
    );
    // A login that opens a session is a decision too (user 7, then a token).
    let opened = post_json(
        &http,
        &format!("{url}/v1/auth"),
        &json!({"login_info": {"login": "alice", "password": "wonderland"}, "node_info": {}}),
    )
    .json();
    let token = opened["token"].as_str().unwrap().to_string();
    service.signal(libc::SIGTERM);
    assert!(service.wait().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("wonderland") && !text.contains("secret-password"));
    assert!(!text.contains(&token));
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decisions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["callback"].as_str().unwrap(),
                e["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(decisions.len(), 4, "{text}");
    let allowed = decisions
        .iter()
        .filter(|d| **d == ("on_user_login", "user_id"))
        .count();
    assert_eq!(allowed, 2, "/auth and /v1/auth: {text}");
    assert!(decisions.contains(&("on_user_login", "not_authorized")));
    assert!(decisions.contains(&("on_new_node", "async")));
}

fn sigterm_answers_the_http_requests_in_flight_then_exits_0(plugins: &Path) {
    let mut service = http_service(plugins, &[]);
    let url = service.http();
    // Six slow logins on six connections; two workers run two at a time.
    let requests: Vec<_> = (1..=6)
        .map(|id| {
            let url = url.clone();
            std::thread::spawn(move || {
                let login = json!({"login_info": {"id": id, "ms": 2000}, "node_info": "{}"});
                post_json(&client(), &format!("{url}/v1/user_login"), &login)
            })
        })
        .collect();
    // While no login has finished, four waiting in the queue means all six have arrived:
    // both workers are busy with the other two.
    let http = client();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let status = get(&http, &format!("{url}/status"), &[]).json();
        let finished = &status["counters"]["requests"]["user_login"];
        assert_eq!(finished, 0, "a login finished before all arrived: {status}");
        if status["queued"] == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the logins did not arrive"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(http);
    service.signal(libc::SIGTERM);
    for (id, request) in (1..=6).zip(requests) {
        let answer = request.join().unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["code"], id);
    }
    assert!(service.wait().success(), "{}", service.stderr_text());
}
