//! `authhost.http` for Python: [`crate::script_api::http`] as a module of functions that
//! return an `authhost.http.Response` (`status`, `headers` as a dict with lower-case names,
//! `body` as bytes). The wait for the answer lets go of the GIL.
//!
//! Python policies are trusted: their client is confined to the operator's `--upstream`
//! prefixes only when the operator gave some.

use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::PolicyTimeout;
use crate::script_api::db;
use crate::script_api::http::{Client, HttpError, HttpRequest, HttpResponse};

pyo3::create_exception!(
    authhost.http,
    Error,
    pyo3::exceptions::PyException,
    "An upstream call failed: its URL is not allowed (the message names it), the upstream is \
     unreachable, or it did not answer within the call's timeout_ms (the message says \
     \"timeout\"). At the request's own deadline authhost.PolicyTimeout is raised instead."
);

/// An upstream's answer.
#[pyclass(module = "authhost.http", frozen)]
struct Response {
    /// The status code.
    #[pyo3(get)]
    status: u16,
    /// The headers, lower-case names; a repeated one joined with ", ".
    #[pyo3(get)]
    headers: Py<PyDict>,
    /// The body.
    #[pyo3(get)]
    body: Py<PyBytes>,
}

#[pymethods]
impl Response {
    fn __repr__(&self) -> String {
        format!("<authhost.http.Response status={}>", self.status)
    }
}

/// Adds `authhost.http` to `authhost`.
pub(super) fn add_http(py: Python<'_>, authhost: &Bound<'_, PyModule>) -> PyResult<()> {
    let http = PyModule::new(py, "http")?;
    http.add(
        "__doc__",
        "Requests to upstream HTTP services, within the request's deadline: request, get, post, \
         fallback (counts a fallback for status), Response, and the exception Error.",
    )?;
    http.add("Error", py.get_type::<Error>())?;
    http.add_class::<Response>()?;
    http.add_function(pyo3::wrap_pyfunction!(request, &http)?)?;
    http.add_function(pyo3::wrap_pyfunction!(get, &http)?)?;
    http.add_function(pyo3::wrap_pyfunction!(post, &http)?)?;
    http.add_function(pyo3::wrap_pyfunction!(fallback, &http)?)?;
    http.add_function(pyo3::wrap_pyfunction!(allowed, &http)?)?;
    authhost.add_submodule(&http)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("authhost.http", &http)?;
    Ok(())
}

/// authhost.http.request(method, url, headers=None, body=None, timeout_ms=None).
#[pyfunction]
#[pyo3(signature = (method, url, headers = None, body = None, timeout_ms = None))]
fn request(
    py: Python<'_>,
    method: &str,
    url: &str,
    headers: Option<&Bound<'_, PyDict>>,
    body: Option<&Bound<'_, PyAny>>,
    timeout_ms: Option<f64>,
) -> PyResult<Response> {
    send(py, "request", method, url, headers, body, timeout_ms)
}

/// authhost.http.get(url, headers=None, timeout_ms=None).
#[pyfunction]
#[pyo3(signature = (url, headers = None, timeout_ms = None))]
fn get(
    py: Python<'_>,
    url: &str,
    headers: Option<&Bound<'_, PyDict>>,
    timeout_ms: Option<f64>,
) -> PyResult<Response> {
    send(py, "get", "GET", url, headers, None, timeout_ms)
}

/// authhost.http.post(url, body=None, headers=None, timeout_ms=None).
#[pyfunction]
#[pyo3(signature = (url, body = None, headers = None, timeout_ms = None))]
fn post(
    py: Python<'_>,
    url: &str,
    body: Option<&Bound<'_, PyAny>>,
    headers: Option<&Bound<'_, PyDict>>,
    timeout_ms: Option<f64>,
) -> PyResult<Response> {
    send(py, "post", "POST", url, headers, body, timeout_ms)
}

/// authhost.http.fallback(): counts one fallback (the policy answered without its upstream).
#[pyfunction]
fn fallback() -> PyResult<()> {
    client("fallback")?.counters().record_fallback();
    Ok(())
}

/// authhost.http.allowed(): the operator's --upstream prefixes (empty when none were given).
#[pyfunction]
fn allowed() -> PyResult<Vec<String>> {
    Ok(client("allowed")?.allowed())
}

fn client(function: &str) -> PyResult<Client> {
    Client::installed().ok_or_else(|| {
        Error::new_err(format!(
            "authhost.http.{function}: no client here: authhost.http works on the host's threads"
        ))
    })
}

fn send(
    py: Python<'_>,
    function: &str,
    method: &str,
    url: &str,
    headers: Option<&Bound<'_, PyDict>>,
    body: Option<&Bound<'_, PyAny>>,
    timeout_ms: Option<f64>,
) -> PyResult<Response> {
    let mut header_list = Vec::new();
    if let Some(headers) = headers {
        for (k, v) in headers.iter() {
            let (Ok(k), Ok(v)) = (k.cast::<PyString>(), v.cast::<PyString>()) else {
                return Err(PyTypeError::new_err(format!(
                    "authhost.http.{function}: headers must map str to str"
                )));
            };
            header_list.push((k.to_str()?.to_string(), v.to_str()?.to_string()));
        }
    }
    let body = match body {
        None => None,
        Some(b) if b.is_none() => None,
        Some(b) => {
            if let Ok(bytes) = b.cast::<PyBytes>() {
                Some(bytes.as_bytes().to_vec())
            } else if let Ok(text) = b.cast::<PyString>() {
                Some(text.to_str()?.as_bytes().to_vec())
            } else {
                return Err(PyTypeError::new_err(format!(
                    "authhost.http.{function}: body must be bytes or str"
                )));
            }
        }
    };
    let timeout = match timeout_ms {
        None => None,
        Some(ms) if ms > 0.0 && ms.is_finite() => Some(Duration::from_secs_f64(ms / 1000.0)),
        Some(ms) => {
            return Err(PyValueError::new_err(format!(
                "authhost.http.{function}: timeout_ms must be a positive number, got {ms}"
            )))
        }
    };
    let request = HttpRequest {
        method: method.to_string(),
        url: url.to_string(),
        headers: header_list,
        body,
        timeout,
    };
    let client = client(function)?;
    let deadline = db::request_deadline();
    // The request's deadline is a thread-local of this worker thread; `detach` runs the
    // closure on the same thread, so the client still sees it.
    let answer = py.detach(|| client.request(&request));
    match answer {
        Ok(response) => python_response(py, response),
        Err(e) => {
            let message = format!("authhost.http.{function}: {e}");
            let at_deadline = deadline.is_some_and(|d| Instant::now() >= d);
            Err(match e {
                HttpError::Timeout { .. } if at_deadline => PolicyTimeout::new_err(message),
                HttpError::Invalid(_) => PyValueError::new_err(message),
                _ => Error::new_err(message),
            })
        }
    }
}

fn python_response(py: Python<'_>, response: HttpResponse) -> PyResult<Response> {
    let headers = PyDict::new(py);
    for (name, value) in response.headers {
        let joined = match headers.get_item(&name)? {
            Some(old) => format!("{}, {value}", old.extract::<String>()?),
            None => value,
        };
        headers.set_item(name, joined)?;
    }
    Ok(Response {
        status: response.status,
        headers: headers.unbind(),
        body: PyBytes::new(py, &response.body).unbind(),
    })
}
