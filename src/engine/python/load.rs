//! Loading one set's Python plugins: each file runs as its own fresh module, its callbacks
//! are looked up once, and its `setup()` runs, all within the set's timeout.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

use super::api::PluginScope;
use super::interpreter::Interpreter;
use super::interrupt::{load_ticket, Enforcer, Running, Target};
use super::traceback::{full_traceback, OwnCode, Raised};
use super::PolicyTimeout;
use crate::config::Config;
use crate::decision::Callback;
use crate::engine::{refuse_misnamed, Misnamed, PluginSource};
use crate::error::Error;
use crate::script_api::db::{Confined, Database, RequestScope};
use crate::script_api::log::{self, Level};

/// One loaded plugin file.
pub(super) struct PluginFile {
    /// The file as given or found; compiled under this name, so tracebacks show it.
    pub tag: String,
    /// Its callbacks by [`Callback::index`].
    pub callbacks: [Option<Py<PyAny>>; 3],
    /// The plugin's module; its callbacks' globals.
    _module: Py<PyModule>,
}

/// A set's Python plugins, loaded; shared by every worker.
pub(super) struct Plugins {
    /// The plugins, in the order they were given.
    pub files: Vec<PluginFile>,
    /// What counts as the policy's own code in a traceback.
    pub own: OwnCode,
}

/// The directory Python plugins import helper modules from: the plugins directory, or the
/// directory of a single plugin file.
fn plugins_directory(config: &Config) -> PathBuf {
    let path = &config.plugins;
    let directory = if path.is_dir() {
        path.as_path()
    } else {
        path.parent().unwrap_or(Path::new(""))
    };
    std::path::absolute(directory).unwrap_or_else(|_| directory.to_path_buf())
}

/// Loads `sources`. Called with the process's load lock held.
///
/// # Failure
///
/// A load error naming the file (and line, when Python gave one): a syntax error, an
/// exception or a timeout at the top level or in `setup()`, or a callback that is not a
/// function of the right arity.
pub(super) fn load(
    py: Python<'_>,
    interpreter: &Interpreter,
    sources: &[PluginSource],
    config: &Config,
) -> Result<Arc<Plugins>, Error> {
    let directory = plugins_directory(config);
    // Top-level code and setup() may call authhost.http too, on this loading thread.
    crate::script_api::http::Client::trusted(&config.upstream)
        .map_err(|e| Error::Config(e.to_string()))?
        .install();
    interpreter
        .loader
        .bind(py)
        .call_method1("begin_load", (&directory,))
        .map_err(|e| Error::Config(format!("cannot prepare Python's import path: {e}")))?;
    let own = OwnCode::new(
        sources.iter().map(|s| s.display_path()).collect(),
        directory,
    );
    let loading = Loading {
        py,
        interpreter,
        target: Target::current_thread(),
        enforcer: Enforcer::get()?,
        config,
        own: &own,
        db: Database::at(&config.db_location()),
    };
    let files = sources
        .iter()
        .map(|source| loading.file(source))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Plugins { files, own }))
}

/// Confines the policy SQL of this thread while the guard lives, if the operator asked for
/// it (`Config::confine_python_sql`); Python policies are trusted otherwise.
pub(super) fn confined_sql(confine: bool) -> Option<Confined> {
    confine.then(|| Confined::enter("Python"))
}

struct Loading<'a, 'py> {
    py: Python<'py>,
    interpreter: &'a Interpreter,
    target: Arc<Target>,
    /// Interrupts the top level and `setup()` at the load's deadline.
    enforcer: &'static Enforcer,
    config: &'a Config,
    own: &'a OwnCode,
    /// The loading thread's connection: the top level and `setup()` may use `authhost.db`.
    db: Database,
}

