//! Hot reload with Lua policies (contract §4): watched saves, broken saves, deletions,
//! atomic-rename saves of a single file, `Host::reload`, freeing old generations, and
//! reloads under load. Python's share is in `tests/it/reload_python.rs`.

use crate::reload_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authhost::{ErrorKind, Host, NodeDecision, Outcome, PluginSet};
use reload_support::*;

const LOGIN: &str = r#"{"name":"alice"}"#;
const NODE: &str = r#"{"public_key":"k","address":"10.0.0.7"}"#;

#[test]
fn a_changed_plugin_answers_with_the_new_version() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    plugins.install("nodes.lua", "nodes.lua");
    let host = watching_host(plugins.path());
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));
    assert!(host.status().watching);

    plugins.install("login_v2.lua", "login.lua");
    wait_for_login(&host, 202, &[101]);

    let status = host.status();
    assert!(status.generation >= 2, "{}", status.to_json());
    assert!(status.reloads >= 1, "{}", status.to_json());
    assert!(status.last_reload_at.is_some());
    assert_eq!(status.last_error, None);
    // The untouched plugin was reloaded with the set and still answers.
    assert_eq!(host.new_node(NODE).node(), Some(&NodeDecision::Secondary));
    let json = status.to_json();
    assert_eq!(json["watching"], true);
    assert!(json["last_reload_at_ms"].as_u64().unwrap() >= json["loaded_at_ms"].as_u64().unwrap());
}

#[test]
fn a_broken_save_keeps_the_old_set_and_shows_the_error_until_fixed() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    let host = watching_host(plugins.path());
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));

    plugins.install("login_broken.lua", "login.lua");
    let error = eventually(|| host.status().last_error).expect("the broken save shows in status");
    let file = plugins.file("login.lua").display().to_string();
    assert!(
        error.starts_with(&format!("{file}:5: ")),
        "the error names the file and line 5: {error}"
    );
    let status = host.status();
    assert!(status.reload_failures >= 1, "{}", status.to_json());
    assert_eq!(status.generation, 1, "a failed load must not go live");
    assert_eq!(status.to_json()["last_error"], error.as_str());
    // The running set stays: still version 1.
    let outcome = host.user_login(LOGIN, NODE);
    assert_eq!(user_id(&outcome), Ok(101));
    assert_eq!(outcome.generation, Some(1));

    plugins.install("login_v2.lua", "login.lua");
    wait_for_login(&host, 202, &[101]);
    let fixed = eventually(|| host.status().last_error.is_none().then_some(()));
    assert!(fixed.is_some(), "a later good load clears last_error");
}

#[test]
fn a_deleted_plugin_takes_its_callback_away() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    plugins.install("nodes.lua", "nodes.lua");
    let host = watching_host(plugins.path());
    assert_eq!(host.new_node(NODE).node(), Some(&NodeDecision::Secondary));

    plugins.remove("nodes.lua");
    let gone = eventually(|| {
        let outcome = host.new_node(NODE);
        match outcome.node() {
            Some(NodeDecision::Secondary) => None,
            _ => Some(outcome),
        }
    })
    .expect("the deleted plugin's callback goes away");
    let error = gone.decision.error_cause().expect("an error decision");
    assert_eq!(error.kind, ErrorKind::MissingCallback);
    assert_eq!(error.message, "no plugin defines on_new_node");
    let status = host.status();
    let files: Vec<_> = status.plugins.iter().map(|p| p.file.clone()).collect();
    assert_eq!(files, [plugins.file("login.lua")]);
    // The other plugin is untouched.
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));
}

#[test]
fn an_added_plugin_is_picked_up() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    let host = watching_host(plugins.path());
    assert_eq!(
        host.new_node(NODE).decision.error_cause().map(|e| e.kind),
        Some(ErrorKind::MissingCallback)
    );

    plugins.install("nodes.lua", "nodes.lua");
    let role = role_once_answered(&host, NODE);
    assert_eq!(role, Some(NodeDecision::Secondary));
}

#[test]
fn editor_leftovers_do_not_reload_but_the_save_after_them_does() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    let host = watching_host(plugins.path());
    // Leftovers hold a different answer: were they loaded, it would show.
    let v2 = policy_text("login_v2.lua");
    plugins.write("login.lua~", &v2);
    plugins.write(".login.lua.swp", &v2);
    plugins.write("login.tmp", &v2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(host.status().reloads, 0, "{}", host.status().to_json());
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));

    plugins.write("login.lua", &v2);
    wait_for_login(&host, 202, &[101]);
}

