//! Helpers shared by the integration tests: where the test policies are, and hosts on them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
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

/// Set, to the test's name, in the environment of a process [`run_alone`] started.
pub const ALONE: &str = "AUTHHOST_TEST_ALONE";

/// Runs the `#[ignore]`d test `name` (its whole path, as `--exact` takes it) in a process of
/// its own, a child of this test binary with [`ALONE`] set, and fails if it does; returns what
/// it printed. For a test that must not share a process with the other tests, which run at
/// the same time: one that needs Python not started yet, or that holds Python's GIL, which
/// would stop every other test's Python calls.
pub fn run_alone(name: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .env(ALONE, name)
        .output()
        .expect("running the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{name} did not run: {stdout}");
    stdout
}

/// Whether this process is the one [`run_alone`] started for the test `name`.
pub fn alone(name: &str) -> bool {
    std::env::var_os(ALONE).is_some_and(|running| running == name)
}

/// The harness's name of the test `alone::name` that [`each_in_own_process`] defines, from
/// the `module_path!()` of its `in_own_process` module (which begins with this binary's crate
/// name, which test names leave out).
pub fn alone_test(module: &str, name: &str) -> String {
    let path = module
        .split_once("::")
        .map_or(module, |(_crate, path)| path);
    let parent = path.rsplit_once("::").map_or("", |(parent, _own)| parent);
    format!("{parent}::alone::{name}")
}

/// Defines each scenario `name()` of the calling module as the test `in_own_process::name`,
/// which runs it alone in a process of its own ([`run_alone`]) as the ignored test
/// `alone::name`. For scenarios with short deadlines that spin Python, or hold its GIL, or
/// need it in time: a process has one GIL, and the other tests of this binary run in this
/// one at the same time, so a Python loop in one test took the GIL from another's calls and
/// made them miss 1 s deadlines on a loaded machine.
macro_rules! each_in_own_process {
    ($($name:ident),* $(,)?) => {
        mod in_own_process {
            $(#[test] fn $name() {
                $crate::common::run_alone(&$crate::common::alone_test(
                    module_path!(),
                    stringify!($name),
                ));
            })*
        }
        mod alone {
            $(#[test]
            #[ignore = "run in a process of its own by in_own_process::"]
            fn $name() { super::$name() })*
        }
    };
}
pub(crate) use each_in_own_process;

/// The error of an `error` outcome; panics with the outcome otherwise.
pub fn error_of(outcome: &Outcome) -> DecisionError {
    outcome
        .decision
        .error_cause()
        .cloned()
        .unwrap_or_else(|| panic!("expected an error decision, got {outcome:?}"))
}

/// A directory 150+ characters deep under `root`, as a user's checkout may be: Lua cuts
/// chunk names to 60 bytes, and messages must name the whole path anyway (contract §7:
/// `FILE:LINE:`).
pub fn long_directory(root: &Path) -> PathBuf {
    let dir = root.join("a-checkout-at-a-long-path-as-users-have-them".repeat(4));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(dir.display().to_string().len() > 150);
    dir
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
