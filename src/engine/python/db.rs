//! `authhost.db` for Python: the worker's database connection ([`crate::script_api::db`])
//! with Python's idioms: parameters as a sequence, rows as a list of dicts keyed by column
//! name, `with authhost.db.transaction():` that commits on a normal exit and rolls back (and
//! re-raises) on an exception.
//!
//! Values: NULL ↔ `None`, INTEGER ↔ `int`, REAL ↔ `float`, TEXT ↔ `str`, BLOB ↔ `bytes`
//! (`bytearray` and `memoryview` bind as BLOB too). A `bool` binds as the integer 1 or 0, as
//! Python's own `sqlite3` does (SQLite has no boolean type; it reads back as an `int`). Any
//! other parameter is a `TypeError` naming its position.
//!
//! Every call into SQLite runs with the GIL released. That is not only for speed: a worker
//! waiting for the write lock while holding the GIL would stop the worker that holds the lock
//! from running the Python that ends its transaction, and both would sit until the deadline.
//! The functions use the database of the request running on the calling thread
//! ([`Database::current`]); outside a callback, `setup()` or a plugin's top level there is
//! none, and they raise `authhost.db.Error`.

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{
    PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PySequence, PyString,
    PyTuple,
};

use super::PolicyTimeout;
use crate::script_api::db::{Database, DbError, Rows, TransactionLevel, Value};

pyo3::create_exception!(
    authhost.db,
    Error,
    pyo3::exceptions::PyException,
    "A database call failed: SQLite refused the statement (its message names the problem and \
     the statement), the database could not be opened, or a transaction was misused."
);

/// Adds `authhost.db` to `authhost`.
pub(super) fn add_db(py: Python<'_>, authhost: &Bound<'_, PyModule>) -> PyResult<()> {
    let db = PyModule::new(py, "db")?;
    db.add(
        "__doc__",
        "The application database (one SQLite connection per worker): query, exec, \
         last_insert_id, transaction, and the exception Error.",
    )?;
    db.add("Error", py.get_type::<Error>())?;
    db.add_class::<Transaction>()?;
    db.add_function(pyo3::wrap_pyfunction!(query, &db)?)?;
    db.add_function(pyo3::wrap_pyfunction!(exec, &db)?)?;
    db.add_function(pyo3::wrap_pyfunction!(last_insert_id, &db)?)?;
    db.add_function(pyo3::wrap_pyfunction!(transaction, &db)?)?;
    authhost.add_submodule(&db)?;
    // `import authhost.db` and `from authhost.db import Error` look in sys.modules.
    py.import("sys")?
        .getattr("modules")?
        .set_item("authhost.db", &db)?;
    Ok(())
}

/// authhost.db.query(sql, params=()): runs `sql` with `params` bound and returns every row as
/// a dict keyed by column name.
#[pyfunction]
#[pyo3(signature = (sql, params = None))]
fn query<'py>(
    py: Python<'py>,
    sql: &Bound<'py, PyAny>,
    params: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let sql = sql_text(sql, "query")?;
    let params = sql_params(params, "query")?;
    let db = current("query").map_err(raise)?;
    // A plain SELECT in WAL mode keeps the GIL: it takes microseconds and waits for no lock,
    // and handing the GIL to another worker and back would cost more. Anything else may wait
    // for a writer's lock, and lets the other workers run meanwhile (the handle does not
    // cross into `detach`, which wants what it runs to be `Send`: it is fetched again).
    let rows = if db.reads_without_waiting(sql) {
        db.query(sql, &params)
    } else {
        py.detach(|| current("query")?.query(sql, &params))
    }
    .map_err(raise)?;
    python_rows(py, &rows)
}

