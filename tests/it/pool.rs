//! The worker pool under pressure: runaway scripts, memory hogs, a full queue, many callers.

use crate::common;

use std::sync::mpsc;
use std::time::Duration;

use authhost::{Callback, ErrorKind, UserDecision};
use common::{builder, error_of, RELAXED};

#[test]
fn a_runaway_loop_is_stopped_and_the_worker_serves_the_next_request() {
    let host = builder("lua/limits.lua")
        .workers(1)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = error_of(&host.user_login("spin", "{}"));
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert!(error.message.contains("timeout"), "{}", error.message);
    // The only worker is free again and its interpreter still works.
    assert_eq!(
        host.user_login("fine", "{}").user(),
        Some(&UserDecision::UserId(1))
    );
}

#[test]
fn pcall_cannot_swallow_a_timeout() {
    let host = builder("lua/limits.lua")
        .workers(1)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert_eq!(
        error_of(&host.user_login("spin_in_pcall", "{}")).kind,
        ErrorKind::Timeout
    );
    assert_eq!(
        host.user_login("fine", "{}").user(),
        Some(&UserDecision::UserId(1))
    );
}

#[test]
fn a_memory_hog_is_stopped_and_the_interpreter_stays_usable() {
    let host = builder("lua/limits.lua")
        .workers(1)
        .timeout(common::RELAXED)
        .lua_memory_limit(16 << 20)
        .build()
        .unwrap();
    let error = error_of(&host.user_login("hog", "{}"));
    assert_eq!(error.kind, ErrorKind::Memory);
    assert!(
        error.message.contains("memory limit of 16 MiB"),
        "{}",
        error.message
    );
    for _ in 0..3 {
        assert_eq!(
            host.user_login("fine", "{}").user(),
            Some(&UserDecision::UserId(1))
        );
    }
}

#[test]
fn a_full_queue_answers_overloaded_at_once_and_loses_nothing() {
    let host = builder("lua/limits.lua")
        .workers(1)
        .queue_per_worker(2)
        .timeout(RELAXED)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let requests = 12;
    for _ in 0..requests {
        let tx = tx.clone();
        host.call_async(Callback::UserLogin, ["busy_200ms", "{}"], move |o| {
            tx.send(o).unwrap()
        });
    }
    let outcomes: Vec<_> = (0..requests)
        .map(|_| rx.recv_timeout(RELAXED).unwrap())
        .collect();
    let overloaded = outcomes
        .iter()
        .filter(|o| matches!(o.decision.error_cause(), Some(e) if e.kind == ErrorKind::Overloaded))
        .count();
    let answered = outcomes
        .iter()
        .filter(|o| o.user() == Some(&UserDecision::UserId(2)))
        .count();
    // One running and two queued at most: the rest were refused, and every request was answered.
    assert!(
        overloaded >= requests - 3,
        "{overloaded} overloaded of {requests}"
    );
    assert!(answered >= 1);
    assert_eq!(overloaded + answered, requests);
    let message = &error_of(outcomes.iter().find(|o| o.decision.is_error()).unwrap()).message;
    assert!(message.starts_with("overloaded"), "{message}");
    assert!(rx.try_recv().is_err(), "no request is answered twice");
}

// The worker is held by a Python `time.sleep(3)`, which no deadline interrupts: it is free
// again only when it is replaced, 100 ms after the first call's deadline, so the second call
// is still queued at its own deadline. (A Lua busy loop is interrupted at the first call's
// deadline, a moment before the second's, and the second could then run in time.)
#[cfg(feature = "python")]
#[test]
fn a_request_that_waited_past_its_deadline_in_the_queue_times_out() {
    let host = builder("stuck/python/stuck.py")
        .workers(1)
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for which in ["sleep", "fine"] {
        let tx = tx.clone();
        host.call_async(Callback::UserLogin, [which, "{}"], move |o| {
            tx.send(o).unwrap()
        });
    }
    for _ in 0..2 {
        let outcome = rx.recv_timeout(RELAXED).unwrap();
        assert_eq!(error_of(&outcome).kind, ErrorKind::Timeout);
    }
}

#[test]
fn many_threads_each_get_their_own_answer() {
    let host = builder("lua/echo.lua")
        .workers(2)
        .timeout(RELAXED)
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for thread in 0..16 {
            let host = host.clone();
            scope.spawn(move || {
                for i in 0..300 {
                    let n = thread * 1000 + i + 1;
                    let outcome = host.user_signup(n.to_string(), "{}");
                    assert_eq!(
                        outcome.user(),
                        Some(&UserDecision::UserId(n)),
                        "thread {thread}"
                    );
                }
            });
        }
    });
    let json = host.status().to_json();
    assert_eq!(json["counters"]["requests"]["user_signup"], 16 * 300);
}

#[test]
fn async_answers_arrive_on_a_worker_thread() {
    let host = builder("lua/echo.lua").timeout(RELAXED).build().unwrap();
    let (tx, rx) = mpsc::channel();
    host.user_signup_async("31", "{}", move |outcome| {
        let thread = std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string();
        tx.send((outcome, thread)).unwrap();
    });
    let (outcome, thread) = rx.recv_timeout(RELAXED).unwrap();
    assert_eq!(outcome.user(), Some(&UserDecision::UserId(31)));
    assert!(thread.starts_with("authhost-worker-"), "{thread}");
}

#[test]
fn after_shutdown_requests_are_refused_and_queued_ones_answered() {
    let host = builder("lua/limits.lua")
        .workers(1)
        .timeout(RELAXED)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for _ in 0..3 {
        let tx = tx.clone();
        host.call_async(Callback::UserLogin, ["busy_200ms", "{}"], move |o| {
            tx.send(o).unwrap()
        });
    }
    host.shutdown();
    for _ in 0..3 {
        let outcome = rx.recv_timeout(RELAXED).unwrap();
        assert_eq!(
            outcome.user(),
            Some(&UserDecision::UserId(2)),
            "queued work finishes"
        );
    }
    let late = host.user_login("fine", "{}");
    assert_eq!(error_of(&late).kind, ErrorKind::ShuttingDown);
    assert!(!host.status().ready);
}
