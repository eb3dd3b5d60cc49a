//! The `authhost` module Python plugins import (contract §5), and where their output goes.
//!
//! The module is built in Rust once per process and registered in `sys.modules`, so
//! `import authhost` works in plugins and in their helper modules alike. Each part of it is
//! added by one `add_*` function: [`add_log`], `add_db` (in `db`), [`add_passwords`].
//!
//! One module serves every plugin, so a log line is tagged with the plugin that is running on
//! the calling thread: the engine enters a [`PluginScope`] around each top-level run,
//! `setup()` and callback. `print()` and writes to `sys.stdout`/`sys.stderr` go through the
//! same tagging into the host's log, line by line.

use std::cell::RefCell;
use std::rc::Rc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString, PyTuple};

use crate::script_api::log::{self, Level};
use crate::script_api::password;

/// The tag of output written while no plugin runs on the thread (a thread a plugin started).
const UNTAGGED: &str = "python";

/// Longest partial line kept before it is logged anyway, so that a policy writing without
/// newlines cannot grow a buffer without bound.
const MAX_PENDING_LINE: usize = 64 * 1024;

thread_local! {
    /// The plugin running on this thread, if any: its file as shown in logs.
    static CURRENT: RefCell<Option<Rc<str>>> = const { RefCell::new(None) };
    /// Text written to stdout and stderr since their last newline, per thread, so that the
    /// pieces `print()` writes become one log line.
    static PENDING: RefCell<[String; 2]> = const { RefCell::new([String::new(), String::new()]) };
}

/// Marks the calling thread as running the plugin `tag` until dropped.
pub(super) struct PluginScope {
    previous: Option<Rc<str>>,
}

impl PluginScope {
    /// Enters `tag`'s scope; the previous one comes back on drop.
    pub(super) fn enter(tag: Rc<str>) -> PluginScope {
        let previous = CURRENT.with(|c| c.replace(Some(tag)));
        PluginScope { previous }
    }
}

impl Drop for PluginScope {
    fn drop(&mut self) {
        // A partial line belongs to the plugin that wrote it: log it before the tag changes.
        flush_output();
        CURRENT.with(|c| *c.borrow_mut() = self.previous.take());
    }
}

fn with_tag<R>(f: impl FnOnce(Option<&str>) -> R) -> R {
    CURRENT.with(|c| f(c.borrow().as_deref()))
}

/// Builds the `authhost` module.
pub(super) fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let module = PyModule::new(py, "authhost")?;
    module.add(
        "__doc__",
        "The host's API for policies: authhost.log.info/warn/error (tagged with the plugin's file), \
         authhost.db (the application database), authhost.http (upstream HTTP services), authhost.hash_password and \
         authhost.verify_password.",
    )?;
    module.add("PolicyTimeout", py.get_type::<super::PolicyTimeout>())?;
    add_log(py, &module)?;
    super::db::add_db(py, &module)?;
    super::http::add_http(py, &module)?;
    add_passwords(&module)?;
    super::sessions::add_sessions(py, &module)?;
    Ok(module)
}

/// Adds `authhost.log` with `info`, `warn` and `error`.
fn add_log(py: Python<'_>, authhost: &Bound<'_, PyModule>) -> PyResult<()> {
    let log = PyModule::new(py, "log")?;
    log.add(
        "__doc__",
        "The host's log; every line is tagged with the plugin's file.",
    )?;
    log.add_function(pyo3::wrap_pyfunction!(info, &log)?)?;
    log.add_function(pyo3::wrap_pyfunction!(warn, &log)?)?;
    log.add_function(pyo3::wrap_pyfunction!(error, &log)?)?;
    authhost.add_submodule(&log)?;
    // `import authhost.log` looks in sys.modules under the dotted name.
    py.import("sys")?
        .getattr("modules")?
        .set_item("authhost.log", &log)?;
    Ok(())
}

/// Adds `authhost.hash_password` and `authhost.verify_password`.
fn add_passwords(authhost: &Bound<'_, PyModule>) -> PyResult<()> {
    authhost.add_function(pyo3::wrap_pyfunction!(hash_password, authhost)?)?;
    authhost.add_function(pyo3::wrap_pyfunction!(verify_password, authhost)?)?;
    Ok(())
}

/// authhost.hash_password(password): an argon2id hash of `password` (str or bytes) in PHC
/// string form (m=19456 KiB, t=2, p=1, random salt).
///
/// Hashing runs with the GIL released, so other workers run Python meanwhile.
#[pyfunction]
fn hash_password(py: Python<'_>, password: &Bound<'_, PyAny>) -> PyResult<String> {
    let password = text_or_bytes(password, "hash_password", "the password")?;
    py.detach(|| password::hash_password(&password))
        .map_err(|e| PyValueError::new_err(format!("authhost.hash_password: {e}")))
}

/// authhost.verify_password(hash, password): whether `password` matches `hash`, an argon2
/// (`$argon2id$…`) or bcrypt (`$2b$…`, `$2a$…`, `$2y$…`) hash, compared in constant time.
/// A malformed hash raises `ValueError`, never returns False.
///
/// Verifying runs with the GIL released, so other workers run Python meanwhile.
#[pyfunction]
fn verify_password(
    py: Python<'_>,
    hash: &Bound<'_, PyAny>,
    password: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let hash = text_or_bytes(hash, "verify_password", "the hash")?;
    let password = text_or_bytes(password, "verify_password", "the password")?;
    let hash = String::from_utf8(hash).map_err(|_| {
        PyValueError::new_err("authhost.verify_password: malformed password hash: not UTF-8")
    })?;
    py.detach(|| password::verify_password(&hash, &password))
        .map_err(|e| PyValueError::new_err(format!("authhost.verify_password: {e}")))
}

