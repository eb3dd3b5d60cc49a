//! The watchdog: answers and interrupts calls that outlive their deadline.
//!
//! It sleeps until the earliest deadline among the running calls, not on a fixed tick: a
//! tick short enough to time calls out promptly would wake it hundreds of times a second,
//! and each wake takes a core from a worker for a moment. A worker that starts a call due
//! before the watchdog means to look wakes it; with one timeout for every call that happens
//! about once per busy spell, since later calls are due later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::Shared;
use crate::decision::timeout_message;
use crate::decision::ErrorKind;

/// The longest the watchdog sleeps with no call running. Waking it is the workers' job;
/// this only bounds the cost of a mistake in that.
const IDLE_LOOK: Duration = Duration::from_millis(250);

/// [`Alarm::looks_at`] while the watchdog is scanning or has no call to watch.
const NOT_SET: u64 = u64::MAX;

/// When the watchdog will next look at the running calls, and how to wake it sooner.
pub(crate) struct Alarm {
    /// The origin of [`Alarm::looks_at`].
    epoch: Instant,
    /// When the watchdog next looks, in nanoseconds since `epoch`; [`NOT_SET`] while it
    /// scans the running calls or sleeps with none to watch.
    looks_at: AtomicU64,
    /// The watchdog thread, once it runs.
    thread: OnceLock<Thread>,
}

impl Alarm {
    /// An alarm for a watchdog that has not started yet.
    pub fn new() -> Alarm {
        Alarm {
            epoch: Instant::now(),
            looks_at: AtomicU64::new(NOT_SET),
            thread: OnceLock::new(),
        }
    }

    /// Whether the watchdog has to be woken to look at a call due at `deadline`, which the
    /// caller has just published in its running slot and still holds locked.
    ///
    /// The slot's lock orders this read after any scan of the slot that missed the call: the
    /// watchdog sets [`NOT_SET`] before it scans, so the read sees that, or the time the
    /// scan chose without this call.
    pub fn must_wake_for(&self, deadline: Instant) -> bool {
        self.nanos(deadline) < self.looks_at.load(Ordering::Acquire)
    }

    /// Wakes the watchdog (after [`Alarm::must_wake_for`], once the slot is unlocked).
    pub fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(NOT_SET - 1)
    }
}

/// The watchdog thread's body: until the pool stops it, answer every call past its deadline
/// with `error` (interrupting the script if its engine can) and sleep until the next one.
pub(crate) fn run(shared: &Shared) {
    let alarm = &shared.alarm;
    // Set before the first scan: a call published earlier is found by that scan.
    let _ = alarm.thread.set(std::thread::current());
    while !shared.watchdog_stop.load(Ordering::Acquire) {
        alarm.looks_at.store(NOT_SET, Ordering::Release);
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (index, slot) in shared.running.iter().enumerate() {
            let expired = {
                let mut running = slot.lock().unwrap_or_else(|e| e.into_inner());
                match &*running {
                    Some(call) if call.deadline <= now => running.take(),
                    Some(call) => {
                        next = Some(next.map_or(call.deadline, |at| at.min(call.deadline)));
                        None
                    }
                    None => None,
                }
            };
            if let Some(expired) = expired {
                if let Some(interrupt) = &expired.interrupt {
                    interrupt.interrupt(expired.ticket);
                }
                let message = timeout_message(shared.config.timeout);
                shared.refuse(expired.completion, ErrorKind::Timeout, message);
                // The worker may stay stuck (Python in native code): the jobs it had taken
                // go back to the others.
                if let Some(job) = shared.queue.put_back(index) {
                    let message = "overloaded: the queue was full when this request was moved off a stuck worker";
                    shared.refuse(job.completion, ErrorKind::Overloaded, message);
                }
            }
        }
        match next {
            Some(at) => {
                alarm.looks_at.store(alarm.nanos(at), Ordering::Release);
                std::thread::park_timeout(at.saturating_duration_since(Instant::now()));
            }
            None => std::thread::park_timeout(IDLE_LOOK),
        }
    }
}
