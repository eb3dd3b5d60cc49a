//! Stopping Python code that runs past its deadline.
//!
//! CPython can raise an exception into another thread at that thread's next bytecode
//! (`PyThreadState_SetAsyncExc`). That needs the GIL, which a runaway policy holds for up to
//! the switch interval (5 ms), so the pool's watchdog never does it itself: it hands the
//! order to one *enforcer* thread, which waits for the GIL instead.
//!
//! Every Python thread that runs policies has a [`Target`]. The thread marks the call it runs
//! with a ticket, and clears it, while holding the GIL; the enforcer raises only while the
//! ticket still matches, also while holding the GIL. So an interrupt meant for one call can
//! never land in the next: either the call is still running, or its ticket is gone and any
//! exception that was raised but not yet delivered is cancelled by [`Target::end`].
//!
//! A policy could catch the exception with a bare `except:` and carry on, so the enforcer
//! raises it again every [`REPEAT`] until the call ends.

use std::collections::HashMap;
use std::os::raw::{c_long, c_ulong};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use pyo3::prelude::*;
use pyo3::{ffi, PyTypeInfo};

use super::thread::attached_for_life;
use super::PolicyTimeout;
use crate::engine::Interrupt;
use crate::error::Error;

/// How often a timeout is raised again into a call that swallowed it.
const REPEAT: Duration = Duration::from_millis(10);

extern "C" {
    /// CPython's id of the calling thread (`threading.get_ident()`); part of the stable ABI
    /// but not declared by pyo3's ffi.
    fn PyThread_get_thread_ident() -> c_ulong;
}

/// One thread that runs Python policy code, as the enforcer sees it.
pub(super) struct Target {
    thread: c_ulong,
    /// The call running now; 0 while none is. Written only with the GIL held.
    ticket: AtomicU64,
    /// Whether an exception was raised into the current call.
    fired: AtomicBool,
}

impl Target {
    /// The target for the calling thread.
    pub(super) fn current_thread() -> Arc<Target> {
        // SAFETY: reads the calling thread's id; needs neither the GIL nor an initialized
        // interpreter.
        let thread = unsafe { PyThread_get_thread_ident() };
        Arc::new(Target {
            thread,
            ticket: AtomicU64::new(0),
            fired: AtomicBool::new(false),
        })
    }

    /// Marks the call `ticket` as running on this target's thread. Call with the GIL held,
    /// on that thread; pair with [`Target::end`] (see [`Running`]).
    pub(super) fn begin(&self, _py: Python<'_>, ticket: u64) {
        debug_assert!(ticket != 0, "ticket 0 means no call");
        self.ticket.store(ticket, Ordering::SeqCst);
    }

    /// Marks the call finished and cancels a timeout exception not yet delivered. Returns
    /// whether one was raised into the call. Call with the GIL held, on the target's thread.
    pub(super) fn end(&self, _py: Python<'_>) -> bool {
        self.ticket.store(0, Ordering::SeqCst);
        let fired = self.fired.swap(false, Ordering::SeqCst);
        if fired {
            // SAFETY: the GIL is held; a null exception clears the thread's pending one.
            unsafe { ffi::PyThreadState_SetAsyncExc(self.thread as c_long, std::ptr::null_mut()) };
        }
        fired
    }

    /// Raises [`PolicyTimeout`] into the thread if it still runs `ticket`. With the GIL held.
    fn fire(&self, py: Python<'_>, ticket: u64) -> bool {
        if self.ticket.load(Ordering::SeqCst) != ticket {
            return false;
        }
        self.fired.store(true, Ordering::SeqCst);
        let timeout = PolicyTimeout::type_object(py);
        // SAFETY: the GIL is held and the exception type lives as long as the interpreter;
        // CPython takes its own reference.
        unsafe { ffi::PyThreadState_SetAsyncExc(self.thread as c_long, timeout.as_ptr()) };
        true
    }
}

/// A call in progress on a [`Target`]: begun on creation, ended on drop, so that a panic in
/// the middle cannot leave a ticket behind for the enforcer to act on.
pub(super) struct Running<'a, 'py> {
    target: &'a Target,
    py: Python<'py>,
}