/// A `str` (as UTF-8) or bytes-like argument's bytes; anything else is a `TypeError` naming
/// `what`.
fn text_or_bytes(value: &Bound<'_, PyAny>, function: &str, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(text.to_str()?.as_bytes().to_vec());
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    if let Ok(bytes) = value.cast::<PyByteArray>() {
        return Ok(bytes.to_vec());
    }
    let type_name = value
        .get_type()
        .name()
        .map_or_else(|_| "object".to_string(), |n| n.to_string());
    Err(PyTypeError::new_err(format!(
        "authhost.{function}: {what} must be a str or bytes, got {type_name}"
    )))
}

/// Writes the arguments, `str()`-ed and space-separated as `print` does, to the host's log.
fn log_args(level: Level, args: &Bound<'_, PyTuple>) -> PyResult<()> {
    let mut message = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            message.push(' ');
        }
        message.push_str(&arg.str()?.to_string_lossy());
    }
    with_tag(|tag| log::write(level, tag.unwrap_or(UNTAGGED), &message));
    Ok(())
}

/// authhost.log.info(*values): an informational line in the host's log.
#[pyfunction]
#[pyo3(signature = (*values))]
fn info(values: &Bound<'_, PyTuple>) -> PyResult<()> {
    log_args(Level::Info, values)
}

/// authhost.log.warn(*values): a warning in the host's log.
#[pyfunction]
#[pyo3(signature = (*values))]
fn warn(values: &Bound<'_, PyTuple>) -> PyResult<()> {
    log_args(Level::Warn, values)
}

/// authhost.log.error(*values): an error line in the host's log.
#[pyfunction]
#[pyo3(signature = (*values))]
fn error(values: &Bound<'_, PyTuple>) -> PyResult<()> {
    log_args(Level::Error, values)
}

/// Which standard stream a [`LogStream`] replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stream {
    /// `sys.stdout`: lines are logged as info.
    Stdout = 0,
    /// `sys.stderr`: lines are logged as warnings.
    Stderr = 1,
}

impl Stream {
    fn level(self) -> Level {
        match self {
            Stream::Stdout => Level::Info,
            Stream::Stderr => Level::Warn,
        }
    }
}

/// `sys.stdout` / `sys.stderr` as policies see them: text goes to the host's log, a line at a
/// time, never to the process's stdout (which carries results and the service protocol).
///
/// When authhost did not start the interpreter itself (it was loaded into a Python program),
/// writes from threads that run no policy go on to the program's own stream.
#[pyclass(module = "authhost", frozen)]
pub(super) struct LogStream {
    stream: Stream,
    original: Option<Py<PyAny>>,
}

impl LogStream {
    /// A stream for `stream`; `original` receives what no policy wrote.
    pub(super) fn new(stream: Stream, original: Option<Py<PyAny>>) -> LogStream {
        LogStream { stream, original }
    }
}

#[pymethods]
impl LogStream {
    /// Logs every complete line of `text`; keeps a trailing partial line for the next write.
    fn write(&self, py: Python<'_>, text: &Bound<'_, PyString>) -> PyResult<usize> {
        let written = text.len()?;
        let in_policy = with_tag(|tag| tag.is_some());
        if let (false, Some(original)) = (in_policy, &self.original) {
            original.call_method1(py, "write", (text,))?;
            return Ok(written);
        }
        let text = text.to_string_lossy();
        let stream = self.stream;
        PENDING.with(|pending| {
            let mut pending = pending.borrow_mut();
            let buffer = &mut pending[stream as usize];
            buffer.push_str(&text);
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                emit(stream, line.trim_end_matches(['\n', '\r']));
            }
            if buffer.len() > MAX_PENDING_LINE {
                emit(stream, buffer);
                buffer.clear();
            }
        });
        Ok(written)
    }

    /// Logs a pending partial line.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let in_policy = with_tag(|tag| tag.is_some());
        if let (false, Some(original)) = (in_policy, &self.original) {
            original.call_method0(py, "flush")?;
            return Ok(());
        }
        flush_stream(self.stream);
        Ok(())
    }

    fn isatty(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        true
    }

    fn readable(&self) -> bool {
        false
    }

    fn seekable(&self) -> bool {
        false
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }

    #[getter]
    fn errors(&self) -> &'static str {
        "replace"
    }

    #[getter]
    fn closed(&self) -> bool {
        false
    }
}

fn emit(stream: Stream, line: &str) {
    with_tag(|tag| log::write(stream.level(), tag.unwrap_or(UNTAGGED), line));
}

fn flush_stream(stream: Stream) {
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        let buffer = &mut pending[stream as usize];
        if !buffer.is_empty() {
            emit(stream, buffer);
            buffer.clear();
        }
    });
}

/// Logs what the calling thread wrote to stdout and stderr without a final newline.
pub(super) fn flush_output() {
    // Most calls print nothing: look before taking the buffers mutably.
    let any = PENDING.with(|p| p.borrow().iter().any(|b| !b.is_empty()));
    if any {
        flush_stream(Stream::Stdout);
        flush_stream(Stream::Stderr);
    }
}