#[test]
fn a_single_watched_file_survives_atomic_rename_saves() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    let host = watching_host(&plugins.file("login.lua"));
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));

    // Each rename replaces the file's inode; a watch on the file itself would go deaf after
    // the first. Alternate versions so that every round must be seen.
    let (v1, v2) = (policy_text("login_v1.lua"), policy_text("login_v2.lua"));
    for round in 0..3 {
        plugins.write_atomically("login.lua", &v2);
        wait_for_login(&host, 202, &[101]);
        plugins.write_atomically("login.lua", &v1);
        wait_for_login(&host, 101, &[202]);
        assert!(
            host.status().reloads >= 2 * (round + 1),
            "{}",
            host.status().to_json()
        );
    }
    // Other files beside the watched one are not part of the set.
    let before = host.status().generation;
    plugins.install("nodes.lua", "nodes.lua");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(host.status().generation, before);
    assert!(host.new_node(NODE).decision.is_error());
}

#[test]
fn a_symlinked_plugin_reloads_when_its_target_outside_changes() {
    let outside = PluginDir::new();
    outside.install("login_v1.lua", "login.lua");
    let plugins = PluginDir::new();
    plugins.link(&outside.file("login.lua"), "login.lua");
    let (v1, v2) = (policy_text("login_v1.lua"), policy_text("login_v2.lua"));
    // The link in a plugins directory, and the link as the single plugin file.
    for watched in [plugins.path().to_path_buf(), plugins.file("login.lua")] {
        outside.write("login.lua", &v1);
        let host = watching_host(&watched);
        assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));
        // Rewritten in place: the link is unchanged, its target is not.
        outside.write("login.lua", &v2);
        wait_for_login(&host, 202, &[101]);
        // Saved by rename: a new file at the target's path, which is watched in turn.
        outside.write_atomically("login.lua", &v1);
        wait_for_login(&host, 101, &[202]);
        outside.write("login.lua", &v2);
        wait_for_login(&host, 202, &[101]);
    }
}

#[test]
fn a_plugins_directory_deleted_and_recreated_is_watched_again() {
    let root = PluginDir::new();
    let dir = root.file("policies");
    let (v1, v2) = (policy_text("login_v1.lua"), policy_text("login_v2.lua"));
    root.make_dir("policies");
    root.write("policies/login.lua", &v1);
    let host = watching_host(&dir);
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));

    // Moved away in one step: while the path is missing, the last good set answers and
    // status says why no reload goes live.
    std::fs::rename(&dir, root.file("policies.old")).unwrap();
    let error = eventually(|| host.status().last_error).expect("the missing path shows in status");
    assert!(
        error.starts_with(&format!("{}: cannot read plugins: ", dir.display())),
        "{error}"
    );
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));
    assert_eq!(host.status().generation, 1);
    // Edits in the directory moved away are not the plugins any more.
    root.write("policies.old/login.lua", &v2);

    // Back, prepared beside it and moved in whole: it goes live, and later edits in it are
    // seen.
    root.make_dir("policies.new");
    root.write("policies.new/login.lua", &v2);
    std::fs::rename(root.file("policies.new"), &dir).unwrap();
    wait_for_login(&host, 202, &[101]);
    let fixed = eventually(|| host.status().last_error.is_none().then_some(()));
    assert!(fixed.is_some(), "{}", host.status().to_json());
    root.write("policies/login.lua", &v1);
    wait_for_login(&host, 101, &[202]);

    // Deleted file by file and created again (`rm -r`, then a fresh copy): a reload may
    // come between the steps (the set without the file refuses logins meanwhile).
    std::fs::remove_dir_all(&dir).unwrap();
    root.make_dir("policies");
    root.write("policies/login.lua", &v2);
    let live = eventually(|| (user_id(&host.user_login(LOGIN, NODE)) == Ok(202)).then_some(()));
    assert!(live.is_some(), "{}", host.status().to_json());
    root.write("policies/login.lua", &v1);
    wait_for_login(&host, 101, &[202]);
}

