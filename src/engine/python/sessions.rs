//! `authhost.sessions`, `authhost.limits` and `authhost.state` for Python: the session
//! store ([`crate::sessions`]) of the host whose worker runs the call, bounded by the
//! request's deadline, with the GIL released while the store waits for SQLite.

use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::PolicyTimeout;
use crate::sessions::{Store, StoreError};

pyo3::create_exception!(
    authhost,
    StoreFailure,
    pyo3::exceptions::PyException,
    "A sessions, limits or state call failed: the database could not be used."
);

/// Adds the three submodules to `authhost`.
pub(super) fn add_sessions(py: Python<'_>, authhost: &Bound<'_, PyModule>) -> PyResult<()> {
    authhost.add("StoreError", py.get_type::<StoreFailure>())?;
    let sys_modules = py.import("sys")?.getattr("modules")?;
    let sessions = PyModule::new(py, "sessions")?;
    sessions.add(
        "__doc__",
        "Login sessions in the policy database: open(user_id, idle_seconds=None) -> token, \
         check(token) -> user id or None, close(token) -> bool.",
    )?;
    sessions.add_function(pyo3::wrap_pyfunction!(open, &sessions)?)?;
    sessions.add_function(pyo3::wrap_pyfunction!(check, &sessions)?)?;
    sessions.add_function(pyo3::wrap_pyfunction!(close, &sessions)?)?;
    let limits = PyModule::new(py, "limits")?;
    limits.add(
        "__doc__",
        "Sliding-window limits shared by every authhost process on the database: \
         hit(key, max, window_seconds) -> bool, reset(key).",
    )?;
    limits.add_function(pyo3::wrap_pyfunction!(hit, &limits)?)?;
    limits.add_function(pyo3::wrap_pyfunction!(reset, &limits)?)?;
    let state = PyModule::new(py, "state")?;
    state.add(
        "__doc__",
        "A small shared key/value store: put(key, value, ttl_seconds), get(key), and take(key), \
         which reads and deletes in one step (one caller wins).",
    )?;
    state.add_function(pyo3::wrap_pyfunction!(put, &state)?)?;
    state.add_function(pyo3::wrap_pyfunction!(get, &state)?)?;
    state.add_function(pyo3::wrap_pyfunction!(take, &state)?)?;
    for (name, module) in [("sessions", sessions), ("limits", limits), ("state", state)] {
        authhost.add_submodule(&module)?;
        sys_modules.set_item(format!("authhost.{name}"), &module)?;
    }
    Ok(())
}

/// The thread's store and the request's deadline, or an error naming `function`.
fn context(function: &str) -> PyResult<(Store, Instant)> {
    match (
        crate::sessions::thread_store(),
        crate::script_api::db::request_deadline(),
    ) {
        (Some(store), Some(deadline)) => Ok((store, deadline)),
        _ => Err(StoreFailure::new_err(format!(
            "authhost.{function}: works only while a callback runs, on the thread that runs it"
        ))),
    }
}

/// Runs `f` on the store with the GIL released.
fn run<T: Send>(
    py: Python<'_>,
    function: &str,
    f: impl FnOnce(&Store, Instant) -> crate::sessions::Result<T> + Send,
) -> PyResult<T> {
    let (store, deadline) = context(function)?;
    py.detach(|| f(&store, deadline)).map_err(raise)
}

fn raise(error: StoreError) -> PyErr {
    match error {
        StoreError::Timeout => PolicyTimeout::new_err(error.to_string()),
        StoreError::Invalid(message) => PyValueError::new_err(format!("authhost.{message}")),
        other => StoreFailure::new_err(other.to_string()),
    }
}

fn seconds(value: f64, function: &str, what: &str) -> PyResult<Duration> {
    if !(value > 0.0 && value <= 1e9) {
        return Err(PyValueError::new_err(format!(
            "authhost.{function}: {what} must be more than 0 s (and at most 1e9), got {value}"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

/// authhost.sessions.open(user_id, idle_seconds=None): a new session's token.
#[pyfunction]
#[pyo3(signature = (user_id, idle_seconds = None))]
fn open(py: Python<'_>, user_id: i64, idle_seconds: Option<f64>) -> PyResult<String> {
    if user_id < 1 {
        return Err(PyValueError::new_err(format!(
            "authhost.sessions.open: the user id must be >= 1, got {user_id}"
        )));
    }
    let idle = idle_seconds
        .map(|s| seconds(s, "sessions.open", "the idle timeout"))
        .transpose()?;
    run(py, "sessions.open", |store, deadline| {
        store.open(user_id, idle, deadline)
    })
    .map(|opened| opened.token)
}

/// authhost.sessions.check(token): the user id of a live session (refreshed), or None.
#[pyfunction]
fn check(py: Python<'_>, token: &str) -> PyResult<Option<i64>> {
    run(py, "sessions.check", |store, deadline| {
        store.check(token, deadline)
    })
    .map(|live| live.map(|live| live.user_id))
}

/// authhost.sessions.close(token): forgets the session; whether there was a live one.
#[pyfunction]
fn close(py: Python<'_>, token: &str) -> PyResult<bool> {
    run(py, "sessions.close", |store, deadline| {
        store.close(token, deadline)
    })
}

/// authhost.limits.hit(key, max, window_seconds): records a hit; True while the key has had
/// at most `max` hits in the window.
#[pyfunction]
fn hit(py: Python<'_>, key: &str, max: i64, window_seconds: f64) -> PyResult<bool> {
    let max = u32::try_from(max).map_err(|_| {
        PyValueError::new_err(format!("authhost.limits.hit: max must be >= 0, got {max}"))
    })?;
    let window = seconds(window_seconds, "limits.hit", "the window")?;
    run(py, "limits.hit", |store, deadline| {
        store.hit(key, max, window, deadline)
    })
}

/// authhost.limits.reset(key): forgets the key's hits.
#[pyfunction]
fn reset(py: Python<'_>, key: &str) -> PyResult<()> {
    run(py, "limits.reset", |store, deadline| {
        store.reset(key, deadline)
    })
}

/// authhost.state.put(key, value, ttl_seconds): stores a string for a while.
#[pyfunction]
fn put(py: Python<'_>, key: &str, value: &Bound<'_, PyAny>, ttl_seconds: f64) -> PyResult<()> {
    let value: String = value
        .extract()
        .map_err(|_| PyTypeError::new_err("authhost.state.put: the value must be a str"))?;
    let ttl = seconds(ttl_seconds, "state.put", "the ttl")?;
    run(py, "state.put", |store, deadline| {
        store.put(key, &value, ttl, deadline)
    })
}

/// authhost.state.get(key): the value, or None when absent or expired.
#[pyfunction]
fn get(py: Python<'_>, key: &str) -> PyResult<Option<String>> {
    run(py, "state.get", |store, deadline| store.get(key, deadline))
}

/// authhost.state.take(key): the value, deleted in the same step, or None.
#[pyfunction]
fn take(py: Python<'_>, key: &str) -> PyResult<Option<String>> {
    run(py, "state.take", |store, deadline| {
        store.take(key, deadline)
    })
}
