//! How an answer reaches its caller: a reusable per-thread slot for blocking callers, or a
//! callback that runs on whichever thread decides (usually the worker).
//!
//! No channel is created per request: a blocking caller waits on its own thread's slot, which
//! lives as long as the thread, and a ticket tells a late answer from the current one.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::decision::{timeout_message, Callback, DecisionError, ErrorKind, Outcome};
use crate::lock::lock;

mod done;

pub(crate) use done::Done;

/// Where a request's answer goes. Completing consumes it; dropping it unanswered (a worker
/// that panicked mid-request) still answers, with `error`, so no caller is ever left waiting.
pub(crate) struct Completion {
    callback: Callback,
    submitted: Instant,
    target: Option<Target>,
}

enum Target {
    Waiter { slot: Arc<WaitSlot>, ticket: u64 },
    Callback(Done),
}

impl Completion {
    /// The callback this request asks.
    pub fn callback(&self) -> Callback {
        self.callback
    }

    /// When the request was submitted.
    pub fn submitted(&self) -> Instant {
        self.submitted
    }

    /// Delivers `outcome` to the caller.
    pub fn complete(mut self, outcome: Outcome) {
        match self.target.take() {
            Some(Target::Waiter { slot, ticket }) => slot.deliver(ticket, outcome),
            Some(Target::Callback(done)) => done.call(outcome),
            None => {}
        }
    }

    /// Delivers an `error` outcome of `kind` that no plugin produced.
    pub fn fail(self, kind: ErrorKind, message: impl Into<String>) {
        let outcome = Outcome::failed(
            self.callback,
            DecisionError::new(kind, message),
            self.submitted.elapsed(),
        );
        self.complete(outcome)
    }

    /// A completion that runs `done`.
    pub fn callback_target(callback: Callback, submitted: Instant, done: Done) -> Completion {
        Completion {
            callback,
            submitted,
            target: Some(Target::Callback(done)),
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if self.target.is_some() {
            let callback = self.callback;
            let submitted = self.submitted;
            let unanswered = Completion {
                callback,
                submitted,
                target: self.target.take(),
            };
            unanswered.fail(
                ErrorKind::WorkerFailed,
                "a worker failed before answering this request",
            );
        }
    }
}

/// One blocking caller thread's mailbox, reused for every request it makes.
pub(crate) struct WaitSlot {
    thread: Thread,
    /// The ticket whose answer the thread still wants; 0 when it wants none.
    expected: AtomicU64,
    ready: AtomicBool,
    answer: Mutex<Option<Outcome>>,
    last_ticket: AtomicU64,
}

thread_local! {
    static SLOT: RefCell<Option<Arc<WaitSlot>>> = const { RefCell::new(None) };
}

impl WaitSlot {
    /// The calling thread's slot, made on first use.
    fn current() -> Arc<WaitSlot> {
        SLOT.with(|slot| {
            slot.borrow_mut()
                .get_or_insert_with(|| {
                    Arc::new(WaitSlot {
                        thread: std::thread::current(),
                        expected: AtomicU64::new(0),
                        ready: AtomicBool::new(false),
                        answer: Mutex::new(None),
                        last_ticket: AtomicU64::new(0),
                    })
                })
                .clone()
        })
    }

    fn deliver(&self, ticket: u64, outcome: Outcome) {
        let mut answer = lock(&self.answer);
        // An answer that comes after its caller gave up must not be taken for the next one.
        if self.expected.load(Ordering::Acquire) != ticket {
            return;
        }
        *answer = Some(outcome);
        self.ready.store(true, Ordering::Release);
        drop(answer);
        self.thread.unpark();
    }

    fn take(&self) -> Option<Outcome> {
        let mut answer = lock(&self.answer);
        self.expected.store(0, Ordering::Release);
        self.ready.store(false, Ordering::Relaxed);
        answer.take()
    }
}

/// A blocking caller's side of a request: make the completion, submit it, then [`wait`].
///
/// [`wait`]: Waiter::wait
pub(crate) struct Waiter {
    slot: Arc<WaitSlot>,
    callback: Callback,
    submitted: Instant,
}

impl Waiter {
    /// Prepares the calling thread's slot for one request and returns its completion.
    pub fn new(callback: Callback, submitted: Instant) -> (Waiter, Completion) {
        let slot = WaitSlot::current();
        let ticket = slot.last_ticket.fetch_add(1, Ordering::Relaxed) + 1;
        slot.ready.store(false, Ordering::Relaxed);
        slot.expected.store(ticket, Ordering::Release);
        let completion = Completion {
            callback,
            submitted,
            target: Some(Target::Waiter {
                slot: slot.clone(),
                ticket,
            }),
        };
        let waiter = Waiter {
            slot,
            callback,
            submitted,
        };
        (waiter, completion)
    }

    /// Waits for the answer until `deadline`; past it, answers `error` ("timeout") itself.
    pub fn wait(self, deadline: Instant, timeout: Duration) -> Outcome {
        // A short spin first: a trivial policy answers within microseconds, sooner than a
        // park and unpark would take.
        for _ in 0..200 {
            if self.slot.ready.load(Ordering::Acquire) {
                break;
            }
            std::hint::spin_loop();
        }
        loop {
            if self.slot.ready.load(Ordering::Acquire) {
                if let Some(outcome) = self.slot.take() {
                    return outcome;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                if let Some(outcome) = self.slot.take() {
                    return outcome;
                }
                return Outcome::failed(
                    self.callback,
                    DecisionError::new(ErrorKind::Timeout, timeout_message(timeout)),
                    self.submitted.elapsed(),
                );
            }
            std::thread::park_timeout(deadline - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Decision, UserDecision};

    fn answer(code: i64) -> Outcome {
        Outcome {
            decision: Decision::User(UserDecision::from_return(
                &crate::decision::ScriptValue::Int(code),
                crate::language::Language::Lua,
            )),
            plugin: None,
            generation: None,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn a_waiter_gets_the_answer_delivered_from_another_thread() {
        let (waiter, completion) = Waiter::new(Callback::UserLogin, Instant::now());
        std::thread::spawn(move || completion.complete(answer(7)));
        let outcome = waiter.wait(
            Instant::now() + Duration::from_secs(5),
            Duration::from_secs(5),
        );
        assert_eq!(outcome.user(), Some(&UserDecision::UserId(7)));
    }

    #[test]
    fn a_late_answer_is_not_taken_for_the_next_request() {
        let (waiter, late) = Waiter::new(Callback::UserLogin, Instant::now());
        let timed_out = waiter.wait(Instant::now(), Duration::ZERO);
        assert!(
            matches!(timed_out.user(), Some(UserDecision::Error(e)) if e.kind == ErrorKind::Timeout)
        );
        let (waiter, next) = Waiter::new(Callback::UserLogin, Instant::now());
        late.complete(answer(1));
        next.complete(answer(2));
        let outcome = waiter.wait(
            Instant::now() + Duration::from_secs(5),
            Duration::from_secs(5),
        );
        assert_eq!(outcome.user(), Some(&UserDecision::UserId(2)));
    }

    #[test]
    fn a_dropped_completion_still_answers_with_an_error() {
        let (tx, rx) = std::sync::mpsc::channel();
        let completion = Completion::callback_target(
            Callback::NewNode,
            Instant::now(),
            Done::new(move |o| tx.send(o).unwrap()),
        );
        drop(completion);
        let outcome = rx.recv().unwrap();
        assert!(
            matches!(outcome.node(), Some(crate::NodeDecision::Error(e)) if e.kind == ErrorKind::WorkerFailed)
        );
    }
}
