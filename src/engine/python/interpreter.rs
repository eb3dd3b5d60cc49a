//! The one CPython interpreter of the process: started (or adopted) once, set up for
//! policies, and loaded into one plugin set at a time.

use std::ffi::CString;
use std::sync::{Condvar, Mutex, OnceLock};

use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::api::{self, LogStream, Stream};
use crate::engine::MAX_PYTHON_RECURSION;
use crate::error::Error;
use crate::lock::lock;

/// The engine's Python glue, run once as the module `_authhost_loader`.
const LOADER_SOURCE: &str = include_str!("loader.py");

/// The interpreter, ready for policies.
pub(super) struct Interpreter {
    /// `_authhost_loader`: plugin modules and the plugins path.
    pub loader: Py<PyModule>,
    /// `builtins.compile`.
    pub compile: Py<PyAny>,
    /// `builtins.exec`.
    pub exec: Py<PyAny>,
}

/// Starts the interpreter if needed and prepares it for policies, once per process.
///
/// # Failure
///
/// The interpreter could not be set up (a broken Python installation).
pub(super) fn get() -> Result<&'static Interpreter, Error> {
    static READY: OnceLock<Result<Interpreter, String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            // SAFETY: always safe to ask.
            let ours = unsafe { pyo3::ffi::Py_IsInitialized() } == 0;
            Python::initialize();
            Python::attach(|py| set_up(py, ours).map_err(|e| e.to_string()))
        })
        .as_ref()
        .map_err(|e| Error::Config(format!("cannot set up the Python interpreter: {e}")))
}

fn set_up(py: Python<'_>, ours: bool) -> PyResult<Interpreter> {
    let sys = py.import("sys")?;
    let modules = sys.getattr("modules")?;
    modules.set_item("authhost", api::module(py)?)?;
    // In its own interpreter authhost owns the standard streams; inside a Python program
    // only what policies write is taken from the program's streams.
    for (name, stream) in [("stdout", Stream::Stdout), ("stderr", Stream::Stderr)] {
        let original = if ours {
            None
        } else {
            Some(sys.getattr(name)?.unbind())
        };
        sys.setattr(name, Py::new(py, LogStream::new(stream, original))?)?;
    }
    if ours {
        // stdin carries the service protocol in `authhost serve`: a policy must not read it.
        sys.setattr("stdin", py.import("io")?.getattr("StringIO")?.call0()?)?;
        // Importing helpers must not write __pycache__ into the plugins directory: that
        // would be a change the reloader sees, and a stale .pyc could outlive an edit made
        // within the same second.
        sys.setattr("dont_write_bytecode", true)?;
    }
    let source = CString::new(LOADER_SOURCE).expect("loader.py has no NUL byte");
    let loader = PyModule::from_code(py, &source, c"<authhost>/loader.py", c"_authhost_loader")?;
    if ours {
        // Inside a Python program the limit is the program's own business.
        let _ = ORIGINAL_SETRECURSIONLIMIT.set(sys.getattr("setrecursionlimit")?.unbind());
        sys.setattr(
            "setrecursionlimit",
            pyo3::wrap_pyfunction!(setrecursionlimit, py)?,
        )?;
    }
    let builtins = py.import("builtins")?;
    Ok(Interpreter {
        loader: loader.unbind(),
        compile: builtins.getattr("compile")?.unbind(),
        exec: builtins.getattr("exec")?.unbind(),
    })
}

/// CPython's own `sys.setrecursionlimit`, which [`setrecursionlimit`] calls.
static ORIGINAL_SETRECURSIONLIMIT: OnceLock<Py<PyAny>> = OnceLock::new();

/// `sys.setrecursionlimit` as policies see it: a limit above [`MAX_PYTHON_RECURSION`] is a
/// `ValueError`. CPython counts C recursion (`repr`, `json.dumps`, a `__getattr__` that calls
/// itself …) against this limit, and past what a worker's stack holds such recursion would
/// abort the whole process instead of raising `RecursionError`. Written in Rust, so that
/// the error's innermost frame is the policy's own line.
#[pyfunction]
fn setrecursionlimit(py: Python<'_>, limit: Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(wanted) = limit.extract::<i64>() {
        if wanted > i64::from(MAX_PYTHON_RECURSION) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "sys.setrecursionlimit({wanted}) refused: authhost allows at most \
                 {MAX_PYTHON_RECURSION}, as deeper recursion would overflow the worker \
                 thread's stack"
            )));
        }
    }
    match ORIGINAL_SETRECURSIONLIMIT.get() {
        Some(original) => original.call1(py, (limit,)).map(drop),
        None => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "sys.setrecursionlimit is not available",
        )),
    }
}

/// Serializes loads: sys.path and the helper modules in sys.modules are process-wide, so two
/// plugin sets must not be loaded at once.
///
/// Waiting happens with the GIL released (see [`LoadLock::acquire`]), so a load that waits
/// cannot block the load it waits for.
pub(super) struct LoadLock {
    busy: Mutex<bool>,
    free: Condvar,
}

/// Holds the [`LoadLock`] until dropped.
pub(super) struct LoadGuard(&'static LoadLock);

impl LoadLock {
    /// Takes the process's load lock. Call without holding the GIL, or from inside
    /// [`Python::detach`].
    pub(super) fn acquire() -> LoadGuard {
        static LOCK: LoadLock = LoadLock {
            busy: Mutex::new(false),
            free: Condvar::new(),
        };
        let mut busy = lock(&LOCK.busy);
        while *busy {
            busy = LOCK.free.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        LoadGuard(&LOCK)
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        *lock(&self.0.busy) = false;
        self.0.free.notify_one();
    }
}