#[test]
fn reload_on_request_swaps_or_keeps_the_set() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    let host = Host::builder()
        .plugins(plugins.path())
        .db(":memory:")
        .workers(2)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(
        !host.status().watching,
        "the library does not watch unless asked"
    );

    plugins.install("login_v2.lua", "login.lua");
    // Not watching: nothing changes until asked.
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));
    let status = host.reload().expect("version 2 loads");
    assert_eq!(status.generation, 2);
    assert_eq!(status.reloads, 1);
    // Workers move to the live set before their next request.
    let outcome = host.user_login(LOGIN, NODE);
    assert_eq!(user_id(&outcome), Ok(202));
    assert_eq!(outcome.generation, Some(2));

    plugins.install("login_broken.lua", "login.lua");
    let error = host.reload().expect_err("a syntax error does not load");
    let file = plugins.file("login.lua").display().to_string();
    assert!(
        error.to_string().starts_with(&format!("{file}:5: ")),
        "{error}"
    );
    let status = host.status();
    assert_eq!(status.last_error, Some(error.to_string()));
    assert_eq!(
        (status.generation, status.reloads, status.reload_failures),
        (2, 1, 1)
    );
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(202));

    plugins.install("login_v1.lua", "login.lua");
    let status = host.reload().expect("fixed");
    assert_eq!((status.generation, status.last_error), (3, None));
    assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));
}

#[test]
fn watching_can_start_and_stop_on_a_built_host() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    let host = Host::builder()
        .plugins(plugins.path())
        .workers(1)
        .build()
        .unwrap();
    host.watch_plugins().unwrap();
    host.watch_plugins().unwrap(); // Idempotent.
    assert!(host.is_watching());
    plugins.install("login_v2.lua", "login.lua");
    wait_for_login(&host, 202, &[101]);

    host.stop_watching();
    assert!(!host.status().watching);
    let generation = host.status().generation;
    plugins.install("login_v1.lua", "login.lua");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        host.status().generation,
        generation,
        "no reload after stop_watching"
    );

    host.watch_plugins().unwrap();
    host.shutdown();
    assert!(!host.status().watching, "shutdown stops watching");
}

#[test]
fn old_generations_are_freed_once_no_worker_uses_them() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    let host = Host::builder()
        .plugins(plugins.path())
        .workers(1)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // One worker: after a request on the new generation, nothing holds the old one.
    for _ in 0..20 {
        let old = Arc::downgrade(&host.plugin_set());
        host.reload().unwrap();
        assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));
        assert!(
            old.upgrade().is_none(),
            "an old generation outlived its last user"
        );
    }

    // Several workers, reloads with no requests: an idle worker holds at most its one set.
    let workers = 3;
    let host = Host::builder()
        .plugins(plugins.path())
        .workers(workers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut generations: Vec<std::sync::Weak<PluginSet>> = Vec::new();
    for i in 0..30 {
        generations.push(Arc::downgrade(&host.plugin_set()));
        host.reload().unwrap();
        if i % 7 == 0 {
            assert_eq!(user_id(&host.user_login(LOGIN, NODE)), Ok(101));
        }
    }
    let alive = generations.iter().filter(|g| g.upgrade().is_some()).count();
    assert!(
        alive <= workers,
        "{alive} old generations alive with {workers} workers"
    );

    // Dropping the host frees everything: no reference cycle keeps it alive.
    let live = Arc::downgrade(&host.plugin_set());
    drop(host);
    assert!(live.upgrade().is_none(), "the host's set outlived the host");
}

#[test]
fn dropping_a_watching_host_frees_it_and_stops_the_watcher() {
    let plugins = PluginDir::new();
    plugins.install("login_v1.lua", "login.lua");
    let host = watching_host(plugins.path());
    plugins.install("login_v2.lua", "login.lua");
    wait_for_login(&host, 202, &[101]);
    let live = Arc::downgrade(&host.plugin_set());
    let clone = host.clone();
    drop(host);
    assert!(live.upgrade().is_some(), "a clone keeps the host alive");
    drop(clone);
    // The watcher holds only a Weak: dropping the last clone drops the host, its workers
    // and its sets, and joins the watcher's thread. (Polled: a late reload in progress holds
    // the host until it ends.)
    let freed = eventually(|| live.upgrade().is_none().then_some(()));
    assert!(freed.is_some(), "the watcher kept the host alive");
    // A save after the host is gone reaches no one, and nothing panics.
    plugins.install("login_v1.lua", "login.lua");
    std::thread::sleep(Duration::from_millis(200));
}

