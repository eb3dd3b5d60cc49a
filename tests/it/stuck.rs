//! Stuck workers (issue 12, part 3): whatever a policy does to its worker, every caller has
//! its answer at its deadline, exactly once, and the worker is freed or replaced so that the
//! next request is served. The hosts have ONE worker: the innocent request after a stuck one
//! can only be answered by that worker, freed, or by its replacement.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use authhost::{Callback, ErrorKind, Host, NodeDecision, Outcome, UserDecision};

use crate::common::{builder, each_in_own_process, error_of, RELAXED};

// The Python scenarios: each alone in its process, with its own GIL.
each_in_own_process!(
    python_blocked_in_native_code_is_replaced_and_its_thread_never_answers,
    python_str_del_and_deep_recursion_past_the_deadline_are_interrupted,
    a_python_thread_holding_the_gil_is_replaced_and_lua_is_served_meanwhile,
);

/// The stuck forms' timeout: long enough that a loaded machine starts a replacement worker
/// (after the 100 ms grace) well within the next request's own.
const TIMEOUT: Duration = Duration::from_millis(1000);

/// Innocent requests queued behind each stuck one.
const QUEUED: usize = 3;

fn one_worker(policy: &str) -> Host {
    builder(policy)
        .workers(1)
        .timeout(TIMEOUT)
        .build()
        .expect("the test policy loads")
}

fn counter(host: &Host, name: &str) -> u64 {
    host.status().counters[name]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no counter {name}"))
}

/// Sends the stuck request `form`, then [`QUEUED`] innocent ones behind it, and checks
/// that: the stuck one is answered `error` of `kind`; each queued one gets exactly one answer,
/// `error` ("timeout", at its deadline: the worker is still stuck) or 7 (the worker came free
/// in time); and the next innocent request is answered 7, before its deadline. Returns the
/// receiver, to check later that nothing more arrives.
fn stuck_then_served(host: &Host, form: &str, kind: ErrorKind) -> Receiver<(usize, Outcome)> {
    let (tx, rx) = mpsc::channel();
    let logins = std::iter::once(form).chain(std::iter::repeat_n("innocent", QUEUED));
    for (index, login) in logins.enumerate() {
        let tx = tx.clone();
        host.call_async(Callback::UserLogin, [login, "{}"], move |outcome| {
            let _ = tx.send((index, outcome));
        });
    }
    let mut answered = [false; QUEUED + 1];
    for _ in 0..=QUEUED {
        let (index, outcome) = rx
            .recv_timeout(RELAXED)
            .unwrap_or_else(|_| panic!("{form}: a request behind the stuck one got no answer"));
        assert!(!answered[index], "{form}: request {index} answered twice");
        answered[index] = true;
        if index == 0 {
            let error = error_of(&outcome);
            assert_eq!(error.kind, kind, "{form}: {}", error.message);
        } else if outcome.user() != Some(&UserDecision::UserId(7)) {
            let error = error_of(&outcome);
            assert_eq!(error.kind, ErrorKind::Timeout, "{form}: {}", error.message);
        }
    }
    let next = host.user_login("innocent", "{}");
    assert_eq!(
        next.user(),
        Some(&UserDecision::UserId(7)),
        "{form}: the next request was not served: {next:?}"
    );
    rx
}

/// Waits (up to [`RELAXED`]) until no abandoned worker thread runs, then checks that none of
/// them answered anything on its way out, and that the host still serves `login`s.
fn abandoned_threads_end_silently(host: &Host, rx: &Receiver<(usize, Outcome)>, form: &str) {
    wait_for_abandoned_threads(host, form);
    assert!(
        rx.try_recv().is_err(),
        "{form}: a request was answered twice"
    );
    assert_eq!(
        host.user_login("innocent", "{}").user(),
        Some(&UserDecision::UserId(7)),
        "{form}"
    );
}