/// authhost.db.exec(sql, params=()): runs a statement with `params` bound and returns the
/// number of rows it changed. Without params, `sql` may hold several statements.
#[pyfunction]
#[pyo3(signature = (sql, params = None))]
fn exec(
    py: Python<'_>,
    sql: &Bound<'_, PyAny>,
    params: Option<&Bound<'_, PyAny>>,
) -> PyResult<u64> {
    let sql = sql_text(sql, "exec")?;
    let params = sql_params(params, "exec")?;
    py.detach(|| current("exec")?.exec(sql, &params))
        .map_err(raise)
}

/// authhost.db.last_insert_id(): the rowid of the last INSERT on this worker's connection.
#[pyfunction]
fn last_insert_id() -> PyResult<i64> {
    Ok(current("last_insert_id").map_err(raise)?.last_insert_id())
}

/// authhost.db.transaction(): a context manager; `with authhost.db.transaction():` commits
/// when the block ends normally and rolls back when it raises (the exception goes on).
/// Nested blocks are savepoints: an inner rollback undoes only the inner block.
#[pyfunction]
fn transaction() -> Transaction {
    Transaction {
        state: TransactionState::New,
    }
}

/// What `with authhost.db.transaction():` uses: one transaction or savepoint, used once.
#[pyclass(module = "authhost.db")]
struct Transaction {
    state: TransactionState,
}

enum TransactionState {
    New,
    Open(TransactionLevel),
    Done,
}

#[pymethods]
impl Transaction {
    /// Opens the transaction (`BEGIN IMMEDIATE`), or a savepoint inside one.
    fn __enter__<'py>(
        mut this: PyRefMut<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<PyRefMut<'py, Self>> {
        if !matches!(this.state, TransactionState::New) {
            return Err(Error::new_err(
                "authhost.db.transaction(): this transaction was already used; \
                 call authhost.db.transaction() for each `with` block",
            ));
        }
        let level = py
            .detach(|| current("transaction")?.begin())
            .map_err(raise)?;
        this.state = TransactionState::Open(level);
        Ok(this)
    }

    /// Commits when the block ended normally; rolls back and lets the exception go on when it
    /// raised. A failed commit rolls back and raises `authhost.db.Error`.
    #[pyo3(signature = (exc_type, _exc_value, _traceback))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let TransactionState::Open(level) =
            std::mem::replace(&mut self.state, TransactionState::Done)
        else {
            return Err(Error::new_err(
                "authhost.db.transaction(): __exit__ without a matching __enter__",
            ));
        };
        let failed = exc_type.is_some_and(|t| !t.is_none());
        py.detach(|| {
            let db = current("transaction")?;
            if failed {
                if let Err(e) = db.rollback(level) {
                    log::warn!("authhost.db.transaction: rolling back failed: {e}");
                }
                return Ok(());
            }
            db.commit(level).inspect_err(|_| {
                let _ = db.rollback(level);
            })
        })
        .map_err(raise)?;
        // False: an exception raised in the block is never swallowed.
        Ok(false)
    }
}

/// The database of the request running on this thread.
fn current(function: &str) -> Result<Database, DbError> {
    Database::current().ok_or_else(|| {
        DbError::Transaction(format!(
            "authhost.db.{function}: no database here: authhost.db works while a callback, \
             setup() or a plugin's top level runs, on the thread that runs it"
        ))
    })
}

/// The exception a script sees. A statement stopped at the deadline is the request's
/// timeout, which `except Exception:` does not catch.
fn raise(error: DbError) -> PyErr {
    match error {
        DbError::Timeout { .. } => PolicyTimeout::new_err(error.to_string()),
        other => Error::new_err(other.to_string()),
    }
}

fn sql_text<'a>(sql: &'a Bound<'_, PyAny>, function: &str) -> PyResult<&'a str> {
    let Ok(text) = sql.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "authhost.db.{function}: the SQL must be a str, got {}",
            type_name(sql)
        )));
    };
    text.to_str()
}

