//! `authhost.db` and the password functions from Python, through real policies
//! (tests/policies/python_db/) and the real binary: persistence across processes, duplicates,
//! wrong passwords, injection, imported bcrypt hashes, concurrent writers, rollback of
//! half-done work, value mapping, `:memory:` shared by workers, deadlines inside SQLite, and
//! the Python example policy.

use crate::common::each_in_own_process;
use crate::db_support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// This file's policies.
const POLICIES: Policies = Policies("python_db");

use db_support::{credentials, node, user, Policies, NODE, TIMEOUT};

use authhost::{ErrorKind, Host, NodeDecision, Outcome, UserDecision};

fn error_message(outcome: &Outcome, kind: ErrorKind) -> String {
    let error = outcome
        .decision
        .error_cause()
        .unwrap_or_else(|| panic!("expected an error, got {outcome:?}"));
    assert_eq!(error.kind, kind, "{}", error.message);
    error.message.clone()
}

#[test]
fn signup_then_login_in_another_process_against_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let signup = POLICIES.call_binary(
        &db,
        &["user_signup", &credentials("alice", "s3cret-pw"), NODE],
    );
    assert_eq!(signup["decision"], "user_id", "{signup}");
    assert!(
        signup["plugin"].as_str().unwrap().ends_with("users.py"),
        "{signup}"
    );
    let id = signup["code"].as_i64().unwrap();
    assert!(id >= 1, "{signup}");

    let login = POLICIES.call_binary(
        &db,
        &["user_login", &credentials("alice", "s3cret-pw"), NODE],
    );
    assert_eq!(login["decision"], "user_id", "{login}");
    assert_eq!(login["code"], id, "{login}");

    let wrong = POLICIES.call_binary(
        &db,
        &["user_login", &credentials("alice", "s3cret-PW"), NODE],
    );
    assert_eq!(wrong["decision"], "not_authorized", "{wrong}");

    // What the policy stored is an argon2id hash with OWASP's minimum parameters, and the
    // audit row written in the same transaction.
    let connection = rusqlite::Connection::open(&db).unwrap();
    let hash: String = connection
        .query_row("SELECT password_hash FROM users WHERE id = ?", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let node: String = connection
        .query_row("SELECT node FROM signups WHERE user_id = ?", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(node, "pk-test");
}

#[test]
fn concurrent_signups_from_many_workers_lose_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let host = POLICIES.host("users", &db, 4);
    const SIGNUPS: usize = 48;
    let (sender, receiver) = mpsc::channel();
    for n in 0..SIGNUPS {
        let sender = sender.clone();
        host.user_signup_async(
            credentials(&format!("user{n}"), "pw-concurrent"),
            NODE,
            move |o| {
                let _ = sender.send((n, o));
            },
        );
    }
    let mut ids = HashSet::new();
    for _ in 0..SIGNUPS {
        let (n, outcome) = receiver
            .recv_timeout(TIMEOUT * 2)
            .expect("every signup answers");
        match user(&outcome) {
            UserDecision::UserId(id) => assert!(ids.insert(id), "user{n} got a duplicate id {id}"),
            other => panic!("user{n}: {other:?} {:?}", outcome.decision.error_cause()),
        }
    }
    host.shutdown();
    let connection = rusqlite::Connection::open(&db).unwrap();
    let mut statement = connection.prepare("SELECT id, name FROM users").unwrap();
    let stored: Vec<(i64, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored.len(), SIGNUPS);
    assert_eq!(
        stored.iter().map(|(id, _)| *id).collect::<HashSet<_>>(),
        ids
    );
    let names: HashSet<String> = stored.into_iter().map(|(_, name)| name).collect();
    assert_eq!(names, (0..SIGNUPS).map(|n| format!("user{n}")).collect());
    let audit: i64 = connection
        .query_row("SELECT count(DISTINCT user_id) FROM signups", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(audit, SIGNUPS as i64);
}

#[test]
fn an_exception_mid_transaction_leaves_no_partial_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    // One worker: the later requests run on the very connection the failures used.
    let host = POLICIES.host("partial", &db, 1);

    let failed = host.user_signup("item", "n");
    let message = error_message(&failed, ErrorKind::Raised);
    assert!(
        message.contains("RuntimeError: failed after two inserts"),
        "{message}"
    );
    assert!(message.contains("partial.py:"), "{message}");
    assert_eq!(
        node(&host.new_node("")),
        NodeDecision::Primary,
        "no item may remain"
    );

    // A transaction opened by hand with a bare BEGIN and abandoned, by an exception or by a
    // plain return: rolled back before the next request.
    let failed = host.user_login("by-hand", "fail");
    let message = error_message(&failed, ErrorKind::Raised);
    assert!(message.contains("hand-made transaction"), "{message}");
    assert_eq!(
        node(&host.new_node("")),
        NodeDecision::Primary,
        "no item may remain"
    );
    let returned = host.user_login("by-hand", "ok");
    assert_eq!(user(&returned), UserDecision::UserId(1));
    assert_eq!(
        node(&host.new_node("")),
        NodeDecision::Primary,
        "no item may remain"
    );

    host.shutdown();
    let connection = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = connection
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn values_map_between_sql_and_python() {
    let host = POLICIES.host("types", ":memory:", 1);
    let outcome = host.new_node("");
    assert_eq!(
        node(&outcome),
        NodeDecision::Primary,
        "{:?}",
        outcome.decision.error_cause()
    );
}

#[test]
fn sql_errors_are_exceptions_that_name_the_problem() {
    let host = POLICIES.host("errors", ":memory:", 1);
    let outcome = host.user_login("missing-table", "x");
    let message = error_message(&outcome, ErrorKind::Raised);
    assert!(message.contains("authhost.db.Error"), "{message}");
    assert!(
        message.contains("no such table: no_such_table"),
        "{message}"
    );
    assert!(message.contains("errors.py:"), "{message}");
    // A policy can catch them.
    assert_eq!(
        user(&host.user_login("caught", "x")),
        UserDecision::UserId(7)
    );
    // A thread the policy starts has no database of its own to use.
    assert_eq!(
        user(&host.user_login("other-thread", "x")),
        UserDecision::UserId(8)
    );
}

// With a 1 s deadline for its Python calls: alone in its process, with its own GIL.
each_in_own_process!(a_query_past_the_deadline_is_stopped_even_under_except_exception);

fn a_query_past_the_deadline_is_stopped_even_under_except_exception() {
    let host = Host::builder()
        .plugins(POLICIES.policy("errors"))
        .db(":memory:")
        .workers(1)
        .timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    let outcome = host.user_login("slow", "x");
    error_message(&outcome, ErrorKind::Timeout);
    // The worker and its connection serve the next request.
    assert_eq!(
        user(&host.user_login("caught", "x")),
        UserDecision::UserId(7)
    );
}

#[test]
fn a_failing_setup_is_a_load_error_naming_the_sql_problem() {
    db_support::a_failing_setup_is_a_load_error_naming_the_sql_problem(POLICIES, "bad_setup.py");
}

#[test]
fn the_python_example_policy_signs_up_logs_in_and_admits_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::builder()
        .plugins(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/python_db"))
        .db(dir.path().join("authhost.db"))
        .workers(2)
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let office = r#"{"public_key":"pk-office","address":"10.0.0.7"}"#;
    assert_eq!(node(&host.new_node(office)), NodeDecision::Primary);
    assert_eq!(
        node(&host.new_node(r#"{"public_key":"pk-laptop"}"#)),
        NodeDecision::Secondary
    );
    assert_eq!(
        node(&host.new_node(r#"{"public_key":"pk-backup"}"#)),
        NodeDecision::Async
    );
    assert_eq!(
        node(&host.new_node(r#"{"public_key":"pk-stolen"}"#)),
        NodeDecision::Unauthorized
    );
    assert_eq!(node(&host.new_node("not json")), NodeDecision::Unauthorized);
    // alice is seeded by setup().
    let alice = host.user_login(credentials("alice", "wonderland"), office);
    assert_eq!(user(&alice), UserDecision::UserId(1));
    let erin = user(&host.user_signup(credentials("erin", "erin-password"), office));
    assert_eq!(erin, UserDecision::UserId(2));
    assert_eq!(
        user(&host.user_signup(credentials("erin", "erin-password"), office)),
        UserDecision::NotAuthorized
    );
    // Names and passwords that break the rules.
    for (name, password) in [("bad name!", "long-enough"), ("frank", "short")] {
        assert_eq!(
            user(&host.user_signup(credentials(name, password), office)),
            UserDecision::NotAuthorized,
            "{name}"
        );
    }
    assert_eq!(
        user(&host.user_login(credentials("erin", "erin-password"), office)),
        erin
    );
    assert_eq!(
        user(&host.user_login(credentials("erin", "wrong-password"), office)),
        UserDecision::NotAuthorized
    );
    assert_eq!(
        user(&host.user_login(credentials("nobody", "erin-password"), office)),
        UserDecision::NotAuthorized
    );
    // Only through an allowed node.
    let elsewhere = r#"{"public_key":"pk-stolen"}"#;
    assert_eq!(
        user(&host.user_login(credentials("erin", "erin-password"), elsewhere)),
        UserDecision::NotAuthorized
    );
    // Reloading runs setup() again and changes nothing.
    host.reload().unwrap();
    assert_eq!(
        user(&host.user_login(credentials("alice", "wonderland"), office)),
        UserDecision::UserId(1)
    );
    assert_eq!(
        user(&host.user_login(credentials("erin", "erin-password"), office)),
        erin
    );
}

#[test]
fn a_duplicate_signup_is_refused_and_adds_no_row() {
    db_support::a_duplicate_signup_is_refused_and_adds_no_row(POLICIES);
}

#[test]
fn memory_database_is_shared_by_all_workers() {
    db_support::memory_database_is_shared_by_all_workers(POLICIES);
}

#[test]
fn wrong_passwords_and_unknown_users_are_refused() {
    db_support::wrong_passwords_and_unknown_users_are_refused(POLICIES);
}

#[test]
fn sql_injection_in_the_login_name_stays_inert() {
    db_support::sql_injection_in_the_login_name_stays_inert(POLICIES);
}

#[test]
fn bcrypt_hashes_from_other_implementations_verify() {
    // A corrupt hash is an error that says so, not a quiet "wrong password".
    let broken = db_support::bcrypt_hashes_from_other_implementations_verify(POLICIES);
    let message = error_message(&broken, ErrorKind::Raised);
    assert!(message.contains("ValueError"), "{message}");
    assert!(message.contains("malformed password hash"), "{message}");
    assert!(message.contains("users.py:"), "{message}");
}