/// Waits (up to [`RELAXED`]) until the watchdog has replaced `count` stuck workers.
fn wait_for_replacements(host: &Host, count: u64) {
    let give_up = Instant::now() + RELAXED;
    while counter(host, "workers_replaced") < count {
        assert!(
            Instant::now() < give_up,
            "the stuck worker was never replaced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_abandoned_threads(host: &Host, form: &str) {
    let give_up = Instant::now() + RELAXED;
    while counter(host, "workers_abandoned_live") > 0 {
        assert!(
            Instant::now() < give_up,
            "{form}: the abandoned thread never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn lua_pattern_functions_stop_at_the_deadline_and_free_the_worker() {
    let host = one_worker("stuck/lua/stuck.lua");
    for form in ["find", "match", "gmatch", "gsub"] {
        let rx = stuck_then_served(&host, form, ErrorKind::Timeout);
        abandoned_threads_end_silently(&host, &rx, form);
    }
}

#[test]
fn a_looping_xpcall_handler_ends_in_error_and_frees_the_worker() {
    let host = one_worker("stuck/lua/stuck.lua");
    let rx = stuck_then_served(&host, "xpcall", ErrorKind::Timeout);
    abandoned_threads_end_silently(&host, &rx, "xpcall");
}

#[test]
fn a_lua_gc_finalizer_is_refused_with_an_error_naming_it() {
    let host = one_worker("stuck/lua/stuck.lua");
    let rx = stuck_then_served(&host, "gc", ErrorKind::Raised);
    let refused = host.user_login("gc", "{}");
    let message = error_of(&refused).message;
    assert!(
        message.contains("__gc metamethods are not allowed"),
        "{message}"
    );
    assert!(message.contains("stuck.lua:"), "{message}");
    abandoned_threads_end_silently(&host, &rx, "gc");
}

fn python_blocked_in_native_code_is_replaced_and_its_thread_never_answers() {
    let host = one_worker("stuck/python/stuck.py");
    for (round, form) in ["sleep", "socket"].into_iter().enumerate() {
        let rx = stuck_then_served(&host, form, ErrorKind::Timeout);
        assert_eq!(
            counter(&host, "workers_replaced"),
            round as u64 + 1,
            "{form}: the stuck worker was replaced"
        );
        abandoned_threads_end_silently(&host, &rx, form);
    }
}

fn python_str_del_and_deep_recursion_past_the_deadline_are_interrupted() {
    let host = one_worker("stuck/python/stuck.py");
    for form in ["str", "del", "recursion"] {
        let rx = stuck_then_served(&host, form, ErrorKind::Timeout);
        abandoned_threads_end_silently(&host, &rx, form);
    }
}

/// Holds the GIL: stops every Python call in its process, where it runs alone.
fn a_python_thread_holding_the_gil_is_replaced_and_lua_is_served_meanwhile() {
    let host = one_worker("stuck/gil");
    // The policy holds the GIL while it reads a byte from this socket: until this test writes.
    let (reader, mut writer) = UnixStream::pair().unwrap();
    let fd = reader.as_raw_fd().to_string();
    let (tx, rx) = mpsc::channel();
    host.call_async(Callback::UserLogin, [fd.as_str(), "{}"], move |outcome| {
        let _ = tx.send((0, outcome));
    });
    let held = rx
        .recv_timeout(RELAXED)
        .expect("the stuck call is answered");
    assert_eq!(error_of(&held.1).kind, ErrorKind::Timeout);
    wait_for_replacements(&host, 1);
    // The stuck thread still holds the GIL: only the fresh worker, which needs no GIL to start
    // and to run Lua, can answer this.
    let node = host.new_node("{}");
    assert_eq!(
        node.node(),
        Some(&NodeDecision::Secondary),
        "the Lua request was not served: {node:?}"
    );
    // Once the read returns, PolicyTimeout (still being raised) ends the call, and the thread.
    writer.write_all(b"x").unwrap();
    wait_for_abandoned_threads(&host, "hold");
    assert!(
        rx.try_recv().is_err(),
        "the stuck request was answered twice"
    );
    assert_eq!(host.new_node("{}").node(), Some(&NodeDecision::Secondary));
    assert_eq!(counter(&host, "workers_replaced"), 1);
    drop(reader);
}
