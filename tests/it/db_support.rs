//! What the database tests of both languages share: a host on a policy directory of one
//! language, decisions, credentials, the real binary, and the tests whose Lua and Python
//! policies answer alike (each language's directory has a `users` and a `handoff` policy).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use authhost::{Host, NodeDecision, Outcome, UserDecision};
use serde_json::{json, Value};

/// Generous: these machines are shared and argon2id takes tens of milliseconds per hash.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The node every test signs up and logs in through.
pub const NODE: &str = r#"{"public_key":"pk-test"}"#;

/// One language's test policies: `tests/policies/<dir>/`.
#[derive(Clone, Copy)]
pub struct Policies(pub &'static str);

impl Policies {
    /// A policy file or directory of this language.
    pub fn policy(self, name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/policies")
            .join(self.0)
            .join(name)
    }

    /// A host on the policy `plugins`, with `workers` workers, on `db`.
    pub fn host(self, plugins: &str, db: impl Into<PathBuf>, workers: usize) -> Host {
        Host::builder()
            .plugins(self.policy(plugins))
            .db(db)
            .workers(workers)
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_else(|e| panic!("{plugins} does not load: {e}"))
    }

    /// Runs the real binary's `call` on the `users` policy and returns its one JSON line.
    pub fn call_binary(self, db: &Path, args: &[&str]) -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_authhost"))
            .arg("call")
            .args(args)
            .arg("--plugins")
            .arg(self.policy("users"))
            .arg("--db")
            .arg(db)
            .arg("--timeout-ms")
            .arg(TIMEOUT.as_millis().to_string())
            .output()
            .expect("running authhost");
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"))
    }
}

/// The user decision of `outcome`.
pub fn user(outcome: &Outcome) -> UserDecision {
    outcome
        .user()
        .unwrap_or_else(|| panic!("a user decision, got {outcome:?}"))
        .clone()
}

/// The node decision of `outcome`.
pub fn node(outcome: &Outcome) -> NodeDecision {
    outcome
        .node()
        .unwrap_or_else(|| panic!("a node decision, got {outcome:?}"))
        .clone()
}

/// A login or signup as nodes send it.
pub fn credentials(name: &str, password: &str) -> String {
    json!({ "name": name, "password": password }).to_string()
}

/// A second signup under a taken name is refused, and its password is never stored.
pub fn a_duplicate_signup_is_refused_and_adds_no_row(policies: Policies) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let host = policies.host("users", &db, 2);
    let first = user(&host.user_signup(credentials("bob", "first-password"), NODE));
    assert!(matches!(first, UserDecision::UserId(_)), "{first:?}");
    let again = host.user_signup(credentials("bob", "other-password"), NODE);
    assert_eq!(user(&again), UserDecision::NotAuthorized);
    // The first password still works; the second was never stored.
    assert_eq!(
        user(&host.user_login(credentials("bob", "first-password"), NODE)),
        first
    );
    assert_eq!(
        user(&host.user_login(credentials("bob", "other-password"), NODE)),
        UserDecision::NotAuthorized
    );
    host.shutdown();
    let connection = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = connection
        .query_row("SELECT count(*) FROM users WHERE name = 'bob'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 1);
}