impl<'py> Loading<'_, 'py> {
    fn file(&self, source: &PluginSource) -> Result<PluginFile, Error> {
        let py = self.py;
        let tag = source.display_path();
        let _scope = PluginScope::enter(Rc::from(tag.as_str()));
        let module = self
            .interpreter
            .loader
            .bind(py)
            .call_method1("new_module", (module_name(&source.path), &source.path))
            .and_then(|m| Ok(m.cast_into::<PyModule>()?))
            .map_err(|e| Error::load(&source.path, &format!("cannot create its module: {e}")))?;
        let globals = module.dict();

        self.within_deadline(source, || {
            let code = self.interpreter.compile.bind(py).call1((
                source.text.as_str(),
                tag.as_str(),
                "exec",
                0,
                true,
            ))?;
            self.interpreter.exec.bind(py).call1((code, &globals))?;
            Ok(())
        })?;

        self.refuse_misnamed_callbacks(source, &globals)?;
        let mut callbacks: [Option<Py<PyAny>>; 3] = [None, None, None];
        for callback in Callback::ALL {
            callbacks[callback.index()] = self
                .function(
                    source,
                    &globals,
                    callback.function_name(),
                    Some(callback.arity()),
                )?
                .map(Bound::unbind);
        }
        if let Some(setup) = self.function(source, &globals, "setup", Some(0))? {
            self.within_deadline(source, || setup.call0().map(drop))?;
        }
        Ok(PluginFile {
            tag,
            callbacks,
            _module: module.unbind(),
        })
    }

    /// A load error for the first (by name) global function named like a callback (`on_…`)
    /// that is none: a typo would otherwise leave the callback undefined and every request
    /// refused without a hint.
    fn refuse_misnamed_callbacks(
        &self,
        source: &PluginSource,
        globals: &Bound<'py, PyDict>,
    ) -> Result<(), Error> {
        let mut misnamed: Vec<Misnamed> = Vec::new();
        for (name, value) in globals.iter() {
            let Ok(name) = name.extract::<String>() else {
                continue;
            };
            if !value.is_callable() {
                continue;
            }
            if let Some(message) = Callback::misnamed(&name) {
                misnamed.push((name, message, first_line(&value)));
            }
        }
        refuse_misnamed(&source.path, misnamed)
    }

    /// The function the plugin defines as `name`, if it defines one (`None` counts as not
    /// defined), checked to take `arity` arguments.
    fn function(
        &self,
        source: &PluginSource,
        globals: &Bound<'py, PyDict>,
        name: &str,
        arity: Option<usize>,
    ) -> Result<Option<Bound<'py, PyAny>>, Error> {
        let value = globals
            .get_item(name)
            .map_err(|e| Error::load(&source.path, &e.to_string()))?;
        let Some(value) = value.filter(|v| !v.is_none()) else {
            return Ok(None);
        };
        let line = first_line(&value);
        let unusable = |why: String| Error::Load {
            file: source.path.clone(),
            line,
            message: format!("{name} {why}"),
        };
        if !value.is_callable() {
            let type_name = value
                .get_type()
                .name()
                .map_or_else(|_| "value".to_string(), |n| n.to_string());
            return Err(unusable(format!("is a {type_name}, expected a function")));
        }
        if let Some(arity) = arity {
            let why = self
                .interpreter
                .loader
                .bind(self.py)
                .call_method1("check_callback", (&value, arity))
                .and_then(|why| why.extract::<Option<String>>());
            match why {
                Ok(Some(why)) => return Err(unusable(why)),
                Ok(None) => {}
                Err(e) => return Err(unusable(format!("cannot be inspected: {e}"))),
            }
        }
        Ok(Some(value))
    }

    /// Runs `run` (the plugin's top level or its `setup()`) with the set's timeout, turning
    /// an exception into a load error.
    fn within_deadline(
        &self,
        source: &PluginSource,
        run: impl FnOnce() -> PyResult<()>,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + self.config.timeout;
        // authhost.db works here, within the deadline; a transaction left open is rolled
        // back when the scope ends.
        let request = RequestScope::enter(&self.db, deadline);
        let _confined = confined_sql(self.config.confine_python_sql);
        let ticket = load_ticket();
        let running = Running::begin(self.py, &self.target, ticket);
        self.enforcer
            .schedule(self.target.clone(), ticket, deadline);
        let result = run();
        let interrupted = running.end();
        drop(request);
        result.map_err(|error| self.load_error(source, &error, interrupted))
    }

    fn load_error(&self, source: &PluginSource, error: &PyErr, interrupted: bool) -> Error {
        let py = self.py;
        let tag = source.display_path();
        let raised = Raised::new(py, error, self.own);
        // The line in this plugin that was running: its innermost frame, or where a syntax
        // error is.
        let line = raised
            .frames
            .iter()
            .rev()
            .find(|f| f.file == tag)
            .map(|f| f.line)
            .or(match &raised.location {
                Some((file, line)) if *file == tag => Some(*line),
                _ => None,
            });
        if interrupted || error.is_instance_of::<PolicyTimeout>(py) {
            return Error::Load {
                file: source.path.clone(),
                line,
                message: format!(
                    "timeout: still running after {} ms",
                    self.config.timeout.as_millis()
                ),
            };
        }
        if let Some(traceback) = full_traceback(py, error) {
            log::write(Level::Error, &tag, &format!("failed to load:\n{traceback}"));
        }
        // A frame outside this file (a helper module) is named; one inside it is the line.
        let mut message = match &raised.location {
            Some((file, at)) if *file != tag || Some(*at) != line => {
                format!("{file}:{at}: {}", raised.summary())
            }
            _ => raised.summary(),
        };
        if let Some(frames) = raised.last_frames() {
            message.push_str(&format!(" (traceback: {frames})"));
        }
        Error::Load {
            file: source.path.clone(),
            line,
            message,
        }
    }
}

/// The line a function's code begins on, for messages about it.
fn first_line(value: &Bound<'_, PyAny>) -> Option<u32> {
    value
        .getattr("__code__")
        .and_then(|code| code.getattr("co_firstlineno"))
        .and_then(|line| line.extract::<u32>())
        .ok()
}

/// The name a plugin's module is registered under: private, and never that of a module one
/// could import (a plugin `json.py` must not replace the standard `json`).
fn module_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let stem: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}{stem}", super::PLUGIN_MODULE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_private_and_identifiers() {
        assert_eq!(
            module_name(Path::new("plugins/json.py")),
            "_authhost_plugin_json"
        );
        assert_eq!(
            module_name(Path::new("plugins/node-policy.v2.py")),
            "_authhost_plugin_node_policy_v2"
        );
    }
}
