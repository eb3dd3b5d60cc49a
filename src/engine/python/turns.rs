//! Workers take turns at the GIL.
//!
//! A worker keeps the GIL across a run of Python calls (see `HeldGil`) and drops it at the
//! end of the run so that other workers get their turn. Dropping it is not enough: CPython
//! gives a waiting thread the GIL only when it is free at the moment that thread wakes, or
//! when the holder has kept it for a whole switch interval (5 ms) with no one else taking it
//! in between. A worker that drops the GIL and takes it straight back for its next request
//! wins that race every time, and its taking it again restarts the waiter's interval, so
//! under load a second worker could wait a second or more with requests in hand.
//!
//! So workers count themselves while they wait, and a worker whose run ends while another
//! waits hands the GIL over: it drops it and waits until a waiter has taken it (2 ms at
//! most) before it asks for it again. Runs then alternate.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::ffi::{PyGILState_Ensure, PyGILState_Release, PyGILState_STATE};

/// The turns of every worker of the process: there is one GIL per process.
pub(super) static TURNS: Turns = Turns::new(Duration::from_millis(2));

/// Who waits for the GIL, and how often it has been taken.
pub(super) struct Turns {
    /// Workers waiting in [`Turns::take`] for the GIL.
    waiting: AtomicUsize,
    /// How many times a worker has taken the GIL in [`Turns::take`].
    taken: AtomicU64,
    /// The longest a worker waits for another to take the GIL it handed over. The other is
    /// then not waking up (a loaded machine), and the worker goes on rather than idle longer.
    handover_wait: Duration,
}

/// How to give the GIL back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GiveBack {
    /// The worker has no more Python work for now: just drop it.
    Drop,
    /// The worker's run is over but it has more work: if another worker waits, wait until
    /// it has the GIL before going on.
    HandOver,
}

impl Turns {
    const fn new(handover_wait: Duration) -> Turns {
        Turns {
            waiting: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            handover_wait,
        }
    }

    /// Takes the GIL for the calling thread, counting it as waiting meanwhile.
    ///
    /// # Safety
    ///
    /// The interpreter is initialized, and the calling thread does not hold the GIL; the
    /// state returned is given back with [`Turns::give_back`] on the same thread.
    pub unsafe fn take(&self) -> PyGILState_STATE {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller guarantees an initialized interpreter and that this thread does
        // not hold the GIL.
        let state = unsafe { PyGILState_Ensure() };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.taken.fetch_add(1, Ordering::SeqCst);
        state
    }

    /// Gives back the GIL taken by [`Turns::take`].
    ///
    /// # Safety
    ///
    /// `state` comes from [`Turns::take`] on this thread, which still holds the GIL.
    pub unsafe fn give_back(&self, state: PyGILState_STATE, how: GiveBack) {
        // Read while holding the GIL: every earlier taker has counted itself by now.
        let taken = self.taken.load(Ordering::SeqCst);
        let someone_waits = how == GiveBack::HandOver && self.waiting.load(Ordering::SeqCst) > 0;
        // SAFETY: the caller guarantees `state` comes from `take` on this thread.
        unsafe { PyGILState_Release(state) };
        if someone_waits {
            self.wait_until_taken_after(taken);
        }
    }

    /// Waits until a worker has taken the GIL since `taken` was read, or `handover_wait`.
    fn wait_until_taken_after(&self, taken: u64) {
        let started = Instant::now();
        let mut spins = 0_u32;
        while self.taken.load(Ordering::SeqCst) == taken {
            spins += 1;
            if spins % 64 == 0 {
                if started.elapsed() >= self.handover_wait {
                    return;
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::Python;
    use std::sync::{Arc, Mutex};

    /// Waits until `count` threads wait in `turns.take`.
    fn until_waiting(turns: &Turns, count: usize) {
        while turns.waiting.load(Ordering::SeqCst) < count {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_run_that_ends_while_another_worker_waits_hands_the_gil_over() {
        // Initialized, and the GIL free again when `attach` returns.
        Python::attach(|_| {});
        // Turns of their own: other tests' workers take the GIL too, but are not counted
        // here. The wait is long so that a slow machine cannot end it early.
        let turns: &'static Turns = Box::leak(Box::new(Turns::new(Duration::from_secs(30))));
        let order = Arc::new(Mutex::new(Vec::new()));
        // SAFETY: this thread does not hold the GIL; each take is given back on its thread.
        let first = unsafe { turns.take() };
        order.lock().unwrap().push("a's first run");
        let other = std::thread::spawn({
            let order = order.clone();
            move || {
                // SAFETY: a new thread holds no GIL; the take is given back below.
                let state = unsafe { turns.take() };
                order.lock().unwrap().push("b's run");
                // SAFETY: `state` was taken on this thread just above.
                unsafe { turns.give_back(state, GiveBack::Drop) };
            }
        });
        until_waiting(turns, 1);
        // SAFETY: `first` was taken on this thread.
        unsafe { turns.give_back(first, GiveBack::HandOver) };
        // Handed over: b has the GIL (or has had it) before a asks again.
        // SAFETY: this thread gave the GIL back just above.
        let second = unsafe { turns.take() };
        order.lock().unwrap().push("a's second run");
        // SAFETY: `second` was taken on this thread.
        unsafe { turns.give_back(second, GiveBack::Drop) };
        other.join().unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            ["a's first run", "b's run", "a's second run"]
        );
        assert_eq!(turns.taken.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn with_no_one_waiting_giving_back_does_not_wait() {
        Python::attach(|_| {});
        let turns: &'static Turns = Box::leak(Box::new(Turns::new(Duration::from_secs(30))));
        let started = Instant::now();
        for _ in 0..3 {
            // SAFETY: this thread does not hold the GIL between turns.
            let state = unsafe { turns.take() };
            // SAFETY: `state` was taken on this thread just above.
            unsafe { turns.give_back(state, GiveBack::HandOver) };
        }
        assert_eq!(turns.taken.load(Ordering::SeqCst), 3);
        // Had it waited for a taker that never comes, it would have waited 30 s per turn.
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
