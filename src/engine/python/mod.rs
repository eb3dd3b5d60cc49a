//! The Python engine: CPython embedded through pyo3, one interpreter per process.
//!
//! - **Loading** (`load`): each plugin file runs as its own fresh module, compiled under
//!   its own path so tracebacks show `file:line`; its callbacks are looked up once and its
//!   `setup()` runs once, all within the set's timeout. The plugins directory is on
//!   `sys.path` for helper modules, which are read afresh at every load.
//! - **Workers** (`thread`): each worker thread gets a Python thread state once, for its
//!   whole life, and holds the GIL only while a callback runs.
//! - **Deadlines** (`interrupt`): a call past its deadline gets an exception raised into
//!   it at its next bytecode; it cannot leak into the next call.
//! - **The `authhost` module and output** (`api`): `authhost.log`, the password helpers
//!   (hashing releases the GIL, so password checks run on every core at once), and `print()`
//!   / `sys.stdout` / `sys.stderr` into the host's log.
//! - **The database** (`db`): `authhost.db` over the worker's own connection, with the GIL
//!   released around every SQLite call.
//!
//! Python plugins are trusted code: nothing here is a sandbox.

mod api;
mod db;
mod http;
mod interpreter;
mod interrupt;
mod load;
mod sessions;
mod thread;
mod traceback;
mod turns;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

use self::api::PluginScope;
use self::interpreter::LoadLock;
use self::interrupt::{Enforcer, Running, Target, TargetInterrupt};
use self::load::Plugins;
use self::traceback::{full_traceback, Raised};
use crate::config::Config;
use crate::decision::timeout_message;
use crate::decision::{Callback, DecisionError, ErrorKind, ScriptValue};
use crate::engine::{Call, Engine, Instance, Interrupt, Language, PluginSource, Prepared};
use crate::error::Error;
use crate::script_api::db::Database;
use crate::script_api::log::{self, Level};

pyo3::create_exception!(
    authhost,
    PolicyTimeout,
    pyo3::exceptions::PyBaseException,
    "Raised into a policy that ran past its deadline. It derives from BaseException, so that \
     `except Exception:` does not swallow it."
);

/// How the names of plugin modules begin.
const PLUGIN_MODULE_PREFIX: &str = "_authhost_plugin_";

/// Runs `.py` plugins in the process's CPython interpreter.
pub struct PythonEngine {
    _private: (),
}

impl PythonEngine {
    /// The engine. The interpreter starts at the first load of a Python plugin, not before.
    pub fn new() -> PythonEngine {
        PythonEngine { _private: () }
    }
}

impl Default for PythonEngine {
    fn default() -> Self {
        PythonEngine::new()
    }
}

impl Engine for PythonEngine {
    fn language(&self) -> Language {
        Language::Python
    }

    fn prepare(
        &self,
        plugins: Vec<PluginSource>,
        config: &Config,
    ) -> Result<Arc<dyn Prepared>, Error> {
        let interpreter = interpreter::get()?;
        let plugins = Python::attach(|py| {
            let _one_load_at_a_time = py.detach(LoadLock::acquire);
            load::load(py, interpreter, &plugins, config)
        })?;
        Ok(Arc::new(PreparedPython { plugins }))
    }

    // No `run_worker`: a worker gets its thread state at its first Python call (see
    // `PythonInstance::keep_gil`), not when it starts. A worker that replaces a stuck one must
    // be able to start, and serve Lua, while the stuck thread holds the GIL.
}

struct PreparedPython {
    plugins: Arc<Plugins>,
}

impl Prepared for PreparedPython {
    fn callbacks(&self) -> Vec<Vec<Callback>> {
        self.plugins
            .files
            .iter()
            .map(|file| {
                Callback::ALL
                    .into_iter()
                    .filter(|c| file.callbacks[c.index()].is_some())
                    .collect()
            })
            .collect()
    }

    fn instantiate(&self, config: &Config) -> Result<Box<dyn Instance>, Error> {
        crate::sessions::bind_to_thread(
            config
                .session_store()
                .map_err(|e| Error::Config(e.to_string()))?,
        );
        crate::script_api::http::Client::trusted(&config.upstream)
            .map_err(|e| Error::Config(e.to_string()))?
            .install();
        let target = Target::current_thread();
        let enforcer = Enforcer::get()?;
        Ok(Box::new(PythonInstance {
            tags: self
                .plugins
                .files
                .iter()
                .map(|f| Rc::from(f.tag.as_str()))
                .collect(),
            plugins: self.plugins.clone(),
            interrupt: Arc::new(TargetInterrupt {
                target: target.clone(),
                enforcer,
            }),
            target,
            timeout: config.timeout,
            confine_sql: config.confine_python_sql,
            _db: Database::at(&config.db_location()),
            held: None,
        }))
    }
}

