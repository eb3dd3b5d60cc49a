//! Helpers shared by the integration tests: where the test policies are, and hosts on them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use authhost::{DecisionError, Host, HostBuilder, Outcome};

/// A test policy file or directory under `tests/policies/`.
pub fn policy(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies")
        .join(relative)
}

/// A builder on the policy at `relative`, with an in-memory database and two workers.
pub fn builder(relative: &str) -> HostBuilder {
    Host::builder()
        .plugins(policy(relative))
        .db(":memory:")
        .workers(2)
}

/// A host on the policy at `relative`.
pub fn host(relative: &str) -> Host {
    builder(relative).build().expect("the test policy loads")
}

/// A generous timeout for tests that do not test timeouts: the machine may be loaded.
pub const RELAXED: Duration = Duration::from_secs(20);

/// The error of an `error` outcome; panics with the outcome otherwise.
pub fn error_of(outcome: &Outcome) -> DecisionError {
    outcome
        .decision
        .error_cause()
        .cloned()
        .unwrap_or_else(|| panic!("expected an error decision, got {outcome:?}"))
}

/// Defines each scenario `name(policy: &Path)` as two tests: `lua_policy::name` on the
/// area's `login.lua` and `python_policy::name` on its Python twin `login.py`, both found
/// by the area's own `policy(file)` function.
macro_rules! in_both_languages {
    ($($name:ident),* $(,)?) => {
        mod lua_policy {
            $(#[test] fn $name() { super::$name(&super::policy("login.lua")) })*
        }
        #[cfg(feature = "python")]
        mod python_policy {
            $(#[test] fn $name() { super::$name(&super::policy("login.py")) })*
        }
    };
}
pub(crate) use in_both_languages;