/// `:memory:` is one database for every worker, not one per connection.
pub fn memory_database_is_shared_by_all_workers(policies: Policies) {
    let host = policies.host("handoff", ":memory:", 2);
    // One worker writes "a" and then stays busy until "b" appears; only the other worker can
    // read "a" and write "b", so the hold ends only if the two share one database.
    let (sender, receiver) = mpsc::channel();
    host.new_node_async(r#"{"op":"hold","name":"a","until":"b"}"#, move |o| {
        let _ = sender.send(o);
    });
    let mut seen = false;
    for _ in 0..100_000 {
        if node(&host.new_node(r#"{"op":"read","name":"a"}"#)) == NodeDecision::Secondary {
            seen = true;
            break;
        }
        assert!(
            receiver.try_recv().is_err(),
            "the hold ended before its mark was read"
        );
    }
    assert!(seen, "the other worker never saw the mark");
    assert_eq!(
        node(&host.new_node(r#"{"op":"write","name":"b"}"#)),
        NodeDecision::Primary
    );
    let held = receiver.recv_timeout(TIMEOUT * 2).expect("the hold ends");
    assert_eq!(node(&held), NodeDecision::Primary, "{held:?}");
}

/// Logins with a wrong password, or for a name nobody signed up with, are refused.
pub fn wrong_passwords_and_unknown_users_are_refused(policies: Policies) {
    let host = policies.host("users", ":memory:", 1);
    let id = user(&host.user_signup(credentials("carol", "correct horse"), NODE));
    assert!(matches!(id, UserDecision::UserId(_)), "{id:?}");
    for (name, password) in [
        ("carol", "correct hors"),
        ("carol", ""),
        ("carol", "Correct horse"),
        ("nobody", "correct horse"),
    ] {
        let outcome = host.user_login(credentials(name, password), NODE);
        assert_eq!(
            user(&outcome),
            UserDecision::NotAuthorized,
            "{name}/{password}"
        );
    }
    assert_eq!(
        user(&host.user_login(credentials("carol", "correct horse"), NODE)),
        id
    );
}

/// SQL in a login or signup name is data, never a statement.
pub fn sql_injection_in_the_login_name_stays_inert(policies: Policies) {
    let host = policies.host("users", ":memory:", 1);
    let id = user(&host.user_signup(credentials("dave", "dave-password"), NODE));
    for name in [
        "dave' OR '1'='1",
        "' OR 1=1 --",
        "dave'; DROP TABLE users; --",
        "x\" OR \"\"=\"",
    ] {
        let outcome = host.user_login(credentials(name, "dave-password"), NODE);
        assert_eq!(user(&outcome), UserDecision::NotAuthorized, "{name}");
    }
    // The table is still there and so is dave.
    assert_eq!(
        user(&host.user_login(credentials("dave", "dave-password"), NODE)),
        id
    );
    // A name made of SQL signs up like any other, literally, and logs in as itself.
    let odd_name = "'); DELETE FROM users; --";
    let odd = user(&host.user_signup(credentials(odd_name, "pw-odd-name"), NODE));
    assert!(matches!(odd, UserDecision::UserId(_)), "{odd:?}");
    assert_ne!(odd, id);
    assert_eq!(
        user(&host.user_login(credentials(odd_name, "pw-odd-name"), NODE)),
        odd
    );
    assert_eq!(
        user(&host.user_login(credentials("dave", "dave-password"), NODE)),
        id
    );
}

/// Password hashes imported from other bcrypt implementations verify, and wrong passwords
/// against them are refused. Then a corrupt hash is stored for the user `broken`, whose
/// login the caller checks in its own language's terms; returns that login's outcome.
pub fn bcrypt_hashes_from_other_implementations_verify(policies: Policies) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let host = policies.host("users", &db, 1); // setup() creates the tables
                                               // Users imported from another system: jBCrypt's published test vectors ($2a$), and
                                               // hashes made by libxcrypt's crypt(3) ($2b$, $2y$) for "correct horse".
    let imported = [
        (
            "a-user",
            "a",
            "$2a$06$m0CrhHm10qJ3lXRY.5zDGO3rS2KdeeWLuGmsfGlMfOxih58VYVfxe",
        ),
        (
            "abc-user",
            "abc",
            "$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i",
        ),
        (
            "b-user",
            "correct horse",
            "$2b$10$abcdefghijklmnopqrstuu23JPZtHcGhwXSF41f93o/7vBdDut3Xu",
        ),
        (
            "y-user",
            "correct horse",
            "$2y$10$abcdefghijklmnopqrstuu23JPZtHcGhwXSF41f93o/7vBdDut3Xu",
        ),
    ];
    let connection = rusqlite::Connection::open(&db).unwrap();
    let mut ids = Vec::new();
    for (name, _, hash) in imported {
        connection
            .execute(
                "INSERT INTO users (name, password_hash) VALUES (?, ?)",
                [name, hash],
            )
            .unwrap();
        ids.push(connection.last_insert_rowid());
    }
    for ((name, password, _), id) in imported.iter().zip(ids) {
        let outcome = host.user_login(credentials(name, password), NODE);
        assert_eq!(user(&outcome), UserDecision::UserId(id), "{name}");
        let wrong = host.user_login(credentials(name, "not it"), NODE);
        assert_eq!(user(&wrong), UserDecision::NotAuthorized, "{name}");
    }
    connection
        .execute(
            "INSERT INTO users (name, password_hash) VALUES ('broken', '$2b$10$oops')",
            [],
        )
        .unwrap();
    host.user_login(credentials("broken", "pw"), NODE)
}

/// A `setup()` whose SQL fails makes the set fail to load, naming the file (`bad_setup`
/// policy, whose file is `file`) and the SQL problem.
pub fn a_failing_setup_is_a_load_error_naming_the_sql_problem(policies: Policies, file: &str) {
    let error = Host::builder()
        .plugins(policies.policy("bad_setup"))
        .db(":memory:")
        .workers(1)
        .build()
        .err()
        .expect("the set must not load");
    let message = error.to_string();
    assert!(message.contains(file), "{message}");
    assert!(message.contains("SQL error"), "{message}");
    assert!(message.contains("CREATE TABLE broken"), "{message}");
}
