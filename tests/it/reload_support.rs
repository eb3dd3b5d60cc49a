//! Shared helpers of the reload tests (`tests/it/reload.rs`, `tests/it/reload_python.rs`): a
//! temporary plugins directory filled from the policies under `tests/policies/reload/`, and
//! polling with a generous deadline (tests wait for an answer, they never time one).

#![allow(dead_code)] // Each test file uses its own subset.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use authhost::{Host, NodeDecision, Outcome, UserDecision};

/// How long a test waits for a reload to show. Generous: the machine may be very busy, and
/// the tests assert answers, never speed.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A test policy file.
pub fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policies/reload")
        .join(name)
}

/// The text of a test policy file.
pub fn policy_text(name: &str) -> String {
    std::fs::read_to_string(policy(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A temporary plugins directory.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    /// An empty plugins directory.
    pub fn new() -> PluginDir {
        PluginDir {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The path of `name` inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Saves `text` as `name` in place (truncate, then write), as many editors do.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.file(name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    /// Saves the test policy `policy_name` as `name`, in place.
    pub fn install(&self, policy_name: &str, name: &str) {
        self.write(name, &policy_text(policy_name));
    }

    /// Saves `text` as `name` atomically: written to `name.tmp`, then renamed over `name`.
    pub fn write_atomically(&self, name: &str, text: &str) {
        let temporary = self.file(&format!("{name}.tmp"));
        std::fs::write(&temporary, text).unwrap_or_else(|e| panic!("{name}.tmp: {e}"));
        std::fs::rename(&temporary, self.file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    /// Creates the directory `name` inside the plugins directory.
    pub fn make_dir(&self, name: &str) {
        std::fs::create_dir(self.file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    /// Makes `name` a symbolic link to `target`.
    pub fn link(&self, target: &Path, name: &str) {
        std::os::unix::fs::symlink(target, self.file(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    /// Deletes `name`.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A host with watching on, on `plugins`, with a timeout long enough that a busy machine
/// does not turn answers into timeouts.
pub fn watching_host(plugins: &Path) -> Host {
    Host::builder()
        .plugins(plugins)
        .db(":memory:")
        .workers(2)
        .timeout(Duration::from_secs(30))
        .watch(true)
        .build()
        .expect("the host builds")
}

/// Polls `probe` until it returns `Some`, or gives up after [`PATIENCE`].
pub fn eventually<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The user id of a user outcome, or a description of what came instead.
pub fn user_id(outcome: &Outcome) -> Result<i64, String> {
    match outcome.user() {
        Some(UserDecision::UserId(id)) => Ok(*id),
        _ => Err(outcome.to_json().to_string()),
    }
}

/// Asks `on_user_login` until it answers `expected`, asserting on the way that every answer
/// is `allowed` (the old version's or the new one's, never an error).
pub fn wait_for_login(host: &Host, expected: i64, allowed: &[i64]) {
    let mut last = None;
    let seen = eventually(|| {
        let outcome = host.user_login(r#"{"name":"alice"}"#, r#"{"public_key":"k"}"#);
        let id = user_id(&outcome);
        match &id {
            Ok(id) if allowed.contains(id) || *id == expected => {}
            _ => panic!("an answer from neither version: {}", outcome.to_json()),
        }
        last = Some(outcome.to_json());
        (id == Ok(expected)).then_some(())
    });
    assert!(
        seen.is_some(),
        "never answered {expected}; last answer {last:?}; status {}",
        host.status().to_json()
    );
}

/// The role `host` gives to `node` once some plugin of the live set answers it (not `error`),
/// or `None` if none does within the patience of [`eventually`].
pub fn role_once_answered(host: &Host, node: &str) -> Option<NodeDecision> {
    eventually(|| match host.new_node(node).node() {
        Some(NodeDecision::Error(_)) | None => None,
        Some(role) => Some(role.clone()),
    })
}
