//! What the embedding layers cost: `SELECT user_login(?, ?)` on a rusqlite connection vs
//! `host.user_login` called directly, both on a trivial Lua policy and one worker, so the
//! difference is the SQL function's overhead (statement step, argument conversion, result).
//!
//! ```sh
//! cargo bench --bench embed
//! ```

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

const LOGIN: &str = r#"{"name":"alice","password":"pw"}"#;
const NODE: &str = r#"{"public_key":"pk-primary","address":"10.0.0.1"}"#;

fn user_login(c: &mut Criterion) {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policies/embed/trivial.lua");
    let host = authhost::Host::builder()
        .plugins(policy)
        .db(":memory:")
        .workers(1)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("trivial.lua loads");
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    authhost::sqlite::register_functions(&conn, &host).unwrap();
    let mut statement = conn.prepare("SELECT user_login(?, ?)").unwrap();

    let mut group = c.benchmark_group("user_login");
    group.bench_function("host_direct", |b| {
        b.iter(|| {
            let outcome = host.user_login(LOGIN, NODE);
            assert!(outcome.user() == Some(&authhost::UserDecision::UserId(1)));
        })
    });
    group.bench_function("sql_function", |b| {
        b.iter(|| {
            let code: i64 = statement
                .query_row([LOGIN, NODE], |row| row.get(0))
                .unwrap();
            assert_eq!(code, 1);
        })
    });
    group.finish();
}

criterion_group!(benches, user_login);
criterion_main!(benches);
