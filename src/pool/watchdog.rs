//! The watchdog: answers queued jobs and running calls at their deadline, interrupts the
//! calls, and replaces the workers that stay stuck.
//!
//! It sleeps until the earliest deadline among the queued jobs and the running calls (or a
//! stuck worker's grace), not on a fixed tick: a
//! tick short enough to time calls out promptly would wake it hundreds of times a second,
//! and each wake takes a core from a worker for a moment. A worker that starts a call due
//! before the watchdog means to look wakes it, and so does a caller that queues a job due
//! before then; with one timeout for every call that happens about once per busy spell,
//! since later calls and jobs are due later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::worker::spawn_worker;
use super::{Running, Shared, STUCK_GRACE};
use crate::decision::timeout_message;
use crate::decision::ErrorKind;
use crate::lock::lock;

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

/// What the watchdog found in one running slot.
enum Found {
    /// A call past its deadline, not answered yet: answer it and interrupt it.
    Expired(Running),
    /// A worker still busy [`STUCK_GRACE`] after its deadline, taken out of its slot (and
    /// counted) to be abandoned and replaced.
    Stuck(Running),
}

/// The watchdog thread's body: until the pool stops it, answer every queued job and every
/// running call past its deadline with `error` (interrupting the script if its engine can),
/// replace the workers that stay stuck, and sleep until the next deadline.
pub(crate) fn run(shared: &Arc<Shared>) {
    let alarm = &shared.alarm;
    // Set before the first scan: a call published earlier is found by that scan.
    let _ = alarm.thread.set(std::thread::current());
    let message = timeout_message(shared.config.timeout);
    while !shared.watchdog_stop.load(Ordering::Acquire) {
        alarm.looks_at.store(NOT_SET, Ordering::SeqCst);
        // Pairs with the fence in `Pool::submit`: a job queued after this look at the queue
        // sees NOT_SET and wakes the watchdog.
        std::sync::atomic::fence(Ordering::SeqCst);
        let now = Instant::now();
        let mut next = shared.queue.expire(now, &mut |job| {
            shared.refuse(job.completion, ErrorKind::Timeout, message.clone())
        });
        let mut sooner = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        for (index, slot) in shared.running.iter().enumerate() {
            let found = {
                let mut running = lock(slot);
                look_at(shared, &mut running, now, &mut sooner)
            };
            match found {
                Some(Found::Expired(call)) => {
                    if let Some(interrupt) = &call.interrupt {
                        interrupt.interrupt(call.ticket);
                    }
                    if let Some(completion) = call.completion {
                        shared.refuse(completion, ErrorKind::Timeout, message.clone());
                    }
                    // The worker may stay stuck (Python in native code): the jobs it had
                    // taken go to the others.
                    shared.queue.evacuate(index);
                }
                Some(Found::Stuck(call)) => replace(shared, index, &call),
                None => {}
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

/// Decides what to do with one running slot at `now`, under its lock: answer a call past
/// its deadline (the rest stays, marking the worker busy), take out a worker stuck past the
/// grace if the bound on abandoned threads allows, and tell `sooner` when to look again.
fn look_at(
    shared: &Shared,
    running: &mut Option<Running>,
    now: Instant,
    sooner: &mut dyn FnMut(Instant),
) -> Option<Found> {
    let call = running.as_mut()?;
    if call.completion.is_some() {
        if call.deadline > now {
            sooner(call.deadline);
            return None;
        }
        sooner(call.deadline + STUCK_GRACE);
        return Some(Found::Expired(Running {
            completion: call.completion.take(),
            interrupt: call.interrupt.clone(),
            ..*call
        }));
    }
    let stuck_at = call.deadline + STUCK_GRACE;
    if stuck_at > now {
        sooner(stuck_at);
        return None;
    }
    // Counted here, under the slot's lock, so that the thread, looking at its slot when its
    // call ends, finds it abandoned only once it is counted as such.
    if shared.counters.abandon_within(shared.abandoned_bound()) {
        let call = running.take()?;
        if call.unreplaced {
            shared.unreplaced.fetch_sub(1, Ordering::AcqRel);
        }
        return Some(Found::Stuck(call));
    }
    if !call.unreplaced {
        call.unreplaced = true;
        shared.unreplaced.fetch_add(1, Ordering::AcqRel);
        log::error!(
            "a worker is stuck in {} of {} past its deadline, and {} abandoned worker threads, \
             the most allowed, are still running: it is not replaced{}",
            call.callback,
            shared.plugin_name(call.plugin),
            shared.abandoned_bound(),
            if shared.unreplaced.load(Ordering::Acquire) >= shared.running.len() {
                "; no worker is left, and requests are refused until one is"
            } else {
                ""
            }
        );
    }
    // Try again when an abandoned thread may have ended.
    sooner(now + STUCK_GRACE);
    None
}

/// Abandons the thread stuck in `call` in worker slot `index` and starts a fresh one there.
fn replace(shared: &Arc<Shared>, index: usize, call: &Running) {
    log::error!(
        "worker {index} is still running {} of {} {} ms after its deadline: abandoning its \
         thread and starting a fresh one ({} abandoned threads running, at most {})",
        call.callback,
        shared.plugin_name(call.plugin),
        STUCK_GRACE.as_millis(),
        shared.counters.abandoned_live(),
        shared.abandoned_bound(),
    );
    {
        let mut live = lock(&shared.live_workers);
        *live -= 1;
    }
    let local = shared.queue.replace_local(index);
    if let Err(e) = spawn_worker(shared, local) {
        // Without a replacement, the other workers serve the queue.
        log::error!("cannot replace abandoned worker {index}: {e}");
    }
    if shared.closing.load(Ordering::Acquire) {
        // The other workers got their stop messages already.
        shared.queue.stop_one_more();
    }
}