impl<'a, 'py> Running<'a, 'py> {
    /// Begins `ticket` on `target`. For code no pool watchdog looks after (a plugin's top
    /// level and `setup()`), the caller also has the [`Enforcer`] interrupt it at its
    /// deadline ([`Enforcer::schedule`]).
    pub(super) fn begin(py: Python<'py>, target: &'a Arc<Target>, ticket: u64) -> Self {
        target.begin(py, ticket);
        Running { target, py }
    }

    /// Ends the call now; returns whether a timeout was raised into it.
    pub(super) fn end(self) -> bool {
        let interrupted = self.target.end(self.py);
        // Ended already: the drop would only end it again.
        std::mem::forget(self);
        interrupted
    }
}

impl Drop for Running<'_, '_> {
    fn drop(&mut self) {
        self.target.end(self.py);
    }
}

/// The handle the pool's watchdog calls at a request's deadline.
pub(super) struct TargetInterrupt {
    /// The worker thread's target.
    pub(super) target: Arc<Target>,
    /// Started before the worker runs a call, so that an interrupt always has it.
    pub(super) enforcer: &'static Enforcer,
}

impl Interrupt for TargetInterrupt {
    fn interrupt(&self, ticket: u64) {
        // Never blocks: the watchdog answers other requests' deadlines meanwhile.
        self.enforcer
            .schedule(self.target.clone(), ticket, Instant::now());
    }
}

/// Tickets for calls that no pool numbers: loads. Counted from high up so they are never
/// mistaken for a worker's.
pub(super) fn load_ticket() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1 << 62);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Order {
    target: Arc<Target>,
    ticket: u64,
    at: Instant,
}

/// The thread that raises timeouts into Python threads: one per process, started by the
/// first load or worker that needs it.
pub(super) struct Enforcer {
    orders: Sender<Order>,
}

/// The enforcer thread's name, which a failure to start it names too.
const ENFORCER_THREAD: &str = "authhost-python-enforcer";

impl Enforcer {
    /// The process's enforcer, started now if it is not running yet.
    ///
    /// # Failure
    ///
    /// [`Error::Thread`] when the system will not start the thread (threads or memory
    /// exhausted): the load, or the worker's move to the set, fails with that cause rather
    /// than running Python code that nothing could interrupt.
    pub(super) fn get() -> Result<&'static Enforcer, Error> {
        static ENFORCER: OnceLock<Enforcer> = OnceLock::new();
        if let Some(enforcer) = ENFORCER.get() {
            return Ok(enforcer);
        }
        let (orders, receiver) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name(ENFORCER_THREAD.into())
            .spawn(move || attached_for_life(&mut || enforce(&receiver)))
            .map_err(|e| Error::Thread {
                name: ENFORCER_THREAD.into(),
                message: e.to_string(),
            })?;
        // Two threads may start one each at once: the one not kept ends when its sender
        // is dropped here (`enforce` returns on a disconnected channel).
        Ok(ENFORCER.get_or_init(|| Enforcer { orders }))
    }

    /// Has `target`'s call `ticket` interrupted at `at`, and again every [`REPEAT`] until it
    /// ends.
    pub(super) fn schedule(&self, target: Arc<Target>, ticket: u64, at: Instant) {
        let _ = self.orders.send(Order { target, ticket, at });
    }
}

fn enforce(orders: &Receiver<Order>) {
    // Pending orders by (target, ticket), each with when to act next.
    let mut pending: HashMap<(usize, u64), Order> = HashMap::new();
    loop {
        let next = pending.values().map(|o| o.at).min();
        let received = match next {
            Some(at) => orders.recv_deadline(at),
            None => orders
                .recv()
                .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(order) => {
                let key = (Arc::as_ptr(&order.target) as usize, order.ticket);
                let at = order.at;
                pending
                    .entry(key)
                    .and_modify(|o| o.at = o.at.min(at))
                    .or_insert(order);
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if !pending.values().any(|o| o.at <= now) {
            continue;
        }
        Python::attach(|py| {
            pending.retain(|_, order| {
                if order.at > now {
                    return true;
                }
                if order.target.fire(py, order.ticket) {
                    order.at = Instant::now() + REPEAT;
                    true
                } else {
                    false
                }
            });
        });
    }
}