/// Many requests in flight, on several threads, while the plugin file is rewritten dozens of
/// times: every answer must come from one of the versions, never be an error.
#[test]
fn requests_under_load_never_fail_while_the_plugin_is_rewritten() {
    const THREADS: usize = 8;
    const IN_FLIGHT_PER_THREAD: usize = 4;
    const VERSIONS: i64 = 40;
    let template = policy_text("login_versioned.lua");
    assert!(template.contains("local VERSION = 0"));
    let version = |v: i64| template.replace("local VERSION = 0", &format!("local VERSION = {v}"));

    let plugins = PluginDir::new();
    plugins.write("login.lua", &version(0));
    let host = Host::builder()
        .plugins(plugins.path())
        .workers(4)
        .timeout(Duration::from_secs(60))
        .watch(true)
        .build()
        .unwrap();

    let tally: Arc<Mutex<Tally>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (host, tally, stop) = (host.clone(), tally.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    // A batch of async calls in flight at once, then wait for all of them.
                    let (done, answers) = mpsc::channel();
                    for _ in 0..IN_FLIGHT_PER_THREAD {
                        let done = done.clone();
                        host.user_login_async(LOGIN, NODE, move |outcome| {
                            let _ = done.send(outcome);
                        });
                    }
                    drop(done);
                    let batch: Vec<Outcome> = answers.iter().collect();
                    assert_eq!(
                        batch.len(),
                        IN_FLIGHT_PER_THREAD,
                        "every request is answered"
                    );
                    tally.lock().unwrap().count(&batch);
                }
            })
        })
        .collect();

    // Version 0 is answering under load before the first rewrite.
    let answered = eventually(|| (tally.lock().unwrap().answered >= 50).then_some(()));
    assert!(answered.is_some(), "requests are being answered");
    for v in 1..=VERSIONS {
        // Half the saves in place (truncate, then write), half by rename.
        if v % 2 == 0 {
            plugins.write_atomically("login.lua", &version(v));
        } else {
            plugins.write("login.lua", &version(v));
        }
        std::thread::sleep(Duration::from_millis(30 + (v as u64 % 4) * 20));
    }
    let seen_last = eventually(|| {
        tally
            .lock()
            .unwrap()
            .versions
            .contains(&VERSIONS)
            .then_some(())
    });
    stop.store(true, Ordering::Release);
    for caller in callers {
        caller.join().expect("a caller thread failed");
    }
    let tally = tally.lock().unwrap();
    assert_eq!(
        tally.failures,
        Vec::<String>::new(),
        "requests failed during reloads"
    );
    assert!(
        seen_last.is_some(),
        "the last version never answered: {}",
        host.status().to_json()
    );
    assert!(tally.versions.contains(&0));
    assert!(
        tally.versions.iter().all(|v| (0..=VERSIONS).contains(v)),
        "{:?}",
        tally.versions
    );

    let status = host.status();
    assert_eq!(status.last_error, None, "{}", status.to_json());
    assert_eq!(status.reload_failures, 0, "{}", status.to_json());
    assert!(status.reloads >= 1);
    let decisions = &status.counters["decisions"];
    assert_eq!(decisions["error"], 0, "{}", status.to_json());
    assert_eq!(decisions["user_id"], tally.answered as u64);
    eprintln!(
        "{} requests answered by {} of {} versions over {} reloads",
        tally.answered,
        tally.versions.len(),
        VERSIONS + 1,
        status.reloads
    );
}

/// What the stress test's callers saw.
#[derive(Default)]
struct Tally {
    answered: usize,
    /// The versions that answered (user id − 1000).
    versions: BTreeSet<i64>,
    /// Every answer that was not a version's user id, as JSON.
    failures: Vec<String>,
}

impl Tally {
    fn count(&mut self, batch: &[Outcome]) {
        for outcome in batch {
            self.answered += 1;
            match user_id(outcome) {
                Ok(id) if id >= 1000 => {
                    self.versions.insert(id - 1000);
                }
                _ => self.failures.push(outcome.to_json().to_string()),
            }
        }
    }
}