/// The parameters, from a sequence (a list or tuple, usually).
fn sql_params(params: Option<&Bound<'_, PyAny>>, function: &str) -> PyResult<Vec<Value>> {
    let Some(params) = params.filter(|p| !p.is_none()) else {
        return Ok(Vec::new());
    };
    if let Ok(list) = params.cast::<PyList>() {
        return list
            .iter()
            .enumerate()
            .map(|(i, v)| sql_value(&v, i, function))
            .collect();
    }
    if let Ok(tuple) = params.cast::<PyTuple>() {
        return tuple
            .iter()
            .enumerate()
            .map(|(i, v)| sql_value(&v, i, function))
            .collect();
    }
    // A str or bytes is a sequence too, of characters: `(name)` where `(name,)` was meant.
    let text_like = params.is_instance_of::<PyString>()
        || params.is_instance_of::<PyBytes>()
        || params.is_instance_of::<PyByteArray>();
    match params.cast::<PySequence>() {
        Ok(sequence) if !text_like => {
            let mut values = Vec::with_capacity(sequence.len().unwrap_or(0));
            for (i, value) in sequence.try_iter()?.enumerate() {
                values.push(sql_value(&value?, i, function)?);
            }
            Ok(values)
        }
        _ => Err(PyTypeError::new_err(format!(
            "authhost.db.{function}: params must be a sequence such as a list or tuple, got {}{}",
            type_name(params),
            if text_like {
                " (for one parameter, write (value,))"
            } else {
                ""
            }
        ))),
    }
}

/// One parameter, `params[index]`.
fn sql_value(value: &Bound<'_, PyAny>, index: usize, function: &str) -> PyResult<Value> {
    // The common types first; bool before int, which it is a subclass of.
    if let Ok(text) = value.cast::<PyString>() {
        return text
            .to_str()
            .map(|s| Value::Text(s.to_string()))
            .map_err(|e| {
                PyTypeError::new_err(format!(
                    "authhost.db.{function}: params[{index}] is a str that is not valid UTF-8: {e}"
                ))
            });
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(flag) = value.cast::<pyo3::types::PyBool>() {
        return Ok(Value::Integer(i64::from(flag.is_true())));
    }
    if let Ok(int) = value.cast::<PyInt>() {
        return int.extract::<i64>().map(Value::Integer).map_err(|_| {
            PyOverflowError::new_err(format!(
                "authhost.db.{function}: params[{index}] is an int outside SQLite's 64-bit \
                 range; bind it as a str"
            ))
        });
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        return Ok(Value::Real(float.value()));
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(Value::Blob(bytes.as_bytes().to_vec()));
    }
    if let Ok(bytes) = value.cast::<PyByteArray>() {
        return Ok(Value::Blob(bytes.to_vec()));
    }
    if value.is_instance_of::<PyMemoryView>() {
        let bytes = value.call_method0("tobytes")?;
        return Ok(Value::Blob(bytes.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "authhost.db.{function}: params[{index}] is of type {}; SQL parameters are None, bool, int, \
         float, str and bytes",
        type_name(value)
    )))
}

/// Rows as a list of dicts; the column names become Python strings once per query.
fn python_rows<'py>(py: Python<'py>, rows: &Rows) -> PyResult<Bound<'py, PyList>> {
    let names: Vec<Bound<'py, PyString>> = rows
        .columns
        .iter()
        .map(|name| PyString::new(py, name))
        .collect();
    let list = PyList::empty(py);
    for row in &rows.rows {
        let dict = PyDict::new(py);
        for (name, value) in names.iter().zip(row) {
            dict.set_item(name, python_value(py, value)?)?;
        }
        list.append(dict)?;
    }
    Ok(list)
}

fn python_value<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Integer(n) => n.into_pyobject(py)?.into_any(),
        Value::Real(x) => PyFloat::new(py, *x).into_any(),
        Value::Text(text) => PyString::new(py, text).into_any(),
        Value::Blob(bytes) => PyBytes::new(py, bytes).into_any(),
    })
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "object".to_string(), |n| n.to_string())
}
