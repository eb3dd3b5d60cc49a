//! JSON-RPC 2.0 batches: an array of requests is answered with an array of the members'
//! responses; an empty array is one −32600; a batch of notifications gets nothing back;
//! a batch over the limit is refused whole.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{error_code, login, policy, result, Service};

fn unix_service(dir: &tempfile::TempDir, extra: &[&str]) -> Service {
    let socket = dir.path().join("authhost.sock");
    Service::start(
        &policy("echo.lua"),
        &format!("unix:{}", socket.display()),
        extra,
    )
}

fn request(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// The answers of an array response, by their id (as JSON text).
fn by_id(answers: &Value) -> HashMap<String, &Value> {
    let answers = answers
        .as_array()
        .unwrap_or_else(|| panic!("a batch is answered with an array: {answers}"));
    let by_id: HashMap<String, &Value> = answers.iter().map(|a| (a["id"].to_string(), a)).collect();
    assert_eq!(by_id.len(), answers.len(), "one answer per id: {answers:?}");
    by_id
}

#[test]
fn a_batch_of_valid_invalid_and_notification_members_gets_one_answer_each() {
    let dir = tempfile::tempdir().unwrap();
    let service = unix_service(&dir, &[]);
    let mut conn = service.connect();
    let batch = json!([
        request(json!(1), "user_login", login(11)),
        42,
        notification("user_login", login(12)),
        request(json!("nope"), "no_such_method", json!([])),
        {"jsonrpc": "2.0", "id": 3, "method": "user_login"},
        {"jsonrpc": "1.0", "id": 4, "method": "status"},
        request(json!(5), "new_node", json!({"node_info": {"role": "async"}})),
        notification("no_such_method", json!([])),
        {"jsonrpc": "2.0", "id": 6, "method": "status"},
    ]);
    conn.send(&batch);
    let answers = conn.recv();
    let answers = by_id(&answers);
    // Nine members, two notifications: seven answers.
    assert_eq!(answers.len(), 7, "{answers:?}");
    assert_eq!(result(answers["1"])["code"], 11);
    assert_eq!(error_code(answers["null"]), -32600, "the member 42");
    assert_eq!(error_code(answers["\"nope\""]), -32601);
    assert_eq!(error_code(answers["3"]), -32602);
    assert_eq!(error_code(answers["4"]), -32600);
    assert_eq!(result(answers["5"])["decision"], "async");
    assert_eq!(result(answers["6"])["generation"], 1);
    for answer in answers.values() {
        assert_eq!(answer["jsonrpc"], "2.0");
    }
    // A batch of one is still a batch; single requests go on as before.
    conn.send(&json!([request(json!(7), "user_login", login(7))]));
    let answers = conn.recv();
    assert_eq!(result(&answers.as_array().unwrap()[0])["code"], 7);
    assert_eq!(result(&conn.call("user_login", login(8)))["code"], 8);
}

#[test]
fn an_empty_batch_is_one_invalid_request_error() {
    let dir = tempfile::tempdir().unwrap();
    let service = unix_service(&dir, &[]);
    let mut conn = service.connect();
    for empty in ["[]\n", " [ ]\n"] {
        conn.send_raw(empty.as_bytes());
        let answer = conn.recv();
        assert!(answer.is_object(), "one error, not an array: {answer}");
        assert_eq!(error_code(&answer), -32600, "{answer}");
        assert_eq!(answer["id"], Value::Null);
    }
    assert_eq!(result(&conn.call("user_login", login(2)))["code"], 2);
}

#[test]
fn a_batch_of_notifications_gets_nothing_back() {
    let mut service = Service::start(&policy("echo.lua"), "stdio", &[]);
    let mut conn = service.stdio();
    conn.send(&json!([
        notification("user_login", login(1)),
        notification("status", json!([])),
        notification("no_such_method", json!([])),
        notification("new_node", json!([{"role": "primary"}])),
    ]));
    conn.send(&request(json!("after"), "status", json!([])));
    // The service answers everything it read before it exits: only the status is there.
    let answers = service.answers_until_exit(conn);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["id"], "after");
    assert_eq!(result(&answers[0])["ready"], true);
}

#[test]
fn a_batch_over_the_limit_is_refused_whole_and_one_at_the_limit_is_answered() {
    // Four pending places: a batch takes one per member, and one larger than that takes all
    // four (it is still answered, never stuck).
    let dir = tempfile::tempdir().unwrap();
    let service = unix_service(&dir, &["--max-pending", "4"]);
    let mut conn = service.connect();
    let members = |n: i64| -> Vec<Value> {
        (1..=n)
            .map(|id| request(json!(id), "user_login", login(id)))
            .collect()
    };
    conn.send(&Value::Array(members(257)));
    let refused = conn.recv();
    assert_eq!(error_code(&refused), -32600, "{refused}");
    assert_eq!(refused["id"], Value::Null);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 256"), "{message}");

    conn.send(&Value::Array(members(256)));
    let answers = conn.recv();
    let answers = by_id(&answers);
    assert_eq!(answers.len(), 256);
    for id in 1..=256 {
        assert_eq!(result(answers[&id.to_string()])["code"], id);
    }
    assert_eq!(result(&conn.call("status", Value::Null))["ready"], true);
}
