//! One Python thread state per thread, for the thread's whole life.
//!
//! Attaching a thread that has no thread state creates one, and detaching it for the last
//! time destroys it: per request, that would cost far more than the call. So a worker
//! makes its thread state at its first Python call and keeps it until the thread ends
//! ([`keep_thread_state`]); each call then re-attaches on it, which only takes the GIL. (Not
//! when the worker starts: making a thread state takes the GIL, and a worker that replaces
//! a stuck one must start, and serve Lua, while the stuck thread holds it.) The enforcer
//! thread attaches for its whole life ([`attached_for_life`]).

use std::cell::Cell;

use pyo3::{ffi, Python};

thread_local! {
    /// Whether this thread keeps a thread state for its whole life.
    static KEPT: Cell<bool> = const { Cell::new(false) };
}

/// `body`, as it runs inside [`Python::detach`]: it does not cross threads, it only has to
/// seem to because `detach` asks for `Send` to keep Python objects out of the closure.
struct StaysOnThisThread<'a>(&'a mut dyn FnMut());

// SAFETY: `detach` runs the closure on the calling thread, right away; nothing is sent.
unsafe impl Send for StaysOnThisThread<'_> {}

/// Runs `body` with a thread state kept for this thread but the GIL released.
pub(super) fn attached_for_life(body: &mut dyn FnMut()) {
    Python::attach(|py| {
        let body = StaysOnThisThread(body);
        KEPT.with(|k| k.set(true));
        py.detach(move || {
            let body = body;
            (body.0)()
        });
        KEPT.with(|k| k.set(false));
    })
}

/// Keeps a thread state for the calling thread if it does not have one already, until the
/// thread ends. Called by a worker before each Python call; only the first does anything.
pub(super) fn keep_thread_state() {
    thread_local! {
        static KEEPER: Cell<Option<Keeper>> = const { Cell::new(None) };
    }
    if KEPT.with(|k| k.get()) {
        return;
    }
    // SAFETY: the interpreter is initialized (an instance exists only after a load), this
    // thread is not attached (it would have been kept otherwise, and a worker calls this
    // without the GIL), and the state is released by the same thread in `Keeper::drop`.
    let keeper = unsafe {
        let gstate = ffi::PyGILState_Ensure();
        let tstate = ffi::PyEval_SaveThread();
        Keeper { gstate, tstate }
    };
    KEEPER.with(|k| k.set(Some(keeper)));
    KEPT.with(|k| k.set(true));
}

/// Holds a thread state that [`keep_thread_state`] made; destroys it when the thread ends.
struct Keeper {
    gstate: ffi::PyGILState_STATE,
    tstate: *mut ffi::PyThreadState,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // SAFETY: runs on the thread that made the state, which holds no GIL at thread end.
        unsafe {
            if ffi::Py_IsInitialized() != 0 {
                ffi::PyEval_RestoreThread(self.tstate);
                ffi::PyGILState_Release(self.gstate);
            }
        }
    }
}
