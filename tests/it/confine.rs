//! SQL confinement (contract §5, issue 12): a Lua policy's SQL reaches only its own
//! database. Each refused form is an error naming what was refused, and creates no file;
//! what policies need still works; Python's SQL is not confined, unless the operator asks
//! (`confine_python_sql`), and then the same forms are refused the same way.

use std::path::Path;

use authhost::{ErrorKind, Host, UserDecision};

use crate::common::{builder, error_of, RELAXED};

fn host(dir: &Path, plugins: &str) -> Host {
    confined_host(dir, plugins, false)
}

fn confined_host(dir: &Path, plugins: &str, confine_python_sql: bool) -> Host {
    builder(plugins)
        .db(dir.join("app.db"))
        .workers(1)
        .timeout(RELAXED)
        .confine_python_sql(confine_python_sql)
        .build()
        .expect("the policy loads")
}

#[test]
fn lua_sql_that_reaches_outside_its_database_is_refused_and_names_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "confine/lua/sql.lua");
    every_form_is_refused(&host, dir.path(), "Lua");
}

#[cfg(feature = "python")]
#[test]
fn confined_python_sql_is_refused_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let host = confined_host(dir.path(), "confine/python/sql.py", true);
    every_form_is_refused(&host, dir.path(), "Python");
}

/// Each form of `sql.lua`/`sql.py` is refused with a message naming it and the policy's
/// `language`, creates no file, and the allowed forms still work.
fn every_form_is_refused(host: &Host, dir: &Path, language: &str) {
    let prefix = format!("SQL refused in a {language} policy: ");
    let target = dir.join("escaped.db");
    let target = target.display().to_string();
    for (what, refused) in [
        ("attach", "ATTACH"),
        ("attach_literal", "ATTACH"),
        ("vacuum_into", "VACUUM INTO"),
        ("vacuum", "VACUUM"),
        ("load_extension", "load_extension()"),
        ("journal_mode", "PRAGMA journal_mode"),
        ("writable_schema", "PRAGMA writable_schema"),
        ("database_list", "PRAGMA database_list"),
        ("user_version_write", "PRAGMA user_version"),
    ] {
        let outcome = host.user_login(format!("{what} {target}"), "{}");
        let error = error_of(&outcome);
        assert_eq!(error.kind, ErrorKind::Raised, "{what}: {outcome:?}");
        let reason = error
            .message
            .split_once(prefix.as_str())
            .map(|(_, reason)| reason)
            .unwrap_or_else(|| panic!("{what}: not refused: {}", error.message));
        assert!(reason.contains(refused), "{what}: {}", error.message);
        assert!(!Path::new(&target).exists(), "{what} created {target}");
    }
    // Refusals leave the connection usable, and the allowed forms work.
    assert_eq!(
        host.user_login("allowed", "{}").user(),
        Some(&UserDecision::UserId(1))
    );
}

#[cfg(feature = "python")]
#[test]
fn python_sql_is_not_confined() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "confine/python/attach.py");
    let target = dir.path().join("attached.db");
    assert_eq!(
        host.user_login(target.display().to_string(), "{}").user(),
        Some(&UserDecision::UserId(1))
    );
    assert!(target.exists());
}