/// A worker's view of a set's Python plugins. The modules are shared by every worker; what
/// is the worker's own is its thread, for interrupts, and its log tags.
struct PythonInstance {
    plugins: Arc<Plugins>,
    tags: Vec<Rc<str>>,
    target: Arc<Target>,
    interrupt: Arc<dyn Interrupt>,
    timeout: Duration,
    /// Whether this host confines Python policies' SQL (`Config::confine_python_sql`).
    confine_sql: bool,
    /// This thread's database connection, kept open across generations while the worker
    /// has an instance; `authhost.db` reaches it through the request's scope.
    _db: Database,
    /// The GIL, while this worker keeps it across a run of Python calls.
    held: Option<HeldGil>,
}

/// The GIL kept between consecutive calls of one worker. With several workers busy on Python
/// policies, taking and dropping it per call makes them hand it over on every request (a
/// futex wake and a context switch each time), which made two workers slower than one. A
/// worker keeps it while it has Python work queued, and drops it when it runs out of work,
/// turns to another engine, or has kept it for a run (below), handing it to a worker that
/// waits for it ([`turns`]) so that no worker waits longer than a run or so.
struct HeldGil {
    state: pyo3::ffi::PyGILState_STATE,
    since: Instant,
    calls: u32,
}

/// A worker gives the GIL back after this many calls in a row …
const KEEP_GIL_CALLS: u32 = 256;
/// … or after keeping it this long, whichever comes first. Each handover costs the time the
/// other worker takes to wake (tens of µs on a virtual machine), so runs are long enough to
/// make that small, and short enough that a waiting worker's requests wait about a
/// millisecond for their turn.
const KEEP_GIL_FOR: Duration = Duration::from_micros(1000);

impl PythonInstance {
    fn keep_gil(&mut self) {
        if self.held.is_none() {
            thread::keep_thread_state();
            // SAFETY: the interpreter is initialized (this instance exists), and this worker
            // thread has its own thread state (`thread`); the state is given back by
            // `let_go_of_gil` on the same thread.
            let state = unsafe { turns::TURNS.take() };
            self.held = Some(HeldGil {
                state,
                since: Instant::now(),
                calls: 0,
            });
        }
    }

    fn let_go_of_gil(&mut self, how: turns::GiveBack) {
        if let Some(held) = self.held.take() {
            // SAFETY: pairs with the `TURNS.take` of `keep_gil`, on the same thread.
            unsafe { turns::TURNS.give_back(held.state, how) };
        }
    }

    /// Counts one call made with the GIL kept, and drops it when it has been kept enough.
    fn after_call(&mut self) {
        if let Some(held) = &mut self.held {
            held.calls += 1;
            if held.calls >= KEEP_GIL_CALLS || held.since.elapsed() >= KEEP_GIL_FOR {
                self.let_go_of_gil(turns::GiveBack::HandOver);
            }
        }
    }
}

impl Drop for PythonInstance {
    fn drop(&mut self) {
        self.let_go_of_gil(turns::GiveBack::Drop);
    }
}

impl Instance for PythonInstance {
    fn call(&mut self, call: Call<'_>) -> Result<ScriptValue, DecisionError> {
        self.keep_gil();
        if Instant::now() >= call.deadline {
            // The GIL came too late (another thread held it past this call's deadline): the
            // caller has had its answer; running the policy now would only have effects no
            // one asked for any more.
            self.after_call();
            return Err(DecisionError::new(
                ErrorKind::Timeout,
                timeout_message(self.timeout),
            ));
        }
        let function = self.plugins.files[call.plugin].callbacks[call.callback.index()]
            .as_ref()
            .expect("the set routes a callback only to a plugin that defines it");
        // Re-attaches on this thread's own thread state; the GIL is already this thread's.
        let answer = Python::attach(|py| {
            let _scope = PluginScope::enter(self.tags[call.plugin].clone());
            let _confined = load::confined_sql(self.confine_sql);
            // Everything that can run policy code stays inside the call's interruptible span:
            // the call, but also reading what came back, an exception's `__str__` and the
            // `__del__` of the objects it returned, which would otherwise run unwatched.
            let running = Running::begin(py, &self.target, call.ticket);
            let returned = match call.args {
                [one] => function.call1(py, (*one,)),
                [first, second] => function.call1(py, (*first, *second)),
                _ => unreachable!("callbacks take one or two arguments"),
            };
            let answer = match &returned {
                Ok(value) => Ok(script_value(value.bind(py))),
                Err(error) => Err(self.call_error(py, call, error)),
            };
            drop(returned);
            if running.end() {
                return Err(DecisionError::new(
                    ErrorKind::Timeout,
                    timeout_message(self.timeout),
                ));
            }
            answer
        });
        self.after_call();
        answer
    }

    fn interrupter(&self) -> Option<Arc<dyn Interrupt>> {
        Some(self.interrupt.clone())
    }

    fn idle(&mut self) {
        self.let_go_of_gil(turns::GiveBack::Drop);
    }
}

impl PythonInstance {
    fn call_error(&self, py: Python<'_>, call: Call<'_>, error: &PyErr) -> DecisionError {
        if error.is_instance_of::<PolicyTimeout>(py) {
            return DecisionError::new(ErrorKind::Timeout, timeout_message(self.timeout));
        }
        let raised = Raised::new(py, error, &self.plugins.own);
        if let Some(traceback) = full_traceback(py, error) {
            let tag = &self.tags[call.plugin];
            log::write(
                Level::Warn,
                tag,
                &format!("{} raised:\n{traceback}", call.callback),
            );
        }
        DecisionError::new(ErrorKind::Raised, raised.describe())
    }
}

/// What a policy returned, for the decision mapping of `crate::decision`.
///
/// `bool` is tested before `int` because in Python it is one; an `int` outside i64 keeps its
/// digits for the message; everything that is not a number, a string or `None` is known by
/// its type name only.
fn script_value(value: &Bound<'_, PyAny>) -> ScriptValue {
    if value.is_none() {
        ScriptValue::Nil
    } else if let Ok(flag) = value.cast::<PyBool>() {
        ScriptValue::Bool(flag.is_true())
    } else if let Ok(int) = value.cast::<PyInt>() {
        match int.extract::<i64>() {
            Ok(n) => ScriptValue::Int(n),
            Err(_) => ScriptValue::BigInt(decimal(int)),
        }
    } else if let Ok(float) = value.cast::<PyFloat>() {
        ScriptValue::Float(float.value())
    } else if let Ok(text) = value.cast::<PyString>() {
        ScriptValue::Str(text.to_string_lossy().into_owned().into_bytes())
    } else {
        let type_name = value
            .get_type()
            .name()
            .map_or_else(|_| "object".to_string(), |n| n.to_string());
        ScriptValue::Other(type_name)
    }
}

/// The decimal digits of a big integer, even of an `int` subclass that prints otherwise.
fn decimal(int: &Bound<'_, PyInt>) -> String {
    let py = int.py();
    py.get_type::<PyInt>()
        .call_method1("__repr__", (int,))
        .map(|text| text.to_string())
        .unwrap_or_else(|_| "(an integer too long to print)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn value_of(expression: &str) -> ScriptValue {
        Python::attach(|py| {
            let code = CString::new(expression).unwrap();
            script_value(&py.eval(&code, None, None).unwrap())
        })
    }

    #[test]
    fn returns_map_to_script_values() {
        assert_eq!(value_of("True"), ScriptValue::Bool(true));
        assert_eq!(value_of("False"), ScriptValue::Bool(false));
        assert_eq!(value_of("42"), ScriptValue::Int(42));
        assert_eq!(value_of("-2"), ScriptValue::Int(-2));
        assert_eq!(value_of("42.0"), ScriptValue::Float(42.0));
        assert_eq!(
            value_of("2**63"),
            ScriptValue::BigInt("9223372036854775808".into())
        );
        assert_eq!(value_of("-2**63"), ScriptValue::Int(i64::MIN));
        assert_eq!(value_of("None"), ScriptValue::Nil);
        assert_eq!(value_of("'42'"), ScriptValue::Str(b"42".to_vec()));
        assert_eq!(value_of("b'1'"), ScriptValue::Other("bytes".into()));
        assert_eq!(value_of("(1, 2)"), ScriptValue::Other("tuple".into()));
        assert_eq!(value_of("{'id': 1}"), ScriptValue::Other("dict".into()));
    }

    #[test]
    fn int_subclasses_are_ints_and_keep_their_digits() {
        assert_eq!(
            value_of("__import__('enum').IntEnum('E', {'A': 7}).A"),
            ScriptValue::Int(7)
        );
        assert_eq!(
            value_of("__import__('enum').IntEnum('E', {'BIG': 2**70}).BIG"),
            ScriptValue::BigInt("1180591620717411303424".into())
        );
    }
}
